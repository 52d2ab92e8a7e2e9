"""A synthetic Duke-Breast-Cancer-MRI cohort, written in exactly the real collection's layout.

What is mimicked (shared/notes/duke-dataset.md; Zhu et al. 2019 "Patient Population", "Imaging and Pathology
Data", Table 1):

* ``Breast_MRI_XXX/<StudyInstanceUID>/<SeriesInstanceUID>/1-NNN.dcm`` ("classic") or the "descriptive" folder
  names; file-name zero padding varies by patient; about a third of the series are stored with InstanceNumber
  running against the slice normal and a tenth have a flipped row direction (ImageOrientationPatient[0] = -1).
* one pre-contrast and three (a quarter of patients: four) post-contrast fat-saturated T1 series, named with
  SeriesDescription values seen in the real collection (GE ``ax dyn pre`` / ``ax dyn 1st pass`` / ``Ph1/ax 3d dyn`` /
  ``Ax Vibrant MultiPhase`` / ``1st ax dyn``; Siemens ``t1_fl3d_tra_dynVIEWS_spair_ pre`` / ``... 1st pass``),
  series and acquisition times in phase order;
* scanners in Table 1's mix (GE Signa HDx/HDxt 1.5 T, FOV 38 cm, 350x350; Siemens Avanto 1.5 T, 36 cm, 448x448;
  GE Signa HDx 3.0 T, 34 cm, 350x350; Siemens TrioTim 3.0 T, 36 cm, 448x448) with their TR/TE, so the in-plane
  spacings differ (1.086, 0.804, 0.971, 0.804 mm) and the most frequent one is the 3 T GE spacing;
* ``Annotation_Boxes.xlsx`` (one box a patient; rows/columns of the pixel grid, slices counted in InstanceNumber
  order, 1-based inclusive) and ``Clinical_and_Other_Features.xlsx`` (sheet ``Data``, three header rows: group,
  column name, coding legend; ER/PR/HER2 coded 0/1(/2 = borderline), ``Mol Subtype``, missing values ``NP``).

Image content: breasts and chest wall, fat-saturated fat, smoothly varying fibroglandular tissue with background
parenchymal enhancement, Gaussian noise, scanner-dependent gain, and an ellipsoidal lesion whose contrast uptake
follows a kinetic curve: relative enhancement 1, 1+s, 1+2s over the post-contrast phases. The slope ``s`` carries the
label signal: ``s ~ N(effect * 0.05 * (+1 luminal A, -1 other), 0.10)``, i.e. luminal A lesions tend to the
persistent curve (type I) and the others to wash-out (type III) -- the kinetic association reported for luminal
subtypes (Mazurowski et al. 2014, the paper's ref. 6). ``effect`` is the separation of the two slope distributions
in standard deviations (d'): 0 gives a cohort where the label does not depend on the images at all (the null);
1 gives an ideal per-patient AUC of Phi(1/sqrt 2) = 0.76. Nothing else depends on the label.

The synthetic volumes are slabs around the lesion (lesion slices plus a margin), so a cohort stays small; the real
collection has full volumes and the paper averages 33.1 lesion slices a patient.

Same arguments, same bytes: every random draw comes from ``numpy.random.default_rng([seed, patient number])`` (a
patient's content does not depend on the cohort size), UIDs are derived from the seed, and the xlsx zip entries get
a fixed timestamp. A file ``synthetic_truth.csv`` at the root records what was planted (the loader never reads it).

Faults (``faults``) plant the exclusion reasons of :mod:`replicate.cohort.duke` in chosen patients.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, MRImageStorage,
                         generate_uid)

from replicate.errors import ConfigError

UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's prefix for generated UIDs

FAULT_KINDS = ("missing-phase", "discordant-slices", "truncated", "corrupt", "box-outside", "missing-label",
               "no-box", "phase-order")


@dataclass(frozen=True)
class Scanner:
    """One row of Table 1 (Zhu et al. 2019) plus what a DICOM header says."""

    manufacturer: str
    model: str
    field_strength: float
    fov_mm: float
    matrix: int
    tr: float
    te: float
    cases: int              # Table 1's case count (the sampling weight)
    slice_thickness: float
    gain: float             # arbitrary intensity scale of the scanner's stored values

    @property
    def spacing(self) -> float:
        return round(self.fov_mm / self.matrix, 6)


#: Table 1, with the 44 GE 1.5 T cases split 39 Signa HDx / 5 Signa HDxt as in "Imaging and Pathology Data".
SCANNERS = (
    Scanner("GE MEDICAL SYSTEMS", "Signa HDx", 1.5, 380.0, 350, 5.3, 2.4, 39, 2.0, 1.0),
    Scanner("GE MEDICAL SYSTEMS", "Signa HDxt", 1.5, 380.0, 350, 5.3, 2.4, 5, 2.0, 1.0),
    Scanner("SIEMENS", "Avanto", 1.5, 360.0, 448, 4.0, 1.3, 36, 1.0, 2.2),
    Scanner("GE MEDICAL SYSTEMS", "Signa HDx", 3.0, 340.0, 350, 5.7, 2.4, 165, 1.1, 1.3),
    Scanner("SIEMENS", "TrioTim", 3.0, 360.0, 448, 4.1, 1.4, 25, 1.0, 2.8),
)

#: SeriesDescription schemes seen in the collection: (pre, [post1, post2, post3, post4]).
GE_NAMES = (
    ("ax dyn pre", ["ax dyn 1st pass", "ax dyn 2nd pass", "ax dyn 3rd pass", "ax dyn 4th pass"]),
    ("ax 3d dyn", ["Ph1/ax 3d dyn", "Ph2/ax 3d dyn", "Ph3/ax 3d dyn", "Ph4/ax 3d dyn"]),
    ("Ax Vibrant MultiPhase", ["Ph1/Ax Vibrant MultiPhase", "Ph2/Ax Vibrant MultiPhase",
                               "Ph3/Ax Vibrant MultiPhase", "Ph4/Ax Vibrant MultiPhase"]),
    ("ax dyn", ["1st ax dyn", "2nd ax dyn", "3rd ax dyn", "4th ax dyn"]),
    ("ax 3d dyn pre", ["ax 3d dyn 1st pass", "ax 3d dyn 2nd pass", "ax 3d dyn 3rd pas", "ax 3d dyn 4th pass"]),
)
SIEMENS_NAMES = (
    ("t1_fl3d_tra_dynVIEWS_spair_ pre", ["t1_fl3d_tra_dynVIEWS_spair 1st pass", "t1_fl3d_tra_dynVIEWS_spair_2nd pass",
                                         "t1_fl3d_tra_dynVIEWS_spair 3rd pass", "t1_fl3d_tra_dynVIEWS_spair 4th pass"]),
)

SLOPE_SHIFT = 0.05   # mean kinetic slope is +/- effect * SLOPE_SHIFT
SLOPE_SD = 0.10      # per-patient spread of the slope


@dataclass
class SynthConfig:
    """Everything that determines the bytes of a synthetic cohort."""

    patients: int = 40
    seed: int = 0
    effect: float = 1.0
    layout: str = "classic"                 # "classic" | "descriptive"
    lesion_slices: tuple[int, int] = (4, 8)  # inclusive range of slices a lesion spans
    margin_slices: int = 2                   # slices above and below the lesion in the slab
    compress: bool = True                    # Deflated Explicit VR Little Endian (lossless) to keep disk small
    faults: list[tuple[str, str]] = field(default_factory=list)   # (kind, patient id)
    workers: int = 2

    def check(self) -> None:
        if self.patients < 1 or self.patients > 999:
            raise ConfigError(f"synth: --patients must be 1..999, got {self.patients}")
        if self.layout not in ("classic", "descriptive"):
            raise ConfigError(f"synth: layout must be 'classic' or 'descriptive', got {self.layout!r}")
        lo, hi = self.lesion_slices
        if not 1 <= lo <= hi:
            raise ConfigError(f"synth: lesion_slices must be 1 <= lo <= hi, got {self.lesion_slices}")
        if self.effect < 0:
            raise ConfigError(f"synth: --effect must be >= 0, got {self.effect}")
        for kind, pid in self.faults:
            if kind not in FAULT_KINDS:
                raise ConfigError(f"synth: unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")


def patient_id(i: int) -> str:
    return f"Breast_MRI_{i:03d}"


def resolve_faults(specs: list[str], patients: int, seed: int) -> list[tuple[str, str]]:
    """``KIND`` | ``KIND:N`` (N patients) | ``KIND:Breast_MRI_XXX`` -> distinct (kind, patient id) pairs."""
    rng = np.random.default_rng([seed, 991])
    pool = [patient_id(i) for i in rng.permutation(np.arange(1, patients + 1))]
    taken: set[str] = set()
    out = []
    for spec in specs:
        kind, _, arg = spec.partition(":")
        if kind not in FAULT_KINDS:
            raise ConfigError(f"synth: unknown fault {kind!r} in --fault {spec!r}; known: {', '.join(FAULT_KINDS)}")
        if arg.startswith("Breast_MRI_"):
            out.append((kind, arg))
            taken.add(arg)
            continue
        try:
            n = int(arg) if arg else 1
        except ValueError:
            raise ConfigError(f"synth: --fault {spec!r}: expected KIND, KIND:N or KIND:Breast_MRI_XXX") from None
        free = [p for p in pool if p not in taken]
        if n > len(free):
            raise ConfigError(f"synth: --fault {spec!r} needs {n} patients, only {len(free)} left")
        for p in free[:n]:
            out.append((kind, p))
            taken.add(p)
    return out


# ----------------------------------------------------------------------------------------------------------------
# one patient
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class PatientTruth:
    """What was planted in one patient (written to synthetic_truth.csv)."""

    patient_id: str
    label: int                 # 1 = luminal A under the default HER2-borderline setting (borderline = negative)
    er: int
    pr: int
    her2: int
    mol_subtype: int
    manufacturer: str
    model: str
    field_strength: float
    matrix: int
    fov_mm: float
    pixel_spacing: float
    slice_thickness: float
    n_slices: int
    n_posts: int
    descending: bool
    flipped: bool
    pre_description: str
    post_descriptions: str     # "|"-joined
    box_row0: int              # geometric box, 0-based inclusive, on the stored pixel grid
    box_row1: int
    box_col0: int
    box_col1: int
    box_slice0: int            # geometric slice index (ascending along the slice normal)
    box_slice1: int
    kinetic_slope: float
    fault: str


def _draw_receptors(rng: np.random.Generator, luminal_a: bool) -> tuple[int, int, int, int]:
    """ER, PR, HER2 (2 = borderline), Mol Subtype codes consistent with the surrogate definition."""
    if luminal_a:
        er, pr = [(1, 1), (1, 0), (0, 1)][rng.choice(3, p=[0.7, 0.25, 0.05])]
        her2 = 2 if rng.random() < 0.15 else 0
        return er, pr, her2, 0
    kind = rng.choice(3, p=[0.35, 0.2, 0.45])
    if kind == 0:       # ER/PR positive, HER2 positive
        er, pr = [(1, 1), (1, 0)][rng.choice(2)]
        return er, pr, 1, 1
    if kind == 1:       # HER2-enriched
        return 0, 0, 1, 2
    return 0, 0, (2 if rng.random() < 0.15 else 0), 3   # triple negative (HER2 borderline in some)


def _smooth_field(rng: np.random.Generator, n: int, size: int, grid: int = 20, rho: float = 0.8) -> np.ndarray:
    """(n, size, size) float32 in about [-2, 2]: low-res Gaussian noise, correlated along z, bicubic upsampled."""
    low = rng.standard_normal((n, grid, grid)).astype(np.float32)
    for k in range(1, n):
        low[k] = rho * low[k - 1] + np.sqrt(1 - rho * rho) * low[k]
    return np.stack([cv2.resize(low[k], (size, size), interpolation=cv2.INTER_CUBIC) for k in range(n)])


def _make_patient(i: int, cfg: SynthConfig, fault: str) -> tuple[PatientTruth, list[np.ndarray], dict]:
    """Draw one patient; returns the truth record, the phase volumes (geometric order, uint16) and geometry."""
    rng = np.random.default_rng([cfg.seed, i])
    # scanner and label from Weyl sequences (golden ratio, sqrt 2) with a seed-dependent start: every prefix of
    # patients follows Table 1's mix and the 1/3 luminal A rate closely, and patient i never depends on the size
    start = np.random.default_rng([cfg.seed, 0]).random(2)
    weights = np.cumsum([s.cases for s in SCANNERS]) / sum(s.cases for s in SCANNERS)
    u_scanner = (start[0] + i * 0.6180339887498949) % 1.0
    sc = SCANNERS[int(np.searchsorted(weights, u_scanner, side="right"))]
    names = GE_NAMES if sc.manufacturer.startswith("GE") else SIEMENS_NAMES
    pre_name, post_names = names[rng.choice(len(names))]
    n_posts = 4 if rng.random() < 0.25 else 3
    luminal_a = bool((start[1] + i * 0.41421356237309515) % 1.0 < 1 / 3)
    er, pr, her2, mol = _draw_receptors(rng, luminal_a)
    L = int(rng.integers(cfg.lesion_slices[0], cfg.lesion_slices[1] + 1))
    n = L + 2 * cfg.margin_slices
    M, sp = sc.matrix, sc.spacing
    descending = bool(rng.random() < 0.3)
    flipped = bool(rng.random() < 0.1)

    # anatomy on the pixel grid (mm coordinates, row 0 anterior)
    yy, xx = np.mgrid[0:M, 0:M].astype(np.float32)
    x = (xx + 0.5) * sp - sc.fov_mm / 2
    y = (yy + 0.5) * sp - sc.fov_mm / 2
    br = rng.uniform(0.17, 0.22) * sc.fov_mm                     # breast radius
    bx = rng.uniform(0.2, 0.25) * sc.fov_mm                      # breast centre |x|
    by = -0.08 * sc.fov_mm
    breasts = [((x - s * bx) ** 2 + ((y - by) / 1.1) ** 2) < br ** 2 for s in (-1, 1)]
    breast = breasts[0] | breasts[1]
    chest = ((x / (0.46 * sc.fov_mm)) ** 2 + ((y - 0.2 * sc.fov_mm) / (0.25 * sc.fov_mm)) ** 2) < 1
    chest &= y > 0.02 * sc.fov_mm
    body = breast | chest
    gland_field = _smooth_field(rng, n, M)
    gland_thr = rng.uniform(0.2, 0.9)

    # lesion: an ellipsoid inside one breast
    side = rng.choice([-1, 1])
    r_mm = rng.uniform(6.0, 13.0)
    ang = rng.uniform(0, 2 * np.pi)
    rad = rng.uniform(0, br - r_mm - 8)
    cx_mm, cy_mm = side * bx + rad * np.cos(ang), by + 1.1 * rad * np.sin(ang)
    g0 = cfg.margin_slices
    gc = g0 + (L - 1) / 2
    half = L / 2 + 0.25
    hetero = 0.6 + 0.2 * _smooth_field(rng, n, M, grid=40, rho=0.5)

    # kinetics: relative enhancement 1, 1+s, 1+2s, 1+3s; the label moves the slope by +/- effect*SLOPE_SHIFT
    slope = float(rng.normal(cfg.effect * SLOPE_SHIFT * (1 if luminal_a else -1), SLOPE_SD))
    amp = rng.uniform(0.9, 1.6) * 220.0
    curve = [amp * max(0.2, 1 + slope * k) for k in range(4)]
    bpe = rng.uniform(0.05, 0.25) * 220.0
    noise_sd = 6.0

    pre = np.zeros((n, M, M), np.float32)
    posts = [np.zeros((n, M, M), np.float32) for _ in range(n_posts)]
    lesion_any = np.zeros((M, M), bool)
    for g in range(n):
        gland = breast & (gland_field[g] > gland_thr)
        dz = (g - gc) / half
        lesion = np.zeros((M, M), bool)
        if abs(dz) < 1 and g0 <= g < g0 + L:
            rg = r_mm * np.sqrt(1 - dz * dz)
            lesion = ((x - cx_mm) ** 2 + (y - cy_mm) ** 2) < rg ** 2
            if not lesion.any():   # always at least the centre pixel
                lesion[int((cy_mm + sc.fov_mm / 2) / sp), int((cx_mm + sc.fov_mm / 2) / sp)] = True
            lesion_any |= lesion
        base = np.where(breast, 60.0, 0.0) + np.where(chest, 180.0, 0.0)
        base = np.where(gland, 220.0, base)
        base = np.where(lesion, 200.0, base).astype(np.float32)
        pre[g] = base
        for k in range(n_posts):
            enh = np.where(gland, bpe * (0.5 + 0.25 * k), 0.0) + np.where(chest, 0.2 * bpe, 0.0)
            enh = np.where(lesion, curve[k] * hetero[g], enh)
            posts[k][g] = base + enh.astype(np.float32)
    vols = []
    for v in [pre] + posts:
        noisy = v + rng.normal(0, noise_sd, v.shape).astype(np.float32) * body
        noisy = np.where(body, noisy, np.abs(rng.normal(0, 2.0, v.shape)).astype(np.float32))
        vols.append(np.clip(np.rint(noisy * sc.gain), 0, 65535).astype(np.uint16))

    rows = np.flatnonzero(lesion_any.any(axis=1))
    cols = np.flatnonzero(lesion_any.any(axis=0))
    truth = PatientTruth(
        patient_id=patient_id(i), label=int(luminal_a), er=er, pr=pr, her2=her2, mol_subtype=mol,
        manufacturer=sc.manufacturer, model=sc.model, field_strength=sc.field_strength, matrix=M,
        fov_mm=sc.fov_mm, pixel_spacing=sp, slice_thickness=sc.slice_thickness, n_slices=n, n_posts=n_posts,
        descending=descending, flipped=flipped, pre_description=pre_name,
        post_descriptions="|".join(post_names[:n_posts]),
        box_row0=int(rows[0]), box_row1=int(rows[-1]), box_col0=int(cols[0]), box_col1=int(cols[-1]),
        box_slice0=g0, box_slice1=g0 + L - 1, kinetic_slope=slope, fault=fault)
    geom = {"scanner": sc, "pad": int(rng.integers(1, 4)), "study_day": int(rng.integers(0, 700)),
            "t0": float(rng.uniform(8 * 3600, 17 * 3600)), "z0": float(rng.uniform(-80, -20))}
    return truth, vols, geom


def _uid(cfg: SynthConfig, *parts) -> str:
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=["radiogenomics-replica synth", str(cfg.seed)]
                        + [str(p) for p in parts])


def _tm(seconds: float) -> str:
    h = int(seconds // 3600)
    m = int(seconds % 3600 // 60)
    s = seconds - h * 3600 - m * 60
    return f"{h:02d}{m:02d}{s:09.6f}"


def _save(ds: FileDataset, path: Path) -> None:
    """Write a DICOM file; Deflated Explicit VR Little Endian (PS3.5 A.5) is deflated here at zlib level 1
    (pydicom uses level 6, four times slower on noisy images) -- lossless, any DICOM reader inflates it."""
    if ds.file_meta.TransferSyntaxUID != DeflatedExplicitVRLittleEndian:
        ds.save_as(path, enforce_file_format=True)
        return
    meta = ds.file_meta
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    glen = int.from_bytes(data[140:144], "little")   # (0002,0000) UL value: bytes of the meta group after it
    body = data[144 + glen:]
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    comp = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = comp.compress(body) + comp.flush()
    if len(deflated) % 2:
        deflated += b"\0"
    with open(path, "wb") as f:
        f.write(fp.getvalue() + deflated)


def _series_folder(cfg: SynthConfig, number: int, description: str, uid: str) -> str:
    if cfg.layout == "classic":
        return uid
    clean = "".join(c for c in description if c not in "/^+")
    return f"{number:.6f}-{clean}-{uid[-5:]}"


def _worker_init() -> None:
    cv2.setNumThreads(1)   # one process per core; OpenCV's own threads would oversubscribe


def _write_patient(args) -> PatientTruth:
    i, cfg, fault, root = args
    truth, vols, geom = _make_patient(i, cfg, fault)
    sc: Scanner = geom["scanner"]
    pid = truth.patient_id
    study_uid = _uid(cfg, pid, "study")
    frame_uid = _uid(cfg, pid, "frame")
    date = (np.datetime64("2007-09-01") + np.timedelta64(geom["study_day"], "D")).astype(str).replace("-", "")
    if cfg.layout == "classic":
        study_dir = Path(root) / pid / study_uid
    else:
        d = date
        study_dir = Path(root) / pid / f"{d[4:6]}-{d[6:8]}-{d[0:4]}-NA-MRI BREAST BILATERAL WWO-{study_uid[-5:]}"
    n, M, sp = truth.n_slices, truth.matrix, truth.pixel_spacing
    orient = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0] if truth.flipped else [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    normal = np.cross(orient[:3], orient[3:])
    origin = np.array([sc.fov_mm / 2 - sp / 2 if truth.flipped else -sc.fov_mm / 2 + sp / 2,
                       -sc.fov_mm / 2 + sp / 2, 0.0])
    descs = [truth.pre_description] + truth.post_descriptions.split("|")
    phases = list(range(len(descs)))
    if fault == "missing-phase":
        phases.remove(2)                       # no second post-contrast series
    times = [geom["t0"] + 95.0 * k for k in range(len(descs))]
    if fault == "phase-order":
        times[1], times[2] = times[2], times[1]
    tsyntax = DeflatedExplicitVRLittleEndian if cfg.compress else ExplicitVRLittleEndian
    pad = geom["pad"]
    series_dirs = {}
    for k in phases:
        vol = vols[k]
        n_here = n - 1 if (fault == "discordant-slices" and k == 1) else n
        series_number = 600 + 100 * k if sc.manufacturer.startswith("GE") else 10 + k
        series_uid = _uid(cfg, pid, "series", k)
        sdir = study_dir / _series_folder(cfg, series_number, descs[k], series_uid)
        sdir.mkdir(parents=True, exist_ok=True)
        series_dirs[k] = sdir
        for g in range(n_here):
            inst = (n_here - g) if truth.descending else (g + 1)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MRImageStorage
            meta.MediaStorageSOPInstanceUID = _uid(cfg, pid, "sop", k, g)
            meta.TransferSyntaxUID = tsyntax
            ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID = MRImageStorage
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
            ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = _tm(times[k])
            ds.Modality = "MR"
            ds.Manufacturer = sc.manufacturer
            ds.ManufacturerModelName = sc.model
            ds.PatientName = pid
            ds.PatientID = pid
            ds.StudyDescription = "MRI BREAST BILATERAL WWO"
            ds.SeriesDescription = descs[k]
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SP"
            ds.MRAcquisitionType = "3D"
            ds.SliceThickness = f"{sc.slice_thickness:g}"
            ds.SpacingBetweenSlices = f"{sc.slice_thickness:g}"
            ds.RepetitionTime = f"{sc.tr:g}"
            ds.EchoTime = f"{sc.te:g}"
            ds.MagneticFieldStrength = f"{sc.field_strength:g}"
            ds.AcquisitionMatrix = [0, M, M, 0]
            if k > 0:
                ds.ContrastBolusAgent = "MultiHance" if i % 2 else "Magnevist"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.StudyID = "1"
            ds.SeriesNumber = series_number
            ds.InstanceNumber = inst
            pos = origin + normal * (geom["z0"] + g * sc.slice_thickness)
            ds.ImagePositionPatient = [f"{v:.6g}" for v in pos]
            ds.ImageOrientationPatient = [f"{v:g}" for v in orient]
            ds.FrameOfReferenceUID = frame_uid
            ds.SliceLocation = f"{float(np.dot(normal, pos)):.6g}"
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = M
            ds.Columns = M
            ds.PixelSpacing = [str(sp), str(sp)]   # Scanner.spacing is rounded to 6 decimals
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 0
            ds.PixelData = np.ascontiguousarray(vol[g]).astype("<u2").tobytes()
            _save(ds, sdir / f"1-{inst:0{pad}d}.dcm")
    if fault in ("truncated", "corrupt"):
        files = sorted(series_dirs[0 if fault == "truncated" else 1].glob("*.dcm"))   # pre / post1 series
        victim = files[len(files) // 2]
        data = victim.read_bytes()
        if fault == "truncated":
            if cfg.compress:   # rewrite uncompressed so the cut hits the pixel data, like MR_truncated.dcm
                ds = pydicom.dcmread(victim)
                buf = io.BytesIO()
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds.save_as(buf, enforce_file_format=True)
                data = buf.getvalue()
            victim.write_bytes(data[:-M * 2 * 3])
        else:
            rng = np.random.default_rng([cfg.seed, i, 7])
            victim.write_bytes(rng.integers(0, 256, len(data) // 4, dtype=np.uint8).tobytes())
    return truth


# ----------------------------------------------------------------------------------------------------------------
# spreadsheets
# ----------------------------------------------------------------------------------------------------------------

def _fixed_zip(path: Path) -> None:
    """Rewrite an xlsx with fixed zip timestamps (openpyxl stamps 'now'), so same input gives same bytes."""
    with zipfile.ZipFile(path) as z:
        items = [(info, z.read(info.filename)) for info in z.infolist()]
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for info, data in items:
            if info.filename == "docProps/core.xml":   # openpyxl stamps dcterms:modified with the save time
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                              rb"\g<1>2019-06-01T00:00:00Z\g<2>", data)
            zi = zipfile.ZipInfo(info.filename, date_time=(2019, 6, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = info.external_attr
            z.writestr(zi, data)
    os.replace(tmp, path)


def _write_xlsx(path: Path, rows: list[list], sheet: str) -> None:
    from openpyxl import Workbook
    import datetime as dt

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    for r in rows:
        ws.append(r)
    stamp = dt.datetime(2019, 6, 1)
    wb.properties.created = stamp
    wb.properties.modified = stamp
    wb.properties.creator = "radiogenomics-replica synth"
    tmp = path.with_suffix(".part.xlsx")
    wb.save(tmp)
    _fixed_zip(tmp)
    os.replace(tmp, path)


def write_annotation_boxes(path: Path, truths: list[PatientTruth]) -> None:
    """Annotation_Boxes.xlsx: pixel rows/columns and InstanceNumber-order slices, 1-based inclusive."""
    rows = [["Patient ID", "Start Row", "End Row", "Start Column", "End Column", "Start Slice", "End Slice"]]
    for t in truths:
        if t.fault == "no-box":
            continue
        n = t.n_slices
        s0, s1 = (n - 1 - t.box_slice1, n - 1 - t.box_slice0) if t.descending else (t.box_slice0, t.box_slice1)
        r1 = t.box_row1 + 1
        if t.fault == "box-outside":
            r1 = t.matrix + 7
        rows.append([t.patient_id, t.box_row0 + 1, r1, t.box_col0 + 1, t.box_col1 + 1, s0 + 1, s1 + 1])
    _write_xlsx(path, rows, "Sheet1")


MANUFACTURER_CODES = {"GE MEDICAL SYSTEMS": 0, "SIEMENS": 2}
MODEL_CODES = {"Signa HDx": 4, "Signa HDxt": 5, "Avanto": 0, "TrioTim": 7}


def write_clinical(path: Path, truths: list[PatientTruth]) -> None:
    """Clinical_and_Other_Features.xlsx, sheet 'Data': group row, column-name row, legend row, then data."""
    groups = ["Patient Information", "MRI Technical Information", "", "", "Tumor Characteristics", "", "", ""]
    names = ["Patient ID", "Manufacturer", "Manufacturer Model Name", "Field Strength (Tesla) ",
             "ER", "PR", "HER2\n", "Mol Subtype"]
    legend = ["", "{0 = GE MEDICAL SYSTEMS, 2 = SIEMENS}",
              "{0 = Avanto, 4 = Signa HDx, 5 = Signa HDxt, 7 = TrioTim}", "",
              "{0 = neg, 1 = pos}", "{0 = neg, 1 = pos}", "{0 = neg, 1 = pos, 2 = borderline}",
              "{0 = luminal-like, 1 = ER/PR pos, HER2 pos, 2 = her2, 3 = trip neg}"]
    rows = [groups, names, legend]
    for t in truths:
        her2 = "NP" if t.fault == "missing-label" else t.her2
        rows.append([t.patient_id, MANUFACTURER_CODES[t.manufacturer], MODEL_CODES[t.model], t.field_strength,
                     t.er, t.pr, her2, t.mol_subtype])
    _write_xlsx(path, rows, "Data")


# ----------------------------------------------------------------------------------------------------------------
# the cohort
# ----------------------------------------------------------------------------------------------------------------

def generate(out: str | Path, cfg: SynthConfig, overwrite: bool = False, progress: bool = False) -> pd.DataFrame:
    """Write a cohort to ``out`` (built in a temporary sibling folder, then renamed into place).

    Returns the truth table (one row a patient) that is also written as ``synthetic_truth.csv``.
    """
    cfg.check()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"synth: {out} exists and is not empty (use --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.part-", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp creates 0700; the cohort folder gets an ordinary folder's mode
    try:
        faults = dict((p, k) for k, p in cfg.faults)
        jobs = [(i, cfg, faults.get(patient_id(i), ""), str(tmp)) for i in range(1, cfg.patients + 1)]
        if cfg.workers > 1 and len(jobs) > 1:
            with get_context("forkserver").Pool(min(cfg.workers, len(jobs)), initializer=_worker_init) as pool:
                it = pool.imap(_write_patient, jobs)
                truths = list(_progress(it, len(jobs), progress, "synth"))
        else:
            truths = [_write_patient(j) for j in _progress(jobs, len(jobs), progress, "synth")]
        write_annotation_boxes(tmp / "Annotation_Boxes.xlsx", truths)
        write_clinical(tmp / "Clinical_and_Other_Features.xlsx", truths)
        table = pd.DataFrame([asdict(t) for t in truths])
        table.to_csv(tmp / "synthetic_truth.csv", index=False, lineterminator="\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return table


def _progress(it, total, enabled, desc):
    if not enabled:
        return it
    from tqdm import tqdm
    return tqdm(it, total=total, desc=desc, unit="patient")


def read_truth(root: str | Path) -> pd.DataFrame:
    """The truth table of a synthetic cohort."""
    return pd.read_csv(Path(root) / "synthetic_truth.csv", keep_default_na=False)
