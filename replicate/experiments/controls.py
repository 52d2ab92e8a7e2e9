"""Positive and negative controls on the synthetic cohort: is a cell's AUC above chance, Holm-corrected.

A synthetic run plants a known effect (replicate.cohort.synth, ``effect``); the harness must find it with the
planted effect and must not find it with ``effect = 0``. A cell "finds" the effect when its AUC is above 0.5 at the
level of a single 95% CI's lower bound (one-sided alpha = 0.025), with the family-wise error over the cells checked
held by Holm's step-down procedure (Holm 1979, Scand J Stat 6:65). Each cell's one-sided p-value comes from its
95% CI by a normal approximation on the interval's lower side (bootstrap intervals need not be symmetric):
``SE = (auc - low) / 1.96``, ``p = 1 - Phi((auc - 0.5) / SE)``, so for one cell the rule is exactly "the CI's lower
bound is above 0.5".

The sizing of the cohort that gives the positive control its power is in :mod:`replicate.experiments.power`.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import norm

ALPHA = 0.025   # one-sided: the level at which a single 95% CI's lower bound exceeds 0.5
Z95 = float(norm.ppf(0.975))


def above_chance_p(auc: float, ci) -> float:
    """One-sided p-value of "AUC > 0.5" from the AUC and its 95% CI (normal approximation with the SE of the
    interval's lower side, ``(auc - low) / 1.96``; the whole width / 3.92 when the AUC is not above ``low``). A
    zero SE gives 0 or 1 (0.5 exactly at 0.5). Raises ValueError for a CI with high < low."""
    lo, hi = (float(v) for v in ci)
    if hi < lo:
        raise ValueError(f"CI {ci!r}: high < low")
    se = (float(auc) - lo) / Z95 if float(auc) > lo else (hi - lo) / (2 * Z95)
    if se == 0:
        return 0.0 if auc > 0.5 else (1.0 if auc < 0.5 else 0.5)
    return float(norm.sf((float(auc) - 0.5) / se))


def holm_adjust(pvalues) -> np.ndarray:
    """Holm 1979 step-down adjusted p-values: sorted ascending, ``p_adj(k) = max_{j<=k} min(1, (m - j + 1) p(j))``,
    returned in the input order. Reject where ``p_adj < alpha``."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adj = np.maximum.accumulate(adj)
    out = np.empty(m)
    out[order] = adj
    return out


def check_cells(cells: Mapping[str, tuple[float, tuple[float, float]]], alpha: float = ALPHA) -> list[dict]:
    """Which cells find an effect, Holm-corrected across ``cells``.

    ``cells``: cell id -> (test AUC, (95% CI low, high)). Returns one plain row per cell, in the input order:
    ``{"cell", "auc", "ci_low", "ci_high", "p", "p_holm", "found"}`` (``found``: ``p_holm < alpha``)."""
    ids = list(cells)
    ps = [above_chance_p(cells[c][0], cells[c][1]) for c in ids]
    adj = holm_adjust(ps) if ids else np.array([])
    return [{"cell": c, "auc": float(cells[c][0]), "ci_low": float(cells[c][1][0]), "ci_high": float(cells[c][1][1]),
             "p": p, "p_holm": float(a), "found": bool(a < alpha)} for c, p, a in zip(ids, ps, adj)]


def control_cells(spec: Mapping) -> list[str]:
    """The cell ids a preset's ``controls`` (``{"required": [...], "any_of": [...], ...}``) checks, required first;
    [] for no controls."""
    return list(spec.get("required", [])) + list(spec.get("any_of", [])) if spec else []


def positive_control_passes(rows: list[dict], required: list[str], any_of: list[str]) -> tuple[bool, str]:
    """The positive control: every cell in ``required`` (e.g. the deep-features + SVM cell) and at least one of
    ``any_of`` (e.g. the from-scratch nets) found the effect (:func:`check_cells` rows). Returns (passed, why)."""
    found = {r["cell"] for r in rows if r["found"]}
    known = {r["cell"] for r in rows}
    missing = [c for c in required + any_of if c not in known]
    if missing:
        return False, f"cells not checked: {', '.join(missing)}"
    miss = [c for c in required if c not in found]
    if miss:
        return False, f"effect not found by {', '.join(miss)}"
    if any_of and not (found & set(any_of)):
        return False, f"effect found by none of {', '.join(any_of)}"
    return True, f"planted effect found (Holm-corrected, one-sided alpha {ALPHA:g})"


def negative_control_passes(rows: list[dict]) -> tuple[bool, str]:
    """The negative control (``effect = 0``): no cell finds an effect after Holm's correction. Returns
    (passed, why)."""
    found = [r["cell"] for r in rows if r["found"]]
    if found:
        return False, f"effect 'found' without one by {', '.join(found)}"
    return True, f"no cell above chance (Holm-corrected over {len(rows)} cells)"



#: A trained control cell "learned only the class prior" when its median final training loss is not this much
#: below the loss of predicting the prior (nats). Stated before any run; informative, it does not change a verdict.
PRIOR_MARGIN = 0.01


def prior_entropy(prevalence: float) -> float:
    """Cross-entropy (nats) of predicting the class prior ``prevalence`` for every sample: the training loss a net
    reaches without using its input (softmax loss of a constant prediction; Caffe's SoftmaxWithLoss, mean over the
    batch). Raises ValueError outside (0, 1)."""
    q = float(prevalence)
    if not 0.0 < q < 1.0:
        raise ValueError(f"prevalence must be in (0, 1), got {q}")
    return float(-(q * np.log(q) + (1 - q) * np.log(1 - q)))


def training_diagnostic(fold_results, prevalence: float) -> dict | None:
    """Did a trained cell's net use its input? From its folds' per-epoch training loss
    (``FoldResult.extra["curves"]["loss"]``): the median over folds of the first and last epoch's mean loss, the
    class-prior entropy (:func:`prior_entropy` at the cohort's luminal A fraction ``prevalence``), the median
    training AUC and ``prior_only`` = last loss > prior entropy - :data:`PRIOR_MARGIN`, i.e. the net fits the class
    frequencies and not the images (its scores are then a near-constant function of the input fixed by the random
    initialisation, and its AUC says nothing about the effect). None for cells without curves (deep features)."""
    first, last, tr = [], [], []
    for r in fold_results:
        loss = (getattr(r, "extra", {}) or {}).get("curves", {}).get("loss") or []
        loss = [v for v in loss if v == v]
        if not loss:
            continue
        first.append(loss[0])
        last.append(loss[-1])
        tr.append(float(r.train_auc))
    if not last:
        return None
    h = prior_entropy(prevalence)
    end = float(np.median(last))
    return {"first_epoch_loss": float(np.median(first)), "last_epoch_loss": end, "prior_entropy": h,
            "train_auc": float(np.nanmedian(tr)), "prior_only": bool(end > h - PRIOR_MARGIN),
            "margin": PRIOR_MARGIN}
