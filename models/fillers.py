"""Caffe's weight fillers (include/caffe/filler.hpp), seeded by a ``torch.Generator``.

* constant: ``value``; uniform: ``U(min, max)``; gaussian: ``N(mean, std)`` (with ``sparse >= 0`` each weight is
  kept with probability ``sparse / shape[0]``);
* xavier: ``U(-sqrt(3/n), sqrt(3/n))``; msra: ``N(0, sqrt(2/n))``, where ``n`` is ``fan_in = count / shape[0]``
  (FAN_IN, the default), ``fan_out = count / shape[1]`` (FAN_OUT) or their mean (AVERAGE), integer divisions as in
  Caffe;
* positive_unitball: ``U(0, 1)`` rows (over ``shape[0]``) normalised to sum 1; bilinear: the upsampling kernel.

Caffe's own RNG (boost mt19937) is not reproduced: the same seed gives the same weights here, the distributions
are Caffe's. A blob without a filler is 0, except Scale's factor, which defaults to 1 (scale_layer.cpp).
"""
from __future__ import annotations

import math

import torch

from models.errors import NetDefinitionError
from models.schema import pb


def fans(shape) -> tuple[int, int]:
    """Caffe's (fan_in, fan_out): ``count / shape[0]`` and ``count / shape[1]`` (count for a 1-D blob)."""
    count = math.prod(shape)
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def _n(filler, shape) -> float:
    fan_in, fan_out = fans(shape)
    vn = filler.variance_norm
    if vn == pb.FillerParameter.AVERAGE:
        return (fan_in + fan_out) / 2.0
    if vn == pb.FillerParameter.FAN_OUT:
        return float(fan_out)
    return float(fan_in)


def fill(tensor: torch.Tensor, filler, generator: torch.Generator | None = None, where: str = "") -> torch.Tensor:
    """Fill ``tensor`` in place with Caffe filler ``filler`` (a ``pb.FillerParameter`` or None: zeros)."""
    shape = tuple(tensor.shape)
    with torch.no_grad():
        if filler is None:
            return tensor.zero_()
        kind = filler.type
        g = generator
        if kind == "constant":
            return tensor.fill_(filler.value)
        if kind == "uniform":
            return tensor.uniform_(filler.min, filler.max, generator=g)
        if kind == "gaussian":
            tensor.normal_(filler.mean, filler.std, generator=g)
            if filler.sparse >= 0:
                p = filler.sparse / shape[0]
                mask = torch.bernoulli(torch.full(shape, p, dtype=tensor.dtype), generator=g)
                tensor.mul_(mask.to(tensor.device))
            return tensor
        if kind == "xavier":
            scale = math.sqrt(3.0 / _n(filler, shape))
            return tensor.uniform_(-scale, scale, generator=g)
        if kind == "msra":
            return tensor.normal_(0.0, math.sqrt(2.0 / _n(filler, shape)), generator=g)
        if kind == "positive_unitball":
            tensor.uniform_(0.0, 1.0, generator=g)
            rows = tensor.reshape(shape[0], -1)
            rows.div_(rows.sum(1, keepdim=True))
            return tensor
        if kind == "bilinear":
            if len(shape) != 4 or shape[2] != shape[3]:
                raise NetDefinitionError(f"{where}: bilinear filler needs a square 4-D blob, got {shape}")
            w = shape[3]
            f = math.ceil(w / 2.0)
            c = (2 * f - 1 - f % 2) / (2.0 * f)
            i = torch.arange(math.prod(shape), dtype=torch.float64)
            x = i % w
            y = (i // w) % shape[2]
            vals = (1 - (x / f - c).abs()) * (1 - (y / f - c).abs())
            return tensor.copy_(vals.reshape(shape))
        raise NetDefinitionError(f"{where}: unknown filler type '{kind}' (filler.hpp: constant, uniform, gaussian, "
                                 "positive_unitball, xavier, msra, bilinear)")


def layer_fillers(layer) -> list:
    """The filler of each learnable blob of ``layer``, in Caffe blob order (None: zeros)."""
    t = layer.type
    p = layer.proto

    def opt(msg, field):
        return getattr(msg, field) if msg.HasField(field) else pb.FillerParameter()

    if t in ("Convolution", "Deconvolution"):
        return [opt(p.convolution_param, "weight_filler"), opt(p.convolution_param, "bias_filler")]
    if t == "Embed":
        return [opt(p.embed_param, "weight_filler"), opt(p.embed_param, "bias_filler")]
    if t == "PReLU":  # prelu_layer.cpp: the given filler, else constant 0.25
        f = p.prelu_param.filler if p.prelu_param.HasField("filler") else \
            pb.FillerParameter(type="constant", value=0.25)
        return [f]
    if t == "InnerProduct":
        return [opt(p.inner_product_param, "weight_filler"), opt(p.inner_product_param, "bias_filler")]
    if t == "Scale":
        sp = p.scale_param
        if sp.HasField("filler"):
            scale = sp.filler
        else:
            scale = pb.FillerParameter(type="constant", value=1.0)
        out = [] if len(layer.bottoms) > 1 else [scale]
        return out + [opt(sp, "bias_filler")]
    if t == "Bias":
        return [opt(p.bias_param, "filler")]
    return []


def init_layer(layer, blobs, generator=None) -> None:
    """Fill a layer's parameters (``blobs``: list of tensors in Caffe order) as Caffe's LayerSetUp does."""
    specs = layer_fillers(layer)
    for i, blob in enumerate(blobs):
        fill(blob.data, specs[i] if i < len(specs) else None, generator, where=f"layer '{layer.name}' blob {i}")
