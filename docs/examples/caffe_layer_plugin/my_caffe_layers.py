"""A layer plugin for radiogenomics-replica's Caffe runtime: the ``Mish`` activation of several Caffe forks,
``top = bottom * tanh(softplus(bottom))`` (Misra 2019), element-wise, no parameters.

Installed (``pip install .`` in this folder), its entry point makes every net with ``type: "Mish"`` load, run,
train and convert to ONNX through ``python -m models`` with no change to the project. See docs/plugins.md.
"""
import torch
import torch.nn.functional as F

import models


class Mish(torch.nn.Module):
    def forward(self, x):
        return x * torch.tanh(F.softplus(x))


def mish_shape(layer_param, bottoms):
    """One top of the bottom's shape, no learnable blobs."""
    if len(bottoms) != 1:
        raise models.ShapeError(f"layer '{layer_param.name}' (Mish): expected 1 bottom, got {len(bottoms)}")
    return [tuple(bottoms[0])], []


def mish_export(layer, g, bottoms, tops, blobs, phase):
    """ONNX: Softplus -> Tanh -> Mul (opset 1+; opset 18's Mish op would be one node)."""
    sp, th = g.tmp(f"{layer.name}/softplus"), g.tmp(f"{layer.name}/tanh")
    g.node("Softplus", bottoms[:1], [sp], f"{layer.name}/softplus")
    g.node("Tanh", [sp], [th], f"{layer.name}/tanh")
    g.node("Mul", [bottoms[0], th], tops[:1], layer.name)


def register():
    """The entry point (pyproject.toml): called once, the first time a net's layer types are checked."""
    models.register_layer("Mish", shape=mish_shape, build=lambda layer, phase: Mish(), export=mish_export)
