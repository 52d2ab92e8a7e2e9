"""Golden training trajectories from real ``caffe train`` (tools/caffe.cpp, src/caffe/solver.cpp, solvers/*.cpp).

Each case is a tiny net (8x8 images or 16-vectors) trained for ``MAX_ITER`` = 50 iterations by the real ``caffe``
binary, from fixed starting weights (``--weights init.caffemodel``: seeded.layer_params, saved by pycaffe's
``Net.save``), with ``display: 1`` so every iteration's loss, learning rate and train outputs are in the log,
``snapshot: 25`` and the final snapshot at 50.  No dropout, no shuffling, no random transforms, so nothing depends
on Caffe's RNG.  The data are regenerated from seeded numpy by ``write_data`` (the same bytes every time; the
provenance records a digest of what a reader sees) rather than stored.

Cases (``CASES``) together cover every solver type (SGD, Nesterov through the old ``solver_type`` enum, AdaGrad,
RMSProp, AdaDelta, Adam), every lr policy (fixed, step, exp, inv, multistep, poly, sigmoid), ``iter_size`` 1 and
2, L1 and L2 decay, ``clip_gradients``, ``average_loss``, BINARYPROTO and HDF5 snapshots, and test nets
(``test_iter``/``test_interval``, test at iteration 0).  Nets:

* ``conv``: Convolution, BatchNorm (TRAIN statistics, moving_average_fraction 0.9) + Scale, ReLU, MAX and AVE
  Pooling, LRN, InnerProduct, SoftmaxWithLoss, Accuracy (TEST).  Fed from an LMDB (``Data``, uint8 Datum,
  ``scale: 1/256``), an HDF5 file (``HDF5Data``, the same values as float) or Input blobs (pycaffe script
  ``pycaffe_scripts/train_input.py``): the same batches three ways, so the three trajectories agree.
* ``losses``: InnerProducts (two sharing their params by name) feeding every loss layer Caffe has:
  SoftmaxWithLoss, HingeLoss (L2), InfogainLoss (H from a BlobProto file), MultinomialLogisticLoss, EuclideanLoss,
  SigmoidCrossEntropyLoss, ContrastiveLoss; loss weights differ from 1.  Fed from HDF5 (float targets).

Fixture ``train__<case>/``: ``solver.prototxt``, ``net.prototxt`` (sources relative to the run folder),
``init.caffemodel``, ``caffe.log`` (the tool's stderr), Caffe's snapshots ``snap_iter_25.*`` and
``snap_iter_50.*`` (the final weights), ``blobs.npz`` (numbers parsed from the log and the weights read from the
snapshots) and ``provenance.json``.  ``blobs.npz`` keys: ``loss`` (iterations 0..50 as logged: the 50th is
Solve()'s closing forward), ``lr`` and ``train/<output>`` (iterations 0..49), ``test/<output>`` (per test point, ``test_iters`` in provenance),
``init/<layer>/<i>``, ``iter25/<layer>/<i>``, ``final/<layer>/<i>``; ``resume/loss`` (iterations 25..50) and
``resume_final/<layer>/<i>`` from ``caffe train --snapshot=snap_iter_25.solverstate`` run in a fresh folder
(its log: ``caffe_resume.log``).  ``final.caffemodel`` is a copy of ``snap_iter_50.caffemodel``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import caffe_log
import dbwrite
import seeded

MAX_ITER = 50
SNAPSHOT = 25
RANDOM_SEED = 1701
IMG = (3, 8, 8)
CLASSES = 5
N_TRAIN, N_TEST = 36, 12          # not multiples of the batch sizes: batches straddle the wrap-around
BATCH, TEST_BATCH = 8, 6
VEC, LOSS_CLASSES, LOSS_N, LOSS_BATCH = 16, 4, 20, 6

# ---------------------------------------------------------------------------------------------------------------
# nets
# conv1 has no bias, as in Caffe's ResNet nets: a bias right before BatchNorm gets a gradient that is zero up to
# float32 rounding, which the adaptive solvers (AdaGrad, RMSProp, Adam) divide by its own tiny RMS, so it moves by
# about +-lr a step in a direction set by summation order (ours and Caffe's differ there; nothing else does).
_CONV_BODY = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 }
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 bias_term: false } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1"
  param { lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 decay_mult: 0 }
  batch_norm_param { moving_average_fraction: 0.9 } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1" lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 } }
layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 6 kernel_size: 3 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip1" bottom: "label" top: "accuracy" include { phase: TEST } }
"""

