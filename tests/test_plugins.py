"""Layer plugins (models.plugins): register_layer in code, and installed packages found by their entry point.

The entry-point tests install docs/examples/caffe_layer_plugin the way pip would leave it for importlib.metadata
(the module plus a ``*.dist-info`` folder with ``entry_points.txt`` on the path) and run ``python -m models`` in a
subprocess, so the plugin's types never leak into this process."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import models
from models.plugins import ENTRY_POINT_GROUP

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "caffe_layer_plugin"

NET = """name: "p"
input: "data" input_shape { dim: 2 dim: 3 dim: 4 dim: 4 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "act" type: "%s" bottom: "conv" top: "act" }
"""


class ChannelGain(torch.nn.Module):
    """A plugin module with one learnable blob of shape (C,): top = bottom * gain[c]."""

    def __init__(self, channels):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * self.gain.view(1, -1, 1, 1)


@pytest.fixture(scope="module")
def gain_type():
    from models.shapes import SHAPE_FUNCTIONS
    name = "TestChannelGain"
    if name not in SHAPE_FUNCTIONS:   # registered once per test process
        models.register_layer(name, shape=lambda lp, b: ([tuple(b[0])], [(b[0][1],)]),
                              build=lambda layer, phase: ChannelGain(layer.bottom_shapes[0][1]))
    return name


def _net(tmp_path, type_name) -> Path:
    p = tmp_path / f"{type_name}.prototxt"
    p.write_text(NET % type_name)
    return p


def test_registered_layer_infers_shapes_runs_loads_weights_and_has_a_gradient(tmp_path, gain_type):
    net = models.load_net(_net(tmp_path, gain_type))
    layer = net.layers[-1]
    assert layer.top_shapes == [(2, 3, 4, 4)] and layer.param_shapes == [(3,)]
    params = {"conv": [np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), np.zeros(3, np.float32)],
              "act": [np.array([2.0, -1.0, 0.5], np.float32)]}
    models.write_caffemodel(tmp_path / "w.caffemodel", net, params)
    m = models.to_torch(net)
    rep = models.load_caffemodel(m, tmp_path / "w.caffemodel", strict=True)
    assert "act" in rep["loaded"]
    x = torch.randn(2, 3, 4, 4)
    out = m(x, blobs=["act"])["act"]
    torch.testing.assert_close(out, x * torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1))
    out.sum().backward()
    blob = dict(m.named_parameters())
    grads = [p.grad for n, p in blob.items() if p.shape == (3,) and "act" in n]
    assert grads and grads[0] is not None
    torch.testing.assert_close(grads[0], x.sum(dim=(0, 2, 3)))
    # saving writes the plugin layer's blob back in Caffe's order
    models.save_caffemodel(m, tmp_path / "back.caffemodel")
    back = models.read_caffemodel(tmp_path / "back.caffemodel")
    np.testing.assert_array_equal(back.params()["act"][0], params["act"][0])


def test_plugin_without_export_is_refused_by_onnx_naming_the_layer(tmp_path, gain_type):
    net = models.load_net(_net(tmp_path, gain_type))
    with pytest.raises(NotImplementedError, match=r"layer 'act' of type 'TestChannelGain'.*no ONNX export"):
        models.to_onnx(net)


def test_register_layer_refuses_a_taken_type_and_non_callables():
    with pytest.raises(ValueError, match="'ReLU' is already registered"):
        models.register_layer("ReLU", shape=lambda lp, b: ([b[0]], []), build=lambda layer, phase: None)
    with pytest.raises(ValueError, match="must be callables"):
        models.register_layer("Nothing", shape=None, build=lambda layer, phase: None)


def _install_example(site: Path) -> dict:
    """What ``pip install docs/examples/caffe_layer_plugin`` leaves for importlib.metadata, in ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE / "my_caffe_layers.py", site / "my_caffe_layers.py")
    info = site / "my_caffe_layers-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-caffe-layers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nmish = my_caffe_layers:register\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))


def _models(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "models", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_without_the_plugin_the_type_is_refused_with_a_pointer_to_the_api(tmp_path):
    p = _models("info", str(_net(tmp_path, "Mish")), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and "layer 'act' has type 'Mish'" in lines[0] and "models.register_layer" in lines[0]


def test_installed_example_plugin_is_found_by_its_entry_point_and_converts(tmp_path):
    env = _install_example(tmp_path / "site")
    net = _net(tmp_path, "Mish")
    info = _models("info", str(net), env=env)
    assert info.returncode == 0, info.stderr
    assert "Mish" in info.stdout
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    outs = {}
    for backend in ("torch", "onnxruntime"):
        r = _models("run", str(net), "--input", str(tmp_path / "x.npy"), "--backend", backend, "--blobs", "act,conv",
                    "--out", str(tmp_path / f"{backend}.npz"), env=env)
        assert r.returncode == 0, r.stderr
        outs[backend] = np.load(tmp_path / f"{backend}.npz")
    conv = outs["torch"]["conv"]
    mish = conv * np.tanh(np.log1p(np.exp(conv)))
    np.testing.assert_allclose(outs["torch"]["act"], mish, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs["onnxruntime"]["act"], outs["torch"]["act"], rtol=1e-5, atol=1e-6)


def test_a_broken_entry_point_is_one_line_naming_it(tmp_path):
    env = _install_example(tmp_path / "site")
    (tmp_path / "site" / "my_caffe_layers.py").write_text("raise ImportError('needs torchvision')\n")
    p = _models("info", str(_net(tmp_path, "Mish")), env=env)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and "mish = my_caffe_layers:register" in lines[0] and "needs torchvision" in lines[0]


TRAIN_NET = """name: "t"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 dim: 4 dim: 4 } shape { dim: 4 }
                     data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "act" type: "Mish" bottom: "conv" top: "act" }
layer { name: "ip" type: "InnerProduct" bottom: "act" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_installed_plugin_trains_with_models_train(tmp_path):
    env = _install_example(tmp_path / "site")
    (tmp_path / "net.prototxt").write_text(TRAIN_NET)
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 5\n'
                                              'display: 1\nsnapshot_after_train: false\nrandom_seed: 1\n')
    p = _models("train", "--solver", "solver.prototxt", env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    losses = [float(ln.rsplit("=", 1)[1]) for ln in p.stderr.splitlines() if ", loss = " in ln]
    assert len(losses) == 6 and losses[-1] < losses[0]      # label 1 everywhere: SGD must lower the loss
    assert "Optimization Done." in p.stderr
