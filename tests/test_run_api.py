"""``replicate.run(config)``: the one function behind ``python -m replicate run`` assembles a whole run (cohort,
stores, grid, flags, provenance, report), and resume keys are honest: a unit is reused only when the whole preset
and the code that computes it are unchanged (issue 8)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from replicate import RunConfig, RunResult, run
from replicate.experiments import grid as ex
from replicate.experiments.protocol import FoldResult



@pytest.fixture
def fake_units(monkeypatch):
    """Replace training / SVM fitting by random out-of-fold scores; count the units computed."""
    calls = []

    def unit(self, cell, fold, feats):
        calls.append((cell.id, fold.repeat, fold.fold))
        rng = np.random.default_rng(len(calls))
        labels = dict(zip(self.patients.patient_id, self.patients.label))
        return FoldResult(fold.repeat, fold.fold, list(fold.test_ids), [labels[i] for i in fold.test_ids],
                          list(rng.normal(size=len(fold.test_ids))), 0.8, {})

    monkeypatch.setattr(ex.Runner, "run_unit", unit)
    monkeypatch.setattr(ex.Runner, "features", lambda self, cell: None)
    return calls


def test_run_assembles_a_run_and_resume_keys_are_honest(synth_root, tmp_path, fake_units, monkeypatch):
    preset = dataclasses.replace(ex.get_preset("smoke"), n_boot=50)
    out = tmp_path / "run"
    res = run(RunConfig(preset=preset, data=synth_root / "cohort", out=out, device="cpu",
                        patch_cache=synth_root / "patches", progress=False))
    assert isinstance(res, RunResult) and res.report.exists() and (out / "provenance.json").exists()
    n = len(fake_units)
    assert n == len(ex.unique_cells(res.preset)) * res.preset.n_repeats * res.preset.n_folds
    assert set(res.tables) >= {"table3", "table4", "table5", "table6", "lr_sweeps"}
    text = res.report.read_text()
    assert "overrides a value of the net files" in text and "batch_size 4 instead of train_val.prototxt's 32" in text
    assert res.provenance["no_pretrained_weights"] and res.flags

    cell = next(c for c in ex.unique_cells(preset) if c.table == "table6")

    def rerun(p):
        before = len(fake_units)
        ex.Runner(p, res.stores, out, torch.device("cpu"), progress=False).run_all([cell])
        return len(fake_units) - before

    assert rerun(preset) == 0  # same settings, same code: every fold of the cell is read back
    # a setting the old hand-picked keys ignored (Table 6's SVM kernel) now recomputes the stale folds
    assert rerun(dataclasses.replace(preset, table6_kernel="linear")) == preset.n_folds
    # so does changed code (package version + hash of the modules that compute the unit)
    monkeypatch.setattr(ex.Runner, "code_hash", lambda self, kind: "0.0.0+changed")
    assert rerun(preset) == preset.n_folds


def test_run_refuses_bad_settings(tmp_path):
    from replicate.errors import ConfigError

    with pytest.raises(ConfigError, match="--preset"):
        run(RunConfig(preset="nope", out=tmp_path))
    with pytest.raises(ConfigError, match="--data"):
        run(RunConfig(preset="smoke", data=tmp_path / "missing", out=tmp_path / "o", progress=False))