_CONV_FEEDS = {
    "lmdb": """
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 } data_param { source: "train_lmdb" batch_size: %d backend: LMDB } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.00390625 } data_param { source: "test_lmdb" batch_size: %d backend: LMDB } }
""" % (BATCH, TEST_BATCH),
    "hdf5": """
layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TRAIN }
  hdf5_data_param { source: "train_h5.txt" batch_size: %d } }
layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TEST }
  hdf5_data_param { source: "test_h5.txt" batch_size: %d } }
""" % (BATCH, TEST_BATCH),
    "input": """
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: %d dim: 3 dim: 8 dim: 8 } shape { dim: %d } } }
""" % (BATCH, BATCH),
}

_LOSSES_NET = """name: "train_losses"
layer { name: "data" type: "HDF5Data" top: "data" top: "data_p" top: "label" top: "target" top: "multi" top: "sim"
  hdf5_data_param { source: "train_h5.txt" batch_size: %d } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  param { name: "ip1_w" } param { name: "ip1_b" } inner_product_param { num_output: 8 } }
layer { name: "ip1_p" type: "InnerProduct" bottom: "data_p" top: "ip1_p"
  param { name: "ip1_w" } param { name: "ip1_b" } inner_product_param { num_output: 8 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "relu1_p" type: "ReLU" bottom: "ip1_p" top: "ip1_p" }
layer { name: "score" type: "InnerProduct" bottom: "ip1" top: "score"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 } inner_product_param { num_output: %d } }
layer { name: "loss_softmax" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss_softmax" }
layer { name: "loss_hinge" type: "HingeLoss" bottom: "score" bottom: "label" top: "loss_hinge" loss_weight: 0.5
  hinge_loss_param { norm: L2 } }
layer { name: "prob" type: "Softmax" bottom: "score" top: "prob" }
layer { name: "loss_infogain" type: "InfogainLoss" bottom: "prob" bottom: "label" top: "loss_infogain"
  loss_weight: 0.5 infogain_loss_param { source: "infogain.binaryproto" } }
layer { name: "loss_mlogistic" type: "MultinomialLogisticLoss" bottom: "prob" bottom: "label" top: "loss_mlogistic"
  loss_weight: 0.25 }
layer { name: "loss_euclid" type: "EuclideanLoss" bottom: "score" bottom: "target" top: "loss_euclid" loss_weight: 0.1 }
layer { name: "loss_sigmoid" type: "SigmoidCrossEntropyLoss" bottom: "score" bottom: "multi" top: "loss_sigmoid"
  loss_weight: 0.5 }
layer { name: "loss_contrastive" type: "ContrastiveLoss" bottom: "ip1" bottom: "ip1_p" bottom: "sim"
  top: "loss_contrastive" loss_weight: 0.2 contrastive_loss_param { margin: 2.0 } }
""" % (LOSS_BATCH, LOSS_CLASSES)


def net_text(net: str, feed: str) -> str:
    """The prototxt of ``net`` ("conv" with ``feed`` lmdb|hdf5|input, or "losses" with feed hdf5)."""
    if net == "conv":
        return f'name: "train_conv_{feed}"\n' + _CONV_FEEDS[feed].lstrip("\n") + _CONV_BODY.lstrip("\n")
    if net == "losses" and feed == "hdf5":
        return _LOSSES_NET
    raise ValueError(f"no net {net!r} fed from {feed!r}")


# ---------------------------------------------------------------------------------------------------------------
# solvers
_RUN = f"""net: "net.prototxt"
max_iter: {MAX_ITER}
display: 1
snapshot: {SNAPSHOT}
snapshot_prefix: "snap"
random_seed: {RANDOM_SEED}
solver_mode: CPU
"""
_TEST = "test_iter: 2\ntest_interval: 10\n"

