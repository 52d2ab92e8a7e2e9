"""replicate.cohort.synth: same seed same bytes, the real layout, and a label signal only where --effect asks for one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from replicate.errors import ConfigError
from replicate.cohort.synth import SLOPE_SHIFT, SynthConfig, _make_patient, generate, resolve_faults


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = _digest(generate(tmp_path / "a", SynthConfig(patients=3, seed=5, workers=1)) is not None and tmp_path / "a")
    b = _digest(generate(tmp_path / "b", SynthConfig(patients=3, seed=5, workers=2)) is not None and tmp_path / "b")
    assert a == b
    assert any(k.endswith(".xlsx") for k in a) and sum(k.endswith(".dcm") for k in a) > 3 * 4 * 5
    c = _digest(generate(tmp_path / "c", SynthConfig(patients=3, seed=6, workers=1)) is not None and tmp_path / "c")
    assert set(a.values()).isdisjoint(set(v for k, v in c.items() if k.endswith(".dcm")))


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("1")
    with pytest.raises(ConfigError, match="not empty"):
        generate(tmp_path / "x", SynthConfig(patients=1))


def test_spreadsheets_have_the_real_layout(tmp_path):
    generate(tmp_path / "c", SynthConfig(patients=2, seed=1, workers=1))
    raw = pd.read_excel(tmp_path / "c" / "Clinical_and_Other_Features.xlsx", sheet_name="Data", header=None)
    assert raw.iloc[0, 0] == "Patient Information" and "Tumor Characteristics" in list(raw.iloc[0])
    names = [str(n).strip() for n in raw.iloc[1]]
    assert {"Patient ID", "ER", "PR", "HER2", "Mol Subtype", "Manufacturer", "Field Strength (Tesla)"} <= set(names)
    assert "borderline" in str(raw.iloc[2, names.index("HER2")])
    assert list(raw.iloc[3:, 0]) == ["Breast_MRI_001", "Breast_MRI_002"]
    boxes = pd.read_excel(tmp_path / "c" / "Annotation_Boxes.xlsx")
    assert list(boxes.columns) == ["Patient ID", "Start Row", "End Row", "Start Column", "End Column",
                                   "Start Slice", "End Slice"]


def test_effect_moves_only_the_kinetic_slope_by_the_stated_amount():
    """Same seed, effect 0 vs 1.5: every patient is identical except the slope, shifted by +/-1.5*SLOPE_SHIFT by
    label. At effect 0 the slope is drawn the same way for both labels (the null)."""
    for i in range(1, 5):
        t0, v0, _ = _make_patient(i, SynthConfig(effect=0.0), "")
        t1, v1, _ = _make_patient(i, SynthConfig(effect=1.5), "")
        assert t0.label == t1.label and t0.box_row0 == t1.box_row0 and t0.model == t1.model
        sign = 1 if t0.label else -1
        assert t1.kinetic_slope - t0.kinetic_slope == pytest.approx(1.5 * SLOPE_SHIFT * sign)
        np.testing.assert_array_equal(v0[0], v1[0])          # pre-contrast untouched


def test_enhancement_curve_in_the_dicom_follows_the_planted_slope(tmp_path):
    root = tmp_path / "c"
    truth = generate(root, SynthConfig(patients=4, seed=2, effect=2.0, workers=1, compress=False))
    for t in truth.itertuples():
        series = {}
        for f in root.joinpath(t.patient_id).rglob("*.dcm"):
            ds = pydicom.dcmread(f)
            series.setdefault(ds.SeriesDescription, []).append(ds)
        descs = [t.pre_description] + t.post_descriptions.split("|")
        g = (t.box_slice0 + t.box_slice1) // 2
        r, c = (t.box_row0 + t.box_row1) // 2, (t.box_col0 + t.box_col1) // 2

        def core(desc):
            ds_list = sorted(series[desc], key=lambda d: float(d.ImagePositionPatient[2]) *
                             (-1 if float(d.ImageOrientationPatient[0]) < 0 else 1))
            return ds_list[g].pixel_array[r - 1:r + 2, c - 1:c + 2].astype(float).mean()
        pre = core(descs[0])
        e1, e3 = core(descs[1]) - pre, core(descs[3]) - pre
        assert e3 / e1 == pytest.approx(1 + 2 * t.kinetic_slope, abs=0.08)


def test_fault_specs():
    f = resolve_faults(["truncated", "missing-phase:2", "corrupt:Breast_MRI_007"], 10, 0)
    assert [k for k, _ in f] == ["truncated", "missing-phase", "missing-phase", "corrupt"]
    assert len({p for _, p in f}) == 4 and ("corrupt", "Breast_MRI_007") in f
    with pytest.raises(ConfigError, match="unknown fault"):
        resolve_faults(["melted"], 10, 0)
