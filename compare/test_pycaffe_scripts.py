"""pycaffe scripts under real pycaffe and under ``models.pycaffe``: the same printed numbers.

The scripts in ``golden/pycaffe_scripts/`` were written against real pycaffe (Net construction, forward/backward,
blob and param access, in-place edits, reshape, every solver class, snapshot/restore, ``caffe.io``, a 50-step
training fed through Input blobs; ``more_api``: MemoryData, an LMDB Data layer, forward_all, partial forward and
backward, spatial reshape, a solver's TEST net sharing). Each prints ``KEY values`` lines (``_print.show``). Here each runs

* under ours, once per session in this process, with ``import caffe`` resolving to :mod:`models.pycaffe`
  (``models.pycaffe.caffe_modules()`` put into ``sys.modules`` and taken out again; ``python -m models.pycaffe
  SCRIPT`` does the same);
* against what real pycaffe printed when the fixture was written, ``golden/fixtures/pycaffe__<script>/expected.txt``
  (``python compare/test_pycaffe_scripts.py --write`` regenerates them; it needs real pycaffe), and, when
  ``import caffe`` finds real pycaffe (tox -e caffe), against a live run in a subprocess too (which must also still
  print the stored output).

Agreement (fixed before comparing): the same keys in the same order; string values equal; numeric values of a key
with ``max|ours - caffe| <= TOL * max(1, max|caffe|)``, ``TOL = 1e-5`` (float32 arithmetic in another summation
order, up to 50 solver steps; measured: 2.9e-7 at worst). ``train_input`` is also held to the real ``caffe train``
trajectory of ``train__sgd_step_lmdb`` (the same batches from an LMDB): losses within ``5e-5 * max(1, |loss|)``
(the log's 6 significant digits) and the final weights within ``TOL``. And ``caffe.Net`` on the golden edge nets
and CIFAR deploy lists Caffe's blobs (Split blobs included, same order) with Caffe's values and diffs.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "golden" / "pycaffe_scripts"
FIXTURES = HERE / "golden" / "fixtures"
INIT = FIXTURES / "train__sgd_step_lmdb" / "init.caffemodel"
NAMES = ("net_api", "solver_api", "io_api", "train_input", "more_api")
TOL = 1e-5
LOSS_TOL = 5e-5


def _args(name: str, workdir: Path) -> list:
    return [str(workdir)] + ([str(INIT)] if name == "train_input" else [])


def parse(text: str) -> list:
    """``[(key, value)]`` of the ``KEY values`` lines: value a str (``s:`` lines) or a float64 array."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        key, _, rest = line.partition(" ")
        out.append((key, rest[2:] if rest.startswith("s:") else np.array(rest.split(), np.float64)))
    return out


def disagreements(caffe: list, ours: list) -> list:
    """The keys where ``ours`` departs from ``caffe`` under the module's rule (empty when they agree)."""
    if [k for k, _ in caffe] != [k for k, _ in ours]:
        return [f"keys differ: caffe {[k for k, _ in caffe]} vs ours {[k for k, _ in ours]}"]
    bad = []
    for (key, a), (_, b) in zip(caffe, ours):
        if isinstance(a, str) or isinstance(b, str):
            if a != b:
                bad.append(f"{key}: {a!r} vs {b!r}")
        elif a.shape != b.shape:
            bad.append(f"{key}: {a.size} values vs {b.size}")
        elif a.size and np.max(np.abs(a - b)) > TOL * max(1.0, float(np.max(np.abs(a)))):
            bad.append(f"{key}: max |diff| {np.max(np.abs(a - b)):.3g} (scale {np.max(np.abs(a)):.3g})")
    return bad


def real_pycaffe() -> bool:
    """Whether ``import caffe`` finds real pycaffe (not this package under that name)."""
    if "caffe" in sys.modules and sys.modules["caffe"].__name__ != "caffe":
        return False
    try:
        spec = importlib.util.find_spec("caffe")
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None and "models" not in Path(spec.origin).parts[-3:-1]


def run_real(name: str, workdir: Path) -> str:
    env = dict(os.environ, GLOG_minloglevel="2")
    res = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py")] + _args(name, workdir), env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{name} under real pycaffe failed:\n{res.stderr[-3000:]}"
    return res.stdout