#: case -> (net, feed, solver text after the common part).  Together: six solver types, seven lr policies,
#: iter_size 1/2, L1/L2, clipping, average_loss, both snapshot formats.
CASES = {
    "sgd_step_lmdb": ("conv", "lmdb", _TEST + 'type: "SGD"\nbase_lr: 0.05\nlr_policy: "step"\ngamma: 0.5\n'
                      'stepsize: 15\nmomentum: 0.9\nweight_decay: 0.0005\n'),
    "sgd_step_hdf5": ("conv", "hdf5", _TEST + 'type: "SGD"\nbase_lr: 0.05\nlr_policy: "step"\ngamma: 0.5\n'
                      'stepsize: 15\nmomentum: 0.9\nweight_decay: 0.0005\n'),
    "nesterov_multistep_iter2": ("conv", "lmdb", _TEST + "solver_type: NESTEROV\nbase_lr: 0.02\n"
                                 'lr_policy: "multistep"\ngamma: 0.3\nstepvalue: 10\nstepvalue: 30\n'
                                 "momentum: 0.9\nweight_decay: 0.001\niter_size: 2\n"),
    "adagrad_inv_l1": ("conv", "lmdb", _TEST + 'type: "AdaGrad"\nbase_lr: 0.05\nlr_policy: "inv"\ngamma: 0.1\n'
                       'power: 0.75\ndelta: 1e-08\nweight_decay: 0.001\nregularization_type: "L1"\n'),
    "rmsprop_poly_clip": ("conv", "lmdb", _TEST + 'type: "RMSProp"\nbase_lr: 0.005\nlr_policy: "poly"\n'
                          "power: 1.5\nrms_decay: 0.95\ndelta: 1e-06\nweight_decay: 0.0005\n"
                          "clip_gradients: 1.0\n"),
    "adadelta_fixed_iter2": ("conv", "lmdb", _TEST + 'type: "AdaDelta"\nbase_lr: 1.0\nlr_policy: "fixed"\n'
                             "momentum: 0.95\ndelta: 1e-06\nweight_decay: 0.0005\niter_size: 2\n"),
    "adam_exp_hdf5snap": ("conv", "hdf5", _TEST + 'type: "Adam"\nbase_lr: 0.005\nlr_policy: "exp"\ngamma: 0.97\n'
                          "momentum: 0.9\nmomentum2: 0.999\ndelta: 1e-08\nweight_decay: 0.0001\n"
                          "average_loss: 5\nsnapshot_format: HDF5\n"),
    "losses_sgd_sigmoid": ("losses", "hdf5", 'type: "SGD"\nbase_lr: 0.05\nlr_policy: "sigmoid"\ngamma: -0.1\n'
                           "stepsize: 25\nmomentum: 0.9\nweight_decay: 0.0001\nregularization_type: \"L1\"\n"
                           "iter_size: 2\nclip_gradients: 2.0\naverage_loss: 3\n"),
}


def solver_text(case: str) -> str:
    """The solver.prototxt of ``case``."""
    return _RUN + CASES[case][2]


def snapshot_suffix(case: str) -> str:
    """``""`` (BINARYPROTO) or ``".h5"`` (HDF5), appended to ``.caffemodel``/``.solverstate``."""
    return ".h5" if "snapshot_format: HDF5" in CASES[case][2] else ""


# ---------------------------------------------------------------------------------------------------------------
# data (seeded; written by the same code for Caffe and for the parity tests)
def conv_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 8, 8) uint8, labels (N,) int64) of the ``conv`` net's ``split`` ("train" | "test")."""
    n = N_TRAIN if split == "train" else N_TEST
    rng = seeded.rng_for(f"train/conv/{split}")
    labels = rng.integers(0, CLASSES, n)
    # a class-dependent brightness pattern plus noise, so the nets learn something in 50 iterations
    base = rng.integers(0, 256, (CLASSES,) + IMG)
    noise = rng.integers(-40, 41, (n,) + IMG)
    images = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


