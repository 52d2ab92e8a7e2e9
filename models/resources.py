"""Where the project's nets and solvers are: the checkout's own ``prototxt/`` or the installed package data.

In a checkout (``models/`` sits next to ``prototxt/`` and ``pyproject.toml``) the top-level ``prototxt/`` folder is
used, so an edit to a file is seen by the next command without reinstalling. In an installed wheel the same files
travel as package data ``models/nets/<net>/*.prototxt`` (pyproject.toml maps ``prototxt/`` there) and are found
with :mod:`importlib.resources`. ``RGR_PROTOTXT_DIR`` overrides both (a folder with the same layout).
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["nets_dir", "net_file", "display_path"]


def _checkout_dir() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").exists() and (root / "prototxt").is_dir():
        return root / "prototxt"
    return None


def nets_dir() -> Path:
    """The folder holding ``<net>/{deploy,train_val,solver}.prototxt`` (see the module docstring for which)."""
    env = os.environ.get("RGR_PROTOTXT_DIR")
    if env:
        return Path(env)
    here = _checkout_dir()
    if here is not None:
        return here
    return Path(str(resources.files("models").joinpath("nets")))


def net_file(folder: str, name: str = "deploy.prototxt") -> Path:
    """``nets_dir() / folder / name`` (the file may not exist; loaders report that with the path)."""
    return nets_dir() / folder / name


def display_path(path: Path) -> str:
    """``prototxt/<net>/<file>`` for a file under :func:`nets_dir` (stable in reports and JSON), else the path."""
    try:
        return str(Path("prototxt") / Path(path).resolve().relative_to(nets_dir().resolve()))
    except ValueError:
        return str(path)
