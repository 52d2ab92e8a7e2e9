"""The paper's evaluation protocol (Zhu et al. 2019, Materials and Methods, "Model Evaluation").

- Folds: patient-level stratified 10-fold cross-validation ("each fold had approximately the same ratio between the
  number of positive samples and the number of negative samples"); a patient's patches are never on both sides.
- A test patient's score is the mean of the scores of its 25 test patches ("The averaged score of the 25 patches was
  used as the final score").
- Per repeat: AUC per fold, averaged over the 10 folds ("the final AUC was obtained by averaging the AUC of the 10
  folds"). The 10-fold CV is repeated 5 times with different seeds and the median repeat is reported ("We ran 10 fold
  cross-validation 5 times and pick the medium result").
- 95% CI: "The bootstrapping strategy was used to calculate the confidence interval", without saying over what.
  We resample the patients of the reported (median) repeat with replacement, stratified by label; each keeps its
  fold and out-of-fold score; the fold-averaged AUC is recomputed; percentile interval. The number of resamples is
  a setting (``n_boot``, default :data:`N_BOOT` = 10,000: about 0.0015 AUC of Monte-Carlo SE on each endpoint at
  120 patients, against 0.005 at 1000; 0.07 s a cell). Its measured coverage, beside the other CI methods of a CV
  AUC, is in docs/ci_coverage.md (:mod:`replicate.experiments.auc_ci`).

scikit-learn provides the folds (``StratifiedKFold``) and the AUC (``roc_auc_score``); the bootstrap evaluates
the same AUC in bulk in its Mann-Whitney form with patient multiplicities as weights (ties count 1/2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from replicate.errors import ReplicateError

N_FOLDS = 10
N_REPEATS = 5
N_BOOT = 10_000


class ProtocolError(ReplicateError):
    """A violation of the evaluation protocol (leakage, a fold with one class, NaN scores, missing folds)."""


@dataclass(frozen=True)
class Fold:
    """One fold of one repeat: the patient ids on each side."""

    repeat: int
    fold: int
    seed: int
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]


def repeat_seed(base_seed: int, repeat: int) -> int:
    """The fold seed of repeat ``repeat`` (0-based): each repeat shuffles patients differently."""
    return int(base_seed) * 1000 + int(repeat)


def patient_folds(patients: pd.DataFrame, n_folds: int = N_FOLDS, seed: int = 0, repeat: int = 0) -> list[Fold]:
    """Stratified patient-level folds.

    ``patients``: one row per patient with columns ``patient_id`` and ``label`` (1 = luminal A, 0 = other).
    Raises ProtocolError when a patient id repeats or a class has fewer patients than ``n_folds``.
    """
    for col in ("patient_id", "label"):
        if col not in patients.columns:
            raise ProtocolError(f"patient table: missing column {col!r} (have {list(patients.columns)})")
    ids = patients["patient_id"].astype(str).to_numpy()
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise ProtocolError(f"patient table: patient {dup!r} appears more than once; folds are per patient")
    y = patients["label"].astype(int).to_numpy()
    counts = np.bincount(y, minlength=2)
    if counts.min() < n_folds:
        raise ProtocolError(
            f"{n_folds}-fold stratified CV needs at least {n_folds} patients of each class; "
            f"have {counts[1]} luminal A and {counts[0]} other"
        )
    order = np.argsort(ids, kind="stable")  # fold assignment must not depend on row order
    ids, y = ids[order], y[order]
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for k, (tr, te) in enumerate(skf.split(np.zeros(len(y)), y)):
        folds.append(Fold(repeat, k, seed, tuple(ids[tr]), tuple(ids[te])))
    check_folds(folds, ids)
    return folds


def check_folds(folds: list[Fold], all_ids) -> None:
    """Protocol checks on one repeat: disjoint sides, each patient tested exactly once."""
    all_ids = set(map(str, all_ids))
    tested: list[str] = []
    for f in folds:
        overlap = set(f.train_ids) & set(f.test_ids)
        if overlap:
            raise ProtocolError(
                f"repeat {f.repeat} fold {f.fold}: patient(s) {sorted(overlap)[:3]} on both the train and test side"
            )
        if set(f.train_ids) | set(f.test_ids) != all_ids:
            raise ProtocolError(f"repeat {f.repeat} fold {f.fold}: sides do not cover the cohort")
        tested.extend(f.test_ids)
    if sorted(tested) != sorted(all_ids):
        raise ProtocolError("folds: every patient must be tested exactly once per repeat")


def patient_scores(patch_patient_ids, patch_scores) -> pd.Series:
    """Mean patch score per patient (paper: "The averaged score of the 25 patches was used as the final score")."""
    s = pd.Series(np.asarray(patch_scores, dtype=np.float64), index=pd.Index(np.asarray(patch_patient_ids).astype(str)))
    if s.isna().any():
        bad = s[s.isna()].index[0]
        raise ProtocolError(f"patch scores: NaN score for a patch of patient {bad!r}")
    return s.groupby(level=0).mean()


def auc(labels, scores) -> float:
    """ROC AUC (scikit-learn) with protocol errors for a single class or NaN scores."""
    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    if np.isnan(s).any():
        raise ProtocolError("AUC: NaN in scores")
    if len(np.unique(y)) != 2:
        raise ProtocolError(f"AUC: need both classes, got labels {sorted(set(y.tolist()))}")
    return float(roc_auc_score(y, s))


@dataclass
class FoldResult:
    """Patient-level out-of-fold scores of one fold (test side) and the training-side AUC."""

    repeat: int
    fold: int
    test_ids: list[str]
    test_labels: list[int]
    test_scores: list[float]
    train_auc: float
    extra: dict = field(default_factory=dict)  # e.g. per-epoch curves

    @property
    def test_auc(self) -> float:
        return auc(self.test_labels, self.test_scores)

    def to_json(self) -> dict:
        return {
            "repeat": self.repeat, "fold": self.fold, "test_ids": list(self.test_ids),
            "test_labels": [int(v) for v in self.test_labels], "test_scores": [float(v) for v in self.test_scores],
            "train_auc": float(self.train_auc), "test_auc": self.test_auc, "extra": self.extra,
        }

    @classmethod
    def from_json(cls, d: dict) -> "FoldResult":
        return cls(d["repeat"], d["fold"], list(d["test_ids"]), list(d["test_labels"]), list(d["test_scores"]),
                   float(d["train_auc"]), dict(d.get("extra", {})))


def weighted_fold_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of one fold for each row of ``weights`` (B, n): patient i counted ``weights[b, i]`` times.

    The Mann-Whitney form of ROC AUC (ties count 1/2, as ``roc_auc_score``); NaN where a class is absent."""
    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = y == 1, y == 0
    cmp = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
    wp, wn = weights[:, pos], weights[:, neg]
    num = np.einsum("bi,ij,bj->b", wp, cmp, wn)
    den = wp.sum(axis=1) * wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def bootstrap_ci(folds: list[FoldResult], n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95):
    """Percentile bootstrap CI of the fold-averaged AUC, resampling patients.

    Patients are drawn with replacement from the whole cohort, stratified by label (the cohort keeps its class
    sizes); each drawn patient keeps its fold and its out-of-fold score; each fold's AUC is recomputed on the drawn
    multiset and the folds that still hold both classes are averaged. (Resampling within each fold instead
    under-covers badly when folds hold only a few patients: with one positive per fold its score never varies.)
    Returns (low, high)."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.asarray(f.test_labels, dtype=int) for f in folds])
    fid = np.concatenate([np.full(len(f.test_labels), i) for i, f in enumerate(folds)])
    for i, f in enumerate(folds):
        if len(set(f.test_labels)) != 2:
            raise ProtocolError(f"repeat {f.repeat} fold {f.fold}: test side has one class only")
    w = np.zeros((n_boot, len(y)))
    rows = np.arange(n_boot)[:, None]
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        draws = idx[rng.integers(0, len(idx), size=(n_boot, len(idx)))]
        np.add.at(w, (np.broadcast_to(rows, draws.shape), draws), 1.0)
    per_fold = np.empty((len(folds), n_boot))
    for i, f in enumerate(folds):
        m = fid == i
        per_fold[i] = weighted_fold_auc(y[m], np.asarray(f.test_scores, dtype=np.float64), w[:, m])
    means = np.nanmean(per_fold, axis=0)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return float(lo), float(hi)


@dataclass
class Summary:
    """One table cell's numbers under the protocol."""

    test_auc: float          # fold-averaged AUC of the median repeat
    train_auc: float         # fold-averaged training AUC of the same repeat
    ci_low: float
    ci_high: float
    median_repeat: int
    repeat_aucs: list[float]  # fold-averaged test AUC of every repeat
    n_folds: int
    n_boot: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


