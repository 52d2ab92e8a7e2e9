"""replicate.experiments.controls: above-chance p-values from CIs, Holm's correction, the control rules."""
from __future__ import annotations

import numpy as np
import pytest

from replicate.experiments import controls


def test_single_cell_rule_is_the_ci_lower_bound_above_half():
    for auc, ci in [(0.62, (0.51, 0.70)), (0.62, (0.49, 0.70)), (0.55, (0.501, 0.58)), (0.7, (0.45, 0.99))]:
        p = controls.above_chance_p(auc, ci)
        assert (p < controls.ALPHA) == (ci[0] > 0.5), (auc, ci, p)
    assert controls.above_chance_p(0.5, (0.4, 0.6)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        controls.above_chance_p(0.5, (0.6, 0.4))


def test_holm_adjustment_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, 1*0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(controls.holm_adjust(p), [0.03, 0.06, 0.06, 0.02])
    assert controls.holm_adjust([0.9, 0.8]).max() == 1.0


def test_holm_holds_the_family_wise_error_under_the_null():
    rng = np.random.default_rng(0)
    sims, m, se = 4000, 6, 0.05
    auc = rng.normal(0.5, se, size=(sims, m))
    any_found = 0
    for row in auc:
        cells = {f"c{k}": (a, (a - 1.959964 * se, a + 1.959964 * se)) for k, a in enumerate(row)}
        any_found += any(r["found"] for r in controls.check_cells(cells))
    assert any_found / sims <= controls.ALPHA + 0.008  # one-sided family-wise rate at most 2.5%


def test_control_rules():
    cells = {"features": (0.70, (0.60, 0.80)), "scratch/CIFAR": (0.66, (0.56, 0.75)),
             "scratch/VGG": (0.52, (0.42, 0.62))}
    rows = controls.check_cells(cells)
    assert [r["found"] for r in rows] == [True, True, False]
    ok, why = controls.positive_control_passes(rows, ["features"], ["scratch/CIFAR", "scratch/VGG"])
    assert ok, why
    ok, why = controls.positive_control_passes(rows, ["features"], ["scratch/VGG"])
    assert not ok and "none of" in why
    ok, why = controls.positive_control_passes(rows, ["transfer"], [])
    assert not ok and "not checked" in why
    assert not controls.negative_control_passes(rows)[0]
    assert controls.negative_control_passes(controls.check_cells({"a": (0.52, (0.42, 0.62))}))[0]


def test_training_diagnostic_tells_a_net_that_fit_only_the_class_prior():
    """A constant prediction at the prior q costs H(q) nats (Caffe's SoftmaxWithLoss): a net whose last-epoch loss
    stays there fitted the class frequencies only; one clearly below it used its input."""
    from types import SimpleNamespace

    from replicate.experiments.controls import PRIOR_MARGIN, prior_entropy, training_diagnostic

    q = 39 / 120
    h = prior_entropy(q)
    assert h == pytest.approx(-(q * np.log(q) + (1 - q) * np.log(1 - q))) and prior_entropy(0.5) == pytest.approx(
        np.log(2))
    with pytest.raises(ValueError):
        prior_entropy(1.0)

    def fold(losses, tr=0.6):
        return SimpleNamespace(extra={"curves": {"loss": losses}}, train_auc=tr)

    stuck = training_diagnostic([fold([0.68, 0.64, h + 0.001]), fold([0.69, h - 0.002])], q)
    assert stuck["prior_only"] and stuck["first_epoch_loss"] == pytest.approx(0.685)
    learnt = training_diagnostic([fold([0.68, h - 2 * PRIOR_MARGIN], 0.9)] * 3, q)
    assert not learnt["prior_only"] and learnt["train_auc"] == pytest.approx(0.9)
    assert training_diagnostic([SimpleNamespace(extra={}, train_auc=0.5)], q) is None   # deep features: no curves


def test_the_budget_rule_requires_a_trained_net_only_with_its_share_of_the_papers_steps():
    """The rule is fixed by the budget: deep features and the kinetic baseline always; the scratch net only with
    at least MIN_STEP_SHARE of the paper's SGD steps (CPU quick: ~170 of 50,243; CUDA quick: ~4,000)."""
    from replicate.experiments.grid import PRESETS

    spec = PRESETS["quick"].controls
    cifar = spec["trained"][0]
    kinetic = controls.handcrafted_route("kinetic", "logistic")
    cpu = controls.required_routes(spec, {cifar: 168}, {cifar: 50243})
    assert cpu["positive_required"] == spec["required"] + [kinetic]
    assert cpu["positive_reported"] == [cifar] and set(cpu["negative"]) == {*spec["required"], kinetic, cifar}
    assert cpu["trained"][cifar]["why"].startswith("not required: 168 SGD steps a fold against the paper's ~50243")
    cuda = controls.required_routes(spec, {cifar: 4080}, {cifar: 50243}, device="cuda")
    assert cuda["positive_required"][-1] == cifar and not cuda["positive_reported"]
    edge = controls.MIN_STEP_SHARE * 50243
    assert cifar in controls.required_routes(spec, {cifar: edge}, {cifar: 50243})["positive_required"]
    with pytest.raises(ValueError, match="no SGD step count"):
        controls.required_routes(spec, {}, {})


def test_holm_runs_across_the_required_routes_only():
    cells = {"deep": (0.66, (0.53, 0.78)), "kinetic": (0.70, (0.59, 0.81)), "scratch": (0.51, (0.38, 0.62))}
    rows = controls.check_routes(cells, ["deep", "kinetic"])
    assert [r["cell"] for r in rows] == ["deep", "kinetic", "scratch"]
    assert [r["required"] for r in rows] == [True, True, False]
    p = [controls.above_chance_p(*cells[c]) for c in ("deep", "kinetic")]
    np.testing.assert_allclose([rows[0]["p_holm"], rows[1]["p_holm"]], controls.holm_adjust(p))
    assert rows[2]["p_holm"] == pytest.approx(controls.above_chance_p(*cells["scratch"]))  # alone, reported
    assert controls.positive_control_passes(rows, ["deep", "kinetic"], [])[0]
    assert not controls.negative_control_passes(controls.check_routes(cells, list(cells)))[0]


def test_quick_on_cuda_gets_the_papers_scratch_schedule_on_every_patch():
    from replicate.experiments.grid import PRESETS, for_device

    q = PRESETS["quick"]
    assert for_device(q, "cpu") == q
    g = for_device(q, "cuda")
    assert (g.scratch_epochs, g.step_epochs, g.scratch_patch_caps) == (40, 5, False)
    assert not any(d.startswith(("scratch_epochs", "step_epochs")) for d in g.differences())
    assert for_device(PRESETS["paper"], "cuda") == PRESETS["paper"]


def test_the_cells_ci_the_controls_read_is_the_primary_ci():
    """protocol.summarise (every cell's printed CI, read by the controls and compare.verdict.judge) computes
    auc_ci.PRIMARY_CI: if the coverage rule ever picks another method, this fails until summarise follows."""
    from replicate.experiments import auc_ci
    from replicate.experiments.protocol import FoldResult, summarise

    rng = np.random.default_rng(3)
    y = (np.arange(60) % 3 == 0).astype(int)
    s = y * 0.8 + rng.normal(size=60)
    folds = [FoldResult(0, f, [f"p{i}" for i in range(f, 60, 10)], list(y[f::10]), list(s[f::10]), 0.9)
             for f in range(10)]
    got = summarise(folds, n_boot=200, seed=5)
    np.testing.assert_allclose((got.ci_low, got.ci_high), auc_ci.cv_ci(folds, auc_ci.PRIMARY_CI, n_boot=200, seed=5))
