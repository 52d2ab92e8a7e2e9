"""The update rules of Caffe's six solvers (src/caffe/solvers/*_solver.cpp), in float32 as Caffe's ``Dtype``.

``apply_update`` is ``SGDSolver::ApplyUpdate`` after the rate is known: ``ClipGradients``, then per learnable
parameter ``Normalize`` (``g /= iter_size``), ``Regularize`` (L2: ``g += decay * w``; L1: ``g += decay *
sign(w)``), ``ComputeUpdateValue`` (the solver type's rule, below; it leaves the update in the diff), and
``Net::Update`` (``w -= diff``). ``g`` is the parameter's ``.grad`` (Caffe's diff); it holds the update value
afterwards, as Caffe's diff does.

History layout (what a ``.solverstate`` stores, in this order): one blob per learnable parameter; AdaDelta and
Adam append a second set of the same length (AdaDelta: the squared updates; Adam: the second moment ``v``).

=========  =============================================================================================
SGD        ``h = lr*g + m*h; u = h``
Nesterov   ``h' = lr*g + m*h; u = (1+m)*h' - m*h``
AdaGrad    ``h += g^2; u = lr * g / (sqrt(h) + delta)``
RMSProp    ``h = rms_decay*h + (1-rms_decay)*g^2; u = lr * g / (sqrt(h) + delta)``
AdaDelta   ``h = m*h + (1-m)*g^2; q = g * sqrt((h2 + delta) / (h + delta)); h2 = m*h2 + (1-m)*q^2; u = lr*q``
Adam       ``m1 = b1*m1 + (1-b1)*g; v = b2*v + (1-b2)*g^2; u = lr * sqrt(1-b2^t)/(1-b1^t) * m1/(sqrt(v)+eps)``,
           ``t = iter + 1``, ``b1 = momentum``, ``b2 = momentum2``, ``eps = delta``
=========  =============================================================================================

``lr`` is ``rate * lr_mult`` (float32 product, ``local_rate`` in Caffe).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from models.errors import CaffeError

#: Caffe's registered solver types (SolverRegistry), and the old ``solver_type`` enum's names for them
SOLVER_TYPES = ("AdaDelta", "AdaGrad", "Adam", "Nesterov", "RMSProp", "SGD")
_ENUM_NAMES = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}
#: solver types that keep a second history set (appended after the first)
TWO_HISTORIES = ("AdaDelta", "Adam")


def f32(x) -> float:
    """``x`` rounded to float32 (Caffe's ``Dtype``), as a Python float."""
    return float(np.float32(x))


@dataclass
class LearnableParam:
    """One of ``Net::learnable_params()``: the blob, its ``lr_mult`` and ``decay_mult`` (net.cpp AppendParam)."""

    tensor: torch.Tensor
    lr_mult: float
    decay_mult: float
    name: str = ""


def solver_type(sp, where: str = "solver") -> str:
    """The solver's type string, as Caffe's ``UpgradeSolverType`` (upgrade_proto.cpp) and ``SolverRegistry``.

    The old ``solver_type`` enum maps to its string; both given is an error; an unregistered type raises
    :class:`CaffeError` ("Unknown solver type: X (known types: ...)", Caffe's message)."""
    if sp.HasField("solver_type"):
        if sp.HasField("type"):
            raise CaffeError(f"{where}: old solver_type field (enum) and new type field (string) cannot be both "
                             "specified in solver proto text")
        return _ENUM_NAMES[sp.solver_type]
    name = sp.type or "SGD"
    if name not in SOLVER_TYPES:
        raise CaffeError(f"{where}: Unknown solver type: {name} (known types: {', '.join(SOLVER_TYPES)})")
    return name


def check_solver_param(sp, kind: str, where: str = "solver") -> None:
    """The constructor checks of the solver classes (momentum with AdaGrad/RMSProp, regularization type)."""
    if kind in ("AdaGrad", "RMSProp") and sp.momentum != 0:
        raise CaffeError(f"{where}: Momentum cannot be used with {kind}.")
    if kind == "RMSProp" and not 0 <= sp.rms_decay <= 1:
        raise CaffeError(f"{where}: rms_decay must lie in [0, 1], got {sp.rms_decay}")
    if sp.regularization_type not in ("L1", "L2"):
        raise CaffeError(f"{where}: Unknown regularization type: {sp.regularization_type} (L1, L2)")


def history_count(kind: str, n_params: int) -> int:
    """How many history blobs the solver keeps for ``n_params`` learnable parameters."""
    return 2 * n_params if kind in TWO_HISTORIES else n_params


def new_history(kind: str, params: list) -> list:
    """Zero history blobs in Caffe's layout (``SGDSolver::PreSolve`` + AdaDelta/Adam ``PreSolve``)."""
    first = [torch.zeros_like(p.tensor, memory_format=torch.contiguous_format) for p in params]
    if kind in TWO_HISTORIES:
        first += [torch.zeros_like(p.tensor, memory_format=torch.contiguous_format) for p in params]
    return first


def clip_gradients(sp, grads: list, log=None) -> None:
    """``SGDSolver::ClipGradients``: scale every diff by ``clip / ||g||`` when the global L2 norm exceeds it."""
    clip = f32(sp.clip_gradients)
    if clip < 0:
        return
    sumsq = torch.zeros((), dtype=torch.float32, device=grads[0].device) if grads else torch.zeros(())
    for g in grads:
        sumsq = sumsq + (g.float() * g.float()).sum()
    norm = f32(math.sqrt(float(sumsq)))
    if norm > clip:
        factor = f32(np.float32(clip) / np.float32(norm))
        if log is not None:
            from models.train.glog import fmt
            log(f"Gradient clipping: scaling down gradients (L2 norm {fmt(norm)} > {fmt(clip)}) by scale factor "
                f"{fmt(factor)}", "sgd_solver.cpp:92")
        for g in grads:
            g.mul_(factor)


@torch.no_grad()
def apply_update(kind: str, sp, params: list, history: list, rate: float, iteration: int, log=None) -> None:
    """Everything of ``SGDSolver::ApplyUpdate`` after ``GetLearningRate``: clip, normalize, regularize, compute
    the update of solver type ``kind`` and subtract it from each parameter.

    Parameters
    ----------
    kind : one of :data:`SOLVER_TYPES`.
    sp : ``pb.SolverParameter`` (iter_size, weight_decay, regularization_type, momentum, momentum2, delta,
        rms_decay, clip_gradients).
    params : list of :class:`LearnableParam`, Caffe's ``learnable_params()`` order. A missing ``.grad`` is a zero
        diff; each ``.grad`` holds the update value afterwards.
    history : the solver's history blobs (:func:`new_history` layout), updated in place.
    rate : the learning rate of this iteration (``GetLearningRate``).
    iteration : ``iter_`` before the update (Adam's ``t = iter + 1``).
    """
    for p in params:
        if p.tensor.grad is None:
            p.tensor.grad = torch.zeros_like(p.tensor)
    grads = [p.tensor.grad for p in params]
    clip_gradients(sp, grads, log)
    n = len(params)
    iter_size = max(1, int(sp.iter_size))
    norm = f32(np.float32(1.0) / np.float32(iter_size))
    wd = f32(sp.weight_decay)
    momentum = f32(sp.momentum)
    delta = f32(sp.delta)
    for i, p in enumerate(params):
        w, g = p.tensor, grads[i]
        if iter_size != 1:
            g.mul_(norm)
        local_decay = f32(np.float32(wd) * np.float32(p.decay_mult))
        if local_decay:
            if sp.regularization_type == "L2":
                g.add_(w, alpha=local_decay)
            else:
                g.add_(torch.sign(w), alpha=local_decay)
        local_rate = f32(np.float32(rate) * np.float32(p.lr_mult))
        h = history[i]
        if kind == "SGD":
            h.mul_(momentum).add_(g, alpha=local_rate)
            g.copy_(h)
        elif kind == "Nesterov":
            old = h.clone()
            h.mul_(momentum).add_(g, alpha=local_rate)
            g.copy_(h.mul(f32(1.0 + np.float32(momentum))).sub_(old, alpha=momentum))
        elif kind == "AdaGrad":
            h.add_(g * g)
            g.copy_(g / (h.sqrt() + delta) * local_rate)
        elif kind == "RMSProp":
            rms = f32(sp.rms_decay)
            h.mul_(rms).add_(g * g, alpha=f32(np.float32(1.0) - np.float32(rms)))
            g.copy_(g / (h.sqrt() + delta) * local_rate)
        elif kind == "AdaDelta":
            h2 = history[n + i]
            one_m = f32(np.float32(1.0) - np.float32(momentum))
            h.mul_(momentum).add_(g * g, alpha=one_m)
            g.mul_(((h2 + delta) / (h + delta)).sqrt())
            h2.mul_(momentum).add_(g * g, alpha=one_m)
            g.mul_(local_rate)
        elif kind == "Adam":
            v = history[n + i]
            b1, b2 = momentum, f32(sp.momentum2)
            t = iteration + 1
            # std::pow(float, int) promotes to double; the quotient is stored in a Dtype
            correction = f32(math.sqrt(1.0 - math.pow(b2, t)) / (1.0 - math.pow(b1, t)))
            h.mul_(b1).add_(g, alpha=f32(np.float32(1.0) - np.float32(b1)))
            v.mul_(b2).add_(g * g, alpha=f32(np.float32(1.0) - np.float32(b2)))
            g.copy_(h / (v.sqrt() + delta) * f32(np.float32(local_rate) * np.float32(correction)))
        else:  # pragma: no cover - solver_type() refuses unknown kinds first
            raise CaffeError(f"Unknown solver type: {kind}")
        w.sub_(g)
