"""Caffe's Solver (src/caffe/solver.cpp, src/caffe/solvers/sgd_solver.cpp): nets, Step, Solve, Test, snapshots.

``Solver(solver_param)`` builds the TRAIN net and the TEST nets as ``Solver::Init`` does, then

* :meth:`Solver.step` is ``Solver::Step``: per iteration clear the parameter diffs; test when ``iter %
  test_interval == 0`` (at 0 only with ``test_initialization``); ``iter_size`` forward/backward passes (loss
  averaged); the smoothed loss over ``average_loss`` iterations; the display lines; ``ApplyUpdate`` (rate,
  ``Iteration N, lr = X``, clip, normalize, regularize, the type's update: :mod:`models.train.updates`);
  ``iter += 1``; a snapshot when ``iter % snapshot == 0`` or one is requested; a requested stop ends the loop;
* :meth:`Solver.solve` is ``Solver::Solve``: restore, ``step(max_iter - iter)``, the snapshot after training,
  then (unless stopped early) one more forward for the display and one more test, "Optimization Done.";
* :meth:`Solver.snapshot` / :meth:`Solver.restore`: ``PREFIX_iter_N.caffemodel`` + ``.solverstate`` (or the HDF5
  pair), and back, from our files or real Caffe's.

The log lines are Caffe's text (:mod:`models.train.glog`), so Caffe's log parsers read our logs.
"""
from __future__ import annotations

import copy
import signal
import time
from pathlib import Path

import numpy as np
import torch
from google.protobuf import text_format

from models.errors import CaffeError, NetDefinitionError
from models.prototxt_io import read_net_text
from models.schema import pb
from models.solver import POLICIES, learning_rate, read_solver
from models.train.glog import CaffeLog, fmt
from models.train.runtime import RuntimeNet, net_state
from models.train.snapshot import (SnapshotError, read_solverstate, write_solverstate, write_solverstate_h5)
from models.train.updates import apply_update, check_solver_param, history_count, new_history, solver_type

PHASE_NAMES = {0: "TRAIN", 1: "TEST"}


def resolve(path, base_dir) -> Path:
    """A path from a solver or net file: as given (relative to the working directory, as Caffe reads it), else
    relative to ``base_dir`` (the solver's folder) when it exists only there."""
    p = Path(path)
    if p.is_absolute() or p.exists() or base_dir is None:
        return p
    alt = Path(base_dir) / p
    return alt if alt.exists() else p


class SignalHandler:
    """Caffe's ``SignalHandler`` (util/signal_handler.cpp) for ``--sigint_effect`` / ``--sighup_effect``:
    while installed, SIGINT (and SIGHUP) set a flag that :meth:`action` returns once ("stop", "snapshot" or
    "none"), read by the solver after each iteration. Use as a context manager."""

    def __init__(self, sigint_effect: str = "stop", sighup_effect: str = "snapshot"):
        for e in (sigint_effect, sighup_effect):
            if e not in ("stop", "snapshot", "none"):
                raise CaffeError(f"invalid signal effect '{e}' (stop, snapshot, none)")
        self.effects = {signal.SIGINT: sigint_effect}
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = sighup_effect
        self._got: list = []
        self._old: dict = {}

    def _handle(self, signum, frame):
        self._got.append(signum)

    def __enter__(self):
        for s in self.effects:
            self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)

    def action(self) -> str:
        if not self._got:
            return "none"
        return self.effects[self._got.pop(0)]


