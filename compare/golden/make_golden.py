"""Generate the golden fixtures from real BVLC Caffe (pycaffe, CPU) — see compare/golden/README.md.

Runs under pycaffe only (compare/golden/build_caffe.sh installs it); self-contained: nets are rewritten with
pycaffe's own ``caffe.proto.caffe_pb2`` and ``google.protobuf.text_format``, never with our ``models`` package.
Deterministic inputs and weights come from ``seeded.py`` (shared with the PyTorch tests).

    python compare/golden/make_golden.py                      # all fixtures into compare/golden/fixtures
    python compare/golden/make_golden.py --out /tmp/g --only edge__conv__TEST
    python compare/golden/make_golden.py --check compare/golden/fixtures   # regenerate to a temp dir, compare

Fixture kinds:
  * ``net__<net>__<file>__<PHASE>``: every prototxt/<net>/{deploy,train_val}.prototxt, data layers replaced by
    Input layers (batch 2), forward; TRAIN also records dropout tops and losses and (small nets) param diffs.
  * ``edge__<name>__<PHASE>``: compare/golden/nets/<name>.prototxt, forward and backward (seeded top diffs).
  * ``solver__<policy>``: SGDSolver, 6 iterations, params after each (solver_golden.py describes them).
  * ``train__<case>``: 50 iterations of the real ``caffe train`` tool (trajectory_golden.py describes them).
Each fixture is a folder with net.prototxt (upstream syntax), blobs.npz, provenance.json and, for small nets,
weights.caffemodel written by Caffe's Net.save().
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import seeded  # noqa: E402

BATCH = 2
#: fixtures whose full blobs exceed this many float32 elements store large blobs as seeded subsamples
LARGE_BLOB_ELEMENTS = 1_500_000
#: nets with more learnable elements than this do not store a .caffemodel (weights are seeded, regenerable)
MAX_STORED_PARAMS = 1_000_000
DATA_LAYER_TYPES = ("Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "AnnotatedData", "VideoData")
LABEL_LAYER_TYPES = ("SoftmaxWithLoss", "Accuracy", "MultinomialLogisticLoss", "InfogainLoss", "HingeLoss")
RANDOM_SEED = 1701
TOL = 1e-5


class GoldenError(RuntimeError):
    """A fixture could not be made or does not reproduce."""


# ----------------------------------------------------------------------------------------------------------------
# upstream <-> fork syntax.  brocolli-caffe 9.0.2 replaced upstream's PoolingParameter field 13
# `round_mode: CEIL|FLOOR` (enum, CEIL = 0) by `ceil_mode: true|false` (bool, default true).
def to_fork_syntax(text: str) -> str:
    text = re.sub(r"\bround_mode\s*:\s*FLOOR\b", "ceil_mode: false", text)
    return re.sub(r"\bround_mode\s*:\s*CEIL\b", "ceil_mode: true", text)


def to_upstream_syntax(text: str) -> str:
    text = re.sub(r"\bceil_mode\s*:\s*false\b", "round_mode: FLOOR", text)
    return re.sub(r"\bceil_mode\s*:\s*true\b", "round_mode: CEIL", text)


def caffe_info() -> dict:
    import caffe
    info = {"version": str(caffe.__version__)}
    p = Path(caffe.__file__).parent / "rgr_build_info.json"
    if p.exists():
        info.update(json.loads(p.read_text()))
    return info


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".npz")
    os.close(fd)
    np.savez_compressed(tmp, **arrays)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------
# net rewriting (pycaffe's caffe_pb2)
def parse_net(text: str, source: str):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    try:
        text_format.Merge(to_fork_syntax(text), net)
    except text_format.ParseError as e:
        raise GoldenError(f"{source}: {e}") from e
    if len(net.layers):  # V1: let Caffe's own tool upgrade it
        tools = caffe_info().get("tools_dir")
        exe = Path(tools or "") / "upgrade_net_proto_text"
        if not exe.exists():
            raise GoldenError(f"{source}: V1 net (`layers`) and no upgrade_net_proto_text at {exe}")
        with tempfile.TemporaryDirectory() as td:
            a, b = Path(td) / "in.prototxt", Path(td) / "out.prototxt"
            a.write_text(to_fork_syntax(text))
            subprocess.run([str(exe), str(a), str(b)], check=True, capture_output=True)
            net = caffe_pb2.NetParameter()
            text_format.Merge(b.read_text(), net)
    return net


def net_text(net) -> str:
    from google.protobuf import text_format
    return text_format.MessageToString(net)


def _legacy_input_shape(net):
    """The deploy-style input shape (`input_shape` / `input_dim` / Input layer) of a net, or None."""
    if len(net.input_shape):
        return tuple(net.input_shape[0].dim)
    if len(net.input_dim) >= 4:
        return tuple(net.input_dim[:4])
    for layer in net.layer:
        if layer.type == "Input" and len(layer.input_param.shape):
            return tuple(layer.input_param.shape[0].dim)
    return None


def data_shape(layer, fallback, source: str):
    """(C, H, W) that a data layer would produce, from its own parameters or the deploy file's input."""
    tp = layer.transform_param
    c = h = w = None
    if fallback is not None and len(fallback) == 4:
        c, h, w = fallback[1:]
    if layer.type == "MemoryData":
        mp = layer.memory_data_param
        return (mp.channels, mp.height, mp.width)
    if layer.type == "ImageData":
        ip = layer.image_data_param
        c = 3 if ip.is_color else 1
        if ip.new_height and ip.new_width:
            h, w = ip.new_height, ip.new_width
    if tp.crop_size:
        h = w = tp.crop_size
    if c is None:
        c = 3
    if h is None or w is None:
        raise GoldenError(f"{source}: data layer {layer.name!r} ({layer.type}) has no crop_size / new_height and "
                          "no deploy.prototxt input shape to borrow the spatial size from")
    return (c, h, w)


