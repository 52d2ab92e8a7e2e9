"""``HDF5Data``: rows of .h5 files named in a list file (``src/caffe/layers/hdf5_data_layer.cpp``,
``util/hdf5.cpp``), and the writer of such files.

Each top is the dataset of the same name, read whole as float32 (float and integer datasets, as
``H5LTread_dataset_float`` converts them); all tops of a file have the same number of rows. Rows are served in
order, file after file, wrapping around to the first file. With ``shuffle``, the file order is shuffled at setup and
at each wrap, and the rows of a file are shuffled each time it is loaded and each time its rows run out; rows of
different files are never interleaved. HDF5Data takes no ``transform_param`` (Caffe refuses it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.atomic import atomic_path, write_text
from models.errors import NetDefinitionError

from .deps import require
from .errors import DataSourceError, EmptySourceError, LabelShapeError, SourceShapeError
from .paths import resolve
from .source import DataSource


class HDF5DataSource(DataSource):
    """An ``HDF5Data`` layer: one top per dataset, shape ``(batch_size,) + dataset.shape[1:]``.

    Raises
    ------
    MissingSourceError
        The list file, or a .h5 file it names, does not exist.
    EmptySourceError
        No file in the list, or a file with no rows.
    DataSourceError
        A dataset named by a top is missing, or is not numeric.
    LabelShapeError
        Datasets of one file with different numbers of rows.
    SourceShapeError
        A file whose datasets' trailing dimensions differ from the first file's.
    NetDefinitionError
        A ``transform_param`` on the layer.
    """

    def __init__(self, layer, phase, base_dir=None, seed=None):
        super().__init__(layer, phase, base_dir, seed)
        if layer.HasField("transform_param"):
            raise NetDefinitionError(f"{self.where}: HDF5Data does not transform data; remove transform_param")
        p = layer.hdf5_data_param
        self.h5py = require("h5py", self.where)
        self.batch_size = self._check_batch_size(p.batch_size, "hdf5_data_param")
        self.shuffle = p.shuffle
        self.list_path = resolve(p.source, base_dir, where=self.where, what="source")
        names = Path(self.list_path).read_text().split()
        if not names:
            raise EmptySourceError(f"{self.where}: HDF5 list '{self.list_path}' names no file; it must list at "
                                   "least one .h5 file")
        self.files = [resolve(n, base_dir, self.list_path.parent, where=self.where,
                              what=f".h5 file (listed in '{self.list_path}')") for n in names]
        self.rng = np.random.default_rng(self.seeds.spawn(1)[0])
        self.file_perm = np.arange(len(self.files))
        if self.shuffle:
            self.file_perm = self.rng.permutation(len(self.files))
        self.current_file = 0
        self._trailing = None
        self._load(self.files[self.file_perm[0]])
        self._trailing = [b.shape[1:] for b in self.blobs]
        self.row = 0

    def _load(self, path: Path) -> None:
        """LoadHDF5FileData: every top's dataset, and a fresh row permutation."""
        where = f"{self.where}: '{path}'"
        try:
            fh = self.h5py.File(path, "r")
        except OSError as e:
            raise DataSourceError(f"{where} is not an HDF5 file ({e})") from None
        blobs = []
        with fh:
            for top in self.tops:
                ds = fh.get(top)
                if not isinstance(ds, self.h5py.Dataset):
                    have = ", ".join(k for k in fh.keys()) or "none"
                    raise DataSourceError(f"{where} has no dataset '{top}' (the layer's top); datasets: {have}")
                if ds.dtype.kind not in "fiub" or ds.ndim < 1:
                    raise DataSourceError(f"{where}: dataset '{top}' is {ds.dtype} with {ds.ndim} axes; expected "
                                          "a numeric array with at least 1 axis")
                blobs.append(np.asarray(ds[()], dtype=np.float32))
        n = blobs[0].shape[0]
        for top, b in zip(self.tops, blobs):
            if b.shape[0] != n:
                raise LabelShapeError(f"{where}: dataset '{top}' has {b.shape[0]} rows, dataset '{self.tops[0]}' "
                                      f"has {n}; all tops need the same number of rows")
        if n == 0:
            raise EmptySourceError(f"{where} has no rows")
        if self._trailing is not None:
            for top, b, t in zip(self.tops, blobs, self._trailing):
                if b.shape[1:] != t:
                    raise SourceShapeError(f"{where}: dataset '{top}' rows are {b.shape[1:]}; the first file's "
                                           f"are {t}")
        self.blobs = blobs
        self.perm = self.rng.permutation(n) if self.shuffle else np.arange(n)

    def shapes(self) -> dict:
        return {t: (self.batch_size,) + tuple(s) for t, s in zip(self.tops, self._trailing)}

    def next_batch(self) -> dict:
        out = [np.empty((self.batch_size,) + tuple(s), np.float32) for s in self._trailing]
        i = 0
        while i < self.batch_size:
            n = self.blobs[0].shape[0]
            if self.row == n:
                if len(self.files) > 1:
                    self.current_file += 1
                    if self.current_file == len(self.files):
                        self.current_file = 0
                        if self.shuffle:
                            self.file_perm = self.rng.permutation(len(self.files))
                    self._load(self.files[self.file_perm[self.current_file]])
                    n = self.blobs[0].shape[0]
                self.row = 0
                if self.shuffle:
                    self.perm = self.rng.permutation(n)
            take = min(self.batch_size - i, n - self.row)
            rows = self.perm[self.row:self.row + take]
            for o, b in zip(out, self.blobs):
                o[i:i + take] = b[rows]
            i += take
            self.row += take
        return dict(zip(self.tops, out))


def write_hdf5(h5_path, **datasets) -> Path:
    """Write named arrays as datasets of one .h5 file, atomically (for HDF5Data: one dataset per top, all with
    the same number of rows).

    Parameters
    ----------
    h5_path : path-like
    **datasets : array-like
        Stored as given (float32 is what Caffe computes in; other numeric types are converted when read).

    Returns
    -------
    Path
        ``h5_path``. No timestamps are stored (``track_times=False``), so equal inputs give identical bytes.
    """
    h5py = require("h5py")
    if not datasets:
        raise ValueError("write_hdf5 needs at least one dataset")
    h5_path = Path(h5_path)
    with atomic_path(h5_path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w", track_order=False) as fh:
            for name in sorted(datasets):
                fh.create_dataset(name, data=np.asarray(datasets[name]), track_times=False)
    return h5_path


def write_hdf5_list(list_path, h5_paths) -> Path:
    """Write the list file an HDF5Data ``source`` names: one .h5 path per line (paths as given; relative ones are
    found from the working directory, the prototxt's folder or the list's folder)."""
    write_text(list_path, "".join(f"{p}\n" for p in h5_paths))
    return Path(list_path)
