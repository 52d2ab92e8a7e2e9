"""Caffe's SGD solver (src/caffe/solver.cpp Step, src/caffe/solvers/sgd_solver.cpp), driven by a solver.prototxt.

One iteration (``Solver::Step``): clear the gradients, run forward/backward ``iter_size`` times (gradients add
up), then ``ApplyUpdate``:

The update itself is :func:`models.train.updates.apply_update` (shared with the six-solver
:class:`models.train.Solver`, which also runs the nets, tests, logs and snapshots as ``caffe train``):

1. ``rate = GetLearningRate()`` for the current ``iter`` (policies fixed, step, exp, inv, multistep, poly,
   sigmoid);
2. ``ClipGradients``: if ``clip_gradients >= 0`` and the global L2 norm of the gradients exceeds it, scale them;
3. per parameter: ``g /= iter_size``; ``g += weight_decay * decay_mult * w`` (L2; L1 adds ``sign(w)``);
   ``history = (rate * lr_mult) * g + momentum * history``; ``w -= history``;
4. ``iter += 1``.

This differs from ``torch.optim.SGD`` (``b = m*b + g; w -= lr*b``) whenever the rate changes: Caffe's history
holds the rate it was accumulated with.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from models.errors import CaffeError
from models.prototxt_io import read_solver_text
from models.schema import pb
from models.train.updates import LearnableParam, apply_update

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


def learning_rate(sp, iteration: int, current_step: int = 0) -> tuple[float, int]:
    """``SGDSolver::GetLearningRate``: (rate, current_step) at ``iteration`` (float32 rate, as Caffe's Dtype).

    ``current_step`` is the multistep state, which Caffe advances by at most one step per call.
    """
    policy = sp.lr_policy
    base, gamma, power = float(sp.base_lr), float(sp.gamma), float(sp.power)
    if policy == "fixed":
        rate = base
    elif policy == "step":
        if sp.stepsize <= 0:
            raise CaffeError("solver: lr_policy 'step' needs stepsize > 0")
        current_step = iteration // sp.stepsize
        rate = base * math.pow(gamma, current_step)
    elif policy == "exp":
        rate = base * math.pow(gamma, iteration)
    elif policy == "inv":
        rate = base * math.pow(float(np.float32(1.0 + np.float32(gamma) * np.float32(iteration))), -power)
    elif policy == "multistep":
        steps = list(sp.stepvalue)
        if current_step < len(steps) and iteration >= steps[current_step]:
            current_step += 1
        rate = base * math.pow(gamma, current_step)
    elif policy == "poly":
        if sp.max_iter <= 0:
            raise CaffeError("solver: lr_policy 'poly' needs max_iter > 0")
        rate = base * math.pow(float(np.float32(1.0) - np.float32(iteration) / np.float32(sp.max_iter)), power)
    elif policy == "sigmoid":
        rate = base * (1.0 / (1.0 + math.exp(-gamma * (iteration - sp.stepsize))))
    else:
        raise CaffeError(f"solver: unknown lr_policy '{policy}' (Caffe knows {', '.join(POLICIES)})")
    return float(np.float32(rate)), current_step


def read_solver(source) -> "pb.SolverParameter":
    """A ``pb.SolverParameter`` from a path, prototxt text or message."""
    if isinstance(source, pb.SolverParameter):
        return source
    return read_solver_text(str(source) if isinstance(source, Path) else source)


class CaffeSGD(torch.optim.Optimizer):
    """Caffe's SGD update on a :class:`~models.torch_builder.CaffeModule`'s parameter groups.

    Use :meth:`iteration` for a whole Caffe iteration (``iter_size`` forward/backward passes and the update), or
    call ``zero_grad``/``backward``/:meth:`step` yourself (``step`` applies the update to the gradients
    accumulated since the last ``zero_grad``).
    """

    def __init__(self, param_groups, solver_param, module=None):
        sp = solver_param
        if sp.type not in ("SGD", "") or (not sp.HasField("type") and sp.HasField("solver_type")
                                          and sp.solver_type != 0):
            raise CaffeError(f"solver type '{sp.type}' is not supported (SGD only)")
        if sp.regularization_type not in ("L1", "L2"):
            raise CaffeError(f"solver: unknown regularization_type '{sp.regularization_type}' (L1, L2)")
        if sp.lr_policy not in POLICIES:
            raise CaffeError(f"solver: unknown lr_policy '{sp.lr_policy}' (Caffe knows {', '.join(POLICIES)})")
        super().__init__(param_groups, {"lr_mult": 1.0, "decay_mult": 1.0})
        self.sp = sp
        self.module = module
        self.iter = 0
        self.current_step = 0
        self.iter_size = max(1, sp.iter_size)
        #: the objective of the last forward pass (what Caffe leaves in the loss blob)
        self.last_loss: float | None = None

    @classmethod
    def from_prototxt(cls, source, module) -> "CaffeSGD":
        """The solver of ``source`` (solver.prototxt path or text) on ``module``'s parameters (lr/decay mults)."""
        return cls(module.param_groups(), read_solver(source), module)

    # ---- the rate ----------------------------------------------------------------------------------------
    def get_learning_rate(self, iteration: int | None = None) -> float:
        """The rate Caffe uses at ``iteration`` (default: the next update), without changing the state."""
        it = self.iter if iteration is None else iteration
        return learning_rate(self.sp, it, self.current_step)[0]

    # ---- the update --------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        """``SGDSolver::ApplyUpdate`` on the accumulated gradients; advances ``iter``. Returns the rate used."""
        if closure is not None:
            with torch.enable_grad():
                closure()
        rate, self.current_step = learning_rate(self.sp, self.iter, self.current_step)
        params, history = [], []
        for group in self.param_groups:
            for p in group["params"]:
                params.append(LearnableParam(p, group["lr_mult"], group["decay_mult"]))
                state = self.state[p]
                if "history" not in state:
                    state["history"] = torch.zeros_like(p)
                history.append(state["history"])
        apply_update("SGD", self.sp, params, history, rate, self.iter)
        self.iter += 1
        return rate

    def iteration(self, batches, dropout_masks=None) -> float:
        """One Caffe iteration: ``iter_size`` forward/backward passes over ``batches`` (an iterable of input
        dicts, or a callable ``i -> dict``), then the update. Returns the mean loss (Caffe's displayed loss)."""
        if self.module is None:
            raise CaffeError("CaffeSGD.iteration needs the module (use CaffeSGD.from_prototxt)")
        self.zero_grad(set_to_none=True)
        it = None if callable(batches) else iter(batches)
        total = 0.0
        for i in range(self.iter_size):
            batch = batches(i) if callable(batches) else next(it)
            masks = dropout_masks(i) if callable(dropout_masks) else dropout_masks
            out = self.module(**batch, dropout_masks=masks)
            loss = self.module.loss(out)
            loss.backward()
            total += float(loss.detach())
            self.last_loss = float(loss.detach())
        self.step()
        return total / self.iter_size

    def state_dict(self):
        sd = super().state_dict()
        sd["caffe"] = {"iter": self.iter, "current_step": self.current_step}
        return sd

    def load_state_dict(self, state_dict):
        extra = state_dict.get("caffe", {})
        state_dict = {k: v for k, v in state_dict.items() if k != "caffe"}
        super().load_state_dict(state_dict)
        self.iter = extra.get("iter", 0)
        self.current_step = extra.get("current_step", 0)
