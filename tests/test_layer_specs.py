"""Layer specs parsed once (models/specs.py via models/shapes.py) and what follows from them: the three readings
that used to disagree, the registry that cannot lie, data-layer-fed deploy nets in torch and onnxruntime, fork
spellings, weights that do not fit, and caffemodels recognised by parsing. Caffe's own rules are cited in
models/shapes.py; the real-Caffe acceptance test is compare/test_caffe_acceptance.py."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import onnx
import pytest
import torch

import models
from models.layers import registry
from models.onnx_export import build_onnx, inference_session
from models.shapes import SHAPE_FUNCTIONS

HEAD = 'name: "t"\ninput: "data"\ninput_shape {{ {dims} }}\n'


def net_of(body, shape=(1, 2, 5, 5), **kw):
    dims = " ".join(f"dim: {d}" for d in shape)
    return models.load_net(HEAD.format(dims=dims) + body, **kw)


def test_every_registered_type_has_shape_inference_and_vice_versa():
    assert set(registry.supported_types()) == set(SHAPE_FUNCTIONS)
    for t in ("PReLU", "Deconvolution", "Crop", "Silence", "Threshold", "Reduction", "Tile", "ArgMax", "MVN",
              "Exp", "Log", "ELU", "BNLL", "Embed", "Bias", "Scale", "SPP", "Parameter", "BatchReindex", "Filter",
              "Im2col"):
        assert t in SHAPE_FUNCTIONS, t


def test_specs_are_frozen_and_attached():
    net = net_of('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                 'convolution_param { num_output: 4 kernel_size: 3 pad_h: 1 } }')
    spec = net.layers[0].spec
    assert spec.kernel == (3, 3) and spec.pad == (1, 0) and spec.stride == (1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.group = 2


def test_conv_pad_h_alone_is_pad_w_zero_in_shapes_torch_and_onnx():
    """base_conv_layer.cpp reads pad_h and pad_w when either is given (pad_w defaults to 0)."""
    net = net_of('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                 'convolution_param { num_output: 4 kernel_size: 3 pad_h: 1 } }')
    assert net.blob_shapes["c"] == (1, 4, 5, 3)
    m = models.to_torch(net, seed=1)
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5)).astype(np.float32)
    with torch.no_grad():
        ours = m(torch.from_numpy(x))["c"].numpy()
    assert ours.shape == (1, 4, 5, 3)
    sess = inference_session(build_onnx(m))
    np.testing.assert_allclose(sess.run(None, {"data": x})[0], ours, atol=1e-5)


def test_pool_pad_w_alone_is_refused_as_caffe_does():
    with pytest.raises(models.ShapeError, match="pad is pad OR pad_h and pad_w are required"):
        net_of('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 2 pad_w: 1 } }')


def test_pool_kernel_size_with_one_of_kernel_h_w_uses_kernel_size():
    """pooling_layer.cpp: !has_kernel_size != !(has_kernel_h && has_kernel_w) holds, kernel_size wins."""
    net = net_of('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                 'pooling_param { kernel_size: 2 kernel_h: 3 stride: 2 } }')
    assert net.layers[0].spec.kernel == (2, 2) and net.blob_shapes["p"] == (1, 2, 3, 3)


def test_supported_types_in_the_error_all_run():
    """Every type the unknown-type error lists as supported converts (no 'supported' type is refused later)."""
    with pytest.raises(models.UnknownLayerError) as info:
        net_of('layer { name: "w" type: "Wobble" bottom: "data" top: "w" }')
    listed = str(info.value).split("supported types: ")[1].split(", ")
    for t in ("Exp", "Log", "MVN", "Threshold"):
        assert t in listed
        net = net_of(f'layer {{ name: "l" type: "{t}" bottom: "data" top: "l" }}')
        m = models.to_torch(net)
        out = m(torch.ones(1, 2, 5, 5), blobs=["l"])["l"]
        assert out.shape == (1, 2, 5, 5)
        build_onnx(m)


MEMORY_DATA_NET = """name: "md"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
        memory_data_param { batch_size: 2 channels: 3 height: 6 width: 6 } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" }
