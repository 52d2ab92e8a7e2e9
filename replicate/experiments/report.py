"""Tables 3-6 next to the paper's numbers, Figures 2-3, ROC curves, and the run's markdown report
(Zhu et al. 2019, Tables 3-6, Figures 2-3; the paper's numbers come from ``compare/data`` via ``compare.paper``).

Files written under the run folder (all atomically):

- ``results/table3.csv`` ... ``table6.csv``, ``results/lr_sweeps.csv``: one row per paper row, ours beside the
  paper's (``ours_*`` and ``paper_*`` columns), whether ours lies inside the paper's 95% CI, the difference, and a
  ``note`` ("no pretrained weights: not comparable to the paper" where it applies).
- ``results/summary.json``: every cell's protocol summary; ``results/folds.csv``: every fold's AUCs.
- ``figures/figure2.png`` (per-epoch train/test AUC, the learning-rate sweeps), ``figures/figure3.png`` (Table 6
  by layer), ``figures/roc_table{3,4,5}.png`` (pooled out-of-fold patient ROC of the reported repeat).
- ``report.md``: provenance, how the run departs from the paper, the tables, figures and (after
  ``pytest compare/ --run RUN``) the cell-by-cell comparison.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.experiments.runstate import atomic_write_bytes, atomic_write_json, atomic_write_text



def _paper():
    from compare import paper  # the paper's numbers as data (compare/data)

    return paper


# --------------------------------------------------------------------------------------------- tables
def side_by_side(preset, cell_lists: dict, summ: dict, flags: dict) -> dict[str, pd.DataFrame]:
    """Tables 3-6 and the sweeps: the paper's rows with our numbers beside them, joined on each table's key
    columns (``compare.paper.TABLE_KEYS``, read from the cells' own attributes), never by row order. A paper row
    the grid has no cell for gets NaN numbers (``pytest compare/ --run`` reports it); a cell the paper has no
    row for is left out of the table (it stays in results/summary.json)."""
    paper = _paper()
    out = {}
    lists = {n: cell_lists[n] for n in ("table3", "table4", "table5", "table6")}
    lists["lr_sweeps"] = cell_lists["sweep_scratch"] + cell_lists["sweep_transfer"]
    for name, cs in lists.items():
        by_key = {paper.key_of(name, {k: getattr(c, k) for k in paper.TABLE_KEYS[name]}): c for c in cs}
        rows = []
        for _, prow in paper.table(name).iterrows():
            cell = by_key.get(paper.key_of(name, prow))
            s = summ.get(cell.id) if cell is not None else None
            rows.append(_row(prow, cell, s, flags.get(cell.id, "") if cell is not None else ""))
        out[name] = pd.DataFrame(rows)
    return out


def _row(prow, cell, s, note) -> dict:
    d = {k: prow[k] for k in prow.index if k not in ("train_auc", "test_auc", "ci_low", "ci_high")}
    d["cell"] = cell.id if cell is not None else "(no cell in this run's grid)"
    d["paper_train_auc"] = prow.get("train_auc", np.nan)
    d["paper_test_auc"] = prow["test_auc"]
    d["paper_ci_low"] = prow.get("ci_low", np.nan)
    d["paper_ci_high"] = prow.get("ci_high", np.nan)
    if s is None:
        d.update(ours_train_auc=np.nan, ours_test_auc=np.nan, ours_ci_low=np.nan, ours_ci_high=np.nan,
                 repeats=0, folds=0)
    else:
        d.update(ours_train_auc=s["train_auc"], ours_test_auc=s["test_auc"], ours_ci_low=s["ci_low"],
                 ours_ci_high=s["ci_high"], repeats=len(s["repeat_aucs"]), folds=s["n_folds"])
    d.update(judge(d))
    d["note"] = note
    return d


def judge(d: dict) -> dict:
    """Our cell against the paper's: compare.judge (both uncertainties; the paper's SE from its CI, or Hanley &
    McNeil at the paper's 90/180 where it prints none). Comparability is judged in compare.comparison."""
    from compare.comparison import paper_n
    from compare.verdict import judge as judge_cell

    ours, pap = d["ours_test_auc"], d["paper_test_auc"]
    lo, hi = d.get("paper_ci_low", np.nan), d.get("paper_ci_high", np.nan)
    if pd.isna(ours) or pd.isna(pap) or pd.isna(d.get("ours_ci_low", np.nan)):
        return {"diff_test": np.nan, "verdict": "not run", "above_chance": np.nan}
    pci = None if (pd.isna(lo) or pd.isna(hi)) else (lo, hi)
    j = judge_cell(ours, (d["ours_ci_low"], d["ours_ci_high"]), pap, pci, paper_n=paper_n())
    return {"diff_test": j.diff, "verdict": j.verdict, "above_chance": j.above_chance}


def folds_table(results: dict) -> pd.DataFrame:
    rows = []
    for cid, rs in results.items():
        for r in rs:
            rows.append({"cell": cid, "repeat": r.repeat, "fold": r.fold, "n_test_patients": len(r.test_ids),
                         "test_auc": r.test_auc if len(set(r.test_labels)) == 2 else np.nan,
                         "train_auc": r.train_auc, "test_ids": ";".join(r.test_ids),
                         "test_labels": ";".join(str(int(v)) for v in r.test_labels)})
    return pd.DataFrame(rows)


def write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))


