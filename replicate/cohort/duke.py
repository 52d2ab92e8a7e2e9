"""The Duke-Breast-Cancer-MRI loader: phases, geometry, scanner, labels, boxes, and the exclusion flow.

Implements Zhu et al. 2019, "Patient Population" (every patient ends included or excluded with a reason, like the
paper's 400 -> 286 -> 275 -> 270 flow), "Imaging and Pathology Data" (pre-contrast + three post-contrast
fat-saturated T1 series; ER, PR, HER2 from pathology; Table 1's scanners) on the public collection's layout
(shared/notes/duke-dataset.md).

Settled conventions (all are :class:`CohortSettings` fields):

* **Boxes** (``Annotation_Boxes.xlsx``): ``Start/End Row`` are image rows (y), ``Start/End Column`` image columns
  (x) of the stored pixel grid, ``Start/End Slice`` count slices in the pre-contrast series' InstanceNumber order
  (the order a viewer and the file numbering show). Default: **1-based, end inclusive** (``box_index_base=1``,
  ``box_end_inclusive=True``). Internally a :class:`Box` is 0-based inclusive on the geometric slice order
  (ascending along the slice normal).
* **Label**: luminal A (1) = ER or PR positive and HER2 negative; other (0) = everything else with known receptors.
  HER2 borderline (code 2) is ``her2_borderline="negative"`` by default (a borderline tumour without proven
  amplification counts as HER2-negative); ``"positive"`` makes it HER2-positive, ``"exclude"`` excludes the
  patients whose label depends on it. The report states how many included patients the setting moves.
* **Phases**: from SeriesDescription through :class:`replicate.cohort.series_patterns.PatternTable`; when acquisition (or
  series) times are present they must increase pre < post1 < post2 < post3, else the patient is excluded.
* **Slices**: ordered by geometry (:func:`replicate.cohort.dicom_io.sort_slices`); every post-contrast series must have
  the pre-contrast series' slice count ("discordant number of slices", as in the paper), pixel grid and positions.

Lazy and parallel: :func:`scan_cohort` reads one patient at a time per worker process (headers and a pixel-data
completeness check; pixels are not kept) and keeps only a small :class:`PatientRecord` per patient. Any error in
one patient becomes that patient's exclusion reason; the others go on.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from replicate.cohort.dicom_io import (SliceHeader, SortedSeries, check_pixel_data, header_from_dataset, read_pixels,
                                sort_slices)
from replicate.errors import CohortError, ConfigError, DicomReadError, ReplicateError
from replicate.cohort.series_patterns import DCE_PHASES, PatternTable

PATIENT_DIR = re.compile(r"^Breast_MRI_\d+$")
BOX_FILE = "Annotation_Boxes.xlsx"
CLINICAL_FILE = "Clinical_and_Other_Features.xlsx"
COLLECTION_DIR = "Duke-Breast-Cancer-MRI"   # the folder the TCIA download tool writes the patient folders into
SPREADSHEET_PARENT_LEVELS = 2                # spreadsheets are looked up in ROOT and up to this many parents
#: ``Mol Subtype`` codes of Clinical_and_Other_Features.xlsx (its legend row; shared/notes/duke-dataset.md)
MOL_SUBTYPES = {0: "luminal-like", 1: "ER/PR pos HER2 pos", 2: "her2", 3: "trip neg"}
MISSING_CODES = {"NA", "NC", "NP", "", "N/A", "NAN"}

# Exclusion reasons, in the order the flow applies them (stage, reason). Mirrors the paper's flow: clinical data
# first (400 -> 286 includes "missing pathology data", "missing sequences", "discordant number of slices"), then
# annotation (286 -> 275), then image processing (275 -> 270).
STAGES = ("label", "imaging", "annotation")
REASONS = (
    ("label", "missing label"),
    ("label", "HER2 borderline excluded"),
    ("imaging", "no DICOM files"),
    ("imaging", "unreadable file"),
    ("imaging", "missing phase"),
    ("imaging", "phase order"),
    ("imaging", "discordant slice count"),
    ("imaging", "pre/post grid differs"),
    ("imaging", "bad geometry"),
    ("imaging", "processing error"),
    ("annotation", "no annotation box"),
    ("annotation", "box outside the volume"),
)
STAGE_RESULT = {"label": "with a label", "imaging": "with usable pre + 3 post-contrast series",
                "annotation": "included"}


@dataclass
class CohortSettings:
    """Loader settings; see the module docstring for the defaults and what they mean."""

    box_index_base: int = 1
    box_end_inclusive: bool = True
    her2_borderline: str = "negative"       # "negative" | "positive" | "exclude"
    patterns: PatternTable = field(default_factory=PatternTable.default)
    check_phase_times: bool = True
    posts_required: int = 3
    workers: int = 2

    def check(self) -> None:
        if self.box_index_base not in (0, 1):
            raise ConfigError(f"box_index_base must be 0 or 1, got {self.box_index_base}")
        if self.her2_borderline not in ("negative", "positive", "exclude"):
            raise ConfigError(f"her2_borderline must be negative, positive or exclude, got {self.her2_borderline!r}")
        if not 1 <= self.posts_required <= 4:
            raise ConfigError(f"posts_required must be 1..4, got {self.posts_required}")


@dataclass(frozen=True)
class Box:
    """A lesion box, 0-based inclusive, rows/columns on the stored pixel grid, slices in geometric order."""

    row0: int
    row1: int
    col0: int
    col1: int
    slice0: int
    slice1: int

    @property
    def centre(self) -> tuple[float, float]:
        """(row, column) of the box centre in pixel coordinates."""
        return ((self.row0 + self.row1) / 2.0, (self.col0 + self.col1) / 2.0)


@dataclass
class PatientRecord:
    """What the scan learned about one patient (small: no pixel data)."""

    patient_id: str
    path: str
    status: str = "excluded"                  # "included" | "excluded"
    stage: str = ""
    reason: str = ""
    detail: str = ""
    label: int | None = None
    er: float = math.nan
    pr: float = math.nan
    her2: float = math.nan
    mol_subtype: float = math.nan
    borderline_moves: bool = False            # the label depends on the HER2-borderline setting
    manufacturer: str = ""
    model: str = ""
    field_strength: float = math.nan
    rows: int = 0
    columns: int = 0
    pixel_spacing_row: float = math.nan
    pixel_spacing_col: float = math.nan
    slice_thickness: float = math.nan
    repetition_time: float = math.nan
    echo_time: float = math.nan
    n_slices: int = 0
    n_posts: int = 0
    descriptions: dict[str, str] = field(default_factory=dict)
    phase_files: dict[str, list[str]] = field(default_factory=dict)   # phase -> files in geometric order
    boxes: list[Box] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def exclude(self, stage: str, reason: str, detail: str) -> "PatientRecord":
        assert (stage, reason) in REASONS, (stage, reason)
        self.status, self.stage, self.reason, self.detail = "excluded", stage, reason, detail
        return self

    @property
    def included(self) -> bool:
        return self.status == "included"

    def row(self) -> dict:
        b = self.boxes[0] if self.boxes else None
        return {
            "patient_id": self.patient_id, "status": self.status, "stage": self.stage, "reason": self.reason,
            "detail": self.detail, "label": self.label, "er": self.er, "pr": self.pr, "her2": self.her2,
            "mol_subtype": self.mol_subtype, "borderline_moves": self.borderline_moves,
            "manufacturer": self.manufacturer, "model": self.model, "field_strength": self.field_strength,
            "rows": self.rows, "columns": self.columns, "pixel_spacing_row": self.pixel_spacing_row,
            "pixel_spacing_col": self.pixel_spacing_col, "slice_thickness": self.slice_thickness,
            "fov_mm": self.rows * self.pixel_spacing_row if self.rows else math.nan,
            "repetition_time": self.repetition_time, "echo_time": self.echo_time, "n_slices": self.n_slices,
            "n_posts": self.n_posts, "n_boxes": len(self.boxes),
            **{f"{p}_description": self.descriptions.get(p, "") for p in DCE_PHASES},
            **({f"box_{k}": getattr(b, k) for k in ("row0", "row1", "col0", "col1", "slice0", "slice1")}
               if b else {f"box_{k}": None for k in ("row0", "row1", "col0", "col1", "slice0", "slice1")}),
            "notes": "; ".join(self.notes),
        }


# ----------------------------------------------------------------------------------------------------------------
# spreadsheets
# ----------------------------------------------------------------------------------------------------------------

def _clean_name(name) -> str:
    return " ".join(str(name).split())


def _code(value) -> float:
    """A coded cell -> float, NaN for the collection's missing markers (NA, NC, NP) and blanks."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    s = str(value).strip()
    if s.upper() in MISSING_CODES:
        return math.nan
    try:
        return float(s)
    except ValueError:
        return math.nan


