"""Caffe's ``BlobProto`` as numpy, and binaryproto mean files.

``blobproto_to_array`` / ``array_to_blobproto`` follow pycaffe's ``caffe/io.py`` (float64 arrays out, the ``shape``
field written); ``read_mean_file`` / ``write_mean_file`` follow ``DataTransformer`` (``Blob::FromProto``) and
``tools/compute_image_mean.cpp`` (legacy ``num``/``channels``/``height``/``width`` fields).
"""
from __future__ import annotations

import numpy as np

from models.atomic import write_bytes
from models.schema import pb

from .errors import SourceShapeError


def blob_shape(blob) -> tuple:
    """The shape of a ``pb.BlobProto``: the legacy 4-D fields when any is set, else ``shape.dim``
    (``Blob::FromProto``, pycaffe ``blobproto_to_array``)."""
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    return tuple(blob.shape.dim)


def blobproto_to_array(blob, return_diff: bool = False) -> np.ndarray:
    """A ``pb.BlobProto`` as a float64 array of its shape (pycaffe ``caffe.io.blobproto_to_array``).

    ``data`` (or ``diff`` when ``return_diff``); a blob stored in ``double_data``/``double_diff`` is read from
    there (pycaffe would fail on it).

    Raises
    ------
    ValueError
        When the number of values does not match the shape (numpy's reshape error, as in pycaffe).
    """
    values = blob.diff if return_diff else blob.data
    if not len(values):
        doubles = blob.double_diff if return_diff else blob.double_data
        if len(doubles):
            values = doubles
    return np.array(values, dtype=np.float64).reshape(blob_shape(blob))


def array_to_blobproto(arr, diff=None):
    """An N-D array as a ``pb.BlobProto`` with the ``shape`` field (pycaffe ``caffe.io.array_to_blobproto``);
    values stored as float32, ``diff`` also when given (same shape, not checked, as in pycaffe)."""
    arr = np.asarray(arr)
    blob = pb.BlobProto()
    blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.astype(np.float32).ravel().tolist())
    if diff is not None:
        blob.diff.extend(np.asarray(diff).astype(np.float32).ravel().tolist())
    return blob


def read_mean_file(path, where: str = "") -> np.ndarray:
    """A binaryproto mean (``transform_param { mean_file }``) as a float32 ``(C, H, W)`` array.

    Caffe reads it into a Blob and checks ``channels()``, ``height()``, ``width()`` (shape axes 1, 2, 3) against
    the datum, so the blob must be ``(1, C, H, W)`` (``compute_image_mean`` writes that); its first ``C*H*W``
    values are the mean.

    Raises
    ------
    SourceShapeError
        A file that is not a BlobProto, or a blob that is not 4-D.
    """
    data = open(path, "rb").read()
    blob = pb.BlobProto()
    try:
        blob.ParseFromString(data)
    except Exception:
        raise SourceShapeError(f"{where}: mean_file '{path}' is not a binaryproto BlobProto") from None
    shape = blob_shape(blob)
    if len(shape) != 4:
        raise SourceShapeError(f"{where}: mean_file '{path}' holds a blob of shape {shape}; expected 4 axes "
                               "(1, C, H, W) as compute_image_mean writes")
    values = np.asarray(blob.data if len(blob.data) else blob.double_data, dtype=np.float32)
    chw = shape[1] * shape[2] * shape[3]
    if values.size < chw or values.size != int(np.prod(shape)):
        raise SourceShapeError(f"{where}: mean_file '{path}' has {values.size} values for shape {shape}")
    return values[:chw].reshape(shape[1:])


def mean_blobproto(mean) -> "pb.BlobProto":
    """A ``(C, H, W)`` or ``(1, C, H, W)`` mean as the BlobProto ``compute_image_mean`` writes (legacy 4-D
    fields, float data)."""
    m = np.asarray(mean, dtype=np.float32)
    if m.ndim == 3:
        m = m[None]
    if m.ndim != 4 or m.shape[0] != 1:
        raise ValueError(f"a mean must be (C, H, W) or (1, C, H, W), got shape {m.shape}")
    blob = pb.BlobProto(num=1, channels=m.shape[1], height=m.shape[2], width=m.shape[3])
    blob.data.extend(m.ravel().tolist())
    return blob


def write_mean_file(path, mean) -> None:
    """Write ``mean`` ((C, H, W) or (1, C, H, W)) as a binaryproto mean file, atomically, byte-for-byte the same
    for equal input (``tools/compute_image_mean.cpp``'s layout)."""
    write_bytes(path, mean_blobproto(mean).SerializeToString())
