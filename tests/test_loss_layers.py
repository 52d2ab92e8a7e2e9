"""HingeLoss, InfogainLoss, MultinomialLogisticLoss, SigmoidCrossEntropyLoss and ContrastiveLoss: forward and
backward of models/layers/{log_losses,margin_losses}.py against loop-by-loop numpy transcriptions of Caffe's
``Forward_cpu`` / ``Backward_cpu`` (brocolli-caffe 9.0.2 = BVLC Caffe 1.0 src/caffe/layers/*_loss_layer.cpp; the
SigmoidCrossEntropyLoss ``loss_param`` cases follow BVLC master's later version of that file), the edge cases
where autograd would differ from Caffe (clamped probabilities, zero margins, coincident pairs), which bottoms get
a diff, the layers' shape checks, and, when pycaffe imports, real Caffe's forward and backward on the same nets.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import models
from models.errors import CaffeError, InputError, NetDefinitionError, ShapeError
from models.schema import pb

THR = np.float32(1e-20)  # loss_layer.hpp kLOG_THRESHOLD
F = np.float32


# ---- numpy transcriptions of the .cpp files (float32 scalars, Caffe's loop order) ---------------------------------
def ref_hinge(x, label, l2, lw):
    """hinge_loss_layer.cpp Forward_cpu / Backward_cpu."""
    num = x.shape[0]
    dim = x.size // num
    diff = x.reshape(num, dim).astype(F).copy()
    for i in range(num):
        diff[i, int(label.flat[i])] *= -1
    for i in range(num):
        for j in range(dim):
            diff[i, j] = max(F(0), F(1) + diff[i, j])
    loss = (F(np.dot(diff.ravel(), diff.ravel())) if l2 else F(np.abs(diff).sum())) / F(num)
    for i in range(num):
        diff[i, int(label.flat[i])] *= -1
    grad = diff * (F(lw) * F(2) / F(num)) if l2 else np.sign(diff) * (F(lw) / F(num))
    return F(loss), grad.reshape(x.shape).astype(F)


def ref_multinomial_logistic(p, label, lw):
    """multinomial_logistic_loss_layer.cpp Forward_cpu / Backward_cpu."""
    num = p.shape[0]
    dim = p.size // num
    flat = p.reshape(num, dim)
    loss = F(0)
    for i in range(num):
        loss -= F(np.log(max(flat[i, int(label.flat[i])], THR)))
    grad = np.zeros_like(flat)
    scale = -F(lw) / F(num)
    for i in range(num):
        lab = int(label.flat[i])
        grad[i, lab] = scale / max(flat[i, lab], THR)
    return F(loss / F(num)), grad.reshape(p.shape)


def ref_infogain(p, label, h, lw):
    """infogain_loss_layer.cpp Forward_cpu / Backward_cpu (H read flat: ``infogain_mat[label * dim + j]``)."""
    num = p.shape[0]
    dim = p.size // num
    flat, hm = p.reshape(num, dim), h.reshape(-1)
    loss = F(0)
    grad = np.zeros_like(flat)
    scale = -F(lw) / F(num)
    for i in range(num):
        lab = int(label.flat[i])
        for j in range(dim):
            prob = max(flat[i, j], THR)
            loss -= hm[lab * dim + j] * F(np.log(prob))
            grad[i, j] = scale * hm[lab * dim + j] / prob
    return F(loss / F(num)), grad.reshape(p.shape)


def ref_sigmoid_ce(x, t, lw, normalization="BATCH_SIZE", ignore=None):
    """sigmoid_cross_entropy_loss_layer.cpp Forward_cpu / Backward_cpu; the brocolli fork divides by ``num``
    (BATCH_SIZE); ``ignore`` and the other modes as BVLC master's version (``LossLayer::GetNormalizer``)."""
    xs, ts = x.ravel().astype(F), t.ravel().astype(F)
    loss, valid = F(0), 0
    for i in range(xs.size):
        if ignore is not None and int(ts[i]) == ignore:
            continue
        pos = F(xs[i] >= 0)
        loss -= xs[i] * (ts[i] - pos) - F(np.log(F(1) + F(np.exp(xs[i] - F(2) * xs[i] * pos))))
        valid += 1
    norm = {"FULL": xs.size, "VALID": valid if ignore is not None else xs.size, "BATCH_SIZE": x.shape[0],
            "NONE": 1}[normalization]
    norm = F(max(1, norm))
    with np.errstate(over="ignore"):  # exp(90) is inf in float, as in Caffe: sigmoid 0
        sig = (1.0 / (1.0 + np.exp(-xs).astype(np.float64))).astype(F)  # sigmoid_layer.cpp
    grad = (sig - ts) * (F(lw) / norm)
    if ignore is not None:
        grad[ts.astype(np.int64) == ignore] = 0
    return F(loss / norm), grad.reshape(x.shape)


