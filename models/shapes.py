"""Caffe's shape inference, one function per layer type.

Each function takes the layer's ``LayerParameter`` and its bottom shapes and returns ``(top_shapes,
param_shapes)``: the shapes Caffe's ``Layer::Reshape`` gives its tops and the shapes of the learnable blobs it
creates in ``LayerSetUp``. The source file each follows is named in its docstring (BVLC Caffe master).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .errors import ShapeError
from .specs import (ArgMaxSpec, AxisSpec, BatchNormSpec, ConvSpec, CropSpec, EltwiseSpec, EmbedSpec, EmptySpec,
                    ExpLogSpec, FlattenSpec, InnerProductSpec, LossSpec, LRNSpec, MVNSpec, NeuronSpec, PoolSpec,
                    PReLUSpec, ReductionSpec, ReshapeSpec, ScaleBiasSpec, SliceSpec, SPPSpec, TileSpec)
from .specs import pool_output_size  # noqa: F401  (re-exported: models.shapes.pool_output_size)

Shape = tuple
SHAPE_FUNCTIONS: dict[str, Callable] = {}


def shape_function(*types: str):
    """Register a shape function for one or more Caffe layer types."""
    def deco(fn):
        for t in types:
            SHAPE_FUNCTIONS[t] = fn
        return fn
    return deco


def _fail(layer, bottoms, message) -> ShapeError:
    shapes = ", ".join(f"{b}={tuple(s)}" for b, s in zip(layer.bottom, bottoms))
    return ShapeError(f"layer '{layer.name}' ({layer.type}), bottoms [{shapes}]: {message}")


def canonical_axis(layer, bottoms, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise _fail(layer, bottoms, f"axis {axis} is out of range for a {ndim}-axis blob")
    return axis % ndim


def _opt(msg, field):
    return getattr(msg, field) if msg.HasField(field) else None


def _conv_pair(layer, bottoms, p, what, h_field, w_field, default, zero_ok):
    """One of kernel/stride/pad of a ConvolutionParameter, as base_conv_layer.cpp LayerSetUp reads it:
    ``*_h``/``*_w`` (either one present: both are read, the absent one takes its proto default) exclude the
    repeated field; the repeated field has 0 (default), 1 or 2 (one per spatial axis) values."""
    repeated = list(getattr(p, what))
    if p.HasField(h_field) or p.HasField(w_field):
        if repeated:
            raise _fail(layer, bottoms, f"convolution_param: either {what} or {h_field}/{w_field} should be "
                                        "specified; not both (base_conv_layer.cpp)")
        val = (int(getattr(p, h_field)), int(getattr(p, w_field)))
    elif not repeated:
        if default is None:
            raise _fail(layer, bottoms, "convolution_param: kernel_size must be specified once, or once per "
                                        "spatial dimension (kernel_size specified 0 times; 2 spatial dims) "
                                        "(base_conv_layer.cpp)")
        val = (default, default)
    elif len(repeated) in (1, 2):
        val = (int(repeated[0]), int(repeated[-1]))
    else:
        raise _fail(layer, bottoms, f"convolution_param: {what} must be specified once, or once per spatial "
                                    f"dimension ({what} specified {len(repeated)} times; 2 spatial dims)")
    if not zero_ok and min(val) < 1:
        name = {"kernel_size": "Filter", "stride": "Stride", "dilation": "Dilation"}[what]
        raise _fail(layer, bottoms, f"convolution_param: {what} {val}: {name} dimensions must be nonzero "
                                    "(base_conv_layer.cpp)")
    return val


def conv_spec(layer, bottoms, transposed: bool = False, im2col: bool = False) -> ConvSpec:
    """Resolve a ConvolutionParameter (base_conv_layer.cpp LayerSetUp, conv_layer.cpp, deconv_layer.cpp).

    ``im2col``: as im2col_layer.cpp LayerSetUp reads it (kernel/stride/pad/dilation only: no num_output, group or
    bias; the spec's ``num_output`` is then ``channels * kh * kw``, the top's channel count)."""
    p = layer.convolution_param
    b = bottoms[0]
    axis = canonical_axis(layer, bottoms, p.axis, len(b))
    if len(b) - axis - 1 != 2 or axis != 1:
        raise _fail(layer, bottoms, f"convolution over {len(b) - axis - 1} spatial axes (axis {p.axis}): only "
                                    "2-D convolution of (N, C, H, W) bottoms is supported")
    k = _conv_pair(layer, bottoms, p, "kernel_size", "kernel_h", "kernel_w", None, False)
    s = _conv_pair(layer, bottoms, p, "stride", "stride_h", "stride_w", 1, False)
    pad = _conv_pair(layer, bottoms, p, "pad", "pad_h", "pad_w", 0, True)
    dil = list(p.dilation)
    if len(dil) > 2:
        raise _fail(layer, bottoms, f"convolution_param: dilation must be specified once, or once per spatial "
                                    f"dimension (dilation specified {len(dil)} times; 2 spatial dims)")
    d = (int(dil[0]), int(dil[-1])) if dil else (1, 1)
    if im2col:
        return ConvSpec(kernel=k, stride=s, pad=pad, dilation=d, group=1, num_output=int(b[1]) * k[0] * k[1],
                        bias_term=False, channels=int(b[1]))
    if p.num_output < 1:
        raise _fail(layer, bottoms, "convolution_param: num_output must be positive (CHECK_GT(num_output_, 0))")
    c, g = b[1], p.group
    if g < 1 or c % g or p.num_output % g:
        raise _fail(layer, bottoms, f"convolution_param: channels {c} and num_output {p.num_output} must be "
                                    f"divisible by group {g} (base_conv_layer.cpp)")
    return ConvSpec(kernel=k, stride=s, pad=pad, dilation=d, group=int(g), num_output=int(p.num_output),
                    bias_term=bool(p.bias_term), channels=int(c), transposed=transposed)


def _ctrunc(a: int, b: int) -> int:
    """C++ integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


