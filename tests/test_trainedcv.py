"""replicate.experiments.trainedcv (issue 12, "Performance and scope per preset"): the trained-net candidate, nested
CV over Figure 2's learning rates, learning curves of trained nets, their resume keys, and the plan's count of them.

One test trains a real net (CIFAR, one iteration); the others replace ``training.train_fold`` by a recorder that
returns seeded random scores, so they test the wiring (which splits are trained, with which settings and seeds, and
what is read back) in seconds. The statistics themselves are tested in test_nested_cv and test_learning_curve."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_beyond import small_grid  # noqa: F401  (fixture: random grid scores and features)

from replicate.experiments import grid as ex
from replicate.experiments import plan, trainedcv, training
from replicate.experiments.nested_cv import INNER_FOLDS
from replicate.experiments.protocol import FoldResult

N_INNER = 2


def _preset(**kw):
    base = {"n_folds": 3, "n_repeats": 1, "n_boot": 50, "scratch_epochs": 1, "transfer_epochs": 1,
            "scratch_lr_sweep": (0.0001, 0.0005), "transfer_lr_sweep": (0.001, 0.005),
            "learning_curve_sizes": (12, None), "learning_curve_draws": 2, "beyond": False}
    base.update(kw)
    return dataclasses.replace(ex.get_preset("smoke"), **base)


@pytest.fixture(scope="module")
def store80(synth_root):
    from replicate.experiments.pipeline import _stores

    return _stores(synth_root / "cohort", [80], synth_root / "patches", False)


def _runner(store80, tmp_path, **kw):
    return ex.Runner(_preset(**kw), store80, tmp_path / "run", torch.device("cpu"), progress=False)


@pytest.fixture
def fake_train(monkeypatch):
    """``training.train_fold`` replaced: seeded random patient scores; every call recorded."""
    calls = []

    def fake(spec, store, fold, data, settings, seed, device, progress=None):
        calls.append({"net": spec.key, "base_lr": settings.base_lr, "last_lr": settings.last_lr, "seed": seed,
                      "train": frozenset(fold.train_ids), "test": tuple(fold.test_ids)})
        rng = np.random.default_rng(seed)
        te = list(fold.test_ids)
        return FoldResult(fold.repeat, fold.fold, te, [int(data.labels[p]) for p in te],
                          list(rng.normal(size=len(te))), 0.5, {})

    monkeypatch.setattr(training, "train_fold", fake)
    return calls


def _split(runner):
    """An inner split of outer fold 0's training side: a third of each class scored, the rest trained."""
    f = runner.folds[0][0]
    pts = runner.patients.set_index("patient_id").loc[list(f.train_ids)]
    score = [p for c in (0, 1) for p in sorted(pts.index[pts.label == c])[:3]]
    train = [p for p in f.train_ids if p not in score]
    return train, score, pts.loc[train, "label"].to_numpy()


def test_candidate_trains_a_real_net_scores_exactly_the_score_ids_and_resumes(store80, tmp_path, monkeypatch):
    runner = _runner(store80, tmp_path, max_iters_per_epoch={80: 1, 64: 1, 224: 1})
    cell = next(c for c in ex.cells(runner.p)["table3"] if c.network == "CIFAR")
    train, score, y = _split(runner)
    calls = []
    real = training.train_fold
    monkeypatch.setattr(training, "train_fold", lambda *a, **k: (calls.append(a[5]), real(*a, **k))[1])
    s = trainedcv.TrainedCandidate(runner, cell)(train, score, y)
    assert list(s.index) == score and np.isfinite(s.to_numpy()).all()
    # the seed is the grid's unit seed of a split keyed by its ids
    key, fold = trainedcv.TrainedCandidate(runner, cell).key_and_fold(train, score)
    assert calls == [runner.unit_seed(cell, -1, fold.fold)]
    assert key.startswith(f"trainedcv|{cell.id}|split=") and f"preset={runner.preset_hash()}" in key
    # a fresh candidate (a rerun) reads the split back: same scores, no training
    again = trainedcv.TrainedCandidate(runner, cell)
    pd.testing.assert_series_equal(again(list(reversed(train)), score, y[::-1]), s)
    assert (again.trained, again.reused, len(calls)) == (0, 1, 1)
    with pytest.raises(Exception, match="cohort's own labels"):
        again(train, score, 1 - y)