def ref_contrastive(a, b, y, margin, legacy, lw):
    """contrastive_loss_layer.cpp Forward_cpu / Backward_cpu."""
    num, ch = a.shape[0], a.size // a.shape[0]
    diff = (a - b).reshape(num, ch).astype(F)
    dist_sq = np.array([F(np.dot(diff[i], diff[i])) for i in range(num)], F)
    margin = F(margin)
    loss = F(0)
    for i in range(num):
        if int(y.flat[i]):
            loss += dist_sq[i]
        elif legacy:
            loss += max(margin - dist_sq[i], F(0))
        else:
            d = max(margin - F(np.sqrt(dist_sq[i])), F(0))
            loss += d * d
    loss = loss / F(num) / F(2)
    grads = []
    for sign in (F(1), F(-1)):
        alpha = sign * F(lw) / F(num)
        g = np.zeros((num, ch), F)
        for j in range(num):
            if int(y.flat[j]):
                g[j] = alpha * diff[j]
            else:
                if legacy:
                    mdist, beta = margin - dist_sq[j], -alpha
                else:
                    dist = F(np.sqrt(dist_sq[j]))
                    mdist = margin - dist
                    beta = -alpha * mdist / (dist + F(1e-4))
                g[j] = beta * diff[j] if mdist > 0 else 0
        grads.append(g.reshape(a.shape))
    return F(loss), grads[0], grads[1]


# ---- helpers: a net of Input blobs and one loss layer ----------------------------------------------------------
def _net_text(layer_body: str, inputs: dict, force_backward: bool = True) -> str:
    lines = ['name: "l"'] + (["force_backward: true"] if force_backward else [])
    for name, shape in inputs.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        lines.append(f'layer {{ name: "in_{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}')
    lines.append(layer_body)
    return "\n".join(lines) + "\n"


def ours(text: str, arrays: dict, grad_of=(), lw=None):
    """Forward the net, backward ``loss_weight * loss``; the loss and the diffs of ``grad_of``."""
    net = models.load_net(text)
    m = models.to_torch(net)
    w = lw if lw is not None else net.layers[-1].loss_weights[0]
    ts = {k: torch.tensor(v, requires_grad=k in grad_of) for k, v in arrays.items()}
    out = m(**ts, blobs=["loss"])["loss"]
    assert out.shape == () and out.dtype == torch.float32
    if out.requires_grad:  # not when propagate_down cut every bottom off
        (out * w).backward()
    return float(out.detach()), [None if ts[k].grad is None else ts[k].grad.numpy() for k in grad_of]


def _layer(type_, bottoms, extra=""):
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    return f'layer {{ name: "loss" type: "{type_}" {b} top: "loss" {extra} }}'


def _write_h(path, h):
    blob = pb.BlobProto(num=1, channels=1, height=h.shape[0], width=h.shape[1])
    blob.data.extend(h.ravel().tolist())
    path.write_bytes(blob.SerializeToString())
    return str(path)


RNG = np.random.default_rng(20190418)
N, C = 5, 4


def _probs(n=N, c=C):
    e = np.exp(RNG.standard_normal((n, c)))
    return (e / e.sum(1, keepdims=True)).astype(F)


LABEL = np.array([0, 3, 1, 2.0, 3], F)
H = (np.eye(C) + 0.3 * RNG.uniform(0, 1, (C, C))).astype(F)


def _close(a, b, rtol=2e-6, atol=1e-7):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


# ---- HingeLoss -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_forward_backward_with_zero_margins(norm):
    x = RNG.standard_normal((N, C, 1, 1)).astype(F)
    x[0, 0] = 1.0   # 1 - x at the label: margin exactly 0 (L1 sign gives 0 there)
    x[1, 0] = -1.0  # 1 + x elsewhere: margin exactly 0
    x[2, 2] = 3.0   # deep inside the margin: clamped to 0
    text = _net_text(_layer("HingeLoss", ["x", "label"], f"loss_weight: 0.7 hinge_loss_param {{ norm: {norm} }}"),
                     {"x": x.shape, "label": (N,)})
    loss, (gx,) = ours(text, {"x": x, "label": LABEL}, ["x"])
    ref_loss, ref_g = ref_hinge(x, LABEL, norm == "L2", 0.7)
    _close(loss, ref_loss)
    _close(gx, ref_g)
    assert gx.reshape(N, C)[0, 0] == 0 and gx.reshape(N, C)[1, 0] == 0


