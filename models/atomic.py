"""Atomic file writes: the one helper every writer of the project uses (models, replicate, compare).

A file written through this module is either complete on disk or absent (or still its previous version): the data
goes to a temp file in the same folder, is flushed and fsynced, then moved into place with :func:`os.replace`
(atomic on POSIX and Windows within one file system). A reader, or a run resumed after a kill at any moment, never
sees half a file. On any error the temp file is removed and the exception propagates.

- :func:`atomic_path` - context manager yielding a temp path, for writers that take a path (``onnx.save``,
  ``np.savez``, ``DataFrame.to_csv``, ``Workbook.save``).
- :func:`write_bytes`, :func:`write_text`, :func:`write_json`, :func:`save_npy` - the common cases.

The self-contained scripts under ``compare/golden/`` keep their own copy (they run inside real Caffe's venv).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "write_bytes", "write_text", "write_json", "save_npy"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temp path next to ``path``; on normal exit move it onto ``path``, on an exception delete it.

    ``suffix`` keeps writers that pick a format by extension happy (e.g. ``".npz"``, ``".xlsx"``). The parent
    folder is created if missing."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(tmp)
        # mkstemp creates 0600; give the file the mode an ordinary open() would (0666 less the umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(p) -> None:
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (no newline translation: ``\\n`` stays ``\\n``)."""
    write_bytes(path, text.encode(encoding))


def _json_default(o):
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None:
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike, obj, indent: int = 1, sort_keys: bool = True) -> None:
    """Write ``obj`` as JSON (numpy scalars/arrays and paths converted) with a final newline, atomically."""
    write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=_json_default) + "\n")


def save_npy(path: str | os.PathLike, array) -> None:
    """``np.save`` of a C-contiguous copy of ``array`` to ``path``, atomically."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array))
    write_bytes(path, buf.getvalue())
