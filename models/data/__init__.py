"""Caffe's data layers on numpy: sources that make the batches a Caffe net trains from.

``make_source(layer, phase)`` turns a data layer of a prototxt (``Data`` over LMDB/LevelDB, ``ImageData``,
``HDF5Data``, ``MemoryData``, ``DummyData``) into a :class:`DataSource` giving Caffe's batches in Caffe's order,
with ``transform_param`` applied as Caffe's DataTransformer does; :class:`Prefetcher` makes them on a background
thread. ``Input`` is not a source: its blobs are fed by the caller. Writers make the files these layers read:
:func:`write_lmdb`, :func:`write_leveldb`, :func:`write_hdf5` (+ :func:`write_hdf5_list`),
:func:`write_image_list`, :func:`write_mean_file`. lmdb, plyvel, h5py and OpenCV are optional (the ``data`` extra)
and imported only when a source needs them. Where our random streams differ from Caffe's: docs/data-layers.md.
"""
from __future__ import annotations

from pathlib import Path

from models.errors import NetDefinitionError

from .blobproto import array_to_blobproto, blobproto_to_array, read_mean_file, write_mean_file
from .data_layer import DataLayerSource
from .db import write_leveldb, write_lmdb
from .dummy_data import DummyDataSource
from .errors import (DataSourceError, EmptySourceError, LabelShapeError, MissingDependencyError,
                     MissingSourceError, SourceShapeError, layer_where)
from .hdf5 import HDF5DataSource, write_hdf5, write_hdf5_list
from .image_data import ImageDataSource, write_image_list
from .memory_data import MemoryDataSource
from .prefetch import Prefetcher
from .source import DataSource

_SOURCES = {
    "Data": DataLayerSource,
    "ImageData": ImageDataSource,
    "HDF5Data": HDF5DataSource,
    "MemoryData": MemoryDataSource,
    "DummyData": DummyDataSource,
}

#: The layer types :func:`make_source` handles (``Input`` is not among them: the caller feeds its blobs).
DATA_LAYER_TYPES = tuple(_SOURCES)

__all__ = [
    "DATA_LAYER_TYPES", "make_source", "check_source_shapes", "DataSource", "Prefetcher",
    "write_lmdb", "write_leveldb", "write_hdf5", "write_hdf5_list", "write_image_list", "write_mean_file",
    "read_mean_file", "array_to_blobproto", "blobproto_to_array",
    "DataSourceError", "MissingSourceError", "EmptySourceError", "SourceShapeError", "LabelShapeError",
    "MissingDependencyError",
]


def make_source(layer, phase, *, base_dir: Path | None = None, seed: int | None = None) -> DataSource:
    """The data source of one data layer.

    Parameters
    ----------
    layer : pb.LayerParameter
        A layer of type ``Data``, ``ImageData``, ``HDF5Data``, ``MemoryData`` or ``DummyData``.
    phase : {"TRAIN", "TEST"} or 0/1
        TRAIN draws random crop offsets; TEST takes the centre.
    base_dir : path-like, optional
        Where relative ``source``/``mean_file`` paths are looked up when the working directory (Caffe's
        choice) does not have them: the prototxt's or solver's folder.
    seed : int, optional
        ``random_seed``: the same seed gives the same shuffles, crops and flips (not Caffe's own, see
        docs/data-layers.md). None or negative: fresh entropy.

    Returns
    -------
    DataSource
        ``.name``, ``.tops``, ``.shapes()`` (top -> shape with the batch axis), ``.next_batch()`` (top -> float32
        array), ``.close()``; a context manager.

    Raises
    ------
    NetDefinitionError
        Not a data layer type, or parameters Caffe rejects (top count, batch_size, ...).
    DataSourceError
        (its subclasses) a missing, empty or unreadable source, or data the layer cannot take; one line naming
        the layer and the file.
    MissingDependencyError
        The backend's package is not installed.
    """
    cls = _SOURCES.get(layer.type)
    if cls is None:
        why = ("Input is not a data source: its blobs are fed by the caller" if layer.type == "Input" else
               f"'{layer.type}' is not a data source this package reads")
        raise NetDefinitionError(f"{layer_where(layer)}: {why}; make_source handles "
                                 + ", ".join(DATA_LAYER_TYPES))
    return cls(layer, phase, base_dir, seed)


def check_source_shapes(source, expected: dict) -> None:
    """Check that a source's tops have the shapes a net needs.

    Parameters
    ----------
    source : DataSource or Prefetcher
    expected : dict
        ``{top: shape}`` (with the batch axis) for the tops to check, e.g. what the weights or the rest of the
        net were built for.

    Raises
    ------
    SourceShapeError
        One line naming the layer, its source file, the top and both shapes.
    """
    have = source.shapes()
    src = getattr(source, "source_file", None)
    for top, want in expected.items():
        got = have.get(top)
        if got is not None and tuple(got) != tuple(want):
            where = layer_where(source.layer) if hasattr(source, "layer") else f"layer '{source.name}'"
            of = f" (source '{src}')" if src else ""
            raise SourceShapeError(f"{where}{of}: top '{top}' is {tuple(got)}; the net needs {tuple(want)}")
