"""``caffe.io`` of pycaffe (``python/caffe/io.py``), on numpy 2.

The same functions with the same arithmetic as pycaffe's, so a script's numbers do not change; where pycaffe fails
on current libraries this works: ``ndarray.tostring`` and binary ``np.fromstring`` (removed in numpy 2) are
``tobytes``/``frombuffer``, ``resize_image`` imports the ``skimage.transform.resize`` it calls, and
``load_image`` passes scikit-image's ``as_gray`` (``as_grey`` is gone). Images load with scikit-image and resize
with scikit-image (1 or 3 channels) or ``scipy.ndimage.zoom`` (others), exactly as pycaffe does.
"""
from __future__ import annotations

import numpy as np

from models.data.blobproto import array_to_blobproto, blobproto_to_array
from models.data.deps import require
from models.data.errors import MissingSourceError
from models.errors import InputError
from models.schema import pb as caffe_pb2

__all__ = [
    "blobproto_to_array", "array_to_blobproto", "arraylist_to_blobprotovector_str",
    "blobprotovector_str_to_arraylist", "array_to_datum", "datum_to_array", "Transformer", "load_image",
    "resize_image", "oversample", "caffe_pb2",
]


class TransformerError(InputError):
    """A Transformer call with an unknown input or an order of the wrong length (pycaffe raises ``Exception``)."""


class TransformerValueError(InputError, ValueError):
    """A mean, or an array for a datum, of a shape that cannot be used (pycaffe raises ``ValueError``)."""


## proto / datum / ndarray conversion

def arraylist_to_blobprotovector_str(arraylist) -> bytes:
    """A list of arrays as a serialized ``BlobProtoVector`` (pycaffe)."""
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(arr) for arr in arraylist])
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(str_) -> list:
    """A serialized ``BlobProtoVector`` as a list of float64 arrays (pycaffe)."""
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(str_)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr, label=None):
    """A ``(C, H, W)`` array as a ``Datum`` (pycaffe): uint8 -> ``data`` bytes, other dtypes -> ``float_data``;
    ``label`` set when given.

    Raises
    ------
    ValueError
        ``arr`` is not 3-dimensional ("Incorrect array shape.", as pycaffe).
    """
    if arr.ndim != 3:
        raise TransformerValueError("Incorrect array shape.")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(float).flat)
    if label is not None:
        datum.label = label
    return datum


def datum_to_array(datum) -> np.ndarray:
    """A ``Datum`` as a ``(C, H, W)`` array (pycaffe): uint8 from ``data``, else float64 from ``float_data``; the
    label is not returned (``datum.label``). Encoded datums are returned as stored bytes would be (as pycaffe)."""
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).copy().reshape(datum.channels, datum.height, datum.width)
    return np.array(datum.float_data).astype(float).reshape(datum.channels, datum.height, datum.width)


## Pre-processing

class Transformer:
    """Transform input for feeding into a Net (pycaffe's ``caffe.io.Transformer``).

    Parameters
    ----------
    inputs : dict
        ``{input name: shape}``, e.g. ``{'data': net.blobs['data'].data.shape}``.

    Notes
    -----
    As pycaffe: ``preprocess`` converts to float32 without copying a float32 input, so with neither a resize nor
    a channel swap the scaling steps write into the caller's array.
    """

    def __init__(self, inputs):
        self.inputs = inputs
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def __check_input(self, in_):
        if in_ not in self.inputs:
            raise TransformerError('{} is not one of the net inputs: {}'.format(in_, self.inputs))

    def preprocess(self, in_, data):
        """Format ``data`` (H' x W' x K) for Caffe: float32, resize to the input's H x W, transpose, channel swap,
        ``* raw_scale``, ``- mean``, ``* input_scale``. Returns (K x H x W)."""
        self.__check_input(in_)
        caffe_in = data.astype(np.float32, copy=False)
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        in_dims = self.inputs[in_][2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if transpose is not None:
            caffe_in = caffe_in.transpose(transpose)
        if channel_swap is not None:
            caffe_in = caffe_in[channel_swap, :, :]
        if raw_scale is not None:
            caffe_in *= raw_scale
        if mean is not None:
            caffe_in -= mean
        if input_scale is not None:
            caffe_in *= input_scale
        return caffe_in

    def deprocess(self, in_, data):
        """Invert :meth:`preprocess` (no resize): ``/ input_scale``, ``+ mean``, ``/ raw_scale``, channel order
        and transpose undone."""
        self.__check_input(in_)
        decaf_in = data.copy().squeeze()
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            decaf_in /= input_scale
        if mean is not None:
            decaf_in += mean
        if raw_scale is not None:
            decaf_in /= raw_scale
        if channel_swap is not None:
            decaf_in = decaf_in[np.argsort(channel_swap), :, :]
        if transpose is not None:
            decaf_in = decaf_in.transpose(np.argsort(transpose))
        return decaf_in

    def set_transpose(self, in_, order):
        """The order of dimensions, e.g. (2, 0, 1) turns H x W x C into C x H x W."""
        self.__check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise TransformerError('Transpose order needs to have the same number of '
                                   'dimensions as the input.')
        self.transpose[in_] = order

    def set_channel_swap(self, in_, order):
        """The channel order after transpose, e.g. (2, 1, 0) maps RGB to BGR."""
        self.__check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise TransformerError('Channel swap needs to have the same number of '
                                   'dimensions as the input channels.')
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_, scale):
        """The factor applied before the mean: images in [0, 1] need 255 for the ImageNet reference models."""
        self.__check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """The mean to subtract: per channel (1-D, K values) or elementwise ((K x) H x W; resized to the input's
        H x W when it differs, as pycaffe does).

        Raises
        ------
        ValueError
            A channel count or mean shape that does not fit the input.
        """
        self.__check_input(in_)
        ms = mean.shape
        if mean.ndim == 1:
            if ms[0] != self.inputs[in_][1]:
                raise TransformerValueError('Mean channels incompatible with input.')
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if len(ms) == 2:
                ms = (1,) + ms
            if len(ms) != 3:
                raise TransformerValueError('Mean shape invalid')
            if ms != self.inputs[in_][1:]:
                in_shape = self.inputs[in_][1:]
                m_min, m_max = mean.min(), mean.max()
                normal_mean = (mean - m_min) / (m_max - m_min)
                mean = resize_image(normal_mean.transpose((1, 2, 0)),
                                    in_shape[1:]).transpose((2, 0, 1)) * \
                    (m_max - m_min) + m_min
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """The factor applied after the mean (and every other step)."""
        self.__check_input(in_)
        self.input_scale[in_] = scale


