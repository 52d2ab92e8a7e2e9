"""Optional packages, imported when a source first needs them.

``models.data`` imports without lmdb, plyvel, h5py or OpenCV; a source that needs one raises
:class:`~models.data.errors.MissingDependencyError` with one line naming the package to install.
"""
from __future__ import annotations

import importlib

from .errors import MissingDependencyError

#: module name -> (PyPI name, what needs it)
_PACKAGES = {
    "lmdb": ("lmdb", "the LMDB backend of Data layers"),
    "plyvel": ("plyvel", "the LevelDB backend of Data layers"),
    "h5py": ("h5py", "HDF5Data layers and HDF5 files"),
    "cv2": ("opencv-python-headless", "encoded datums, ImageData layers and image encoding"),
    "skimage": ("scikit-image", "caffe.io image loading and resizing"),
}


def require(module: str, where: str = ""):
    """Import and return ``module``; raise :class:`MissingDependencyError` (one line) when it is not installed.

    Parameters
    ----------
    module : str
        One of ``lmdb``, ``plyvel``, ``h5py``, ``cv2``, ``skimage``.
    where : str
        What asked for it (e.g. ``"Data layer 'mnist'"``), prefixed to the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        pypi, need = _PACKAGES.get(module, (module, "this source"))
        prefix = f"{where}: " if where else ""
        raise MissingDependencyError(
            f"{prefix}the Python package '{pypi}' is needed for {need} and is not installed "
            f"(pip install {pypi}, or pip install 'radiogenomics-replica[data]')") from None
