"""``python -m models``: inspect, audit, convert and run Caffe nets; and the project's one CLI convention.

The convention (used by ``python -m models`` and ``python -m replicate``, see :func:`dispatch`): the dispatcher
lists ``(name, module path, help)``; a subcommand's module is imported only when that subcommand runs (torch is
heavy; top-level ``--help`` imports none) and exposes ``add_arguments(parser)`` and ``main(args) -> int``, or
serves several subcommands through ``SUBCOMMANDS = {name: (add_arguments, main, help)}``. CLI modules only parse
arguments and print. Bad input (the package's error types: :class:`models.errors.CaffeError`,
``replicate.errors.ReplicateError``) is one line on stderr and exit code 2, no traceback; Ctrl-C is exit 130.
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
    ("train", "models.train_cli", "train a net with a solver.prototxt, as `caffe train`"),
    ("test", "models.train_cli", "score a caffemodel on a net's TEST phase, as `caffe test`"),
    ("time", "models.train_cli", "time forward/backward per layer, as `caffe time`"),
    ("fetch-weights", "models.fetch", "download the BVLC GoogLeNet and VGG16 ImageNet caffemodels"),
]


def _resolve(module_name: str, name: str):
    module = importlib.import_module(module_name)
    table = getattr(module, "SUBCOMMANDS", None)
    if isinstance(table, dict) and name in table:
        add, main, _ = table[name]
        return add, main
    return module.add_arguments, module.main


#: the subcommands that read nets or caffemodels, so take ``--proto`` (a fork's caffe.proto)
PROTO_COMMANDS = ("info", "convert", "run", "train", "test", "time")


def _add_proto(p: argparse.ArgumentParser) -> None:
    p.add_argument("--proto", metavar="CAFFE_PROTO",
                   help="a fork's caffe.proto: parse the net, caffemodel and solver with it (compiled at run time; "
                        "default: BVLC's), so its *_param fields read; layer types still unknown need a plugin "
                        "(docs/plugins.md)")


def _use_proto(args) -> None:
    if getattr(args, "proto", None):
        from .schema import use_proto   # here: top-level --help must not compile the schema
        use_proto(args.proto)


def build_parser(prog: str, description: str, subcommands, only: str | None = None,
                 common: tuple = ()) -> argparse.ArgumentParser:
    """The top-level parser; only the subcommand ``only`` gets its arguments (its module is imported).
    ``common``: ``(names, add_arguments)`` pairs of options shared by several subcommands."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module, help_ in subcommands:
        p = sub.add_parser(name, help=help_, description=help_)
        if name == only:
            add, fn = _resolve(module, name)
            add(p)
            for names, add_common in common:
                if name in names:
                    add_common(p)
            p.set_defaults(_main=fn)
    return parser


def dispatch(prog: str, description: str, subcommands, argv=None, errors: tuple = (), interrupted: str = "",
             common: tuple = (), before=None) -> int:
    """Parse ``argv``, run the chosen subcommand, turn the package's errors into one line + exit 2.
    ``common``: shared options (see :func:`build_parser`); ``before(args)``: runs first, under the same error rule."""
    argv = sys.argv[1:] if argv is None else list(argv)
    only = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(prog, description, subcommands, only, common).parse_args(argv)
    try:
        if before is not None:
            before(args)
        return int(args._main(args) or 0)
    except PrototxtSyntaxError as e:
        print(str(e), file=sys.stderr)  # FILE:LINE:COL: message
        return 2
    except (CaffeError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print(interrupted or "interrupted", file=sys.stderr)
        return 130


def main(argv=None) -> int:
    return dispatch("python -m models", "Inspect, audit, convert, run and train Caffe nets.", SUBCOMMANDS, argv,
                    common=((PROTO_COMMANDS, _add_proto),), before=_use_proto)