@shape_function("Convolution", "Deconvolution")
def convolution(layer, bottoms):
    """conv_layer.cpp compute_output_shape: (H + 2p - (d(k-1)+1)) / s + 1 (C++ division);
    deconv_layer.cpp: s(H - 1) + d(k-1)+1 - 2p. Every bottom gets its own top of the same geometry."""
    spec = conv_spec(layer, bottoms, transposed=layer.type == "Deconvolution")
    shapes = []
    for b in bottoms:
        if tuple(b[1:2]) != (spec.channels,) or len(b) != 4:
            raise _fail(layer, bottoms, "all bottoms must have the same number of channels and axes "
                                        "(base_conv_layer.cpp Reshape)")
        out = []
        for size, kk, ss, pp, dd in zip(b[2:], spec.kernel, spec.stride, spec.pad, spec.dilation):
            extent = dd * (kk - 1) + 1
            if spec.transposed:
                o = ss * (size - 1) + extent - 2 * pp
            else:  # C++ division: a kernel up to `stride - 1` pixels past the padded input still gives 1 output
                o = _ctrunc(size + 2 * pp - extent, ss) + 1
                if o < 1:
                    raise _fail(layer, bottoms, f"kernel extent {extent} exceeds the padded input "
                                                f"{size + 2 * pp} (output size {o})")
            if o < 1:
                raise _fail(layer, bottoms, f"output size {o} along a spatial axis (Blob::Reshape needs "
                                            "non-negative dims; this converter needs positive ones)")
            out.append(o)
        shapes.append((b[0], spec.num_output, out[0], out[1]))
    k = spec.kernel
    if spec.transposed:
        params = [(spec.channels, spec.num_output // spec.group, k[0], k[1])]
    else:
        params = [(spec.num_output, spec.channels // spec.group, k[0], k[1])]
    if spec.bias_term:
        params.append((spec.num_output,))
    return shapes, params, spec


@shape_function("Im2col")
def im2col(layer, bottoms):
    """im2col_layer.cpp Reshape: ``(N, C * kh * kw, H_out, W_out)``, ``H_out = (H + 2p - (d(k-1)+1)) / s + 1``
    (C++ division, as Convolution's); channel ``c * kh * kw + i * kw + j`` holds input channel ``c`` at kernel
    offset ``(i, j)``. No learnable blobs."""
    spec = conv_spec(layer, bottoms, im2col=True)
    b = bottoms[0]
    out = []
    for size, kk, ss, pp, dd in zip(b[2:], spec.kernel, spec.stride, spec.pad, spec.dilation):
        o = _ctrunc(size + 2 * pp - (dd * (kk - 1) + 1), ss) + 1
        if o < 1:
            raise _fail(layer, bottoms, f"kernel extent {dd * (kk - 1) + 1} exceeds the padded input "
                                        f"{size + 2 * pp} (output size {o})")
        out.append(o)
    return [(b[0], spec.num_output, out[0], out[1])], [], spec


_POOL_METHODS = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}


def pool_spec(layer, bottom) -> PoolSpec:
    """Resolve a PoolingParameter exactly as pooling_layer.cpp LayerSetUp does (its CHECK messages quoted)."""
    p = layer.pooling_param
    bottoms = [bottom]
    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
            raise _fail(layer, bottoms, "pooling_param: With Global_pooling: true Filter size cannot specified "
                                        "(pooling_layer.cpp)")
    else:
        if p.HasField("kernel_size") == (p.HasField("kernel_h") and p.HasField("kernel_w")):
            raise _fail(layer, bottoms, "pooling_param: Filter size is kernel_size OR kernel_h and kernel_w; "
                                        "not both (pooling_layer.cpp)")
    for what in ("pad", "stride"):
        has, has_h, has_w = (p.HasField(what), p.HasField(what + "_h"), p.HasField(what + "_w"))
        if not ((not has and has_h and has_w) or (not has_h and not has_w)):
            msg = "pad is pad OR pad_h and pad_w are required" if what == "pad" else \
                "Stride is stride OR stride_h and stride_w are required"
            raise _fail(layer, bottoms, f"pooling_param: {msg} (pooling_layer.cpp)")
    if p.global_pooling:
        k = (bottom[2], bottom[3]) if len(bottom) == 4 else (0, 0)
    elif p.HasField("kernel_size"):
        k = (p.kernel_size, p.kernel_size)
    else:
        k = (p.kernel_h, p.kernel_w)
    if min(k) < 1:
        raise _fail(layer, bottoms, f"pooling_param: kernel {k}: Filter dimensions cannot be zero")
    pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
    stride = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
    if p.global_pooling and (pad != (0, 0) or stride != (1, 1)):
        raise _fail(layer, bottoms, "pooling_param: With Global_pooling: true; only pad = 0 and stride = 1")
    if min(stride) < 1:
        raise _fail(layer, bottoms, f"pooling_param: stride {stride} must be positive")
    method = _POOL_METHODS[p.pool]
    if pad != (0, 0):
        if method == "STOCHASTIC":
            raise _fail(layer, bottoms, "pooling_param: Padding implemented only for average and max pooling.")
        if pad[0] >= k[0] or pad[1] >= k[1]:
            raise _fail(layer, bottoms, f"pooling_param: pad {pad} must be smaller than kernel {k} (CHECK_LT)")
    return PoolSpec(kernel=(int(k[0]), int(k[1])), stride=(int(stride[0]), int(stride[1])),
                    pad=(int(pad[0]), int(pad[1])), method=method, global_pooling=bool(p.global_pooling),
                    ceil=p.round_mode == 0, name=layer.name)


@shape_function("Pooling")
def pooling(layer, bottoms):
    """src/caffe/layers/pooling_layer.cpp Reshape."""
    b = bottoms[0]
    if len(b) != 4:
        raise _fail(layer, bottoms, f"Input must have 4 axes, corresponding to (num, channels, height, width); "
                                    f"got {len(b)}")
    spec = pool_spec(layer, b)
    _, (oh, ow) = spec.geometry(b[2], b[3])
    if oh < 1 or ow < 1:
        raise _fail(layer, bottoms, f"kernel {spec.kernel} gives an empty output ({oh} x {ow})")
    top = (b[0], b[1], oh, ow)
    if len(layer.top) > 2 or (len(layer.top) == 2 and spec.method != "MAX"):
        raise _fail(layer, bottoms, "Pooling has one top (MAX may have a second, the mask)")
    return [top] * len(layer.top), [], spec


def pool_geometry(layer, bottom):
    """Kernel, stride, pad ((h, w) each) of a Pooling layer, global pooling resolved (pooling_layer.cpp)."""
    spec = pool_spec(layer, bottom)
    (kh, kw), _ = spec.geometry(bottom[2], bottom[3])
    return (kh, kw), spec.stride, spec.pad


def pool_edge_windows(layer, bottom) -> list[str]:
    """Warnings for windows that start at or past the input's edge (possible only with pad 0 and k < s).

    Real Caffe outputs -FLT_MAX (MAX) or NaN (AVE) there (notes: caffe-semantics.md, Pooling).
    """
    k, s, pad = pool_geometry(layer, bottom)
    top = pooling(layer, [bottom])[0][0]  # (layer: a LayerParameter; shape inference's own reading)
    warnings = []
    for axis, size, kk, ss, pp, out in zip("HW", bottom[2:], k, s, pad, top[2:]):
        start = (out - 1) * ss - pp
        if start >= size:
            warnings.append(
                f"layer '{layer.name}': the last pooling window along {axis} starts at {start}, past the input "
                f"({size}); real Caffe outputs -3.4e38 (MAX) or NaN (AVE) there")
    return warnings


@shape_function("SPP")
def spp(layer, bottoms):
    """spp_layer.cpp: pyramid levels of pooling (GetPoolingParam), flattened and concatenated."""
    p = layer.spp_param
    b = bottoms[0]
    if len(b) != 4:
        raise _fail(layer, bottoms, "Input must have 4 axes, corresponding to (num, channels, height, width)")
    if b[2] < 1 or b[3] < 1:
        raise _fail(layer, bottoms, "Input dimensions cannot be zero.")
    height = int(p.pyramid_height)
    if height < 1:
        raise _fail(layer, bottoms, "spp_param: pyramid_height must be positive")
    method = _POOL_METHODS[p.pool]
    if method == "STOCHASTIC":
        raise _fail(layer, bottoms, "spp_param: STOCHASTIC pooling is not supported by this converter")
    levels = []
    total = 0
    for level in range(height):
        bins = 2 ** level
        ks, pads = [], []
        for size in b[2:]:
            kk = -(-size // bins)
            ks.append(kk)
            pads.append((kk * bins - size + 1) // 2)
        if height > 1 and (pads[0] >= ks[0] or pads[1] >= ks[1]):
            raise _fail(layer, bottoms, f"pyramid level {level}: pad {tuple(pads)} >= kernel {tuple(ks)} "
                                        "(pooling_layer.cpp CHECK_LT): the bottom is too small for this height")
        spec = PoolSpec(kernel=tuple(ks), stride=tuple(ks), pad=tuple(pads), method=method,
                        name=f"{layer.name}/level{level}")
        if height == 1:  # spp_layer.cpp: one pooling layer over the whole bottom, no padding
            spec = PoolSpec(kernel=(b[2], b[3]), stride=(b[2], b[3]), pad=(0, 0), method=method, name=layer.name)
        _, (oh, ow) = spec.geometry(b[2], b[3])
        total += b[1] * oh * ow
        levels.append(spec)
    if height == 1:
        return [(b[0], b[1], 1, 1)], [], SPPSpec(tuple(levels), flatten=False)
    return [(b[0], total)], [], SPPSpec(tuple(levels), flatten=True)


def _f32(x) -> float:
    return float(np.float32(x))


@shape_function("ReLU", "Sigmoid", "TanH", "AbsVal", "Power", "Dropout", "BNLL", "ELU", "Threshold")
def neuron(layer, bottoms):
    """Element-wise layers (neuron_layer.cpp: top = bottom's shape); the values each one reads."""
    t = layer.type
    if t == "AbsVal" and layer.top[0] == layer.bottom[0]:
        raise _fail(layer, bottoms, "AbsVal cannot run in place (Caffe's absval_layer.cpp CHECK_NE top/bottom)")
    if t == "ReLU":
        spec = NeuronSpec(slope=_f32(layer.relu_param.negative_slope))
    elif t == "ELU":
        spec = NeuronSpec(alpha=_f32(layer.elu_param.alpha))
    elif t == "Power":
        pp = layer.power_param
        spec = NeuronSpec(power=_f32(pp.power), scale=_f32(pp.scale), shift=_f32(pp.shift))
    elif t == "Dropout":
        r = layer.dropout_param.dropout_ratio  # dropout_layer.cpp only DCHECKs 0 < ratio < 1 (debug builds)
        spec = NeuronSpec(ratio=_f32(r))
    elif t == "Threshold":
        spec = NeuronSpec(threshold=_f32(layer.threshold_param.threshold))
    else:
        spec = EmptySpec()
    return [tuple(bottoms[0])], [], spec


@shape_function("Exp")
def exp(layer, bottoms):
    """exp_layer.cpp LayerSetUp: base -1 (e) or > 0; inner = ln(base) * scale, outer = base^shift."""
    p = layer.exp_param
    base, scale, shift = np.float32(p.base), np.float32(p.scale), np.float32(p.shift)
    if base != -1 and not base > 0:
        raise _fail(layer, bottoms, f"exp_param: base {p.base}: base must be strictly positive.")
    log_base = np.float32(1.0) if base == -1 else np.float32(np.log(base))
    inner = np.float32(log_base * scale)
    if shift == 0:
        outer = np.float32(1.0)
    else:
        outer = np.float32(np.exp(shift)) if base == -1 else np.float32(np.power(base, shift))
    return [tuple(bottoms[0])], [], ExpLogSpec(scale=float(scale), shift=float(shift), inner=float(inner),
                                               outer=float(outer))


@shape_function("Log")
def log(layer, bottoms):
    """log_layer.cpp LayerSetUp: base -1 (e) or > 0; y = ln(scale * x + shift) / ln(base)."""
    p = layer.log_param
    base = np.float32(p.base)
    if base != -1 and not base > 0:
        raise _fail(layer, bottoms, f"log_param: base {p.base}: base must be strictly positive.")
    log_base = np.float32(1.0) if base == -1 else np.float32(np.log(base))
    base_scale = np.float32(np.float32(1.0) / log_base)
    return [tuple(bottoms[0])], [], ExpLogSpec(scale=_f32(p.scale), shift=_f32(p.shift), base_scale=float(base_scale))


@shape_function("LRN")
def lrn(layer, bottoms):
    """lrn_layer.cpp LayerSetUp/Reshape: odd local_size, 4-axis bottom."""
    p = layer.lrn_param
    if p.local_size % 2 == 0:
        raise _fail(layer, bottoms, f"lrn_param: local_size must be odd (LRN only supports odd values), got {p.local_size}")
    if len(bottoms[0]) != 4:
        raise _fail(layer, bottoms, "Input must have 4 axes, corresponding to (num, channels, height, width)")
    region = "ACROSS_CHANNELS" if p.norm_region == 0 else "WITHIN_CHANNEL"
    spec = LRNSpec(size=int(p.local_size), alpha=_f32(p.alpha), beta=_f32(p.beta), k=_f32(p.k), region=region)
    return [tuple(bottoms[0])], [], spec


@shape_function("Softmax")
def softmax(layer, bottoms):
    """softmax_layer.cpp: top = bottom; the axis (default 1)."""
    axis = canonical_axis(layer, bottoms, layer.softmax_param.axis, len(bottoms[0]))
    return [tuple(bottoms[0])], [], AxisSpec(axis)


@shape_function("MVN")
def mvn(layer, bottoms):
    """mvn_layer.cpp: top = bottom; statistics per (n, c) over the rest (per n with across_channels)."""
    p = layer.mvn_param
    if len(bottoms[0]) < 2:
        raise _fail(layer, bottoms, "MVN needs a bottom with at least 2 axes (N, C, ...)")
    return [tuple(bottoms[0])], [], MVNSpec(bool(p.normalize_variance), bool(p.across_channels), _f32(p.eps))


@shape_function("PReLU")
def prelu(layer, bottoms):
    """prelu_layer.cpp LayerSetUp: CHECK_GE(num_axes, 2); slope blob shape () if channel_shared else (C,)."""
    b = bottoms[0]
    if len(b) < 2:
        raise _fail(layer, bottoms, "Number of axes of bottom blob must be >=2.")
    shared = bool(layer.prelu_param.channel_shared)
    return [tuple(b)], [() if shared else (b[1],)], PReLUSpec(shared, int(b[1]))


@shape_function("InnerProduct")
def inner_product(layer, bottoms):
    """src/caffe/layers/inner_product_layer.cpp: flattens from ``axis``; W is (N, K), or (K, N) when transpose."""
    p = layer.inner_product_param
    b = bottoms[0]
    axis = canonical_axis(layer, bottoms, p.axis, len(b))
    if p.num_output < 1:
        raise _fail(layer, bottoms, "num_output must be positive")
    k = math.prod(b[axis:])
    w = (k, p.num_output) if p.transpose else (p.num_output, k)
    params = [w] + ([(p.num_output,)] if p.bias_term else [])
    spec = InnerProductSpec(axis=axis, k=int(k), num_output=int(p.num_output), transpose=bool(p.transpose),
                            bias_term=bool(p.bias_term))
    return [tuple(b[:axis]) + (p.num_output,)], params, spec


@shape_function("Embed")
def embed(layer, bottoms):
    """embed_layer.cpp: CHECK_GT(num_output, 0), CHECK_GT(input_dim, 0); W (input_dim, num_output)."""
    p = layer.embed_param
    if p.num_output < 1:
        raise _fail(layer, bottoms, "embed_param: EmbedLayer num_output must be positive.")
    if p.input_dim < 1:
        raise _fail(layer, bottoms, "embed_param: EmbedLayer input_dim must be positive.")
    params = [(p.input_dim, p.num_output)] + ([(p.num_output,)] if p.bias_term else [])
    spec = EmbedSpec(int(p.input_dim), int(p.num_output), bool(p.bias_term))
    return [tuple(bottoms[0]) + (p.num_output,)], params, spec


@shape_function("Concat")
def concat(layer, bottoms):
    """src/caffe/layers/concat_layer.cpp (``concat_dim`` is the legacy axis; not both)."""
    p = layer.concat_param
    if p.HasField("concat_dim") and p.HasField("axis"):
        raise _fail(layer, bottoms, "concat_param: Either axis or concat_dim should be specified; not both.")
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    axis = canonical_axis(layer, bottoms, axis, len(bottoms[0]))
    out = list(bottoms[0])
    for b in bottoms[1:]:
        if len(b) != len(out) or any(x != y for i, (x, y) in enumerate(zip(b, bottoms[0])) if i != axis):
            raise _fail(layer, bottoms, f"all bottoms must match except along axis {axis}")
        out[axis] += b[axis]
    return [tuple(out)], [], AxisSpec(axis)


@shape_function("Slice")
def slice_(layer, bottoms):
    """src/caffe/layers/slice_layer.cpp: slice_point, or equal parts for the number of tops."""
    p = layer.slice_param
    b = bottoms[0]
    if p.HasField("slice_dim") and p.HasField("axis"):
        raise _fail(layer, bottoms, "slice_param: Either axis or slice_dim should be specified; not both.")
    axis = canonical_axis(layer, bottoms, p.slice_dim if p.HasField("slice_dim") else p.axis, len(b))
    n = len(layer.top)
    points = list(p.slice_point)
    if points:
        if len(points) != n - 1:
            raise _fail(layer, bottoms, f"{len(points)} slice points for {n} tops (expected {n - 1})")
        bounds = [0] + points + [b[axis]]
        # slice_layer.cpp: CHECK_GT(slice_point, prev); the last top gets size - last point (0 is a valid blob)
        if any(x >= y for x, y in zip(bounds, bounds[1:-1])) or points[-1] > b[axis]:
            raise _fail(layer, bottoms, f"slice points {points} must increase within (0, {b[axis]}]")
        sizes = [y - x for x, y in zip(bounds, bounds[1:])]
    else:
        if b[axis] % n:
            raise _fail(layer, bottoms, f"axis {axis} size {b[axis]} does not split evenly into {n} tops")
        sizes = [b[axis] // n] * n
    return [tuple(b[:axis]) + (s,) + tuple(b[axis + 1:]) for s in sizes], [], SliceSpec(axis, tuple(sizes))


@shape_function("Split")
def split(layer, bottoms):
    """src/caffe/layers/split_layer.cpp: every top is a copy of the bottom."""
    return [tuple(bottoms[0])] * len(layer.top), [], EmptySpec()


@shape_function("Silence")
def silence(layer, bottoms):
    """silence_layer.cpp: no tops; its backward zeroes the bottoms' diffs."""
    return [], [], EmptySpec()


_ELTWISE_OPS = {0: "PROD", 1: "SUM", 2: "MAX"}


@shape_function("Eltwise")
def eltwise(layer, bottoms):
    """src/caffe/layers/eltwise_layer.cpp: all bottoms the same shape; coeff only for SUM, one per bottom."""
    p = layer.eltwise_param
    op = _ELTWISE_OPS[p.operation]
    if len(bottoms) < 2:
        raise _fail(layer, bottoms, "Eltwise needs at least two bottoms")
    if any(tuple(b) != tuple(bottoms[0]) for b in bottoms):
        raise _fail(layer, bottoms, "all bottoms must have the same shape")
    if len(p.coeff) and len(p.coeff) != len(bottoms):
        raise _fail(layer, bottoms, "eltwise_param: Eltwise Layer takes one coefficient per bottom blob.")
    if len(p.coeff) and op == "PROD":
        raise _fail(layer, bottoms, "eltwise_param: Eltwise layer only takes coefficients for summation.")
    coeff = tuple(_f32(c) for c in p.coeff) or (1.0,) * len(bottoms)
    return [tuple(bottoms[0])], [], EltwiseSpec(op, coeff)


@shape_function("BatchNorm")
def batch_norm(layer, bottoms):
    """src/caffe/layers/batch_norm_layer.cpp: blobs mean (C), variance (C), scale factor (1)."""
    b = bottoms[0]
    p = layer.batch_norm_param
    c = b[1] if len(b) > 1 else 1
    ugs = bool(p.use_global_stats) if p.HasField("use_global_stats") else None
    spec = BatchNormSpec(use_global_stats=ugs, eps=_f32(p.eps), maf=_f32(p.moving_average_fraction),
                         channels=int(c))
    return [tuple(b)], [(c,), (c,), (1,)], spec


def _scale_like(layer, bottoms, p, op):
    """scale_layer.cpp / bias_layer.cpp LayerSetUp and Reshape, every axis form.

    Two bottoms: the factor is bottom[1], matching bottom[0] from ``axis`` (a 0-axis bottom[1] is a scalar:
    axis 0). One bottom: a learned blob of shape bottom[axis : axis + num_axes] (num_axes -1: to the end,
    0: a scalar)."""
    b = bottoms[0]
    if len(bottoms) == 2:
        s = tuple(bottoms[1])
        axis = 0 if len(s) == 0 else canonical_axis(layer, bottoms, p.axis, len(b))
        if len(b) < axis + len(s) or tuple(b[axis:axis + len(s)]) != s:
            raise _fail(layer, bottoms, f"bottom[1] shape {s} must match bottom[0] from axis {axis}")
        return axis, s, True
    if p.num_axes < -1:
        raise _fail(layer, bottoms, "num_axes must be non-negative, or -1 to extend to the end of bottom[0]")
    axis = canonical_axis(layer, bottoms, p.axis, len(b)) if len(b) else 0
    end = len(b) if p.num_axes == -1 else axis + p.num_axes
    if end > len(b):
        raise _fail(layer, bottoms, f"scale blob's shape extends past bottom[0]'s shape when applied starting "
                                    f"with bottom[0] axis = {axis} (num_axes {p.num_axes})")
    return axis, tuple(b[axis:end]), False


@shape_function("Scale")
def scale(layer, bottoms):
    """src/caffe/layers/scale_layer.cpp: a learned scale (unless given as bottom[1]) and an optional bias."""
    p = layer.scale_param
    axis, shape, from_bottom = _scale_like(layer, bottoms, p, "Scale")
    params = [] if from_bottom else [shape]
    if p.bias_term:
        params.append(shape)
    return [tuple(bottoms[0])], params, ScaleBiasSpec("Scale", axis, shape, from_bottom, bool(p.bias_term))


@shape_function("Bias")
def bias(layer, bottoms):
    """src/caffe/layers/bias_layer.cpp."""
    axis, shape, from_bottom = _scale_like(layer, bottoms, layer.bias_param, "Bias")
    return [tuple(bottoms[0])], ([] if from_bottom else [shape]), ScaleBiasSpec("Bias", axis, shape, from_bottom,
                                                                                 False)


@shape_function("Flatten")
def flatten(layer, bottoms):
    """src/caffe/layers/flatten_layer.cpp: axes [axis, end_axis] become one."""
    b = bottoms[0]
    p = layer.flatten_param
    a = canonical_axis(layer, bottoms, p.axis, len(b))
    e = canonical_axis(layer, bottoms, p.end_axis, len(b))
    if e + 1 < a:  # Blob::count(a, e + 1): CHECK_LE(start, end); end_axis = axis - 1 inserts an axis of 1
        raise _fail(layer, bottoms, f"end_axis {p.end_axis} is more than one axis before axis {p.axis} "
                                    "(Blob::count CHECK_LE(start_axis, end_axis))")
    return [tuple(b[:a]) + (math.prod(b[a:e + 1]),) + tuple(b[e + 1:])], [], FlattenSpec(a, e)


@shape_function("Reshape")
def reshape(layer, bottoms):
    """src/caffe/layers/reshape_layer.cpp: 0 copies a dimension, one -1 is inferred; axis/num_axes select
    the part of the bottom shape that is replaced."""
    b = list(bottoms[0])
    p = layer.reshape_param
    spec = list(p.shape.dim)
    start = p.axis if p.axis >= 0 else len(b) + 1 + p.axis
    if not 0 <= start <= len(b):
        raise _fail(layer, bottoms, f"axis {p.axis} out of range")
    end = len(b) if p.num_axes == -1 else start + p.num_axes
    if p.num_axes < -1 or end > len(b):
        raise _fail(layer, bottoms, f"num_axes {p.num_axes} out of range")
    if spec.count(-1) > 1:
        raise _fail(layer, bottoms, "at most one -1 in the shape")
    new = []
    for i, d in enumerate(spec):
        if d == 0:
            if start + i >= len(b):
                raise _fail(layer, bottoms, f"dim {i} is 0 (copy) but the bottom has no axis {start + i}")
            new.append(b[start + i])
        elif d < -1:
            raise _fail(layer, bottoms, f"invalid dimension {d}")
        else:
            new.append(d)
    out = b[:start] + new + b[end:]
    total = math.prod(b)
    if -1 in out:
        known = math.prod(x for x in out if x != -1)
        if known == 0 or total % known:
            raise _fail(layer, bottoms, f"cannot infer -1 in {spec}: {total} elements")
        out[out.index(-1)] = total // known
    if math.prod(out) != total:
        raise _fail(layer, bottoms, f"shape {out} has {math.prod(out)} elements, the bottom has {total}")
    # ONNX keeps the batch axis symbolic: copy it (0) when Caffe copies it (before `axis`, or `shape` copies it)
    keep = 1 if (start > 0 or (spec and spec[0] == 0)) else 0
    onnx_shape = [0] * keep + list(out[keep:])
    if not keep and -1 in spec:  # the inferred axis stays inferred, so another batch size still reshapes
        onnx_shape[start + spec.index(-1)] = -1
    onnx_shape = tuple(onnx_shape)
    return [tuple(out)], [], ReshapeSpec(tuple(out), onnx_shape)


@shape_function("Crop")
def crop(layer, bottoms):
    """crop_layer.cpp LayerSetUp/Reshape: two bottoms; axes from ``axis`` take bottom[1]'s size at ``offset``
    (none: 0, one: for every cropped axis, else one per axis from ``axis``)."""
    if len(bottoms) != 2:
        raise _fail(layer, bottoms, "Wrong number of bottom blobs (Crop takes 2).")
    b, ref = bottoms
    p = layer.crop_param
    nd = len(b)
    axis = canonical_axis(layer, bottoms, p.axis, nd)
    offs = list(p.offset)
    if len(offs) > 1 and axis + len(offs) != nd:
        raise _fail(layer, bottoms, "crop_param: number of offset values specified must be equal to the number "
                                    "of dimensions following axis.")
    if len(ref) < nd:
        raise _fail(layer, bottoms, f"bottom[1] has {len(ref)} axes, fewer than bottom[0]'s {nd}")
    shape, offsets = list(b), [0] * nd
    for i in range(axis, nd):
        o = offs[0] if len(offs) == 1 else (offs[i - axis] if offs else 0)
        if b[i] - o < ref[i]:
            raise _fail(layer, bottoms, f"the crop for dimension {i} is out-of-bounds with size {ref[i]} and "
                                        f"offset {o}")
        shape[i], offsets[i] = ref[i], int(o)
    return [tuple(shape)], [], CropSpec(axis, tuple(offsets), tuple(shape))


_REDUCTION_OPS = {1: "SUM", 2: "ASUM", 3: "SUMSQ", 4: "MEAN"}


@shape_function("Reduction")
def reduction(layer, bottoms):
    """reduction_layer.cpp: top = bottom.shape[:axis]; MEAN's coeff is divided by the reduced count."""
    p = layer.reduction_param
    b = bottoms[0]
    axis = canonical_axis(layer, bottoms, p.axis, len(b))
    op = _REDUCTION_OPS[p.operation]
    coeff = np.float32(p.coeff)
    if op == "MEAN":
        coeff = np.float32(coeff / np.float32(math.prod(b[axis:])))
    return [tuple(b[:axis])], [], ReductionSpec(op, axis, float(coeff))


@shape_function("Tile")
def tile(layer, bottoms):
    """tile_layer.cpp: CHECK(has_tiles), CHECK_GT(tiles, 0); top.shape[axis] *= tiles."""
    p = layer.tile_param
    b = list(bottoms[0])
    axis = canonical_axis(layer, bottoms, p.axis, len(b))
    if not p.HasField("tiles"):
        raise _fail(layer, bottoms, "tile_param: Number of tiles must be specified")
    if p.tiles < 1:
        raise _fail(layer, bottoms, f"tile_param: tiles {p.tiles}: Number of tiles must be positive.")
    b[axis] *= p.tiles
    return [tuple(b)], [], TileSpec(axis, int(p.tiles))


@shape_function("ArgMax")
def argmax(layer, bottoms):
    """argmax_layer.cpp LayerSetUp/Reshape."""
    p = layer.argmax_param
    b = bottoms[0]
    if p.top_k < 1:
        raise _fail(layer, bottoms, "argmax_param: top k must not be less than 1.")
    if p.HasField("axis"):
        axis = canonical_axis(layer, bottoms, p.axis, len(b))
        if p.top_k > b[axis]:
            raise _fail(layer, bottoms, "argmax_param: top_k must be less than or equal to the dimension of the "
                                        "axis.")
        top = list(b)
        top[axis] = p.top_k
        spec_axis = axis
    else:
        if p.top_k > math.prod(b[1:]):
            raise _fail(layer, bottoms, "argmax_param: top_k must be less than or equal to the dimension of the "
                                        "flattened bottom blob per instance.")
        top = [1] * max(len(b), 3)
        top[0], top[2] = b[0], p.top_k
        if p.out_max_val:
            top[1] = 2
        spec_axis = None
    return [tuple(top)], [], ArgMaxSpec(int(p.top_k), bool(p.out_max_val), spec_axis)


@shape_function("SoftmaxWithLoss", "EuclideanLoss")
def loss(layer, bottoms):
    """Loss layers (loss_layer.cpp): a scalar top; SoftmaxWithLoss may add the probabilities as a second top."""
    if len(bottoms) < 2:
        raise _fail(layer, bottoms, "a loss layer needs predictions and labels")
    tops = [()]
    if len(layer.top) > 1:
        tops.append(tuple(bottoms[0]))
    axis = 1
    if layer.type == "SoftmaxWithLoss":
        axis = canonical_axis(layer, bottoms, layer.softmax_param.axis, len(bottoms[0]))
        outer = math.prod(bottoms[0][:axis]) * math.prod(bottoms[0][axis + 1:])
        if math.prod(bottoms[1]) != outer:
            raise _fail(layer, bottoms, f"{outer} labels expected (one per prediction), got {math.prod(bottoms[1])}")
    return tops, [], LossSpec(axis, _copy(layer.loss_param))


def _legacy_dim(shape, index: int) -> int:
    """Blob::LegacyShape: num/channels/height/width are axes 0-3, and 1 past the blob's last axis."""
    return int(shape[index]) if index < len(shape) else 1


@shape_function("HingeLoss", "InfogainLoss", "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "ContrastiveLoss")
def scalar_loss(layer, bottoms):
    """The other loss layers: a scalar top (loss_layer.cpp Reshape: equal first dimensions of bottoms 0 and 1),
    plus each layer's own Reshape/LayerSetUp checks: label ``channels/height/width == 1``
    (infogain_loss_layer.cpp, multinomial_logistic_loss_layer.cpp), ``H`` of shape ``(1, 1, dim, dim)`` for a
    third InfogainLoss bottom, equal counts (sigmoid_cross_entropy_loss_layer.cpp), ``(N, C, 1, 1)`` pairs and an
    ``(N, 1, 1, 1)`` similarity (contrastive_loss_layer.cpp)."""
    if any(len(b) == 0 for b in bottoms[:2]) or bottoms[0][0] != bottoms[1][0]:
        raise _fail(layer, bottoms, "The data and label should have the same first dimension (loss_layer.cpp)")
    legacy = {"InfogainLoss": (0, 1, 2), "MultinomialLogisticLoss": (0, 1), "ContrastiveLoss": (0, 1, 2)}
    for i in legacy.get(layer.type, ()):
        if i < len(bottoms) and len(bottoms[i]) > 4:
            raise _fail(layer, bottoms, f"bottom {i} has {len(bottoms[i])} axes; this layer reads it with the "
                                        "legacy num/channels/height/width accessors (at most 4 axes)")
    if layer.type == "InfogainLoss" and infogain_has_softmax(layer):
        return _infogain_softmax(layer, bottoms)
    if len(layer.top) > 1:
        raise _fail(layer, bottoms, f"{layer.type} produces exactly 1 top blob, got {len(layer.top)}")
    if layer.type in ("InfogainLoss", "MultinomialLogisticLoss"):
        if any(_legacy_dim(bottoms[1], i) != 1 for i in (1, 2, 3)):
            raise _fail(layer, bottoms, "the label must have channels, height and width 1 (one label per item)")
    if layer.type == "InfogainLoss" and len(bottoms) > 2:
        dim = math.prod(bottoms[0]) // bottoms[0][0] if bottoms[0][0] else 0
        h = tuple(_legacy_dim(bottoms[2], i) for i in range(4))
        if h != (1, 1, dim, dim):
            raise _fail(layer, bottoms, f"the infogain matrix (bottom 2) must be (1, 1, {dim}, {dim}), got "
                                        f"(num, channels, height, width) = {h}")
    if layer.type == "SigmoidCrossEntropyLoss" and math.prod(bottoms[0]) != math.prod(bottoms[1]):
        raise _fail(layer, bottoms, "SIGMOID_CROSS_ENTROPY_LOSS layer inputs must have the same count.")
    if layer.type == "ContrastiveLoss":
        a, b, y = bottoms
        if _legacy_dim(a, 1) != _legacy_dim(b, 1) or any(_legacy_dim(s, i) != 1 for s in (a, b) for i in (2, 3)) \
                or any(_legacy_dim(y, i) != 1 for i in (1, 2, 3)):
            raise _fail(layer, bottoms, "ContrastiveLoss takes two (N, C, 1, 1) blobs of equal C and an "
                                        "(N, 1, 1, 1) similarity label")
    return [()], [], LossSpec(1, _copy(layer.loss_param))


def infogain_has_softmax(layer) -> bool:
    """Whether the schema's InfogainLoss is BVLC master's (2017 on: ``infogain_loss_param.axis`` exists; the layer
    applies a softmax to bottom 0, honours ``normalization``/``ignore_label`` and may output the probabilities)
    rather than the fork's (bottom 0 holds probabilities). Decided by the caffe.proto in use (models.schema)."""
    return "axis" in layer.infogain_loss_param.DESCRIPTOR.fields_by_name


def _infogain_softmax(layer, bottoms):
    """BVLC master infogain_loss_layer.cpp Reshape: labels ``outer * inner`` (around the canonical ``axis``),
    ``H`` with ``C * C`` values; an optional second top holds the softmax (bottom 0's shape)."""
    axis = canonical_axis(layer, bottoms, layer.infogain_loss_param.axis, len(bottoms[0]))
    b = bottoms[0]
    c = int(b[axis])
    if math.prod(b[:axis]) * math.prod(b[axis + 1:]) != math.prod(bottoms[1]):
        raise _fail(layer, bottoms, "Number of labels must match number of predictions; e.g., if infogain axis == 1 "
                                    "and prediction shape is (N, C, H, W), label count (number of labels) must be "
                                    "N*H*W, with integer values in {0, 1, ..., C-1}.")
    if len(bottoms) > 2 and math.prod(bottoms[2]) != c * c:
        raise _fail(layer, bottoms, f"the infogain matrix (bottom 2) must have {c}*{c} values")
    if layer.loss_param.HasField("normalize"):
        raise _fail(layer, bottoms, 'loss_param: normalize is deprecated. use "normalization"')
    tops = [()] + ([tuple(b)] if len(layer.top) > 1 else [])
    return tops, [], LossSpec(axis, _copy(layer.loss_param))


@shape_function("Accuracy")
def accuracy(layer, bottoms):
    """src/caffe/layers/accuracy_layer.cpp: a scalar; a second top holds per-class accuracies."""
    axis = canonical_axis(layer, bottoms, layer.accuracy_param.axis, len(bottoms[0]))
    tops = [()]
    if len(layer.top) > 1:
        tops.append((bottoms[0][axis],))
    return tops, [], LossSpec(axis, _copy(layer.accuracy_param))


@shape_function("Parameter")
def parameter(layer, bottoms):
    """parameter_layer.hpp LayerSetUp: one blob of ``parameter_param.shape``, which is also the top."""
    shape = tuple(int(d) for d in layer.parameter_param.shape.dim)
    return [shape], [shape], EmptySpec()


@shape_function("BatchReindex")
def batch_reindex(layer, bottoms):
    """batch_reindex_layer.cpp Reshape: CHECK_EQ(1, bottom[1]->num_axes()); top ``(len(index),) +
    bottom[0].shape[1:]``."""
    if len(bottoms[1]) != 1:
        raise _fail(layer, bottoms, f"the index (bottom 1) must have 1 axis, got {len(bottoms[1])} "
                                    "(batch_reindex_layer.cpp CHECK_EQ(1, bottom[1]->num_axes()))")
    return [(bottoms[1][0],) + tuple(bottoms[0][1:])], [], EmptySpec()


@shape_function("Filter")
def filter_(layer, bottoms):
    """filter_layer.cpp: one top per bottom but the last (the selector, shape ``(N, 1, ...)``); every bottom has
    the selector's batch. The tops' batch is the number of nonzero selector values, known only at run time: this
    returns Caffe's own setup-time shape (``first_reshape_``: the bottom's batch), an upper bound."""
    sel = bottoms[-1]
    if len(layer.top) != len(bottoms) - 1:
        raise _fail(layer, bottoms, f"{len(layer.top)} tops for {len(bottoms)} bottoms (the last bottom is the "
                                    "selector: one top per other bottom; filter_layer.cpp)")
    if len(sel) == 0 or any(d != 1 for d in sel[1:]):
        raise _fail(layer, bottoms, "Selector blob dimensions must be singletons (1), except the first")
    if any(len(b) == 0 or b[0] != sel[0] for b in bottoms[:-1]):
        raise _fail(layer, bottoms, "Each bottom should have the same 0th dimension as the selector blob")
    return [tuple(b) for b in bottoms[:-1]], [], EmptySpec()


@shape_function("Python")
def python(layer, bottoms):
    """python_layer.hpp: the user's layer's own ``setup`` + ``reshape`` give the tops (models/layers/python_layer.py;
    imported here, not at the top, so that only nets with a Python layer import the user's module and torch)."""
    from .layers.python_layer import python_shapes
    return python_shapes(layer, bottoms)


def _copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out


INT_MAX = 2 ** 31 - 1

_ONE = (1, 1, 1, 1)
#: Layer::CheckBlobCounts: (min bottoms, max bottoms, min tops, max tops) from each layer's header
#: (ExactNum*/Min*/Max*Blobs); None = no limit. Convolution also needs as many tops as bottoms.
BLOB_COUNTS = {
    **{t: _ONE for t in ("ReLU", "Sigmoid", "TanH", "AbsVal", "Power", "Dropout", "BNLL", "ELU", "Threshold", "Exp",
                         "Log", "PReLU", "SPP", "InnerProduct", "Embed", "LRN", "Softmax", "MVN", "BatchNorm",
                         "Flatten", "Reshape", "Tile", "ArgMax", "Reduction")},
    "Convolution": (1, None, 1, None), "Deconvolution": (1, None, 1, None), "Pooling": (1, 1, 1, 2),
    "Concat": (1, None, 1, 1), "Eltwise": (2, None, 1, 1), "Slice": (1, 1, 1, None), "Split": (1, 1, 1, None),
    "Silence": (1, None, 0, 0), "Crop": (2, 2, 1, 1), "Scale": (1, 2, 1, 1), "Bias": (1, 2, 1, 1),
    "SoftmaxWithLoss": (2, 2, 1, 2), "EuclideanLoss": (2, 2, 1, 1), "Accuracy": (2, 2, 1, 2),
    "HingeLoss": (2, 2, 1, 1), "MultinomialLogisticLoss": (2, 2, 1, 1), "SigmoidCrossEntropyLoss": (2, 2, 1, 1),
    "InfogainLoss": (2, 3, 1, 2), "ContrastiveLoss": (3, 3, 1, 1),
    "Parameter": (0, 0, 1, 1), "BatchReindex": (2, 2, 1, 1), "Filter": (2, None, 1, None), "Im2col": _ONE,
}


def check_blob_counts(layer) -> None:
    """layer.hpp CheckBlobCounts for a LayerParameter; raises ShapeError naming the layer and the counts."""
    lo_b, hi_b, lo_t, hi_t = BLOB_COUNTS.get(layer.type, (0, None, 0, None))
    nb, nt = len(layer.bottom), len(layer.top)

    def rng(lo, hi):
        return f"exactly {lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
    if nb < lo_b or (hi_b is not None and nb > hi_b):
        raise ShapeError(f"layer '{layer.name}' ({layer.type}) takes {rng(lo_b, hi_b)} bottom blob(s), got {nb}")
    if nt < lo_t or (hi_t is not None and nt > hi_t):
        raise ShapeError(f"layer '{layer.name}' ({layer.type}) produces {rng(lo_t, hi_t)} top blob(s), got {nt}")
    if layer.type in ("Convolution", "Deconvolution") and nb != nt:
        raise ShapeError(f"layer '{layer.name}' ({layer.type}) needs as many tops as bottoms ({nb} vs {nt})")


def check_blob_shape(shape, what: str) -> None:
    """blob.cpp Blob::Reshape: CHECK_GE(shape[i], 0); CHECK_LE(shape[i], INT_MAX / count_) ("blob size exceeds
    INT_MAX"). Raises ShapeError naming ``what``."""
    count = 1
    for d in shape:
        if d < 0:
            raise ShapeError(f"{what}: shape {tuple(shape)} has a negative dimension (Blob::Reshape "
                             "CHECK_GE(shape[i], 0))")
        if count != 0 and d > INT_MAX // count:
            raise ShapeError(f"{what}: shape {tuple(shape)}: blob size exceeds INT_MAX (Blob::Reshape)")
        count *= d
