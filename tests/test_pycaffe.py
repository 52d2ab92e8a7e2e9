"""models.pycaffe: blob arrays are views that stay valid, in-place edits take effect, bad input is refused with the
project's error types (which are also the Python exceptions real pycaffe raises). Parity with real pycaffe is in
compare/test_pycaffe_scripts.py."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from models import pycaffe as caffe
from models.errors import CaffeError, InputError
from models.pycaffe.blob import ParamBlob

NET = """name: "t"
force_backward: true
layer { name: "data" type: "Input" top: "data" top: "label" input_param { shape { dim: 2 dim: 4 } shape { dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


@pytest.fixture()
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLOG_minloglevel", "2")
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.5\nlr_policy: "fixed"\n'
                                              'momentum: 0.9\nmax_iter: 4\ndisplay: 0\nsnapshot_prefix: "s"\n')
    return tmp_path


def _feed(net, seed=0):
    rng = np.random.default_rng(seed)
    net.blobs["data"].data[...] = rng.standard_normal((2, 4)).astype(np.float32)
    net.blobs["label"].data[...] = [0, 2]


def test_blob_and_param_views_stay_valid_across_forward_backward_and_steps(files):
    solver = caffe.SGDSolver("solver.prototxt")
    net = solver.net
    data, loss, w, wdiff = (net.blobs["data"].data, net.blobs["loss"].data, net.params["ip"][0].data,
                            net.params["ip"][0].diff)
    _feed(net)
    before = w.copy()
    solver.step(2)
    assert np.shares_memory(data, net.blobs["data"].data) and np.shares_memory(w, net.params["ip"][0].data)
    assert np.shares_memory(wdiff, net.params["ip"][0].diff)
    assert not np.array_equal(w, before)           # the held array shows the updated weights
    assert float(loss) == float(net.blobs["loss"].data) > 0   # ... and the held loss the last forward
    np.testing.assert_array_equal(net.blobs["ip"].data, np.maximum(net.blobs["ip"].data, 0))  # post-ReLU value


def test_in_place_edits_are_what_the_next_forward_and_step_read(files):
    net = caffe.Net("net.prototxt", caffe.TEST)
    _feed(net)
    net.params["ip"][0].data[...] = np.random.default_rng(1).standard_normal((3, 4))
    first = net.forward()["loss"].copy()
    net.params["ip"][0].data[...] = 0          # all logits 0: loss = log(3)
    net.params["ip"][1].data[...] = 0
    assert float(net.forward()["loss"]) == pytest.approx(np.log(3), rel=1e-6)
    assert float(first) != pytest.approx(np.log(3))
    net.blobs["label"].data[...] = [1, 1]      # input write, bare forward
    net.params["ip"][1].data[1] = 5.0
    assert float(net.forward()["loss"]) < 0.1


def test_backward_overwrites_blob_diffs_and_accumulates_param_diffs(files):
    net = caffe.Net("net.prototxt", caffe.TRAIN)
    _feed(net)
    net.forward()
    d1 = net.backward()["data"].copy()
    g1 = net.params["ip"][0].diff.copy()
    d2 = net.backward()["data"]
    np.testing.assert_allclose(d2, d1)                                   # Caffe writes bottom diffs
    np.testing.assert_allclose(net.params["ip"][0].diff, 2 * g1, rtol=1e-6)  # and adds into param diffs
    assert float(net.blobs["loss"].diff) == 1.0                          # a loss top's diff is its weight
    net.clear_param_diffs()
    assert not net.params["ip"][0].diff.any()


def test_api_surface_names_and_order(files):
    net = caffe.Net("net.prototxt", caffe.TEST)
    assert net.inputs == ["data", "label"] and net.outputs == ["loss"]
    assert list(net.blobs) == ["data", "label", "ip", "loss"]
    assert [l.type for l in net.layers] == ["Input", "InnerProduct", "ReLU", "SoftmaxWithLoss"]
    assert list(net.params) == ["ip"] and [b.shape for b in net.params["ip"]] == [(3, 4), (3,)]
    assert net.top_names["relu"] == ["ip"] and net.bottom_names["loss"] == ["ip", "label"]
    assert net.layer_dict["ip"].blobs[0].count == 12
    b = net.blobs["ip"]
    assert (b.num, b.channels, b.height, b.width) == (2, 3, 1, 1)
    assert caffe.TRAIN == caffe.proto.caffe_pb2.TRAIN == 0 and caffe.TEST == 1
    assert hasattr(caffe.io, "Transformer") and "InnerProduct" in caffe.layer_type_list()


def test_three_constructor_forms_save_and_copy_from(files):
    net = caffe.Net("net.prototxt", caffe.TEST)
    net.params["ip"][0].data[...] = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    net.save("w.caffemodel")
    for other in (caffe.Net("net.prototxt", "w.caffemodel", caffe.TEST),
                  caffe.Net("net.prototxt", caffe.TEST, weights="w.caffemodel")):
        np.testing.assert_array_equal(other.params["ip"][0].data, net.params["ip"][0].data)
    net.save_hdf5("w.caffemodel.h5")
    third = caffe.Net("net.prototxt", caffe.TEST)
    third.copy_from("w.caffemodel.h5")
    np.testing.assert_array_equal(third.params["ip"][0].data, net.params["ip"][0].data)


def test_blob_reshape_keeps_memory_that_fits_and_the_net_follows(files):
    net = caffe.Net("net.prototxt", caffe.TEST)
    blob = net.blobs["data"]
    old = blob.data
    blob.reshape(1, 4)
    assert np.shares_memory(old, blob.data) and blob.shape == (1, 4)
    blob.reshape(5, 4)
    assert not np.shares_memory(old, blob.data)
    net.blobs["label"].reshape(5)
    net.reshape()
    assert net.blobs["ip"].shape == (5, 3)
    w = net.params["ip"][0].data
    out = net.forward(data=np.ones((5, 4), np.float32), label=np.zeros(5, np.float32))
    assert out["loss"].shape == () and np.shares_memory(w, net.params["ip"][0].data)
    with pytest.raises(caffe.ArgumentError, match="no kwargs"):
        blob.reshape(2, 4, axis=0)


def test_bad_input_is_refused_with_one_clear_error(files):
    with pytest.raises(caffe.MissingFileError, match="Could not open file nope.prototxt") as e:
        caffe.Net("nope.prototxt", caffe.TEST)
    assert isinstance(e.value, RuntimeError) and isinstance(e.value, InputError)
    with pytest.raises(caffe.ArgumentError, match="phase must be caffe.TRAIN") as e:
        caffe.Net("net.prototxt", "TEST")
    assert isinstance(e.value, TypeError)
    with pytest.raises(caffe.ArgumentError):
        caffe.Net("net.prototxt")
    with pytest.raises(caffe.MissingFileError, match="missing.caffemodel"):
        caffe.Net("net.prototxt", "missing.caffemodel", caffe.TEST)
    net = caffe.Net("net.prototxt", caffe.TEST)
    with pytest.raises(caffe.PycaffeError, match="do not match net inputs"):
        net.forward(data=np.zeros((2, 4), np.float32))
    with pytest.raises(caffe.PycaffeError, match="not batch sized"):
        net.forward(data=np.zeros((3, 4), np.float32), label=np.zeros(3, np.float32))
    with pytest.raises(caffe.PycaffeError, match="no layer 'conv9'"):
        net.forward(start="conv9")
    with pytest.raises(caffe.MissingFileError):
        caffe.get_solver("nope_solver.prototxt")
    (files / "bad_solver.prototxt").write_text('net: "net.prototxt"\ntype: "Lion"\nbase_lr: 0.1\nlr_policy: "fixed"\n')
    with pytest.raises(CaffeError, match="Unknown solver type: Lion"):
        caffe.get_solver("bad_solver.prototxt")
    with pytest.raises(caffe.PycaffeError, match="first layer is a MemoryDataLayer"):
        net.set_input_arrays(np.zeros((2, 1, 1, 4), np.float32), np.zeros(2, np.float32))


def test_solver_class_decides_the_rule_and_snapshot_restore_resume(files):
    runs = {}
    for cls in (caffe.SGDSolver, caffe.AdamSolver):
        s = cls("solver.prototxt")
        assert s.type == cls.TYPE
        _feed(s.net)
        s.step(3)
        runs[cls.TYPE] = s.net.params["ip"][0].data.copy()
    assert not np.allclose(runs["SGD"], runs["Adam"])
    s = caffe.get_solver("solver.prototxt")
    _feed(s.net)
    s.step(2)
    s.snapshot()
    s.step(2)
    again = caffe.SGDSolver("solver.prototxt")
    again.restore("s_iter_2.solverstate")
    assert again.iter == 2
    _feed(again.net)
    again.step(2)
    np.testing.assert_allclose(again.net.params["ip"][0].data, s.net.params["ip"][0].data, rtol=1e-6)


def test_param_blob_host_copy_syncs_like_synced_memory():
    # a float64 CPU parameter takes the host-copy path that CUDA parameters take
    p = torch.nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
    blob = ParamBlob(lambda: p)
    arr = blob.data
    arr[...] = 2.0
    assert float(p.detach().sum()) == 0.0      # not yet: written back before the next run
    blob.push()
    assert float(p.detach().sum()) == 12.0
    with torch.no_grad():
        p.add_(1.0)                            # the device changed (a forward, an update)
    blob.invalidate()
    assert float(blob.data.sum()) == 18.0


def test_layer_base_class_has_pycaffe_signatures():
    from models.schema import pb

    class Scale2(caffe.Layer):
        def setup(self, bottom, top):
            self.k = float(self.param_str)

        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].shape)

        def forward(self, bottom, top):
            top[0].data[...] = self.k * bottom[0].data

    lp = pb.LayerParameter(name="s", type="Python")
    lp.python_param.param_str = "2.5"
    layer = Scale2(lp)
    bottom, top = [caffe.Blob((2, 3))], [caffe.Blob()]
    bottom[0].data[...] = 1.0
    layer._layer_setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert layer.type == "Python" and layer.param_str == "2.5"
    np.testing.assert_array_equal(top[0].data, np.full((2, 3), 2.5, np.float32))


def test_runner_exits_2_with_one_line_for_bad_input(files, monkeypatch, capsys):
    from models.pycaffe.__main__ import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
        monkeypatch.setitem(sys.modules, name, sys.modules[name])
    for name in caffe.caffe_modules():
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name, caffe))
    (files / "s.py").write_text("import caffe\nprint(caffe.__name__)\ncaffe.Net('gone.prototxt', caffe.TEST)\n")
    assert main(["s.py"]) == 2
    out, err = capsys.readouterr()
    assert out.strip() == "models.pycaffe" and err.strip() == "error: Could not open file gone.prototxt"
    assert main(["no_such_script.py"]) == 2
