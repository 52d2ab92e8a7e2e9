"""A run's tables judged against the paper cell by cell, with a comparability gate (issue 10, phase 2).

``comparison_frame(run_dir)`` reads a finished run's ``results/table3..6.csv``, ``lr_sweeps.csv``,
``ci_methods.csv`` and ``provenance.json`` and returns one row per paper cell:

``table, cell, paper_test_auc, paper_ci_low, paper_ci_high, paper_se_rule, ours_test_auc, ours_ci_low,
ours_ci_high, fold_ci_low, fold_ci_high, repeat_min, repeat_max, diff, diff_ci_low, diff_ci_high, verdict,
above_chance, comparable, why_not_comparable, expected_deviation``.

The verdict is :func:`compare.verdict.judge` (SEs from both 95% CIs; inconsistent when the 95% CI of the
difference excludes 0; consistent when the TOST 90% CI lies within +/-0.10; else inconclusive). Cells the paper
prints without a CI (Table 6, the Figure 2 sweeps) get the Hanley & McNeil 1982 SE at the paper's class sizes
(``facts.csv``: 90 luminal A / 180 other).

A cell is *comparable* with the paper only when none of these holds (each that does is named in
``why_not_comparable``, "; "-joined):

- the cohort is synthetic;
- the preset is not ``paper`` (its departures named: ``provenance["differences"]``);
- the run's folds or repeats are fewer than the paper's protocol (``facts.csv``: 10 folds x 5 repeats), checked
  against the paper's numbers, not the run's own provenance;
- a transfer or deep-feature cell without pretrained weights, or with weights whose SHA1 differs from the published
  one (BVLC GoogLeNet: ``models.fetch.SOURCES``); weights with no published SHA1 (VGG16) are "unverified" with
  their SHA1 shown;
- a GoogleNet_R / VGGNet_R cell trained in the Methods-text reading (``--scratch-nets text``): Table 2's MACC and
  parameters describe the other reading;
- the cell was not run by the preset.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from compare import paper
from compare.verdict import DEFAULT_MARGIN, expected_inconsistent, judge

#: files a run folder must hold for the comparison (an older run lacks some: named in the error)
REQUIRED_FILES = ("provenance.json", "results/table3.csv", "results/table4.csv", "results/table5.csv",
                  "results/table6.csv", "results/lr_sweeps.csv", "results/folds.csv", "results/summary.json",
                  "results/predictions.csv", "results/ci_methods.csv")
COLUMNS = ["table", "cell", "paper_test_auc", "paper_ci_low", "paper_ci_high", "paper_se_rule", "ours_test_auc",
           "ours_ci_low", "ours_ci_high", "fold_ci_low", "fold_ci_high", "repeat_min", "repeat_max", "diff",
           "diff_ci_low", "diff_ci_high", "verdict", "above_chance", "comparable", "why_not_comparable",
           "expected_deviation"]
TRAINED_TABLE2 = ("GoogleNet_R", "VGGNet_R")


class RunFolderError(Exception):
    """A run folder the comparison cannot read (older version, interrupted run): names the missing file."""


def missing_files(run_dir) -> list[str]:
    return [f for f in REQUIRED_FILES if not (Path(run_dir) / f).exists()]


def check_run_folder(run_dir) -> None:
    """Raise :class:`RunFolderError` naming every missing file of :data:`REQUIRED_FILES`."""
    miss = missing_files(run_dir)
    if miss:
        raise RunFolderError(f"{run_dir}: missing {', '.join(miss)} (written by python -m replicate run of this "
                             "version; rerun the run to complete the folder)")


def paper_n() -> tuple[int, int]:
    f = paper.facts()
    return int(f["luminal_a"]), int(f["other_subtypes"])


def published_sha1() -> dict:
    """network row name -> the published SHA1 (None when the publisher gives none)."""
    try:
        from models.fetch import SOURCES
    except ImportError:
        return {}
    by_file = {s.filename: s.sha1 for s in (SOURCES.values() if isinstance(SOURCES, dict) else SOURCES)}
    return {"GoogleNet": by_file.get("bvlc_googlenet.caffemodel"),
            "VGGNet": by_file.get("VGG_ILSVRC_16_layers.caffemodel")}


def weights_status(prov: dict) -> dict:
    """network -> (verified: bool, text) from the run's provenance weights and the published SHA1s."""
    pub = published_sha1()
    out = {}
    for w in prov.get("weights", []):
        net, sha = w["network"], w.get("sha1")
        if not sha:
            out[net] = (False, "no pretrained weights")
        elif pub.get(net) is None:
            out[net] = (False, f"{net} weights unverified (SHA1 {sha}; no published SHA1)")
        elif sha != pub[net]:
            out[net] = (False, f"{net} weights SHA1 {sha} differs from the published {pub[net]}")
        else:
            out[net] = (True, f"{net} weights verified (published SHA1 {sha})")
    return out


