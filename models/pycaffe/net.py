"""``caffe.Net``: pycaffe's net (python/caffe/_caffe.cpp ``Net`` and the Python layer over it in
python/caffe/pycaffe.py) on :class:`models.train.runtime.RuntimeNet`.

* construction: ``Net(file, phase)``, ``Net(file, weights, phase)``, ``Net(file, phase, level=0, stages=None,
  weights=None)``; ``caffe.TRAIN`` / ``caffe.TEST`` (0 / 1);
* ``blobs`` (OrderedDict name -> :class:`~models.pycaffe.blob.Blob`, creation order), ``params`` (layer -> list of
  learnable blobs), ``layers`` (``.type``, ``.blobs``), ``_layer_names``, ``layer_dict``, ``inputs`` (the ``Input``
  layers' tops), ``outputs`` (blobs no layer consumes, in name order as net.cpp's ``std::set``), ``top_names``,
  ``bottom_names``, ``blob_loss_weights``;
* ``forward(blobs=None, start=None, end=None, **inputs)``, ``backward(diffs=None, start=None, end=None,
  **top_diffs)``, ``forward_all``, ``forward_backward_all``, ``reshape()``, ``set_input_arrays`` (MemoryData),
  ``copy_from``, ``share_with``, ``save``, ``save_hdf5``, ``load_hdf5``, ``clear_param_diffs``.

Blob arrays are views (see :mod:`models.pycaffe.blob`). A forward runs every layer (``Net::ForwardFromTo``; data
layers read their next batch) and keeps the autograd graph when the net can back-propagate (it has a loss or
``force_backward``, as ``Net::Init`` decides which layers need backward), so ``backward`` follows it; parameter
diffs accumulate until ``clear_param_diffs`` or a solver step clears them, as in Caffe.
"""
from __future__ import annotations

from collections import OrderedDict
from itertools import zip_longest
from pathlib import Path

import numpy as np
import torch

from models.train.runtime import RuntimeNet

from . import mode
from .blob import Blob, ParamBlob
from .errors import ArgumentError, MissingFileError, PycaffeError

TRAIN, TEST = 0, 1
PHASE_NAMES = {TRAIN: "TRAIN", TEST: "TEST"}


def check_file(path, what: str = "file") -> str:
    """_caffe.cpp ``CheckFile``: the path as a string, or :class:`MissingFileError` ("Could not open file X")."""
    if not isinstance(path, (str, Path)):
        raise ArgumentError(f"expected a {what} path (str), got {type(path).__name__}")
    if not Path(path).is_file():
        raise MissingFileError(f"Could not open file {path}")
    return str(path)


def _phase(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) not in PHASE_NAMES:
        raise ArgumentError(f"phase must be caffe.TRAIN (0) or caffe.TEST (1), got {value!r}")
    return int(value)


class LayerView:
    """One of ``net.layers``: the layer's ``type`` and its learnable ``blobs`` (pycaffe's ``Layer``)."""

    def __init__(self, name: str, type_: str, blobs: list):
        self.name = name
        self.type = type_
        self.blobs = blobs

    def __repr__(self) -> str:
        return f"<caffe.Layer {self.name!r} type={self.type!r}>"


