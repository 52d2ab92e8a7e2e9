"""SVM on deep features (Zhu et al. 2019, "Off-the-shelf deep features"; Table 5 kernels linear, rbf, poly).

The paper trains "SVMs with different kernel functions" on extracted features and does not give C, gamma or the
polynomial degree: we use scikit-learn's defaults (C=1, gamma="scale", degree=3, coef0=0) on standardised
features (``StandardScaler``, fitted on the training patches of the fold only). The decision function is the patch
score; a patient's score is the mean over its patches (replicate.experiments.protocol.patient_scores).
"""
from __future__ import annotations

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

KERNELS = ("linear", "rbf", "poly")


def make_svm(kernel: str = "poly", C: float = 1.0, degree: int = 3, gamma="scale", seed: int = 0,
             max_iter: int = -1) -> Pipeline:
    """A scikit-learn estimator: standardise, then ``SVC(kernel)``. Score with ``decision_function``."""
    if kernel not in KERNELS:
        raise ValueError(f"SVM kernel {kernel!r}: expected one of {KERNELS} (paper Table 5)")
    return Pipeline([
        ("scale", StandardScaler()),
        ("svc", SVC(kernel=kernel, C=C, degree=degree, gamma=gamma, random_state=seed, max_iter=max_iter)),
    ])
