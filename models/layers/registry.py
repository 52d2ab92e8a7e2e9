"""The registry of layer converters: one :class:`Converter` per Caffe layer type.

A converter turns one :class:`models.graph.Layer` into

* a ``torch.nn.Module`` (:meth:`Converter.build`) whose ``forward(*bottoms)`` returns the list of tops and whose
  ``blobs`` (an ``nn.ParameterList``) hold the layer's learnable blobs in Caffe's order
  (the order of ``layer.param_shapes`` and of the blobs in a ``.caffemodel``), and
* ONNX nodes (:meth:`Converter.export`) that compute the same tops, named after the Caffe layer.

Register a converter with the decorator::

    @register("Convolution")
    class ConvolutionConverter(Converter):
        ...

A type without a converter is refused at conversion time (:func:`get`) with
:class:`models.errors.UnknownLayerError`, naming the layer: no layer is ever dropped silently.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from models.errors import UnknownLayerError

_REGISTRY: dict[str, "Converter"] = {}


class CaffeLayerModule(nn.Module):
    """Base class of the per-layer torch modules.

    ``blobs`` holds the layer's learnable parameters in Caffe blob order; ``forward(*bottoms)`` returns a list
    with one tensor per top.
    """

    def __init__(self, name: str = ""):
        super().__init__()
        self.caffe_name = name
        self.blobs = nn.ParameterList()

    def add_blob(self, shape, requires_grad: bool = True) -> nn.Parameter:
        p = nn.Parameter(torch.zeros(tuple(shape), dtype=torch.float32), requires_grad=requires_grad)
        self.blobs.append(p)
        return p


class Converter:
    """Turns one Caffe layer into a torch module and into ONNX nodes.

    Subclasses set ``type`` (done by :func:`register`) and implement :meth:`build` and :meth:`export`.
    ``export`` receives an :class:`models.onnx_export.OnnxGraph`, the ONNX value names of the bottoms and of the
    tops to produce, and the layer's blobs as numpy arrays (Caffe order).
    """

    type: str = ""
    #: param blobs that are running statistics rather than trained weights (BatchNorm): never updated by SGD
    frozen_blobs: tuple[int, ...] = ()
    #: whether the tops' batch axis depends on the bottoms' values (Filter): ONNX then declares it unknown
    data_dependent_batch: bool = False
    #: the oldest ONNX opset :meth:`export` can write, and why (the operator that needs it)
    min_opset: int = 11
    min_opset_why: str = "the exporter's floor: Pad with its pads as an input"

    def build(self, layer, phase: str) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError

    def export(self, layer, g, bottoms: list[str], tops: list[str], blobs: list, phase: str) -> None:
        raise NotImplementedError(f"layer '{layer.name}' of type '{layer.type}': no ONNX export")


def register(type_name: str) -> Callable[[type], type]:
    """Class decorator: register a :class:`Converter` subclass for the Caffe layer type ``type_name``."""

    def deco(cls: type) -> type:
        if type_name in _REGISTRY:
            raise ValueError(f"a converter for '{type_name}' is already registered")
        inst = cls()
        inst.type = type_name
        _REGISTRY[type_name] = inst
        return cls

    return deco


def _load_all() -> None:
    # importing the family modules runs their @register decorators
    from models.layers import (activations, batch_index, conv, inner_product, log_losses, losses, lrn,  # noqa: F401
                               margin_losses, normalization, pooling, python_layer, reduction, structural)
    from models.plugins import load_entry_points
    load_entry_points()


def supported_types() -> list[str]:
    """The Caffe layer types that have a converter."""
    _load_all()
    return sorted(_REGISTRY)


def get(layer) -> Converter:
    """The converter for ``layer`` (anything with ``.name`` and ``.type``); raises UnknownLayerError if none."""
    _load_all()
    conv = _REGISTRY.get(layer.type)
    if conv is None:
        from models.graph import DATA_LAYER_TYPES
        raise UnknownLayerError(layer.name, layer.type, set(_REGISTRY) | set(DATA_LAYER_TYPES))
    return conv
