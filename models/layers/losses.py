"""Caffe's Softmax, SoftmaxWithLoss, Accuracy and EuclideanLoss layers
(src/caffe/layers/{softmax,softmax_loss,accuracy,euclidean_loss,loss}_layer.cpp).

The loss blobs hold the *unweighted* loss, as ``net.blobs`` does in Caffe; the weights (``loss_weight``) enter
the objective that :meth:`models.torch_builder.CaffeModule.loss` sums.
"""
from __future__ import annotations

import numpy as np
import torch

from models.errors import InputError, NetDefinitionError
from models.layers.registry import CaffeLayerModule, Converter, register

FLT_MIN = float(np.finfo(np.float32).tiny)


class CaffeSoftmax(CaffeLayerModule):
    def __init__(self, name, axis):
        super().__init__(name)
        self.axis = axis

    def forward(self, x):
        return [torch.softmax(x, self.axis)]


@register("Softmax")
class SoftmaxConverter(Converter):
    def build(self, layer, phase):
        return CaffeSoftmax(layer.name, layer.spec.axis)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        axis = layer.spec.axis
        g.softmax(bottoms[0], tops[0], layer.name, axis)


def _normalization(layer) -> str:
    lp = layer.spec.param
    if not lp.HasField("normalization") and lp.HasField("normalize"):
        return "VALID" if lp.normalize else "BATCH_SIZE"
    return {0: "FULL", 1: "VALID", 2: "BATCH_SIZE", 3: "NONE"}[lp.normalization]


def _scores_and_labels(x, label, axis, ignore_label, layer_name):
    """Caffe's view of (scores, labels): scores as (outer, classes, inner), the label blob read flat
    (label of (i, j) is ``label[i * inner + j]``), the mask of non-ignored positions, and labels with the
    ignored ones replaced by 0 (safe to gather)."""
    outer = int(np.prod(x.shape[:axis]))
    c = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:]))
    if label.numel() != outer * inner:
        raise InputError(f"layer '{layer_name}': label has {label.numel()} values, expected {outer * inner} "
                         f"(outer {outer} x inner {inner})")
    lab = label.reshape(outer, inner).to(torch.int64)
    valid = torch.ones_like(lab, dtype=torch.bool) if ignore_label is None else lab != ignore_label
    safe = torch.where(valid, lab, torch.zeros_like(lab))
    if bool(((safe < 0) | (safe >= c)).any()):
        raise InputError(f"layer '{layer_name}': labels must lie in [0, {c}), got "
                         f"{sorted(set(safe[(safe < 0) | (safe >= c)].tolist()))[:5]}")
    return x.reshape(outer, c, inner), valid, safe


class CaffeSoftmaxWithLoss(CaffeLayerModule):
    """softmax_loss_layer.cpp: ``loss = -sum log(max(p[label], FLT_MIN)) / normalizer`` over non-ignored
    positions; normalizer FULL (outer*inner), VALID (non-ignored count), BATCH_SIZE (outer) or NONE (1),
    at least 1. An optional second top is the softmax."""

    def __init__(self, name, axis, normalization, ignore_label, n_tops):
        super().__init__(name)
        self.axis, self.normalization, self.ignore_label, self.n_tops = axis, normalization, ignore_label, n_tops

    def forward(self, x, label):
        prob = torch.softmax(x, self.axis)
        p3, valid, safe = _scores_and_labels(prob, label, self.axis, self.ignore_label, self.caffe_name)
        outer, inner = p3.shape[0], p3.shape[2]
        picked = p3.gather(1, safe.unsqueeze(1)).squeeze(1)
        nll = -torch.log(picked.clamp_min(FLT_MIN))
        loss = torch.where(valid, nll, torch.zeros_like(nll)).sum()
        if self.normalization == "FULL":
            norm = float(outer * inner)
        elif self.normalization == "VALID":
            norm = valid.sum().to(x.dtype) if self.ignore_label is not None else float(outer * inner)
        elif self.normalization == "BATCH_SIZE":
            norm = float(outer)
        else:
            norm = 1.0
        if isinstance(norm, torch.Tensor):
            loss = loss / norm.clamp_min(1.0)
        else:
            loss = loss / max(1.0, norm)
        return [loss, prob][: self.n_tops]


def _loss_params(layer):
    lp = layer.spec.param
    axis = layer.spec.axis
    ignore = lp.ignore_label if lp.HasField("ignore_label") else None
    return axis, _normalization(layer), ignore


