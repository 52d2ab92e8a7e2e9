"""compare.verdict: the per-cell judgement (``from compare import judge``) and its chance rates."""
from __future__ import annotations

import numpy as np
import pytest

from compare import judge
from compare.verdict import (
    capture_probability,
    chance_inconsistent_upper,
    expected_inconsistent,
    hanley_mcneil_ci,
    hanley_mcneil_se,
    se_from_ci,
)

PAPER = (0.65, (0.57, 0.71))


def test_the_issues_two_cases():
    bad = judge(0.50, (0.45, 0.55), *PAPER)
    assert bad.verdict == "inconsistent" and not bad.above_chance
    assert bad.diff == pytest.approx(-0.15) and bad.diff_ci[1] < 0
    good = judge(0.65, (0.63, 0.67), *PAPER)
    assert good.verdict == "consistent" and good.above_chance
    assert -0.10 < good.tost_ci[0] < 0 < good.tost_ci[1] < 0.10


def test_inconclusive_when_neither_difference_nor_equivalence_is_shown():
    j = judge(0.60, (0.50, 0.70), *PAPER)
    assert j.verdict == "inconclusive"
    assert j.diff_ci[0] < 0 < j.diff_ci[1] and j.tost_ci[0] < -0.10
    assert not j.above_chance  # lower bound 0.50 is not above chance


def test_inconsistent_takes_precedence_over_equivalence():
    # d = 0.05 with tiny SEs: the 90% CI is inside +/-0.10 but the 95% CI excludes 0
    j = judge(0.70, (0.69, 0.71), 0.65, (0.64, 0.66))
    assert -0.10 < j.tost_ci[0] and j.tost_ci[1] < 0.10 and j.diff_ci[0] > 0
    assert j.verdict == "inconsistent"


def test_margin_is_a_setting():
    assert judge(0.65, (0.63, 0.67), *PAPER, margin=0.05).verdict == "inconclusive"


def test_se_from_ci_and_bad_input():
    assert se_from_ci((0.45, 0.55)) == pytest.approx(0.1 / (2 * 1.959964), rel=1e-6)
    with pytest.raises(ValueError, match="high < low"):
        judge(0.6, (0.7, 0.5), *PAPER)
    with pytest.raises(ValueError, match="paper_n"):
        judge(0.6, (0.5, 0.7), 0.6, None)
    with pytest.raises(ValueError, match="margin"):
        judge(0.6, (0.5, 0.7), *PAPER, margin=0)
    with pytest.raises(ValueError, match="finite"):
        judge(float("nan"), (0.5, 0.7), *PAPER)


def test_cells_without_a_paper_ci_use_hanley_mcneil_at_the_given_class_sizes():
    j = judge(0.60, (0.55, 0.65), 0.62, None, paper_n=(90, 180))
    assert j.se_paper == pytest.approx(hanley_mcneil_se(0.62, 90, 180))
    assert j.paper_se_rule == "hanley-mcneil 90/180" and "Hanley" in j.method
    lo, hi = hanley_mcneil_ci(0.62, 90, 180)
    assert hi - lo == pytest.approx(2 * 1.959964 * j.se_paper, rel=1e-6)
    with pytest.raises(ValueError):
        hanley_mcneil_se(1.2, 90, 180)


def test_hanley_mcneil_se_matches_simulation_where_it_is_exact():
    # Hanley & McNeil's Q1, Q2 are exact for exponential scores: negatives Exp(1), positives Exp(theta),
    # true AUC = theta / (1 + theta). The SD of the Mann-Whitney AUC over simulated data sets must match.
    rng = np.random.default_rng(0)
    n_pos, n_neg, theta, sims = 30, 60, 1.5, 3000
    a_true = theta / (1 + theta)
    pos = rng.exponential(theta, size=(sims, n_pos))
    neg = rng.exponential(1.0, size=(sims, n_neg))
    aucs = (pos[:, :, None] > neg[:, None, :]).mean(axis=(1, 2))
    assert aucs.mean() == pytest.approx(a_true, abs=0.005)
    assert aucs.std(ddof=1) == pytest.approx(hanley_mcneil_se(a_true, n_pos, n_neg), rel=0.06)


def test_chance_rate_of_inconsistent_under_exact_replication_and_capture_percentage():
    # Simulate exactly replicated cells: both estimates unbiased for the same AUC with the SEs their CIs state.
    rng = np.random.default_rng(1)
    n, true, se_o, se_p = 4000, 0.62, 0.035, 0.03
    ours = rng.normal(true, se_o, n)
    paper = rng.normal(true, se_p, n)
    z = 1.959964
    verdicts = [judge(o, (o - z * se_o, o + z * se_o), p, (p - z * se_p, p + z * se_p)).verdict
                for o, p in zip(ours, paper)]
    rate = verdicts.count("inconsistent") / n
    assert abs(rate - expected_inconsistent(1)) < 0.012, rate
    assert expected_inconsistent(30) == pytest.approx(1.5)
    # the naive point-inside-the-paper's-CI rule misses far more (Cumming & Maillardet 2006)
    captured = np.mean(np.abs(ours - paper) <= z * se_p)
    assert captured == pytest.approx(capture_probability(se_o, se_p), abs=0.02)
    assert capture_probability(1.0, 1.0) == pytest.approx(0.834, abs=0.001)
    assert chance_inconsistent_upper(30) == 4


@pytest.mark.parametrize("ours, ci, match", [
    (1.2, (0.5, 1.0), "outside \\[0, 1\\]"),
    (-0.1, (0.0, 0.2), "outside \\[0, 1\\]"),
    (0.6, (0.5, 1.1), "CI .* outside \\[0, 1\\]"),
    (0.6, (0.7, 0.8), "outside its own CI"),
    (0.9, (0.7, 0.8), "outside its own CI"),
    (0.6, (0.7, 0.5), "high < low"),
])
def test_judge_refuses_impossible_aucs_and_cis(ours, ci, match):
    with pytest.raises(ValueError, match=match):
        judge(ours, ci, 0.65, (0.57, 0.71))
    # the paper side is checked the same way
    with pytest.raises(ValueError, match=match):
        judge(0.65, (0.57, 0.71), ours, ci)


def test_table6_fc_cell_uses_its_table5_ci():
    from compare import paper

    fc = paper.row("table6", blob="loss3/classifier")
    t5 = paper.row("table5", network="GoogleNet", patch_size=120, kernel="poly")
    assert (fc["test_auc"], fc["ci_low"], fc["ci_high"]) == (t5["test_auc"], t5["ci_low"], t5["ci_high"])
    others = paper.table("table6").query("blob != 'loss3/classifier'")
    assert others.ci_low.isna().all() and others.ci_high.isna().all()
