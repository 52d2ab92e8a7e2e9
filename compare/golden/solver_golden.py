"""Solver fixtures: real Caffe's SGDSolver (src/caffe/solvers/sgd_solver.cpp, src/caffe/solver.cpp) on a small net.

The net reads its batches from a MemoryData layer (src/caffe/layers/memory_data_layer.cpp), which advances by
``batch_size`` samples on every forward, so with ``iter_size: 2`` the two forward/backward passes of one
iteration see different data: forward number f (0-based, f = 2 * iteration + sub-iteration) reads samples
``[f * BATCH, (f + 1) * BATCH)`` of ``data``/``label`` in blobs.npz.  A solver that ignores iter_size, or
divides wrongly, does not reproduce the params.

Per policy: 6 iterations (``solver.step(1)`` six times), params stored before the first and after every iteration
(``param/<layer>/<blob>/iter<k>``, k = 0..6), and the loss blob after each iteration (``loss/iter<k>``: the
loss of the last forward of iteration k-1, as Caffe leaves it in net.blobs).  lr_mult/decay_mult differ from 1.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

import seeded

BATCH = 2
ITER_SIZE = 2
ITERS = 6
SHAPE = (3, 6, 6)
CLASSES = 3
RANDOM_SEED = 1701

NET = f"""name: "solver_net"
layer {{ name: "data" type: "MemoryData" top: "data" top: "label"
  memory_data_param {{ batch_size: {BATCH} channels: {SHAPE[0]} height: {SHAPE[1]} width: {SHAPE[2]} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
  convolution_param {{ num_output: 4 kernel_size: 3 }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  param {{ lr_mult: 0.5 decay_mult: 3 }} param {{ lr_mult: 1 decay_mult: 0 }}
  inner_product_param {{ num_output: {CLASSES} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }}
"""

COMMON = f"""net: "net.prototxt"
type: "SGD"
base_lr: 0.05
momentum: 0.9
weight_decay: 0.0005
iter_size: {ITER_SIZE}
max_iter: {ITERS}
display: 0
solver_mode: CPU
random_seed: {RANDOM_SEED}
"""

POLICIES = {
    "step": 'lr_policy: "step"\ngamma: 0.5\nstepsize: 2\n',
    "multistep": 'lr_policy: "multistep"\ngamma: 0.5\nstepvalue: 2\nstepvalue: 4\n',
    "inv": 'lr_policy: "inv"\ngamma: 0.5\npower: 0.75\n',
    "poly": 'lr_policy: "poly"\npower: 2.0\n',
    "exp": 'lr_policy: "exp"\ngamma: 0.8\n',
    "sigmoid": 'lr_policy: "sigmoid"\ngamma: -1.0\nstepsize: 3\n',
    "fixed": 'lr_policy: "fixed"\n',
}


def solver_text(policy: str) -> str:
    return COMMON + POLICIES[policy]


def make(policy: str, out_dir: Path, caffe_info: dict) -> None:
    import caffe
    from make_golden import atomic_savez, atomic_write_text, layer_table
    caffe.set_mode_cpu()
    caffe.set_random_seed(RANDOM_SEED)
    n = BATCH * ITER_SIZE * ITERS
    data = np.ascontiguousarray(seeded.seeded_array("solver/data", (n,) + SHAPE, 1.0))
    label = np.ascontiguousarray(seeded.seeded_labels("solver/label", (n,), CLASSES))
    out_dir.mkdir(parents=True, exist_ok=True)
    store = {"data": data, "label": label}
    with tempfile.TemporaryDirectory() as td:
        (Path(td) / "net.prototxt").write_text(NET)
        (Path(td) / "solver.prototxt").write_text(solver_text(policy))
        cwd = os.getcwd()
        os.chdir(td)
        try:
            solver = caffe.SGDSolver("solver.prototxt")
        finally:
            os.chdir(cwd)
        net = solver.net
        lp = {name: l for name, l in zip(net._layer_names, net.layers)}
        for name, blobs in net.params.items():
            vals = seeded.layer_params(f"solver/{name}", lp[name].type, [b.data.shape for b in blobs])
            for b, v in zip(blobs, vals):
                b.data[...] = v
        net.set_input_arrays(data, label)

        def snap(k: int) -> None:
            for name, blobs in net.params.items():
                for j, b in enumerate(blobs):
                    store[f"param/{name}/{j}/iter{k}"] = b.data.copy()

        snap(0)
        losses = []
        for k in range(1, ITERS + 1):
            solver.step(1)
            snap(k)
            store[f"loss/iter{k}"] = np.array(net.blobs["loss"].data, dtype=np.float32).reshape(())
            losses.append(float(net.blobs["loss"].data))
        table = layer_table(net)
    atomic_savez(out_dir / "blobs.npz", store)
    atomic_write_text(out_dir / "net.prototxt", NET)
    atomic_write_text(out_dir / "solver.prototxt", solver_text(policy))
    prov = {
        "fixture": f"solver__{policy}", "source": "compare/golden/solver_golden.py", "phase": "TRAIN",
        "batch": BATCH, "iter_size": ITER_SIZE, "iterations": ITERS, "caffe": caffe_info,
        "command": f"python compare/golden/make_golden.py --only solver__{policy}", "random_seed": RANDOM_SEED,
        "seed_key": "solver", "weights": "seeded",
        "weights_recipe": "seeded.layer_params('solver/<layer name>', <layer type>, <param shapes>)",
        "inputs": {"data": f"seeded_array('solver/data', ({n},) + {SHAPE}, 1.0)",
                   "label": f"seeded_labels('solver/label', ({n},), {CLASSES})"},
        "forward_order": "forward f reads samples [f*BATCH, (f+1)*BATCH), f = iter*iter_size + sub",
        "losses": losses, "layers": table,
    }
    atomic_write_text(out_dir / "provenance.json", json.dumps(prov, indent=1) + "\n")
