"""Small deterministic writers of Caffe data sources (LMDB of Datum, HDF5 + list file, BlobProto), for fixtures.

Stop-gap until ``models.data.write_lmdb`` / ``write_hdf5`` are on main: the lead can swap these calls for those
(same keys, ``"%08d" % i`` as tools/convert_imageset.cpp writes them, same Datum fields).  The protobuf class is
passed in, so the generator (pycaffe's ``caffe_pb2``) and the tests (``models.schema.pb``) write equal bytes.
``content_digest`` hashes what a reader sees (key order, keys, values), not the file layout.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

__all__ = ["write_lmdb", "write_hdf5", "write_blobproto", "lmdb_digest", "hdf5_digest"]


def write_lmdb(path, images: np.ndarray, labels: np.ndarray, datum_cls) -> Path:
    """Write ``images`` (N, C, H, W) uint8 (``Datum.data``) or float32 (``Datum.float_data``) with int labels.

    Keys ``"%08d" % i``; one transaction; the database is created fresh (an existing one is an error).
    """
    import lmdb
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists")
    images = np.asarray(images)
    if images.ndim != 4 or len(labels) != len(images):
        raise ValueError(f"{path}: images must be (N, C, H, W) with N labels, got {images.shape}, {len(labels)}")
    env = lmdb.open(str(path), map_size=max(1 << 20, images.nbytes * 4 + (1 << 16)), subdir=True)
    try:
        with env.begin(write=True) as txn:
            for i, (img, lab) in enumerate(zip(images, labels)):
                d = datum_cls(channels=img.shape[0], height=img.shape[1], width=img.shape[2], label=int(lab))
                if img.dtype == np.uint8:
                    d.data = np.ascontiguousarray(img).tobytes()
                else:
                    d.float_data.extend(np.asarray(img, np.float32).ravel().tolist())
                txn.put(b"%08d" % i, d.SerializeToString())
    finally:
        env.close()
    return path


def lmdb_digest(path) -> str:
    """sha256 over (key, value) pairs in the database's key order (what Caffe's DataReader reads)."""
    import lmdb
    h = hashlib.sha256()
    env = lmdb.open(str(path), readonly=True, lock=False, subdir=True)
    try:
        with env.begin() as txn:
            for k, v in txn.cursor():
                h.update(len(k).to_bytes(4, "little") + k + len(v).to_bytes(4, "little") + v)
    finally:
        env.close()
    return h.hexdigest()


def write_hdf5(h5_path, list_path=None, **datasets: np.ndarray) -> Path:
    """Write float32 datasets (one per HDF5Data top) and, with ``list_path``, the list file naming the .h5.

    The list file holds the .h5's name relative to the list file's folder... as Caffe opens it verbatim
    (hdf5_data_layer.cpp), the name is written as given relative to the run's working directory: the bare
    file name, so run Caffe in the folder that holds both.
    """
    import h5py
    h5_path = Path(h5_path)
    with h5py.File(h5_path, "w", track_order=True) as f:
        for name, arr in datasets.items():
            f.create_dataset(name, data=np.ascontiguousarray(arr, dtype=np.float32))
    if list_path is not None:
        Path(list_path).write_text(h5_path.name + "\n")
    return h5_path


def hdf5_digest(h5_path) -> str:
    """sha256 over dataset names, shapes and float32 bytes (sorted by name)."""
    import h5py
    h = hashlib.sha256()
    with h5py.File(h5_path, "r") as f:
        for name in sorted(f.keys()):
            a = np.ascontiguousarray(f[name][()], dtype=np.float32)
            h.update(name.encode() + repr(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def write_blobproto(path, arr: np.ndarray, blobproto_cls) -> Path:
    """A binary BlobProto (``shape`` + float ``data``), as InfogainLoss's ``source`` or a mean file."""
    b = blobproto_cls()
    b.shape.dim.extend(int(s) for s in arr.shape)
    b.data.extend(np.asarray(arr, np.float32).ravel().tolist())
    Path(path).write_bytes(b.SerializeToString())
    return Path(path)
