"""replicate.experiments.permutation: the Ojala & Garriga p-value, best-of-k, the SVM fast path."""
import numpy as np
import pandas as pd
import pytest

from replicate.experiments.permutation import permutation_test, permuted_labels, svm_evaluator


def cohort(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(int)
    pts = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "label": y})
    signal = np.c_[1.5 * y + rng.normal(size=n), rng.normal(size=(n, 2))]
    noise = rng.normal(size=(n, 3))
    return pts, signal, noise


def test_p_value_formula_and_what_evaluate_sees():
    pts, _, _ = cohort()
    seen = []

    def evaluate(t):
        seen.append(t.label.to_numpy().copy())
        return 0.5

    r = permutation_test(evaluate, pts, n_perm=99, seed=1)
    assert r.p[0] == 1.0 and r.p_max == 1.0            # every permutation ties the observed value
    assert np.array_equal(seen[0], pts.label.to_numpy())  # the first call sees the real labels
    assert all(s.sum() == pts.label.sum() for s in seen)   # permutations keep the class sizes
    assert sum(not np.array_equal(s, seen[0]) for s in seen[1:]) >= 95
    with pytest.raises(ValueError, match="99"):
        permutation_test(evaluate, pts, n_perm=50)


def test_strata_permutation_keeps_labels_inside_each_stratum():
    y = np.array([1, 0, 0, 1, 1, 0, 0, 0])
    st = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    z = permuted_labels(y, np.random.default_rng(0), st)
    assert z[:4].sum() == 2 and z[4:].sum() == 1


def test_svm_fast_path_finds_signal_and_best_of_k_uses_the_max_distribution():
    pts, signal, noise = cohort()
    pids = pts.patient_id.to_numpy()
    feats = {"signal": (signal, pids, None, None, "linear"), "noise": (noise, pids, None, None, "linear")}
    ev = svm_evaluator(feats, n_folds=3)
    r = permutation_test(ev, pts, n_perm=99, seed=0, names=ev.names)
    assert r.names == ["signal", "noise"]
    assert r.observed[0] > 0.75 and r.p[0] == pytest.approx(0.01)
    assert r.p_max == pytest.approx(0.01)
    # the maximum over k configurations stochastically dominates each one: the best-of-k p is never smaller
    # than the p of the same observed value judged against a single configuration's null
    mx = r.null.max(axis=1)
    assert (mx >= r.null[:, 1]).all()
    p_noise_as_best = (1 + np.sum(mx >= r.observed[1] - 1e-12)) / 100
    assert p_noise_as_best >= r.p[1]
    js = r.to_json()
    assert js["n_perm"] == 99 and "Ojala" in js["method"]