"""


def test_memory_data_deploy_net_without_label_in_torch_and_onnxruntime():
    from models.run_cli import run_blobs
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    t = run_blobs(MEMORY_DATA_NET, {"data": x}, blobs=["prob"])
    o = run_blobs(MEMORY_DATA_NET, {"data": x}, backend="onnxruntime", blobs=["prob"])
    np.testing.assert_allclose(o["prob"], t["prob"], atol=1e-6)
    net = models.load_net(MEMORY_DATA_NET)
    assert [i.name for i in build_onnx(net, outputs=["prob"]).graph.input] == ["data"]
    # --blobs all: every blob computable from the inputs given (not 'acc', which needs the label)
    for backend in ("torch", "onnxruntime"):
        out = run_blobs(MEMORY_DATA_NET, {"data": x}, backend=backend, blobs="all")
        assert sorted(out) == ["data", "fc", "prob"]


def test_onnx_export_full_check_caffe_names_and_no_torch_module(monkeypatch):
    net = models.load_net("compare/golden/nets/upsample_crop.prototxt")
    import models.torch_builder as tb
    monkeypatch.setattr(tb, "to_torch", lambda *a, **k: pytest.fail("build_onnx built a torch module"))
    model = build_onnx(net, expose_blobs=True)
    onnx.checker.check_model(model, full_check=True)
    names = {n.name for n in model.graph.node}
    assert {"deconv", "deconv_g", "prelu", "crop", "tile", "tile_w"} <= names
    ops = {n.name: n.op_type for n in model.graph.node}
    assert ops["deconv"] == "ConvTranspose" and ops["prelu"] == "PRelu" and ops["crop"] == "Slice"


def test_fork_ceil_mode_read_with_one_warning():
    body = 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 2 stride: 2 ' \
           'ceil_mode: false } }'
    with pytest.warns(UserWarning, match=r"ceil_mode: false .* read as upstream round_mode: FLOOR") as rec:
        net = net_of(body)
    assert len(rec) == 1 and net.blob_shapes["p"] == (1, 2, 2, 2)
    with pytest.raises(models.PrototxtSyntaxError, match="floor_mode"):
        net_of(body.replace("ceil_mode", "floor_mode"))


WEIGHTS_NET = """name: "w"
input: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 3 } }
"""


def test_weights_of_another_net_warn_everywhere_and_fail_with_strict(tmp_path):
    from models.run_cli import run_blobs
    other = WEIGHTS_NET.replace('name: "fc"', 'name: "fc_renamed"').replace('top: "fc"', 'top: "fc_renamed"')
    path = tmp_path / "other.caffemodel"
    models.save_caffemodel(models.to_torch(models.load_net(other), seed=3), path)
    m = models.to_torch(models.load_net(WEIGHTS_NET))
    with pytest.warns(UserWarning, match=r"no weights in the file .*\['fc'\].*match no net layer: \['fc_renamed'\]"):
        report = models.load_caffemodel(m, path)
    assert report["missing"] == ["fc"] and report["ignored"] == ["fc_renamed"]
    with pytest.raises(models.WeightsError, match="fc_renamed"):
        models.load_caffemodel(m, path, strict=True)
    x = {"data": np.ones((1, 3, 4, 4), np.float32)}
    with pytest.raises(models.WeightsError):
        run_blobs(WEIGHTS_NET, x, weights=path, strict=True)


def test_caffemodel_recognised_by_parsing_not_by_its_first_bytes(tmp_path):
    """A net named so that the file starts with printable bytes is still a valid caffemodel; a prototxt is not."""
    text = WEIGHTS_NET.replace('name: "w"', 'name: "' + "A" * 65 + '"')
    path = tmp_path / "printable.caffemodel"
    models.save_caffemodel(models.to_torch(models.load_net(text), seed=2), path)
    head = path.read_bytes()[:8]
    assert head[1:2] == b"A" and head[2:8].isalpha()  # field 1 (name), length 65 = 'A', then the name
    assert [n for n, _, b in models.read_caffemodel(path).layers if b] == ["conv", "fc"]
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(WEIGHTS_NET)
    with pytest.raises(models.CaffemodelFormatError, match="text prototxt.*not a binary caffemodel"):
        models.read_caffemodel(proto)


def test_blob_rules_refuse_negative_and_oversized_shapes():
    with pytest.raises(models.ShapeError, match="negative dimension"):
        net_of('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }', shape=(1, -2147483648))
    with pytest.raises(models.ShapeError, match="exceeds INT_MAX"):
        net_of('layer { name: "t" type: "Tile" bottom: "data" top: "t" tile_param { axis: 0 tiles: 65536 } }',
               shape=(65536, 2))


def test_embed_refuses_indices_outside_its_table():
    net = net_of('layer { name: "e" type: "Embed" bottom: "data" top: "e" embed_param { input_dim: 3 '
                 'num_output: 2 } }', shape=(4,))
    m = models.to_torch(net)
    assert m(torch.tensor([0.0, 2.0, 1.0, 0.0]))["e"].shape == (4, 2)
    with pytest.raises(models.InputError, match=r"\[0, 3\)"):
        m(torch.tensor([0.0, 3.0, 1.0, 0.0]))


def test_batch_reindex_refuses_bad_indices_and_index_shapes():
    """batch_reindex_layer.cpp: a 1-axis index (Reshape CHECK), each value in [0, N) (check_batch_reindex)."""
    head = 'input: "idx" input_shape { dim: 3 }\n'
    net = net_of(head + 'layer { name: "b" type: "BatchReindex" bottom: "data" bottom: "idx" top: "b" }',
                 shape=(2, 3))
    m = models.to_torch(net)
    x = torch.arange(6.0).reshape(2, 3)
    assert m(x, torch.tensor([1.0, 0.0, 1.9]))["b"].tolist() == [[3, 4, 5], [0, 1, 2], [3, 4, 5]]
    with pytest.raises(models.InputError, match=r"layer 'b' \(BatchReindex\).*\[0, 2\)"):
        m(x, torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(models.ShapeError, match="index .bottom 1. must have 1 axis"):
        net_of('input: "idx" input_shape { dim: 3 dim: 1 }\n'
               'layer { name: "b" type: "BatchReindex" bottom: "data" bottom: "idx" top: "b" }', shape=(2, 3))


def test_filter_batch_follows_the_selector_in_torch_and_onnxruntime():
    """filter_layer.cpp: the top batch is the number of nonzero selector values, at run time in both backends
    (one ONNX model, selectors keeping 2, 0 and 3 items); a non-singleton selector axis is refused."""
    head = 'input: "sel" input_shape { dim: 3 dim: 1 }\n'
    net = net_of(head + 'layer { name: "f" type: "Filter" bottom: "data" bottom: "sel" top: "f" }', shape=(3, 2))
    assert net.blob_shapes["f"] == (3, 2)  # Caffe's setup-time shape
    m = models.to_torch(net)
    model = build_onnx(net)
    batch = model.graph.output[0].type.tensor_type.shape.dim[0]
    assert not batch.dim_param and not batch.HasField("dim_value")  # unknown, not the inputs' N
    sess = inference_session(model)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    for sel in ([1, 0, -0.5], [0, 0, 0], [2, 1, 1]):
        s = np.asarray(sel, np.float32).reshape(3, 1)
        ours = m(torch.from_numpy(x), torch.from_numpy(s))["f"].numpy()
        np.testing.assert_array_equal(ours, x[s[:, 0] != 0])
        np.testing.assert_array_equal(sess.run(["f"], {"data": x, "sel": s})[0], ours)
    with pytest.raises(models.ShapeError, match="Selector blob dimensions must be singletons"):
        net_of('input: "sel" input_shape { dim: 3 dim: 2 }\n'
               'layer { name: "f" type: "Filter" bottom: "data" bottom: "sel" top: "f" }', shape=(3, 2))


def test_no_warning_when_everything_matches(tmp_path):
    m = models.to_torch(models.load_net(WEIGHTS_NET), seed=4)
    models.save_caffemodel(m, tmp_path / "same.caffemodel")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        models.load_caffemodel(models.to_torch(models.load_net(WEIGHTS_NET)), tmp_path / "same.caffemodel")


def test_convert_and_run_cli_warn_or_fail_strict_on_weights_of_another_net(tmp_path):
    import subprocess
    import sys
    proto = tmp_path / "net.prototxt"
    proto.write_text(WEIGHTS_NET)
    other = WEIGHTS_NET.replace('name: "fc"', 'name: "fc_renamed"').replace('top: "fc"', 'top: "fc_renamed"')
    w = tmp_path / "other.caffemodel"
    models.save_caffemodel(models.to_torch(models.load_net(other), seed=3), w)
    np.save(tmp_path / "x.npy", np.ones((1, 3, 4, 4), np.float32))
    cmds = {"convert": ["convert", str(proto), "--weights", str(w), "--onnx", str(tmp_path / "n.onnx")],
            "run": ["run", str(proto), "--weights", str(w), "--input", str(tmp_path / "x.npy"), "--out",
                    str(tmp_path / "o.npz")]}
    for name, cmd in cmds.items():
        ok = subprocess.run([sys.executable, "-m", "models", *cmd], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        warns = [l for l in ok.stderr.splitlines() if l.startswith("warning:")]
        assert len(warns) == 1 and "['fc']" in warns[0] and "['fc_renamed']" in warns[0], (name, ok.stderr)
        strict = subprocess.run([sys.executable, "-m", "models", *cmd, "--strict"], capture_output=True, text=True)
        assert strict.returncode == 2 and len(strict.stderr.strip().splitlines()) == 1, (name, strict.stderr)
        assert "fc_renamed" in strict.stderr


def test_net_params_equal_to_torch_fillers_and_share_named_params():
    from models.onnx_export import net_params
    text = ('input: "data" input_shape { dim: 1 dim: 4 }\n'
            'layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" param { name: "w" } '
            'inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }\n'
            'layer { name: "b" type: "InnerProduct" bottom: "a" top: "b" param { name: "w" } '
            'inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }\n')
    net = models.load_net(text)
    p, m = net_params(net, seed=5), models.to_torch(net, seed=5)
    for name, blobs in m.caffe_params().items():
        for a, b in zip(p[name], blobs):
            np.testing.assert_array_equal(a, b.detach().numpy())
    assert p["a"][0] is p["b"][0]


@pytest.mark.parametrize("ltype,why", [("LSTM", "lstm_layer.cpp"), ("RNN", "rnn_layer.cpp"),
                                       ("HDF5Output", "hdf5_output_layer.cpp")])
def test_types_not_converted_say_why(ltype, why):
    with pytest.raises(models.UnknownLayerError, match=rf"layer 'l' has type '{ltype}' \(not converted: .*{why}"):
        top = "" if ltype == "HDF5Output" else 'top: "l"'  # HDF5Output has no tops
        net_of(f'layer {{ name: "l" type: "{ltype}" bottom: "data" {top} }}')


def test_parameter_starts_at_zero_and_its_top_is_its_blob():
    """parameter_layer.hpp: no filler (a fresh Blob is zeros, syncedmem.cpp); the top shares the blob's data."""
    net = net_of('layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 3 } } }')
    assert net.blob_shapes["p"] == (2, 3) and net.layers[0].param_shapes == [(2, 3)]
    m = models.to_torch(net, seed=3)
    assert not m.caffe_params()["p"][0].detach().any()
    with torch.no_grad():
        m.caffe_params()["p"][0].copy_(torch.arange(6.0).reshape(2, 3))
    assert m(torch.zeros(1, 2, 5, 5), blobs=["p"])["p"].tolist() == [[0, 1, 2], [3, 4, 5]]