def run_gate(prov: dict) -> list[str]:
    """Reasons that make every cell of the run not comparable."""
    why = []
    if prov.get("synthetic") or str(prov.get("cohort", {}).get("source", "")).startswith("synthetic"):
        why.append("synthetic cohort")
    if prov.get("preset") != "paper":
        names = [d.split(":")[0] for d in prov.get("differences", [])]
        why.append(f"preset {prov.get('preset')!r} departs from the paper ({', '.join(names) or 'reduced'})")
    f = paper.facts()
    if int(prov.get("n_folds", 0)) < int(f["n_folds"]) or int(prov.get("n_repeats", 0)) < int(f["n_repeats"]):
        why.append(f"{prov.get('n_folds')} folds x {prov.get('n_repeats')} repeats, the paper's protocol is "
                   f"{f['n_folds']} x {f['n_repeats']}")
    return why


def expected_deviations() -> dict:
    """(table, cell) -> why, from ``compare/data/expected_deviations.csv`` (a known, explained departure)."""
    with paper.data_file("expected_deviations.csv").open("r", encoding="utf-8") as fh:
        t = pd.read_csv(fh)
    return {(r.table, r.cell): r.why for r in t.itertuples()}


def _network_of(table: str, row) -> str:
    return str(row.get("network", "GoogleNet" if table == "table6" else ""))


def comparison_frame(run_dir, margin: float = DEFAULT_MARGIN) -> pd.DataFrame:
    """One row per paper cell (module docstring). Raises :class:`RunFolderError` for an incomplete folder."""
    run_dir = Path(run_dir)
    check_run_folder(run_dir)
    prov = json.loads((run_dir / "provenance.json").read_text())
    gate = run_gate(prov)
    wstat = weights_status(prov)
    run_cells = set(prov.get("cells_run", []))
    ci = pd.read_csv(run_dir / "results" / "ci_methods.csv").set_index("cell")
    expected = expected_deviations()
    n = paper_n()
    rows = []
    for name in paper.RESULT_TABLES:
        t = pd.read_csv(run_dir / "results" / f"{name}.csv")
        for _, r in t.iterrows():
            approach = r.get("approach", {"table3": "scratch", "table4": "transfer"}.get(name, "features"))
            why = list(gate)
            cell = str(r["cell"])
            ran = cell in run_cells if run_cells else not pd.isna(r["ours_test_auc"])
            if not ran:
                why.append(f"cell not run by preset {prov.get('preset')!r}")
            net = _network_of(name, r)
            if approach in ("transfer", "features"):
                ok, text = wstat.get(net, (False, "no pretrained weights"))
                if not ok:
                    why.append(text)
            if approach == "scratch" and net in TRAINED_TABLE2 and prov.get("scratch_variant") == "text":
                why.append(f"{net}: Methods-text reading (Table 2's MACC/parameters describe the table2 reading)")
            d = {"table": name, "cell": cell, "paper_test_auc": r["paper_test_auc"],
                 "paper_ci_low": r.get("paper_ci_low", np.nan), "paper_ci_high": r.get("paper_ci_high", np.nan),
                 "ours_test_auc": r["ours_test_auc"], "ours_ci_low": r["ours_ci_low"],
                 "ours_ci_high": r["ours_ci_high"]}
            if cell in ci.index:
                c = ci.loc[cell]
                d.update(fold_ci_low=c.fold_ci_low, fold_ci_high=c.fold_ci_high, repeat_min=c.repeat_min,
                         repeat_max=c.repeat_max)
            if ran and not pd.isna(d["ours_test_auc"]):
                pci = None if pd.isna(d["paper_ci_low"]) else (d["paper_ci_low"], d["paper_ci_high"])
                j = judge(d["ours_test_auc"], (d["ours_ci_low"], d["ours_ci_high"]), d["paper_test_auc"], pci,
                          margin=margin, paper_n=n)
                d.update(paper_se_rule=j.paper_se_rule, diff=j.diff, diff_ci_low=j.diff_ci[0],
                         diff_ci_high=j.diff_ci[1], verdict=j.verdict, above_chance=j.above_chance)
            else:
                d.update(paper_se_rule="", verdict="not run", above_chance=np.nan)
            d["comparable"] = not why
            d["why_not_comparable"] = "; ".join(why)
            d["expected_deviation"] = expected.get((name, cell), "")
            rows.append(d)
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def verdict_counts(cmp: pd.DataFrame) -> dict:
    """Counts over comparable cells only: verdict -> {"n", "above_chance"}, plus ``n_comparable``,
    ``expected_inconsistent`` (compare.verdict.expected_inconsistent) and ``n_not_comparable``."""
    c = cmp[cmp.comparable.astype(bool)]
    out = {v: {"n": int((c.verdict == v).sum()), "above_chance": int(((c.verdict == v) & (c.above_chance == True)).sum())}  # noqa: E712
           for v in ("consistent", "inconsistent", "inconclusive")}
    out.update(n_comparable=int(len(c)), n_not_comparable=int(len(cmp) - len(c)),
               expected_inconsistent=expected_inconsistent(len(c)))
    return out


