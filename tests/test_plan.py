"""replicate.experiments.plan and ``python -m replicate plan`` (issue 11, item 1): unit enumeration, the FLOP
conventions on known net costs, the smoke caps, the --data count and the JSON shape. No microbenchmark runs here
(``device=None``); the estimate for a machine is a benchmark, not a test."""
import json
import math

import pandas as pd
import pytest

import models
from replicate.experiments.grid import PROTOTXT, get_preset, unique_cells
from replicate.experiments.plan import CohortSize, cohort_size, headline, make_plan, units


def _macc(folder, phase="TEST"):
    if phase == "TEST":
        return models.net_cost(models.load_net(PROTOTXT / folder / "deploy.prototxt", phase="TEST", batch=1)).macc
    n = models.load_net(PROTOTXT / folder / "train_val.prototxt", phase="TRAIN",
                        input_shapes={"data": (1, 3, 224, 224), "label": (1,)})
    return models.net_cost(n).macc


def test_paper_units_and_vgg16_transfer_flop():
    p = get_preset("paper")
    c = cohort_size(p, paper=True)
    assert (c.n_patients, c.train_patches) == (270, 44660)
    us = units(p, c, beyond_trained=False)   # the grid alone (trained-net "beyond" units: test_trainedcv)
    assert len(us) == len(unique_cells(p)) * p.n_repeats * p.n_folds
    assert {(u.repeat, u.fold) for u in us} == {(r, f) for r in range(5) for f in range(10)}
    vgg = [u for u in us if u.folder == "vgg16"]
    assert len(vgg) == 50
    iters = math.ceil(270 * 0.9 * 44660 / 270 / 32)
    assert vgg[0].train_flop == pytest.approx(6 * _macc("vgg16", "TRAIN") * iters * 32 * 40)
    # evaluation: every patient's 25 test patches after each of the 40 epochs
    assert vgg[0].eval_flop == pytest.approx(2 * _macc("vgg16") * 270 * 25 * 40)
    # features are extracted once per (net, patch size), not per fold
    feat = [u for u in us if u.approach == "features" and u.feature_flop]
    assert len(feat) == 4


def test_smoke_caps_and_json_shape():
    p = get_preset("smoke")
    plan = make_plan(p, cohort_size(p), device=None)
    assert plan["units"] == len(unique_cells(p)) * p.n_repeats * p.n_folds
    assert plan["seconds_estimate"] is None
    assert set(plan["approaches"]) == {"scratch", "transfer", "features"}
    assert plan["flop"] == pytest.approx(sum(a["flop"]["total"] for a in plan["approaches"].values()))
    cifar = next(u for u in units(p, cohort_size(p)) if u.folder == "cifar")
    # smoke: 80 px nets capped at 2 iterations of batch 4, 2 epochs
    assert cifar.train_flop == pytest.approx(6 * _macc_train_cifar() * 2 * 4 * 2)
    assert "H200" in headline(plan)


def _macc_train_cifar():
    n = models.load_net(PROTOTXT / "cifar" / "train_val.prototxt", phase="TRAIN",
                        input_shapes={"data": (1, 3, 80, 80), "label": (1,)})
    return models.net_cost(n).macc


def test_data_root_counts_box_slices(tmp_path):
    rows = [["Breast_MRI_001", 10, 20, 10, 20, 1, 4], ["Breast_MRI_002", 5, 9, 5, 9, 3, 5]]
    pd.DataFrame(rows, columns=["Patient ID", "Start Row", "End Row", "Start Column", "End Column",
                                "Start Slice", "End Slice"]).to_excel(tmp_path / "Annotation_Boxes.xlsx", index=False)
    c = cohort_size(get_preset("paper"), data=tmp_path)
    assert c == CohortSize("data", 2, 35.0)   # (4 + 3) slices x (1 + 4 augmented)


def test_cli_plan_json(capsys):
    from replicate.cli import main

    assert main(["plan", "--preset", "smoke", "--device", "none", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"units", "flop", "seconds_estimate", "approaches", "reference"} <= set(out)
    assert main(["plan", "--preset", "nope", "--device", "none"]) == 2


def test_quick_counts_the_null_cohort_of_its_negative_control():
    """quick's negative control reruns its control cells on a second, null-effect cohort: the plan counts them."""
    from replicate.experiments.controls import control_cells
    from replicate.experiments.plan import NULL_PREFIX

    p = get_preset("quick")
    us = units(p, cohort_size(p))
    ctl = set(control_cells(p.controls))
    null = [u for u in us if u.cell_id.startswith(NULL_PREFIX)]
    assert len(us) == (len(unique_cells(p)) + len(ctl)) * p.n_repeats * p.n_folds
    assert {u.cell_id[len(NULL_PREFIX):] for u in null} == ctl and len(null) == len(ctl) * p.n_folds
    smoke = get_preset("smoke")
    assert not any(u.cell_id.startswith(NULL_PREFIX) for u in units(smoke, cohort_size(smoke)))
