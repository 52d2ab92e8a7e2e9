"""Caffe's InnerProduct layer (src/caffe/layers/inner_product_layer.cpp).

The bottom is flattened from ``axis`` (default 1): ``M = prod(shape[:axis])`` rows of ``K = prod(shape[axis:])``;
the weight is ``(N, K)``, or ``(K, N)`` with ``transpose: true``; the top has shape ``shape[:axis] + (N,)``.
"""
from __future__ import annotations

import math

import torch.nn.functional as F

from models.layers.registry import CaffeLayerModule, Converter, register


def canonical_axis(axis: int, ndim: int) -> int:
    """Caffe's Blob::CanonicalAxisIndex: negative axes count from the end."""
    return axis + ndim if axis < 0 else axis


class CaffeInnerProduct(CaffeLayerModule):
    def __init__(self, name, k, n, axis=1, transpose=False, bias_term=True):
        super().__init__(name)
        self.axis, self.transpose, self.bias_term = axis, transpose, bias_term
        self.add_blob((k, n) if transpose else (n, k))
        if bias_term:
            self.add_blob((n,))

    def forward(self, x):
        axis = canonical_axis(self.axis, x.dim())
        lead = x.shape[:axis]
        x2 = x.reshape(math.prod(lead), -1)
        b = self.blobs[1] if self.bias_term else None
        if self.transpose:
            y = x2 @ self.blobs[0]
            if b is not None:
                y = y + b
        else:
            y = F.linear(x2, self.blobs[0], b)
        return [y.reshape(*lead, y.shape[-1])]


def _params(layer):
    sp = layer.spec
    return sp.axis, sp.k, sp.num_output, sp.transpose, sp.bias_term


@register("InnerProduct")
class InnerProductConverter(Converter):
    def build(self, layer, phase):
        axis, k, n, transpose, bias = _params(layer)
        return CaffeInnerProduct(layer.name, k, n, axis, transpose, bias)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        axis, k, n, transpose, bias = _params(layer)
        name = layer.name
        flat = g.tmp(f"{name}/flatten")
        g.node("Flatten", bottoms[:1], [flat], f"{name}/flatten", axis=axis)
        inputs = [flat, g.param(name, 0, blobs[0])]
        if bias:
            inputs.append(g.param(name, 1, blobs[1]))
        out = tops[0] if axis == 1 else g.tmp(f"{name}/gemm")
        g.node("Gemm", inputs, [out], name if axis == 1 else f"{name}/gemm", transB=0 if transpose else 1)
        if axis != 1:
            shape = [-1] + list(layer.top_shapes[0][1:])  # the batch axis is inferred
            g.node("Reshape", [out, g.const_i64(f"{name}/shape", shape)], tops[:1], name)
