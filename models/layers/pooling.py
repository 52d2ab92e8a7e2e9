"""Caffe's Pooling layer (src/caffe/layers/pooling_layer.cpp), MAX and AVE, exactly.

Caffe's rules, which neither torch's nor ONNX's pooling reproduce in every case:

* output size ``ceil((H + 2p - k) / s) + 1`` (``round_mode: FLOOR`` uses floor), then the clip: only when
  the layer is padded and ``(H_out - 1) * s >= H + p`` is the last window dropped (torch clips even with
  ``p = 0``); see :func:`models.shapes.pool_output_size`;
* pad up to ``k - 1`` (torch refuses ``p > k / 2``);
* MAX takes the max over the window clipped to ``[0, H)``; a window that lies wholly past the edge gives
  ``-FLT_MAX`` (Caffe initialises the max to ``-FLT_MAX``);
* AVE divides the sum over the clipped window by ``(hend - hstart) * (wend - wstart)`` with
  ``hend = min(hstart + k, H + p)`` taken *before* clipping: explicit padding counts, the ceil overhang past
  ``H + p`` does not; a window wholly past ``H + p`` divides by zero (NaN, as in Caffe);
* ``global_pooling``: kernel = the bottom's H x W, pad 0, stride 1.

Implementation: when torch's own pooling computes the same thing (same output size, ``p <= k/2``) it is used;
otherwise the input is padded explicitly (``-FLT_MAX`` for MAX, 0 for AVE) to cover every window and pooled with
no padding; for AVE the window sums are divided by a divisor map computed from Caffe's formula.
The ONNX form is always the explicit one (``Pad`` + ``MaxPool``/``AveragePool`` without padding, then a
multiplication by ``k_h*k_w / divisor``), which avoids the ``count_include_pad`` + ``ceil_mode`` ambiguity of
onnxruntime (onnxruntime issue 16203, onnx issue 5276).
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from models.errors import NetDefinitionError
from models.layers.registry import CaffeLayerModule, Converter, register
from models.specs import PoolSpec, ave_divisor, pool_output_size  # noqa: F401  (re-exported)

FLT_MAX = float(np.finfo(np.float32).max)


class CaffePool2d(CaffeLayerModule):
    """Caffe MAX/AVE pooling over the last two axes of an (N, C, H, W) tensor."""

    def __init__(self, spec: PoolSpec):
        super().__init__(spec.name)
        if spec.method not in ("MAX", "AVE"):
            raise NetDefinitionError(f"layer '{spec.name}': pooling method {spec.method} is not supported "
                                     "(MAX, AVE)")
        self.spec = spec
        self._div_cache: dict = {}

    def _native_ok(self, h: int, w: int) -> bool:
        """True when torch's pooling (padding p, ceil_mode) gives Caffe's output size and semantics."""
        (kh, kw), (oh, ow) = self.spec.geometry(h, w)
        (sh, sw), (ph, pw) = self.spec.stride, self.spec.pad
        if 2 * ph > kh or 2 * pw > kw:
            return False
        for size, k, s, p, o in ((h, kh, sh, ph, oh), (w, kw, sw, pw, ow)):
            # torch's output size (aten/src/ATen/native/Pool.h pooling_output_shape)
            t = (size + 2 * p - k + ((s - 1) if self.spec.ceil else 0)) // s + 1
            if self.spec.ceil and (t - 1) * s >= size + p:
                t -= 1
            if t != o:
                return False
        return True

    def _divisor(self, h, w, device, dtype):
        key = (h, w, device, dtype)
        d = self._div_cache.get(key)
        if d is None:
            d = torch.as_tensor(self.spec.divisor(h, w), dtype=dtype, device=device)
            self._div_cache[key] = d
        return d

    def forward(self, x):
        h, w = x.shape[-2], x.shape[-1]
        (kh, kw), _ = self.spec.geometry(h, w)
        stride, pad = self.spec.stride, self.spec.pad
        if self._native_ok(h, w):
            if self.spec.method == "MAX":
                return [F.max_pool2d(x, (kh, kw), stride, pad, ceil_mode=self.spec.ceil)]
            return [F.avg_pool2d(x, (kh, kw), stride, pad, ceil_mode=self.spec.ceil, count_include_pad=True)]
        top, bottom, left, right = self.spec.explicit_pads(h, w)
        value = -FLT_MAX if self.spec.method == "MAX" else 0.0
        xp = F.pad(x, (left, right, top, bottom), value=value)
        if self.spec.method == "MAX":
            return [F.max_pool2d(xp, (kh, kw), stride)]
        s = F.avg_pool2d(xp, (kh, kw), stride, divisor_override=1)
        return [s / self._divisor(h, w, x.device, x.dtype)]


def export_pool(spec: PoolSpec, g, x: str, top: str, h: int, w: int, name: str) -> None:
    """ONNX nodes for one Caffe pooling of an (N, C, h, w) value ``x`` into ``top`` (opset 11+ ``Pad`` with
    input pads; ``MaxPool``/``AveragePool`` without padding, so their border rules never apply)."""
    if spec.method not in ("MAX", "AVE"):
        raise NetDefinitionError(f"layer '{name}': pooling method {spec.method} is not supported (MAX, AVE)")
    (kh, kw), _ = spec.geometry(h, w)
    top_pad, bottom, left, right = spec.explicit_pads(h, w)
    if top_pad or bottom or left or right:
        value = -FLT_MAX if spec.method == "MAX" else 0.0
        x = g.pad(name, x, (top_pad, left), (bottom, right), value)
    if spec.method == "MAX":
        g.node("MaxPool", [x], [top], name, kernel_shape=[kh, kw], strides=list(spec.stride))
        return
    mean = g.tmp(f"{name}/window_mean")
    g.node("AveragePool", [x], [mean], name, kernel_shape=[kh, kw], strides=list(spec.stride))
    with np.errstate(divide="ignore"):
        factor = (kh * kw) / spec.divisor(h, w)
    if np.all(factor == 1.0):
        g.node("Identity", [mean], [top], name + "/divisor")
        return
    c = g.const(f"{name}/divisor_factor", factor.astype(np.float32)[None, None])
    g.node("Mul", [mean, c], [top], name + "/divisor")


@register("Pooling")
class PoolingConverter(Converter):
    def build(self, layer, phase):
        return CaffePool2d(layer.spec)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        h, w = layer.bottom_shapes[0][2:4]
        export_pool(layer.spec, g, bottoms[0], tops[0], h, w, layer.name)


class CaffeSPP(CaffeLayerModule):
    """spp_layer.cpp: pooling at each pyramid level; height 1 gives the pooled (N, C, 1, 1) blob, otherwise
    each level is flattened to (N, C * bins^2) and the levels are concatenated along axis 1."""

    def __init__(self, name, spec):
        super().__init__(name)
        self.spec = spec
        self.levels = torch.nn.ModuleList(CaffePool2d(s) for s in spec.levels)

    def forward(self, x):
        outs = [p(x)[0] for p in self.levels]
        if not self.spec.flatten:
            return outs
        return [torch.cat([o.flatten(1) for o in outs], 1)]


@register("SPP")
class SPPConverter(Converter):
    def build(self, layer, phase):
        return CaffeSPP(layer.name, layer.spec)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        h, w = layer.bottom_shapes[0][2:4]
        spec = layer.spec
        if not spec.flatten:
            export_pool(spec.levels[0], g, bottoms[0], tops[0], h, w, layer.name)
            return
        flats = []
        for i, level in enumerate(spec.levels):
            pooled = g.tmp(f"{layer.name}/level{i}")
            export_pool(level, g, bottoms[0], pooled, h, w, f"{layer.name}/level{i}")
            flat = g.tmp(f"{layer.name}/level{i}_flat")
            g.node("Flatten", [pooled], [flat], f"{layer.name}/flatten{i}", axis=1)
            flats.append(flat)
        g.node("Concat", flats, tops[:1], layer.name, axis=1)
