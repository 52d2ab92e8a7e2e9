"""ONNX export: onnx.checker, Caffe names on nodes and values, and onnxruntime reproducing Caffe's pooling
(AVE divisor at padded and ceil-overhanging borders, pad up to k-1), both LRN modes and every other layer."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings

import models
from models.onnx_export import DEFAULT_OPSET, build_onnx
from tests import caffe_reference as ref
from tests.test_torch_layers import _pool_case, net_of, pool_cases, pool_layer


def ort_run(model, feeds):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, feeds)))


@settings(max_examples=60, deadline=None)
@given(pool_cases)
def test_onnx_pooling_matches_caffe_loops(case):
    c = _pool_case(case)
    if c is None:
        return
    h, w, k, s, p, method, ceil = c
    x = np.random.default_rng(0).standard_normal((2, 3, h, w)).astype(np.float32)
    model = build_onnx(models.to_torch(net_of(pool_layer(k, s, p, method, ceil), x.shape)))
    got = ort_run(model, {"data": x})["p"]
    np.testing.assert_allclose(got, ref.pool(x, k, s, p, method, ceil), rtol=2e-6, atol=1e-6, equal_nan=True)


def test_onnx_lrn_both_regions():
    x = np.random.default_rng(1).standard_normal((2, 6, 7, 5)).astype(np.float32) * 2
    body = ('layer { name: "a" type: "LRN" bottom: "data" top: "a" lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 k: 2 } }\n'
            'layer { name: "w" type: "LRN" bottom: "data" top: "w" lrn_param { norm_region: WITHIN_CHANNEL '
            'local_size: 3 alpha: 0.4 beta: 0.6 } }')
    out = ort_run(build_onnx(models.to_torch(net_of(body, x.shape))), {"data": x})
    np.testing.assert_allclose(out["a"], ref.lrn_across(x, 5, 0.3, 0.75, 2.0), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(out["w"], ref.lrn_within(x, 3, 0.4, 0.6), rtol=2e-6, atol=1e-6)


MIXED = '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 6 kernel_size: 3
  pad: 1 group: 2 weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: 0.1 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true
  filler { type: "uniform" min: 0.5 max: 1.5 } bias_filler { type: "gaussian" } } }
layer { name: "slice" type: "Slice" bottom: "conv1" top: "s1" top: "s2" slice_param { slice_point: 2 } }
layer { name: "sig" type: "Sigmoid" bottom: "s1" top: "s1" }
layer { name: "tanh" type: "TanH" bottom: "s2" top: "s2t" }
layer { name: "cat" type: "Concat" bottom: "s2t" bottom: "s1" top: "cat" }
layer { name: "elt" type: "Eltwise" bottom: "cat" bottom: "conv1" top: "elt" eltwise_param { coeff: 0.5 coeff: -1 } }
layer { name: "prod" type: "Eltwise" bottom: "cat" bottom: "elt" bottom: "conv1" top: "prod" eltwise_param { operation: PROD } }
layer { name: "pow" type: "Power" bottom: "prod" top: "pow" power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "abs" type: "AbsVal" bottom: "pow" top: "abs" }
layer { name: "pool" type: "Pooling" bottom: "abs" top: "pool" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 } }
layer { name: "flat" type: "Flatten" bottom: "pool" top: "flat" }
layer { name: "ip" type: "InnerProduct" bottom: "flat" top: "ip" inner_product_param { num_output: 5
  weight_filler { type: "xavier" } } }
layer { name: "ipt" type: "InnerProduct" bottom: "pool" top: "ipt" inner_product_param { num_output: 4 transpose: true
  axis: 2 weight_filler { type: "xavier" } } }
layer { name: "resh" type: "Reshape" bottom: "ipt" top: "resh" reshape_param { shape { dim: 0 dim: -1 } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
'''


def _randomise_bn(m):
    with torch.no_grad():
        mean, var, f = m.caffe_params()["bn"]
        mean.normal_()
        var.uniform_(0.5, 2)
        f.fill_(1.7)


def test_mixed_net_every_blob_matches_torch_and_names_are_caffes():
    x = np.random.default_rng(2).standard_normal((2, 4, 9, 9)).astype(np.float32)
    m = models.to_torch(net_of(MIXED, x.shape), seed=3)
    _randomise_bn(m)
    model = models.to_onnx(m, expose_blobs=True)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == DEFAULT_OPSET
    node_names = {n.name for n in model.graph.node}
    assert {"conv1", "relu1", "bn", "scale", "pool", "ip", "prob"} <= node_names
    assert {i.name for i in model.graph.initializer} >= {"conv1[0]", "conv1[1]", "ip[0]"}
    produced = {o for n in model.graph.node for o in n.output}
    assert "conv1@conv1" in produced and "conv1@relu1" in produced  # earlier values of the in-place blob
    with torch.no_grad():
        want = m(torch.from_numpy(x), blobs="all")
    got = ort_run(model, {"data": x})
    assert set(want) == {k.replace("/output", "") for k in got}
    for name, w in want.items():
        g = got.get(name, got.get(f"{name}/output"))
        w = w.numpy()
        assert g.shape == w.shape, name
        assert np.abs(g - w).max() <= 1e-5 * max(1.0, np.abs(w).max()), name


def test_dynamic_batch_and_train_phase_masks():
    x = np.random.default_rng(4).standard_normal((5, 8)).astype(np.float32)
    body = ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 6 '
            'weight_filler { type: "gaussian" } } }\n'
            'layer { name: "drop" type: "Dropout" bottom: "ip" top: "ip" dropout_param { dropout_ratio: 0.3 } }\n'
            'layer { name: "bn" type: "BatchNorm" bottom: "ip" top: "bn" }')
    m = models.to_torch(net_of(body, (2, 8), "TRAIN"), seed=0)
    mask = (np.random.default_rng(5).random((5, 6)) > 0.3).astype(np.float32)
    model = build_onnx(m, expose_blobs=True)  # built before the torch forward changes the BN running sums
    with torch.no_grad():
        want = m(torch.from_numpy(x), blobs="all", dropout_masks={"drop": torch.from_numpy(mask)})
    got = ort_run(model, {"data": x, "drop/mask": mask})
    for k in ("ip", "bn"):
        np.testing.assert_allclose(got[k], want[k].numpy(), rtol=1e-5, atol=1e-5)


def test_loss_and_accuracy_in_onnxruntime():
    net = models.load_net('''name: "l"
input: "data" input_shape { dim: 4 dim: 3 }
input: "label" input_shape { dim: 4 }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "loss" loss_param { ignore_label: 1 } }
layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "label" top: "acc" accuracy_param { top_k: 2 } }
''', phase="TEST")
    x = np.array([[1, 2, 3], [1, 1, 0], [5, -1, 0], [2, 2, 1]], np.float32)
    y = np.array([2, 0, 1, 0], np.float32)
    m = models.to_torch(net)
    want = m(data=x, label=y)
    got = ort_run(build_onnx(m), {"data": x, "label": y})
    for k in ("loss", "acc"):
        assert got[k].shape == () and got[k] == pytest.approx(want[k].item(), rel=1e-6)


def test_convert_cli_with_weights(tmp_path):
    from models.cli import main
    x = np.random.default_rng(6).standard_normal((2, 4, 9, 9)).astype(np.float32)
    proto = tmp_path / "net.prototxt"
    proto.write_text('name: "mixed" input: "data" input_shape { dim: 2 dim: 4 dim: 9 dim: 9 }\n' + MIXED)
    m = models.to_torch(models.load_net(str(proto)), seed=9)
    _randomise_bn(m)
    models.save_caffemodel(m, tmp_path / "w.caffemodel")
    out = tmp_path / "net.onnx"
    assert main(["convert", str(proto), "--weights", str(tmp_path / "w.caffemodel"), "--onnx", str(out)]) == 0
    model = onnx.load(str(out))
    assert sorted(o.name for o in model.graph.output) == ["prob", "resh"]
    got = ort_run(model, {"data": x})
    with torch.no_grad():
        want = m(torch.from_numpy(x))
    np.testing.assert_allclose(got["prob"], want["prob"].numpy(), rtol=1e-5, atol=1e-6)


def test_opset_range_and_a_converters_floor_are_refused_by_name(monkeypatch):
    import onnx

    from models.layers import registry
    from models.onnx_export import MIN_OPSET, build_onnx
    net = models.load_net(
        'input: "data" input_shape { dim: 1 dim: 3 dim: 2 dim: 2 }\n'
        'layer { name: "prob" type: "Softmax" bottom: "data" top: "prob" }\n')
    with pytest.raises(models.InputError, match=f"opset {MIN_OPSET - 1}: the exporter writes opsets {MIN_OPSET}"):
        build_onnx(net, opset=MIN_OPSET - 1)
    with pytest.raises(models.InputError, match="exporter writes opsets"):
        build_onnx(net, opset=onnx.defs.onnx_opset_version() + 1)
    conv = registry.get(net.layers[0])
    monkeypatch.setattr(conv, "min_opset", 15, raising=False)
    monkeypatch.setattr(conv, "min_opset_why", "a test floor", raising=False)
    with pytest.raises(models.NetDefinitionError, match=r"layer 'prob' \(Softmax\).*needs opset 15.*a test floor"):
        build_onnx(net, opset=13)
    monkeypatch.undo()
    # opset 11's Softmax (normalising over every axis from `axis` on) is not Caffe's: it is composed instead
    ops = [n.op_type for n in build_onnx(net, opset=11).graph.node]
    assert "Softmax" not in ops and {"ReduceMax", "Exp", "ReduceSum", "Div"} <= set(ops)
    assert "Softmax" in [n.op_type for n in build_onnx(net, opset=13).graph.node]
