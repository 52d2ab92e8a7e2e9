"""Reading MR DICOM slices with pydicom: headers, pixel data, and geometric slice order.

What the Duke-Breast-Cancer-MRI loader needs from each file (shared/notes/duke-dataset.md): SeriesInstanceUID and
SeriesDescription (to find the DCE phases), ImagePositionPatient / ImageOrientationPatient (file names and
InstanceNumber are not trusted for slice order), PixelSpacing, SliceThickness, Rows/Columns, Manufacturer,
ManufacturerModelName, MagneticFieldStrength, RepetitionTime/EchoTime (Table 1 of Zhu et al. 2019) and the
acquisition/series times (to check the phase order).

Slice order follows the DICOM standard (PS3.3 C.7.6.2.1.1): the slice normal is the cross product of the row and
column direction cosines of ImageOrientationPatient, and a slice's position along it is ImagePositionPatient
projected on the normal. Volumes are returned in ascending position along the normal.

Every failure is a :class:`~replicate.errors.DicomReadError` naming the file and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from replicate.errors import DicomReadError


@dataclass(frozen=True)
class SliceHeader:
    """The header fields of one DICOM slice that the cohort code uses (no pixel data)."""

    path: str
    modality: str
    series_uid: str
    series_description: str
    series_number: int | None
    instance_number: int | None
    position: tuple[float, float, float] | None   # ImagePositionPatient (mm)
    orientation: tuple[float, ...] | None          # ImageOrientationPatient, 6 direction cosines
    pixel_spacing: tuple[float, float] | None      # (row spacing, column spacing) in mm
    slice_thickness: float | None
    rows: int | None
    columns: int | None
    manufacturer: str
    model: str
    field_strength: float | None                   # tesla
    repetition_time: float | None                  # ms
    echo_time: float | None                        # ms
    acquisition_time: float | None                 # seconds after midnight (AcquisitionTime, else ContentTime)
    series_time: float | None                      # seconds after midnight (SeriesTime)

    @property
    def normal(self) -> np.ndarray:
        o = np.asarray(self.orientation, dtype=float)
        return np.cross(o[:3], o[3:])


def _float(ds, keyword: str) -> float | None:
    v = ds.get(keyword)
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _int(ds, keyword: str) -> int | None:
    v = _float(ds, keyword)
    return None if v is None else int(v)


def _floats(ds, keyword: str, n: int, path: str) -> tuple[float, ...] | None:
    v = ds.get(keyword)
    if v is None or v == "":
        return None
    try:
        vals = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        raise DicomReadError(f"{path}: {keyword} is not numeric: {v!r}") from None
    if len(vals) != n:
        raise DicomReadError(f"{path}: {keyword} has {len(vals)} values, expected {n}")
    return vals


def parse_time(value) -> float | None:
    """DICOM TM (``HHMMSS.FFFFFF``, also ``HH:MM:SS``) -> seconds after midnight, None when absent/bad."""
    if value is None:
        return None
    s = str(value).strip().replace(":", "")
    if len(s) < 2 or not s[:2].isdigit():
        return None
    try:
        hh = int(s[0:2])
        mm = int(s[2:4]) if len(s) >= 4 else 0
        ss = float(s[4:]) if len(s) > 4 else 0.0
    except ValueError:
        return None
    return hh * 3600 + mm * 60 + ss


def _expected_pixel_bytes(ds) -> int:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames * int(ds.BitsAllocated) // 8


def check_pixel_data(ds, path: str) -> None:
    """Raise unless the file holds complete pixel data (MR_truncated.dcm-style files fail here)."""
    if "PixelData" not in ds:
        raise DicomReadError(f"{path}: no PixelData element")
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.pixel_array  # decode to validate  # noqa: B018
            return
        need = _expected_pixel_bytes(ds)
    except Exception as e:  # pydicom raises several types for a bad 0028 group or a bad codec
        raise DicomReadError(f"{path}: pixel data cannot be decoded: {e}") from None
    have = len(ds.PixelData)
    if have < need:
        raise DicomReadError(f"{path}: truncated pixel data ({have} bytes, expected {need} for "
                             f"{ds.Rows}x{ds.Columns} at {ds.BitsAllocated} bits)")


def read_header(path: str | Path, check_pixels: bool = False) -> SliceHeader:
    """Read one file's header (and, with ``check_pixels``, verify its pixel data is complete)."""
    path = str(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not check_pixels)
    except InvalidDicomError as e:
        raise DicomReadError(f"{path}: not a DICOM file ({e})") from None
    except Exception as e:  # truncated headers raise EOFError/OSError/ValueError/struct.error in pydicom
        raise DicomReadError(f"{path}: unreadable DICOM header: {type(e).__name__}: {e}") from None
    if check_pixels:
        check_pixel_data(ds, path)
    return header_from_dataset(ds, path)


