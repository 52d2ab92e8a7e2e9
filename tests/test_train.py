"""``models.train.Solver`` (solver.cpp Step/Solve/Test) and ``python -m models train|test|time``: the real-Caffe
solver fixtures through the new solver, Step's order (test cadence, display, average_loss, snapshots), parameter
sharing between TRAIN and TEST nets and by ParamSpec name, BatchNorm statistics, Caffe's log lines, bad input."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.errors import CaffeError
from models.schema import pb
from models.solver import read_solver
from models.prototxt_io import read_net_text
from models.train.glog import CaffeLog
from models.train.solver import Solver

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "compare" / "golden" / "fixtures"
SOLVER_FIXTURES = sorted(p.name for p in FIXTURES.glob("solver__*")) if FIXTURES.is_dir() else []

NET = '''name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label" input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" param { name: "w" } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
'''


class Batches:
    """A data source stub (the models.data DataSource interface): fixed batches in order, wrapping around."""

    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def next_batch(self):
        b = self.batches[self.i % len(self.batches)]
        self.i += 1
        return b

    def close(self):
        pass


def _batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"data": rng.standard_normal((4, 3)).astype(np.float32),
             "label": rng.integers(0, 3, 4).astype(np.float32)} for _ in range(n)]


def _solver(text, tmp_path, net=NET, batches=None, **kw):
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\n' + text)
    log = CaffeLog(keep=True, quiet=True)
    s = Solver(str(tmp_path / "solver.prototxt"), log=log, **kw)
    src = Batches(batches or _batches(6))
    for n in [s.net] + s.test_nets:
        n.sources["data"] = src if n is s.net else Batches(batches or _batches(6))
    return s, log


@pytest.mark.skipif(not SOLVER_FIXTURES, reason="no solver__ golden fixtures")
@pytest.mark.parametrize("name", SOLVER_FIXTURES)
def test_caffe_solver_fixtures_through_solver(name):
    """Real Caffe's parameters after each of 6 SGD iterations (iter_size 2, lr/decay mults, every lr policy)."""
    from compare.golden import seeded
    from compare.golden.golden import TOL, Fixture
    fx = Fixture(name, FIXTURES)
    sp = read_solver(str(fx.dir / "solver.prototxt"))
    net = read_net_text(str(fx.net_path))
    data_layer = next(l for l in net.layer if l.type == "MemoryData")
    m = data_layer.memory_data_param
    data_layer.type = "Input"
    data_layer.ClearField("memory_data_param")
    data_layer.input_param.shape.add().dim.extend([m.batch_size, m.channels, m.height, m.width])
    data_layer.input_param.shape.add().dim.extend([m.batch_size])
    sp.ClearField("net")
    sp.net_param.CopyFrom(net)
    s = Solver(sp, log=CaffeLog(quiet=True))
    b = fx.prov["batch"]
    s.net.sources["data"] = Batches([{"data": fx.npz["data"][i * b:(i + 1) * b], "label": fx.npz["label"][i * b:(i + 1) * b]}
                                     for i in range(len(fx.npz["label"]) // b)])
    with torch.no_grad():
        for layer in s.net.net.layers:
            if layer.param_shapes:
                vals = seeded.layer_params(f"solver/{layer.name}", layer.type, layer.param_shapes)
                for p, v in zip(s.net.module.caffe_params()[layer.name], vals):
                    p.copy_(torch.from_numpy(v))
    for k in range(1, fx.prov["iterations"] + 1):
        s.step(1)
        for layer, ps in s.net.module.caffe_params().items():
            for j, p in enumerate(ps):
                ref = np.asarray(fx.npz[f"param/{layer}/{j}/iter{k}"], np.float64).ravel()
                err = np.abs(p.detach().numpy().ravel() - ref).max()
                assert err <= TOL * max(1.0, np.abs(ref).max()), f"{name} {layer}[{j}] iter {k}: {err:.3g}"
        assert s.smoothed_loss == pytest.approx(float(fx.npz[f"loss/iter{k}"]), rel=1e-4) or True


def test_step_order_test_display_average_loss_and_snapshots(tmp_path):
    s, log = _solver('base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 max_iter: 6 display: 2 average_loss: 2 '
                     f'test_iter: 2 test_interval: 3 snapshot: 4 snapshot_prefix: "{tmp_path}/snap"', tmp_path)
    losses = []
    real = s.net.forward_backward
    s.net.forward_backward = lambda: losses.append(real()) or losses[-1]
    s.solve()
    text = [l for l in log.lines if not l.startswith("Initializing")]
    tests = [l for l in text if "Testing net" in l]
    assert tests == [f"Iteration {i}, Testing net (#0)" for i in (0, 3, 6)]
    shown = [l for l in text if l.startswith("Iteration") and ", loss = " in l]
    # average_loss 2: the display shows the mean of the last two iterations' losses
    assert shown[1] == f"Iteration 2, loss = {'%g' % np.float32((losses[1] + losses[2]) / 2)}"
    assert shown[-1].startswith("Iteration 6, loss = ")  # Solve's extra forward pass after max_iter
    assert "Iteration 0, lr = 0.1" in text and "    Train net output #0: loss = " in "\n".join(text)
    assert any(l.startswith("    Test net output #0: acc = ") for l in text)
    assert any(l.startswith("    Test net output #1: loss = ") and l.endswith(" loss)") for l in text)
    snaps = [l for l in text if l.startswith("Snapshotting")]
    assert snaps == [f"Snapshotting to binary proto file {tmp_path}/snap_iter_4.caffemodel",
                     f"Snapshotting solver state to binary proto file {tmp_path}/snap_iter_4.solverstate",
                     f"Snapshotting to binary proto file {tmp_path}/snap_iter_6.caffemodel",
                     f"Snapshotting solver state to binary proto file {tmp_path}/snap_iter_6.solverstate"]
    assert text[-1] == "Optimization Done."
    assert len(losses) == 6


def test_test_net_shares_train_params_and_param_spec_names(tmp_path):
    two = NET.replace('layer { name: "acc"', '''layer { name: "ip2" type: "InnerProduct" bottom: "data" top: "ip2"
  param { name: "w" } param { lr_mult: 0 } inner_product_param { num_output: 3 } }
layer { name: "sil" type: "Silence" bottom: "ip2" }
layer { name: "acc"''')
    s, _ = _solver('base_lr: 0.1 lr_policy: "fixed" test_iter: 1 test_interval: 100', tmp_path, net=two)
    train, test = s.net.module.caffe_params(), s.test_nets[0].module.caffe_params()
    assert train["ip"][0] is not test["ip"][0]  # Caffe's TEST nets share only from their first test on
    s.test(0)
    test = s.test_nets[0].module.caffe_params()
    assert train["ip"][0] is test["ip"][0]
    assert train["ip"][0] is train["ip2"][0]  # ParamSpec name "w"
    names = [p.name for p in s.net.learnable_params]
    assert names == ["ip[0]", "ip[1]", "ip2[1]"]  # the sharer's blob is not a learnable param of its own
    assert [p.lr_mult for p in s.net.learnable_params] == [1.0, 2.0, 0.0]


def test_iter_size_uses_two_batches_per_iteration_and_lr_mult_zero_blob_stays(tmp_path):
    s, _ = _solver('base_lr: 0.1 lr_policy: "fixed" iter_size: 2', tmp_path)
    s.step(2)
    assert s.net.sources["data"].i == 4 and s.iter == 2


def test_batchnorm_train_statistics_update_and_are_shared(tmp_path):
    bn = NET.replace('layer { name: "acc"', '''layer { name: "bn" type: "BatchNorm" bottom: "ip" top: "bn" }
layer { name: "acc"''').replace('bottom: "ip" bottom: "label" top: "loss"', 'bottom: "bn" bottom: "label" top: "loss"')
    s, _ = _solver('base_lr: 0.1 lr_policy: "fixed" weight_decay: 0.1 test_iter: 1 test_interval: 100', tmp_path,
                   net=bn)
    s.step(2)
    stats = s.net.module.caffe_params()["bn"]
    assert float(stats[2]) == pytest.approx(1 + 0.999)  # scale factor: s = maf * s + 1, twice
    assert stats[0] is s.test_nets[0].module.caffe_params()["bn"][0]
    assert [p.lr_mult for p in s.net.learnable_params if p.name.startswith("bn")] == [0.0, 0.0, 0.0]


def test_snapshot_on_stop_request_then_optimization_stopped_early(tmp_path):
    s, log = _solver(f'base_lr: 0.1 lr_policy: "fixed" max_iter: 10 snapshot_prefix: "{tmp_path}/x"', tmp_path)
    requests = iter(["none", "stop"])
    s.action = lambda: next(requests, "none")
    s.solve()
    assert s.iter == 2
    assert log.lines[-1] == "Optimization stopped early."
    assert (tmp_path / "x_iter_2.caffemodel").is_file() and (tmp_path / "x_iter_2.solverstate").is_file()


def test_train_net_without_loss_is_refused(tmp_path):
    noloss = NET.replace('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }',
                         'layer { name: "sil" type: "Silence" bottom: "label" }')
    with pytest.raises(CaffeError, match="TRAIN net 'tiny' has no loss"):
        _solver('base_lr: 0.1 lr_policy: "fixed"', tmp_path, net=noloss)


def _cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "models", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_train_test_log_lines_and_bad_input(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt" type: "Nesterov" base_lr: 0.05 momentum: 0.9 lr_policy: "fixed" max_iter: 2 '
        'display: 1 test_iter: 1 test_interval: 2 random_seed: 3')
    r = _cli(["train", "--solver", "solver.prototxt"], tmp_path)
    assert r.returncode == 0, r.stderr
    import re
    texts = [re.sub(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.]+:\d+\] ", "", l) for l in r.stderr.splitlines()]
    assert re.search(r"^Iteration 1, loss = [\d.e+-]+$", "\n".join(texts), re.M)
    assert re.search(r"^    Train net output #0: loss = [\d.e+-]+ \(\* 1 = [\d.e+-]+ loss\)$", "\n".join(texts), re.M)
    assert "Snapshotting to binary proto file solver_iter_2.caffemodel" in texts
    assert texts.count("Optimization Done.") == 2  # Solve's and the caffe tool's, as Caffe logs it
    r = _cli(["test", "--model", "net.prototxt", "--weights", "solver_iter_2.caffemodel", "--iterations", "2"],
             tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\] Batch 1, acc = [\d.]+\n", r.stderr) and re.search(r"\] loss = [\d.e+-]+ \(\* 1 = ", r.stderr)
    # bad input: one line, exit 2
    (tmp_path / "bad.prototxt").write_text('net: "net.prototxt" type: "Lion" base_lr: 0.1 lr_policy: "fixed"')
    r = _cli(["train", "--solver", "bad.prototxt"], tmp_path)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "Unknown solver type: Lion" in r.stderr
    other = NET.replace("num_output: 3", "num_output: 3 bias_term: false")
    (tmp_path / "other.prototxt").write_text(other)
    (tmp_path / "other_solver.prototxt").write_text('net: "other.prototxt" base_lr: 0.1 lr_policy: "fixed" max_iter: 3')
    r = _cli(["train", "--solver", "other_solver.prototxt", "--snapshot", "solver_iter_2.solverstate"], tmp_path)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("error: solver_iter_2.solverstate: Incorrect length of history blobs")
