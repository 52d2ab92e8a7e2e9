"""replicate.cohort.patches: patch geometry on images with known content, and the patch store contract."""

from __future__ import annotations

import os

import numpy as np
import pytest

from replicate.cohort.duke import Box, scan_cohort
from replicate.cohort.patches import (PatchConfig, PatchStore, extract_patch, patient_patches, plan_patient,
                               choose_test_slices as window)
from replicate.cohort.synth import SynthConfig, generate


def _marker(h=60, w=70, at=(30, 40), value=7.0):
    img = np.zeros((3, h, w), np.float32)
    img[:, at[0], at[1]] = value
    img[1] *= 2
    return img


def test_centre_pixel_is_the_centre():
    p = extract_patch(_marker(at=(30, 40)), (30.0, 40.0), 16)
    assert p.shape == (3, 16, 16)
    assert p[0, 8, 8] == 7 and p[1, 8, 8] == 14 and np.count_nonzero(p[0]) == 1
    # an odd size too; a centre of x.5 rounds up
    q = extract_patch(_marker(at=(30, 40)), (29.5, 39.5), 15)
    assert q[0, 7, 7] == 7


def test_unrotated_patch_is_an_exact_crop():
    img = np.random.default_rng(0).random((3, 50, 50)).astype(np.float32)
    p = extract_patch(img, (20, 25), 10)
    np.testing.assert_array_equal(p, img[:, 15:25, 20:30])


def test_border_is_padded_with_zero():
    img = np.ones((3, 40, 40), np.float32)
    p = extract_patch(img, (0, 0), 20)      # centred on the top-left pixel
    assert (p[:, :10, :] == 0).all() and (p[:, :, :10] == 0).all()
    assert (p[:, 10:, 10:] == 1).all()
    p = extract_patch(img, (39, 39), 20, angle=30.0)
    assert p[:, -1, -1].max() == 0 and p[:, 10, 10].min() == pytest.approx(1)


@pytest.mark.parametrize("angle,moved", [(90.0, (-5, 0)), (-90.0, (5, 0)), (180.0, (0, -5)), (0.0, (0, 5))])
def test_rotation_is_counter_clockwise_as_displayed(angle, moved):
    """A marker 5 px east of the centre goes north (row - 5) for +90 degrees."""
    p = extract_patch(_marker(at=(30, 45)), (30, 40), 21, angle=angle)
    r, c = np.unravel_index(np.argmax(p[0]), p[0].shape)
    assert (r - 10, c - 10) == moved
    assert p[0].max() == pytest.approx(7.0, abs=1e-4)


def test_test_window_prefers_the_largest_area():
    small, big = Box(0, 9, 0, 9, 2, 12), Box(0, 19, 0, 19, 8, 10)
    assert window([small, big], 20, 5) == [7, 8, 9, 10, 11]    # the 3 big slices + 2 neighbours, nearest big's centre
    assert window([Box(0, 1, 0, 1, 0, 1)], 3, 5) == [0, 1, 2]  # fewer slices than 5: all of them
    assert window([Box(0, 1, 0, 1, 10, 10)], 30, 5) == [8, 9, 10, 11, 12]


@pytest.fixture(scope="module")
def cohort_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pc") / "cohort"
    generate(root, SynthConfig(patients=4, seed=3))
    return root


def test_patient_patches_follow_the_plan(cohort_root):
    c = scan_cohort(cohort_root)
    rec = c.included[0]
    cfg = PatchConfig(patch_size=40, workers=1)
    arr, rows = patient_patches(rec, cfg, c.target_spacing())
    plan = plan_patient(rec, cfg)
    box = rec.boxes[0]
    assert len(arr) == plan.count(cfg) == (box.slice1 - box.slice0 + 1) * 5 + 25
    kinds = [r["kind"] for r in rows]
    assert kinds[:5] == ["centre", "aug1", "aug2", "aug3", "aug4"] and kinds[-5:] == ["tl", "tr", "bl", "br", "mid"]
    centre = [a for a, r in zip(arr, rows) if r["kind"] == "centre"]
    # the centred patch shows the enhancing lesion in the middle and little enhancement in its corners
    mid = np.mean([p[0, 17:23, 17:23].mean() for p in centre])
    corner = np.mean([p[0, :4, :4].mean() for p in centre])
    assert mid > 0.3 and mid > 3 * abs(corner)
    again, _ = patient_patches(rec, cfg, c.target_spacing())
    np.testing.assert_array_equal(arr, again)     # deterministic augmentation


