"""``python -m models convert``: a Caffe prototxt (+ caffemodel) as an ONNX file.

    python -m models convert NET.prototxt [--weights W.caffemodel] --onnx OUT.onnx [--expose-blobs] [--opset 17]

Node names are Caffe layer names and values Caffe blob names (see :mod:`models.onnx_export`); with
``--expose-blobs`` every blob is a graph output. ``onnx.checker`` passes on the file before it is written.
"""
from __future__ import annotations

import sys

from models.onnx_export import DEFAULT_OPSET, MIN_OPSET  # noqa: F401  (MIN_OPSET: re-exported)


def add_arguments(p) -> None:
    p.add_argument("prototxt")
    p.add_argument("--weights", help="a .caffemodel (default: Caffe's fillers, seeded by --seed)")
    p.add_argument("--onnx", required=True, help="output .onnx")
    p.add_argument("--expose-blobs", action="store_true", help="every Caffe blob as a named graph output")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset, {MIN_OPSET} to the newest the installed onnx defines (default {DEFAULT_OPSET}); "
                        "a layer whose export needs a newer one is named")
    p.add_argument("--phase", choices=("TEST", "TRAIN"), default="TEST")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 2) when --weights leaves a learnable layer without weights or has layers the "
                        "net lacks (default: a warning naming them)")


def main(args) -> int:
    import warnings

    from models.graph import load_net
    from models.onnx_export import net_params, to_onnx
    from models.weights import caffemodel_params

    import onnx

    from models.errors import InputError

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= args.opset <= newest:
        raise InputError(f"--opset {args.opset}: the exporter writes opsets {MIN_OPSET}..{newest} "
                         f"(default {DEFAULT_OPSET})")
    net = load_net(args.prototxt, phase=args.phase)
    params = net_params(net, seed=args.seed)  # Caffe's fillers; no torch module is built
    if args.weights:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded, _ = caffemodel_params(net, args.weights, strict=args.strict)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        params.update(loaded)
    else:
        print(f"note: no --weights; parameters are Caffe's fillers with seed {args.seed}", file=sys.stderr)
    model = to_onnx(net, args.onnx, expose_blobs=args.expose_blobs, opset=args.opset, params=params)
    g = model.graph
    print(f"wrote {args.onnx}: opset {args.opset}, {len(g.node)} nodes, {len(g.input)} inputs, "
          f"{len(g.output)} outputs")
    return 0