def test_hinge_default_norm_is_l1_and_labels_truncate():
    x = RNG.standard_normal((N, C)).astype(F)
    lab = LABEL + F(0.75)  # static_cast<int>: 0.75 -> 0, 3.75 -> 3
    loss, (gx,) = ours(_net_text(_layer("HingeLoss", ["x", "label"]), {"x": x.shape, "label": (N,)}),
                       {"x": x, "label": lab}, ["x"])
    ref_loss, ref_g = ref_hinge(x, LABEL, False, 1.0)
    _close(loss, ref_loss)
    _close(gx, ref_g)


def test_hinge_label_out_of_range_is_one_line_error():
    x = np.zeros((2, 3), F)
    with pytest.raises(InputError, match=r"layer 'loss' \(HingeLoss\): labels must lie in \[0, 3\)"):
        ours(_net_text(_layer("HingeLoss", ["x", "label"]), {"x": x.shape, "label": (2,)}),
             {"x": x, "label": np.array([0, 3], F)})


# ---- MultinomialLogisticLoss ---------------------------------------------------------------------------------------
def test_multinomial_logistic_clamp_gradient_is_caffes_not_autograds():
    p = _probs()
    p[1, 3] = 0.0  # the label's probability is 0: log clamps at 1e-20, the diff is -lw / num / 1e-20
    text = _net_text(_layer("MultinomialLogisticLoss", ["p", "label"], "loss_weight: 0.25"),
                     {"p": p.shape, "label": (N, 1, 1, 1)})
    loss, (gp,) = ours(text, {"p": p, "label": LABEL.reshape(N, 1, 1, 1)}, ["p"])
    ref_loss, ref_g = ref_multinomial_logistic(p, LABEL, 0.25)
    _close(loss, ref_loss)
    _close(gp, ref_g)
    assert gp[1, 3] == pytest.approx(-0.25 / N / 1e-20, rel=1e-6) and np.isfinite(gp).all()


def test_multinomial_logistic_label_shape_checked():
    with pytest.raises(ShapeError, match="channels, height and width 1"):
        models.load_net(_net_text(_layer("MultinomialLogisticLoss", ["p", "label"]),
                                  {"p": (N, C), "label": (N, 2)}))


# ---- InfogainLoss ------------------------------------------------------------------------------------------------
def test_infogain_from_binaryproto_source(tmp_path):
    p = _probs()
    p[0, 2] = 0.0  # clamped in the log and in the diff's denominator
    src = _write_h(tmp_path / "H.binaryproto", H)
    text = _net_text(_layer("InfogainLoss", ["p", "label"], f'infogain_loss_param {{ source: "{src}" }}'),
                     {"p": p.shape, "label": (N,)})
    loss, (gp,) = ours(text, {"p": p, "label": LABEL}, ["p"], lw=0.5)
    ref_loss, ref_g = ref_infogain(p, LABEL, H, 0.5)
    _close(loss, ref_loss)
    _close(gp, ref_g, rtol=1e-5)
    assert len(models.to_torch(models.load_net(text)).caffe_params()) == 0  # H is not a learnable blob


def test_infogain_from_third_bottom_gets_no_diff():
    p = _probs()
    text = _net_text(_layer("InfogainLoss", ["p", "label", "H"]), {"p": p.shape, "label": (N,), "H": (1, 1, C, C)})
    loss, (gp,) = ours(text, {"p": p, "label": LABEL, "H": H.reshape(1, 1, C, C)}, ["p"])
    ref_loss, ref_g = ref_infogain(p, LABEL, H, 1.0)
    _close(loss, ref_loss)
    _close(gp, ref_g)
    with pytest.raises(NetDefinitionError, match="cannot backpropagate to infogain inputs"):
        ours(text, {"p": p, "label": LABEL, "H": H.reshape(1, 1, C, C)}, ["p", "H"])


