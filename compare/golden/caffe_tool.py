"""Where the real ``caffe`` tool binary is (built by ``build_caffe.sh``), and running it.

``build_caffe.sh`` builds the brocolli-caffe 9.0.2 sdist with its ``tools/`` restored and writes the binary's
path to ``<cache>/<key>/CAFFE_BIN`` and ``<cache>/caffe_bin.txt`` (the newest build).  ``caffe_bin()`` returns
that path, or ``$RGR_CAFFE_BIN`` when set, or None when no build exists (tests then skip).  Importable without
Caffe, numpy or our ``models`` package.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["cache_root", "caffe_bin", "run_caffe", "caffe_env"]


def cache_root() -> Path:
    """The build cache ``build_caffe.sh`` uses: ``$RGR_CAFFE_CACHE`` or ``~/.cache/radiogenomics-replica/caffe-brocolli-9.0.2``."""
    root = os.environ.get("RGR_CAFFE_CACHE")
    if root:
        return Path(root)
    return Path.home() / ".cache" / "radiogenomics-replica" / "caffe-brocolli-9.0.2"


def caffe_bin() -> str | None:
    """Path of an executable real ``caffe`` binary, or None.

    ``$RGR_CAFFE_BIN`` wins when set (it must then exist: a wrong override is an error, not a silent skip).
    Otherwise the path ``build_caffe.sh`` recorded in ``<cache>/caffe_bin.txt``; then the pycaffe install's
    ``rgr_build_info.json`` ``caffe_bin`` entry.

    Raises
    ------
    FileNotFoundError
        ``RGR_CAFFE_BIN`` names a file that is not an executable.
    """
    env = os.environ.get("RGR_CAFFE_BIN")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise FileNotFoundError(f"RGR_CAFFE_BIN={env}: not an executable file")
        return env
    candidates = []
    rec = cache_root() / "caffe_bin.txt"
    if rec.is_file():
        candidates.append(rec.read_text().strip())
    try:  # the pycaffe this interpreter imports knows its own build
        import importlib.util
        import json
        spec = importlib.util.find_spec("caffe")
        if spec and spec.origin:
            info = Path(spec.origin).parent / "rgr_build_info.json"
            if info.is_file():
                candidates.append(json.loads(info.read_text()).get("caffe_bin", ""))
    except (ImportError, ValueError, OSError):
        pass
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def caffe_env(threads: int | None = None) -> dict:
    """Environment for a ``caffe`` subprocess: INFO logs to stderr (the solver's lines are INFO), BLAS threads."""
    env = dict(os.environ)
    env["GLOG_minloglevel"] = "0"
    env["GLOG_logtostderr"] = "1"
    if threads is not None:
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
    return env


def run_caffe(args: list[str], cwd, *, timeout: float = 600, threads: int | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run ``caffe <args>`` in ``cwd``; returns the completed process (log text in ``.stderr``).

    Raises
    ------
    FileNotFoundError
        No caffe binary (see ``caffe_bin``).
    RuntimeError
        ``check`` and the tool exited non-zero (the message carries the log's tail).
    """
    exe = caffe_bin()
    if exe is None:
        raise FileNotFoundError("no real caffe binary: run compare/golden/build_caffe.sh or set RGR_CAFFE_BIN")
    p = subprocess.run([exe, *args], cwd=str(cwd), env=caffe_env(threads), capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).splitlines()[-25:])
        raise RuntimeError(f"caffe {' '.join(args)} exited {p.returncode} in {cwd}:\n{tail}")
    return p
