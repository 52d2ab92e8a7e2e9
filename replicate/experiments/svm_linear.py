"""The linear-kernel SVM of Table 5 at the per-patch scale: libsvm's problem, solved by an interior-point method.

scikit-learn's ``SVC(kernel="linear")`` (libsvm's SMO) solves the soft-margin SVM

    min_{w, b, xi}  1/2 ||w||^2 + C sum_i xi_i   s.t.  y_i (w . x_i + b) >= 1 - xi_i,  xi_i >= 0      (P)

with the intercept ``b`` unregularised, and stops when the largest violation of its KKT conditions falls under
``tol=1e-3``. On weakly separable dense features with more rows than features (the per-patch reading: ~40,194
training patches x 1000 features a fold) SMO needs of the order of 10^7 iterations and its fit time grows like
n^4 (``benchmarks/svm_fit.py``: 538 s at 4,000 x 1000, ~1,000 h extrapolated to 40,194). liblinear's hinge-loss
dual coordinate descent (``LinearSVC(loss="hinge", dual=True)``) is no substitute there: it regularises ``b`` as an
extra feature of value ``intercept_scaling`` and, with n > d, does not reach its tolerance within 10^5 epochs, the
more so the larger ``intercept_scaling`` (docs/svm_linear.md has the measurements).

:class:`InteriorPointLinearSVC` solves (P) itself, exactly as stated (``b`` unregularised, the same ``C``), with
Mehrotra's predictor-corrector primal-dual interior-point method (Mehrotra 1992, SIAM J. Optim. 2:575; Nocedal &
Wright, *Numerical Optimization*, 2nd ed., Algorithm 16.4) in the formulation of Gertz & Wright 2003 ("Object-oriented
software for quadratic programming", ACM TOMS 29:58, section 3.3) and Ferris & Munson 2002 ("Interior-point methods
for massive support vector machines", SIAM J. Optim. 13:783): eliminating the n slacks and multipliers leaves one
dense (d+1) x (d+1) positive-definite system ``diag(1_d, 0) + [X 1]^T Omega [X 1]`` per iteration, so an iteration
costs ``n d^2`` flops and the number of iterations (~10-25) hardly depends on n. It stops when a certified relative
duality gap (the primal objective minus the dual objective of a feasible point) is under ``tol`` (default 1e-8):
its answer is the optimum of (P) to that bound, against which libsvm's own ``tol=1e-3`` answer is an
approximation (docs/svm_linear.md: libsvm's objective exceeds it by 3e-5 to 3e-2 relative).

:class:`LinearKernelSVC` is what the grid's linear cells fit (``replicate.experiments.svm.make_svm("linear")``): the
fixed rule :func:`use_interior_point` (more training rows than features: the interior-point solver; otherwise
libsvm's ``SVC(kernel="linear")``, fast there and the reference) decides before the fit, from the matrix's shape.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import blas, cho_factor, cho_solve
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits


def use_interior_point(n_samples: int, n_features: int) -> bool:
    """The fixed rule choosing the linear-kernel solver: ``True`` (:class:`InteriorPointLinearSVC`) when the
    training matrix has more rows than features, ``False`` (libsvm's ``SVC(kernel="linear")``) otherwise.

    Why the boundary is n = d: libsvm's fit time jumps once n > d (``benchmarks/svm_fit.py``: 3.3 s at 2,000 x 1000,
    538 s at 4,000 x 1000) while below it libsvm takes milliseconds (243 patients x 1000 features: 16 ms) and the
    interior-point method's ``d^3`` per iteration would make it the slower of the two. The rule depends on the
    shape only, never on a result."""

    return int(n_samples) > int(n_features)


def hinge_objective(w, b: float, X, y_pm, C: float = 1.0) -> float:
    """Primal objective of (P) at ``(w, b)``: ``1/2 ||w||^2 + C sum_i max(0, 1 - y_i (w . x_i + b))``.
    ``X`` (n, d), ``y_pm`` (n,) labels in {-1, +1}, ``w`` (d,)."""

    w = np.asarray(w, np.float64).ravel()
    margin = np.asarray(y_pm, np.float64) * (np.asarray(X, np.float64) @ w + b)
    return float(0.5 * w @ w + C * np.maximum(0.0, 1.0 - margin).sum())


def certified_gap(w, b: float, f, alpha, X, y_pm, C: float) -> float:
    """``(P(w, b) - D(alpha_hat)) / max(1, |P(w, b)|)``, a bound on the relative suboptimality of ``(w, b)`` in
    (P) that holds whatever the solver's residuals: ``P`` is :func:`hinge_objective` (``f = X w + b`` given), and
    ``alpha_hat`` is ``alpha`` clipped to the box ``[0, C]`` and scaled down on the heavier class so that
    ``y . alpha_hat = 0``, a feasible point of libsvm's dual ``max sum(alpha) - 1/2 ||X^T (y alpha)||^2``, whose
    value bounds the optimum of (P) from below (weak duality)."""

    a = np.clip(alpha, 0.0, C)
    pos, neg = a[y_pm > 0].sum(), a[y_pm < 0].sum()
    if pos > neg:
        a = np.where(y_pm > 0, a * (neg / pos), a)
    elif neg > pos:
        a = np.where(y_pm < 0, a * (pos / neg), a)
    v = X.T @ (y_pm * a)
    dual = a.sum() - 0.5 * v @ v
    primal = 0.5 * w @ w + C * np.maximum(0.0, 1.0 - y_pm * f).sum()
    return float((primal - dual) / max(1.0, abs(primal)))


def _max_step(v, dv) -> float:
    """Largest a in (0, 1] with v + a dv >= 0 (v > 0)."""
    neg = dv < 0
    return float(min(1.0, np.min(-v[neg] / dv[neg]))) if np.any(neg) else 1.0


class InteriorPointLinearSVC(ClassifierMixin, BaseEstimator):
    """Soft-margin linear SVM (problem (P) of this module, libsvm's ``SVC(kernel="linear")`` problem) solved to a
    relative duality gap of ``tol`` by a primal-dual interior-point method.

    Parameters
    ----------
    C : float, default 1.0
        Penalty on the hinge losses, the same ``C`` as ``sklearn.svm.SVC`` (sum of losses, not mean).
    tol : float, default 1e-8
        Stop when the certified relative duality gap (:func:`certified_gap`: primal objective minus the dual
        objective of a feasible projection of the multipliers) is below it.
    max_iter : int, default 200
        Interior-point iterations. The iterate with the smallest certified gap is returned; if that gap is not
        below ``tol`` (``max_iter`` reached, or 5 iterations without progress once under 1e-6: the floor rounding
        sets) a ``ConvergenceWarning`` says so.

    Attributes
    ----------
    coef_ : ndarray (1, d) float64; intercept_ : ndarray (1,) float64
        ``w`` and ``b``; ``decision_function(X) = X @ coef_[0] + intercept_[0]``, positive for ``classes_[1]``.
    classes_ : ndarray (2,)
    n_iter_ : int
    duality_gap_ : float
        Certified relative duality gap at the returned point: its objective exceeds the optimum of (P) by at most
        ``duality_gap_ x max(1, objective_)``.
    objective_ : float
        :func:`hinge_objective` at the returned ``(w, b)``.

    Raises
    ------
    ValueError
        From ``fit``: ``C <= 0``, ``y`` without exactly two classes, or non-finite ``X``.

    Notes
    -----
    Variables: ``w`` (d), ``b``, slacks ``xi`` (n) and ``t = y (X w + b) + xi - 1`` (n), multipliers ``alpha`` of
    the margin constraints and ``nu = C - alpha`` of ``xi >= 0``. Eliminating ``t, xi, alpha, nu`` from the Newton
    system leaves ``(diag(1_d, 0) + A^T Omega A) [dw; db] = rhs`` with ``A = [X 1]`` and
    ``Omega = 1 / (t / alpha + xi / nu)`` (Gertz & Wright 2003, section 3.3), factored once per iteration (BLAS
    ``dsyrk`` then Cholesky) and used by the predictor and the corrector (Mehrotra 1992).
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-8, max_iter: int = 200):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, order="C")
        if not self.C > 0:
            raise ValueError(f"InteriorPointLinearSVC: C must be > 0, got {self.C!r}")
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"InteriorPointLinearSVC: expected two classes, got {len(self.classes_)}")
        s = np.where(y == self.classes_[1], 1.0, -1.0)
        # One BLAS thread: a multithreaded dsyrk/Cholesky sums in an order that depends on the thread count, and the
        # interior-point path amplifies that rounding to ~1e-4 in decision values; a unit must give the same numbers
        # on the driver and on a Ray worker (tests/test_executors.py).
        with threadpool_limits(limits=1, user_api="blas"):
            w, b, self.n_iter_, self.duality_gap_ = _solve(X, s, float(self.C), float(self.tol), int(self.max_iter))
        self.coef_ = w[None, :]
        self.intercept_ = np.array([b])
        self.objective_ = hinge_objective(w, b, X, s, self.C)
        return self

    def decision_function(self, X):
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_[0] + self.intercept_[0]

    def predict(self, X):
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


