"""Training iterations/s on CPU, ours (``models.train.tools.train``) against the real ``caffe train``, from one run.

Nets (each trained by both tools from the same LMDBs, in the same temp folder layout):

* ``lenet``: Caffe's examples/mnist ``lenet_solver.prototxt`` + ``lenet_train_test.prototxt`` (batch 64), digits LMDB;
* ``cifar10_quick``: examples/cifar10 ``cifar10_quick_solver.prototxt`` + net (batch 100), digits LMDB + mean file
  (compare/caffe_examples.py lays both out);
* ``googlenet``: the paper's scratch GoogLeNet, ``prototxt/googlenet/train_val.prototxt`` (batch 32, 224 crop of
  256x256, mirror, auxiliary losses) with its ``solver.prototxt``, from a seeded uint8 LMDB at the net's own
  ``PLACEHOLDER/train_lmdb`` path.

Only the run-length fields change in the solvers: ``max_iter``, ``display: 1``, no test passes, no snapshots,
``solver_mode: CPU`` (the reference build is CPU-only). Both tools use ``--threads`` threads: Caffe through
OMP/OpenBLAS/MKL environment variables, ours through ``torch.set_num_threads``. The training rate is read from
each tool's own glog timestamps, iterations ``warmup`` .. ``max_iter - 1`` over the time between their
``Iteration N, loss`` lines, so process start and net setup count for neither. The data-only rate is our TRAIN
data layer alone (``models.data.make_source`` behind the ``Prefetcher``, as training reads it): batches/s over
``--data-batches`` batches; the issue asks for at least 5x the training rate.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/bench_train.py [--nets lenet cifar10_quick googlenet]
                                                                [--threads 1] [--scale 1.0]

Prints one line per net: caffe and our it/s, ``ours/caffe``, the data-only rate and ``data/ours``. Needs the real
caffe binary (compare/golden/build_caffe.sh; ``RGR_CAFFE_BIN`` overrides); exits 2 without it.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "compare" / "golden"))
import caffe_tool  # noqa: E402

from compare import caffe_examples as ce  # noqa: E402

#: net -> (iterations, warmup iterations left out of the rate); --scale multiplies the iterations
NETS = {"lenet": (60, 5), "cifar10_quick": (20, 2), "googlenet": (5, 1)}
GOOGLENET_IMAGES = 64
_STAMP = re.compile(r"^[IWEF]\d{4,8} (\d\d):(\d\d):(\d\d\.\d+)\s+\d+ [^\]]*\] Iteration (\d+)(?: \([^)]*\))?, loss = ")


def bench_solver(text: str, iters: int) -> str:
    """A solver's text with only the run-length fields set for timing (see the module docstring)."""
    for field, value in (("max_iter", iters), ("display", 1), ("test_interval", iters + 1), ("snapshot", 0),
                         ("solver_mode", "CPU")):
        text, n = re.subn(rf"^{field}:.*$", f"{field}: {value}", text, flags=re.M)
        if not n:
            text += f"{field}: {value}\n"
    for field, value in (("test_initialization", "false"), ("snapshot_after_train", "false")):
        text = re.sub(rf"^{field}:.*\n?", "", text, flags=re.M) + f"{field}: {value}\n"
    return text


def prepare(net: str, folder: Path, iters: int) -> Path:
    """Lay out ``net``'s solver, net and LMDBs under ``folder``; returns the solver path relative to it."""
    if net in ce.EXAMPLES:
        solver = ce.write_example(folder, net, max_iter=iters, test_iter=1, cpu_mode=True)
    else:
        from models.data import write_lmdb
        solver = Path("prototxt/googlenet/solver.prototxt")
        (folder / solver.parent).mkdir(parents=True)
        shutil.copyfile(REPO / "prototxt/googlenet/train_val.prototxt", folder / solver.parent / "train_val.prototxt")
        shutil.copyfile(REPO / solver, folder / solver)
        rng = np.random.default_rng(20191204)
        images = rng.integers(0, 256, (GOOGLENET_IMAGES, 3, 256, 256), dtype=np.uint8)
        labels = rng.integers(0, 2, GOOGLENET_IMAGES)
        for db in ("train_lmdb", "test_lmdb"):  # the net's own placeholder sources, relative to the run folder
            write_lmdb(folder / "PLACEHOLDER" / db, images, labels)
    path = folder / solver
    path.write_text(bench_solver(path.read_text(), iters))
    return solver


