"""Caffe's layers that move data without arithmetic, and Eltwise: Concat, Slice, Split, Flatten, Reshape
(src/caffe/layers/{concat,slice,split,flatten,reshape,eltwise}_layer.cpp)."""
from __future__ import annotations

import torch

from models.errors import NetDefinitionError, ShapeError
from models.layers.inner_product import canonical_axis
from models.layers.registry import CaffeLayerModule, Converter, register


class Fn(CaffeLayerModule):
    """A parameter-free layer given by a function of the bottoms that returns the list of tops."""

    def __init__(self, name, fn):
        super().__init__(name)
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def _concat_axis(layer):
    cp = layer.proto.concat_param
    if cp.HasField("concat_dim"):
        return cp.concat_dim
    return canonical_axis(cp.axis, len(layer.bottom_shapes[0]))


@register("Concat")
class ConcatConverter(Converter):
    def build(self, layer, phase):
        axis = _concat_axis(layer)
        return Fn(layer.name, lambda *xs: [torch.cat(xs, axis)] if len(xs) > 1 else [xs[0].view_as(xs[0])])

    def export(self, layer, g, bottoms, tops, blobs, phase):
        g.node("Concat", bottoms, tops[:1], layer.name, axis=_concat_axis(layer))


def _slice_sizes(layer):
    sp = layer.proto.slice_param
    axis = sp.slice_dim if sp.HasField("slice_dim") else canonical_axis(sp.axis, len(layer.bottom_shapes[0]))
    total = layer.bottom_shapes[0][axis]
    points = list(sp.slice_point)
    n = len(layer.tops)
    if points:
        if len(points) != n - 1:
            raise NetDefinitionError(f"layer '{layer.name}': {len(points)} slice points for {n} tops "
                                     "(slice_layer.cpp needs tops - 1)")
        bounds = [0, *points, total]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    else:
        if total % n:
            raise ShapeError(f"layer '{layer.name}': axis {axis} of size {total} cannot be sliced into {n} equal "
                             "parts")
        sizes = [total // n] * n
    if any(s <= 0 for s in sizes):
        raise ShapeError(f"layer '{layer.name}': slice points {points} do not fit axis {axis} of size {total}")
    return axis, sizes


@register("Slice")
class SliceConverter(Converter):
    def build(self, layer, phase):
        axis, sizes = _slice_sizes(layer)
        return Fn(layer.name, lambda x: list(torch.split(x, sizes, axis)))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        axis, sizes = _slice_sizes(layer)
        g.node("Split", [bottoms[0], g.const_i64(f"{layer.name}/sizes", sizes)], tops, layer.name, axis=axis)


@register("Split")
class SplitConverter(Converter):
    """split_layer.cpp: every top is the bottom (gradients add up)."""

    def build(self, layer, phase):
        n = len(layer.tops)
        # distinct views, so that each top keeps its own gradient (Caffe's per-top diffs)
        return Fn(layer.name, lambda x: [x.view_as(x) for _ in range(n)])

    def export(self, layer, g, bottoms, tops, blobs, phase):
        for i, t in enumerate(tops):
            g.node("Identity", bottoms[:1], [t], f"{layer.name}/{i}" if i else layer.name)


def _flatten_axes(layer):
    fp = layer.proto.flatten_param
    nd = len(layer.bottom_shapes[0])
    return canonical_axis(fp.axis, nd), canonical_axis(fp.end_axis, nd)


def _onnx_shape(in_shape, out_shape, keep_leading: int):
    """An ONNX Reshape target: the first ``keep_leading`` dims copied (0), so the batch stays dynamic."""
    return [0] * keep_leading + list(out_shape[keep_leading:])


@register("Flatten")
class FlattenConverter(Converter):
    """flatten_layer.cpp: merge axes ``axis..end_axis`` (defaults 1 and -1)."""

    def build(self, layer, phase):
        start, end = _flatten_axes(layer)
        return Fn(layer.name, lambda x: [x.flatten(start, end)])

    def export(self, layer, g, bottoms, tops, blobs, phase):
        start, end = _flatten_axes(layer)
        nd = len(layer.bottom_shapes[0])
        if start == 1 and end == nd - 1:
            g.node("Flatten", bottoms[:1], tops[:1], layer.name, axis=1)
            return
        shape = [0] * start + [-1] + list(layer.bottom_shapes[0][end + 1:])
        g.node("Reshape", [bottoms[0], g.const_i64(f"{layer.name}/shape", shape)], tops[:1], layer.name)


def reshape_target(layer_name, rp, in_shape):
    """reshape_layer.cpp: the top shape for a bottom of ``in_shape`` (0 copies a dim, one -1 is inferred)."""
    dims = list(rp.shape.dim)
    nd = len(in_shape)
    start = rp.axis if rp.axis >= 0 else nd + rp.axis + 1
    end = nd if rp.num_axes == -1 else start + rp.num_axes
    if not (0 <= start <= end <= nd):
        raise ShapeError(f"layer '{layer_name}': reshape axis {rp.axis}/num_axes {rp.num_axes} do not fit a "
                         f"bottom of shape {tuple(in_shape)}")
    out = list(in_shape[:start])
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= nd:
                raise ShapeError(f"layer '{layer_name}': reshape dim {i} is 0 but the bottom {tuple(in_shape)} "
                                 f"has no axis {start + i}")
            out.append(in_shape[start + i])
        else:
            out.append(d)
    out += list(in_shape[end:])
    if out.count(-1) > 1:
        raise ShapeError(f"layer '{layer_name}': reshape has more than one -1")
    total = 1
    for d in in_shape:
        total *= d
    if -1 in out:
        known = 1
        for d in out:
            if d != -1:
                known *= d
        if known == 0 or total % known:
            raise ShapeError(f"layer '{layer_name}': cannot reshape {tuple(in_shape)} to {tuple(out)}")
        out[out.index(-1)] = total // known
    prod = 1
    for d in out:
        prod *= d
    if prod != total:
        raise ShapeError(f"layer '{layer_name}': cannot reshape {tuple(in_shape)} ({total} values) to "
                         f"{tuple(out)} ({prod} values)")
    return tuple(out), start, dims


@register("Reshape")
class ReshapeConverter(Converter):
    def build(self, layer, phase):
        rp = layer.proto.reshape_param
        return Fn(layer.name, lambda x: [x.reshape(reshape_target(layer.name, rp, tuple(x.shape))[0])])

    def export(self, layer, g, bottoms, tops, blobs, phase):
        rp = layer.proto.reshape_param
        out, start, dims = reshape_target(layer.name, rp, layer.bottom_shapes[0])
        # copy the batch axis when Caffe does (it lies before `axis`, or `shape` copies it with 0)
        keep = 1 if (start > 0 or (dims and dims[0] == 0)) else 0
        shape = _onnx_shape(layer.bottom_shapes[0], out, keep)
        g.node("Reshape", [bottoms[0], g.const_i64(f"{layer.name}/shape", shape)], tops[:1], layer.name)


def _eltwise(layer):
    ep = layer.proto.eltwise_param
    op = {0: "PROD", 1: "SUM", 2: "MAX"}[ep.operation]
    coeff = list(ep.coeff)
    n = len(layer.bottoms)
    if coeff and op != "SUM":
        raise NetDefinitionError(f"layer '{layer.name}': Eltwise coeff is only for SUM (eltwise_layer.cpp)")
    if coeff and len(coeff) != n:
        raise NetDefinitionError(f"layer '{layer.name}': Eltwise has {len(coeff)} coeff for {n} bottoms")
    return op, coeff or [1.0] * n


class CaffeEltwise(CaffeLayerModule):
    """eltwise_layer.cpp: SUM ``sum_i coeff_i x_i``, PROD ``prod_i x_i``, MAX ``max_i x_i`` (the gradient goes
    where Caffe's argmax mask sends it, ties included)."""

    def __init__(self, name, op, coeff):
        super().__init__(name)
        self.op, self.coeff = op, coeff

    def forward(self, *xs):
        if self.op == "SUM":
            y = xs[0] if self.coeff[0] == 1 else xs[0] * self.coeff[0]
            for c, x in zip(self.coeff[1:], xs[1:]):
                y = y + x if c == 1 else y + c * x
            return [y]
        if self.op == "PROD":
            y = xs[0]
            for x in xs[1:]:
                y = y * x
            return [y]
        # Caffe's MAX loop starts with "a > b ? a : b" on bottoms 0 and 1 (a tie goes to bottom 1), then a later
        # bottom wins only when strictly greater. torch's max keeps the first maximum, so stacking the bottoms in the
        # order 1, 0, 2, 3, ... sends each tie's gradient where Caffe's mask sends it.
        order = [xs[1], xs[0], *xs[2:]] if len(xs) > 1 else list(xs)
        return [torch.stack(order, 0).max(0).values]


@register("Eltwise")
class EltwiseConverter(Converter):
    def build(self, layer, phase):
        return CaffeEltwise(layer.name, *_eltwise(layer))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        op, coeff = _eltwise(layer)
        name = layer.name
        if op == "PROD":
            prev = bottoms[0]
            if len(bottoms) == 1:
                g.node("Identity", [prev], tops[:1], name)
            for i, b in enumerate(bottoms[1:], start=1):
                last = i == len(bottoms) - 1
                out = tops[0] if last else g.tmp(f"{name}/prod{i}")
                g.node("Mul", [prev, b], [out], name if last else f"{name}/prod{i}")
                prev = out
            return
        if op == "MAX":
            g.node("Max", bottoms, tops[:1], name)
            return
        terms = []
        for i, (c, b) in enumerate(zip(coeff, bottoms)):
            if c == 1:
                terms.append(b)
            else:
                t = g.tmp(f"{name}/term{i}")
                g.node("Mul", [b, g.scalar(c)], [t], f"{name}/coeff{i}")
                terms.append(t)
        g.node("Sum", terms, tops[:1], name)
