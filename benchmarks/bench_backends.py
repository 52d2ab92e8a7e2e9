"""Side-by-side throughput of one Caffe deploy net (default: BVLC GoogLeNet) in every backend we can reach, in one
run: our torch path (NCHW and channels_last), our ONNX export in onnxruntime, OpenCV dnn 4.x (its Caffe importer;
OpenCV 5 removed it) and real Caffe (pycaffe) when importable. Median images/s over interleaved rounds (each round
times every backend once, so machine-load drift hits all of them alike), printed with ratios to OpenCV and to
Caffe. A benchmark, not a test: nothing passes or fails.

    python benchmarks/bench_backends.py [--net PROTOTXT] [--batches 1,16] [--threads 2] [--rounds 3] [--seconds 4]
    PYTHONPATH=/path/to/opencv4 python ...     # an opencv-python-headless<5 installed with pip --target

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


def backends(net_path: str, weights: str, batch: int, threads: int):
    """``[(label, callable)]`` for every reachable backend at ``batch``."""
    import onnxruntime as ort
    import torch

    import models
    from models.onnx_export import build_onnx
    torch.set_num_threads(threads)
    net = models.load_net(net_path, batch=batch)
    name = next(iter(net.inputs))
    x = np.random.default_rng(0).standard_normal((batch,) + tuple(net.inputs[name][1:])).astype(np.float32)
    module = models.to_torch(net).eval()
    models.load_caffemodel(module, weights)
    xt = torch.from_numpy(x)
    out = []

    def run_torch(m, inp):
        with torch.inference_mode():
            m(inp)
    out.append(("ours torch (NCHW)", lambda: run_torch(module, xt)))
    cl = models.to_torch(net).eval()
    models.load_caffemodel(cl, weights)
    cl = cl.to(memory_format=torch.channels_last)
    xcl = xt.contiguous(memory_format=torch.channels_last)
    out.append(("ours torch (channels_last)", lambda: run_torch(cl, xcl)))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(build_onnx(module).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out.append(("ours onnxruntime", lambda: sess.run(None, {name: x})))
    try:
        import cv2
        if int(cv2.__version__.split(".")[0]) >= 5:
            raise ImportError(f"OpenCV {cv2.__version__} has no Caffe importer (need opencv-python-headless<5)")
        cv2.setNumThreads(threads)
        cvnet = cv2.dnn.readNetFromCaffe(net_path, weights)
        cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)

        def run_cv():
            cvnet.setInput(x)
            cvnet.forward()
        out.append((f"OpenCV dnn {cv2.__version__}", run_cv))
    except ImportError as e:
        print(f"note: no OpenCV dnn row ({e})")
    try:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import caffe
        caffe.set_mode_cpu()
        cnet = caffe.Net(net_path, weights, caffe.TEST)
        cnet.blobs[name].reshape(*x.shape)
        cnet.reshape()
        cnet.blobs[name].data[...] = x
        out.append(("real Caffe (CPU)", lambda: cnet.forward()))
    except ImportError:
        print("note: no real Caffe row (pycaffe not importable)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default=str(ROOT / "prototxt/googlenet_imagenet/deploy.prototxt"))
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0, help="per backend per round")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import models
    print(f"net {args.net}; {args.threads} threads; median of {args.rounds} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as td:
        weights = os.path.join(td, "w.caffemodel")
        models.save_caffemodel(models.to_torch(models.load_net(args.net, batch=1), seed=0), weights)
        table = []
        for batch in [int(b) for b in args.batches.split(",")]:
            runs = backends(args.net, weights, batch, args.threads)
            ips = {label: [] for label, _ in runs}
            for _ in range(args.rounds):
                for label, fn in runs:
                    ips[label].append(timed(fn, batch, args.seconds))
            med = {k: statistics.median(v) for k, v in ips.items()}
            cv = next((v for k, v in med.items() if k.startswith("OpenCV")), None)
            caffe = med.get("real Caffe (CPU)")
            for label, v in med.items():
                table.append((batch, label, v, v / cv if cv else None, v / caffe if caffe else None,
                              min(ips[label]), max(ips[label])))
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(f"{'batch':>5}  {'backend':<30} {'img/s (median)':>14} {'range':>13}  {'x OpenCV':>8}  {'x Caffe':>7}")
    for batch, label, v, rcv, rcaffe, lo, hi in table:
        f = lambda r: f"{r:.2f}" if r is not None else "-"  # noqa: E731
        print(f"{batch:>5}  {label:<30} {v:>14.1f} {lo:>6.1f}-{hi:<6.1f}  {f(rcv):>8}  {f(rcaffe):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
