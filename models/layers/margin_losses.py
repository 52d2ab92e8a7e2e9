"""Caffe's HingeLoss and ContrastiveLoss layers, forward and backward
(src/caffe/layers/{hinge_loss,contrastive_loss}_layer.cpp).

Each backward is Caffe's ``Backward_cpu`` transcribed in a ``torch.autograd.Function`` (ContrastiveLoss's
non-legacy gradient divides by ``dist + 1e-4``, which autograd of its forward would not; HingeLoss L1 takes the
sign of the margins, 0 where a margin is 0). The loss top is a 0-d float32 tensor; the ``loss_weight`` arrives as
the top's gradient (``top[0]->cpu_diff()[0]``). Each converter also exports the forward to ONNX.
"""
from __future__ import annotations

import numpy as np
import torch

from models.errors import InputError, NetDefinitionError
from models.layers.loss_inputs import (export_item_labels, export_items, export_mean_over_items, gated, item_labels,
                                       no_autocast, propagate_down, refuse_forced_label_diff, refuse_label_grads)
from models.layers.registry import CaffeLayerModule, Converter, register


class _Hinge(torch.autograd.Function):
    """hinge_loss_layer.cpp: ``m_ij = max(0, 1 + s_ij x_ij)`` with ``s = -1`` at the item's label and ``+1``
    elsewhere; ``loss = sum |m| / num`` (L1) or ``sum m^2 / num`` (L2); diff ``sign(s m) top_diff / num`` (L1) or
    ``s m * (top_diff * 2 / num)`` (L2)."""

    @staticmethod
    def forward(ctx, x, label, lab, l2, name):
        num = x.shape[0]
        flat = x.reshape(num, -1)
        sign = torch.ones_like(flat)
        sign.scatter_(1, lab[:, None], -1.0)
        margin = (1 + sign * flat).clamp_min(0)
        ctx.save_for_backward(sign, margin)
        ctx.shape, ctx.l2, ctx.name = x.shape, l2, name
        return ((margin * margin).sum() if l2 else margin.abs().sum()) / num

    @staticmethod
    def backward(ctx, top_diff):
        refuse_label_grads(ctx, "HingeLoss")
        sign, margin = ctx.saved_tensors
        num = ctx.shape[0]
        d = sign * margin
        diff = d * (top_diff * 2 / num) if ctx.l2 else torch.sign(d) * (top_diff / num)
        return diff.reshape(ctx.shape), None, None, None, None