def _cholesky(K):
    """Cholesky factor of the (d+1) system. Near the optimum ``Omega`` spans ~20 orders of magnitude (free support
    vectors' entries grow without bound) and rounding can make ``K`` numerically indefinite; a diagonal shift of
    1e-14 x its largest diagonal entry, raised 100-fold until the factorisation succeeds, only perturbs the Newton
    direction (the residuals are recomputed exactly at the next iterate), as in interior-point codes' regularised
    normal equations (Wright 1997, *Primal-Dual Interior-Point Methods*, chapter 11)."""
    from numpy.linalg import LinAlgError

    shift = 0.0
    base = 1e-14 * float(np.max(np.diag(K)))
    for _ in range(12):
        try:
            M = K.copy()
            M[np.diag_indices_from(M)] += shift
            return cho_factor(M, lower=False, overwrite_a=True, check_finite=False)
        except LinAlgError:
            shift = base if shift == 0.0 else shift * 100.0
    raise FloatingPointError("InteriorPointLinearSVC: the Newton system stayed indefinite after diagonal shifts "
                             "up to 1e8 x its scale (non-finite or degenerate features?)")


def _solve(X, s, C: float, tol: float, max_iter: int):
    """Mehrotra predictor-corrector on (P). ``X`` (n, d) float64 C-ordered, ``s`` (n,) in {-1, +1}.
    Returns (w (d,), b, iterations, certified relative duality gap) of the best iterate."""

    n, d = X.shape
    A = np.empty((n, d + 1))           # [X 1]: the intercept as a column, unregularised (diag(1_d, 0) below)
    A[:, :d] = X
    A[:, d] = 1.0
    reg = np.ones(d + 1)
    reg[d] = 0.0
    w = np.zeros(d)
    b = 0.0
    xi = np.ones(n)
    t = np.ones(n)
    alpha = np.full(n, C / 2.0)
    nu = np.full(n, C / 2.0)
    best = (np.inf, w, b, 0)
    stalled = 0
    for it in range(1, max_iter + 1):
        sa = s * alpha
        r_w = w - X.T @ sa                                   # stationarity in w:  w = X^T (y alpha)
        r_b = float(sa.sum())                                # in b:               y^T alpha = 0
        r_xi = C - alpha - nu                                # in xi:              alpha + nu = C
        f = X @ w + b
        r_t = s * f + xi - 1.0 - t                           # the margin constraints' slack
        gap = certified_gap(w, b, f, alpha, X, s, C)
        if gap < best[0]:
            best, stalled = (gap, w, b, it - 1), 0
        else:
            stalled += 1
        if gap < tol or (stalled >= 5 and best[0] < 1e-6):  # no progress near the optimum: rounding's floor
            break
        comp = float(alpha @ t + nu @ xi)
        omega = 1.0 / (t / alpha + xi / nu)
        B = (A * np.sqrt(omega)[:, None]).T                  # (d+1, n), Fortran-ordered view for dsyrk
        K = blas.dsyrk(1.0, B, lower=0)                      # upper triangle of A^T Omega A
        K[np.diag_indices_from(K)] += reg
        factor = _cholesky(K)

        def direction(r1, r2):
            h = -r_t - (r2 - xi * r_xi) / nu + r1 / alpha
            rhs = A.T @ (s * omega * h)
            rhs[:d] -= r_w
            rhs[d] += r_b
            dwb = cho_solve(factor, rhs, check_finite=False)
            dalpha = omega * (h - s * (X @ dwb[:d] + dwb[d]))
            dt = (r1 - t * dalpha) / alpha
            dnu = r_xi - dalpha
            dxi = (r2 - xi * dnu) / nu
            return dwb, dalpha, dt, dnu, dxi

        def step(dirs, frac=1.0):
            _, dalpha, dt, dnu, dxi = dirs
            return min(1.0, frac * min(_max_step(alpha, dalpha), _max_step(t, dt), _max_step(nu, dnu),
                                       _max_step(xi, dxi)))

        aff = direction(-alpha * t, -nu * xi)
        a = step(aff)
        _, da, dt, dn, dx = aff
        mu = comp / (2 * n)
        mu_aff = float((alpha + a * da) @ (t + a * dt) + (nu + a * dn) @ (xi + a * dx)) / (2 * n)
        sigma = (mu_aff / mu) ** 3
        cor = direction(sigma * mu - alpha * t - da * dt, sigma * mu - nu * xi - dn * dx)
        a = step(cor, 0.99)
        dwb, dalpha, dt, dnu, dxi = cor
        w = w + a * dwb[:d]
        b = b + a * float(dwb[d])
        alpha = alpha + a * dalpha
        t = t + a * dt
        nu = nu + a * dnu
        xi = xi + a * dxi
    gap, w, b, it = best
    if gap >= tol:
        warnings.warn(f"InteriorPointLinearSVC: certified relative duality gap {gap:.1e} after {it} iterations "
                      f"(tol {tol:g})", ConvergenceWarning, stacklevel=3)
    return w, b, it, gap


