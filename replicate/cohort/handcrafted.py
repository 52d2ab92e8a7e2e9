"""Hand-crafted lesion features: the comparison Zhu et al. 2019 leave to future work ("a direct comparison of deep
learning with hand-crafted features"); issue 12, "Beyond the paper", item 4.

Per patient, from the **same three subtraction channels and the same box** the patches come from
(:mod:`replicate.cohort.patches`): the box slices of pre, post1..post3 are read (:func:`replicate.cohort.duke.load_phases`),
subtracted and divided by the case's pre-contrast reference (:func:`replicate.cohort.preprocess.subtraction_channels`,
:func:`~replicate.cohort.preprocess.reference_intensity`), resampled in-plane to the cohort's target spacing
(:func:`~replicate.cohort.preprocess.resample`) and cropped to the box. Only the box is annotated, so the lesion is
the box's enhancing voxels: Otsu's threshold (Otsu 1979, IEEE Trans SMC 9:62; ``skimage.filters.threshold_otsu``) of
the first subtraction channel inside the box. With several boxes the largest (by volume) is used.

Groups (column lists below; units in the names):

* :data:`KINETIC` -- the enhancement curve of the lesion (mean over its voxels, S0 = pre, S1..S3 = posts), as in
  Mazurowski et al. 2014 (Radiology 273:365) and Saha et al. 2018 (Br J Cancer 119:508): peak enhancement
  ``max_k (S_k - S0) / S0``; wash-in ``(S1 - S0) / S0`` (enhancement per phase interval at the first post-contrast
  phase; the phase times are not used); washout slope ``(S_last - S1) / (S1 - S0) / (n_posts - 1)`` (relative
  change per phase after the first post-contrast phase: < 0 wash-out, > 0 persistent); signal enhancement ratio
  ``SER = (S1 - S0) / (S_last - S0)``; time to peak (phase 1..3); washout fraction: share of lesion voxels with
  voxel SER > 1.1 (the usual SER wash-out threshold, Hylton et al. 2012, Radiology 263:663).
* :data:`BOX_SIZE` -- the box alone: extent along rows, columns and slices in mm, volume in ml.
  :data:`SHAPE` adds the in-plane elongation (long / short side) and the lesion's fill of the box.
* :data:`TEXTURE` -- grey-level co-occurrence (Haralick et al. 1973, IEEE Trans SMC 3:610) of the first
  subtraction channel inside the box: ``skimage.feature.graycomatrix`` (32 grey levels over the fixed window
  [LOW, HIGH] relative-enhancement units of :mod:`replicate.cohort.preprocess`, distance 1 pixel, angles 0, 45, 90,
  135 degrees, symmetric, normalised) on each box slice, ``skimage.feature.graycoprops`` averaged over angles and
  slices. pyradiomics (van Griethuysen et al. 2017) is the field's library, but its 3.1.0 sdist does not build on
  Python 3.11 (its build imports numpy without declaring it), so scikit-image is used; no texture code is ours.
* :data:`SCANNER` -- manufacturer and field strength (confounder baseline).

Errors: a patient without a box or with unreadable files raises the loader's errors
(:class:`replicate.errors.ReplicateError` subclasses).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from replicate.cohort.preprocess import (HIGH, LOW, map_coordinate, reference_intensity, resample, resampled_shape,
                                         subtraction_channels)

KINETIC = ["peak_enhancement", "wash_in", "washout_slope", "ser", "time_to_peak", "washout_fraction"]
BOX_SIZE = ["box_rows_mm", "box_cols_mm", "box_slices_mm", "box_volume_ml"]
SHAPE = BOX_SIZE + ["box_elongation", "lesion_fill"]
GLCM_PROPS = ["contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation", "entropy"]
TEXTURE = [f"glcm_{p}" for p in GLCM_PROPS]
SCANNER = ["manufacturer", "field_strength"]
GLCM_LEVELS = 32
SER_WASHOUT = 1.1


def glcm_features(channel: np.ndarray) -> dict:
    """GLCM texture of a (Z, h, w) stack in relative-enhancement units: scikit-image ``graycomatrix`` /
    ``graycoprops`` per slice (32 levels over [LOW, HIGH], distance 1, four angles, symmetric, normed), averaged
    over angles and slices. Returns ``glcm_<prop>`` for :data:`GLCM_PROPS`."""
    from skimage.feature import graycomatrix, graycoprops

    q = np.clip((np.asarray(channel, np.float64) - LOW) / (HIGH - LOW), 0, 1 - 1e-9)
    q = np.floor(q * GLCM_LEVELS).astype(np.uint8)
    vals = {p: [] for p in GLCM_PROPS}
    for sl in q:
        if min(sl.shape) < 2:
            continue
        g = graycomatrix(sl, distances=[1], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=GLCM_LEVELS,
                         symmetric=True, normed=True)
        for p in GLCM_PROPS:
            v = graycoprops(g, p)
            vals[p].append(float(np.nanmean(v)) if np.isfinite(v).any() else 0.0)
    return {f"glcm_{p}": (float(np.mean(v)) if v else 0.0) for p, v in vals.items()}


def lesion_features(phases: np.ndarray, rows: tuple[int, int], cols: tuple[int, int],
                    spacing: tuple[float, float], slice_thickness: float, target_spacing: float | None = None
                    ) -> dict:
    """Kinetic, size/shape and texture features of one lesion.

    ``phases``: (1 + n_posts, Z, H, W) pre, post1.. on the box's Z slices (stored pixel grid, any numeric dtype);
    ``rows``/``cols``: the box's (first, last) pixel, 0-based inclusive, on that grid; ``spacing``: (row, column)
    pixel spacing in mm; ``slice_thickness`` in mm; ``target_spacing``: in-plane mm to resample to first (the
    patches' grid; None = keep). Returns a dict of :data:`KINETIC` + :data:`SHAPE` + :data:`TEXTURE` values."""
    ph = np.asarray(phases, dtype=np.float32)
    if ph.ndim != 4 or ph.shape[0] < 4:
        raise ValueError(f"phases: expected (1 + posts >= 4, Z, H, W), got {ph.shape}")
    ref = reference_intensity(ph[0])
    sub = subtraction_channels(ph) / np.float32(ref)           # (Z, 3, H, W), relative enhancement
    pre = ph[0] / np.float32(ref)                               # (Z, H, W), same units
    h, w = ph.shape[-2:]
    r0, r1 = rows
    c0, c1 = cols
    if target_spacing:
        nh, nw = resampled_shape((h, w), spacing, target_spacing)
        sub = resample(sub, spacing, target_spacing)
        pre = resample(pre, spacing, target_spacing)
        r0, r1 = (int(round(map_coordinate(v, h, nh))) for v in rows)
        c0, c1 = (int(round(map_coordinate(v, w, nw))) for v in cols)
        px = (target_spacing, target_spacing)
    else:
        px = spacing
    box_sub = sub[:, :, r0:r1 + 1, c0:c1 + 1]                  # (Z, 3, h, w)
    box_pre = pre[:, r0:r1 + 1, c0:c1 + 1]
    e1 = box_sub[:, 0]
    from skimage.filters import threshold_otsu

    mask = e1 > threshold_otsu(e1) if np.ptp(e1) > 0 else np.ones_like(e1, bool)
    if not mask.any():
        mask = np.ones_like(e1, bool)
    s0 = float(box_pre[mask].mean())
    curve = np.array([float(box_sub[:, k][mask].mean()) for k in range(3)])   # S_k - S0, reference units
    denom = s0 if s0 > 1e-6 else 1e-6
    pe = curve / denom
    e_first, e_last = curve[0], curve[-1]
    vox_last = box_sub[:, 2][mask]
    vox_first = box_sub[:, 0][mask]
    with np.errstate(divide="ignore", invalid="ignore"):
        vox_ser = np.where(vox_last > 1e-6, vox_first / vox_last, np.inf)
    rows_mm = (r1 - r0 + 1) * px[0]
    cols_mm = (c1 - c0 + 1) * px[1]
    slices_mm = ph.shape[1] * float(slice_thickness)
    out = {
        "peak_enhancement": float(pe.max()),
        "wash_in": float(pe[0]),
        "washout_slope": float((e_last - e_first) / e_first / (len(curve) - 1)) if abs(e_first) > 1e-9 else 0.0,
        "ser": float(e_first / e_last) if abs(e_last) > 1e-9 else 0.0,
        "time_to_peak": float(np.argmax(curve) + 1),
        "washout_fraction": float(np.mean(vox_ser > SER_WASHOUT)),
        "box_rows_mm": float(rows_mm), "box_cols_mm": float(cols_mm), "box_slices_mm": float(slices_mm),
        "box_volume_ml": float(rows_mm * cols_mm * slices_mm / 1000.0),
        "box_elongation": float(max(rows_mm, cols_mm) / min(rows_mm, cols_mm)),
        "lesion_fill": float(mask.mean()),
    }
    out.update(glcm_features(e1))
    return out


def patient_features(rec, target_spacing: float | None = None) -> dict:
    """Features of one included :class:`replicate.cohort.duke.PatientRecord` (its largest box), plus
    ``patient_id``, ``label``, ``manufacturer``, ``field_strength``. Reads only the box's slices."""
    from replicate.cohort.duke import load_phases

    if not rec.boxes:
        raise ValueError(f"{rec.patient_id}: no lesion box")
    b = max(rec.boxes, key=lambda b: (b.row1 - b.row0 + 1) * (b.col1 - b.col0 + 1) * (b.slice1 - b.slice0 + 1))
    phases = load_phases(rec, list(range(b.slice0, b.slice1 + 1)))
    f = lesion_features(phases, (b.row0, b.row1), (b.col0, b.col1),
                        (rec.pixel_spacing_row, rec.pixel_spacing_col), rec.slice_thickness, target_spacing)
    return {"patient_id": rec.patient_id, "label": int(rec.label), "manufacturer": rec.manufacturer,
            "field_strength": float(rec.field_strength), **f}


def _job(args):
    rec, target = args
    return patient_features(rec, target)


def cohort_features(cohort, target_spacing: float | None = None, workers: int = 1, progress: bool = False
                    ) -> pd.DataFrame:
    """One row per included patient of a :class:`replicate.cohort.duke.Cohort` (or a list of records), columns
    ``patient_id, label, manufacturer, field_strength`` + :data:`KINETIC` + :data:`SHAPE` + :data:`TEXTURE`.
    ``target_spacing``: None = the cohort's (the patches' grid); 0 = no resampling."""
    recs = cohort.included if hasattr(cohort, "included") else list(cohort)
    if target_spacing is None and hasattr(cohort, "target_spacing"):
        target_spacing = cohort.target_spacing()
    jobs = [(r, target_spacing or None) for r in recs]
    if workers > 1 and len(jobs) > 1:
        from multiprocessing import get_context

        with get_context("forkserver").Pool(min(workers, len(jobs))) as pool:
            it = pool.imap(_job, jobs)
            rows = list(_bar(it, len(jobs), progress))
    else:
        rows = [_job(j) for j in _bar(jobs, len(jobs), progress)]
    return pd.DataFrame(rows)


def _bar(it, total, enabled):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="hand-crafted features", unit="patient")
