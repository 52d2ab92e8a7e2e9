"""Real Caffe's CPU speed (images/s) for a deploy net, the baseline for the converter's benchmark.

    python compare/golden/bench_caffe.py [--net prototxt/googlenet_imagenet/deploy.prototxt] [--batches 1 32]
                                         [--seconds 20] [--out compare/golden/caffe_speed.json]

Seeded weights (compare/golden/seeded.py), seeded input; one warm-up forward per batch size, then forwards
until ``--seconds`` have passed (at least 3). Reports the median time per forward and images/s.
Caffe's CPU build uses OpenBLAS for GEMM; its threads follow OPENBLAS_NUM_THREADS (recorded).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import seeded  # noqa: E402
from make_golden import atomic_write_text, caffe_info, parse_net, set_seeded_params  # noqa: E402


def bench(net_path: Path, batch: int, seconds: float) -> dict:
    import caffe
    from google.protobuf import text_format
    caffe.set_mode_cpu()
    net_p = parse_net(net_path.read_text(), str(net_path))
    for layer in net_p.layer:
        if layer.type == "Input":
            for s in layer.input_param.shape:
                s.dim[0] = batch
    for s in net_p.input_shape:
        s.dim[0] = batch
    if len(net_p.input_dim):
        net_p.input_dim[0] = batch
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "net.prototxt"
        p.write_text(text_format.MessageToString(net_p))
        net = caffe.Net(str(p), caffe.TEST)
    set_seeded_params(net, "net", net_p)
    for b in net.inputs:
        shape = net.blobs[b].data.shape
        net.blobs[b].data[...] = seeded.seeded_array(seeded.input_key("net", b, shape), shape, 1.0)
    net.forward()  # warm-up
    times = []
    t_end = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        net.forward()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"batch": batch, "forwards": len(times), "median_s": med, "images_per_s": batch / med,
            "min_s": min(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", type=Path, default=HERE.parent.parent / "prototxt/googlenet_imagenet/deploy.prototxt")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    rows = [bench(args.net, b, args.seconds) for b in args.batches]
    res = {"net": str(args.net), "caffe": caffe_info(), "cpu": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
           "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "results": rows}
    for r in rows:
        print(f"batch {r['batch']:3d}: {r['images_per_s']:8.2f} images/s  (median {r['median_s'] * 1000:.1f} ms "
              f"per forward, {r['forwards']} forwards)")
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
