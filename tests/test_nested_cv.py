"""replicate.experiments.nested_cv: selection on test folds vs nested CV, and no peeking at outer test patients."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from replicate.experiments.featurecv import FeatureCandidate, cv_auc, fast_auc
from replicate.experiments.nested_cv import nested_cv, nested_cv_rows
from replicate.experiments.protocol import patient_folds
from replicate.experiments.svm import make_svm


def cohort(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(int)
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "label": y}), y, rng


def test_fast_auc_is_roc_auc_score():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = np.round(rng.normal(size=50), 1)
    assert fast_auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_nested_cv_picks_the_real_signal_and_reports_selection_on_test_folds():
    pts, y, rng = cohort()
    pids = pts.patient_id.to_numpy()
    cands = {"signal": FeatureCandidate(np.c_[2.0 * y + rng.normal(size=60)], pids, lambda: make_svm("linear"))}
    for k in range(3):
        cands[f"noise{k}"] = FeatureCandidate(rng.normal(size=(60, 2)), pids, lambda: make_svm("linear"))
    res = nested_cv(cands, pts, n_folds=5, n_inner=3)
    pc = res["per_candidate"]
    assert res["chosen_on_test"] == pytest.approx(pc.test_auc.max())
    assert pc.set_index("candidate").test_auc["signal"] == pytest.approx(
        cv_auc(cands["signal"], pts, n_folds=5))
    assert (res["choices"].chosen == "signal").mean() >= 0.8
    assert res["nested"] > 0.8 and abs(res["optimism"]) < 0.05
    # the nested fold results are the chosen candidates' outer-fold results
    assert res["nested"] == pytest.approx(np.mean([fast_auc(f.test_labels, f.test_scores)
                                                   for f in res["nested_folds"]]))
    rows = nested_cv_rows(res, "kernel")
    assert list(rows.estimate) == ["chosen_on_test", "nested"]


def test_inner_cv_never_sees_the_outer_test_patients():
    pts, y, rng = cohort(n=40)
    X = rng.normal(size=(40, 2))
    calls = []

    class Spy:
        def __call__(self, tr, sc, ytr):
            calls.append((set(tr), set(sc)))
            return FeatureCandidate(X, pts.patient_id.to_numpy(), lambda: make_svm("linear"))(tr, sc, ytr)

    nested_cv({"a": Spy(), "b": Spy()}, pts, n_folds=4, n_inner=3)
    outer = patient_folds(pts, 4, seed=0)
    assert len(calls) == 4 * 2 * (3 + 1)
    for tr, sc in calls:
        assert not tr & sc
        if any(sc == set(f.test_ids) for f in outer):
            continue    # an outer-fold fit: trained on the whole outer training side
        # an inner fit: everything it touches lies inside one outer training side
        assert any((tr | sc) <= set(f.train_ids) for f in outer)
