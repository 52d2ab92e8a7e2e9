"""``transform_param``: Caffe's DataTransformer (``src/caffe/data_transformer.cpp``) on numpy.

For each image, in Caffe's order: draw ``mirror`` (a coin flip, in TRAIN and TEST alike: Caffe flips whenever
``mirror: true``), then the crop offsets (uniform in ``[0, H - crop_size]`` in TRAIN, the centre
``(H - crop_size) // 2`` in TEST); every output value is ``(x - mean) * scale`` in float32, with ``x`` the source
pixel and ``mean`` the ``mean_file`` value at that same source position (or the channel's ``mean_value``), written
at the cropped and possibly mirrored position. The mean is subtracted before scaling.

Random draws come from a numpy ``Generator`` (see docs/data-layers.md): the same seed gives the same flips and
offsets here, not those of Caffe's boost mt19937.
"""
from __future__ import annotations

import numpy as np

from .blobproto import read_mean_file
from .errors import SourceShapeError
from .paths import resolve


class DataTransformer:
    """Caffe's DataTransformer for one layer.

    Parameters
    ----------
    param : pb.TransformationParameter
        The layer's ``transform_param``.
    phase : {"TRAIN", "TEST"}
        Random crops in TRAIN, centre crops in TEST.
    rng : numpy.random.Generator
        The stream of mirror flips and crop offsets.
    where : str
        The layer, for messages (``"Data layer 'mnist'"``).
    base_dir : path-like, optional
        Fallback folder for a relative ``mean_file``.

    Raises
    ------
    DataSourceError
        ``mean_file`` and ``mean_value`` both given, or a missing or malformed mean file.
    """

    def __init__(self, param, phase: str, rng: np.random.Generator, where: str = "", base_dir=None):
        self.where = where
        self.scale = np.float32(param.scale)
        self.crop = int(param.crop_size)
        self.mirror = bool(param.mirror)
        self.train = phase == "TRAIN"
        self.rng = rng
        self.mean = None
        self.mean_file = None
        self.mean_values = None
        if param.HasField("mean_file"):
            if len(param.mean_value):
                raise SourceShapeError(f"{where}: cannot specify mean_file and mean_value at the same time")
            self.mean_file = resolve(param.mean_file, base_dir, where=where, what="mean_file")
            self.mean = read_mean_file(self.mean_file, where)
        elif len(param.mean_value):
            self.mean_values = np.asarray(list(param.mean_value), dtype=np.float32)

    @property
    def is_identity(self) -> bool:
        """True when the transform returns the input as float32 unchanged."""
        return (self.mean is None and self.mean_values is None and not self.crop and not self.mirror
                and self.scale == 1)

    def output_shape(self, shape, what: str = "") -> tuple:
        """``(C, h, w)`` of a transformed ``(C, H, W)`` image (``InferBlobShape``), with Caffe's checks.

        Raises
        ------
        SourceShapeError
            ``crop_size`` larger than the image; a mean_file of another shape; a mean_value count other than 1
            or C.
        """
        c, h, w = (int(x) for x in shape)
        src = f" ({what})" if what else ""
        if c <= 0:
            raise SourceShapeError(f"{self.where}: an image{src} with {c} channels")
        if self.crop and (h < self.crop or w < self.crop):
            raise SourceShapeError(f"{self.where}: crop_size {self.crop} is larger than the image{src} of "
                                   f"{h}x{w} (C, H, W = {c}, {h}, {w})")
        if self.mean is not None and self.mean.shape != (c, h, w):
            raise SourceShapeError(f"{self.where}: mean_file '{self.mean_file}' has shape "
                                   f"{tuple(self.mean.shape)}; the data{src} are (C, H, W) = ({c}, {h}, {w})")
        if self.mean_values is not None and len(self.mean_values) not in (1, c):
            raise SourceShapeError(f"{self.where}: {len(self.mean_values)} mean_value given; specify either 1 "
                                   f"mean_value or as many as channels: {c}")
        return (c, self.crop, self.crop) if self.crop else (c, h, w)

    def _draw(self, h: int, w: int) -> tuple:
        """One image's (mirror, h_off, w_off), drawn in Caffe's order."""
        flip = bool(self.rng.integers(2)) if self.mirror else False
        if self.crop and self.train:
            h_off = int(self.rng.integers(h - self.crop + 1))
            w_off = int(self.rng.integers(w - self.crop + 1))
        elif self.crop:
            h_off, w_off = (h - self.crop) // 2, (w - self.crop) // 2
        else:
            h_off = w_off = 0
        return flip, h_off, w_off

    def _channel_mean(self, c: int) -> np.ndarray:
        mv = self.mean_values if len(self.mean_values) == c else np.repeat(self.mean_values, c)
        return mv[:, None, None]

    def __call__(self, images, what=None) -> np.ndarray:
        """Transform a batch: ``images`` is an ``(N, C, H, W)`` array or a list of ``(C, H, W)`` arrays (uint8 or
        float32; sizes may differ when cropping). Returns float32 ``(N, C, h, w)``.

        ``what`` (a list of record names, optional) names the offending record in a shape error."""
        n = len(images)
        first = self.output_shape(images[0].shape, what[0] if what else "")
        out = np.empty((n,) + first, dtype=np.float32)
        ch, cw = first[1], first[2]
        if isinstance(images, np.ndarray) and not self.mirror and not (self.crop and self.train):
            # one fixed window for the whole batch: the same arithmetic, vectorized
            _, h0, w0 = self._draw(images.shape[2], images.shape[3])
            out[...] = images[:, :, h0:h0 + ch, w0:w0 + cw]
            if self.mean is not None:
                out -= self.mean[:, h0:h0 + ch, w0:w0 + cw]
            elif self.mean_values is not None:
                out -= self._channel_mean(images.shape[1])
            if self.scale != 1:
                out *= self.scale
            return out
        for i, img in enumerate(images):
            if img.shape != images[0].shape:
                shape = self.output_shape(img.shape, what[i] if what else "")
                if shape != first:
                    raise SourceShapeError(
                        f"{self.where}: record {what[i] if what else i} of the batch is {tuple(img.shape)}, "
                        f"which gives {shape}; the batch's first record gives {first}")
            flip, h0, w0 = self._draw(img.shape[1], img.shape[2])
            x = img[:, h0:h0 + ch, w0:w0 + cw].astype(np.float32)
            if self.mean is not None:
                x -= self.mean[:, h0:h0 + ch, w0:w0 + cw]
            elif self.mean_values is not None:
                x -= self._channel_mean(img.shape[0])
            if flip:
                x = x[:, :, ::-1]
            out[i] = x
        if self.scale != 1:
            out *= self.scale
        return out