def summarise(results: list[FoldResult], n_folds: int = N_FOLDS, n_boot: int = N_BOOT, seed: int = 0) -> Summary:
    """Average AUC over folds per repeat; report the median repeat (for an even count, the lower median, so the
    reported repeat exists) and its bootstrap CI."""
    by_rep: dict[int, list[FoldResult]] = {}
    for r in results:
        by_rep.setdefault(r.repeat, []).append(r)
    if not by_rep:
        raise ProtocolError("no fold results to summarise")
    for rep, rs in by_rep.items():
        got = sorted(r.fold for r in rs)
        if got != list(range(n_folds)):
            raise ProtocolError(f"repeat {rep}: folds {got}, expected 0..{n_folds - 1}")
    reps = sorted(by_rep)
    rep_auc = [float(np.mean([r.test_auc for r in by_rep[k]])) for k in reps]
    order = np.argsort(rep_auc, kind="stable")
    med = reps[int(order[(len(reps) - 1) // 2])]
    chosen = sorted(by_rep[med], key=lambda r: r.fold)
    lo, hi = bootstrap_ci(chosen, n_boot=n_boot, seed=seed)
    return Summary(
        test_auc=float(np.mean([r.test_auc for r in chosen])),
        train_auc=float(np.mean([r.train_auc for r in chosen])),
        ci_low=lo, ci_high=hi, median_repeat=med, repeat_aucs=rep_auc, n_folds=n_folds, n_boot=n_boot,
    )


def patch_level_folds(patch_labels, n_folds: int = N_FOLDS, seed: int = 0):
    """DELIBERATELY WRONG splitting used only by the leakage test: stratified folds over patches, ignoring
    patients, so a patient's patches land on both sides. Never used by an experiment."""
    y = np.asarray(patch_labels).astype(int)
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(y)), y))


