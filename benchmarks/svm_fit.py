"""Fit time of the grid's SVM (standardise + scikit-learn ``SVC``, ``replicate.experiments.svm.make_svm``) on
paper-sized synthetic feature matrices, per kernel (Zhu et al. 2019 Table 5: linear, rbf, poly).

    python benchmarks/svm_fit.py [--sizes 500,1000,2000,4000] [--dim 1000] [--kernels poly,rbf,linear]
        [--target 40194] [--patients 243] [--libsvm-linear-max 4000] [--json]

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

The linear kernel, before and after (replicate.experiments.svm_linear): "before" is libsvm's
``SVC(kernel="linear")``, "after" is what ``make_svm("linear")`` fits now (``LinearKernelSVC``: the interior-point
solver when n > d, libsvm otherwise), at every ``--sizes`` row count, at ``--target`` and at ``--patients``; libsvm
is fitted up to ``--libsvm-linear-max`` rows and extrapolated beyond (marked), the ratio is before / after from this
one run. The interior-point times also give its ``t = a n^b`` model (``replicate.experiments.svm_cost``).

Times are CPU seconds of this process (``time.process_time``) with BLAS pinned to one thread (threadpoolctl), so
that other jobs on a shared machine do not inflate them as they inflate wall time; libsvm is single-threaded.
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


def libsvm(kernel: str):
    """Standardise + libsvm ``SVC(kernel)`` with scikit-learn's defaults: the grid's SVM before the linear
    kernel's interior-point solver (for rbf and poly, ``make_svm(kernel)`` itself)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return Pipeline([("scale", StandardScaler()), ("svc", SVC(kernel=kernel))])


def fit_seconds(kernel: str, n: int, d: int, seed: int = 0, make=None) -> float:
    """CPU seconds to fit ``make()`` (default :func:`libsvm` of ``kernel``) on an (n, d) synthetic matrix (one
    fit)."""
    x, y = synthetic(n, d, seed=seed)
    model = libsvm(kernel) if make is None else make()
    t0 = time.process_time()
    model.fit(x, y)
    return time.process_time() - t0


def linear_before_after(sizes, target: int, patients: int, d: int, libsvm_max: int, libsvm_seconds: dict) -> list:
    """Rows of the linear kernel's before/after table: for each n in ``sizes + [target, patients]``, libsvm's CPU
    seconds (measured when n <= ``libsvm_max``, reusing ``libsvm_seconds`` {n: s} already measured, else
    extrapolated from the exponent fitted on the measured sizes) and ``make_svm("linear")``'s."""
    from replicate.experiments.svm import make_svm
    from replicate.experiments.svm_linear import use_interior_point

    rows, measured = [], dict(libsvm_seconds)
    for n in sorted(set(sizes) | {target, patients}):
        if n <= libsvm_max and n not in measured:
            measured[n] = fit_seconds("linear", n, d)
    fit_n = [n for n in sizes if n in measured]          # the exponent the libsvm table prints (all --sizes)
    b, a = scaling(fit_n, [measured[n] for n in fit_n]) if len(fit_n) > 1 else (float("nan"), float("nan"))
    for n in sorted(set(sizes) | {target, patients}):
        before = measured.get(n, a * n ** b)
        after = fit_seconds("linear", n, d, make=lambda: make_svm("linear"))
        rows.append({"n": n, "d": d, "before_seconds": before, "before_extrapolated": n not in measured,
                     "after_seconds": after, "after_solver": "interior-point" if use_interior_point(n, d)
                     else "libsvm", "ratio": before / after})
    return rows


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
    ap.add_argument("--libsvm-linear-max", type=int, default=4000,
                    help="largest n to fit libsvm's linear SVC at (beyond: extrapolated; 4000 x 1000 takes ~9 min)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    import replicate.experiments.svm  # noqa: F401  (loads scipy's and numpy's BLAS before the limit is set)

    with threadpool_limits(1):
        return _main(args)


def _main(args) -> int:
    sizes = [int(s) for s in args.sizes.split(",")]
    kernels = args.kernels.split(",")
    out = {"dim": args.dim, "target_rows": args.target, "patient_rows": args.patients, "kernels": {},
           "seconds": "CPU seconds, one thread"}
    for k in kernels:
        if k == "linear":   # libsvm's linear SVC measured at most to --libsvm-linear-max rows, then extrapolated
            ts = {n: fit_seconds(k, n, args.dim) for n in sizes if n <= args.libsvm_linear_max}
            rows = linear_before_after(sizes, args.target, args.patients, args.dim, args.libsvm_linear_max, ts)
            b, a = scaling(list(ts), list(ts.values()))
            ipm = [r for r in rows if r["after_solver"] == "interior-point"]
            ib, ia = scaling([r["n"] for r in ipm], [r["after_seconds"] for r in ipm])
            out["kernels"][k] = {"sizes": list(ts), "seconds": list(ts.values()), "exponent": b, "coefficient": a,
                                 "per_patch_seconds_extrapolated": a * args.target ** b,
                                 "per_patient_seconds": next(r["before_seconds"] for r in rows
                                                             if r["n"] == args.patients),
                                 "before_after": rows,
                                 "interior_point_model": {"coefficient": ia, "exponent": ib,
                                                          "sizes": [r["n"] for r in ipm]}}
            if not args.json:
                print(f"{k:6s} " + "  ".join(f"n={n}: {t:.2f} s" for n, t in ts.items()), flush=True)
            continue
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
    print(f"\n| kernel (libsvm) | t(n) = a n^b: b | per patch, {args.target} x {args.dim} (extrapolated) | "
          f"per patient, {args.patients} x {args.dim} (measured) |")
    print("|---|---|---|---|")
    for k, r in out["kernels"].items():
        print(f"| {k} | {r['exponent']:.2f} | {r['per_patch_seconds_extrapolated'] / 60:.1f} min | "
              f"{r['per_patient_seconds'] * 1000:.1f} ms |")
    lin = out["kernels"].get("linear")
    if lin:
        print("\nLinear kernel, before (libsvm SVC(kernel='linear')) and after (make_svm('linear'): "
              "LinearKernelSVC), CPU seconds, one run:")
        print("\n| n x d | before: libsvm | after | after's solver | before / after |")
        print("|---|---|---|---|---|")
        for r in lin["before_after"]:
            ext = " (extrapolated)" if r["before_extrapolated"] else ""
            print(f"| {r['n']} x {r['d']} | {r['before_seconds']:.3g} s{ext} | {r['after_seconds']:.3g} s | "
                  f"{r['after_solver']} | {r['ratio']:.3g} |")
        m = lin["interior_point_model"]
        print(f"\ninterior point: t = {m['coefficient']:.3g} n^{m['exponent']:.2f} s at d = {args.dim} "
              f"(fitted on n = {m['sizes']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