def conv_batches(n_batches: int, split: str = "train", batch: int = BATCH) -> list[tuple[np.ndarray, np.ndarray]]:
    """What the Data/HDF5Data layers produce: consecutive ``batch`` records, wrapping around, scaled by 1/256."""
    images, labels = conv_arrays(split)
    n = len(images)
    out = []
    for b in range(n_batches):
        idx = [(b * batch + j) % n for j in range(batch)]
        out.append((images[idx].astype(np.float32) * np.float32(0.00390625), labels[idx].astype(np.float32)))
    return out


def losses_arrays() -> dict[str, np.ndarray]:
    """The ``losses`` net's HDF5 datasets (float32) and the InfogainLoss matrix ``H``."""
    rng = seeded.rng_for("train/losses")
    n, c = LOSS_N, LOSS_CLASSES
    label = rng.integers(0, c, n)
    h = (np.eye(c) + 0.25 * rng.uniform(0, 1, (c, c))).astype(np.float32)
    return {"data": rng.standard_normal((n, VEC)).astype(np.float32),
            "data_p": rng.standard_normal((n, VEC)).astype(np.float32),
            "label": label.astype(np.float32),
            "target": rng.standard_normal((n, c)).astype(np.float32),
            "multi": (rng.uniform(0, 1, (n, c)) < 0.4).astype(np.float32),
            "sim": (rng.uniform(0, 1, n) < 0.5).astype(np.float32),
            "H": h.reshape(1, 1, c, c)}


def write_data(net: str, feed: str, folder, datum_cls, blobproto_cls) -> dict[str, str]:
    """Write the data sources ``net_text(net, feed)`` reads into ``folder``; returns ``{source: digest}``.

    ``datum_cls``/``blobproto_cls``: the protobuf classes to serialise with (pycaffe's ``caffe_pb2`` or our
    ``models.schema.pb``; both give equal bytes).
    """
    folder = Path(folder)
    digests = {}
    if net == "conv":
        for split in ("train", "test"):
            images, labels = conv_arrays(split)
            if feed == "lmdb":
                p = dbwrite.write_lmdb(folder / f"{split}_lmdb", images, labels, datum_cls)
                digests[f"{split}_lmdb"] = dbwrite.lmdb_digest(p)
            elif feed == "hdf5":
                p = dbwrite.write_hdf5(folder / f"{split}.h5", folder / f"{split}_h5.txt",
                                       data=images.astype(np.float32) * np.float32(0.00390625),
                                       label=labels.astype(np.float32))
                digests[f"{split}.h5"] = dbwrite.hdf5_digest(p)
    elif net == "losses":
        arrs = losses_arrays()
        h = arrs.pop("H")
        p = dbwrite.write_hdf5(folder / "train.h5", folder / "train_h5.txt", **arrs)
        digests["train.h5"] = dbwrite.hdf5_digest(p)
        q = dbwrite.write_blobproto(folder / "infogain.binaryproto", h, blobproto_cls)
        digests["infogain.binaryproto"] = __import__("hashlib").sha256(q.read_bytes()).hexdigest()
    return digests


# ---------------------------------------------------------------------------------------------------------------
# weights
def read_weights(path, netparam_cls=None) -> dict[str, list[np.ndarray]]:
    """``{layer: [blob arrays]}`` of a binary ``.caffemodel`` (parsed with ``netparam_cls``) or a ``.caffemodel.h5``.

    Layers with no blobs are left out; shapes come from ``BlobProto.shape`` (or the legacy num/channels/...).
    """
    path = Path(path)
    out: dict[str, list[np.ndarray]] = {}
    if path.name.endswith(".h5"):
        import h5py
        with h5py.File(path, "r") as f:  # hdf5.cpp / net.cpp ToHDF5: data/<layer>/<i>
            for layer in f["data"]:
                g = f["data"][layer]
                blobs = [np.asarray(g[str(i)][()], np.float32) for i in range(len(g))]
                if blobs:
                    out[layer] = blobs
        return out
    net = netparam_cls()
    net.ParseFromString(path.read_bytes())
    for layer in net.layer:
        blobs = []
        for b in layer.blobs:
            shape = tuple(b.shape.dim) if b.HasField("shape") else (b.num, b.channels, b.height, b.width)
            blobs.append(np.asarray(b.data, np.float32).reshape(shape))
        if blobs:
            out[layer.name] = blobs
    return out


