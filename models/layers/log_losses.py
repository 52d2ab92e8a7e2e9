"""Caffe's MultinomialLogisticLoss, InfogainLoss and SigmoidCrossEntropyLoss layers, forward and backward
(src/caffe/layers/{multinomial_logistic_loss,infogain_loss,sigmoid_cross_entropy_loss}_layer.cpp).

Each backward is Caffe's ``Backward_cpu`` transcribed in a ``torch.autograd.Function``: where Caffe clamps a
probability at ``kLOG_THRESHOLD = 1e-20`` its gradient still divides by the clamped value (autograd of a clamp
would give 0 there), and SigmoidCrossEntropyLoss's gradient is ``sigmoid(x) - t`` rather than the derivative of
its numerically stable forward formula. The loss top is a 0-d float32 tensor (Caffe's loss shape has 0 axes); the
``loss_weight`` arrives as the top's gradient, as ``top[0]->cpu_diff()[0]`` does in Caffe.

The versions are those of the Caffe the project's caffe.proto describes (the brocolli-caffe 9.0.2 fork, as BVLC
Caffe 1.0 before 2017): InfogainLoss takes probabilities (no internal softmax, no ``axis``). With a user's
caffe.proto (``--proto``) whose InfogainLossParameter has ``axis`` (BVLC master), InfogainLoss is master's: softmax
inside, ``normalization``/``ignore_label``, an optional probability top (:class:`CaffeInfogainSoftmaxLoss`).
Where BVLC master later added ``loss_param`` handling to SigmoidCrossEntropyLoss (``ignore_label``;
``normalization``, default BATCH_SIZE), it is honoured when set; the fork ignores those fields and always divides by the batch size, which
is also the default here. See docs/loss-layers.md.

Each converter also exports the forward to ONNX (the loss value; ONNX carries no backward).
"""
from __future__ import annotations

import numpy as np
import torch

from models.errors import InputError, NetDefinitionError
from models.layers.loss_inputs import (export_item_labels, export_items, export_mean_over_items, gated, item_labels,
                                       no_autocast, propagate_down, refuse_export,
                                       refuse_forced_label_diff, refuse_label_grads)
from models.shapes import infogain_has_softmax
from models.layers.registry import CaffeLayerModule, Converter, register

#: loss_layer.hpp ``const float kLOG_THRESHOLD = 1e-20``
LOG_THRESHOLD = float(np.float32(1e-20))


class _MultinomialLogistic(torch.autograd.Function):
    """multinomial_logistic_loss_layer.cpp: ``loss = -sum_i log(max(p[i, l_i], thr)) / num``; the diff is 0
    except ``-top_diff / num / max(p[i, l_i], thr)`` at each item's label."""

    @staticmethod
    def forward(ctx, prob, label, lab, name):
        num = prob.shape[0]
        flat = prob.reshape(num, -1)
        picked = flat.gather(1, lab[:, None]).squeeze(1).clamp_min(LOG_THRESHOLD)
        ctx.save_for_backward(picked, lab)
        ctx.shape, ctx.name = prob.shape, name
        return -torch.log(picked).sum() / num

    @staticmethod
    def backward(ctx, top_diff):
        refuse_label_grads(ctx, "MultinomialLogisticLoss")
        picked, lab = ctx.saved_tensors
        num = ctx.shape[0]
        diff = torch.zeros((num, int(np.prod(ctx.shape[1:]))), dtype=picked.dtype, device=picked.device)
        diff.scatter_(1, lab[:, None], ((-top_diff / num) / picked)[:, None])
        return diff.reshape(ctx.shape), None, None, None


class _Infogain(torch.autograd.Function):
    """infogain_loss_layer.cpp: ``loss = -sum_ij H[l_i, j] log(max(p_ij, thr)) / num``; the diff is
    ``(-top_diff / num) * H[l_i, j] / max(p_ij, thr)`` everywhere."""

    @staticmethod
    def forward(ctx, prob, label, h, lab, name):
        num = prob.shape[0]
        flat = prob.reshape(num, -1)
        rows = h.reshape(flat.shape[1], flat.shape[1])[lab]
        clamped = flat.clamp_min(LOG_THRESHOLD)
        ctx.save_for_backward(rows, clamped)
        ctx.shape, ctx.name = prob.shape, name
        return -(rows * torch.log(clamped)).sum() / num

    @staticmethod
    def backward(ctx, top_diff):
        refuse_label_grads(ctx, "InfogainLoss", (1, 2))
        rows, clamped = ctx.saved_tensors
        scale = -top_diff / ctx.shape[0]
        return (scale * rows / clamped).reshape(ctx.shape), None, None, None, None