def test_infogain_bad_h_and_missing_source(tmp_path):
    with pytest.raises(ShapeError, match=r"must be \(1, 1, 4, 4\)"):
        models.load_net(_net_text(_layer("InfogainLoss", ["p", "label", "H"]),
                                  {"p": (N, C), "label": (N,), "H": (C, C)}))
    src = _write_h(tmp_path / "H3.binaryproto", np.eye(3, dtype=F))
    text = _net_text(_layer("InfogainLoss", ["p", "label"], f'infogain_loss_param {{ source: "{src}" }}'),
                     {"p": (N, C), "label": (N,)})
    with pytest.raises(InputError, match=r"expected \(1, 1, 4, 4\)"):
        models.to_torch(models.load_net(text))
    with pytest.raises(InputError, match="infogain_loss_param.source 'nowhere.binaryproto' does not exist"):
        models.to_torch(models.load_net(text.replace(src, "nowhere.binaryproto")))
    with pytest.raises(NetDefinitionError, match="Infogain matrix source must be specified"):
        models.to_torch(models.load_net(_net_text(_layer("InfogainLoss", ["p", "label"]),
                                                  {"p": (N, C), "label": (N,)})))


# ---- SigmoidCrossEntropyLoss -----------------------------------------------------------------------------------
def test_sigmoid_cross_entropy_stable_and_divided_by_batch():
    x = (RNG.standard_normal((N, 2, 3, 2)) * 4).astype(F)
    x.flat[:4] = [60.0, -60.0, 0.0, -90.0]  # exp would overflow in the naive formula
    t = (RNG.uniform(0, 1, x.shape) < 0.5).astype(F)
    text = _net_text(_layer("SigmoidCrossEntropyLoss", ["x", "t"], "loss_weight: 0.5"),
                     {"x": x.shape, "t": x.shape})
    loss, (gx,) = ours(text, {"x": x, "t": t}, ["x"])
    ref_loss, ref_g = ref_sigmoid_ce(x, t, 0.5)
    assert np.isfinite(loss)
    _close(loss, ref_loss, rtol=1e-5)
    _close(gx, ref_g)


@pytest.mark.parametrize("loss_param,mode,ignore", [
    ("normalization: VALID ignore_label: -1", "VALID", -1),
    ("normalization: FULL ignore_label: -1", "FULL", -1),
    ("normalization: NONE", "NONE", None),
    ("normalize: true", "VALID", None),
    ("normalize: false ignore_label: -1", "BATCH_SIZE", -1),
])
def test_sigmoid_cross_entropy_loss_param_as_bvlc_master(loss_param, mode, ignore):
    x = RNG.standard_normal((N, C)).astype(F)
    t = (RNG.uniform(0, 1, x.shape) < 0.5).astype(F)
    t[0, :2] = -1  # ignored when ignore_label: -1
    text = _net_text(_layer("SigmoidCrossEntropyLoss", ["x", "t"], f"loss_param {{ {loss_param} }}"),
                     {"x": x.shape, "t": x.shape})
    loss, (gx,) = ours(text, {"x": x, "t": t}, ["x"])
    ref_loss, ref_g = ref_sigmoid_ce(x, t, 1.0, mode, ignore)
    _close(loss, ref_loss, rtol=1e-5)
    _close(gx, ref_g)
    if ignore is not None:
        assert (gx[0, :2] == 0).all()


def test_sigmoid_cross_entropy_count_checked_and_targets_get_no_diff():
    with pytest.raises(ShapeError, match="must have the same count"):
        models.load_net(_net_text(_layer("SigmoidCrossEntropyLoss", ["x", "t"]), {"x": (N, C), "t": (N, 3)}))
    x = RNG.standard_normal((N, C)).astype(F)
    text = _net_text(_layer("SigmoidCrossEntropyLoss", ["x", "t"]), {"x": x.shape, "t": x.shape})
    with pytest.raises(NetDefinitionError, match="SigmoidCrossEntropyLoss Layer cannot backpropagate to label"):
        ours(text, {"x": x, "t": np.zeros_like(x)}, ["x", "t"])


