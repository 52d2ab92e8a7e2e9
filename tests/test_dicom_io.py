"""replicate.cohort.dicom_io and the loader on DICOM files nobody here wrote: pydicom's bundled MR test files."""

from __future__ import annotations


import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from replicate.cohort.dicom_io import parse_time, read_header, read_pixels, sort_slices
from replicate.cohort.duke import scan_cohort
from replicate.errors import DicomReadError

MR = get_testdata_file("MR_small.dcm")
TRUNC = get_testdata_file("MR_truncated.dcm")


def test_header_of_bundled_mr_file():
    h = read_header(MR, check_pixels=True)
    assert h.pixel_spacing == (0.3125, 0.3125)
    assert h.slice_thickness == pytest.approx(0.8)
    assert (h.rows, h.columns) == (64, 64)
    assert h.position == pytest.approx((-83.9063, -91.2, 6.6406))
    assert h.manufacturer == "TOSHIBA_MEC"
    assert h.modality == "MR"


@pytest.mark.parametrize("variant", ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm"])
def test_transfer_syntax_variants_give_the_same_pixels(variant):
    ref = pydicom.dcmread(MR).pixel_array.astype(np.float32)
    got = read_pixels(get_testdata_file(variant))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)


def test_truncated_file_is_a_clean_error_naming_the_file():
    read_header(TRUNC)  # the header itself is fine
    with pytest.raises(DicomReadError, match=r"MR_truncated\.dcm: truncated pixel data \(8130 bytes, expected 8192"):
        read_header(TRUNC, check_pixels=True)
    with pytest.raises(DicomReadError, match="MR_truncated.dcm"):
        read_pixels(TRUNC)


def test_not_dicom_is_a_clean_error(tmp_path):
    p = tmp_path / "x.dcm"
    p.write_bytes(b"hello" * 50)
    with pytest.raises(DicomReadError, match="x.dcm"):
        read_header(p)


def test_parse_time():
    assert parse_time("093015.5") == pytest.approx(9 * 3600 + 30 * 60 + 15.5)
    assert parse_time("09:30:15") == pytest.approx(34215)
    assert parse_time("") is None and parse_time(None) is None


def _slab(tmp_path, n=4, descending=False, flip=False):
    """n copies of MR_small at positions 2 mm apart; returns headers in shuffled file order."""
    paths = []
    uid = generate_uid()
    for g in range(n):
        ds = pydicom.dcmread(MR)
        ds.SeriesInstanceUID = uid
        ds.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0] if flip else [1, 0, 0, 0, 1, 0]
        normal = np.cross(ds.ImageOrientationPatient[:3], ds.ImageOrientationPatient[3:])
        ds.ImagePositionPatient = list(normal * (10 + 2.0 * g))
        ds.InstanceNumber = n - g if descending else g + 1
        p = tmp_path / f"1-{(7 * g) % n}.dcm"   # file names unrelated to the order
        ds.save_as(p)
        paths.append(p)
    rng = np.random.default_rng(0)
    return [read_header(paths[i]) for i in rng.permutation(n)]


@pytest.mark.parametrize("descending,flip", [(False, False), (True, False), (False, True)])
def test_slices_sorted_by_geometry(tmp_path, descending, flip):
    s = sort_slices(_slab(tmp_path, 5, descending, flip))
    assert np.all(np.diff(s.positions) == pytest.approx(2.0))
    inst = [h.instance_number for h in s.slices]
    assert inst == (list(range(5, 0, -1)) if descending else list(range(1, 6)))
    assert s.instance_descending == descending
    # InstanceNumber rank k -> geometric index
    assert list(s.instance_rank_to_geometric()) == ([4, 3, 2, 1, 0] if descending else [0, 1, 2, 3, 4])


def test_duplicate_positions_rejected(tmp_path):
    hs = _slab(tmp_path, 3)
    hs = hs + [hs[0]]
    with pytest.raises(DicomReadError, match="same slice position"):
        sort_slices(hs)


def _write_tables(root, pids, boxes):
    from openpyxl import Workbook
    wb = Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(["Patient Information", "Tumor Characteristics", "", "", ""])
    ws.append(["Patient ID", "ER", "PR", "HER2 ", "Mol Subtype"])
    ws.append(["", "{0 = neg, 1 = pos}", "{0 = neg, 1 = pos}", "{0 = neg, 1 = pos, 2 = borderline}", ""])
    for pid in pids:
        ws.append([pid, 1, 0, 0, 0])
    wb.save(root / "Clinical_and_Other_Features.xlsx")
    wb = Workbook()
    ws = wb.active
    ws.append(["Patient ID", "Start Row", "End Row", "Start Column", "End Column", "Start Slice", "End Slice"])
    for pid in pids:
        ws.append([pid] + list(boxes))
    wb.save(root / "Annotation_Boxes.xlsx")


def test_bundled_files_through_the_loader_truncated_patient_excluded(tmp_path):
    """Two patients made of MR_small slices (pre + 3 posts, 3 slices each); patient 2's pre-contrast has
    MR_truncated.dcm as its middle slice: it is excluded with a reason naming the file, patient 1 is included."""
    root = tmp_path / "cohort"
    names = ["ax dyn pre", "ax dyn 1st pass", "ax dyn 2nd pass", "ax dyn 3rd pass"]
    pids = ["Breast_MRI_001", "Breast_MRI_002"]
    for pid in pids:
        study = generate_uid()
        for k, name in enumerate(names):
            sdir = root / pid / study / f"s{k}"
            sdir.mkdir(parents=True)
            uid = generate_uid()
            for g in range(3):
                src = TRUNC if (pid == pids[1] and k == 0 and g == 1) else MR
                ds = pydicom.dcmread(src)
                ds.PatientID = pid
                ds.SeriesInstanceUID = uid
                ds.SeriesDescription = name
                ds.SeriesTime = f"{10 + k:02d}0000"
                ds.AcquisitionTime = ds.SeriesTime
                ds.ImagePositionPatient = [-83.9063, -91.2, 6.6406 + 0.8 * g]
                ds.InstanceNumber = g + 1
                ds.save_as(sdir / f"1-{g + 1}.dcm")
    _write_tables(root, pids, (10, 20, 30, 40, 1, 3))
    cohort = scan_cohort(root)
    t = cohort.table.set_index("patient_id")
    assert t.loc[pids[0], "status"] == "included"
    assert t.loc[pids[0], "manufacturer"] == "TOSHIBA_MEC"
    assert t.loc[pids[0], "pixel_spacing_row"] == 0.3125
    assert t.loc[pids[0], "label"] == 1
    assert (t.loc[pids[0], "box_row0"], t.loc[pids[0], "box_slice1"]) == (9, 2)
    assert t.loc[pids[1], "status"] == "excluded"
    assert t.loc[pids[1], "reason"] == "unreadable file"
    assert "truncated pixel data" in t.loc[pids[1], "detail"]
    flow = cohort.flow()
    assert flow[flow.reason == "included"]["count"].item() == 1
