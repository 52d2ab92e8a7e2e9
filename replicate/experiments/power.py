"""Power of the positive control and the size of the synthetic cohort that gives it.

The positive control (issue 10, "Controls"): on the synthetic cohort with a planted effect, a cell's test AUC must
have its 95% CI's lower bound above 0.5. This module answers two questions without running the pipeline:

* **What AUC does the planted effect allow?** :func:`ideal_auc`. The generator (:mod:`replicate.cohort.synth`)
  puts the label into the images only through the lesion's kinetic slope, ``s | label ~ N(+/- effect *
  SLOPE_SHIFT, SLOPE_SD)`` ("Nothing else depends on the label"). Two normals with equal variance have a
  likelihood ratio monotone in ``s``, so ``s`` itself is the optimal patient score (Neyman-Pearson) and its AUC,
  ``Phi(delta / (SLOPE_SD * sqrt 2))`` with ``delta = 2 * effect * SLOPE_SHIFT`` (the binormal AUC; Hanley &
  McNeil 1982, Radiology 143:29; Pepe 2003, "The Statistical Evaluation of Medical Tests", sec. 4.4.2), bounds
  what any classifier can reach on patients. (The generator clips the relative enhancement at 0.2 only for
  slopes below -0.27 at the third phase; the first phase keeps ``s`` identifiable, so the bound holds.)
* **How many patients give the control >= 95% power at that AUC?** :func:`auc_power` (normal approximation with
  the Hanley & McNeil 1982 standard error, the rule of :mod:`compare.verdict`) and :func:`auc_power_simulated`
  (the harness's own statistic: binormal scores, stratified 10-fold CV, fold-averaged AUC, patient-level
  bootstrap CI from :mod:`replicate.experiments.protocol`); :func:`smallest_cohort` searches the cohort size.

A learned classifier does not reach the ideal AUC (finite training data, patch sampling, noise), so the size at
the ideal AUC is a floor; :func:`power_table` shows the power over a range of AUCs the approaches may reach.
The paper's numbers are not used here.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm

from replicate.cohort.synth import SLOPE_SD, SLOPE_SHIFT
from replicate.errors import ConfigError

#: the synthetic generator draws luminal A for a third of the patients (a Weyl sequence, so every prefix of n
#: patients holds n/3 of them to within one patient; replicate.cohort.synth._make_patient)
SYNTH_POSITIVE_FRACTION = 1.0 / 3.0


def ideal_auc(effect: float = 1.0) -> float:
    """The largest patient-level AUC the synthetic cohort's planted effect allows (module docstring).

    ``effect``: the generator's ``SynthConfig.effect`` (d' of the kinetic slope, >= 0). Returns
    ``Phi(effect * SLOPE_SHIFT * sqrt 2 / SLOPE_SD)``: 0.5 for effect 0, 0.760 for the default effect 1."""
    if effect < 0:
        raise ConfigError(f"effect must be >= 0, got {effect}")
    d_prime = 2.0 * effect * SLOPE_SHIFT / SLOPE_SD
    return float(norm.cdf(d_prime / math.sqrt(2.0)))


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil 1982 (Radiology 143:29, eq. 1-3) standard error of an AUC; see compare.verdict (the same
    formula, kept here so replicate/ does not import compare/)."""
    a = float(auc)
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def auc_power(auc: float, n_pos: int, n_neg: int, level: float = 0.95) -> float:
    """P(the ``level`` CI of the estimated AUC lies above 0.5) when the true AUC is ``auc``.

    Normal approximation: the CI is ``A_hat +/- z SE_HM(A_hat)``; its lower bound exceeds 0.5 exactly when
    ``A_hat > t`` with ``t - z SE_HM(t) = 0.5``; ``A_hat ~ N(auc, SE_HM(auc))`` (Hanley & McNeil 1982). Returns a
    probability in [0, 1]. Raises ConfigError for class sizes below 1 or ``auc`` outside [0.5, 1)."""
    if n_pos < 1 or n_neg < 1:
        raise ConfigError(f"class sizes must be >= 1, got {n_pos}/{n_neg}")
    if not 0.5 <= auc < 1.0:
        raise ConfigError(f"AUC must be in [0.5, 1), got {auc}")
    z = float(norm.ppf(0.5 + level / 2.0))

    def f(t):
        return t - z * hanley_mcneil_se(t, n_pos, n_neg) - 0.5

    if f(1.0 - 1e-12) <= 0:
        return 0.0
    t = brentq(f, 0.5, 1.0 - 1e-12)
    return float(norm.sf((t - auc) / hanley_mcneil_se(auc, n_pos, n_neg)))


def auc_power_simulated(auc: float, n_pos: int, n_neg: int, n_sims: int = 200, n_folds: int = 10,
                        n_boot: int = 200, seed: int = 0, level: float = 0.95) -> float:
    """Monte-Carlo power of the harness's own statistic: the fold-averaged AUC of stratified ``n_folds``-fold CV
    and its patient-level bootstrap CI (:func:`replicate.experiments.protocol.bootstrap_ci`).

    Each simulation draws binormal patient scores with equal variances and ``d' = sqrt 2 * Phi^-1(auc)`` (so the
    true AUC is ``auc``), splits them with :func:`~replicate.experiments.protocol.patient_folds` and counts whether
    the CI's lower bound exceeds 0.5. Returns the fraction of ``n_sims`` (its Monte-Carlo SE is
    sqrt(p(1-p)/n_sims))."""
    import pandas as pd

    from replicate.experiments.protocol import FoldResult, bootstrap_ci, patient_folds

    rng = np.random.default_rng(seed)
    d_prime = math.sqrt(2.0) * float(norm.ppf(auc))
    ids = [f"p{i:04d}" for i in range(n_pos + n_neg)]
    labels = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    pts = pd.DataFrame({"patient_id": ids, "label": labels})
    hits = 0
    for k in range(n_sims):
        folds = patient_folds(pts, n_folds=n_folds, seed=k)
        score = dict(zip(ids, rng.normal(size=len(ids)) + d_prime * labels))
        lab = dict(zip(ids, labels))
        res = [FoldResult(0, f.fold, list(f.test_ids), [int(lab[p]) for p in f.test_ids],
                          [float(score[p]) for p in f.test_ids], math.nan) for f in folds]
        lo, _hi = bootstrap_ci(res, n_boot=n_boot, seed=k, level=level)
        hits += lo > 0.5
    return hits / n_sims


