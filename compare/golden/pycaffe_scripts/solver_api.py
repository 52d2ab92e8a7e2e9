"""pycaffe Solver API fed from Python (Input blobs): every solver class and get_solver, step(n), iter, test_nets
sharing the train net's weights, snapshot() and restore().  Written against real pycaffe; run as
``python solver_api.py WORKDIR``.  Prints ``KEY values`` lines."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caffe  # noqa: E402
from _print import show  # noqa: E402

os.chdir(sys.argv[1])
NET = """name: "feed"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 6 } shape { dim: 4 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param { num_output: 5 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
SOLVERS = {
    "SGD": 'type: "SGD"\nmomentum: 0.9\n',
    "Nesterov": 'type: "Nesterov"\nmomentum: 0.9\n',
    "AdaGrad": 'type: "AdaGrad"\n',
    "RMSProp": 'type: "RMSProp"\nrms_decay: 0.9\n',
    "AdaDelta": 'type: "AdaDelta"\nmomentum: 0.9\nbase_lr: 1.0\n',
    "Adam": 'type: "Adam"\nmomentum: 0.9\nmomentum2: 0.999\n',
}
CLASSES = {"SGD": caffe.SGDSolver, "Nesterov": caffe.NesterovSolver, "AdaGrad": caffe.AdaGradSolver,
           "RMSProp": caffe.RMSPropSolver, "AdaDelta": caffe.AdaDeltaSolver, "Adam": caffe.AdamSolver}
with open("feed.prototxt", "w") as f:
    f.write(NET)
caffe.set_mode_cpu()
rng = np.random.default_rng(1)
X = rng.standard_normal((40, 6)).astype(np.float32)
Y = rng.integers(0, 3, 40).astype(np.float32)
W0 = {"ip1": [rng.standard_normal((5, 6)).astype(np.float32) * 0.4, np.full(5, 0.1, np.float32)],
      "ip2": [rng.standard_normal((3, 5)).astype(np.float32) * 0.4, np.zeros(3, np.float32)]}


def feed(net, k):
    idx = [(4 * k + j) % 40 for j in range(4)]
    net.blobs["data"].data[...] = X[idx]
    net.blobs["label"].data[...] = Y[idx]


for name, extra in SOLVERS.items():
    text = ('net: "feed.prototxt"\nbase_lr: 0.1\nlr_policy: "step"\ngamma: 0.5\nstepsize: 3\n'
            'weight_decay: 0.001\nmax_iter: 100\ndisplay: 0\nsnapshot_prefix: "s_%s"\ntest_iter: 1\n'
            'test_interval: 1000\ntest_initialization: false\n' % name) + extra
    text = "\n".join(l for l in text.splitlines() if not (name == "AdaDelta" and l == "base_lr: 0.1")) + "\n"
    with open(f"solver_{name}.prototxt", "w") as f:
        f.write(text)
    solver = CLASSES[name](f"solver_{name}.prototxt")
    same = caffe.get_solver(f"solver_{name}.prototxt")
    show(f"{name}/get_solver_iter", same.iter)
    for layer, vals in W0.items():
        for i, v in enumerate(vals):
            solver.net.params[layer][i].data[...] = v
    losses = []
    for k in range(6):
        feed(solver.net, k)
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    show(f"{name}/iter", solver.iter)
    show(f"{name}/losses", losses)
    show(f"{name}/ip1_w", solver.net.params["ip1"][0].data)
    show(f"{name}/ip2_b", solver.net.params["ip2"][1].data)
    tn = solver.test_nets[0]                     # shares the train net's weights
    show(f"{name}/test_shares", bool(np.allclose(tn.params["ip2"][1].data, solver.net.params["ip2"][1].data)))
    tn.blobs["data"].data[...] = X[:4]
    tn.blobs["label"].data[...] = Y[:4]
    show(f"{name}/test_loss", tn.forward()["loss"])
    solver.snapshot()
    snap = f"s_{name}_iter_6.solverstate"
    show(f"{name}/snapshot_files", [os.path.exists(f"s_{name}_iter_6.caffemodel"), os.path.exists(snap)])
    after = []
    for k in range(6, 9):
        feed(solver.net, k)
        solver.step(1)
        after.append(float(solver.net.blobs["loss"].data))
    show(f"{name}/after", after)
    other = CLASSES[name](f"solver_{name}.prototxt")
    other.restore(snap)
    show(f"{name}/restored_iter", other.iter)
    again = []
    for k in range(6, 9):
        feed(other.net, k)
        other.step(1)
        again.append(float(other.net.blobs["loss"].data))
    show(f"{name}/restored_after", again)
    feed(other.net, 9)
    other.step(2)                                 # step(n): the same input blobs for both iterations
    show(f"{name}/step2_iter", other.iter)
    show(f"{name}/step2_ip1_b", other.net.params["ip1"][1].data)
