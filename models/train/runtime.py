"""The training runtime net: Caffe's ``Net`` for one phase, with its data layers, loss, forward and backward.

``RuntimeNet`` is what a solver trains and tests and what ``models.pycaffe.Net`` wraps (src/caffe/net.cpp):

* built from one ``NetParameter`` for a phase, level and stages (``Net::FilterNet``; :func:`net_state` merges the
  states as ``Solver::InitTrainNet`` / ``InitTestNets`` do), with Caffe's ``Split`` layers inserted
  (:mod:`models.train.splits`);
* data layers (``Data``, ``ImageData``, ``HDF5Data``, ``MemoryData``, ``DummyData``) read through
  :func:`models.data.make_source`; ``Input`` blobs hold whatever the caller wrote into them (zeros at first);
* the forward pass is :class:`models.torch_builder.CaffeModule`; the objective is ``sum(loss_weight * top)``
  (``Net::ForwardBackward``); ``backward`` accumulates parameter diffs as Caffe's layers do (``+=``; the solver
  clears them each iteration) and gives blob diffs with Caffe's in-place rule;
* parameters shared by layer name with another net (``Net::ShareTrainedLayersWith``: a solver's TEST nets use the
  TRAIN net's blobs) and by ``ParamSpec.name`` within the net (``Net::AppendParam``);
* :attr:`learnable_params` in Caffe's ``learnable_params()`` order (owners only, including ``lr_mult: 0`` blobs and
  BatchNorm's statistics, which Caffe gives ``lr_mult: 0``), each with its ``lr_mult`` and ``decay_mult``.

Random streams: dropout masks come from torch's generator (seeded by ``random_seed``), not Caffe's; everything else
is deterministic.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from models.errors import CaffeError, InputError, NetDefinitionError
from models.graph import PHASES, layer_included, load_net
from models.precision import strict_fp32
from models.schema import pb
from models.train.splits import insert_splits
from models.train.updates import LearnableParam
from models.upgrade import upgrade_net

#: data layer types whose batches come from a :mod:`models.data` source (``Input`` is fed by the caller)
SOURCE_LAYER_TYPES = ("Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData")


def net_state(net_param, phase: str, *extra_states) -> "pb.NetState":
    """Caffe's NetState for a net (solver.cpp ``InitTrainNet`` / ``InitTestNets``): ``phase``, then the net's own
    ``state`` merged in, then each of ``extra_states`` (the solver's ``train_state`` / ``test_state``); protobuf
    ``MergeFrom``: set scalars win, stages add up."""
    state = pb.NetState()
    state.phase = PHASES[phase]
    state.MergeFrom(net_param.state)
    for s in extra_states:
        if s is not None:
            state.MergeFrom(s)
    return state


def _device(device) -> torch.device:
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise CaffeError("--device cuda: torch has no CUDA device here (torch.cuda.is_available() is False)")
    return d


class RuntimeNet:
    """A Caffe net of one phase that runs forward and backward; see the module docstring.

    Parameters
    ----------
    net_param : ``pb.NetParameter`` (or a prototxt path/text), V1 or current.
    phase : "TRAIN" or "TEST".
    level, stages : the NetState rule inputs (``include``/``exclude``).
    base_dir : a folder to resolve relative data ``source:`` / ``mean_file:`` paths in when they do not exist
        relative to the working directory (the solver's folder).
    seed : seeds the fillers and the data sources' random streams.
    share_from : a RuntimeNet whose blobs this net uses for layers of the same name (a solver's TRAIN net).
    device : "cpu", "cuda" or a ``torch.device``.
    precision : "fp32" (Caffe's arithmetic) or "bf16" (autocast; parameters stay float32).
    memory_format : passed to :func:`models.torch_builder.to_torch`.
    prefetch : read batches of Data/ImageData/HDF5Data sources on a background thread.

    Raises
    ------
    CaffeError (NetDefinitionError, InputError, ...) naming the file and layer for a net Caffe would refuse.
    """

    def __init__(self, net_param, phase: str = "TEST", *, level: int = 0, stages=(), base_dir=None,
                 seed: int | None = None, share_from: "RuntimeNet | None" = None, device="cpu",
                 precision: str = "fp32", memory_format: str = "auto", prefetch: bool = False,
                 source_name: str = ""):
        from models.prototxt_io import read_net_text
        from models.torch_builder import to_torch

        if precision not in ("fp32", "bf16"):
            raise CaffeError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if not isinstance(net_param, pb.NetParameter):
            source_name = source_name or str(net_param)
            net_param = read_net_text(net_param)
        where = f"{source_name}: " if source_name else ""
        self.where = where
        self.phase = phase
        self.level, self.stages, self.memory_format = level, tuple(stages), memory_format
        self.device = _device(device)
        self.precision = precision
        proto = upgrade_net(net_param, where)
        self.sources = OrderedDict()
        shapes = {}
        for lp in proto.layer:
            if lp.type in SOURCE_LAYER_TYPES and layer_included(lp, PHASES[phase], level, stages):
                src = self._make_source(lp, phase, base_dir, seed, prefetch, where)
                self.sources[lp.name] = src
                for top, s in src.shapes().items():
                    shapes[top] = tuple(int(x) for x in s)
        # Net::Init: FilterNet, then InsertSplits (a blob feeding several layers goes through a Split layer)
        proto = insert_splits(proto, phase, level, tuple(stages))
        self.net = load_net(proto, phase=phase, level=level, stages=tuple(stages), input_shapes=shapes)
        self.net.source = source_name or self.net.source
        self.module = to_torch(self.net, seed=seed, params_from=share_from.module if share_from else None,
                               memory_format=memory_format)
        self.module.to(self.device)
        #: host arrays of the input blobs (data layer tops and Input blobs): what the next forward reads
        self.input_data: "OrderedDict[str, np.ndarray]" = OrderedDict(
            (name, np.zeros(shape, np.float32)) for name, shape in self.net.inputs.items())
        self.learnable_params = self._learnable_params()
        self.loss_weights = self.module.loss_weights()
        #: the tensors of the last forward pass ({blob: tensor}, final versions) and its objective
        self.values: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self.last_loss: torch.Tensor | None = None
        #: what ``forward(blobs=None)`` keeps and whether it retains blob gradients: a solver needs only the
        #: outputs; pycaffe shows every blob and its diff, as Caffe's Net holds them all
        self.forward_blobs = "outputs"
        self.retain_blob_grads = False
        #: keep the autograd graph after a backward (pycaffe may call backward more than once per forward)
        self.retain_graph = False
        #: callables ``fn(event, net)`` run after each forward ("forward") and backward ("backward"), whoever
        #: calls them (a solver's step included): pycaffe copies the blobs into its numpy views there
        self.listeners: list = []

    # ---- construction ------------------------------------------------------------------------------------
    @staticmethod
    def _make_source(lp, phase, base_dir, seed, prefetch, where):
        try:
            import models.data as data
        except ImportError as e:  # the data layers live in models.data
            raise NetDefinitionError(f"{where}layer '{lp.name}' ({lp.type}) needs models.data, which is not "
                                     f"available ({e}); feed the net through an Input layer") from None
        src = data.make_source(lp, phase, base_dir=Path(base_dir) if base_dir else None, seed=seed)
        if prefetch and lp.type in ("Data", "ImageData", "HDF5Data") and hasattr(data, "Prefetcher"):
            src = data.Prefetcher(src)
        return src

    def _learnable_params(self) -> list:
        """``Net::learnable_params()`` with ``params_lr()`` / ``params_weight_decay()`` (net.cpp AppendParam)."""
        out, owners = [], {}
        seen = set()
        for layer in self.net.layers:
            blobs = self.module.caffe_params().get(layer.name, [])
            frozen = self.module.frozen.get(layer.name, ())
            for i, p in enumerate(blobs):
                spec = layer.proto.param[i] if i < len(layer.proto.param) else None
                lr = 0.0 if i in frozen else (float(spec.lr_mult) if spec is not None else 1.0)
                decay = float(spec.decay_mult) if spec is not None else 1.0
                name = spec.name if spec is not None else ""
                if name and name in owners:  # a sharer: the owner keeps the slot; unset mults come from here
                    owner = owners[name]
                    if not owner[1] and spec.HasField("lr_mult"):
                        owner[0].lr_mult, owner[1] = lr, True
                    if not owner[2] and spec.HasField("decay_mult"):
                        owner[0].decay_mult, owner[2] = decay, True
                    continue
                if id(p) in seen:  # shared through share_from with another layer of this net: not possible in
                    continue       # Caffe, kept safe here
                seen.add(id(p))
                lp = LearnableParam(p, lr, decay, f"{layer.name}[{i}]")
                out.append(lp)
                if name:
                    owners[name] = [lp, spec.HasField("lr_mult"), spec.HasField("decay_mult")]
        return out

    # ---- blobs -------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.net.name

    @property
    def outputs(self) -> list:
        """Caffe's ``net.outputs``: blobs no layer consumes, in name order (net.cpp ``Net::Init`` takes them from
        the ``std::set<string>`` of available blobs; the "Train net output #k" lines follow this order)."""
        return sorted(self.net.outputs)

    def load_batches(self, layers=None) -> None:
        """Fill the data layers' tops with their sources' next batches (each data layer's ``Forward``); only
        the data layers named in ``layers`` when given (a forward over part of the net)."""
        for name, src in self.sources.items():
            if layers is not None and name not in layers:
                continue
            batch = src.next_batch()
            for top, arr in batch.items():
                arr = np.asarray(arr, np.float32)
                held = self.input_data.get(top)
                if held is None or held.shape != arr.shape:
                    raise InputError(f"{self.where}data layer '{name}': top '{top}' batch has shape {arr.shape}, "
                                     f"the net was built for {None if held is None else held.shape}")
                np.copyto(held, arr)

    def _input_tensors(self, grad: bool = False) -> dict:
        """The input blobs as tensors (CPU: sharing memory with :attr:`input_data`). With ``grad`` and the net's
        ``force_backward``, they require grad, so that their diffs are computed as Caffe does then."""
        out = {}
        want_grad = grad and self.net.proto.force_backward
        for name, arr in self.input_data.items():
            t = torch.from_numpy(arr)
            t = t.to(self.device, non_blocking=True) if self.device.type != "cpu" else t
            if want_grad and t.is_floating_point():
                t = t.detach().requires_grad_(True)
            out[name] = t
        return out

    def _autocast(self):
        """bf16: autocast (float32 master weights); fp32: IEEE float32 on CUDA, TF32 off, as Caffe computes."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return strict_fp32(self.device.type == "cuda")

    # ---- forward / backward ------------------------------------------------------------------------------
    def forward(self, blobs=None, grad: bool = False, load: bool = True, retain_grad: bool | None = None):
        """``Net::Forward``: load the next batches (``load``), run the net, return the objective (a float32
        0-d tensor; 0 for a net with no loss). The tensors are kept in :attr:`values`.

        ``blobs``: "outputs" (outputs and weighted loss tops), "all" (every blob), a list of names, or None
        (:attr:`forward_blobs`). ``grad``: keep the autograd graph for :meth:`backward`. ``retain_grad`` (None:
        :attr:`retain_blob_grads`): keep each blob's gradient (``module.blob_diffs()``)."""
        blobs = self.forward_blobs if blobs is None else blobs
        retain_grad = self.retain_blob_grads if retain_grad is None else retain_grad
        if load:
            self.load_batches()
        if blobs == "outputs":
            wanted = list(dict.fromkeys(self.outputs + list(self.loss_weights)))
        elif blobs == "all":
            wanted = self.net.blobs
        else:
            wanted = list(dict.fromkeys(list(blobs) + list(self.loss_weights)))
        with torch.set_grad_enabled(grad), self._autocast():
            values = self.module(**self._input_tensors(grad), blobs=wanted, retain_grad=retain_grad and grad)
            loss = self._objective(values)
        self.values = values
        self.last_loss = loss
        self._notify("forward")
        return loss

    def _notify(self, event: str) -> None:
        for fn in self.listeners:
            fn(event, self)

    def forward_range(self, start: int, end: int, values: dict, grad: bool = False, retain_grad: bool = False):
        """Layers ``start..end`` only (``Net::ForwardFromTo``), reading ``values`` ({blob: tensor}) for the blobs
        they need from before ``start``; the objective over the loss tops computed."""
        with torch.set_grad_enabled(grad), self._autocast():
            out = self.module.forward_range(start, end, values, retain_grad=retain_grad)
            loss = self._objective(out, partial=True)
        self.values = out
        self.last_loss = loss
        self._notify("forward")
        return loss

    def _objective(self, values, partial: bool = False):
        total = None
        for blob, w in self.loss_weights.items():
            if blob not in values:
                if partial:
                    continue
                raise InputError(f"{self.where}loss blob '{blob}' was not computed")
            term = values[blob].float().sum() * w
            total = term if total is None else total + term
        if total is None:
            total = torch.zeros((), dtype=torch.float32, device=self.device)
        return total

    def backward(self, top_diffs: dict | None = None, inputs=None, loss: bool = True) -> None:
        """``Net::Backward`` after a ``forward(grad=True)``: the loss tops' diffs are their loss weights (as
        ``Net::Init`` sets them; ``loss=False`` leaves them out), other blobs take ``top_diffs[blob]`` when
        given. Parameter diffs accumulate into ``.grad``. ``inputs``: only these tensors get gradients
        (``torch.autograd.backward(inputs=)``; ``Net::BackwardFromTo`` over part of the net)."""
        for t in getattr(self.module, "_first_versions", {}).values():
            t.grad = None  # a layer's Backward overwrites its bottoms' diffs; only parameter diffs accumulate
        tensors, grads = [], []
        if loss and self.last_loss is not None and self.last_loss.requires_grad:
            tensors.append(self.last_loss)
            grads.append(torch.ones_like(self.last_loss))
        for blob, diff in (top_diffs or {}).items():
            t = self.values.get(blob)
            if t is None or not t.requires_grad or blob in self.loss_weights:
                continue
            d = torch.as_tensor(np.asarray(diff, np.float32)).to(t.device).reshape(t.shape).to(t.dtype)
            if bool(d.any()):
                tensors.append(t)
                grads.append(d)
        if tensors and inputs is not None and not inputs:
            tensors = []
        if tensors:
            with strict_fp32(self.device.type == "cuda" and self.precision == "fp32"):
                torch.autograd.backward(tensors, grads, inputs=inputs, retain_graph=self.retain_graph)
        self._notify("backward")

    def forward_backward(self) -> float:
        """``Net::ForwardBackward``: one batch forward and backward; returns the loss (float32 value)."""
        loss = self.forward(grad=True)
        self.backward()
        return float(loss.detach())

    def clear_param_diffs(self) -> None:
        """``Net::ClearParamDiffs``: zero every learnable parameter's diff (in place, keeping views valid)."""
        for p in self.learnable_params:
            if p.tensor.grad is None:
                p.tensor.grad = torch.zeros_like(p.tensor)
            else:
                p.tensor.grad.zero_()

    def output_values(self) -> list:
        """``[(blob, float32 array, loss weight)]`` for each output blob of the last forward, in Caffe's order."""
        out = []
        for blob in self.outputs:
            t = self.values.get(blob)
            if t is None:
                continue
            out.append((blob, t.detach().float().cpu().numpy().reshape(-1), float(self.loss_weights.get(blob, 0.0))))
        return out

    # ---- sharing and reshaping -------------------------------------------------------------------------
    def share_trained_layers_with(self, other: "RuntimeNet") -> None:
        """``Net::ShareTrainedLayersWith``: use ``other``'s parameter blobs for every layer of the same name (a
        solver does this to each TEST net at the start of each test). Layers ``other`` lacks keep their own.

        Raises :class:`models.errors.InputError` when a shared layer's blob count or shapes differ."""
        source = other.module.caffe_params()
        from models.torch_builder import _key
        for layer in self.net.layers:
            src = source.get(layer.name)
            mod = self.module.layer_modules[_key(layer.name)]
            if src is None or not len(mod.blobs):
                continue
            if len(src) != len(mod.blobs):
                raise InputError(f"{self.where}layer '{layer.name}': Incompatible number of blobs for layer "
                                 f"{layer.name} ({len(src)} in the source net, {len(mod.blobs)} here)")
            for i, p in enumerate(src):
                if tuple(p.shape) != tuple(mod.blobs[i].shape):
                    raise InputError(f"{self.where}layer '{layer.name}' blob {i}: Cannot share param {i} weights "
                                     f"from layer '{layer.name}'; shape mismatch ({tuple(p.shape)} vs "
                                     f"{tuple(mod.blobs[i].shape)})")
                mod.blobs[i] = p
        self.learnable_params = self._learnable_params()

    def reshape(self, input_shapes: dict) -> None:
        """``Net::Reshape`` after input blobs changed shape: shapes inferred again from ``input_shapes``
        ({input blob: shape}; the others keep theirs) and the layers rebuilt around the same parameter tensors
        (so views onto them and a solver's history stay valid). :attr:`input_data` gets zero arrays of the new
        shapes where a shape changed.

        Raises :class:`models.errors.ShapeError` (and other ``CaffeError``) for shapes the net cannot take."""
        from models.torch_builder import to_torch

        shapes = {k: tuple(int(x) for x in v) for k, v in self.net.inputs.items()}
        shapes.update({k: tuple(int(x) for x in v) for k, v in input_shapes.items()})
        if shapes == {k: tuple(v) for k, v in self.net.inputs.items()}:
            return
        net = load_net(self.net.proto, phase=self.phase, level=self.level, stages=self.stages, input_shapes=shapes)
        net.source = self.net.source
        module = to_torch(net, params_from=self.module, memory_format=self.memory_format)
        module.to(self.device)
        self.net, self.module = net, module
        for name, shape in net.inputs.items():
            held = self.input_data.get(name)
            if held is None or held.shape != tuple(shape):
                self.input_data[name] = np.zeros(shape, np.float32)
        self.learnable_params = self._learnable_params()
        self.values, self.last_loss = OrderedDict(), None

    def close(self) -> None:
        for src in self.sources.values():
            close = getattr(src, "close", None)
            if close is not None:
                close()

    # ---- weights -----------------------------------------------------------------------------------------
    def params_by_layer(self) -> "OrderedDict[str, list]":
        """``{layer: [float32 arrays]}`` of the layers with blobs, in net order (copies, Caffe's blob shapes)."""
        return OrderedDict((name, [p.detach().float().cpu().contiguous().numpy().copy() for p in ps])
                           for name, ps in self.module.caffe_params().items())

    def copy_from(self, path, log=None) -> list:
        """``Net::CopyTrainedLayersFrom``: copy the blobs of the layers of ``path`` (binary caffemodel, or HDF5)
        whose names this net has; log "Ignoring source layer NAME" for the others. Returns the layers copied.

        Raises :class:`models.errors.WeightsError` for a blob count or shape that does not fit (Caffe's
        "Cannot copy param ..." / "Incompatible number of blobs" checks)."""
        from models.caffemodel import read_caffemodel
        from models.errors import WeightsError
        from models.train.snapshot import is_hdf5, read_caffemodel_h5

        names = {l.name for l in self.net.layers} | {l.name for l in self.net.data_layers}
        targets = self.module.caffe_params()
        copied = []
        if is_hdf5(path):
            source = [(n, b) for n, b in read_caffemodel_h5(path).items()]
        else:
            source = [(n, b) for n, _, b in read_caffemodel(path).layers]
        shapes = {l.name: l.param_shapes for l in self.net.layers}
        with torch.no_grad():
            for name, blobs in source:
                if name not in names:
                    if log is not None:
                        log(f"Ignoring source layer {name}", "net.cpp:1137")
                    continue
                want = shapes.get(name, [])
                if isinstance(blobs, dict):  # HDF5: a blob may be absent when it is shared in the net
                    if len(blobs) > len(want):
                        raise WeightsError(f"{path}: Incompatible number of blobs for layer {name}")
                    arrays = [blobs.get(i) for i in range(len(want))]
                else:
                    arrays = list(blobs)
                    if len(arrays) != len(want):
                        raise WeightsError(f"{path}: Incompatible number of blobs for layer {name} (the file has "
                                           f"{len(arrays)}, the net {len(want)})")
                for i, a in enumerate(arrays):
                    if a is None:
                        continue
                    got, exp = tuple(np.shape(a)), tuple(want[i])
                    legacy = len(got) == 4 and len(exp) < 4 and got[4 - len(exp):] == exp and \
                        all(d == 1 for d in got[:4 - len(exp)])
                    if got != exp and not legacy and not (exp == () and got == (1,)):
                        raise WeightsError(f"{path}: Cannot copy param {i} weights from layer '{name}'; shape "
                                           f"mismatch.  Source param shape is {got}; target param shape is {exp}")
                    p = targets[name][i]
                    p.copy_(torch.from_numpy(np.ascontiguousarray(a, np.float32)).reshape(p.shape))
                if want:
                    copied.append(name)
        return copied

    def save(self, path, hdf5: bool = False) -> None:
        """``Net::ToProto`` + write (binary caffemodel), or ``Net::ToHDF5`` with ``hdf5``; atomic."""
        from models.caffemodel import write_caffemodel
        from models.train.snapshot import write_caffemodel_h5

        params = self.params_by_layer()
        if hdf5:
            owners = {id(p.tensor) for p in self.learnable_params}
            shared_seen = set()
            layers = []
            for layer in self.net.data_layers + self.net.layers:
                arrays = []
                for i, p in enumerate(self.module.caffe_params().get(layer.name, [])):
                    sharer = id(p) in shared_seen
                    shared_seen.add(id(p))
                    arrays.append(None if sharer and id(p) in owners else params[layer.name][i])
                layers.append((layer.name, arrays))
            write_caffemodel_h5(path, layers)
        else:
            write_caffemodel(path, self.net, params)
