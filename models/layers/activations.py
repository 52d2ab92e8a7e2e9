"""Caffe's element-wise neuron layers: ReLU, PReLU, Sigmoid, TanH, AbsVal, Power, BNLL, ELU, Threshold, Exp, Log
(src/caffe/layers/*_layer.cpp) and Dropout (dropout_layer.cpp). Each reads its :mod:`models.specs` spec.

ONNX (opset 17): Relu/LeakyRelu, PRelu, Sigmoid, Tanh, Abs, Softplus (BNLL), Elu are the standard operators with
Caffe's formula; Power, Exp, Log, Threshold and Dropout are small Mul/Add/Pow/Exp/Log/Greater compositions."""
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
        slope = layer.spec.slope
        if slope == 0:
            return Elementwise(layer.name, F.relu)
        return Elementwise(layer.name, lambda x: F.leaky_relu(x, slope))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        slope = layer.spec.slope
        if slope == 0:
            g.node("Relu", bottoms[:1], tops[:1], layer.name)
        else:
            g.node("LeakyRelu", bottoms[:1], tops[:1], layer.name, alpha=slope)


@register("ELU")
class ELUConverter(Converter):
    """elu_layer.cpp: ``y = x if x > 0 else alpha * (exp(x) - 1)``."""

    def build(self, layer, phase):
        alpha = layer.spec.alpha
        return Elementwise(layer.name, lambda x: F.elu(x, alpha))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        g.node("Elu", bottoms[:1], tops[:1], layer.name, alpha=layer.spec.alpha)


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
        pp = layer.spec
        return CaffePower(layer.name, pp.power, pp.scale, pp.shift)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        pp = layer.spec
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
        return CaffeDropout(layer.name, layer.spec.ratio, phase == "TRAIN")

    def export(self, layer, g, bottoms, tops, blobs, phase):
        if phase != "TRAIN":
            g.node("Identity", bottoms[:1], tops[:1], layer.name)
            return
        mask = g.mask_input(layer.name, layer.top_shapes[0])
        scale = float(np.float32(1.0) / (np.float32(1.0) - np.float32(layer.spec.ratio)))
        masked = g.tmp(f"{layer.name}/masked")
        g.node("Mul", [bottoms[0], mask], [masked], f"{layer.name}/mask")
        g.node("Mul", [masked, g.scalar(scale)], tops[:1], layer.name)


class CaffePReLU(CaffeLayerModule):
    """prelu_layer.cpp: ``y = max(x, 0) + a_c * min(x, 0)``, ``a`` of shape () (channel_shared) or (C,) along
    axis 1; gradients to x and a."""

    def __init__(self, name, spec):
        super().__init__(name)
        self.spec = spec
        self.add_blob(() if spec.channel_shared else (spec.channels,))

    def forward(self, x):
        a = self.blobs[0]
        if not self.spec.channel_shared:
            a = a.reshape(-1, *([1] * (x.dim() - 2)))
        return [torch.where(x > 0, x, x * a)]


@register("PReLU")
class PReLUConverter(Converter):
    def build(self, layer, phase):
        return CaffePReLU(layer.name, layer.spec)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        nd = len(layer.bottom_shapes[0])
        a = np.asarray(blobs[0], np.float32)
        slope = a.reshape(()) if layer.spec.channel_shared else a.reshape(-1, *([1] * (nd - 2)))
        g.node("PRelu", [bottoms[0], g.param(layer.name, 0, slope)], tops[:1], layer.name)


@register("Threshold")
class ThresholdConverter(Converter):
    """threshold_layer.cpp: ``y = 1 if x > threshold else 0`` (no backward in Caffe)."""

    def build(self, layer, phase):
        t = layer.spec.threshold
        return Elementwise(layer.name, lambda x: (x > t).to(x.dtype))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        gt = g.tmp(f"{layer.name}/greater")
        g.node("Greater", [bottoms[0], g.scalar(layer.spec.threshold)], [gt], f"{layer.name}/greater")
        g.node("Cast", [gt], tops[:1], layer.name, to=1)


class CaffeExp(CaffeLayerModule):
    """exp_layer.cpp: ``y = outer * exp(inner * x)`` (each factor skipped when it is 1, as Caffe does)."""

    def __init__(self, name, spec):
        super().__init__(name)
        self.inner, self.outer = spec.inner, spec.outer

    def forward(self, x):
        y = torch.exp(x if self.inner == 1 else x * self.inner)
        return [y if self.outer == 1 else y * self.outer]


@register("Exp")
class ExpConverter(Converter):
    def build(self, layer, phase):
        return CaffeExp(layer.name, layer.spec)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        s, name, x = layer.spec, layer.name, bottoms[0]
        if s.inner != 1:
            y = g.tmp(f"{name}/inner")
            g.node("Mul", [x, g.scalar(s.inner)], [y], f"{name}/inner_scale")
            x = y
        if s.outer == 1:
            g.node("Exp", [x], tops[:1], name)
            return
        e = g.tmp(f"{name}/exp")
        g.node("Exp", [x], [e], f"{name}/exp")
        g.node("Mul", [e, g.scalar(s.outer)], tops[:1], name)


class CaffeLog(CaffeLayerModule):
    """log_layer.cpp: ``y = ln(scale * x + shift) * base_scale`` (steps with value 1 / 0 skipped)."""

    def __init__(self, name, spec):
        super().__init__(name)
        self.spec = spec

    def forward(self, x):
        s = self.spec
        if s.scale != 1:
            x = x * s.scale
        if s.shift != 0:
            x = x + s.shift
        y = torch.log(x)
        return [y if s.base_scale == 1 else y * s.base_scale]


@register("Log")
class LogConverter(Converter):
    def build(self, layer, phase):
        return CaffeLog(layer.name, layer.spec)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        s, name, x = layer.spec, layer.name, bottoms[0]
        for op, v, skip in (("Mul", s.scale, 1.0), ("Add", s.shift, 0.0)):
            if v != skip:
                y = g.tmp(f"{name}/{op.lower()}")
                g.node(op, [x, g.scalar(v)], [y], f"{name}/{op.lower()}")
                x = y
        if s.base_scale == 1:
            g.node("Log", [x], tops[:1], name)
            return
        ln = g.tmp(f"{name}/ln")
        g.node("Log", [x], [ln], f"{name}/ln")
        g.node("Mul", [ln, g.scalar(s.base_scale)], tops[:1], name)
