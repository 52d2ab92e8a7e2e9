"""A unit's key hashes only the code that computes it (replicate.experiments.unit_code): an edit to the report, the
plan or the CLI recomputes nothing; an edit to the protocol or to ``models`` recomputes every unit; and each kind's
module list holds every project module its unit functions reach (tests/import_reach.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from replicate.experiments import beyond, dispatch, grid, trainedcv, unit_code
from tests.import_reach import reached, reached_modules


def files_of(kind: str) -> set[str]:
    return {rel for name in unit_code.UNIT_CODE[kind] for rel in unit_code.module_files(name)}


def modules_of(kind: str) -> set[str]:
    """Dotted names of the files :data:`UNIT_CODE` lists for ``kind``."""
    return {rel[:-3].replace("/", ".").removesuffix(".__init__") for rel in files_of(kind) if rel.endswith(".py")}


# ------------------------------------------------------------------------------------------ completeness
RUNNER = grid.Runner
#: Each kind's unit functions: a runner is built for every unit (its folds come from Runner.__init__); an SVM fold
#: reads the features Runner.features extracts; a trained "beyond" split goes through TrainedCandidate.result.
ROOTS = {
    "train": [RUNNER.__init__, RUNNER.run_unit],
    "svm": [RUNNER.__init__, RUNNER.run_unit, RUNNER.features],
    "extract": [RUNNER.__init__, RUNNER.features],
    "split": [RUNNER.__init__, RUNNER.run_unit, trainedcv.TrainedCandidate.result],
    "beyond": [RUNNER.__init__, RUNNER.run_unit, RUNNER.features, beyond.run_beyond],
}
#: Reached but deliberately not hashed: the executors give the same numbers wherever a unit runs
#: (tests/test_executors.py), and the "beyond" steps use only the report's file writers.
NOT_HASHED = {"replicate.experiments.dispatch", "replicate.experiments.executors"}
FILE_WRITERS = {("replicate.experiments.report", q) for q in ("", "write_csv", "_savefig")}


@pytest.mark.parametrize("kind", sorted(ROOTS))
def test_every_module_a_unit_reaches_is_hashed(kind):
    missing = reached_modules(ROOTS[kind]) - modules_of(kind) - {"replicate.experiments.report"}
    assert not missing, f"{kind} units run {sorted(missing)}, absent from unit_code.UNIT_CODE[{kind!r}]"
    report = {n for n in reached(ROOTS[kind]) if n[0] == "replicate.experiments.report"}
    assert report <= FILE_WRITERS, f"{kind} units compute with the report's {sorted(report - FILE_WRITERS)}"


@pytest.mark.parametrize("kind", ["train", "svm"])
def test_a_unit_on_an_executor_reaches_no_module_the_key_lacks(kind):
    missing = reached_modules([dispatch.grid_unit]) - modules_of(kind) - NOT_HASHED
    assert not missing, f"dispatch.grid_unit runs {sorted(missing)}, absent from UNIT_CODE[{kind!r}]"


def test_the_walk_sees_lazy_imports_and_method_calls():
    # the walk is what the completeness tests rest on: imports inside functions, self.<method>, and a method
    # called on an object of unknown class must all be followed
    got = reached([RUNNER.run_unit])
    assert ("replicate.experiments.training", "train_fold") in got          # imported inside run_unit
    assert ("replicate.experiments.grid", "Runner.rows") in got              # self.rows(...)
    assert ("replicate.experiments.svm", "fit_score") in got                 # run_unit -> svm_fold -> svm
    assert ("replicate.experiments.training", "NetPair.blobs") in reached([RUNNER.features])   # pair.blobs(...)


def test_the_report_plan_and_cli_are_in_no_key():
    for kind in unit_code.UNIT_CODE:
        assert not {m for m in modules_of(kind)
                    if m.rpartition(".")[2] in ("report", "plan", "pipeline", "verdict_run", "controls", "dispatch",
                                                "executors", "power")
                    or m.startswith("replicate.cli")}, kind
    assert "models/caffe.proto" in files_of("train")          # the schema models compiles is code too


# ------------------------------------------------------------------------------------------ keys
class _Store:
    """The fields of a patch store a unit key reads (a fake: no patches)."""

    def __init__(self, n: int = 20):
        self.key, self.path = "store-key", "unused"
        self.index = pd.DataFrame({"patient_id": [f"p{i:02d}" for i in range(n)], "label": [i % 2 for i in range(n)],
                                   "role": "train", "kind": "centre", "slice": 0})


def _keys(tmp_path) -> dict[str, str]:
    """One key of every kind: a fold of a scratch, a transfer and a deep-feature cell, a feature cache entry, a
    trained split that is not a grid fold, a "beyond" step."""
    p = grid.get_preset("smoke")
    runner = grid.Runner(p, {80: _Store()}, tmp_path, torch.device("cpu"), progress=False)
    cells = {c.approach: c for c in grid.unique_cells(p) if c.patch_size == 80}
    out = {a: runner.unit_key(c, 0, 0) for a, c in cells.items()}
    out["extract"] = runner.cache.key("GoogleNet", "w", "store-key", np.arange(3), 224, "loss3/classifier")
    cand = trainedcv.TrainedCandidate(runner, cells["scratch"])
    out["split"] = cand.key_and_fold(["p00", "p01"], ["p02"])[0]
    out["beyond"] = beyond._Steps(runner).base
    return out


@pytest.fixture
def edit(monkeypatch):
    """``edit(rel)``: pretend the file ``rel`` (``replicate/experiments/report.py``) was edited, by changing its
    digest; the code identities are recomputed."""
    real = unit_code.file_digest

    def apply(rel: str):
        def digest(path):
            return "edited" if str(path).replace("\\", "/").endswith(rel) else real(path)

        monkeypatch.setattr(unit_code, "file_digest", digest)
        unit_code.code_id.cache_clear()

    yield apply
    unit_code.code_id.cache_clear()


def test_a_report_plan_or_cli_edit_leaves_every_key(tmp_path, edit):
    before = _keys(tmp_path / "a")
    for rel in ("replicate/experiments/report.py", "replicate/experiments/plan.py", "replicate/cli.py",
                "replicate/experiments/pipeline.py", "replicate/experiments/dispatch.py"):
        edit(rel)
        assert _keys(tmp_path / "a") == before, rel


@pytest.mark.parametrize("rel", ["replicate/experiments/protocol.py", "models/layers/conv.py", "models/solver.py",
                                 "replicate/cohort/patches.py"])
def test_a_protocol_models_or_patches_edit_changes_every_key(tmp_path, edit, rel):
    before = _keys(tmp_path / "a")
    edit(rel)
    after = _keys(tmp_path / "a")
    assert all(after[k] != before[k] for k in before), {k for k in before if after[k] == before[k]}


def test_an_approach_edit_changes_the_keys_of_its_units_only(tmp_path, edit):
    before = _keys(tmp_path / "a")
    edit("replicate/experiments/svm.py")          # SVM fits: folds (run_unit computes both kinds) but no features
    after = _keys(tmp_path / "a")
    assert {k for k in before if after[k] != before[k]} == {"scratch", "transfer", "features", "split", "beyond"}
    edit("replicate/experiments/trainedcv.py")    # builds the trained splits; grid folds do not run it
    after = _keys(tmp_path / "a")
    assert {k for k in before if after[k] != before[k]} == {"split", "beyond"}
    edit("replicate/experiments/permutation.py")  # a "beyond" analysis only
    after = _keys(tmp_path / "a")
    assert {k for k in before if after[k] != before[k]} == {"beyond"}


def test_unit_kinds():
    assert [unit_code.unit_kind(a) for a in ("scratch", "transfer", "features")] == ["train", "train", "svm"]
    with pytest.raises(KeyError):
        unit_code.unit_kind("nope")
