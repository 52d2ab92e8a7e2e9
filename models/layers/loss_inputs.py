"""What Caffe's per-item loss layers share: which bottoms get a diff, and labels read one per item.

Caffe decides per bottom whether a layer's ``Backward`` writes a diff (net.cpp ``AppendBottom``): the
``propagate_down`` list of the LayerParameter when given (it must then have one entry per bottom), otherwise
whether the blob needs backward (it depends on a learnable parameter); here that is ``requires_grad``. A loss layer
asked for the diff of its label aborts in ``Backward`` ("... Layer cannot backpropagate to label inputs.");
:func:`label_diff_refused` is that abort as a :class:`models.errors.NetDefinitionError`.
"""
from __future__ import annotations

import numpy as np
import torch

from models.errors import InputError, NetDefinitionError


def propagate_down(layer) -> list:
    """``layer.proto.propagate_down`` as one entry per bottom (``None`` where the net decides).

    Raises
    ------
    NetDefinitionError
        When the list is given with another length than the bottoms (net.cpp: "propagate_down param must be
        specified either 0 or bottom_size times").
    """
    pd = list(layer.proto.propagate_down)
    if pd and len(pd) != len(layer.bottoms):
        raise NetDefinitionError(f"layer '{layer.name}' ({layer.type}): propagate_down param must be specified "
                                 f"either 0 or bottom_size times ({len(pd)} given, {len(layer.bottoms)} bottoms)")
    return [bool(v) for v in pd] if pd else [None] * len(layer.bottoms)


def gated(bottoms, pd) -> list:
    """The bottoms with those of ``propagate_down: false`` detached (Caffe writes no diff into them)."""
    return [b.detach() if down is False else b for b, down in zip(bottoms, pd)]


def refuse_forced_label_diff(layer, pd, label_bottoms) -> None:
    """Caffe aborts the first ``Backward`` of a layer whose ``propagate_down`` is true for a label bottom; refuse
    such a net when it is built."""
    for i in label_bottoms:
        if i < len(pd) and pd[i] is True:
            raise label_diff_refused(layer.name, layer.type, i)


def label_diff_refused(name: str, type_: str, index: int = 1) -> NetDefinitionError:
    """Caffe's LOG(FATAL) in the loss layers' ``Backward`` when bottom ``index`` (a label) needs a diff."""
    what = "infogain" if index == 2 and type_ == "InfogainLoss" else "label"
    return NetDefinitionError(f"layer '{name}': {type_} Layer cannot backpropagate to {what} inputs (bottom "
                              f"{index} depends on learned parameters; give the layer propagate_down: false for it)")


def refuse_label_grads(ctx, type_: str, indices=(1,)) -> None:
    """In an autograd Function's backward: raise :func:`label_diff_refused` when one of the label inputs
    ``indices`` (a Function input that requires grad) would need a diff; ``ctx.name`` names the layer."""
    for i in indices:
        if ctx.needs_input_grad[i]:
            raise label_diff_refused(ctx.name, type_, i)


def item_labels(label: torch.Tensor, num: int, dim: int, name: str, type_: str) -> torch.Tensor:
    """The label of each of ``num`` items, as Caffe reads it: ``static_cast<int>(label[i])`` over the label blob
    read flat (truncation toward zero), checked to lie in ``[0, dim)`` (Caffe would index out of bounds).

    Returns an int64 tensor of shape ``(num,)``.

    Raises
    ------
    InputError
        Fewer than ``num`` label values, or a label outside ``[0, dim)``.
    """
    flat = label.detach().reshape(-1)
    if flat.numel() < num:
        raise InputError(f"layer '{name}' ({type_}): {flat.numel()} label values for {num} items")
    lab = flat[:num].to(torch.int64)
    bad = (lab < 0) | (lab >= dim)
    if bool(bad.any()):
        raise InputError(f"layer '{name}' ({type_}): labels must lie in [0, {dim}), got "
                         f"{sorted(set(lab[bad].tolist()))[:5]}")
    return lab


def no_autocast(x: torch.Tensor):
    """A context in which loss arithmetic stays float32 under ``--precision bf16`` (Caffe's loss layers compute
    in Dtype)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def refuse_export(layer, why: str):
    """The ONNX export of a loss layer that cannot be exported: a NetDefinitionError naming the layer."""
    raise NetDefinitionError(f"layer '{layer.name}' ({layer.type}): no ONNX export {why}; export the deploy net, "
                             "or ask for the blobs before it (--blobs)")


def export_items(layer, g, x: str) -> tuple:
    """ONNX: bottom ``x`` as ``(N, dim)`` (``Flatten`` at axis 1) and the batch size as a float scalar."""
    flat = g.tmp(f"{layer.name}/flat")
    g.node("Flatten", [x], [flat], f"{layer.name}/flatten", axis=1)
    return flat, g.batch_size(layer.name, x)


def export_item_labels(layer, g, label: str, shape, index: int = 1) -> str:
    """ONNX: bottom ``index`` as one int64 label per item (truncated as ``static_cast<int>``), of ``shape``
    ``[-1]`` or ``[-1, 1]``; refused unless that blob holds exactly one value per item (Caffe would read the first
    ``num`` values of a larger blob)."""
    b = layer.bottom_shapes
    if int(np.prod(b[index])) != b[0][0]:
        refuse_export(layer, f"for bottom {index} of shape {tuple(b[index])} (one value per item expected)")
    return g.label_int(layer.name, label, shape)


def export_mean_over_items(layer, g, total: str, n: str, out: str, negate: bool = False, half: bool = False):
    """ONNX: ``out = (+-)total / n`` (``/ 2`` too with ``half``), Caffe's ``loss / num [/ 2]``."""
    name = layer.name
    if negate:
        neg = g.tmp(f"{name}/neg")
        g.node("Neg", [total], [neg], f"{name}/neg")
        total = neg
    if half:
        per = g.tmp(f"{name}/per_item")
        g.node("Div", [total, n], [per], f"{name}/per_item")
        g.node("Div", [per, g.scalar(2.0)], [out], name)
    else:
        g.node("Div", [total, n], [out], name)
