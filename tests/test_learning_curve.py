"""replicate.experiments.learning_curve: stratified subsets, the tidy table, the figure."""
import numpy as np
import pandas as pd
import pytest

from replicate.experiments.featurecv import FeatureCandidate, cv_summary
from replicate.experiments.learning_curve import (COLUMNS, curve_summary, learning_curve, plot_learning_curve,
                                                  stratified_subset)
from replicate.experiments.svm import make_svm


def cohort(n=90):
    y = (np.arange(n) % 3 == 0).astype(int)
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "label": y})


def test_subsets_keep_the_class_proportion_and_do_not_repeat_patients():
    pts = cohort()
    s = stratified_subset(pts, 45, np.random.default_rng(0))
    assert len(s) == 45 and s.label.sum() == 15 and s.patient_id.is_unique
    with pytest.raises(ValueError):
        stratified_subset(pts, 91, np.random.default_rng(0))


def test_curve_table_sizes_draws_and_skips():
    pts = cohort()
    seen = []

    def evaluate(sub):
        seen.append(set(sub.patient_id))
        return 0.5 + len(sub) / 1000

    df = learning_curve(evaluate, pts, sizes=(20, 30, 60, 270, None), draws=3, cell="c")
    assert list(df.columns) == COLUMNS
    # 20 -> 7 positives < 10 per class: left out; 270 > 90: left out; None: once
    assert list(df["size"]) == [30, 30, 30, 60, 60, 60, "all"]
    assert df.test_auc.tolist()[-1] == pytest.approx(0.59)
    assert len({frozenset(s) for s in seen[:3]}) == 3            # the draws differ
    again = learning_curve(evaluate, pts, sizes=(60,), draws=2, cell="c")
    assert again.test_auc.tolist() == df[df["size"] == 60].test_auc.tolist()[:2]
    assert set(seen[-1]) == set(learning_curve.__globals__["stratified_subset"](
        pts, 60, np.random.default_rng([0, 60, 1])).patient_id)


def test_a_real_cell_and_the_figure(tmp_path):
    rng = np.random.default_rng(0)
    pts = cohort(90)
    X = np.c_[pts.label * 2.5 + rng.normal(size=90)]
    cand = FeatureCandidate(X, pts.patient_id.to_numpy(), lambda: make_svm("linear"))
    df = learning_curve(lambda sub: cv_summary(cand, sub, n_folds=5, n_boot=200), pts, sizes=(45, None),
                        draws=2, cell="signal", min_per_class=5)
    assert (df.test_auc > 0.6).all() and (df.ci_low < df.test_auc).all()
    s = curve_summary(df)
    assert list(s.n_patients) == [45, 90] and list(s.draws) == [2, 1]
    fig = plot_learning_curve(df, tmp_path / "lc.png", title="t")
    assert (tmp_path / "lc.png").stat().st_size > 1000 and fig.axes[0].get_xlabel() == "patients"
