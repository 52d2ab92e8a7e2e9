"""Every blob of every real-Caffe golden fixture (compare/golden/README.md), reproduced by the converter with torch
and with onnxruntime; gradients (blob and parameter diffs) of the edge nets; solver trajectories.

Tolerance: ``max|ours - caffe| <= 1e-4 * max(1, max|caffe|)`` per array (compare/golden/golden.py TOL).
Fixtures are read from ``compare/golden/fixtures`` (or ``$RGR_GOLDEN``); without them these tests skip, saying so.

What is compared, per fixture:
* forward (torch and onnxruntime): every ``blob/<name>`` of the net (Caffe's auto-inserted split blobs are the
  same values as their source), with Caffe's weights (the fixture's caffemodel, read by ``load_caffemodel``, or
  the seeded recipe), inputs and, in TRAIN, the dropout masks recovered from Caffe's output;
* ``param/<layer>/<i>`` after the forward pass (TRAIN BatchNorm updates its running sums);
* backward (torch): ``diff/<blob>`` with Caffe's in-place rule (an in-place chain shows the diff of its first
  value) and ``pdiff/<layer>/<i>``, with the seeded top diffs for non-loss outputs (force_backward nets);
* solver fixtures: the parameters after each of 6 iterations (iter_size 2, lr/decay mults) and the loss.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import models
from compare.golden import seeded
from compare.golden.golden import FIXTURES, TOL, Fixture, fixture_names
from models.onnx_export import build_onnx, inference_session

ROOT = Path(os.environ.get("RGR_GOLDEN", FIXTURES))
# net__ and edge__ fixtures hold one forward/backward; train__ (test_train_parity) and pycaffe__ hold other things
NET_FIXTURES = fixture_names(ROOT, "net__") + fixture_names(ROOT, "edge__")
SOLVER_FIXTURES = fixture_names(ROOT, "solver__")
NO_FIXTURES = f"no golden fixtures under {ROOT} (python compare/golden/make_golden.py writes them)"

_CACHE: dict = {}


def _caffe_shaped(fx, key, ours):
    """Our 0-d loss/accuracy blob as (1,) where the fixture recorded Caffe's scalar as (1,)."""
    ours = np.asarray(ours)
    if ours.ndim == 0 and tuple(fx.meta(key)["shape"]) == (1,):
        return ours.reshape(1)
    return ours


def _prepared(name: str):
    """(fixture, net, module with Caffe's weights, inputs, dropout masks); one fixture cached at a time."""
    if name in _CACHE:
        return _CACHE[name]
    _CACHE.clear()
    fx = Fixture(name, ROOT)
    net = models.load_net(str(fx.net_path), phase=fx.phase)
    module = models.to_torch(net, seed=0)
    if fx.caffemodel is not None:
        models.load_caffemodel(module, fx.caffemodel, strict=True)
    else:
        shapes = {l.name: l.param_shapes for l in net.layers if l.param_shapes}
        transpose = {l.name: bool(l.proto.inner_product_param.transpose) for l in net.layers
                     if l.type == "InnerProduct"}
        with torch.no_grad():
            for layer, shp in shapes.items():  # one layer at a time: VGG_R's fc6 alone is 1.6 GB
                arrays = fx.params(shapes={layer: shp}, transpose=transpose)[layer]
                for p, a in zip(module.caffe_params()[layer], arrays):
                    p.copy_(torch.from_numpy(np.asarray(a, np.float32)).reshape(p.shape))
    inputs = fx.inputs()
    masks = fx.dropout_masks() if fx.phase == "TRAIN" else {}
    _CACHE[name] = (fx, net, module, inputs, masks)
    return _CACHE[name]


def _check_blobs(fx, net, outputs: dict) -> int:
    failures, n = [], 0
    for key in fx.keys("blob/"):
        blob = key[len("blob/"):]
        if blob not in net.blob_shapes:
            assert fx.meta(key)["stored"] == "split_of", f"{fx.name}: Caffe blob {blob!r} missing from our net"
            continue
        c = fx.compare(key, _caffe_shaped(fx, key, outputs[blob]))
        n += 1
        if not c.ok():
            failures.append(f"{blob}: {c.kind} max err {c.max_err:.3g} (scale {c.scale:.3g}, NaN mismatches "
                            f"{c.nan_mismatch})")
    assert not failures, f"{fx.name}: {len(failures)} of {n} blobs differ from Caffe:\n" + "\n".join(failures)
    return n


#: nets above this many parameters (VGG16, VGG_R: 134M-436M) take a minute or more each: marked slow
BIG_NET_PARAMS = 100_000_000


