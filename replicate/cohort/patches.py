"""Tumour patches and the patch store (Zhu et al. 2019, "MR Imaging Pre-processing and Tumor Patch Extraction",
"Model Evaluation").

Patches are square, ``patch_size`` pixels of the resampled grid (80 to 120 in the paper), cut from the
three-channel subtraction image (:mod:`replicate.cohort.preprocess`) around the lesion box:

* **training** (role ``train``): on every slice of every box (a "lesion region"), the patch centred on the box
  centre (kind ``centre``) plus ``n_aug`` = 4 patches (``aug1`` .. ``aug4``) centred on the box centre moved by a
  random integer translation of up to ``max_shift`` pixels in each axis and rotated by a random angle drawn
  uniformly from [-``max_rotation``, ``max_rotation``) degrees (positive = counter-clockwise as displayed).
* **test** (role ``test``): the ``test_slices`` = 5 consecutive slices with the largest lesion area (area of a
  slice = summed area of the boxes covering it; ties go to the window nearest the largest box's centre slice), and
  on each of them 5 patches (``tl``, ``tr``, ``bl``, ``br``, ``mid``); the per-patient score is later the mean over
  these 25. The paper's "four corners and middle region of the lesion" has two readings (``test_patches``):
  ``"box_corners"`` (default): patches centred on the four corners of the box and on its middle;
  ``"oversample"``: Caffe's ``caffe.io.oversample`` crop positions (python/caffe/io.py: the four corner crops and
  the centre crop, without the mirrored five, since the paper counts 25) inside a lesion-centred region whose
  extent along each axis is the larger of the box's and ``patch_size * 256 / 224`` (Caffe's classifier resizes to
  256 (python/classify.py, --images_dim 256,256) and crops 224), see :func:`centres_for_test_patches`.

Placement: the patch's pixel (S//2, S//2) sits on the centre point rounded to the nearest pixel (halves up), so an
unrotated patch is an exact crop. Rotations resample bilinearly. Parts of a patch outside the image are padded with
0, i.e. "no enhancement" in subtraction units (``cv2.BORDER_CONSTANT``).

Random draws come from ``numpy.random.default_rng([seed, crc32(patient id)])``, so a patient's patches do not
depend on the worker that made them or on the other patients.

The :class:`PatchStore` (docs/ARCHITECTURE.md, "Cohort API") is built once per preprocessing configuration: its key
is a hash of every setting that changes pixels (patch geometry, augmentation, box convention, series patterns,
target spacing, intensity reference, code version) and of each included patient's files and boxes. The label
setting (HER2 borderline) is not in the key when it does not change which patients are included: it only rewrites
the index. Patches live in one ``np.memmap`` float32 file filled patient by patient; a journal records finished
patients, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import zlib
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from models import atomic

from replicate.cohort.duke import Box, Cohort, CohortSettings, PatientRecord, load_phases, scan_cohort
from replicate.errors import ConfigError, PatchStoreError
from replicate.cohort.preprocess import (map_coordinate, reference_intensity, resample, resampled_shape,
                                  subtraction_channels)
from replicate.cohort.series_patterns import PatternTable

STORE_VERSION = 1          # bump when the pixels a configuration produces change
TRAIN_KINDS_PREFIX = "aug"
TEST_KINDS = ("tl", "tr", "bl", "br", "mid")
TEST_PATCH_MODES = ("box_corners", "oversample")
OVERSAMPLE_RATIO = 256 / 224   # python/classify.py resizes to 256; GoogLeNet and VGG16 crop 224


@dataclass(frozen=True)
class PatchConfig:
    """A preprocessing configuration. Every field except ``her2_borderline`` and ``workers`` is in the store key."""

    patch_size: int = 80
    n_aug: int = 4
    max_shift: int | None = None          # pixels; None = round(0.1 * patch_size)
    max_rotation: float = 180.0           # degrees
    test_slices: int = 5
    seed: int = 0
    target_spacing: float | None = None   # mm; None = the cohort's most frequent in-plane spacing
    box_index_base: int = 1
    box_end_inclusive: bool = True
    patterns_csv: str | None = None       # extra SeriesDescription rules (replicate.cohort.series_patterns)
    her2_borderline: str = "negative"
    workers: int = 2
    test_patches: str = "box_corners"     # "box_corners" | "oversample" (module docstring); in the key
    clinical_file: str | None = None      # spreadsheets when not found near the root (duke.locate_inputs); not in
    boxes_file: str | None = None         #   the key: the boxes are in each patient's fingerprint

    def check(self) -> None:
        if not 8 <= self.patch_size <= 512:
            raise ConfigError(f"PatchConfig.patch_size must be 8..512 pixels, got {self.patch_size}")
        if self.n_aug < 0 or self.test_slices < 1:
            raise ConfigError(f"PatchConfig: n_aug >= 0 and test_slices >= 1 needed, got {self.n_aug}, "
                              f"{self.test_slices}")
        if self.target_spacing is not None and self.target_spacing <= 0:
            raise ConfigError(f"PatchConfig.target_spacing must be > 0 mm, got {self.target_spacing}")
        if self.test_patches not in TEST_PATCH_MODES:
            raise ConfigError(f"PatchConfig.test_patches must be one of {TEST_PATCH_MODES}, got {self.test_patches!r}")

    @property
    def shift(self) -> int:
        return int(round(0.1 * self.patch_size)) if self.max_shift is None else int(self.max_shift)

    def cohort_settings(self) -> CohortSettings:
        patterns = PatternTable.from_csv(self.patterns_csv) if self.patterns_csv else PatternTable.default()
        return CohortSettings(box_index_base=self.box_index_base, box_end_inclusive=self.box_end_inclusive,
                              her2_borderline=self.her2_borderline, patterns=patterns, workers=self.workers)

    def key_fields(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("her2_borderline", "workers", "clinical_file", "boxes_file"):
            d.pop(k)
        if self.test_patches == "box_corners":
            d.pop("test_patches")   # the default reading keeps the keys of stores built before the setting existed
        if self.patterns_csv:
            d["patterns_csv"] = Path(self.patterns_csv).read_text(encoding="utf-8")
        return d


# ----------------------------------------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------------------------------------

def extract_patch(image: np.ndarray, centre: tuple[float, float], size: int, angle: float = 0.0) -> np.ndarray:
    """A (C, size, size) patch of a (C, H, W) image whose pixel (size//2, size//2) is at ``centre`` (row, column)
    rounded to a pixel; rotated by ``angle`` degrees counter-clockwise (as displayed); outside = 0."""
    c, h, w = image.shape
    cr = math.floor(centre[0] + 0.5)
    cc = math.floor(centre[1] + 0.5)
    half = size // 2
    if angle == 0.0:
        out = np.zeros((c, size, size), np.float32)
        r0, c0 = cr - half, cc - half
        rs, re_ = max(r0, 0), min(r0 + size, h)
        cs, ce = max(c0, 0), min(c0 + size, w)
        if rs < re_ and cs < ce:
            out[:, rs - r0:re_ - r0, cs - c0:ce - c0] = image[:, rs:re_, cs:ce]
        return out
    t = math.radians(angle)
    cos, sin = math.cos(t), math.sin(t)
    # inverse map, patch pixel (x=u, y=v) -> image (x, y) = R(t) (u - half, v - half) + centre; with y pointing
    # down this turns the content counter-clockwise as displayed (east of the centre ends up north)
    m = np.array([[cos, -sin, cc - cos * half + sin * half],
                  [sin, cos, cr - sin * half - cos * half]], np.float64)
    hwc = np.ascontiguousarray(image.transpose(1, 2, 0), dtype=np.float32)
    planes = [cv2.warpAffine(np.ascontiguousarray(hwc[:, :, k]), m, (size, size),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=0.0) for k in range(c)]
    return np.stack(planes).astype(np.float32)


def choose_test_slices(boxes: list[Box], n_slices: int, k: int = 5) -> list[int]:
    """The ``k`` consecutive slices with the largest summed box area (ties: nearest the largest box's centre)."""
    area = np.zeros(n_slices)
    for b in boxes:
        area[b.slice0:b.slice1 + 1] += (b.row1 - b.row0 + 1) * (b.col1 - b.col0 + 1)
    k = min(k, n_slices)
    big = max(boxes, key=lambda b: (b.row1 - b.row0 + 1) * (b.col1 - b.col0 + 1) * (b.slice1 - b.slice0 + 1))
    mid = (big.slice0 + big.slice1) / 2
    best = max(range(n_slices - k + 1),
               key=lambda s: (area[s:s + k].sum(), -abs(s + (k - 1) / 2 - mid)))
    return list(range(best, best + k))


def centres_for_test_patches(box_rc: tuple[float, float, float, float], size: int, mode: str = "box_corners"
                       ) -> dict[str, tuple[float, float]]:
    """Centres (row, column) of the 5 test patches of one slice, kind -> point, on the resampled grid.

    ``box_rc``: (row0, row1, col0, col1) of the box, inclusive pixel coordinates. ``"box_corners"``: the box's
    corners and middle. ``"oversample"``: the region centred on the box, ``max(box extent, size * 256/224)``
    pixels along each axis; crops of ``size`` at its four corners and its centre (Caffe's ``oversample``); each
    corner crop lies inside the region, so for a patch placed by :func:`extract_patch` the crop's first row is the
    region's first row (to rounding)."""
    r0, r1, c0, c1 = box_rc
    mid = ((r0 + r1) / 2, (c0 + c1) / 2)
    if mode == "box_corners":
        return {"tl": (r0, c0), "tr": (r0, c1), "bl": (r1, c0), "br": (r1, c1), "mid": mid}
    if mode != "oversample":
        raise ConfigError(f"test patch mode {mode!r}: expected one of {TEST_PATCH_MODES}")
    least = size * OVERSAMPLE_RATIO
    half = (size - 1) / 2                       # a crop's first pixel to its centre pixel
    eh = max(r1 - r0 + 1, least)                # region extent (pixels) along rows and columns
    ew = max(c1 - c0 + 1, least)
    top, bottom = mid[0] - (eh - 1) / 2, mid[0] + (eh - 1) / 2
    left, right = mid[1] - (ew - 1) / 2, mid[1] + (ew - 1) / 2
    return {"tl": (top + half, left + half), "tr": (top + half, right - half),
            "bl": (bottom - half, left + half), "br": (bottom - half, right - half), "mid": mid}


def _box_for_slice(boxes: list[Box], g: int) -> Box:
    covering = [b for b in boxes if b.slice0 <= g <= b.slice1]
    pool = covering or boxes
    return max(pool, key=lambda b: (b.row1 - b.row0 + 1) * (b.col1 - b.col0 + 1))


@dataclass
class PatientPlan:
    """Which patches a patient gets (known before any pixel is read)."""

    train: list[tuple[int, int]]     # (box number, geometric slice)
    test: list[int]                  # geometric slices

    def count(self, cfg: PatchConfig) -> int:
        return len(self.train) * (1 + cfg.n_aug) + len(self.test) * len(TEST_KINDS)


def plan_patient(rec: PatientRecord, cfg: PatchConfig) -> PatientPlan:
    train = [(i, g) for i, b in enumerate(rec.boxes) for g in range(b.slice0, b.slice1 + 1)]
    return PatientPlan(train=train, test=choose_test_slices(rec.boxes, rec.n_slices, cfg.test_slices))


def patient_patches(rec: PatientRecord, cfg: PatchConfig, target: float) -> tuple[np.ndarray, list[dict]]:
    """All patches of one included patient: float32 (n, 3, S, S) and one index row each (patient_id, role, slice,
    kind, box)."""
    plan = plan_patient(rec, cfg)
    slices = sorted({g for _, g in plan.train} | set(plan.test))
    phases = load_phases(rec, slices)                       # (4, Z, H, W)
    ref = reference_intensity(phases[0])
    sub = subtraction_channels(phases) / np.float32(ref)    # (Z, 3, H, W)
    spacing = (rec.pixel_spacing_row, rec.pixel_spacing_col)
    h, w = sub.shape[-2:]
    nh, nw = resampled_shape((h, w), spacing, target)
    sub = resample(sub, spacing, target)
    at = {g: i for i, g in enumerate(slices)}

    def box_rc(b: Box) -> tuple[float, float, float, float]:
        return (map_coordinate(b.row0, h, nh), map_coordinate(b.row1, h, nh),
                map_coordinate(b.col0, w, nw), map_coordinate(b.col1, w, nw))

    S = cfg.patch_size
    rng = np.random.default_rng([cfg.seed, zlib.crc32(rec.patient_id.encode())])
    out, rows = [], []
    for bi, g in plan.train:
        r0, r1, c0, c1 = box_rc(rec.boxes[bi])
        centre = ((r0 + r1) / 2, (c0 + c1) / 2)
        img = sub[at[g]]
        out.append(extract_patch(img, centre, S))
        rows.append({"role": "train", "slice": g, "kind": "centre", "box": bi})
        for a in range(cfg.n_aug):
            dr, dc = rng.integers(-cfg.shift, cfg.shift + 1, size=2)
            angle = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
            out.append(extract_patch(img, (centre[0] + dr, centre[1] + dc), S, angle))
            rows.append({"role": "train", "slice": g, "kind": f"{TRAIN_KINDS_PREFIX}{a + 1}", "box": bi})
    for g in plan.test:
        b = _box_for_slice(rec.boxes, g)
        r0, r1, c0, c1 = box_rc(b)
        img = sub[at[g]]
        points = centres_for_test_patches((r0, r1, c0, c1), S, cfg.test_patches)
        for kind in TEST_KINDS:
            out.append(extract_patch(img, points[kind], S))
            rows.append({"role": "test", "slice": g, "kind": kind, "box": rec.boxes.index(b)})
    for r in rows:
        r["patient_id"] = rec.patient_id
    arr = np.stack(out) if out else np.zeros((0, 3, S, S), np.float32)
    return arr.astype(np.float32, copy=False), rows


# ----------------------------------------------------------------------------------------------------------------
# the store
# ----------------------------------------------------------------------------------------------------------------

def _fingerprint(rec: PatientRecord, root: str) -> str:
    h = hashlib.sha256()
    for phase in sorted(rec.phase_files):
        for p in rec.phase_files[phase]:
            st = os.stat(p)
            h.update(f"{phase}|{os.path.relpath(p, root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(repr([dataclasses.astuple(b) for b in rec.boxes]).encode())
    return h.hexdigest()[:16]


def _atomic_write_text(path: Path, text: str) -> None:
    atomic.write_text(path, text)


def _atomic_csv(path: Path, df: pd.DataFrame) -> None:
    atomic.write_text(path, df.to_csv(index=False, lineterminator="\n"))


def _worker_init() -> None:
    cv2.setNumThreads(1)   # one process per core


def _work(args):
    rec, cfg, target = args
    return rec.patient_id, patient_patches(rec, cfg, target)


class PatchStore:
    """Memory-mapped patches + index for one preprocessing configuration (docs/ARCHITECTURE.md, "Cohort API")."""

    def __init__(self, path: Path, config: PatchConfig, key: str, patches: np.memmap, index: pd.DataFrame,
                 patients: pd.DataFrame, cohort: Cohort | None = None):
        self.path, self.config, self.key = path, config, key
        self.patches, self.index, self.patients, self.cohort = patches, index, patients, cohort

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def build(cls, cohort_root: str | Path, config: PatchConfig, cache_dir: str | Path,
              progress: bool = False) -> "PatchStore":
        """Scan the cohort, then build (or reuse, or resume) the store for ``config`` under ``cache_dir``."""
        config.check()
        root = str(Path(cohort_root).resolve())
        cohort = scan_cohort(root, config.cohort_settings(), progress=progress, clinical=config.clinical_file,
                             boxes=config.boxes_file)
        included = cohort.included
        if not included:
            raise PatchStoreError(f"{root}: no included patients, nothing to build (see `python -m replicate "
                                  f"cohort {root}`)")
        target = float(config.target_spacing or cohort.target_spacing())
        plans = {r.patient_id: plan_patient(r, config) for r in included}
        counts = [plans[r.patient_id].count(config) for r in included]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        total = int(offsets[-1])
        fingerprints = [(r.patient_id, _fingerprint(r, root)) for r in included]
        key_src = {"version": STORE_VERSION, "config": config.key_fields(), "target_spacing": round(target, 6),
                   "patients": fingerprints}
        key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"patches-{config.patch_size}-{key}"
        path.mkdir(parents=True, exist_ok=True)
        S = config.patch_size
        shape = (total, 3, S, S)
        data_file = path / "patches.f32"
        journal = path / "journal.txt"
        meta = {"key": key, "shape": list(shape), "dtype": "float32", "target_spacing_mm": target,
                "config": dataclasses.asdict(config), "key_source": key_src, "cohort_root": root}
        if not (path / "COMPLETE").exists():
            _atomic_write_text(path / "store.json", json.dumps(meta, indent=1, sort_keys=True))
            nbytes = int(np.prod(shape)) * 4
            if not data_file.exists() or data_file.stat().st_size != nbytes:
                with open(data_file, "wb") as f:
                    f.truncate(nbytes)
                journal.write_text("")
            done = set(journal.read_text().split()) if journal.exists() else set()
            todo = [r for r in included if r.patient_id not in done]
            at = {r.patient_id: (int(offsets[i]), counts[i]) for i, r in enumerate(included)}
            rows_file = path / "rows"
            rows_file.mkdir(exist_ok=True)
            jobs = [(r, config, target) for r in todo]
            pool = None
            # forkserver, not fork: a forked child of a process that already ran OpenCV can hang in cv2's pool
            if config.workers > 1 and len(jobs) > 1:
                pool = get_context("forkserver").Pool(min(config.workers, len(jobs)), initializer=_worker_init)
                it = pool.imap(_work, jobs)
            else:
                it = map(_work, jobs)
            if progress:
                from tqdm import tqdm
                it = tqdm(it, total=len(jobs), desc=f"patches {S}px", unit="patient")
            try:
                cls._fill(it, data_file, S, at, rows_file, journal)
            finally:
                if pool is not None:
                    pool.terminate()
                    pool.join()
            parts = [pd.read_csv(rows_file / f"{r.patient_id}.csv") for r in included]
            index = pd.concat(parts, ignore_index=True)
            _atomic_csv(path / "index_rows.csv", index)
            _atomic_write_text(path / "COMPLETE", key + "\n")
        return cls._assemble(path, config, key, cohort, target)

    @staticmethod
    def _fill(it, data_file: Path, size: int, at, rows_file: Path, journal: Path) -> None:
        """Write each finished patient at its place in the data file (plain positioned writes, so memory does not
        grow with the store), make it durable, then record it in the journal (the resume point)."""
        patch_bytes = 3 * size * size * 4
        with open(journal, "a") as jf, open(data_file, "r+b") as df:
            for pid, (arr, rows) in it:
                start, n = at[pid]
                if arr.shape != (n, 3, size, size):
                    raise PatchStoreError(f"{pid}: made patches of shape {arr.shape}, the plan said "
                                          f"({n}, 3, {size}, {size})")
                os.pwrite(df.fileno(), np.ascontiguousarray(arr, dtype="<f4").tobytes(), start * patch_bytes)
                os.fsync(df.fileno())
                _atomic_csv(rows_file / f"{pid}.csv", pd.DataFrame(rows))
                jf.write(pid + "\n")
                jf.flush()
                os.fsync(jf.fileno())

    @classmethod
    def _assemble(cls, path: Path, config: PatchConfig, key: str, cohort: Cohort, target: float) -> "PatchStore":
        meta = json.loads((path / "store.json").read_text())
        shape = tuple(meta["shape"])
        patches = np.memmap(path / "patches.f32", dtype=np.float32, mode="r", shape=shape)
        index = pd.read_csv(path / "index_rows.csv", dtype={"patient_id": str, "role": str, "kind": str})
        table = cohort.table
        inc = table[table.status == "included"].reset_index(drop=True)
        labels = dict(zip(inc.patient_id, inc.label.astype(int)))
        if set(index.patient_id) != set(labels):
            raise PatchStoreError(f"{path}: stored patients differ from the cohort's included patients")
        index.insert(1, "label", index.patient_id.map(labels).astype(int))
        index = index[["patient_id", "label", "role", "slice", "kind", "box"]]
        _atomic_csv(path / f"index-her2-{config.her2_borderline}.csv", index)
        inc = inc.copy()
        inc["label"] = inc.label.astype(int)
        inc["target_spacing_mm"] = target
        counts = index.groupby(["patient_id", "role"]).size().unstack(fill_value=0)
        inc["n_train"] = inc.patient_id.map(counts.get("train", pd.Series(dtype=int))).fillna(0).astype(int)
        inc["n_test"] = inc.patient_id.map(counts.get("test", pd.Series(dtype=int))).fillna(0).astype(int)
        _atomic_csv(path / f"patients-her2-{config.her2_borderline}.csv", inc)
        return cls(path, config, key, patches, index, inc, cohort)