def replace_data_layers(net, batch: int, fallback, source: str) -> dict:
    """Replace data layers by Input layers in place; returns {top: shape} of the replaced tops."""
    from caffe.proto import caffe_pb2
    shapes = {}
    for i, layer in enumerate(net.layer):
        if layer.type not in DATA_LAYER_TYPES:
            continue
        chw = data_shape(layer, fallback, source)
        new = caffe_pb2.LayerParameter()
        new.name = layer.name
        new.type = "Input"
        new.top.extend(layer.top)
        new.include.extend(layer.include)
        new.exclude.extend(layer.exclude)
        for j, top in enumerate(layer.top):
            shape = (batch,) + tuple(int(x) for x in chw) if j == 0 else (batch,)
            new.input_param.shape.add().dim.extend(shape)
            shapes[top] = shape
        net.layer[i].CopyFrom(new)
    return shapes


# ----------------------------------------------------------------------------------------------------------------
# running a net
def _phase(name: str):
    import caffe
    return caffe.TRAIN if name == "TRAIN" else caffe.TEST


def layer_table(net) -> list[dict]:
    return [{"name": n, "type": l.type, "bottoms": list(net.bottom_names[n]), "tops": list(net.top_names[n])}
            for n, l in zip(net._layer_names, net.layers)]


def set_seeded_params(net, prefix: str, proto) -> int:
    """Fill every learnable blob from seeded.layer_params(seeded.weight_key(prefix, layer, shapes), ...);
    returns the number of learnable elements."""
    total = 0
    transpose = {l.name: bool(l.inner_product_param.transpose) for l in proto.layer}
    for name, blobs in net.params.items():
        ltype = net.layers[list(net._layer_names).index(name)].type
        shapes = [b.data.shape for b in blobs]
        vals = seeded.layer_params(seeded.weight_key(prefix, name, shapes), ltype, shapes,
                                   transpose=ltype == "InnerProduct" and transpose.get(name, False))
        for b, v in zip(blobs, vals):
            b.data[...] = v
            total += v.size
    return total