def _nll(g, name: str, logp: str, lab: str, ignore) -> str:
    """-log p[label] per position (0 where label == ignore): NegativeLogLikelihoodLoss from opset 12; before it,
    GatherElements of the label's log-probability (opset 11), summed over the size-1 class axis, negated."""
    nll = g.tmp(f"{name}/nll")
    if g.opset >= 12:
        attrs = {"reduction": "none"}
        if ignore is not None:
            attrs["ignore_index"] = ignore
        g.node("NegativeLogLikelihoodLoss", [logp, lab], [nll], f"{name}/nll", **attrs)
        return nll
    safe = lab
    if ignore is not None:
        safe = g.tmp(f"{name}/nll_label")
        g.node("Where", [g.equal(name, lab, ignore), g.const_i64(f"{name}/nll_zero", 0), lab], [safe],
               f"{name}/nll_label")
    idx, picked, summed = (g.tmp(f"{name}/{w}") for w in ("nll_index", "nll_pick", "nll_logp"))
    g.unsqueeze(safe, idx, f"{name}/nll_index", [1])
    g.node("GatherElements", [logp, idx], [picked], f"{name}/nll_pick", axis=1)
    g.reduce("ReduceSum", picked, summed, f"{name}/nll_logp", [1], keepdims=0)
    if ignore is None:
        g.node("Neg", [summed], [nll], f"{name}/nll")
        return nll
    neg = g.tmp(f"{name}/nll_all")
    g.node("Neg", [summed], [neg], f"{name}/nll_all")
    g.node("Where", [g.equal(name, lab, ignore), g.scalar(0.0), neg], [nll], f"{name}/nll")
    return nll


@register("SoftmaxWithLoss")
class SoftmaxWithLossConverter(Converter):
    def build(self, layer, phase):
        return CaffeSoftmaxWithLoss(layer.name, *_loss_params(layer), len(layer.tops))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        axis, norm, ignore = _loss_params(layer)
        name = layer.name
        shape = layer.bottom_shapes[0]
        if axis != 1:
            raise NetDefinitionError(f"layer '{name}': ONNX export of SoftmaxWithLoss supports axis 1 only")
        prob = tops[1] if len(tops) > 1 else g.tmp(f"{name}/prob")
        g.softmax(bottoms[0], prob, f"{name}/softmax", 1)
        clamped = g.tmp(f"{name}/clamped")
        g.node("Max", [prob, g.scalar(FLT_MIN)], [clamped], f"{name}/clamp")
        logp = g.tmp(f"{name}/logp")
        g.node("Log", [clamped], [logp], f"{name}/log")
        lab = g.label_int(name, bottoms[1], [0] + list(shape[2:]))
        nll = _nll(g, name, logp, lab, ignore)
        total = g.tmp(f"{name}/sum")
        if norm == "NONE" or (norm == "VALID" and ignore is not None):
            g.node("ReduceSum", [nll], [total if norm != "NONE" else tops[0]], f"{name}/sum" if norm != "NONE"
                   else name, keepdims=0)
            if norm == "NONE":
                return
            valid = g.tmp(f"{name}/valid")
            g.node("Not", [g.equal(name, lab, ignore)], [valid], f"{name}/valid")
            vf = g.tmp(f"{name}/valid_f")
            g.node("Cast", [valid], [vf], f"{name}/valid_cast", to=1)
            cnt = g.tmp(f"{name}/count")
            g.node("ReduceSum", [vf], [cnt], f"{name}/count", keepdims=0)
            cnt1 = g.tmp(f"{name}/count1")
            g.node("Max", [cnt, g.scalar(1.0)], [cnt1], f"{name}/count_at_least_1")
            g.node("Div", [total, cnt1], tops[:1], name)
        elif norm in ("FULL", "VALID"):
            g.node("ReduceMean", [nll], tops[:1], name, keepdims=0)
        else:  # BATCH_SIZE: sum over inner positions, mean over the batch
            if len(shape) > 2:
                per = g.tmp(f"{name}/per_sample")
                g.reduce("ReduceSum", nll, per, f"{name}/per_sample", list(range(1, len(shape) - 1)), keepdims=0)
                nll = per
            g.node("ReduceMean", [nll], tops[:1], name, keepdims=0)


class CaffeAccuracy(CaffeLayerModule):
    """accuracy_layer.cpp: a position is correct when fewer than ``top_k`` classes score ``>=`` the true class
    (the true class itself not counted); ``accuracy = correct / count`` over non-ignored positions (0 when
    none); an optional second top gives the per-class accuracy."""

    def __init__(self, name, axis, top_k, ignore_label, n_tops):
        super().__init__(name)
        self.axis, self.top_k, self.ignore_label, self.n_tops = axis, top_k, ignore_label, n_tops

    @torch.no_grad()
    def forward(self, x, label):
        s, valid, safe = _scores_and_labels(x, label, self.axis, self.ignore_label, self.caffe_name)
        c = s.shape[1]
        true = s.gather(1, safe.unsqueeze(1))
        better = (s >= true).sum(1) - 1
        correct = (better < self.top_k) & valid
        count = valid.sum()
        acc = correct.sum().to(x.dtype) / count.to(x.dtype) if int(count) else torch.zeros((), dtype=x.dtype)
        outs = [acc.reshape(())]
        if self.n_tops > 1:
            per_count = torch.zeros(c, dtype=x.dtype, device=x.device).index_add_(
                0, safe[valid], torch.ones_like(safe[valid], dtype=x.dtype))
            per_correct = torch.zeros(c, dtype=x.dtype, device=x.device).index_add_(
                0, safe[correct], torch.ones_like(safe[correct], dtype=x.dtype))
            outs.append(torch.where(per_count > 0, per_correct / per_count.clamp_min(1), torch.zeros_like(per_count)))
        return outs


