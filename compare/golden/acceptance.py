"""Parameter-message variants and a crash-proof real-Caffe verdict for each (the acceptance test of
compare/test_caffe_live.py::test_acceptance_matches_real_caffe).

For each layer type, :func:`variants` yields small nets that differ in one parameter message: the field present
or absent, both of its forms (``pad`` vs ``pad_h``/``pad_w``, ``axis`` vs ``concat_dim``, ...), conflicting
forms, out-of-range values. :func:`caffe_verdicts` builds each net in real Caffe (``caffe.Net(..., TEST)``: the
layers' ``LayerSetUp`` and ``Reshape``) in a forked child of one process that imported pycaffe once, so a failed
``CHECK`` (which aborts its process) costs one fork, not the test; the verdict is the child's blob shapes or the
abort's last log line. :func:`our_verdict` is the same for ``models.load_net``.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

DATA = (2, 4, 9, 8)
REF = (2, 4, 5, 6)


def _net(body: str, shapes=(DATA, REF)) -> str:
    dims = " ".join("shape { " + " ".join(f"dim: {d}" for d in s) + " }" for s in shapes)
    tops = " ".join(f'top: "{n}"' for n in ("data", "ref")[:len(shapes)])
    return f'name: "v"\nlayer {{ name: "input" type: "Input" {tops} input_param {{ {dims} }} }}\n{body}\n'


def _layer(type_: str, param: str, fields: str, bottoms=("data",), tops=("out",), extra: str = "") -> str:
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    p = f" {param} {{ {fields} }}" if param else ""
    return f'layer {{ name: "l" type: "{type_}" {b} {t}{p} {extra}}}'


def variants() -> list[tuple[str, str]]:
    """``[(id, prototxt text)]``, upstream syntax."""
    out = []

    def add(vid, body, shapes=(DATA, REF)):
        out.append((vid, _net(body, shapes)))

    conv_base = {"kernel": "kernel_size: 3", "stride": "", "pad": "", "dilation": "", "group": ""}
    conv_alts = {
        "kernel": ["kernel_size: 3 kernel_size: 2", "kernel_h: 3 kernel_w: 2", "kernel_h: 3", "kernel_w: 2",
                   "kernel_size: 3 kernel_h: 3 kernel_w: 3", "", "kernel_size: 3 kernel_size: 2 kernel_size: 1",
                   "kernel_size: 0", "kernel_size: 11", "kernel_size: 11 stride: 3", "kernel_size: 12 stride: 3"],
        "stride": ["stride: 2", "stride: 2 stride: 1", "stride_h: 2 stride_w: 3", "stride_h: 2", "stride_w: 2",
                   "stride: 2 stride_h: 2", "stride: 0", "stride: 1 stride: 1 stride: 1"],
        "pad": ["pad: 1", "pad: 1 pad: 2", "pad_h: 1", "pad_w: 2", "pad_h: 1 pad_w: 2", "pad: 1 pad_h: 1",
                "pad: 1 pad: 1 pad: 1"],
        "dilation": ["dilation: 2", "dilation: 2 dilation: 1", "dilation: 1 dilation: 1 dilation: 1",
                     "dilation: 4"],
        "group": ["group: 2", "group: 3", "group: 4"],
    }
    for ctype in ("Convolution", "Deconvolution"):
        for field, alts in conv_alts.items():
            for i, alt in enumerate(alts):
                f = dict(conv_base, **{field: alt})
                add(f"{ctype}-{field}-{i}", _layer(ctype, "convolution_param",
                                                   "num_output: 4 " + " ".join(v for v in f.values() if v)))
        add(f"{ctype}-num_output-0", _layer(ctype, "convolution_param", "num_output: 0 kernel_size: 3"))
        add(f"{ctype}-bias-false", _layer(ctype, "convolution_param", "num_output: 4 kernel_size: 3 bias_term: false"))
    pool = {
        "kernel": ["kernel_size: 2", "kernel_h: 2 kernel_w: 3", "kernel_h: 2", "kernel_size: 2 kernel_h: 3",
                   "kernel_size: 2 kernel_h: 2 kernel_w: 2", "", "kernel_size: 0", "kernel_size: 12"],
        "pad": ["kernel_size: 3 pad: 1", "kernel_size: 3 pad_h: 1 pad_w: 2", "kernel_size: 3 pad_w: 1",
                "kernel_size: 3 pad_h: 1", "kernel_size: 3 pad: 1 pad_h: 1 pad_w: 1", "kernel_size: 2 pad: 2"],
        "stride": ["kernel_size: 3 stride: 2", "kernel_size: 3 stride_h: 2 stride_w: 3", "kernel_size: 3 stride_h: 2",
                   "kernel_size: 3 stride: 2 stride_h: 2 stride_w: 2", "kernel_size: 3 stride: 0"],
        "global": ["global_pooling: true", "global_pooling: true kernel_size: 2", "global_pooling: true stride: 2",
                   "global_pooling: true pad: 0", "global_pooling: true pad_h: 1 pad_w: 1"],
        "method": ["pool: AVE kernel_size: 3 pad: 1 stride: 2", "pool: STOCHASTIC kernel_size: 3 pad: 1",
                   "pool: STOCHASTIC kernel_size: 3 stride: 2"],
        "round": ["kernel_size: 3 stride: 2 round_mode: FLOOR", "kernel_size: 3 stride: 2 round_mode: CEIL",
                  "kernel_size: 2 stride: 3 pad: 1 round_mode: FLOOR"],
    }
    for field, alts in pool.items():
        for i, alt in enumerate(alts):
            add(f"Pooling-{field}-{i}", _layer("Pooling", "pooling_param", alt))
    for i, f in enumerate(["", "axis: 2 offset: 1", "axis: 2 offset: 1 offset: 2", "axis: 1 offset: 0",
                           "axis: 2 offset: 1 offset: 2 offset: 3", "axis: 2 offset: 5", "axis: -1", "axis: 0",
                           "axis: 4", "axis: 1 offset: 0 offset: 1"]):
        add(f"Crop-{i}", _layer("Crop", "crop_param", f, bottoms=("data", "ref")))
    for i, f in enumerate(["tiles: 2", "", "tiles: 0", "axis: -1 tiles: 3", "axis: 4 tiles: 2", "axis: 0 tiles: 1"]):
        add(f"Tile-{i}", _layer("Tile", "tile_param", f))
    for i, f in enumerate(["", "top_k: 3", "axis: 1 top_k: 4", "axis: 1 top_k: 5", "out_max_val: true",
                           "axis: -1 out_max_val: true top_k: 2", "top_k: 0", "top_k: 1000", "axis: 4"]):
        add(f"ArgMax-{i}", _layer("ArgMax", "argmax_param", f))
    for i, f in enumerate(["", "axis: 1", "axis: -1 operation: MEAN", "axis: 4", "operation: ASUM axis: 2 coeff: 2",
                           "operation: SUMSQ axis: -4"]):
        add(f"Reduction-{i}", _layer("Reduction", "reduction_param", f))
    for t, p in (("Scale", "scale_param"), ("Bias", "bias_param")):
        for i, f in enumerate(["", "axis: 0", "num_axes: 0", "num_axes: 2", "axis: 2 num_axes: -1", "num_axes: -2",
                               "axis: 3 num_axes: 2", "axis: -1", "axis: 4"]):
            add(f"{t}-{i}", _layer(t, p, f))
    add("Scale-bottom-ref-axis0", _layer("Scale", "scale_param", "axis: 0", bottoms=("data", "ref")))
    for i, f in enumerate(["", "axis: 1 slice_point: 1", "slice_dim: 1 slice_point: 2",
                           "axis: 1 slice_dim: 1 slice_point: 2", "slice_point: 3 slice_point: 1", "slice_point: 4",
                           "axis: 2 slice_point: 2 slice_point: 5"]):
        add(f"Slice-{i}", _layer("Slice", "slice_param", f, tops=("s1", "s2")))
    for i, f in enumerate(["", "axis: 2", "concat_dim: 1", "axis: 1 concat_dim: 1", "axis: 4", "axis: -4"]):
        add(f"Concat-{i}", _layer("Concat", "concat_param", f, bottoms=("data", "data")))
    for t in ("Exp", "Log"):
        p = t.lower() + "_param"
        for i, f in enumerate(["", "base: 2 scale: 0.5", "base: -2", "base: 0", "base: -1 shift: 1"]):
            add(f"{t}-{i}", _layer(t, p, f))
    for i, f in enumerate(["", "channel_shared: true"]):
        add(f"PReLU-{i}", _layer("PReLU", "prelu_param", f))
    for i, f in enumerate(["input_dim: 5 num_output: 3", "num_output: 3", "input_dim: 5",
                           "input_dim: 5 num_output: 3 bias_term: false"]):
        add(f"Embed-{i}", _layer("Embed", "embed_param", f), shapes=((2, 3),))
    for i, f in enumerate(["pyramid_height: 1", "pyramid_height: 2", "pyramid_height: 3 pool: AVE",
                           "pyramid_height: 4"]):
        add(f"SPP-{i}", _layer("SPP", "spp_param", f))
    for i, f in enumerate(["num_output: 3", "num_output: 3 axis: 2", "num_output: 3 axis: -1", "num_output: 0",
                           "num_output: 3 axis: 4", "num_output: 3 transpose: true"]):
        add(f"InnerProduct-{i}", _layer("InnerProduct", "inner_product_param", f))
    for i, f in enumerate(["", "axis: 2", "axis: 2 end_axis: 1", "end_axis: -2", "axis: 5"]):
        add(f"Flatten-{i}", _layer("Flatten", "flatten_param", f))
    for i, f in enumerate(["shape { dim: 0 dim: -1 }", "shape { dim: -1 dim: -1 }", "shape { dim: 3 dim: -1 }",
                           "shape { dim: 5 dim: -1 }", "axis: 1 num_axes: 2 shape { dim: -1 }",
                           "shape { dim: 0 dim: 0 dim: 0 dim: 0 dim: 0 }", "shape { dim: 2 dim: -2 }"]):
        add(f"Reshape-{i}", _layer("Reshape", "reshape_param", f))
    for i, f in enumerate(["", "local_size: 4", "local_size: 3 norm_region: WITHIN_CHANNEL"]):
        add(f"LRN-{i}", _layer("LRN", "lrn_param", f))
    for i, f in enumerate(["", "operation: PROD", "coeff: 1 coeff: -1", "operation: MAX coeff: 1 coeff: 2",
                           "coeff: 1"]):
        add(f"Eltwise-{i}", _layer("Eltwise", "eltwise_param", f, bottoms=("data", "data")))
    for i, f in enumerate(["", "axis: 3", "axis: 4", "axis: -1"]):
        add(f"Softmax-{i}", _layer("Softmax", "softmax_param", f))
    for i, f in enumerate(["", "across_channels: true normalize_variance: false", "eps: 0.1"]):
        add(f"MVN-{i}", _layer("MVN", "mvn_param", f))
    for i, f in enumerate(["", "dropout_ratio: 0.0", "dropout_ratio: 1.0"]):
        add(f"Dropout-{i}", _layer("Dropout", "dropout_param", f))
    for t, p, f in (("Threshold", "threshold_param", "threshold: 0.5"), ("ELU", "elu_param", "alpha: 0.3"),
                    ("BNLL", "", ""), ("ReLU", "relu_param", "negative_slope: 0.1"), ("Sigmoid", "", ""),
                    ("TanH", "", ""), ("Power", "power_param", "power: 2"), ("Silence", "", "")):
        add(f"{t}-0", _layer(t, p, f, tops=() if t == "Silence" else ("out",)))
    add("AbsVal-inplace", _layer("AbsVal", "", "", tops=("data",)))
    add("BatchNorm-0", _layer("BatchNorm", "batch_norm_param", "eps: 0.001"))
    # blob counts (layer.hpp CheckBlobCounts)
    add("Count-ReLU-2-bottoms", _layer("ReLU", "", "", bottoms=("data", "data")))
    add("Count-Eltwise-1-bottom", _layer("Eltwise", "", ""))
    add("Count-Crop-1-bottom", _layer("Crop", "", ""))
    add("Count-Pooling-MAX-2-tops", _layer("Pooling", "pooling_param", "kernel_size: 2", tops=("p", "mask")))
    add("Count-Pooling-AVE-2-tops", _layer("Pooling", "pooling_param", "pool: AVE kernel_size: 2",
                                           tops=("p", "mask")))
    add("Count-Concat-2-tops", _layer("Concat", "", "", bottoms=("data", "data"), tops=("a", "b")))
    add("Count-Conv-2-bottoms-1-top", _layer("Convolution", "convolution_param", "num_output: 2 kernel_size: 1",
                                             bottoms=("data", "data")))
    add("Count-Conv-2-bottoms-2-tops", _layer("Convolution", "convolution_param", "num_output: 2 kernel_size: 1",
                                              bottoms=("data", "data"), tops=("a", "b")))
    add("Count-Scale-3-bottoms", _layer("Scale", "", "", bottoms=("data", "data", "data")))
    # blob rules (blob.cpp Blob::Reshape)
    add("Input-zero-dim", _layer("ReLU", "", ""), shapes=((0, 4, 9, 8),))
    add("Input-negative-dim", _layer("ReLU", "", ""), shapes=((2, -3, 9, 8),))
    add("Input-count-over-INT_MAX", _layer("ReLU", "", ""), shapes=((65536, 65536),))
    return out


#: Variants where the brocolli-caffe fork we build (compare/golden/README.md) departs from upstream BVLC Caffe
#: (commit 9b89154), and which reading this converter follows. Checked by the acceptance test: real Caffe must still
#: give the fork's verdict (so the list cannot go stale) and ours must give upstream's.
FORK_DIFFERENCES = {
    "Scale-bottom-ref-axis0": "the fork's scale_layer.cpp Reshape has upstream's CHECK_EQ(bottom[0]->shape(axis_ + i), "
                              "scale->shape(i)) commented out; upstream (and this converter) refuse a bottom[1] "
                              "that does not match bottom[0]",
}


def _to_fork(text: str) -> str:
    """brocolli-caffe spells PoolingParameter field 13 ``ceil_mode`` (README.md here)."""
    text = re.sub(r"\bround_mode\s*:\s*FLOOR\b", "ceil_mode: false", text)
    return re.sub(r"\bround_mode\s*:\s*CEIL\b", "ceil_mode: true", text)


def caffe_verdicts(items) -> dict:
    """``{id: {"ok": bool, "shapes": {blob: shape}, "error": str}}`` from real Caffe, one forked child per net
    (the parent imported pycaffe once)."""
    import caffe
    caffe.set_mode_cpu()
    results = {}
    with tempfile.TemporaryDirectory() as td:
        for vid, text in items:
            net_path = Path(td) / "net.prototxt"
            net_path.write_text(_to_fork(text))
            log_path = Path(td) / "log.txt"
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: build the net, report its blob shapes
                import faulthandler
                faulthandler.disable()  # a CHECK abort is the expected outcome here, not a crash to report
                os.close(r)
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(fd, 2)
                try:
                    net = caffe.Net(str(net_path), caffe.TEST)
                    msg = {"ok": True, "shapes": {b: list(v.shape) for b, v in net.blobs.items()}}
                except Exception as e:  # noqa: BLE001 - a parse error surfaces as an exception
                    msg = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                os.write(w, json.dumps(msg).encode())
                os._exit(0)
            os.close(w)
            chunks = []
            while True:
                c = os.read(r, 65536)
                if not c:
                    break
                chunks.append(c)
            os.close(r)
            _, status = os.waitpid(pid, 0)
            if chunks:
                results[vid] = json.loads(b"".join(chunks))
            else:
                log = log_path.read_text(errors="replace").strip().splitlines() if log_path.exists() else []
                checks = [l for l in log if "Check failed" in l or "] " in l]
                results[vid] = {"ok": False, "error": (checks or log or [f"status {status}"])[-1]}
    return results


def our_verdict(text: str) -> dict:
    import warnings

    import models
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = models.load_net(text)
    except models.CaffeError as e:
        return {"ok": False, "error": str(e)}
    return {"ok": True, "shapes": {b: list(s) for b, s in net.blob_shapes.items()}}