@contextlib.contextmanager
def _as_caffe(workdir: Path, argv: list):
    """``import caffe`` resolving to models.pycaffe, ``sys.argv``, the working directory and ``sys.path`` as a
    script run sees them; everything restored afterwards (the live tier imports real pycaffe in this process)."""
    import models.pycaffe as pycaffe

    saved_modules = {n: m for n, m in sys.modules.items() if n == "caffe" or n.startswith("caffe.")}
    saved = (list(sys.path), list(sys.argv), os.getcwd(), os.environ.get("GLOG_minloglevel"))
    for n in saved_modules:
        del sys.modules[n]
    sys.modules.update(pycaffe.caffe_modules())
    sys.argv[:] = argv
    os.environ["GLOG_minloglevel"] = "2"
    os.chdir(workdir)
    try:
        yield
    finally:
        for n in pycaffe.caffe_modules():
            sys.modules.pop(n, None)
        sys.modules.update(saved_modules)
        sys.path[:], sys.argv[:] = saved[0], saved[1]
        os.chdir(saved[2])
        if saved[3] is None:
            os.environ.pop("GLOG_minloglevel", None)
        else:
            os.environ["GLOG_minloglevel"] = saved[3]


_OURS: dict = {}


def run_ours(name: str, tmp_path_factory) -> str:
    """What the script prints under models.pycaffe (run once per session, in this process)."""
    if name not in _OURS:
        workdir = tmp_path_factory.mktemp(f"ours_{name}")
        script = SCRIPTS / f"{name}.py"
        out = io.StringIO()
        with _as_caffe(workdir, [str(script)] + _args(name, workdir)), contextlib.redirect_stdout(out):
            runpy.run_path(str(script), run_name="__main__")
        _OURS[name] = out.getvalue()
    return _OURS[name]


@pytest.mark.parametrize("name", NAMES)
def test_script_prints_what_real_pycaffe_prints(name, tmp_path, tmp_path_factory):
    if name == "more_api":
        pytest.importorskip("lmdb", reason="more_api writes an LMDB (pip install .[data])")
    ours = parse(run_ours(name, tmp_path_factory))
    stored = FIXTURES / f"pycaffe__{name}" / "expected.txt"
    references = [("stored real pycaffe output", parse(stored.read_text()))]
    if real_pycaffe():
        live = parse(run_real(name, tmp_path))
        assert not disagreements(references[0][1], live), \
            f"real pycaffe no longer prints {stored}: regenerate with --write"
        references.append(("real pycaffe", live))
    assert ours, f"{name} printed nothing under models.pycaffe"
    for what, caffe in references:
        bad = disagreements(caffe, ours)
        assert not bad, f"{name}: models.pycaffe departs from {what} at {len(bad)} keys:\n" + "\n".join(bad[:20])


def test_train_input_follows_the_caffe_train_trajectory(tmp_path_factory):
    ours = dict(parse(run_ours("train_input", tmp_path_factory)))
    golden = np.load(FIXTURES / "train__sgd_step_lmdb" / "blobs.npz")
    want = golden["loss"][:len(ours["losses"])]
    assert len(ours["losses"]) == 50
    assert np.all(np.abs(ours["losses"] - want) <= LOSS_TOL * np.maximum(1.0, np.abs(want)))
    for key, value in ours.items():
        if key.startswith("final/"):
            ref = golden[key].ravel().astype(np.float64)
            assert np.max(np.abs(value - ref)) <= TOL * max(1.0, float(np.max(np.abs(ref)))), key


#: Caffe's own blobs of these nets (make_golden.py, real pycaffe): forward values, and for the edge nets the diffs of
#: a backward from seeded top diffs, with every blob name and order Caffe gives (Split blobs included)
GOLDEN_NETS = ("edge__conv__TEST", "edge__eltwise__TEST", "edge__loss__TEST", "edge__pointwise__TEST",
               "edge__batchnorm__TEST", "edge__shape_ops__TEST", "net__cifar__deploy__TEST")


