"""``caffe.Blob``: a blob's ``data`` and ``diff`` as float32 numpy arrays that are views, as pycaffe's are
(python/caffe/_caffe.cpp wraps ``mutable_cpu_data()`` / ``mutable_cpu_diff()`` in an ndarray without copying).

* :class:`Blob` - an activation blob (an input, a data layer's top, a layer's top). It owns its host memory: the
  net reads its input blobs from there and writes every blob's value and diff into it after each forward and
  backward, so an array a script holds keeps showing the blob across forwards and solver steps, and what it
  writes into an input blob is what the next forward reads. ``reshape`` keeps the memory when the new shape fits
  (``Blob::Reshape``: reallocate only beyond the capacity).
* :class:`ParamBlob` - a learnable blob of a layer: ``data`` is the torch parameter itself and ``diff`` its
  ``.grad`` (on CPU ``Tensor.numpy()`` shares their memory, so in-place edits are what the next forward and update
  use). On CUDA a host copy is handed out and synchronised as Caffe's ``SyncedMemory`` does: taken from the
  device when ``data``/``diff`` is read after the device changed, written back before the next forward, backward
  or solver step. An array held across such a call is then stale, as it is in pycaffe's GPU mode.

4-D weights of convolution nets are kept channels-last in memory (models.torch_builder): their arrays have the
Caffe shape with channels-last strides; values, indexing and in-place edits are unaffected.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .errors import ArgumentError


def _count(shape) -> int:
    return int(math.prod(shape)) if len(shape) else 1


class _ShapeMixin:
    """``shape``/``count`` and Caffe's legacy 4-axis accessors (``Blob::LegacyShape``)."""

    @property
    def shape(self) -> tuple:
        """The blob's shape (a tuple of ints; pycaffe returns an ``IntVec``)."""
        return tuple(self._shape_now())

    @property
    def count(self) -> int:
        """The number of elements."""
        return _count(self.shape)

    def _legacy(self, index: int) -> int:
        shape = self.shape
        if len(shape) > 4:
            raise ArgumentError(f"Cannot use legacy accessors on Blobs with > 4 axes (shape {shape})")
        return int(shape[index]) if index < len(shape) else 1

    @property
    def num(self) -> int:
        return self._legacy(0)

    @property
    def channels(self) -> int:
        return self._legacy(1)

    @property
    def height(self) -> int:
        return self._legacy(2)

    @property
    def width(self) -> int:
        return self._legacy(3)


class Blob(_ShapeMixin):
    """An activation blob; see the module docstring.

    Parameters
    ----------
    shape : tuple of int, the blob's shape (``()`` for a loss).
    """

    def __init__(self, shape=()):
        self._shape = tuple(int(d) for d in shape)
        n = _count(self._shape)
        self._data = np.zeros(n, np.float32)
        self._diff = np.zeros(n, np.float32)

    def _shape_now(self):
        return self._shape

    @property
    def data(self) -> np.ndarray:
        """The values, float32, ``shape``; a view onto the blob's memory."""
        return self._data[:_count(self._shape)].reshape(self._shape)

    @property
    def diff(self) -> np.ndarray:
        """The gradient (what the last backward wrote), float32, ``shape``; a view."""
        return self._diff[:_count(self._shape)].reshape(self._shape)

    def reshape(self, *shape, **kwargs) -> None:
        """``Blob::Reshape``: a new shape (ints, each >= 0); the memory is kept when it is large enough, else new
        zero memory (arrays taken before then no longer show the blob). The net's other blobs follow at
        ``net.reshape()`` or the next forward.

        Raises
        ------
        ArgumentError : keyword arguments (pycaffe: "Blob.reshape takes no kwargs"), a non-integer or negative
            dimension.
        """
        if kwargs:
            raise ArgumentError("Blob.reshape takes no kwargs")
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        dims = []
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
                raise ArgumentError(f"Blob.reshape: dimensions must be integers >= 0, got {shape!r}")
            dims.append(int(d))
        n = _count(dims)
        if n > self._data.size:
            self._data = np.zeros(n, np.float32)
            self._diff = np.zeros(n, np.float32)
        self._shape = tuple(dims)

    def __repr__(self) -> str:
        return f"<caffe.Blob shape={self._shape}>"


class ParamBlob(_ShapeMixin):
    """A learnable blob backed by a torch parameter; see the module docstring.

    Parameters
    ----------
    resolve : callable returning the current ``torch.nn.Parameter`` (it changes when a TEST net starts sharing
        the TRAIN net's blobs).
    """

    def __init__(self, resolve):
        self._resolve = resolve
        self._host = None      # CUDA: (tensor, data array, diff array) last handed out
        self._fresh = False    # the host copy equals the device
        self._handed = False   # a host copy was handed out since the last write-back

    def _tensor(self) -> torch.Tensor:
        t = self._resolve()
        if t.grad is None:  # Caffe's diff always exists; accumulation into it happens in place
            t.grad = torch.zeros_like(t)
        return t

    def _shape_now(self):
        return tuple(self._resolve().shape)

    def _host_arrays(self, t):
        if self._host is None or self._host[0] is not t or not self._fresh:
            self._host = (t, t.detach().float().cpu().numpy().copy(), t.grad.detach().float().cpu().numpy().copy())
            self._fresh = True
        self._handed = True
        return self._host

    @property
    def data(self) -> np.ndarray:
        """The blob's values, float32; on CPU the parameter's own memory."""
        t = self._tensor()
        if t.device.type == "cpu" and t.dtype == torch.float32:
            return t.detach().numpy()
        return self._host_arrays(t)[1]

    @property
    def diff(self) -> np.ndarray:
        """The blob's diff (the accumulated gradient; after a solver update, the update value), float32."""
        t = self._tensor()
        if t.device.type == "cpu" and t.dtype == torch.float32:
            return t.grad.detach().numpy()
        return self._host_arrays(t)[2]

    def reshape(self, *shape, **kwargs) -> None:
        """Learnable blobs keep the shape their layer gives them.

        Raises
        ------
        ArgumentError : always (a layer's weights cannot be reshaped from Python here).
        """
        raise ArgumentError(f"cannot reshape a learnable blob of shape {self.shape} to {shape}: its layer fixes it")

    # ---- CUDA synchronisation (no-ops on CPU) -----------------------------------------------------------
    def push(self) -> None:
        """Write a handed-out host copy back to the device (before the net runs)."""
        if self._handed and self._host is not None:
            t, data, diff = self._host
            with torch.no_grad():
                t.copy_(torch.from_numpy(data).reshape(t.shape))
                t.grad.copy_(torch.from_numpy(diff).reshape(t.shape))
            self._handed = False

    def invalidate(self) -> None:
        """The device changed (a forward, backward, update or copy): the next read takes it again."""
        self._fresh = False

    def __repr__(self) -> str:
        return f"<caffe.Blob (learnable) shape={self.shape}>"