def _n_params(name: str) -> int:
    try:
        return int(Fixture(name, ROOT).prov.get("n_params", 0))
    except (FileNotFoundError, ValueError):
        return 0


# fixture-major order, so that torch and onnxruntime share one prepared module (see _prepared)
FORWARD_CASES = [pytest.param(name, backend, id=f"{backend}-{name}",
                              marks=[pytest.mark.slow] if _n_params(name) > BIG_NET_PARAMS else [])
                 for name in NET_FIXTURES for backend in ("torch", "onnxruntime")]


@pytest.mark.skipif(not NET_FIXTURES, reason=NO_FIXTURES)
@pytest.mark.parametrize("name,backend", FORWARD_CASES)
def test_forward_blobs_match_caffe(name, backend):
    fx, net, module, inputs, masks = _prepared(name)
    if backend == "torch":
        # a copy of the BatchNorm sums: a TRAIN forward updates them (compared with Caffe's below)
        saved = {k: [p.detach().clone() for p in v] for k, v in module.caffe_params().items()}
        with torch.no_grad():
            out = module(**{k: torch.from_numpy(v) for k, v in inputs.items()}, blobs="all",
                         dropout_masks={k: torch.from_numpy(v) for k, v in masks.items()})
        assert _check_blobs(fx, net, {k: v.numpy() for k, v in out.items()}) > 0
        _check_inplace(fx, net, lambda names: {k: v.numpy() for k, v in module(
            **{k: torch.from_numpy(v) for k, v in inputs.items()}, blobs=names,
            dropout_masks={k: torch.from_numpy(v) for k, v in masks.items()}).items()})
        for key in fx.keys("param/"):
            layer, i = key[len("param/"):].rsplit("/", 1)
            fx.check(key, module.caffe_params()[layer][int(i)].detach().numpy())
        with torch.no_grad():
            for k, v in saved.items():
                for p, s in zip(module.caffe_params()[k], v):
                    p.copy_(s)
        return
    sess = inference_session(build_onnx(module, outputs=net.blobs + _inplace_names(fx, net)))
    feeds = dict(inputs)
    feeds.update({f"{k}/mask": v for k, v in masks.items()})
    names = [o.name for o in sess.get_outputs()]
    res = sess.run(names, {i.name: feeds[i.name] for i in sess.get_inputs()})
    outs = {}
    for n_, r in zip(names, res):
        outs[n_[:-len("/output")] if n_.endswith("/output") and n_[:-7] in net.inputs else n_] = r
    assert _check_blobs(fx, net, outs) > 0
    _check_inplace(fx, net, lambda names: outs)


def _inplace_names(fx, net) -> list[str]:
    """``BLOB@LAYER`` for each ``inplace/<layer>`` array: the value an in-place-rewritten blob had after LAYER."""
    tops = {l.name: l.tops[0] for l in net.layers if l.tops}
    return [f"{tops[k[len('inplace/'):]]}@{k[len('inplace/'):]}" for k in fx.keys("inplace/")]


def _check_inplace(fx, net, run) -> None:
    names = _inplace_names(fx, net)
    if not names:
        return
    with torch.no_grad():
        got = run(names)
    for key, name in zip(fx.keys("inplace/"), names):
        fx.check(key, got[name])


BACKWARD_FIXTURES = [n for n in NET_FIXTURES if n.startswith("edge__")]


@pytest.mark.skipif(not BACKWARD_FIXTURES, reason=NO_FIXTURES)
@pytest.mark.parametrize("name", BACKWARD_FIXTURES)
def test_backward_diffs_match_caffe(name):
    fx, net, module, inputs, masks = _prepared(name)
    if not fx.keys("diff/") and not fx.keys("pdiff/"):
        pytest.skip(f"{name}: no diffs stored")
    module.zero_grad(set_to_none=True)
    label_like = {l.bottoms[1] for l in net.layers if len(l.bottoms) > 1 and l.type in ("SoftmaxWithLoss", "Accuracy")}
    # Caffe computes input diffs only with force_backward (net.cpp: blob_need_backward_)
    force = bool(net.proto.force_backward)
    xs = {k: torch.from_numpy(v).requires_grad_(force and k not in label_like) for k, v in inputs.items()}
    out = module(**xs, blobs="all", dropout_masks={k: torch.from_numpy(v) for k, v in masks.items()},
                 retain_grad=True)
    objective = None
    for blob, w in module.loss_weights().items():
        term = out[blob].sum() * w
        objective = term if objective is None else objective + term
    for blob, recipe in fx.prov.get("top_diffs", {}).items():
        top = seeded.seeded_array(recipe.split("'")[1], tuple(out[blob].shape), 1.0)
        term = (out[blob] * torch.from_numpy(np.asarray(top, np.float32))).sum()
        objective = term if objective is None else objective + term
    if objective is not None:
        objective.backward()
    diffs = module.blob_diffs()
    failures = []
    for key in fx.keys("diff/"):
        blob = key[len("diff/"):]
        if blob not in net.blob_shapes:
            continue  # Caffe's auto split blobs: their sum is the diff of the source blob, compared below
        ours = diffs.get(blob)
        # no gradient reached it: zeros of its run-time shape (a Filter top's batch is known only at run time)
        shape = tuple(out[blob].shape) if blob in out else net.blob_shapes[blob]
        ours = np.zeros(shape, np.float32) if ours is None else ours.detach().numpy()
        c = fx.compare(key, _caffe_shaped(fx, key, ours))
        if not c.ok():
            failures.append(f"{key}: max err {c.max_err:.3g} (scale {c.scale:.3g})")
    for key in fx.keys("pdiff/"):
        layer, i = key[len("pdiff/"):].rsplit("/", 1)
        p = module.caffe_params()[layer][int(i)]
        ours = p.grad.numpy() if p.grad is not None else np.zeros(p.shape, np.float32)
        c = fx.compare(key, ours)
        if not c.ok():
            failures.append(f"{key}: max err {c.max_err:.3g} (scale {c.scale:.3g})")
    assert not failures, f"{name}: diffs differ from Caffe:\n" + "\n".join(failures)


