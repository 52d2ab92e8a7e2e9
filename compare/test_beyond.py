"""``pytest compare/ --run RUN``: the "Beyond the paper" results of a run (issue 12) exist and are well-formed.

Checked: the report's "Beyond the paper" section and the five files ``results/paired_tests.csv``,
``permutation.json``, ``nested_cv.csv``, ``baselines.csv`` and ``learning_curve.csv`` -- their columns, the five
baselines named, every p-value in [0, 1], every 95% CI bracketing its estimate. A run whose preset ran without them
(``beyond: false``, e.g. the smoke preset) skips with that reason. Skipped without ``--run``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FILES = ("paired_tests.csv", "permutation.json", "nested_cv.csv", "baselines.csv", "learning_curve.csv")
SECTION = "## Beyond the paper"
COLUMNS = {
    "paired_tests.csv": ["claim", "comparison", "diff", "ci_low", "ci_high", "p_boot", "p_holm_claim", "p_holm_all"],
    "nested_cv.csv": ["choice", "estimate", "test_auc", "ci_low", "ci_high", "optimism", "chosen"],
    "baselines.csv": ["baseline", "classifier", "test_auc", "ci_low", "ci_high"],
    "learning_curve.csv": ["cell", "size", "n_patients", "draw", "test_auc"],
}
BASELINES = {"kinetic", "texture", "box_size", "scanner", "all_handcrafted"}
TOL = 1e-9


def _p_ok(values) -> bool:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return bool(((v >= 0) & (v <= 1)).all())


def _bracket(df: pd.DataFrame, est: str) -> list[str]:
    ok = df[[est, "ci_low", "ci_high"]].dropna()
    bad = ok[(ok["ci_low"] > ok[est] + TOL) | (ok["ci_high"] < ok[est] - TOL)]
    return [f"row {i}: {r[est]:.3f} outside [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" for i, r in bad.iterrows()]


def problems(run_dir: Path) -> list[str]:
    """Every way the run's "Beyond the paper" results are missing or malformed (empty: all well-formed)."""
    run_dir = Path(run_dir)
    res = run_dir / "results"
    out = []
    missing = [f for f in FILES if not (res / f).exists()]
    if missing:
        return [f"{res / f}: missing (written by `python -m replicate run` when the preset has beyond=True)"
                for f in missing]
    for name, cols in COLUMNS.items():
        df = pd.read_csv(res / name)
        lack = [c for c in cols if c not in df.columns]
        if lack:
            out.append(f"{res / name}: missing column(s) {lack}")
            continue
        if name != "paired_tests.csv" and df.empty:
            out.append(f"{res / name}: no rows")
        if name == "paired_tests.csv":
            for c in ("p_boot", "p_holm_claim", "p_holm_all"):
                if not _p_ok(df[c]):
                    out.append(f"{res / name}: {c} outside [0, 1]")
            out += [f"{res / name}: {m}" for m in _bracket(df, "diff")]
        if name in ("nested_cv.csv", "baselines.csv"):
            out += [f"{res / name}: {m}" for m in _bracket(df, "test_auc")]
        if name == "baselines.csv" and not BASELINES <= set(df["baseline"]):
            out.append(f"{res / name}: baselines {sorted(BASELINES - set(df['baseline']))} missing")
        if name in ("nested_cv.csv", "baselines.csv", "learning_curve.csv"):
            auc = df["test_auc"].dropna()
            if not ((auc >= 0) & (auc <= 1)).all():
                out.append(f"{res / name}: test_auc outside [0, 1]")
    try:
        pj = json.loads((res / "permutation.json").read_text())
        f = pj["features"]
        if not (_p_ok(f["p"]) and _p_ok([f["p_max"]])):
            out.append(f"{res / 'permutation.json'}: p outside [0, 1]")
        if len(f["p"]) != len(f["configurations"]) or f["n_perm"] < 99:
            out.append(f"{res / 'permutation.json'}: {len(f['p'])} p-values for {len(f['configurations'])} "
                       f"configurations, n_perm {f['n_perm']} (>= 99 expected)")
        if min(f["p"] + [f["p_max"]]) < 1.0 / (1 + f["n_perm"]) - TOL:
            out.append(f"{res / 'permutation.json'}: a p-value below 1/(1+n_perm)")
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        out.append(f"{res / 'permutation.json'}: not the expected layout ({exc!r})")
    report = run_dir / "report.md"
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    if SECTION not in text:
        out.append(f"{report}: no '{SECTION}' section")
    else:
        sec = text.split(SECTION, 1)[1]
        for f in FILES:
            if f"results/{f}" not in sec:
                out.append(f"{report}: the '{SECTION}' section does not show results/{f}")
    return out


@pytest.fixture(scope="module")
def beyond_run(run_dir, provenance):
    res = run_dir / "results"
    if not any((res / f).exists() for f in FILES) and SECTION not in (run_dir / "report.md").read_text():
        diffs = " ".join(provenance.get("differences", []))
        if "beyond: False" in diffs:
            pytest.skip("this run's preset ran without the 'Beyond the paper' analyses (beyond: False)")
    return run_dir


def test_beyond_files_and_section_are_well_formed(beyond_run):
    bad = problems(beyond_run)
    assert not bad, "\n".join(bad)
