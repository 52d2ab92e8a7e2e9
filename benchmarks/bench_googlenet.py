"""Throughput of the converted GoogLeNet: images/s at batch 1 and 32 for torch, onnxruntime and real Caffe
(pycaffe, when importable), measured in one run and printed as ratios to Caffe.

    python benchmarks/bench_googlenet.py [--net prototxt/googlenet_imagenet/deploy.prototxt] [--batches 1,32]
        [--seconds 10] [--threads N] [--device cpu|cuda]

Target on the project's 2-core CPU machines: the converted net at >= 2.5x real CPU Caffe (about 9 images/s for
BVLC GoogLeNet). Without pycaffe the ratio is given against that quoted figure and marked as such. On a CUDA GPU
the torch rows are fp32, bf16 autocast and channels_last, with the card named next to the figures (Caffe and
onnxruntime rows stay CPU unless onnxruntime has a CUDA provider). A benchmark, not a test: nothing here passes
or fails.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUOTED_CAFFE_CPU = 9.0  # images/s, BVLC GoogLeNet, real CPU Caffe on the 2-core machines (project issue 3)


def timed(fn, batch: int, seconds: float, sync=lambda: None) -> float:
    """Images per second: two warm-up calls, then repeat for at least ``seconds`` (at least 3 calls)."""
    fn()
    fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync()
        dt = time.perf_counter() - t0
        if n >= 3 and dt >= seconds:
            return n * batch / dt


def bench_caffe(prototxt: str, batch: int, seconds: float):
    try:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import caffe
    except ImportError:
        return None
    caffe.set_mode_cpu()
    net = caffe.Net(prototxt, caffe.TEST)
    name = net.inputs[0]
    shape = list(net.blobs[name].data.shape)
    shape[0] = batch
    net.blobs[name].reshape(*shape)
    net.reshape()
    net.blobs[name].data[...] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return timed(lambda: net.forward(), batch, seconds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default=str(ROOT / "prototxt/googlenet_imagenet/deploy.prototxt"))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", default="1,2", help="intra-op thread counts to try for torch and onnxruntime "
                    "(comma list; 0: library default). On a loaded machine 2 threads spin-wait badly")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch

    import models
    from models.onnx_export import build_onnx

    threads = [int(t) for t in args.threads.split(",")]
    default_threads = torch.get_num_threads()
    batches = [int(b) for b in args.batches.split(",")]
    print(f"net: {args.net}")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start (numbers are only comparable on a quiet machine)")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device; stopping")
        return 1
    rows = []
    for batch in batches:
        net = models.load_net(args.net, phase="TEST", batch=batch)
        module = models.to_torch(net, seed=0).eval()
        name = next(iter(net.inputs))
        shape = (batch,) + tuple(net.inputs[name][1:])
        x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        caffe_ips = bench_caffe(args.net, batch, args.seconds)
        base, base_label = (caffe_ips, "Caffe CPU (measured)") if caffe_ips else (QUOTED_CAFFE_CPU,
                                                                                  "Caffe CPU (quoted 9 img/s)")
        results = []
        if caffe_ips:
            results.append(("caffe cpu", caffe_ips))
        model = build_onnx(module)
        for t in threads:
            torch.set_num_threads(t or default_threads)
            tag = f"{t} thread{'s' if t != 1 else ''}" if t else "default threads"
            with torch.inference_mode():
                results.append((f"torch cpu fp32, {tag}", timed(lambda: module(x), batch, args.seconds)))
                cl = models.to_torch(net, seed=0).eval().to(memory_format=torch.channels_last)
                xcl = x.contiguous(memory_format=torch.channels_last)
                results.append((f"torch cpu fp32 channels_last, {tag}", timed(lambda: cl(xcl), batch, args.seconds)))
            opts = ort.SessionOptions()
            if t:
                opts.intra_op_num_threads = t
            sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            feed = {name: x.numpy()}
            results.append((f"onnxruntime cpu, {tag}", timed(lambda: sess.run(None, feed), batch, args.seconds)))
        torch.set_num_threads(default_threads)
        if args.device == "cuda":
            card = torch.cuda.get_device_name(0)
            sync = torch.cuda.synchronize
            gm = models.to_torch(net, seed=0).eval().cuda()
            xg = x.cuda()
            with torch.inference_mode():
                results.append((f"torch cuda fp32 [{card}]", timed(lambda: gm(xg), batch, args.seconds, sync)))
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    results.append((f"torch cuda bf16 autocast [{card}]",
                                    timed(lambda: gm(xg), batch, args.seconds, sync)))
                gcl = gm.to(memory_format=torch.channels_last)
                xgcl = xg.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    results.append((f"torch cuda bf16 channels_last [{card}]",
                                    timed(lambda: gcl(xgcl), batch, args.seconds, sync)))
        for label, ips in results:
            rows.append((batch, label, ips, ips / base, base_label))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"\n{'batch':>5}  {'backend':<48} {'images/s':>10}  ratio to Caffe")
    for batch, label, ips, ratio, base_label in rows:
        print(f"{batch:>5}  {label:<48} {ips:>10.1f}  {ratio:6.2f}x  vs {base_label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