def read_clinical(path: str | Path) -> pd.DataFrame:
    """Clinical_and_Other_Features.xlsx -> DataFrame indexed by patient id with er, pr, her2, mol_subtype.

    The file has three header rows (group, column name, coding legend); data start on row 4. Column names are
    matched after collapsing white space (some carry trailing spaces or newlines).
    """
    path = Path(path)
    try:
        raw = pd.read_excel(path, sheet_name="Data", header=None, dtype=object)
    except FileNotFoundError:
        raise CohortError(f"{path}: clinical table not found") from None
    except ValueError as e:
        raise CohortError(f"{path}: cannot read sheet 'Data': {e}") from None
    if len(raw) < 3:
        raise CohortError(f"{path}: expected 3 header rows (group, column name, legend), found {len(raw)} rows")
    names = [_clean_name(n) for n in raw.iloc[1]]
    wanted = {"Patient ID": "patient_id", "ER": "er", "PR": "pr", "HER2": "her2", "Mol Subtype": "mol_subtype"}
    cols = {}
    for name, key in wanted.items():
        if name not in names:
            raise CohortError(f"{path}: sheet 'Data' row 2 has no column {name!r} (found: {', '.join(names[:12])}...)")
        cols[key] = names.index(name)
    data = raw.iloc[3:]
    out = pd.DataFrame({"patient_id": data.iloc[:, cols["patient_id"]].astype(str).str.strip()})
    for key in ("er", "pr", "her2", "mol_subtype"):
        out[key] = [_code(v) for v in data.iloc[:, cols[key]]]
    out = out[out.patient_id.str.len() > 0].drop_duplicates("patient_id", keep="first")
    return out.set_index("patient_id")


