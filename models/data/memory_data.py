"""``MemoryData``: batches from arrays given by Python (``src/caffe/layers/memory_data_layer.cpp``, pycaffe's
``Net.set_input_arrays``).

``set_input_arrays(data, labels)`` keeps the arrays without copying (Caffe points its tops at the numpy memory);
each batch is the next ``batch_size`` rows, wrapping around. As in Caffe, no ``transform_param`` is applied to
arrays (Caffe warns and ignores it).
"""
from __future__ import annotations

import warnings

import numpy as np

from models.errors import NetDefinitionError

from .errors import DataSourceError, LabelShapeError, SourceShapeError
from .source import DataSource


class MemoryDataSource(DataSource):
    """A ``MemoryData`` layer: tops ``data`` (batch_size, channels, height, width) and ``label`` (batch_size,).

    Batches are views of the arrays given to :meth:`set_input_arrays` (not copies).
    """

    prefetchable = False
    top_range = (2, 2)

    def __init__(self, layer, phase, base_dir=None, seed=None):
        super().__init__(layer, phase, base_dir, seed)
        p = layer.memory_data_param
        self.batch_size, self.chw = int(p.batch_size), (int(p.channels), int(p.height), int(p.width))
        if self.batch_size * int(np.prod(self.chw)) <= 0:
            raise NetDefinitionError(f"{self.where}: batch_size, channels, height, and width must be specified "
                                     "and positive in memory_data_param")
        self.data = self.labels = None
        self.pos = 0
        if layer.HasField("transform_param"):
            warnings.warn(f"{self.where}: MemoryData does not transform array data (transform_param ignored, "
                          "as in Caffe)", stacklevel=3)

    def set_input_arrays(self, data, labels) -> None:
        """Feed the layer (pycaffe ``Net.set_input_arrays``).

        Parameters
        ----------
        data : (N, channels, height, width) float32, C-contiguous
        labels : (N,) or (N, 1, 1, 1) float32, C-contiguous
            N a multiple of ``batch_size``.

        Raises
        ------
        SourceShapeError
            ``data`` not 4-D float32 C-contiguous, of the wrong channels/height/width, or N not a multiple of
            ``batch_size``.
        LabelShapeError
            ``labels`` of another length or shape.
        """
        for name, arr in (("data", data), ("labels", labels)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
                kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
                raise SourceShapeError(f"{self.where}: {name} array must be float32, got {kind}")
            if not arr.flags.c_contiguous:
                raise SourceShapeError(f"{self.where}: {name} array must be C contiguous")
        if data.ndim != 4 or data.shape[1:] != self.chw:
            raise SourceShapeError(f"{self.where}: data array has shape {data.shape}; expected (N, "
                                   f"{', '.join(map(str, self.chw))}) as memory_data_param says")
        if labels.shape not in ((len(data),), (len(data), 1, 1, 1)):
            raise LabelShapeError(f"{self.where}: labels array has shape {labels.shape}; expected ({len(data)},) "
                                  f"or ({len(data)}, 1, 1, 1) for {len(data)} data rows")
        if len(data) == 0 or len(data) % self.batch_size:
            raise SourceShapeError(f"{self.where}: first dimensions of input arrays must be a multiple of batch "
                                   f"size {self.batch_size}, got {len(data)}")
        self.data, self.labels, self.pos = data, labels.reshape(len(data)), 0

    def shapes(self) -> dict:
        return {self.tops[0]: (self.batch_size,) + self.chw, self.tops[1]: (self.batch_size,)}

    def next_batch(self) -> dict:
        if self.data is None:
            raise DataSourceError(f"{self.where}: no input arrays; call set_input_arrays(data, labels) first")
        i = self.pos
        self.pos = (self.pos + self.batch_size) % len(self.data)
        return {self.tops[0]: self.data[i:i + self.batch_size], self.tops[1]: self.labels[i:i + self.batch_size]}