def _acc_params(layer):
    ap = layer.spec.param
    axis = layer.spec.axis
    ignore = ap.ignore_label if ap.HasField("ignore_label") else None
    return axis, ap.top_k, ignore


@register("Accuracy")
class AccuracyConverter(Converter):
    def build(self, layer, phase):
        return CaffeAccuracy(layer.name, *_acc_params(layer), len(layer.tops))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        axis, top_k, ignore = _acc_params(layer)
        name = layer.name
        shape = layer.bottom_shapes[0]
        if axis != 1 or len(tops) > 1:
            raise NetDefinitionError(f"layer '{name}': ONNX export of Accuracy supports axis 1 and one top")
        lab = g.label_int(name, bottoms[1], [0] + list(shape[2:]))
        if ignore is not None:
            valid = g.tmp(f"{name}/valid")
            g.node("Not", [g.equal(name, lab, ignore)], [valid], f"{name}/valid")
            safe = g.tmp(f"{name}/safe_label")
            g.node("Where", [valid, lab, g.const_i64(f"{name}/zero", 0)], [safe], f"{name}/safe_label")
            lab = safe
        idx = g.tmp(f"{name}/index")
        g.unsqueeze(lab, idx, f"{name}/index", [1])
        true = g.tmp(f"{name}/true_score")
        g.node("GatherElements", [bottoms[0], idx], [true], f"{name}/true_score", axis=1)
        ge = g.tmp(f"{name}/ge")
        g.greater_or_equal(bottoms[0], true, ge, f"{name}/ge")
        gef = g.tmp(f"{name}/ge_f")
        g.node("Cast", [ge], [gef], f"{name}/ge_cast", to=1)
        n_ge = g.tmp(f"{name}/n_ge")
        g.reduce("ReduceSum", gef, n_ge, f"{name}/n_ge", [1], keepdims=0)
        ok = g.tmp(f"{name}/correct")
        g.less_or_equal(n_ge, g.scalar(float(top_k)), ok, f"{name}/correct")
        okf = g.tmp(f"{name}/correct_f")
        g.node("Cast", [ok], [okf], f"{name}/correct_cast", to=1)
        if ignore is None:
            g.node("ReduceMean", [okf], tops[:1], name, keepdims=0)
            return
        vf = g.tmp(f"{name}/valid_f")
        g.node("Cast", [valid], [vf], f"{name}/valid_cast", to=1)
        both = g.tmp(f"{name}/correct_valid")
        g.node("Mul", [okf, vf], [both], f"{name}/correct_valid")
        num = g.tmp(f"{name}/num")
        g.node("ReduceSum", [both], [num], f"{name}/num", keepdims=0)
        den = g.tmp(f"{name}/den")
        g.node("ReduceSum", [vf], [den], f"{name}/den", keepdims=0)
        den1 = g.tmp(f"{name}/den1")
        g.node("Max", [den, g.scalar(1.0)], [den1], f"{name}/den_at_least_1")
        g.node("Div", [num, den1], tops[:1], name)


class CaffeEuclideanLoss(CaffeLayerModule):
    """euclidean_loss_layer.cpp: ``sum((a - b)^2) / (2 N)``."""

    def forward(self, a, b):
        d = a - b.reshape(a.shape)
        return [(d * d).sum() / (2.0 * a.shape[0])]


@register("EuclideanLoss")
class EuclideanLossConverter(Converter):
    def build(self, layer, phase):
        return CaffeEuclideanLoss(layer.name)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        name = layer.name
        d = g.tmp(f"{name}/diff")
        g.node("Sub", bottoms[:2], [d], f"{name}/diff")
        sq = g.tmp(f"{name}/sq")
        g.node("Mul", [d, d], [sq], f"{name}/square")
        s = g.tmp(f"{name}/sum")
        g.node("ReduceSum", [sq], [s], f"{name}/sum", keepdims=0)
        half = g.tmp(f"{name}/half")
        g.node("Mul", [s, g.scalar(0.5)], [half], f"{name}/half")
        n = g.batch_size(name, bottoms[0])
        g.node("Div", [half, n], tops[:1], name)
