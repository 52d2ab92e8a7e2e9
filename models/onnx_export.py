"""``to_onnx``: a Caffe net as an ONNX graph whose node names are Caffe layer names and whose values are Caffe
blob names, so that a user can follow it in Netron.

The graph is written node by node from the Caffe layers (each converter in :mod:`models.layers` emits its own
nodes) rather than traced from torch: Caffe's pooling (explicit ``Pad`` + unpadded pooling + divisor map, exact at
padded and ceil-overhanging borders), both LRN regions and every blob name survive unchanged.

Naming: the final value of a blob (what Caffe's ``net.blobs`` shows after the forward pass) carries the blob's
name; an earlier value of a blob overwritten in place is named ``BLOB@LAYER`` after the layer that wrote it.
Parameters are initializers named ``LAYER[i]`` (Caffe blob order). Helper values are ``LAYER/what``.
An input exposed as an output (``--expose-blobs``) is copied to ``BLOB/output`` (ONNX forbids a graph input
that is also a graph output). The batch axis of every input is symbolic (``N``). Default opset: :data:`DEFAULT_OPSET`;
any opset from :data:`MIN_OPSET` to the newest the installed onnx defines can be asked for: the operators whose
form changed (Softmax's axis semantics and Unsqueeze/Split/Reduce* attributes becoming inputs at 13 and 18,
GreaterOrEqual at 12) are written for the opset asked, and a converter that cannot go lower declares its
``min_opset`` (SoftmaxWithLoss: 12, NegativeLogLikelihoodLoss), refused with the layer's name.
TRAIN-phase graphs take each Dropout layer's 0/1 mask as an extra input ``LAYER/mask``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.atomic import atomic_path
from models.errors import InputError, NetDefinitionError
from models.layers import registry

DEFAULT_OPSET = 17
#: the oldest opset written (Pad takes its pads as an input from 11; older runtimes are out of reach)
MIN_OPSET = 11


class OnnxGraph:
    """Collects nodes, initializers and inputs; converters call its methods from ``Converter.export``."""

    def __init__(self, opset: int = DEFAULT_OPSET):
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self.inputs: list = []
        self.names: set[str] = set()
        self.node_names: set[str] = set()
        self._scalars: dict = {}

    def _unique(self, base: str, pool: set) -> str:
        name, i = base, 1
        while name in pool:
            i += 1
            name = f"{base}_{i}"
        pool.add(name)
        return name

    def reserve(self, name: str) -> None:
        self.names.add(name)

    def tmp(self, base: str) -> str:
        """A fresh value name derived from ``base``."""
        return self._unique(base, self.names)

    def node(self, op: str, inputs: list, outputs: list, name: str, **attrs) -> None:
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=self._unique(name, self.node_names),
                                           **attrs))

    def const(self, base: str, array) -> str:
        name = self.tmp(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def const_i64(self, base: str, values) -> str:
        return self.const(base, np.asarray(values, dtype=np.int64))

    def param(self, layer: str, index: int, array) -> str:
        return self.const(f"{layer}[{index}]", np.asarray(array, dtype=np.float32))

    def scalar(self, value: float) -> str:
        key = float(np.float32(value))
        name = self._scalars.get(key)
        if name is None:
            name = self.const(f"const/{key:g}", np.asarray(key, dtype=np.float32))
            self._scalars[key] = name
        return name

    def reduce(self, op: str, x: str, out: str, name: str, axes=None, keepdims: int = 1) -> None:
        """A Reduce* node; ``axes`` goes in as an input (ReduceSum from opset 13, the others from 18) or as an
        attribute before that."""
        if axes is None:
            self.node(op, [x], [out], name, keepdims=keepdims)
        elif op == "ReduceSum" and self.opset >= 13 or self.opset >= 18:
            self.node(op, [x, self.const_i64(f"{name}/axes", list(axes))], [out], name, keepdims=keepdims)
        else:
            self.node(op, [x], [out], name, axes=list(axes), keepdims=keepdims)

    def unsqueeze(self, x: str, out: str, name: str, axes) -> None:
        """Unsqueeze: ``axes`` as an input from opset 13, an attribute before."""
        if self.opset >= 13:
            self.node("Unsqueeze", [x, self.const_i64(f"{name}/axes", list(axes))], [out], name)
        else:
            self.node("Unsqueeze", [x], [out], name, axes=list(axes))

    def split(self, x: str, outs: list, name: str, sizes, axis: int) -> None:
        """Split into ``sizes`` along ``axis``: the sizes as an input from opset 13, an attribute before."""
        if self.opset >= 13:
            self.node("Split", [x, self.const_i64(f"{name}/sizes", list(sizes))], outs, name, axis=axis)
        else:
            self.node("Split", [x], outs, name, axis=axis, split=list(sizes))

    def softmax(self, x: str, out: str, name: str, axis: int) -> None:
        """Softmax along one axis, as Caffe's softmax_layer.cpp (max subtracted). From opset 13 ONNX's Softmax is
        per axis; before, it normalised over all axes from ``axis`` on, so it is composed: Exp(x - max) / sum."""
        if self.opset >= 13:
            self.node("Softmax", [x], [out], name, axis=axis)
            return
        mx, sh, ex, sm = (self.tmp(f"{name}/{w}") for w in ("max", "shifted", "exp", "sum"))
        self.reduce("ReduceMax", x, mx, f"{name}/max", [axis], keepdims=1)
        self.node("Sub", [x, mx], [sh], f"{name}/shift")
        self.node("Exp", [sh], [ex], f"{name}/exp")
        self.reduce("ReduceSum", ex, sm, f"{name}/sum", [axis], keepdims=1)
        self.node("Div", [ex, sm], [out], name)

    def greater_or_equal(self, a: str, b: str, out: str, name: str) -> None:
        """a >= b (bool): GreaterOrEqual from opset 12, Not(Less) before."""
        self._inclusive("GreaterOrEqual", "Less", a, b, out, name)

    def less_or_equal(self, a: str, b: str, out: str, name: str) -> None:
        """a <= b (bool): LessOrEqual from opset 12, Not(Greater) before."""
        self._inclusive("LessOrEqual", "Greater", a, b, out, name)

    def _inclusive(self, op: str, strict_opposite: str, a: str, b: str, out: str, name: str) -> None:
        if self.opset >= 12:
            self.node(op, [a, b], [out], name)
            return
        opp = self.tmp(f"{name}/not")
        self.node(strict_opposite, [a, b], [opp], f"{name}/not")
        self.node("Not", [opp], [out], name)

    def pad(self, layer: str, x: str, begins, ends, value: float) -> str:
        """Pad (negative: crop) the last two axes of ``x``: ``begins``/``ends`` are (h, w)."""
        out = self.tmp(f"{layer}/padded")
        pads = [0, 0, begins[0], begins[1], 0, 0, ends[0], ends[1]]
        self.node("Pad", [x, self.const_i64(f"{layer}/pads", pads), self.scalar(value)], [out], f"{layer}/pad",
                  mode="constant")
        return out

    def add_input(self, name: str, shape, elem=TensorProto.FLOAT) -> str:
        dims = ["N"] + list(shape[1:]) if len(shape) else []
        self.inputs.append(helper.make_tensor_value_info(name, elem, dims))
        self.reserve(name)
        return name

    def mask_input(self, layer: str, shape) -> str:
        return self.add_input(f"{layer}/mask", shape)

    def label_int(self, layer: str, label: str, shape) -> str:
        """Caffe's float label blob as int64 of ``shape`` (0 copies the batch axis)."""
        cast = self.tmp(f"{layer}/label_i64")
        self.node("Cast", [label], [cast], f"{layer}/label_cast", to=TensorProto.INT64)
        out = self.tmp(f"{layer}/label")
        self.node("Reshape", [cast, self.const_i64(f"{layer}/label_shape", shape)], [out], f"{layer}/label_reshape")
        return out

    def equal(self, layer: str, x_int: str, value: int) -> str:
        out = self.tmp(f"{layer}/is_{value}")
        self.node("Equal", [x_int, self.const_i64(f"{layer}/value", value)], [out], f"{layer}/equal")
        return out

    def batch_size(self, layer: str, x: str) -> str:
        shape = self.tmp(f"{layer}/shape")
        self.node("Shape", [x], [shape], f"{layer}/shape")
        n = self.tmp(f"{layer}/n_i64")
        self.node("Gather", [shape, self.const_i64(f"{layer}/zero", 0)], [n], f"{layer}/batch", axis=0)
        out = self.tmp(f"{layer}/n")
        self.node("Cast", [n], [out], f"{layer}/n_cast", to=TensorProto.FLOAT)
        return out