@pytest.mark.parametrize("name", GOLDEN_NETS)
def test_net_blobs_and_diffs_equal_the_golden_fixtures(name, monkeypatch):
    """models.pycaffe.Net on the nets of the golden fixtures: ``net.blobs`` lists Caffe's blobs in Caffe's order and
    every value, blob diff and param diff is within ``TOL`` of real Caffe's (the fixtures' own rule)."""
    sys.path.insert(0, str(HERE / "golden"))
    try:
        import seeded
        from golden import Fixture
    finally:
        sys.path.remove(str(HERE / "golden"))
    import models.pycaffe as pycaffe

    monkeypatch.setenv("GLOG_minloglevel", "2")
    fx = Fixture(name)
    weights = fx.caffemodel
    net = pycaffe.Net(str(fx.net_path), pycaffe.TEST, weights=str(weights) if weights else None)
    if weights is None:
        shapes = {layer: [b.shape for b in blobs] for layer, blobs in net.params.items()}
        for layer, arrays in fx.params(shapes=shapes).items():
            for blob, a in zip(net.params[layer], arrays):
                blob.data[...] = a.reshape(blob.shape)
    for blob, a in fx.inputs().items():
        net.blobs[blob].data[...] = a.reshape(net.blobs[blob].shape)
    net.forward()
    assert list(net.blobs) == [k[len("blob/"):] for k in fx.keys("blob/")]
    for key in fx.keys("blob/"):
        fx.check(key, net.blobs[key[len("blob/"):]].data, TOL)
    if not fx.keys("diff/"):
        return
    for blob, recipe in fx.prov.get("top_diffs", {}).items():
        net.blobs[blob].diff[...] = seeded.seeded_array(recipe.split("'")[1], net.blobs[blob].diff.shape, 1.0)
    net._backward(len(net.layers) - 1, 0)  # Net::Backward, what make_golden ran: the outputs' diffs as they stand
    for key in fx.keys("diff/"):
        fx.check(key, net.blobs[key[len("diff/"):]].diff, TOL)
    for key in fx.keys("pdiff/"):
        layer, i = key[len("pdiff/"):].rsplit("/", 1)
        fx.check(key, net.params[layer][int(i)].diff, TOL)


def test_disagreement_rule_catches_a_changed_number_and_a_missing_key():
    caffe = parse("a 1.0 2.0\nb s:x y\n")
    assert not disagreements(caffe, parse("a 1.000001 2.0\nb s:x y\n"))
    assert disagreements(caffe, parse("a 1.001 2.0\nb s:x y\n"))
    assert disagreements(caffe, parse("a 1.0 2.0\n"))
    assert disagreements(caffe, parse("a 1.0 2.0\nb s:x z\n"))


def write_fixtures(out: Path = FIXTURES, log=print) -> list:
    """Run every script under real pycaffe and store what it prints under ``out/pycaffe__<name>/`` (needs ``import
    caffe`` to be real); returns the fixture names. make_golden.py calls it, so ``tox -e caffe`` regenerates them."""
    import tempfile

    if not real_pycaffe():
        raise SystemExit("real pycaffe is not importable here: build it with compare/golden/build_caffe.sh")
    import caffe  # noqa: F401 - real pycaffe, for its build record

    info_file = Path(caffe.__file__).parent / "rgr_build_info.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    info["version"] = getattr(caffe, "__version__", "")
    for name in NAMES:
        with tempfile.TemporaryDirectory() as tmp:
            text = run_real(name, Path(tmp))
        folder = Path(out) / f"pycaffe__{name}"
        folder.mkdir(parents=True, exist_ok=True)
        from models.atomic import write_json, write_text

        write_text(folder / "expected.txt", text)
        script = (SCRIPTS / f"{name}.py").read_bytes()
        prov = {"fixture": f"pycaffe__{name}", "script": f"compare/golden/pycaffe_scripts/{name}.py",
                "script_sha256": hashlib.sha256(script).hexdigest(),
                "command": f"GLOG_minloglevel=2 python compare/golden/pycaffe_scripts/{name}.py WORKDIR"
                           + (" compare/golden/fixtures/train__sgd_step_lmdb/init.caffemodel"
                              if name == "train_input" else ""),
                "caffe": info, "lines": len(text.splitlines())}
        write_json(folder / "provenance.json", prov)
        log(f"made pycaffe__{name} ({len(text.splitlines())} lines)")
    return [f"pycaffe__{n}" for n in NAMES]


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_fixtures()
    else:
        raise SystemExit("usage: python compare/test_pycaffe_scripts.py --write")
