"""Caffe's BatchNorm, Scale and Bias layers (src/caffe/layers/{batch_norm,scale,bias}_layer.cpp).

BatchNorm holds three blobs: the running mean and variance *sums* and a scale factor; with
``use_global_stats`` (default: true in TEST, false in TRAIN) it normalises by ``blob / scale_factor``
(``scale_factor = 0`` gives zeros). In TRAIN it uses the batch statistics (biased variance) and updates the
running sums: ``s = maf * s + 1``, ``mean_sum = maf * mean_sum + mean``,
``var_sum = maf * var_sum + m/(m-1) * var``. Caffe BatchNorm has no affine part: a Scale layer follows it.
"""
from __future__ import annotations

import numpy as np
import torch

from models.layers.registry import CaffeLayerModule, Converter, register


class CaffeBatchNorm(CaffeLayerModule):
    def __init__(self, name, channels, use_global_stats=True, eps=1e-5, maf=0.999):
        super().__init__(name)
        self.use_global_stats, self.eps, self.maf = use_global_stats, eps, maf
        for shape in ((channels,), (channels,), (1,)):
            self.add_blob(shape, requires_grad=False)

    def _view(self, t, x):
        return t.reshape(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x):
        if self.use_global_stats:
            sf = self.blobs[2].detach()[0]
            factor = torch.where(sf == 0, torch.zeros_like(sf), 1.0 / sf)
            mean = self._view(self.blobs[0].detach() * factor, x)
            var = self._view(self.blobs[1].detach() * factor, x)
            return [(x - mean) / torch.sqrt(var + self.eps)]
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dims, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dims, keepdim=True)
        with torch.no_grad():
            m = x.numel() // x.shape[1]
            corr = m / (m - 1) if m > 1 else 1.0
            self.blobs[2].mul_(self.maf).add_(1.0)
            self.blobs[0].mul_(self.maf).add_(mean.flatten())
            self.blobs[1].mul_(self.maf).add_(var.flatten() * corr)
        return [centred / torch.sqrt(var + self.eps)]


def _bn_params(layer, phase):
    spec = layer.spec
    return spec.global_stats(phase), spec.eps, spec.maf


@register("BatchNorm")
class BatchNormConverter(Converter):
    frozen_blobs = (0, 1, 2)

    def build(self, layer, phase):
        use_global, eps, maf = _bn_params(layer, phase)
        return CaffeBatchNorm(layer.name, layer.spec.channels, use_global, eps, maf)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        use_global, eps, _ = _bn_params(layer, phase)
        name, x = layer.name, bottoms[0]
        nd = len(layer.bottom_shapes[0])
        bshape = (1, -1) + (1,) * (nd - 2)
        centred = g.tmp(f"{name}/centred")
        std = g.tmp(f"{name}/std")
        if use_global:
            sf = float(blobs[2].reshape(-1)[0])
            factor = np.float32(0.0) if sf == 0 else np.float32(1.0) / np.float32(sf)
            mean = (blobs[0].astype(np.float32) * factor).reshape(bshape)
            var = (blobs[1].astype(np.float32) * factor).reshape(bshape)
            g.node("Sub", [x, g.const(f"{name}/mean", mean)], [centred], f"{name}/sub_mean")
            g.node("Div", [centred, g.const(f"{name}/std", np.sqrt(var + np.float32(eps)))], tops[:1], name)
            return
        axes = [0] + list(range(2, nd))
        mean = g.tmp(f"{name}/batch_mean")
        g.reduce("ReduceMean", x, mean, f"{name}/batch_mean", axes)
        g.node("Sub", [x, mean], [centred], f"{name}/sub_mean")
        sq = g.tmp(f"{name}/sq")
        g.node("Mul", [centred, centred], [sq], f"{name}/square")
        var = g.tmp(f"{name}/batch_var")
        g.reduce("ReduceMean", sq, var, f"{name}/batch_var", axes)
        ve = g.tmp(f"{name}/var_eps")
        g.node("Add", [var, g.scalar(eps)], [ve], f"{name}/add_eps")
        g.node("Sqrt", [ve], [std], f"{name}/sqrt")
        g.node("Div", [centred, std], tops[:1], name)


class CaffeScaleBias(CaffeLayerModule):
    """scale_layer.cpp / bias_layer.cpp: ``y = x * s (+ b)`` or ``y = x + b``, the factor broadcast over
    ``x.shape[axis : axis + factor.ndim]``; the factor is a learned blob or the second bottom."""

    def __init__(self, name, op, axis, shape, from_bottom, bias_term):
        super().__init__(name)
        self.op, self.axis, self.from_bottom, self.bias_term = op, axis, from_bottom, bias_term
        if not from_bottom:
            self.add_blob(shape)
        if op == "Scale" and bias_term:
            self.add_blob(shape)

    def _b(self, t, x):
        trail = x.dim() - self.axis - t.dim()
        return t.reshape(*t.shape, *([1] * trail))

    def forward(self, x, *rest):
        i = 0
        if self.from_bottom:
            factor = rest[0]
        else:
            factor, i = self.blobs[0], 1
        if self.op == "Bias":
            return [x + self._b(factor, x)]
        y = x * self._b(factor, x)
        if self.bias_term:
            y = y + self._b(self.blobs[i], x)
        return [y]


def _sb_params(layer):
    spec = layer.spec
    return spec.axis, spec.shape, spec.from_bottom, spec.bias_term


class _ScaleBiasConverter(Converter):
    def build(self, layer, phase):
        axis, shape, from_bottom, bias_term = _sb_params(layer)
        return CaffeScaleBias(layer.name, layer.type, axis, shape, from_bottom, bias_term)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        axis, shape, from_bottom, bias_term = _sb_params(layer)
        name = layer.name
        trail = len(layer.bottom_shapes[0]) - axis - len(shape)
        if from_bottom:
            factor = bottoms[1]
            if trail:
                factor = g.tmp(f"{name}/factor")
                axes = list(range(len(shape), len(shape) + trail))
                g.unsqueeze(bottoms[1], factor, f"{name}/unsqueeze", axes)
            params = blobs
        else:
            factor = g.param(name, 0, blobs[0].reshape(*shape, *([1] * trail)))
            params = blobs[1:]
        op = "Mul" if layer.type == "Scale" else "Add"
        if not bias_term:
            g.node(op, [bottoms[0], factor], tops[:1], name)
            return
        scaled = g.tmp(f"{name}/scaled")
        g.node(op, [bottoms[0], factor], [scaled], f"{name}/scale")
        idx = 0 if from_bottom else 1
        bias = g.param(name, idx, params[0].reshape(*shape, *([1] * trail)))
        g.node("Add", [scaled, bias], tops[:1], name)


@register("Scale")
class ScaleConverter(_ScaleBiasConverter):
    pass


@register("Bias")
class BiasConverter(_ScaleBiasConverter):
    pass
