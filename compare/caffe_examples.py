"""Caffe's own example solvers (examples/mnist, examples/cifar10) laid out to train from scikit-learn digits LMDBs.

The solvers and nets are BVLC Caffe's, copied verbatim under ``compare/golden/examples/`` (BSD-2, LICENSE there).
Their paths (``net: "examples/mnist/lenet_train_test.prototxt"``, ``source: "examples/mnist/mnist_train_lmdb"``,
``mean_file: "examples/cifar10/mean.binaryproto"``, ``snapshot_prefix: "examples/mnist/lenet"``) are relative to the
Caffe checkout's root, so :func:`write_example` builds that tree under a folder and the tools run there: the nets
are used unchanged, and the data sources are written at the paths the nets name.

The data: scikit-learn's bundled ``load_digits`` (1797 8x8 images, 0..16), scaled to 0..255 uint8, in the
library's order; the first :data:`N_TRAIN` are the train LMDB, the rest the test LMDB.

* MNIST stand-in: each digit resized to 20x20 (``cv2.resize``, bilinear) and zero-padded by 4 to 28x28, as MNIST's
  digits sit in a 20x20 box of a 28x28 frame; (N, 1, 28, 28).
* CIFAR-10 stand-in: each 8x8 digit tiled 4x4 to 32x32 and over 3 channels; (N, 3, 32, 32).  ``mean.binaryproto``
  is the train set's mean image, as ``tools/compute_image_mean`` computes it.

Solver changes (:func:`solver_text`) are only ``max_iter`` and ``test_iter`` (run length) and, for the real tool,
``solver_mode: CPU``: the reference build is CPU-only and ``caffe train`` aborts on the examples' ``solver_mode:
GPU`` ("Cannot use GPU in CPU-only Caffe"); our tool takes the device from ``--device`` and ignores the field.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXAMPLES_SRC = Path(__file__).resolve().parent / "golden" / "examples"

#: digits[:N_TRAIN] go to the train LMDB, the other 297 to the test LMDB
N_TRAIN = 1500


@dataclass(frozen=True)
class Example:
    """One of Caffe's example solvers: ``folder`` under examples/, the solver file, what its net reads."""

    folder: str
    solver: str
    dbs: tuple  # (train LMDB, test LMDB) folder names, as the net's data layers name them
    mean_file: str | None = None


#: Caffe's example solvers: LeNet's SGD (inv), Adam, RMSProp, AdaDelta and multistep solvers; AdaGrad and
#: Nesterov exist in examples/mnist only for the MNIST autoencoder; CIFAR-10 quick.
EXAMPLES = {
    "lenet": Example("mnist", "lenet_solver.prototxt", ("mnist_train_lmdb", "mnist_test_lmdb")),
    "lenet_adam": Example("mnist", "lenet_solver_adam.prototxt", ("mnist_train_lmdb", "mnist_test_lmdb")),
    "lenet_rmsprop": Example("mnist", "lenet_solver_rmsprop.prototxt", ("mnist_train_lmdb", "mnist_test_lmdb")),
    "lenet_adadelta": Example("mnist", "lenet_adadelta_solver.prototxt", ("mnist_train_lmdb", "mnist_test_lmdb")),
    "lenet_multistep": Example("mnist", "lenet_multistep_solver.prototxt", ("mnist_train_lmdb", "mnist_test_lmdb")),
    "autoencoder_adagrad": Example("mnist", "mnist_autoencoder_solver_adagrad.prototxt",
                                   ("mnist_train_lmdb", "mnist_test_lmdb")),
    "autoencoder_nesterov": Example("mnist", "mnist_autoencoder_solver_nesterov.prototxt",
                                    ("mnist_train_lmdb", "mnist_test_lmdb")),
    "cifar10_quick": Example("cifar10", "cifar10_quick_solver.prototxt", ("cifar10_train_lmdb", "cifar10_test_lmdb"),
                             "mean.binaryproto"),
}


