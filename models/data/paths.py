"""Where a data layer's files are: Caffe opens ``source:`` and ``mean_file:`` relative to the current working
directory; a path not found there is looked up in ``base_dir`` (the folder of the prototxt or solver), then in any
further folders given (e.g. the list file's own folder for the files a list names)."""
from __future__ import annotations

from pathlib import Path

from .errors import MissingSourceError


def resolve(path: str, base_dir=None, *more_dirs, where: str = "", what: str = "source") -> Path:
    """The existing file or folder ``path`` names, or :class:`MissingSourceError`.

    Parameters
    ----------
    path : str
        As written in the prototxt (absolute, or relative to the working directory as Caffe reads it).
    base_dir, more_dirs : path-like or None
        Fallback folders tried in order for a relative ``path``.
    where, what : str
        The layer (``"Data layer 'mnist'"``) and the role of the file (``"source"``, ``"mean_file"``) for the
        one-line message.
    """
    if not path:
        raise MissingSourceError(f"{where}: no {what} given")
    p = Path(path)
    if p.exists():
        return p
    tried = [str(p)]
    if not p.is_absolute():
        for d in (base_dir, *more_dirs):
            if d is None:
                continue
            q = Path(d) / p
            if q.exists():
                return q
            tried.append(str(q))
    raise MissingSourceError(f"{where}: {what} '{path}' does not exist (looked for " + ", ".join(tried) + ")")
