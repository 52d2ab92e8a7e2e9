"""Measured coverage of the CI methods for a cross-validated AUC (replicate.experiments.auc_ci).

Simulates ``R`` synthetic cohorts at effect 0 and at the generator's default effect, runs the hand-crafted kinetic
baseline (``replicate.experiments.baselines``: StandardScaler + logistic regression, optionally the RBF SVM) under
the paper's protocol (stratified patient-level 10-fold CV, fold-averaged AUC) and records, per CI method:

* coverage of the procedure's true AUC: the AUC, on a large independent cohort (``--big`` patients), of a model
  fitted by the same procedure on a cohort of the study's size, averaged over ``--truth-fits`` independent
  training cohorts (Bates, Hastie & Tibshirani 2023 call this Err, the target CV estimates);
* at effect 0, how often the CI excludes 0.5 (a false positive control);
* the bias of the CV AUC (mean CV AUC - true AUC), negative on null data (Bengio & Grandvalet 2004; the folds'
  training sets are label-unbalanced against their test side);
* each rate's Monte-Carlo SE, ``sqrt(p (1 - p) / R)``.

Cohorts: writing R DICOM cohorts is far too slow for this machine, so each patient's kinetic features are drawn
directly from the generator's per-patient kinetic model (``replicate.cohort.synth._make_patient``: label by the
Weyl sequence at a 1/3 luminal A rate, slope ``N(+/- effect * SLOPE_SHIFT, SLOPE_SD)``, amplitude
``U(0.9, 1.6) * 220``, lesion heterogeneity ``0.6 + 0.2 * field``, voxel noise SD 6) and turned into the six
:data:`replicate.cohort.handcrafted.KINETIC` features by ``lesion_features``' formulas on ``--voxels`` simulated
lesion voxels. No image, mask or reference-intensity step is simulated (those add scanner-dependent scale, which
the ratio features do not see). The label enters only through the slope, as in the generator.

Run: ``nice -n 10 python benchmarks/ci_coverage.py --reps 200`` (docs/ci_coverage.md). Not run in CI.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from replicate.cohort.handcrafted import KINETIC, SER_WASHOUT
from replicate.cohort.synth import SLOPE_SD, SLOPE_SHIFT
from replicate.experiments import auc_ci
from replicate.experiments.baselines import make_classifier
from replicate.experiments.featurecv import FeatureCandidate, cv_results, fast_auc, model_scores
from replicate.experiments.protocol import fold_bootstrap_ci, bootstrap_ci

PRE_LESION = 200.0   # synth: lesion pre-contrast intensity
NOISE_SD = 6.0       # synth: voxel noise SD


def kinetic_cohort(n: int, effect: float, rng: np.random.Generator, voxels: int = 64) -> pd.DataFrame:
    """``n`` patients' ``patient_id, label`` + KINETIC features from the generator's kinetic model (module doc)."""
    start = rng.random()
    lab = (((start + np.arange(1, n + 1) * 0.41421356237309515) % 1.0) < 1 / 3).astype(int)
    slope = rng.normal(effect * SLOPE_SHIFT * np.where(lab == 1, 1, -1), SLOPE_SD)
    amp = rng.uniform(0.9, 1.6, n) * 220.0
    hetero = 0.6 + 0.2 * rng.normal(0, 0.5, (n, 1)) + 0.2 * rng.normal(0, 0.3, (n, voxels))
    k = np.arange(3)
    curve = amp[:, None] * np.maximum(0.2, 1 + slope[:, None] * k)                        # (n, 3) posts 1..3
    pre = PRE_LESION + rng.normal(0, NOISE_SD, (n, voxels))
    post = PRE_LESION + curve[:, :, None] * hetero[:, None, :] + rng.normal(0, NOISE_SD, (n, 3, voxels))
    sub = (post - pre[:, None, :]) / PRE_LESION                                           # relative enhancement
    s0 = pre.mean(axis=1) / PRE_LESION
    c = sub.mean(axis=2)
    pe = c / s0[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        vser = np.where(sub[:, 2] > 1e-6, sub[:, 0] / sub[:, 2], np.inf)
    f = pd.DataFrame({
        "peak_enhancement": pe.max(axis=1), "wash_in": pe[:, 0],
        "washout_slope": (c[:, 2] - c[:, 0]) / c[:, 0] / 2, "ser": c[:, 0] / c[:, 2],
        "time_to_peak": np.argmax(c, axis=1) + 1.0, "washout_fraction": (vser > SER_WASHOUT).mean(axis=1)})
    f.insert(0, "label", lab)
    f.insert(0, "patient_id", [f"P{i:05d}" for i in range(1, n + 1)])
    return f[["patient_id", "label"] + KINETIC]


def true_auc(n: int, effect: float, clf: str, fits: int, big: int, seed: int, voxels: int) -> float:
    """Mean AUC on one ``big``-patient cohort of ``fits`` models, each fitted on its own ``n``-patient cohort."""
    rng = np.random.default_rng([seed, 999])
    test = kinetic_cohort(big, effect, rng, voxels)
    xt, yt = test[KINETIC].to_numpy(), test["label"].to_numpy()
    out = []
    for _ in range(fits):
        tr = kinetic_cohort(n, effect, rng, voxels)
        m = make_classifier(clf).fit(tr[KINETIC].to_numpy(), tr["label"].to_numpy())
        out.append(fast_auc(yt, model_scores(m, xt)))
    return float(np.mean(out))


def one_cohort(n: int, effect: float, clf: str, seed: int, voxels: int, n_boot: int, nested_reps: int) -> dict:
    coh = kinetic_cohort(n, effect, np.random.default_rng([seed, 1]), voxels)
    cand = FeatureCandidate(coh[KINETIC].to_numpy(), coh["patient_id"].to_numpy(), lambda: make_classifier(clf))
    pts = coh[["patient_id", "label"]]
    folds = cv_results(cand, pts, n_folds=10, n_repeats=1, seed=seed)
    cv = float(np.mean([f.test_auc for f in folds]))
    cis = {"patient_bootstrap": bootstrap_ci(folds, n_boot=n_boot, seed=seed),
           "fold_bootstrap": fold_bootstrap_ci([f.test_auc for f in folds], n_boot=n_boot, seed=seed),
           "delong_pooled": auc_ci.delong_pooled_ci(folds)["ci"], "ledell_ic": auc_ci.ledell_ci(folds)["ci"]}
    if nested_reps:
        cis["nested_cv"] = auc_ci.nested_cv_ci(cand, pts, 10, nested_reps, seed=seed, cv_auc=cv)["ci"]
    return {"cv_auc": cv, "ci": {k: [float(v[0]), float(v[1])] for k, v in cis.items()}}


def table(rows: list[dict], truth: float, effect: float) -> pd.DataFrame:
    R = len(rows)
    out = []
    for m in rows[0]["ci"]:
        lo = np.array([r["ci"][m][0] for r in rows])
        hi = np.array([r["ci"][m][1] for r in rows])
        cov = float(np.mean((lo <= truth) & (truth <= hi)))
        ex = float(np.mean((lo > 0.5) | (hi < 0.5)))
        above = float(np.mean(lo > 0.5))   # the controls' one-sided criterion (controls.ALPHA = 0.025)
        out.append({"effect": effect, "method": m, "coverage": cov, "coverage_mc_se": np.sqrt(cov * (1 - cov) / R),
                    "excludes_0.5": ex, "excludes_mc_se": np.sqrt(ex * (1 - ex) / R),
                    "low_above_0.5": above, "above_mc_se": np.sqrt(above * (1 - above) / R),
                    "mean_width": float(np.mean(hi - lo))})
    return pd.DataFrame(out)


def markdown(tab: pd.DataFrame) -> str:
    """The table as GitHub markdown (no tabulate dependency)."""
    cols = list(tab.columns)

    def cell(col, v):
        if isinstance(v, float):
            return f"{v:g}" if col == "effect" else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(c, v) for c, v in zip(cols, row)) + " |" for row in tab.itertuples(index=False)]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200, help="simulated cohorts per effect (R)")
    ap.add_argument("--patients", type=int, default=120, help="cohort size (the quick preset's)")
    ap.add_argument("--effects", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument("--classifier", default="logistic", choices=["logistic", "svm"])
    ap.add_argument("--nested-reps", type=int, default=3, help="nested-CV repetitions (0 = skip nested CV)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--big", type=int, default=20000, help="size of the independent test cohort for the truth")
    ap.add_argument("--truth-fits", type=int, default=200)
    ap.add_argument("--voxels", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write every cohort's CIs and the table here")
    a = ap.parse_args(argv)
    t0 = time.time()
    tabs, dump = [], {}
    for eff in a.effects:
        truth = true_auc(a.patients, eff, a.classifier, a.truth_fits, a.big, a.seed, a.voxels)
        rows = [one_cohort(a.patients, eff, a.classifier, a.seed * 100000 + i, a.voxels, a.n_boot, a.nested_reps)
                for i in range(a.reps)]
        cv = np.array([r["cv_auc"] for r in rows])
        print(f"effect {eff:g}: true AUC {truth:.4f}; mean CV AUC {cv.mean():.4f} (bias {cv.mean() - truth:+.4f} "
              f"+/- {cv.std(ddof=1) / np.sqrt(len(cv)):.4f} MC SE; bias vs 0.5 {cv.mean() - 0.5:+.4f}); "
              f"between-cohort SD {cv.std(ddof=1):.4f}; {time.time() - t0:.0f} s", flush=True)
        tabs.append(table(rows, truth, eff))
        dump[str(eff)] = {"truth": truth, "cv_auc": cv.tolist(), "rows": rows}
    tab = pd.concat(tabs, ignore_index=True)
    cov = {m: {f"{a.classifier}, effect {e:g}": float(c) for e, c in zip(g.effect, g.coverage)}
           for m, g in tab.groupby("method")}
    primary = auc_ci.choose_primary(cov)
    print(markdown(tab))
    print(f"R = {a.reps} per effect, {a.patients} patients, classifier {a.classifier}, nested reps "
          f"{a.nested_reps}, n_boot {a.n_boot}; wall {time.time() - t0:.0f} s")
    print(f"primary (first of {auc_ci.PREFERENCE} with coverage >= {auc_ci.MIN_COVERAGE} at every effect): "
          f"{primary or 'none'}")
    print("MEASURED_COVERAGE = " + json.dumps(cov))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"args": vars(a), "table": tab.to_dict("records"), "cohorts": dump}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
