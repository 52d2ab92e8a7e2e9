"""``caffe.Layer``: the base class of Python layers (python/caffe/_caffe.cpp ``Layer``, include/caffe/layers/
python_layer.hpp ``PythonLayer``).

A ``type: "Python"`` layer names a module and a subclass of :class:`Layer`; Caffe constructs it with the
``LayerParameter``, sets ``param_str`` (``python_param.param_str``) and ``phase`` (0 TRAIN, 1 TEST) on it, then calls
``setup(bottom, top)`` once and ``reshape``/``forward``/``backward`` as the net runs. ``bottom`` and ``top`` are lists
of :class:`models.pycaffe.blob.Blob`. Nets run them inside the torch graph (models/layers/python_layer.py), for
inference, and for training where the subclass gives a :meth:`backward`.
"""
from __future__ import annotations


class Layer:
    """A Python layer; subclass it and override :meth:`setup`, :meth:`reshape`, :meth:`forward`, :meth:`backward`.

    Parameters
    ----------
    layer_param : ``caffe_pb2.LayerParameter`` or None. Caffe passes the layer's parameter message.

    Attributes
    ----------
    param_str : str, ``python_param.param_str`` (set before :meth:`setup`, as ``PythonLayer::LayerSetUp`` does).
    phase : int, ``caffe.TRAIN`` (0) or ``caffe.TEST`` (1).
    blobs : list of Blob, the layer's learnable blobs (empty unless the layer adds some).
    """

    def __init__(self, layer_param=None):
        self._layer_param = layer_param
        self.blobs: list = []
        self.param_str = ""
        self.phase = getattr(layer_param, "phase", 0) if layer_param is not None else 0

    @property
    def type(self) -> str:
        """``"Python"`` (``PythonLayer::type()``)."""
        return "Python"

    def _layer_setup(self, bottom: list, top: list) -> None:
        """``PythonLayer::LayerSetUp``: set ``param_str`` and ``phase`` from the parameter, then :meth:`setup`."""
        lp = self._layer_param
        if lp is not None:
            self.param_str = str(lp.python_param.param_str)
            self.phase = int(lp.phase)
        self.setup(bottom, top)

    def setup(self, bottom: list, top: list) -> None:
        """Called once before the first :meth:`reshape`: read ``self.param_str``, check the bottom count."""

    def reshape(self, bottom: list, top: list) -> None:
        """Give each top its shape (``top[i].reshape(*shape)``) from the bottoms' shapes."""

    def forward(self, bottom: list, top: list) -> None:
        """Write ``top[i].data`` from ``bottom[j].data``."""

    def backward(self, top: list, propagate_down: list, bottom: list) -> None:
        """Write ``bottom[j].diff`` (where ``propagate_down[j]``) from ``top[i].diff``."""