def _read_infogain(layer) -> np.ndarray:
    """``infogain_loss_param.source`` as Caffe's LayerSetUp reads it (``ReadProtoFromBinaryFile`` then
    ``Blob::FromProto``), checked as its Reshape does: a ``(1, 1, dim, dim)`` BlobProto, ``dim`` the items' size."""
    from models.data.blobproto import blob_shape
    from models.data.paths import resolve
    from models.schema import pb

    where = f"InfogainLoss layer '{layer.name}'"
    p = layer.proto.infogain_loss_param
    if not p.HasField("source"):
        raise NetDefinitionError(f"{where}: Infogain matrix source must be specified (infogain_loss_param "
                                 "{ source: \"H.binaryproto\" }, or a third bottom)")
    path = resolve(p.source, where=where, what="infogain_loss_param.source")
    blob = pb.BlobProto()
    try:
        blob.ParseFromString(path.read_bytes())
    except Exception:
        raise InputError(f"{where}: infogain_loss_param.source '{path}' is not a binaryproto BlobProto") from None
    shape = blob_shape(blob)
    values = np.asarray(blob.data if len(blob.data) else blob.double_data, dtype=np.float32)
    if values.size != int(np.prod(shape)):
        raise InputError(f"{where}: '{path}' has {values.size} values for shape {shape}")
    b = layer.bottom_shapes[0]
    if infogain_has_softmax(layer.proto):  # BVLC master: any shape of C * C values (C: the axis' size)
        dim = int(b[layer.spec.axis])
        if values.size != dim * dim:
            raise InputError(f"{where}: '{path}' holds {values.size} values; H must be {dim}x{dim} for bottom "
                             f"'{layer.bottoms[0]}' of shape {tuple(b)}")
        return values.reshape(dim, dim)
    dim = int(np.prod(b[1:]))
    legacy = tuple(int(shape[i]) if i < len(shape) else 1 for i in range(4))
    if len(shape) > 4 or legacy != (1, 1, dim, dim):
        raise InputError(f"{where}: '{path}' holds a blob of shape {tuple(shape)}; expected (1, 1, {dim}, {dim}) "
                         f"for bottom '{layer.bottoms[0]}' of shape {tuple(b)}")
    return values.reshape(dim, dim)


class _InfogainSoftmax(torch.autograd.Function):
    """BVLC master infogain_loss_layer.cpp: ``p = softmax(x, axis)``; ``loss = -sum over non-ignored (i, j) of
    sum_l H[y, l] log(max(p[i, l, j], thr)) / normalizer``; diff ``p[i, l, j] * sum_m H[y, m] - H[y, l]`` (0 at
    ignored positions), times ``top_diff / normalizer``. The probabilities (a second top) get no gradient, as
    Caffe's Backward reads no diff of ``top[1]``."""

    @staticmethod
    def forward(ctx, x, label, h, lab, valid, axis, normalization, name):
        prob = torch.softmax(x, axis)
        outer, c = int(np.prod(x.shape[:axis])), x.shape[axis]
        p3 = prob.reshape(outer, c, -1)
        hm = h.reshape(c, c)
        rows = hm[lab].permute(0, 2, 1)  # (outer, C, inner): H[y_ij, l]
        per = (rows * torch.log(p3.clamp_min(LOG_THRESHOLD))).sum(1)
        per = torch.where(valid, per, torch.zeros_like(per))
        count = int(valid.sum())
        normalizer = {"FULL": valid.numel(), "VALID": count, "BATCH_SIZE": outer, "NONE": 1}[normalization]
        ctx.normalizer = float(max(1, normalizer))
        ctx.save_for_backward(p3, rows, hm, lab, valid)
        ctx.shape, ctx.name = x.shape, name
        ctx.mark_non_differentiable(prob)
        return -per.sum() / ctx.normalizer, prob

    @staticmethod
    def backward(ctx, top_diff, _prob_diff):
        refuse_label_grads(ctx, "InfogainLoss", (1, 2))
        p3, rows, hm, lab, valid = ctx.saved_tensors
        sum_rows = hm.sum(1)[lab]  # (outer, inner): sum_m H[y_ij, m]
        diff = p3 * sum_rows[:, None, :] - rows
        diff = torch.where(valid[:, None, :], diff, torch.zeros_like(diff))
        return (diff * (top_diff / ctx.normalizer)).reshape(ctx.shape), None, None, None, None, None, None, None


