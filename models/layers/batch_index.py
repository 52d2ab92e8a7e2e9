"""Caffe's layers that pick items along the batch axis: Parameter, BatchReindex, Filter
(src/caffe/layers/parameter_layer.hpp, batch_reindex_layer.cpp, filter_layer.cpp).

* Parameter: no bottoms; its top *is* its one learnable blob (``top[0]->ShareData/ShareDiff(blobs_[0])``), so the
  blob's diff is the top's diff. ONNX: an initializer behind an ``Identity``.
* BatchReindex: ``top[i] = bottom[0][int(bottom[1][i])]`` (the float index truncated, as ``static_cast<int>``);
  backward scatters-adds into bottom[0] (an item picked twice gets both diffs), never into the index. ONNX:
  ``Cast`` to int64 then ``Gather(axis=0)``.
* Filter: the items of bottoms ``0..k-1`` whose selector (the last bottom, shape ``(N, 1, ...)``) is nonzero, in
  order; backward copies the top diffs back and zeroes the dropped items, never into the selector. The top's batch
  size depends on the selector's values: shape inference reports Caffe's own setup-time shape (the bottom's batch;
  filter_layer.cpp's ``first_reshape_``), torch computes the real count each forward, and ONNX uses ``Compress``
  along axis 0, whose output batch is data-dependent as well (the graph output's batch axis is symbolic).
"""
from __future__ import annotations

import torch
from onnx import TensorProto

from models.errors import InputError
from models.layers.registry import CaffeLayerModule, Converter, register


class CaffeParameter(CaffeLayerModule):
    """parameter_layer.hpp: ``forward()`` returns the layer's blob (shape ``parameter_param.shape``)."""

    def __init__(self, name, shape):
        super().__init__(name)
        self.add_blob(shape)

    def forward(self):
        p = self.blobs[0]
        # a view, so that the top has its own retained gradient (Caffe: the same diff as the blob); detached
        # outside autograd, where a view of a parameter would still report requires_grad
        return [p.view_as(p) if torch.is_grad_enabled() else p.detach()]


@register("Parameter")
class ParameterConverter(Converter):
    def build(self, layer, phase):
        return CaffeParameter(layer.name, layer.param_shapes[0])

    def export(self, layer, g, bottoms, tops, blobs, phase):
        g.node("Identity", [g.param(layer.name, 0, blobs[0])], tops[:1], layer.name)


class CaffeBatchReindex(CaffeLayerModule):
    """batch_reindex_layer.cpp: ``x[idx]`` with ``idx`` the float indices truncated toward zero.

    Raises
    ------
    InputError
        an index outside ``[0, N)`` (Caffe's ``check_batch_reindex`` CHECKs), naming the layer.
    """

    def forward(self, x, idx):
        # Caffe CHECKs the float value (-0.5 fails), before truncating it
        if idx.numel() and (bool((idx < 0).any()) or bool((idx >= x.shape[0]).any())):
            raise InputError(f"layer '{self.caffe_name}' (BatchReindex): index {idx.detach().flatten().tolist()} "
                             f"outside [0, {x.shape[0]}) of bottom 0's batch (batch_reindex_layer.cpp)")
        return [x.index_select(0, idx.detach().reshape(-1).to(torch.int64))]


@register("BatchReindex")
class BatchReindexConverter(Converter):
    def build(self, layer, phase):
        return CaffeBatchReindex(layer.name)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        idx = g.tmp(f"{layer.name}/index")
        g.node("Cast", [bottoms[1]], [idx], f"{layer.name}/cast", to=TensorProto.INT64)
        g.node("Gather", [bottoms[0], idx], tops[:1], layer.name, axis=0)


class CaffeFilter(CaffeLayerModule):
    """filter_layer.cpp: each of bottoms ``0..k-1`` cut to the items whose selector (last bottom) is nonzero."""

    def forward(self, *xs):
        keep = xs[-1].detach().reshape(xs[-1].shape[0]) != 0
        return [x[keep] for x in xs[:-1]]


@register("Filter")
class FilterConverter(Converter):
    data_dependent_batch = True

    def build(self, layer, phase):
        return CaffeFilter(layer.name)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        sel = g.tmp(f"{layer.name}/selector")
        n = layer.name
        g.node("Reshape", [bottoms[-1], g.const_i64(f"{n}/selector_shape", [-1])], [sel], f"{n}/selector_flat")
        keep = g.tmp(f"{n}/keep")
        g.node("Cast", [sel], [keep], f"{n}/keep", to=TensorProto.BOOL)  # nonzero -> true, as `if (*selector)`
        for i, (b, t) in enumerate(zip(bottoms[:-1], tops)):
            g.node("Compress", [b, keep], [t], n if i == 0 else f"{n}/{i}", axis=0)
