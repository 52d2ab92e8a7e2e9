"""replicate.cohort.handcrafted + replicate.experiments.baselines: known kinetics on a phantom, the DICOM path equals
the in-memory one, and on the synthetic cohort the kinetic baseline finds the planted slope while box size does not."""
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("skimage")

from replicate.cohort.handcrafted import BOX_SIZE, KINETIC, TEXTURE, cohort_features, lesion_features  # noqa: E402
from replicate.cohort.synth import SynthConfig, _make_patient, generate  # noqa: E402
from replicate.experiments.baselines import BASELINES, COLUMNS, evaluate_baselines  # noqa: E402


def phantom(slope, amp=300.0, size=40, box=(10, 25, 12, 29), z=4):
    """Pre 200 everywhere; inside the box's central disc uptake amp * (1, 1 + s, 1 + 2 s); 2 % background uptake."""
    yy, xx = np.mgrid[0:size, 0:size]
    r0, r1, c0, c1 = box
    disc = ((yy - (r0 + r1) / 2) ** 2 + (xx - (c0 + c1) / 2) ** 2) < 6 ** 2
    pre = np.full((z, size, size), 200.0)
    posts = [pre + np.where(disc, amp * (1 + slope * k), 4.0) for k in range(3)]
    return np.stack([pre] + posts), box


def test_kinetics_of_a_phantom_are_the_planted_curve():
    for s in (-0.2, 0.0, 0.15):
        ph, (r0, r1, c0, c1) = phantom(s)
        f = lesion_features(ph, (r0, r1), (c0, c1), (0.8, 0.8), 2.0)
        assert f["washout_slope"] == pytest.approx(s, abs=1e-6)
        assert f["ser"] == pytest.approx(1 / (1 + 2 * s), abs=1e-6)
        assert f["wash_in"] == pytest.approx(300 / 200, abs=1e-6)
        assert f["peak_enhancement"] == pytest.approx(max(1.5, 1.5 * (1 + 2 * s)), abs=1e-6)
        assert f["time_to_peak"] == (1.0 if s < 0 else 3.0 if s > 0 else 1.0)
        assert f["washout_fraction"] == (1.0 if s < -0.05 else 0.0)
        assert f["box_rows_mm"] == pytest.approx(16 * 0.8) and f["box_cols_mm"] == pytest.approx(18 * 0.8)
        assert f["box_slices_mm"] == pytest.approx(8.0)
        assert f["box_volume_ml"] == pytest.approx(16 * 0.8 * 18 * 0.8 * 8 / 1000)
        assert 0 < f["lesion_fill"] < 1
        assert set(TEXTURE) <= set(f) and all(np.isfinite(f[t]) for t in TEXTURE)


def test_dicom_path_equals_the_in_memory_volumes(tmp_path):
    cfg = SynthConfig(patients=3, seed=5, workers=1)
    generate(tmp_path / "c", cfg)
    from replicate.cohort.duke import scan_cohort, CohortSettings

    coh = scan_cohort(tmp_path / "c", CohortSettings(workers=1))
    got = cohort_features(coh, target_spacing=0).set_index("patient_id")
    for i in range(1, 4):
        t, vols, _ = _make_patient(i, cfg, "")
        ph = np.stack(vols)[:4, t.box_slice0:t.box_slice1 + 1]
        want = lesion_features(ph, (t.box_row0, t.box_row1), (t.box_col0, t.box_col1), (t.pixel_spacing,) * 2,
                               t.slice_thickness)
        row = got.loc[t.patient_id]
        if t.flipped:   # columns mirrored on the stored grid: kinetics and sizes agree, texture may not exactly
            keys = KINETIC + BOX_SIZE
        else:
            keys = KINETIC + BOX_SIZE + TEXTURE
        for k in keys:
            assert row[k] == pytest.approx(want[k], rel=1e-5, abs=1e-9), (t.patient_id, k)
        assert row["label"] == t.label and row["manufacturer"] == t.manufacturer


def synthetic_features(n, effect=1.0, seed=0):
    """Features of the synthetic cohort's patients straight from the generator's volumes (the DICOM round trip is
    the test above): same draws as ``python -m replicate synth --patients n --effect e --seed s``."""
    cfg = SynthConfig(patients=n, seed=seed, effect=effect)
    rows = []
    for i in range(1, n + 1):
        t, vols, _ = _make_patient(i, cfg, "")
        ph = np.stack(vols)[:4, t.box_slice0:t.box_slice1 + 1]
        f = lesion_features(ph, (t.box_row0, t.box_row1), (t.box_col0, t.box_col1), (t.pixel_spacing,) * 2,
                            t.slice_thickness)
        rows.append({"patient_id": t.patient_id, "label": t.label, "manufacturer": t.manufacturer,
                     "field_strength": t.field_strength, "slope": t.kinetic_slope, **f})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_kinetic_baseline_finds_the_planted_effect_and_box_size_does_not():
    """Cohort size from a power computation, not from trying seeds: at the generator's ideal AUC 0.76 the
    fold-averaged AUC's bootstrap 95% CI (10 folds, about 4 patients a class a fold) has a lower bound above 0.5 in
    about 95% of cohorts of 120 patients (simulation of the generator's slope model, 2026-11; 60 patients gave about
    60%); box size, independent of the label by construction, stays at or below 0.5 in about 97.5%."""
    df = synthetic_features(120)
    assert np.corrcoef(df.slope, df.washout_slope)[0, 1] > 0.99
    out = evaluate_baselines(df, baselines=("kinetic", "box_size"), classifiers=("logistic",), n_boot=1000)
    assert list(out.columns) == COLUMNS
    k = out.set_index("baseline").loc["kinetic"]
    b = out.set_index("baseline").loc["box_size"]
    assert k.ci_low > 0.5, out.to_string()
    assert b.ci_low <= 0.5, out.to_string()


def test_baseline_table_has_every_baseline_and_classifier():
    rng = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(n)], "label": (np.arange(n) % 3 == 0).astype(int),
                       "manufacturer": rng.choice(["GE", "SIEMENS"], n), "field_strength": rng.choice([1.5, 3.0], n)})
    for c in KINETIC + BOX_SIZE + ["box_elongation", "lesion_fill"] + TEXTURE:
        df[c] = rng.normal(size=n)
    out = evaluate_baselines(df, n_folds=5, n_boot=100)
    assert list(out.columns) == COLUMNS
    assert [(r.baseline, r.classifier) for r in out.itertuples()] == [
        (b, c) for b in BASELINES for c in ("logistic", "svm")]
    assert ((out.ci_low <= out.test_auc) & (out.test_auc <= out.ci_high)).all()
    assert out.set_index(["baseline", "classifier"]).n_features["scanner", "logistic"] == 4
