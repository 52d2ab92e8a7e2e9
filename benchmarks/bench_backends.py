"""Side-by-side throughput of one Caffe deploy net (default: BVLC GoogLeNet) in every backend we can reach, in one
run: our torch path (NCHW and channels_last), our ONNX export in onnxruntime, OpenCV dnn 4.x (its Caffe importer;
OpenCV 5 removed it) and real Caffe (pycaffe) when importable. Median images/s over interleaved rounds (each round
times every backend once, each in a fresh process, so machine-load drift hits all of them alike and no library's
idle thread pool competes with another), printed with ratios to OpenCV and to Caffe. A benchmark, not a test:
nothing passes or fails.

    python benchmarks/bench_backends.py [--net PROTOTXT] [--batches 1,16] [--threads 2] [--rounds 3] [--seconds 4]
    PYTHONPATH=/path/to/opencv4 python ...     # an opencv-python-headless<5 installed with pip --target

Recorded 2026-11-30 (2 shared cores, other jobs running: load average 1.5 -> 10.8 during the run, so the
ranges are wide and torch, whose OpenMP threads spin-wait, suffers most), images/s batch 1 / batch 16:
real Caffe 7.1 / 6.2; OpenCV dnn 4.14 11.0 / 8.6; ours onnxruntime 7.3 / 6.7; ours torch NCHW 1.4 / 2.4,
channels_last 2.2 / 4.5. An earlier run at load ~3 gave Caffe 12.2 / 16.1, OpenCV 19.2 / 35.9, onnxruntime
11.3 / 33.2, torch channels_last 3.9 / 32.1; in-process at a quiet moment the torch path ran 15.9 img/s (NCHW) and
23.1 img/s (channels_last, the default since this benchmark) at batch 1. Repeat on a quiet machine before
drawing conclusions.

All backends get the same seeded weights (written once as a .caffemodel by ``models.save_caffemodel``, which
OpenCV and Caffe read) and the same input. The issue's goals: torch path >= OpenCV at batch 1 and 16; onnxruntime
>= 1.5x OpenCV.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(fn, batch: int, seconds: float) -> float:
    """Images per second: one warm-up call, then repeat for at least ``seconds`` (at least 2 calls)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if n >= 2 and dt >= seconds:
            return n * batch / dt


BACKENDS = ("torch_nchw", "torch_cl", "onnxruntime", "opencv", "caffe")
LABELS = {"torch_nchw": "ours torch (NCHW)", "torch_cl": "ours torch (channels_last)",
          "onnxruntime": "ours onnxruntime", "opencv": "OpenCV dnn", "caffe": "real Caffe (CPU)"}


def make_runner(kind: str, net_path: str, weights: str, batch: int, threads: int):
    """A callable running one forward pass of ``kind`` at ``batch`` (raises ImportError when unreachable)."""
    import models
    net = models.load_net(net_path, batch=batch)
    name = next(iter(net.inputs))
    x = np.random.default_rng(0).standard_normal((batch,) + tuple(net.inputs[name][1:])).astype(np.float32)
    if kind.startswith("torch"):
        import torch
        torch.set_num_threads(threads)
        fmt = "contiguous" if kind == "torch_nchw" else "channels_last"
        module = models.to_torch(net, memory_format=fmt).eval()
        models.load_caffemodel(module, weights)
        xt = torch.from_numpy(x)
        if fmt == "channels_last":
            xt = xt.contiguous(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode():
                module(xt)
        return run
    if kind == "onnxruntime":
        import onnxruntime as ort

        from models.onnx_export import build_onnx
        from models.weights import caffemodel_params
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        params, _ = caffemodel_params(net, weights)
        sess = ort.InferenceSession(build_onnx(net, params=params).SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, {name: x})
    if kind == "opencv":
        import cv2
        if int(cv2.__version__.split(".")[0]) >= 5:
            raise ImportError(f"OpenCV {cv2.__version__} has no Caffe importer (need opencv-python-headless<5)")
        cv2.setNumThreads(threads)
        cvnet = cv2.dnn.readNetFromCaffe(net_path, weights)
        cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)

        def run_cv():
            cvnet.setInput(x)
            cvnet.forward()
        return run_cv
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    caffe.set_mode_cpu()
    cnet = caffe.Net(net_path, weights, caffe.TEST)
    cnet.blobs[name].reshape(*x.shape)
    cnet.reshape()
    cnet.blobs[name].data[...] = x
    return lambda: cnet.forward()


def worker(args) -> int:
    """One backend, one batch, one timing, in a process of its own (another library's spinning thread pool,
    e.g. OpenBLAS after Caffe, never steals the cores from the one being timed)."""
    try:
        run = make_runner(args.worker, args.net, args.weights, args.batch, args.threads)
    except ImportError as e:
        print(f"UNAVAILABLE {e}")
        return 0
    version = ""
    if args.worker == "opencv":
        import cv2
        version = cv2.__version__
    print(f"RESULT {timed(run, args.batch, args.seconds)} {version}")
    return 0


def measure(kind: str, args, weights: str, batch: int):
    import subprocess
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--worker", kind, "--net", args.net, "--weights", weights, "--batch",
           str(batch), "--threads", str(args.threads), "--seconds", str(args.seconds)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT"):
            parts = line.split()
            return float(parts[1]), (parts[2] if len(parts) > 2 else "")
        if line.startswith("UNAVAILABLE"):
            return None, line[len("UNAVAILABLE "):]
    return None, (p.stderr.strip().splitlines() or ["failed"])[-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default=str(ROOT / "prototxt/googlenet_imagenet/deploy.prototxt"))
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0, help="per backend per round")
    ap.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    import models
    print(f"net {args.net}; {args.threads} threads; median of {args.rounds} interleaved rounds, each backend in "
          f"its own process; load average {os.getloadavg()[0]:.1f} at start")
    table = []
    with tempfile.TemporaryDirectory() as td:
        weights = os.path.join(td, "w.caffemodel")
        models.save_caffemodel(models.to_torch(models.load_net(args.net, batch=1), seed=0), weights)
        for batch in [int(b) for b in args.batches.split(",")]:
            ips = {k: [] for k in BACKENDS}
            labels = dict(LABELS)
            for _ in range(args.rounds):
                for kind in BACKENDS:
                    v, note = measure(kind, args, weights, batch)
                    if v is None:
                        labels[kind] = None
                        print(f"note: no {LABELS[kind]} row at batch {batch} ({note})")
                        continue
                    ips[kind].append(v)
                    if kind == "opencv" and note:
                        labels[kind] = f"OpenCV dnn {note}"
            med = {k: statistics.median(v) for k, v in ips.items() if v and labels[k]}
            cv, caffe = med.get("opencv"), med.get("caffe")
            for k, v in med.items():
                table.append((batch, labels[k], v, v / cv if cv else None, v / caffe if caffe else None,
                              min(ips[k]), max(ips[k])))
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(f"{'batch':>5}  {'backend':<30} {'img/s (median)':>14} {'range':>13}  {'x OpenCV':>8}  {'x Caffe':>7}")
    for batch, label, v, rcv, rcaffe, lo, hi in table:
        f = lambda r: f"{r:.2f}" if r is not None else "-"  # noqa: E731
        print(f"{batch:>5}  {label:<30} {v:>14.1f} {lo:>6.1f}-{hi:<6.1f}  {f(rcv):>8}  {f(rcaffe):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
