"""``replicate.run`` with ``beyond=True`` writes the five "Beyond the paper" files and the report section, checked
by compare/test_beyond.py's ``problems``; a second run reads every step back; a changed input recomputes it
(issue 12 phase 2). Training and feature extraction are replaced by random scores / random features (the statistics
themselves are tested in test_paired, test_permutation, test_nested_cv, test_handcrafted, test_learning_curve)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from compare.test_beyond import FILES, problems
from replicate import RunConfig, run
from replicate.experiments import beyond
from replicate.experiments import grid as ex
from replicate.experiments.protocol import FoldResult



@pytest.fixture
def small_grid(monkeypatch):
    """Random out-of-fold scores and random 8-d patch features; 3 Table 5 settings and 2 Table 6 blobs."""
    def unit(self, cell, fold, feats):
        rng = np.random.default_rng(abs(hash((cell.id, fold.repeat, fold.fold))) % 2**32)
        labels = dict(zip(self.patients.patient_id, self.patients.label))
        return FoldResult(fold.repeat, fold.fold, list(fold.test_ids), [labels[i] for i in fold.test_ids],
                          list(rng.normal(size=len(fold.test_ids))), 0.8, {})

    def features(self, cell):
        rows = self.rows(cell.patch_size)
        rng = np.random.default_rng([cell.patch_size, len(cell.network)])
        return {"rows": rows, "blobs": {b: rng.normal(size=(len(rows), 8)) for b in ex.LAYER_BLOBS + ["fc8"]}}

    monkeypatch.setattr(ex.Runner, "run_unit", unit)
    monkeypatch.setattr(ex.Runner, "features", features)
    monkeypatch.setattr(ex, "FEATURE_SETTINGS", [("GoogleNet", 120, "poly"), ("GoogleNet", 120, "rbf"),
                                                 ("GoogleNet", 120, "linear"), ("VGGNet", 120, "poly")])
    monkeypatch.setattr(ex, "LAYER_BLOBS", ["inception_5b/output", "loss3/classifier"])


def test_run_writes_the_beyond_files_and_section_and_resumes(synth_root, tmp_path, small_grid, monkeypatch):
    preset = dataclasses.replace(ex.get_preset("smoke"), n_boot=50, beyond=True, learning_curve_sizes=(20, None),
                                 learning_curve_draws=2)
    out = tmp_path / "run"
    run(RunConfig(preset=preset, data=synth_root / "cohort", out=out, device="cpu",
                  patch_cache=synth_root / "patches", progress=False))
    assert problems(out) == []
    text = (out / "report.md").read_text()
    sec = text.split(beyond.SECTION_TITLE, 1)[1]
    assert "Not comparable with the paper" in sec and "preset 'smoke' departs from the paper (n_repeats" in sec
    assert text.index(beyond.SECTION_TITLE) < text.index("## Comparison with the paper")
    assert "FC layer features performed the best" in sec and "polynomial kernel best suits our problem" in sec
    pj = json.loads((out / "results" / "permutation.json").read_text())
    assert len(pj["features"]["configurations"]) == 5 and pj["features"]["n_perm"] == 99
    # the permutation file and section say plainly which variant is tested; the claims are decided across claims
    assert "per-patient variant" in pj["features"]["tests"] and "p (Holm, all claims)" in sec
    rc = pj["features"]["reported_cell"]
    if rc.get("cell"):
        assert f"not* a test of the reported cell `{rc['cell']}`" in sec and rc["estimated_permutation_seconds"] >= 0
    assert (out / "figures" / "learning_curve.png").stat().st_size > 0
    # both readings of the SVM's training unit, side by side, for every deep-feature cell
    su = pd.read_csv(out / "results" / "svm_units.csv")
    assert set(su["svm_unit"]) == {"patch", "patient"} and su.groupby("cell")["svm_unit"].nunique().eq(2).all()
    assert (su.loc[su.svm_unit == "patient", "n_train_rows"].to_numpy()
            < su.loc[su.svm_unit == "patch", "n_train_rows"].to_numpy()).all()
    assert "The SVM's training unit, both readings" in sec

    # resume: every step read back, the section written once
    calls = []
    real = beyond._learning_curve
    monkeypatch.setattr(beyond, "_learning_curve", lambda *a, **k: (calls.append(1), real(*a, **k)))
    run(RunConfig(preset=preset, data=synth_root / "cohort", out=out, device="cpu",
                  patch_cache=synth_root / "patches", progress=False))
    text = (out / "report.md").read_text()
    assert text.count(beyond.SECTION_TITLE) == 1 and calls == []
    assert "permutation resumed" in text and "baselines resumed" in text
    # a result file edited or removed is recomputed
    (out / "results" / "learning_curve.csv").write_text("cell\n")
    run(RunConfig(preset=preset, data=synth_root / "cohort", out=out, device="cpu",
                  patch_cache=synth_root / "patches", progress=False))
    assert calls == [1] and problems(out) == []


def test_compare_names_the_missing_file(tmp_path):
    (tmp_path / "results").mkdir()
    bad = problems(tmp_path)
    assert len(bad) == len(FILES) and all("missing" in b for b in bad)
    assert any("baselines.csv" in b for b in bad)


def test_the_fast_per_patient_candidate_equals_the_featurecv_one():
    import pandas as pd

    from replicate.experiments.featurecv import FeatureCandidate, cv_auc
    from replicate.experiments.svm import make_svm

    rng = np.random.default_rng(0)
    pts = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(40)], "label": [0, 1] * 20})
    X = rng.normal(size=(40, 6)) + pts["label"].to_numpy()[:, None] * 0.8
    slow = cv_auc(FeatureCandidate(X, pts["patient_id"], lambda: make_svm("poly")), pts, 10, 1, 3)
    fast = beyond.evaluate_many([beyond.PatientCandidate(X, pts["patient_id"], "poly")], pts, 10, 3)
    assert fast[0] == pytest.approx(slow, abs=1e-12) and slow > 0.6
