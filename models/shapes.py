"""Caffe's shape inference, one function per layer type.

Each function takes the layer's ``LayerParameter`` and its bottom shapes and returns ``(top_shapes,
param_shapes)``: the shapes Caffe's ``Layer::Reshape`` gives its tops and the shapes of the learnable blobs it
creates in ``LayerSetUp``. The source file each follows is named in its docstring (BVLC Caffe master).
"""
from __future__ import annotations

import math
from typing import Callable

from .errors import ShapeError

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


def _spatial(values, h, w, name, default, layer, bottoms):
    """Resolve Caffe's ``kernel_size``/``kernel_h``/``kernel_w`` style fields to (h, w)."""
    if h is not None or w is not None:
        if h is None or w is None:
            raise _fail(layer, bottoms, f"{name}_h and {name}_w must be given together")
        return int(h), int(w)
    values = list(values)
    if not values:
        if default is None:
            raise _fail(layer, bottoms, f"{name}_size is required")
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise _fail(layer, bottoms, f"{name} has {len(values)} values; 2-D nets take 1 or 2")


def _opt(msg, field):
    return getattr(msg, field) if msg.HasField(field) else None


def conv_geometry(layer, bottoms):
    """Kernel, stride, pad and dilation (each (h, w)) of a Convolution layer (conv_layer / base_conv_layer.cpp)."""
    p = layer.convolution_param
    k = _spatial(p.kernel_size, _opt(p, "kernel_h"), _opt(p, "kernel_w"), "kernel", None, layer, bottoms)
    s = _spatial(p.stride, _opt(p, "stride_h"), _opt(p, "stride_w"), "stride", 1, layer, bottoms)
    pad = _spatial(p.pad, _opt(p, "pad_h"), _opt(p, "pad_w"), "pad", 0, layer, bottoms)
    d = _spatial(p.dilation, None, None, "dilation", 1, layer, bottoms)
    if min(k) < 1 or min(s) < 1 or min(d) < 1:
        raise _fail(layer, bottoms, f"kernel {k}, stride {s} and dilation {d} must be positive")
    return k, s, pad, d


