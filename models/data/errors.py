"""The errors of the data layers: bad input gets one line naming the layer, the file and what was expected.

All are :class:`models.errors.InputError` (so a CLI prints one line and exits 2), except
:class:`MissingDependencyError`, which is also an :class:`ImportError` (an optional package is not installed).
"""
from __future__ import annotations

from models.errors import CaffeError, InputError


class DataSourceError(InputError):
    """A data layer whose source cannot be read as the layer's parameters say."""


class MissingSourceError(DataSourceError, FileNotFoundError):
    """A ``source`` (LMDB/LevelDB folder, image list, HDF5 list, .h5 file, image, mean_file) that does not exist."""


class EmptySourceError(DataSourceError):
    """A database, list file or HDF5 file with no records."""


class SourceShapeError(DataSourceError):
    """Data whose shape the layer or the net cannot take (crop larger than the image, channels differing from
    the mean_file, records of different sizes within one batch, ...)."""


class LabelShapeError(DataSourceError):
    """Labels whose count or shape does not match the data."""


class MissingDependencyError(CaffeError, ImportError):
    """An optional package a source needs (lmdb, plyvel, h5py, opencv-python-headless) is not installed."""


def layer_where(layer) -> str:
    """``"Data layer 'mnist'"``: how every message of this package names a layer."""
    return f"{layer.type} layer '{layer.name}'"
