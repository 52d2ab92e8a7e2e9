"""Cheap cells on cached features, evaluated under the paper's protocol for any patient table and labels.

Shared by the "beyond the paper" analyses (permutation tests, nested CV, hand-crafted baselines, learning curves):
they re-run a cell many times with permuted labels, on patient subsets or inside training folds, which is only
affordable where the expensive part (a net's forward pass, reading DICOM) is cached and the per-fold work is a
scikit-learn fit.

A *candidate* is any callable ``fit_score(train_ids, score_ids, train_labels) -> pd.Series`` (index: the
``score_ids``, values: a patient score) that fits on the training patients only. :class:`FeatureCandidate` is the
one for a feature matrix (one row per patch or per patient) and an estimator factory, with the protocol's patient
score (mean of the patient's patch scores, Zhu et al. 2019 "Model Evaluation";
:func:`replicate.experiments.protocol.patient_scores`). :func:`cv_results` runs one under the protocol: stratified
patient-level folds made from the table's labels (:func:`replicate.experiments.protocol.patient_folds`, so a
permuted label column gets folds stratified on it), fold-averaged AUC, median repeat
(:func:`replicate.experiments.protocol.summarise`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from replicate.experiments.protocol import (FoldResult, ProtocolError, patient_folds, patient_scores,
                                            N_BOOT, repeat_seed, summarise)

Candidate = Callable[[list, list, np.ndarray], pd.Series]


def model_scores(model, X: np.ndarray) -> np.ndarray:
    """A fitted scikit-learn estimator's continuous score: ``decision_function`` when it has one, else
    ``predict_proba[:, 1]``."""
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X), dtype=np.float64)
    return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)


@dataclass
class FeatureCandidate:
    """Fit ``make_model()`` on the training rows of the training patients, score the scoring rows of the scored
    patients, average per patient.

    ``X``: (rows, D) float; ``patient_ids``: (rows,) str; ``train_rows`` / ``score_rows``: boolean (rows,) masks
    of the rows used to fit and to score (the patch store's ``role`` "train" / "test"); None = every row.
    A patient's label is given to each of its training rows."""

    X: np.ndarray
    patient_ids: np.ndarray
    make_model: Callable
    train_rows: np.ndarray | None = None
    score_rows: np.ndarray | None = None

    def __post_init__(self):
        self.X = np.asarray(self.X)
        self.patient_ids = np.asarray(self.patient_ids).astype(str)
        if self.X.ndim != 2 or len(self.X) != len(self.patient_ids):
            raise ProtocolError(f"features: X of shape {self.X.shape} and {len(self.patient_ids)} patient ids")
        n = len(self.X)
        self._tr = np.ones(n, bool) if self.train_rows is None else np.asarray(self.train_rows, bool)
        self._sc = np.ones(n, bool) if self.score_rows is None else np.asarray(self.score_rows, bool)

    @classmethod
    def from_index(cls, X, index: pd.DataFrame, make_model) -> "FeatureCandidate":
        """Rows described by a patch-store index (columns ``patient_id``, ``role``)."""
        role = index["role"].to_numpy()
        return cls(X, index["patient_id"].to_numpy(), make_model, role == "train", role == "test")

    def __call__(self, train_ids, score_ids, train_labels) -> pd.Series:
        lab = dict(zip(map(str, train_ids), np.asarray(train_labels).astype(int)))
        tr = self._tr & np.isin(self.patient_ids, list(lab))
        sc = self._sc & np.isin(self.patient_ids, [str(s) for s in score_ids])
        y = np.array([lab[p] for p in self.patient_ids[tr]])
        if len(np.unique(y)) != 2:
            raise ProtocolError("features: the training rows hold one class only")
        model = self.make_model().fit(self.X[tr], y)
        s = patient_scores(self.patient_ids[sc], model_scores(model, self.X[sc]))
        missing = set(map(str, score_ids)) - set(s.index)
        if missing:
            raise ProtocolError(f"features: no scoring rows for patient(s) {sorted(missing)[:3]}")
        return s.reindex([str(i) for i in score_ids])


def patient_mean_features(X: np.ndarray, patient_ids, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """(patients, D) mean feature vector of each patient over its ``rows`` (boolean mask; None = all), and the
    patient ids in sorted order: the "one sample per patient" reading of the SVM's training unit, and the cheap
    path for permutation tests (an SVC on ~10^3 patch rows x 1000 features takes seconds a fit, on one row per
    patient hundredths)."""
    pids = np.asarray(patient_ids).astype(str)
    m = np.ones(len(pids), bool) if rows is None else np.asarray(rows, bool)
    df = pd.DataFrame(np.asarray(X, dtype=np.float64)[m])
    g = df.groupby(pids[m], sort=True).mean()
    return g.to_numpy(), g.index.to_numpy().astype(str)


def fold_result(candidate: Candidate, fold, labels: pd.Series) -> FoldResult:
    """One fold: fit on ``fold.train_ids``, score ``fold.test_ids``; ``labels``: patient id -> label.
    The training AUC is not computed (NaN): these analyses use test AUCs only."""
    tr = list(fold.train_ids)
    te = list(fold.test_ids)
    s = candidate(tr, te, labels.reindex(tr).to_numpy())
    return FoldResult(fold.repeat, fold.fold, te, [int(v) for v in labels.reindex(te)], [float(v) for v in s],
                      float("nan"))


def cv_results(candidate: Candidate, patients: pd.DataFrame, n_folds: int = 10, n_repeats: int = 1,
               seed: int = 0) -> list[FoldResult]:
    """Every fold of every repeat of ``candidate`` on ``patients`` (columns ``patient_id``, ``label``); folds
    made as the grid makes them (repeat r uses ``repeat_seed(seed, r)``)."""
    labels = pd.Series(patients["label"].astype(int).to_numpy(), index=patients["patient_id"].astype(str))
    out = []
    for r in range(n_repeats):
        for f in patient_folds(patients, n_folds, seed=repeat_seed(seed, r), repeat=r):
            out.append(fold_result(candidate, f, labels))
    return out


def fast_auc(labels, scores) -> float:
    """ROC AUC as the Mann-Whitney U statistic from mid-ranks (ties count 1/2), equal to scikit-learn's
    ``roc_auc_score`` without its input validation (which costs ~10 ms a call, and permutation tests make tens of
    thousands of calls). Raises ProtocolError when a class is missing."""
    y = np.asarray(labels).astype(bool)
    m = int(y.sum())
    n = y.size - m
    if m == 0 or n == 0:
        raise ProtocolError(f"AUC: need both classes, got {m} positive and {n} negative")
    r = rankdata(np.asarray(scores, dtype=np.float64))
    return float((r[y].sum() - m * (m + 1) / 2.0) / (m * n))


def fold_averaged_auc(results: list[FoldResult]) -> float:
    """The paper's number without a CI: fold-averaged test AUC of the median repeat (lower median)."""
    by: dict[int, list[float]] = {}
    for r in results:
        by.setdefault(r.repeat, []).append(fast_auc(r.test_labels, r.test_scores))
    reps = sorted(float(np.mean(v)) for v in by.values())
    return reps[(len(reps) - 1) // 2]


def cv_auc(candidate: Candidate, patients: pd.DataFrame, n_folds: int = 10, n_repeats: int = 1,
           seed: int = 0) -> float:
    """Fold-averaged test AUC of the median repeat of ``candidate`` on ``patients``."""
    return fold_averaged_auc(cv_results(candidate, patients, n_folds, n_repeats, seed))


def cv_summary(candidate: Candidate, patients: pd.DataFrame, n_folds: int = 10, n_repeats: int = 1,
               seed: int = 0, n_boot: int = N_BOOT):
    """:class:`replicate.experiments.protocol.Summary` (test AUC and its patient-bootstrap 95% CI)."""
    return summarise(cv_results(candidate, patients, n_folds, n_repeats, seed), n_folds=n_folds, n_boot=n_boot,
                     seed=seed)
