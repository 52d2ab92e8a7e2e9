"""The paper's tables as data, and a run's tables compared with them cell by cell (issue 5, item 7).

Without ``--run`` only the paper-data checks run. With ``--run RUN`` the tests fail on protocol defects (a table
cell absent, NaN, missing folds, wrong fold structure) but never on the AUC values themselves: the comparison
(inside the paper's 95% CI or not, and by how much) is written into RUN/report.md and RUN/results/comparison.csv.
"""
from __future__ import annotations

import pandas as pd
import pytest

from compare import paper

NO_WEIGHTS = "no pretrained weights: not comparable to the paper"


# ---------------------------------------------------------------------------------------------- paper data
def test_paper_values_inside_their_ci():
    for name in ("table3", "table4", "table5"):
        t = paper.load(name)
        assert ((t.ci_low <= t.test_auc) & (t.test_auc <= t.ci_high)).all(), name


def test_paper_tables_as_printed():
    t3, t4, t5, t6 = (paper.load(n) for n in ("table3", "table4", "table5", "table6"))
    assert list(t3.test_auc) == [0.56, 0.57, 0.54, 0.58] and list(t3.train_auc) == [0.93, 0.94, 0.98, 0.75]
    assert list(t4.test_auc) == [0.60, 0.59] and list(t4.train_auc) == [0.93, 0.89]
    assert list(t5.test_auc) == [0.58, 0.59, 0.65, 0.56, 0.55, 0.56]
    assert list(t6.feature_length) == [64, 192, 256, 480, 512, 512, 512, 528, 832, 832, 1024, 1000]
    # Table 6's FC1 column is Table 5's GoogLeNet 120 poly row (why Table 6 is read as patch 120, poly).
    fc1 = t6[t6.paper_label == "FC1"].iloc[0]
    row = t5[(t5.network == "GoogleNet") & (t5.patch_size == 120) & (t5.kernel == "poly")].iloc[0]
    assert (fc1.train_auc, fc1.test_auc) == (row.train_auc, row.test_auc)
    sw = paper.load("lr_sweeps")
    assert list(sw.test_auc) == [0.54, 0.53, 0.54, 0.60, 0.60, 0.58]


def test_cohort_flow_chains():
    """400 -> 286 -> 275 -> 270: each 'remaining' count is the previous one minus the exclusions since."""
    f = paper.cohort_flow()
    assert list(f[f.stage != "excluded"]["count"]) == [400, 286, 275, 270]
    total = None
    for _, r in f.iterrows():
        if r.stage == "start":
            total = r["count"]
        elif r.stage == "excluded":
            total -= r["count"]
        else:
            assert total == r["count"], r.reason
    first = f[(f.step > 1) & (f.step < 9)]["count"].sum()
    assert first == paper.facts()["excluded_first_pass"] == 114


def test_facts_agree_with_each_other():
    f = paper.facts()
    assert (f["luminal_a"], f["patients_included"]) == (90, 270)
    assert f["luminal_a"] + f["other_subtypes"] == f["patients_included"]
    # 44,660 = 33.1 regions x (1 + 4) patches x 270 patients, with 33.1 rounded to one decimal
    per = f["patches_per_patch_size"] / ((1 + f["augmented_per_region"]) * f["patients_included"])
    assert round(per, 1) == f["regions_per_patient"]
    assert paper.table("table1").case_number.sum() == f["patients_included"]


def test_contradictions_recorded_as_data():
    c = paper.contradictions().set_index("id")
    assert paper.table("scanners_text").case_number.sum() == 278
    assert "278" in c.loc["scanner_counts", "value_a"] and "270" in c.loc["scanner_counts", "value_b"]
    # every Abstract CI names a Results row; where they differ a contradiction row says so
    for _, a in paper.abstract_cis().iterrows():
        key = dict(zip(paper.TABLE_KEYS[a.table], a.key.split("|")))
        r = paper.row(a.table, **key)
        assert r.test_auc == a.test_auc
        same = (r.ci_low, r.ci_high) == (a.ci_low, a.ci_high)
        assert same != (f"abstract_ci_{a.approach}" in c.index), a.approach


def test_rows_found_by_key_not_position():
    shuffled = paper.table("table5").iloc[::-1]
    r = paper.row("table5", network="GoogleNet", patch_size="120", kernel="poly")
    assert r.test_auc == 0.65 and paper.key_of("table5", shuffled.iloc[-1]) == ("GoogleNet", "80", "poly")
    with pytest.raises(KeyError):
        paper.row("table5", network="GoogleNet", patch_size=100, kernel="poly")


# ---------------------------------------------------------------------------------------------- a run
# Structural tests run on every run; value tests run per paper cell and skip with "not comparable: ..." on a run
# that is not comparable with the paper (compare.comparison); the controls run on synthetic runs.
def _paper_cells():
    out = []
    for name in paper.RESULT_TABLES:
        for _, r in paper.table(name).iterrows():
            out.append((name, "|".join(paper.key_of(name, r))))
    return out


PAPER_CELLS = _paper_cells()


@pytest.fixture(scope="session")
def run_cells(provenance):
    return set(provenance.get("cells_run", []))


@pytest.mark.parametrize("name", paper.RESULT_TABLES)
def test_every_cell_present_and_finite(run_dir, name, run_cells):
    paper.check_table_cells(run_dir, name, run_cells=run_cells or None)


def test_fold_structure(run_dir, provenance):
    paper.check_folds(run_dir, provenance["n_folds"], provenance["n_repeats"])