BOX_COLUMNS = ("Patient ID", "Start Row", "End Row", "Start Column", "End Column", "Start Slice", "End Slice")


def read_boxes(path: str | Path) -> dict[str, list[tuple[int, ...]]]:
    """Annotation_Boxes.xlsx -> patient id -> raw (start row, end row, start col, end col, start slice, end slice)."""
    path = Path(path)
    try:
        df = pd.read_excel(path, dtype=object)
    except FileNotFoundError:
        raise CohortError(f"{path}: annotation table not found") from None
    df.columns = [_clean_name(c) for c in df.columns]
    missing = [c for c in BOX_COLUMNS if c not in df.columns]
    if missing:
        raise CohortError(f"{path}: missing columns {missing}; expected {list(BOX_COLUMNS)}")
    out: dict[str, list[tuple[int, ...]]] = defaultdict(list)
    for line, r in enumerate(df.itertuples(index=False), start=2):
        rec = dict(zip(df.columns, r))
        pid = str(rec["Patient ID"]).strip()
        vals = [_code(rec[c]) for c in BOX_COLUMNS[1:]]
        if any(math.isnan(v) for v in vals):
            continue          # an incomplete row counts as no box for that patient
        out[pid].append(tuple(int(v) for v in vals))
    return dict(out)


def luminal_a(er: float, pr: float, her2: float, borderline: str) -> tuple[int | None, str]:
    """Label from receptor codes. Returns (label, problem): label None with a problem text when undecidable."""
    hr_pos = er == 1 or pr == 1
    hr_known = hr_pos or (er == 0 and pr == 0)
    if math.isnan(her2):
        return None, "HER2 missing"
    if her2 == 1:
        return 0, ""
    if not hr_known:
        return None, "ER/PR missing"
    if her2 == 0:
        return int(hr_pos), ""
    if her2 == 2:
        if not hr_pos:
            return 0, ""
        if borderline == "negative":
            return 1, ""
        if borderline == "positive":
            return 0, ""
        return None, "borderline"
    return None, f"HER2 code {her2:g} not in {{0, 1, 2}}"


# ----------------------------------------------------------------------------------------------------------------
# one patient
# ----------------------------------------------------------------------------------------------------------------

def _read_all(pdir: Path) -> tuple[list[tuple[SliceHeader, str | None]], list[tuple[str, str]]]:
    """Every file under a patient folder: (header, pixel problem) for DICOM files, (path, error) for the rest."""
    good, bad = [], []
    for dirpath, _dirs, files in sorted(os.walk(pdir)):
        for name in sorted(files):
            p = os.path.join(dirpath, name)
            try:
                ds = pydicom.dcmread(p)
            except Exception as e:
                bad.append((p, f"{type(e).__name__}: {e}"))
                continue
            problem = None
            try:
                check_pixel_data(ds, p)
            except DicomReadError as e:
                problem = str(e)
            try:
                good.append((header_from_dataset(ds, p), problem))
            except DicomReadError as e:
                bad.append((p, str(e)))
    return good, bad


