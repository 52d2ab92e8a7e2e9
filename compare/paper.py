"""The paper's published numbers as data: Zhu et al. 2019, Tables 3-6 and the Figure 2 learning-rate sweeps.

The CSV files live in ``compare/data/`` (see its README for where each number comes from and the ambiguities in
the paper's text). This module only loads them; it does not compute anything.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA_DIR = Path(__file__).resolve().parent / "data"

#: Tolerance where the paper gives no CI (training AUCs, Table 6, Figure 2 sweeps): |ours - paper| <= this.
NO_CI_TOLERANCE = 0.05

#: The key columns identifying a row of each table (used to match a run's rows with the paper's).
TABLE_KEYS = {
    "table3": ["network"],
    "table4": ["network"],
    "table5": ["network", "patch_size", "kernel"],
    "table6": ["blob"],
    "lr_sweeps": ["approach", "network", "lr"],
}


def load(name: str) -> pd.DataFrame:
    """Load one of ``table3`` ... ``table6`` or ``lr_sweeps`` as a DataFrame (one row per printed row)."""
    if name not in TABLE_KEYS:
        raise KeyError(f"compare/paper.py: unknown paper table {name!r}; expected one of {sorted(TABLE_KEYS)}")
    return pd.read_csv(DATA_DIR / f"{name}.csv")


def all_tables() -> dict[str, pd.DataFrame]:
    """Every paper table keyed by name."""
    return {name: load(name) for name in TABLE_KEYS}


# --------------------------------------------------------------------------------------------- checks of a run
class RunDefect(AssertionError):
    """A protocol defect in a run folder (missing table cell or fold, wrong fold structure, NaN)."""


RESULT_TABLES = ("table3", "table4", "table5", "table6", "lr_sweeps")


def load_run_table(run_dir, name: str) -> pd.DataFrame:
    path = Path(run_dir) / "results" / f"{name}.csv"
    if not path.exists():
        raise RunDefect(f"{path}: missing (python -m replicate run writes it)")
    return pd.read_csv(path)


def check_table_cells(run_dir, name: str) -> pd.DataFrame:
    """Every paper row has our number, CI and fold/repeat counts; nothing is NaN; CI brackets the estimate."""
    ours = load_run_table(run_dir, name)
    pap = load(name)
    if len(ours) != len(pap):
        raise RunDefect(f"{name}: {len(ours)} rows, the paper has {len(pap)}")
    for col in ("ours_test_auc", "ours_train_auc", "ours_ci_low", "ours_ci_high"):
        if col not in ours.columns:
            raise RunDefect(f"{name}: column {col!r} absent")
        bad = ours[ours[col].isna()]
        if len(bad):
            raise RunDefect(f"{name}: {col} is NaN/absent for cell {bad.iloc[0]['cell']!r}")
        out = ours[(ours[col] < 0) | (ours[col] > 1)]
        if len(out):
            raise RunDefect(f"{name}: {col} = {out.iloc[0][col]} outside [0, 1] for {out.iloc[0]['cell']!r}")
    wrong = ours[(ours.ours_ci_low > ours.ours_test_auc + 1e-9) | (ours.ours_ci_high < ours.ours_test_auc - 1e-9)]
    if len(wrong):
        r = wrong.iloc[0]
        raise RunDefect(f"{name}: CI [{r.ours_ci_low}, {r.ours_ci_high}] does not contain the AUC "
                        f"{r.ours_test_auc} for {r['cell']!r}")
    for k, v in zip(TABLE_KEYS[name], [pap[k] for k in TABLE_KEYS[name]]):
        if k in ours.columns and list(ours[k].astype(str)) != list(v.astype(str)):
            raise RunDefect(f"{name}: rows do not match the paper's on {k!r}: {list(ours[k])} vs {list(v)}")
    return ours


def check_folds(run_dir, n_folds: int, n_repeats: int) -> pd.DataFrame:
    """Fold structure: each cell has n_repeats x n_folds folds; in each repeat every patient is tested exactly once
    and both classes are in every fold's test side (stratified); the same patients are used by every cell."""
    path = Path(run_dir) / "results" / "folds.csv"
    if not path.exists():
        raise RunDefect(f"{path}: missing")
    f = pd.read_csv(path, dtype={"test_ids": str, "test_labels": str})
    if f[["test_auc", "train_auc"]].isna().any().any():
        r = f[f[["test_auc", "train_auc"]].isna().any(axis=1)].iloc[0]
        raise RunDefect(f"folds.csv: NaN AUC in cell {r['cell']!r} repeat {r['repeat']} fold {r['fold']}")
    cohort = None
    for cell, g in f.groupby("cell"):
        for rep in range(n_repeats):
            gr = g[g.repeat == rep]
            if sorted(gr.fold) != list(range(n_folds)):
                raise RunDefect(f"{cell} repeat {rep}: folds {sorted(gr.fold)}, expected 0..{n_folds - 1}")
            ids = [p for s in gr.test_ids for p in s.split(";")]
            if len(ids) != len(set(ids)):
                raise RunDefect(f"{cell} repeat {rep}: a patient is tested in two folds")
            if cohort is None:
                cohort = set(ids)
            elif set(ids) != cohort:
                raise RunDefect(f"{cell} repeat {rep}: tested patients differ from the other cells'")
            for _, r in gr.iterrows():
                labels = set(r.test_labels.split(";"))
                if labels != {"0", "1"}:
                    raise RunDefect(f"{cell} repeat {rep} fold {r.fold}: test side not stratified (labels {labels})")
        if sorted(g.repeat.unique()) != list(range(n_repeats)):
            raise RunDefect(f"{cell}: repeats {sorted(g.repeat.unique())}, expected {n_repeats}")
    return f
