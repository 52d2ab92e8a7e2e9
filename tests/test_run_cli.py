"""``python -m models run``: blobs under their Caffe names in an .npz, torch and onnxruntime alike; any batch;
bad input and bad weights refused in one line naming what was expected."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import models
from models.cli import main

NET = '''name: "r"
input: "data" input_shape { dim: 2 dim: 3 dim: 10 dim: 10 }
layer { name: "conv1/3x3" type: "Convolution" bottom: "data" top: "conv1/3x3" convolution_param { num_output: 4
  kernel_size: 3 stride: 2 weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv1/3x3" top: "conv1/3x3" }
layer { name: "pool" type: "Pooling" bottom: "conv1/3x3" top: "pool" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm" type: "LRN" bottom: "pool" top: "norm" lrn_param { local_size: 3 alpha: 0.01 } }
layer { name: "fc" type: "InnerProduct" bottom: "norm" top: "fc" inner_product_param { num_output: 3
  weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
'''


@pytest.fixture()
def files(tmp_path):
    proto = tmp_path / "net.prototxt"
    proto.write_text(NET)
    m = models.to_torch(models.load_net(str(proto)), seed=4)
    models.save_caffemodel(m, tmp_path / "w.caffemodel")
    x = np.random.default_rng(0).standard_normal((5, 3, 10, 10)).astype(np.float32)  # batch 5, net says 2
    np.save(tmp_path / "x.npy", x)
    return tmp_path, proto, m, x


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_run_writes_blobs_by_caffe_name(files, backend):
    tmp, proto, m, x = files
    out = tmp / f"{backend}.npz"
    rc = main(["run", str(proto), "--weights", str(tmp / "w.caffemodel"), "--input", str(tmp / "x.npy"),
               "--backend", backend, "--blobs", "all", "--out", str(out)])
    assert rc == 0
    got = np.load(out)
    with torch.no_grad():
        want = m(torch.from_numpy(x), blobs="all")
    assert set(got.files) == set(want)
    for k, v in want.items():
        assert got[k].shape == tuple(v.shape)
        np.testing.assert_allclose(got[k], v.numpy(), rtol=1e-5, atol=1e-6)


def test_run_selected_blobs(files):
    tmp, proto, m, x = files
    out = tmp / "sel.npz"
    assert main(["run", str(proto), "--weights", str(tmp / "w.caffemodel"), "--input", str(tmp / "x.npy"),
                 "--blobs", "conv1/3x3,pool", "--out", str(out)]) == 0
    assert sorted(np.load(out).files) == ["conv1/3x3", "pool"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "models", *args], capture_output=True, text=True)


def test_bad_input_shape_one_line_exit_2(files):
    tmp, proto, m, x = files
    np.save(tmp / "bad.npy", np.zeros((2, 3, 9, 10), np.float32))
    p = _cli("run", str(proto), "--input", str(tmp / "bad.npy"), "--out", str(tmp / "o.npz"))
    assert p.returncode == 2
    lines = [l for l in p.stderr.splitlines() if not l.startswith("note:")]
    assert len(lines) == 1 and "expected shape ('N', 3, 10, 10)" in lines[0]


def test_weights_that_do_not_fit_name_layer_and_shapes(files, tmp_path):
    tmp, proto, m, x = files
    other = tmp_path / "other.prototxt"
    other.write_text(NET.replace("num_output: 4", "num_output: 5"))
    with pytest.raises(models.WeightsError, match=r"conv1/3x3.*blob 0.*\(5, 3, 3, 3\).*\(4, 3, 3, 3\)"):
        models.load_caffemodel(models.to_torch(models.load_net(str(other))), tmp / "w.caffemodel")


def test_caffemodel_round_trip(files, tmp_path):
    tmp, proto, m, x = files
    m2 = models.to_torch(models.load_net(str(proto)), seed=99)
    report = models.load_caffemodel(m2, tmp / "w.caffemodel")
    assert report["loaded"] == ["conv1/3x3", "fc"] and report["missing"] == []
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    models.save_caffemodel(m2, tmp_path / "v1.caffemodel", version="V1")
    m3 = models.to_torch(models.load_net(str(proto)), seed=7)
    models.load_caffemodel(m3, tmp_path / "v1.caffemodel")
    for a, b in zip(m.parameters(), m3.parameters()):
        assert torch.equal(a, b)
