"""Converted layers against naive transcriptions of Caffe's CPU code (tests/caffe_reference.py) and hand-computed
values: pooling's ceil/clip/divisor rules, LRN, Eltwise, BatchNorm's scale factor, InnerProduct axis/transpose,
the shape layers, losses; in-place blobs, blob selection and bad input."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import models
from tests import caffe_reference as ref

HEAD = 'name: "t"\ninput: "data"\ninput_shape {{ {dims} }}\n'


def net_of(body, shape, phase="TEST"):
    dims = " ".join(f"dim: {d}" for d in shape)
    return models.load_net(HEAD.format(dims=dims) + body, phase=phase)


def run(body, x, blobs="all", phase="TEST", seed=0, **kw):
    net = net_of(body, x.shape, phase)
    m = models.to_torch(net, seed=seed)
    with torch.no_grad():
        return m(torch.from_numpy(x), blobs=blobs, **kw), m


def pool_layer(k, s, p, method, ceil=True, name="p"):
    kh, kw = k
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "data" top: "{name}" pooling_param {{ pool: {method} '
            f'kernel_h: {kh} kernel_w: {kw} stride_h: {s[0]} stride_w: {s[1]} pad_h: {p[0]} pad_w: {p[1]} '
            f'round_mode: {"CEIL" if ceil else "FLOOR"} }} }}\n')


pool_cases = st.tuples(
    st.integers(1, 9), st.integers(1, 9),      # H, W
    st.integers(1, 5), st.integers(1, 5),      # kh, kw
    st.integers(1, 4), st.integers(1, 4),      # sh, sw
    st.integers(0, 4), st.integers(0, 4),      # ph, pw (clipped below k)
    st.sampled_from(["MAX", "AVE"]), st.booleans())


def _pool_case(case):
    h, w, kh, kw, sh, sw, ph, pw, method, ceil = case
    ph, pw = min(ph, kh - 1), min(pw, kw - 1)
    any_pad = ph > 0 or pw > 0
    if ref.pool_out(h, kh, sh, ph, ceil, any_pad) < 1 or ref.pool_out(w, kw, sw, pw, ceil, any_pad) < 1:
        return None
    return h, w, (kh, kw), (sh, sw), (ph, pw), method, ceil


@settings(max_examples=150, deadline=None)
@given(pool_cases)
def test_pooling_matches_caffe_loops(case):
    c = _pool_case(case)
    if c is None:
        return
    h, w, k, s, p, method, ceil = c
    x = np.random.default_rng(0).standard_normal((2, 3, h, w)).astype(np.float32)
    out, _ = run(pool_layer(k, s, p, method, ceil), x, blobs=["p"])
    want = ref.pool(x, k, s, p, method, ceil)
    got = out["p"].numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("h,k,s,p,method", [
    (112, 3, 2, 0, "MAX"),   # GoogLeNet pool1 (torch's native path)
    (14, 3, 1, 1, "MAX"),    # inception pool branch
    (7, 7, 1, 0, "AVE"),     # pool5/7x7_s1
    (5, 3, 3, 2, "AVE"),     # pad up to k-1, beyond torch's k/2 limit: explicit path
    (6, 2, 3, 0, "MAX"),     # p = 0, k < s: last window starts at the edge -> -FLT_MAX
    (6, 2, 3, 0, "AVE"),     # ... and NaN (divisor 0)
    (8, 3, 2, 1, "AVE"),     # ceil overhang past H + p is not counted in the divisor
])
def test_pooling_named_cases(h, k, s, p, method):
    x = np.random.default_rng(1).standard_normal((1, 2, h, h)).astype(np.float32)
    out, _ = run(pool_layer((k, k), (s, s), (p, p), method), x, blobs=["p"])
    want = ref.pool(x, (k, k), (s, s), (p, p), method)
    np.testing.assert_allclose(out["p"].numpy(), want, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_pooling_edge_window_values():
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    out, _ = run(pool_layer((2, 2), (3, 3), (0, 0), "MAX"), x, blobs=["p"])
    got = out["p"].numpy()[0, 0]
    assert got.shape == (3, 3)
    assert got[2, 2] == np.float32(-3.4028235e38) and got[0, 0] == 7.0
    out, _ = run(pool_layer((2, 2), (3, 3), (0, 0), "AVE"), x, blobs=["p"])
    assert np.isnan(out["p"].numpy()[0, 0, 2, 2])


def test_ave_divisor_hand_computed():
    # H = 3, k = 3, s = 2, p = 1: windows start at -1 and 1; ends min(start+3, 4) -> 2 and 4; divisor 9 and 9*...
    x = np.ones((1, 1, 3, 3), np.float32)
    out, _ = run(pool_layer((3, 3), (2, 2), (1, 1), "AVE"), x, blobs=["p"])
    # window (0,0) covers rows -1..1 -> 4 real cells of 9 -> 4/9; window (1,1) rows 1..3 (3 = pad) -> 4/9
    np.testing.assert_allclose(out["p"].numpy()[0, 0], [[4 / 9, 4 / 9], [4 / 9, 4 / 9]], rtol=1e-6)


def test_global_pooling():
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 4)).astype(np.float32)
    body = 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE global_pooling: true } }'
    out, _ = run(body, x, blobs=["p"])
    np.testing.assert_allclose(out["p"].numpy(), x.mean(axis=(2, 3), keepdims=True), rtol=1e-6)


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.6, 2.0), (1, 1.0, 1.0, 0.5)])
def test_lrn_across_channels(size, alpha, beta, k):
    x = np.random.default_rng(3).standard_normal((2, 7, 3, 3)).astype(np.float32) * 3
    body = (f'layer {{ name: "n" type: "LRN" bottom: "data" top: "n" lrn_param {{ local_size: {size} alpha: {alpha} '
            f'beta: {beta} k: {k} }} }}')
    out, _ = run(body, x, blobs=["n"])
    np.testing.assert_allclose(out["n"].numpy(), ref.lrn_across(x, size, alpha, beta, k), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("size,alpha,beta", [(3, 5e-5, 0.75), (5, 0.7, 0.5)])
def test_lrn_within_channel_ignores_k(size, alpha, beta):
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 6)).astype(np.float32) * 2
    body = (f'layer {{ name: "n" type: "LRN" bottom: "data" top: "n" lrn_param {{ norm_region: WITHIN_CHANNEL '
            f'local_size: {size} alpha: {alpha} beta: {beta} k: 7 }} }}')
    out, _ = run(body, x, blobs=["n"])
    np.testing.assert_allclose(out["n"].numpy(), ref.lrn_within(x, size, alpha, beta), rtol=2e-6, atol=1e-6)


def test_convolution_group_dilation_rect():
    x = np.random.default_rng(5).standard_normal((1, 4, 9, 8)).astype(np.float32)
    body = ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 6 '
            'kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 dilation: 2 group: 2 '
            'weight_filler { type: "gaussian" std: 1 } bias_filler { type: "constant" value: 0.5 } } }')
    out, m = run(body, x, blobs=["c"])
    w, b = [p.detach().numpy() for p in m.caffe_params()["c"]]
    assert w.shape == (6, 2, 3, 2) and np.all(b == 0.5)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    oh, ow = (9 + 2 - (2 * 2 + 1)) // 2 + 1, (8 - (1 * 2 + 1)) // 1 + 1
    want = np.zeros((1, 6, oh, ow))
    for o in range(6):
        g = o // 3
        for i in range(oh):
            for j in range(ow):
                patch = xp[0, 2 * g:2 * g + 2, 2 * i:2 * i + 5:2, j:j + 3:2]
                want[0, o, i, j] = (patch * w[o]).sum() + b[o]
    np.testing.assert_allclose(out["c"].numpy(), want, rtol=1e-5, atol=1e-5)


def test_convolution_without_bias():
    x = np.ones((1, 1, 3, 3), np.float32)
    body = ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 1 '
            'kernel_size: 3 bias_term: false weight_filler { type: "constant" value: 2 } } }')
    out, m = run(body, x, blobs=["c"])
    assert len(m.caffe_params()["c"]) == 1 and out["c"].item() == 18.0


@pytest.mark.parametrize("axis,transpose", [(1, False), (1, True), (2, False), (-1, True)])
def test_inner_product_axis_transpose(axis, transpose):
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 5)).astype(np.float32)
    body = (f'layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param {{ num_output: 6 '
            f'axis: {axis} transpose: {str(transpose).lower()} weight_filler {{ type: "gaussian" }} '
            f'bias_filler {{ type: "uniform" }} }} }}')
    out, m = run(body, x, blobs=["ip"])
    w, b = [p.detach().numpy() for p in m.caffe_params()["ip"]]
    a = axis % 4
    x2 = x.reshape(int(np.prod(x.shape[:a])), -1)
    k = x2.shape[1]
    assert w.shape == ((k, 6) if transpose else (6, k))
    want = (x2 @ (w if transpose else w.T) + b).reshape(*x.shape[:a], 6)
    np.testing.assert_allclose(out["ip"].numpy(), want, rtol=1e-5, atol=1e-5)


def test_eltwise_sum_coeff_prod_max():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 3, 3)).astype(np.float32)
    body = ('layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" top: "c" slice_param { slice_point: 1 '
            'slice_point: 3 } }\n'
            'layer { name: "t" type: "Slice" bottom: "data" top: "d" top: "e" top: "f" }\n'
            'layer { name: "sum" type: "Eltwise" bottom: "d" bottom: "e" bottom: "f" top: "sum" '
            'eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 1 } }\n'
            'layer { name: "prod" type: "Eltwise" bottom: "d" bottom: "e" bottom: "f" top: "prod" '
            'eltwise_param { operation: PROD } }\n'
            'layer { name: "max" type: "Eltwise" bottom: "d" bottom: "e" top: "max" eltwise_param { operation: MAX } }')
    out, _ = run(body, x)
    assert out["a"].shape == (2, 1, 3, 3) and out["b"].shape == (2, 2, 3, 3) and out["c"].shape == (2, 3, 3, 3)
    d, e, f = x[:, 0:2], x[:, 2:4], x[:, 4:6]
    np.testing.assert_allclose(out["sum"].numpy(), 0.5 * d - 2 * e + f, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["prod"].numpy(), d * e * f, rtol=1e-6)
    np.testing.assert_array_equal(out["max"].numpy(), np.maximum(d, e))


def test_batchnorm_scale_factor_and_scale_layer():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    body = ('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" batch_norm_param { eps: 0.001 } }\n'
            'layer { name: "sc" type: "Scale" bottom: "bn" top: "bn" scale_param { bias_term: true } }')
    net = net_of(body, x.shape)
    m = models.to_torch(net, seed=0)
    mean, var, f = np.array([1.0, 2, 3]), np.array([4.0, 5, 6]), 2.5
    gamma, beta = np.array([1.5, -1, 2]), np.array([0.1, 0.2, 0.3])
    with torch.no_grad():
        for p, v in zip(m.caffe_params()["bn"], [mean, var, [f]]):
            p.copy_(torch.tensor(v, dtype=torch.float32))
        assert np.all(m.caffe_params()["sc"][0].numpy() == 1)  # Scale's default filler is 1
        for p, v in zip(m.caffe_params()["sc"], [gamma, beta]):
            p.copy_(torch.tensor(v, dtype=torch.float32))
        out = m(torch.from_numpy(x), blobs="all")
    c = (1, 3, 1, 1)
    norm = (x - (mean / f).reshape(c)) / np.sqrt((var / f).reshape(c) + 0.001)
    np.testing.assert_allclose(out["bn"].numpy(), norm * gamma.reshape(c) + beta.reshape(c), rtol=1e-5, atol=1e-6)


def test_batchnorm_train_updates_running_sums():
    x = np.random.default_rng(9).standard_normal((4, 2, 3, 3)).astype(np.float32)
    body = 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" batch_norm_param { moving_average_fraction: 0.9 } }'
    out, m = run(body, x, phase="TRAIN")
    mu = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(out["bn"].numpy(), (x - mu.reshape(1, 2, 1, 1)) / np.sqrt(var.reshape(1, 2, 1, 1) + 1e-5),
                               rtol=1e-5, atol=1e-5)
    mean_sum, var_sum, f = [p.numpy() for p in m.caffe_params()["bn"]]
    m_count = x.size // 2
    np.testing.assert_allclose(mean_sum, mu, rtol=1e-5)
    np.testing.assert_allclose(var_sum, var * m_count / (m_count - 1), rtol=1e-5)
    assert f[0] == 1.0


def test_flatten_reshape():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    body = ('layer { name: "f" type: "Flatten" bottom: "data" top: "f" flatten_param { axis: 2 } }\n'
            'layer { name: "r" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 0 dim: -1 dim: 10 } } }\n'
            'layer { name: "r2" type: "Reshape" bottom: "data" top: "r2" reshape_param { shape { dim: 2 dim: 2 } '
            'axis: 2 num_axes: 1 } }')
    out, _ = run(body, x)
    assert out["f"].shape == (2, 3, 20) and out["r"].shape == (2, 6, 10) and out["r2"].shape == (2, 3, 2, 2, 5)
    np.testing.assert_array_equal(out["r"].numpy(), x.reshape(2, 6, 10))


def test_activations_and_power():
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(1, 2, 3, 4)
    body = ('layer { name: "l" type: "ReLU" bottom: "data" top: "l" relu_param { negative_slope: 0.1 } }\n'
            'layer { name: "s" type: "Sigmoid" bottom: "data" top: "s" }\n'
            'layer { name: "t" type: "TanH" bottom: "data" top: "t" }\n'
            'layer { name: "a" type: "AbsVal" bottom: "data" top: "a" }\n'
            'layer { name: "p" type: "Power" bottom: "a" top: "p" power_param { power: 1.5 scale: 2 shift: 1 } }')
    out, _ = run(body, x)
    np.testing.assert_allclose(out["l"].numpy(), np.where(x > 0, x, 0.1 * x), rtol=1e-6)
    np.testing.assert_allclose(out["s"].numpy(), 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(out["t"].numpy(), np.tanh(x), rtol=1e-6)
    np.testing.assert_allclose(out["p"].numpy(), (1 + 2 * np.abs(x)) ** 1.5, rtol=1e-6)


LOSS_NET = '''name: "l"
input: "data" input_shape { dim: 4 dim: 3 }
input: "label" input_shape { dim: 4 }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "loss" top: "prob" %s }
layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "label" top: "acc" %s }
'''


@pytest.mark.parametrize("loss_param,norm", [("", "VALID"), ("loss_param { ignore_label: 2 }", "VALID"),
                                             ("loss_param { normalization: NONE }", "NONE"),
                                             ("loss_param { normalize: false }", "BATCH")])
def test_softmax_with_loss(loss_param, norm):
    x = np.array([[1, 2, 3], [0, 0, 0], [5, -1, 0], [2, 2, 1]], np.float32)
    y = np.array([2, 0, 1, 0], np.float32)
    m = models.to_torch(models.load_net(LOSS_NET % (loss_param, ""), phase="TRAIN"))
    out = m(data=torch.from_numpy(x), label=torch.from_numpy(y))
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    nll = -np.log(p[np.arange(4), y.astype(int)])
    if "ignore_label" in loss_param:
        want = nll[y != 2].sum() / 3
    elif norm == "NONE":
        want = nll.sum()
    else:
        want = nll.mean()
    assert out["loss"].shape == ()
    np.testing.assert_allclose(out["loss"].item(), want, rtol=1e-6)
    np.testing.assert_allclose(out["prob"].numpy(), p, rtol=1e-6)
    assert m.loss(out).item() == pytest.approx(out["loss"].item())


def test_accuracy_ties_count_against_and_top_k():
    x = np.array([[1, 2, 3], [1, 1, 0], [5, -1, 0], [2, 2, 1]], np.float32)
    y = np.array([2, 0, 1, 1], np.float32)
    # sample 1 ties class 0 with class 1: Caffe counts the tie as a better prediction -> wrong at top-1
    out = models.to_torch(models.load_net(LOSS_NET % ("", ""), phase="TEST"))(data=x, label=y, blobs=["acc"])
    assert out["acc"].item() == pytest.approx(1 / 4)
    out = models.to_torch(models.load_net(LOSS_NET % ("", "accuracy_param { top_k: 2 }"), phase="TEST"))(
        data=x, label=y, blobs=["acc"])
    assert out["acc"].item() == pytest.approx(3 / 4)


DROP = ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 50 '
        'weight_filler { type: "gaussian" } } }\n'
        'layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }\n'
        'layer { name: "drop" type: "Dropout" bottom: "ip" top: "ip" dropout_param { dropout_ratio: 0.4 } }\n'
        'layer { name: "out" type: "InnerProduct" bottom: "ip" top: "out" inner_product_param { num_output: 2 } }')


def test_dropout_phases_and_given_mask():
    x = np.random.default_rng(10).standard_normal((3, 8)).astype(np.float32)
    test_out, _ = run(DROP, x, phase="TEST")
    net = net_of(DROP, x.shape, "TRAIN")
    m = models.to_torch(net, seed=0)
    mask = (np.random.default_rng(11).random((3, 50)) > 0.4).astype(np.float32)
    with torch.no_grad():
        pre = m(torch.from_numpy(x), blobs=["ip"], dropout_masks={"drop": torch.zeros(3, 50) + 1})["ip"]
        out = m(torch.from_numpy(x), blobs=["ip"], dropout_masks={"drop": torch.from_numpy(mask)})["ip"]
    scale = np.float32(1) / (np.float32(1) - np.float32(0.4))
    np.testing.assert_allclose(out.numpy(), pre.numpy() / scale * mask * scale, rtol=1e-6)
    # TEST phase: identity, so "ip" is the ReLU output (same seed, same weights)
    np.testing.assert_allclose(test_out["ip"].numpy() * scale, pre.numpy(), rtol=1e-6)
    with torch.no_grad():
        drawn = m(torch.from_numpy(x), blobs=["ip"])["ip"].numpy()
    kept = drawn != 0
    np.testing.assert_allclose(drawn[kept], pre.numpy()[kept], rtol=1e-6)


def test_in_place_blob_shows_final_value_and_plan_runs_only_needed_layers():
    x = np.random.default_rng(12).standard_normal((2, 8)).astype(np.float32)
    net = net_of(DROP, x.shape, "TEST")
    m = models.to_torch(net, seed=0)
    out = m(torch.from_numpy(x), blobs="all")
    assert set(out) == {"data", "ip", "out"}
    assert (out["ip"] >= 0).all()  # ip after the in-place ReLU
    keep, _, _ = m._plan(("ip",))
    assert [m.steps[i][0].name for i in keep] == ["ip", "relu", "drop"]
    calls = []
    hook = m.layer_modules["out"].register_forward_hook(lambda *a: calls.append(1))
    m(torch.from_numpy(x), blobs=["ip"])
    assert calls == []
    m(torch.from_numpy(x))
    assert calls == [1]
    hook.remove()


def test_any_batch_and_bad_inputs():
    x = np.random.default_rng(13).standard_normal((2, 8)).astype(np.float32)
    m = models.to_torch(net_of(DROP, x.shape), seed=0)
    assert m(np.zeros((7, 8), np.float32))["out"].shape == (7, 2)
    with pytest.raises(models.InputError, match=r"expected shape \('N', 8\)"):
        m(np.zeros((2, 9), np.float32))
    with pytest.raises(models.InputError, match="floating-point"):
        m(np.zeros((2, 8), np.int32))
    with pytest.raises(models.InputError, match="has no blob"):
        m(x, blobs=["nope"])


def test_unsupported_layers_named_together_at_load():
    text = ('input: "data" input_shape { dim: 1 dim: 2 }\n'
            'layer { name: "weird" type: "Wobble" bottom: "data" top: "a" }\n'
            'layer { name: "odd" type: "Frobnicate" bottom: "a" top: "b" }\n')
    with pytest.raises(models.UnknownLayerError, match="2 layers.*'weird' has type 'Wobble'.*'odd' has type "
                                                        "'Frobnicate'.*supported types: .*PReLU"):
        models.load_net(text)


def test_silence_consumes_and_produces_nothing():
    net = net_of('layer { name: "quiet" type: "Silence" bottom: "data" }', (1, 2))
    out = models.to_torch(net)(np.ones((1, 2), np.float32), blobs="all")
    assert list(out) == ["data"]


def test_backward_blob_diffs_follow_caffe_in_place_rule():
    x = np.random.default_rng(14).standard_normal((2, 8)).astype(np.float32)
    m = models.to_torch(net_of(DROP, x.shape), seed=0)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = m(xt, blobs="all", retain_grad=True)
    out["out"].sum().backward()
    diffs = m.blob_diffs()
    # "ip"'s diff is the gradient w.r.t. the InnerProduct output (before the in-place ReLU), as in Caffe
    w2 = m.caffe_params()["out"][0].detach()
    relu_mask = (out["ip"] > 0).float()
    np.testing.assert_allclose(diffs["ip"].numpy(), (w2.sum(0) * relu_mask).numpy(), rtol=1e-6)
    np.testing.assert_allclose(diffs["data"].numpy(), xt.grad.numpy())


def test_earlier_value_of_in_place_blob_by_onnx_name():
    x = np.random.default_rng(15).standard_normal((2, 8)).astype(np.float32)
    m = models.to_torch(net_of(DROP, x.shape), seed=0)
    with torch.no_grad():
        out = m(torch.from_numpy(x), blobs=["ip@ip", "ip"])
    w, b = [p.detach().numpy() for p in m.caffe_params()["ip"]]
    np.testing.assert_allclose(out["ip@ip"].numpy(), x @ w.T + b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["ip"].numpy(), np.maximum(x @ w.T + b, 0), rtol=1e-5, atol=1e-6)
