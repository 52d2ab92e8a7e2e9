"""replicate.cohort.duke on synthetic cohorts: the round trip is exact, each planted fault yields its reason, settings."""

from __future__ import annotations

import math

import pytest

from replicate.cohort.duke import CohortSettings, luminal_a, read_clinical, scan_cohort
from replicate.errors import CohortError
from replicate.cohort.synth import SynthConfig, generate, resolve_faults


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """8 patients (seed 3): 2 stored descending, 1 with a flipped row direction, 2 Siemens, 2 with four
    post-contrast phases, 1 luminal A with HER2 borderline."""
    root = tmp_path_factory.mktemp("clean") / "cohort"
    truth = generate(root, SynthConfig(patients=8, seed=3))
    return root, truth


def test_round_trip_is_exact(clean):
    root, truth = clean
    assert truth.descending.sum() >= 1 and truth.flipped.sum() >= 1 and (truth.manufacturer == "SIEMENS").any()
    t = scan_cohort(root).table.set_index("patient_id")
    assert (t.status == "included").all(), t.detail.to_dict()
    for tr in truth.itertuples():
        row = t.loc[tr.patient_id]
        assert row.label == tr.label
        assert (row.er, row.pr, row.her2, row.mol_subtype) == (tr.er, tr.pr, tr.her2, tr.mol_subtype)
        assert (row.manufacturer, row.model, row.field_strength) == (tr.manufacturer, tr.model, tr.field_strength)
        assert row.pixel_spacing_row == pytest.approx(tr.pixel_spacing, abs=1e-6)
        assert row.pixel_spacing_col == pytest.approx(tr.pixel_spacing, abs=1e-6)
        assert row.slice_thickness == tr.slice_thickness
        assert (row.rows, row.columns, row.n_slices, row.n_posts) == (tr.matrix, tr.matrix, tr.n_slices, tr.n_posts)
        assert row.fov_mm == pytest.approx(tr.fov_mm, abs=1e-3)
        posts = tr.post_descriptions.split("|")
        assert (row.pre_description, row.post1_description, row.post2_description, row.post3_description) == \
            (tr.pre_description, posts[0], posts[1], posts[2])
        assert (row.box_row0, row.box_row1, row.box_col0, row.box_col1, row.box_slice0, row.box_slice1) == \
            (tr.box_row0, tr.box_row1, tr.box_col0, tr.box_col1, tr.box_slice0, tr.box_slice1)


def test_table1_and_target_spacing(clean):
    root, truth = clean
    c = scan_cohort(root, CohortSettings(workers=1))
    t1 = c.scanner_table()
    assert t1.cases.sum() == len(truth)
    expect = truth.groupby(["model", "field_strength"]).size()
    got = t1.groupby(["scanner", "field_strength_T"]).cases.sum()
    assert dict(got) == dict(expect)
    si = t1[t1.manufacturer == "SIEMENS"]
    assert set(si.matrix) == {"448x448"} and set(si.FOV_cm) == {36.0}
    # the mode of the cohort's spacings (Table 1's mix makes it GE 3 T: 340 mm / 350)
    assert c.target_spacing() == pytest.approx(truth.pixel_spacing.round(4).mode().min(), abs=1e-4)


def test_box_conventions(clean):
    root, truth = clean
    base = scan_cohort(root).table.set_index("patient_id")
    zero = scan_cohort(root, CohortSettings(box_index_base=0)).table.set_index("patient_id")
    excl = scan_cohort(root, CohortSettings(box_end_inclusive=False)).table.set_index("patient_id")
    for pid in base.index:
        if zero.loc[pid, "status"] == "included":
            assert zero.loc[pid, "box_row0"] == base.loc[pid, "box_row0"] + 1
            assert zero.loc[pid, "box_col1"] == base.loc[pid, "box_col1"] + 1
        if excl.loc[pid, "status"] == "included":
            assert excl.loc[pid, "box_row1"] == base.loc[pid, "box_row1"] - 1
            assert excl.loc[pid, "box_row0"] == base.loc[pid, "box_row0"]


