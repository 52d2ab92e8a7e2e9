"""How close each linear-kernel SVM solver comes to the optimum of libsvm's problem, on the synthetic matrices of
``benchmarks/svm_fit.py`` (replicate.experiments.svm_linear has the problem (P) and the solvers).

    python benchmarks/svm_linear_check.py [--sizes 100x200,400x200,800x200,1600x200] [--tight-libsvm-max 1600]
        [--json]

For each n x d size (n training rows, d features, standardised) the reference is
:class:`replicate.experiments.svm_linear.InteriorPointLinearSVC` at ``tol=1e-12`` (its certified relative duality gap is
printed); where n <= ``--tight-libsvm-max``, libsvm at ``tol=1e-6`` is fitted too, and its dual objective (a lower
bound on the optimum) and primal objective (an upper bound) bracket the reference's objective. Every solver is then
compared to the reference: relative excess objective ``(P - P_ref) / P_ref``, the largest decision-value difference
on 2,000 held-out rows in units of the reference's decision-value SD, the intercept difference, the held-out AUC,
fit CPU seconds and whether it converged. Solvers: libsvm ``SVC(kernel="linear")`` at its default ``tol=1e-3`` (what
the grid fitted before), liblinear's hinge-loss dual ``LinearSVC(loss="hinge", dual=True)`` at a few
(``tol``, ``max_iter``, ``intercept_scaling``), and the interior-point solver at its default ``tol=1e-8``. BLAS is
pinned to one thread (threadpoolctl) so times compare with libsvm's single thread. A benchmark: it prints numbers,
nothing passes or fails (tests/test_svm_linear.py holds the asserted tolerances).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: liblinear settings tried: scikit-learn's defaults, a 100x epoch budget, and a large intercept_scaling (which makes
#: the regularised intercept nearly free, as libsvm's is) at the default and at a tight tolerance.
LIBLINEAR = [(1e-4, 1000, 1.0), (1e-4, 100_000, 1.0), (1e-4, 100_000, 100.0), (1e-6, 100_000, 100.0)]


def dual_objective(svc) -> float:
    """libsvm's dual objective ``sum alpha - 1/2 ||w||^2`` of a fitted linear ``SVC`` (a lower bound on (P))."""
    w = (svc.dual_coef_ @ svc.support_vectors_).ravel()
    return float(np.abs(svc.dual_coef_).sum() - 0.5 * w @ w)


def timed_fit(make, x, y):
    """(fitted estimator, CPU seconds, converged): one fit; ``converged`` is False on a ConvergenceWarning. CPU
    seconds of this process (``time.process_time``; one BLAS thread), so that other jobs on the machine do not
    inflate them as they do wall time."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.process_time()
        m = make().fit(x, y)
        sec = time.process_time() - t0
    return m, sec, not any(issubclass(c.category, ConvergenceWarning) for c in caught)


def weights(m):
    """(w, b) of a fitted linear SVC / LinearSVC / InteriorPointLinearSVC."""
    if hasattr(m, "dual_coef_"):
        return (m.dual_coef_ @ m.support_vectors_).ravel(), float(m.intercept_[0])
    return np.asarray(m.coef_).ravel(), float(np.ravel(m.intercept_)[0])


def check(n: int, d: int, tight_libsvm_max: int) -> dict:
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC
    from svm_fit import synthetic

    from replicate.experiments.svm_linear import InteriorPointLinearSVC, hinge_objective

    x0, y = synthetic(n, d, seed=0)
    scaler = StandardScaler().fit(x0)
    x = scaler.transform(x0).astype(np.float64)
    xt, yt = synthetic(2000, d, seed=1)
    xt = scaler.transform(xt).astype(np.float64)
    s = 2.0 * y - 1.0
    ref, ref_sec, _ = timed_fit(lambda: InteriorPointLinearSVC(tol=1e-12), x, y)
    w_ref, b_ref = weights(ref)
    p_ref = hinge_objective(w_ref, b_ref, x, s)
    f_ref = xt @ w_ref + b_ref
    out = {"n": n, "d": d, "reference": {"objective": p_ref, "duality_gap": ref.duality_gap_, "seconds": ref_sec,
                                         "auc": float(roc_auc_score(yt, f_ref))}, "solvers": {}}
    solvers = {"libsvm tol=1e-3 (before)": lambda: SVC(kernel="linear", cache_size=1000)}
    if n <= tight_libsvm_max:
        solvers["libsvm tol=1e-6"] = lambda: SVC(kernel="linear", tol=1e-6, cache_size=1000)
    for tol, it, scale in LIBLINEAR:
        solvers[f"liblinear tol={tol:g} max_iter={it} intercept_scaling={scale:g}"] = (
            lambda tol=tol, it=it, scale=scale: LinearSVC(loss="hinge", dual=True, tol=tol, max_iter=it,
                                                          intercept_scaling=scale))
    solvers["interior point tol=1e-8 (after)"] = InteriorPointLinearSVC
    for name, make in solvers.items():
        m, sec, conv = timed_fit(make, x, y)
        w, b = weights(m)
        f = xt @ w + b
        row = {"seconds": sec, "converged": conv,
               "excess_objective": (hinge_objective(w, b, x, s) - p_ref) / p_ref,
               "max_decision_diff_sd": float(np.abs(f - f_ref).max() / f_ref.std()),
               "intercept_diff": b - b_ref, "auc": float(roc_auc_score(yt, f))}
        if name.startswith("libsvm"):
            row["dual_objective_gap"] = (p_ref - dual_objective(m)) / p_ref   # >= 0 when the reference is optimal
        out["solvers"][name] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100x200,400x200,800x200,1600x200,500x1000,2000x1000",
                    help="comma-separated n x d training sizes")
    ap.add_argument("--tight-libsvm-max", type=int, default=1600, help="largest n to fit libsvm at tol=1e-6 at")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    import replicate.experiments.svm  # noqa: F401  (loads scipy's and numpy's BLAS before the limit is set)

    results = []
    with threadpool_limits(1):
        for size in args.sizes.split(","):
            n, d = (int(v) for v in size.lower().split("x"))
            r = check(n, d, args.tight_libsvm_max)
            results.append(r)
            if not args.json:
                ref = r["reference"]
                print(f"\n{n} x {d}: reference objective {ref['objective']:.6g}, relative duality gap "
                      f"{ref['duality_gap']:.1e}, held-out AUC {ref['auc']:.4f}")
                print("| solver | CPU s | converged | excess objective | max decision diff / SD | intercept diff | "
                      "AUC |")
                print("|---|---|---|---|---|---|---|")
                for name, v in r["solvers"].items():
                    print(f"| {name} | {v['seconds']:.2f} | {'yes' if v['converged'] else 'no'} | "
                          f"{v['excess_objective']:.1e} | {v['max_decision_diff_sd']:.1e} | "
                          f"{v['intercept_diff']:+.3f} | {v['auc']:.4f} |", flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
