"""MACC and parameter counts with Netscope's conventions (the tool behind a paper's "MACC" column).

Conventions (dgschwend/netscope ``src/analyzer.coffee``; ``../shared/notes/caffe-semantics.md``), at batch 1:

- Convolution: ``MACC = kh * kw * H_out * W_out * C_in * C_out / group``; params ``kh*kw*C_in*C_out/group + C_out``
  (bias counted when the layer has one). The notes and Table 2 count biases (CIFAR's 92.13K is 92,130 only with
  them); the dgschwend/netscope analyzer.coffee we read leaves them out, so the paper's tool counted them.
- InnerProduct: ``MACC = inputs * outputs``; params include the bias.
- LRN: ``MACC = output elements * local_size``; 2 "params" (alpha, beta) per layer, as Netscope shows them.
- Scale, PReLU and Eltwise PROD: one MACC per output element. BatchNorm: 2 * C params (Netscope), no MACC.
- Deconvolution: ``MACC = kh * kw * H_in * W_in * C_in * C_out / group`` (every input pixel scatters one kernel).
- Embed: a table look-up, no MACC; params ``input_dim * num_output (+ num_output)``.
- Pooling, ReLU, Dropout, Softmax, Concat, losses: comparisons/additions, not MACC.

Shapes come from Caffe's own shape inference (``models.shapes``), not from Netscope's approximations; the values
each layer type needs come from its spec (``layer.spec``, :mod:`models.specs`), never from the prototxt again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class LayerCost:
    name: str
    type: str
    macc: int
    params: int
    top_shapes: list


@dataclass
class NetCost:
    name: str
    input_shapes: dict
    macc: int
    params: int
    layers: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"net": self.name, "inputs": {k: list(v) for k, v in self.input_shapes.items()},
                "macc": self.macc, "params": self.params,
                "layers": [{"name": l.name, "type": l.type, "macc": l.macc, "params": l.params,
                            "top_shapes": [list(s) for s in l.top_shapes]} for l in self.layers]}


def layer_cost(layer, count_lrn: bool = True) -> tuple[int, int]:
    """``(macc, params)`` of one layer at the batch its shapes were inferred with."""
    t = layer.type
    params = sum(math.prod(s) for s in layer.param_shapes)
    macc = 0
    spec = layer.spec
    if t == "Convolution":
        w = layer.param_shapes[0]  # (C_out, C_in / group, kh, kw)
        macc = sum(math.prod(w) * top[2] * top[3] * top[0] for top in layer.top_shapes)
    elif t == "Deconvolution":  # each input pixel scatters a kh x kw x C_out/group patch (Netscope: same count)
        w = layer.param_shapes[0]  # (C_in, C_out / group, kh, kw)
        macc = sum(math.prod(w) * b[2] * b[3] * b[0] for b in layer.bottom_shapes)
    elif t == "InnerProduct":
        w = layer.param_shapes[0]
        outer = math.prod(layer.top_shapes[0][:-1])
        macc = math.prod(w) * outer
    elif t == "LRN":
        params = 2 if count_lrn else 0
        macc = math.prod(layer.top_shapes[0]) * spec.size if count_lrn else 0
    elif t in ("Scale", "PReLU") or (t == "Eltwise" and spec.op == "PROD"):
        macc = math.prod(layer.top_shapes[0])
    elif t == "BatchNorm":
        params = 2 * layer.param_shapes[0][0]
    return int(macc), int(params)


def net_cost(net, count_lrn: bool = True) -> NetCost:
    """Per-layer and total MACC/params of a loaded net. Load it with ``batch=1`` for per-image numbers;
    MACC is divided by the batch here in any case so that a deploy file's batch 10 does not inflate it."""
    batch = next(iter(net.inputs.values()))[0] if net.inputs else 1
    batch = batch or 1
    layers = []
    for layer in net.layers:
        macc, params = layer_cost(layer, count_lrn)
        layers.append(LayerCost(layer.name, layer.type, macc // batch, params, layer.top_shapes))
    return NetCost(net.name, dict(net.inputs), sum(l.macc for l in layers), sum(l.params for l in layers), layers)


def human(n: float) -> str:
    """Netscope-style number: 1.59G, 388.77M, 317.38K."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))