# --------------------------------------------------------------------------------------------- figures
def _savefig(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _median_repeat_curves(rs, median_repeat: int):
    cur = [r.extra.get("curves") for r in rs if r.repeat == median_repeat and r.extra.get("curves")]
    if not cur:
        return None
    n = min(len(c["epoch"]) for c in cur)
    tr = np.nanmean([c["train_auc"][:n] for c in cur], axis=0)
    te = np.nanmean([np.asarray(c["test_auc"][:n], float) for c in cur], axis=0)
    return np.arange(1, n + 1), tr, te


def figure2(path: Path, cell_lists, results, summ, flags) -> None:
    """Figure 2: row 1 VGG_R from scratch at 3 lrs, row 2 GoogLeNet transfer at 3 last-layer lrs. Red: test
    AUC, blue: training AUC (as the paper), averaged over the folds of the reported repeat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paper = _paper().load("lr_sweeps")
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), sharey=True, constrained_layout=True)
    for row, key in enumerate(("sweep_scratch", "sweep_transfer")):
        for col, cell in enumerate(cell_lists[key]):
            ax = axes[row, col]
            s = summ.get(cell.id)
            c = _median_repeat_curves(results.get(cell.id, []), s["median_repeat"]) if s else None
            if c is not None:
                ax.plot(c[0], c[1], "b-o", ms=3, label="training AUC")
                ax.plot(c[0], c[2], "r-o", ms=3, label="test AUC")
            p = paper[(paper.approach == cell.approach) & np.isclose(paper.lr, cell.lr)]
            if len(p):
                ax.axhline(float(p.test_auc.iloc[0]), color="r", ls=":", lw=1, label="paper test AUC")
            what = "scratch VGG_R, lr" if row == 0 else "transfer GoogLeNet, last-layer lr"
            title = f"{what} {cell.lr:g}"
            if flags.get(cell.id):
                title += "\n(" + flags[cell.id] + ")"
            ax.set_title(title, fontsize=8)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(0.0, 1.02)
            if col == 0:
                ax.set_ylabel("AUC")
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Figure 2 (replicated): AUC during training", fontsize=10)
    _savefig(fig, path)
    plt.close(fig)


def figure3(path: Path, table6: pd.DataFrame) -> None:
    """Figure 3: AUC of each GoogLeNet layer's features (ours solid, paper dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4), constrained_layout=True)
    x = np.arange(len(table6))
    ax.plot(x, table6.ours_train_auc, "b-o", label="training AUC (ours)")
    ax.plot(x, table6.ours_test_auc, "r-o", label="test AUC (ours)")
    ax.fill_between(x, table6.ours_ci_low, table6.ours_ci_high, color="r", alpha=0.12, label="ours 95% CI")
    ax.plot(x, table6.paper_train_auc, "b--", alpha=0.6, label="training AUC (paper)")
    ax.plot(x, table6.paper_test_auc, "r--", alpha=0.6, label="test AUC (paper)")
    ax.set_xticks(x, [f"{a}\n{b}" for a, b in zip(table6.paper_label, table6.feature_length)], fontsize=7)
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("AUC")
    note = table6.note.iloc[0] if "note" in table6 and table6.note.iloc[0] else ""
    ax.set_title("Figure 3 (replicated): features from different GoogLeNet layers" + (f"\n({note})" if note else ""),
                 fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    _savefig(fig, path)
    plt.close(fig)


def roc_figure(path: Path, title: str, cells, results, summ, flags) -> None:
    """Pooled out-of-fold patient-level ROC curves of the reported (median) repeat, one per table row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    for cell in cells:
        s = summ.get(cell.id)
        if s is None:
            continue
        rs = [r for r in results[cell.id] if r.repeat == s["median_repeat"]]
        y = np.concatenate([r.test_labels for r in rs])
        sc = np.concatenate([r.test_scores for r in rs])
        fpr, tpr, _ = roc_curve(y, sc)
        ax.plot(fpr, tpr, lw=1.2, label=f"{cell.id} (fold-mean AUC {s['test_auc']:.2f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    flag = next((flags[c.id] for c in cells if flags.get(c.id)), "")
    ax.set_title(title + (f"\n({flag})" if flag else ""), fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    _savefig(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- report
def _fmt(v, nd=2):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.{nd}f}"


def markdown_table(df: pd.DataFrame, keys: list[str]) -> str:
    head = keys + ["ours train", "ours test [95% CI]", "paper train", "paper test [95% CI]", "verdict", "diff",
                   "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        pci = (f" [{_fmt(r.paper_ci_low)}, {_fmt(r.paper_ci_high)}]"
               if not pd.isna(r.get("paper_ci_low", np.nan)) else "")
        cells = [str(r[k]) for k in keys] + [
            _fmt(r.ours_train_auc), f"{_fmt(r.ours_test_auc)} [{_fmt(r.ours_ci_low)}, {_fmt(r.ours_ci_high)}]",
            _fmt(r.paper_train_auc), f"{_fmt(r.paper_test_auc)}{pci}",
            str(r.get("verdict", "—")), _fmt(r.diff_test, 3), r.note or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLE_TITLES = {
    "table3": ("Table 3: training from scratch", ["network", "input"]),
    "table4": ("Table 4: transfer learning", ["network", "input"]),
    "table5": ("Table 5: deep features + SVM", ["network", "patch_size", "kernel"]),
    "table6": ("Table 6: features from different GoogLeNet layers (patch 120, poly SVM)",
               ["paper_label", "blob", "feature_length"]),
    "lr_sweeps": ("Figure 2 learning-rate sweeps", ["approach", "network", "lr_setting", "lr"]),
}


def write_report(run_dir: Path, tables: dict, provenance: dict, comparison: str | None = None) -> Path:
    """Write ``report.md`` (provenance, departures from the paper, tables, figures, comparison)."""
    run_dir = Path(run_dir)
    p = provenance
    L = [f"# Replication run: preset `{p['preset']}`", ""]
    if p.get("no_pretrained_weights"):
        L += [f"> **{p['no_pretrained_weights']}** — transfer-learning and deep-feature numbers (Tables 4-6, "
              "Figure 2 row 2, Figure 3) come from randomly initialised nets (Caffe fillers, seeded).", ""]
    L += ["## Provenance", ""]
    for k in ("started_utc", "finished_utc", "code_version", "device", "torch", "seed", "n_folds", "n_repeats",
              "n_boot", "wall_seconds_this_invocation"):
        if k in p:
            L.append(f"- **{k}**: {p[k]}")
    L += ["", "### Cohort and exclusion flow", ""]
    for line in p.get("cohort", {}).get("flow", []):
        L.append(f"- {line}")
    for k, v in p.get("cohort", {}).items():
        if k != "flow":
            L.append(f"- {k}: {v}")
    L += ["", "### Weights", ""]
    for w in p.get("weights", []):
        L.append(f"- {w['network']}: `{w.get('file') or 'none'}` SHA1 `{w.get('sha1') or '—'}` ({w['status']})")
    L += ["", "### How this run departs from the paper's protocol", ""]
    for d in p.get("differences", []) or ["none: the paper preset"]:
        L.append(f"- {d}")
    for d in p.get("fixed_choices", []):
        L.append(f"- {d}")
    for k, v in p.get("readings", {}).items():
        L.append(f"- reading `{k}` = `{v}` (the paper leaves it open; docs/deviations.md)")
    if p.get("overrides"):
        L += ["", "### Where the preset overrides a value of the net files (solver.prototxt, train_val.prototxt)", ""]
        for d in p["overrides"]:
            L.append(f"- {d}")
    L += ["", "### Compute time per cell (seconds, summed over the folds, whichever invocation computed them)", ""]
    for k, v in sorted(p.get("timings", {}).items(), key=lambda kv: -kv[1]):
        L.append(f"- {k}: {v:.1f}")
    L += ["", "## Results", "",
          "AUC = mean over the 10 folds of the patient-level AUC (a patient's score is the mean over its scoring "
          "patches), median over repeats; 95% CI by a percentile bootstrap over the reported repeat's patients "
          f"(stratified by label, each keeping its fold and out-of-fold score; {p.get('n_boot')} resamples). Verdict: "
          "compare.judge (consistent / inconsistent / inconclusive, from both CIs; Hanley-McNeil SE at the paper's "
          "90/180 where it prints no CI); whether a cell is comparable at all is in the comparison section.", ""]
    for name in ("table3", "table4", "table5", "table6", "lr_sweeps"):
        title, keys = TABLE_TITLES[name]
        L += [f"### {title}", "", markdown_table(tables[name], keys), ""]
    L += ["## Figures", "", "![Figure 2](figures/figure2.png)", "", "![Figure 3](figures/figure3.png)", "",
          "![ROC Table 3](figures/roc_table3.png) ![ROC Table 4](figures/roc_table4.png) "
          "![ROC Table 5](figures/roc_table5.png)", ""]
    L += ["## Comparison with the paper (pytest compare/ --run RUN)", "",
          comparison or "_not run yet: `pytest compare/ --run " + str(run_dir) + "`_", ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(L))
    return path


def insert_section(run_dir: Path, markdown: str) -> None:
    """Put a section (``markdown`` beginning with its ``## Title`` line) into ``report.md`` before the comparison,
    replacing an earlier section of the same title (so a resumed run does not repeat it)."""
    path = Path(run_dir) / "report.md"
    body = path.read_text(encoding="utf-8")
    title = markdown.splitlines()[0]
    marker = "## Comparison with the paper (pytest compare/ --run RUN)"
    body = _drop_section(body, title)
    head, sep, tail = body.partition(marker)
    atomic_write_text(path, head + markdown.rstrip() + "\n\n" + sep + tail if sep else body + "\n" + markdown)


def _drop_section(body: str, title: str) -> str:
    """``body`` without every section whose heading line is ``title`` (up to the next top-level section)."""
    while f"\n{title}\n" in f"\n{body}":
        head, rest = f"\n{body}".split(f"\n{title}\n", 1)
        nxt = rest.find("\n## ")
        body = (head + "\n" + (rest[nxt + 1:] if nxt >= 0 else ""))[1:]
    return body


def insert_comparison(run_dir: Path) -> pd.DataFrame:
    """Write the comparison (compare.comparison) and the verdict sections into ``report.md`` (replacing earlier
    ones) and ``results/comparison.csv``; returns the comparison frame."""
    return insert_sections(run_dir)


COMPARISON_MARKER = "## Comparison with the paper (pytest compare/ --run RUN)"


def insert_sections(run_dir: Path) -> pd.DataFrame:
    """The report's issue-10 sections, from the run's files (replicate.experiments.verdict_run) and compare/:
    readings, controls, CI methods side by side, the cohort beside the paper's, paper-sized subsets, and the
    comparison with the paper (compare.comparison; also written to ``results/comparison.csv``)."""
    from compare import comparison

    run_dir = Path(run_dir)
    text, cmp = comparison.write(run_dir)
    L = verdict_sections(run_dir)
    path = run_dir / "report.md"
    body = path.read_text(encoding="utf-8")
    head = body.split(COMPARISON_MARKER)[0] if COMPARISON_MARKER in body else body + "\n"
    for title in (line for line in L if line.startswith("## ")):   # rerun (pytest compare/ --run): no second copy
        head = _drop_section(head, title)
    atomic_write_text(path, head + "\n".join(L) + "\n" + COMPARISON_MARKER + "\n\n" + text + "\n")
    insert_summary(run_dir)   # last: it reads the files every section above was written from
    return cmp


def insert_summary(run_dir: Path) -> None:
    """Put the one-screen summary (replicate.experiments.summary.summary_lines) first in ``report.md``, after its
    ``#`` title, replacing an earlier one."""
    from replicate.experiments.summary import SUMMARY_TITLE, summary_lines

    path = Path(run_dir) / "report.md"
    body = _drop_section(path.read_text(encoding="utf-8"), SUMMARY_TITLE)
    first, _, rest = body.partition("\n")
    if not first.startswith("# "):
        first, rest = "", body
    text = "\n".join(summary_lines(run_dir)).rstrip()
    atomic_write_text(path, (first + "\n\n" if first else "") + text + "\n\n" + rest.lstrip("\n"))


def verdict_sections(run_dir: Path) -> list[str]:
    import json

    res = Path(run_dir) / "results"
    prov = json.loads((Path(run_dir) / "provenance.json").read_text())
    L = ["## Readings of the paper this run used", ""]
    for k, v in prov.get("readings", {}).items():
        L.append(f"- {k}: `{v}`")
    L.append(f"- scratch_variant (GoogleNet_R / VGG_R): `{prov.get('scratch_variant', 'table2')}`")
    L.append("")
    L += controls_section(res)
    cim = res / "ci_methods.csv"
    if cim.exists():
        t = pd.read_csv(cim)
        L += ["## CI methods side by side", "",
              "Patient bootstrap (primary; protocol.bootstrap_ci), fold-AUC bootstrap (the 10 fold AUCs resampled; "
              "protocol.fold_bootstrap_ci; a reading of the paper's 'bootstrapping strategy'), spread over the "
              "repeats (min / median / max).", "",
              "| cell | test AUC | patient bootstrap | fold bootstrap | repeats (n: min / median / max) |",
              "|---|---|---|---|---|"]
        for _, r in t.iterrows():
            L.append(f"| {r.cell} | {_fmt(r.test_auc)} | [{_fmt(r.patient_ci_low)}, {_fmt(r.patient_ci_high)}] | "
                     f"[{_fmt(r.fold_ci_low)}, {_fmt(r.fold_ci_high)}] | {int(r.n_repeats)}: {_fmt(r.repeat_min)} / "
                     f"{_fmt(r.repeat_median)} / {_fmt(r.repeat_max)} |")
        L.append("")
    L += cohort_section(res)
    ps = res / "paper_sized.csv"
    if ps.exists():
        t = pd.read_csv(ps)
        L += ["## Paper-sized subsets (--paper-sized)", "",
              "Deep-feature cells only (features cached, one SVM fit per fold); the trained nets are not rerun per "
              "subset (out of reach on CPU).", "", "| cell | draws | n | min | median | max |", "|---|---|---|---|---|---|"]
        for cid, g in t.groupby("cell"):
            L.append(f"| {cid} | {len(g)} | {int(g.n_patients.iloc[0])} ({int(g.n_luminal_a.iloc[0])} luminal A) | "
                     f"{_fmt(g.test_auc.min())} | {_fmt(g.test_auc.median())} | {_fmt(g.test_auc.max())} |")
        L.append("")
    return L


CONTROLS_TITLE = "## Controls (planted effect found? null not found?)"


def controls_section(res: Path) -> list[str]:
    """The Controls section from ``results/control_rule.json`` (the rule and the required routes, fixed before the
    grid ran: stated first) and ``results/controls.json`` (each route's AUC and CI beside what the planted effect
    allows, Holm-corrected p, the verdicts, the trained nets' training diagnostic)."""
    import json

    from replicate.experiments import auc_ci

    L = [CONTROLS_TITLE, ""]
    ctl = res / "controls.json"
    if not ctl.exists():
        return L + ["_No controls in this run_ (the preset has none, or the cohort is real data).", ""]
    c = json.loads(ctl.read_text())
    rule = c.get("rule") or {}
    if rule:
        L += ["**The rule** (replicate.experiments.controls.required_routes; `results/control_rule.json`, written "
              "before the grid ran): " + rule["rule"], "",
              "Required by the positive control: " + ", ".join(f"`{r}`" for r in rule["positive_required"]) + "."]
        for cid, t in rule.get("trained", {}).items():
            L.append(f"- `{cid}`: {t['why']}.")
        L.append("")
    sz = c["sizing"]
    L += [f"Synthetic cohort of {c['n_patients']} patients (seed {c['seed']}). The generator plants its effect in "
          f"the lesion's enhancement kinetics only (replicate.cohort.synth: the kinetic slope); effect "
          f"{c['effect']:g} allows a patient-level AUC of at most **{c['ideal_auc']:.3f}** "
          "(replicate.experiments.power.ideal_auc: binormal AUC of the kinetic slope, the best any route can reach).",
          f"Sizing: smallest cohort with >= {sz.get('power_target', 0.95):.0%} power at that AUC: "
          f"{sz.get('smallest_hanley_mcneil', {}).get('n_patients', '—')} patients (Hanley-McNeil normal "
          f"approximation), {sz.get('smallest_simulation', {}).get('n_patients', '—')} (simulation of the "
          f"harness's statistic); power at {c['n_patients']} patients: "
          + ", ".join(f"AUC {r['auc']:.2f}: {r['power']:.3f}" for r in sz.get("at_cohort", [])) + ".",
          "", f"Each route: one-sided p of AUC > 0.5 from its 95% CI (the primary CI, `{auc_ci.PRIMARY_CI}`), "
          f"Holm-corrected across the required routes (positive control) or every route (negative control), alpha "
          f"{c['alpha_one_sided']:g}. A route not required is tested alone and reported only. "
          + auc_ci.primary_statement() + " On null data the cross-validated AUC is biased low and the misses of "
          "these CIs fall below 0.5 (docs/ci_coverage.md), so the one-sided test stays conservative there; the "
          "controls make no further allowance for that bias.", "",
          "| cohort | route | kind | required | test AUC [95% CI] | allowed by the effect | p (Holm) | found |",
          "|---|---|---|---|---|---|---|---|"]
    for which, eff, allowed in (("positive", c["effect"], c["ideal_auc"]), ("negative", c["null_effect"], 0.5)):
        for r in c[which]["rows"]:
            req = "yes" if r.get("required", True) else "no (reported)"
            L.append(f"| effect {eff:g} | {r['cell']} | {r.get('route', '')} | {req} | {_fmt(r['auc'])} "
                     f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {allowed:.3f} | {r['p_holm']:.4f} | "
                     f"{'yes' if r['found'] else 'no'} |")
    L += ["", f"- **Positive control**: {'PASSED' if c['positive']['passed'] else 'FAILED'} "
          f"({c['positive']['why']}; required: {', '.join(c.get('required', []))})",
          f"- **Negative control** (effect {c['null_effect']:g}, a second cohort in `null/`): "
          f"{'PASSED' if c['negative']['passed'] else 'FAILED'} ({c['negative']['why']})", ""]
    diag = [(which, cell, d) for which in ("positive", "negative") for cell, d in c[which].get("training", {}).items()]
    if diag:
        L += ["Did the trained nets use their input? (replicate.experiments.controls.training_diagnostic: median "
              "over folds; a net whose last-epoch training loss is not below the loss of predicting the class "
              "prior fits the class frequencies only, and its test AUC then reflects its random initialisation, "
              "not the effect.)", "",
              "| cohort | cell | training loss, first -> last epoch | class-prior loss | train AUC | verdict |",
              "|---|---|---|---|---|---|"]
        for which, cell, d in diag:
            eff = c["effect"] if which == "positive" else c["null_effect"]
            L.append(f"| effect {eff:g} | {cell} | {d['first_epoch_loss']:.3f} -> {d['last_epoch_loss']:.3f} | "
                     f"{d['prior_entropy']:.3f} | {_fmt(d['train_auc'])} | "
                     + ("**class prior only** (not trained enough to use the images)" if d["prior_only"]
                        else "uses the input") + " |")
        L.append("")
    return L


def cohort_section(res: Path) -> list[str]:
    """Our flow beside the paper's (replicate.cohort.flow.flow_beside_paper with compare.paper.cohort_flow()),
    the label prevalence and cross-tab, the '90 of 270' conflict and the HER2-borderline count."""
    import json

    from replicate.cohort.flow import flow_beside_paper

    L = ["## The cohort beside the paper's", ""]
    fl = res / "cohort_flow.csv"
    if fl.exists():
        side = flow_beside_paper(pd.read_csv(fl), paper_flow_steps())
        L += ["| paper step | paper reason | paper count | our reasons | our count | reproducible | why |",
              "|---|---|---|---|---|---|---|"]
        for _, r in side.iterrows():
            L.append(f"| {r.paper_step} | {r.paper_reason} | {r.paper_count} | {r.our_reasons} | "
                     f"{'—' if pd.isna(r.our_count) else int(r.our_count)} | {'yes' if r.reproducible else 'no'} | "
                     f"{r.why} |")
        L.append("")
    lab = res / "cohort_labels.json"
    if lab.exists():
        d = json.loads(lab.read_text())
        f = _paper().facts()
        if "unavailable" in d:
            L.append(f"- labels: {d['unavailable']}")
        else:
            L.append(f"- label rule: {d['rule']}")
            for pop in ("labelled", "included"):
                p = d.get(pop, {})
                if p:
                    L.append(f"- {pop}: {p['luminal_a']} luminal A of {p['n']} (prevalence {p['prevalence']:.3f}); "
                             f"agree with Mol Subtype luminal-like: {p['agree_luminal_like']} of "
                             f"{p['mol_subtype_known']}")
            L.append(f"- the paper: {f['luminal_a']} luminal A of {f['patients_included']} (prevalence "
                     f"{f['luminal_a'] / f['patients_included']:.3f}); the ER/PR+ HER2- rule usually gives a much "
                     "higher prevalence: this run assumed the rule above, not the paper's count")
            hb = d.get("her2_borderline", {})
            L.append(f"- HER2-borderline: setting `{hb.get('setting')}`, {hb.get('borderline_hr_positive')} "
                     f"HR-positive borderline patients moved by it ({hb.get('included_affected')} included)")
    sub = res / "cohort_subtypes.csv"
    if sub.exists():
        t = pd.read_csv(sub)
        L += ["", "Our label (rows) x spreadsheet Mol Subtype (columns):", "",
              "| " + " | ".join(map(str, t.columns)) + " |", "|" + "---|" * len(t.columns)]
        for _, r in t.iterrows():
            L.append("| " + " | ".join(str(v) for v in r) + " |")
    L.append("")
    return L


def paper_flow_steps() -> list[dict]:
    """compare.paper.cohort_flow() as flow_beside_paper's ``paper_steps``."""
    t = _paper().cohort_flow()
    return [{"step": r.stage, "reason": r.reason, "count": int(r["count"])} for _, r in t.iterrows()]


def write_all(run_dir: Path, preset, cell_lists, results, summ, flags, provenance) -> dict:
    """Every result file, figure and the report of a finished run."""
    run_dir = Path(run_dir)
    tables = side_by_side(preset, cell_lists, summ, flags)
    for name, df in tables.items():
        write_csv(run_dir / "results" / f"{name}.csv", df)
    write_csv(run_dir / "results" / "folds.csv", folds_table(results))
    from replicate.experiments import verdict_run  # issue 10: predictions.csv, ci_methods.csv

    verdict_run.write_predictions(run_dir, preset, results)
    atomic_write_json(run_dir / "results" / "summary.json",
                      {cid: {**s, "flag": flags.get(cid, "")} for cid, s in summ.items()})
    figs = run_dir / "figures"
    figure2(figs / "figure2.png", cell_lists, results, summ, flags)
    figure3(figs / "figure3.png", tables["table6"])
    for name, title in (("table3", "Table 3 (scratch)"), ("table4", "Table 4 (transfer)"),
                        ("table5", "Table 5 (features + SVM)")):
        roc_figure(figs / f"roc_{name}.png", f"ROC, {title}", cell_lists[name], results, summ, flags)
    atomic_write_json(run_dir / "provenance.json", provenance)
    write_report(run_dir, tables, provenance)
    return tables