class Solver:
    """A Caffe solver of any of the six types; see the module docstring.

    Parameters
    ----------
    solver_param : ``pb.SolverParameter``, a solver.prototxt path or its text.
    solver_path : the solver file (for relative net paths and the default ``snapshot_prefix``); set
        automatically when ``solver_param`` is a path.
    device, precision : see :class:`models.train.runtime.RuntimeNet`.
    log : a :class:`models.train.glog.CaffeLog` (default: Caffe's lines on stderr).
    weights : caffemodel paths copied into the TRAIN and TEST nets by layer name (``--weights a,b``).
    log_rate : print BVLC master's ``Iteration N (R iter/s, Ts/D iters), loss = X``; default Caffe 1.0's
        ``Iteration N, loss = X``.
    train_net_param : a ``NetParameter`` to use instead of the solver's net (pycaffe builds from a path too).

    Raises
    ------
    CaffeError: an unknown solver type or lr policy, a net Caffe would refuse, a TRAIN net with no loss,
        ``snapshot`` without a prefix, weights that do not fit.
    """

    def __init__(self, solver_param, *, solver_path=None, device="cpu", precision: str = "fp32", log=None,
                 weights=(), log_rate: bool = False, memory_format: str = "auto", prefetch: bool = True):
        if solver_path is None and not isinstance(solver_param, pb.SolverParameter) \
                and "\n" not in str(solver_param) and Path(str(solver_param)).is_file():
            solver_path = str(solver_param)
        sp = copy.deepcopy(read_solver(solver_param))
        self.where = str(solver_path) if solver_path else "solver"
        self.base_dir = Path(solver_path).parent if solver_path else None
        self.log = log if log is not None else CaffeLog()
        self.log_rate = log_rate
        self.type = solver_type(sp, self.where)
        sp.ClearField("solver_type")
        sp.type = self.type
        check_solver_param(sp, self.type, self.where)
        if sp.lr_policy not in POLICIES:
            raise CaffeError(f"{self.where}: Unknown learning rate policy: {sp.lr_policy} (Caffe knows "
                             f"{', '.join(POLICIES)})")
        if sp.average_loss < 1:
            raise CaffeError(f"{self.where}: average_loss should be non-negative (>= 1), got {sp.average_loss}")
        if solver_path and not sp.HasField("snapshot_prefix"):  # UpgradeSnapshotPrefixProperty
            sp.snapshot_prefix = str(Path(solver_path).with_suffix(""))
        elif sp.HasField("snapshot_prefix") and Path(sp.snapshot_prefix).is_dir() and solver_path:
            sp.snapshot_prefix = str(Path(sp.snapshot_prefix) / Path(solver_path).stem)
        if sp.snapshot and not sp.snapshot_prefix:
            raise CaffeError(f"{self.where}: In solver params, snapshot is specified but snapshot_prefix is not")
        self.param = sp
        self.device, self.precision = device, precision
        self.log("Initializing solver from parameters: \n" + text_format.MessageToString(sp).rstrip(),
                 "solver.cpp:45")
        self.seed = int(sp.random_seed) if sp.random_seed >= 0 else None
        if self.seed is not None:
            torch.manual_seed(self.seed)
            np.random.seed(self.seed % (2 ** 32))
        self._memory_format, self._prefetch = memory_format, prefetch
        self.net = self._init_train_net()
        if not self.net.loss_weights:
            raise NetDefinitionError(f"{self.net.where or self.where + ': '}the TRAIN net '{self.net.name}' has no "
                                     "loss: no layer top has a loss_weight (a *Loss layer, or loss_weight: W)")
        self.test_nets = self._init_test_nets()
        for w in weights:
            self.load_weights(w)
        self.log("Solver scaffolding done.", "solver.cpp:57")
        self.iter = 0
        self.current_step = 0
        self.history = new_history(self.type, self.net.learnable_params)
        self.smoothed_loss = 0.0
        self.losses: list = []
        self.requested_early_exit = False
        #: callable returning "none", "stop" or "snapshot" (Caffe's action request function: the signal handler)
        self.action = None
        self._iterations_last = 0
        self._timer = time.perf_counter()

    # ---- nets --------------------------------------------------------------------------------------------
    def _read_net(self, path) -> "pb.NetParameter":
        return read_net_text(resolve(path, self.base_dir))

    def _runtime(self, net_param, state, source, share_from=None) -> RuntimeNet:
        net_param = copy.deepcopy(net_param)
        net_param.state.CopyFrom(state)
        return RuntimeNet(net_param, PHASE_NAMES[state.phase], level=state.level, stages=tuple(state.stage),
                          base_dir=self.base_dir, seed=self.seed, share_from=share_from, device=self.device,
                          precision=self.precision, memory_format=self._memory_format,
                          prefetch=self._prefetch, source_name=source)

    def _init_train_net(self) -> RuntimeNet:
        sp = self.param
        fields = [f for f in ("net", "net_param", "train_net", "train_net_param") if sp.HasField(f)]
        if len(fields) != 1:
            raise CaffeError(f"{self.where}: SolverParameter must specify {'a' if not fields else 'only one'} "
                             "train net using one of these fields: net, net_param, train_net, train_net_param"
                             + (f" (it has {', '.join(fields)})" if fields else ""))
        f = fields[0]
        if f in ("net", "train_net"):
            path = getattr(sp, f)
            self.log(f"Creating training net from {'net' if f == 'net' else 'train_net'} file: {path}",
                     "solver.cpp:87")
            net_param, source = self._read_net(path), str(resolve(path, self.base_dir))
        else:
            self.log(f"Creating training net specified in {f}.", "solver.cpp:77")
            net_param, source = getattr(sp, f), f
        state = net_state(net_param, "TRAIN", sp.train_state if sp.HasField("train_state") else None)
        return self._runtime(net_param, state, source)

    def _init_test_nets(self) -> list:
        sp = self.param
        generic = sp.HasField("net") + sp.HasField("net_param")
        n_specific = len(sp.test_net_param) + len(sp.test_net)
        if generic and len(sp.test_iter) < n_specific or not generic and len(sp.test_iter) != n_specific:
            raise CaffeError(f"{self.where}: test_iter must be specified for each test network "
                             f"({n_specific} test nets, {len(sp.test_iter)} test_iter)")
        n_total = len(sp.test_iter) if generic else n_specific
        if len(sp.test_state) and len(sp.test_state) != n_total:
            raise CaffeError(f"{self.where}: test_state must be unspecified or specified once per test net")
        if n_total and sp.test_interval <= 0:
            raise CaffeError(f"{self.where}: test nets need test_interval > 0")
        specs = [("test_net_param", p) for p in sp.test_net_param]
        specs += [(f"test_net file: {p}", self._read_net(p)) for p in sp.test_net]
        for _ in range(n_total - len(specs)):
            specs.append(("net_param", sp.net_param) if sp.HasField("net_param")
                         else (f"net file: {sp.net}", self._read_net(sp.net)))
        nets = []
        for i, (source, net_param) in enumerate(specs):
            state = net_state(net_param, "TEST", sp.test_state[i] if len(sp.test_state) else None)
            self.log(f"Creating test net (#{i}) specified by {source}", "solver.cpp:172")
            # its own blobs until the first test: Solver::Test calls ShareTrainedLayersWith (what pycaffe's
            # solver.test_nets show before then)
            nets.append(self._runtime(net_param, state, source.split(": ", 1)[-1]))
        return nets

    def load_weights(self, path) -> None:
        """``LoadNetWeights``: "Finetuning from PATH", then ``CopyTrainedLayersFrom`` into every net."""
        path = str(path).strip()
        self.log(f"Finetuning from {path}", "solver.cpp:63")
        for net in [self.net] + self.test_nets:
            net.copy_from(path, self.log)

    # ---- the rate and the update -------------------------------------------------------------------------
    def get_learning_rate(self) -> float:
        """``SGDSolver::GetLearningRate`` for the current iteration (advances the multistep state)."""
        before = self.current_step
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step)
        if self.param.lr_policy == "multistep" and self.current_step != before:
            self.log(f"MultiStep Status: Iteration {self.iter}, step = {self.current_step}", "sgd_solver.cpp:52")
        return rate

    def apply_update(self) -> float:
        """``SGDSolver::ApplyUpdate``; returns the rate used."""
        rate = self.get_learning_rate()
        if self.param.display and self.iter % self.param.display == 0:
            self.log(f"Iteration {self.iter}, lr = {fmt(rate)}", "sgd_solver.cpp:107")
        apply_update(self.type, self.param, self.net.learnable_params, self.history, rate, self.iter, self.log)
        self.iter += 1
        return rate

    # ---- Step / Solve ------------------------------------------------------------------------------------
    def _request(self) -> str:
        return self.action() if self.action is not None else "none"

    def _update_smoothed_loss(self, loss: float, start_iter: int) -> None:
        """``Solver::UpdateSmoothedLoss`` (float32 arithmetic)."""
        avg = self.param.average_loss
        if len(self.losses) < avg:
            self.losses.append(loss)
            size = len(self.losses)
            self.smoothed_loss = float(np.float32((np.float32(self.smoothed_loss) * np.float32(size - 1)
                                                   + np.float32(loss)) / np.float32(size)))
        else:
            idx = (self.iter - start_iter) % avg
            self.smoothed_loss = float(np.float32(np.float32(self.smoothed_loss)
                                                  + (np.float32(loss) - np.float32(self.losses[idx]))
                                                  / np.float32(avg)))
            self.losses[idx] = loss

    def _log_outputs(self, net: RuntimeNet, label: str, values=None, where: str = "solver.cpp:259") -> None:
        k = 0
        for blob, vec, w in (values if values is not None else net.output_values()):
            for v in vec:
                suffix = f" (* {fmt(w)} = {fmt(np.float32(w) * np.float32(v))} loss)" if w else ""
                self.log(f"    {label} net output #{k}: {blob} = {fmt(v)}{suffix}", where)
                k += 1

    def step(self, iters: int) -> None:
        """``Solver::Step(iters)``: ``iters`` iterations (fewer if a stop is requested)."""
        sp = self.param
        start_iter = self.iter
        stop_iter = self.iter + int(iters)
        self.losses = []
        self.smoothed_loss = 0.0
        self._timer = time.perf_counter()
        self._iterations_last = self.iter
        while self.iter < stop_iter:
            self.net.clear_param_diffs()
            if sp.test_interval and self.iter % sp.test_interval == 0 and (self.iter > 0 or sp.test_initialization):
                self.test_all()
                if self.requested_early_exit:
                    break
            display = sp.display and self.iter % sp.display == 0
            loss = np.float32(0.0)
            for _ in range(max(1, sp.iter_size)):
                loss = np.float32(loss + np.float32(self.net.forward_backward()))
            loss = float(np.float32(loss / np.float32(max(1, sp.iter_size))))
            self._update_smoothed_loss(loss, start_iter)
            if display:
                if self.log_rate:
                    lapse = time.perf_counter() - self._timer
                    per_s = (self.iter - self._iterations_last) / (lapse if lapse else 1)
                    self.log(f"Iteration {self.iter} ({fmt(per_s)} iter/s, {fmt(lapse)}s/{sp.display} iters), "
                             f"loss = {fmt(self.smoothed_loss)}", "solver.cpp:243")
                    self._timer = time.perf_counter()
                    self._iterations_last = self.iter
                else:
                    self.log(f"Iteration {self.iter}, loss = {fmt(self.smoothed_loss)}", "solver.cpp:228")
                self._log_outputs(self.net, "Train", where="solver.cpp:244")
            self.apply_update()
            request = self._request()
            if (sp.snapshot and self.iter % sp.snapshot == 0) or request == "snapshot":
                self.snapshot()
            if request == "stop":
                self.requested_early_exit = True
                break

    def solve(self, resume_file=None) -> None:
        """``Solver::Solve``: train to ``max_iter`` (from a solverstate when ``resume_file`` is given)."""
        sp = self.param
        self.log(f"Solving {self.net.name}", "solver.cpp:287")
        self.log(f"Learning Rate Policy: {sp.lr_policy}", "solver.cpp:288")
        self.requested_early_exit = False
        if resume_file:
            self.log(f"Restoring previous solver status from {resume_file}", "solver.cpp:294")
            self.restore(resume_file)
        start_iter = self.iter
        self.step(sp.max_iter - self.iter)
        if sp.snapshot_after_train and (not sp.snapshot or self.iter % sp.snapshot != 0):
            self.snapshot()
        if self.requested_early_exit:
            self.log("Optimization stopped early.", "solver.cpp:313")
            return
        if sp.display and self.iter % sp.display == 0:
            with torch.no_grad():
                loss = float(self.net.forward())
            self._update_smoothed_loss(loss, start_iter)
            self.log(f"Iteration {self.iter}, loss = {fmt(self.smoothed_loss)}", "solver.cpp:326")
        if sp.test_interval and self.iter % sp.test_interval == 0:
            self.test_all()
        self.log("Optimization Done.", "solver.cpp:331")

    # ---- testing -----------------------------------------------------------------------------------------
    def test_all(self) -> list:
        """``Solver::TestAll``; returns each test net's ``[(blob, mean scores, loss weight)]``."""
        out = []
        for i in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            out.append(self.test(i))
        return out

    def test(self, test_net_id: int = 0):
        """``Solver::Test``: ``test_iter`` forward passes of a TEST net, the mean of each output element."""
        sp = self.param
        self.log(f"Iteration {self.iter}, Testing net (#{test_net_id})", "solver.cpp:341")
        net = self.test_nets[test_net_id]
        net.share_trained_layers_with(self.net)
        n = sp.test_iter[test_net_id]
        scores, names, loss = None, None, np.float32(0.0)
        for i in range(n):
            request = self._request()
            while request != "none":
                if request == "snapshot":
                    self.snapshot()
                elif request == "stop":
                    self.requested_early_exit = True
                request = self._request()
            if self.requested_early_exit:
                break
            with torch.no_grad():
                iter_loss = float(net.forward())
            if sp.test_compute_loss:
                loss = np.float32(loss + np.float32(iter_loss))
            result = net.output_values()
            if scores is None:
                names = [(b, w, len(v)) for b, v, w in result]
                scores = [np.asarray(v, np.float32).copy() for _, v, _ in result]
            else:
                for s, (_, v, _) in zip(scores, result):
                    s += np.asarray(v, np.float32)
        if self.requested_early_exit:
            self.log("Test interrupted.", "solver.cpp:376")
            return []
        if sp.test_compute_loss:
            self.log(f"Test loss: {fmt(loss / np.float32(n))}", "solver.cpp:381")
        means = [(b, (s / np.float32(n)).astype(np.float32), w) for (b, w, _), s in zip(names or [], scores or [])]
        self._log_outputs(net, "Test", means, "solver.cpp:394")
        return means

    # ---- snapshots ---------------------------------------------------------------------------------------
    def snapshot_filename(self, extension: str) -> str:
        """``Solver::SnapshotFilename``: ``PREFIX_iter_N`` + extension."""
        return f"{self.param.snapshot_prefix}_iter_{self.iter}{extension}"

    def snapshot(self) -> tuple[str, str]:
        """``Solver::Snapshot``: the caffemodel, then the solverstate (each written atomically); returns both
        paths."""
        hdf5 = self.param.snapshot_format == pb.SolverParameter.HDF5
        history = [h.detach().float().cpu().numpy() for h in self.history]
        if hdf5:
            model = self.snapshot_filename(".caffemodel.h5")
            self.log(f"Snapshotting to HDF5 file {model}", "solver.cpp:463")
            self.net.save(model, hdf5=True)
            state = self.snapshot_filename(".solverstate.h5")
            self.log(f"Snapshotting solver state to HDF5 file {state}", "sgd_solver.cpp:290")
            write_solverstate_h5(state, self.iter, model, self.current_step, history)
        else:
            model = self.snapshot_filename(".caffemodel")
            self.log(f"Snapshotting to binary proto file {model}", "solver.cpp:454")
            self.net.save(model)
            state = self.snapshot_filename(".solverstate")
            self.log(f"Snapshotting solver state to binary proto file {state}", "sgd_solver.cpp:273")
            write_solverstate(state, self.iter, model, self.current_step, history)
        return model, state

    def restore(self, state_file) -> None:
        """``Solver::Restore``: iter, the learned net's weights, current_step and the history from a solverstate
        (binary, or HDF5 when the name ends in ``.h5``) written by us or by Caffe.

        Raises :class:`models.train.snapshot.SnapshotError` when the history does not fit this solver's net and
        type (a solverstate of another net) and :class:`models.errors.WeightsError` when the learned net's
        blobs do not fit."""
        state = read_solverstate(state_file)
        want = history_count(self.type, len(self.net.learnable_params))
        got = state["history"]
        if len(got) != want:
            raise SnapshotError(f"{state_file}: Incorrect length of history blobs: the file has {len(got)}, the "
                                f"{self.type} solver of net '{self.net.name}' needs {want} (a solverstate of "
                                "another net or solver type?)")
        for i, (h, mine) in enumerate(zip(got, self.history)):
            if h.size != mine.numel():
                raise SnapshotError(f"{state_file}: history blob {i} has shape {tuple(h.shape)}, net "
                                    f"'{self.net.name}' needs {tuple(mine.shape)} (a solverstate of another net?)")
        self.iter = int(state["iter"])
        learned = state["learned_net"]
        if learned:
            path = Path(learned)
            if not path.exists():
                alt = Path(state_file).parent / path.name
                path = alt if alt.exists() else path
            if not path.exists():
                raise SnapshotError(f"{state_file}: its learned_net {learned} does not exist")
            self.net.copy_from(path)  # the TEST nets get these blobs at the next test (Solver::Restore)
        self.current_step = int(state["current_step"])
        self.log("SGDSolver: restoring history", "sgd_solver.cpp:318")
        with torch.no_grad():
            for h, mine in zip(got, self.history):
                mine.copy_(torch.from_numpy(np.ascontiguousarray(h, np.float32)).reshape(mine.shape))

    def close(self) -> None:
        for net in [self.net] + self.test_nets:
            net.close()