def seeded_init(net, prefix: str) -> None:
    """Set a pycaffe net's params from ``seeded.layer_params(f"{prefix}/{layer}", ...)`` (shared params once)."""
    types = {name: layer.type for name, layer in zip(net._layer_names, net.layers)}
    for name, blobs in net.params.items():
        vals = seeded.layer_params(f"{prefix}/{name}", types[name], [b.data.shape for b in blobs])
        for b, v in zip(blobs, vals):
            b.data[...] = v
    if "ip1_p" in net.params:  # shares ip1's blobs by param name: the same memory, set once through ip1
        for a, b in zip(net.params["ip1"], net.params["ip1_p"]):
            b.data[...] = a.data


def log_arrays(log: caffe_log.TrainLog) -> tuple[dict[str, np.ndarray], list[int]]:
    """blobs.npz arrays from a parsed training log (see the module docstring) and the tested iterations."""
    iters = sorted(log.loss)
    arrs = {"loss": np.array([log.loss[i] for i in iters], np.float64),
            "lr": np.array([log.lr[i] for i in sorted(log.lr)], np.float64)}
    out_iters = sorted(i for i in log.train_outputs if log.train_outputs[i])
    for k in sorted({k for i in out_iters for k in log.train_outputs[i]}):
        arrs[f"train/{k}"] = np.array([log.train_outputs[i][k] for i in out_iters], np.float64)
    test_iters = sorted(it for it, net_id in log.tests if net_id == 0)
    for k in sorted({k for key in log.tests for k in log.tests[key]}):
        arrs[f"test/{k}"] = np.array([log.tests[(i, 0)][k] for i in test_iters], np.float64)
    return arrs, test_iters


