"""Issue 10 phase 2: comparability gate, comparison.csv, predictions.csv, pytest compare/ --run on a run folder.

The run folders here are fabricated from known fold results through the real writers
(replicate.experiments.report.write_all, replicate.experiments.verdict_run.finish): no training, seconds.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compare import comparison
from replicate.experiments import grid, verdict_run
from replicate.experiments.protocol import FoldResult, patient_folds
from replicate.experiments.report import write_all

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_GOOGLENET = "405fc5acd08a3bb12de8ee5e23a96bec22f08204"


def fake_results(preset, signal: float, n=60, seed=0):
    """Fold results of every cell the preset runs: scores = signal * label + noise (so AUC is known roughly)."""
    rng = np.random.default_rng(seed)
    pts = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "label": [int(i % 3 == 0) for i in range(n)]})
    lab = dict(zip(pts.patient_id, pts.label))
    out = {}
    for c in grid.unique_cells(preset):
        rs = []
        for r in range(preset.n_repeats):
            for f in patient_folds(pts, preset.n_folds, seed=r, repeat=r):
                y = [lab[p] for p in f.test_ids]
                s = [signal * v + rng.normal() for v in y]
                rs.append(FoldResult(r, f.fold, list(f.test_ids), y, s, 0.9))
        out[c.id] = rs
    return out


def fabricate(run_dir: Path, preset, signal=0.0, synthetic=True, weights=None, controls=None) -> Path:
    results = fake_results(preset, signal)
    summ = grid.summaries(preset, results)
    weights = weights or [{"network": n, "file": None, "sha1": None, "status": grid.NO_WEIGHTS_FLAG}
                          for n in grid.IMAGENET_NETS]
    flags = {c.id: grid.NO_WEIGHTS_FLAG for c in grid.unique_cells(preset)
             if c.approach != "scratch" and not weights[0]["sha1"]}
    prov = {"preset": preset.name, "code_version": "test", "device": "cpu", "seed": 0, "n_folds": preset.n_folds,
            "n_repeats": preset.n_repeats, "n_boot": preset.n_boot,
            "cohort": {"source": "synthetic" if synthetic else "/data/duke"}, "weights": weights,
            "no_pretrained_weights": "" if weights[0]["sha1"] else grid.NO_WEIGHTS_FLAG,
            "differences": preset.differences(), "readings": grid.readings(preset), "cells_run": sorted(results),
            "synthetic": synthetic, "scratch_variant": preset.scratch_variant}
    write_all(run_dir, preset, grid.cells(preset), results, summ, flags, prov)
    ex = {}
    if controls is not None:
        ex["controls"] = controls
    verdict_run.finish(run_dir, ex)
    return run_dir


SMALL = replace(grid.PRESETS["paper"], name="paper", n_boot=100)


@pytest.fixture(scope="module")
def smoke_like(tmp_path_factory):
    p = replace(grid.PRESETS["smoke"], n_boot=100)
    return fabricate(tmp_path_factory.mktemp("smoke") / "run", p)


def test_gate_names_every_reason(smoke_like):
    cmp = pd.read_csv(smoke_like / "results" / "comparison.csv")
    assert list(cmp.columns) == comparison.COLUMNS
    assert not cmp.comparable.any()
    assert cmp.why_not_comparable.str.contains("synthetic cohort").all()
    assert cmp.why_not_comparable.str.contains("preset 'smoke' departs").all()
    assert cmp.why_not_comparable.str.contains("1 folds? x 1 repeats|10 folds x 1 repeats").all()
    feat = cmp[cmp.table.isin(["table4", "table5", "table6"])]
    assert feat.why_not_comparable.str.contains("no pretrained weights").all()
    text = (smoke_like / "report.md").read_text()
    assert "expected_inconsistent(0)" in text and "No cell of this run is comparable" in text
    pred = pd.read_csv(smoke_like / "results" / "predictions.csv")
    assert list(pred.columns) == ["patient", "cell", "repeat", "fold", "score", "label"]


def test_paper_run_with_verified_weights_is_comparable(tmp_path):
    w = [{"network": "GoogleNet", "file": "g", "sha1": PUBLISHED_GOOGLENET, "status": "ImageNet caffemodel"},
         {"network": "VGGNet", "file": "v", "sha1": "ab" * 20, "status": "ImageNet caffemodel"}]
    p = replace(grid.PRESETS["paper"], n_boot=100, n_repeats=5)
    run = fabricate(tmp_path / "run", p, signal=3.0, synthetic=False, weights=w)
    cmp = pd.read_csv(run / "results" / "comparison.csv")
    g = cmp[cmp.table == "table3"]
    assert g.comparable.all() and g.why_not_comparable.isna().all()
    assert (g.verdict == "inconsistent").all()          # AUC ~0.97 against the paper's ~0.56
    vgg = cmp[(cmp.table == "table5") & cmp.cell.str.contains("VGGNet")]
    assert (~vgg.comparable).all() and vgg.why_not_comparable.str.contains("unverified").all()
    assert vgg.why_not_comparable.str.contains("ab" * 20).all()
    goog = cmp[(cmp.table == "table5") & cmp.cell.str.contains("GoogleNet")]
    assert goog.comparable.all()
    t6 = cmp[cmp.table == "table6"]
    # Table 6's FC1 cell is Table 5's cell, so it carries that cell's CI; the other layers have no CI in the paper
    fc = t6.cell.str.endswith("blob=loss3/classifier")
    assert fc.sum() == 1 and (t6[fc].paper_se_rule == "ci").all()
    assert (t6[~fc].paper_se_rule == "hanley-mcneil 90/180").all()
    k = comparison.verdict_counts(cmp)
    assert k["n_comparable"] == int(cmp.comparable.sum())


def test_missing_file_named(smoke_like, tmp_path):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(smoke_like, run)
    (run / "results" / "predictions.csv").unlink()
    with pytest.raises(comparison.RunFolderError, match="results/predictions.csv"):
        comparison.comparison_frame(run)


def _pytest_compare(run: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "compare/test_paper_parity.py", "--run", str(run), "-q",
                           "-rs", "-p", "no:cacheprovider", *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_pytest_compare_on_smoke_skips_values_passes_structure(smoke_like):
    r = _pytest_compare(smoke_like)
    assert r.returncode == 0, r.stdout[-3000:]
    n_cells = sum(len(pd.read_csv(smoke_like / "results" / f"{t}.csv")) for t in
                  ("table3", "table4", "table5", "table6", "lr_sweeps"))
    assert r.stdout.count("not comparable:") >= 1
    summary = r.stdout.strip().splitlines()[-1]
    assert f"{n_cells + 1 + 1} skipped" in summary or "skipped" in summary
    assert "smoke preset" in r.stdout
    assert "passed" in summary


def test_pytest_compare_names_missing_file(smoke_like, tmp_path):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(smoke_like, run)
    (run / "results" / "ci_methods.csv").unlink()
    r = _pytest_compare(run, "-k", "fold_structure")
    assert r.returncode != 0
    assert "missing results/ci_methods.csv" in r.stdout and "Traceback" not in r.stdout


def quick_controls(neg_kinetic=(0.55, (0.45, 0.65))) -> dict:
    """A controls.json as run_controls writes it for a CPU quick run (the budget rule with CIFAR's ~170 steps)."""
    from replicate.experiments import controls

    spec = grid.PRESETS["quick"].controls
    cifar = spec["trained"][0]
    rule = controls.required_routes(spec, {cifar: 168}, {cifar: 50243})
    kinetic = controls.handcrafted_route("kinetic", "logistic")
    pos = {spec["required"][0]: (0.66, (0.53, 0.78)), kinetic: (0.70, (0.59, 0.81)), cifar: (0.51, (0.40, 0.62))}
    neg = {spec["required"][0]: (0.48, (0.37, 0.59)), kinetic: neg_kinetic, cifar: (0.50, (0.39, 0.61))}
    pos_rows = controls.check_routes(pos, rule["positive_required"])
    neg_rows = controls.check_routes(neg, list(neg))
    for r in pos_rows + neg_rows:
        r["route"] = rule["routes"][r["cell"]]
    pos_ok, pos_why = controls.positive_control_passes(pos_rows, rule["positive_required"], [])
    neg_ok, neg_why = controls.negative_control_passes(neg_rows)
    return {"positive": {"rows": pos_rows, "passed": pos_ok, "why": pos_why, "training": {}},
            "negative": {"rows": neg_rows, "passed": neg_ok, "why": neg_why, "training": {}},
            "rule": rule, "required": rule["positive_required"], "reported": rule["positive_reported"],
            "sizing": {}, "ideal_auc": 0.76, "effect": 1.0, "null_effect": 0.0, "n_patients": 120, "seed": 0,
            "alpha_one_sided": 0.025}


def test_controls_checked_on_quick_like_run(tmp_path):
    """A CPU quick run: the positive control passes through its two required routes (the scratch net reported,
    not required); a null route above chance fails the negative control, and `pytest compare/` says which."""
    p = replace(grid.PRESETS["quick"], n_boot=100)
    good = fabricate(tmp_path / "good", p, controls=quick_controls())
    r = _pytest_compare(good, "-k", "controls")
    assert r.returncode == 0, r.stdout[-3000:]
    text = (good / "report.md").read_text()
    assert text.index("## Summary") < text.index("## Controls") < text.index("| effect 1 |")
    assert "**PASSED** through 2 required route(s)" in text and "not required: 168 SGD steps" in text
    from replicate.experiments import auc_ci, summary

    first_screen = text.split("\n## ")[1]
    assert first_screen.startswith("Summary") and len(first_screen.splitlines()) <= summary.MAX_LINES
    assert auc_ci.PRIMARY_CI in first_screen   # the primary CI and its measured coverage
    assert all(f"{v:.3f}" in first_screen for v in auc_ci.MEASURED_COVERAGE[auc_ci.PRIMARY_CI].values())
    run = fabricate(tmp_path / "bad", p, controls=quick_controls(neg_kinetic=(0.70, (0.60, 0.80))))
    r = _pytest_compare(run, "-k", "controls")
    assert r.returncode == 1 and "negative control: effect 'found' without one by baseline/kinetic" in r.stdout
    assert "Negative control" in (run / "report.md").read_text()


def test_readings_in_the_unit_key_and_the_svm_unit_wired():
    """A changed reading changes the preset hash (hence every unit key); svm_fold honours svm_unit."""
    from types import SimpleNamespace

    from replicate.experiments.training import FoldData, fold_data

    base = grid.PRESETS["quick"]
    hashes = {grid.Runner.preset_hash(SimpleNamespace(p=replace(base, **kw)))
              for kw in ({}, {"svm_unit": "patient"}, {"pooling": "max"}, {"test_patches": "oversample"})}
    assert len(hashes) == 4
    assert grid.readings(base) == {"test_patches": "box_corners", "svm_unit": "patch", "pooling": "avg"}
    # 30 patients x (4 train + 2 test patches); features = label + noise, so a per-patient SVM separates them
    rng = np.random.default_rng(0)
    pts = pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(30)], "label": [i % 2 for i in range(30)]})
    rows = [(p, y, role, b, s) for p, y in zip(pts.patient_id, pts.label) for role, n in (("train", 4), ("test", 2))
            for b, s in [(1, k) for k in range(n)]]
    index = pd.DataFrame(rows, columns=["patient_id", "label", "role", "box", "slice"])
    x = index.label.to_numpy()[:, None] * 2.0 + rng.normal(size=(len(index), 5))
    fold = patient_folds(pts, 5, seed=0)[0]
    data = fold_data(index, fold)
    cell = grid.Cell("table5", "features", "GoogleNet", patch_size=80, kernel="linear", blob="b")
    feats = {"rows": np.arange(len(index)), "blobs": {"b": x}}
    a = grid.svm_fold(cell, fold, data, feats, unit="patch")
    b = grid.svm_fold(cell, fold, data, feats, unit="patient", index=index)
    assert a.extra["n_train_patches"] == b.extra["n_train_patches"] == len(data.train_rows)
    assert a.test_scores != b.test_scores and b.test_auc > 0.8
    assert isinstance(data, FoldData)


def test_rerunning_the_verdict_sections_leaves_one_copy_of_each(tmp_path):
    """`pytest compare/ --run RUN` rewrites the verdict sections (compare/conftest.py -> report.insert_sections):
    a second and third call give the same report, each section once (a newcomer found them doubled)."""
    from replicate.experiments import report

    p = replace(grid.PRESETS["quick"], n_boot=100)
    run = fabricate(tmp_path / "run", p, controls=quick_controls())
    report.insert_section(run, "## Beyond the paper\n\nsome text\n")
    report.insert_sections(run)
    first = (run / "report.md").read_text()
    report.insert_sections(run)
    report.insert_sections(run)
    again = (run / "report.md").read_text()
    assert again == first
    assert again.startswith("# ") and again.split("\n## ")[1].startswith("Summary")   # the first screen
    for title in ("## Summary", "## Readings of the paper this run used",
                  "## Controls (planted effect found? null not found?)", "## Beyond the paper",
                  "## Comparison with the paper"):
        assert again.count(title) == 1, title
