"""``to_torch(net)``: a Caffe net as a ``torch.nn.Module`` that returns blobs by their Caffe names.

Caffe's ``Net::Forward`` (src/caffe/net.cpp) runs the layers in file order; an in-place layer (top == bottom)
overwrites its bottom, so ``net.blobs[name]`` after the forward pass shows the *last* value written to ``name``.
Here every write is a new tensor version: a blob requested by name is its final version, and only the layers
needed for the requested blobs run (feature extraction does not pay for the rest of the net).

The phase is the net's (``models.load_net(..., phase=...)``): TRAIN draws dropout masks (or takes them from
``dropout_masks``) and uses batch statistics in BatchNorm; TEST does neither. Loss blobs hold the unweighted loss;
:meth:`CaffeModule.loss` sums ``loss_weight * blob`` over every top with a non-zero weight, as ``Net::Forward``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from models.errors import InputError
from models.fillers import init_layer
from models.layers import registry

#: layer types whose bottom 1 is a label (integers are accepted there)
_LABEL_CONSUMERS = ("SoftmaxWithLoss", "Accuracy", "SigmoidCrossEntropyLoss", "HingeLoss", "InfogainLoss",
                    "MultinomialLogisticLoss")


def _key(name: str) -> str:
    """A ModuleDict key for a Caffe layer name ('.' is not allowed in torch module names)."""
    return name.replace(".", "\u2024")


class CaffeModule(nn.Module):
    """A Caffe net (one phase) as a torch module; see :func:`to_torch`."""

    def __init__(self, net, seed: int | None = None, params_from: "CaffeModule | None" = None,
                 memory_format: str = "auto"):
        super().__init__()
        self.net = net
        self.phase = net.phase
        self.layer_modules = nn.ModuleDict()
        self.frozen: dict[str, tuple] = {}
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        shared: dict[str, nn.Parameter] = {}
        for layer in net.layers:
            conv = registry.get(layer)
            mod = conv.build(layer, net.phase)
            self.frozen[layer.name] = conv.frozen_blobs
            if len(mod.blobs) != len(layer.param_shapes):
                raise AssertionError(f"converter for {layer.type} made {len(mod.blobs)} blobs, the graph says "
                                     f"{len(layer.param_shapes)} for layer '{layer.name}'")
            init_layer(layer, list(mod.blobs), gen)
            for i, lr in enumerate(layer.lr_mults):
                if lr == 0 or i in conv.frozen_blobs:
                    mod.blobs[i].requires_grad_(False)
            self._share(layer, mod, shared, params_from)
            self.layer_modules[_key(layer.name)] = mod
        if memory_format not in ("auto", "contiguous", "channels_last"):
            raise ValueError(f"memory_format must be 'auto', 'contiguous' or 'channels_last', got {memory_format!r}")
        if memory_format == "channels_last" or (memory_format == "auto" and any(
                l.type in ("Convolution", "Deconvolution") for l in net.layers)):
            # 4-D weights in channels_last make every convolution run in NHWC (the mkldnn/oneDNN and cuDNN fast
            # path; an NCHW input is converted by the first convolution). Values are those of NCHW up to float
            # summation order; the blobs keep their Caffe shapes.
            self.to(memory_format=torch.channels_last)
        self._build_versions()
        self._plans: dict = {}
        self._first_versions: dict = {}

    # ---- construction helpers -------------------------------------------------------------------------------
    def _share(self, layer, mod, shared, params_from):
        """Caffe's parameter sharing: ParamSpec ``name`` (net.cpp AppendParam) and train/test nets."""
        if params_from is not None and layer.name in params_from.caffe_params():
            src = params_from.caffe_params()[layer.name]
            for i, p in enumerate(src):
                if tuple(p.shape) != tuple(mod.blobs[i].shape):
                    raise InputError(f"layer '{layer.name}' blob {i}: cannot share shape {tuple(p.shape)} with "
                                     f"{tuple(mod.blobs[i].shape)}")
                mod.blobs[i] = p
        for i, spec in enumerate(layer.proto.param[:len(mod.blobs)]):
            if spec.name:
                if spec.name in shared:
                    mod.blobs[i] = shared[spec.name]
                else:
                    shared[spec.name] = mod.blobs[i]

    def _build_versions(self):
        """Give every write of every blob a version id; record each layer's input and output versions."""
        current: dict[str, int] = {}
        self.version_blob: list[str] = []
        for name in self.net.inputs:
            current[name] = len(self.version_blob)
            self.version_blob.append(name)
        self.steps = []
        for layer in self.net.layers:
            ins = []
            for b in layer.bottoms:
                if b not in current:
                    raise InputError(f"layer '{layer.name}': bottom '{b}' is produced by no earlier layer")
                ins.append(current[b])
            outs = []
            for t in layer.tops:
                current[t] = len(self.version_blob)
                outs.append(current[t])
                self.version_blob.append(t)
            self.steps.append((layer, ins, outs))
        self.final_version = dict(current)
        #: earlier values of blobs rewritten in place, by the name the ONNX export gives them: "BLOB@LAYER"
        self.version_names: dict[str, int] = {}
        for layer, _, outs in self.steps:
            for t, v in zip(layer.tops, outs):
                if v != self.final_version[t]:
                    self.version_names[f"{t}@{layer.name}"] = v
        self.first_version: dict[str, int] = {}
        for vid, blob in enumerate(self.version_blob):
            self.first_version.setdefault(blob, vid)

    # ---- public API -----------------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return list(self.net.inputs)

    @property
    def blob_names(self) -> list[str]:
        return self.net.blobs

    def caffe_params(self) -> "OrderedDict[str, list[nn.Parameter]]":
        """``{layer name: [nn.Parameter, ...]}`` in Caffe blob order, for layers that have blobs."""
        out = OrderedDict()
        for layer in self.net.layers:
            mod = self.layer_modules[_key(layer.name)]
            if len(mod.blobs):
                out[layer.name] = list(mod.blobs)
        return out

    def param_groups(self) -> list[dict]:
        """One torch param group per trainable blob: ``params``, ``lr_mult``, ``decay_mult``, ``name``.

        Blobs with ``lr_mult: 0`` and BatchNorm statistics are left out (Caffe never changes them); a shared
        blob appears once, with the multipliers of its first owner (net.cpp AppendParam).
        """
        groups, seen = [], set()
        for layer in self.net.layers:
            mod = self.layer_modules[_key(layer.name)]
            for i, p in enumerate(mod.blobs):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                groups.append({"params": [p], "lr_mult": float(layer.lr_mults[i]),
                               "decay_mult": float(layer.decay_mults[i]), "name": f"{layer.name}[{i}]"})
        return groups

    def loss_weights(self) -> dict[str, float]:
        """``{blob: weight}`` for every top with a non-zero loss weight (Caffe's objective)."""
        out = {}
        for layer in self.net.layers:
            for t, w in zip(layer.tops, layer.loss_weights):
                if w:
                    out[t] = out.get(t, 0.0) + float(w)
        return out

    def loss(self, outputs: dict) -> torch.Tensor:
        """Caffe's objective: ``sum(loss_weight * sum(blob))`` over the weighted tops in ``outputs``."""
        total = None
        for blob, w in self.loss_weights().items():
            if blob not in outputs:
                raise KeyError(f"loss blob '{blob}' was not computed; request it (blobs=None does)")
            term = outputs[blob].sum() * w
            total = term if total is None else total + term
        if total is None:
            raise InputError(f"net '{self.net.name}' ({self.phase}) has no loss")
        return total

    def blob_diffs(self) -> dict[str, torch.Tensor]:
        """After ``backward``: each blob's gradient as Caffe's ``net.blobs[name].diff`` shows it.

        For an in-place chain that is the gradient of the blob's *first* version (the in-place layers' backward
        overwrites the diff with their bottom's). Needs ``forward(..., retain_grad=True)``.
        """
        out = {}
        for blob, t in self._first_versions.items():
            if t.grad is not None:
                out[blob] = t.grad
            elif t.requires_grad:
                out[blob] = torch.zeros_like(t)
        return out

    # ---- forward --------------------------------------------------------------------------------------------
    def _version_id(self, name: str) -> int:
        return self.final_version[name] if name in self.final_version else self.version_names[name]

    def _plan(self, wanted: tuple):
        """The steps needed for the final versions of ``wanted`` blobs, and when each version is last used."""
        plan = self._plans.get(wanted)
        if plan is not None:
            return plan
        ids = [self._version_id(b) for b in wanted]
        need = set(ids)
        keep = []
        for idx in range(len(self.steps) - 1, -1, -1):
            layer, ins, outs = self.steps[idx]
            if any(o in need for o in outs):
                keep.append(idx)
                need.update(ins)
        keep.reverse()
        last_use: dict[int, int] = {}
        for pos, idx in enumerate(keep):
            for v in self.steps[idx][1]:
                last_use[v] = pos
        plan = (keep, last_use, set(ids))
        self._plans[wanted] = plan
        return plan

    def _check_input(self, name, x):
        expected = self.net.inputs[name]
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if not isinstance(x, torch.Tensor):
            raise InputError(f"input '{name}': expected an array of shape {('N',) + tuple(expected[1:])}, "
                             f"got {type(x).__name__}")
        is_label = any(l.type in _LABEL_CONSUMERS and len(l.bottoms) > 1 and l.bottoms[1] == name
                       for l in self.net.layers)
        if not (x.is_floating_point() or (is_label and x.dtype in (torch.int32, torch.int64, torch.uint8))):
            raise InputError(f"input '{name}': expected a floating-point array of shape "
                             f"{('N',) + tuple(expected[1:])}, got dtype {x.dtype}")
        if x.dim() != len(expected) or tuple(x.shape[1:]) != tuple(expected[1:]):
            raise InputError(f"input '{name}': expected shape {('N',) + tuple(expected[1:])} (net declares "
                             f"{tuple(expected)}), got {tuple(x.shape)}")
        ref = next((p for p in self.parameters()), None)
        if ref is not None:
            if x.is_floating_point() and x.dtype != ref.dtype:
                x = x.to(ref.dtype)
            if x.device != ref.device:
                x = x.to(ref.device)
        return x

    def forward(self, *args, blobs=None, dropout_masks: dict | None = None, retain_grad: bool = False,
                **inputs) -> "OrderedDict[str, torch.Tensor]":
        """Run the net; return ``{blob name: tensor}``.

        ``blobs``: ``None`` (the net's outputs: blobs no layer consumes), ``"all"`` (every blob, as Caffe's
        ``net.blobs`` after the forward pass) or a list of names. Inputs by name, or positionally in
        ``net.inputs`` order. ``dropout_masks``: ``{dropout layer name: 0/1 tensor}`` for TRAIN.
        ``retain_grad``: keep every blob's gradient for :meth:`blob_diffs`.
        """
        names = list(self.net.inputs)
        if args:
            if len(args) > len(names):
                raise InputError(f"net '{self.net.name}' takes {len(names)} inputs {names}, got {len(args)}")
            for n, a in zip(names, args):
                if n in inputs:
                    raise InputError(f"input '{n}' given twice")
                inputs[n] = a
        missing = [n for n in names if n not in inputs]
        extra = [n for n in inputs if n not in self.net.inputs]
        if extra:
            raise InputError(f"net '{self.net.name}' has no input {extra}; its inputs are {names}")
        if blobs is None:
            wanted = tuple(self.net.outputs)
        elif isinstance(blobs, str) and blobs == "all":  # every blob computable from the inputs given
            wanted = tuple(self.net.computable_blobs([n for n in names if n in inputs]))
        else:
            wanted = tuple([blobs] if isinstance(blobs, str) else blobs)
            unknown = [b for b in wanted if b not in self.final_version and b not in self.version_names]
            if unknown:
                raise InputError(f"net '{self.net.name}' has no blob {unknown}")
        keep, last_use, final_ids = self._plan(wanted)
        needed_inputs = {self.version_blob[v] for idx in keep for v in self.steps[idx][1]} | \
            {b for b in wanted if b in self.net.inputs}
        missing = [n for n in missing if n in needed_inputs]
        if missing:
            raise InputError(f"net '{self.net.name}' needs input {missing} (shape "
                             f"{[self.net.inputs[m] for m in missing]}) for blobs {list(wanted)[:5]}")
        values: dict[int, torch.Tensor] = {}
        for n in names:
            if n in inputs:
                values[self.first_version[n]] = self._check_input(n, inputs[n])
        masks = dropout_masks or {}
        unknown = [m for m in masks if m not in self.net.inputs and m not in
                   {l.name for l in self.net.layers if l.type == "Dropout"}]
        if unknown:
            raise InputError(f"dropout_masks names layers {unknown} that are not Dropout layers of the net")
        firsts = {}
        if retain_grad:
            for n in names:
                t = values.get(self.first_version[n])
                if t is not None and t.requires_grad:
                    t.retain_grad()
                    firsts[n] = t
        for pos, idx in enumerate(keep):
            layer, ins, outs = self.steps[idx]
            mod = self.layer_modules[_key(layer.name)]
            xs = [values[v] for v in ins]
            if layer.type == "Dropout" and layer.name in masks:
                tops = mod(*xs, mask=masks[layer.name])
            else:
                tops = mod(*xs)
            seen_ids = {id(x) for x in xs}
            for v, t in zip(outs, tops):
                if id(t) in seen_ids:  # an identity top: its own tensor, so that it keeps its own gradient
                    t = t.view_as(t)
                seen_ids.add(id(t))
                values[v] = t
                blob = self.version_blob[v]
                if retain_grad and self.first_version[blob] == v and t.requires_grad:
                    t.retain_grad()
                    firsts[blob] = t
            for v in ins:
                if last_use.get(v) == pos and v not in final_ids:
                    values.pop(v, None)
        self._first_versions = firsts
        return OrderedDict((b, values[self._version_id(b)]) for b in wanted)


    def forward_range(self, start: int, end: int, values: dict, dropout_masks: dict | None = None,
                      retain_grad: bool = False) -> "OrderedDict[str, torch.Tensor]":
        """Caffe's ``Net::ForwardFromTo(start, end)``: run layers ``start..end`` (indices into ``net.layers``) only.

        ``values``: ``{blob: tensor}`` for every blob those layers read that an earlier layer (or an input)
        produced, i.e. what ``net.blobs`` holds before layer ``start``. Returns ``values`` updated with the tops
        written (last write wins, as in Caffe); with ``retain_grad`` each blob's first tensor keeps its gradient
        (:meth:`blob_diffs`)."""
        out = OrderedDict((k, v) for k, v in values.items())
        masks = dropout_masks or {}
        firsts = {}
        if retain_grad:
            for k, t in out.items():
                if t.requires_grad:
                    t.retain_grad()
                    firsts[k] = t
        for layer, _, _ in self.steps[start:end + 1]:
            missing = [b for b in layer.bottoms if b not in out]
            if missing:
                raise InputError(f"layer '{layer.name}' needs blobs {missing}, which were not computed")
            xs = [out[b] for b in layer.bottoms]
            mod = self.layer_modules[_key(layer.name)]
            tops = mod(*xs, mask=masks[layer.name]) if layer.name in masks else mod(*xs)
            seen_ids = {id(x) for x in xs}
            for name, t in zip(layer.tops, tops):
                if id(t) in seen_ids:
                    t = t.view_as(t)
                seen_ids.add(id(t))
                if retain_grad and name not in firsts and t.requires_grad:
                    t.retain_grad()
                    firsts[name] = t
                out[name] = t
        self._first_versions = firsts
        return out


def to_torch(net, seed: int | None = None, params_from: CaffeModule | None = None,
             memory_format: str = "auto") -> CaffeModule:
    """Build a :class:`CaffeModule` from a :class:`models.Net`; parameters are initialised by Caffe's fillers
    (seeded with ``seed``), or shared by layer name with ``params_from`` (a train net's module for its test net).
    ``memory_format``: "auto" (channels_last weights when the net convolves: 1.6-9x faster on CPU in
    benchmarks/bench_backends.py), "channels_last" or "contiguous". Unsupported layer types fail here, naming
    the layer."""
    return CaffeModule(net, seed=seed, params_from=params_from, memory_format=memory_format)
