"""Readings the paper leaves open, as settings: test-patch placement, SVM training unit, x-y pooling."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from replicate.cohort.patches import PatchConfig, centres_for_test_patches, extract_patch
from replicate.errors import ConfigError
from replicate.experiments.features import FeatureCache, pool_xy
from replicate.experiments.svm import fit_score, group_means, make_svm, unit_groups


# ------------------------------------------------------------------------------------------- test patches
def test_box_corners_is_the_default_and_unchanged():
    assert PatchConfig().test_patches == "box_corners"
    c = centres_for_test_patches((10.0, 30.0, 5.0, 45.0), 16)
    assert c == {"tl": (10.0, 5.0), "tr": (10.0, 45.0), "bl": (30.0, 5.0), "br": (30.0, 45.0), "mid": (20.0, 25.0)}


def test_oversample_crops_are_caffes_corner_and_centre_crops_of_the_region():
    # A box larger than 256/224 of the patch: the region is the box; crops sit at its corners like caffe.io.oversample
    img = np.arange(3 * 120 * 100, dtype=np.float32).reshape(3, 120, 100)
    S = 40
    box = (0.0, 99.0, 0.0, 59.0)                        # rows 0..99, columns 0..59
    c = centres_for_test_patches(box, S, "oversample")
    region = img[:, 0:100, 0:60]
    caffe = {"tl": (0, 0), "tr": (0, 60 - S), "bl": (100 - S, 0), "br": (100 - S, 60 - S)}   # oversample's ix
    for kind, (r, q) in caffe.items():
        np.testing.assert_array_equal(extract_patch(img, c[kind], S), region[:, r:r + S, q:q + S], err_msg=kind)
    np.testing.assert_array_equal(extract_patch(img, c["mid"], S), region[:, 30:70, 10:50])  # int(50 - 20) = 30
    # a small lesion: the region is patch_size * 256/224 around its centre, so the corners still differ
    s = centres_for_test_patches((50.0, 53.0, 50.0, 53.0), S, "oversample")
    assert s["mid"] == (51.5, 51.5)
    spread = S * 256 / 224 - S
    assert s["br"][0] - s["tl"][0] == pytest.approx(spread) and s["tr"][1] - s["tl"][1] == pytest.approx(spread)


def test_test_patch_setting_is_checked_and_in_the_store_key_only_when_not_default():
    with pytest.raises(ConfigError, match="test_patches"):
        PatchConfig(test_patches="random").check()
    assert "test_patches" not in PatchConfig().key_fields()
    assert PatchConfig(test_patches="oversample").key_fields()["test_patches"] == "oversample"
    assert PatchConfig(clinical_file="a.xlsx").key_fields() == PatchConfig().key_fields()


# ------------------------------------------------------------------------------------------- pooling
def test_xy_pooling_average_and_max():
    t = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    assert torch.equal(pool_xy(t), t.mean(dim=(2, 3)))
    assert torch.equal(pool_xy(t, "max"), t[:, :, -1, -1])
    fc = torch.randn(2, 7)
    assert torch.equal(pool_xy(fc, "max"), fc) and torch.equal(pool_xy(fc.reshape(2, 7, 1, 1)), fc)
    with pytest.raises(ValueError, match="pooling"):
        pool_xy(t, "median")


def test_pooling_is_in_the_feature_cache_key(tmp_path):
    cache = FeatureCache(tmp_path)
    rows = np.arange(5)
    avg = cache.key("net", "w", "store", rows, 224, "inception_3a/output")
    assert avg == cache.key("net", "w", "store", rows, 224, "inception_3a/output", "avg")
    assert avg != cache.key("net", "w", "store", rows, 224, "inception_3a/output", "max")


# ------------------------------------------------------------------------------------------- SVM unit
def _toy_index(n_pat=12, per=6):
    rows = []
    for p in range(n_pat):
        for k in range(per):
            rows.append({"patient_id": f"P{p:02d}", "label": p % 2, "slice": k // 3, "box": 0})
    return pd.DataFrame(rows)


def test_unit_groups_and_group_means():
    idx = _toy_index()
    rows = np.arange(len(idx))
    assert len(set(unit_groups(idx, rows, "patch"))) == len(idx)
    assert len(set(unit_groups(idx, rows, "patient"))) == 12
    assert len(set(unit_groups(idx, rows, "region"))) == 24        # 2 slices a patient
    x = np.arange(12, dtype=float).reshape(6, 2)
    m, keys, inv = group_means(x, ["b", "a", "b", "a", "c", "c"])
    assert list(keys) == ["a", "b", "c"] and list(inv) == [1, 0, 1, 0, 2, 2]
    np.testing.assert_allclose(m[0], x[[1, 3]].mean(axis=0))
    with pytest.raises(ValueError, match="training unit"):
        unit_groups(idx, rows, "lesion")


def test_fit_score_per_patch_is_todays_svm_and_per_patient_fits_one_sample_a_patient():
    rng = np.random.default_rng(0)
    idx = _toy_index()
    y = idx.label.to_numpy()
    x = rng.normal(size=(len(idx), 4)) + y[:, None]
    tr = np.arange(len(idx)) < 48                      # 8 patients train, 4 score
    got = fit_score("linear", x[tr], y[tr], x[~tr])
    want = make_svm("linear").fit(x[tr], y[tr]).decision_function(x[~tr])
    np.testing.assert_allclose(got, want)
    g = unit_groups(idx, np.arange(len(idx)), "patient")
    per_pat = fit_score("linear", x[tr], y[tr], x[~tr], "patient", g[tr], g[~tr])
    # equals an SVM fitted on the 8 patient means, scoring the 4 patient means; constant within a patient
    mt, _, _ = group_means(x[tr], g[tr])
    ms, _, inv = group_means(x[~tr], g[~tr])
    yt = np.array([0, 1] * 4)
    np.testing.assert_allclose(per_pat, make_svm("linear").fit(mt, yt).decision_function(ms)[inv])
    assert len(np.unique(per_pat)) == 4
    with pytest.raises(ValueError, match="needs train_groups"):
        fit_score("linear", x[tr], y[tr], x[~tr], "patient")
    bad = g[tr].copy()
    bad[:] = "one"
    with pytest.raises(ValueError, match="both labels"):
        fit_score("linear", x[tr], y[tr], x[~tr], "patient", bad, g[~tr])
