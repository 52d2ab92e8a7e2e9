"""Caffe nets as the source of truth: schema, prototxt/caffemodel I/O, graph, accounting, and conversion to
PyTorch and ONNX with Caffe's exact semantics.

The light parts (schema, graph, caffemodel, accounting) import eagerly; the converter (torch, onnx) is imported
on first use so that ``python -m models info`` stays fast.
"""
from __future__ import annotations

import importlib

from .accounting import NetCost, net_cost
from .caffemodel import CaffeModel, check_params, params_for_net, read_caffemodel, write_caffemodel
from .errors import (CaffeError, CaffemodelFormatError, InputError, NetDefinitionError, PrototxtSyntaxError,
                     ShapeError, UnknownLayerError, WeightsError)
from .graph import Layer, Net, load_net
from .prototxt_io import read_net_text, read_solver_text

_LAZY = {
    "to_torch": "models.torch_builder", "CaffeModule": "models.torch_builder",
    "load_caffemodel": "models.weights", "save_caffemodel": "models.weights",
    "CaffeSGD": "models.solver", "to_onnx": "models.onnx_export",
    "register_layer": "models.plugins",
}

__all__ = ["load_net", "Net", "Layer", "read_caffemodel", "write_caffemodel", "check_params", "params_for_net",
           "CaffeModel", "net_cost", "NetCost", "read_net_text", "read_solver_text", "CaffeError",
           "CaffemodelFormatError", "InputError", "NetDefinitionError", "PrototxtSyntaxError", "ShapeError",
           "UnknownLayerError", "WeightsError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models' has no attribute '{name}'")
