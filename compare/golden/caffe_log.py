"""Parse a Caffe training/test log (``caffe train``'s glog output, or ours) into numbers.

Lines are matched on the text after glog's ``] `` prefix (as Caffe's tools/extra/parse_log.py does), so both
``I1204 13:20:01.123456  4242 solver.cpp:243] Iteration 5, loss = 1.2`` and a bare ``Iteration 5, loss = 1.2``
parse.  Source of the formats: src/caffe/solver.cpp (Step, TestAll/Test, Snapshot), sgd_solver.cpp (lr line),
tools/caffe.cpp (``caffe test``'s ``Batch i, NAME = V`` and final ``NAME = V`` lines).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["TrainLog", "parse_train_log", "parse_test_log", "NUM"]

NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan|-nan)"
_PREFIX = re.compile(r"^[IWEF]\d{4,8} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]]*\] ")
_ITER_LOSS = re.compile(rf"^Iteration (\d+)(?: \([^)]*\))?, loss = ({NUM})$")
_LR = re.compile(rf"^Iteration (\d+), lr = ({NUM})$")
_TRAIN_OUT = re.compile(rf"^    Train net output #(\d+): (\S+) = ({NUM})(?: \(\* ({NUM}) = ({NUM}) loss\))?$")
_TESTING = re.compile(r"^Iteration (\d+), Testing net \(#(\d+)\)$")
_TEST_OUT = re.compile(rf"^    Test net output #(\d+): (\S+) = ({NUM})(?: \(\* ({NUM}) = ({NUM}) loss\))?$")
_SNAP = re.compile(r"^Snapshotting (?:solver state )?to (?:binary proto|HDF5) file (\S+)$")
_BATCH = re.compile(rf"^Batch (\d+), (\S+) = ({NUM})$")
_FINAL = re.compile(rf"^(\S+) = ({NUM})(?: \(\* ({NUM}) = ({NUM}) loss\))?$")


def _num(s: str) -> float:
    return float("nan") if s in ("nan", "-nan") else float(s)


def _text(line: str) -> str:
    return _PREFIX.sub("", line.rstrip("\n"))


@dataclass
class TrainLog:
    """Numbers of one training log.

    Attributes
    ----------
    loss : dict[int, float]
        ``Iteration N, loss = X`` (the smoothed loss, see solver.cpp UpdateSmoothedLoss).
    lr : dict[int, float]
        ``Iteration N, lr = X``.
    train_outputs : dict[int, dict[str, list[float]]]
        per display iteration, each train net output blob's values (a blob with k elements has k lines).
    tests : dict[tuple[int, int], dict[str, list[float]]]
        ``(iteration, test net index)`` -> test net output values (means over ``test_iter`` batches).
    snapshots : list[str]
        file names from the ``Snapshotting to ...`` lines, in order.
    done : bool
        ``Optimization Done.`` seen.
    """
    loss: dict = field(default_factory=dict)
    lr: dict = field(default_factory=dict)
    train_outputs: dict = field(default_factory=dict)
    tests: dict = field(default_factory=dict)
    snapshots: list = field(default_factory=list)
    done: bool = False


def parse_train_log(text: str) -> TrainLog:
    """Parse ``caffe train`` output (stderr of the tool, or of ``python -m models train``)."""
    log = TrainLog()
    last_iter, testing = None, None
    for raw in text.splitlines():
        t = _text(raw)
        if m := _ITER_LOSS.match(t):
            last_iter, testing = int(m[1]), None
            log.loss[last_iter] = _num(m[2])
            log.train_outputs.setdefault(last_iter, {})
        elif m := _LR.match(t):
            log.lr[int(m[1])] = _num(m[2])
        elif (m := _TRAIN_OUT.match(t)) and last_iter is not None:
            log.train_outputs[last_iter].setdefault(m[2], []).append(_num(m[3]))
        elif m := _TESTING.match(t):
            testing = (int(m[1]), int(m[2]))
            log.tests[testing] = {}
        elif (m := _TEST_OUT.match(t)) and testing is not None:
            log.tests[testing].setdefault(m[2], []).append(_num(m[3]))
        elif m := _SNAP.match(t):
            log.snapshots.append(m[1])
        elif t == "Optimization Done.":
            log.done = True
    return log


def parse_test_log(text: str) -> tuple[dict, dict]:
    """Parse ``caffe test`` output: ``({batch: {name: [values]}}, {name: [mean values]})``.

    The final means are the ``NAME = V`` lines after the last ``Batch`` line (tools/caffe.cpp test()).
    """
    batches, final = {}, {}
    seen_batch = False
    for raw in text.splitlines():
        t = _text(raw)
        if m := _BATCH.match(t):
            seen_batch = True
            batches.setdefault(int(m[1]), {}).setdefault(m[2], []).append(_num(m[3]))
        elif seen_batch and (m := _FINAL.match(t)):
            final.setdefault(m[1], []).append(_num(m[2]))
    return batches, final
