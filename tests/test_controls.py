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