# ---- ContrastiveLoss ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_margin_legacy_and_edge_pairs(legacy):
    a = RNG.standard_normal((6, 3, 1, 1)).astype(F)
    b = RNG.standard_normal((6, 3, 1, 1)).astype(F)
    b[2] = a[2]             # coincident dissimilar pair: dist 0 (the 1e-4 keeps the diff finite: 0)
    b[3] = a[3] + 5         # far beyond the margin: no loss, no diff
    y = np.array([1, 0, 0, 0, 0.7, 1], F)  # 0.7 -> int 0: dissimilar
    extra = f"loss_weight: 0.2 contrastive_loss_param {{ margin: 2.0 legacy_version: {str(legacy).lower()} }}"
    text = _net_text(_layer("ContrastiveLoss", ["a", "b", "y"], extra),
                     {"a": a.shape, "b": b.shape, "y": (6, 1, 1, 1)})
    loss, (ga, gb) = ours(text, {"a": a, "b": b, "y": y.reshape(6, 1, 1, 1)}, ["a", "b"])
    ref_loss, ref_a, ref_b = ref_contrastive(a, b, y, 2.0, legacy, 0.2)
    _close(loss, ref_loss)
    _close(ga, ref_a)
    _close(gb, ref_b)
    assert (ga[3] == 0).all() and (ga[2] == 0).all()


def test_contrastive_shapes_and_similarity_never_gets_a_diff():
    with pytest.raises(ShapeError, match="ContrastiveLoss takes two"):
        models.load_net(_net_text(_layer("ContrastiveLoss", ["a", "b", "y"]),
                                  {"a": (N, 3), "b": (N, 4), "y": (N,)}))
    a, b = RNG.standard_normal((2, N, 3)).astype(F)
    y = np.ones(N, F)
    text = _net_text(_layer("ContrastiveLoss", ["a", "b", "y"]), {"a": a.shape, "b": b.shape, "y": (N,)})
    _, (ga, gy) = ours(text, {"a": a, "b": b, "y": y}, ["a", "y"])
    assert gy is None and np.abs(ga).sum() > 0


# ---- what every one of them shares -------------------------------------------------------------------------------
ALL = {
    "HingeLoss": (["x", "label"], {"x": (N, C), "label": (N,)}),
    "MultinomialLogisticLoss": (["x", "label"], {"x": (N, C), "label": (N,)}),
    "InfogainLoss": (["x", "label", "H"], {"x": (N, C), "label": (N,), "H": (1, 1, C, C)}),
    "SigmoidCrossEntropyLoss": (["x", "label"], {"x": (N, C), "label": (N, C)}),
    "ContrastiveLoss": (["x", "x2", "label"], {"x": (N, C), "x2": (N, C), "label": (N,)}),
}


def _arrays(shapes):
    out = {k: _probs(s[0], int(np.prod(s[1:]))).reshape(s) if k == "x" else RNG.standard_normal(s).astype(F)
           for k, s in shapes.items()}
    out["label"] = LABEL.copy() if shapes["label"] == (N,) else (RNG.uniform(0, 1, shapes["label"]) < .5).astype(F)
    if "H" in out:
        out["H"] = H.reshape(1, 1, C, C)
    return out


@pytest.mark.parametrize("type_", sorted(ALL))
def test_default_loss_weight_one_propagate_down_and_onnx(type_):
    from models.onnx_export import build_onnx
    bottoms, shapes = ALL[type_]
    net = models.load_net(_net_text(_layer(type_, bottoms), shapes))
    assert net.layers[-1].loss_weights == [1.0] and net.blob_shapes["loss"] == ()
    # propagate_down: false (one per bottom): Caffe writes no diff into bottom 0
    pd = " ".join(["propagate_down: false"] * len(bottoms))
    _, (g,) = ours(_net_text(_layer(type_, bottoms, pd), shapes), _arrays(shapes), ["x"])
    assert g is None
    with pytest.raises(NetDefinitionError, match="either 0 or bottom_size times"):
        models.to_torch(models.load_net(_net_text(_layer(type_, bottoms, "propagate_down: false"), shapes)))
    if type_ != "ContrastiveLoss":  # Caffe aborts when asked for a label diff
        forced = " ".join(f"propagate_down: {'true' if i == 1 else 'false'}" for i in range(len(bottoms)))
        with pytest.raises(NetDefinitionError, match="cannot backpropagate to label inputs"):
            models.to_torch(models.load_net(_net_text(_layer(type_, bottoms, forced), shapes)))
    # ONNX (the forward only) in onnxruntime equals the torch forward
    from models.onnx_export import inference_session
    arrays = _arrays(shapes)
    m = models.to_torch(net)
    with torch.no_grad():
        want = float(m(**{k: torch.from_numpy(v) for k, v in arrays.items()}, blobs=["loss"])["loss"])
    sess = inference_session(build_onnx(net, outputs=["loss"]))
    feed = {i.name: arrays[i.name] for i in sess.get_inputs()}
    got = sess.run(None, feed)[0]
    assert got.shape == () and float(got) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("case", ["infogain_source", "sigmoid_ignore", "sigmoid_full", "sigmoid_none",
                                  "hinge_l2", "contrastive_legacy"])