# ---------------------------------------------------------------------------------------------------------------
def make(case: str, out_dir: Path, caffe_info: dict, caffe_bin: str) -> dict:
    """Run real ``caffe train`` on ``case`` and write ``out_dir`` (see the module docstring); returns provenance."""
    import caffe
    from caffe.proto import caffe_pb2
    from make_golden import atomic_savez, atomic_write_text
    import caffe_tool
    net, feed, _ = CASES[case]
    sfx = snapshot_suffix(case)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        (td / "net.prototxt").write_text(net_text(net, feed))
        (td / "solver.prototxt").write_text(solver_text(case))
        digests = write_data(net, feed, td, caffe_pb2.Datum, caffe_pb2.BlobProto)
        caffe.set_mode_cpu()
        cwd = os.getcwd()
        os.chdir(td)  # data sources are relative to the working directory, as in Caffe
        try:
            init = caffe.Net("net.prototxt", caffe.TRAIN)
            seeded_init(init, f"train/{net}")
            init.save("init.caffemodel")
            del init
        finally:
            os.chdir(cwd)
        p = caffe_tool.run_caffe(["train", "--solver=solver.prototxt", "--weights=init.caffemodel"], td,
                                 threads=1)
        text = p.stderr
        log = caffe_log.parse_train_log(text)
        if not log.done or any(i not in log.loss for i in range(MAX_ITER)):
            raise RuntimeError(f"{case}: caffe train log incomplete ({len(log.loss)} iterations):\n{text[-2000:]}")
        arrs, test_iters = log_arrays(log)
        # Resume from Caffe's own iteration-25 snapshot, in a fresh folder: Caffe's data readers restart at the
        # first record (the DataReader cursor is not in the solverstate), so this is its own trajectory.
        rd = td / "resume"
        rd.mkdir()
        for f in ["solver.prototxt", "net.prototxt", f"snap_iter_{SNAPSHOT}.caffemodel{sfx}",
                  f"snap_iter_{SNAPSHOT}.solverstate{sfx}"]:
            shutil.copyfile(td / f, rd / f)
        write_data(net, feed, rd, caffe_pb2.Datum, caffe_pb2.BlobProto)
        rp = caffe_tool.run_caffe(["train", "--solver=solver.prototxt",
                                   f"--snapshot=snap_iter_{SNAPSHOT}.solverstate{sfx}"], rd, threads=1)
        rlog = caffe_log.parse_train_log(rp.stderr)
        if not rlog.done or any(i not in rlog.loss for i in range(SNAPSHOT, MAX_ITER)):
            raise RuntimeError(f"{case}: caffe resume log incomplete:\n{rp.stderr[-2000:]}")
        rarrs, _ = log_arrays(rlog)
        arrs["resume/loss"] = rarrs["loss"]
        atomic_write_text(out_dir / "caffe_resume.log", rp.stderr)
        for layer, blobs in read_weights(rd / f"snap_iter_{MAX_ITER}.caffemodel{sfx}", caffe_pb2.NetParameter).items():
            for i, b in enumerate(blobs):
                arrs[f"resume_final/{layer}/{i}"] = b
        files = ["solver.prototxt", "net.prototxt", "init.caffemodel"]
        for it in (SNAPSHOT, MAX_ITER):
            files += [f"snap_iter_{it}.caffemodel{sfx}", f"snap_iter_{it}.solverstate{sfx}"]
        for f in files:
            shutil.copyfile(td / f, out_dir / f)
        shutil.copyfile(td / f"snap_iter_{MAX_ITER}.caffemodel{sfx}", out_dir / f"final.caffemodel{sfx}")
        atomic_write_text(out_dir / "caffe.log", text)
        for tag, f in (("init", "init.caffemodel"), (f"iter{SNAPSHOT}", f"snap_iter_{SNAPSHOT}.caffemodel{sfx}"),
                       ("final", f"snap_iter_{MAX_ITER}.caffemodel{sfx}")):
            for layer, blobs in read_weights(td / f, caffe_pb2.NetParameter).items():
                for i, b in enumerate(blobs):
                    arrs[f"{tag}/{layer}/{i}"] = b
    atomic_savez(out_dir / "blobs.npz", arrs)
    prov = {
        "fixture": f"train__{case}", "source": "compare/golden/trajectory_golden.py", "net": net, "feed": feed,
        "caffe": caffe_info, "command": "caffe train --solver=solver.prototxt --weights=init.caffemodel "
        "(cwd: a folder holding the fixture's files and write_data's sources; OMP/OPENBLAS threads 1)",
        "iterations": sorted(log.loss), "test_iters": test_iters, "snapshots": log.snapshots,
        "snapshot_format": "HDF5" if sfx else "BINARYPROTO", "final_weights": f"final.caffemodel{sfx}",
        "data": {"recipe": f"trajectory_golden.write_data({net!r}, {feed!r}, folder, Datum, BlobProto)",
                 "digests": digests},
        "weights_recipe": f"seeded.layer_params('train/{net}/<layer>', <type>, <shapes>) saved by pycaffe Net.save",
        "losses": [log.loss[i] for i in sorted(log.loss)],
        "resume": {"command": f"caffe train --solver=solver.prototxt --snapshot=snap_iter_{SNAPSHOT}.solverstate{sfx}",
                   "iterations": sorted(rlog.loss), "losses": [rlog.loss[i] for i in sorted(rlog.loss)]},
    }
    atomic_write_text(out_dir / "provenance.json", json.dumps(prov, indent=1) + "\n")
    return prov


def main(argv=None) -> int:
    """``python compare/golden/trajectory_golden.py [--out DIR] [CASE ...]``: (re)make train__<case> fixtures.

    The full regeneration and ``--check`` go through make_golden.py (which calls ``make`` for every case).
    """
    import argparse
    import sys
    from make_golden import caffe_info
    import caffe_tool
    ap = argparse.ArgumentParser(description="golden training trajectories from the real caffe tool")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "fixtures")
    ap.add_argument("cases", nargs="*", choices=sorted(CASES) + [[]], default=[])
    args = ap.parse_args(argv)
    exe = caffe_tool.caffe_bin()
    if exe is None:
        print("trajectory_golden: no real caffe binary (run build_caffe.sh or set RGR_CAFFE_BIN)", file=sys.stderr)
        return 2
    for case in args.cases or list(CASES):
        prov = make(case, args.out / f"train__{case}", caffe_info(), exe)
        print(f"made train__{case}: loss {prov['losses'][0]:.6g} -> {prov['losses'][-1]:.6g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
