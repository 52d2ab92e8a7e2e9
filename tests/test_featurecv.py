"""replicate.experiments.featurecv: which rows a candidate fits on and scores, and the protocol around it."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from replicate.experiments.featurecv import FeatureCandidate, cv_results
from replicate.experiments.protocol import ProtocolError


class Spy:
    """An estimator recording the rows it is fitted on; its score is the first feature."""

    fitted = []

    def fit(self, X, y):
        Spy.fitted.append((X[:, 1].copy(), np.asarray(y).copy()))
        return self

    def decision_function(self, X):
        return X[:, 0]


def test_fits_on_training_rows_of_training_patients_and_scores_test_rows_by_patient_mean():
    # 4 patients x (2 train rows + 3 test rows); column 1 = row number, column 0 = score
    pids = np.repeat(["a", "b", "c", "d"], 5)
    role = np.tile(["train", "train", "test", "test", "test"], 4)
    X = np.c_[np.arange(20) % 5, np.arange(20)].astype(float)
    index = pd.DataFrame({"patient_id": pids, "role": role})
    cand = FeatureCandidate.from_index(X, index, Spy)
    Spy.fitted.clear()
    s = cand(["a", "c"], ["b", "d"], [1, 0])
    rows, y = Spy.fitted[0]
    assert rows.tolist() == [0, 1, 10, 11] and y.tolist() == [1, 1, 0, 0]
    assert s.index.tolist() == ["b", "d"] and s.tolist() == [3.0, 3.0]      # mean of 2, 3, 4
    with pytest.raises(ProtocolError, match="one class"):
        cand(["a", "c"], ["b"], [1, 1])


def test_cv_results_cover_every_patient_once_per_repeat():
    n = 30
    pts = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "label": (np.arange(n) % 3 == 0).astype(int)})
    X = np.c_[np.random.default_rng(0).normal(size=n), np.arange(n)]
    res = cv_results(FeatureCandidate(X, pts.patient_id.to_numpy(), Spy), pts, n_folds=5, n_repeats=2)
    for r in (0, 1):
        ids = [p for f in res if f.repeat == r for p in f.test_ids]
        assert sorted(ids) == sorted(pts.patient_id)


def test_patient_mean_features():
    from replicate.experiments.featurecv import patient_mean_features

    X = np.arange(12, dtype=float).reshape(6, 2)
    m, ids = patient_mean_features(X, ["b", "a", "b", "a", "b", "a"], rows=[1, 1, 1, 1, 0, 0])
    assert ids.tolist() == ["a", "b"] and m.tolist() == [[4.0, 5.0], [2.0, 3.0]]


def test_predictions_frame_round_trips_fold_results():
    from replicate.experiments.paired import Predictions, predictions_frame

    n = 30
    pts = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "label": (np.arange(n) % 3 == 0).astype(int)})
    X = np.c_[np.random.default_rng(0).normal(size=n), np.arange(n)]
    res = cv_results(FeatureCandidate(X, pts.patient_id.to_numpy(), Spy), pts, n_folds=5, n_repeats=2)
    df = predictions_frame({"cellA": res})
    assert list(df.columns) == ["patient", "cell", "repeat", "fold", "score", "label"] and len(df) == 2 * n
    p = Predictions(df)
    assert p.fold_auc("cellA", np.ones((1, n)), "mean")[0] == pytest.approx(
        np.mean([np.mean([roc_auc_score(f.test_labels, f.test_scores) for f in res if f.repeat == r])
                 for r in (0, 1)]))
