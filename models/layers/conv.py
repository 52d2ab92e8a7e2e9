"""Caffe's Convolution, Deconvolution and Im2col layers (src/caffe/layers/conv_layer.cpp, deconv_layer.cpp,
base_conv_layer.cpp, im2col_layer.cpp), 2-D.

Both read the layer's :class:`models.specs.ConvSpec` (resolved by :func:`models.shapes.conv_spec`).
Convolution: weights ``(C_out, C_in / group, k_h, k_w)``, optional bias ``(C_out,)``; torch ``conv2d``, ONNX
``Conv`` (opset 1+; same semantics: cross-correlation, symmetric zero padding, floor output size).
Deconvolution (Caffe's backward of convolution): weights ``(C_in, C_out / group, k_h, k_w)``; top size
``s(H - 1) + d(k - 1) + 1 - 2p``; torch ``conv_transpose2d`` and ONNX ``ConvTranspose`` use that layout and size
(no output padding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.layers.registry import CaffeLayerModule, Converter, register


class CaffeConv2d(CaffeLayerModule):
    """``y = conv2d(x, W, b)`` (or ``conv_transpose2d``) with Caffe's geometry; W and b are ``blobs[0]`` and
    ``blobs[1]``. Every bottom is convolved with the same weights (one top per bottom)."""

    def __init__(self, name, spec):
        super().__init__(name)
        self.spec = spec
        k = spec.kernel
        if spec.transposed:
            self.add_blob((spec.channels, spec.num_output // spec.group, *k))
        else:
            self.add_blob((spec.num_output, spec.channels // spec.group, *k))
        if spec.bias_term:
            self.add_blob((spec.num_output,))

    def forward(self, *xs):
        s = self.spec
        b = self.blobs[1] if s.bias_term else None
        if s.transposed:
            return [F.conv_transpose2d(x, self.blobs[0], b, s.stride, s.pad, 0, s.group, s.dilation) for x in xs]
        out = []
        for x in xs:
            short = overhang(s, x.shape[-2], x.shape[-1])
            if any(short):  # Caffe's im2col reads zeros there
                x = F.pad(x, (0, short[1], 0, short[0]))
            if _native_fallback(x, self.blobs[0], s):
                out.append(torch.ops.aten.mkldnn_convolution(x, self.blobs[0], b, list(s.pad), list(s.stride),
                                                             list(s.dilation), s.group))
            else:
                out.append(F.conv2d(x, self.blobs[0], b, s.stride, s.pad, s.dilation, s.group))
        return out


def _native_fallback(x, w, spec) -> bool:
    """True where ATen's CPU dispatch (ConvParams::use_mkldnn) would send an inference convolution to its slow
    reference kernel: float32, batch 1, kernel at most 3 x 3, no groups, fewer than 20,481 input elements
    (GoogLeNet's 3 x 3 convolutions on 14 x 14 and 7 x 7 maps). The same convolution then runs in oneDNN, as all
    the others do."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.shape[0] == 1
            and spec.group == 1 and x.numel() <= 20480 and min(spec.kernel) > 1 and max(spec.kernel) <= 3
            and torch.backends.mkldnn.is_available() and not (torch.is_grad_enabled() and
                                                             (x.requires_grad or w.requires_grad)))


def overhang(spec, h: int, w: int) -> tuple:
    """Rows/columns by which the kernel extent exceeds the padded input (Caffe still gives one output there when
    the excess is below the stride; torch and ONNX need the zeros spelled out)."""
    return tuple(max(0, d * (k - 1) + 1 - (n + 2 * p))
                 for n, k, p, d in zip((h, w), spec.kernel, spec.pad, spec.dilation))


class _ConvConverter(Converter):
    def build(self, layer, phase):
        return CaffeConv2d(layer.name, layer.spec)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        s = layer.spec
        w = g.param(layer.name, 0, blobs[0])
        bias = g.param(layer.name, 1, blobs[1]) if s.bias_term else None
        op = "ConvTranspose" if s.transposed else "Conv"
        for i, (bottom, top) in enumerate(zip(bottoms, tops)):
            inputs = [bottom, w] + ([bias] if bias else [])
            short = (0, 0) if s.transposed else overhang(s, *layer.bottom_shapes[i][2:4])
            g.node(op, inputs, [top], layer.name if i == 0 else f"{layer.name}/{i}", kernel_shape=list(s.kernel),
                   strides=list(s.stride), pads=[s.pad[0], s.pad[1], s.pad[0] + short[0], s.pad[1] + short[1]],
                   dilations=list(s.dilation), group=s.group)


@register("Convolution")
class ConvolutionConverter(_ConvConverter):
    pass


@register("Deconvolution")
class DeconvolutionConverter(_ConvConverter):
    pass


class CaffeIm2col(CaffeLayerModule):
    """im2col_layer.cpp: ``(N, C, H, W)`` to ``(N, C * kh * kw, H_out, W_out)`` (torch ``unfold``, whose column
    order, channel-major then kernel row then column, is Caffe's im2col order)."""

    def __init__(self, name, spec):
        super().__init__(name)
        self.spec = spec

    def forward(self, x):
        s = self.spec
        short = overhang(s, x.shape[-2], x.shape[-1])
        if any(short):  # as Convolution: Caffe's im2col reads zeros past the padded input
            x = F.pad(x, (0, short[1], 0, short[0]))
        cols = F.unfold(x, s.kernel, s.dilation, s.pad, s.stride)
        h, w = (_im2col_size(n, k, p, st, dl) for n, k, p, st, dl in
                zip(x.shape[-2:], s.kernel, s.pad, s.stride, s.dilation))
        return [cols.reshape(x.shape[0], cols.shape[1], h, w)]


def _im2col_size(n, k, p, s, d):
    return (n + 2 * p - (d * (k - 1) + 1)) // s + 1


def im2col_weight(spec) -> "torch.Tensor":
    """The depthwise one-hot kernel ``(C * kh * kw, 1, kh, kw)`` whose grouped convolution (group ``C``) is
    im2col: output channel ``c * kh * kw + i * kw + j`` copies input channel ``c`` at offset ``(i, j)``."""
    kh, kw = spec.kernel
    eye = torch.eye(kh * kw, dtype=torch.float32).reshape(kh * kw, 1, kh, kw)
    return eye.repeat(spec.channels, 1, 1, 1)


@register("Im2col")
class Im2colConverter(Converter):
    """ONNX has no im2col operator: a grouped ``Conv`` with the one-hot kernel of :func:`im2col_weight` (each
    output is one input value times 1 plus zeros, so exact)."""

    def build(self, layer, phase):
        return CaffeIm2col(layer.name, layer.spec)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        s = layer.spec
        short = overhang(s, *layer.bottom_shapes[0][2:4])
        w = g.const(f"{layer.name}/onehot", im2col_weight(s).numpy())
        g.node("Conv", [bottoms[0], w], tops[:1], layer.name, kernel_shape=list(s.kernel), strides=list(s.stride),
               pads=[s.pad[0], s.pad[1], s.pad[0] + short[0], s.pad[1] + short[1]], dilations=list(s.dilation),
               group=s.channels)
