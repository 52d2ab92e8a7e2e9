"""``python -m models``: inspect, audit, convert and run Caffe nets.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``main(args) -> int``; this file
only dispatches. Bad input (any :class:`models.errors.CaffeError`) is one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import CaffeError, PrototxtSyntaxError

SUBCOMMANDS = [
    ("info", "models.info_cli", "print every blob's shape and each layer's MACC and params"),
    ("audit", "models.audit", "compare the Table 2 nets' input size, MACC and params with the paper"),
    ("convert", "models.convert_cli", "convert a prototxt (+ caffemodel) to ONNX"),
    ("run", "models.run_cli", "run a net with torch or onnxruntime and write the requested blobs"),
    ("fetch-weights", "models.fetch", "download the BVLC GoogLeNet and VGG16 ImageNet caffemodels"),
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models", description="Inspect, audit, convert and run Caffe nets.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module, help_ in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_, description=help_)
        if only == name:
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only the chosen subcommand's module (torch is heavy); top-level help imports none.
    only = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only)
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except PrototxtSyntaxError as e:
        print(str(e), file=sys.stderr)  # FILE:LINE:COL: message
        return 2
    except CaffeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