## Image IO

def load_image(filename, color=True):
    """Load an image as float32 in [0, 1] (pycaffe): (H x W x 3) RGB, or (H x W x 1) with ``color=False``;
    grey images are tiled to 3 channels for ``color``, an alpha channel is dropped.

    Raises
    ------
    MissingSourceError
        The file does not exist.
    """
    skimage = require("skimage")
    import skimage.io  # noqa: F401 - the submodule

    try:
        raw = skimage.io.imread(filename, as_gray=not color)
    except FileNotFoundError:
        raise MissingSourceError(f"load_image: image '{filename}' does not exist") from None
    img = skimage.img_as_float(raw).astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


def resize_image(im, new_dims, interp_order=1):
    """Resize an (H x W x K) image to ``new_dims`` = (height, width) (pycaffe): 1 or 3 channels through
    ``skimage.transform.resize`` on the image scaled to [0, 1] (``mode='constant'``), other channel counts
    through ``scipy.ndimage.zoom``; a constant image stays that constant. Returns float32."""
    if im.shape[-1] == 1 or im.shape[-1] == 3:
        im_min, im_max = im.min(), im.max()
        if im_max > im_min:
            require("skimage")
            from skimage.transform import resize

            im_std = (im - im_min) / (im_max - im_min)
            resized_std = resize(im_std, new_dims, order=interp_order, mode='constant')
            resized_im = resized_std * (im_max - im_min) + im_min
        else:
            ret = np.empty((new_dims[0], new_dims[1], im.shape[-1]), dtype=np.float32)
            ret.fill(im_min)
            return ret
    else:
        from scipy.ndimage import zoom

        scale = tuple(np.array(new_dims, dtype=float) / np.array(im.shape[:2]))
        resized_im = zoom(im, scale + (1,), order=interp_order)
    return resized_im.astype(np.float32)


def oversample(images, crop_dims):
    """The four corner crops and the centre crop of each (H x W x K) image, then their mirrors (pycaffe):
    (10 N x h x w x K) float32."""
    im_shape = np.array(images[0].shape)
    crop_dims = np.array(crop_dims)
    im_center = im_shape[:2] / 2.0

    h_indices = (0, im_shape[0] - crop_dims[0])
    w_indices = (0, im_shape[1] - crop_dims[1])
    crops_ix = np.empty((5, 4), dtype=int)
    curr = 0
    for i in h_indices:
        for j in w_indices:
            crops_ix[curr] = (i, j, i + crop_dims[0], j + crop_dims[1])
            curr += 1
    crops_ix[4] = np.tile(im_center, (1, 2)) + np.concatenate([
        -crop_dims / 2.0,
        crop_dims / 2.0
    ])
    crops_ix = np.tile(crops_ix, (2, 1))

    crops = np.empty((10 * len(images), crop_dims[0], crop_dims[1], im_shape[-1]), dtype=np.float32)
    ix = 0
    for im in images:
        for crop in crops_ix:
            crops[ix] = im[crop[0]:crop[2], crop[1]:crop[3], :]
            ix += 1
        crops[ix - 5:ix] = crops[ix - 5:ix, :, ::-1, :]  # flip for mirrors
    return crops
