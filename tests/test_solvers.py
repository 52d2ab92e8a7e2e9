"""The six solver update rules (src/caffe/solvers/*_solver.cpp) against the formulas written out in numpy float64,
over several iterations with changing gradients, lr/decay mults, L1/L2, iter_size and clipping; the history
layouts; the solver type names (old enum, unknown type)."""
import math

import numpy as np
import pytest
import torch

from models.errors import CaffeError
from models.solver import read_solver
from models.train.updates import (LearnableParam, apply_update, history_count, new_history, solver_type)

GRADS = [np.array([0.5, -1.0, 2.0, 0.0]), np.array([-0.25, 0.75, 1.5, -3.0]), np.array([1.0, 1.0, -0.5, 0.25]),
         np.array([0.1, -0.2, 0.3, -0.4])]
W0 = np.array([1.0, -2.0, 0.5, 3.0])
LR_MULT, DECAY_MULT = 2.0, 0.5


def reference(kind, sp, rates, iter_size=1, l1=False):
    """Caffe's rule, written from the .cpp files in float64 (history h, second history h2)."""
    w = W0.copy()
    h = np.zeros_like(w)
    h2 = np.zeros_like(w)
    m, delta, wd = sp.momentum, sp.delta, sp.weight_decay
    out = []
    for t, (g, rate) in enumerate(zip(GRADS, rates)):
        g = g * iter_size  # the diffs accumulated over iter_size passes
        if sp.clip_gradients >= 0:
            norm = np.sqrt((g ** 2).sum())
            if norm > sp.clip_gradients:
                g = g * sp.clip_gradients / norm
        g = g / iter_size
        g = g + wd * DECAY_MULT * (np.sign(w) if l1 else w)
        lr = rate * LR_MULT
        if kind == "SGD":
            h = lr * g + m * h
            u = h
        elif kind == "Nesterov":
            old = h
            h = lr * g + m * h
            u = (1 + m) * h - m * old
        elif kind == "AdaGrad":
            h = h + g * g
            u = lr * g / (np.sqrt(h) + delta)
        elif kind == "RMSProp":
            h = sp.rms_decay * h + (1 - sp.rms_decay) * g * g
            u = lr * g / (np.sqrt(h) + delta)
        elif kind == "AdaDelta":
            h = m * h + (1 - m) * g * g
            q = g * np.sqrt((h2 + delta) / (h + delta))
            h2 = m * h2 + (1 - m) * q * q
            u = lr * q
        elif kind == "Adam":
            b1, b2 = m, sp.momentum2
            h = b1 * h + (1 - b1) * g
            h2 = b2 * h2 + (1 - b2) * g * g
            corr = math.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
            u = lr * corr * h / (np.sqrt(h2) + delta)
        w = w - u
        out.append((w.copy(), h.copy(), h2.copy()))
    return out


CASES = {
    "SGD": 'momentum: 0.9 weight_decay: 0.01',
    "Nesterov": 'momentum: 0.95 weight_decay: 0.002',
    "AdaGrad": 'weight_decay: 0.01 delta: 1e-6',
    "RMSProp": 'rms_decay: 0.98 delta: 1e-5 weight_decay: 0.001',
    "AdaDelta": 'momentum: 0.95 delta: 1e-6 weight_decay: 0.005',
    "Adam": 'momentum: 0.9 momentum2: 0.999 delta: 1e-8 weight_decay: 0.0',
}


def _run(kind, text, iter_size=1, l1=False):
    sp = read_solver(f'type: "{kind}" base_lr: 0.1 lr_policy: "step" gamma: 0.5 stepsize: 2 iter_size: {iter_size} '
                     + ("regularization_type: 'L1' " if l1 else "") + text)
    p = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float32))
    params = [LearnableParam(p, LR_MULT, DECAY_MULT)]
    hist = new_history(kind, params)
    rates = [0.1 * 0.5 ** (i // 2) for i in range(len(GRADS))]
    ref = reference(kind, sp, rates, iter_size, l1)
    for t, g in enumerate(GRADS):
        p.grad = torch.tensor(g * iter_size, dtype=torch.float32)
        apply_update(kind, sp, params, hist, rates[t], t)
        w, h, h2 = ref[t]
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=2e-5, atol=1e-6, err_msg=f"{kind} iter {t}")
        np.testing.assert_allclose(hist[0].numpy(), h, rtol=2e-5, atol=1e-6)
        if kind in ("AdaDelta", "Adam"):
            np.testing.assert_allclose(hist[1].numpy(), h2, rtol=2e-5, atol=1e-9)
        # the diff holds the update value afterwards, as Caffe's diff does
        np.testing.assert_allclose(p.grad.numpy(), (ref[t - 1][0] if t else W0) - w, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_update_rule_matches_caffe_formula(kind):
    _run(kind, CASES[kind])


@pytest.mark.parametrize("kind", ["SGD", "Adam", "AdaDelta"])
def test_iter_size_l1_and_clipping(kind):
    _run(kind, CASES[kind].replace("weight_decay: 0.0", "weight_decay: 0.01") + " clip_gradients: 1.5",
         iter_size=2, l1=True)


def test_adam_first_step_is_lr_times_sign():
    """Bias correction: the first Adam step is lr * g/|g| (up to delta) whatever the gradient's scale."""
    sp = read_solver('type: "Adam" base_lr: 0.01 lr_policy: "fixed" momentum: 0.9 momentum2: 0.999')
    p = torch.nn.Parameter(torch.zeros(3))
    params = [LearnableParam(p, 1.0, 1.0)]
    p.grad = torch.tensor([1e-3, -50.0, 2.0])
    apply_update("Adam", sp, params, new_history("Adam", params), 0.01, 0)
    np.testing.assert_allclose(p.detach().numpy(), [-0.01, 0.01, -0.01], rtol=1e-3)


def test_history_layouts():
    ps = [LearnableParam(torch.zeros(2, 3), 1, 1), LearnableParam(torch.zeros(4), 1, 1)]
    assert [tuple(h.shape) for h in new_history("SGD", ps)] == [(2, 3), (4,)]
    assert [tuple(h.shape) for h in new_history("AdaDelta", ps)] == [(2, 3), (4,), (2, 3), (4,)]
    assert history_count("Adam", 2) == 4 and history_count("Nesterov", 2) == 2


@pytest.mark.parametrize("text,expected", [("", "SGD"), ('type: "RMSProp"', "RMSProp"), ("solver_type: ADAM", "Adam"),
                                           ("solver_type: NESTEROV", "Nesterov"), ("solver_type: ADADELTA", "AdaDelta")])
def test_solver_type_names(text, expected):
    assert solver_type(read_solver("base_lr: 0.1 " + text)) == expected


def test_unknown_and_conflicting_types_are_refused():
    with pytest.raises(CaffeError, match=r"Unknown solver type: Lion \(known types: AdaDelta, AdaGrad, Adam"):
        solver_type(read_solver('type: "Lion"'))
    with pytest.raises(CaffeError, match="cannot be both"):
        solver_type(read_solver('type: "SGD" solver_type: ADAM'))
