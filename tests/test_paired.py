"""replicate.experiments.paired: DeLong against its definition, Holm by hand, the paired bootstrap's behaviour."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from replicate.experiments import grid
from replicate.experiments.paired import (Claim, Comparison, Predictions, claims, delong, holm, paired_difference,
                                          paired_tests)
from replicate.experiments.protocol import ProtocolError, patient_folds, repeat_seed


def make_predictions(n=120, shifts=None, repeats=2, seed=0, n_folds=10):
    """Cells scoring the same patients: score = shift * label + N(0, 1) (shared noise part makes them correlated)."""
    rng = np.random.default_rng(seed)
    shifts = shifts or {"A": 1.0, "B": 0.0}
    pts = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "label": (np.arange(n) % 3 == 0).astype(int)})
    common = rng.normal(size=n)
    rows = []
    for r in range(repeats):
        folds = patient_folds(pts, n_folds, seed=repeat_seed(0, r), repeat=r)
        fold_of = {p: f.fold for f in folds for p in f.test_ids}
        for cell, sh in shifts.items():
            s = sh * pts.label.to_numpy() + 0.5 * common + rng.normal(size=n)
            rows.append(pd.DataFrame({"patient": pts.patient_id, "cell": cell, "repeat": r,
                                      "fold": pts.patient_id.map(fold_of), "score": s, "label": pts.label}))
    return pd.concat(rows, ignore_index=True)


def delong_by_definition(y, a, b):
    """DeLong 1988 structural components, O(m n) (the textbook form)."""
    y = np.asarray(y)
    out = []
    for s in (a, b):
        x, z = s[y == 1], s[y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    m, n = (y == 1).sum(), (y == 0).sum()
    v10 = np.vstack([o[1] for o in out])
    v01 = np.vstack([o[2] for o in out])
    S = np.cov(v10) / m + np.cov(v01) / n
    return out[0][0] - out[1][0], np.sqrt(S[0, 0] + S[1, 1] - 2 * S[0, 1])


def test_delong_matches_its_definition_and_sklearn_auc():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(30), np.zeros(50)].astype(int)
    a = y + rng.normal(size=80)
    b = np.round(0.5 * y + rng.normal(size=80), 1)   # ties
    r = delong(y, a, b)
    d, se = delong_by_definition(y, a, b)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, a))
    assert r["auc_b"] == pytest.approx(roc_auc_score(y, b))
    assert r["diff"] == pytest.approx(d)
    assert r["se"] == pytest.approx(se)
    assert 0 < r["p"] < 1


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.02, np.nan])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1])


def test_identical_cells_differ_by_exactly_zero():
    df = make_predictions(shifts={"A": 1.0})
    df = pd.concat([df, df.assign(cell="A2")])
    r = paired_difference(Predictions(df), ["A"], ["A2"], n_boot=200)
    assert r["diff"] == 0 and r["ci_low"] == 0 and r["ci_high"] == 0 and r["p_boot"] == 1.0


def test_a_real_difference_is_found_and_a_null_one_is_not():
    pred = Predictions(make_predictions(n=150, shifts={"A": 1.2, "B": 0.0, "C": 0.0}))
    r = paired_difference(pred, ["A"], ["B"], n_boot=500)
    assert r["diff"] > 0.15 and r["ci_low"] > 0 and r["p_boot"] < 0.01 and r["delong_p"] < 0.01
    n = paired_difference(pred, ["B"], ["C"], n_boot=500)
    assert n["ci_low"] < 0 < n["ci_high"] and n["p_boot"] > 0.05


def test_best_of_side_is_reselected_in_each_resample():
    pred = Predictions(make_predictions(n=90, shifts={"A": 0.3, "B": 0.3, "C": 0.0}, repeats=1))
    w = pred.bootstrap_weights(300, 1)
    both = paired_difference(pred, ["A", "B"], ["C"], weights=w)
    only_a = paired_difference(pred, ["A"], ["C"], weights=w)
    only_b = paired_difference(pred, ["B"], ["C"], weights=w)
    assert both["diff"] == pytest.approx(max(only_a["diff"], only_b["diff"]))
    # the maximum is taken per resample, so its distribution sits at or above each single cell's
    assert both["ci_low"] >= min(only_a["ci_low"], only_b["ci_low"])
    assert both["ci_high"] >= max(only_a["ci_high"], only_b["ci_high"]) - 1e-12


def test_claims_name_cells_of_the_paper_grid():
    ids = {c.id for c in grid.unique_cells(grid.get_preset("paper"))}
    cl = claims()
    assert {c.id for c in cl} == {"transfer_vs_scratch", "features_vs_transfer", "fc_best_layer", "poly_kernel",
                                  "googlenet_vs_vgg_features"}
    for c in cl:
        for cmp in c.comparisons:
            assert set(cmp.a) <= ids and set(cmp.b) <= ids and cmp.a and cmp.b
    fc = next(c for c in cl if c.id == "fc_best_layer")
    assert len(fc.comparisons) == len(grid.LAYER_BLOBS) - 1


def test_paired_tests_table_holm_and_missing_cells():
    df = make_predictions(n=90, shifts={"A": 1.0, "B": 0.0, "C": 0.2}, repeats=1)
    fam = [Claim("x", "A beats the others", "test", (Comparison("A-B", ("A",), ("B",)),
                                                     Comparison("A-C", ("A",), ("C",)))),
           Claim("y", "needs a missing cell", "test", (Comparison("A-Z", ("A",), ("Z",)),))]
    out = paired_tests(df, fam, n_boot=200)
    assert list(out.comparison) == ["A-B", "A-C"]
    assert (out.p_holm_claim >= out.p_boot).all() and (out.p_holm_all >= out.p_holm_claim - 1e-12).all()
    with pytest.raises(ProtocolError, match="Z"):
        paired_tests(df, fam, n_boot=50, skip_missing=False)


def test_bad_predictions_are_refused():
    df = make_predictions(n=40, repeats=1)
    with pytest.raises(ProtocolError, match="missing column"):
        Predictions(df.drop(columns="fold"))
    with pytest.raises(ProtocolError, match="scores 39 of 40"):
        Predictions(df.drop(index=0))


def test_percentile_p_agrees_with_the_percentile_ci():
    """The p-value inverts the percentile interval: the 95% CI excludes 0 exactly when p < 0.05 (away from the
    boundary, where the +1 of a finite B decides towards 'no difference')."""
    from replicate.experiments.paired import percentile_p

    rng = np.random.default_rng(3)
    for shift in np.linspace(-0.08, 0.08, 41):
        d = rng.normal(shift, 0.03, size=10_000)
        lo, hi = np.quantile(d, [0.025, 0.975])
        p = percentile_p(d)
        excludes = lo > 0 or hi < 0
        if abs(min(abs(lo), abs(hi))) > 1e-3:
            assert excludes == (p < 0.05), (shift, lo, hi, p)
