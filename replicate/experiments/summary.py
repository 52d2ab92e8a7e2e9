"""The one-screen summary that opens a run's ``report.md`` and ends ``python -m replicate run``.

:func:`summary_lines` reads only the run folder's files (``provenance.json``, ``results/controls.json``,
``results/table3..6.csv``, ``results/comparison.csv``) and the paper's numbers (``compare.paper``), so the report
(:func:`replicate.experiments.report.insert_summary`, called last by
:func:`replicate.experiments.report.insert_sections`, hence again after ``pytest compare/ --run RUN``) and the
CLI print the same text. It says, in at most :data:`MAX_LINES` lines:

- what ran: preset, cohort, device, wall time;
- whether the run is comparable with the paper, and why not, stated once (the comparison's rows then give only a
  cell's own extra reasons; :func:`compare.comparison.run_gate` and the weights flag);
- the controls' verdict, route by route (replicate.experiments.controls), and the primary CI with its measured
  coverage (replicate.experiments.auc_ci);
- each table's headline beside the paper's: Table 2 (the trained nets' size against the printed MACC and
  parameters, ``compare/data/architecture_findings.json``), Tables 3-5 (the rows the paper's Abstract names as each
  approach's best) and Table 6 (the paper's best layer); the cells are the paper's headlines, never our best;
- where the details are.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

SUMMARY_TITLE = "## Summary"
MAX_LINES = 40


def _f(v, nd=2) -> str:
    try:
        return "—" if v is None or pd.isna(v) else f"{float(v):.{nd}f}"
    except (TypeError, ValueError):
        return str(v)


def _read_csv(path: Path):
    return pd.read_csv(path) if path.exists() else None


def comparability(prov: dict) -> list[str]:
    """The reasons every cell of the run shares for not being comparable with the paper (compare.comparison's run
    gate, plus "no pretrained weights" when the run had none): [] when none."""
    from compare.comparison import run_gate

    why = run_gate(prov)
    if prov.get("no_pretrained_weights"):
        why.append("no pretrained weights (every transfer and deep-feature cell)")
    return why


def _headline_rows(run_dir: Path, prov: dict) -> list[str]:
    from compare import paper

    res = run_dir / "results"
    cmp = _read_csv(res / "comparison.csv")
    L = ["| table | headline (the paper's) | ours [95% CI] | paper [95% CI] | verdict |", "|---|---|---|---|---|"]
    # Table 2: the size of each net this run trained from scratch against the printed MACC and parameters
    scratch = sorted({c.split("/")[1] for c in prov.get("cells_run", []) if c.startswith("scratch/")})
    try:
        audit = json.loads(paper.data_file("architecture_findings.json").read_text())["audit"]
    except (OSError, KeyError, ValueError):
        audit = []
    variant = prov.get("scratch_variant", "table2")
    for net in scratch:
        hits = [a for a in audit if a["net"] == net]
        a = next((a for a in hits if a["reading"] == variant), hits[0] if hits else None)
        if a:
            L.append(f"| 2 | {net} size (reading {a['reading']}) | {a['macc'] / 1e6:.1f}M MACC, "
                     f"{a['params'] / 1e3:.2f}K params | {a['table2_macc']}, {a['table2_params']} | "
                     f"{'match' if max(abs(a['rel_dev_macc']), abs(a['rel_dev_params'])) <= 0.005 else 'differs'} |")
    heads = [(r.table, r.key, r.claim) for r in paper.abstract_cis().itertuples()]
    t6 = paper.table("table6")
    best6 = t6.loc[t6.test_auc.idxmax()]
    heads.append(("table6", "|".join(paper.key_of("table6", best6)), "best layer"))
    for name, key, what in sorted(heads):
        ours = _read_csv(res / f"{name}.csv")
        if ours is None:
            continue
        pt = paper.table(name)
        prow = pt[["|".join(paper.key_of(name, r)) == key for _, r in pt.iterrows()]]
        if prow.empty:
            continue
        i = prow.index[0]
        o = ours.iloc[i]   # the run's table has the paper's rows in the paper's order (report.side_by_side)
        pci = (f" [{_f(o.paper_ci_low)}, {_f(o.paper_ci_high)}]" if not pd.isna(o.get("paper_ci_low")) else "")
        verdict = o.get("verdict", "—")
        if cmp is not None:
            hit = cmp[(cmp.table == name) & (cmp.cell == o.cell)]
            if len(hit):
                verdict = hit.verdict.iloc[0] + ("" if bool(hit.comparable.iloc[0]) else " (not comparable)")
        ran = not pd.isna(o.ours_test_auc)
        label = f"{key.replace('|', ' ')}: {what}"
        L.append(f"| {name[-1]} | {label} | "
                 + (f"{_f(o.ours_test_auc)} [{_f(o.ours_ci_low)}, {_f(o.ours_ci_high)}]" if ran else "not run")
                 + f" | {_f(o.paper_test_auc)}{pci} | {verdict if ran else '—'} |")
    return L


def _controls_lines(res: Path) -> list[str]:
    path = res / "controls.json"
    if not path.exists():
        return ["- **Controls**: none in this run (the preset has none, or the cohort is real data)."]
    c = json.loads(path.read_text())

    def route(r):
        p = "< 0.001" if r["p_holm"] < 0.001 else f"{r['p_holm']:.3f}"
        return f"{r.get('route') or r['cell']} {_f(r['auc'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}], Holm p {p}"

    pos, neg = c["positive"], c["negative"]
    req = [r for r in pos["rows"] if r.get("required", True)]
    other = [r for r in pos["rows"] if not r.get("required", True)]
    L = [f"- **Positive control** (effect {c['effect']:g}, allows AUC <= {c['ideal_auc']:.3f}): "
         f"**{'PASSED' if pos['passed'] else 'FAILED'}** through {len(req)} required route(s): "
         + "; ".join(route(r) + (" found" if r["found"] else " NOT found") for r in req) + "."]
    trained = (c.get("rule") or {}).get("trained", {})
    for r in other:
        why = trained.get(r["cell"], {}).get("why", "not required")
        L.append(f"  - {r.get('route') or r['cell']}: {_f(r['auc'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}], "
                 f"{why}.")
    top = max(neg["rows"], key=lambda r: r["auc"]) if neg["rows"] else None
    L.append(f"- **Negative control** (effect {c['null_effect']:g}): **{'PASSED' if neg['passed'] else 'FAILED'}** "
             f"({neg['why']}" + (f"; highest {route(top)}" if top else "") + ").")
    return L


def _mc_error_clause(res: Path, n_boot) -> str:
    """Beside CIs from fewer than 10,000 resamples: the Monte-Carlo SE of their endpoints
    (:func:`replicate.experiments.auc_ci.percentile_endpoint_mc_se`), at the widest CI of this run's controls."""
    from replicate.experiments.auc_ci import percentile_endpoint_mc_se

    try:
        b = int(n_boot)
    except (TypeError, ValueError):
        return ""
    if b >= 10_000:
        return ""
    widths = []
    try:
        c = json.loads((res / "controls.json").read_text())
        for side in ("positive", "negative"):
            widths += [(r["ci_low"], r["ci_high"]) for r in (c.get(side) or {}).get("rows", []) if "ci_low" in r]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if not widths:
        return f" Endpoints come from {b:,} bootstrap resamples (Monte-Carlo error not estimated)."
    se = max(percentile_endpoint_mc_se(lo, hi, b) for lo, hi in widths)
    return (f" Endpoints come from {b:,} bootstrap resamples: Monte-Carlo SE up to {se:.3f} each (the widest "
            "control CI), so their second decimal is uncertain; the paper preset uses 10,000.")


