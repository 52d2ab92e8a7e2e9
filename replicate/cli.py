"""``python -m replicate``: the cohort, the patch store and the paper's experiments.

Same convention as ``python -m models`` (:func:`models.cli.dispatch`): this file only lists the subcommands;
each lives in its own module (``add_arguments(parser)`` + ``main(args) -> int``, or ``SUBCOMMANDS = {name:
(add_arguments, main, help)}``), imported only when it runs. Bad input (:class:`replicate.errors.ReplicateError`,
:class:`models.errors.CaffeError`) is one line on stderr and exit code 2.
"""
from __future__ import annotations

from models.cli import dispatch

from .errors import ReplicateError

SUBCOMMANDS = [
    ("synth", "replicate.cli_cohort", "write a synthetic cohort in the Duke-Breast-Cancer-MRI layout"),
    ("cohort", "replicate.cli_cohort", "load a cohort: exclusion flow and a Table-1-like scanner table"),
    ("patches", "replicate.cli_cohort", "build (or resume) the patch store for one preprocessing configuration"),
    ("plan", "replicate.cli_plan", "what a preset's grid will cost: units, FLOP, estimated wall time"),
    ("run", "replicate.cli_run", "run the paper's experiments (preset quick, smoke or paper) and write the report"),
]


def main(argv=None) -> int:
    return dispatch("python -m replicate", "Replicate Zhu et al. 2019 on a Duke-Breast-Cancer-MRI cohort.",
                    SUBCOMMANDS, argv, errors=(ReplicateError,),
                    interrupted="interrupted: finished work is saved; run the same command again to resume")