def net_params(net, seed: int = 0) -> dict:
    """``{layer: [np arrays]}``: the net's learnable blobs filled by Caffe's fillers (:mod:`models.fillers`),
    drawn layer by layer from one generator seeded with ``seed`` (the same values ``to_torch(net, seed)`` gets),
    without building a torch module."""
    import torch

    from models.fillers import init_layer
    gen = torch.Generator().manual_seed(seed)
    out, shared = {}, {}
    for layer in net.layers:
        if not layer.param_shapes:
            continue
        blobs = [torch.zeros(tuple(s), dtype=torch.float32) for s in layer.param_shapes]
        init_layer(layer, blobs, gen)
        arrays = [b.numpy() for b in blobs]
        for i, ps in enumerate(layer.proto.param[:len(arrays)]):  # ParamSpec name: one blob (net.cpp AppendParam)
            if ps.name:
                arrays[i] = shared.setdefault(ps.name, arrays[i])
        out[layer.name] = arrays
    return out


def _params_of(source, params=None):
    """(net, {layer: [np arrays]}) from a CaffeModule (its current weights), or from a Net with ``params``
    (``{layer: [arrays]}``, e.g. ``models.read_caffemodel(...).params()`` checked against the net) or, without
    them, Caffe's fillers (seed 0)."""
    from models.caffemodel import check_params
    from models.torch_builder import CaffeModule
    if isinstance(source, CaffeModule):
        params = {name: [p.detach().cpu().float().numpy() for p in ps] for name, ps in source.caffe_params().items()}
        return source.net, params
    if params is None:
        return source, net_params(source)
    check_params(source, params)
    return source, {k: [np.asarray(a, np.float32) for a in v] for k, v in params.items()}


