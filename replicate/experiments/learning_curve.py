"""Learning curve: a cell's AUC against the number of patients (issue 12, "Beyond the paper", item 5).

Zhu et al. 2019 attribute their low AUCs to the small data set (270 patients) and leave "a larger dataset" to future
work. The curve tests that claim: the cell is re-evaluated under the full protocol (its own stratified patient-level
folds, fold-averaged AUC) on stratified random subsets of the cohort at sizes 50, 100, 200, 270 and all eligible
patients, ``draws`` subsets a size. A subset keeps the cohort's class proportion (the positive count is
``round(size * prevalence)``; patients are drawn without replacement within each class), so subsets differ only in
how many patients they hold. A flat curve says more patients of the same kind would not help the cell; a rising one
says they would.

The spread over draws at a size mixes the subset's sampling variation and the CV's own noise; the band in the
figure is the 2.5-97.5 percentile range over draws (min-max for fewer than 10 draws is what it shows then).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from replicate.experiments.protocol import N_FOLDS

SIZES = (50, 100, 200, 270, None)     # None = every eligible patient
COLUMNS = ["cell", "size", "n_patients", "n_positive", "draw", "test_auc", "ci_low", "ci_high"]


def stratified_subset(patients: pd.DataFrame, size: int, rng: np.random.Generator) -> pd.DataFrame:
    """``size`` patients drawn without replacement, keeping the class proportion (positives
    ``round(size * prevalence)``). Raises ValueError when ``size`` exceeds the cohort."""
    n = len(patients)
    if size > n:
        raise ValueError(f"subset of {size} patients from a cohort of {n}")
    y = patients["label"].astype(int).to_numpy()
    n_pos = int(round(size * y.mean()))
    pos = rng.choice(np.flatnonzero(y == 1), n_pos, replace=False)
    neg = rng.choice(np.flatnonzero(y == 0), size - n_pos, replace=False)
    return patients.iloc[np.sort(np.r_[pos, neg])].reset_index(drop=True)


def _as_row(v) -> dict:
    if isinstance(v, dict):
        return {k: float(v.get(k, np.nan)) for k in ("test_auc", "ci_low", "ci_high")}
    if hasattr(v, "test_auc"):
        return {"test_auc": float(v.test_auc), "ci_low": float(getattr(v, "ci_low", np.nan)),
                "ci_high": float(getattr(v, "ci_high", np.nan))}
    return {"test_auc": float(v), "ci_low": np.nan, "ci_high": np.nan}


def learning_curve(evaluate: Callable[[pd.DataFrame], object], patients: pd.DataFrame, sizes=SIZES,
                   draws: int = 5, seed: int = 0, cell: str = "", min_per_class: int = N_FOLDS,
                   progress=None) -> pd.DataFrame:
    """Evaluate ``evaluate(subset)`` on stratified random subsets.

    ``evaluate``: patient table (``patient_id``, ``label``) -> an AUC, a dict with ``test_auc`` (and ``ci_low``,
    ``ci_high``) or a :class:`replicate.experiments.protocol.Summary`; it must run the whole protocol on the subset.
    ``sizes``: patient counts, None = all patients (evaluated once: every draw would be the same cohort); sizes
    above the cohort, and sizes whose subset would hold fewer than ``min_per_class`` patients of a class (the CV
    needs one per fold), are left out. Subset d of size s is drawn from ``default_rng([seed, s, d])``, so adding a
    size or a draw never changes the others. Returns a tidy DataFrame with :data:`COLUMNS` (``size`` is the
    requested size, or "all")."""
    n = len(patients)
    prev = float(patients["label"].astype(int).mean())
    rows = []
    for size in sizes:
        if size is None or size == n:
            subsets = [(0, patients.reset_index(drop=True))]
            label = "all" if size is None else int(size)
        else:
            size = int(size)
            if size > n:
                continue
            n_pos = int(round(size * prev))
            if min(n_pos, size - n_pos) < min_per_class:
                continue
            subsets = [(d, stratified_subset(patients, size, np.random.default_rng([seed, size, d])))
                       for d in range(draws)]
            label = size
        for d, sub in subsets:
            r = _as_row(evaluate(sub))
            rows.append({"cell": cell, "size": label, "n_patients": len(sub),
                         "n_positive": int(sub["label"].astype(int).sum()), "draw": d, **r})
            if progress is not None:
                progress.update(1)
    return pd.DataFrame(rows, columns=COLUMNS)


def curve_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, n_patients): draws, median, 2.5% and 97.5% quantiles of the test AUC over draws."""
    g = df.groupby(["cell", "n_patients"])["test_auc"]
    return pd.DataFrame({"draws": g.size(), "median": g.median(), "low": g.quantile(0.025),
                         "high": g.quantile(0.975)}).reset_index()


def plot_learning_curve(df: pd.DataFrame, path=None, ax=None, title: str | None = None):
    """AUC vs number of patients, one line per cell (median over draws) with a band (2.5-97.5% over draws) and
    the chance line at 0.5. Writes ``path`` (PNG/SVG by suffix) when given; returns the matplotlib Figure."""
    if ax is None:
        from matplotlib.figure import Figure   # no pyplot: no global figure state, any backend

        fig = Figure(figsize=(5.5, 3.8))
        ax = fig.subplots()
    else:
        fig = ax.figure
    s = curve_summary(df)
    for cell, g in s.groupby("cell", sort=False):
        g = g.sort_values("n_patients")
        line, = ax.plot(g["n_patients"], g["median"], marker="o", label=cell or "cell")
        ax.fill_between(g["n_patients"], g["low"], g["high"], alpha=0.2, color=line.get_color())
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("patients")
    ax.set_ylabel("test AUC (fold-averaged)")
    if title:
        ax.set_title(title)
    if s["cell"].nunique() > 1 or (s["cell"] != "").any():
        ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
