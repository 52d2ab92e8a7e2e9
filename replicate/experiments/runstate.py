"""Resumable, atomic run state: one small JSON file per finished unit of work (a fold of a cell, a feature blob).

A run killed at any moment restarts where it stopped: a unit is either complete on disk (written to a temp file in
the same folder, then ``os.replace``) or absent, so nothing half-written is ever read back.
(docs/CONTRIBUTING.md: "Results are written atomically ... long runs resume.")
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npy(path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array))
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def slug(text: str) -> str:
    """A file-name-safe form of a unit key; a hash suffix keeps distinct keys distinct."""
    s = re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:120]
    return f"{s}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


class RunState:
    """Finished units of a run, stored as ``RUN/state/<slug(key)>.json``."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.state_dir = self.run_dir / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.state_dir / f"{slug(key)}.json"

    def done(self, key: str) -> bool:
        return self.path(key).exists()

    def load(self, key: str):
        with open(self.path(key), encoding="utf-8") as fh:
            return json.load(fh)["value"]

    def save(self, key: str, value) -> None:
        atomic_write_json(self.path(key), {"key": key, "value": value})

    def get_or_compute(self, key: str, compute):
        """Return the stored value of ``key`` or compute, store and return it."""
        if self.done(key):
            return self.load(key)
        value = compute()
        self.save(key, value)
        return value