class Net:
    """pycaffe's ``caffe.Net``; see the module docstring.

    Parameters
    ----------
    network_file : str, a net prototxt (V1 or current; ``Data`` sources relative to the working directory).
    phase : ``caffe.TRAIN`` or ``caffe.TEST``. ``Net(file, weights, phase)`` takes the weights second.
    level, stages : the NetState for ``include``/``exclude`` rules.
    weights : str, a caffemodel (binary or HDF5) copied in by layer name (``CopyTrainedLayersFrom``).

    Raises
    ------
    MissingFileError : ``network_file`` or ``weights`` cannot be opened (a ``RuntimeError``, as pycaffe's).
    ArgumentError : a phase that is not TRAIN/TEST, or arguments in no pycaffe form (a ``TypeError``).
    models.errors.CaffeError : a net Caffe would refuse, weights that do not fit (naming file and layer).
    """

    def __init__(self, network_file, *args, level: int = 0, stages=None, weights=None, phase=None):
        if len(args) == 1 and phase is None:
            phase = args[0]
        elif len(args) == 2 and phase is None and weights is None:
            weights, phase = args
        elif args or phase is None:
            raise ArgumentError("Net() takes (network_file, phase), (network_file, weights, phase) or "
                                "(network_file, phase, level=0, stages=None, weights=None)")
        phase = _phase(phase)
        path = check_file(network_file, "network")
        rt = RuntimeNet(path, PHASE_NAMES[phase], level=int(level), stages=tuple(stages or ()),
                        device=mode.device(), seed=mode.seed(), source_name=path)
        self._attach(rt)
        if weights is not None:
            self.copy_from(weights)

    @classmethod
    def _wrap(cls, rt: RuntimeNet) -> "Net":
        """A pycaffe view of an existing runtime net (a solver's TRAIN or TEST net)."""
        self = cls.__new__(cls)
        self._attach(rt)
        return self

    # ---- construction of the views --------------------------------------------------------------------------
    def _attach(self, rt: RuntimeNet) -> None:
        self._rt = rt
        rt.forward_blobs = "all"
        rt.retain_blob_grads = True
        rt.retain_graph = True
        rt.listeners.append(self._on_event)
        graph = rt.net
        self._layer_names = [lp.name for lp in graph.proto.layer]
        kinds = {l.name: l for l in graph.layers + graph.data_layers}
        self._graph_layers = [kinds[n] for n in self._layer_names]
        fed = {t for l in graph.data_layers for t in l.tops}
        legacy = [b for b in graph.inputs if b not in fed]  # the old ``input:`` fields
        names = list(legacy)
        for layer in self._graph_layers:
            names += [t for t in layer.tops if t not in names]
        self._blob_names = names
        self._blob_dict = OrderedDict((n, Blob(graph.blob_shapes[n])) for n in names)
        for blob, w in rt.loss_weights.items():  # Layer::SetLossWeights: a loss top's diff is its weight
            self._blob_dict[blob].diff[...] = w
        params = rt.module.caffe_params()
        self.layers = []
        for layer in self._graph_layers:
            n = len(params.get(layer.name, ()))
            blobs = [ParamBlob(self._resolver(layer.name, i)) for i in range(n)]
            self.layers.append(LayerView(layer.name, layer.type, blobs))
        self._param_blobs = [b for lv in self.layers for b in lv.blobs]
        for b in self._param_blobs:
            b._tensor()  # every learnable blob gets its diff now, so that views onto it stay valid
        inputs = legacy + [b for l in self._graph_layers if l.type == "Input" for b in l.tops]
        self._inputs = [names.index(b) for b in dict.fromkeys(inputs)]
        self._outputs = [names.index(b) for b in rt.outputs]
        self._bind_inputs()

    def _resolver(self, layer: str, i: int):
        return lambda: self._rt.module.caffe_params()[layer][i]

    def _bind_inputs(self) -> None:
        """The runtime net reads its input blobs (Input tops and data layer tops) from the blobs' memory."""
        for name in self._rt.net.inputs:
            self._rt.input_data[name] = self._blob_dict[name].data

    # ---- the _caffe.cpp surface -------------------------------------------------------------------------------
    @property
    def _blobs(self) -> list:
        return list(self._blob_dict.values())

    @property
    def _blob_loss_weights(self) -> list:
        return [float(self._rt.loss_weights.get(n, 0.0)) for n in self._blob_names]

    def _top_ids(self, i: int) -> list:
        return [self._blob_names.index(t) for t in self._graph_layers[i].tops]

    def _bottom_ids(self, i: int) -> list:
        return [self._blob_names.index(b) for b in self._graph_layers[i].bottoms]

    def _needs_backward(self) -> bool:
        """``Net::Init``: layers need backward only below a loss, or everywhere with ``force_backward``."""
        return bool(self._rt.loss_weights) or bool(self._rt.net.proto.force_backward)

    def _before_run(self) -> None:
        """Inputs re-bound to the blobs (a blob may have been reshaped), the net reshaped to them (Caffe's
        ``Layer::Forward`` reshapes first), host copies of learnable blobs written back (CUDA)."""
        if any(self._blob_dict[n].shape != tuple(s) for n, s in self._rt.net.inputs.items()):
            self.reshape()
        self._bind_inputs()
        for b in self._param_blobs:
            b.push()

    def _invalidate(self) -> None:
        for b in self._param_blobs:
            b.invalidate()

    def _on_event(self, event: str, rt: RuntimeNet) -> None:
        """After each forward/backward of the runtime net (also inside solver steps): copy the blobs' values or
        diffs into their host memory, so that the arrays scripts hold show them."""
        self._invalidate()
        if event == "forward":
            for name, t in rt.values.items():
                blob = self._blob_dict.get(name)
                if blob is not None:
                    self._store(blob, "data", t)
        elif event == "backward":
            # a blob rewritten in place shows the diff of its first version (the in-place layers' Backward writes
            # their bottom diff into the same memory), a seeded output too; a loss top keeps its loss weight
            skip = set(rt.loss_weights)
            for name, g in rt.module.blob_diffs().items():
                blob = self._blob_dict.get(name)
                if blob is not None and name not in skip:
                    self._store(blob, "diff", g)

    @staticmethod
    def _store(blob: Blob, field: str, t: torch.Tensor) -> None:
        t = t.detach()
        if tuple(t.shape) != blob.shape:
            blob.reshape(*t.shape)
        target = getattr(blob, field)
        src = t.float().cpu().numpy()
        if not np.shares_memory(src, target):
            np.copyto(target, src.reshape(target.shape))

    def _forward(self, start: int, end: int) -> None:
        """``Net::ForwardFromTo(start, end)`` (indices into ``layers``)."""
        n = len(self._layer_names)
        if not (0 <= start <= end < n):
            raise PycaffeError(f"forward: layers {start}..{end} are not a range of this net's {n} layers")
        self._before_run()
        grad = self._needs_backward()
        rt = self._rt
        if start == 0 and end == n - 1:
            rt.forward(grad=grad)
            return
        names = set(self._layer_names[start:end + 1])
        if any(name in rt.sources for name in names):
            rt.load_batches(names)
        steps = [i for i, (layer, _, _) in enumerate(rt.module.steps) if layer.name in names]
        if not steps:
            return
        values = OrderedDict()
        for name, blob in self._blob_dict.items():
            t = torch.from_numpy(blob.data)
            t = t.to(rt.device) if rt.device.type != "cpu" else t
            values[name] = t.detach().requires_grad_(True) if grad else t
        rt.forward_range(min(steps), max(steps), values, grad=grad, retain_grad=grad)

    def _backward(self, start: int, end: int) -> None:
        """``Net::BackwardFromTo(start, end)``: from layer ``start`` down to layer ``end``; each layer's top diff
        is what the blob holds (a loss top: its loss weight). Needs a forward first."""
        n = len(self._layer_names)
        if not (0 <= end <= start < n):
            raise PycaffeError(f"backward: layers {start}..{end} are not a range of this net's {n} layers")
        self._before_run()
        rt = self._rt
        if not rt.values or not self._needs_backward():
            return
        loss = set(rt.loss_weights)
        if start == n - 1 and end == 0:
            seeds = {b: self._blob_dict[b].diff for b in rt.outputs if b not in loss}
            rt.backward(seeds)
            return
        in_range = [l for l in self._graph_layers[end:start + 1] if l.name in
                    {s[0].name for s in rt.module.steps}]
        produced = {t for l in in_range for t in l.tops}
        consumed_in = {b for l in in_range for b in l.bottoms if b not in l.tops}
        seeds = {t: self._blob_dict[t].diff for t in produced if t not in consumed_in and t not in loss}
        params = rt.module.caffe_params()
        inputs = [p for l in in_range for p in params.get(l.name, []) if p.requires_grad]
        inputs += [rt.values[b] for b in consumed_in - produced
                   if b in rt.values and rt.values[b].requires_grad]
        rt.backward(seeds, inputs=inputs, loss=bool(produced & loss))

    def reshape(self) -> None:
        """``Net::Reshape``: every blob takes the shape implied by the input blobs' current shapes (after
        ``net.blobs[name].reshape(...)``); learnable blobs keep their memory.

        Raises :class:`models.errors.ShapeError` when the net cannot take those shapes."""
        rt = self._rt
        shapes = {n: self._blob_dict[n].shape for n in rt.net.inputs}
        rt.reshape(shapes)
        for name, shape in rt.net.blob_shapes.items():
            blob = self._blob_dict.get(name)
            if blob is not None and blob.shape != tuple(shape):
                blob.reshape(*shape)
        self._bind_inputs()

    def clear_param_diffs(self) -> None:
        """``Net::ClearParamDiffs``: zero every learnable blob's diff (in place)."""
        self._before_run()
        with torch.no_grad():
            for b in self._param_blobs:
                b._tensor().grad.zero_()
        self._invalidate()

    def copy_from(self, path) -> None:
        """``Net::CopyTrainedLayersFrom``: blobs of the layers of ``path`` (binary or HDF5 caffemodel) whose
        names this net has. Raises :class:`MissingFileError`, :class:`models.errors.WeightsError` (blob counts or
        shapes that do not fit)."""
        path = check_file(path, "weights")
        self._before_run()
        self._rt.copy_from(path)
        self._invalidate()

    load_hdf5 = copy_from

    def share_with(self, other: "Net") -> None:
        """``Net::ShareTrainedLayersWith``: use ``other``'s learnable blobs for layers of the same name."""
        if not isinstance(other, Net):
            raise ArgumentError(f"share_with: expected a caffe.Net, got {type(other).__name__}")
        self._before_run()
        other._before_run()
        self._rt.share_trained_layers_with(other._rt)
        self._invalidate()

    def save(self, path) -> None:
        """``Net::ToProto`` (no diffs) written as a binary caffemodel, atomically."""
        self._before_run()
        self._rt.save(str(path))

    def save_hdf5(self, path) -> None:
        """``Net::ToHDF5`` (no diffs), atomically."""
        self._before_run()
        self._rt.save(str(path), hdf5=True)

    def _set_input_arrays(self, data, labels) -> None:
        first = self._graph_layers[0] if self._graph_layers else None
        if first is None or first.type != "MemoryData":
            raise PycaffeError("set_input_arrays may only be called if the first layer is a MemoryDataLayer")
        self._rt.sources[first.name].set_input_arrays(data, labels)

    # ---- python/caffe/pycaffe.py -----------------------------------------------------------------------------
    @property
    def blobs(self) -> "OrderedDict[str, Blob]":
        """Blobs by name, input to output."""
        return self._blob_dict

    @property
    def blob_loss_weights(self) -> "OrderedDict[str, float]":
        """Each blob's loss weight (0 for blobs that are not weighted loss tops)."""
        return OrderedDict(zip(self._blob_names, self._blob_loss_weights))

    @property
    def layer_dict(self) -> "OrderedDict[str, LayerView]":
        return OrderedDict(zip(self._layer_names, self.layers))

    @property
    def params(self) -> "OrderedDict[str, list]":
        """Learnable blobs by layer (layers with blobs only), input to output."""
        return OrderedDict((name, lv.blobs) for name, lv in zip(self._layer_names, self.layers) if lv.blobs)

    @property
    def inputs(self) -> list:
        """The net's input blobs (``Input`` layers' tops)."""
        return [self._blob_names[i] for i in self._inputs]

    @property
    def outputs(self) -> list:
        """Blobs no layer consumes, in name order (net.cpp)."""
        return [self._blob_names[i] for i in self._outputs]

    @property
    def top_names(self) -> "OrderedDict[str, list]":
        return OrderedDict((self._layer_names[i], [self._blob_names[j] for j in self._top_ids(i)])
                           for i in range(len(self.layers)))

    @property
    def bottom_names(self) -> "OrderedDict[str, list]":
        return OrderedDict((self._layer_names[i], [self._blob_names[j] for j in self._bottom_ids(i)])
                           for i in range(len(self.layers)))

    def _layer_index(self, name) -> int:
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise PycaffeError(f"net '{self._rt.name}' has no layer '{name}'") from None

    def _write_batch(self, arrays: dict, names: list, field: str, mismatch: str, not_batch: str) -> None:
        """pycaffe's argument handling: ``arrays`` must name exactly ``names``, each batch sized; each is written
        into its blob's ``field`` (``data`` or ``diff``)."""
        if not arrays:
            return
        if set(arrays) != set(names):
            raise PycaffeError(f"{mismatch}: got {sorted(arrays)}, the net's are {names}")
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.ndim == 0 or arr.shape[0] != self.blobs[name].shape[0]:
                raise PycaffeError(f"{not_batch}: '{name}' has shape {arr.shape}, the blob {self.blobs[name].shape}")
            getattr(self.blobs[name], field)[...] = arr

    def forward(self, blobs=None, start=None, end=None, **kwargs) -> dict:
        """Forward pass (pycaffe ``Net.forward``).

        Parameters
        ----------
        blobs : list of blob names to return besides the outputs.
        start, end : layer names; run layers ``start..end`` (inclusive) only. With ``end``, the tops of ``end``
            are returned instead of the outputs.
        **kwargs : input blob name -> array of the blob's batch size, written into the input blobs first (all
            inputs or none).

        Returns
        -------
        dict blob name -> the blob's ``data`` array (a view).

        Raises
        ------
        PycaffeError : inputs that are not the net's inputs, an array that is not batch sized, an unknown layer.
        """
        blobs = list(blobs or [])
        start_ind = self._layer_index(start) if start is not None else 0
        if end is not None:
            end_ind = self._layer_index(end)
            outputs = set(self.top_names[end] + blobs)
        else:
            end_ind = len(self.layers) - 1
            outputs = set(self.outputs + blobs)
        self._write_batch(kwargs, self.inputs, "data", "Input blob arguments do not match net inputs",
                          "Input is not batch sized")
        self._forward(start_ind, end_ind)
        return {out: self.blobs[out].data for out in outputs}

    def backward(self, diffs=None, start=None, end=None, **kwargs) -> dict:
        """Backward pass (pycaffe ``Net.backward``).

        Parameters
        ----------
        diffs : list of blob names whose diffs to return besides the inputs'.
        start, end : layer names; run layers ``start`` down to ``end`` only. With ``end``, the diffs of its
            bottoms are returned.
        **kwargs : output blob name -> diff array (all outputs or none), written into the outputs' diffs first.

        Returns
        -------
        dict blob name -> the blob's ``diff`` array (a view).
        """
        diffs = list(diffs or [])
        start_ind = self._layer_index(start) if start is not None else len(self.layers) - 1
        if end is not None:
            end_ind = self._layer_index(end)
            outputs = set(self.bottom_names[end] + diffs)
        else:
            end_ind = 0
            outputs = set(self.inputs + diffs)
        self._write_batch(kwargs, self.outputs, "diff", "Top diff arguments do not match net outputs",
                          "Diff is not batch sized")
        self._backward(start_ind, end_ind)
        return {out: self.blobs[out].diff for out in outputs}

    def forward_all(self, blobs=None, **kwargs) -> dict:
        """Forward over arrays of any length in batches of the net's batch size (the last padded with zeros and
        the padding dropped); returns blob name -> stacked array (pycaffe ``Net.forward_all``)."""
        all_outs = {out: [] for out in set(self.outputs + (blobs or []))}
        for batch in self._batch(kwargs):
            outs = self.forward(blobs=blobs, **batch)
            for out, out_blob in outs.items():
                all_outs[out].extend(out_blob.copy())
        for out in all_outs:
            all_outs[out] = np.asarray(all_outs[out])
        pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values())))
        if pad:
            for out in all_outs:
                all_outs[out] = all_outs[out][:-pad]
        return all_outs

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """Forward and backward in batches (pycaffe ``Net.forward_backward_all``): inputs and output diffs by
        name in ``kwargs``; returns (blob name -> stacked data, blob name -> stacked diff)."""
        all_outs = {out: [] for out in set(self.outputs + (blobs or []))}
        all_diffs = {diff: [] for diff in set(self.inputs + (diffs or []))}
        forward_batches = self._batch({i: kwargs[i] for i in self.inputs if i in kwargs})
        backward_batches = self._batch({o: kwargs[o] for o in self.outputs if o in kwargs})
        for fb, bb in zip_longest(forward_batches, backward_batches, fillvalue={}):
            batch_blobs = self.forward(blobs=blobs, **fb)
            batch_diffs = self.backward(diffs=diffs, **bb)
            for out, out_blobs in batch_blobs.items():
                all_outs[out].extend(out_blobs.copy())
            for diff, out_diffs in batch_diffs.items():
                all_diffs[diff].extend(out_diffs.copy())
        for out, diff in zip(all_outs, all_diffs):
            all_outs[out] = np.asarray(all_outs[out])
            all_diffs[diff] = np.asarray(all_diffs[diff])
        pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values())))
        if pad:
            for out, diff in zip(all_outs, all_diffs):
                all_outs[out] = all_outs[out][:-pad]
                all_diffs[diff] = all_diffs[diff][:-pad]
        return all_outs, all_diffs

    def set_input_arrays(self, data, labels) -> None:
        """Feed the first layer, a ``MemoryData`` layer: ``data`` (N, C, H, W) float32 and ``labels`` (N,) float32,
        C-contiguous, N a multiple of its batch size (pycaffe ``Net.set_input_arrays``)."""
        if isinstance(labels, np.ndarray) and labels.ndim == 1:
            labels = np.ascontiguousarray(labels[:, np.newaxis, np.newaxis, np.newaxis])
        return self._set_input_arrays(data, labels)

    def _batch(self, blobs: dict):
        """Split arrays into batches of the net's batch size (pycaffe ``Net._batch``)."""
        num = len(next(iter(blobs.values())))
        batch_size = next(iter(self.blobs.values())).shape[0]
        remainder = num % batch_size
        for b in range(num // batch_size):
            i = b * batch_size
            yield {name: blobs[name][i:i + batch_size] for name in blobs}
        if remainder > 0:
            padded = {}
            for name in blobs:
                padding = np.zeros((batch_size - remainder,) + blobs[name].shape[1:])
                padded[name] = np.concatenate([blobs[name][-remainder:], padding])
            yield padded

    def __repr__(self) -> str:
        return f"<caffe.Net {self._rt.name!r} {self._rt.phase}>"