def label_blobs(net) -> dict:
    """{label blob: number of classes} for blobs fed as bottom[1] of classification loss/accuracy layers."""
    out = {}
    split_source = split_blobs(net)
    for n, l in zip(net._layer_names, net.layers):
        if l.type in LABEL_LAYER_TYPES:
            bots = net.bottom_names[n]
            if len(bots) >= 2:
                label = bots[1]
                while label in split_source:
                    label = split_source[label]
                out[label] = int(net.blobs[bots[0]].data.shape[1])
    return out


def split_blobs(net) -> dict:
    """{top: bottom} of the Split layers Caffe inserts itself (src/caffe/util/insert_splits.cpp names them
    `<blob>_<layer>_<i>_split`); Split layers written in the prototxt are not included."""
    out = {}
    for n, l in zip(net._layer_names, net.layers):
        if l.type == "Split" and n.endswith("_split"):
            for t in net.top_names[n]:
                out[t] = net.bottom_names[n][0]
    return out


class ArrayStore:
    """Arrays of one fixture, written to blobs.npz, with a cross-fixture de-duplication table.

    Every array gets a record in provenance (shape, how it is stored); ``stat/<key>`` always holds
    [sum, sum of squares, max |x|] over the finite elements (float64).  An array bitwise equal to one already
    stored by an earlier fixture of the same run is stored as a reference (``same_as``); an array with more than
    ``seeded.SUBSAMPLE_THRESHOLD`` elements is stored as values at ``seeded.subsample_indices(index_key, count)``
    when ``subsample`` is on.
    """

    def __init__(self, fixture: str, seen: dict, subsample: bool):
        self.fixture, self.seen, self.subsample = fixture, seen, subsample
        self.arrays: dict = {}
        self.meta: dict = {}

    def put_mask(self, key: str, arr: np.ndarray) -> None:
        """A 0/1 mask (arr != 0) as np.packbits (C order), always in full."""
        a = np.asarray(arr)
        self.arrays[key] = np.packbits((a != 0).ravel())
        self.meta[key] = {"shape": list(a.shape), "stored": "packbits"}

    def put_stats(self, key: str, arr: np.ndarray, meta: dict) -> None:
        a = np.array(arr, dtype=np.float32, order="C")  # keeps 0-axis blobs (loss tops) 0-d
        finite = a[np.isfinite(a)].astype(np.float64)
        self.arrays[f"stat/{key}"] = np.array([finite.sum(), (finite ** 2).sum(),
                                               np.abs(finite).max() if finite.size else 0.0])
        self.meta[key] = {"shape": list(a.shape), **meta}

    def put(self, key: str, arr: np.ndarray) -> None:
        a = np.array(arr, dtype=np.float32, order="C")
        self.put_stats(key, a, {})
        digest = hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()
        if digest in self.seen:
            fx, k = self.seen[digest]
            self.meta[key] = {"shape": list(a.shape), "stored": "same_as", "fixture": fx, "key": k}
            return
        self.seen.setdefault(digest, (self.fixture, key))
        if self.subsample and a.size > seeded.SUBSAMPLE_THRESHOLD:
            ik = f"{self.fixture}/{key}"
            idx = seeded.subsample_indices(ik, a.size)
            self.arrays[f"sub/{key}"] = a.ravel()[idx].copy()
            self.meta[key] = {"shape": list(a.shape), "stored": "subsample", "n": int(idx.size),
                              "index_key": ik, "index_sum": int(idx.sum())}
        else:
            self.arrays[key] = a.copy()
            self.meta[key] = {"shape": list(a.shape), "stored": "full"}


