"""``Data``: Datums from an LMDB or a LevelDB (``src/caffe/layers/data_layer.cpp``, ``data_reader.cpp``).

Records are read in the database's key order, wrapping around to the first key after the last one; each batch is
shaped by its first datum (DataLayer::load_batch) and transformed by ``transform_param``. ``rand_skip`` is not
read (Caffe's DataReader ignores it too).
"""
from __future__ import annotations

import warnings

import numpy as np

from models.schema import pb

from .datum import datum_array
from .db import LEVELDB, LMDB, Cursor
from .errors import DataSourceError
from .paths import resolve
from .source import DataSource
from .transform import DataTransformer


class DataLayerSource(DataSource):
    """A ``Data`` layer: tops ``data`` (N, C, H, W) and, with a second top, ``label`` (N,).

    Raises
    ------
    MissingSourceError
        The database folder does not exist.
    EmptySourceError
        The database has no records.
    SourceShapeError
        A datum the transform cannot take (crop_size larger than the image, a mean of another shape), or a batch
        whose records differ in shape.
    MissingDependencyError
        lmdb / plyvel (or OpenCV for encoded datums) not installed.
    """

    top_range = (1, 2)

    def __init__(self, layer, phase, base_dir=None, seed=None):
        super().__init__(layer, phase, base_dir, seed)
        p = layer.data_param
        self.batch_size = self._check_batch_size(p.batch_size, "data_param")
        self.backend = LMDB if p.backend == pb.DataParameter.LMDB else LEVELDB
        self.path = resolve(p.source, base_dir, where=self.where, what="source")
        tp = layer.transform_param
        self.force_color, self.force_gray = tp.force_color, tp.force_gray
        self.transformer = DataTransformer(tp, self.phase, np.random.default_rng(self.seeds.spawn(1)[0]),
                                           self.where, base_dir)
        self.cursor = Cursor(self.path, self.backend, self.where)
        self._warned = False
        key, value = self.cursor.peek()
        first = self._decode(key, value)[0]
        self._shape = self.transformer.output_shape(first.shape, self._what(key))

    def _what(self, key: bytes) -> str:
        return f"key '{key.decode(errors='replace')}' of '{self.path}'"

    def _decode(self, key: bytes, value: bytes):
        datum = pb.Datum()
        try:
            datum.ParseFromString(value)
        except Exception:
            raise DataSourceError(f"{self.where}: {self._what(key)} is not a Datum") from None
        if not datum.encoded and (self.force_color or self.force_gray) and not self._warned:
            warnings.warn(f"{self.where}: force_color and force_gray only apply to encoded datums", stacklevel=3)
            self._warned = True
        return datum_array(datum, self.force_color, self.force_gray, f"{self.where}: {self._what(key)}"), \
            datum.label

    def shapes(self) -> dict:
        out = {self.tops[0]: (self.batch_size,) + self._shape}
        if len(self.tops) > 1:
            out[self.tops[1]] = (self.batch_size,)
        return out

    def next_batch(self) -> dict:
        images, labels, keys = [], np.empty(self.batch_size, np.float32), []
        for i in range(self.batch_size):
            key, value = self.cursor.next()
            img, labels[i] = self._decode(key, value)
            images.append(img)
            keys.append(key)
        if all(im.shape == images[0].shape and im.dtype == images[0].dtype for im in images):
            batch = np.stack(images)
        else:
            batch = images
        data = self.transformer(batch, [self._what(k) for k in keys] if isinstance(batch, list) else None)
        out = {self.tops[0]: data}
        if len(self.tops) > 1:
            out[self.tops[1]] = labels
        return out

    def close(self) -> None:
        self.cursor.close()
