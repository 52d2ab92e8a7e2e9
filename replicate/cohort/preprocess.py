"""Preprocessing per Zhu et al. 2019, "MR Imaging Pre-processing and Tumor Patch Extraction".

1. Resampling: every case is scaled to the cohort's most frequent in-plane pixel spacing ("selecting the resolution
   that occurred most often as the target resolution ... scaled to the target resolution using bilinear
   interpolation"). :func:`resample` uses OpenCV's bilinear interpolation (``cv2.INTER_LINEAR``, pixel-centre
   aligned, no antialiasing); the output has ``round(n * spacing / target)`` pixels along each axis, so the physical
   extent is kept to within half a target pixel. Point coordinates follow the same pixel-centre convention
   (:func:`map_coordinate`). Slices are not resampled (the patches are 2-D).
2. Three channels from the subtraction images post1 - pre, post2 - pre, post3 - pre (:func:`subtraction_channels`).
3. Intensity scaling (the paper does not state one; ours is documented here): the subtraction images are divided
   by the 99.5th percentile of the case's pre-contrast intensities over the loaded slices
   (:data:`REFERENCE_PERCENTILE`), which makes them relative-enhancement values independent of the scanner's
   arbitrary gain: 0 = no uptake, about 1 = uptake as bright as the brightest pre-contrast tissue. Patches are
   stored in these units (float32).
4. Before a net (:func:`to_net_input`): bilinear resize to the net's input, then the Caffe input convention.
   ``style="imagenet"`` (transfer learning, off-the-shelf features: BVLC GoogLeNet / VGG16 were trained on 0..255 BGR
   images minus a per-channel mean, shared/notes/caffe-semantics.md): ``v = clip((x - LOW) / (HIGH - LOW), 0, 1) *
   255`` with LOW = -0.5, HIGH = 1.5, then the mean (104, 117, 123) is subtracted channel by channel; patch channel
   c (post<c+1> - pre) goes to blob channel c (the B, G, R slots in that order). ``style="scratch"`` (the paper's
   nets trained from scratch): the same 0..255 value ``clip((x - LOW) / (HIGH - LOW), 0, 1) * 255`` without a
   mean: what Caffe's DataTransformer (data_transformer.cpp: ``(datum - mean) * scale``) gives for an 8-bit patch
   image when the TRAIN data layer's ``transform_param`` declares neither a mean nor a ``scale``, as
   ``prototxt/{cifar,googlenet_r*,vgg_r*}/train_val.prototxt`` do. A ``scale`` the layer does declare is applied by
   ``replicate.experiments.training.prepare`` (``NetSpec.scale``). Up to 0.1.0 this style gave 0..1 (an unstated
   ``scale: 0.00390625``), which left BVLC CIFAR's conv1 filler (N(0, 0.0001), sized for 0..255 input) with
   activations ~255x too small to learn from in the quick preset's iterations.
"""

from __future__ import annotations

import cv2
import numpy as np

from replicate.errors import ConfigError

REFERENCE_PERCENTILE = 99.5
LOW, HIGH = -0.5, 1.5
IMAGENET_MEAN_BGR = (104.0, 117.0, 123.0)   # BVLC GoogLeNet's per-channel mean (caffe-semantics.md)


def resampled_shape(shape: tuple[int, int], spacing: tuple[float, float], target: float) -> tuple[int, int]:
    """Pixel counts after resampling (rows, columns) at ``spacing`` (row, column) mm to ``target`` mm."""
    return (max(1, int(round(shape[0] * spacing[0] / target))), max(1, int(round(shape[1] * spacing[1] / target))))


def resample(image: np.ndarray, spacing: tuple[float, float], target: float) -> np.ndarray:
    """Bilinear in-plane resampling of (..., rows, columns) to ``target`` mm pixels; leading axes kept."""
    if target <= 0:
        raise ConfigError(f"target spacing must be > 0 mm, got {target}")
    h, w = image.shape[-2:]
    nh, nw = resampled_shape((h, w), spacing, target)
    if (nh, nw) == (h, w):
        return image.astype(np.float32, copy=False)
    flat = image.reshape(-1, h, w).astype(np.float32, copy=False)
    out = np.stack([cv2.resize(p, (nw, nh), interpolation=cv2.INTER_LINEAR) for p in flat])
    return out.reshape(image.shape[:-2] + (nh, nw))


def map_coordinate(index: float, n_in: int, n_out: int) -> float:
    """Where pixel index ``index`` of an axis lands after :func:`resample` (pixel centres aligned, as OpenCV)."""
    return (index + 0.5) * (n_out / n_in) - 0.5


def subtraction_channels(phases: np.ndarray) -> np.ndarray:
    """(1 + k, Z, H, W) pre, post1.. -> (Z, 3, H, W) channels post1 - pre, post2 - pre, post3 - pre."""
    if phases.shape[0] < 4:
        raise ConfigError(f"need pre + 3 post-contrast phases, got {phases.shape[0]} volumes")
    pre = phases[0]
    return np.stack([phases[k] - pre for k in (1, 2, 3)], axis=1).astype(np.float32)


def reference_intensity(pre: np.ndarray) -> float:
    """The case's intensity reference: the 99.5th percentile of its pre-contrast values (> 0 guaranteed)."""
    ref = float(np.percentile(pre, REFERENCE_PERCENTILE))
    return ref if ref > 0 else 1.0


def to_net_input(patches: np.ndarray, size: int, style: str = "imagenet") -> np.ndarray:
    """Stored patches (N, 3, S, S) in relative-enhancement units -> float32 (N, 3, size, size) for a Caffe net:
    0..255 (``style="scratch"``) or 0..255 minus the BGR mean (``style="imagenet"``); module docstring, step 4.
    Raises ConfigError for another style or a shape that is not (N, 3, S, S)."""
    if style not in ("imagenet", "scratch"):
        raise ConfigError(f"to_net_input: style must be 'imagenet' or 'scratch', got {style!r}")
    x = np.asarray(patches, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ConfigError(f"to_net_input: expected patches of shape (N, 3, S, S), got {x.shape}")
    n, c, h, w = x.shape
    if (h, w) != (size, size):
        hwc = x.transpose(0, 2, 3, 1)
        x = np.stack([cv2.resize(np.ascontiguousarray(p), (size, size), interpolation=cv2.INTER_LINEAR)
                      for p in hwc]).transpose(0, 3, 1, 2) if n else np.zeros((0, 3, size, size), np.float32)
    v = np.clip((x - LOW) / (HIGH - LOW), 0.0, 1.0) * 255.0
    if style == "scratch":
        return np.ascontiguousarray(v, dtype=np.float32)
    v = v - np.asarray(IMAGENET_MEAN_BGR, np.float32)[None, :, None, None]
    return np.ascontiguousarray(v, dtype=np.float32)
