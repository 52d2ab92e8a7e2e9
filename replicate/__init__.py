"""Replication of Zhu et al. 2019: ``replicate.cohort`` (DICOM, Duke loader, synthetic cohort, preprocessing,
patches) and ``replicate.experiments`` (protocol, training, features + SVM, grid, report).

``replicate.run(config) -> RunResult`` assembles a whole run (``python -m replicate run`` is a thin CLI over it)::

    from replicate import run, RunConfig
    result = run(RunConfig(preset="smoke", out="runs/smoke"))

Attributes are imported lazily so ``import replicate`` stays cheap (no torch).
"""
from __future__ import annotations

__all__ = ["run", "RunConfig", "RunResult"]


def __getattr__(name: str):
    if name in __all__:
        from replicate.experiments import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'replicate' has no attribute {name!r}")
