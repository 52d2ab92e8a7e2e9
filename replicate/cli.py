"""``python -m replicate``: the cohort, the patch store and the paper's experiments.

Subcommands live in their own modules; this file only dispatches. A module serves one subcommand through
``add_arguments(parser)`` and ``main(args) -> int``, or several through ``SUBCOMMANDS = {name: (add_arguments,
main, help)}``. Bad input (:class:`replicate.errors.ReplicateError`, :class:`models.errors.CaffeError`) is one line
on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import ReplicateError

SUBCOMMANDS = [
    ("synth", "replicate.cli_cohort", "write a synthetic cohort in the Duke-Breast-Cancer-MRI layout"),
    ("cohort", "replicate.cli_cohort", "load a cohort: exclusion flow and a Table-1-like scanner table"),
    ("patches", "replicate.cli_cohort", "build (or resume) the patch store for one preprocessing configuration"),
    ("plan", "replicate.cli_plan", "what a preset's grid will cost: units, FLOP, estimated wall time"),
    ("run", "replicate.cli_run", "run the paper's experiments (preset smoke or paper) and write the report"),
]


def _resolve(module_name: str, name: str):
    module = importlib.import_module(module_name)
    table = getattr(module, "SUBCOMMANDS", None)
    if isinstance(table, dict) and name in table:
        add, main, _ = table[name]
        return add, main
    return module.add_arguments, module.main


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    only = next((a for a in argv if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="python -m replicate",
                                     description="Replicate Zhu et al. 2019 on a Duke-Breast-Cancer-MRI cohort.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module, help_ in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_, description=help_)
        if name == only:
            add, fn = _resolve(module, name)
            add(p)
            p.set_defaults(_main=fn)
    args = parser.parse_args(argv)
    try:
        from models.errors import CaffeError
    except ImportError:  # pragma: no cover
        CaffeError = ReplicateError
    try:
        return int(args._main(args) or 0)
    except (ReplicateError, CaffeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; run the same command again to resume", file=sys.stderr)
        return 130