def rate(log: str, warmup: int, iters: int) -> float:
    """Iterations/s between the ``Iteration warmup`` and the last ``Iteration < iters`` loss lines of a glog log.

    Raises
    ------
    RuntimeError
        The log lacks those lines (the tool failed; the message carries the log's tail).
    """
    t = {}
    for line in log.splitlines():
        if m := _STAMP.match(line):
            t[int(m[4])] = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    last = max((i for i in t if i < iters), default=None)
    if last is None or warmup not in t or last <= warmup:
        raise RuntimeError(f"log has no Iteration {warmup}..{iters - 1} loss lines:\n{log[-1500:]}")
    dt = (t[last] - t[warmup]) % 86400
    return (last - warmup) / dt if dt > 0 else float("inf")


def train_ours(folder: Path, solver: Path, threads: int) -> str:
    """Our ``caffe train`` in this process, ``threads`` torch threads; returns its log text."""
    import torch
    from models.train.glog import CaffeLog
    from models.train.tools import train
    torch.set_num_threads(threads)
    buf = io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)  # solver and data paths are relative to the working directory, as for caffe
    try:
        train(str(solver), log=CaffeLog(stream=buf))
    finally:
        os.chdir(cwd)
    return buf.getvalue()


def data_rate(folder: Path, solver: Path, batches: int) -> float:
    """Batches/s of the solver's TRAIN net's data layer alone (our source behind the Prefetcher)."""
    from models.data import Prefetcher, make_source
    from models.graph import PHASES, layer_included
    from models.prototxt_io import read_net_text
    net_rel = re.search(r'^net:\s*"([^"]+)"', (folder / solver).read_text(), flags=re.M)[1]
    net = read_net_text(str(folder / net_rel))
    layer = next(lp for lp in net.layer if lp.type == "Data" and layer_included(lp, PHASES["TRAIN"], 0, ()))
    with Prefetcher(make_source(layer, "TRAIN", base_dir=folder, seed=1)) as src:
        src.next_batch()  # the first batch includes opening the database
        t0 = time.perf_counter()
        for _ in range(batches):
            src.next_batch()
        return batches / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="*", default=list(NETS), choices=list(NETS))
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/torch threads for both tools (default 1)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply each net's iteration count (default 1)")
    ap.add_argument("--data-batches", type=int, default=50, help="batches in the data-only loop (default 50)")
    args = ap.parse_args(argv)
    if caffe_tool.caffe_bin() is None:
        print("bench_train: no real caffe binary (compare/golden/build_caffe.sh, or set RGR_CAFFE_BIN)",
              file=sys.stderr)
        return 2
    print(f"threads {args.threads}; caffe {caffe_tool.caffe_bin()}", flush=True)
    for net in args.nets:
        base, warmup = NETS[net]
        iters = max(warmup + 2, int(round(base * args.scale)))
        with tempfile.TemporaryDirectory() as td:
            folder = Path(td)
            solver = prepare(net, folder, iters)
            caffe = caffe_tool.run_caffe(["train", f"--solver={solver}"], folder, threads=args.threads).stderr
            with contextlib.redirect_stderr(io.StringIO()):
                ours = train_ours(folder, solver, args.threads)
            rc, ro = rate(caffe, warmup, iters), rate(ours, warmup, iters)
            rd = data_rate(folder, solver, args.data_batches)
        print(f"{net:14s} caffe {rc:8.3f} it/s  ours {ro:8.3f} it/s  ours/caffe {ro / rc:5.2f}  "
              f"data-only {rd:9.1f} batches/s  data/ours {rd / ro:7.1f}  (iterations {warmup}..{iters - 1})",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