def _prune(nodes, inputs, initializers, outputs):
    """Keep only the nodes, inputs and initializers that the graph outputs depend on (a data layer's label that
    no requested blob reads is then not a required input)."""
    need = {o.name for o in outputs}
    kept = []
    for n in reversed(nodes):
        if any(o in need for o in n.output):
            kept.append(n)
            need.update(i for i in n.input if i)
    kept.reverse()
    return kept, [i for i in inputs if i.name in need], [t for t in initializers if t.name in need]


def build_onnx(source, expose_blobs: bool = False, outputs=None, opset: int = DEFAULT_OPSET,
               params: dict | None = None) -> onnx.ModelProto:
    """The ONNX model of a :class:`models.Net` (weights: ``params`` ``{layer: [arrays]}``, else Caffe's fillers
    with seed 0; no torch module is built) or of a :class:`models.CaffeModule` (its current weights).

    ``outputs``: blob names to expose (default: the net's outputs; ``BLOB@LAYER`` names an earlier value of a
    blob rewritten in place); ``expose_blobs``: every blob. Only what the exposed blobs need is kept: an input
    (e.g. a MemoryData label) that none of them reads is not a graph input. Node names are Caffe layer names
    (helper nodes ``LAYER/what``); ``onnx.checker.check_model(full_check=True)`` has passed on the result.
    """
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= int(opset) <= newest:
        raise InputError(f"opset {opset}: the exporter writes opsets {MIN_OPSET}..{newest} (default {DEFAULT_OPSET})")
    net, params = _params_of(source, params)
    g = OnnxGraph(opset)
    for name, shape in net.inputs.items():
        g.add_input(name, shape)
    writes: dict[str, int] = {}
    for layer in net.layers:
        for t in layer.tops:
            writes[t] = writes.get(t, 0) + 1
    for blob in writes:
        g.reserve(blob)
    current = {name: name for name in net.inputs}
    seen: dict[str, int] = {}
    # blobs whose batch axis is known only at run time: a Filter's tops and everything computed from them
    unknown_batch: set[str] = set()
    for layer in net.layers:
        conv = registry.get(layer)
        if conv.data_dependent_batch or unknown_batch.intersection(layer.bottoms):
            unknown_batch.update(layer.tops)
        if opset < conv.min_opset:
            raise NetDefinitionError(f"layer '{layer.name}' ({layer.type}): its ONNX export needs opset "
                                     f"{conv.min_opset} or newer ({conv.min_opset_why}); asked for opset {opset}")
        bottoms = [current[b] for b in layer.bottoms]
        tops = []
        for t in layer.tops:
            seen[t] = seen.get(t, 0) + 1
            # The last write keeps the blob's name, except for a net input rewritten in place (ReLU on "data"):
            # ONNX names a value once, and the input already owns that name.
            final = seen[t] == writes[t] and t not in net.inputs
            tops.append(t if final else g.tmp(f"{t}@{layer.name}"))
        conv.export(layer, g, bottoms, tops, params.get(layer.name, []), net.phase)
        for t, v in zip(layer.tops, tops):
            current[t] = v
    if expose_blobs:
        wanted = net.blobs
    elif outputs is not None:
        wanted = list(outputs)
    else:
        wanted = net.outputs
    produced = {o for n in g.nodes for o in n.output}
    unknown = [b for b in wanted if b not in current and b not in produced]
    if unknown:
        raise InputError(f"net '{net.name}' has no blob {unknown}")
    batch = next(iter(net.inputs.values()))[0] if net.inputs else None

    def out_info(value, blob):
        base = blob if blob in net.blob_shapes else blob.split("@")[0]  # BLOB@LAYER: an earlier value of BLOB
        if base not in net.blob_shapes:
            return helper.make_tensor_value_info(value, TensorProto.FLOAT, None)
        shape = list(net.blob_shapes[base])
        if shape and base in unknown_batch:
            shape[0] = None  # an unnamed dimension: not the inputs' N
        elif shape and shape[0] == batch:
            shape[0] = "N"
        return helper.make_tensor_value_info(value, TensorProto.FLOAT, shape)

    graph_outputs = []
    extra_nodes = []
    for b in wanted:
        if b in net.inputs:  # an input cannot also be a graph output: expose a copy of its final value
            name = g.tmp(f"{b}/output")
            extra_nodes.append(helper.make_node("Identity", [current[b]], [name], name=f"{b}/output"))
            graph_outputs.append(out_info(name, b))
        else:
            graph_outputs.append(out_info(b, b))
    nodes, inputs, inits = _prune(g.nodes + extra_nodes, g.inputs, g.initializers, graph_outputs)
    graph = helper.make_graph(nodes, net.name or "caffe_net", inputs, graph_outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="radiogenomics-replica models", doc_string=f"Caffe net {net.name} "
                              f"({net.phase}) converted layer by layer")
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model, full_check=True)
    return model


