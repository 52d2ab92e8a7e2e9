"""Caffe's own example solvers trained by ``python -m models train`` and by the real ``caffe train``, from digits LMDBs.

The examples (compare/caffe_examples.py: LeNet's SGD, Adam, RMSProp, AdaDelta and multistep solvers, the MNIST
autoencoder's AdaGrad and Nesterov solvers, CIFAR-10 quick) are laid out as in a Caffe checkout under a temp folder,
with their nets unchanged and the LMDBs written at the paths the nets name. The solvers change only in
``max_iter`` (:data:`ITERS`) and ``test_iter`` (:data:`TEST_ITER`, one pass over the 297 test digits), plus
``solver_mode: CPU`` for the CPU-only reference build. Both tools start from the same ``--weights`` (our TRAIN net
filled by its fillers, ``compare/caffe_examples.write_init_weights``), run with one BLAS/OpenMP thread, and log with
the examples' own ``display: 100`` and ``test_interval: 500``, so the logged train loss and test outputs are those
of iteration 0; training itself is checked through the snapshots ``snapshot_after_train`` writes at ``ITERS``.

Checks:

* ours: Caffe's log lines (test pass at 0, ``Iteration 0, loss``, train outputs, lr, both snapshot lines,
  ``Optimization Done.``) and the snapshot files;
* ours vs ``caffe train``: every logged number, and every blob of the snapshot's weights and solver history;
* ``caffe test`` of our snapshot vs ``python -m models test`` (every per-batch and mean output);
* ``caffe train --snapshot OURS.solverstate`` vs ``python -m models train --snapshot`` of the same file: ours trains
  to 99, both resume to 100, where ``display`` logs the loss, and snapshot; loss and weights compared.

Tolerances are test_train_parity.py's (fixed there before any comparison): a logged value within
``LOSS_TOL * max(1, |caffe|)``, a blob within ``WEIGHT_TOL * max(1, max|caffe blob|)``.

Known divergence (measured, see docs/caffe-examples.md): RMSProp and AdaDelta divide each update by the running
RMS of the gradient, so parameters whose gradient is float32 cancellation noise (|g| < 4e-6 in LeNet's first
step, agreeing with Caffe's to ~1e-6 relative elsewhere) get O(lr) steps of either sign; after 10 steps their
weights differ from Caffe's by up to 0.64 (RMSProp) and 4e-3 (AdaDelta). Their weight checks are expected failures;
their logged numbers are checked as for the others. One step from the same state (the resume check) agrees.

The MNIST autoencoder's AdaGrad and Nesterov solvers run on neither tool here: its net names two layers 'loss',
which our net loader refuses (expected failure), and the reference build deadlocks when its test-on-train net opens
the TRAIN net's LMDB (skipped on the Caffe side).

Skips, with the reason: no real caffe binary (compare/golden/build_caffe.sh; the ours-only checks still run).
"""
from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "compare" / "golden"
sys.path.insert(0, str(GOLDEN))
import caffe_log  # noqa: E402
import caffe_tool  # noqa: E402

from compare import caffe_examples as ce  # noqa: E402
from compare.test_train_parity import LOSS_TOL, WEIGHT_TOL  # noqa: E402

ITERS = 10
TEST_ITER = 3
RESUME_FROM, RESUME_TO = 99, 100
INIT_SEED = 0

_DUP_LOSS = ("Caffe's mnist_autoencoder.prototxt names two layers 'loss' (Caffe accepts duplicate layer names; "
             "models.graph.load_net refuses them)")
_CHAOTIC = ("RMSProp/AdaDelta normalise near-zero (rounding-noise) gradients into O(lr) steps: weights diverge "
            "from Caffe's beyond WEIGHT_TOL within 10 steps (module docstring)")
_SAME_LMDB = ("the reference caffe build hangs creating the autoencoder's test-on-train net, whose Data layer reads "
              "the TRAIN net's mnist_train_lmdb (with that source copied to a second path it trains)")
XFAIL_OURS = {"autoencoder_adagrad": _DUP_LOSS, "autoencoder_nesterov": _DUP_LOSS}
SKIP_CAFFE = {"autoencoder_adagrad": _SAME_LMDB, "autoencoder_nesterov": _SAME_LMDB}
XFAIL_WEIGHTS = {"lenet_rmsprop": _CHAOTIC, "lenet_adadelta": _CHAOTIC}


