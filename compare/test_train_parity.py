"""Our ``python -m models train`` against real ``caffe train``: the golden trajectories (compare/golden/fixtures/train__*).

For each fixture (trajectory_golden.py made it with the real tool, from ``init.caffemodel``), the same solver, net,
starting weights and regenerated data sources are trained by ``python -m models train --solver solver.prototxt
--weights init.caffemodel`` in a temp folder; both logs are parsed by the same parser (compare/golden/caffe_log.py)
and compared:

* the logged loss of every iteration 0..50 (``display: 1``), the lr of every iteration, the test net outputs;
* every blob of the final weights (our ``snap_iter_50.caffemodel[.h5]`` against Caffe's);
* resume: ``--snapshot`` from Caffe's own ``snap_iter_25.solverstate``, against Caffe resumed from the same file
  (both restart their data readers at the first record), losses 25..50 and the final weights.

Tolerances (fixed before any comparison was run; float32 arithmetic in a different summation order, 50 steps):
a logged loss/lr/test value within ``LOSS_TOL * max(1, |caffe|)`` (the log prints 6 significant digits, so
5e-6 relative is the printing's own resolution); a weight blob within ``WEIGHT_TOL * max(1, max|caffe blob|)``.
Skipped, with the reason, when ``models.train`` or ``models.data`` (the LMDB/HDF5 sources) is not importable.
``RGR_TRAIN_DEVICE=cuda`` trains on the GPU instead (fp32, TF32 off): the same tolerances then prove CUDA parity.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
FIXTURES = GOLDEN / "fixtures"
sys.path.insert(0, str(GOLDEN))
import caffe_log  # noqa: E402
import trajectory_golden as tg  # noqa: E402

DEVICE = os.environ.get("RGR_TRAIN_DEVICE", "cpu")
LOSS_TOL = 5e-5
WEIGHT_TOL = 1e-4
FIRST_ITERS = 50

CASES = sorted(p.name[len("train__"):] for p in FIXTURES.glob("train__*") if (p / "provenance.json").exists())


def _missing() -> str | None:
    for mod in ("models.train", "models.train_cli", "models.data"):
        try:
            if importlib.util.find_spec(mod) is None:
                return f"{mod} is not importable (the train CLI / data layers are not merged yet)"
        except ImportError as e:
            return f"{mod} is not importable ({e})"
    return None


pytestmark = [pytest.mark.skipif(not CASES, reason="no train__ fixtures (compare/golden/trajectory_golden.py)"),
              pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def _prepare(case: str, folder: Path) -> dict:
    """Copy the fixture's solver/net/weights/snapshots into ``folder`` and regenerate its data sources."""
    from models.schema import pb
    fx = FIXTURES / f"train__{case}"
    prov = json.loads((fx / "provenance.json").read_text())
    sfx = tg.snapshot_suffix(case)
    for f in ("solver.prototxt", "net.prototxt", "init.caffemodel", f"snap_iter_{tg.SNAPSHOT}.caffemodel{sfx}",
              f"snap_iter_{tg.SNAPSHOT}.solverstate{sfx}"):
        shutil.copyfile(fx / f, folder / f)
    digests = tg.write_data(prov["net"], prov["feed"], folder, pb.Datum, pb.BlobProto)
    assert digests == prov["data"]["digests"], f"{case}: regenerated data differ from what Caffe read"
    return prov


def _train(folder: Path, *extra: str) -> caffe_log.TrainLog:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "models", "train", "--solver", "solver.prototxt", "--device", DEVICE,
                        *extra],
                       cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"models train {' '.join(extra)} exited {p.returncode}:\n{p.stderr[-3000:]}"
    return caffe_log.parse_train_log(p.stderr)


def _close(ours: float, caffe: float) -> bool:
    return abs(ours - caffe) <= LOSS_TOL * max(1.0, abs(caffe))