def to_onnx(source, path=None, expose_blobs: bool = False, outputs=None, opset: int = DEFAULT_OPSET,
            params: dict | None = None):
    """Export a :class:`models.Net` or :class:`models.CaffeModule` to ONNX; write ``path`` atomically if given.

    Returns the ``onnx.ModelProto`` (``onnx.checker`` has passed on it).
    """
    model = build_onnx(source, expose_blobs=expose_blobs, outputs=outputs, opset=opset, params=params)
    if path is not None:
        path = Path(path)
        with atomic_path(path, suffix=".onnx") as tmp:
            onnx.save(model, str(tmp))
    return model


#: initializer bytes above which :func:`inference_session` hands onnxruntime a file with external data
EXTERNAL_DATA_BYTES = 256 << 20


def inference_session(model: onnx.ModelProto, providers=("CPUExecutionProvider",), sess_options=None):
    """An ``onnxruntime.InferenceSession`` for ``model`` without holding two extra copies of large weights.

    Small models go in as bytes; large ones (VGG16, VGG_R: 0.5-1.7 GB) are written to a temporary file with
    external data and loaded from there (this moves ``model``'s tensors out to that file: the proto is left
    without weights). Models over protobuf's 2 GB limit can only be loaded this way.
    """
    import onnxruntime as ort
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size < EXTERNAL_DATA_BYTES:
        return ort.InferenceSession(model.SerializeToString(), sess_options, providers=list(providers))
    with tempfile.TemporaryDirectory() as td:
        path = os.path.join(td, "model.onnx")
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=1024)
        return ort.InferenceSession(path, sess_options, providers=list(providers))

