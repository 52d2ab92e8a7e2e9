"""One CLI convention (models.cli.dispatch) in ``python -m models`` and ``python -m replicate``: errors the user
can cause are one line on stderr and exit code 2, no traceback (issue 8)."""
from __future__ import annotations

import pytest

from models.cli import main as models_main
from models.resources import net_file
from replicate.cli import main as replicate_main

CIFAR = str(net_file("cifar"))


@pytest.mark.parametrize("argv,needle", [
    (["info", CIFAR, "--batch", "0"], "--batch 0"),
    (["info", CIFAR, "--input-shape", "data=1,x"], "--input-shape"),
    (["info", "no/such.prototxt"], "no such prototxt file"),
    (["convert", CIFAR, "--opset", "3", "--onnx", "x.onnx"], "--opset 3"),
    (["fetch-weights", "w", "--timeout", "-1"], "--timeout"),
])
def test_models_cli_user_errors_are_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert models_main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv,needle", [
    (["synth", "--out", "c", "--patients", "0"], "--patients"),
    (["run", "--repeats", "0", "--out", "r"], "--repeats"),
    (["cohort", "no/such/root"], "no/such/root"),
])
def test_replicate_cli_user_errors_are_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert replicate_main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_top_level_help_lists_every_subcommand(capsys):
    for main, names in ((models_main, ("info", "audit", "convert", "run", "fetch-weights")),
                        (replicate_main, ("synth", "cohort", "patches", "run"))):
        with pytest.raises(SystemExit) as e:
            main(["--help"])
        out = capsys.readouterr().out
        assert e.value.code == 0 and all(n in out for n in names)
