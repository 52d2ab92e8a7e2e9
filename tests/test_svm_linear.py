"""replicate/experiments/svm_linear.py: the interior-point linear SVM solves libsvm's SVC(kernel="linear") problem.

The reference is libsvm itself at a tight tolerance (``tol=1e-7``; its default ``1e-3`` stops early, docs/svm_linear.md),
on weakly separable standardised features with more rows than features (the per-patch regime) and fewer (per
patient). Tolerances asserted: decision values within 1e-3 of the reference's decision-value SD, held-out AUC within
5e-4 (equal to 3 decimals), objective no higher than libsvm's and no lower than libsvm's dual objective.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from replicate.experiments.svm import make_svm
from replicate.experiments.svm_linear import (InteriorPointLinearSVC, LinearKernelSVC, hinge_objective,
                                              use_interior_point)


def weak_problem(n, d, seed=0, n_test=1000):
    """Two Gaussian classes 0.5 SD apart along a random direction, 1/3 positive (benchmarks/svm_fit.synthetic),
    standardised on the training rows: (x, y, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)

    def draw(m):
        y = (rng.random(m) < 1 / 3).astype(int)
        return rng.standard_normal((m, d)) + (0.5 * (2 * y - 1))[:, None] * direction[None, :], y

    x, y = draw(n)
    xt, yt = draw(n_test)
    sc = StandardScaler().fit(x)
    return sc.transform(x), y, sc.transform(xt), yt


def libsvm_objectives(svc):
    """(primal w, b, dual objective) of a fitted linear SVC."""
    w = (svc.dual_coef_ @ svc.support_vectors_).ravel()
    return w, float(svc.intercept_[0]), float(np.abs(svc.dual_coef_).sum() - 0.5 * w @ w)


@pytest.mark.parametrize("n,d", [(400, 40), (60, 100)])
def test_matches_tight_libsvm(n, d):
    x, y, xt, yt = weak_problem(n, d)
    ref = SVC(kernel="linear", tol=1e-7).fit(x, y)
    ipm = InteriorPointLinearSVC().fit(x, y)
    s = 2 * y - 1
    w, b, dual = libsvm_objectives(ref)
    p_ref = hinge_objective(w, b, x, s)
    assert ipm.duality_gap_ < 1e-8
    assert dual - 1e-9 * p_ref <= ipm.objective_ <= p_ref * (1 + 1e-9)   # between libsvm's dual and primal
    f_ref, f = ref.decision_function(xt), ipm.decision_function(xt)
    assert np.abs(f - f_ref).max() < 1e-3 * f_ref.std()
    assert abs(roc_auc_score(yt, f) - roc_auc_score(yt, f_ref)) < 5e-4
    np.testing.assert_array_equal(ipm.predict(xt), ref.predict(xt))


def test_default_libsvm_is_an_approximation_of_the_same_optimum():
    # libsvm at its default tol=1e-3 (the grid's solver before) lands within its own stopping error of the optimum
    x, y, xt, yt = weak_problem(400, 40, seed=1)
    ref = SVC(kernel="linear").fit(x, y)
    ipm = InteriorPointLinearSVC().fit(x, y)
    w, b, _ = libsvm_objectives(ref)
    assert ipm.objective_ <= hinge_objective(w, b, x, 2 * y - 1)
    f_ref, f = ref.decision_function(xt), ipm.decision_function(xt)
    assert np.abs(f - f_ref).max() < 5e-2 * f_ref.std()
    assert abs(roc_auc_score(yt, f) - roc_auc_score(yt, f_ref)) < 5e-4


def test_labels_and_sign_follow_sklearn():
    x, y, xt, _ = weak_problem(200, 10, seed=2)
    labels = np.where(y == 1, "luminalA", "other")
    m = InteriorPointLinearSVC().fit(x, labels)
    ref = SVC(kernel="linear", tol=1e-7).fit(x, labels)
    assert list(m.classes_) == list(ref.classes_)
    assert np.corrcoef(m.decision_function(xt), ref.decision_function(xt))[0, 1] > 0.999


def test_the_rule_picks_the_solver_by_shape_only():
    assert use_interior_point(401, 400) and not use_interior_point(400, 400) and not use_interior_point(243, 1000)
    x, y, xt, _ = weak_problem(120, 20, seed=3)
    tall = LinearKernelSVC().fit(x, y)
    wide = LinearKernelSVC().fit(x[:15], y[:15])
    assert tall.solver_ == "interior-point" and wide.solver_ == "libsvm"
    ref = SVC(kernel="linear", tol=1e-7).fit(x, y).decision_function(xt)
    assert np.abs(tall.decision_function(xt) - ref).max() < 1e-3 * ref.std()
    pipe = clone(make_svm("linear")).fit(x, y)
    assert pipe.named_steps["svc"].solver_ == "interior-point"
    np.testing.assert_allclose(pipe.decision_function(xt), tall.decision_function(StandardScaler().fit(x)
                                                                                  .transform(xt)), atol=1e-6)


def test_bad_input_is_refused():
    x, y, _, _ = weak_problem(50, 5)
    with pytest.raises(ValueError, match="two classes"):
        InteriorPointLinearSVC().fit(x, np.zeros(50))
    with pytest.raises(ValueError, match="C must be > 0"):
        InteriorPointLinearSVC(C=0).fit(x, y)
    with pytest.warns(ConvergenceWarning, match="duality gap"):
        InteriorPointLinearSVC(max_iter=2).fit(x, y)


def test_plan_prices_each_reading_and_the_linear_kernel_by_its_solver():
    from replicate.experiments.plan import SVM_MODEL, svm_seconds
    from replicate.experiments.svm_cost import interior_point_seconds, svm_training_rows

    assert svm_seconds("linear", 40194, 1000) == interior_point_seconds(40194, 1000) < 120
    a, b = SVM_MODEL["linear"]
    assert svm_seconds("linear", 243, 1000) == pytest.approx(a * 243 ** b)
    assert svm_seconds("poly", 40194, 1000) == pytest.approx(SVM_MODEL["poly"][0] * 40194 ** SVM_MODEL["poly"][1])
    assert [svm_training_rows(u, 243, 165.4, 33.1) for u in ("patch", "patient", "region")] == pytest.approx(
        [243 * 165.4, 243, 243 * 33.1])
    with pytest.raises(ValueError, match="training unit"):
        svm_training_rows("slice", 243, 1, 1)


def test_the_side_by_side_table_renders_both_readings(tmp_path):
    import pandas as pd

    from replicate.experiments.svm_units import COLUMNS, section_lines

    rows = [["features/GoogleNet/patch=80/kernel=poly", "patch", True, 0.61, 0.5, 0.7, 4000.0, 10],
            ["features/GoogleNet/patch=80/kernel=poly", "patient", False, 0.58, 0.46, 0.69, 108.0, 10]]
    path = tmp_path / "svm_units.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    text = "\n".join(section_lines(path))
    assert "| per patch (grid) | per patient |" in text
    assert "| features/GoogleNet/patch=80/kernel=poly | 0.61 [0.50, 0.70] (4000) | 0.58 [0.46, 0.69] (108) |" in text
    assert section_lines(tmp_path / "absent.csv") == []
