"""One converter per Caffe layer type (torch module + ONNX nodes); see :mod:`models.layers.registry`."""
from models.layers.registry import CaffeLayerModule, Converter, get, register, supported_types

__all__ = ["CaffeLayerModule", "Converter", "get", "register", "supported_types"]
