"""Caffe's ``Datum`` <-> numpy (``src/caffe/util/io.cpp``: CVMatToDatum, DecodeDatumToCVMat[Native],
EncodeCVMatToDatum).

A datum holds one ``(C, H, W)`` image: raw ``uint8`` bytes in ``data``, or ``float_data``, or an encoded JPEG/PNG
in ``data`` with ``encoded: true`` (decoded with OpenCV, channels in OpenCV's BGR order as Caffe keeps them).
"""
from __future__ import annotations

import numpy as np

from models.schema import pb

from .deps import require
from .errors import SourceShapeError

#: OpenCV's imread/imdecode flags (values fixed by OpenCV; kept here so cv2 is imported only when needed)
IMREAD_UNCHANGED, IMREAD_GRAYSCALE, IMREAD_COLOR = -1, 0, 1


def hwc_to_chw(img: np.ndarray) -> np.ndarray:
    """An OpenCV image (H, W) or (H, W, C) as (C, H, W), the layout CVMatToDatum stores."""
    return img[None] if img.ndim == 2 else np.ascontiguousarray(img.transpose(2, 0, 1))


def decode_image(buf: bytes, flag: int, where: str = "") -> np.ndarray:
    """``cv::imdecode`` of an encoded image, as a ``(C, H, W)`` uint8 array.

    Raises
    ------
    SourceShapeError
        Bytes OpenCV cannot decode, or an image that is not 8-bit (Caffe's transformer takes only CV_8U).
    """
    cv2 = require("cv2", where)
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), flag)
    if img is None:
        raise SourceShapeError(f"{where}: could not decode the encoded datum ({len(buf)} bytes)")
    if img.dtype != np.uint8:
        raise SourceShapeError(f"{where}: the encoded image is {img.dtype}; Caffe's data transformer takes only "
                               "8-bit images")
    return hwc_to_chw(img)


def datum_array(datum, force_color: bool = False, force_gray: bool = False, where: str = "") -> np.ndarray:
    """The image of a ``pb.Datum`` as ``(C, H, W)``: uint8 for raw or encoded data, float32 for ``float_data``.

    An encoded datum is decoded as DataTransformer does: in colour (3 channels) with ``force_color``, grey (1)
    with ``force_gray``, else as stored (``cv::imdecode(..., -1)``).

    Raises
    ------
    SourceShapeError
        A datum whose stored values do not fill ``channels x height x width``, or with no channels.
    """
    if datum.encoded:
        if force_color and force_gray:
            raise SourceShapeError(f"{where}: cannot set both force_color and force_gray")
        flag = IMREAD_COLOR if force_color else IMREAD_GRAYSCALE if force_gray else IMREAD_UNCHANGED
        return decode_image(datum.data, flag, where)
    shape = (datum.channels, datum.height, datum.width)
    if datum.channels <= 0:
        raise SourceShapeError(f"{where}: a datum with {datum.channels} channels; expected at least 1")
    n = shape[0] * shape[1] * shape[2]
    if len(datum.data):
        if len(datum.data) != n:
            raise SourceShapeError(f"{where}: a datum of shape {shape} holds {len(datum.data)} bytes; "
                                   f"expected {n}")
        return np.frombuffer(datum.data, np.uint8).reshape(shape)
    if len(datum.float_data) != n:
        raise SourceShapeError(f"{where}: a datum of shape {shape} holds {len(datum.float_data)} float_data "
                               f"values; expected {n}")
    return np.asarray(datum.float_data, dtype=np.float32).reshape(shape)


def encode_image(chw: np.ndarray, encoding: str) -> bytes:
    """``cv::imencode(".png"|".jpg")`` of a ``(C, H, W)`` uint8 image (C = 1, 3, or 4 for PNG), channels passed to
    OpenCV in stored (BGR) order, default encoder settings as Caffe's EncodeCVMatToDatum."""
    cv2 = require("cv2")
    img = chw[0] if chw.shape[0] == 1 else np.ascontiguousarray(chw.transpose(1, 2, 0))
    ok, buf = cv2.imencode("." + encoding, img)
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {chw.shape} as {encoding}")
    return buf.tobytes()


def make_datum(chw: np.ndarray, label: int = 0, encoding: str | None = None) -> "pb.Datum":
    """A ``pb.Datum`` of one ``(C, H, W)`` image: uint8 -> ``data`` bytes (or an encoded PNG/JPEG with
    ``encoding``), any other dtype -> ``float_data`` (float32), ``label`` as int32."""
    chw = np.asarray(chw)
    if chw.ndim != 3:
        raise ValueError(f"a datum holds a (C, H, W) image, got shape {chw.shape}")
    c, h, w = (int(x) for x in chw.shape)
    datum = pb.Datum(channels=c, height=h, width=w, label=int(label))
    if encoding:
        if chw.dtype != np.uint8:
            raise ValueError(f"encoding '{encoding}' needs uint8 images, got {chw.dtype}")
        datum.data = encode_image(chw, encoding)
        datum.encoded = True
    elif chw.dtype == np.uint8:
        datum.data = np.ascontiguousarray(chw).tobytes()
    else:
        datum.float_data.extend(chw.astype(np.float32).ravel().tolist())
    return datum
