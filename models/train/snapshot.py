"""Caffe's snapshot files: ``.solverstate`` (binary SolverState) and the HDF5 variants, written atomically.

* ``PREFIX_iter_N.solverstate``: ``SolverState`` (caffe.proto) with ``iter``, ``learned_net`` (the caffemodel
  path as written), ``history`` (one BlobProto per history blob, the solver's layout: see
  :mod:`models.train.updates`) and ``current_step`` (sgd_solver.cpp ``SnapshotSolverStateToBinaryProto``).
* ``PREFIX_iter_N.solverstate.h5``: datasets ``iter`` (int32, shape (1,)), ``learned_net`` (a NUL-terminated
  fixed-length string, as ``H5LTmake_dataset_string``), ``current_step`` and group ``history`` with datasets
  ``"0"``, ``"1"``, ... (sgd_solver.cpp ``SnapshotSolverStateToHDF5``, util/hdf5.cpp).
* ``PREFIX_iter_N.caffemodel.h5``: group ``data`` with one group per layer holding datasets ``"0"``, ``"1"``, ...
  of its blobs (net.cpp ``Net::ToHDF5``; a blob shared through ``ParamSpec.name`` is written by its owner only).

The binary ``.caffemodel`` itself is :func:`models.caffemodel.write_caffemodel` (``Net::ToProto``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.atomic import atomic_path, write_bytes
from models.errors import CaffeError
from models.schema import pb


class SnapshotError(CaffeError):
    """A solverstate or HDF5 caffemodel that cannot be read, or does not fit the solver's net."""


def _blob_proto(arr: np.ndarray) -> "pb.BlobProto":
    blob = pb.BlobProto()
    arr = np.ascontiguousarray(arr, np.float32)
    blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.ravel().tolist())
    return blob


def _blob_array(blob, where: str) -> np.ndarray:
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = tuple(int(x) for x in (blob.num, blob.channels, blob.height, blob.width))
    data = np.asarray(blob.double_data if len(blob.double_data) else blob.data, np.float32)
    if data.size != int(np.prod(shape)):
        raise SnapshotError(f"{where}: history blob of shape {shape} holds {data.size} values")
    return data.reshape(shape)


def write_solverstate(path, iteration: int, learned_net: str, current_step: int, history: list) -> None:
    """Write a binary ``.solverstate`` atomically. ``history``: float32 arrays in the solver's layout."""
    state = pb.SolverState()
    state.iter = int(iteration)
    state.learned_net = str(learned_net)
    state.current_step = int(current_step)
    for h in history:
        state.history.add().CopyFrom(_blob_proto(h))
    write_bytes(path, state.SerializeToString())


def _h5py(what: str):
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency of the project
        raise CaffeError(f"{what} needs h5py (pip install h5py)") from None
    return h5py


def _save_string(h5py, f, name: str, value: str) -> None:
    raw = value.encode() + b"\0"
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(raw))
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    ds = h5py.h5d.create(f.id, name.encode(), tid, space)
    ds.write(h5py.h5s.ALL, h5py.h5s.ALL, np.frombuffer(raw, dtype=f"S{len(raw)}").reshape(()), mtype=tid)


def write_solverstate_h5(path, iteration: int, learned_net: str, current_step: int, history: list) -> None:
    """Write a ``.solverstate.h5`` atomically (sgd_solver.cpp ``SnapshotSolverStateToHDF5`` layout)."""
    h5py = _h5py("snapshot_format: HDF5")
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("iter", data=np.array([iteration], np.int32))
            _save_string(h5py, f, "learned_net", str(learned_net))
            f.create_dataset("current_step", data=np.array([current_step], np.int32))
            g = f.create_group("history")
            for i, h in enumerate(history):
                g.create_dataset(str(i), data=np.ascontiguousarray(h, np.float32))


def read_solverstate(path) -> dict:
    """``{"iter", "learned_net" (str or None), "current_step", "history": [float32 arrays]}`` from a binary or
    HDF5 (name ends in ``.h5``, as ``Solver::Restore`` decides) solverstate; :class:`SnapshotError` on a file
    that is not one."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"{path}: no such solverstate file")
    if path.name.endswith(".h5"):
        h5py = _h5py(f"{path}")
        try:
            with h5py.File(path, "r") as f:
                learned = None
                if "learned_net" in f:
                    raw = f["learned_net"][()]
                    learned = (raw.decode() if isinstance(raw, bytes) else str(raw)).rstrip("\0")
                hist = f["history"]
                history = [np.asarray(hist[str(i)], np.float32) for i in range(len(hist))]
                return {"iter": int(np.asarray(f["iter"]).ravel()[0]), "learned_net": learned,
                        "current_step": int(np.asarray(f["current_step"]).ravel()[0]) if "current_step" in f else 0,
                        "history": history}
        except (OSError, KeyError) as e:
            raise SnapshotError(f"{path}: not a Caffe HDF5 solverstate ({e})") from None
    state = pb.SolverState()
    try:
        state.ParseFromString(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise SnapshotError(f"{path}: not a Caffe solverstate ({e})") from None
    return {"iter": state.iter, "learned_net": state.learned_net if state.HasField("learned_net") else None,
            "current_step": state.current_step,
            "history": [_blob_array(b, f"{path}: history {i}") for i, b in enumerate(state.history)]}


def write_caffemodel_h5(path, layers: list) -> None:
    """Write ``Net::ToHDF5``'s file atomically. ``layers``: ``[(layer name, [arrays])]`` in net order (every
    layer gets a group; blobs shared through ``ParamSpec.name`` are left out of the sharer's group)."""
    h5py = _h5py("snapshot_format: HDF5")
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            for name, arrays in layers:
                g = data.create_group(name)
                for i, a in enumerate(arrays):
                    if a is not None:
                        g.create_dataset(str(i), data=np.ascontiguousarray(a, np.float32))


def read_caffemodel_h5(path) -> dict:
    """``{layer: {index: float32 array}}`` from a ``.caffemodel.h5`` (``CopyTrainedLayersFromHDF5``)."""
    h5py = _h5py(f"{path}")
    try:
        with h5py.File(path, "r") as f:
            return {name: {int(k): np.asarray(v, np.float32) for k, v in g.items()} for name, g in f["data"].items()}
    except (OSError, KeyError) as e:
        raise SnapshotError(f"{path}: not a Caffe HDF5 caffemodel ({e})") from None


def is_hdf5(path) -> bool:
    """``H5Fis_hdf5``: the file starts with the HDF5 signature."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False