def _pick_series(cands: dict[str, list[SliceHeader]], phase: str, rec: PatientRecord) -> list[SliceHeader]:
    if len(cands) > 1:
        ranked = sorted(cands.values(), key=lambda hs: (-len(hs), hs[0].series_number or 0))
        rec.notes.append(f"{len(cands)} series look like {phase}; used '{ranked[0][0].series_description}' "
                         f"(series {ranked[0][0].series_number}, most slices)")
        return ranked[0]
    return next(iter(cands.values()))


def _convert_box(raw: tuple[int, ...], s: CohortSettings, pre: SortedSeries, rows: int, cols: int
                 ) -> tuple[Box | None, str]:
    base = s.box_index_base
    end_off = 0 if s.box_end_inclusive else 1
    r0, r1, c0, c1, z0, z1 = raw
    r0, c0, z0 = r0 - base, c0 - base, z0 - base
    r1, c1, z1 = r1 - base - end_off, c1 - base - end_off, z1 - base - end_off
    n = len(pre.slices)
    text = f"rows {raw[0]}..{raw[1]}, columns {raw[2]}..{raw[3]}, slices {raw[4]}..{raw[5]}"
    if not (0 <= r0 <= r1 < rows and 0 <= c0 <= c1 < cols and 0 <= z0 <= z1 < n):
        return None, f"box {text} (base {base}, end {'inclusive' if s.box_end_inclusive else 'exclusive'}) " \
                     f"outside a {rows}x{cols}x{n} volume"
    geo = pre.instance_rank_to_geometric()[z0:z1 + 1]
    g0, g1 = int(geo.min()), int(geo.max())
    if g1 - g0 != z1 - z0:
        return None, f"box {text}: its slices are not contiguous in the geometric order"
    return Box(r0, r1, c0, c1, g0, g1), ""


def scan_patient(pid: str, pdir: str | Path, clinical: dict | None, raw_boxes: list[tuple[int, ...]],
                 s: CohortSettings) -> PatientRecord:
    """Everything the flow needs about one patient; never raises for a problem of the patient's data."""
    rec = PatientRecord(patient_id=pid, path=str(pdir))
    try:
        return _scan(rec, Path(pdir), clinical, raw_boxes, s)
    except ReplicateError as e:
        return rec.exclude("imaging", "processing error", str(e))
    except Exception as e:  # one bad patient never stops the others (the paper's "errors in image processing")
        return rec.exclude("imaging", "processing error", f"{type(e).__name__}: {e}")


