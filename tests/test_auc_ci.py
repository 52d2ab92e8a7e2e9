"""CI methods of a cross-validated AUC (replicate.experiments.auc_ci)."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from replicate.experiments import auc_ci
from replicate.experiments.protocol import FoldResult, ProtocolError


def _folds(y, s, k=10, seed=0):
    rng = np.random.default_rng(seed)
    fid = np.empty(len(y), int)
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        fid[idx] = np.arange(idx.size) % k
    return [FoldResult(0, f, [f"p{i}" for i in np.flatnonzero(fid == f)], list(y[fid == f]), list(s[fid == f]),
                       float("nan")) for f in range(k)]


def _brute(y, s):
    """Placement values by the definition (ties 1/2)."""
    pos, neg = s[y == 1], s[y == 0]
    cmp = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return cmp.mean(), cmp.mean(axis=1), cmp.mean(axis=0)


def test_ledell_equals_delong_on_one_fold():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(9, int), np.zeros(14, int)]
    s = np.round(rng.normal(y * 0.8, 1.0), 1)            # rounded: ties present
    a, v_pos, v_neg = _brute(y, s)
    got_auc, got_var = auc_ci.ledell_variance(_folds(y, s, k=1))
    # LeDell's sigma^2 / n is DeLong's variance with the 1/m (not 1/(m-1)) sample variances
    assert got_auc == pytest.approx(a)
    assert got_var == pytest.approx(np.var(v_pos) / 9 + np.var(v_neg) / 14, rel=1e-12)
    d = auc_ci.delong_pooled_ci(_folds(y, s, k=1))
    assert d["auc"] == pytest.approx(a)
    assert d["se"] ** 2 == pytest.approx(np.var(v_pos, ddof=1) / 9 + np.var(v_neg, ddof=1) / 14, rel=1e-12)


def test_pseudo_values_average_to_fold_auc():
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(5, int), np.zeros(7, int)]
    s = rng.normal(size=12)
    a, pv = auc_ci.pseudo_values(y, s)
    assert pv.mean() == pytest.approx(a)
    assert a == pytest.approx(_brute(y, s)[0])


def test_perfect_separation_has_zero_width():
    y = np.r_[np.ones(20, int), np.zeros(40, int)]
    s = y + np.linspace(0, 0.5, 60)
    r = auc_ci.ledell_ci(_folds(y, s, k=5))
    assert r["auc"] == 1.0 and r["se"] == 0.0 and r["ci"] == (1.0, 1.0)


def test_ledell_covers_binormal_auc():
    """Fixed (not refitted) scores: out-of-fold scores are then independent, and the IC interval's coverage of the
    binormal AUC Phi(d / sqrt 2) is close to nominal (MC SE 0.015 at 200 draws)."""
    d, hits = 1.0, 0
    truth = norm.cdf(d / np.sqrt(2))
    y = np.r_[np.ones(40, int), np.zeros(80, int)]
    for r in range(200):
        s = np.random.default_rng(r).normal(y * d, 1.0)
        lo, hi = auc_ci.ledell_ci(_folds(y, s, seed=r))["ci"]
        hits += lo <= truth <= hi
    assert 0.90 <= hits / 200 <= 0.99


def test_cv_ci_dispatch_and_errors():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(30, int), np.zeros(60, int)]
    folds = _folds(y, rng.normal(y * 0.5, 1.0))
    for m in auc_ci.PREFERENCE:
        lo, hi = auc_ci.cv_ci(folds, m, n_boot=200)
        assert 0.0 <= lo < hi <= 1.0
    with pytest.raises(ValueError, match="CI method"):
        auc_ci.cv_ci(folds, "nested_cv")
    bad = _folds(y, rng.normal(size=90))
    bad[0].test_labels = [1] * len(bad[0].test_labels)
    with pytest.raises(ProtocolError, match="one class"):
        auc_ci.ledell_ci(bad)


def test_choose_primary_is_first_qualifying_in_order():
    cov = {"ledell_ic": {"e0": 0.97, "e1": 0.92}, "patient_bootstrap": {"e0": 0.93, "e1": 0.95},
           "fold_bootstrap": {"e0": 0.99, "e1": 0.99}}
    assert auc_ci.choose_primary(cov) == "patient_bootstrap"
    assert auc_ci.choose_primary({"ledell_ic": 0.95}) == "ledell_ic"
    assert auc_ci.choose_primary({"ledell_ic": 0.5, "nested_cv": 0.99}) is None   # nested CV is not eligible
    assert auc_ci.PRIMARY_CI == (auc_ci.choose_primary(auc_ci.MEASURED_COVERAGE) or auc_ci.FALLBACK_CI)
    assert auc_ci.PRIMARY_CI in auc_ci.primary_statement()


def test_nested_cv_bounds_its_se():
    rng = np.random.default_rng(4)
    n = 60
    pts = pd.DataFrame({"patient_id": [f"p{i:02d}" for i in range(n)], "label": (np.arange(n) % 3 == 0).astype(int)})
    x = pd.Series(rng.normal(pts.label * 1.0, 1.0), index=pts.patient_id)

    def fixed(train_ids, score_ids, train_labels):   # a "model" that ignores its training set
        return x.reindex([str(i) for i in score_ids])

    r = auc_ci.nested_cv_ci(fixed, pts, n_folds=5, n_reps=2, seed=0)
    assert r["n_fits"] == 2 * (10 + 5)
    lo, hi = r["ci"]
    assert lo < r["auc"] < hi
    # fixed scores: every fit scores alike, so the estimate is the whole-sample AUC up to fold noise, and the SE
    # sits within [1, sqrt(K)] times the IC SE of that AUC (the clip of Bates et al.)
    base = auc_ci.ledell_ci([FoldResult(0, 0, list(x.index), list(pts.label), list(x), 0.0)])
    assert r["auc"] == pytest.approx(base["auc"], abs=0.05)
    assert 0.7 * base["se"] <= r["se"] <= np.sqrt(5) * 1.3 * base["se"]