def test_her2_borderline_setting_and_count(clean):
    root, truth = clean
    moved = truth[(truth.her2 == 2) & ((truth.er == 1) | (truth.pr == 1))].patient_id.tolist()
    assert moved, "fixture should contain a HER2-borderline, hormone-receptor-positive case"
    neg = scan_cohort(root, CohortSettings(her2_borderline="negative"))
    pos = scan_cohort(root, CohortSettings(her2_borderline="positive"))
    exc = scan_cohort(root, CohortSettings(her2_borderline="exclude"))
    ln, lp = neg.table.set_index("patient_id").label, pos.table.set_index("patient_id").label
    assert sorted(ln.index[ln != lp]) == sorted(moved)
    assert (ln[moved] == 1).all() and (lp[moved] == 0).all()
    te = exc.table.set_index("patient_id")
    assert (te.loc[moved, "reason"] == "HER2 borderline excluded").all()
    assert neg.borderline_summary()["borderline_hr_positive"] == len(moved)
    assert exc.borderline_summary()["included_affected"] == 0


@pytest.mark.parametrize("er,pr,her2,borderline,label", [
    (1, 0, 0, "negative", 1), (0, 1, 0, "negative", 1), (0, 0, 0, "negative", 0), (1, 1, 1, "negative", 0),
    (1, 0, 2, "negative", 1), (1, 0, 2, "positive", 0), (0, 0, 2, "exclude", 0), (1, 0, 2, "exclude", None),
    (math.nan, 1, 0, "negative", 1), (math.nan, 0, 0, "negative", None), (1, 1, math.nan, "negative", None),
    (math.nan, math.nan, 1, "negative", 0)])
def test_label_rule(er, pr, her2, borderline, label):
    assert luminal_a(er, pr, her2, borderline)[0] == label


FAULTS = {"missing-phase": "missing phase", "discordant-slices": "discordant slice count",
          "truncated": "unreadable file", "corrupt": "unreadable file", "box-outside": "box outside the volume",
          "missing-label": "missing label", "no-box": "no annotation box", "phase-order": "phase order"}


def test_each_planted_fault_yields_its_reason_and_the_rest_go_on(tmp_path):
    specs = list(FAULTS)
    faults = resolve_faults(specs, 10, 0)
    root = tmp_path / "faulty"
    generate(root, SynthConfig(patients=10, seed=0, faults=faults, layout="descriptive"))
    c = scan_cohort(root)
    t = c.table.set_index("patient_id")
    for kind, pid in faults:
        assert t.loc[pid, "status"] == "excluded"
        assert t.loc[pid, "reason"] == FAULTS[kind], (kind, t.loc[pid, "detail"])
        assert t.loc[pid, "detail"]
    clean = [p for p in t.index if p not in {pid for _, pid in faults}]
    assert (t.loc[clean, "status"] == "included").all()
    flow = c.flow()
    assert flow.iloc[0]["count"] == 10 and flow.iloc[-1]["count"] == len(clean)
    assert flow[flow.step == "excluded"]["count"].sum() == len(faults)
    # stage order like the paper: label, then imaging, then annotation
    assert list(flow[flow.step == "remaining"].stage) == ["label", "imaging", "annotation"]


def test_missing_or_malformed_spreadsheets(tmp_path):
    (tmp_path / "Breast_MRI_001").mkdir()
    with pytest.raises(CohortError, match="Clinical_and_Other_Features.xlsx: clinical table not found"):
        scan_cohort(tmp_path)
    with pytest.raises(CohortError, match="no Breast_MRI_XXX"):
        scan_cohort(tmp_path / "Breast_MRI_001")
    from openpyxl import Workbook
    wb = Workbook()
    wb.active.title = "Data"
    for r in (["g"], ["Patient ID", "ER"], ["legend"], ["Breast_MRI_001", 1]):
        wb.active.append(r)
    wb.save(tmp_path / "Clinical_and_Other_Features.xlsx")
    with pytest.raises(CohortError, match="row 2 has no column 'PR'"):
        read_clinical(tmp_path / "Clinical_and_Other_Features.xlsx")


def test_missing_codes_read_as_missing(tmp_path):
    from openpyxl import Workbook
    wb = Workbook()
    wb.active.title = "Data"
    for r in (["g"] * 5, ["Patient ID", "ER ", "PR\n", "HER2", "Mol Subtype"], ["l"] * 5,
              ["Breast_MRI_001", "NA", 1, "NP", 0], ["Breast_MRI_002", 0, "NC", 1, 2]):
        wb.active.append(r)
    wb.save(tmp_path / "c.xlsx")
    t = read_clinical(tmp_path / "c.xlsx")
    assert math.isnan(t.loc["Breast_MRI_001", "er"]) and math.isnan(t.loc["Breast_MRI_001", "her2"])
    assert t.loc["Breast_MRI_001", "pr"] == 1 and math.isnan(t.loc["Breast_MRI_002", "pr"])
