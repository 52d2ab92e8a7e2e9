"""Bad input gets a clear error of the project's own type: a corpus of bad files, the CLI's one-line
``FILE:LINE:COL: message`` contract, and property tests that random mutations of the shipped prototxts and of
caffemodels raise nothing but the project's errors."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import models

HERE = Path(__file__).parent
ROOT = HERE.parent
CORPUS = HERE / "bad_inputs"
CASES = list(csv.DictReader(open(CORPUS / "expected.csv")))


def test_corpus_has_at_least_15_files():
    assert len(CASES) >= 15
    assert {c["file"] for c in CASES} == {p.name for p in CORPUS.glob("*.prototxt")}


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_each_bad_file_raises_its_error(case):
    with pytest.raises(getattr(models, case["error"])) as info:
        models.load_net(CORPUS / case["file"])
    assert re.search(case["message"], str(info.value)), str(info.value)


@pytest.mark.parametrize("name", ["unknown_field.prototxt", "kernel_too_big.prototxt"])
def test_cli_prints_one_line_and_exits_2(name):
    proc = subprocess.run([sys.executable, "-m", "models", "info", str(CORPUS / name)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    if name == "unknown_field.prototxt":
        assert re.match(rf"{re.escape(str(CORPUS / name))}:5:\d+: ", lines[0])


def test_cli_info_json_on_alexnet():
    import json
    proc = subprocess.run([sys.executable, "-m", "models", "info", "tests/data/bvlc_alexnet_deploy.prototxt",
                           "--json"], capture_output=True, text=True, cwd=ROOT, check=True)
    d = json.loads(proc.stdout)
    assert d["params"] == 60_965_228 and d["macc"] == 726_791_936
    assert {l["name"] for l in d["layers"]} >= {"conv2", "norm1", "fc8"}
    assert d["blobs"]["pool5"] == [1, 256, 6, 6]


def _shipped_prototxts():
    files = sorted((ROOT / "prototxt").rglob("*.prototxt")) + sorted((ROOT / "tests" / "data").glob("*.prototxt"))
    return [f for f in files if "solver" not in f.name]


SHIPPED = _shipped_prototxts()
TOKENS = ["{", "}", ":", '"', "layer", "bottom", "top", "0", "-1", "999999", "kernel_size", "type: \"Pooling\"",
          "pad: 7", "stride: 0", "num_output: 0", "group: 5", "axis: -9", "\n", "#", "include { phase: TRAIN }"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_prototxts_raise_only_project_errors(data):
    path = data.draw(st.sampled_from(SHIPPED))
    text = path.read_text()
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(text)))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        n = data.draw(st.integers(1, 40))
        token = data.draw(st.sampled_from(TOKENS))
        if kind == "delete":
            text = text[:pos] + text[pos + n:]
        elif kind == "insert":
            text = text[:pos] + token + text[pos:]
        else:
            text = text[:pos] + token + text[pos + len(token):]
    phase = data.draw(st.sampled_from(["TEST", "TRAIN"]))
    try:
        models.load_net(text + "\n", phase=phase, input_shapes=None)
    except models.CaffeError:
        pass


def _small_caffemodel(tmp_path_factory):
    net = models.load_net('''name: "m"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 6 input_dim: 6
layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "c" top: "fc" inner_product_param { num_output: 2 } }''')
    rng = np.random.default_rng(0)
    params = {l.name: [rng.standard_normal(s).astype(np.float32) for s in l.param_shapes] for l in net.layers}
    out = {}
    for v in ("V1", "V2"):
        p = tmp_path_factory.mktemp("cm") / f"{v}.caffemodel"
        models.write_caffemodel(p, net, params, version=v)
        out[v] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def caffemodel_bytes(tmp_path_factory):
    return _small_caffemodel(tmp_path_factory)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_caffemodels_raise_only_project_errors(tmp_path, caffemodel_bytes, data):
    raw = bytearray(caffemodel_bytes[data.draw(st.sampled_from(["V1", "V2"]))])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        kind = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if kind == "flip":
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "delete":
            del raw[pos:pos + data.draw(st.integers(1, 16))]
        elif kind == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[pos:]
        if not raw:
            raw = bytearray(b"\x00")
    path = tmp_path / f"m{os.getpid()}.caffemodel"
    path.write_bytes(bytes(raw))
    try:
        models.read_caffemodel(path)
    except models.CaffeError:
        pass
