"""Fit time of the grid's SVM (standardise + scikit-learn ``SVC``, ``replicate.experiments.svm.make_svm``) on
paper-sized synthetic feature matrices, per kernel (Zhu et al. 2019 Table 5: linear, rbf, poly).

    python benchmarks/svm_fit.py [--sizes 500,1000,2000,4000] [--dim 1000] [--kernels poly,rbf,linear]
        [--target 40194] [--patients 243] [--json]

Two readings of the paper's SVM (issue 11, item 3):

- per patch: one fit on every training patch of a fold, 0.9 x 44,660 = ~40,194 rows x 1000 features (GoogLeNet's
  loss3/classifier). A full-size fit takes hours with libsvm, so it is measured at the ``--sizes`` rows and
  extrapolated to ``--target`` with the scaling exponent fitted on those sizes (least squares on log t vs log n;
  the printed line says "extrapolated");
- per patient: ~243 rows x 1000 (the training patients of a fold, one row each).

The synthetic matrices are two Gaussian classes whose means differ by ``--separation`` standard deviations along a
random direction (weakly separable, like the paper's features: AUC 0.5-0.65), so that most rows become support
vectors as in the real problem. libsvm's time depends on the data; these are figures for the shape of the
problem, not for the real features. A benchmark: it prints numbers, nothing passes or fails.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAPER_TRAIN_PATCHES = 40194   # 0.9 x 44,660 (paper: "44660 ... patches generated in total for a given patch size")
PAPER_TRAIN_PATIENTS = 243    # 0.9 x 270


def synthetic(n: int, d: int, separation: float = 0.5, seed: int = 0):
    """(n, d) float32 features and 0/1 labels (1/3 positive, the paper's luminal A rate)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 1 / 3).astype(int)
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    x = rng.standard_normal((n, d)).astype(np.float32) + (separation * (2 * y - 1))[:, None] * direction[None, :]
    return x.astype(np.float32), y


def fit_seconds(kernel: str, n: int, d: int, seed: int = 0) -> float:
    """Seconds to fit ``make_svm(kernel)`` on an (n, d) synthetic matrix (one fit, wall clock)."""
    from replicate.experiments.svm import make_svm

    x, y = synthetic(n, d, seed=seed)
    t0 = time.perf_counter()
    make_svm(kernel).fit(x, y)
    return time.perf_counter() - t0


def scaling(ns, ts) -> tuple[float, float]:
    """(exponent b, coefficient a) of t = a * n**b by least squares on logs."""
    b, loga = np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(ts, float)), 1)
    return float(b), float(np.exp(loga))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="500,1000,2000,4000", help="rows to measure the per-patch scaling at")
    ap.add_argument("--dim", type=int, default=1000, help="feature length (GoogLeNet loss3/classifier: 1000)")
    ap.add_argument("--kernels", default="poly,rbf,linear")
    ap.add_argument("--target", type=int, default=PAPER_TRAIN_PATCHES, help="per-patch rows to extrapolate to")
    ap.add_argument("--patients", type=int, default=PAPER_TRAIN_PATIENTS, help="per-patient rows (measured)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    kernels = args.kernels.split(",")
    out = {"dim": args.dim, "target_rows": args.target, "patient_rows": args.patients, "kernels": {}}
    for k in kernels:
        ts = [fit_seconds(k, n, args.dim) for n in sizes]
        b, a = scaling(sizes, ts)
        per_patient = fit_seconds(k, args.patients, args.dim)
        out["kernels"][k] = {"sizes": sizes, "seconds": ts, "exponent": b, "coefficient": a,
                             "per_patch_seconds_extrapolated": a * args.target ** b,
                             "per_patient_seconds": per_patient}
        if not args.json:
            print(f"{k:6s} " + "  ".join(f"n={n}: {t:.2f} s" for n, t in zip(sizes, ts)), flush=True)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"\n| kernel | t(n) = a n^b: b | per patch, {args.target} x {args.dim} (extrapolated) | "
          f"per patient, {args.patients} x {args.dim} (measured) |")
    print("|---|---|---|---|")
    for k, r in out["kernels"].items():
        print(f"| {k} | {r['exponent']:.2f} | {r['per_patch_seconds_extrapolated'] / 60:.1f} min | "
              f"{r['per_patient_seconds'] * 1000:.1f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
