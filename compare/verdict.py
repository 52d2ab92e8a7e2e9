"""Per-cell judgement of a replicated AUC against the paper's, with both uncertainties.

Method (named here so every verdict can cite it; facts in ``../shared/notes/statistics.md``):

1. **Standard errors from 95% CIs** (normal approximation): ``SE = (high - low) / (2 * z_0.975)``. The paper gives
   its test AUCs with 95% bootstrap CIs (Zhu et al. 2019, "Model Evaluation"; Tables 3-5) whose unit is unstated;
   ours come from :mod:`replicate.experiments.protocol`. The point estimate is the printed AUC, not the CI midpoint
   (the paper's CIs are not symmetric about it).
2. **Difference**: ``d = ours - paper``, the two estimates independent (different patients, different runs):
   ``SE_d = sqrt(SE_ours^2 + SE_paper^2)``, 95% CI ``d +/- 1.96 SE_d``.
3. **Verdict**, in this order of precedence:

   * ``inconsistent`` when the 95% CI of ``d`` excludes 0 (a two-sided z-test of equal AUCs at the 5% level);
   * ``consistent`` when the two one-sided tests (TOST; Schuirmann 1987, J Pharmacokinet Biopharm 15:657) show
     equivalence within ``+/- margin``: the 90% CI of ``d`` lies inside ``(-margin, margin)``;
   * ``inconclusive`` otherwise (neither a difference nor equivalence is shown).

   The default margin is 0.10 AUC: with the paper's own SEs (about 0.03) a margin of 0.05 cannot be reached
   whatever we measure (1.645 * 0.03 * sqrt 2 ~ 0.07 > 0.05 even with our SE equal to the paper's). Because 0.10 is
   as large as the paper's lead over chance, every verdict carries ``above_chance``: the lower bound of *our*
   95% CI above 0.5.
4. **Cells printed without a CI** (training AUCs, Table 6, the learning-rate sweeps): the paper's SE is the
   Hanley & McNeil 1982 (Radiology 143:29, eq. 1-3) standard error of an AUC at the paper's class sizes (the
   caller passes them: ``paper_n=(n_pos, n_neg)``; the paper has 90 luminal A and 180 other patients), see
   :func:`hanley_mcneil_se`.
5. **What chance alone gives**: under exact replication (both estimates unbiased for the same AUC, normal, SEs
   right) ``d / SE_d`` is standard normal, so each cell reads ``inconsistent`` with probability ``1 - level``
   (5%): :func:`expected_inconsistent`. For contrast, the naive rule "our point estimate inside the paper's 95%
   CI" fails far more often by chance: the capture percentage of Cumming & Maillardet 2006 (Psychol Methods
   11:217), :func:`capture_probability`, is about 83% for equal SEs, i.e. about 17% of exactly replicated cells
   would be called disagreements.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import binom, norm

VERDICTS = ("consistent", "inconsistent", "inconclusive")
DEFAULT_MARGIN = 0.10


def z_of(level: float) -> float:
    """Two-sided normal quantile of a ``level`` interval (0.95 -> 1.95996)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(norm.ppf(0.5 + level / 2.0))


