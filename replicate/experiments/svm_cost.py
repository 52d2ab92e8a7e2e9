"""What the grid's SVM fits cost, per reading of the SVM's training unit and per solver (used by
:mod:`replicate.experiments.plan`).

The training unit (:data:`replicate.experiments.svm.TRAINING_UNITS`) sets the rows of one fit: per patch every
training patch of a fold, per patient one row per training patient, per region one row per lesion region (one
slice of one box: its centre patch and ``n_aug`` augmentations, replicate.cohort.patches). The linear kernel is
fitted by the interior-point solver when rows > features (replicate.experiments.svm_linear.use_interior_point),
whose CPU time is :data:`INTERIOR_POINT_MODEL`; the libsvm kernels' model is ``plan.SVM_MODEL``.
"""
from __future__ import annotations

#: Interior-point linear SVM CPU seconds ``a * n**b * (d / 1000)**2`` (an iteration is ``n d^2`` flop; the iteration
#: count, 15-21 here, hardly depends on n): (a, b) fitted by ``benchmarks/svm_fit.py`` (d = 1000, one BLAS thread,
#: CPU seconds of the interior-point rows n = 2000, 4000, 40194 of its before/after table: 1.13, 2.13, 26.5 s;
#: 2026-12-04 on this project's 2-core machine). docs/svm_linear.md has the table.
INTERIOR_POINT_MODEL = (3.4e-04, 1.06)


def interior_point_seconds(n: float, d: int) -> float:
    """CPU seconds of one :class:`replicate.experiments.svm_linear.InteriorPointLinearSVC` fit on (n, d)."""
    a, b = INTERIOR_POINT_MODEL
    return a * float(n) ** b * (d / 1000.0) ** 2


def svm_training_rows(unit: str, n_train_patients: float, train_patches_per_patient: float,
                      regions_per_patient: float) -> float:
    """Rows of one SVM fit for training ``unit`` (patch, patient, region), given a fold's training patients, the
    training patches each contributes and its lesion regions. Raises ValueError for an unknown unit."""
    from replicate.experiments.svm import TRAINING_UNITS

    per = {"patch": train_patches_per_patient, "patient": 1.0, "region": regions_per_patient}
    if unit not in TRAINING_UNITS:
        raise ValueError(f"SVM training unit {unit!r}: expected one of {TRAINING_UNITS}")
    return n_train_patients * per[unit]