class CaffeInfogainSoftmaxLoss(CaffeLayerModule):
    """BVLC master's InfogainLoss (a caffe.proto with ``infogain_loss_param.axis``): bottoms scores (softmax taken
    over ``axis``), ``outer * inner`` labels and optionally ``H`` (``C * C`` values); tops: the 0-d loss and,
    optionally, the probabilities. ``loss_param`` ``normalization`` (default VALID) and ``ignore_label``."""

    def __init__(self, name, pd, axis, normalization, ignore_label, n_tops, h=None):
        super().__init__(name)
        self.pd, self.axis, self.normalization, self.ignore_label = pd, axis, normalization, ignore_label
        self.n_tops = n_tops
        self.register_buffer("infogain", None if h is None else torch.from_numpy(h))

    def forward(self, x, label, h=None):
        x, label, h = _gated_with_h(self, x, label, h)
        with no_autocast(x):
            x = x.float()
            outer, c = int(np.prod(x.shape[:self.axis])), x.shape[self.axis]
            flat = label.detach().reshape(outer, -1).to(torch.int64)
            valid = torch.ones_like(flat, dtype=torch.bool) if self.ignore_label is None else \
                flat != self.ignore_label
            safe = torch.where(valid, flat, torch.zeros_like(flat))
            item_labels(safe.reshape(-1), safe.numel(), c, self.caffe_name, "InfogainLoss")
            loss, prob = _InfogainSoftmax.apply(x, label, h.float(), safe, valid, self.axis, self.normalization,
                                                self.caffe_name)
            return [loss, prob][:self.n_tops]