def test_onnx_variants_in_onnxruntime(case, tmp_path):
    from models.onnx_export import build_onnx, inference_session
    src = _write_h(tmp_path / "H.binaryproto", H)
    type_, bottoms, shapes, extra = {
        "infogain_source": ("InfogainLoss", ["x", "label"], {"x": (N, C), "label": (N,)},
                            f'infogain_loss_param {{ source: "{src}" }}'),
        "sigmoid_ignore": ("SigmoidCrossEntropyLoss", ["x", "label"], {"x": (N, 2, 2), "label": (N, 2, 2)},
                           "loss_param { ignore_label: 0 normalization: VALID }"),
        "sigmoid_full": ("SigmoidCrossEntropyLoss", ["x", "label"], {"x": (N, C), "label": (N, C)},
                         "loss_param { normalization: FULL }"),
        "sigmoid_none": ("SigmoidCrossEntropyLoss", ["x", "label"], {"x": (N, C), "label": (N, C)},
                         "loss_param { normalization: NONE }"),
        "hinge_l2": ("HingeLoss", ["x", "label"], {"x": (N, C, 1, 1), "label": (N, 1)},
                     "hinge_loss_param { norm: L2 }"),
        "contrastive_legacy": ("ContrastiveLoss", ["x", "x2", "label"],
                               {"x": (N, C), "x2": (N, C), "label": (N, 1, 1, 1)},
                               "contrastive_loss_param { legacy_version: true margin: 3 }"),
    }[case]
    net = models.load_net(_net_text(_layer(type_, bottoms, extra), shapes))
    arrays = _arrays(shapes)
    if type_ == "SigmoidCrossEntropyLoss":
        arrays["x"] = (RNG.standard_normal(shapes["x"]) * 30).astype(F)  # large |x|: the stable formula
    with torch.no_grad():
        want = float(models.to_torch(net)(**{k: torch.from_numpy(v) for k, v in arrays.items()},
                                          blobs=["loss"])["loss"])
    sess = inference_session(build_onnx(net, outputs=["loss"]))
    got = sess.run(None, {i.name: arrays[i.name] for i in sess.get_inputs()})[0]
    assert np.isfinite(want) and float(got) == pytest.approx(want, rel=1e-5)


def test_onnx_refuses_a_label_blob_of_several_values_per_item():
    from models.onnx_export import build_onnx
    net = models.load_net(_net_text(_layer("HingeLoss", ["x", "label"]), {"x": (N, C), "label": (N, 2)}))
    with pytest.raises(NetDefinitionError, match=r"layer 'loss' \(HingeLoss\): no ONNX export for bottom 1 of "
                                                 r"shape \(5, 2\)"):
        build_onnx(net)


def test_bf16_autocast_keeps_the_loss_float32():
    bottoms, shapes = ALL["SigmoidCrossEntropyLoss"]
    m = models.to_torch(models.load_net(_net_text(_layer("SigmoidCrossEntropyLoss", bottoms), shapes)))
    arrays = _arrays(shapes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(**{k: torch.from_numpy(v) for k, v in arrays.items()}, blobs=["loss"])["loss"]
    assert out.dtype == torch.float32
    _close(float(out), ref_sigmoid_ce(arrays["x"], arrays["label"], 1.0)[0], rtol=1e-5)


def test_errors_are_caffe_errors():
    assert issubclass(ShapeError, CaffeError) and issubclass(InputError, CaffeError)


# ---- real Caffe (pycaffe), when it imports ---------------------------------------------------------------------
def _pycaffe():
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import caffe  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"pycaffe is not importable ({type(e).__name__}: {e})")
    caffe.set_mode_cpu()
    return caffe


