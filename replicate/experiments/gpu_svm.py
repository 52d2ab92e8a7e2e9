"""An optional GPU SVM for the per-patch reading of the paper's SVM (issue 11, item 3).

``benchmarks/svm_fit.py`` measured scikit-learn's SVC (libsvm) on the per-patch matrix (~40,194 x 1000) at
~1.5-1.7 h a fit (poly, rbf; extrapolated from 4,000 rows with the measured exponent ~2.5) and far longer for the
linear kernel, i.e. the Tables 5-6 grid (17 cells x 50 folds) would take >1,000 CPU-hours: more than all the
training on one H200. cuML's SVC (RAPIDS; ``pip install 'radiogenomics-replica[gpu-svm]'``) fits the same model
(libsvm's SMO formulation, same C / gamma="scale" / degree / coef0) on a GPU.

:func:`make_svm_auto` returns cuML's SVC behind the same ``StandardScaler`` when a CUDA device is present and cuML
imports, else :func:`replicate.experiments.svm.make_svm` (scikit-learn). The parity test
(tests/test_gpu_svm.py) checks AUC within 0.005 of scikit-learn on the same features, and is skipped where cuML
is not installed.
"""
from __future__ import annotations


def gpu_svm_available() -> tuple[bool, str]:
    """(available, reason): a CUDA device and an importable ``cuml.svm.SVC``."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False, "no CUDA device"
    except ImportError:  # pragma: no cover
        return False, "torch missing"
    try:
        from cuml.svm import SVC  # noqa: F401
    except Exception as e:  # ImportError, or a CUDA runtime mismatch raised at import
        return False, f"cuML not importable ({type(e).__name__}: {e}); pip install 'radiogenomics-replica[gpu-svm]'"
    return True, "cuML SVC on CUDA"


def make_gpu_svm(kernel: str = "poly", C: float = 1.0, degree: int = 3, gamma="scale", max_iter: int = -1):
    """StandardScaler + ``cuml.svm.SVC`` with scikit-learn's defaults (the paper gives no C/gamma/degree)."""
    from cuml.svm import SVC
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from replicate.experiments.svm import KERNELS

    if kernel not in KERNELS:
        raise ValueError(f"SVM kernel {kernel!r}: expected one of {KERNELS} (paper Table 5)")
    return Pipeline([("scale", StandardScaler()),
                     ("svc", SVC(kernel=kernel, C=C, degree=degree, gamma=gamma, coef0=0.0, max_iter=max_iter,
                                 output_type="numpy"))])


def make_svm_auto(kernel: str = "poly", prefer_gpu: bool = True, **kw):
    """(estimator, backend name): cuML on a GPU when available and ``prefer_gpu``, else scikit-learn."""
    from replicate.experiments.svm import make_svm

    if prefer_gpu:
        ok, _ = gpu_svm_available()
        if ok:
            return make_gpu_svm(kernel, **kw), "cuml"
    return make_svm(kernel, **kw), "sklearn"
