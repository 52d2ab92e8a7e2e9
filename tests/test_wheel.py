"""The package installs as a wheel and works from any folder (issue 8): the nets, solvers and the paper's numbers
travel as package data and are found with importlib.resources, not by paths relative to a checkout."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _tracked_copy(dest: Path) -> None:
    """The files a clean clone has (git ls-files), without the big golden fixtures, tests and docs."""
    try:
        files = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True,
                               timeout=60).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    for f in files:
        if not f or f.startswith(("compare/golden/", "tests/", "benchmarks/", "docs/")):
            continue
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    src, target = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site")
    _tracked_copy(src)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--target", str(target), "."], cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return target


def _run(installed, tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    env.pop("RGR_PROTOTXT_DIR", None)
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_wheel_carries_nets_and_paper_data(installed):
    for rel in ("models/nets/googlenet/deploy.prototxt", "models/nets/cifar/solver.prototxt",
                "models/caffe.proto", "compare/data/table2.csv", "compare/data/cohort_flow.csv"):
        assert (installed / rel).is_file(), rel


def test_installed_commands_work_from_another_folder(installed, tmp_path):
    p = _run(installed, tmp_path, "-c", "import models, compare.paper as p; print(models.__file__); "
             "print(p.facts()['luminal_a'])")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[0].startswith(str(installed)) and p.stdout.split("\n")[1] == "90"
    p = _run(installed, tmp_path, "-m", "models", "audit", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(p.stdout)
    assert {r["net"] for r in rows} == {"GoogleNet", "GoogleNet_R", "VGGNet_R", "CIFAR"}
    assert all(r["prototxt"].startswith("prototxt/") for r in rows)
    p = _run(installed, tmp_path, "-m", "replicate", "synth", "--patients", "3", "--out", "cohort", "--quiet")
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "cohort" / "synthetic_truth.csv").exists()