def _f(v, nd=2):
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{nd}f}"


def comparison_markdown(cmp: pd.DataFrame, margin: float = DEFAULT_MARGIN) -> str:
    """The report's comparison section: verdict counts over comparable cells, the chance expectation, the cells."""
    k = verdict_counts(cmp)
    L = [f"Verdict per cell: `compare.judge` (margin {margin:g} AUC; {k['n_comparable']} comparable cells, "
         f"{k['n_not_comparable']} not comparable). Counts over comparable cells only:", ""]
    for v in ("consistent", "inconsistent", "inconclusive"):
        L.append(f"- **{v}**: {k[v]['n']} (of which above chance, our 95% CI above 0.5: {k[v]['above_chance']})"
                 + (f"; expected by chance alone under an exact replication: "
                    f"`expected_inconsistent({k['n_comparable']})` = {k['expected_inconsistent']:.1f}"
                    if v == "inconsistent" else ""))
    L += ["", "At 270 patients the paper's CIs and ours are both about +/-0.06 wide, so an exact replication will "
          f"often read `inconclusive`: equivalence within +/-{margin:g} needs a difference CI narrower than the "
          "margin. Read every verdict with `above_chance`.", ""]
    if k["n_comparable"] == 0:
        L += ["**No cell of this run is comparable with the paper** (reasons per cell below); the verdicts are "
              "shown for information only.", ""]
    # a reason every cell shares is stated once (the run's gate, no weights): each row keeps only its own extra ones
    reasons = [[w for w in str(r.why_not_comparable).split("; ") if w] if not r.comparable else []
               for _, r in cmp.iterrows()]
    shared = [w for w in reasons[0] if all(w in rs for rs in reasons)] if len(cmp) and all(reasons) else []
    if shared:
        L += ["Not comparable, for every cell: " + "; ".join(shared) + ".", ""]
    L += ["| table | cell | ours [95% CI] | paper [95% CI] | diff [95% CI] | verdict | above chance | comparable |",
          "|---|---|---|---|---|---|---|---|"]
    for (_, r), rs in zip(cmp.iterrows(), reasons):
        own = "; ".join(w for w in rs if w not in shared)
        comparable = "yes" if r.comparable else "no" + (f": {own}" if own else " (reasons above)")
        pci = f"[{_f(r.paper_ci_low)}, {_f(r.paper_ci_high)}]" if not pd.isna(r.paper_ci_low) else "(HM SE)"
        L.append(f"| {r.table} | {r.cell} | {_f(r.ours_test_auc)} [{_f(r.ours_ci_low)}, {_f(r.ours_ci_high)}] | "
                 f"{_f(r.paper_test_auc)} {pci} | {_f(r['diff'], 3)} [{_f(r.diff_ci_low, 3)}, "
                 f"{_f(r.diff_ci_high, 3)}] | {r.verdict} | {r.above_chance if not pd.isna(r.above_chance) else '—'}"
                 f" | {comparable} |")
    return "\n".join(L)


def write(run_dir) -> tuple[str, pd.DataFrame]:
    """Write ``results/comparison.csv``; return (markdown, frame)."""
    from models.atomic import write_text

    cmp = comparison_frame(run_dir)
    write_text(Path(run_dir) / "results" / "comparison.csv", cmp.to_csv(index=False, lineterminator="\n"))
    return comparison_markdown(cmp), cmp
