"""Weights of a :class:`~models.torch_builder.CaffeModule` from and to ``.caffemodel`` files.

Loading follows Caffe's ``Net::CopyTrainedLayersFrom`` (src/caffe/net.cpp): layers are matched by name; layers of
the file that the net lacks are ignored (fine-tuning renames the new last layer), layers of the net that the file
lacks keep their filler values; a blob count or shape that does not fit raises :class:`WeightsError` naming the
layer, the blob index and both shapes. Legacy V1 4-D shapes (``(1, 1, N, K)`` for ``(N, K)``) are accepted, as
Caffe's ``ShapeEquals`` does.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from models.errors import WeightsError

from models.caffemodel import params_for_net, read_caffemodel, write_caffemodel


def mismatch_message(report: dict, path) -> str | None:
    """One line naming the net's learnable layers that got no weights from ``path`` and the caffemodel's layers
    (with blobs) that matched no layer of the net; None when everything matched."""
    parts = []
    if report["missing"]:
        parts.append(f"net layers with no weights in the file (they keep their fillers): {report['missing']}")
    if report["ignored"]:
        parts.append(f"caffemodel layers that match no net layer: {report['ignored']}")
    if not parts:
        return None
    return f"{path}: " + "; ".join(parts)


def load_caffemodel(module, path, strict: bool = False) -> dict:
    """Copy the blobs of the caffemodel at ``path`` into ``module``; return ``{"loaded": [...], "missing": [...],
    "ignored": [...]}`` (layer names).

    As Caffe's ``CopyTrainedLayersFrom``, unmatched layers are not an error by default; a ``UserWarning`` names
    them (:func:`mismatch_message`). ``strict``: raise :class:`WeightsError` instead (a learnable net layer with
    no weights, or a caffemodel layer with blobs that matches nothing). Shape mismatches always raise.
    """
    params, report = caffemodel_params(module.net, path, strict=strict, stacklevel=3)
    targets = module.caffe_params()
    with torch.no_grad():
        for name, arrays in params.items():
            for p, arr in zip(targets[name], arrays):
                p.copy_(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).reshape(p.shape))
    return report


def caffemodel_params(net, path, strict: bool = False, stacklevel: int = 2) -> tuple[dict, dict]:
    """``({layer: [np arrays]}, report)``: the caffemodel's blobs that fit ``net`` (shapes checked, legacy shapes
    reshaped), without building a torch module (what ``models convert`` hands to the ONNX export). The report and
    the warning / ``strict`` failure are those of :func:`load_caffemodel`."""
    model = read_caffemodel(path)
    params = params_for_net(net, model)
    net_layers = {l.name for l in net.layers}
    report = {"loaded": list(params),
              "missing": [l.name for l in net.layers if l.param_shapes and l.name not in params],
              "ignored": [n for n, _, b in model.layers if b and n not in net_layers]}
    msg = mismatch_message(report, path)
    if msg and strict:
        raise WeightsError(msg)
    if msg:
        warnings.warn(msg, stacklevel=stacklevel)
    return params, report


def module_params(module) -> dict:
    """``{layer name: [np.ndarray]}``: the module's blobs as float32 arrays, in Caffe order."""
    return {name: [p.detach().cpu().float().numpy() for p in ps] for name, ps in module.caffe_params().items()}


def save_caffemodel(module, path, version: str = "V2", dtype: str = "float32") -> None:
    """Write ``module``'s blobs as a caffemodel (atomically; ``version`` "V1" writes the legacy format)."""
    write_caffemodel(path, module.net, module_params(module), version=version, dtype=dtype)