@pytest.mark.skipif(not SOLVER_FIXTURES, reason=NO_FIXTURES)
@pytest.mark.parametrize("name", SOLVER_FIXTURES)
def test_solver_trajectory_matches_caffe(name):
    fx = Fixture(name, ROOT)
    net = models.load_net(str(fx.net_path), phase="TRAIN")
    module = models.to_torch(net, seed=0)
    with torch.no_grad():
        for layer in net.layers:
            if not layer.param_shapes:
                continue
            vals = seeded.layer_params(f"solver/{layer.name}", layer.type, layer.param_shapes)
            for p, v in zip(module.caffe_params()[layer.name], vals):
                p.copy_(torch.from_numpy(v))
    solver = models.CaffeSGD.from_prototxt((fx.dir / "solver.prototxt").read_text(), module)
    data, label = fx.npz["data"], fx.npz["label"]
    batch, iter_size = fx.prov["batch"], fx.prov["iter_size"]

    def close(key, ours):
        ref = np.asarray(fx.npz[key], np.float64).ravel()
        err = float(np.abs(np.asarray(ours, np.float64).ravel() - ref).max())
        assert err <= TOL * max(1.0, float(np.abs(ref).max())), f"{name} {key}: max|ours-caffe| = {err:.3g}"

    def check_params(k):
        for layer, ps in module.caffe_params().items():
            for j, p in enumerate(ps):
                close(f"param/{layer}/{j}/iter{k}", p.detach().numpy())

    check_params(0)
    for k in range(1, fx.prov["iterations"] + 1):
        def batches(sub, k=k):
            f = (k - 1) * iter_size + sub
            return {"data": torch.from_numpy(data[f * batch:(f + 1) * batch]),
                    "label": torch.from_numpy(label[f * batch:(f + 1) * batch])}
        solver.iteration(batches)
        check_params(k)
        close(f"loss/iter{k}", solver.last_loss)


# Other opsets than the default: the oldest written and the newest the installed onnx defines, on the small nets
# (every edge__ net and CIFAR: each layer type's export at both ends of the range)
OPSET_FIXTURES = [n for n in NET_FIXTURES if n.startswith("edge__") or "cifar" in n]


@pytest.mark.skipif(not NET_FIXTURES, reason=NO_FIXTURES)
@pytest.mark.parametrize("opset", ["min", "newest"])
@pytest.mark.parametrize("name", OPSET_FIXTURES)
def test_onnx_blobs_match_caffe_at_other_opsets(name, opset):
    import onnx

    from models.onnx_export import MIN_OPSET
    op = MIN_OPSET if opset == "min" else onnx.defs.onnx_opset_version()
    fx, net, module, inputs, masks = _prepared(name)
    model = build_onnx(module, outputs=net.blobs + _inplace_names(fx, net), opset=op)
    assert model.opset_import[0].version == op
    sess = inference_session(model)
    feeds = dict(inputs)
    feeds.update({f"{k}/mask": v for k, v in masks.items()})
    names = [o.name for o in sess.get_outputs()]
    res = sess.run(names, {i.name: feeds[i.name] for i in sess.get_inputs()})
    outs = {(n_[:-len("/output")] if n_.endswith("/output") and n_[:-7] in net.inputs else n_): r
            for n_, r in zip(names, res)}
    assert _check_blobs(fx, net, outs) > 0