def run_net_fixture(fixture: str, net_text_fork: str, phase: str, out_dir: Path, *, prefix: str, backward: bool,
                    param_diffs: bool, source: str, extra: dict, seen: dict, subsample: bool,
                    weights_from: str | None = None) -> dict:
    """Build the net in Caffe, seed params and inputs, forward (and backward), write the fixture folder."""
    import caffe
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    caffe.set_mode_cpu()
    caffe.set_random_seed(RANDOM_SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    proto = caffe_pb2.NetParameter()
    text_format.Merge(net_text_fork, proto)
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "net.prototxt"
        p.write_text(net_text_fork)
        net = caffe.Net(str(p), _phase(phase))
    n_params = set_seeded_params(net, prefix, proto)
    labels = label_blobs(net)
    input_meta = {}
    for blob in net.inputs:
        shape = net.blobs[blob].data.shape
        k = seeded.input_key(prefix, blob, shape)
        if blob in labels:
            net.blobs[blob].data[...] = seeded.seeded_labels(k, shape, labels[blob])
            input_meta[blob] = {"shape": list(shape), "recipe": f"seeded_labels({k!r}, shape, {labels[blob]})"}
        else:
            net.blobs[blob].data[...] = seeded.seeded_array(k, shape, 1.0)
            input_meta[blob] = {"shape": list(shape), "recipe": f"seeded_array({k!r}, shape, 1.0)"}
    st = ArrayStore(fixture, seen, subsample)
    layers = layer_table(net)
    dropout_layers, inplace_layers = [], []
    # in-place layers whose top is rewritten again by a later in-place layer: snapshot them (the final value
    # is in net.blobs anyway)
    rewritten_later = set()
    last_writer: dict = {}
    for lay in layers:
        for top in lay["tops"]:
            if top in lay["bottoms"] and top in last_writer:
                rewritten_later.add(last_writer[top])
            last_writer[top] = lay["name"]
    # forward one layer at a time to capture dropout tops and in-place intermediate values
    for i, lay in enumerate(layers):
        net._forward(i, i)
        if lay["type"] == "Dropout" and phase == "TRAIN":
            dropout_layers.append(lay["name"])
            st.put(f"dropout/{lay['name']}", net.blobs[lay["tops"][0]].data)
            st.put_mask(f"mask/{lay['name']}", net.blobs[lay["tops"][0]].data)
        elif lay["name"] in rewritten_later and not subsample:
            inplace_layers.append(lay["name"])
            st.put(f"inplace/{lay['name']}", net.blobs[lay["tops"][0]].data)
    auto_splits = split_blobs(net)
    # with subsampling on, a large blob that is a bottom of a Concat is kept as stats only: its values are a slice
    # of the Concat's top, which is stored (GoogLeNet's inception branches)
    concat_of = {}
    if subsample:
        for lay in layers:
            if lay["type"] == "Concat":
                for bt in lay["bottoms"]:
                    concat_of.setdefault(auto_splits.get(bt, bt), lay["tops"][0])
    for name, b in net.blobs.items():
        if name in auto_splits:  # forward value == its source blob; not stored (diffs are)
            st.meta[f"blob/{name}"] = {"shape": list(b.data.shape), "stored": "split_of",
                                       "source": f"blob/{auto_splits[name]}"}
            continue
        if name in concat_of and b.data.size > seeded.SUBSAMPLE_THRESHOLD:
            st.put_stats(f"blob/{name}", b.data, {"stored": "stats_only", "concat_top": concat_of[name]})
            continue
        st.put(f"blob/{name}", b.data)
    losses = {n: float(net.blobs[n].data.ravel()[0]) for n, w in net.blob_loss_weights.items()
              if w != 0 and n in net.blobs}
    top_diff_keys = {}
    if backward or param_diffs:
        for o in net.outputs:
            if net.blob_loss_weights.get(o, 0) == 0 and backward and proto.force_backward:
                k = f"{prefix}/topdiff/{o}"
                net.blobs[o].diff[...] = seeded.seeded_array(k, net.blobs[o].diff.shape, 1.0)
                top_diff_keys[o] = f"seeded_array({k!r}, shape, 1.0)"
        net._backward(len(net.layers) - 1, 0)
        if backward:
            for name, b in net.blobs.items():
                st.put(f"diff/{name}", b.diff)
        if n_params <= MAX_STORED_PARAMS:
            for lname, blobs in net.params.items():
                for j, b in enumerate(blobs):
                    st.put(f"pdiff/{lname}/{j}", b.diff)
    weights = "seeded"
    if 0 < n_params <= MAX_STORED_PARAMS and weights_from:
        weights = f"../{weights_from}/weights.caffemodel"  # same net file, same params: written once
        stale = out_dir / "weights.caffemodel"
        if stale.exists():
            stale.unlink()
    elif 0 < n_params <= MAX_STORED_PARAMS:
        if not subsample:  # edge nets: the params in blobs.npz too (prototxt nets: the caffemodel only)
            for lname, blobs in net.params.items():
                for j, b in enumerate(blobs):
                    st.put(f"param/{lname}/{j}", b.data)
        with tempfile.TemporaryDirectory(dir=out_dir) as td:
            tmp = Path(td) / "w.caffemodel"
            net.save(str(tmp))
            os.chmod(tmp, 0o644)
            os.replace(tmp, out_dir / "weights.caffemodel")
        weights = "weights.caffemodel"
    atomic_savez(out_dir / "blobs.npz", st.arrays)
    atomic_write_text(out_dir / "net.prototxt", to_upstream_syntax(net_text_fork))
    prov = {
        "fixture": fixture, "source": source, "phase": phase, "batch": extra.pop("batch", None),
        "caffe": caffe_info(), "command": "python compare/golden/make_golden.py --only " + fixture,
        "random_seed": RANDOM_SEED, "seed_prefix": prefix, "weights": weights,
        "weights_recipe": f"seeded.layer_params(seeded.weight_key({prefix!r}, <layer>, <param shapes>), "
                          "<layer type>, <param shapes>, transpose=<inner_product_param.transpose>)",
        "n_params": int(n_params), "inputs": input_meta,
        "top_diffs": top_diff_keys, "losses": losses, "dropout_layers": dropout_layers,
        "inplace_layers": inplace_layers, "layers": layers, "arrays": st.meta,
        "blob_order": list(net.blobs.keys()), "outputs": list(net.outputs),
    }
    prov.update(extra)
    atomic_write_text(out_dir / "provenance.json", json.dumps(prov, indent=1, sort_keys=False) + "\n")
    return prov


# ----------------------------------------------------------------------------------------------------------------
# fixture discovery
def prototxt_jobs(root: Path) -> list[dict]:
    jobs = []
    for net_dir in sorted(p for p in (root / "prototxt").glob("*") if p.is_dir()):
        deploy = net_dir / "deploy.prototxt"
        tv = net_dir / "train_val.prototxt"
        if deploy.exists():
            jobs.append({"fixture": f"net__{net_dir.name}__deploy__TEST", "path": deploy, "phase": "TEST",
                         "net": net_dir.name, "file": "deploy"})
        if tv.exists():
            for ph in ("TEST", "TRAIN"):
                jobs.append({"fixture": f"net__{net_dir.name}__train_val__{ph}", "path": tv, "phase": ph,
                             "net": net_dir.name, "file": "train_val"})
    return jobs


def edge_jobs() -> list[dict]:
    jobs = []
    for p in sorted((HERE / "nets").glob("*.prototxt")):
        phases = ["TEST", "TRAIN"] if p.stem in ("pointwise",) else ["TEST"]
        for ph in phases:
            jobs.append({"fixture": f"edge__{p.stem}__{ph}", "path": p, "phase": ph})
    return jobs


def prepare_prototxt_job(job: dict) -> tuple[str, dict]:
    """Rewritten (fork-syntax) net text for a prototxt/ job, and extra provenance."""
    path: Path = job["path"]
    text = path.read_text()
    net = parse_net(text, str(path))
    fallback = None
    deploy = path.parent / "deploy.prototxt"
    if deploy.exists():
        try:
            fallback = _legacy_input_shape(parse_net(deploy.read_text(), str(deploy)))
        except GoldenError:
            fallback = None
    replaced = replace_data_layers(net, BATCH, fallback, str(path))
    # deploy files: set the batch of input / input_shape / Input layers to BATCH
    if len(net.input_shape):
        for s in net.input_shape:
            s.dim[0] = BATCH
    elif len(net.input_dim):
        for i in range(0, len(net.input_dim), 4):
            net.input_dim[i] = BATCH
    for layer in net.layer:
        if layer.type == "Input" and layer.name not in replaced:
            for s in layer.input_param.shape:
                s.dim[0] = BATCH
    extra = {"batch": BATCH, "replaced_data_tops": {k: list(v) for k, v in replaced.items()},
             # the parsed source net, so comments and layout of the file (e.g. the shape comments) do not count
             "source_net_sha256": hashlib.sha256(net_text(parse_net(text, str(path))).encode()).hexdigest()}
    return net_text(net), extra


def probe(text_fork: str, phase: str) -> tuple[bool, str]:
    """Load a net in a child process (Caffe aborts the process on a CHECK failure); returns (ok, stderr tail)."""
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "net.prototxt"
        p.write_text(text_fork)
        code = ("import caffe,sys; caffe.set_mode_cpu(); "
                f"caffe.Net({str(p)!r}, caffe.{phase})")
        env = dict(os.environ, GLOG_minloglevel="1")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    err = "\n".join(l for l in r.stderr.splitlines() if l.strip())
    return r.returncode == 0, "\n".join(err.splitlines()[-6:])


# ----------------------------------------------------------------------------------------------------------------
def generate(out: Path, only: list[str] | None, log=print) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    made, check_lines = [], []
    seen: dict = {}  # array digest -> (fixture, key): cross-fixture de-duplication, in generation order
    for job in prototxt_jobs(REPO):
        if only and job["fixture"] not in only:
            continue
        src = str(job["path"].relative_to(REPO))
        try:
            text, extra = prepare_prototxt_job(job)
        except GoldenError as e:
            check_lines.append(f"FAIL {job['fixture']}: rewrite: {e}")
            log(f"skip {job['fixture']}: {e}")
            continue
        ok, err = probe(text, job["phase"])
        if not ok:
            check_lines.append(f"FAIL {job['fixture']} ({src}, {job['phase']}):\n    " + err.replace("\n", "\n    "))
            log(f"skip {job['fixture']}: Caffe refused the net:\n{err}")
            continue
        check_lines.append(f"ok   {job['fixture']} ({src}, {job['phase']})")
        twin = f"net__{job['net']}__train_val__TEST"
        prov = run_net_fixture(job["fixture"], text, job["phase"], out / job["fixture"], prefix="net",
                               backward=False, param_diffs=job["phase"] == "TRAIN", source=src, extra=extra,
                               seen=seen, subsample=True,
                               weights_from=twin if job["phase"] == "TRAIN" and twin in made else None)
        log(f"made {job['fixture']} (params={prov['n_params']}, weights={prov['weights']})")
        made.append(job["fixture"])
    for job in edge_jobs():
        if only and job["fixture"] not in only:
            continue
        text = to_fork_syntax(job["path"].read_text())
        ok, err = probe(text, job["phase"])
        if not ok:
            raise GoldenError(f"{job['path']}: Caffe refused the edge net:\n{err}")
        src = str(job["path"].relative_to(REPO))
        run_net_fixture(job["fixture"], text, job["phase"], out / job["fixture"], prefix=f"edge/{job['path'].stem}",
                        backward=True, param_diffs=True, source=src, seen=seen, subsample=False,
                        extra={"batch": None, "source_sha256": sha256_file(job["path"])})
        log(f"made {job['fixture']}")
        made.append(job["fixture"])
    import solver_golden
    for name in solver_golden.POLICIES:
        fx = f"solver__{name}"
        if only and fx not in only:
            continue
        solver_golden.make(name, out / fx, caffe_info())
        log(f"made {fx}")
        made.append(fx)
    import caffe_tool
    import trajectory_golden
    exe = caffe_tool.caffe_bin()
    for case in trajectory_golden.CASES:
        fx = f"train__{case}"
        if only and fx not in only:
            continue
        if exe is None:
            raise GoldenError(f"{fx}: no real caffe binary (build_caffe.sh builds it; or set RGR_CAFFE_BIN)")
        trajectory_golden.make(case, out / fx, caffe_info(), exe)
        log(f"made {fx}")
        made.append(fx)
    pycaffe_fx = [f"pycaffe__{n}" for n in _pycaffe_scripts().NAMES]
    if not only or set(only) & set(pycaffe_fx):
        made += _pycaffe_scripts().write_fixtures(out, log)
    if not only:
        atomic_write_text(out / "prototxt_check.txt", "\n".join(check_lines) + "\n")
        for stale in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in made
                            and (p / "provenance.json").exists()):
            log(f"removing stale fixture {stale.name}")
            shutil.rmtree(stale)
    return made


