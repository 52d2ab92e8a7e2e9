"""``type: "Python"``: a user's :class:`models.pycaffe.Layer` subclass run inside the torch graph
(include/caffe/layers/python_layer.hpp ``PythonLayer``; python/caffe/_caffe.cpp).

As in Caffe, ``python_param { module: "M" layer: "C" param_str: "..." }`` imports module ``M`` (from ``sys.path``,
i.e. ``PYTHONPATH`` or the working directory, as Caffe's embedded interpreter does), constructs ``C`` with the
``LayerParameter``, sets ``param_str`` and ``phase``, calls ``setup(bottom, top)`` once, then ``reshape`` and
``forward(bottom, top)`` on every pass and ``backward(top, propagate_down, bottom)`` when a gradient is needed.
``bottom``/``top`` are :class:`models.pycaffe.blob.Blob` lists whose ``.data``/``.diff`` are float32 numpy arrays.

In the torch graph the layer is one ``torch.autograd.Function``: its forward copies the bottoms to the host, runs
the layer, and returns its tops on the bottoms' device; its backward writes the tops' gradients into ``top[i].diff``
and calls the layer's ``backward``. Inference needs only ``forward``; training through the layer needs a
``backward`` (a class that does not override :meth:`models.pycaffe.Layer.backward` is refused, naming the layer,
when a gradient reaches it). Shape inference runs the layer's ``setup`` and ``reshape`` on blobs of the bottoms'
shapes (Caffe's ``Net::Init`` does the same). Learnable blobs of Python layers (``self.blobs.add_blob``) are not
supported. ONNX export is refused: ONNX cannot call Python; give the type its own converter with
:func:`models.register_layer` (``export=``) to export it.
"""
from __future__ import annotations

import importlib

import numpy as np
import torch

from models.errors import NetDefinitionError
from models.layers.registry import CaffeLayerModule, Converter, register

PHASE_IDS = {"TRAIN": 0, "TEST": 1}


def _layer_class(lp):
    pp = lp.python_param
    if not pp.module or not pp.layer:
        raise NetDefinitionError(f"layer '{lp.name}' (Python): python_param needs module and layer "
                                 f"(got module '{pp.module}', layer '{pp.layer}')")
    try:
        mod = importlib.import_module(pp.module)
    except Exception as exc:  # noqa: BLE001 - the user's module: name it and its error in one line
        raise NetDefinitionError(f"layer '{lp.name}' (Python): cannot import module '{pp.module}' "
                                 f"({type(exc).__name__}: {exc}); it is imported from sys.path (PYTHONPATH), "
                                 "as Caffe does") from None
    cls = getattr(mod, pp.layer, None)
    if cls is None:
        raise NetDefinitionError(f"layer '{lp.name}' (Python): module '{pp.module}' has no class '{pp.layer}'")
    return cls


def _instance(lp, phase: int):
    """``PythonLayer`` construction and ``LayerSetUp``: the user's layer with ``param_str`` and ``phase`` set."""
    inst = _layer_class(lp)(lp)
    inst.param_str = str(lp.python_param.param_str)
    inst.phase = phase
    return inst


def _blobs(shapes):
    from models.pycaffe.blob import Blob
    return [Blob(tuple(s)) for s in shapes]


def _call(lp, what, fn, *args):
    try:
        return fn(*args)
    except NetDefinitionError:
        raise
    except Exception as exc:  # noqa: BLE001 - an error inside the user's layer: name the layer and the method
        raise NetDefinitionError(f"layer '{lp.name}' (Python {lp.python_param.module}.{lp.python_param.layer}): "
                                 f"{what} raised {type(exc).__name__}: {exc}") from exc


def python_shapes(lp, bottoms, phase: int | None = None):
    """Shape inference for a Python layer: ``setup`` then ``reshape`` on blobs of the bottoms' shapes; the tops'
    shapes as the layer left them. Returns ``(top_shapes, [], None)`` (no learnable blobs)."""
    ph = int(lp.phase) if phase is None else phase
    inst = _instance(lp, ph)
    bottom, top = _blobs(bottoms), _blobs([()] * len(lp.top))
    _call(lp, "setup", inst.setup, bottom, top)
    _call(lp, "reshape", inst.reshape, bottom, top)
    if getattr(inst, "blobs", None):
        raise NetDefinitionError(f"layer '{lp.name}' (Python): learnable blobs of Python layers are not supported")
    return [tuple(t.shape) for t in top], [], None


class _PythonFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, module, *bottoms):
        layer, lp = module.layer, module.proto
        for b, x in zip(module.bottom, bottoms):
            if tuple(b.shape) != tuple(x.shape):
                b.reshape(*x.shape)
            b.data[...] = x.detach().to("cpu", torch.float32).numpy()
        _call(lp, "reshape", layer.reshape, module.bottom, module.top)
        _call(lp, "forward", layer.forward, module.bottom, module.top)
        ctx.module = module
        ctx.device = bottoms[0].device if bottoms else torch.device("cpu")
        return tuple(torch.from_numpy(np.array(t.data, np.float32)).to(ctx.device) for t in module.top)

    @staticmethod
    def backward(ctx, *grads):
        from models.pycaffe.layer import Layer
        module = ctx.module
        layer, lp = module.layer, module.proto
        if type(layer).backward is Layer.backward:
            raise NetDefinitionError(f"layer '{lp.name}' (Python {lp.python_param.module}.{lp.python_param.layer}):"
                                     " a gradient reaches it, but its class defines no backward()")
        for t, g in zip(module.top, grads):
            t.diff[...] = 0 if g is None else g.detach().to("cpu", torch.float32).numpy()
        for b in module.bottom:
            b.diff[...] = 0
        down = list(ctx.needs_input_grad[1:])
        _call(lp, "backward", layer.backward, module.top, down, module.bottom)
        return (None, *(torch.from_numpy(np.array(b.diff, np.float32)).to(ctx.device) if d else None
                        for b, d in zip(module.bottom, down)))


class CaffePython(CaffeLayerModule):
    """One Python layer instance (set up once, as Caffe's net does) and its bottom/top blobs."""

    def __init__(self, layer, phase: str):
        super().__init__(layer.name)
        self.proto = layer.proto
        self.layer = _instance(layer.proto, PHASE_IDS[phase])
        self.bottom = _blobs(layer.bottom_shapes)
        self.top = _blobs(layer.top_shapes)
        _call(self.proto, "setup", self.layer.setup, self.bottom, self.top)

    def forward(self, *bottoms):
        return list(_PythonFunction.apply(self, *bottoms))


@register("Python")
class PythonConverter(Converter):
    def build(self, layer, phase):
        return CaffePython(layer, phase)

    def export(self, layer, g, bottoms, tops, blobs, phase):
        pp = layer.proto.python_param
        raise NotImplementedError(f"layer '{layer.name}' of type 'Python' ({pp.module}.{pp.layer}): no ONNX export; "
                                  "ONNX cannot call Python. Register a converter for it with models.register_layer "
                                  "(export=...) under its own type to export it (docs/plugins.md)")