@shape_function("Convolution")
def convolution(layer, bottoms):
    """src/caffe/layers/conv_layer.cpp compute_output_shape: floor((H + 2p - (d(k-1)+1)) / s) + 1."""
    p = layer.convolution_param
    shapes, params = [], []
    k, s, pad, d = conv_geometry(layer, bottoms)
    for b in bottoms:
        if len(b) != 4:
            raise _fail(layer, bottoms, f"expects 4-axis bottoms (N, C, H, W), got {len(b)} axes")
        n, c, h, w = b
        g = p.group
        if p.num_output < 1:
            raise _fail(layer, bottoms, "num_output must be positive")
        if c % g or p.num_output % g:
            raise _fail(layer, bottoms, f"channels {c} and num_output {p.num_output} must be divisible by group {g}")
        out = []
        for size, kk, ss, pp, dd in zip((h, w), k, s, pad, d):
            extent = dd * (kk - 1) + 1
            o = (size + 2 * pp - extent) // ss + 1
            if o < 1:
                raise _fail(layer, bottoms, f"kernel extent {extent} exceeds the padded input {size + 2 * pp}")
            out.append(o)
        shapes.append((n, p.num_output, out[0], out[1]))
        params = [(p.num_output, c // g, k[0], k[1])] + ([(p.num_output,)] if p.bias_term else [])
    return shapes, params


def pool_geometry(layer, bottom):
    """Kernel, stride, pad ((h, w) each) of a Pooling layer, global pooling resolved (pooling_layer.cpp)."""
    p = layer.pooling_param
    bottoms = [bottom]
    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h"):
            raise _fail(layer, bottoms, "global_pooling takes no kernel_size")
        pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
        stride = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
        if pad != (0, 0) or stride != (1, 1):
            raise _fail(layer, bottoms, "global pooling requires pad = 0 and stride = 1")
        return (bottom[2], bottom[3]), (1, 1), (0, 0)
    if p.HasField("kernel_h") != p.HasField("kernel_w"):
        raise _fail(layer, bottoms, "kernel_h and kernel_w must be given together")
    if p.HasField("kernel_h"):
        k = (p.kernel_h, p.kernel_w)
    elif p.HasField("kernel_size"):
        k = (p.kernel_size, p.kernel_size)
    else:
        raise _fail(layer, bottoms, "kernel_size (or kernel_h and kernel_w) is required")
    pad = (p.pad_h, p.pad_w) if (p.HasField("pad_h") or p.HasField("pad_w")) else (p.pad, p.pad)
    stride = (p.stride_h, p.stride_w) if (p.HasField("stride_h") or p.HasField("stride_w")) else (p.stride, p.stride)
    if min(k) < 1 or min(stride) < 1:
        raise _fail(layer, bottoms, f"kernel {k} and stride {stride} must be positive")
    if pad[0] >= k[0] or pad[1] >= k[1]:
        raise _fail(layer, bottoms, f"pad {pad} must be smaller than kernel {k} (Caffe CHECK_LT)")
    return k, stride, pad


def pool_output_size(size: int, kernel: int, stride: int, pad: int, ceil: bool = True,
                     any_pad: bool | None = None) -> int:
    """Caffe's pooled size: ceil (or floor) ((H + 2p - k) / s) + 1, then the clip.

    The clip (pooling_layer.cpp Reshape): when the layer has any padding and the last window would start at or
    beyond ``H + p``, Caffe drops it. ``any_pad`` is "pad_h or pad_w is non-zero" (Caffe tests both axes together);
    it defaults to ``pad > 0``.
    """
    span = size + 2 * pad - kernel
    out = (math.ceil(span / stride) if ceil else span // stride) + 1
    if any_pad is None:
        any_pad = pad > 0
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@shape_function("Pooling")
def pooling(layer, bottoms):
    """src/caffe/layers/pooling_layer.cpp Reshape."""
    b = bottoms[0]
    if len(b) != 4:
        raise _fail(layer, bottoms, f"expects a 4-axis bottom (N, C, H, W), got {len(b)} axes")
    k, s, pad = pool_geometry(layer, b)
    ceil = layer.pooling_param.round_mode == 0
    any_pad = pad[0] > 0 or pad[1] > 0
    oh = pool_output_size(b[2], k[0], s[0], pad[0], ceil, any_pad)
    ow = pool_output_size(b[3], k[1], s[1], pad[1], ceil, any_pad)
    if oh < 1 or ow < 1:
        raise _fail(layer, bottoms, f"kernel {k} is larger than the padded input")
    top = (b[0], b[1], oh, ow)
    return [top] * len(layer.top), []


def pool_edge_windows(layer, bottom) -> list[str]:
    """Warnings for windows that start at or past the input's edge (possible only with pad 0 and k < s).

    Real Caffe outputs -FLT_MAX (MAX) or NaN (AVE) there (notes: caffe-semantics.md, Pooling).
    """
    k, s, pad = pool_geometry(layer, bottom)
    top = pooling(layer, [bottom])[0][0]
    warnings = []
    for axis, size, kk, ss, pp, out in zip("HW", bottom[2:], k, s, pad, top[2:]):
        start = (out - 1) * ss - pp
        if start >= size:
            warnings.append(
                f"layer '{layer.name}': the last pooling window along {axis} starts at {start}, past the input "
                f"({size}); real Caffe outputs -3.4e38 (MAX) or NaN (AVE) there")
    return warnings


@shape_function("ReLU", "Sigmoid", "TanH", "AbsVal", "Power", "Dropout", "LRN", "BNLL", "Exp", "Log",
                "Threshold", "ELU", "Softmax", "MVN")
def same_shape(layer, bottoms):
    """Element-wise layers (neuron_layer.cpp), LRN, Softmax: top = bottom."""
    if layer.type == "LRN":
        n = layer.lrn_param.local_size
        if n % 2 == 0:
            raise _fail(layer, bottoms, f"LRN local_size must be odd, got {n}")
        if len(bottoms[0]) != 4:
            raise _fail(layer, bottoms, "LRN expects a 4-axis bottom")
    if layer.type == "AbsVal" and layer.top[0] == layer.bottom[0]:
        raise _fail(layer, bottoms, "AbsVal cannot run in place (Caffe's absval_layer.cpp CHECK_NE top/bottom)")
    if layer.type == "Softmax":
        canonical_axis(layer, bottoms, layer.softmax_param.axis, len(bottoms[0]))
    return [tuple(bottoms[0])], []


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
    return [tuple(b[:axis]) + (p.num_output,)], params


@shape_function("Concat")
def concat(layer, bottoms):
    """src/caffe/layers/concat_layer.cpp (``concat_dim`` is the legacy axis)."""
    p = layer.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    axis = canonical_axis(layer, bottoms, axis, len(bottoms[0]))
    out = list(bottoms[0])
    for b in bottoms[1:]:
        if len(b) != len(out) or any(x != y for i, (x, y) in enumerate(zip(b, bottoms[0])) if i != axis):
            raise _fail(layer, bottoms, f"all bottoms must match except along axis {axis}")
        out[axis] += b[axis]
    return [tuple(out)], []


@shape_function("Slice")
def slice_(layer, bottoms):
    """src/caffe/layers/slice_layer.cpp: slice_point, or equal parts for the number of tops."""
    p = layer.slice_param
    b = bottoms[0]
    axis = canonical_axis(layer, bottoms, p.slice_dim if p.HasField("slice_dim") else p.axis, len(b))
    n = len(layer.top)
    points = list(p.slice_point)
    if points:
        if len(points) != n - 1:
            raise _fail(layer, bottoms, f"{len(points)} slice points for {n} tops (expected {n - 1})")
        bounds = [0] + points + [b[axis]]
        if any(x >= y for x, y in zip(bounds, bounds[1:])):
            raise _fail(layer, bottoms, f"slice points {points} must increase within (0, {b[axis]})")
        sizes = [y - x for x, y in zip(bounds, bounds[1:])]
    else:
        if b[axis] % n:
            raise _fail(layer, bottoms, f"axis {axis} size {b[axis]} does not split evenly into {n} tops")
        sizes = [b[axis] // n] * n
    return [tuple(b[:axis]) + (s,) + tuple(b[axis + 1:]) for s in sizes], []


@shape_function("Split")
def split(layer, bottoms):
    """src/caffe/layers/split_layer.cpp: every top is a copy of the bottom."""
    return [tuple(bottoms[0])] * len(layer.top), []


@shape_function("Eltwise")
def eltwise(layer, bottoms):
    """src/caffe/layers/eltwise_layer.cpp: all bottoms the same shape; coeff only for SUM, one per bottom."""
    p = layer.eltwise_param
    if len(bottoms) < 2:
        raise _fail(layer, bottoms, "Eltwise needs at least two bottoms")
    if any(tuple(b) != tuple(bottoms[0]) for b in bottoms):
        raise _fail(layer, bottoms, "all bottoms must have the same shape")
    if len(p.coeff) and (p.operation != 1 or len(p.coeff) != len(bottoms)):
        raise _fail(layer, bottoms, "coeff is only for SUM and needs one value per bottom")
    return [tuple(bottoms[0])], []


@shape_function("BatchNorm")
def batch_norm(layer, bottoms):
    """src/caffe/layers/batch_norm_layer.cpp: blobs mean (C), variance (C), scale factor (1)."""
    b = bottoms[0]
    c = b[1] if len(b) > 1 else 1
    return [tuple(b)], [(c,), (c,), (1,)]


def _scale_like_param_shape(layer, bottoms, axis, num_axes):
    b = bottoms[0]
    axis = canonical_axis(layer, bottoms, axis, len(b)) if len(b) else 0
    if num_axes < -1:
        raise _fail(layer, bottoms, "num_axes must be >= -1")
    end = len(b) if num_axes == -1 else axis + num_axes
    if end > len(b):
        raise _fail(layer, bottoms, f"axis {axis} + num_axes {num_axes} exceeds the bottom's {len(b)} axes")
    return tuple(b[axis:end]), axis


def _check_second_bottom(layer, bottoms, axis):
    b, s = bottoms
    a = canonical_axis(layer, bottoms, axis, len(b))
    if tuple(b[a:a + len(s)]) != tuple(s):
        raise _fail(layer, bottoms, f"bottom[1] shape {tuple(s)} must match bottom[0] from axis {a}")


@shape_function("Scale")
def scale(layer, bottoms):
    """src/caffe/layers/scale_layer.cpp: a learned scale (unless given as bottom[1]) and an optional bias."""
    p = layer.scale_param
    if len(bottoms) == 2:
        _check_second_bottom(layer, bottoms, p.axis)
        shape = tuple(bottoms[1])
        params = []
    else:
        shape, _ = _scale_like_param_shape(layer, bottoms, p.axis, p.num_axes)
        params = [shape]
    if p.bias_term:
        params.append(shape)
    return [tuple(bottoms[0])], params


@shape_function("Bias")
def bias(layer, bottoms):
    """src/caffe/layers/bias_layer.cpp."""
    p = layer.bias_param
    if len(bottoms) == 2:
        _check_second_bottom(layer, bottoms, p.axis)
        return [tuple(bottoms[0])], []
    shape, _ = _scale_like_param_shape(layer, bottoms, p.axis, p.num_axes)
    return [tuple(bottoms[0])], [shape]


@shape_function("Flatten")
def flatten(layer, bottoms):
    """src/caffe/layers/flatten_layer.cpp: axes [axis, end_axis] become one."""
    b = bottoms[0]
    p = layer.flatten_param
    a = canonical_axis(layer, bottoms, p.axis, len(b))
    e = canonical_axis(layer, bottoms, p.end_axis, len(b))
    if e < a:
        raise _fail(layer, bottoms, f"end_axis {p.end_axis} is before axis {p.axis}")
    return [tuple(b[:a]) + (math.prod(b[a:e + 1]),) + tuple(b[e + 1:])], []


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
    return [tuple(out)], []


@shape_function("SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss")
def loss(layer, bottoms):
    """Loss layers (loss_layer.cpp): a scalar top; SoftmaxWithLoss may add the probabilities as a second top."""
    if len(bottoms) < 2:
        raise _fail(layer, bottoms, "a loss layer needs predictions and labels")
    tops = [()]
    if len(layer.top) > 1:
        tops.append(tuple(bottoms[0]))
    if layer.type == "SoftmaxWithLoss":
        axis = canonical_axis(layer, bottoms, layer.softmax_param.axis, len(bottoms[0]))
        outer = math.prod(bottoms[0][:axis]) * math.prod(bottoms[0][axis + 1:])
        if math.prod(bottoms[1]) != outer:
            raise _fail(layer, bottoms, f"{outer} labels expected (one per prediction), got {math.prod(bottoms[1])}")
    return tops, []


@shape_function("Accuracy")
def accuracy(layer, bottoms):
    """src/caffe/layers/accuracy_layer.cpp: a scalar; a second top holds per-class accuracies."""
    axis = canonical_axis(layer, bottoms, layer.accuracy_param.axis, len(bottoms[0]))
    tops = [()]
    if len(layer.top) > 1:
        tops.append((bottoms[0][axis],))
    return tops, []


@shape_function("Silence")
def silence(layer, bottoms):
    return [], []