REAL_CASES = {
    "hinge_l1": ("HingeLoss", ["x", "label"], {"x": (N, C), "label": (N,)}, "loss_weight: 0.7"),
    "hinge_l2": ("HingeLoss", ["x", "label"], {"x": (N, C, 1, 1), "label": (N,)},
                 "hinge_loss_param { norm: L2 }"),
    "mlogistic": ("MultinomialLogisticLoss", ["x", "label"], {"x": (N, C), "label": (N, 1, 1, 1)}, ""),
    "infogain_bottom": ("InfogainLoss", ["x", "label", "H"], {"x": (N, C), "label": (N,), "H": (1, 1, C, C)},
                        "loss_weight: 0.5"),
    "infogain_source": ("InfogainLoss", ["x", "label"], {"x": (N, C), "label": (N,)}, "SOURCE"),
    "sigmoid_ce": ("SigmoidCrossEntropyLoss", ["x", "label"], {"x": (N, 2, 3), "label": (N, 2, 3)}, ""),
    "contrastive": ("ContrastiveLoss", ["x", "x2", "label"], {"x": (N, C), "x2": (N, C), "label": (N,)},
                    "contrastive_loss_param { margin: 2.0 }"),
    "contrastive_legacy": ("ContrastiveLoss", ["x", "x2", "label"], {"x": (N, C), "x2": (N, C), "label": (N,)},
                           "loss_weight: 0.3 contrastive_loss_param { margin: 1.5 legacy_version: true }"),
}


@pytest.mark.parametrize("case", sorted(REAL_CASES))
def test_against_real_caffe(case, tmp_path):
    caffe = _pycaffe()
    type_, bottoms, shapes, extra = REAL_CASES[case]
    if extra == "SOURCE":
        extra = f'infogain_loss_param {{ source: "{_write_h(tmp_path / "H.binaryproto", H)}" }}'
    arrays = _arrays(shapes)
    if type_ == "SigmoidCrossEntropyLoss":
        arrays["x"] = (RNG.standard_normal(shapes["x"]) * 3).astype(F)
    if type_ == "ContrastiveLoss":
        arrays["label"] = np.array([1, 0, 0, 1, 0], F)
        arrays["x2"][2] = arrays["x"][2] + 3  # one dissimilar pair beyond the margin
    if type_ == "MultinomialLogisticLoss":
        arrays["x"][1, 3] = 0.0  # clamped at the label (LABEL[1] == 3)
    text = _net_text(_layer(type_, bottoms, extra), shapes)
    diff_blob = {"x": "x", "x2": "x2"}
    if "H" in bottoms:
        # force_backward would ask InfogainLoss for H's diff (AllowForceBackward(2)), which Caffe refuses: take
        # the scores through an identity Scale layer (filler constant 1) so that they alone need backward
        text = _net_text(_layer(type_, ["xs"] + bottoms[1:], extra), shapes, force_backward=False).replace(
            'layer { name: "loss"', 'layer { name: "id" type: "Scale" bottom: "x" top: "xs" }\nlayer { name: "loss"')
        diff_blob["x"] = "xs"
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    net = caffe.Net(str(path), caffe.TRAIN)
    for k, v in arrays.items():
        net.blobs[k].data[...] = v.reshape(net.blobs[k].data.shape)
    real_loss = float(net.forward()["loss"])
    net.backward()
    grad_of = [b for b in bottoms if b in ("x", "x2")]
    real_grads = [net.blobs[diff_blob[b]].diff.copy() for b in grad_of]
    loss, grads = ours(text, arrays, grad_of)
    _close(loss, real_loss, rtol=1e-5)
    for g, r in zip(grads, real_grads):
        _close(g, r.reshape(g.shape), rtol=1e-5, atol=1e-6)


# ---- BVLC master's InfogainLoss (a caffe.proto with infogain_loss_param.axis) --------------------------------------
def ref_infogain_master(x, label, h, lw, axis=1, normalization="VALID", ignore=None):
    """BVLC master infogain_loss_layer.cpp (softmax inside, ``axis``, ``normalization``, ``ignore_label``)
    Forward_cpu / Backward_cpu, with softmax_layer.cpp's max-subtracted softmax."""
    outer, c = int(np.prod(x.shape[:axis])), x.shape[axis]
    inner = x.size // (outer * c)
    x3 = x.reshape(outer, c, inner).astype(F)
    e = np.exp(x3 - x3.max(1, keepdims=True))
    prob = (e / e.sum(1, keepdims=True)).astype(F)
    hm = h.reshape(-1).astype(F)
    loss, count = F(0), 0
    for i in range(outer):
        for j in range(inner):
            y = int(label.flat[i * inner + j])
            if ignore is not None and y == ignore:
                continue
            for l in range(c):
                loss -= hm[y * c + l] * F(np.log(max(prob[i, l, j], THR)))
            count += 1
    norm = F(max(1, {"FULL": outer * inner, "VALID": count, "BATCH_SIZE": outer, "NONE": 1}[normalization]))
    sum_rows = np.array([sum(hm[r * c + col] for col in range(c)) for r in range(c)], F)
    grad = np.zeros_like(prob)
    for i in range(outer):
        for j in range(inner):
            y = int(label.flat[i * inner + j])
            if ignore is not None and y == ignore:
                continue
            for l in range(c):
                grad[i, l, j] = prob[i, l, j] * sum_rows[y] - hm[y * c + l]
    return F(loss / norm), (grad * (F(lw) / norm)).reshape(x.shape), prob.reshape(x.shape)


