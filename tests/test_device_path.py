"""The device training path of replicate.experiments.training (issue 11, item 2), exercised on the CPU: the
on-device input transform matches the host one (Caffe's DataTransformer semantics), and packing several units
into one call leaves each unit's numbers exactly as they are when it runs alone. (CUDA itself is checked by
benchmarks/gpu_check.py on a GPU machine.)"""
import numpy as np
import pytest
import torch

from replicate.experiments.grid import scratch_spec
from replicate.experiments.protocol import Fold
from replicate.experiments.training import (DevicePatches, FoldData, TrainJob, TrainSettings, device_prepare,
                                            prepare, train_folds_packed)
from replicate.experiments.training import NetSpec


class _Store:
    def __init__(self, n, size, seed=0):
        rng = np.random.default_rng(seed)
        self.patches = rng.uniform(-0.6, 1.6, size=(n, 3, size, size)).astype(np.float32)
        self.key, self.path = f"fake-{n}-{size}-{seed}", "/nonexistent"


@pytest.mark.parametrize("style,resize,size,patch", [("imagenet", 256, 224, 80), ("scratch", None, 64, 80),
                                                     ("scratch", None, 80, 80)])
def test_device_prepare_centre_crop_matches_host(style, resize, size, patch):
    spec = NetSpec("x", deploy=None, input_size=size, resize=resize, style=style)
    p = np.random.default_rng(1).uniform(-0.6, 1.6, size=(3, 3, patch, patch)).astype(np.float32)
    host = prepare(p, spec, None).numpy()
    dev = device_prepare(torch.from_numpy(p), spec, None).numpy()
    scale = 255.0 if style == "imagenet" else 1.0
    assert dev.shape == host.shape
    assert np.abs(dev - host).max() <= 1e-4 * scale


def test_device_prepare_random_crop_is_a_crop_and_mirror():
    spec = NetSpec("x", deploy=None, input_size=224, resize=256, style="imagenet", mirror=True)
    p = np.random.default_rng(2).uniform(-0.6, 1.6, size=(6, 3, 80, 80)).astype(np.float32)
    full = device_prepare(torch.from_numpy(p), NetSpec("x", None, input_size=256, style="imagenet"), None)
    g = torch.Generator().manual_seed(0)
    out = device_prepare(torch.from_numpy(p), spec, g)
    flips = 0
    for i in range(len(p)):   # each output is some 224 window of the 256 image, possibly mirrored
        hits = []
        for oy in range(33):
            for ox in range(33):
                for flip in (False, True):
                    w = full[i, :, oy, ox:ox + 224]
                    if torch.equal(out[i, :, 0], w.flip(-1) if flip else w):   # cheap first-row check
                        win = full[i, :, oy:oy + 224, ox:ox + 224]
                        if torch.equal(out[i], win.flip(-1) if flip else win):
                            hits.append(flip)
        assert hits
        flips += hits[0]
    assert 0 < flips < len(p)      # both mirrored and unmirrored crops occur (seed 0)


def _job(seed, store, n_pat=8):
    spec = scratch_spec("CIFAR")
    per = len(store.patches) // n_pat
    ids = [f"P{i}" for i in range(n_pat)]
    labels = {p: i % 2 for i, p in enumerate(ids)}
    train_ids, test_ids = tuple(ids[:6]), tuple(ids[6:])
    rows_of = {p: np.arange(i * per, (i + 1) * per) for i, p in enumerate(ids)}
    tr = np.concatenate([rows_of[p][:per // 2] for p in train_ids])
    sc = np.concatenate([rows_of[p][per // 2:] for p in ids])
    pid = np.concatenate([[p] * (per - per // 2) for p in ids])
    data = FoldData(tr, np.array([labels[p] for p in train_ids for _ in range(per // 2)]), sc, pid, labels)
    fold = Fold(0, seed, seed, train_ids, test_ids)
    st = TrainSettings(epochs=2, batch_size=4, base_lr=0.001, max_iters_per_epoch=3, eval_batch=16)
    return TrainJob(spec, store, fold, data, st, seed)


def test_packed_units_equal_unpacked_bit_for_bit():
    store = _Store(64, 80)
    a, b = _job(1, store), _job(2, store)
    alone = [train_folds_packed([j], torch.device("cpu"))[0] for j in (a, b)]
    torch.manual_seed(123)      # the global generator plays no part
    packed = train_folds_packed([a, b], torch.device("cpu"))
    for x, y in zip(alone, packed):
        assert x.test_scores == y.test_scores and x.train_auc == y.train_auc
        assert x.extra["curves"] == y.extra["curves"]
    assert alone[0].test_scores != alone[1].test_scores      # different seeds: different units
    assert all(np.isfinite(alone[0].extra["curves"]["loss"]))
    assert DevicePatches.of(store, torch.device("cpu")).resident


def test_foreach_caffe_sgd_step_equals_caffesgd():
    """The device path's fused update is models.CaffeSGD's rule bit for bit (step policy, lr/decay mults)."""
    import copy

    import models
    from models.schema import pb
    from replicate.experiments.training import caffe_sgd_step

    net = models.load_net(scratch_spec("CIFAR").train_val, phase="TRAIN",
                          input_shapes={"data": (2, 3, 80, 80), "label": (2,)})
    a = models.to_torch(net, seed=0)
    b = copy.deepcopy(a)
    sp = pb.SolverParameter(base_lr=0.01, momentum=0.9, weight_decay=0.0005, lr_policy="step", gamma=0.5,
                            stepsize=2)
    sa, sb = models.CaffeSGD(a.param_groups(), sp, a), models.CaffeSGD(b.param_groups(), sp, b)
    g = torch.Generator().manual_seed(0)
    for it in range(4):
        x = torch.randn(2, 3, 80, 80, generator=g)
        y = torch.tensor([0, 1])
        masks = {l.name: torch.ones(l.top_shapes[0]) for l in net.layers if l.type == "Dropout"}
        for m, s in ((a, sa), (b, sb)):
            s.zero_grad(set_to_none=True)
            m.loss(m(data=x, label=y, dropout_masks=masks)).backward()
        assert sa.step() == caffe_sgd_step(sb)
        for pa, pb_ in zip(a.parameters(), b.parameters()):
            assert torch.equal(pa, pb_)
    assert sa.iter == sb.iter == 4 and sa.current_step == sb.current_step
