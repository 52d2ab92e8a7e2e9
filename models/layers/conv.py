"""Caffe's Convolution layer (src/caffe/layers/conv_layer.cpp, base_conv_layer.cpp), 2-D.

Weights ``(C_out, C_in / group, k_h, k_w)``, optional bias ``(C_out,)``; ``kernel_size``/``pad``/``stride``/
``dilation`` given once for both axes, per axis as repeated values, or as ``*_h``/``*_w``.
"""
from __future__ import annotations

import torch.nn.functional as F

from models.errors import NetDefinitionError
from models.layers.registry import CaffeLayerModule, Converter, register


def _pair(layer, repeated, h_field, w_field, default, what, proto):
    if proto.HasField(h_field) or proto.HasField(w_field):
        if len(repeated):
            raise NetDefinitionError(f"layer '{layer.name}': give either {what} or {h_field}/{w_field}, not both")
        return (getattr(proto, h_field), getattr(proto, w_field))
    vals = list(repeated)
    if not vals:
        return (default, default)
    if len(vals) == 1:
        return (vals[0], vals[0])
    if len(vals) == 2:
        return tuple(vals)
    raise NetDefinitionError(f"layer '{layer.name}': {what} has {len(vals)} values; only 2-D convolution is "
                             "supported")


def conv_geometry(layer):
    """(kernel, stride, pad, dilation, group, bias_term, num_output) of a Convolution layer."""
    cp = layer.proto.convolution_param
    if cp.axis != 1:
        raise NetDefinitionError(f"layer '{layer.name}': convolution axis {cp.axis} is not supported (only 1)")
    kernel = _pair(layer, cp.kernel_size, "kernel_h", "kernel_w", 0, "kernel_size", cp)
    if 0 in kernel:
        raise NetDefinitionError(f"layer '{layer.name}': convolution needs kernel_size or kernel_h/kernel_w")
    stride = _pair(layer, cp.stride, "stride_h", "stride_w", 1, "stride", cp)
    pad = _pair(layer, cp.pad, "pad_h", "pad_w", 0, "pad", cp)
    dil = list(cp.dilation)
    if len(dil) > 2:
        raise NetDefinitionError(f"layer '{layer.name}': dilation has {len(dil)} values; only 2-D is supported")
    dilation = (dil[0], dil[0]) if len(dil) == 1 else (tuple(dil) if dil else (1, 1))
    return kernel, stride, pad, dilation, cp.group, cp.bias_term, cp.num_output


class CaffeConv2d(CaffeLayerModule):
    """``y = conv2d(x, W, b)`` with Caffe's geometry; W and b are ``blobs[0]`` and ``blobs[1]``."""

    def __init__(self, name, c_in, c_out, kernel, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1,
                 bias_term=True):
        super().__init__(name)
        self.stride, self.pad, self.dilation, self.group = tuple(stride), tuple(pad), tuple(dilation), group
        self.add_blob((c_out, c_in // group, *kernel))
        self.bias_term = bias_term
        if bias_term:
            self.add_blob((c_out,))

    def forward(self, x):
        b = self.blobs[1] if self.bias_term else None
        return [F.conv2d(x, self.blobs[0], b, self.stride, self.pad, self.dilation, self.group)]


@register("Convolution")
class ConvolutionConverter(Converter):
    def build(self, layer, phase):
        kernel, stride, pad, dilation, group, bias, c_out = conv_geometry(layer)
        c_in = layer.bottom_shapes[0][1]
        if c_in % group or c_out % group:
            raise NetDefinitionError(f"layer '{layer.name}': channels {c_in} -> {c_out} not divisible by "
                                     f"group {group}")
        return CaffeConv2d(layer.name, c_in, c_out, kernel, stride, pad, dilation, group, bias)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        kernel, stride, pad, dilation, group, bias, _ = conv_geometry(layer)
        inputs = [bottoms[0], g.param(layer.name, 0, blobs[0])]
        if bias:
            inputs.append(g.param(layer.name, 1, blobs[1]))
        g.node("Conv", inputs, tops[:1], layer.name, kernel_shape=list(kernel), strides=list(stride),
               pads=[pad[0], pad[1], pad[0], pad[1]], dilations=list(dilation), group=group)
