"""The optional GPU SVM (replicate.experiments.gpu_svm): backend choice everywhere, and parity with scikit-learn
(test AUC within 0.005 on the same standardised features) where cuML and a CUDA device are present."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from replicate.experiments.gpu_svm import gpu_svm_available, make_svm_auto


def _data(n=600, d=50, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 1 / 3).astype(int)
    x = rng.standard_normal((n, d)).astype(np.float32) + 0.8 * (2 * y - 1)[:, None] * (np.arange(d) < 5)[None, :]
    return x, y


def test_falls_back_to_sklearn_without_gpu():
    ok, why = gpu_svm_available()
    est, backend = make_svm_auto("poly")
    assert backend == ("cuml" if ok else "sklearn")
    if not ok:
        assert why
    est2, backend2 = make_svm_auto("rbf", prefer_gpu=False)
    assert backend2 == "sklearn"


@pytest.mark.parametrize("kernel", ["poly", "rbf", "linear"])
def test_cuml_parity_with_sklearn(kernel):
    ok, why = gpu_svm_available()
    if not ok:
        pytest.skip(why)
    x, y = _data()
    xt, yt = _data(seed=1)
    gpu, _ = make_svm_auto(kernel)
    cpu, _ = make_svm_auto(kernel, prefer_gpu=False)
    a_gpu = roc_auc_score(yt, np.asarray(gpu.fit(x, y).decision_function(xt)))
    a_cpu = roc_auc_score(yt, cpu.fit(x, y).decision_function(xt))
    assert abs(a_gpu - a_cpu) < 0.005
