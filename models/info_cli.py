"""``python -m models info FILE.prototxt [--json]``: blob shapes, per-layer MACC and params (batch 1)."""
from __future__ import annotations

import argparse
import json

from .accounting import human, net_cost
from .errors import InputError
from .graph import load_net
from .shapes import pool_edge_windows


def parse_shape_arg(items) -> dict:
    shapes = {}
    for item in items or []:
        name, _, dims = item.partition("=")
        try:
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise InputError(f"--input-shape wants BLOB=N,C,H,W (positive integers), got {item!r}") from None
        if not name or not shapes[name] or min(shapes[name]) < 1:
            raise InputError(f"--input-shape wants BLOB=N,C,H,W (positive integers), got {item!r}")
    return shapes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prototxt", help="a Caffe net definition (deploy or train_val; V1 or current)")
    p.add_argument("--phase", choices=["TEST", "TRAIN"], default="TEST")
    p.add_argument("--batch", type=int, default=1, help="batch size for the counts (default 1)")
    p.add_argument("--input-shape", action="append", metavar="BLOB=N,C,H,W",
                   help="shape of an input blob (needed for Data layers whose shape lives in their database)")
    p.add_argument("--json", action="store_true", help="print JSON (top-level macc and params, per-layer list)")


def main(args) -> int:
    if args.batch < 1:
        raise InputError(f"--batch {args.batch}: the batch size must be a positive integer")
    net = load_net(args.prototxt, phase=args.phase, batch=args.batch, input_shapes=parse_shape_arg(args.input_shape))
    cost = net_cost(net)
    warnings = [w for l in net.layers if l.type == "Pooling" for w in pool_edge_windows(l.proto, l.bottom_shapes[0])]
    if args.json:
        d = cost.to_dict()
        d["blobs"] = {b: list(s) for b, s in net.blob_shapes.items()}
        d["warnings"] = warnings
        print(json.dumps(d, indent=2))
        return 0
    print(f"net {net.name or '(unnamed)'}  phase {net.phase}  batch {args.batch}")
    for name, shape in net.inputs.items():
        print(f"  input {name:<30} {tuple(shape)}")
    print(f"{'layer':<34}{'type':<18}{'top shape':<28}{'MACC':>14}{'params':>12}")
    for l in cost.layers:
        shape = ", ".join(str(tuple(s)) for s in l.top_shapes)
        print(f"{l.name:<34}{l.type:<18}{shape:<28}{l.macc:>14,}{l.params:>12,}")
    print(f"{'total':<80}{cost.macc:>14,}{cost.params:>12,}")
    print(f"MACC {human(cost.macc)}  params {human(cost.params)}")
    for w in warnings:
        print(f"warning: {w}")
    return 0
