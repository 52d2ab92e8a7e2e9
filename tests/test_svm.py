"""replicate/svm.py: standardise + SVC, the Table 5 kernels."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from replicate.experiments.svm import KERNELS, make_svm


@pytest.mark.parametrize("kernel", KERNELS)
def test_each_kernel_separates_a_separable_problem(kernel):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    model = make_svm(kernel).fit(x[:150], y[:150])
    assert roc_auc_score(y[150:], model.decision_function(x[150:])) > 0.9


def test_standardisation_makes_feature_scale_irrelevant():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 5))
    y = (x[:, 2] > 0).astype(int)
    scaled = x * np.array([1e4, 1e-3, 1.0, 50.0, 7.0])
    a = make_svm("rbf").fit(x, y).decision_function(x)
    b = make_svm("rbf").fit(scaled, y).decision_function(scaled)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_is_a_sklearn_estimator_and_rejects_unknown_kernel():
    clone(make_svm("poly"))
    with pytest.raises(ValueError, match="sigmoid"):
        make_svm("sigmoid")
