"""Whole-pipeline permutation test of a cell's AUC (issue 12, "Beyond the paper", item 2).

Ojala & Garriga 2010 (JMLR 11:1833, "Permutation tests for studying classifier performance", test 1): the labels
are permuted across patients, the **whole** evaluation is re-run on the permuted labels -- new stratified
patient-level folds made from the permuted labels (the folds are stratified "as the folds are"), fit, patient
scores, fold-averaged AUC -- and the p-value of the observed AUC is ``p = (1 + #{null >= observed}) / (1 + N)``
(the +1 counts the observed labelling, so p is never 0 and the test is exact at level p for any N). A permutation
keeps the class sizes; with ``strata`` labels are permuted only within strata (e.g. scanner), a restricted
permutation that keeps the label/stratum association.

Best-of-k (the paper's headline is the best of several configurations chosen on test folds): the evaluator returns
the k configurations' AUCs, and the observed maximum is compared with the permutation distribution of the maximum
over the same k configurations (the same permutation for every configuration), which is the null of "the best of k
shows signal" (statistics note, "Best-of-k selection").

scikit-learn's ``permutation_test_score`` covers a plain estimator; the protocol (patient-level folds, patch
averaging, fold-averaged AUC, median repeat) needs its own loop: :func:`permutation_test` takes any evaluator,
:func:`svm_evaluator` is the fast path for deep-feature + SVM cells on cached features.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from replicate.experiments.featurecv import FeatureCandidate, cv_auc
from replicate.experiments.protocol import ProtocolError

MIN_PERMUTATIONS = 99


@dataclass
class PermutationResult:
    """``observed`` (k,) AUC per configuration; ``null`` (N, k) under permuted labels; ``p`` (k,) per
    configuration; ``observed_max`` / ``p_max`` for the best of the k (k = 1: the same as ``p[0]``)."""

    names: list[str]
    observed: np.ndarray
    null: np.ndarray
    p: np.ndarray
    observed_max: float
    p_max: float
    n_perm: int
    seed: int

    def to_json(self) -> dict:
        return {"configurations": list(self.names), "observed": [float(v) for v in self.observed],
                "p": [float(v) for v in self.p], "observed_max": float(self.observed_max),
                "p_max": float(self.p_max), "n_perm": int(self.n_perm), "seed": int(self.seed),
                "null_max_quantiles": {q: float(np.quantile(self.null.max(axis=1), float(q)))
                                       for q in ("0.5", "0.95", "0.99")},
                "method": "Ojala & Garriga 2010 permutation test, whole pipeline re-run; best-of-k: permutation "
                          "distribution of the maximum; p = (1 + #null >= observed) / (1 + N)"}


def permuted_labels(labels: np.ndarray, rng: np.random.Generator, strata=None) -> np.ndarray:
    """A permutation of ``labels`` (across all patients, or within each stratum)."""
    y = np.asarray(labels).copy()
    if strata is None:
        return rng.permutation(y)
    strata = np.asarray(strata)
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        y[idx] = rng.permutation(y[idx])
    return y


def permutation_test(evaluate: Callable[[pd.DataFrame], object], patients: pd.DataFrame, n_perm: int = 99,
                     seed: int = 0, strata=None, names: list[str] | None = None, progress=None) -> PermutationResult:
    """Permutation p-value(s) of ``evaluate(patients)``.

    ``evaluate``: patient table (``patient_id``, ``label``) -> an AUC or a (k,) array of AUCs (k configurations);
    it must re-run the whole protocol on the table it is given (folds included). ``n_perm`` >= 99
    (:data:`MIN_PERMUTATIONS`; 99 gives p >= 0.01). ``strata``: optional (n,) array, permute within strata.
    ``progress``: optional tqdm-like object updated once a permutation. Raises ValueError for n_perm < 99."""
    if n_perm < MIN_PERMUTATIONS:
        raise ValueError(f"n_perm must be >= {MIN_PERMUTATIONS} (p = 1/(1+N) is the smallest attainable), "
                         f"got {n_perm}")
    base = patients[["patient_id", "label"]].reset_index(drop=True).copy()
    obs = np.atleast_1d(np.asarray(evaluate(base), dtype=np.float64))
    rng = np.random.default_rng(seed)
    null = np.empty((n_perm, obs.size))
    y = base["label"].to_numpy()
    for i in range(n_perm):
        null[i] = np.atleast_1d(np.asarray(evaluate(base.assign(label=permuted_labels(y, rng, strata))),
                                           dtype=np.float64))
        if progress is not None:
            progress.update(1)
    p = (1 + (null >= obs[None, :] - 1e-12).sum(axis=0)) / (1 + n_perm)
    mx = null.max(axis=1)
    p_max = (1 + np.sum(mx >= obs.max() - 1e-12)) / (1 + n_perm)
    names = list(names) if names is not None else [f"config{i}" for i in range(obs.size)]
    if len(names) != obs.size:
        raise ProtocolError(f"permutation test: {len(names)} names for {obs.size} configurations")
    return PermutationResult(names, obs, null, p, float(obs.max()), float(p_max), n_perm, seed)


def svm_evaluator(features: dict[str, tuple], make_svm: Callable[[str], object] | None = None, n_folds: int = 10,
                  n_repeats: int = 1, seed: int = 0) -> Callable[[pd.DataFrame], np.ndarray]:
    """Fast path for deep-feature + SVM cells: the cached features are reused, only the SVMs are refitted.

    ``features``: configuration name -> ``(X, patient_ids, train_rows, score_rows, kernel)`` with X (rows, D)
    per patch or per patient, patient_ids (rows,), boolean row masks (or None = all rows) and the SVM kernel;
    ``make_svm(kernel)`` builds the estimator (default :func:`replicate.experiments.svm.make_svm`). Returns an
    evaluator for :func:`permutation_test` giving the (k,) fold-averaged AUCs in ``features`` order."""
    if make_svm is None:
        from replicate.experiments.svm import make_svm
    cands = {}
    for name, (X, pids, tr, sc, kernel) in features.items():
        cands[name] = FeatureCandidate(X, pids, (lambda k=kernel: make_svm(k)), tr, sc)

    def evaluate(patients: pd.DataFrame) -> np.ndarray:
        return np.array([cv_auc(c, patients, n_folds, n_repeats, seed) for c in cands.values()])

    evaluate.names = list(cands)
    return evaluate
