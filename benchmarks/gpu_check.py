"""The 5-minute GPU check: fidelity and throughput of this harness on the card at hand, as one
markdown table, so that a rerun fits a short GPU lease.

    python benchmarks/gpu_check.py [--seconds 2] [--cpu-smoke] [--out table.md]

Rows (each measured in this run; a benchmark, nothing passes or fails):

1. **agreement**: for every net under ``prototxt/`` (deploy, TEST phase, seeded Caffe fillers, xavier where a
   file gives none), max|CUDA - CPU| of every output over ``max(1, max|CPU|)`` (the golden tests' scaling,
   compare/golden/golden.py: 1e-4), in torch fp32 (TF32 off, :func:`models.precision.strict_fp32`; PyTorch's
   default TF32 convolutions beside it), torch bf16 autocast + channels_last (stated, not held to 1e-4)
   and onnxruntime's CUDA execution provider (the ``gpu`` extra);
2. **inference** images/s of GoogLeNet and VGG16 at batch 1 and 64 (torch bf16; onnxruntime CUDA fp32);
3. **train step** images/s and achieved TFLOP/s (6 x MACC_train per image, replicate/experiments/plan.py) of
   every paper net at batch 32, alone, and with ``--pack`` units packed on CUDA streams
   (``replicate.experiments.training.train_folds_packed``' scheme: one iteration of each in turn);
4. **feature extraction** images/s of GoogLeNet and VGG16 (every Table 6 blob from one forward pass);
5. **SVM** fit seconds (cuML on the GPU if installed, scikit-learn on the CPU) at 4,000 x 1000;
6. **plan**: the paper grid (paper cohort size) extrapolated to this card from the measured train-step rates;
7. **trainparity**: ``models train --device cuda`` on every golden trajectory (compare/test_train_parity.py with
   ``RGR_TRAIN_DEVICE``): losses, test outputs and final weights against real ``caffe train`` (needs pytest).

A part whose package or device is missing prints one line saying so ("no CUDA device: ...", "onnxruntime CUDA
provider not available: ...") and the rest runs. Without CUDA (or with ``--cpu-smoke``) it runs a small CPU
version of rows 2-6 in well under a minute, to prove the script itself works.
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

PAPER_NETS = {"CIFAR": "cifar", "VGGNet_R": "vgg_r_table2", "GoogleNet_R": "googlenet_r_table2",
              "GoogleNet": "googlenet", "GoogleNet transfer": "googlenet_transfer", "VGG16 transfer": "vgg16"}
TOL = 1e-4   # compare/golden/golden.py


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, n_items: int, seconds: float, dev) -> float:
    """Items per second: one warm-up call, then calls until ``seconds`` have passed (at least 2)."""
    fn()
    _sync(dev)
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        _sync(dev)
        dt = time.perf_counter() - t0
        if n >= 2 and dt >= seconds:
            return n * n_items / dt


def deploy_module(folder: str, batch: int, seed: int = 0):
    import models
    from replicate.experiments.training import with_default_fillers

    proto, _ = with_default_fillers(ROOT / "prototxt" / folder / "deploy.prototxt")
    net = models.load_net(proto, phase="TEST", batch=batch)
    return net, models.to_torch(net, seed=seed).eval()


T0 = time.perf_counter()
BUDGET_S = 300.0


def agreement(rows, dev, seconds, folders=None):
    """Row 1: CPU vs CUDA for every net (torch fp32, torch bf16, onnxruntime CUDA EP)."""
    import torch

    from models.precision import strict_fp32

    want = "CUDAExecutionProvider" if dev.type == "cuda" else "CPUExecutionProvider"
    try:
        import onnxruntime as ort

        ort_provider = want if want in ort.get_available_providers() else None
    except ImportError:
        ort_provider = None
    if ort_provider is None:
        print(f"onnxruntime {want} not available: install the gpu extra (onnxruntime-gpu); ORT rows skipped")
    if folders is None:
        folders = sorted(p.name for p in (ROOT / "prototxt").iterdir() if (p / "deploy.prototxt").exists())
    for i, d in enumerate(folders):
        if time.perf_counter() - T0 > 0.4 * BUDGET_S:   # leave the rest of the 5 minutes to the other rows
            print(f"agreement: time budget spent, skipped {', '.join(folders[i:])} (rerun with --budget-s larger)")
            break
        net, m = deploy_module(d, 2)
        name = next(iter(net.inputs))
        shape = (2,) + tuple(net.inputs[name][1:])
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 50
        last = net.layers[-1]   # a softmax output saturates: compare the logits under it too
        blobs = list(net.outputs) + ([last.bottoms[0]] if last.type == "Softmax" else [])
        with torch.no_grad():
            ref = {k: v.float() for k, v in m(**{name: x}, blobs=blobs).items()}
            m_gpu = m.to(dev)
            out_tf32 = m_gpu(**{name: x.to(dev)}, blobs=blobs)     # PyTorch's default: TF32 convolutions
            with strict_fp32():
                out = m_gpu(**{name: x.to(dev)}, blobs=blobs)
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                out16 = m_gpu.to(memory_format=torch.channels_last)(
                    **{name: x.to(dev).contiguous(memory_format=torch.channels_last)}, blobs=blobs)

        def err(o):
            return max(float((o[k].float().cpu() - ref[k]).abs().max()) / max(1.0, float(ref[k].abs().max()))
                       for k in ref)
        e32, e16, etf = err(out), err(out16), err(out_tf32)
        eort = "-"
        if ort_provider:
            import models
            from models.onnx_export import inference_session

            sess = inference_session(models.to_onnx(m.cpu(), outputs=blobs), providers=[ort_provider])
            res = sess.run(None, {name: x.numpy()})
            names = [o.name for o in sess.get_outputs()]
            eort = max(float(np.abs(r - ref[n].numpy()).max()) / max(1.0, float(ref[n].abs().max()))
                       for r, n in zip(res, names) if n in ref)
            eort = f"{eort:.1e}"
        rows.append((f"agreement {d}", f"fp32 {e32:.1e} ({'ok' if e32 <= TOL else 'OVER 1e-4'}; "
                                       f"with PyTorch's default TF32 {etf:.1e})",
                     f"bf16 {e16:.1e}", f"ORT {want[:-17]} {eort}"))


def inference(rows, dev, seconds, batches, nets):
    import torch

    for label, folder in nets:
        for b in batches:
            net, m = deploy_module(folder, b)
            m = m.to(dev)
            name = next(iter(net.inputs))
            x = torch.randn((b,) + tuple(net.inputs[name][1:]), device=dev)
            if dev.type == "cuda":
                m = m.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)

            def fwd():
                with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                    m(**{name: x})
            rows.append((f"inference {label} batch {b}", f"torch {timed(fwd, b, seconds, dev):.1f} img/s",
                         "bf16" if dev.type == "cuda" else "fp32 cpu", ""))


def train_steps(rows, dev, seconds, batch, pack, nets):
    """Row 3: train step alone and packed (``pack`` copies of the net stepped in turn on their own streams)."""
    import torch

    import models
    from models.schema import pb
    from replicate.experiments.plan import net_info
    from replicate.experiments.training import caffe_sgd_step

    peak = None
    for label, folder in nets:
        info = net_info(folder)
        units = []
        for k in range(max(1, pack)):
            net = models.load_net(ROOT / "prototxt" / folder / "train_val.prototxt", phase="TRAIN",
                                  input_shapes={"data": (batch, 3, info.input_size, info.input_size),
                                                "label": (batch,)})
            mod = models.to_torch(net, seed=k).to(dev)
            if dev.type == "cuda":
                mod = mod.to(memory_format=torch.channels_last)
            sgd = models.CaffeSGD(mod.param_groups(), pb.SolverParameter(base_lr=1e-6, momentum=0.9,
                                                                         weight_decay=5e-4, lr_policy="fixed"), mod)
            x = torch.randn(batch, 3, info.input_size, info.input_size, device=dev)
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 2, (batch,), device=dev)
            st = torch.cuda.Stream(device=dev) if dev.type == "cuda" else None
            units.append((mod, sgd, x, y, st))

        def step(us):
            for mod, sgd, x, y, st in us:
                ctx = torch.cuda.stream(st) if st is not None else _Null()
                with ctx:
                    sgd.zero_grad(set_to_none=True)
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                        loss = mod.loss(mod(data=x, label=y))
                    loss.backward()
                    caffe_sgd_step(sgd)
        alone = timed(lambda: step(units[:1]), batch, seconds, dev)
        flop = 6.0 * info.macc_train
        cells = [f"alone {alone:.1f} img/s, {alone * flop / 1e12:.3f} TFLOP/s"]
        if pack > 1:
            packed = timed(lambda: step(units), batch * pack, seconds, dev)
            cells.append(f"x{pack} packed {packed:.1f} img/s, {packed * flop / 1e12:.3f} TFLOP/s")
            peak = packed * flop
        else:
            cells.append("")
        rows.append((f"train step {label} batch {batch}", *cells, ""))
        del units


def features(rows, dev, seconds, batch, nets):
    import torch

    from replicate.experiments.grid import LAYER_BLOBS

    for label, folder in nets:
        net, m = deploy_module(folder, batch)
        m = m.to(dev)
        name = next(iter(net.inputs))
        blobs = [b for b in (LAYER_BLOBS if "googlenet" in folder else ["fc8"]) if b in net.blob_shapes]
        blobs = blobs or [net.outputs[-1]]
        x = torch.randn((batch,) + tuple(net.inputs[name][1:]), device=dev)

        def fwd():
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                out = m(**{name: x}, blobs=blobs)
                [v.float().mean(dim=(2, 3)) if v.dim() == 4 else v for v in out.values()]
        rows.append((f"features {label} ({len(blobs)} blobs)", f"{timed(fwd, batch, seconds, dev):.1f} img/s",
                     f"batch {batch}", ""))


def svm(rows, n, d):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from svm_fit import synthetic

    from replicate.experiments.gpu_svm import gpu_svm_available, make_svm_auto

    ok, why = gpu_svm_available()
    if not ok:
        print(f"GPU SVM not available: {why}; SVM row is scikit-learn on the CPU")
    x, y = synthetic(n, d)
    for kernel in ("poly", "rbf"):
        est, backend = make_svm_auto(kernel)
        t0 = time.perf_counter()
        est.fit(x, y)
        rows.append((f"SVM {kernel} fit {n} x {d}", f"{time.perf_counter() - t0:.2f} s", backend, ""))


def plan_row(rows, dev, seconds):
    """Row 6; ``dev`` None: no microbenchmark (reference cards only)."""
    from replicate.experiments.grid import get_preset
    from replicate.experiments.plan import cohort_size, human_seconds, make_plan

    p = get_preset("paper")
    plan = make_plan(p, cohort_size(p, paper=True), device=dev.type if dev is not None else None,
                     bench_seconds=seconds, cache=False)
    rows.append(("plan: paper grid, paper cohort", f"{plan['flop']:.2e} FLOP",
                 f"this machine ~{human_seconds(plan['seconds_estimate'])}",
                 f"H200 peak {human_seconds(plan['reference']['H200 bf16']['seconds_nets'])} + SVM "
                 f"{human_seconds(plan['reference']['H200 bf16']['seconds_svm_cpu'])} CPU"))


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def train_parity(rows, dev):
    """``models train --device cuda`` against real ``caffe train``: compare/test_train_parity.py run with
    ``RGR_TRAIN_DEVICE`` set to this device (fp32, TF32 off), so the golden trajectories' tolerances judge CUDA."""
    import importlib.util
    import subprocess
    if importlib.util.find_spec("pytest") is None:
        rows.append(("train parity vs real Caffe", "pytest not installed: not run", "", ""))
        return
    root = Path(__file__).resolve().parents[1]
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "compare/test_train_parity.py"],
                       cwd=root, env=dict(os.environ, RGR_TRAIN_DEVICE=str(dev)), capture_output=True, text=True,
                       timeout=max(60.0, BUDGET_S * 0.4))
    last = (p.stdout.strip().splitlines() or ["no output"])[-1]
    rows.append((f"train parity vs real Caffe on {dev} (golden trajectories, 50 iterations)", last,
                 f"{time.perf_counter() - t:.0f} s", "exit 0" if p.returncode == 0 else f"exit {p.returncode}"))
    print(p.stdout[-4000:], flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="timing window per measurement")
    ap.add_argument("--pack", type=int, default=4, help="units packed on one GPU for the packed train rows")
    ap.add_argument("--cpu-smoke", action="store_true", help="the small CPU version even when CUDA is present")
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--budget-s", type=float, default=300.0, help="whole-check budget; agreement gets 40%% of it")
    ap.add_argument("--parts", help="comma-separated subset: agreement,inference,train,features,svm,plan,trainparity")
    args = ap.parse_args(argv)
    global BUDGET_S
    BUDGET_S = args.budget_s
    import torch

    t0 = time.perf_counter()
    rows: list[tuple] = []
    cuda = torch.cuda.is_available() and not args.cpu_smoke
    if not torch.cuda.is_available():
        print(f"no CUDA device: torch {torch.__version__} sees none (torch.cuda.is_available() is False); "
              "running the small CPU version (its agreement row is CPU against CPU)")
    if cuda:
        dev = torch.device("cuda")
        card = torch.cuda.get_device_name(0)
        parts = [lambda: agreement(rows, dev, args.seconds),
                 lambda: inference(rows, dev, args.seconds, (1, 64), [("GoogLeNet", "googlenet_imagenet"),
                                                                      ("VGG16", "vgg16_imagenet")]),
                 lambda: train_steps(rows, dev, args.seconds, 32, args.pack, list(PAPER_NETS.items())),
                 lambda: features(rows, dev, args.seconds, 64, [("GoogLeNet", "googlenet_imagenet"),
                                                                ("VGG16", "vgg16_imagenet")]),
                 lambda: svm(rows, 4000, 1000),
                 lambda: plan_row(rows, dev, args.seconds),
                 lambda: train_parity(rows, dev)]
    else:
        dev = torch.device("cpu")
        card = "CPU (smoke)"
        s = min(args.seconds, 0.3)
        parts = [lambda: agreement(rows, dev, s, ["cifar"]),   # CPU against itself: exercises the code only
                 lambda: inference(rows, dev, s, (1,), [("CIFAR", "cifar")]),
                 lambda: train_steps(rows, dev, s, 2, 2, [("CIFAR", "cifar")]),
                 lambda: features(rows, dev, s, 2, [("CIFAR", "cifar")]),
                 lambda: svm(rows, 300, 100),
                 lambda: plan_row(rows, None, s),
                 lambda: train_parity(rows, dev)]
    if args.parts:
        names = ["agreement", "inference", "train", "features", "svm", "plan", "trainparity"]
        keep = {x.strip() for x in args.parts.split(",")}
        bad = keep - set(names)
        if bad:
            ap.error(f"--parts: unknown {', '.join(sorted(bad))}; expected some of {','.join(names)}")
        parts = [f for n, f in zip(names, parts) if n in keep]
    # A lease is short: one part that breaks (a package missing on the card's image) must not cost the others.
    for part in parts:
        try:
            part()
        except Exception as exc:  # noqa: BLE001 - reported as a row, the check goes on
            rows.append(("part failed", f"{type(exc).__name__}: {exc}".replace("|", "/")[:200], "", ""))
            print(f"part failed: {type(exc).__name__}: {exc}", flush=True)
    table = [f"GPU check on {card}, torch {torch.__version__}, {time.perf_counter() - t0:.0f} s", "",
             "| what | result | | |", "|---|---|---|---|"]
    table += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    text = "\n".join(table)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
