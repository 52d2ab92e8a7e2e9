"""Both readings of the SVM's training unit side by side, on the grid's own folds and cached features.

The grid fits each deep-feature cell's SVM on the preset's ``svm_unit`` (default one sample per patch; why:
``replicate.experiments.svm.DEFAULT_UNIT_WHY``). The paper's remark that an SVM suffers "when its feature length
becomes larger than its training samples" also fits one sample per patient. This module refits every deep-feature
cell with one sample per patient (``svm.fit_score(unit="patient")``: a patient's mean training-patch feature
vector; a scored patient's mean scoring-patch vector) on exactly the grid's folds and cached features, and writes
``results/svm_units.csv`` with both readings' protocol summaries (fold-averaged AUC of the median repeat and its
CI, replicate.experiments.protocol.summarise). Per patient a fit has ~243 rows at the paper's size (milliseconds),
so the side-by-side costs little; the per-patch reading is only the grid's own (refitting it under another default
would cost the grid again: ``python -m replicate plan`` prices each reading).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: The readings refitted beside the grid's own: only the cheap one (one fit per fold on ~243 rows).
SIDE_UNITS = ("patient",)
COLUMNS = ["cell", "svm_unit", "grid", "test_auc", "ci_low", "ci_high", "n_train_rows", "n_folds"]


def _fold_data(runner, cell):
    """(store, [(fold, FoldData)]) of every fold of the runner's grid for ``cell``'s patch size."""
    from replicate.experiments.training import fold_data

    store = runner.store(cell.patch_size)
    rows = runner.rows(cell.patch_size)
    return store, [(fold, fold_data(store.index, fold, rows, runner.p.max_train_auc_patients))
                   for r in range(runner.p.n_repeats) for fold in runner.folds[r]]


def train_rows(runner, cell, unit: str) -> float:
    """Mean SVM training rows a fold of ``cell`` under training ``unit`` (patches, patients or regions)."""
    from replicate.experiments.svm import unit_groups

    store, folds = _fold_data(runner, cell)
    return float(np.mean([len(set(unit_groups(store.index, d.train_rows, unit))) for _, d in folds]))


def unit_results(runner, cell, unit: str, feats: dict) -> list:
    """FoldResults of ``cell`` (a features cell) refitted with SVM training ``unit`` on every fold of the
    runner's grid (same folds, patch rows and cached features ``feats``: ``runner.features(cell)``)."""
    from replicate.experiments.grid import svm_fold

    store, folds = _fold_data(runner, cell)
    return [svm_fold(cell, fold, data, feats, unit=unit, index=store.index) for fold, data in folds]


def _rows(runner, cell, unit: str, grid: bool, results: list) -> dict:
    from replicate.experiments.protocol import summarise

    p = runner.p
    s = summarise(results, n_folds=p.n_folds, n_boot=p.n_boot, seed=p.seed)
    return {"cell": cell.id, "svm_unit": unit, "grid": grid, "test_auc": s.test_auc, "ci_low": s.ci_low,
            "ci_high": s.ci_high, "n_train_rows": train_rows(runner, cell, unit), "n_folds": len(results)}


def unit_table(runner, results: dict) -> pd.DataFrame:
    """One row per (deep-feature cell, reading): the grid's own reading from ``results`` (``run_all`` output) and
    each of :data:`SIDE_UNITS` other than it, refitted. Columns :data:`COLUMNS`; ``n_train_rows`` is the mean SVM
    training rows a fold (patches for the per-patch reading, patients per patient)."""
    from replicate.experiments import grid

    p = runner.p
    feats: dict = {}
    out = []
    for c in grid.unique_cells(p):
        if c.approach != "features" or c.id not in results:
            continue
        out.append(_rows(runner, c, p.svm_unit, True, results[c.id]))
        key = (c.network, c.patch_size)
        for unit in SIDE_UNITS:
            if unit == p.svm_unit:
                continue
            if key not in feats:
                feats[key] = runner.features(c)
            out.append(_rows(runner, c, unit, False, unit_results(runner, c, unit, feats[key])))
    return pd.DataFrame(out, columns=COLUMNS)


def write_table(runner, results: dict, path: Path) -> None:
    """:func:`unit_table` to ``path`` (CSV, atomic)."""
    from models.atomic import write_text

    write_text(Path(path), unit_table(runner, results).to_csv(index=False))


def section_lines(path: Path) -> list[str]:
    """The report's lines for ``results/svm_units.csv`` (a markdown table, the two readings side by side per cell;
    [] when the file is absent)."""
    from replicate.experiments.svm import DEFAULT_UNIT

    path = Path(path)
    if not path.exists():
        return []
    t = pd.read_csv(path)
    if t.empty:
        return []
    units = list(dict.fromkeys(t["svm_unit"]))
    grid_unit = t.loc[t["grid"].astype(bool), "svm_unit"].iloc[0]
    L = [f"### The SVM's training unit, both readings ({path.parent.name}/{path.name})", "",
         f"The grid fits one SVM sample per {grid_unit}"
         + (" (the default: the paper's 'each patch as a training sample')" if grid_unit == DEFAULT_UNIT else "")
         + "; the other reading refits the same cells on the same folds and cached features with one sample per "
           "patient (its mean patch feature vector), the reading the paper's remark on feature length against "
           "training samples suggests (replicate.experiments.svm_units). Fold-averaged test AUC [95% CI]; "
           "training rows a fold in brackets. Not a verdict: the paper reports one reading only.", "",
         "| cell | " + " | ".join(f"per {u}" + (" (grid)" if u == grid_unit else "") for u in units) + " |",
         "|---" * (len(units) + 1) + "|"]
    for cell, g in t.groupby("cell", sort=False):
        by = {r.svm_unit: r for r in g.itertuples()}
        L.append(f"| {cell} | " + " | ".join(
            f"{by[u].test_auc:.2f} [{by[u].ci_low:.2f}, {by[u].ci_high:.2f}] ({by[u].n_train_rows:.0f})"
            if u in by else "—" for u in units) + " |")
    return L + [""]
