"""Hand-crafted and confounder baselines under the paper's protocol (issue 12, "Beyond the paper", item 4).

Features: :mod:`replicate.cohort.handcrafted` (one row per patient). Each baseline is a feature group; each is
fitted by two standard scikit-learn classifiers -- L2-regularised logistic regression (``C = 1``) and an SVM
(:func:`replicate.experiments.svm.make_svm`, RBF kernel, scikit-learn defaults), both after a ``StandardScaler``
fitted on the training patients of the fold only -- under the same protocol as every table cell: patient-level
stratified 10-fold CV (:func:`replicate.experiments.protocol.patient_folds`, the grid's seeds), fold-averaged AUC,
median repeat, patient-bootstrap 95% CI (:func:`replicate.experiments.protocol.summarise`).

Baselines (``results/baselines.csv``, column ``baseline``):

* ``kinetic`` -- :data:`~replicate.cohort.handcrafted.KINETIC`;
* ``texture`` -- :data:`~replicate.cohort.handcrafted.TEXTURE`;
* ``box_size`` -- :data:`~replicate.cohort.handcrafted.BOX_SIZE` (confounder: the annotator's box alone);
* ``scanner`` -- manufacturer x field strength, one-hot (confounder: which scanner);
* ``all_handcrafted`` -- kinetic + size/shape + texture (the image features; the scanner is not one).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from replicate.cohort.handcrafted import BOX_SIZE, KINETIC, SHAPE, TEXTURE
from replicate.experiments.featurecv import FeatureCandidate, cv_summary
from replicate.experiments.protocol import N_BOOT, N_FOLDS, ProtocolError

BASELINES = ("kinetic", "texture", "box_size", "scanner", "all_handcrafted")
CLASSIFIERS = ("logistic", "svm")
COLUMNS = ["baseline", "classifier", "test_auc", "ci_low", "ci_high", "n_features", "n_patients", "repeat_aucs",
           "method"]


def make_classifier(name: str):
    """``logistic``: StandardScaler + LogisticRegression(C=1, L2); ``svm``: StandardScaler + SVC(rbf)."""
    if name == "logistic":
        return Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(C=1.0, max_iter=2000))])
    if name == "svm":
        from replicate.experiments.svm import make_svm

        return make_svm("rbf")
    raise ValueError(f"classifier {name!r}: expected one of {CLASSIFIERS}")


def design(features: pd.DataFrame, baseline: str) -> np.ndarray:
    """The (patients, D) matrix of one baseline. ``scanner``: one-hot of (manufacturer, field strength) pairs (the
    encoding uses no label, so building it on the whole cohort leaks nothing)."""
    if baseline == "kinetic":
        cols = KINETIC
    elif baseline == "texture":
        cols = TEXTURE
    elif baseline == "box_size":
        cols = BOX_SIZE
    elif baseline == "all_handcrafted":
        cols = KINETIC + SHAPE + TEXTURE
    elif baseline == "scanner":
        key = features["manufacturer"].astype(str) + " " + features["field_strength"].round(1).astype(str) + " T"
        return pd.get_dummies(key).to_numpy(dtype=np.float64)
    else:
        raise ValueError(f"baseline {baseline!r}: expected one of {BASELINES}")
    missing = [c for c in cols if c not in features.columns]
    if missing:
        raise ProtocolError(f"hand-crafted features: missing column(s) {missing}")
    return np.nan_to_num(features[cols].to_numpy(dtype=np.float64))


def evaluate_baselines(features: pd.DataFrame, baselines=BASELINES, classifiers=CLASSIFIERS,
                       n_folds: int = N_FOLDS, n_repeats: int = 1, seed: int = 0, n_boot: int = N_BOOT
                       ) -> pd.DataFrame:
    """One row per (baseline, classifier): :data:`COLUMNS`. ``features``: one row per patient
    (:func:`replicate.cohort.handcrafted.cohort_features`), with ``patient_id`` and ``label``."""
    pts = features[["patient_id", "label"]].astype({"patient_id": str, "label": int}).reset_index(drop=True)
    rows = []
    for b in baselines:
        X = design(features.reset_index(drop=True), b)
        for c in classifiers:
            cand = FeatureCandidate(X, pts["patient_id"].to_numpy(), (lambda c=c: make_classifier(c)))
            s = cv_summary(cand, pts, n_folds=n_folds, n_repeats=n_repeats, seed=seed, n_boot=n_boot)
            rows.append({"baseline": b, "classifier": c, "test_auc": s.test_auc, "ci_low": s.ci_low,
                         "ci_high": s.ci_high, "n_features": int(X.shape[1]), "n_patients": len(pts),
                         "repeat_aucs": ";".join(f"{v:.4f}" for v in s.repeat_aucs),
                         "method": f"{n_folds}-fold patient-level stratified CV x {n_repeats}, median repeat, "
                                   f"patient bootstrap 95% CI (n_boot={n_boot})"})
    return pd.DataFrame(rows, columns=COLUMNS)
