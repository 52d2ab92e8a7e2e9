"""``python -m models run``: run a Caffe net with torch or onnxruntime and write the requested blobs.

    python -m models run NET.prototxt --weights W.caffemodel --input X.npy --backend torch|onnxruntime \
        [--device cpu|cuda] --blobs all|NAME,NAME --out OUT.npz

Each requested blob is stored in the ``.npz`` under its Caffe name (``np.load(OUT)["inception_3a/output"]``), the
value Caffe's ``net.blobs[name].data`` shows after the forward pass, so that anyone with Caffe outputs can compare.
A net whose input declares batch N accepts an input of any batch. Several inputs: ``--input data=X.npy
--input label=Y.npy``.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from models.errors import InputError


def add_arguments(p) -> None:
    p.add_argument("prototxt", help="the net (deploy or train_val prototxt)")
    p.add_argument("--weights", help="a .caffemodel (default: Caffe's fillers, seeded by --seed)")
    p.add_argument("--input", action="append", required=True, metavar="[NAME=]X.npy",
                   help="input array(s); NAME= is needed when the net has several inputs")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--bf16", action="store_true", help="torch on cuda: bf16 autocast")
    p.add_argument("--channels-last", action="store_true", help="torch: channels_last memory format")
    p.add_argument("--phase", choices=("TEST", "TRAIN"), default="TEST")
    p.add_argument("--blobs", default=None, help="'all' or NAME,NAME (default: the net's outputs)")
    p.add_argument("--seed", type=int, default=0, help="filler seed when no --weights")
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 2) when --weights leaves a learnable layer without weights or has layers the "
                        "net lacks (default: a warning naming them)")
    p.add_argument("--out", required=True, help="output .npz")


def _read_inputs(specs, input_names) -> dict:
    arrays = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            if len(input_names) != 1 and len(specs) != 1:
                raise InputError(f"--input {spec}: the net has inputs {input_names}; use NAME=X.npy")
            name, path = input_names[0], spec
        if name not in input_names:
            raise InputError(f"--input {spec}: the net has no input '{name}'; its inputs are {input_names}")
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"--input {path}: cannot read a .npy array ({e})") from None
    return arrays


def run_blobs(prototxt, arrays: dict, weights=None, backend="torch", device="cpu", blobs=None, phase="TEST",
              seed=0, bf16=False, channels_last=False, strict=False) -> dict:
    """``{blob: np.ndarray}`` for the requested blobs (None: the net's outputs; "all"; or a list)."""
    import torch

    from models.graph import load_net
    from models.precision import strict_fp32
    from models.torch_builder import to_torch
    from models.weights import load_caffemodel

    net0 = load_net(prototxt, phase=phase)
    first = next(iter(net0.inputs))
    batch = None
    if first in arrays and np.ndim(arrays[first]) == len(net0.inputs[first]):
        batch = int(np.shape(arrays[first])[0])
    net = load_net(prototxt, phase=phase, batch=batch) if batch and batch != net0.inputs[first][0] else net0
    module = to_torch(net, seed=seed)
    if weights:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_caffemodel(module, weights, strict=strict)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    module.eval()
    if blobs == "all":  # every blob computable from the inputs given
        blobs = net.computable_blobs(list(arrays))
    if backend == "torch":
        if device == "cuda":
            if not torch.cuda.is_available():
                raise InputError("--device cuda: torch sees no CUDA device")
            module = module.to("cuda")
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        tensors = {}
        for name, a in arrays.items():
            t = torch.from_numpy(np.ascontiguousarray(a))
            if t.is_floating_point():
                t = t.float()
            if channels_last and t.dim() == 4:
                t = t.to(memory_format=torch.channels_last)
            tensors[name] = t
        with torch.no_grad(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16), \
                strict_fp32(device == "cuda" and not bf16):
            out = module(**tensors, blobs=blobs)
        return {k: v.float().cpu().numpy() for k, v in out.items()}
    import onnxruntime as ort

    from models.onnx_export import build_onnx, inference_session
    if any(l.type == "Dropout" for l in net.layers) and phase == "TRAIN":
        raise InputError("--backend onnxruntime --phase TRAIN: the ONNX graph takes each Dropout layer's mask as "
                         "an input (LAYER/mask), which this command does not supply; use --backend torch")
    wanted = net.blobs if blobs == "all" else (net.outputs if blobs is None else list(blobs))
    model = build_onnx(module, outputs=wanted)
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InputError("--device cuda: this onnxruntime has no CUDAExecutionProvider")
        providers.insert(0, "CUDAExecutionProvider")
    for name, a in arrays.items():  # the torch module checks shapes; onnxruntime's messages are less clear
        module._check_input(name, torch.from_numpy(np.ascontiguousarray(a)))
    sess = inference_session(model, providers)
    del model
    needed = {i.name for i in sess.get_inputs()}  # the graph keeps only the inputs the wanted blobs need
    feeds = {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in arrays.items() if n in needed}
    names = [o.name for o in sess.get_outputs()]
    res = sess.run(names, feeds)
    return {b: r for b, r in zip(wanted, res)}


def save_npz(path, arrays: dict) -> None:
    """Write ``arrays`` to ``path`` (.npz) atomically."""
    path = Path(path)
    from models.atomic import atomic_path

    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def main(args) -> int:
    from models.graph import load_net
    net = load_net(args.prototxt, phase=args.phase)
    arrays = _read_inputs(args.input, list(net.inputs))
    blobs = None
    if args.blobs:
        blobs = "all" if args.blobs == "all" else [b for b in args.blobs.split(",") if b]
    if not args.weights:
        print(f"note: no --weights; parameters are Caffe's fillers with seed {args.seed}", file=sys.stderr)
    out = run_blobs(args.prototxt, arrays, args.weights, args.backend, args.device, blobs, args.phase, args.seed,
                    args.bf16, args.channels_last, args.strict)
    save_npz(args.out, out)
    print(f"wrote {len(out)} blobs to {args.out} ({args.backend}, {args.device})")
    return 0
