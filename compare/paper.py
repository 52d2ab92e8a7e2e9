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
