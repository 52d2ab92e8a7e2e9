"""Validity of the protocol (issue 5, item 8): no signal gives a CI around 0.5; patient-level folds stop the
leakage that patch-level splitting lets through; the same seed gives the same AUCs on CPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from replicate.experiments import grid as ex
from replicate.experiments import protocol
from replicate.experiments.protocol import FoldResult
from replicate.experiments.svm import make_svm
from replicate.experiments.training import TrainSettings, fold_data, train_fold

N_PATIENTS, SEED = 33, 0   # 11 luminal A, 22 other: enough for 10 stratified folds


@pytest.fixture(scope="module")
def null_stores(request, tmp_path_factory):
    """`synth --effect 0` (labels independent of the images), cached across sessions in pytest's cache."""
    cache = getattr(request.config, "cache", None)  # reuse across sessions when pytest's cache is on
    name = f"synth-effect0-{N_PATIENTS}-{SEED}"
    root = Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)
    return ex.synthetic_stores(root, N_PATIENTS, SEED, effect=0.0, sizes=[80])


def _patch_stats(patches: np.ndarray) -> np.ndarray:
    """Cheap hand-made patch features (per-channel mean, std, centre mean) for the SVM pipeline."""
    p = np.asarray(patches, dtype=np.float64)
    c = p.shape[-1] // 4
    centre = p[:, :, c:-c, c:-c]
    return np.concatenate([p.mean(axis=(2, 3)), p.std(axis=(2, 3)), centre.mean(axis=(2, 3))], axis=1)


def test_no_effect_cohort_gives_a_ci_containing_half(null_stores):
    store = null_stores[80]
    pts = ex.patients_table(store.index)
    feats = {"rows": np.arange(len(store.index)),
             "blobs": {"stats": _patch_stats(store.patches)}}
    cell = ex.Cell("validity", "features", "stats", patch_size=80, kernel="rbf", blob="stats")
    results = []
    for r in range(3):
        for fold in protocol.patient_folds(pts, 10, seed=protocol.repeat_seed(0, r), repeat=r):
            results.append(ex.svm_fold(cell, fold, fold_data(store.index, fold), feats))
    s = protocol.summarise(results, n_boot=1000)
    assert s.ci_low < 0.5 < s.ci_high, s


def _fingerprint_cohort(n_patients=40, per_patient=12, side=16, seed=0):
    """Each patient has its own texture (a random power spectrum); labels are random coin flips. Features are
    the patch's power spectrum, so a classifier can recognise a patient but learn nothing about labels."""
    rng = np.random.default_rng(seed)
    feats, pid, labels = [], [], []
    lab = rng.permutation(np.r_[np.ones(n_patients // 2), np.zeros(n_patients - n_patients // 2)]).astype(int)
    for i in range(n_patients):
        spectrum = rng.gamma(1.0, 1.0, size=(side, side))
        for _ in range(per_patient):
            phase = rng.uniform(0, 2 * np.pi, size=(side, side))
            img = np.real(np.fft.ifft2(np.sqrt(spectrum) * np.exp(1j * phase)))
            img += rng.normal(0, 0.02, img.shape)
            feats.append(np.log1p(np.abs(np.fft.fft2(img)) ** 2).ravel()[: side * side // 2])
            pid.append(f"P{i:03d}")
            labels.append(lab[i])
    return np.asarray(feats), np.asarray(pid), np.asarray(labels)


def test_leakage_patient_folds_near_half_patch_folds_far_above():
    x, pid, y = _fingerprint_cohort()
    pts = pd.DataFrame({"patient_id": pid, "label": y}).drop_duplicates("patient_id")
    # Under the protocol: patient-level folds, patient scores = mean patch score.
    results = []
    for fold in protocol.patient_folds(pts, 10, seed=1):
        tr = np.isin(pid, fold.train_ids)
        te = np.isin(pid, fold.test_ids)
        m = make_svm("rbf").fit(x[tr], y[tr])
        sc = protocol.patient_scores(pid[te], m.decision_function(x[te]))
        labels = dict(zip(pid, y))
        results.append(FoldResult(0, fold.fold, list(sc.index), [labels[p] for p in sc.index],
                                  list(sc.values), 1.0))
    good = protocol.summarise(results, n_boot=1000)
    assert good.ci_low < 0.5 < good.ci_high and abs(good.test_auc - 0.5) < 0.15, good
    # Deliberately wrong: patches split at patch level, so every test patient also trains the model.
    leaked = []
    for tr, te in protocol.patch_level_folds(y, 10, seed=1):
        m = make_svm("rbf").fit(x[tr], y[tr])
        leaked.append(roc_auc_score(y[te], m.decision_function(x[te])))
    assert np.mean(leaked) > 0.8 > good.ci_high


def test_same_seed_same_aucs_on_cpu(null_stores):
    store = null_stores[80]
    pts = ex.patients_table(store.index)
    fold = protocol.patient_folds(pts, 10, seed=0)[0]
    rows = ex.select_rows(store.index, 2, 1)
    data = fold_data(store.index, fold, rows)
    spec = ex.scratch_spec("CIFAR")
    st = TrainSettings(epochs=1, batch_size=4, base_lr=0.001, max_iters_per_epoch=2, eval_batch=64)
    a = train_fold(spec, store, fold, data, st, seed=123, device=torch.device("cpu"))
    b = train_fold(spec, store, fold, data, st, seed=123, device=torch.device("cpu"))
    c = train_fold(spec, store, fold, data, st, seed=124, device=torch.device("cpu"))
    assert a.test_scores == b.test_scores and a.train_auc == b.train_auc
    assert a.extra["curves"]["loss"] == b.extra["curves"]["loss"]
    assert a.test_scores != c.test_scores
