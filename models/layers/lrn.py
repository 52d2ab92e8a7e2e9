"""Caffe's LRN layer (src/caffe/layers/lrn_layer.cpp), both normalisation regions.

* ACROSS_CHANNELS: ``y = x * (k + alpha/n * sum_{c'=c-(n-1)/2}^{c+(n-1)/2} x_{c'}^2) ^ -beta`` (zero padded
  across channels). torch's ``local_response_norm(n, alpha, beta, k)`` and ONNX ``LRN(size, alpha, beta, bias=k)``
  compute the same for odd ``n``; Caffe's ``k`` is kept (several converters force 1).
* WITHIN_CHANNEL: Caffe builds it from Power(2), AVE Pooling (kernel n, pad (n-1)/2, stride 1: the divisor is
  always n^2), Power(power=-beta, scale=alpha, shift=1) and Eltwise PROD:
  ``y = x * (1 + alpha/n^2 * sum_{n x n window} x^2) ^ -beta``; ``k`` is ignored.
"""
from __future__ import annotations

import torch.nn.functional as F

from models.errors import NetDefinitionError
from models.layers.registry import CaffeLayerModule, Converter, register


class CaffeLRN(CaffeLayerModule):
    def __init__(self, name, size=5, alpha=1.0, beta=0.75, k=1.0, region="ACROSS_CHANNELS"):
        super().__init__(name)
        if size % 2 == 0:
            raise NetDefinitionError(f"layer '{name}': LRN local_size must be odd (lrn_layer.cpp), got {size}")
        self.size, self.alpha, self.beta, self.k, self.region = size, alpha, beta, k, region

    def forward(self, x):
        if self.region == "ACROSS_CHANNELS":
            return [F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)]
        pad = (self.size - 1) // 2
        mean_sq = F.avg_pool2d(x * x, self.size, 1, pad, count_include_pad=True)
        return [x * (1.0 + self.alpha * mean_sq).pow(-self.beta)]


def _params(layer):
    sp = layer.spec
    return sp.size, sp.alpha, sp.beta, sp.k, sp.region


@register("LRN")
class LRNConverter(Converter):
    def build(self, layer, phase):
        return CaffeLRN(layer.name, *_params(layer))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        size, alpha, beta, k, region = _params(layer)
        name = layer.name
        if region == "ACROSS_CHANNELS":
            g.node("LRN", bottoms[:1], tops[:1], name, size=size, alpha=alpha, beta=beta, bias=k)
            return
        x = bottoms[0]
        pad = (size - 1) // 2
        sq = g.tmp(f"{name}/square")
        g.node("Mul", [x, x], [sq], f"{name}/square")
        padded = g.pad(name, sq, (pad, pad), (pad, pad), 0.0)
        mean = g.tmp(f"{name}/pool")
        g.node("AveragePool", [padded], [mean], f"{name}/pool", kernel_shape=[size, size], strides=[1, 1])
        scaled = g.tmp(f"{name}/scaled")
        g.node("Mul", [mean, g.scalar(alpha)], [scaled], f"{name}/alpha")
        shifted = g.tmp(f"{name}/shifted")
        g.node("Add", [scaled, g.scalar(1.0)], [shifted], f"{name}/shift")
        factor = g.tmp(f"{name}/factor")
        g.node("Pow", [shifted, g.scalar(-beta)], [factor], f"{name}/power")
        g.node("Mul", [x, factor], tops[:1], f"{name}/product")
