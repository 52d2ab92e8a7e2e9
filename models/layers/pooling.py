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
from models.shapes import pool_geometry, pool_output_size
from models.layers.registry import CaffeLayerModule, Converter, register

FLT_MAX = float(np.finfo(np.float32).max)


def ave_divisor(size: int, k: int, s: int, p: int, out: int) -> np.ndarray:
    """Per-output AVE divisor along one axis: ``min(start + k, size + p) - start`` with ``start = o*s - p``."""
    starts = np.arange(out) * s - p
    ends = np.minimum(starts + k, size + p)
    return (ends - starts).astype(np.float64)


class PoolSpec:
    """The numbers of one pooling layer: kernel, stride and pad per axis, method, rounding."""

    def __init__(self, kernel=(2, 2), stride=(1, 1), pad=(0, 0), method: str = "MAX",
                 global_pooling: bool = False, ceil: bool = True, name: str = ""):
        self.kernel, self.stride, self.pad = tuple(kernel), tuple(stride), tuple(pad)
        self.method, self.global_pooling, self.ceil, self.name = method, global_pooling, ceil, name
        if method not in ("MAX", "AVE"):
            raise NetDefinitionError(f"layer '{name}': pooling method {method} is not supported (MAX, AVE)")
        if global_pooling and (any(self.pad) or any(s != 1 for s in self.stride)):
            raise NetDefinitionError(f"layer '{name}': global pooling needs pad 0 and stride 1 (pooling_layer.cpp)")
        for k, p in zip(self.kernel, self.pad):
            if not global_pooling and p >= k:
                raise NetDefinitionError(f"layer '{name}': pad {p} must be smaller than kernel {k} "
                                         "(pooling_layer.cpp)")

    @classmethod
    def from_proto(cls, layer) -> "PoolSpec":
        pp = layer.proto.pooling_param
        kernel, stride, pad = pool_geometry(layer.proto, layer.bottom_shapes[0])
        method = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}[pp.pool]
        return cls(kernel, stride, pad, method, bool(pp.global_pooling), pp.round_mode == 0, layer.name)

    def geometry(self, h: int, w: int):
        """Kernel and output sizes for a bottom of spatial size ``h x w``."""
        kh, kw = (h, w) if self.global_pooling else self.kernel
        sh, sw = self.stride
        ph, pw = self.pad
        any_pad = ph > 0 or pw > 0  # Caffe clips both axes when either is padded
        oh = pool_output_size(h, kh, sh, ph, self.ceil, any_pad)
        ow = pool_output_size(w, kw, sw, pw, self.ceil, any_pad)
        return (kh, kw), (oh, ow)

    def explicit_pads(self, h: int, w: int):
        """(top, bottom, left, right) padding that makes every window lie inside the padded input.

        A negative bottom/right value means rows past the last window are cropped.
        """
        (kh, kw), (oh, ow) = self.geometry(h, w)
        (sh, sw), (ph, pw) = self.stride, self.pad
        bottom = (oh - 1) * sh + kh - h - ph
        right = (ow - 1) * sw + kw - w - pw
        return ph, bottom, pw, right

    def divisor(self, h: int, w: int) -> np.ndarray:
        """Caffe's AVE divisor for every output position, shape (H_out, W_out)."""
        (kh, kw), (oh, ow) = self.geometry(h, w)
        dh = ave_divisor(h, kh, self.stride[0], self.pad[0], oh)
        dw = ave_divisor(w, kw, self.stride[1], self.pad[1], ow)
        return np.outer(dh, dw)


class CaffePool2d(CaffeLayerModule):
    """Caffe MAX/AVE pooling over the last two axes of an (N, C, H, W) tensor."""

    def __init__(self, spec: PoolSpec):
        super().__init__(spec.name)
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


@register("Pooling")
class PoolingConverter(Converter):
    def build(self, layer, phase):
        return CaffePool2d(PoolSpec.from_proto(layer))

    def export(self, layer, g, bottoms, tops, blobs, phase):
        spec = PoolSpec.from_proto(layer)
        h, w = layer.bottom_shapes[0][2:4]
        (kh, kw), _ = spec.geometry(h, w)
        top, bottom, left, right = spec.explicit_pads(h, w)
        x = bottoms[0]
        if top or bottom or left or right:
            value = -FLT_MAX if spec.method == "MAX" else 0.0
            x = g.pad(layer.name, x, (top, left), (bottom, right), value)
        if spec.method == "MAX":
            g.node("MaxPool", [x], [tops[0]], layer.name, kernel_shape=[kh, kw], strides=list(spec.stride))
            return
        mean = g.tmp(f"{layer.name}/window_mean")
        g.node("AveragePool", [x], [mean], layer.name, kernel_shape=[kh, kw], strides=list(spec.stride))
        with np.errstate(divide="ignore"):
            factor = (kh * kw) / spec.divisor(h, w)
        if np.all(factor == 1.0):
            g.node("Identity", [mean], [tops[0]], layer.name + "/divisor")
            return
        c = g.const(f"{layer.name}/divisor_factor", factor.astype(np.float32)[None, None])
        g.node("Mul", [mean, c], [tops[0]], layer.name + "/divisor")