def se_from_ci(ci, level: float = 0.95) -> float:
    """Standard error recovered from a two-sided ``level`` CI ``(low, high)``: ``(high - low) / (2 z)``.

    Normal approximation (statistics notes, "Comparing our AUC with a published one"). Raises ValueError for a CI
    with ``high < low`` or non-finite bounds."""
    lo, hi = (float(v) for v in ci)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"CI {ci!r}: bounds must be finite numbers")
    if hi < lo:
        raise ValueError(f"CI {ci!r}: high < low")
    return (hi - lo) / (2.0 * z_of(level))


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC ``auc`` estimated from ``n_pos`` positive and ``n_neg`` negative cases.

    Hanley & McNeil 1982 (Radiology 143:29), eq. 1 with Q1 = A / (2 - A), Q2 = 2 A^2 / (1 + A) (their eq. 2-3,
    exact for exponential score distributions and close for the binormal model)::

        SE^2 = [A(1-A) + (n_pos - 1)(Q1 - A^2) + (n_neg - 1)(Q2 - A^2)] / (n_pos n_neg)

    Units: AUC (0..1). Raises ValueError for ``auc`` outside [0, 1] or a class size below 1."""
    a = float(auc)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"AUC {auc!r} outside [0, 1]")
    if int(n_pos) < 1 or int(n_neg) < 1:
        raise ValueError(f"class sizes must be >= 1, got n_pos={n_pos}, n_neg={n_neg}")
    q1 = a / (2.0 - a)
    q2 = 2.0 * a * a / (1.0 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def hanley_mcneil_ci(auc: float, n_pos: int, n_neg: int, level: float = 0.95) -> tuple[float, float]:
    """Normal CI ``auc +/- z SE_HM`` (:func:`hanley_mcneil_se`), the rule for paper cells printed without a CI."""
    se = hanley_mcneil_se(auc, n_pos, n_neg)
    z = z_of(level)
    return (float(auc) - z * se, float(auc) + z * se)


@dataclass(frozen=True)
class Judgement:
    """The verdict on one cell.

    ``verdict``: "consistent" | "inconsistent" | "inconclusive"; ``diff`` = ours - paper (AUC); ``diff_ci`` its
    95% CI; ``tost_ci`` its 90% CI (the TOST interval); ``se_ours``, ``se_paper`` the SEs used; ``above_chance``:
    our 95% CI's lower bound > 0.5; ``paper_se_rule``: "ci" (from the paper's CI) or "hanley-mcneil n_pos/n_neg";
    ``method``: one line naming the method and its sources."""

    verdict: str
    diff: float
    diff_ci: tuple[float, float]
    tost_ci: tuple[float, float]
    margin: float
    se_ours: float
    se_paper: float
    above_chance: bool
    paper_se_rule: str
    method: str

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["diff_ci"], d["tost_ci"] = list(self.diff_ci), list(self.tost_ci)
        return d


METHOD = ("SEs from 95% CIs (normal approximation); d = ours - paper, SE_d = sqrt(SE_o^2 + SE_p^2); inconsistent "
          "if the 95% CI of d excludes 0; else consistent if the 90% CI of d lies within +/-{m:g} (TOST, "
          "Schuirmann 1987); else inconclusive. Paper SE: {rule}.")


def check_auc_ci(auc: float, ci, who: str = "ours") -> None:
    """Refuse what no AUC and 95% CI can be: an AUC or a bound outside [0, 1], ``low > high``, or a point outside
    its own interval (a percentile or influence-curve interval of an AUC always contains the point estimate).

    Raises ValueError naming ``who`` and the values."""
    lo, hi = (float(v) for v in ci)
    a = float(auc)
    if not all(math.isfinite(v) for v in (a, lo, hi)):
        raise ValueError(f"{who}: AUC {auc!r} and CI {tuple(ci)!r} must be finite numbers")
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"{who}: AUC {a:g} is outside [0, 1]")
    if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
        raise ValueError(f"{who}: CI ({lo:g}, {hi:g}) is outside [0, 1]")
    if hi < lo:
        raise ValueError(f"{who}: CI ({lo:g}, {hi:g}) has high < low")
    if not lo <= a <= hi:
        raise ValueError(f"{who}: AUC {a:g} lies outside its own CI ({lo:g}, {hi:g})")


def judge(ours_auc: float, ours_ci, paper_auc: float, paper_ci=None, margin: float = DEFAULT_MARGIN,
          paper_n: tuple[int, int] | None = None) -> Judgement:
    """Judge our AUC (with its 95% CI) against the paper's (module docstring: method and sources).

    ``ours_ci``, ``paper_ci``: (low, high) 95% CIs. When the paper prints no CI pass ``paper_ci=None`` and
    ``paper_n=(n_pos, n_neg)``, the paper's class sizes: its SE is then Hanley & McNeil's at ``paper_auc``.
    ``margin``: the equivalence margin in AUC (> 0).

    Raises ValueError (:func:`check_auc_ci`) for an AUC or CI outside [0, 1], a CI with high < low, a point
    outside its own CI, a non-finite AUC, ``margin <= 0`` or ``paper_ci=None`` without ``paper_n``.

    >>> judge(0.50, (0.45, 0.55), 0.65, (0.57, 0.71)).verdict
    'inconsistent'
    >>> judge(0.65, (0.63, 0.67), 0.65, (0.57, 0.71)).verdict
    'consistent'
    """
    o, p = float(ours_auc), float(paper_auc)
    if not (math.isfinite(o) and math.isfinite(p)):
        raise ValueError(f"AUCs must be finite, got ours={ours_auc!r}, paper={paper_auc!r}")
    check_auc_ci(o, ours_ci, "ours")
    if paper_ci is not None:
        check_auc_ci(p, paper_ci, "paper")
    elif not 0.0 <= p <= 1.0:
        raise ValueError(f"paper AUC {p!r} is outside [0, 1]")
    if not margin > 0:
        raise ValueError(f"equivalence margin must be > 0, got {margin!r}")
    se_o = se_from_ci(ours_ci)
    if paper_ci is not None:
        se_p, rule = se_from_ci(paper_ci), "from the paper's 95% CI"
    elif paper_n is not None:
        n_pos, n_neg = paper_n
        se_p, rule = hanley_mcneil_se(p, n_pos, n_neg), f"Hanley & McNeil 1982 at {n_pos}/{n_neg} (no CI printed)"
    else:
        raise ValueError("paper_ci is None: pass paper_n=(n_pos, n_neg) for the Hanley-McNeil SE")
    d = o - p
    se_d = math.hypot(se_o, se_p)
    z95, z90 = z_of(0.95), z_of(0.90)
    diff_ci = (d - z95 * se_d, d + z95 * se_d)
    tost_ci = (d - z90 * se_d, d + z90 * se_d)
    if diff_ci[0] > 0 or diff_ci[1] < 0:
        verdict = "inconsistent"
    elif -margin < tost_ci[0] and tost_ci[1] < margin:
        verdict = "consistent"
    else:
        verdict = "inconclusive"
    return Judgement(verdict=verdict, diff=d, diff_ci=diff_ci, tost_ci=tost_ci, margin=float(margin),
                     se_ours=se_o, se_paper=se_p, above_chance=float(ours_ci[0]) > 0.5,
                     paper_se_rule="ci" if paper_ci is not None else f"hanley-mcneil {paper_n[0]}/{paper_n[1]}",
                     method=METHOD.format(m=margin, rule=rule))


def expected_inconsistent(n_cells: int, level: float = 0.95) -> float:
    """How many of ``n_cells`` cells chance alone calls ``inconsistent`` if the replication were exact.

    Derivation: under exact replication both AUC estimates are unbiased for the same true AUC, independent and
    normal with the SEs used, so ``d / SE_d ~ N(0, 1)`` and ``P(|d| > z SE_d) = 1 - level`` per cell; by linearity
    of expectation the count's mean is ``n_cells * (1 - level)`` whatever the correlation between cells. (The
    point-in-paper-CI rule would instead expect ``n_cells * (1 - capture)``, the capture percentage of Cumming &
    Maillardet 2006, Psychol Methods 11:217; see :func:`capture_probability`.)"""
    if int(n_cells) < 0:
        raise ValueError(f"n_cells must be >= 0, got {n_cells}")
    return int(n_cells) * (1.0 - level)


def chance_inconsistent_upper(n_cells: int, level: float = 0.95, quantile: float = 0.95) -> int:
    """The ``quantile`` point of the chance count of inconsistent cells if the cells were independent
    (Binomial(n_cells, 1 - level)); cells sharing patients are positively correlated, which widens the spread,
    so read it as a rough guide, not a test."""
    return int(binom.ppf(quantile, int(n_cells), 1.0 - level))


def capture_probability(se_ours: float, se_paper: float, level: float = 0.95) -> float:
    """P(our estimate falls inside the paper's ``level`` CI) under exact replication (Cumming & Maillardet 2006,
    Psychol Methods 11:217, "capture percentage"): ``2 Phi(z SE_p / sqrt(SE_o^2 + SE_p^2)) - 1``; 0.834 for
    equal SEs at 95%."""
    sd = math.hypot(se_ours, se_paper)
    if sd == 0:
        return 1.0
    return float(2 * norm.cdf(z_of(level) * se_paper / sd) - 1)