def _pycaffe_scripts():
    """compare/test_pycaffe_scripts.py: the pycaffe__<script> fixtures' writer and its number parser."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from compare import test_pycaffe_scripts
    return test_pycaffe_scripts


# ----------------------------------------------------------------------------------------------------------------
VOLATILE = {"command", "caffe"}


def compare_dirs(new: Path, ref: Path, only=None) -> list[str]:
    """Differences between two fixture trees (arrays within TOL relative, NaN positions equal)."""
    problems = []
    ref_fx = sorted(p.name for p in ref.iterdir() if p.is_dir() and (only is None or p.name in only))
    new_fx = sorted(p.name for p in new.iterdir() if p.is_dir())
    for name in sorted(set(ref_fx) ^ set(new_fx)):
        problems.append(f"{name}: only in {'reference' if name in ref_fx else 'regenerated'} fixtures")
    for name in sorted(set(ref_fx) & set(new_fx)):
        if name.startswith("pycaffe__"):   # printed numbers of a pycaffe script, judged by the script test's rule
            ps = _pycaffe_scripts()
            bad = ps.disagreements(ps.parse((ref / name / "expected.txt").read_text()),
                                   ps.parse((new / name / "expected.txt").read_text()))
            problems += [f"{name}/expected.txt: {d}" for d in bad[:5]]
            continue
        a, b = np.load(new / name / "blobs.npz"), np.load(ref / name / "blobs.npz")
        if set(a.files) != set(b.files):
            problems.append(f"{name}/blobs.npz: keys differ: {sorted(set(a.files) ^ set(b.files))[:5]}")
        for k in sorted(set(a.files) & set(b.files)):
            x, y = a[k], b[k]
            if x.shape != y.shape:
                problems.append(f"{name}/{k}: shape {x.shape} != {y.shape}")
                continue
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                problems.append(f"{name}/{k}: NaN positions differ")
                continue
            m = ~np.isnan(x)
            if m.any():
                err = float(np.max(np.abs(x[m].astype(np.float64) - y[m])))
                scale = max(1.0, float(np.max(np.abs(y[m]))))
                if err > TOL * scale:
                    problems.append(f"{name}/{k}: max|a-b| = {err:.3g} > {TOL} * {scale:.3g}")
        pa = {k: v for k, v in json.loads((new / name / "provenance.json").read_text()).items() if k not in VOLATILE}
        pb = {k: v for k, v in json.loads((ref / name / "provenance.json").read_text()).items() if k not in VOLATILE}
        for k in sorted(set(pa) | set(pb)):
            if k in ("losses",):
                continue
            if pa.get(k) != pb.get(k):
                problems.append(f"{name}/provenance.json: field {k!r} differs")
        if (new / name / "net.prototxt").read_text() != (ref / name / "net.prototxt").read_text():
            problems.append(f"{name}/net.prototxt differs")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "fixtures")
    ap.add_argument("--only", nargs="*", help="fixture names to (re)make (debugging: the committed set comes "
                    "from a full run, since a fixture may refer to arrays stored by an earlier one)")
    ap.add_argument("--check", type=Path, metavar="REF",
                    help="regenerate into a temp dir and compare with the fixtures in REF; exit 1 on a difference")
    args = ap.parse_args(argv)
    try:
        if args.check:
            if args.only:
                ap.error("--check regenerates every fixture (fixtures refer to earlier ones); drop --only")
            with tempfile.TemporaryDirectory() as td:
                generate(Path(td), None)
                problems = compare_dirs(Path(td), args.check)
            for p in problems:
                print("DIFF", p)
            print(f"check: {len(problems)} difference(s) against {args.check}")
            return 1 if problems else 0
        made = generate(args.out, args.only)
        print(f"{len(made)} fixture(s) in {args.out}")
        return 0
    except GoldenError as e:
        print(f"make_golden: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