@pytest.mark.parametrize("mode,ignore", [("VALID", 2), ("FULL", None), ("BATCH_SIZE", 0), ("NONE", None)])
def test_infogain_master_softmax_inside(mode, ignore):
    from models.layers.log_losses import CaffeInfogainSoftmaxLoss
    x = (RNG.standard_normal((3, C, 2)) * 3).astype(F)
    x[0, :, 0] = [40, -40, 0, 1]  # a probability below kLOG_THRESHOLD: clamped in the log only
    label = np.array([[1, 2], [2, 0], [3, 3]], F)
    m = CaffeInfogainSoftmaxLoss("loss", [None] * 3, 1, mode, ignore, 2)
    xt = torch.tensor(x, requires_grad=True)
    loss, prob = m(xt, torch.from_numpy(label), torch.from_numpy(H.reshape(C, C)))
    (loss * 0.5).backward()
    ref_loss, ref_g, ref_p = ref_infogain_master(x, label, H, 0.5, 1, mode, ignore)
    _close(float(loss.detach()), ref_loss, rtol=1e-5)
    _close(xt.grad.numpy(), ref_g, rtol=1e-5, atol=1e-6)
    _close(prob.numpy(), ref_p, rtol=1e-5, atol=1e-7)
    assert not prob.requires_grad


MASTER_SNIPPET = """
import sys, numpy as np, torch, models
from models.schema import use_proto
use_proto(sys.argv[1])
arr = dict(np.load(sys.argv[2]))
net = models.load_net(open(sys.argv[3]).read())
m = models.to_torch(net)
x = torch.tensor(arr["x"], requires_grad=True)
out = m(x=x, label=torch.from_numpy(arr["label"]), blobs=["loss", "prob"])
(out["loss"] * net.layers[-1].loss_weights[0]).backward()
np.savez(sys.argv[4], loss=out["loss"].detach().numpy(), prob=out["prob"].numpy(), grad=x.grad.numpy())
try:
    models.load_net(open(sys.argv[3]).read().replace("normalization: VALID", "normalize: true"))
except models.ShapeError as e:
    print("REFUSED", e)
"""


def test_infogain_master_through_a_users_caffe_proto(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    text = (root / "models" / "caffe.proto").read_text()
    head = "message InfogainLossParameter {\n  // Specify the infogain matrix source.\n  optional string source = 1;\n"
    assert head in text
    (tmp_path / "master.proto").write_text(text.replace(head, head + "  optional int32 axis = 2 [default = 1];\n"))
    src = _write_h(tmp_path / "H.binaryproto", H)
    x = RNG.standard_normal((N, C)).astype(F)
    label = LABEL.copy()
    np.savez(tmp_path / "in.npz", x=x, label=label)
    (tmp_path / "net.prototxt").write_text(_net_text(_layer(
        "InfogainLoss", ["x", "label"], f'top: "prob" loss_weight: 0.5 loss_weight: 0 infogain_loss_param {{ source: '
        f'"{src}" axis: 1 }} loss_param {{ ignore_label: 1 normalization: VALID }}'), {"x": x.shape, "label": (N,)}))
    env = dict(os.environ, PYTHONPATH=str(root), RGR_CACHE_DIR=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, "-c", MASTER_SNIPPET, str(tmp_path / "master.proto"), str(tmp_path / "in.npz"),
                        str(tmp_path / "net.prototxt"), str(tmp_path / "out.npz")],
                       capture_output=True, text=True, env=env, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "REFUSED" in p.stdout and "normalize is deprecated" in p.stdout
    got = np.load(tmp_path / "out.npz")
    ref_loss, ref_g, ref_p = ref_infogain_master(x, label, H, 0.5, 1, "VALID", 1)
    _close(got["loss"], ref_loss, rtol=1e-5)
    _close(got["grad"], ref_g, rtol=1e-5, atol=1e-6)
    _close(got["prob"], ref_p, rtol=1e-5, atol=1e-7)
