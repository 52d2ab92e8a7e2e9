"""``pytest compare/ --run RUN``: check a finished run folder against the paper (compare/test_paper_parity.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def pytest_addoption(parser):
    try:
        parser.addoption("--run", action="store", default=None, metavar="RUN",
                         help="a run folder written by `python -m replicate run` to compare with the paper")
    except ValueError:  # already registered by another conftest
        pass


@pytest.fixture(scope="session")
def run_dir(request) -> Path:
    value = request.config.getoption("--run", default=None)
    if not value:
        pytest.skip("no run to compare: pass --run RUN (a folder written by python -m replicate run)")
    path = Path(value)
    if not (path / "provenance.json").exists():
        pytest.fail(f"--run {path}: no provenance.json; not a finished run of python -m replicate run", pytrace=False)
    from compare.comparison import missing_files

    miss = missing_files(path)
    if miss:
        pytest.fail(f"--run {path}: missing {', '.join(miss)} (a run folder from an older version or an "
                    "interrupted run; rerun python -m replicate run to complete it)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def provenance(run_dir) -> dict:
    return json.loads((run_dir / "provenance.json").read_text())


@pytest.fixture(scope="session")
def comparison_table(run_dir):
    """The run's cells judged against the paper (compare.comparison), also written into RUN/report.md and
    RUN/results/comparison.csv."""
    from replicate.experiments.report import insert_sections

    return insert_sections(run_dir)