def _compare_series(name: str, ours: dict, caffe: dict, iters) -> list[str]:
    bad = []
    for i in iters:
        if i not in ours:
            bad.append(f"{name}: iteration {i} missing from our log")
        elif not _close(ours[i], caffe[i]):
            bad.append(f"{name}[{i}]: ours {ours[i]:.7g} vs caffe {caffe[i]:.7g}")
    return bad


def _compare_weights(case: str, tag: str, ours_path: Path) -> tuple[list[str], float]:
    from models.schema import pb
    caffe = np.load(FIXTURES / f"train__{case}" / "blobs.npz")
    ours = tg.read_weights(ours_path, pb.NetParameter)
    keys = sorted(k for k in caffe.files if k.startswith(tag + "/"))
    bad, worst = [], 0.0
    for k in keys:
        _, layer, i = k.split("/")
        ref = caffe[k]
        if layer not in ours or int(i) >= len(ours[layer]):
            bad.append(f"{tag} {layer}[{i}]: not in our snapshot")
            continue
        got = ours[layer][int(i)]
        if got.shape != ref.shape:
            bad.append(f"{tag} {layer}[{i}]: shape {got.shape} vs caffe {ref.shape}")
            continue
        err = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
        scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
        worst = max(worst, err / scale)
        if err > WEIGHT_TOL * scale:
            bad.append(f"{tag} {layer}[{i}]: max|ours - caffe| = {err:.3g} > {WEIGHT_TOL} * {scale:.3g}")
    assert keys, f"{case}: no {tag}/ weights in blobs.npz"
    return bad, worst


@pytest.mark.parametrize("case", CASES)
def test_trajectory_matches_caffe(case, tmp_path):
    _prepare(case, tmp_path)
    caffe = caffe_log.parse_train_log((FIXTURES / f"train__{case}" / "caffe.log").read_text())
    ours = _train(tmp_path, "--weights", "init.caffemodel")
    bad = _compare_series("loss", ours.loss, caffe.loss, range(FIRST_ITERS + 1))
    bad += _compare_series("lr", ours.lr, caffe.lr, sorted(caffe.lr))
    assert sorted(ours.tests) == sorted(caffe.tests), f"test points: ours {sorted(ours.tests)} vs caffe"
    for key in caffe.tests:
        for name, vals in caffe.tests[key].items():
            got = ours.tests[key].get(name, [])
            if len(got) != len(vals) or not all(_close(a, b) for a, b in zip(got, vals)):
                bad.append(f"test {key} {name}: ours {got} vs caffe {vals}")
    assert ours.done, "our log has no 'Optimization Done.'"
    wbad, worst = _compare_weights(case, "final", tmp_path / f"snap_iter_{tg.MAX_ITER}.caffemodel"
                                   f"{tg.snapshot_suffix(case)}")
    bad += wbad
    assert not bad, f"{case}: {len(bad)} difference(s) from real Caffe (worst weight rel {worst:.3g}):\n" + \
        "\n".join(bad[:20])


@pytest.mark.parametrize("case", CASES)
def test_resume_from_caffe_solverstate(case, tmp_path):
    sfx = tg.snapshot_suffix(case)
    _prepare(case, tmp_path)
    ref = np.load(FIXTURES / f"train__{case}" / "blobs.npz")["resume/loss"]
    caffe_loss = dict(zip(range(tg.SNAPSHOT, tg.SNAPSHOT + len(ref)), ref.tolist()))
    ours = _train(tmp_path, "--snapshot", f"snap_iter_{tg.SNAPSHOT}.solverstate{sfx}")
    bad = _compare_series("resumed loss", ours.loss, caffe_loss, sorted(caffe_loss))
    wbad, worst = _compare_weights(case, "resume_final", tmp_path / f"snap_iter_{tg.MAX_ITER}.caffemodel{sfx}")
    bad += wbad
    assert not bad, f"{case}: resumed run differs from real Caffe's (worst weight rel {worst:.3g}):\n" + \
        "\n".join(bad[:20])