def _scan(rec: PatientRecord, pdir: Path, clinical: dict | None, raw_boxes, s: CohortSettings) -> PatientRecord:
    # --- label (the paper's "missing pathology data")
    if clinical is None:
        return rec.exclude("label", "missing label", f"{rec.patient_id} not in {CLINICAL_FILE}")
    rec.er, rec.pr, rec.her2, rec.mol_subtype = (clinical[k] for k in ("er", "pr", "her2", "mol_subtype"))
    label, problem = luminal_a(rec.er, rec.pr, rec.her2, s.her2_borderline)
    rec.borderline_moves = rec.her2 == 2 and (rec.er == 1 or rec.pr == 1)
    if problem == "borderline":
        return rec.exclude("label", "HER2 borderline excluded", "HER2 borderline with ER/PR positive "
                           "(her2_borderline=exclude)")
    if label is None:
        return rec.exclude("label", "missing label", f"{problem} (ER={rec.er}, PR={rec.pr}, HER2={rec.her2})")
    rec.label = label

    # --- imaging (the paper's "missing sequences", "discordant number of slices", unreadable files)
    headers, unreadable = _read_all(pdir)
    if not headers and not unreadable:
        return rec.exclude("imaging", "no DICOM files", f"no files under {pdir}")
    by_series: dict[str, list[SliceHeader]] = defaultdict(list)
    problems: dict[str, list[str]] = defaultdict(list)
    for h, problem in headers:
        if h.modality and h.modality != "MR":
            continue   # SEG objects and other non-MR files
        by_series[h.series_uid].append(h)
        if problem:
            problems[h.series_uid].append(problem)
    phase_cands: dict[str, dict[str, list[SliceHeader]]] = defaultdict(dict)
    for uid, hs in by_series.items():
        phase = s.patterns.classify(hs[0].series_description)
        if phase is not None:
            phase_cands[phase][uid] = hs
    needed = ["pre"] + [f"post{k}" for k in range(1, s.posts_required + 1)]
    missing = [p for p in needed if p not in phase_cands]
    # a file whose header cannot be read sits in a series folder: blame the phase whose files share that folder
    folders = {os.path.dirname(h.path): s.patterns.classify(h.series_description) for h, _ in headers}
    for path, err in unreadable:
        ph = folders.get(os.path.dirname(path))
        if ph in needed or not headers:
            return rec.exclude("imaging", "unreadable file", f"{path}: {err}")
        rec.notes.append(f"ignored unreadable file {path}")
    if missing and unreadable:   # the missing series may be the unreadable files
        return rec.exclude("imaging", "unreadable file", f"{unreadable[0][0]}: {unreadable[0][1]} "
                           f"(and no {', '.join(missing)} series)")
    if missing:
        seen = sorted({hs[0].series_description for hs in by_series.values()})
        return rec.exclude("imaging", "missing phase", f"no {', '.join(missing)} series (series seen: {seen})")
    chosen = {p: _pick_series(phase_cands[p], p, rec) for p in needed}
    for p in needed:
        uid = chosen[p][0].series_uid
        if problems.get(uid):
            return rec.exclude("imaging", "unreadable file", problems[uid][0])
    rec.n_posts = sum(1 for k in range(1, 5) if f"post{k}" in phase_cands)
    rec.descriptions = {p: chosen[p][0].series_description for p in needed}
    if s.check_phase_times:
        times = [min((h.acquisition_time if h.acquisition_time is not None else h.series_time)
                     for h in chosen[p]) if all((h.acquisition_time is not None or h.series_time is not None)
                                                for h in chosen[p]) else None for p in needed]
        if None not in times:
            for a, b, ta, tb in zip(needed, needed[1:], times, times[1:]):
                if not ta < tb:
                    return rec.exclude("imaging", "phase order",
                                       f"{a} ('{rec.descriptions[a]}') acquired at {ta:.0f} s, not before {b} "
                                       f"('{rec.descriptions[b]}') at {tb:.0f} s")
    try:
        sorted_series = {p: sort_slices(chosen[p]) for p in needed}
    except DicomReadError as e:
        return rec.exclude("imaging", "bad geometry", str(e))
    pre = sorted_series["pre"]
    n = len(pre.slices)
    for p in needed[1:]:
        other = sorted_series[p]
        if len(other.slices) != n:
            return rec.exclude("imaging", "discordant slice count",
                               f"pre-contrast has {n} slices, {p} ('{rec.descriptions[p]}') has {len(other.slices)}")
        h0, h1 = pre.slices[0], other.slices[0]
        if (h0.rows, h0.columns) != (h1.rows, h1.columns) or not np.allclose(
                h0.pixel_spacing or (0, 0), h1.pixel_spacing or (0, 0), rtol=1e-4):
            return rec.exclude("imaging", "pre/post grid differs",
                               f"pre {h0.rows}x{h0.columns} at {h0.pixel_spacing} mm, {p} {h1.rows}x{h1.columns} "
                               f"at {h1.pixel_spacing} mm")
        if not np.allclose(pre.positions, other.positions, atol=0.05 * max(h0.slice_thickness or 1, 0.1)):
            return rec.exclude("imaging", "pre/post grid differs", f"{p} slice positions differ from pre-contrast")
    for p in needed:
        rec.notes.extend(f"{p}: {note}" for note in sorted_series[p].notes)
    h = pre.slices[0]
    if h.pixel_spacing is None:
        return rec.exclude("imaging", "bad geometry", f"{h.path}: no PixelSpacing")
    rec.manufacturer, rec.model = h.manufacturer, h.model
    rec.field_strength = h.field_strength if h.field_strength is not None else math.nan
    rec.rows, rec.columns = int(h.rows), int(h.columns)
    rec.pixel_spacing_row, rec.pixel_spacing_col = h.pixel_spacing
    rec.slice_thickness = h.slice_thickness if h.slice_thickness is not None else math.nan
    rec.repetition_time = h.repetition_time if h.repetition_time is not None else math.nan
    rec.echo_time = h.echo_time if h.echo_time is not None else math.nan
    rec.n_slices = n
    rec.phase_files = {p: [x.path for x in sorted_series[p].slices] for p in needed}

    # --- annotation (the paper's "skipped by readers"; boxes that do not fit the images)
    if not raw_boxes:
        return rec.exclude("annotation", "no annotation box", f"{rec.patient_id} not in {BOX_FILE}")
    for raw in raw_boxes:
        box, problem = _convert_box(raw, s, pre, rec.rows, rec.columns)
        if box is None:
            return rec.exclude("annotation", "box outside the volume", problem)
        rec.boxes.append(box)
    rec.status = "included"
    return rec


