"""``python -m models train|test|time``: Caffe's ``caffe`` tool (tools/caffe.cpp) on PyTorch.

Only argument parsing here; the work is :mod:`models.train.tools`. Log lines go to stderr with glog's prefix and
Caffe's text (docs/training.md). Paths inside a solver (``net:``, ``train_net:``, ``test_net:``) and data
``source:`` / ``mean_file:`` paths are read relative to the working directory, as Caffe does, falling back to the
solver file's folder; ``snapshot_prefix`` is relative to the working directory (Caffe's rule), and defaults to
the solver's path without its extension.
"""
from __future__ import annotations

import argparse

_PATHS = ("net:/train_net:/test_net: paths and data sources are read relative to the working directory, as "
          "Caffe does, else relative to the solver file's folder")


def _device_args(p, precision: bool = True) -> None:
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    if precision:
        p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                       help="fp32: Caffe's float32 arithmetic (default, the parity path); bf16: autocast with "
                            "float32 master weights")


def _stage_args(p) -> None:
    p.add_argument("--level", type=int, default=0, help="the NetState level (include/exclude rules)")
    p.add_argument("--stage", default="", help="comma-separated NetState stages")


def _stages(args) -> tuple:
    return tuple(s for s in args.stage.split(",") if s)


def add_train(p: argparse.ArgumentParser) -> None:
    p.description = "Train a net with its solver.prototxt, as `caffe train`. " + _PATHS + "."
    p.add_argument("--solver", required=True, help="the solver.prototxt")
    p.add_argument("--weights", help="caffemodel(s) to fine-tune from, comma-separated; layers copied by name")
    p.add_argument("--snapshot", help="a .solverstate (or .solverstate.h5) to resume from (ours or Caffe's)")
    p.add_argument("--iterations", type=int, help="train to this many iterations instead of the solver's max_iter")
    _device_args(p)
    p.add_argument("--log-rate", action="store_true",
                   help="print BVLC master's 'Iteration N (R iter/s, Ts/D iters), loss = X' display line "
                        "(default: Caffe 1.0's 'Iteration N, loss = X')")
    p.add_argument("--sigint_effect", default="stop", choices=("stop", "snapshot", "none"),
                   help="what Ctrl-C does (Caffe's default: stop, after the snapshot_after_train snapshot)")
    p.add_argument("--sighup_effect", default="snapshot", choices=("stop", "snapshot", "none"))


def run_train(args) -> int:
    from models.train.tools import train
    train(args.solver, weights=args.weights, snapshot=args.snapshot, iterations=args.iterations,
          device=args.device, precision=args.precision, log_rate=args.log_rate,
          sigint_effect=args.sigint_effect, sighup_effect=args.sighup_effect)
    return 0


def add_test(p: argparse.ArgumentParser) -> None:
    p.description = "Score a caffemodel on the TEST phase of a net, as `caffe test`."
    p.add_argument("--model", required=True, help="the net prototxt")
    p.add_argument("--weights", required=True, help="the caffemodel")
    p.add_argument("--iterations", type=int, default=50, help="batches to run (default 50, as Caffe)")
    _device_args(p)
    _stage_args(p)


def run_test(args) -> int:
    from models.train.tools import test
    test(args.model, args.weights, iterations=args.iterations, device=args.device, precision=args.precision,
         level=args.level, stages=_stages(args))
    return 0


def add_time(p: argparse.ArgumentParser) -> None:
    p.description = "Time a net's forward and backward passes per layer, as `caffe time`."
    p.add_argument("--model", required=True, help="the net prototxt")
    p.add_argument("--weights", help="an optional caffemodel")
    p.add_argument("--iterations", type=int, default=50, help="timed iterations (default 50, as Caffe)")
    p.add_argument("--phase", choices=("TRAIN", "TEST"), default="TRAIN", help="the net phase (default TRAIN)")
    _device_args(p)
    _stage_args(p)


def run_time(args) -> int:
    from models.train.tools import time_net
    time_net(args.model, weights=args.weights, iterations=args.iterations, device=args.device,
             precision=args.precision, phase=args.phase, level=args.level, stages=_stages(args))
    return 0


SUBCOMMANDS = {
    "train": (add_train, run_train, "train a net with a solver.prototxt (caffe train)"),
    "test": (add_test, run_test, "score a caffemodel on a net's TEST phase (caffe test)"),
    "time": (add_time, run_time, "time forward/backward per layer (caffe time)"),
}
