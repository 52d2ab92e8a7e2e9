"""Deterministic inputs and weights shared by the golden-fixture generator and the PyTorch tests.

Pure numpy, no Caffe and no torch: ``make_golden.py`` (running under pycaffe) and our converter tests both call
these functions, so a large net's weights never have to be stored — both sides regenerate them from the key.

Keys are strings such as ``"googlenet/deploy/conv1/7x7_s2/param0"``; a key maps to a numpy
``default_rng`` seeded by the first 8 bytes of its SHA-256, so the stream does not depend on Python's hash
randomisation, the platform or the numpy version's legacy seeding.

Weight recipe (``layer_params``), chosen so activations stay O(1) through deep nets:

* Convolution / Deconvolution / InnerProduct weight: N(0, 1) * sqrt(2 / fan_in) (He scaling), where
  fan_in = count / shape[0] as in Caffe's include/caffe/filler.hpp (for InnerProduct with ``transpose: true``
  the stored weight is (K, N), so fan_in = shape[0]); bias: 0.1 * N(0, 1).
* BatchNorm (src/caffe/layers/batch_norm_layer.cpp stores mean * f, var * f and the factor f):
  mean = 0.1 * N(0, 1) * f, variance = U(0.5, 1.5) * f, f = 1.7 + U(0, 0.5) (non-trivial, so a reader
  that ignores the factor is caught).
* Scale: weight 1 + 0.1 * N(0, 1); bias 0.1 * N(0, 1).  Bias: 0.1 * N(0, 1).  PReLU: 0.25 + 0.05 * N(0, 1).
* Anything else: 0.1 * N(0, 1).
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

__all__ = ["rng_for", "seeded_array", "seeded_labels", "subsample_indices", "layer_params", "shape_tag",
           "weight_key", "input_key", "SUBSAMPLE_MIN", "SUBSAMPLE_THRESHOLD"]

#: blobs with more elements than this are stored as a seeded subsample (large nets only)
SUBSAMPLE_THRESHOLD = 65536
#: number of elements kept in a subsample
SUBSAMPLE_MIN = 65536


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")


def rng_for(key: str) -> np.random.Generator:
    """A ``numpy.random.Generator`` seeded by a stable hash of ``key``."""
    return np.random.default_rng(_seed(key))


def seeded_array(key: str, shape: Sequence[int], scale: float = 1.0, offset: float = 0.0,
                 dist: str = "normal") -> np.ndarray:
    """float32 array of ``shape``: ``offset + scale * N(0, 1)`` (or ``U(-1, 1)`` with ``dist="uniform"``)."""
    rng = rng_for(key)
    shape = tuple(int(s) for s in shape)
    if dist == "normal":
        x = rng.standard_normal(shape, dtype=np.float64)
    elif dist == "uniform":
        x = rng.uniform(-1.0, 1.0, shape)
    else:
        raise ValueError(f"seeded_array: unknown dist {dist!r} for key {key!r} (expected 'normal' or 'uniform')")
    return (offset + scale * x).astype(np.float32)


def seeded_labels(key: str, shape: Sequence[int], num_classes: int) -> np.ndarray:
    """Integer class ids in ``[0, num_classes)`` stored as float32 (Caffe label blobs are float)."""
    rng = rng_for(key)
    return rng.integers(0, int(num_classes), size=tuple(int(s) for s in shape)).astype(np.float32)


def subsample_indices(key: str, count: int, n: int = SUBSAMPLE_MIN) -> np.ndarray:
    """Sorted, distinct flat indices into a blob of ``count`` elements (all of them when ``count <= n``)."""
    if count <= n:
        return np.arange(count, dtype=np.int64)
    idx = rng_for(key).choice(count, size=n, replace=False)
    idx.sort()
    return idx.astype(np.int64)


def _fan_in(shape: Sequence[int], transpose: bool) -> int:
    count = int(np.prod(shape))
    if len(shape) < 2:
        return max(count, 1)
    if transpose:
        return int(shape[0])
    return max(count // int(shape[0]), 1)


def layer_params(key: str, layer_type: str, shapes: Sequence[Sequence[int]],
                 transpose: bool = False) -> list[np.ndarray]:
    """Seeded learnable blobs for one layer, in Caffe's blob order.

    ``key`` names the layer (e.g. ``"cifar/train_val/conv1"``); blob ``i`` uses ``f"{key}/param{i}"``.
    ``shapes`` are the layer's param shapes as Caffe reports them (``net.params[name][i].data.shape``).
    """
    out: list[np.ndarray] = []
    shapes = [tuple(int(s) for s in sh) for sh in shapes]
    for i, shape in enumerate(shapes):
        k = f"{key}/param{i}"
        if layer_type in ("Convolution", "Deconvolution", "InnerProduct", "Embed"):
            if i == 0:
                if layer_type == "Deconvolution":  # Caffe stores (Cin, Cout/g, kh, kw); fan-in is per output
                    fan = max(int(np.prod(shape)) // max(int(shape[1]), 1), 1)
                else:
                    fan = _fan_in(shape, transpose)
                out.append(seeded_array(k, shape, float(np.sqrt(2.0 / fan))))
            else:
                out.append(seeded_array(k, shape, 0.1))
        elif layer_type == "BatchNorm":
            factor = float(1.7 + 0.5 * rng_for(f"{key}/factor").random())
            if i == 0:
                out.append((seeded_array(k, shape, 0.1).astype(np.float64) * factor).astype(np.float32))
            elif i == 1:
                var = 1.0 + 0.5 * seeded_array(k, shape, 1.0, dist="uniform").astype(np.float64)
                out.append((var * factor).astype(np.float32))
            else:
                out.append(np.full(shape, factor, dtype=np.float32))
        elif layer_type == "Scale":
            out.append(seeded_array(k, shape, 0.1, offset=1.0 if i == 0 else 0.0))
        elif layer_type == "PReLU":
            out.append(seeded_array(k, shape, 0.05, offset=0.25))
        else:
            out.append(seeded_array(k, shape, 0.1))
    return out


def shape_tag(shapes: Sequence[Sequence[int]]) -> str:
    """``[(4, 3, 5, 5), (4,)]`` -> ``"4x3x5x5;4"`` (part of weight and input keys)."""
    return ";".join("x".join(str(int(d)) for d in s) for s in shapes)


def weight_key(prefix: str, layer: str, shapes: Sequence[Sequence[int]]) -> str:
    """Key for ``layer_params``: layers with the same name and param shapes get the same weights in every net
    that shares ``prefix`` (so, e.g., GoogLeNet's trunk is identical in deploy/train_val and across variants)."""
    return f"{prefix}/{layer}/{shape_tag(shapes)}"


def input_key(prefix: str, blob: str, shape: Sequence[int]) -> str:
    """Key for ``seeded_array(key, shape, 1.0)`` filling an input blob (labels: ``seeded_labels(key, ...)``)."""
    return f"{prefix}/input/{blob}/{shape_tag([shape])}"
