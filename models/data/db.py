"""The key-value databases Caffe's Data layer reads (``src/caffe/util/db_lmdb.cpp``, ``db_leveldb.cpp``) and the
writers that make them (``tools/convert_imageset.cpp``).

A :class:`Cursor` walks the database in key order (bytewise, as LMDB and LevelDB's default comparator sort) and,
like Caffe's DataReader, starts again from the first key after the last one. LevelDB handles are shared within the
process (py-lmdb refuses a second open of one environment, LevelDB a second lock), so a TRAIN and a TEST net can
read the same database, each with its own cursor (Caffe, which opens a LevelDB twice, fails on its lock).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from .datum import make_datum
from .deps import require
from .errors import DataSourceError, EmptySourceError, MissingSourceError

LMDB, LEVELDB = "LMDB", "LEVELDB"

_shared_lock = threading.Lock()
_shared: dict = {}  # (backend, resolved path) -> [lmdb.Environment | plyvel.DB, users]


def _looks_like(path: Path) -> str | None:
    if (path / "data.mdb").exists() or path.name == "data.mdb":
        return LMDB
    if (path / "CURRENT").exists():
        return LEVELDB
    return None


def _check_kind(path: Path, backend: str, where: str) -> None:
    kind = _looks_like(path)
    if kind is None:
        raise MissingSourceError(f"{where}: source '{path}' is not a{'n LMDB' if backend == LMDB else ' LevelDB'} "
                                 f"database (no {'data.mdb' if backend == LMDB else 'CURRENT'} file in it)")
    if kind != backend:
        raise DataSourceError(f"{where}: source '{path}' is a{'n LMDB' if kind == LMDB else ' LevelDB'} but the "
                              f"layer reads backend {backend} (data_param {{ backend: {kind} }}; Caffe's default "
                              "is LEVELDB)")


class Cursor:
    """Read-only, endless walk over one database's values in key order.

    Parameters
    ----------
    path : Path
        The database folder (an existing one: resolve it first).
    backend : {"LMDB", "LEVELDB"}
    where : str
        The layer, for messages.

    Raises
    ------
    MissingSourceError, DataSourceError, EmptySourceError, MissingDependencyError
    """

    def __init__(self, path, backend: str, where: str = ""):
        self.path = Path(path)
        self.backend = backend
        self.where = where
        _check_kind(self.path, backend, where)
        self._it = None
        self._txn = self._env = self._db = None
        if backend == LMDB:
            self._env = _open_shared(self.path, LMDB, where)
            empty = self._env.stat()["entries"] == 0
        else:
            self._db = _open_shared(self.path, LEVELDB, where)
            with self._db.iterator(include_value=False) as it:
                empty = next(it, None) is None
        if empty:
            self.close()
            raise EmptySourceError(f"{where}: database '{self.path}' has no records")

    def _restart(self):
        if self.backend == LMDB:
            if self._txn is None:
                self._txn = self._env.begin(buffers=False)
            self._it = self._txn.cursor().iternext(keys=True, values=True)
        else:
            self._it = self._db.iterator()

    def peek(self) -> tuple:
        """The first (key, value) of the database (what DataLayerSetUp reads to size the tops)."""
        if self.backend == LMDB:
            with self._env.begin(buffers=False) as txn:
                return next(iter(txn.cursor()))
        with self._db.iterator() as it:
            return next(it)

    def next(self) -> tuple:
        """The next (key, value), wrapping around to the first key after the last (DataReader::read_one)."""
        if self._it is None:
            self._restart()
        item = next(self._it, None)
        if item is None:
            self._restart()
            item = next(self._it)
        return item

    def close(self) -> None:
        """Release the database (idempotent)."""
        self._it = None
        if self._txn is not None:
            self._txn.abort()
            self._txn = None
        if self._env is not None:
            self._env = None
            _close_shared(self.path, LMDB)
        if self._db is not None:
            self._db = None
            _close_shared(self.path, LEVELDB)


def _open_shared(path: Path, backend: str, where: str):
    """The process's one handle on a database, opened read-only on first use."""
    key = (backend, os.path.realpath(path))
    with _shared_lock:
        entry = _shared.get(key)
        if entry is None:
            if backend == LMDB:
                lmdb = require("lmdb", where)
                try:
                    handle = lmdb.open(str(path), readonly=True, lock=False, subdir=path.is_dir(),
                                       max_readers=126, readahead=True)
                except lmdb.Error as e:
                    raise DataSourceError(f"{where}: cannot open LMDB '{path}': {e}") from None
            else:
                plyvel = require("plyvel", where)
                try:
                    handle = plyvel.DB(str(path), create_if_missing=False)
                except plyvel.Error as e:
                    raise DataSourceError(f"{where}: cannot open LevelDB '{path}': {e}") from None
            entry = _shared[key] = [handle, 0]
        entry[1] += 1
        return entry[0]


