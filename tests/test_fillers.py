"""Caffe's fillers (include/caffe/filler.hpp): fans, the xavier/msra formulas with variance_norm, defaults,
seeding, and lr_mult/decay_mult carried into the parameter groups."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

import models
from models.fillers import fans, fill
from models.schema import pb


def filler(**kw):
    return pb.FillerParameter(**kw)


def test_fans_follow_caffe_count_division():
    assert fans((64, 3, 7, 7)) == (147, 64 * 49)
    assert fans((1000, 1024)) == (1024, 1000)
    assert fans((10,)) == (1, 10)


@pytest.mark.parametrize("norm,n", [("FAN_IN", 3 * 25), ("FAN_OUT", 40 * 25), ("AVERAGE", (75 + 1000) / 2)])
def test_xavier_is_uniform_sqrt3_over_n(norm, n):
    t = torch.empty(40, 3, 5, 5)
    g = torch.Generator().manual_seed(0)
    fill(t, filler(type="xavier", variance_norm=getattr(pb.FillerParameter, norm)), g)
    bound = math.sqrt(3.0 / n)
    x = t.numpy().ravel()
    assert np.abs(x).max() <= bound and np.abs(x).max() > 0.99 * bound
    assert stats.kstest(x, stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue > 1e-3


@pytest.mark.parametrize("norm,n", [("FAN_IN", 3 * 9), ("FAN_OUT", 64 * 9)])
def test_msra_is_gaussian_sqrt2_over_n(norm, n):
    t = torch.empty(64, 3, 3, 3)
    fill(t, filler(type="msra", variance_norm=getattr(pb.FillerParameter, norm)), torch.Generator().manual_seed(1))
    assert stats.kstest(t.numpy().ravel(), stats.norm(scale=math.sqrt(2.0 / n)).cdf).pvalue > 1e-3


def test_gaussian_uniform_constant_and_sparse():
    g = torch.Generator().manual_seed(2)
    t = torch.empty(200, 50)
    fill(t, filler(type="gaussian", mean=1.0, std=0.5), g)
    assert abs(t.mean().item() - 1.0) < 0.02 and abs(t.std().item() - 0.5) < 0.02
    fill(t, filler(type="uniform", min=-2, max=3), g)
    assert t.min().item() >= -2 and t.max().item() <= 3 and abs(t.mean().item() - 0.5) < 0.05
    fill(t, filler(type="constant", value=0.2), g)
    assert torch.all(t == torch.tensor(0.2))
    fill(t, filler(type="gaussian", std=1.0, sparse=20), g)
    assert abs((t != 0).float().mean().item() - 20 / 200) < 0.02


def test_bilinear_kernel():
    t = torch.empty(1, 1, 4, 4)
    fill(t, filler(type="bilinear"))
    v = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(t.numpy()[0, 0], np.outer(v, v))


def test_unknown_filler_names_blob():
    with pytest.raises(models.NetDefinitionError, match="layer 'x'.*unknown filler type 'nope'"):
        fill(torch.empty(2), filler(type="nope"), where="layer 'x' blob 0")


NET = '''name: "f" input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.2 } } }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" param { lr_mult: 0 } param { lr_mult: 1 } scale_param { bias_term: true } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" inner_product_param { num_output: 2 } }
'''


def test_module_init_defaults_seed_and_param_groups():
    net = models.load_net(NET)
    a, b, c = models.to_torch(net, seed=5), models.to_torch(net, seed=5), models.to_torch(net, seed=6)
    pa, pc = a.caffe_params(), c.caffe_params()
    assert torch.equal(pa["conv"][0], b.caffe_params()["conv"][0])
    assert not torch.equal(pa["conv"][0], pc["conv"][0])
    assert torch.all(pa["conv"][1] == torch.tensor(0.2))
    assert torch.all(pa["sc"][0] == 1) and torch.all(pa["sc"][1] == 0)  # Scale factor defaults to 1
    assert torch.all(pa["ip"][0] == 0)  # no weight_filler: constant 0, as Caffe
    groups = {g["name"]: (g["lr_mult"], g["decay_mult"]) for g in a.param_groups()}
    assert groups == {"conv[0]": (1.0, 1.0), "conv[1]": (2.0, 0.0), "sc[1]": (1.0, 1.0), "ip[0]": (1.0, 1.0),
                      "ip[1]": (1.0, 1.0)}
    assert not pa["sc"][0].requires_grad