def test_outputs_exist(run_dir):
    for rel in ("report.md", "results/summary.json", "results/folds.csv", "results/predictions.csv",
                "results/comparison.csv", "results/ci_methods.csv", "figures/figure2.png",
                "figures/figure3.png", "figures/roc_table3.png", "figures/roc_table4.png", "figures/roc_table5.png"):
        assert (run_dir / rel).exists(), rel


def test_predictions_match_folds(run_dir):
    pred = pd.read_csv(run_dir / "results" / "predictions.csv", dtype={"patient": str})
    assert list(pred.columns) == ["patient", "cell", "repeat", "fold", "score", "label"]
    folds = pd.read_csv(run_dir / "results" / "folds.csv", dtype={"test_ids": str})
    n = folds.test_ids.str.split(";").str.len().sum()
    assert len(pred) == n and pred.score.notna().all()


def test_provenance_complete(provenance):
    for key in ("code_version", "device", "seed", "n_folds", "n_repeats", "n_boot", "cohort", "weights",
                "readings"):
        assert provenance.get(key) not in (None, ""), key
    for w in provenance["weights"]:
        assert w.get("sha1") or NO_WEIGHTS in w["status"], w


def test_no_weights_flag_carried(run_dir, provenance, run_cells):
    if not provenance.get("no_pretrained_weights"):
        pytest.skip("run used pretrained weights")
    for name in ("table4", "table5", "table6"):
        t = pd.read_csv(run_dir / "results" / f"{name}.csv")
        t = t[t.cell.isin(run_cells)] if run_cells else t
        assert (t.note == NO_WEIGHTS).all(), name
    assert NO_WEIGHTS in (run_dir / "report.md").read_text()


def test_comparison_written_into_report(comparison_table, run_dir):
    n_cells = sum(len(paper.load(n)) for n in paper.RESULT_TABLES)
    assert len(comparison_table) == n_cells
    from compare.comparison import COLUMNS

    assert list(comparison_table.columns) == COLUMNS
    # every cell says whether it is comparable, and why not
    bad = comparison_table[~comparison_table.comparable & (comparison_table.why_not_comparable.fillna("") == "")]
    assert bad.empty, bad.cell.tolist()
    text = (run_dir / "report.md").read_text()
    assert "## Comparison with the paper" in text and "expected_inconsistent(" in text
    assert (run_dir / "results" / "comparison.csv").exists()


@pytest.mark.parametrize("table,key", PAPER_CELLS, ids=[f"{t}:{k}" for t, k in PAPER_CELLS])
def test_cell_not_inconsistent(comparison_table, table, key):
    """A comparable cell fails when judged inconsistent, unless compare/data/expected_deviations.csv explains it."""
    row = _row_of(comparison_table, table, key)
    if not row.comparable:
        pytest.skip(f"not comparable: {row.why_not_comparable}")
    if row.verdict == "inconclusive":
        pytest.skip(f"inconclusive: diff {row['diff']:.3f} [{row.diff_ci_low:.3f}, {row.diff_ci_high:.3f}]")
    if row.verdict == "inconsistent" and not row.expected_deviation:
        pytest.fail(f"{table} {row.cell}: inconsistent with the paper: ours {row.ours_test_auc:.3f} "
                    f"[{row.ours_ci_low:.3f}, {row.ours_ci_high:.3f}], paper {row.paper_test_auc:.2f}, diff "
                    f"{row['diff']:.3f} [{row.diff_ci_low:.3f}, {row.diff_ci_high:.3f}]", pytrace=False)


def test_controls(run_dir, provenance, comparison_table):
    """Synthetic runs: the planted effect is found and the null cohort's is not (results/controls.json)."""
    import json

    if comparison_table.comparable.any():
        pytest.skip("comparable run: the value tests judge it; controls are for synthetic runs")
    if provenance.get("preset") == "smoke":
        pytest.skip("smoke preset: trains one or two iterations, its AUCs are noise; controls not checked "
                    "(run --preset quick)")
    path = run_dir / "results" / "controls.json"
    if not path.exists():
        pytest.skip(f"no controls in this run (preset {provenance.get('preset')!r} has none or the data are real)")
    c = json.loads(path.read_text())
    # the required routes come from the run's own rule (results/control_rule.json, written before the grid ran)
    from replicate.experiments.controls import ALPHA, holm_adjust

    rule_path = run_dir / "results" / "control_rule.json"
    rule = json.loads(rule_path.read_text()) if rule_path.exists() else c.get("rule", {})
    required = list(rule.get("positive_required", c.get("required", [])))
    assert required, "controls.json: no required route for the positive control"
    rows = {r["cell"]: r for r in c["positive"]["rows"]}
    missing = [r for r in required if r not in rows]
    assert not missing, f"positive control: required route(s) not checked: {', '.join(missing)}"
    adj = holm_adjust([rows[r]["p"] for r in required])   # Holm across the required routes, recomputed here
    assert [bool(a < ALPHA) for a in adj] == [bool(rows[r]["found"]) for r in required], "Holm verdicts differ"
    assert c["positive"]["passed"], f"positive control: {c['positive']['why']}"
    assert {r["cell"] for r in c["negative"]["rows"]} >= set(rule.get("negative", [])), "negative: a route missing"
    assert c["negative"]["passed"], f"negative control: {c['negative']['why']}"


def _row_of(cmp, table, key):
    t = paper.table(table)
    hit = cmp[cmp.table == table].reset_index(drop=True)
    keys = ["|".join(paper.key_of(table, r)) for _, r in t.iterrows()]
    return hit.iloc[keys.index(key)]