class CaffeMultinomialLogisticLoss(CaffeLayerModule):
    """MultinomialLogisticLoss: bottoms ``(N, ...)`` probabilities and ``N`` labels; top: the 0-d loss."""

    def __init__(self, name, pd):
        super().__init__(name)
        self.pd = pd

    def forward(self, prob, label):
        prob, label = gated([prob, label], self.pd)
        with no_autocast(prob):
            prob = prob.float()
            num = prob.shape[0]
            lab = item_labels(label, num, prob.numel() // max(num, 1), self.caffe_name, "MultinomialLogisticLoss")
            return [_MultinomialLogistic.apply(prob, label, lab, self.caffe_name)]


def _gated_with_h(module, x, label, h):
    """InfogainLoss's bottoms after ``propagate_down``, with ``H`` from the third bottom or the source buffer."""
    x, label, *rest = gated([x, label] + ([h] if h is not None else []), module.pd)
    return x, label, rest[0] if rest else module.infogain


class CaffeInfogainLoss(CaffeLayerModule):
    """InfogainLoss: bottoms ``(N, ...)`` probabilities, ``N`` labels and optionally ``H`` ``(1, 1, D, D)``
    (else ``H`` is read from ``infogain_loss_param.source``, a buffer here as Caffe keeps it outside the layer's
    blobs, so it is not saved in a caffemodel); top: the 0-d loss."""

    def __init__(self, name, pd, h=None):
        super().__init__(name)
        self.pd = pd
        self.register_buffer("infogain", None if h is None else torch.from_numpy(h))

    def forward(self, prob, label, h=None):
        prob, label, h = _gated_with_h(self, prob, label, h)
        with no_autocast(prob):
            prob = prob.float()
            num = prob.shape[0]
            lab = item_labels(label, num, prob.numel() // max(num, 1), self.caffe_name, "InfogainLoss")
            return [_Infogain.apply(prob, label, h.float(), lab, self.caffe_name)]


def _normalization(layer) -> str:
    """SigmoidCrossEntropyLoss's normalization mode (BVLC master LayerSetUp): ``loss_param.normalization`` when
    set, else ``normalize`` (VALID / BATCH_SIZE) when set, else BATCH_SIZE (the fork's only behaviour)."""
    lp = layer.proto.loss_param
    if lp.HasField("normalization"):
        return {0: "FULL", 1: "VALID", 2: "BATCH_SIZE", 3: "NONE"}[lp.normalization]
    if lp.HasField("normalize"):
        return "VALID" if lp.normalize else "BATCH_SIZE"
    return "BATCH_SIZE"


class _SigmoidCrossEntropy(torch.autograd.Function):
    """sigmoid_cross_entropy_loss_layer.cpp: ``loss = -sum [x (t - (x >= 0)) - log(1 + exp(x - 2 x (x >= 0)))]
    / normalizer`` over the non-ignored targets; diff ``(sigmoid(x) - t) * top_diff / normalizer``, 0 at ignored
    targets."""

    @staticmethod
    def forward(ctx, x, target, valid, normalizer, name):
        pos = (x >= 0).to(x.dtype)
        term = x * (target - pos) - torch.log(1 + torch.exp(x - 2 * x * pos))
        if valid is not None:
            term = torch.where(valid, term, torch.zeros_like(term))
        ctx.save_for_backward(x, target, valid)
        ctx.normalizer, ctx.name = normalizer, name
        return -term.sum() / normalizer

    @staticmethod
    def backward(ctx, top_diff):
        refuse_label_grads(ctx, "SigmoidCrossEntropyLoss")
        x, target, valid = ctx.saved_tensors
        # sigmoid_layer.cpp: 1. / (1. + exp(-x)), exp in float, the division in double, stored as float
        sig = (1.0 / (1.0 + torch.exp(-x).double())).to(x.dtype)
        diff = (sig - target) * (top_diff / ctx.normalizer)
        if valid is not None:
            diff = torch.where(valid, diff, torch.zeros_like(diff))
        return diff, None, None, None, None


class CaffeSigmoidCrossEntropyLoss(CaffeLayerModule):
    """SigmoidCrossEntropyLoss: bottoms scores ``x`` and targets ``t`` of the same count (any shapes); top: the
    0-d loss. ``normalization`` FULL / VALID / BATCH_SIZE / NONE as ``LossLayer::GetNormalizer`` (at least 1);
    ``ignore_label`` compares ``static_cast<int>(t)``."""

    def __init__(self, name, pd, normalization, ignore_label):
        super().__init__(name)
        self.pd, self.normalization, self.ignore_label = pd, normalization, ignore_label

    def forward(self, x, target):
        x, target = gated([x, target], self.pd)
        with no_autocast(x):
            x = x.float()
            t = target.float().reshape(x.shape)
            valid = None
            if self.ignore_label is not None:
                valid = t.detach().to(torch.int64) != self.ignore_label
            outer = x.shape[0]
            mode = self.normalization
            if mode == "FULL" or (mode == "VALID" and valid is None):
                normalizer = float(x.numel())
            elif mode == "VALID":
                normalizer = float(valid.sum())
            elif mode == "BATCH_SIZE":
                normalizer = float(outer)
            else:
                normalizer = 1.0
            return [_SigmoidCrossEntropy.apply(x, t, valid, max(1.0, normalizer), self.caffe_name)]


def _export_sum_log(layer, g, p: str, weights: str | None = None) -> str:
    """ONNX: ``sum(log(max(p, kLOG_THRESHOLD)) [* weights])`` over every value."""
    name = layer.name
    clamped = g.tmp(f"{name}/clamped")
    g.node("Max", [p, g.scalar(LOG_THRESHOLD)], [clamped], f"{name}/clamp")
    logp = g.tmp(f"{name}/log")
    g.node("Log", [clamped], [logp], f"{name}/log")
    if weights is not None:
        weighted = g.tmp(f"{name}/weighted")
        g.node("Mul", [weights, logp], [weighted], f"{name}/weighted")
        logp = weighted
    total = g.tmp(f"{name}/sum")
    g.reduce("ReduceSum", logp, total, f"{name}/sum", keepdims=0)
    return total


@register("MultinomialLogisticLoss")
class MultinomialLogisticLossConverter(Converter):
    def build(self, layer, phase):
        pd = propagate_down(layer)
        refuse_forced_label_diff(layer, pd, (1,))
        return CaffeMultinomialLogisticLoss(layer.name, pd)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        name = layer.name
        flat, n = export_items(layer, g, bottoms[0])
        lab = export_item_labels(layer, g, bottoms[1], [-1, 1])
        picked = g.tmp(f"{name}/picked")
        g.node("GatherElements", [flat, lab], [picked], f"{name}/picked", axis=1)
        total = _export_sum_log(layer, g, picked)
        export_mean_over_items(layer, g, total, n, tops[0], negate=True)


@register("InfogainLoss")
class InfogainLossConverter(Converter):
    def build(self, layer, phase):
        pd = propagate_down(layer)
        refuse_forced_label_diff(layer, pd, (1, 2))
        h = _read_infogain(layer) if len(layer.bottoms) < 3 else None
        if infogain_has_softmax(layer.proto):
            lp = layer.proto.loss_param
            mode = {0: "FULL", 1: "VALID", 2: "BATCH_SIZE", 3: "NONE"}[lp.normalization]
            return CaffeInfogainSoftmaxLoss(layer.name, pd, layer.spec.axis, mode,
                                            lp.ignore_label if lp.HasField("ignore_label") else None,
                                            len(layer.tops), h)
        return CaffeInfogainLoss(layer.name, pd, h)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        if infogain_has_softmax(layer.proto):
            refuse_export(layer, "for BVLC master's InfogainLoss (softmax inside the layer)")
        name = layer.name
        flat, n = export_items(layer, g, bottoms[0])
        lab = export_item_labels(layer, g, bottoms[1], [-1])
        dim = int(np.prod(layer.bottom_shapes[0][1:]))
        if len(bottoms) > 2:
            h = g.tmp(f"{name}/H")
            g.node("Reshape", [bottoms[2], g.const_i64(f"{name}/H_shape", [dim, dim])], [h], f"{name}/H")
        else:
            h = g.const(f"{name}/H", _read_infogain(layer))
        rows = g.tmp(f"{name}/H_rows")
        g.node("Gather", [h, lab], [rows], f"{name}/H_rows", axis=0)
        total = _export_sum_log(layer, g, flat, weights=rows)
        export_mean_over_items(layer, g, total, n, tops[0], negate=True)


@register("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLossConverter(Converter):
    def build(self, layer, phase):
        pd = propagate_down(layer)
        refuse_forced_label_diff(layer, pd, (1,))
        lp = layer.proto.loss_param
        ignore = lp.ignore_label if lp.HasField("ignore_label") else None
        return CaffeSigmoidCrossEntropyLoss(layer.name, pd, _normalization(layer), ignore)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        name = layer.name
        lp = layer.proto.loss_param
        ignore = lp.ignore_label if lp.HasField("ignore_label") else None
        mode = _normalization(layer)
        x = bottoms[0]
        shape = g.tmp(f"{name}/shape")
        g.node("Shape", [x], [shape], f"{name}/shape")
        t = g.tmp(f"{name}/target")
        g.node("Reshape", [bottoms[1], shape], [t], f"{name}/target")

        def op(kind, ins, what):
            out = g.tmp(f"{name}/{what}")
            g.node(kind, ins, [out], f"{name}/{what}")
            return out
        pos = g.tmp(f"{name}/pos")
        g.node("Cast", [op("GreaterOrEqual", [x, g.scalar(0.0)], "ge0")], [pos], f"{name}/pos", to=1)
        lin = op("Mul", [x, op("Sub", [t, pos], "t_minus_pos")], "linear")
        two_x_pos = op("Mul", [op("Mul", [x, g.scalar(2.0)], "two_x"), pos], "two_x_pos")
        soft = op("Log", [op("Add", [op("Exp", [op("Sub", [x, two_x_pos], "exp_arg")], "exp"), g.scalar(1.0)],
                             "one_plus_exp")], "log")
        term = op("Sub", [lin, soft], "term")
        valid = None
        if ignore is not None:
            ti = g.tmp(f"{name}/target_i64")
            g.node("Cast", [t], [ti], f"{name}/target_cast", to=7)  # INT64: static_cast<int>
            valid = op("Not", [g.equal(name, ti, ignore)], "valid")
            term = op("Where", [valid, term, g.scalar(0.0)], "term_valid")
        total = g.tmp(f"{name}/sum")
        g.reduce("ReduceSum", term, total, f"{name}/sum", keepdims=0)
        if mode == "BATCH_SIZE":
            norm = g.batch_size(name, x)
        elif mode == "VALID" and valid is not None:
            vf = g.tmp(f"{name}/valid_f")
            g.node("Cast", [valid], [vf], f"{name}/valid_cast", to=1)
            norm = g.tmp(f"{name}/valid_count")
            g.reduce("ReduceSum", vf, norm, f"{name}/valid_count", keepdims=0)
        elif mode == "NONE":
            norm = g.scalar(1.0)
        else:
            size = op("Size", [x], "count_i64")
            norm = g.tmp(f"{name}/count")
            g.node("Cast", [size], [norm], f"{name}/count_cast", to=1)
        norm = op("Max", [norm, g.scalar(1.0)], "normalizer")
        export_mean_over_items(layer, g, total, norm, tops[0], negate=True)