def class_counts(n_patients: int, positive_fraction: float = SYNTH_POSITIVE_FRACTION) -> tuple[int, int]:
    """(n_pos, n_neg) of a cohort of ``n_patients`` with the given luminal A fraction (rounded)."""
    n_pos = round(n_patients * positive_fraction)
    return n_pos, n_patients - n_pos


def smallest_cohort(auc: float, power: float = 0.95, positive_fraction: float = SYNTH_POSITIVE_FRACTION,
                    n_folds: int = 10, level: float = 0.95, method: str = "hanley-mcneil", n_sims: int = 400,
                    step: int = 3, seed: int = 0, n_max: int = 2000) -> dict:
    """The smallest cohort size whose positive control reaches ``power`` at true AUC ``auc``.

    ``method="hanley-mcneil"``: :func:`auc_power`, every size from ``2 * n_folds`` up. ``method="simulation"``:
    :func:`auc_power_simulated` (``n_sims`` simulations, the harness's statistic), sizes from the Hanley-McNeil
    answer up in steps of ``step`` patients, so the answer is resolved to ``step`` patients and carries Monte-Carlo
    error (SE about 0.011 at power 0.95 with 400 simulations). The cohort needs at least ``n_folds`` patients of each
    class (stratified CV). Returns plain data ``{"auc", "power_target", "n_patients", "n_pos", "n_neg", "power",
    "method"}``. Raises ConfigError for an unknown method or when no size up to ``n_max`` is enough."""
    if method not in ("hanley-mcneil", "simulation"):
        raise ConfigError(f"power method {method!r}: expected 'hanley-mcneil' or 'simulation'")

    def out(n, n_pos, n_neg, p, how):
        return {"auc": float(auc), "power_target": float(power), "n_patients": n, "n_pos": n_pos, "n_neg": n_neg,
                "power": float(p), "method": how}

    start = None
    for n in range(2 * n_folds, n_max + 1):
        n_pos, n_neg = class_counts(n, positive_fraction)
        if min(n_pos, n_neg) < n_folds:
            continue
        p = auc_power(auc, n_pos, n_neg, level)
        if p >= power:
            start = out(n, n_pos, n_neg, p, "normal approximation with the Hanley & McNeil 1982 SE; "
                                            "lower bound of the 95% CI > 0.5")
            break
    if start is None:
        raise ConfigError(f"no cohort up to {n_max} patients gives power {power} at AUC {auc}")
    if method == "hanley-mcneil":
        return start
    for n in range(start["n_patients"], n_max + 1, step):
        n_pos, n_neg = class_counts(n, positive_fraction)
        p = auc_power_simulated(auc, n_pos, n_neg, n_sims=n_sims, n_folds=n_folds, seed=seed, level=level)
        if p >= power:
            return out(n, n_pos, n_neg, p, f"simulation ({n_sims} runs): binormal scores, stratified {n_folds}-fold "
                                           f"CV, fold-averaged AUC, patient-level bootstrap 95% CI lower bound > 0.5"
                                           f" (sizes in steps of {step})")
    raise ConfigError(f"no cohort up to {n_max} patients gives simulated power {power} at AUC {auc}")


def power_table(n_patients: int, aucs=(0.60, 0.65, 0.70, 0.76), positive_fraction: float = SYNTH_POSITIVE_FRACTION,
                level: float = 0.95) -> list[dict]:
    """Power of the positive control at ``n_patients`` for each AUC in ``aucs`` (plain rows for the report)."""
    n_pos, n_neg = class_counts(n_patients, positive_fraction)
    return [{"auc": float(a), "n_patients": n_patients, "n_pos": n_pos, "n_neg": n_neg,
             "power": auc_power(a, n_pos, n_neg, level)} for a in aucs]


def control_sizing(effect: float = 1.0, n_patients: int | None = None, power: float = 0.95, n_sims: int = 400,
                   seed: int = 0) -> dict:
    """Everything the report states about sizing the positive control, as plain data.

    ``{"effect", "ideal_auc", "power_target", "smallest_hanley_mcneil": {...}, "smallest_simulation": {...},
    "at_cohort": [power_table rows] (when ``n_patients`` is given), "note"}``. Takes a few seconds (simulation)."""
    a = ideal_auc(effect)
    out = {"effect": float(effect), "ideal_auc": a, "power_target": float(power)}
    if a <= 0.5:
        out["note"] = "no planted effect: the AUC the generator allows is 0.5; this is the negative control"
        return out
    out["smallest_hanley_mcneil"] = smallest_cohort(a, power)
    out["smallest_simulation"] = smallest_cohort(a, power, method="simulation", n_sims=n_sims, seed=seed)
    if n_patients is not None:
        out["at_cohort"] = power_table(n_patients, aucs=(0.60, 0.65, 0.70, round(a, 3)))
    out["note"] = ("sizes are at the ideal AUC, which no learned classifier reaches; the power at lower AUCs is in "
                   "'at_cohort'")
    return out
