"""Caffe's Reduction, ArgMax and MVN layers (src/caffe/layers/{reduction,argmax,mvn}_layer.cpp), and Embed
(embed_layer.cpp). Each reads its :mod:`models.specs` spec.

ONNX (opset 17): ReduceSum / ReduceL1 / ReduceSumSquare / ReduceMean (axes as attribute below opset 18) for
Reduction, TopK + Cast for ArgMax, ReduceMean/Sub/Sqrt/Div for MVN, Gather for Embed.
ArgMax ties: Caffe's partial_sort over (value, index) pairs with ``std::greater`` puts the *larger* index first
among equal values; torch.topk and ONNX TopK do not promise that order, so exact ties (measure zero for real
data) may pick another index.
"""
from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto

from models.errors import InputError
from models.layers.registry import CaffeLayerModule, Converter, register


class CaffeReduction(CaffeLayerModule):
    """reduction_layer.cpp: top = coeff * op(bottom over axes axis..end); MEAN's coeff already holds 1/count."""

    def __init__(self, name, spec):
        super().__init__(name)
        self.spec = spec

    def forward(self, x):
        dims = list(range(self.spec.axis, x.dim()))
        op = self.spec.op
        if op == "ASUM":
            x = x.abs()
        elif op == "SUMSQ":
            x = x * x
        y = x.sum(dims) if dims else x.clone()
        return [y if self.spec.coeff == 1 else y * self.spec.coeff]


@register("Reduction")
class ReductionConverter(Converter):
    def build(self, layer, phase):
        return CaffeReduction(layer.name, layer.spec)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        spec, name = layer.spec, layer.name
        axes = list(range(spec.axis, len(layer.bottom_shapes[0])))
        op = {"SUM": "ReduceSum", "MEAN": "ReduceSum", "ASUM": "ReduceL1", "SUMSQ": "ReduceSumSquare"}[spec.op]
        if spec.coeff == 1:
            g.reduce(op, bottoms[0], tops[0], name, axes, keepdims=0)
            return
        red = g.tmp(f"{name}/reduced")
        g.reduce(op, bottoms[0], red, f"{name}/reduce", axes, keepdims=0)
        g.node("Mul", [red, g.scalar(spec.coeff)], tops[:1], name)


class CaffeArgMax(CaffeLayerModule):
    """argmax_layer.cpp: indices (as floats) of the ``top_k`` largest values, or their values
    (``out_max_val`` with an axis), or indices then values (``out_max_val`` without an axis); no backward."""

    def __init__(self, name, spec, top_shape):
        super().__init__(name)
        self.spec, self.top_shape = spec, tuple(top_shape)

    def forward(self, x):
        s = self.spec
        if s.axis is not None:
            vals, idx = torch.topk(x, s.top_k, dim=s.axis)
            return [vals if s.out_max_val else idx.to(x.dtype)]
        vals, idx = torch.topk(x.reshape(x.shape[0], -1), s.top_k, dim=1)
        out = torch.stack([idx.to(x.dtype), vals], 1) if s.out_max_val else idx.to(x.dtype)[:, None]
        return [out.reshape((x.shape[0],) + self.top_shape[1:])]


@register("ArgMax")
class ArgMaxConverter(Converter):
    def build(self, layer, phase):
        return CaffeArgMax(layer.name, layer.spec, layer.top_shapes[0])

    def export(self, layer, g, bottoms, tops, blobs, phase):
        s, name, x = layer.spec, layer.name, bottoms[0]
        k = g.const_i64(f"{name}/k", [s.top_k])
        vals, idx = g.tmp(f"{name}/values"), g.tmp(f"{name}/indices")
        if s.axis is not None:
            g.node("TopK", [x, k], [vals, idx], f"{name}/topk", axis=s.axis, largest=1, sorted=1)
            if s.out_max_val:
                g.node("Identity", [vals], tops[:1], name)
            else:
                g.node("Cast", [idx], tops[:1], name, to=TensorProto.FLOAT)
            return
        flat = g.tmp(f"{name}/flat")
        g.node("Flatten", [x], [flat], f"{name}/flatten", axis=1)
        g.node("TopK", [flat, k], [vals, idx], f"{name}/topk", axis=1, largest=1, sorted=1)
        fidx = g.tmp(f"{name}/indices_f")
        g.node("Cast", [idx], [fidx], f"{name}/cast", to=TensorProto.FLOAT)
        out = fidx
        if s.out_max_val:
            out = g.tmp(f"{name}/pairs")
            g.node("Concat", [fidx, vals], [out], f"{name}/concat", axis=1)
        shape = [0] + list(layer.top_shapes[0][1:])
        g.node("Reshape", [out, g.const_i64(f"{name}/shape", shape)], tops[:1], name)


