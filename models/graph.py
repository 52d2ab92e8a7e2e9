"""The net graph: Caffe layers with their typed parameters, blobs and shapes.

``load_net`` reproduces what Caffe's ``Net::Init`` does before any memory is allocated: upgrade legacy nets
(``upgrade_proto.cpp``), filter layers by the net state (``Net::FilterNet`` / ``StateMeetsRule``), resolve the
input blobs, and run shape inference layer by layer in file order (``Layer::Reshape``).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from .errors import NetDefinitionError, ShapeError, UnknownLayerError
from .prototxt_io import read_net_text
from .schema import pb, use_proto
from .plugins import load_entry_points
from .shapes import SHAPE_FUNCTIONS, check_blob_counts, check_blob_shape
from .upgrade import upgrade_net

#: Layers that produce data from outside the net: parsed, never executed; their tops become net inputs.
DATA_LAYER_TYPES = ("Input", "Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData")

PHASES = {"TRAIN": 0, "TEST": 1}


@dataclass
class Layer:
    """One layer of a loaded net (see docs/ARCHITECTURE.md)."""

    name: str
    type: str
    bottoms: list
    tops: list
    proto: object
    bottom_shapes: list = field(default_factory=list)
    top_shapes: list = field(default_factory=list)
    param_shapes: list = field(default_factory=list)
    #: the layer's parameters resolved once by shape inference (a frozen dataclass from :mod:`models.specs`)
    spec: object = None

    @property
    def in_place(self) -> bool:
        return any(t in self.bottoms for t in self.tops)

    @property
    def lr_mults(self) -> list:
        return [self.proto.param[i].lr_mult if i < len(self.proto.param) else 1.0
                for i in range(len(self.param_shapes))]

    @property
    def decay_mults(self) -> list:
        return [self.proto.param[i].decay_mult if i < len(self.proto.param) else 1.0
                for i in range(len(self.param_shapes))]

    @property
    def loss_weights(self) -> list:
        """Caffe's loss weight per top (layer.hpp SetLossWeights): given, or 1 for a loss layer's first top."""
        if len(self.proto.loss_weight):
            return list(self.proto.loss_weight) + [0.0] * (len(self.tops) - len(self.proto.loss_weight))
        default = 1.0 if self.type.endswith("Loss") else 0.0
        return [default] + [0.0] * (len(self.tops) - 1) if self.tops else []


@dataclass
class Net:
    """A phase-filtered, shape-inferred Caffe net."""

    name: str
    phase: str
    proto: object
    inputs: "OrderedDict[str, tuple]"
    layers: list
    data_layers: list
    blob_shapes: dict
    source: str = "<string>"

    def layer(self, name: str) -> Layer:
        for layer in self.layers + self.data_layers:
            if layer.name == name:
                return layer
        raise KeyError(f"net '{self.name}' has no layer '{name}'")

    def producers(self, blob: str) -> list:
        return [l for l in self.layers if blob in l.tops]

    def consumers(self, blob: str) -> list:
        return [l for l in self.layers if blob in l.bottoms]

    @property
    def outputs(self) -> list:
        """Blobs no layer consumes (Caffe's ``net.outputs``), in order of production."""
        consumed = set()
        produced = list(self.inputs)
        for l in self.layers:
            consumed.update(b for b in l.bottoms if b not in l.tops)
            produced += [t for t in l.tops if t not in produced]
        return [b for b in produced if b not in consumed]

    def computable_blobs(self, given) -> list:
        """Every blob (production order) whose final value can be computed from the inputs named in ``given``:
        what ``--blobs all`` means when a data layer's label top is not supplied."""
        have = set(given) & set(self.inputs)
        out = [b for b in self.inputs if b in have]
        for l in self.layers:
            if all(b in have for b in l.bottoms):
                have.update(l.tops)
                out += [t for t in l.tops if t not in out]
            else:  # a top rewritten by a layer that cannot run is not computable any more
                for t in l.tops:
                    have.discard(t)
                    if t in out:
                        out.remove(t)
        return out

    @property
    def blobs(self) -> list:
        """Every blob name in production order (inputs first), each once."""
        names = list(self.inputs)
        for l in self.layers:
            names += [t for t in l.tops if t not in names]
        return names


def supported_layer_types() -> list[str]:
    """Every layer type a net may contain: the data layers, and the types with a converter in the registry
    (:func:`models.layers.registry.supported_types`; tests/test_layer_specs.py checks that every registered type
    has a shape function and vice versa)."""
    from .layers.registry import supported_types
    return sorted(set(supported_types()) | set(DATA_LAYER_TYPES))


def state_meets_rule(phase: int, level: int, stages: set, rule) -> bool:
    """Caffe's ``Net::StateMeetsRule`` (net.cpp)."""
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def layer_included(layer, phase: int, level: int = 0, stages=()) -> bool:
    """Caffe's ``Net::FilterNet`` decision for one layer."""
    stages = set(stages)
    if len(layer.include) and len(layer.exclude):
        raise NetDefinitionError(
            f"layer '{layer.name}' specifies both include and exclude rules; Caffe allows only one kind")
    if len(layer.include):
        return any(state_meets_rule(phase, level, stages, r) for r in layer.include)
    return not any(state_meets_rule(phase, level, stages, r) for r in layer.exclude)


def _data_layer_shapes(layer, where: str) -> list:
    """Top shapes of a data layer from its parameters, where Caffe's layer would read them from the data."""
    t = layer.type
    if t == "Input":
        shapes = [tuple(s.dim) for s in layer.input_param.shape]
        if len(shapes) == 1:
            shapes = shapes * len(layer.top)
        if len(shapes) != len(layer.top):
            raise NetDefinitionError(f"{where}Input layer '{layer.name}' has {len(layer.top)} tops but "
                                     f"{len(shapes)} shapes")
        return shapes
    if t == "MemoryData":
        p = layer.memory_data_param
        return [(p.batch_size, p.channels, p.height, p.width), (p.batch_size,)][:len(layer.top)]
    if t == "DummyData":
        p = layer.dummy_data_param
        shapes = [tuple(s.dim) for s in p.shape]
        if len(shapes) == 1:
            shapes = shapes * len(layer.top)
        return shapes
    crop = layer.transform_param.crop_size
    if t == "Data" and crop:
        n = layer.data_param.batch_size
        return [(n, 3, crop, crop), (n,)][:len(layer.top)]
    if t == "ImageData":
        p = layer.image_data_param
        c = 3 if p.is_color else 1
        h, w = (crop, crop) if crop else (p.new_height, p.new_width)
        if h and w:
            return [(p.batch_size, c, h, w), (p.batch_size,)][:len(layer.top)]
    raise NetDefinitionError(
        f"{where}{t} layer '{layer.name}': the shape of its tops {list(layer.top)} comes from its data source, "
        "which is not read; give it with input_shapes={blob: shape} (CLI: --input-shape BLOB=N,C,H,W)")


def load_net(source, phase: str = "TEST", batch: int | None = None, input_shapes: dict | None = None,
             level: int = 0, stages=(), proto=None) -> Net:
    """Load a Caffe net (prototxt path, prototxt text, or a ``pb.NetParameter``) for one phase.

    ``batch`` overrides the first dimension of every input; ``input_shapes`` gives or overrides the shape of
    named input blobs (needed for Data layers whose shape lives in their database). ``proto``: a fork's
    caffe.proto to parse with, for the rest of the process (:func:`models.schema.use_proto`).
    """
    if proto is not None:
        use_proto(proto)
    if phase not in PHASES:
        raise ValueError(f"phase must be 'TRAIN' or 'TEST', got {phase!r}")
    if isinstance(source, pb.NetParameter):
        raw, where = source, ""
        src_name = "<NetParameter>"
    else:
        raw = read_net_text(source)
        src_name = str(source) if isinstance(source, Path) or "\n" not in str(source) else "<string>"
        where = f"{src_name}: " if src_name != "<string>" else ""
    net_proto = upgrade_net(raw, where)
    phase_id = PHASES[phase]
    if net_proto.HasField("state"):
        level = net_proto.state.level if not level else level
        stages = tuple(stages) or tuple(net_proto.state.stage)
    overrides = {k: tuple(v) for k, v in (input_shapes or {}).items()}

    filtered = pb.NetParameter()
    filtered.CopyFrom(net_proto)
    del filtered.layer[:]
    filtered.state.phase = phase_id

    inputs: "OrderedDict[str, tuple]" = OrderedDict()
    # Legacy input fields: input + input_shape, or input + input_dim (4 per input).
    names = list(net_proto.input)
    if names:
        if len(net_proto.input_shape):
            if len(net_proto.input_shape) != len(names):
                raise NetDefinitionError(f"{where}{len(names)} inputs but {len(net_proto.input_shape)} input_shape")
            dims = [tuple(s.dim) for s in net_proto.input_shape]
        elif len(net_proto.input_dim):
            if len(net_proto.input_dim) != 4 * len(names):
                raise NetDefinitionError(
                    f"{where}{len(names)} inputs need {4 * len(names)} input_dim values, got "
                    f"{len(net_proto.input_dim)}")
            d = list(net_proto.input_dim)
            dims = [tuple(d[4 * i:4 * i + 4]) for i in range(len(names))]
        elif all(n in overrides for n in names):
            dims = [overrides[n] for n in names]
        else:
            raise NetDefinitionError(f"{where}inputs {names} have no input_shape or input_dim")
        inputs.update(zip(names, dims))

    layers, data_layers, shapes = [], [], {}
    seen_names = set()
    for lp in net_proto.layer:
        if not layer_included(lp, phase_id, level, stages):
            continue
        if lp.name in seen_names:
            raise NetDefinitionError(f"{where}two layers are named '{lp.name}'")
        seen_names.add(lp.name)
        filtered.layer.add().CopyFrom(lp)
        if lp.type in DATA_LAYER_TYPES:
            missing = [t for t in lp.top if t not in overrides]
            tops = _data_layer_shapes(lp, where) if missing else [overrides[t] for t in lp.top]
            tops = [overrides.get(t, s) for t, s in zip(lp.top, tops)]
            for t, s in zip(lp.top, tops):
                inputs[t] = tuple(int(x) for x in s)
            data_layers.append(Layer(lp.name, lp.type, [], list(lp.top), lp, [], list(tops), []))
            continue
        layers.append(Layer(lp.name, lp.type, list(lp.bottom), list(lp.top), lp))

    for name, s in overrides.items():
        if name in inputs:
            inputs[name] = s
    if batch is not None:
        if batch < 1:
            raise ValueError(f"batch must be positive, got {batch}")
        inputs = OrderedDict((k, (batch,) + tuple(v[1:]) if len(v) else v) for k, v in inputs.items())
    shapes.update(inputs)

    for name, s in inputs.items():
        check_blob_shape(s, f"{where}input '{name}'")
    load_entry_points()   # installed layer plugins add their types before any is called unknown
    unknown = [(l.name, l.type) for l in layers if l.type not in SHAPE_FUNCTIONS]
    if unknown:
        raise UnknownLayerError(unknown, None, supported_layer_types())
    for layer in layers:
        fn = SHAPE_FUNCTIONS[layer.type]
        for b in layer.bottoms:
            if b not in shapes:
                raise NetDefinitionError(
                    f"{where}layer '{layer.name}' ({layer.type}) needs bottom '{b}', which no earlier layer or "
                    f"input produces (phase {phase})")
        layer.bottom_shapes = [shapes[b] for b in layer.bottoms]
        try:
            check_blob_counts(layer.proto)
            tops, params, spec = fn(layer.proto, layer.bottom_shapes)
        except ShapeError as e:
            raise ShapeError(f"{where}{e}") from None
        if len(tops) != len(layer.tops):
            raise ShapeError(f"{where}layer '{layer.name}' ({layer.type}) declares {len(layer.tops)} tops; "
                             f"this layer type produces {len(tops)} here")
        layer.top_shapes = [tuple(int(x) for x in t) for t in tops]
        layer.param_shapes = [tuple(int(x) for x in p) for p in params]
        layer.spec = spec
        for t, s in zip(layer.tops, layer.top_shapes):
            check_blob_shape(s, f"{where}layer '{layer.name}' ({layer.type}) top '{t}'")
            if t in layer.bottoms and tuple(shapes[t]) != s:
                raise ShapeError(f"{where}layer '{layer.name}' computes '{t}' in place but changes its shape "
                                 f"from {shapes[t]} to {s}")
            shapes[t] = s
    return Net(name=net_proto.name, phase=phase, proto=filtered, inputs=inputs, layers=layers,
               data_layers=data_layers, blob_shapes=shapes, source=src_name)
