"""``type: "Python"`` layers (models/layers/python_layer.py): a user's models.pycaffe.Layer subclass in the torch
graph, for inference and for training where it gives a backward; refusals name the layer."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import models

ROOT = Path(__file__).resolve().parents[1]

USER_MODULE = textwrap.dedent('''
    import json
    import numpy as np
    from models.pycaffe import Layer

    class Affine(Layer):
        """top = a * bottom + b, with a and b from param_str; and a second top, the per-item sum."""
        def setup(self, bottom, top):
            p = json.loads(self.param_str)
            self.a, self.b = float(p["a"]), float(p["b"])
            if len(bottom) != 1:
                raise Exception("Affine needs one bottom")
        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].data.shape)
            top[1].reshape(bottom[0].data.shape[0])
        def forward(self, bottom, top):
            top[0].data[...] = self.a * bottom[0].data + self.b
            top[1].data[...] = bottom[0].data.reshape(bottom[0].data.shape[0], -1).sum(axis=1)
        def backward(self, top, propagate_down, bottom):
            if propagate_down[0]:
                n = bottom[0].data.shape[0]
                bottom[0].diff[...] = self.a * top[0].diff + top[1].diff.reshape(n, 1, 1, 1)

    class NoBackward(Layer):
        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].data.shape)
        def forward(self, bottom, top):
            top[0].data[...] = bottom[0].data * 2
''')

NET = """name: "py"
input: "data" input_shape { dim: 2 dim: 3 dim: 2 dim: 2 }
layer { name: "aff" type: "Python" bottom: "data" top: "aff" top: "total"
  python_param { module: "user_layers" layer: "%s" param_str: '{"a": 3, "b": -1}' } }
"""


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_layers.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_layers", None)
    yield tmp_path
    sys.modules.pop("user_layers", None)


def test_python_layer_shapes_forward_and_backward(user_module):
    net = models.load_net(NET % "Affine")
    assert net.layers[0].top_shapes == [(2, 3, 2, 2), (2,)]
    m = models.to_torch(net)
    x = torch.randn(2, 3, 2, 2, requires_grad=True)
    out = m(x, blobs=["aff", "total"])
    torch.testing.assert_close(out["aff"], 3 * x.detach() - 1)
    torch.testing.assert_close(out["total"], x.detach().sum(dim=(1, 2, 3)))
    (out["aff"] * 2 + out["total"].view(2, 1, 1, 1)).sum().backward()
    # d/d aff = 2; each item's total is added to its 12 values, so d/d total = 12; bottom diff = a * 2 + 12
    torch.testing.assert_close(x.grad, torch.full_like(x, 3 * 2 + 12))


def test_python_layer_without_backward_runs_inference_but_refuses_a_gradient(user_module):
    net = models.load_net((NET % "NoBackward").replace(' top: "total"', ""))
    m = models.to_torch(net)
    x = torch.ones(2, 3, 2, 2)
    np.testing.assert_array_equal(m(x, blobs=["aff"])["aff"].numpy(), 2 * np.ones((2, 3, 2, 2), np.float32))
    with pytest.raises(models.NetDefinitionError, match=r"layer 'aff'.*NoBackward.*defines no backward"):
        m(x.requires_grad_(), blobs=["aff"])["aff"].sum().backward()


def test_python_layer_onnx_export_is_refused_naming_it(user_module):
    with pytest.raises(NotImplementedError, match=r"layer 'aff' of type 'Python' \(user_layers.Affine\).*ONNX"):
        models.to_onnx(models.load_net(NET % "Affine"))


@pytest.mark.parametrize("edit, expect", [
    (('module: "user_layers"', 'module: "no_such_module"'), "cannot import module 'no_such_module'"),
    (('layer: "Affine"', 'layer: "Nope"'), "has no class 'Nope'"),
    ((""""a": 3, """, ""), "setup raised KeyError"),
])
def test_bad_python_layers_are_one_line_naming_the_layer(user_module, edit, expect):
    (user_module / "net.prototxt").write_text((NET % "Affine").replace(*edit))
    p = subprocess.run([sys.executable, "-m", "models", "info", "net.prototxt"], cwd=user_module, capture_output=True,
                       text=True, timeout=120, env={"PYTHONPATH": f"{user_module}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "layer 'aff'" in lines[0] and expect in lines[0], p.stderr


TRAIN_NET = """name: "t"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 dim: 2 dim: 2 } shape { dim: 4 }
                     data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "aff" type: "Python" bottom: "conv" top: "aff" top: "total"
  python_param { module: "user_layers" layer: "Affine" param_str: '{"a": 0.5, "b": 0}' } }
layer { name: "silence" type: "Silence" bottom: "total" }
layer { name: "ip" type: "InnerProduct" bottom: "aff" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_models_train_trains_through_a_python_layer(user_module):
    (user_module / "net.prototxt").write_text(TRAIN_NET)
    (user_module / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\n'
                                                 'max_iter: 5\ndisplay: 1\nsnapshot_after_train: false\n'
                                                 'random_seed: 1\n')
    p = subprocess.run([sys.executable, "-m", "models", "train", "--solver", "solver.prototxt"], cwd=user_module,
                       capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": f"{user_module}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr[-2000:]
    losses = [float(ln.rsplit("=", 1)[1]) for ln in p.stderr.splitlines() if ", loss = " in ln]
    assert len(losses) == 6 and losses[-1] < losses[0]      # label 1 everywhere: SGD through the layer lowers it