def load_phases(rec: PatientRecord, slices: list[int] | np.ndarray, posts: int = 3) -> np.ndarray:
    """Pixel data of pre, post1..post<posts> at the given geometric slices: float32 (1+posts, Z, Rows, Columns)."""
    phases = ["pre"] + [f"post{k}" for k in range(1, posts + 1)]
    return np.stack([np.stack([read_pixels(rec.phase_files[p][int(g)]) for g in slices]) for p in phases])


# ----------------------------------------------------------------------------------------------------------------
# the cohort
# ----------------------------------------------------------------------------------------------------------------

def find_patients(root: str | Path) -> list[tuple[str, Path]]:
    root = Path(root)
    if not root.is_dir():
        raise CohortError(f"{root}: cohort root is not a directory")
    pats = sorted((p.name, p) for p in root.iterdir() if p.is_dir() and PATIENT_DIR.match(p.name))
    if not pats:
        raise CohortError(f"{root}: no Breast_MRI_XXX patient folders")
    return pats


@dataclass(frozen=True)
class CohortInputs:
    """Where a cohort's parts are: the folder holding ``Breast_MRI_XXX``, the two spreadsheets, and every folder
    searched for them (in order)."""

    patients_root: Path
    clinical: Path
    boxes: Path
    searched: tuple[Path, ...]


def _has_patients(d: Path) -> bool:
    try:
        return d.is_dir() and any(p.is_dir() and PATIENT_DIR.match(p.name) for p in d.iterdir())
    except OSError:
        return False


def locate_inputs(root: str | Path, clinical: str | Path | None = None, boxes: str | Path | None = None
                  ) -> CohortInputs:
    """Find the patient folders and the two spreadsheets of a cohort the way users keep them.

    Patient folders: ``ROOT/Breast_MRI_XXX``, or ``ROOT/Duke-Breast-Cancer-MRI/Breast_MRI_XXX`` (ROOT is then the
    folder the TCIA download tool wrote, e.g. ``manifest-NNN``). Spreadsheets (``Clinical_and_Other_Features.xlsx``,
    ``Annotation_Boxes.xlsx``): the given files when ``clinical`` / ``boxes`` are set; otherwise the first of the
    patient folder's parent, ROOT, and ROOT's parent folders up to two levels that holds the file (the collection
    ships them separately from the images; shared/notes/duke-dataset.md).

    Raises CohortError naming ROOT when it holds no patient folders (directly or in Duke-Breast-Cancer-MRI/), a
    given file that does not exist, or a spreadsheet not found anywhere, with every folder looked in."""
    root = Path(root)
    if not root.is_dir():
        raise CohortError(f"{root}: cohort root is not a directory")
    if _has_patients(root):
        pdir = root
    elif _has_patients(root / COLLECTION_DIR):
        pdir = root / COLLECTION_DIR
    else:
        raise CohortError(f"{root}: no Breast_MRI_XXX patient folders (looked in {root} and "
                          f"{root / COLLECTION_DIR})")
    absroot = root.resolve()
    places: list[Path] = []
    for d in [pdir.resolve(), absroot] + list(absroot.parents)[:SPREADSHEET_PARENT_LEVELS]:
        if d not in places:
            places.append(d)

    def find(given, name: str, what: str, option: str) -> Path:
        if given is not None:
            g = Path(given)
            if not g.is_file():
                raise CohortError(f"{g}: {what} not found ({option})")
            return g
        for d in places:
            if (d / name).is_file():
                return d / name
        raise CohortError(f"{name}: {what} not found; looked in {', '.join(str(d) for d in places)} "
                          f"(pass {option} FILE)")

    return CohortInputs(patients_root=pdir, clinical=find(clinical, CLINICAL_FILE, "clinical table", "--clinical"),
                        boxes=find(boxes, BOX_FILE, "annotation table", "--boxes"), searched=tuple(places))


