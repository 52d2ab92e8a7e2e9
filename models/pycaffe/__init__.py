"""``models.pycaffe``: a drop-in for pycaffe (BVLC Caffe's ``caffe`` Python module) on PyTorch.

``from models import pycaffe as caffe`` and an existing script runs: ``caffe.Net``, ``caffe.TRAIN``/``TEST``,
``set_mode_cpu``/``set_mode_gpu``/``set_device``/``set_random_seed``, the six solver classes and ``get_solver``,
``caffe.Layer`` (the Python-layer base class), ``caffe.io`` and ``caffe.proto.caffe_pb2``. A script that does
``import caffe`` runs unchanged with ``python -m models.pycaffe SCRIPT [ARGS...]`` (see :func:`install_as_caffe`).
docs/pycaffe.md lists what differs from real pycaffe.
"""
from __future__ import annotations

import sys

from .errors import ArgumentError, MissingFileError, PycaffeError
from .layer import Layer
from .mode import set_device, set_mode_cpu, set_mode_gpu, set_random_seed
from .net import TEST, TRAIN, Net
from .solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver, SGDSolver, Solver,
                     get_solver)
from .blob import Blob
from . import io, proto  # noqa: F401

__version__ = "1.0.0"

__all__ = ["Net", "Blob", "Layer", "TRAIN", "TEST", "set_mode_cpu", "set_mode_gpu", "set_device", "set_random_seed",
           "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver", "AdamSolver",
           "Solver", "get_solver", "layer_type_list", "io", "proto", "caffe_modules", "install_as_caffe", "PycaffeError",
           "MissingFileError", "ArgumentError", "__version__"]


def layer_type_list() -> list:
    """The layer types nets may use (``LayerRegistry::LayerTypeList``), sorted."""
    from models.graph import supported_layer_types
    return sorted(supported_layer_types())


def caffe_modules() -> dict:
    """``{module name: module}`` that make ``import caffe``, ``caffe.io``, ``caffe.proto`` and
    ``caffe.proto.caffe_pb2`` resolve to this package (for ``sys.modules``)."""
    return {"caffe": sys.modules[__name__], "caffe.io": io, "caffe.proto": proto,
            "caffe.proto.caffe_pb2": proto.caffe_pb2}


def install_as_caffe() -> None:
    """Make ``import caffe`` resolve to this package in this process (:func:`caffe_modules` put into
    ``sys.modules``), so that a pycaffe script runs unchanged. Replaces an already imported ``caffe``."""
    for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
        del sys.modules[name]
    sys.modules.update(caffe_modules())