# --------------------------------------------------------------------------------------------- other CI readings
def fold_bootstrap_ci(fold_aucs, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the fold-averaged AUC, resampling the fold AUCs themselves.

    The paper's "bootstrapping strategy" does not say over what it resamples (Zhu et al. 2019, "Model
    Evaluation"); resampling the 10 fold AUCs of the reported repeat with replacement and averaging is one reading,
    and may explain the paper's narrow intervals (widths 0.09-0.14; shared/notes/statistics.md). Efron &
    Tibshirani 1993, ch. 13 (percentile interval). With 10 values the percentile interval under-covers slightly
    (tests/test_protocol.py measures it under the null); :func:`bootstrap_ci` (patients) stays primary.

    ``fold_aucs``: sequence of per-fold AUCs (NaN not allowed). Returns (low, high). Raises ProtocolError for fewer
    than 2 folds or a NaN."""
    a = np.asarray(fold_aucs, dtype=np.float64).ravel()
    if a.size < 2:
        raise ProtocolError(f"fold bootstrap: need at least 2 fold AUCs, got {a.size}")
    if np.isnan(a).any():
        raise ProtocolError("fold bootstrap: NaN among the fold AUCs")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(int(n_boot), a.size))].mean(axis=1)
    q = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [q, 1.0 - q])
    return float(lo), float(hi)


def repeat_spread(repeat_aucs) -> dict:
    """Spread of the fold-averaged test AUC over the CV repeats (the paper runs 5 and reports the median one).

    Returns plain data ``{"n_repeats", "min", "median", "max"}`` (AUC units; ``median`` is numpy's, the mean of the
    middle two for an even count). Raises ProtocolError when empty or NaN."""
    a = np.asarray(repeat_aucs, dtype=np.float64).ravel()
    if a.size == 0:
        raise ProtocolError("repeat spread: no repeats")
    if np.isnan(a).any():
        raise ProtocolError("repeat spread: NaN among the repeat AUCs")
    return {"n_repeats": int(a.size), "min": float(a.min()), "median": float(np.median(a)), "max": float(a.max())}


def ci_methods(results: list[FoldResult], n_folds: int = N_FOLDS, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Every CI reading of one cell side by side, as plain data (for the report and comparison.csv).

    ``{"test_auc", "median_repeat", "patient_bootstrap": [low, high], "fold_bootstrap": [low, high],
    "repeats": repeat_spread(...)}``; both bootstraps are on the reported (median) repeat, as :func:`summarise`."""
    s = summarise(results, n_folds=n_folds, n_boot=n_boot, seed=seed)
    chosen = sorted((r for r in results if r.repeat == s.median_repeat), key=lambda r: r.fold)
    return {
        "test_auc": s.test_auc, "median_repeat": s.median_repeat,
        "patient_bootstrap": [s.ci_low, s.ci_high],
        "fold_bootstrap": list(fold_bootstrap_ci([r.test_auc for r in chosen], n_boot=n_boot, seed=seed)),
        "repeats": repeat_spread(s.repeat_aucs),
    }
