"""replicate.experiments.power: the AUC the planted effect allows and the cohort size for the positive control."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from replicate.cohort import synth
from replicate.errors import ConfigError
from replicate.experiments import power


def test_ideal_auc_is_the_auc_of_the_generators_slope_rule():
    assert power.ideal_auc(0.0) == 0.5
    assert power.ideal_auc(1.0) == pytest.approx(norm.cdf(1 / np.sqrt(2)), abs=1e-12)  # 0.7602
    assert power.ideal_auc(1.0) == pytest.approx(0.760, abs=0.001)
    # Monte Carlo of the generator's rule s ~ N(+/- effect * SLOPE_SHIFT, SLOPE_SD): the AUC of s by label
    rng = np.random.default_rng(0)
    for effect in (0.5, 1.0, 2.0):
        pos = rng.normal(effect * synth.SLOPE_SHIFT, synth.SLOPE_SD, 1500)
        neg = rng.normal(-effect * synth.SLOPE_SHIFT, synth.SLOPE_SD, 3000)
        emp = (pos[:, None] > neg[None, :]).mean()
        assert emp == pytest.approx(power.ideal_auc(effect), abs=0.015), effect
    with pytest.raises(ConfigError):
        power.ideal_auc(-1)


def test_power_is_the_test_size_under_the_null_and_grows_with_n_and_auc():
    # under the null the lower bound of a 95% CI exceeds 0.5 in 2.5% of data sets (one side of a 5% test)
    assert power.auc_power(0.5, 30, 60) == pytest.approx(0.025, abs=0.005)
    p = [power.auc_power(0.70, n // 3, n - n // 3) for n in (60, 90, 120, 180)]
    assert p == sorted(p) and p[-1] > 0.99
    assert power.auc_power(0.65, 40, 80) < power.auc_power(0.76, 40, 80)


def test_simulated_power_of_the_harness_statistic():
    # the harness's own CI (fold-averaged AUC, patient bootstrap): about the nominal one-sided rate under the null
    # (300 runs: SE ~0.009 around 0.025) and high power at the generator's ideal AUC with 120 patients
    assert power.auc_power_simulated(0.5, 30, 60, n_sims=300, n_boot=200) <= 0.05
    assert power.auc_power_simulated(power.ideal_auc(1.0), 40, 80, n_sims=150, n_boot=200) >= 0.95


def test_smallest_cohort_is_the_first_size_that_reaches_the_target():
    a = power.ideal_auc(1.0)
    r = power.smallest_cohort(a, power=0.95)
    n = r["n_patients"]
    assert r["power"] >= 0.95 and (r["n_pos"], r["n_neg"]) == power.class_counts(n)
    assert power.auc_power(a, *power.class_counts(n - 1)) < 0.95
    assert 55 <= n <= 75  # 65 at the generator's default effect
    assert power.smallest_cohort(0.70)["n_patients"] > n
    with pytest.raises(ConfigError, match="method"):
        power.smallest_cohort(a, method="guess")
    rows = power.power_table(120)
    assert [row["auc"] for row in rows] == [0.60, 0.65, 0.70, 0.76] and rows[-1]["power"] > 0.99


def test_control_sizing_is_plain_data_and_says_when_there_is_no_effect():
    null = power.control_sizing(effect=0.0)
    assert null["ideal_auc"] == 0.5 and "negative control" in null["note"]
    s = power.control_sizing(effect=2.0, n_patients=60, n_sims=100)
    assert s["smallest_simulation"]["n_patients"] >= s["smallest_hanley_mcneil"]["n_patients"] - 3
    assert [r["n_patients"] for r in s["at_cohort"]] == [60] * 4