class LinearKernelSVC(ClassifierMixin, BaseEstimator):
    """libsvm's linear-kernel SVM, solved by the solver :func:`use_interior_point` picks from the training matrix's
    shape: :class:`InteriorPointLinearSVC` when n > d, else ``sklearn.svm.SVC(kernel="linear")``.

    Parameters
    ----------
    C : float, default 1.0
        As ``SVC``'s ``C``.
    random_state, max_iter
        Passed to ``SVC`` when libsvm fits (``max_iter=-1``: no limit); the interior-point method takes neither
        (it is deterministic and stops at its own ``tol``).

    Attributes
    ----------
    solver_ : str
        ``"interior-point"`` or ``"libsvm"``: which fitted.
    estimator_ : the fitted estimator; ``classes_`` as scikit-learn's.
    """

    def __init__(self, C: float = 1.0, random_state=None, max_iter: int = -1):
        self.C = C
        self.random_state = random_state
        self.max_iter = max_iter

    def fit(self, X, y):
        n, d = np.shape(X)
        if use_interior_point(n, d):
            self.solver_ = "interior-point"
            self.estimator_ = InteriorPointLinearSVC(C=self.C).fit(X, y)
        else:
            self.solver_ = "libsvm"
            self.estimator_ = SVC(kernel="linear", C=self.C, random_state=self.random_state,
                                  max_iter=self.max_iter).fit(X, y)
        self.classes_ = self.estimator_.classes_
        self.n_features_in_ = d
        return self

    def decision_function(self, X):
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.decision_function(X), np.float64)

    def predict(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)
