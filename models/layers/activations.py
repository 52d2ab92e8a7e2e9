"""Caffe's element-wise neuron layers: ReLU, Sigmoid, TanH, AbsVal, Power, BNLL, ELU (src/caffe/layers/
*_layer.cpp) and Dropout (dropout_layer.cpp)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.errors import InputError
from models.layers.registry import CaffeLayerModule, Converter, register


class Elementwise(CaffeLayerModule):
    def __init__(self, name, fn):
        super().__init__(name)
        self.fn = fn

    def forward(self, x):
        return [self.fn(x)]


def _simple(type_name, torch_fn, onnx_op):
    @register(type_name)
    class _Conv(Converter):
        def build(self, layer, phase):
            return Elementwise(layer.name, torch_fn)

        def export(self, layer, g, bottoms, tops, blobs, phase):
            g.node(onnx_op, bottoms[:1], tops[:1], layer.name)

    _Conv.__name__ = f"{type_name}Converter"
    return _Conv


_simple("Sigmoid", torch.sigmoid, "Sigmoid")
_simple("TanH", torch.tanh, "Tanh")
_simple("AbsVal", torch.abs, "Abs")
_simple("BNLL", F.softplus, "Softplus")  # bnll_layer.cpp: log(1 + exp(x)), computed stably


@register("ReLU")
class ReLUConverter(Converter):
    """relu_layer.cpp: ``y = max(x, 0) + negative_slope * min(x, 0)``."""

    def build(self, layer, phase):
        slope = layer.proto.relu_param.negative_slope
        if slope == 0:
            return Elementwise(layer.name, F.relu)
        return Elementwise(layer.name, lambda x: F.leaky_relu(x, slope))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        slope = layer.proto.relu_param.negative_slope
        if slope == 0:
            g.node("Relu", bottoms[:1], tops[:1], layer.name)
        else:
            g.node("LeakyRelu", bottoms[:1], tops[:1], layer.name, alpha=slope)


@register("ELU")
class ELUConverter(Converter):
    """elu_layer.cpp: ``y = x if x > 0 else alpha * (exp(x) - 1)``."""

    def build(self, layer, phase):
        alpha = layer.proto.elu_param.alpha
        return Elementwise(layer.name, lambda x: F.elu(x, alpha))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        g.node("Elu", bottoms[:1], tops[:1], layer.name, alpha=layer.proto.elu_param.alpha)


class CaffePower(CaffeLayerModule):
    """power_layer.cpp: ``y = (shift + scale * x) ^ power``; constant ``shift^power`` (1 if power = 0) when
    ``power == 0`` or ``scale == 0``."""

    def __init__(self, name, power=1.0, scale=1.0, shift=0.0):
        super().__init__(name)
        self.power, self.scale, self.shift = power, scale, shift

    def forward(self, x):
        if self.power == 0 or self.scale == 0:
            value = 1.0 if self.power == 0 else float(np.float32(self.shift) ** np.float32(self.power))
            return [torch.full_like(x, value)]
        y = x
        if self.scale != 1:
            y = y * self.scale
        if self.shift != 0:
            y = y + self.shift
        if self.power != 1:
            y = y.pow(self.power)
        return [y]


@register("Power")
class PowerConverter(Converter):
    def build(self, layer, phase):
        pp = layer.proto.power_param
        return CaffePower(layer.name, pp.power, pp.scale, pp.shift)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        pp = layer.proto.power_param
        name, y = layer.name, bottoms[0]
        if pp.power == 0 or pp.scale == 0:
            value = 1.0 if pp.power == 0 else float(np.float32(pp.shift) ** np.float32(pp.power))
            zero = g.tmp(f"{name}/zero")
            g.node("Mul", [y, g.scalar(0.0)], [zero], f"{name}/zero")
            g.node("Add", [zero, g.scalar(value)], tops[:1], name)
            return
        steps = [(op, v) for op, v, skip in (("Mul", pp.scale, 1.0), ("Add", pp.shift, 0.0), ("Pow", pp.power, 1.0))
                 if v != skip]
        if not steps:
            g.node("Identity", [y], tops[:1], name)
            return
        for i, (op, v) in enumerate(steps):
            out = tops[0] if i == len(steps) - 1 else g.tmp(f"{name}/{op.lower()}")
            g.node(op, [y, g.scalar(v)], [out], name if i == len(steps) - 1 else f"{name}/{op.lower()}")
            y = out


class CaffeDropout(CaffeLayerModule):
    """dropout_layer.cpp: in TRAIN ``y = x * mask * 1/(1 - ratio)`` with ``mask ~ Bernoulli(1 - ratio)``;
    identity in TEST. ``forward(x, mask=m)`` uses a given 0/1 mask (the golden fixtures recover Caffe's)."""

    def __init__(self, name, ratio=0.5, train=False):
        super().__init__(name)
        self.ratio, self.train_phase = ratio, train
        self.scale = float(np.float32(1.0) / (np.float32(1.0) - np.float32(ratio)))

    def forward(self, x, mask=None):
        if not self.train_phase:
            return [x.view_as(x)]  # a distinct tensor: the top keeps its own gradient
        if mask is None:
            mask = torch.bernoulli(torch.full_like(x, 1.0 - self.ratio))
        else:
            mask = torch.as_tensor(mask, device=x.device, dtype=x.dtype)
            if tuple(mask.shape) != tuple(x.shape):
                raise InputError(f"layer '{self.caffe_name}': dropout mask has shape {tuple(mask.shape)}, "
                                 f"expected {tuple(x.shape)}")
        return [x * mask * self.scale]


@register("Dropout")
class DropoutConverter(Converter):
    def build(self, layer, phase):
        return CaffeDropout(layer.name, layer.proto.dropout_param.dropout_ratio, phase == "TRAIN")

    def export(self, layer, g, bottoms, tops, blobs, phase):
        if phase != "TRAIN":
            g.node("Identity", bottoms[:1], tops[:1], layer.name)
            return
        mask = g.mask_input(layer.name, layer.top_shapes[0])
        scale = float(np.float32(1.0) / (np.float32(1.0) - np.float32(layer.proto.dropout_param.dropout_ratio)))
        masked = g.tmp(f"{layer.name}/masked")
        g.node("Mul", [bottoms[0], mask], [masked], f"{layer.name}/mask")
        g.node("Mul", [masked, g.scalar(scale)], tops[:1], layer.name)
