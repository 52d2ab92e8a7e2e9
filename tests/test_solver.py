"""Caffe's SGD solver (src/caffe/solvers/sgd_solver.cpp, solver.cpp): learning-rate policies, the update rule
(momentum history holds the rate), iter_size, lr/decay mults, clipping."""
import math

import numpy as np
import pytest
import torch

import models
from models.solver import CaffeSGD, learning_rate, read_solver


def sp(text):
    return read_solver(text)


@pytest.mark.parametrize("text,expected", [
    ('base_lr: 0.1 lr_policy: "fixed"', [0.1] * 6),
    ('base_lr: 0.1 lr_policy: "step" gamma: 0.5 stepsize: 2', [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]),
    ('base_lr: 0.1 lr_policy: "multistep" gamma: 0.5 stepvalue: 1 stepvalue: 4',
     [0.1, 0.05, 0.05, 0.05, 0.025, 0.025]),
    ('base_lr: 0.1 lr_policy: "exp" gamma: 0.8', [0.1 * 0.8 ** i for i in range(6)]),
    ('base_lr: 0.1 lr_policy: "inv" gamma: 0.5 power: 0.75', [0.1 * (1 + 0.5 * i) ** -0.75 for i in range(6)]),
    ('base_lr: 0.1 lr_policy: "poly" power: 2 max_iter: 10', [0.1 * (1 - i / 10) ** 2 for i in range(6)]),
    ('base_lr: 0.1 lr_policy: "sigmoid" gamma: -1 stepsize: 3',
     [0.1 / (1 + math.exp(-(-1) * (i - 3))) for i in range(6)]),
])
def test_lr_policies(text, expected):
    s, step, got = sp(text), 0, []
    for i in range(6):
        r, step = learning_rate(s, i, step)
        got.append(r)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_unknown_policy_is_refused():
    with pytest.raises(models.CaffeError, match="unknown lr_policy 'cosine'"):
        learning_rate(sp('base_lr: 0.1 lr_policy: "cosine"'), 0)


def _one_param(value=1.0):
    p = torch.nn.Parameter(torch.tensor([value]))
    return p, [{"params": [p], "lr_mult": 2.0, "decay_mult": 3.0}]


def test_update_rule_history_keeps_old_rate():
    """w -= v, v = m v + lr*lr_mult*(g + wd*decay_mult*w), across a step change; torch.optim.SGD differs."""
    s = sp('base_lr: 0.1 lr_policy: "step" gamma: 0.1 stepsize: 1 momentum: 0.9 weight_decay: 0.01')
    p, groups = _one_param()
    opt = CaffeSGD(groups, s)
    w, v = 1.0, 0.0
    for it, g in enumerate([0.5, -0.25, 1.0]):
        p.grad = torch.tensor([g])
        opt.step()
        lr = 0.1 * 0.1 ** it * 2.0
        v = 0.9 * v + lr * (g + 0.01 * 3.0 * w)
        w -= v
        assert p.item() == pytest.approx(w, rel=1e-6)
    q = torch.nn.Parameter(torch.tensor([1.0]))
    t = torch.optim.SGD([q], lr=0.2, momentum=0.9, weight_decay=0.03)
    sched = torch.optim.lr_scheduler.StepLR(t, 1, 0.1)
    for g in [0.5, -0.25, 1.0]:
        q.grad = torch.tensor([g])
        t.step()
        sched.step()
    assert abs(q.item() - w) > 1e-3


def test_iter_size_divides_and_clip_scales():
    s = sp('base_lr: 1 lr_policy: "fixed" iter_size: 4 clip_gradients: 1.0')
    p, groups = _one_param(0.0)
    groups[0]["decay_mult"] = 0.0
    opt = CaffeSGD(groups, s)
    p.grad = torch.tensor([8.0])  # accumulated over 4 passes; clipped to norm 1 first, then divided by 4
    opt.step()
    assert p.item() == pytest.approx(-2.0 * 1.0 / 8.0 * 8.0 / 4.0)


NET = '''name: "s"
input: "data" input_shape { dim: 2 dim: 3 }
input: "label" input_shape { dim: 2 }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" param { lr_mult: 1 } param { lr_mult: 0 }
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "constant" value: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" loss_weight: 2 }
'''


def test_iteration_accumulates_iter_size_passes_and_respects_lr_mult_zero():
    net = models.load_net(NET, phase="TRAIN")
    m = models.to_torch(net, seed=0)
    ref = models.to_torch(net, seed=0)
    solver = CaffeSGD.from_prototxt('base_lr: 0.5 lr_policy: "fixed" momentum: 0.9 weight_decay: 0.1 iter_size: 2', m)
    rng = np.random.default_rng(0)
    batches = [{"data": torch.from_numpy(rng.standard_normal((2, 3)).astype(np.float32)),
                "label": torch.tensor([0.0, 2.0])} for _ in range(2)]
    loss = solver.iteration(batches)
    w = ref.caffe_params()["ip"][0]
    grads = []
    for b in batches:
        w.grad = None
        ref.loss(ref(**b)).backward()
        grads.append(w.grad.clone())
    g = (grads[0] + grads[1]) / 2 + 0.1 * w.detach()
    np.testing.assert_allclose(m.caffe_params()["ip"][0].detach().numpy(), (w - 0.5 * g).detach().numpy(), rtol=1e-5)
    assert torch.all(m.caffe_params()["ip"][1] == torch.tensor(0.3))  # lr_mult 0: untouched
    assert loss == pytest.approx(float(np.mean([ref.loss(ref(**b)).item() for b in batches])), rel=1e-5)
    assert solver.iter == 1
    state = solver.state_dict()
    again = CaffeSGD.from_prototxt('base_lr: 0.5 lr_policy: "fixed" momentum: 0.9', m)
    again.load_state_dict(state)
    assert again.iter == 1


def test_non_sgd_solver_refused():
    net = models.load_net(NET, phase="TRAIN")
    with pytest.raises(models.CaffeError, match="Adam"):
        CaffeSGD.from_prototxt('base_lr: 0.1 lr_policy: "fixed" type: "Adam"', models.to_torch(net))