def header_from_dataset(ds, path: str) -> SliceHeader:
    """The :class:`SliceHeader` of an already-read dataset."""
    ps = _floats(ds, "PixelSpacing", 2, path)
    return SliceHeader(
        path=path,
        modality=str(ds.get("Modality", "") or ""),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        series_number=_int(ds, "SeriesNumber"),
        instance_number=_int(ds, "InstanceNumber"),
        position=_floats(ds, "ImagePositionPatient", 3, path),
        orientation=_floats(ds, "ImageOrientationPatient", 6, path),
        pixel_spacing=None if ps is None else (ps[0], ps[1]),
        slice_thickness=_float(ds, "SliceThickness"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        manufacturer=str(ds.get("Manufacturer", "") or "").strip(),
        model=str(ds.get("ManufacturerModelName", "") or "").strip(),
        field_strength=_float(ds, "MagneticFieldStrength"),
        repetition_time=_float(ds, "RepetitionTime"),
        echo_time=_float(ds, "EchoTime"),
        acquisition_time=parse_time(ds.get("AcquisitionTime") or ds.get("ContentTime")),
        series_time=parse_time(ds.get("SeriesTime")),
    )


@dataclass
class SortedSeries:
    """A series' slices in ascending position along the slice normal, plus what the sort noticed."""

    slices: list[SliceHeader]
    positions: np.ndarray                 # projection of ImagePositionPatient on the normal, ascending (mm)
    notes: list[str] = field(default_factory=list)

    @property
    def instance_descending(self) -> bool:
        """True when InstanceNumber decreases along the normal (a series stored e.g. superior-to-inferior)."""
        inst = [s.instance_number for s in self.slices]
        return None not in inst and len(inst) > 1 and inst[0] > inst[-1]

    def instance_rank_to_geometric(self) -> np.ndarray:
        """``g[k]`` = geometric index of the slice with the k-th smallest InstanceNumber (file/viewer order)."""
        inst = [s.instance_number if s.instance_number is not None else i for i, s in enumerate(self.slices)]
        return np.argsort(np.asarray(inst), kind="stable")


def sort_slices(headers: list[SliceHeader]) -> SortedSeries:
    """Order slices by geometry (never by file name); note when InstanceNumber disagrees."""
    if not headers:
        raise DicomReadError("empty series: no slices to sort")
    first = headers[0]
    for h in headers:
        if h.position is None or h.orientation is None:
            raise DicomReadError(f"{h.path}: missing ImagePositionPatient/ImageOrientationPatient, "
                                 "needed to order the slices")
        if (h.rows, h.columns) != (first.rows, first.columns):
            raise DicomReadError(f"{h.path}: {h.rows}x{h.columns} pixels, but {first.path} has "
                                 f"{first.rows}x{first.columns} in the same series")
        if not np.allclose(h.orientation, first.orientation, atol=1e-3):
            raise DicomReadError(f"{h.path}: ImageOrientationPatient {h.orientation} differs from "
                                 f"{first.orientation} in {first.path} (same series)")
    normal = first.normal
    pos = np.array([float(np.dot(normal, h.position)) for h in headers])
    order = np.argsort(pos, kind="stable")
    slices = [headers[i] for i in order]
    pos = pos[order]
    notes = []
    if len(pos) > 1:
        gaps = np.diff(pos)
        if np.any(gaps < 1e-3):
            i = int(np.argmin(gaps))
            raise DicomReadError(f"{slices[i + 1].path}: same slice position ({pos[i]:.3f} mm) as "
                                 f"{slices[i].path}")
        if gaps.max() - gaps.min() > 0.01 * max(abs(gaps.mean()), 1e-6) + 1e-3:
            notes.append(f"uneven slice spacing ({gaps.min():.3f}..{gaps.max():.3f} mm)")
    inst = [s.instance_number for s in slices]
    if None not in inst and len(inst) > 1:
        d = np.diff(inst)
        if not (np.all(d > 0) or np.all(d < 0)):
            notes.append("InstanceNumber order disagrees with the geometric slice order; geometry used")
    return SortedSeries(slices=slices, positions=pos, notes=notes)


def read_pixels(path: str | Path) -> np.ndarray:
    """One slice's stored pixel values as float32 (Rows, Columns), RescaleSlope/Intercept applied if present."""
    path = str(path)
    try:
        ds = pydicom.dcmread(path)
        check_pixel_data(ds, path)
        arr = ds.pixel_array
    except DicomReadError:
        raise
    except Exception as e:
        raise DicomReadError(f"{path}: cannot read pixel data: {type(e).__name__}: {e}") from None
    if arr.ndim != 2:
        raise DicomReadError(f"{path}: expected one 2-D frame, got pixel array of shape {arr.shape}")
    arr = arr.astype(np.float32)
    slope = _float(ds, "RescaleSlope")
    intercept = _float(ds, "RescaleIntercept")
    if slope is not None and slope != 1.0:
        arr *= np.float32(slope)
    if intercept:
        arr += np.float32(intercept)
    return arr


def read_volume(series: SortedSeries, indices: list[int] | np.ndarray | None = None) -> np.ndarray:
    """Pixel data of a sorted series (or of the geometric ``indices`` only) as float32 (Z, Rows, Columns)."""
    idx = range(len(series.slices)) if indices is None else [int(i) for i in indices]
    planes = [read_pixels(series.slices[i].path) for i in idx]
    if not planes:
        h = series.slices[0]
        return np.zeros((0, h.rows or 0, h.columns or 0), np.float32)
    return np.stack(planes)
