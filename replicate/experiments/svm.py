"""SVM on deep features (Zhu et al. 2019, "Off-the-shelf deep features"; Table 5 kernels linear, rbf, poly).

The paper trains "SVMs with different kernel functions" on extracted features and does not give C, gamma or the
polynomial degree: we use scikit-learn's defaults (C=1, gamma="scale", degree=3, coef0=0) on standardised
features (``StandardScaler``, fitted on the training patches of the fold only). The decision function is the patch
score; a patient's score is the mean over its patches (replicate.experiments.protocol.patient_scores). The linear
kernel's problem is libsvm's, solved by libsvm or, with more training rows than features, by an interior-point
method (replicate.experiments.svm_linear; docs/svm_linear.md).
"""
from __future__ import annotations

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from replicate.experiments.svm_linear import LinearKernelSVC

KERNELS = ("linear", "rbf", "poly")


def make_svm(kernel: str = "poly", C: float = 1.0, degree: int = 3, gamma="scale", seed: int = 0,
             max_iter: int = -1) -> Pipeline:
    """A scikit-learn estimator: standardise, then the SVM of ``kernel``. Score with ``decision_function``.

    rbf and poly: libsvm's ``SVC(kernel)``. linear: :class:`replicate.experiments.svm_linear.LinearKernelSVC`,
    the same problem as ``SVC(kernel="linear")``, solved by libsvm when the training matrix has at most as many
    rows as features and by an interior-point method when it has more (the fixed rule
    ``svm_linear.use_interior_point``; libsvm's SMO takes ~1,000 h at the per-patch 40,194 x 1000). Raises
    ValueError for a kernel outside :data:`KERNELS`."""
    if kernel not in KERNELS:
        raise ValueError(f"SVM kernel {kernel!r}: expected one of {KERNELS} (paper Table 5)")
    if kernel == "linear":
        svc = LinearKernelSVC(C=C, random_state=seed, max_iter=max_iter)
    else:
        svc = SVC(kernel=kernel, C=C, degree=degree, gamma=gamma, random_state=seed, max_iter=max_iter)
    return Pipeline([("scale", StandardScaler()), ("svc", svc)])


# --------------------------------------------------------------------------------------------- training unit
#: What one SVM training sample is: "patch" (one sample per patch), "patient" (the mean feature vector of a
#: patient's patches) or "region" (the mean over one lesion region, the paper's "lesion regions": one slice of one
#: box, i.e. the patches of one (patient, box, slice) -- in training the centre patch and its 4 augmentations, in
#: testing the 5 patches of one test slice; replicate.cohort.patches).
#:
#: The paper preset (and every preset) uses "patch" by default (``grid.Preset.svm_unit``; :data:`DEFAULT_UNIT_WHY`).
#: The other reading: "Off-the-shelf deep features" says "SVM would not perform well when its feature length becomes
#: larger than its training samples", which reads naturally as per patient (a fold trains on ~243 patients against
#: 1000 FC features; per patch it has ~40,194 training rows). Both readings are run where affordable
#: (``python -m replicate plan`` prints the cost of each; docs/svm_linear.md).
TRAINING_UNITS = ("patch", "patient", "region")
DEFAULT_UNIT = "patch"
#: Why the default training unit is one patch (printed by ``plan`` and in docs/svm_linear.md).
DEFAULT_UNIT_WHY = (
    "the paper states it: 'Our patch-based approach treated each patch as a training sample in training phase' "
    "(Model Evaluation). Its remark that an SVM suffers 'when its feature length becomes larger than its training "
    "samples' is given as the reason to pool feature maps over x-y, and fits this reading as well: unpooled, every "
    "Table 6 map at 224 x 224 is longer (40,768 for inception_5a/output to 802,816 for conv1/7x7_s2) than the "
    "~40,194 training patches of a fold, pooled (64-1024) it is shorter; per patient (~243 training samples) "
    "pooling would still leave 10 of Table 6's 12 lengths above the sample count")


def unit_groups(index, rows, unit: str):
    """The group of each row of ``index.iloc[rows]`` (a patch index: ``patient_id``, ``slice``, ``box``) for a
    training ``unit``: patch -> the row itself, patient -> patient id, region -> "patient/box/slice".
    Returns a numpy array of strings, one per row. Raises ValueError for an unknown unit."""

    if unit not in TRAINING_UNITS:
        raise ValueError(f"SVM training unit {unit!r}: expected one of {TRAINING_UNITS}")
    idx = index.iloc[np.asarray(rows)]
    pid = idx["patient_id"].astype(str).to_numpy()
    if unit == "patch":
        return np.asarray([str(r) for r in np.asarray(rows)])
    if unit == "patient":
        return pid
    return np.asarray([f"{p}/{b}/{s}" for p, b, s in zip(pid, idx["box"].to_numpy(), idx["slice"].to_numpy())])


def group_means(x, groups):
    """Mean feature vector per group: (n, D), (n,) -> ((G, D) float64 means, (G,) group keys sorted,
    (n,) position of each row's group)."""

    keys, inverse = np.unique(np.asarray(groups), return_inverse=True)
    sums = np.zeros((len(keys), x.shape[1]), np.float64)
    np.add.at(sums, inverse, np.asarray(x, np.float64))
    counts = np.bincount(inverse, minlength=len(keys)).astype(np.float64)
    return sums / counts[:, None], keys, inverse


def fit_score(kernel: str, x_train, y_train, x_score, unit: str = "patch", train_groups=None, score_groups=None,
              seed: int = 0, **svm_kwargs):
    """Fit :func:`make_svm` on training samples of the given ``unit`` and score the rows of ``x_score``.

    ``x_train`` (n, D) and ``x_score`` (m, D): patch features; ``y_train`` (n,) patch labels; ``train_groups``
    (n,) and ``score_groups`` (m,): :func:`unit_groups` of the rows (needed unless ``unit="patch"``). Each group's
    features are averaged into one sample (its label must be constant) and each score group gets one decision
    value, repeated on its rows, so a patient's score stays the mean over its rows
    (replicate.experiments.protocol.patient_scores). Returns the decision values, float64 (m,).
    Raises ValueError for an unknown unit, missing groups, or a group holding both labels."""

    if unit not in TRAINING_UNITS:
        raise ValueError(f"SVM training unit {unit!r}: expected one of {TRAINING_UNITS}")
    model = make_svm(kernel, seed=seed, **svm_kwargs)
    if unit == "patch":
        return model.fit(x_train, y_train).decision_function(x_score).astype(np.float64)
    if train_groups is None or score_groups is None:
        raise ValueError(f"SVM training unit {unit!r} needs train_groups and score_groups")
    xt, tkeys, tinv = group_means(x_train, train_groups)
    y = np.asarray(y_train).astype(int)
    yt = np.zeros(len(tkeys), int)
    yt[tinv] = y
    if not np.array_equal(yt[tinv], y):
        bad = tkeys[tinv[yt[tinv] != y][0]]
        raise ValueError(f"SVM training unit {unit!r}: group {bad!r} holds patches of both labels")
    xs, _skeys, sinv = group_means(x_score, score_groups)
    return model.fit(xt, yt).decision_function(xs)[sinv].astype(np.float64)