def test_store_contract_reuse_and_resume(cohort_root, tmp_path):
    cfg = PatchConfig(patch_size=32)
    s = PatchStore.build(cohort_root, cfg, tmp_path)
    assert isinstance(s.patches, np.memmap) and s.patches.dtype == np.float32
    assert s.patches.shape == (len(s.index), 3, 32, 32)
    assert list(s.index.columns[:5]) == ["patient_id", "label", "role", "slice", "kind"]
    assert set(s.index.role) == {"train", "test"}
    assert (s.index[s.index.role == "test"].groupby("patient_id").size() == 25).all()
    assert set(s.patients.patient_id) == set(s.index.patient_id)
    assert {"label", "manufacturer", "model", "field_strength"} <= set(s.patients.columns)
    assert s.key in str(s.path)
    reference = np.array(s.patches)

    # reuse: same configuration -> same key, nothing rewritten
    mtime = os.stat(s.path / "patches.f32").st_mtime_ns
    s2 = PatchStore.build(cohort_root, cfg, tmp_path)
    assert s2.key == s.key and os.stat(s.path / "patches.f32").st_mtime_ns == mtime

    # the label setting only rewrites the index
    s3 = PatchStore.build(cohort_root, PatchConfig(patch_size=32, her2_borderline="positive"), tmp_path)
    assert s3.key == s.key

    # a changed patch setting is a new store
    s4 = PatchStore.build(cohort_root, PatchConfig(patch_size=32, seed=1), tmp_path)
    assert s4.key != s.key

    # interrupted build: drop the completion mark, keep only the first patient in the journal, spoil the rest
    first = s.index.patient_id.iloc[0]
    n_first = int((s.index.patient_id == first).sum())
    (s.path / "COMPLETE").unlink()
    (s.path / "journal.txt").write_text(first + "\n")
    mm = np.memmap(s.path / "patches.f32", dtype=np.float32, mode="r+", shape=reference.shape)
    mm[n_first:] = np.nan
    mm.flush()
    del mm
    s5 = PatchStore.build(cohort_root, cfg, tmp_path)
    np.testing.assert_array_equal(np.array(s5.patches), reference)
    assert (s5.path / "COMPLETE").exists()


def test_oversample_reading_changes_only_the_corner_test_patches(cohort_root):
    c = scan_cohort(cohort_root, patients=["Breast_MRI_001", "Breast_MRI_002"])
    rec = c.included[0]
    base = PatchConfig(patch_size=40, workers=1)
    over = PatchConfig(patch_size=40, workers=1, test_patches="oversample")
    a, rows = patient_patches(rec, base, c.target_spacing())
    b, rows_b = patient_patches(rec, over, c.target_spacing())
    assert rows == rows_b
    kind = np.array([r["kind"] for r in rows])
    same = np.isin(kind, ["centre", "aug1", "aug2", "aug3", "aug4", "mid"])
    np.testing.assert_array_equal(a[same], b[same])
    corners = np.isin(kind, ["tl", "tr", "bl", "br"])
    assert all(not np.array_equal(x, y) for x, y in zip(a[corners], b[corners]))
    # oversample crops stay within the lesion-centred region: they overlap the middle crop, box-corner patches less
    mids = b[kind == "mid"][:1]
    assert np.abs(b[kind == "tl"][0] - mids[0]).mean() <= np.abs(a[kind == "tl"][0] - mids[0]).mean() + 1e-6
