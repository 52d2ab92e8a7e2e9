"""Typed, immutable layer specs: each Caffe layer's parameters, resolved once by shape inference.

:mod:`models.shapes` reads a layer's ``*_param`` message exactly once, applies Caffe's own acceptance rules
(``LayerSetUp``/``Reshape`` CHECKs, cited there) and Caffe's defaults, and attaches one of these frozen
dataclasses to the :class:`models.graph.Layer` as ``layer.spec``. The torch builder (:mod:`models.layers`), the
ONNX exporter and the MACC/param accounting read only ``layer.spec`` (plus the layer's inferred shapes), so the
three can never disagree about what a prototxt field means.

Conventions: spatial values are ``(h, w)`` tuples in pixels; axes are canonical (non-negative) indices into the
bottom's shape; shapes are tuples of ints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np


def pool_output_size(size: int, kernel: int, stride: int, pad: int, ceil: bool = True,
                     any_pad: Optional[bool] = None) -> int:
    """Caffe's pooled size: ceil (or floor) ((H + 2p - k) / s) + 1, then the clip.

    The clip (pooling_layer.cpp Reshape): when the layer has any padding and the last window would start at or
    beyond ``H + p``, Caffe drops it. ``any_pad`` is "pad_h or pad_w is non-zero" (Caffe tests both axes together);
    it defaults to ``pad > 0``.
    """
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if any_pad is None:
        any_pad = pad > 0
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def ave_divisor(size: int, k: int, s: int, p: int, out: int) -> np.ndarray:
    """Per-output AVE divisor along one axis: ``min(start + k, size + p) - start`` with ``start = o*s - p``."""
    starts = np.arange(out) * s - p
    ends = np.minimum(starts + k, size + p)
    return (ends - starts).astype(np.float64)


@dataclass(frozen=True)
class ConvSpec:
    """Convolution / Deconvolution (base_conv_layer.cpp): 2-D, channel axis 1.

    Weight ``(num_output, channels / group, kh, kw)`` (Convolution) or ``(channels, num_output / group, kh, kw)``
    (Deconvolution, ``transposed``); bias ``(num_output,)`` when ``bias_term``.
    """

    kernel: tuple
    stride: tuple
    pad: tuple
    dilation: tuple
    group: int
    num_output: int
    bias_term: bool
    channels: int
    transposed: bool = False


@dataclass(frozen=True)
class PoolSpec:
    """Pooling (pooling_layer.cpp): kernel, stride, pad per axis (pixels), method MAX/AVE/STOCHASTIC, rounding
    (``ceil``: upstream ``round_mode: CEIL``), ``global_pooling`` (kernel = the bottom's H x W)."""

    kernel: tuple = (2, 2)
    stride: tuple = (1, 1)
    pad: tuple = (0, 0)
    method: str = "MAX"
    global_pooling: bool = False
    ceil: bool = True
    name: str = ""

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


@dataclass(frozen=True)
class SPPSpec:
    """SPP (spp_layer.cpp): one :class:`PoolSpec` per pyramid level (level l: 2^l x 2^l bins, kernel =
    ceil(H / bins), pad = (kernel * bins - H + 1) // 2, stride = kernel). Height 1: a single pooling whose top
    is (N, C, 1, 1); otherwise each level is flattened and the levels concatenated along axis 1."""

    levels: tuple
    flatten: bool


@dataclass(frozen=True)
class InnerProductSpec:
    """InnerProduct (inner_product_layer.cpp): flatten from ``axis``; ``k`` inputs, ``num_output`` outputs."""

    axis: int
    k: int
    num_output: int
    transpose: bool
    bias_term: bool


@dataclass(frozen=True)
class AxisSpec:
    """Layers described by one canonical axis: Concat, Softmax (and SoftmaxWithLoss), Accuracy."""

    axis: int


@dataclass(frozen=True)
class SliceSpec:
    """Slice (slice_layer.cpp): the canonical axis and the size of each top along it."""

    axis: int
    sizes: tuple


@dataclass(frozen=True)
class FlattenSpec:
    """Flatten (flatten_layer.cpp): axes ``start..end`` (inclusive, canonical) become one."""

    start: int
    end: int


@dataclass(frozen=True)
class ReshapeSpec:
    """Reshape (reshape_layer.cpp): the top shape; ``onnx_shape`` keeps the batch axis symbolic (0 = copy)."""

    shape: tuple
    onnx_shape: tuple


@dataclass(frozen=True)
class EltwiseSpec:
    """Eltwise (eltwise_layer.cpp): ``op`` PROD/SUM/MAX, one coefficient per bottom (SUM)."""

    op: str
    coeff: tuple


@dataclass(frozen=True)
class BatchNormSpec:
    """BatchNorm (batch_norm_layer.cpp): ``use_global_stats`` None = by phase (TEST: true); eps; moving average
    fraction; ``channels`` = bottom axis 1."""

    use_global_stats: Optional[bool]
    eps: float
    maf: float
    channels: int

    def global_stats(self, phase: str) -> bool:
        return self.use_global_stats if self.use_global_stats is not None else phase == "TEST"


@dataclass(frozen=True)
class ScaleBiasSpec:
    """Scale / Bias (scale_layer.cpp, bias_layer.cpp): the factor of shape ``shape`` broadcast over
    ``bottom.shape[axis : axis + len(shape)]``; from bottom[1] or a learned blob; Scale's optional bias."""

    op: str
    axis: int
    shape: tuple
    from_bottom: bool
    bias_term: bool


@dataclass(frozen=True)
class LRNSpec:
    """LRN (lrn_layer.cpp): odd ``size``, alpha, beta, k; region ACROSS_CHANNELS or WITHIN_CHANNEL."""

    size: int
    alpha: float
    beta: float
    k: float
    region: str


@dataclass(frozen=True)
class NeuronSpec:
    """Element-wise layers: the values each needs (ReLU ``slope``, ELU ``alpha``, Power ``power, scale, shift``,
    Dropout ``ratio``, Threshold ``threshold``; Exp/Log use :class:`ExpLogSpec`)."""

    slope: float = 0.0
    alpha: float = 1.0
    power: float = 1.0
    scale: float = 1.0
    shift: float = 0.0
    ratio: float = 0.5
    threshold: float = 0.0


@dataclass(frozen=True)
class ExpLogSpec:
    """Exp (exp_layer.cpp): ``y = outer * exp(inner * x)``, inner = ln(base) * scale, outer = base^shift.
    Log (log_layer.cpp): ``y = log(scale * x + shift) * base_scale``, base_scale = 1 / ln(base).
    Values are float32 as Caffe computes them (base -1 means e)."""

    scale: float
    shift: float
    inner: float = 1.0
    outer: float = 1.0
    base_scale: float = 1.0


@dataclass(frozen=True)
class PReLUSpec:
    """PReLU (prelu_layer.cpp): slope blob () when ``channel_shared`` else (C,), C = bottom axis 1."""

    channel_shared: bool
    channels: int


@dataclass(frozen=True)
class CropSpec:
    """Crop (crop_layer.cpp): ``offsets`` per bottom[0] axis (0 before ``axis``), top ``shape``."""

    axis: int
    offsets: tuple
    shape: tuple


@dataclass(frozen=True)
class ReductionSpec:
    """Reduction (reduction_layer.cpp): SUM/ASUM/SUMSQ/MEAN over axes ``axis..end``; ``coeff`` as Caffe applies
    it (for MEAN already divided by the reduced count)."""

    op: str
    axis: int
    coeff: float


@dataclass(frozen=True)
class TileSpec:
    """Tile (tile_layer.cpp): the block from ``axis`` on is repeated ``tiles`` times along ``axis``."""

    axis: int
    tiles: int


@dataclass(frozen=True)
class ArgMaxSpec:
    """ArgMax (argmax_layer.cpp): ``top_k`` largest along ``axis`` (None: over each item's flattened values,
    top (N, 1|2, top_k, 1...)); ``out_max_val``: values (with axis) or indices and values (without)."""

    top_k: int
    out_max_val: bool
    axis: Optional[int]


@dataclass(frozen=True)
class MVNSpec:
    """MVN (mvn_layer.cpp): subtract the mean over H x W (or C x H x W when ``across_channels``), divide by
    ``sqrt(biased variance) + eps`` when ``normalize_variance``."""

    normalize_variance: bool
    across_channels: bool
    eps: float


@dataclass(frozen=True)
class EmbedSpec:
    """Embed (embed_layer.cpp): weight (input_dim, num_output), bias (num_output,); top = bottom.shape +
    (num_output,); bottom values are indices in [0, input_dim)."""

    input_dim: int
    num_output: int
    bias_term: bool


@dataclass(frozen=True)
class LossSpec:
    """Loss and Accuracy layers: ``axis`` (canonical) and ``layer_type``; the converters read the rest of the
    loss_param/accuracy_param through :attr:`param` (a copy made at parse time)."""

    axis: int
    param: object = None


@dataclass(frozen=True)
class EmptySpec:
    """Layers with no parameters (Sigmoid, TanH, AbsVal, BNLL, Split, Silence)."""


def prod(shape) -> int:
    return int(math.prod(shape))
