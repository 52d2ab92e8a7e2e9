"""The paper's published numbers as data, in one place: Zhu et al. 2019 (Comput Biol Med 109:85-90).

Tables 1-6, the Figure 2 learning-rate sweeps, every CI of the Results (in the tables' ``ci_low``/``ci_high``) and
of the Abstract (``abstract``), the cohort flow 400 -> 286 -> 275 -> 270 (``cohort_flow``), single facts such as
90 luminal A of 270 and 44,660 patches (``facts``), and the places where the paper contradicts itself
(``contradictions``). The files are package data of ``compare`` (``compare/data/*.csv``, found with
:mod:`importlib.resources`, so an installed wheel has them too); ``compare/data/README.md`` says where each number
comes from.

Every table has join keys (:data:`TABLE_KEYS`); a run's rows are matched to the paper's by these keys, never by
row order (:func:`key_of`). Code that trains, extracts features, fits SVMs or runs the protocol never imports this
module (no tuning to the paper): the report, the Table 2 audit and the parity tests do.
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import pandas as pd

#: The key columns identifying a row of each table (a run's rows are joined to the paper's on these).
TABLE_KEYS = {
    "table1": ["scanner", "field_strength_t"],
    "table2": ["net"],
    "table3": ["network"],
    "table4": ["network"],
    "table5": ["network", "patch_size", "kernel"],
    "table6": ["blob"],
    "lr_sweeps": ["approach", "network", "lr"],
    "abstract": ["approach"],
    "scanners_text": ["scanner", "field_strength_t"],
    "cohort_flow": ["step"],
    "facts": ["key"],
    "contradictions": ["id"],
}

#: The tables a run of ``python -m replicate run`` reproduces (one results/<name>.csv each).
RESULT_TABLES = ("table3", "table4", "table5", "table6", "lr_sweeps")


def data_file(name: str):
    """A file of ``compare/data`` as an :mod:`importlib.resources` Traversable (works from a wheel or a checkout)."""
    return resources.files("compare").joinpath("data", name)


@functools.lru_cache(maxsize=None)
def _read(name: str) -> pd.DataFrame:
    if name not in TABLE_KEYS:
        raise KeyError(f"compare.paper: unknown paper table {name!r}; expected one of {sorted(TABLE_KEYS)}")
    with data_file(f"{name}.csv").open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def table(name: str) -> pd.DataFrame:
    """One paper table as a DataFrame, one row per printed row (a copy: callers may modify it).

    ``name``: ``table1`` ... ``table6``, ``lr_sweeps`` (Figure 2), ``abstract`` (the Abstract's three AUCs and CIs,
    with the ``table`` and ``key`` of the row each names), ``scanners_text`` (the Methods text's scanner counts),
    ``cohort_flow``, ``facts``, ``contradictions``. Raises KeyError for another name."""
    return _read(name).copy()


#: Former name of :func:`table` (kept for callers of issue 5).
load = table


def _norm(v) -> str:
    try:
        return f"{float(v):g}"
    except (TypeError, ValueError):
        return str(v)


def key_of(name: str, row) -> tuple:
    """The join key of a row (a mapping or Series holding the table's key columns), as strings so 80 == "80"."""
    return tuple(_norm(row[k]) for k in TABLE_KEYS[name])


def row(name: str, **key) -> pd.Series:
    """The one row of ``name`` whose key columns equal ``key``, e.g. ``row("table5", network="GoogleNet",
    patch_size=120, kernel="poly")``. Raises KeyError when no row or several rows match."""
    t = _read(name)
    want = tuple(_norm(key[k]) for k in TABLE_KEYS[name])
    hits = [i for i, r in t.iterrows() if key_of(name, r) == want]
    if len(hits) != 1:
        raise KeyError(f"{name}: {len(hits)} rows with key {dict(zip(TABLE_KEYS[name], want))}")
    return t.loc[hits[0]].copy()


def all_tables() -> dict[str, pd.DataFrame]:
    """Every result table (Tables 3-6, the sweeps) keyed by name."""
    return {name: table(name) for name in RESULT_TABLES}


def cohort_flow() -> pd.DataFrame:
    """The exclusion flow of "Imaging and Pathology Data": step, stage (start | excluded | remaining), reason,
    count. The counts chain 400 - 114 = 286, 286 - 11 = 275, 275 - 5 = 270."""
    return table("cohort_flow")


def facts() -> dict[str, float]:
    """Single numbers the paper states (key -> value): ``luminal_a`` 90, ``patients_included`` 270,
    ``patches_per_patch_size`` 44660, ``regions_per_patient`` 33.1, ... (``compare/data/facts.csv`` gives the unit
    and the sentence of each)."""
    t = _read("facts")
    return {k: (int(v) if float(v).is_integer() else float(v)) for k, v in zip(t.key, t.value)}


def abstract_cis() -> pd.DataFrame:
    """The Abstract's three AUCs and 95% CIs, each with the table and key of the row it names."""
    return table("abstract")


def contradictions() -> pd.DataFrame:
    """Where the paper contradicts itself: id, what, value_a/source_a, value_b/source_b, note. Both values are kept
    (the Abstract's CIs vs the Results'; the text's scanner counts 278 vs Table 1's 270; ...)."""
    return table("contradictions")


# --------------------------------------------------------------------------------------------- checks of a run
class RunDefect(AssertionError):
    """A protocol defect in a run folder (missing table cell or fold, wrong fold structure, NaN)."""


def load_run_table(run_dir, name: str) -> pd.DataFrame:
    path = Path(run_dir) / "results" / f"{name}.csv"
    if not path.exists():
        raise RunDefect(f"{path}: missing (python -m replicate run writes it)")
    return pd.read_csv(path)


def check_table_cells(run_dir, name: str, run_cells=None) -> pd.DataFrame:
    """Every paper row has our number, CI and fold/repeat counts; nothing is NaN; CI brackets the estimate.
    ``run_cells``: the cell ids the run's preset ran (provenance ``cells_run``); rows of other cells are only
    checked for presence (a preset such as ``quick`` runs a few cells)."""
    full = load_run_table(run_dir, name)
    pap = load(name)
    if len(full) != len(pap):
        raise RunDefect(f"{name}: {len(full)} rows, the paper has {len(pap)}")
    ours = full[full["cell"].isin(set(run_cells))] if run_cells is not None else full
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
    if all(k in full.columns for k in TABLE_KEYS[name]):
        have = sorted(key_of(name, r) for _, r in full.iterrows())
        want = sorted(key_of(name, r) for _, r in pap.iterrows())
        if have != want:
            raise RunDefect(f"{name}: rows do not match the paper's on {TABLE_KEYS[name]}: "
                            f"{sorted(set(have) ^ set(want))} in one only")
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
