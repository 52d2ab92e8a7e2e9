"""Training Caffe nets without Caffe: the runtime net, the six solvers, snapshots and Caffe's log lines.

* :class:`~models.train.runtime.RuntimeNet` - a phase of a net with data layers, loss, forward and backward;
* :class:`~models.train.solver.Solver` - ``Solver::Step`` / ``Solve`` / ``Test`` / snapshots for SGD, Nesterov,
  AdaGrad, RMSProp, AdaDelta and Adam (update rules in :mod:`models.train.updates`);
* :mod:`models.train.snapshot` - ``.solverstate`` and HDF5 snapshot files;
* :mod:`models.train.tools` - ``caffe test`` and ``caffe time``;
* :mod:`models.train.splits` - Caffe's ``InsertSplits`` (the ``Split`` layers ``Net::Init`` adds).

:mod:`models.pycaffe` (pycaffe's ``Net`` and solvers) is built on these.

See docs/training.md.
"""
from __future__ import annotations

import importlib

_LAZY = {"RuntimeNet": "models.train.runtime", "Solver": "models.train.solver", "SOLVER_TYPES": "models.train.updates"}
__all__ = list(_LAZY)


def __getattr__(name):
    # lazy: models.solver (CaffeSGD) imports models.train.updates, and models.train.solver imports models.solver
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models.train' has no attribute '{name}'")
