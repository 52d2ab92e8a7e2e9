"""Paired tests of the paper's claims on the same patients and folds (issue 12, "Beyond the paper", item 1).

Zhu et al. 2019 rank approaches by fold-averaged test AUCs about one standard error apart (scratch 0.58, transfer
0.60, deep features 0.65) and never test a difference. Every cell of the harness is evaluated on the same patients
and the same folds, so the difference of two cells can be tested *paired*:

* **Primary: paired patient bootstrap of the difference of fold-averaged AUCs** (Efron & Tibshirani 1993, *An
  Introduction to the Bootstrap*, ch. 13 percentile intervals, ch. 16 bootstrap hypothesis tests). Patients are
  drawn with replacement, stratified by label (the resample keeps the class sizes); each drawn patient keeps its fold
  and its out-of-fold score in every cell and every repeat; **both** cells' fold-averaged AUCs are recomputed on the
  same resample (the Mann-Whitney AUC with multiplicities as weights,
  :func:`replicate.experiments.protocol.weighted_fold_auc`), so the difference carries the pairing. Resampling the
  whole cohort rather than within each fold follows :func:`replicate.experiments.protocol.bootstrap_ci` (within-fold
  resampling under-covers when a fold holds one or two patients of a class). Where a side of a claim is "the best
  of" several cells, the best is **re-selected inside each resample** (the maximum over the side's cells), so the
  selection is part of the statistic. With several repeats, a cell's value is ``agg`` (the paper's ``"median"``, or
  ``"mean"``) over repeats of the fold-averaged AUC, computed on the same patient multiset. Interval: percentile
  95%; p-value: two-sided, the inversion of that same percentile interval (Efron & Tibshirani 1993, 15.4, the
  achieved significance level of the percentile interval):
  ``p = min(1, 2 min((1 + #{d* <= 0}) / (1 + B), (1 + #{d* >= 0}) / (1 + B)))``, so the unadjusted 95% CI
  excludes 0 exactly when ``p < 0.05`` (up to the +1 of a finite B, which errs on the side of no difference):
  CI and p cannot disagree by construction. **The rule that decides a claim**: the Holm-adjusted p
  (:data:`DECIDING_P`, over every comparison of every claim), at :data:`ALPHA`; the CI is printed unadjusted
  and describes the size of the difference.
* **Beside it: DeLong's test** (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837) of two correlated AUCs on
  pooled out-of-fold scores, by the fast algorithm of Sun & Xu 2014 (IEEE Signal Process Lett 21:1389). It tests
  the pooled AUC, not the fold-averaged one; with several repeats a patient's score is the mean of its out-of-fold
  scores over repeats. For a "best of" side the cell chosen on the full data is used (no re-selection: a DeLong p of
  a best-of side is optimistic, which is why the bootstrap is primary).
* **Multiplicity: Holm 1979** (Scand J Stat 6:65) step-down adjustment, within each claim's family of comparisons
  (``p_holm_claim``) and across every comparison of every claim (``p_holm_all``; statsmodels is not a dependency;
  :func:`holm` is the six-line algorithm). Claims are decided on ``p_holm_all``, so the family-wise error rate over
  all the paper's claims together is held at :data:`ALPHA`, not only within each claim.

Input (:func:`paired_tests`): the schema of ``results/predictions.csv``, one row per (patient, cell, repeat) with
columns ``patient, cell, repeat, fold, score, label``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from replicate.experiments.protocol import ProtocolError, weighted_fold_auc

PRED_COLUMNS = ("patient", "cell", "repeat", "fold", "score", "label")

#: The level at which a claim's comparison is called significant, and the p column that decides it (module
#: docstring): Holm across every comparison of every claim.
ALPHA = 0.05
DECIDING_P = "p_holm_all"


def percentile_p(d: np.ndarray) -> float:
    """Two-sided p-value of "no difference" that inverts the percentile interval of the bootstrap replicates ``d``
    (Efron & Tibshirani 1993, 15.4): ``min(1, 2 min((1 + #{d <= 0}), (1 + #{d >= 0})) / (1 + B))``. The percentile
    95% interval of ``d`` excludes 0 exactly when this is below 0.05 (up to the +1 terms)."""
    d = np.asarray(d, dtype=np.float64)
    n = d.size
    lo, hi = (1 + np.sum(d <= 0)) / (1 + n), (1 + np.sum(d >= 0)) / (1 + n)
    return float(min(1.0, 2 * min(lo, hi)))


# ------------------------------------------------------------------------------------------------ claims
@dataclass(frozen=True)
class Comparison:
    """One paired comparison: side ``a`` minus side ``b``; a side of several cells is "the best of" them."""

    name: str
    a: tuple[str, ...]
    b: tuple[str, ...]


@dataclass(frozen=True)
class Claim:
    """A claim of the paper, tested as a family of comparisons (Holm-corrected within the family)."""

    id: str
    text: str           # the paper's wording
    where: str          # where the paper says it
    comparisons: tuple[Comparison, ...] = field(default_factory=tuple)


def claims(preset=None) -> list[Claim]:
    """The paper's claims as families of comparisons of grid cell ids (``replicate.experiments.grid.Cell.id``).

    ``preset``: a :class:`replicate.experiments.grid.Preset` (default: the ``paper`` preset); cell ids depend on
    its learning rates, patch sizes and Table 6 settings.

    * ``transfer_vs_scratch``: best Table 4 cell minus best Table 3 cell ("transfer learning ... better than
      training from scratch", Abstract / Discussion).
    * ``features_vs_transfer``: best deep-feature cell (Tables 5-6) minus best Table 4 cell ("worse than
      off-the-shelf deep features").
    * ``fc_best_layer``: the FC blob (``loss3/classifier``) minus each other Table 6 blob ("FC layer features
      performed the best", Table 6).
    * ``poly_kernel``: GoogLeNet patch 120 poly minus rbf, and minus linear ("polynomial kernel best suits our
      problem", Table 5).
    * ``googlenet_vs_vgg_features``: best GoogLeNet Table 5 cell minus best VGGNet Table 5 cell (Table 5).
    """
    from replicate.experiments import grid

    p = preset or grid.get_preset("paper")
    t = grid.cells(p)
    ids = {k: [c.id for c in v] for k, v in t.items()}
    t5 = {(c.network, c.patch_size, c.kernel): c.id for c in t["table5"]}
    t6 = {c.blob: c.id for c in t["table6"]}
    fc = t6["loss3/classifier"]
    feats = tuple(dict.fromkeys(ids["table5"] + ids["table6"]))
    out = [
        Claim("transfer_vs_scratch", "transfer learning is better than training from scratch", "Abstract; Table 3-4",
              (Comparison("best transfer - best scratch", tuple(ids["table4"]), tuple(ids["table3"])),)),
        Claim("features_vs_transfer", "transfer learning is worse than off-the-shelf deep features",
              "Abstract; Tables 4-6",
              (Comparison("best deep features - best transfer", feats, tuple(ids["table4"])),)),
        Claim("fc_best_layer", "FC layer features performed the best", "Table 6",
              tuple(Comparison(f"FC - {b}", (fc,), (cid,)) for b, cid in t6.items() if cid != fc)),
    ]
    poly = t5.get(("GoogleNet", 120, "poly"))
    others = [(k, t5.get(("GoogleNet", 120, k))) for k in ("rbf", "linear")]
    if poly is not None and all(c for _, c in others):
        out.append(Claim("poly_kernel", "polynomial kernel best suits our problem", "Table 5",
                         tuple(Comparison(f"poly - {k}", (poly,), (c,)) for k, c in others)))
    g = tuple(cid for (n, _, _), cid in t5.items() if n == "GoogleNet")
    v = tuple(cid for (n, _, _), cid in t5.items() if n == "VGGNet")
    out.append(Claim("googlenet_vs_vgg_features", "GoogLeNet features are better than VGGNet features", "Table 5",
                     (Comparison("best GoogLeNet features - best VGGNet features", g, v),)))
    return out


# ------------------------------------------------------------------------------------------------ statistics
def holm(pvalues) -> np.ndarray:
    """Holm 1979 step-down adjusted p-values (Scand J Stat 6:65): sort ascending, p_(i) * (m - i + 1), running
    maximum, capped at 1; returned in the input order. NaNs are ignored (kept NaN)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adj = np.maximum.accumulate(np.minimum(1.0, p[order] * (m - np.arange(m))))
    out[order] = adj
    return out


def _midranks(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average", axis=-1)


def delong_placements(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong placement values of ``k`` score vectors on the same patients (DeLong et al. 1988; the
    midrank algorithm of Sun & Xu 2014, ties count 1/2).

    ``labels``: (n,) 0/1; ``scores``: (k, n). Returns ``aucs`` (k,), ``v01`` (k, m): for each positive the share
    of negatives it outscores, and ``v10`` (k, n_neg): for each negative the share of positives that outscore it;
    ``aucs`` is the mean of either. Raises ProtocolError with fewer than 2 patients of a class."""
    y = np.asarray(labels).astype(int)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    x, yy = s[:, y == 1], s[:, y == 0]
    m, n = x.shape[1], yy.shape[1]
    if m < 2 or n < 2:
        raise ProtocolError(f"DeLong: need >= 2 patients per class, have {m} positive and {n} negative")
    tx, ty, tz = _midranks(x), _midranks(yy), _midranks(np.hstack([x, yy]))
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    return aucs, (tz[:, :m] - tx) / n, 1.0 - (tz[:, m:] - ty) / m


def delong(labels, scores_a, scores_b) -> dict:
    """DeLong's test of AUC(a) - AUC(b) on the same patients (DeLong et al. 1988), fast midrank algorithm of
    Sun & Xu 2014. ``labels``: (n,) 0/1; ``scores_*``: (n,) one score per patient. Returns ``auc_a, auc_b, diff,
    se, z, p`` (two-sided normal p). Raises ProtocolError when a class is missing or fewer than 2 per class."""
    y = np.asarray(labels).astype(int)
    aucs, v01, v10 = delong_placements(y, np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)]))
    m, n = v01.shape[1], v10.shape[1]
    cov = np.atleast_2d(np.cov(v01)) / m + np.atleast_2d(np.cov(v10)) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0:
        z, p = (0.0, 1.0) if diff == 0 else (np.inf * np.sign(diff), 0.0)
    else:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": diff, "se": se, "z": float(z), "p": float(p)}


# ------------------------------------------------------------------------------------------------ data
def predictions_frame(results: dict) -> pd.DataFrame:
    """``results``: cell id -> list of :class:`replicate.experiments.protocol.FoldResult` (the grid's output) ->
    the ``results/predictions.csv`` schema (``patient, cell, repeat, fold, score, label``), one row per test
    patient of every fold."""
    rows = []
    for cell, folds in results.items():
        for f in folds:
            for pid, y, s in zip(f.test_ids, f.test_labels, f.test_scores):
                rows.append((str(pid), cell, int(f.repeat), int(f.fold), float(s), int(y)))
    return pd.DataFrame(rows, columns=list(PRED_COLUMNS))


class Predictions:
    """Out-of-fold scores of many cells on one cohort, indexed for resampling.

    ``df``: columns ``patient, cell, repeat, fold, score, label``. Every (cell, repeat) must score every patient
    of the cohort exactly once with the same labels; raises ProtocolError naming the first violation."""

    def __init__(self, df: pd.DataFrame):
        missing = [c for c in PRED_COLUMNS if c not in df.columns]
        if missing:
            raise ProtocolError(f"predictions: missing column(s) {missing} (have {list(df.columns)})")
        df = df.assign(patient=df["patient"].astype(str), cell=df["cell"].astype(str))
        if df["score"].isna().any():
            r = df[df["score"].isna()].iloc[0]
            raise ProtocolError(f"predictions: NaN score for patient {r.patient!r} in cell {r.cell!r}")
        lab = df.groupby("patient")["label"].nunique()
        if (lab > 1).any():
            raise ProtocolError(f"predictions: patient {lab[lab > 1].index[0]!r} has two labels")
        self.patients = np.array(sorted(df["patient"].unique()))
        pos = {p: i for i, p in enumerate(self.patients)}
        self.labels = df.groupby("patient")["label"].first().reindex(self.patients).astype(int).to_numpy()
        self.n = len(self.patients)
        # cell -> list over repeats of (fold id per patient (n,), score per patient (n,))
        self.cells: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for (cell, rep), g in df.groupby(["cell", "repeat"], sort=True):
            if g["patient"].duplicated().any():
                raise ProtocolError(f"predictions: cell {cell!r} repeat {rep}: patient "
                                    f"{g.loc[g.patient.duplicated(), 'patient'].iloc[0]!r} scored twice")
            if len(g) != self.n:
                raise ProtocolError(f"predictions: cell {cell!r} repeat {rep} scores {len(g)} of {self.n} patients")
            idx = g["patient"].map(pos).to_numpy()
            fold = np.empty(self.n, int)
            score = np.empty(self.n)
            fold[idx] = g["fold"].astype(int).to_numpy()
            score[idx] = g["score"].astype(float).to_numpy()
            self.cells.setdefault(cell, []).append((fold, score))

    def require(self, cell: str) -> None:
        if cell not in self.cells:
            raise ProtocolError(f"predictions: no scores for cell {cell!r} (have {len(self.cells)} cells)")

    def fold_auc(self, cell: str, weights: np.ndarray, agg: str = "median") -> np.ndarray:
        """Fold-averaged AUC of ``cell`` for each row of ``weights`` (B, n), aggregated over repeats by ``agg``."""
        self.require(cell)
        reps = []
        for fold, score in self.cells[cell]:
            per = [weighted_fold_auc(self.labels[fold == f], score[fold == f], weights[:, fold == f])
                   for f in np.unique(fold)]
            reps.append(np.nanmean(np.vstack(per), axis=0))
        r = np.vstack(reps)
        if agg == "median":
            # the paper's "medium result": for an even count the lower median, as protocol.summarise
            return np.sort(r, axis=0)[(r.shape[0] - 1) // 2]
        if agg == "mean":
            return r.mean(axis=0)
        raise ValueError(f"agg must be 'median' or 'mean', got {agg!r}")

    def pooled(self, cell: str) -> np.ndarray:
        """Per-patient out-of-fold score, averaged over repeats (for DeLong)."""
        self.require(cell)
        return np.mean([s for _, s in self.cells[cell]], axis=0)

    def bootstrap_weights(self, n_boot: int, seed: int) -> np.ndarray:
        """(n_boot, n) multiplicities of a label-stratified patient resample."""
        rng = np.random.default_rng(seed)
        w = np.zeros((n_boot, self.n))
        rows = np.arange(n_boot)[:, None]
        for c in (0, 1):
            idx = np.flatnonzero(self.labels == c)
            draws = idx[rng.integers(0, len(idx), size=(n_boot, len(idx)))]
            np.add.at(w, (np.broadcast_to(rows, draws.shape), draws), 1.0)
        return w


# ------------------------------------------------------------------------------------------------ the test
def paired_difference(pred: Predictions, a, b, n_boot: int = 2000, seed: int = 0, agg: str = "median",
                      level: float = 0.95, weights: np.ndarray | None = None, cache: dict | None = None) -> dict:
    """Paired bootstrap of max_{a} AUC - max_{b} AUC (fold-averaged; best re-selected in each resample).

    ``weights``: (B, n) patient multiplicities to share one resample set between comparisons (default: ``n_boot``
    fresh label-stratified draws from ``seed``); ``cache``: a dict reused across calls with the same ``weights``.
    Returns ``auc_a, auc_b, best_a, best_b, diff, ci_low, ci_high, p_boot, n_boot`` plus DeLong's ``delong_diff,
    delong_p`` on the pooled scores of the cells best on the full data."""
    a, b = tuple(a), tuple(b)
    if not a or not b:
        raise ProtocolError("paired comparison: each side needs at least one cell")
    w1 = np.ones((1, pred.n))
    w = pred.bootstrap_weights(n_boot, seed) if weights is None else weights
    obs_a = {c: float(pred.fold_auc(c, w1, agg)[0]) for c in a}
    obs_b = {c: float(pred.fold_auc(c, w1, agg)[0]) for c in b}
    best_a, best_b = max(obs_a, key=obs_a.get), max(obs_b, key=obs_b.get)
    d_obs = obs_a[best_a] - obs_b[best_b]
    cache = {} if cache is None or weights is None else cache   # per-cell resampled AUCs, valid for these weights

    def boot(c):
        if c not in cache:
            cache[c] = pred.fold_auc(c, w, agg)
        return cache[c]

    boot_a = np.max(np.vstack([boot(c) for c in a]), axis=0)
    boot_b = np.max(np.vstack([boot(c) for c in b]), axis=0)
    d = boot_a - boot_b
    d = d[~np.isnan(d)]
    al = (1 - level) / 2
    lo, hi = np.quantile(d, [al, 1 - al])
    p = percentile_p(d)
    dl = delong(pred.labels, pred.pooled(best_a), pred.pooled(best_b)) if best_a != best_b else \
        {"diff": 0.0, "p": 1.0}
    return {"auc_a": obs_a[best_a], "auc_b": obs_b[best_b], "best_a": best_a, "best_b": best_b,
            "diff": d_obs, "ci_low": float(lo), "ci_high": float(hi), "p_boot": float(min(1.0, p)),
            "n_boot": int(d.size), "delong_diff": dl["diff"], "delong_p": dl["p"]}


def paired_tests(predictions: pd.DataFrame, claim_list: list[Claim] | None = None, n_boot: int = 2000,
                 seed: int = 0, agg: str = "median", skip_missing: bool = True) -> pd.DataFrame:
    """Every comparison of every claim: one row each (the future ``results/paired_tests.csv``).

    Columns: ``claim, comparison, a_cells, b_cells, best_a, best_b, auc_a, auc_b, diff, ci_low, ci_high, p_boot,
    p_holm_claim, p_holm_all, delong_diff, delong_p, n_boot, method``. One resample set is shared by all rows.
    Comparisons naming cells absent from ``predictions`` are dropped when ``skip_missing`` (e.g. a reduced
    preset), else raise ProtocolError."""
    pred = Predictions(predictions)
    claim_list = claims() if claim_list is None else claim_list
    w = pred.bootstrap_weights(n_boot, seed)
    cache: dict = {}
    rows = []
    for cl in claim_list:
        for cmp in cl.comparisons:
            a = tuple(c for c in cmp.a if c in pred.cells)
            b = tuple(c for c in cmp.b if c in pred.cells)
            gone = sorted(set(cmp.a + cmp.b) - set(pred.cells))
            if gone:
                if not skip_missing:
                    raise ProtocolError(f"claim {cl.id}: no predictions for cell(s) {gone[:3]}")
                if not a or not b:
                    continue
            r = paired_difference(pred, a, b, seed=seed, agg=agg, weights=w, cache=cache)
            rows.append({"claim": cl.id, "comparison": cmp.name, "a_cells": "|".join(a), "b_cells": "|".join(b),
                         **r, "method": "paired label-stratified patient bootstrap, best re-selected per resample "
                                        "(Efron & Tibshirani 1993); DeLong (Sun & Xu 2014) on pooled scores; Holm"})
    cols = ["claim", "comparison", "a_cells", "b_cells", "best_a", "best_b", "auc_a", "auc_b", "diff", "ci_low",
            "ci_high", "p_boot", "p_holm_claim", "p_holm_all", "delong_diff", "delong_p", "n_boot", "method"]
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows)
    out["p_holm_claim"] = out.groupby("claim")["p_boot"].transform(lambda s: holm(s.to_numpy()))
    out["p_holm_all"] = holm(out["p_boot"].to_numpy())
    return out[cols]