class CaffeHingeLoss(CaffeLayerModule):
    """HingeLoss: bottoms ``(N, ...)`` scores and ``N`` labels; ``hinge_loss_param.norm`` L1 (default) or L2;
    top: the 0-d loss."""

    def __init__(self, name, pd, l2):
        super().__init__(name)
        self.pd, self.l2 = pd, l2

    def forward(self, x, label):
        x, label = gated([x, label], self.pd)
        with no_autocast(x):
            x = x.float()
            num = x.shape[0]
            lab = item_labels(label, num, x.numel() // max(num, 1), self.caffe_name, "HingeLoss")
            return [_Hinge.apply(x, label, lab, self.l2, self.caffe_name)]


class _Contrastive(torch.autograd.Function):
    """contrastive_loss_layer.cpp: ``d = a - b``, ``D = |d|^2`` per item; similar items (``int(y) != 0``) add
    ``D``, dissimilar ones ``max(margin - D, 0)`` (legacy_version) or ``max(margin - sqrt(D), 0)^2``;
    ``loss = sum / num / 2``. Diffs, ``alpha = +-top_diff / num`` for a / b: similar ``alpha d``; dissimilar with
    ``mdist > 0`` ``-alpha d`` (legacy, ``mdist = margin - D``) or ``-alpha mdist / (sqrt(D) + 1e-4) d``
    (``mdist = margin - sqrt(D)``); else 0."""

    @staticmethod
    def forward(ctx, a, b, similar, margin, legacy):
        num = a.shape[0]
        d = (a - b).reshape(num, -1)
        dist_sq = (d * d).sum(1)
        if legacy:
            far = (margin - dist_sq).clamp_min(0)
        else:
            far = (margin - torch.sqrt(dist_sq)).clamp_min(0)
            far = far * far
        per = torch.where(similar, dist_sq, far)
        ctx.save_for_backward(d, dist_sq, similar)
        ctx.shape, ctx.margin, ctx.legacy = a.shape, margin, legacy
        return per.sum() / num / 2

    @staticmethod
    def backward(ctx, top_diff):
        d, dist_sq, similar = ctx.saved_tensors
        num = ctx.shape[0]
        out = []
        for i, sign in ((0, 1.0), (1, -1.0)):
            if not ctx.needs_input_grad[i]:
                out.append(None)
                continue
            alpha = sign * top_diff / num
            if ctx.legacy:
                mdist = ctx.margin - dist_sq
                beta = (-alpha).expand_as(mdist)
            else:
                dist = torch.sqrt(dist_sq)
                mdist = ctx.margin - dist
                beta = -alpha * mdist / (dist + np.float32(1e-4))
            coef = torch.where(similar, alpha.expand_as(beta), torch.where(mdist > 0, beta, torch.zeros_like(beta)))
            out.append((coef[:, None] * d).reshape(ctx.shape))
        return out[0], out[1], None, None, None


class CaffeContrastiveLoss(CaffeLayerModule):
    """ContrastiveLoss: bottoms ``a``, ``b`` ``(N, C[, 1, 1])`` and the similarity ``y`` (N values; Caffe never
    writes a diff into it); ``contrastive_loss_param`` margin (default 1) and legacy_version; top: the 0-d loss."""

    def __init__(self, name, pd, margin, legacy):
        super().__init__(name)
        self.pd, self.margin, self.legacy = pd, margin, legacy

    def forward(self, a, b, y):
        a, b, y = gated([a, b, y.detach()], self.pd)
        with no_autocast(a):
            a, b = a.float(), b.float()
            num = a.shape[0]
            flat = y.reshape(-1)
            if flat.numel() < num:
                raise InputError(f"layer '{self.caffe_name}' (ContrastiveLoss): {flat.numel()} similarity values "
                                 f"for {num} pairs")
            similar = flat[:num].to(torch.int64) != 0
            return [_Contrastive.apply(a, b.reshape(a.shape), similar, self.margin, self.legacy)]


@register("HingeLoss")
class HingeLossConverter(Converter):
    def build(self, layer, phase):
        pd = propagate_down(layer)
        refuse_forced_label_diff(layer, pd, (1,))
        norm = layer.proto.hinge_loss_param.norm
        if norm not in (1, 2):
            raise NetDefinitionError(f"layer '{layer.name}' (HingeLoss): Unknown Norm {norm}")
        return CaffeHingeLoss(layer.name, pd, norm == 2)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        name = layer.name
        flat, n = export_items(layer, g, bottoms[0])
        lab = export_item_labels(layer, g, bottoms[1], [-1])
        dim = int(np.prod(layer.bottom_shapes[0][1:]))
        sign = g.tmp(f"{name}/sign")  # -1 at the label, +1 elsewhere
        g.node("OneHot", [lab, g.const_i64(f"{name}/depth", [dim]), g.const(f"{name}/sign_values",
                                                                            np.array([1, -1], np.float32))],
               [sign], f"{name}/sign", axis=-1)
        signed = g.tmp(f"{name}/signed")
        g.node("Mul", [sign, flat], [signed], f"{name}/signed")
        shifted = g.tmp(f"{name}/one_plus")
        g.node("Add", [signed, g.scalar(1.0)], [shifted], f"{name}/one_plus")
        margin = g.tmp(f"{name}/margin")
        g.node("Relu", [shifted], [margin], f"{name}/margin")
        if layer.proto.hinge_loss_param.norm == 2:
            sq = g.tmp(f"{name}/margin_sq")
            g.node("Mul", [margin, margin], [sq], f"{name}/margin_sq")
            margin = sq
        total = g.tmp(f"{name}/sum")
        g.reduce("ReduceSum", margin, total, f"{name}/sum", keepdims=0)
        export_mean_over_items(layer, g, total, n, tops[0])


@register("ContrastiveLoss")
class ContrastiveLossConverter(Converter):
    def build(self, layer, phase):
        p = layer.proto.contrastive_loss_param
        return CaffeContrastiveLoss(layer.name, propagate_down(layer), float(np.float32(p.margin)),
                                    bool(p.legacy_version))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        name = layer.name
        p = layer.proto.contrastive_loss_param
        fa, n = export_items(layer, g, bottoms[0])
        fb = g.tmp(f"{name}/flat_b")
        g.node("Flatten", [bottoms[1]], [fb], f"{name}/flatten_b", axis=1)

        def op(kind, ins, what):
            out = g.tmp(f"{name}/{what}")
            g.node(kind, ins, [out], f"{name}/{what}")
            return out
        d = op("Sub", [fa, fb], "diff")
        dist_sq = g.tmp(f"{name}/dist_sq")
        g.reduce("ReduceSum", op("Mul", [d, d], "diff_sq"), dist_sq, f"{name}/dist_sq", [1], keepdims=0)
        y = export_item_labels(layer, g, bottoms[2], [-1], index=2)
        similar = op("Not", [g.equal(name, y, 0)], "similar")
        margin = g.scalar(float(np.float32(p.margin)))
        if p.legacy_version:
            far = op("Relu", [op("Sub", [margin, dist_sq], "mdist")], "far")
        else:
            r = op("Relu", [op("Sub", [margin, op("Sqrt", [dist_sq], "dist")], "mdist")], "far_dist")
            far = op("Mul", [r, r], "far")
        per = op("Where", [similar, dist_sq, far], "per_pair")
        total = g.tmp(f"{name}/sum")
        g.reduce("ReduceSum", per, total, f"{name}/sum", keepdims=0)
        export_mean_over_items(layer, g, total, n, tops[0], half=True)
