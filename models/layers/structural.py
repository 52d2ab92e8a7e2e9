"""Caffe's layers that move data without arithmetic, and Eltwise: Concat, Slice, Split, Flatten, Reshape, Crop,
Tile, Silence (src/caffe/layers/{concat,slice,split,flatten,reshape,crop,tile,silence,eltwise}_layer.cpp).
Each reads its :mod:`models.specs` spec. ONNX (opset 17): Concat, Split, Identity, Flatten/Reshape, Slice (Crop),
Tile, Sum/Mul/Max (Eltwise) are the standard operators with Caffe's semantics."""
from __future__ import annotations

import torch

from models.layers.registry import CaffeLayerModule, Converter, register


class Fn(CaffeLayerModule):
    """A parameter-free layer given by a function of the bottoms that returns the list of tops."""

    def __init__(self, name, fn):
        super().__init__(name)
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


@register("Concat")
class ConcatConverter(Converter):
    def build(self, layer, phase):
        axis = layer.spec.axis
        return Fn(layer.name, lambda *xs: [torch.cat(xs, axis)] if len(xs) > 1 else [xs[0].view_as(xs[0])])

    def export(self, layer, g, bottoms, tops, blobs, phase):
        g.node("Concat", bottoms, tops[:1], layer.name, axis=layer.spec.axis)


def _slice_sizes(layer):
    return layer.spec.axis, list(layer.spec.sizes)


@register("Slice")
class SliceConverter(Converter):
    def build(self, layer, phase):
        axis, sizes = _slice_sizes(layer)
        return Fn(layer.name, lambda x: list(torch.split(x, sizes, axis)))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        axis, sizes = _slice_sizes(layer)
        g.split(bottoms[0], tops, layer.name, sizes, axis)


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
    return layer.spec.start, layer.spec.end


@register("Flatten")
class FlattenConverter(Converter):
    """flatten_layer.cpp: merge axes ``axis..end_axis`` (defaults 1 and -1)."""

    def build(self, layer, phase):
        start, end = _flatten_axes(layer)  # end = start - 1 inserts an axis of 1 (flatten_layer.cpp)
        return Fn(layer.name, lambda x: [x.reshape(tuple(x.shape[:start]) + (-1,) + tuple(x.shape[end + 1:]))])

    def export(self, layer, g, bottoms, tops, blobs, phase):
        start, end = _flatten_axes(layer)
        nd = len(layer.bottom_shapes[0])
        if start == 1 and end == nd - 1:
            g.node("Flatten", bottoms[:1], tops[:1], layer.name, axis=1)
            return
        shape = [0] * start + [-1] + list(layer.bottom_shapes[0][end + 1:])
        g.node("Reshape", [bottoms[0], g.const_i64(f"{layer.name}/shape", shape)], tops[:1], layer.name)


@register("Reshape")
class ReshapeConverter(Converter):
    """reshape_layer.cpp: the top shape from the spec, the batch axis taken from the bottom at run time."""

    def build(self, layer, phase):
        target = layer.spec.onnx_shape  # 0: copy the bottom's axis, -1: inferred (ONNX Reshape's rule)
        return Fn(layer.name, lambda x: [x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(target)])])

    def export(self, layer, g, bottoms, tops, blobs, phase):
        g.node("Reshape", [bottoms[0], g.const_i64(f"{layer.name}/shape", list(layer.spec.onnx_shape))], tops[:1],
               layer.name)


def _eltwise(layer):
    return layer.spec.op, list(layer.spec.coeff)


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


@register("Crop")
class CropConverter(Converter):
    """crop_layer.cpp: bottom[0] cut to bottom[1]'s size from ``axis`` on, at the spec's offsets (gradient to
    bottom[0] only)."""

    def build(self, layer, phase):
        spec = layer.spec

        def crop(x, ref):
            idx = tuple(slice(None) if i < spec.axis else slice(o, o + ref.shape[i])
                        for i, o in enumerate(spec.offsets))
            return [x[idx]]
        return Fn(layer.name, crop)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        spec = layer.spec
        axes = list(range(spec.axis, len(spec.shape)))
        starts = [spec.offsets[a] for a in axes]
        ends = [spec.offsets[a] + spec.shape[a] for a in axes]
        n = layer.name
        g.node("Slice", [bottoms[0], g.const_i64(f"{n}/starts", starts), g.const_i64(f"{n}/ends", ends),
                         g.const_i64(f"{n}/axes", axes)], tops[:1], n)


@register("Tile")
class TileConverter(Converter):
    """tile_layer.cpp: the block from ``axis`` on repeated ``tiles`` times along ``axis``."""

    def build(self, layer, phase):
        spec = layer.spec

        def tile(x):
            reps = [1] * x.dim()
            reps[spec.axis] = spec.tiles
            return [x.repeat(*reps)]
        return Fn(layer.name, tile)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        reps = [1] * len(layer.bottom_shapes[0])
        reps[layer.spec.axis] = layer.spec.tiles
        g.node("Tile", [bottoms[0], g.const_i64(f"{layer.name}/repeats", reps)], tops[:1], layer.name)


@register("Silence")
class SilenceConverter(Converter):
    """silence_layer.cpp: consumes its bottoms, produces nothing (no ONNX node)."""

    def build(self, layer, phase):
        return Fn(layer.name, lambda *xs: [])

    def export(self, layer, g, bottoms, tops, blobs, phase):
        return
