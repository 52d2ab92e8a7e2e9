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
from pathlib import Path

from models import atomic


# The one atomic-write helper (models/atomic.py), under the names this module has always exported.
atomic_write_bytes = atomic.write_bytes
atomic_write_text = atomic.write_text
atomic_write_json = atomic.write_json
atomic_save_npy = atomic.save_npy


def package_version() -> str:
    """The installed distribution's version, or pyproject.toml's in a checkout that is not installed."""
    try:
        from importlib.metadata import version

        return version("radiogenomics-replica")
    except Exception:  # PackageNotFoundError, or metadata unreadable
        root = Path(__file__).resolve().parents[2] / "pyproject.toml"
        if root.exists():
            m = re.search(r'^version\s*=\s*"([^"]+)"', root.read_text(encoding="utf-8"), re.M)
            if m:
                return m.group(1)
        return "unknown"


_SOURCE_HASHES: dict = {}


def source_hash(modules) -> str:
    """SHA1 (12 hex digits) of the source of ``modules`` (dotted names; a package means all its .py files, read
    from wherever they were imported: checkout or wheel). The code part of a resume key."""
    import importlib.util

    key = tuple(modules)
    if key in _SOURCE_HASHES:
        return _SOURCE_HASHES[key]
    h = hashlib.sha1()
    for name in key:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            h.update(f"{name}:missing".encode())
            continue
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for f in files:
            h.update(str(f.relative_to(origin.parent)).encode() + b"\0" + f.read_bytes())
    _SOURCE_HASHES[key] = h.hexdigest()[:12]
    return _SOURCE_HASHES[key]


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