def test_nested_lr_reuses_the_grids_outer_fits_and_resumes(store80, tmp_path, fake_train):
    runner = _runner(store80, tmp_path)
    sweep = ex.cells(runner.p)["sweep_scratch"]
    for c in sweep:                         # the grid's sweep cells, as run_all runs them
        runner.run_cell(c)
    k, n_lr = runner.p.n_folds, len(sweep)
    assert len(fake_train) == n_lr * k
    assert {c["base_lr"] for c in fake_train} == {c.lr for c in sweep}
    del fake_train[:]
    path = tmp_path / "nested_cv_trained.csv"
    df = trainedcv.nested_lr(runner, path, sweeps=("sweep_scratch",), n_inner=N_INNER)
    # only the inner CV trained: n_lr x inner folds x outer folds (what plan.trained_beyond_units counts)
    assert len(fake_train) == n_lr * N_INNER * k
    outer_train = {frozenset(f.train_ids) for f in runner.folds[0]}
    assert not any(c["train"] in outer_train for c in fake_train)
    assert list(df.columns) == trainedcv.NESTED_COLUMNS and list(df.estimate) == ["chosen_on_test", "nested"]
    assert set(df.choice) == {"learning rate (Figure 2, scratch VGGNet_R)"}
    ids = {c.id for c in sweep}
    assert df.chosen.iloc[0] in ids
    picked = [x.rsplit(" x", 1)[0] for x in df.chosen.iloc[1].split("; ")]
    assert picked and set(picked) <= ids
    assert df.test_auc.between(0, 1).all() and (df.ci_low <= df.ci_high).all()
    assert df.optimism.iloc[0] == pytest.approx(df.test_auc.iloc[0] - df.test_auc.iloc[1])
    assert len(pd.read_csv(path)) == 2
    # rerun: everything read back from RUN/state, the same rows
    del fake_train[:]
    again = trainedcv.nested_lr(runner, None, sweeps=("sweep_scratch",), n_inner=N_INNER)
    assert fake_train == []
    pd.testing.assert_frame_equal(again, df)


def test_learning_curve_of_the_headline_trained_cells(store80, tmp_path, fake_train):
    runner = _runner(store80, tmp_path)
    cells = trainedcv.headline_cells(runner.p)
    assert [(c.table, c.network) for c in cells] == [("table3", "CIFAR"), ("table4", "GoogleNet")]
    df = trainedcv.learning_curve_trained(runner)
    k, draws = runner.p.n_folds, runner.p.learning_curve_draws
    assert len(fake_train) == len(cells) * (draws * k + k)     # size 12 x draws, and the whole cohort once
    assert set(df.cell) == {c.id + trainedcv.TRAINED for c in cells}
    assert sorted(df["size"].astype(str).unique()) == ["12", "all"]
    assert (df.loc[df["size"].astype(str) == "12", "n_patients"] == 12).all()
    assert {c["last_lr"] for c in fake_train if c["net"] == "GoogleNet"} == {runner.p.transfer_last_lr}
    del fake_train[:]
    pd.testing.assert_frame_equal(trainedcv.learning_curve_trained(runner), df)
    assert fake_train == []


def test_plan_counts_the_trained_beyond_units():
    p = _preset(learning_curve_sizes=(12, 20, None), learning_curve_draws=2, beyond_trained=False)
    c = plan.cohort_size(p)
    assert c.n_patients == 33
    base = plan.units(p, c)
    on = plan.units(dataclasses.replace(p, beyond_trained=True), c)
    assert plan.units(p, c, beyond_trained=True) == on and on[:len(base)] == base
    extra = on[len(base):]
    k, n_sweeps = p.n_folds, 2
    nested = [u for u in extra if u.cell_id.endswith("[nested lr inner]")]
    lc = [u for u in extra if "[learning curve n=" in u.cell_id]
    assert len(nested) == n_sweeps * 2 * INNER_FOLDS * k      # every smoke cell is in the grid: outer fits reused
    assert len(lc) == 2 * 2 * p.learning_curve_draws * k       # 2 headline cells x sizes 12, 20 x draws x folds
    assert len(extra) == len(nested) + len(lc)
    # a grid without the sweeps (cell_prefixes): their outer fits are counted too, once per cell
    q = dataclasses.replace(p, cell_prefixes=("features/",), beyond_trained=True)
    outer = [u for u in plan.units(q, c)[len(plan.units(q, c, False)):] if "outer" in u.cell_id or "all]" in u.cell_id]
    assert len(outer) == (2 * 2 + 1) * k    # 4 sweep cells + CIFAR (Table 4 GoogLeNet lr 0.001 = a sweep cell)
    assert plan.make_plan(q, c, device=None)["units"] == len(plan.units(q, c))


