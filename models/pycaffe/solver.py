"""pycaffe's solvers (python/caffe/_caffe.cpp ``Solver``, ``SGDSolver`` ... ``AdamSolver``, ``get_solver``) on
:class:`models.train.solver.Solver`.

``SGDSolver(path)`` ... ``AdamSolver(path)`` apply their own update rule whatever the file's ``type`` says (each
is its C++ class constructed from the file); :func:`get_solver` takes the type from the file (``SolverRegistry``).
``solver.net`` and ``solver.test_nets`` are :class:`models.pycaffe.Net` views of the solver's nets (the TEST nets
use the TRAIN net's blobs from the first test on, as ``Solver::Test`` shares them); ``step(n)``, ``solve()``,
``iter``, ``snapshot()``, ``restore(path)``, ``apply_update()``, ``share_weights(net)``, ``param``, ``max_iter``.
Caffe's log lines go to stderr unless ``GLOG_minloglevel`` >= 1, as pycaffe's.
"""
from __future__ import annotations

import copy

from models.solver import read_solver
from models.train.solver import Solver as _TrainSolver
from models.train.updates import solver_type

from . import mode
from .errors import ArgumentError, PycaffeError
from .net import Net, check_file


class Solver:
    """A pycaffe solver; see the module docstring.

    Parameters
    ----------
    filename : str, a solver prototxt (its ``net:`` relative to the working directory, else to its folder).

    Raises
    ------
    MissingFileError : the file cannot be opened. models.errors.CaffeError : a solver or net Caffe refuses.
    """

    #: the update rule of this class (None: the file's ``type``)
    TYPE: str | None = None

    def __init__(self, filename):
        path = check_file(filename, "solver")
        sp = copy.deepcopy(read_solver(path))
        kind = self.TYPE or solver_type(sp, path)
        sp.ClearField("solver_type")
        sp.type = kind
        self._solver = _TrainSolver(sp, solver_path=path, device=mode.device(), log=mode.solver_log(),
                                    prefetch=False)
        self.net = Net._wrap(self._solver.net)
        self.test_nets = [Net._wrap(n) for n in self._solver.test_nets]

    def _nets(self) -> list:
        return [self.net] + self.test_nets

    def _run(self, fn, *args):
        for n in self._nets():
            n._before_run()
        try:
            return fn(*args)
        finally:
            for n in self._nets():
                n._invalidate()

    @property
    def iter(self) -> int:
        """The iteration count (``Solver::iter``)."""
        return self._solver.iter

    @property
    def max_iter(self) -> int:
        return int(self._solver.param.max_iter)

    @property
    def param(self):
        """The ``SolverParameter`` in use (after Caffe's upgrades: ``type`` set, default ``snapshot_prefix``)."""
        return self._solver.param

    @property
    def type(self) -> str:
        return self._solver.type

    def step(self, iters: int) -> None:
        """``Solver::Step``: ``iters`` iterations (test, forward/backward ``iter_size`` times, update, snapshot as
        the solver file says). Input blobs keep what the script wrote into them for every iteration."""
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
            raise ArgumentError(f"step: expected a number of iterations >= 0, got {iters!r}")
        self._run(self._solver.step, iters)

    def solve(self, resume_file=None) -> None:
        """``Solver::Solve``: train to ``max_iter`` (resuming from a solverstate when given)."""
        if resume_file is not None:
            resume_file = check_file(resume_file, "solverstate")
        self._run(self._solver.solve, resume_file)

    def snapshot(self) -> None:
        """``Solver::Snapshot``: ``PREFIX_iter_N.caffemodel`` and ``.solverstate`` (or the HDF5 pair)."""
        self._run(self._solver.snapshot)

    def restore(self, state_file) -> None:
        """``Solver::Restore``: iteration, weights (its ``learned_net``) and history from a solverstate (ours or
        Caffe's). Raises :class:`MissingFileError`, ``models.train.snapshot.SnapshotError`` (another net's)."""
        self._run(self._solver.restore, check_file(state_file, "solverstate"))

    def apply_update(self) -> None:
        """``Solver::ApplyUpdate``: the update of the diffs the net holds now (rate, clip, decay, the type's
        rule), then ``iter += 1``."""
        self._run(self._solver.apply_update)

    def share_weights(self, net: Net) -> None:
        """Let ``net`` use this solver's TRAIN net's learnable blobs (``Net::ShareTrainedLayersWith``)."""
        if not isinstance(net, Net):
            raise ArgumentError(f"share_weights: expected a caffe.Net, got {type(net).__name__}")
        net.share_with(self.net)

    def add_callback(self, *args, **kwargs):
        """Not available: per-iteration callbacks (multi-GPU NCCL in pycaffe) are not implemented.

        Raises
        ------
        PycaffeError : always."""
        raise PycaffeError("solver.add_callback is not supported by models.pycaffe")


def _solver_class(kind: str, source: str) -> type:
    """The pycaffe class of one solver type: its C++ class, constructed from a solver file."""
    return type(f"{kind}Solver", (Solver,), {"TYPE": kind, "__module__": __name__,
                                             "__doc__": f"Caffe's ``{kind}Solver`` ({source}); see :class:`Solver`."})


SGDSolver = _solver_class("SGD", "sgd_solver.cpp")
NesterovSolver = _solver_class("Nesterov", "nesterov_solver.cpp")
AdaGradSolver = _solver_class("AdaGrad", "adagrad_solver.cpp; momentum must be 0")
RMSPropSolver = _solver_class("RMSProp", "rmsprop_solver.cpp; momentum must be 0")
AdaDeltaSolver = _solver_class("AdaDelta", "adadelta_solver.cpp")
AdamSolver = _solver_class("Adam", "adam_solver.cpp")


def get_solver(filename) -> Solver:
    """The solver of the type ``filename`` names (``type``, or the old ``solver_type`` enum; default SGD), as
    _caffe.cpp ``GetSolverFromFile`` / ``SolverRegistry::CreateSolver``.

    Raises
    ------
    MissingFileError, models.errors.CaffeError ("Unknown solver type: X").
    """
    return Solver(filename)