def digits_images(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as the example's images: ``(images (N,C,H,W) uint8, labels (N,) int)``.

    ``folder`` "mnist" gives (1797, 1, 28, 28), "cifar10" (1797, 3, 32, 32); see the module docstring.
    """
    import cv2
    from sklearn.datasets import load_digits

    d = load_digits()
    img = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    if folder == "mnist":
        out = np.stack([np.pad(cv2.resize(i, (20, 20), interpolation=cv2.INTER_LINEAR), 4) for i in img])[:, None]
    elif folder == "cifar10":
        out = np.tile(img[:, None], (1, 3, 4, 4))
    else:
        raise ValueError(f"no digits layout for example folder '{folder}' (mnist or cifar10)")
    return np.ascontiguousarray(out), d.target.astype(np.int64)


def solver_text(text: str, *, max_iter: int, test_iter: int, cpu_mode: bool = False) -> str:
    """An example solver's text with ``max_iter`` and every ``test_iter`` replaced (and ``solver_mode: CPU``
    when ``cpu_mode``); nothing else changes.

    Raises
    ------
    ValueError
        The solver has no ``max_iter:`` line to replace.
    """
    text, n = re.subn(r"^max_iter:.*$", f"max_iter: {max_iter}", text, flags=re.M)
    if n != 1:
        raise ValueError(f"expected one max_iter line, found {n}")
    text = re.sub(r"^test_iter:.*$", f"test_iter: {test_iter}", text, flags=re.M)
    if cpu_mode:
        text = re.sub(r"^solver_mode:.*$", "solver_mode: CPU", text, flags=re.M)
    return text


def net_path(solver: str) -> str:
    """The ``net:`` path of a solver's text (relative to the Caffe root, as the examples write it)."""
    m = re.search(r'^net:\s*"([^"]+)"', solver, flags=re.M)
    if m is None:
        raise ValueError("the example solver has no net: line")
    return m[1]


def write_example(root, name: str, *, max_iter: int, test_iter: int, cpu_mode: bool = False) -> Path:
    """Lay out example ``name`` under ``root`` as a Caffe checkout has it: ``root/examples/<folder>/`` with the
    solver (:func:`solver_text`), its net (verbatim), the two LMDBs and, for CIFAR-10, the mean file.

    Returns
    -------
    Path
        The solver's path relative to ``root`` (run the tools with ``cwd=root``).
    """
    from models.data import write_lmdb, write_mean_file

    ex = EXAMPLES[name]
    src = (EXAMPLES_SRC / ex.folder / ex.solver).read_text()
    dest = Path(root) / "examples" / ex.folder
    dest.mkdir(parents=True, exist_ok=True)
    (dest / ex.solver).write_text(solver_text(src, max_iter=max_iter, test_iter=test_iter, cpu_mode=cpu_mode))
    net = net_path(src)
    shutil.copyfile(EXAMPLES_SRC / ex.folder / Path(net).name, Path(root) / net)
    images, labels = digits_images(ex.folder)
    write_lmdb(dest / ex.dbs[0], images[:N_TRAIN], labels[:N_TRAIN])
    write_lmdb(dest / ex.dbs[1], images[N_TRAIN:], labels[N_TRAIN:])
    if ex.mean_file:
        write_mean_file(dest / ex.mean_file, images[:N_TRAIN].mean(axis=0, dtype=np.float64).astype(np.float32))
    return Path("examples") / ex.folder / ex.solver


def snapshot_prefix(root, solver_rel) -> Path:
    """The solver's ``snapshot_prefix`` as a path under ``root``."""
    m = re.search(r'^snapshot_prefix:\s*"([^"]+)"', (Path(root) / solver_rel).read_text(), flags=re.M)
    if m is None:
        raise ValueError(f"{solver_rel}: no snapshot_prefix")
    return Path(root) / m[1]


def write_init_weights(root, solver_rel, path, seed: int = 0) -> Path:
    """Starting weights for both tools: our TRAIN net of the solver's net, filled by its fillers with ``seed``,
    saved as a binary caffemodel (``Net::ToProto`` layout), so ``--weights`` gives Caffe and us the same start.
    The net's data sources are looked up under ``root`` (the Caffe root the example paths are relative to)."""
    from models.train.runtime import RuntimeNet

    root = Path(root)
    net = RuntimeNet(str(root / net_path((root / solver_rel).read_text())), "TRAIN", seed=seed, base_dir=root)
    try:
        net.save(path)
    finally:
        net.close()
    return Path(path)