def test_plan_scales_a_learning_curve_unit_to_its_subset(monkeypatch):
    # the paper's settings and cohort; only CIFAR's units (no sweeps, one headline cell) so no 224-px net is costed
    monkeypatch.delitem(trainedcv.HEADLINE_TRAINED, "transfer")
    p = dataclasses.replace(ex.get_preset("paper"), cell_prefixes=("scratch/CIFAR",), scratch_lr_sweep=(0.0001,),
                            transfer_lr_sweep=(0.001,))
    c = plan.cohort_size(p, paper=True)
    us = [u for u in plan.units(p, c) if u.cell_id.startswith("scratch/CIFAR") and u.cell_id.endswith("n=50]")]
    assert len(us) == p.learning_curve_draws * p.n_folds
    info = plan.net_info("cifar")
    iters = math.ceil(50 * 0.9 * c.train_per_patient / 32)
    assert us[0].train_flop == pytest.approx(6 * info.macc_train * iters * 32 * p.scratch_epochs)
    assert us[0].eval_flop == pytest.approx(2 * info.macc_deploy * 50 * 25 * p.scratch_epochs)


def test_presets_gate_the_trained_analyses():
    assert ex.get_preset("paper").beyond_trained
    for name in ("smoke", "quick"):
        p = ex.get_preset(name)
        assert not p.beyond_trained
        assert any(d.startswith("beyond_trained: False") and "paper preset: True): " in d for d in p.differences())


def test_cli_flag_reaches_the_run_config():
    import argparse

    from replicate.cli_run import add_arguments, config_from_args

    ap = argparse.ArgumentParser()
    add_arguments(ap)
    assert config_from_args(ap.parse_args(["--beyond-trained"])).beyond_trained is True
    assert config_from_args(ap.parse_args([])).beyond_trained is False


@pytest.mark.usefixtures("small_grid")
def test_run_with_beyond_trained_adds_the_rows_and_the_section_lines_and_resumes(synth_root, tmp_path, monkeypatch):
    """``run(..., beyond_trained=True)`` on a preset without it: the trained-net rows join nested_cv.csv and
    learning_curve.csv (the files stay well-formed for compare/), the section says they ran; a rerun trains nothing.
    Grid units and trained splits both go through ``Runner.run_unit`` (random scores, test_beyond's fixture)."""
    from compare.test_beyond import problems
    from replicate import RunConfig, run
    from replicate.experiments import beyond

    preset = dataclasses.replace(_preset(beyond=True, learning_curve_sizes=(20, None), learning_curve_draws=1),
                                 scratch_lr_sweep=(0.0001, 0.0005), transfer_lr_sweep=(0.001,))
    calls = []
    unit = ex.Runner.run_unit
    monkeypatch.setattr(ex.Runner, "run_unit", lambda self, c, f, feats: (calls.append(f.repeat), unit(self, c, f,
                                                                                                     feats))[1])
    monkeypatch.setattr(trainedcv, "INNER_FOLDS", 2)
    out = tmp_path / "run"
    cfg = RunConfig(preset=preset, data=synth_root / "cohort", out=out, device="cpu", beyond_trained=True,
                    patch_cache=synth_root / "patches", progress=False)
    run(cfg)
    assert problems(out) == []
    nc = pd.read_csv(out / "results" / "nested_cv.csv")
    assert (nc.choice == "learning rate (Figure 2, scratch VGGNet_R)").sum() == 2
    assert not nc.choice.str.contains("transfer").any()          # one transfer lr: nothing to choose
    lc = pd.read_csv(out / "results" / "learning_curve.csv")
    assert {c for c in lc.cell if c.endswith(trainedcv.TRAINED)} == {
        c.id + trainedcv.TRAINED for c in trainedcv.headline_cells(preset)}
    sec = (out / "report.md").read_text().split(beyond.SECTION_TITLE, 1)[1]
    assert "nested over each sweep's learning rates" in sec and "Learning curves of trained nets (retrained" in sec
    n_first = len(calls)
    assert n_first > 0 and -1 in calls                            # inner / subset splits trained (repeat -1)
    run(cfg)
    assert len(calls) == n_first                                  # rerun: grid and trained splits read back
    assert "trained_nested_cv resumed" in (out / "report.md").read_text()
