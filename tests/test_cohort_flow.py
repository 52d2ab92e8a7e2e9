"""The cohort beside the paper's: spreadsheets found where users keep them, our label against Mol Subtype, the
flow step by step, paper-sized subsets (replicate.cohort.duke, replicate.cohort.flow, `python -m replicate cohort`)."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from replicate import cli_cohort
from replicate.cohort.duke import BOX_FILE, CLINICAL_FILE, COLLECTION_DIR, CohortSettings, locate_inputs, scan_cohort
from replicate.cohort.flow import flow_beside_paper, paper_sized_subsets
from replicate.cohort.synth import SynthConfig, generate
from replicate.errors import CohortError, ConfigError

ONE = CohortSettings(workers=1)


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    """The public collection as users keep it: DIR/<the two xlsx>, DIR/Duke-Breast-Cancer-MRI/Breast_MRI_XXX."""
    top = tmp_path_factory.mktemp("download")
    truth = generate(top / COLLECTION_DIR, SynthConfig(patients=6, seed=3, workers=1))
    for name in (BOX_FILE, CLINICAL_FILE):
        shutil.move(top / COLLECTION_DIR / name, top / name)
    return top, truth


@pytest.fixture(scope="module")
def scanned(download):
    return scan_cohort(download[0], ONE)            # ROOT holds Duke-Breast-Cancer-MRI/ and the spreadsheets


def test_root_holding_the_collection_folder_or_the_patient_folders(download, scanned):
    top, truth = download
    a = scanned
    b = scan_cohort(top / COLLECTION_DIR, ONE)      # spreadsheets one level above the patient folders
    for c in (a, b):
        assert c.root == str(top / COLLECTION_DIR)
        assert c.clinical_path.endswith(CLINICAL_FILE) and c.boxes_path.endswith(BOX_FILE)
        assert len(c.included) == len(truth)
    assert a.table.equals(b.table)


def test_spreadsheets_two_levels_up_given_files_and_the_error_naming_every_place(tmp_path):
    pdir = tmp_path / "a" / "b" / "root"
    (pdir / "Breast_MRI_001").mkdir(parents=True)
    with pytest.raises(CohortError) as e:
        locate_inputs(pdir)
    msg = str(e.value)
    assert msg.startswith(f"{CLINICAL_FILE}: clinical table not found; looked in") and "--clinical" in msg
    for d in (pdir, pdir.parent, pdir.parent.parent):
        assert str(d) in msg
    assert str(tmp_path) not in msg.replace(str(pdir.parent.parent), "")   # no more than two levels up
    (tmp_path / "a" / CLINICAL_FILE).write_bytes(b"x")                       # two levels above ROOT
    (tmp_path / "a" / "b" / BOX_FILE).write_bytes(b"x")                      # one level above
    got = locate_inputs(pdir)
    assert got.clinical == tmp_path / "a" / CLINICAL_FILE and got.boxes == tmp_path / "a" / "b" / BOX_FILE
    other = tmp_path / "elsewhere.xlsx"
    other.write_bytes(b"x")
    assert locate_inputs(pdir, clinical=other).clinical == other
    with pytest.raises(CohortError, match="missing.xlsx: annotation table not found \\(--boxes\\)"):
        locate_inputs(pdir, boxes=tmp_path / "missing.xlsx")
    with pytest.raises(CohortError, match="no Breast_MRI_XXX patient folders"):
        locate_inputs(tmp_path)


def test_label_against_mol_subtype_prevalence_and_borderline(download, scanned):
    truth = download[1]
    c = scanned
    s = c.label_summary()
    inc = s["included"]
    assert inc["n"] == len(truth) and inc["luminal_a"] == int(truth.label.sum())
    assert inc["prevalence"] == pytest.approx(truth.label.mean())
    t = c.subtype_crosstab("included")
    assert t.loc["luminal A", "luminal-like"] == int(((truth.label == 1) & (truth.mol_subtype == 0)).sum())
    assert t.loc["other", "trip neg"] == int(((truth.label == 0) & (truth.mol_subtype == 3)).sum())
    assert t.loc["total", "total"] == len(truth)
    # the synthetic receptors follow the surrogate rule, so our label and "luminal-like" agree everywhere
    assert inc["agree_luminal_like"] == len(truth) and inc["ours_a_not_luminal_like"] == 0
    moved = int(((truth.her2 == 2) & ((truth.er == 1) | (truth.pr == 1))).sum())
    assert moved >= 1 and s["her2_borderline"]["borderline_hr_positive"] == moved
    with pytest.raises(ConfigError):
        c.subtype_crosstab("everyone")


def test_cohort_command_finds_the_spreadsheets_and_prints_the_labels(download, tmp_path, capsys):
    top, truth = download
    out = tmp_path / "out"
    assert cli_cohort.run(["cohort", str(top), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert f"{top / CLINICAL_FILE}" in text and "Mol Subtype" in text
    assert f"{int(truth.label.sum())} luminal A of {len(truth)}" in text and "prevalence" in text
    assert "HER2 borderline with ER/PR positive" in text
    sub = pd.read_csv(out / "cohort_subtypes.csv")
    assert list(sub["our label"]) == ["luminal A", "other", "total"]
    assert cli_cohort.run(["cohort", str(top), "--clinical", str(tmp_path / "nope.xlsx"), "--quiet"]) == 2
    assert "nope.xlsx: clinical table not found" in capsys.readouterr().err


def test_cohort_command_spreadsheets_one_level_up_flow_beside_the_paper(download, tmp_path, capsys):
    """ROOT = the folder of the patient folders; the spreadsheets sit one level above; the flow is printed and
    written beside the paper's (400 -> 286 -> 275 -> 270) with what can be reproduced."""
    top, truth = download
    out = tmp_path / "out"
    assert cli_cohort.run(["cohort", str(top / COLLECTION_DIR), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "beside the paper's" in text and "400" in text and "270" in text
    side = pd.read_csv(out / "cohort_flow_beside_paper.csv")
    assert list(side.paper_count[side.paper_step != "excluded"]) == [400, 286, 275, 270]
    assert side.our_count.iloc[-1] == len(truth) and side.reproducible.any() and not side.reproducible.all()


def _patients(n_pos=30, n_neg=60):
    ids = [f"Breast_MRI_{i:03d}" for i in range(1, n_pos + n_neg + 1)]
    return pd.DataFrame({"patient_id": ids, "label": [1] * n_pos + [0] * n_neg})


def test_paper_sized_subsets_are_stratified_reproducible_and_checked(download, scanned):
    pts = _patients()
    subs = paper_sized_subsets(pts, n=27, n_pos=9, draws=5, seed=1)
    lab = dict(zip(pts.patient_id, pts.label))
    assert len(subs) == 5 and len(set(subs)) == 5
    for s in subs:
        assert len(s) == len(set(s)) == 27 and sum(lab[p] for p in s) == 9
    assert subs == paper_sized_subsets(pts.sample(frac=1, random_state=0), n=27, n_pos=9, draws=5, seed=1)
    assert subs != paper_sized_subsets(pts, n=27, n_pos=9, draws=5, seed=2)
    with pytest.raises(CohortError, match="has 30 luminal A and 60 other"):
        paper_sized_subsets(pts, n=270, n_pos=90)
    with pytest.raises(ConfigError):
        paper_sized_subsets(pts, n=27, n_pos=0)
    truth = download[1]
    one = paper_sized_subsets(scanned, n=4, n_pos=1, draws=3)
    assert all(sum(truth.set_index("patient_id").label[list(s)]) == 1 for s in one)


def test_flow_beside_the_paper_says_what_the_public_data_can_reproduce():
    ours = pd.DataFrame([
        {"step": "found", "stage": "", "reason": "patients found", "count": 922},
        {"step": "excluded", "stage": "label", "reason": "missing label", "count": 5},
        {"step": "remaining", "stage": "label", "reason": "with a label", "count": 917},
        {"step": "excluded", "stage": "imaging", "reason": "missing phase", "count": 2},
        {"step": "excluded", "stage": "imaging", "reason": "unreadable file", "count": 1},
        {"step": "remaining", "stage": "annotation", "reason": "included", "count": 914},
    ])
    steps = [  # the shape compare/ will pass; counts here are made up for the test
        {"step": "start", "reason": "consecutive patients collected", "count": 100},
        {"step": "excluded", "reason": "missing pathology data", "count": 7},
        {"step": "excluded", "reason": "missing sequences", "count": 2},
        {"step": "excluded", "reason": "skipped by readers", "count": 3},
        {"step": "excluded", "reason": "errors in image processing", "count": 1},
        {"step": "remaining", "reason": "used for the study", "count": 87},
    ]
    t = flow_beside_paper(ours, steps).set_index("paper_reason")
    assert t.loc["consecutive patients collected", "our_count"] == 922
    assert not t.loc["consecutive patients collected", "reproducible"]
    assert t.loc["missing pathology data", "reproducible"] and t.loc["missing pathology data", "our_count"] == 5
    assert t.loc["missing sequences", "our_count"] == 2
    assert not t.loc["skipped by readers", "reproducible"]
    assert t.loc["errors in image processing", "our_count"] == 1
    assert not t.loc["used for the study", "reproducible"] and t.loc["used for the study", "paper_count"] == 87
    assert t.loc["used for the study", "our_count"] == 914
    assert list(t.columns) == ["paper_step", "paper_count", "our_reasons", "our_count", "reproducible", "why"]


def test_run_takes_the_spreadsheets_from_clinical_and_boxes(download, tmp_path, capsys):
    """`run --data ROOT --clinical FILE --boxes FILE` (issue 10, item 6): spreadsheets kept in a folder that is not
    ROOT nor above it are found only through the two options; without them the run stops with exit 2 naming every
    place looked, before any work."""
    from replicate import cli
    from replicate.experiments.pipeline import _stores

    top, truth = download
    root = tmp_path / "images"
    sheets = tmp_path / "elsewhere" / "sheets"
    sheets.mkdir(parents=True)
    shutil.copytree(top / COLLECTION_DIR, root / COLLECTION_DIR)
    for name in (BOX_FILE, CLINICAL_FILE):
        shutil.copy(top / name, sheets / name)
    out = tmp_path / "run"
    assert cli.main(["run", "--data", str(root), "--preset", "smoke", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not found; looked in" in err and str(root) in err
    assert "--clinical" in err or "--boxes" in err
    stores = _stores(root, [80], tmp_path / "cache", False, clinical=sheets / CLINICAL_FILE, boxes=sheets / BOX_FILE)
    pts = stores[80].patients
    assert sorted(pts.patient_id) == sorted(truth.patient_id) and int(pts.label.sum()) == int(truth.label.sum())
    assert stores[80].cohort.clinical_path == str(sheets / CLINICAL_FILE)
    from replicate.experiments.grid import get_preset
    from replicate.experiments.plan import cohort_size

    size = cohort_size(get_preset("smoke"), data=root, clinical=sheets / CLINICAL_FILE, boxes=sheets / BOX_FILE)
    assert size.source == "data" and size.n_patients == len(truth)   # the plan headline counts the same cohort