def _scan_job(args) -> PatientRecord:
    return scan_patient(*args)


@dataclass
class Cohort:
    """The result of a scan: one record a patient, in patient-id order."""

    root: str
    settings: CohortSettings
    records: list[PatientRecord]
    clinical_path: str = ""
    boxes_path: str = ""

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame([r.row() for r in self.records])

    @property
    def included(self) -> list[PatientRecord]:
        return [r for r in self.records if r.included]

    def target_spacing(self) -> float:
        """The most frequent in-plane pixel spacing of the included patients (the paper's target resolution);
        ties go to the smaller spacing. Spacings are compared after rounding to 1e-4 mm."""
        sp = [round(r.pixel_spacing_col, 4) for r in self.included if r.pixel_spacing_row == r.pixel_spacing_col]
        sp += [round(min(r.pixel_spacing_row, r.pixel_spacing_col), 4) for r in self.included
               if r.pixel_spacing_row != r.pixel_spacing_col]
        if not sp:
            raise CohortError(f"{self.root}: no included patients, no target spacing")
        vals, counts = np.unique(sp, return_counts=True)
        return float(vals[np.flatnonzero(counts == counts.max())[0]])

    def flow(self) -> pd.DataFrame:
        """The exclusion flow as rows (step, stage, reason, count); step 'found', 'excluded', 'remaining'."""
        rows = [{"step": "found", "stage": "", "reason": "patients found", "count": len(self.records)}]
        remaining = len(self.records)
        for stage in STAGES:
            for st, reason in REASONS:
                if st != stage:
                    continue
                c = sum(1 for r in self.records if r.stage == stage and r.reason == reason)
                if c:
                    rows.append({"step": "excluded", "stage": stage, "reason": reason, "count": c})
                    remaining -= c
            rows.append({"step": "remaining", "stage": stage, "reason": STAGE_RESULT[stage], "count": remaining})
        return pd.DataFrame(rows)

    def scanner_table(self) -> pd.DataFrame:
        """Table 1 of the paper from the included patients: scanner, field strength, TR, TE, FOV, matrix, cases."""
        t = self.table
        t = t[t.status == "included"].copy()
        if t.empty:
            return pd.DataFrame(columns=["manufacturer", "scanner", "field_strength_T", "TR_ms", "TE_ms",
                                         "FOV_cm", "matrix", "cases"])
        t["scanner"] = t.model
        t["field_strength_T"] = t.field_strength.round(1)
        t["TR_ms"] = t.repetition_time.round(1)
        t["TE_ms"] = t.echo_time.round(1)
        t["FOV_cm"] = (t.fov_mm / 10).round(1)
        t["matrix"] = t["rows"].astype(int).astype(str) + "x" + t["columns"].astype(int).astype(str)
        keys = ["manufacturer", "scanner", "field_strength_T", "TR_ms", "TE_ms", "FOV_cm", "matrix"]
        out = t.groupby(keys, dropna=False).size().rename("cases").reset_index()
        return out.sort_values(["field_strength_T", "manufacturer", "scanner", "matrix"]).reset_index(drop=True)

    def borderline_summary(self) -> dict:
        """How many patients the HER2-borderline setting touches (among those not excluded for other reasons)."""
        moves = [r for r in self.records if r.borderline_moves and (r.included or r.reason ==
                                                                      "HER2 borderline excluded")]
        return {"setting": self.settings.her2_borderline, "borderline_hr_positive": len(moves),
                "included_affected": sum(1 for r in moves if r.included)}

    def _population(self, population: str) -> list[PatientRecord]:
        if population == "included":
            return self.included
        if population == "labelled":
            return [r for r in self.records if r.label is not None]
        raise ConfigError(f"population must be 'labelled' or 'included', got {population!r}")

    def subtype_crosstab(self, population: str = "labelled") -> pd.DataFrame:
        """Our luminal A label (rows ``luminal A``, ``other``) against the spreadsheet's ``Mol Subtype`` (columns,
        named by its legend: :data:`MOL_SUBTYPES`; ``missing`` for a blank), with ``total`` margins.

        ``population``: ``"labelled"`` (every patient our rule gave a label, whatever happened later) or
        ``"included"`` (the patients that reach the experiments)."""
        recs = self._population(population)
        rows = ["luminal A", "other"]
        cols = list(MOL_SUBTYPES.values())
        extra = sorted({r.mol_subtype for r in recs if not math.isnan(r.mol_subtype)
                        and int(r.mol_subtype) not in MOL_SUBTYPES})
        cols += [f"code {v:g}" for v in extra] + ["missing"]
        t = pd.DataFrame(0, index=rows, columns=cols, dtype=int)
        for r in recs:
            m = r.mol_subtype
            col = "missing" if math.isnan(m) else MOL_SUBTYPES.get(int(m), f"code {m:g}")
            t.loc["luminal A" if r.label == 1 else "other", col] += 1
        t = t.loc[:, (t.sum(axis=0) > 0) | t.columns.isin(list(MOL_SUBTYPES.values()))]
        t["total"] = t.sum(axis=1)
        t.loc["total"] = t.sum(axis=0)
        t.index.name = "our label"
        t.columns.name = "Mol Subtype"
        return t

    def label_summary(self) -> dict:
        """Plain data for the report: prevalence of our luminal A label, its agreement with ``Mol Subtype``
        (code 0 "luminal-like"), and the HER2-borderline count (:meth:`borderline_summary`).

        ``{"rule", "her2_borderline": {...}, "labelled": {...}, "included": {...}}``; each population has ``n``,
        ``luminal_a``, ``other``, ``prevalence`` (luminal A / n; NaN when empty), ``agree_luminal_like`` (our 1
        with Mol Subtype 0 plus our 0 with another known subtype), ``ours_a_not_luminal_like``,
        ``luminal_like_not_ours_a`` and ``crosstab`` (:meth:`subtype_crosstab` as nested dicts)."""
        out = {"rule": "luminal A = (ER or PR positive) and HER2 negative; HER2 borderline (code 2) counted as "
                       f"'{self.settings.her2_borderline}'",
               "her2_borderline": self.borderline_summary()}
        for pop in ("labelled", "included"):
            recs = self._population(pop)
            n = len(recs)
            lum = sum(1 for r in recs if r.label == 1)
            known = [r for r in recs if not math.isnan(r.mol_subtype)]
            a_not = sum(1 for r in known if r.label == 1 and int(r.mol_subtype) != 0)
            like_not = sum(1 for r in known if r.label == 0 and int(r.mol_subtype) == 0)
            out[pop] = {"n": n, "luminal_a": lum, "other": n - lum,
                        "prevalence": lum / n if n else math.nan,
                        "mol_subtype_known": len(known),
                        "agree_luminal_like": len(known) - a_not - like_not,
                        "ours_a_not_luminal_like": a_not, "luminal_like_not_ours_a": like_not,
                        "crosstab": {k: {c: int(v) for c, v in row.items()}
                                     for k, row in self.subtype_crosstab(pop).to_dict(orient="index").items()}}
        return out