def _close_shared(path: Path, backend: str) -> None:
    key = (backend, os.path.realpath(path))
    with _shared_lock:
        entry = _shared.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            entry[0].close()
            del _shared[key]


# ---------------------------------------------------------------------------------------------------- writers

def datum_records(images, labels, encoding=None, names=None):
    """(key, serialized Datum) pairs as convert_imageset writes them: key ``"%08d" % i`` (+ ``"_" + name``)."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be (N,) = ({len(images)},), got shape {labels.shape}")
    if names is not None and len(names) != len(images):
        raise ValueError(f"{len(names)} names for {len(images)} images")
    if encoding not in (None, "png", "jpg"):
        raise ValueError(f"encoding must be None, 'png' or 'jpg', got {encoding!r}")
    for i in range(len(images)):
        key = f"{i:08d}" + (f"_{names[i]}" if names is not None else "")
        yield key.encode(), make_datum(images[i], int(labels[i]), encoding).SerializeToString()


def _replace_dir(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` onto ``path`` (any old ``path`` removed only after the new one is ready)."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_lmdb(path, images, labels, encoding: str | None = None, names=None) -> Path:
    """Write images and labels as an LMDB of Datums, as ``convert_imageset --backend=lmdb`` does.

    Parameters
    ----------
    path : path-like
        The database folder (replaced if it exists; written in a temp folder first, so it is never half-written).
    images : (N, C, H, W) uint8 or float array
        uint8 -> raw ``data`` bytes (or PNG/JPEG with ``encoding``); float -> ``float_data``.
    labels : (N,) int array
    encoding : None, "png" or "jpg"
        Encode with ``cv2.imencode`` (channels stored in the order given, BGR as OpenCV reads them).
    names : sequence of str, optional
        Key suffixes: keys are ``"%08d_NAME"`` instead of ``"%08d"``.

    Returns
    -------
    Path
        ``path``. Equal inputs give byte-identical ``data.mdb`` files.
    """
    lmdb = require("lmdb")
    path = Path(path)
    records = list(datum_records(images, labels, encoding, names))
    size = sum(len(k) + len(v) for k, v in records)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        # map_size is an upper bound of the file (sparse on Linux); pages carry ~2x overhead for small values
        env = lmdb.open(str(tmp), map_size=max(1 << 24, 4 * size + (len(records) << 10)), lock=False,
                        meminit=True, sync=True)
        with env.begin(write=True) as txn:
            for k, v in records:
                txn.put(k, v)
        env.sync(True)
        env.close()
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def write_leveldb(path, images, labels, encoding: str | None = None, names=None) -> Path:
    """Write images and labels as a LevelDB of Datums (``convert_imageset --backend=leveldb``); same parameters
    as :func:`write_lmdb`. LevelDB's informational ``LOG`` files (timestamps) are removed so that equal inputs give
    byte-identical folders."""
    plyvel = require("plyvel")
    path = Path(path)
    records = list(datum_records(images, labels, encoding, names))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        db = plyvel.DB(str(tmp), create_if_missing=True, error_if_exists=False)
        with db.write_batch(sync=True) as wb:
            for k, v in records:
                wb.put(k, v)
        db.close()
        for f in ("LOG", "LOG.old"):
            (tmp / f).unlink(missing_ok=True)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