def primary_ci_line() -> str:
    """The summary's line naming the primary CI (replicate.experiments.auc_ci.PRIMARY_CI: every printed 95% CI, the
    one the controls and ``compare.verdict.judge`` read) and its coverage measured by ``benchmarks/ci_coverage.py``
    (:func:`replicate.experiments.auc_ci.primary_statement`, which says plainly when no method met the rule)."""
    from replicate.experiments import auc_ci

    line = f"- **CIs** (the controls and `judge` read them too): {auc_ci.primary_statement()}"
    if auc_ci.PRIMARY_QUALIFIES:
        return line
    return line + (" On null data these CIs are too narrow and their misses fall below 0.5, so the controls' "
                   "one-sided test (lower bound > 0.5) stays conservative there.")


def summary_lines(run_dir) -> list[str]:
    """The summary (module docstring) as markdown lines, its ``## Summary`` heading first. Reads the run folder
    only; raises FileNotFoundError without ``provenance.json``."""
    run_dir = Path(run_dir)
    prov = json.loads((run_dir / "provenance.json").read_text())
    res = run_dir / "results"
    co = prov.get("cohort", {})
    secs = prov.get("wall_seconds_total", prov.get("wall_seconds_this_invocation"))
    L = [SUMMARY_TITLE, "",
         f"- **What ran**: preset `{prov.get('preset')}`, {prov.get('n_folds')} folds x {prov.get('n_repeats')} "
         f"repeat(s); cohort {co.get('source', '—')}, {co.get('included patients', '—')} patients "
         f"({co.get('luminal A', '—')} luminal A); device {prov.get('device', '—')}; wall time "
         + (f"{float(secs) / 60:.1f} min" if secs is not None else "—")
         + f" (this invocation, {prov.get('started_utc', '?')} to "
         f"{prov.get('finished_total_utc', prov.get('finished_utc', '?'))})."]
    why = comparability(prov)
    if why:
        L.append("- **Comparable with the paper: no**, for every cell: " + "; ".join(why) + ". (Stated once here; "
                 "the comparison's rows give only a cell's own extra reasons.)")
    else:
        cmp = _read_csv(res / "comparison.csv")
        n = int(cmp.comparable.sum()) if cmp is not None else 0
        L.append(f"- **Comparable with the paper**: {n} of {len(cmp) if cmp is not None else '?'} cells (the others "
                 "give their reasons in the comparison section).")
    L += _controls_lines(res)
    L.append(primary_ci_line() + _mc_error_clause(res, prov.get("n_boot")))
    L += ["", *_headline_rows(run_dir, prov), "",
          "- **Details**: this report's sections (Provenance, Results, Controls, CI methods, Beyond the paper, "
          "Comparison with the paper); `results/` (control_rule.json, controls.json, table3-6.csv, comparison.csv, "
          "ci_methods.csv, predictions.csv, summary.json), `figures/`, `provenance.json`.", ""]
    return L


def summary_text(run_dir) -> str:
    """:func:`summary_lines` joined (what ``python -m replicate run`` prints at its end)."""
    return "\n".join(summary_lines(run_dir))