def _no_caffe() -> str | None:
    try:
        return None if caffe_tool.caffe_bin() else "no real caffe binary (compare/golden/build_caffe.sh)"
    except FileNotFoundError as e:
        return str(e)


needs_caffe = pytest.mark.skipif(_no_caffe() is not None, reason=str(_no_caffe()))


def _cases(names, xfail=None, skip=None):
    xfail, skip = xfail or {}, skip or {}
    return [pytest.param(n, marks=pytest.mark.skip(reason=skip[n])) if n in skip else
            pytest.param(n, marks=pytest.mark.xfail(reason=xfail[n], strict=False)) if n in xfail else n
            for n in names]


def _ours(args, cwd) -> str:
    """``python -m models ARGS`` run in this process (one torch thread, as Caffe gets one BLAS thread) with
    ``cwd`` as the working directory; returns its log (stderr). In-process saves a torch import per call."""
    import torch
    from models.cli import main
    err, threads = io.StringIO(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.chdir(cwd), contextlib.redirect_stderr(err):
            rc = main(list(args))
    finally:
        torch.set_num_threads(threads)
    assert rc == 0, f"models {' '.join(args)} exited {rc} in {cwd}:\n{err.getvalue()[-3000:]}"
    return err.getvalue()


def _caffe(args, cwd) -> subprocess.CompletedProcess:
    return caffe_tool.run_caffe(args, cwd, threads=1, timeout=300)


@dataclass
class Run:
    """One example trained by both tools (``caffe`` None without the binary)."""

    root: Path
    solver: Path  # relative to ours/ and caffe/
    ours: caffe_log.TrainLog
    caffe: caffe_log.TrainLog | None

    def prefix(self, tool: str) -> Path:
        return ce.snapshot_prefix(self.root / tool, self.solver)


_RUNS: dict = {}


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """``example_run(name)``: the example trained ``ITERS`` iterations by us and (when present) real Caffe."""
    def get(name: str) -> Run:
        if name not in _RUNS:
            root = tmp_path_factory.mktemp(name)
            solver = ce.write_example(root / "ours", name, max_iter=ITERS, test_iter=TEST_ITER)
            ce.write_example(root / "caffe", name, max_iter=ITERS, test_iter=TEST_ITER, cpu_mode=True)
            init = ce.write_init_weights(root / "ours", solver, root / "init.caffemodel", seed=INIT_SEED)
            ours = _ours(["train", "--solver", str(solver), "--weights", str(init)], root / "ours")
            caffe = None
            if _no_caffe() is None and name not in SKIP_CAFFE:
                caffe = caffe_log.parse_train_log(
                    _caffe(["train", f"--solver={solver}", f"--weights={init}"], root / "caffe").stderr)
            _RUNS[name] = Run(root, solver, caffe_log.parse_train_log(ours), caffe)
        return _RUNS[name]
    return get


def _close(ours: float, caffe: float) -> bool:
    return abs(ours - caffe) <= LOSS_TOL * max(1.0, abs(caffe))


def _blob_diffs(tag: str, ours: list, caffe: list) -> list[str]:
    if len(ours) != len(caffe):
        return [f"{tag}: {len(ours)} blobs vs caffe's {len(caffe)}"]
    bad = []
    for i, (a, b) in enumerate(zip(ours, caffe)):
        if a.shape != b.shape:
            bad.append(f"{tag}[{i}]: shape {a.shape} vs caffe {b.shape}")
            continue
        err = float(np.max(np.abs(a.astype(np.float64) - b))) if b.size else 0.0
        scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
        if err > WEIGHT_TOL * scale:
            bad.append(f"{tag}[{i}]: max|ours - caffe| = {err:.3g} > {WEIGHT_TOL} * {scale:.3g}")
    return bad


def _weights(path) -> dict:
    from models.schema import pb
    net = pb.NetParameter()
    net.ParseFromString(Path(path).read_bytes())
    return {l.name: [np.asarray(b.data, np.float32).reshape(tuple(b.shape.dim)) for b in l.blobs]
            for l in net.layer if l.blobs}


def _snapshot_diffs(ours_prefix: Path, caffe_prefix: Path, it: int) -> list[str]:
    from models.train.snapshot import read_solverstate
    a, b = _weights(f"{ours_prefix}_iter_{it}.caffemodel"), _weights(f"{caffe_prefix}_iter_{it}.caffemodel")
    bad = [f"layers: ours {sorted(a)} vs caffe {sorted(b)}"] if sorted(a) != sorted(b) else []
    for layer in b:
        bad += _blob_diffs(f"weights {layer}", a.get(layer, []), b[layer])
    sa = read_solverstate(f"{ours_prefix}_iter_{it}.solverstate")
    sb = read_solverstate(f"{caffe_prefix}_iter_{it}.solverstate")
    for key in ("iter", "current_step", "learned_net"):
        if sa[key] != sb[key]:
            bad.append(f"solverstate {key}: ours {sa[key]!r} vs caffe {sb[key]!r}")
    return bad + _blob_diffs("history", sa["history"], sb["history"])


def _log_diffs(ours: caffe_log.TrainLog, caffe: caffe_log.TrainLog) -> list[str]:
    bad = []
    for what, a, b in (("loss", ours.loss, caffe.loss), ("lr", ours.lr, caffe.lr)):
        if sorted(a) != sorted(b):
            bad.append(f"{what} logged at iterations {sorted(a)}, caffe at {sorted(b)}")
        bad += [f"{what}[{i}]: ours {a[i]:.7g} vs caffe {b[i]:.7g}" for i in b if i in a and not _close(a[i], b[i])]
    for name, a, b in (("train output", ours.train_outputs, caffe.train_outputs), ("test", ours.tests, caffe.tests)):
        if sorted(a) != sorted(b):
            bad.append(f"{name}s at {sorted(a)}, caffe at {sorted(b)}")
        for key in b:
            for blob, vals in b[key].items():
                got = a.get(key, {}).get(blob, [])
                if len(got) != len(vals) or not all(_close(x, y) for x, y in zip(got, vals)):
                    bad.append(f"{name} {key} {blob}: ours {got} vs caffe {vals}")
    return bad


@pytest.mark.parametrize("name", _cases(ce.EXAMPLES, XFAIL_OURS))
def test_example_trains_with_caffe_log_lines(name, example_run):
    run = example_run(name)
    log, prefix = run.ours, run.prefix("ours")
    assert log.tests.get((0, 0)), "no 'Iteration 0, Testing net (#0)' with test net outputs"
    assert 0 in log.loss and log.train_outputs.get(0), "no 'Iteration 0, loss' / 'Train net output' lines"
    assert all(np.isfinite(v) for v in log.loss.values()), f"non-finite loss {log.loss}"
    assert sorted(log.lr) == [0], f"lr lines at {sorted(log.lr)}; display: 100 logs iteration 0 only"
    rel = prefix.relative_to(run.root / "ours")
    assert log.snapshots == [f"{rel}_iter_{ITERS}.caffemodel", f"{rel}_iter_{ITERS}.solverstate"], log.snapshots
    for suffix in ("caffemodel", "solverstate"):
        assert Path(f"{prefix}_iter_{ITERS}.{suffix}").is_file(), f"{prefix}_iter_{ITERS}.{suffix} not written"
    assert log.done, "no 'Optimization Done.'"


@needs_caffe
@pytest.mark.parametrize("name", _cases(ce.EXAMPLES, XFAIL_OURS, SKIP_CAFFE))
def test_example_log_matches_caffe(name, example_run):
    run = example_run(name)
    bad = _log_diffs(run.ours, run.caffe)
    assert run.caffe.snapshots == run.ours.snapshots, f"caffe snapshots {run.caffe.snapshots}"
    assert not bad, f"{name}: logged numbers differ from caffe train's:\n" + "\n".join(bad[:20])


@needs_caffe
@pytest.mark.parametrize("name", _cases(ce.EXAMPLES, XFAIL_WEIGHTS, SKIP_CAFFE))
def test_example_snapshot_matches_caffe(name, example_run):
    run = example_run(name)
    bad = _snapshot_diffs(run.prefix("ours"), run.prefix("caffe"), ITERS)
    assert not bad, f"{name}: iteration-{ITERS} snapshot differs from caffe train's:\n" + "\n".join(bad[:20])


@needs_caffe
@pytest.mark.parametrize("name", ["lenet", "cifar10_quick"])
def test_caffe_test_scores_our_snapshot(name, example_run):
    run = example_run(name)
    folder = run.root / "ours"
    net = ce.net_path((folder / run.solver).read_text())
    weights = f"{run.prefix('ours').relative_to(folder)}_iter_{ITERS}.caffemodel"
    ours = _ours(["test", "--model", net, "--weights", weights, "--iterations", str(TEST_ITER)], folder)
    caffe = _caffe(["test", f"--model={net}", f"--weights={weights}", f"--iterations={TEST_ITER}"], folder).stderr
    (ob, of), (cb, cf) = caffe_log.parse_test_log(ours), caffe_log.parse_test_log(caffe)
    assert sorted(cb) == list(range(TEST_ITER)) and cf, f"caffe test log not parsed:\n{caffe[-2000:]}"
    bad = []
    for what, a, b in [(f"batch {i}", ob.get(i, {}), cb[i]) for i in cb] + [("mean", of, cf)]:
        if sorted(a) != sorted(b):
            bad.append(f"{what}: outputs {sorted(a)} vs caffe {sorted(b)}")
        bad += [f"{what} {k}: ours {a.get(k)} vs caffe {v}" for k, v in b.items()
                if len(a.get(k, [])) != len(v) or not all(_close(x, y) for x, y in zip(a[k], v))]
    assert not bad, f"{name}: models test differs from caffe test on our snapshot:\n" + "\n".join(bad)


@needs_caffe
@pytest.mark.parametrize("name", ["lenet", "lenet_adam", "lenet_adadelta"])
def test_caffe_resumes_our_solverstate(name, tmp_path):
    """SGD (one history set), Adam and AdaDelta (two sets; Adam's rate corrected by the restored iteration)."""
    roots = {t: tmp_path / t for t in ("ours", "caffe")}
    solver = ce.write_example(roots["ours"], name, max_iter=RESUME_TO, test_iter=TEST_ITER)
    ce.write_example(roots["caffe"], name, max_iter=RESUME_TO, test_iter=TEST_ITER, cpu_mode=True)
    init = ce.write_init_weights(roots["ours"], solver, tmp_path / "init.caffemodel", seed=INIT_SEED)
    _ours(["train", "--solver", str(solver), "--weights", str(init), "--iterations", str(RESUME_FROM)], roots["ours"])
    prefix = {t: ce.snapshot_prefix(r, solver) for t, r in roots.items()}
    state = f"{prefix['ours'].relative_to(roots['ours'])}_iter_{RESUME_FROM}.solverstate"
    # our files at the same paths in Caffe's folder: the solverstate names its caffemodel relative to the
    # working directory it was written from (sgd_solver.cpp SnapshotSolverStateToBinaryProto), as Caffe's do
    for suffix in ("solverstate", "caffemodel"):
        rel = f"{prefix['ours'].relative_to(roots['ours'])}_iter_{RESUME_FROM}.{suffix}"
        (roots["caffe"] / rel).write_bytes((roots["ours"] / rel).read_bytes())
    ours = caffe_log.parse_train_log(_ours(["train", "--solver", str(solver), "--snapshot", state],
                                           roots["ours"]))
    caffe = caffe_log.parse_train_log(_caffe(["train", f"--solver={solver}", f"--snapshot={state}"],
                                             roots["caffe"]).stderr)
    assert sorted(caffe.loss) == [RESUME_TO], f"caffe logged losses at {sorted(caffe.loss)}"
    bad = _log_diffs(ours, caffe) + _snapshot_diffs(prefix["ours"], prefix["caffe"], RESUME_TO)
    assert not bad, f"{name}: caffe resumed from our solverstate differs from ours:\n" + "\n".join(bad[:20])


def _time_template(log: str) -> list[str]:
    """``caffe time``'s caffe.cpp lines with glog's prefix dropped and every number replaced by ``#``."""
    out = []
    for line in log.splitlines():
        m = re.match(r"^[IWEF]\d{4,8} [\d:.]+\s+\d+ caffe\.cpp:\d+\] (.*)$", line)
        if m and not m[1].startswith(("Use ", "Running")):
            out.append(re.sub(caffe_log.NUM, "#", m[1]))
    return out


@needs_caffe
def test_models_time_prints_caffe_time_lines(example_run):
    """``python -m models time`` prints caffe.cpp time()'s lines: the same layers (data layer included) in the same
    order, and whole milliseconds per iteration on CPU (Caffe's CPU Timer)."""
    folder = example_run("lenet").root / "ours"
    net = ce.net_path((folder / example_run("lenet").solver).read_text())
    ours = _ours(["time", "--model", net, "--iterations", "2"], folder)
    caffe = _caffe(["time", f"--model={net}", "--iterations=2"], folder).stderr
    assert _time_template(ours) == _time_template(caffe), "\n".join(_time_template(ours))
    for log in (ours, caffe):
        times = re.findall(r"forward-backward time: (\S+) ms\.", log)
        assert len(times) == 2 and all(t.isdigit() for t in times), times