class _MVNFunction(torch.autograd.Function):
    """MVN with normalize_variance, forward and Caffe's own backward (mvn_layer.cpp Backward_cpu):
    ``dx = (dy - mean(dy) - y * mean(y * dy)) / (sqrt(var) + eps)``. That is the exact gradient only for
    eps = 0 (the exact one has ``sqrt(var) * (sqrt(var) + eps)`` where Caffe has ``(sqrt(var) + eps)^2``);
    Caffe's is reproduced."""

    @staticmethod
    def forward(ctx, x, dims, eps):
        c = x - x.mean(dims, keepdim=True)
        d = (c * c).mean(dims, keepdim=True).sqrt() + eps
        y = c / d
        ctx.save_for_backward(y, d)
        ctx.dims = dims
        return y

    @staticmethod
    def backward(ctx, g):
        y, d = ctx.saved_tensors
        dims = ctx.dims
        gx = g - g.mean(dims, keepdim=True) - y * (y * g).mean(dims, keepdim=True)
        return gx / d, None, None


class CaffeMVN(CaffeLayerModule):
    """mvn_layer.cpp: ``y = x - mean``; with normalize_variance ``y = (x - mean) / (sqrt(mean((x - mean)^2))
    + eps)`` (Caffe's backward, :class:`_MVNFunction`); statistics over axes 2.. (or 1.. across channels)."""

    def __init__(self, name, spec):
        super().__init__(name)
        self.spec = spec

    def forward(self, x):
        dims = list(range(1 if self.spec.across_channels else 2, x.dim()))
        if not self.spec.normalize_variance:
            return [x - x.mean(dims, keepdim=True)]
        return [_MVNFunction.apply(x, dims, self.spec.eps)]


@register("MVN")
class MVNConverter(Converter):
    def build(self, layer, phase):
        return CaffeMVN(layer.name, layer.spec)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        s, name, x = layer.spec, layer.name, bottoms[0]
        axes = list(range(1 if s.across_channels else 2, len(layer.bottom_shapes[0])))
        mean = g.tmp(f"{name}/mean")
        g.reduce("ReduceMean", x, mean, f"{name}/mean", axes)
        if not s.normalize_variance:
            g.node("Sub", [x, mean], tops[:1], name)
            return
        c, sq, var, std, den = (g.tmp(f"{name}/{w}") for w in ("centred", "sq", "var", "std", "den"))
        g.node("Sub", [x, mean], [c], f"{name}/centre")
        g.node("Mul", [c, c], [sq], f"{name}/square")
        g.reduce("ReduceMean", sq, var, f"{name}/var", axes)
        g.node("Sqrt", [var], [std], f"{name}/sqrt")
        g.node("Add", [std, g.scalar(s.eps)], [den], f"{name}/eps")
        g.node("Div", [c, den], tops[:1], name)


class CaffeEmbed(CaffeLayerModule):
    """embed_layer.cpp: ``top[..., :] = W[int(bottom[...]), :] (+ b)``; W (input_dim, num_output). Caffe casts
    each bottom value to int (truncation) and only DCHECKs the range; here a value outside [0, input_dim) or
    not an integer raises InputError. No gradient to the bottom (Caffe refuses it); W and b get theirs."""

    def __init__(self, name, spec):
        super().__init__(name)
        self.spec = spec
        self.add_blob((spec.input_dim, spec.num_output))
        if spec.bias_term:
            self.add_blob((spec.num_output,))

    def forward(self, x):
        idx = x.detach().to(torch.int64)
        if x.numel() and (bool((idx.to(x.dtype) != x.detach()).any()) or int(idx.min()) < 0
                          or int(idx.max()) >= self.spec.input_dim):
            raise InputError(f"layer '{self.caffe_name}': Embed inputs must be integers in "
                             f"[0, {self.spec.input_dim})")
        y = torch.nn.functional.embedding(idx, self.blobs[0])
        return [y + self.blobs[1] if self.spec.bias_term else y]


@register("Embed")
class EmbedConverter(Converter):
    def build(self, layer, phase):
        return CaffeEmbed(layer.name, layer.spec)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        name = layer.name
        idx = g.tmp(f"{name}/index")
        g.node("Cast", bottoms[:1], [idx], f"{name}/cast", to=TensorProto.INT64)
        w = g.param(name, 0, np.asarray(blobs[0], np.float32))
        if not layer.spec.bias_term:
            g.node("Gather", [w, idx], tops[:1], name, axis=0)
            return
        rows = g.tmp(f"{name}/rows")
        g.node("Gather", [w, idx], [rows], f"{name}/gather", axis=0)
        g.node("Add", [rows, g.param(name, 1, blobs[1])], tops[:1], name)
