"""Layer plugins: Caffe layer types from outside this package, registered exactly as the built-in converters are.

A plugin gives, for one Caffe type string, the three things every built-in converter has:

* a **shape function** ``shape(layer_param, bottom_shapes) -> (top_shapes, param_shapes)`` (or a 3-tuple with a
  spec object as the third item, which the builder then reads as ``layer.spec``), Caffe's ``Layer::Reshape`` and
  the learnable blobs its ``LayerSetUp`` creates (:mod:`models.shapes`);
* a **torch builder** ``build(layer, phase) -> torch.nn.Module`` (``layer`` is a :class:`models.graph.Layer`:
  ``.name``, ``.type``, ``.proto`` the ``LayerParameter``, ``.bottom_shapes``, ``.top_shapes``,
  ``.param_shapes``, ``.spec``) whose ``forward(*bottoms)`` returns the tops (a list, or one tensor for one top)
  and whose learnable blobs, if any, are :meth:`models.layers.CaffeLayerModule.add_blob` parameters in Caffe's
  order (they are then read from and written to caffemodels, and trained by ``python -m models train``);
* optionally an **ONNX export** ``export(layer, g, bottoms, tops, blobs, phase)`` adding nodes to the
  :class:`models.onnx_export.OnnxGraph` ``g`` (``g.node(op_type, inputs, outputs, name, **attrs)``); without one,
  ``python -m models convert`` refuses the net, naming the layer.

Register in code::

    import models

    models.register_layer("HardTanh", shape=lambda lp, bottoms: ([tuple(bottoms[0])], []),
                          build=lambda layer, phase: MyHardTanh(layer.name))

or ship a package whose ``pyproject.toml`` declares an entry point in the group :data:`ENTRY_POINT_GROUP`::

    [project.entry-points."radiogenomics_replica.caffe_layers"]
    hardtanh = "my_caffe_layers:register"

``pip install`` it and every net with that type loads, converts and trains with no change to this project: the
entry points are loaded (once, the first time a net's layer types are checked) and each one's object is called
when it is callable (a ``register()`` function) or just imported (a module whose import registers). The worked
example is docs/plugins.md.

Errors
------
ValueError
    ``register_layer`` for a type that already has a converter (built-in or plugin), or a ``shape``/``build`` that is
    not callable.
models.errors.NetDefinitionError
    An entry point that fails to load: one line naming the entry point and its error.
"""
from __future__ import annotations

from typing import Callable

from models.errors import NetDefinitionError

#: the entry-point group that installed packages use to provide layer plugins
ENTRY_POINT_GROUP = "radiogenomics_replica.caffe_layers"

_loaded = False


def _as_triple(fn: Callable) -> Callable:
    """Adapt a plugin's shape function to the built-ins' ``(tops, params, spec)`` form."""

    def shape(layer, bottoms):
        out = fn(layer, bottoms)
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            raise NetDefinitionError(f"layer '{layer.name}' ({layer.type}): the plugin's shape function returned "
                                     f"{type(out).__name__}; expected (top_shapes, param_shapes[, spec])")
        tops, params = list(out[0]), list(out[1])
        return tops, params, out[2] if len(out) == 3 else None

    shape.__doc__ = fn.__doc__
    shape.__wrapped__ = fn
    return shape


def register_layer(type_name: str, *, shape: Callable, build: Callable, export: Callable | None = None,
                   frozen_blobs: tuple[int, ...] = ()) -> None:
    """Register a Caffe layer type from outside this package.

    Parameters
    ----------
    type_name : str
        The ``type:`` string of the layer in a prototxt (as registered by ``REGISTER_LAYER_CLASS`` in the Caffe
        build the net came from).
    shape : callable
        ``shape(layer_param, bottom_shapes) -> (top_shapes, param_shapes)`` or ``(top_shapes, param_shapes,
        spec)``; shapes are tuples of ints (N, C, H, W for images). Raise :class:`models.errors.ShapeError` naming
        the layer for bottoms it cannot take.
    build : callable
        ``build(layer, phase) -> torch.nn.Module``; ``phase`` is ``"TRAIN"`` or ``"TEST"``.
    export : callable, optional
        ``export(layer, g, bottoms, tops, blobs, phase)``: ONNX nodes for the layer (``blobs``: its learnable blobs
        as numpy arrays, Caffe order). Without it, ONNX conversion of a net with this layer is refused.
    frozen_blobs : tuple of int
        Indices of learnable blobs that the solver never updates (running statistics, as BatchNorm's).

    Raises
    ------
    ValueError
        ``type_name`` already has a converter, or ``shape``/``build`` is not callable.
    """
    from models.layers.registry import Converter, register
    from models.shapes import SHAPE_FUNCTIONS

    if not callable(shape) or not callable(build):
        raise ValueError(f"register_layer('{type_name}'): shape and build must be callables")
    if export is not None and not callable(export):
        raise ValueError(f"register_layer('{type_name}'): export must be a callable or None")
    if type_name in SHAPE_FUNCTIONS:
        raise ValueError(f"a converter for '{type_name}' is already registered")

    def _build(self, layer, phase):
        return _PluginModule.wrap(build(layer, phase), layer.name)

    def _export(self, layer, g, bottoms, tops, blobs, phase):
        if export is None:
            raise NotImplementedError(f"layer '{layer.name}' of type '{layer.type}': its plugin gives no ONNX "
                                      "export (models.register_layer(..., export=...))")
        export(layer, g, bottoms, tops, blobs, phase)

    cls = type(f"{type_name}PluginConverter", (Converter,),
               {"build": _build, "export": _export, "frozen_blobs": tuple(frozen_blobs), "__module__": __name__})
    register(type_name)(cls)
    SHAPE_FUNCTIONS[type_name] = _as_triple(shape)


class _PluginModule:
    """Makes a plugin module follow the built-ins' contract (a list of tops, a ``blobs`` ParameterList)."""

    @staticmethod
    def wrap(module, name: str):
        # torch is imported here, not at the top: models.graph loads plugins and must not import torch
        import torch
        from torch import nn

        from models.layers.registry import CaffeLayerModule

        if not isinstance(module, nn.Module):
            raise NetDefinitionError(f"layer '{name}': the plugin's build returned {type(module).__name__}; "
                                     "expected a torch.nn.Module")
        inner = module

        class _Listing(CaffeLayerModule):
            def __init__(self):
                super().__init__(name)
                self.inner = inner
                # the learnable blobs, in the plugin's order: its own ``blobs`` list, else its parameters
                own = getattr(inner, "blobs", None)
                params = list(own) if own is not None else list(inner.parameters())
                self.blobs = nn.ParameterList(params)

            def forward(self, *bottoms):
                out = self.inner(*bottoms)
                return [out] if isinstance(out, torch.Tensor) else list(out)

        return _Listing()


def load_entry_points() -> None:
    """Load every installed layer plugin (the :data:`ENTRY_POINT_GROUP` entry points), once per process.

    Raises
    ------
    models.errors.NetDefinitionError
        An entry point fails to import or to register: names it and the error.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is named, not a traceback from inside importlib
            raise NetDefinitionError(f"layer plugin entry point '{ep.name} = {ep.value}' "
                                     f"(group {ENTRY_POINT_GROUP}): {type(exc).__name__}: {exc}") from exc