def scan_cohort(root: str | Path, settings: CohortSettings | None = None, progress: bool = False,
                patients: list[str] | None = None, clinical: str | Path | None = None,
                boxes: str | Path | None = None) -> Cohort:
    """Scan a cohort root: every patient ends included or excluded with a reason.

    ``root``, ``clinical``, ``boxes``: see :func:`locate_inputs` (spreadsheets next to or above the patient
    folders are found; the given files win). ``Cohort.root`` is the folder holding the patient folders."""
    s = settings or CohortSettings()
    s.check()
    where = locate_inputs(root, clinical, boxes)
    root = where.patients_root
    pats = find_patients(root)
    if patients is not None:
        wanted = set(patients)
        pats = [p for p in pats if p[0] in wanted]
    clinical_table = read_clinical(where.clinical)
    box_table = read_boxes(where.boxes)
    clin = {pid: row._asdict() for pid, row in zip(clinical_table.index, clinical_table.itertuples(index=False))}
    jobs = [(pid, str(pdir), clin.get(pid), box_table.get(pid, []), s) for pid, pdir in pats]
    if s.workers > 1 and len(jobs) > 1:
        with get_context("forkserver").Pool(min(s.workers, len(jobs))) as pool:
            records = list(_progress(pool.imap(_scan_job, jobs), len(jobs), progress, "scan"))
    else:
        records = [_scan_job(j) for j in _progress(jobs, len(jobs), progress, "scan")]
    return Cohort(root=str(root), settings=s, records=records, clinical_path=str(where.clinical),
                  boxes_path=str(where.boxes))


def _progress(it, total, enabled, desc):
    if not enabled:
        return it
    from tqdm import tqdm
    return tqdm(it, total=total, desc=desc, unit="patient")
