"""Scaling-law fits: power laws in N or C, the joint N-D law, and the checks made on them.

All losses are nats per character; N is the non-embedding parameter count, D training characters,
C training FLOPs. Fits follow Hoffmann et al. 2022 (approach 3): the model is written in log space
as a log-sum-exp, the Huber loss of ``log L - log L_hat`` is minimised with L-BFGS-B from a grid of
starting points and the best optimum is kept. Following Besiroglu et al. 2024, optimiser tolerances
are tight (so fits actually converge) and uncertainty comes from a bootstrap: over points, or, for the
joint law, over whole runs (``groups``). The joint law's bootstrap refits run as one vectorised damped
Newton method over all resamples (L-BFGS-B takes the few it does not settle), which makes a thousand
refits take about a second.

Internally ``log N`` is centred on its mean, so the amplitude parameter is the curve's value at the
geometric-mean size rather than at N = 1; this removes the strong amplitude-exponent correlation
and makes L-BFGS-B converge in a few dozen steps. Parameters are reported on the usual scale.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize
from threadpoolctl import threadpool_limits

from . import identification
from .workdir import json_safe

ALPHA_MAX = 5.0
_ALPHA_GRID = (0.05, 0.1, 0.2, 0.4, 0.8, 1.5)
_FLOOR_FRACTIONS = (0.05, 0.3, 0.6, 0.9)  # initial c (or E) as a fraction of min(L)
_JOINT_EXP_GRID = (0.1, 0.3, 0.6, 1.2)
_JOINT_FLOOR_FRACTIONS = (0.2, 0.6, 0.9)
_JOINT_SPLITS = (0.2, 0.5, 0.8)
_JOINT_POLISHED = 4  # grid starts (after a vectorised Newton pass) that L-BFGS-B polishes
_LOG_FLOOR_SPAN = 30.0  # log c may go this far below log min(L): c -> 0 stays a bounded problem
_OPTIONS = {"maxiter": 5000, "maxfun": 20000, "ftol": 1e-15, "gtol": 1e-10}
_CONVERGED_PGTOL = 1e-6  # projected-gradient size below which an optimum counts as converged
_SETTLED_RTOL = 1e-10  # a restart that lowers the objective by less than this (relative) finds nothing new


Bounds = list[tuple[float | None, float | None]]

# --------------------------------------------------------------------------- shared helpers


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run with one BLAS thread, restoring the previous setting afterwards.

    scipy's L-BFGS-B calls BLAS on tiny arrays. With OpenBLAS's default thread pool and the CPUs busy
    (training or notebooks running alongside), each call waits on the pool and a fit becomes 20-100x
    slower.
    """
    with threadpool_limits(1, user_api="blas"):
        yield


def _huber(r: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Huber loss divided by delta (so large residuals cost ~|r|), and its derivative in r."""
    a = np.abs(r)
    h = np.where(a <= delta, 0.5 * r * r / delta, a - 0.5 * delta)
    return float(h.sum()), np.clip(r / delta, -1.0, 1.0)


def _projected_grad_norm(p: np.ndarray, g: np.ndarray, bounds: Bounds) -> float:
    """Largest gradient component not blocked by an active bound (L-BFGS-B's own stopping measure)."""
    g = g.copy()
    for i, (lo, hi) in enumerate(bounds):
        if lo is not None and p[i] <= lo + 1e-12 and g[i] > 0:
            g[i] = 0.0
        if hi is not None and p[i] >= hi - 1e-12 and g[i] < 0:
            g[i] = 0.0
    return float(np.max(np.abs(g)))


def _best_of(
    fun: Callable, starts: list[np.ndarray], bounds: Bounds, args: tuple
) -> tuple[np.ndarray, float, bool]:
    """Run L-BFGS-B from every start and keep the lowest objective; report whether it converged."""
    best_p, best_f = None, math.inf
    for p0 in starts:
        res = minimize(fun, p0, args=args, jac=True, method="L-BFGS-B", bounds=bounds, options=_OPTIONS)
        if np.all(np.isfinite(res.x)) and res.fun < best_f:
            best_p, best_f = res.x, float(res.fun)
    if best_p is None:
        return np.full(len(bounds), np.nan), math.inf, False
    best_p, best_f, ok = _settle(fun, best_p, best_f, bounds, args)
    return best_p, best_f, ok


def _refit(fun: Callable, starts: list[np.ndarray], bounds: Bounds, args: tuple) -> tuple[np.ndarray, float, bool]:
    """Run L-BFGS-B from each start in turn and return the first optimum that settles (a bootstrap refit or a
    warm start, whose first start is already near the answer: the others are only a fallback)."""
    p, f, ok = np.full(len(bounds), np.nan), math.inf, False
    for p0 in starts:
        p, f, ok = _best_of(fun, [p0], bounds, args)
        if ok:
            break
    return p, f, ok


def _settle(fun: Callable, p: np.ndarray, f: float, bounds: Bounds, args: tuple) -> tuple[np.ndarray, float, bool]:
    """Whether ``p`` is a minimum, judged in a way that does not depend on the objective's scale.

    A small projected gradient settles it. Otherwise (L-BFGS-B often ends with "abnormal termination in
    line search", and with a small Huber delta the objective is nearly L1, so its gradient need not vanish
    at the optimum) L-BFGS-B is restarted from ``p`` with a fresh memory: if it cannot lower the objective
    by more than a relative 1e-10, ``p`` is a minimum; if it can, the better point is tested again."""
    for _ in range(3):
        _, g = fun(p, *args)
        if _projected_grad_norm(p, g, bounds) < _CONVERGED_PGTOL:
            return p, f, True
        res = minimize(fun, p, args=args, jac=True, method="L-BFGS-B", bounds=bounds, options=_OPTIONS)
        if not (np.all(np.isfinite(res.x)) and res.fun < f - _SETTLED_RTOL * max(1.0, abs(f))):
            return p, f, True
        p, f = res.x, float(res.fun)
    return p, f, False


def _bootstrap(
    keys: list[np.ndarray], n_boot: int, seed: int, refit: Callable[[np.ndarray], tuple | None], n_params: int
) -> tuple[np.ndarray, int, int]:
    """Parameter draws from refits on point resamples (with replacement), shape (n_ok, n_params), with the
    number of refits that failed to converge and of resamples skipped as degenerate.

    Resamples with fewer than 3 distinct values in any of ``keys`` (N, or N and D) are skipped (at most
    3 * n_boot are tried); refits that did not converge are counted, not hidden."""
    rng = np.random.default_rng(seed)
    n = len(keys[0])
    draws: list[tuple] = []
    failed = degenerate = 0
    for _ in range(3 * n_boot):
        if len(draws) + failed == n_boot:
            break
        idx = rng.integers(0, n, n)
        if any(len(np.unique(k[idx])) < 3 for k in keys):
            degenerate += 1
            continue
        params = refit(idx)
        if params is None:
            failed += 1
        else:
            draws.append(params)
    return np.array(draws, dtype=float).reshape(-1, n_params), failed, degenerate


def _as_positive_1d(name: str, v: Any) -> np.ndarray:
    arr = np.asarray(v, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be positive; got min({name}) = {arr.min():g}")
    return arr


def _check_same_length(**arrays: np.ndarray) -> None:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")


def _percentile_ci(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    if draws.size == 0:
        return (math.nan, math.nan)
    q = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(draws, [q, 100.0 - q])
    return (float(lo), float(hi))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot if ss_tot > 0 else math.nan


# --------------------------------------------------------------------------- power law L = a N^-alpha + c


@dataclass
class PowerLawFit:
    """A fitted ``L = a * N**-alpha + c`` with 95% bootstrap percentile intervals."""

    a: float
    alpha: float
    c: float
    a_ci: tuple[float, float]
    alpha_ci: tuple[float, float]
    c_ci: tuple[float, float]
    r2: float
    residuals: list[float]
    n_points: int
    n_boot: int
    converged: bool
    boot_params: np.ndarray = field(default_factory=lambda: np.empty((0, 3)), repr=False)
    n_failed: int = 0  # bootstrap refits that did not converge (left out of the intervals, and reported)
    n_degenerate: int = 0  # resamples skipped for having fewer than 3 distinct N
    L_min: float = 0.0  # the smallest loss fitted: a floor c far below it is at its bound 0
    c_max: float | None = None  # the upper bound the floor was fitted under, if any

    def bounds(self) -> dict[str, identification.Bound]:
        """The search bounds of the parameters that have any (the amplitude has none)."""
        return {"alpha": identification.Bound(0.0, ALPHA_MAX, identification.ABS_TOL),
                "c": identification.Bound(0.0, self.c_max, identification.REL_TOL * self.L_min)}

    def not_identified(self) -> dict[str, dict]:
        """The parameters at a bound, in the point fit or in the bootstrap draws (:mod:`.identification`)."""
        out = {}
        for i, (name, bound) in zip((1, 2), self.bounds().items()):
            info = identification.not_identified(getattr(self, name), self.boot_params[:, i], bound)
            if info:
                out[name] = info
        return out

    def predict(self, N: Any) -> np.ndarray:
        """Predicted loss at N (array or scalar)."""
        N = np.asarray(N, dtype=float)
        return self.a * N ** (-self.alpha) + self.c

    def band(self, N_grid: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap curves at N_grid (NaN if there are no draws)."""
        N_grid = np.asarray(N_grid, dtype=float)
        if len(self.boot_params) == 0:
            nan = np.full(N_grid.shape, np.nan)
            return nan, nan.copy()
        a, alpha, c = (self.boot_params[:, i, None] for i in range(3))
        curves = a * N_grid.reshape(1, -1) ** (-alpha) + c
        q = 100.0 * (1.0 - level) / 2.0
        lo, hi = np.percentile(curves, [q, 100.0 - q], axis=0)
        return lo.reshape(N_grid.shape), hi.reshape(N_grid.shape)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (NaN becomes null; bootstrap draws are left out)."""
        return {
            "a": json_safe(self.a),
            "alpha": json_safe(self.alpha),
            "c": json_safe(self.c),
            "a_ci": json_safe(self.a_ci),
            "alpha_ci": json_safe(self.alpha_ci),
            "c_ci": json_safe(self.c_ci),
            "r2": json_safe(self.r2),
            "residuals": [float(r) for r in self.residuals],
            "n_points": int(self.n_points),
            "n_boot": int(self.n_boot),
            "n_failed": int(self.n_failed),
            "n_degenerate": int(self.n_degenerate),
            "converged": bool(self.converged),
            "not_identified": self.not_identified(),
            "no_fit": identification.no_fit(self.r2),
        }


def _pl_objective(p: np.ndarray, xc: np.ndarray, logL: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Huber objective of the centred power law; p = (log a', alpha, log c), a' = a * exp(-alpha * mean x)."""
    la, alpha, lc = p
    u = la - alpha * xc
    m = np.logaddexp(u, lc)
    w = np.exp(u - m)  # d m / d u; 1 - w = d m / d lc
    f, psi = _huber(logL - m, delta)
    g = -np.array([np.sum(psi * w), -np.sum(psi * w * xc), np.sum(psi * (1.0 - w))])
    return f, g


def _pl_start(alpha: float, c: float, xc: np.ndarray, L: np.ndarray) -> np.ndarray:
    """A start whose amplitude makes a * N^-alpha match L - c on average in log space."""
    la = float(np.mean(np.log(np.maximum(L - c, 1e-12 * L)) + alpha * xc))
    return np.array([la, alpha, math.log(c)])


def _pl_bounds(L: np.ndarray, c_max: float | None) -> Bounds:
    lc_lo = math.log(L.min()) - _LOG_FLOOR_SPAN
    lc_hi = None if c_max is None else math.log(c_max)
    if lc_hi is not None:
        lc_lo = min(lc_lo, lc_hi - 1.0)
    return [(None, None), (0.0, ALPHA_MAX), (lc_lo, lc_hi)]


def _pl_grid(xc: np.ndarray, L: np.ndarray, c_max: float | None) -> list[np.ndarray]:
    starts = []
    for frac in _FLOOR_FRACTIONS:
        c = frac * L.min()
        if c_max is not None:
            c = min(c, 0.999 * c_max)
        for alpha in _ALPHA_GRID:
            starts.append(_pl_start(alpha, c, xc, L))
    return starts


def fit_power_law(
    N: Any,
    L: Any,
    *,
    delta: float = 1e-3,
    n_boot: int = 1000,
    seed: int = 0,
    c_max: float | None = None,
    warm: tuple[float, float, float] | None = None,
) -> PowerLawFit:
    """Fit ``L = a * N**-alpha + c`` (Huber on log L, L-BFGS-B from a grid) with bootstrap CIs.

    ``warm`` = ``(a, alpha, c)`` of a fit to similar data replaces the grid by that solution and two
    nearby starts (a bootstrap refit, for one).

    Points with the same N (several seeds) are separate points. ``alpha`` is kept in [0, 5]; ``c``
    is positive and at most ``c_max`` if given. The bootstrap resamples points with replacement,
    skips resamples with fewer than 3 distinct N, refits each from the full-data optimum plus two
    nearby starts, and keeps draws whose fit converged; ``n_boot`` in the result counts those.
    """
    N = _as_positive_1d("N", N)
    L = _as_positive_1d("L", L)
    _check_same_length(N=N, L=L)
    if len(np.unique(N)) < 3:
        raise ValueError(f"need at least 3 distinct N for a 3-parameter power law, got {len(np.unique(N))}")
    if c_max is not None and not c_max > 0:
        raise ValueError(f"c_max must be positive, got {c_max}")
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")

    x = np.log(N)
    x_mean = float(x.mean())
    xc = x - x_mean
    logL = np.log(L)
    bounds = _pl_bounds(L, c_max)

    def unpack(p: np.ndarray) -> tuple[float, float, float]:
        return math.exp(p[0] + p[1] * x_mean), float(p[1]), math.exp(p[2])

    def refit(idx: np.ndarray) -> tuple[float, float, float] | None:
        c_best = math.exp(p_best[2])
        starts = [p_best] + [
            _pl_start(min(alpha * s, ALPHA_MAX), c_best, xc[idx], L[idx]) for s in (0.5, 2.0)
        ]
        p, _, ok = _refit(_pl_objective, starts, _pl_bounds(L[idx], c_max), (xc[idx], logL[idx], delta))
        return unpack(p) if ok else None

    if warm is None:
        starts = _pl_grid(xc, L, c_max)
    else:
        a0, alpha0, c0 = warm
        p0 = np.array([math.log(a0) - alpha0 * x_mean, alpha0, math.log(max(c0, 1e-300))])
        p0 = np.clip(p0, [b[0] if b[0] is not None else -np.inf for b in bounds],
                     [b[1] if b[1] is not None else np.inf for b in bounds])
        starts = [p0] + [_pl_start(min(alpha0 * f, ALPHA_MAX), max(c0, 1e-12), xc, L) for f in (0.5, 2.0)]
    with _single_threaded_blas():
        search = _best_of if warm is None else _refit
        p_best, _, converged = search(_pl_objective, starts, bounds, (xc, logL, delta))
        a, alpha, c = unpack(p_best)
        boot, n_failed, n_degenerate = _bootstrap([N], n_boot, seed, refit, n_params=3)

    n = len(N)
    pred = a * N ** (-alpha) + c
    return PowerLawFit(
        a=a,
        alpha=alpha,
        c=c,
        a_ci=_percentile_ci(boot[:, 0]),
        alpha_ci=_percentile_ci(boot[:, 1]),
        c_ci=_percentile_ci(boot[:, 2]),
        r2=_r2(L, pred),
        residuals=[float(r) for r in L - pred],
        n_points=n,
        n_boot=len(boot),
        converged=converged,
        boot_params=boot,
        n_failed=n_failed,
        n_degenerate=n_degenerate,
        L_min=float(L.min()),
        c_max=c_max,
    )


# --------------------------------------------------------------------------- compute frontier


def compute_frontier(C: Any, L: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lower envelope of (compute, loss) points, sorted by compute.

    A point is kept if every point with less or equal compute has strictly higher loss, so the
    frontier's loss strictly decreases (ties in C keep the lowest loss; a later point merely equal to
    the best so far is dropped).
    """
    C = _as_positive_1d("C", C)
    L = np.asarray(L, dtype=float)
    _check_same_length(C=C, L=L)
    if L.ndim != 1 or not np.all(np.isfinite(L)):
        raise ValueError("L must be one-dimensional and finite")
    if len(C) == 0:
        raise ValueError("compute_frontier needs at least one point")
    order = np.lexsort((L, C))  # by C, then by L within equal C
    keep, best = [], math.inf
    for i in order:
        if L[i] < best:
            keep.append(i)
            best = L[i]
    keep_idx = np.array(keep, dtype=int)
    return C[keep_idx], L[keep_idx]


def fit_compute_law(C: Any, L: Any, *, min_compute: float | None = None, **kw: Any) -> PowerLawFit:
    """Fit ``L = a * C**-alpha + c`` to the compute frontier (points with C >= min_compute, if given).

    Other keywords go to :func:`fit_power_law`.
    """
    C = np.asarray(C, dtype=float)
    L = np.asarray(L, dtype=float)
    if min_compute is not None:
        sel = C >= min_compute
        C, L = C[sel], L[sel]
    C_f, L_f = compute_frontier(C, L)
    return fit_power_law(C_f, L_f, **kw)


def fit_compute_law_over_runs(curves: Sequence[tuple[Any, Any]], *, n_boot: int = 100, seed: int = 0,
                              **kw: Any) -> PowerLawFit:
    """:func:`fit_compute_law` on the frontier of several runs' (C, L) curves, with intervals from a
    bootstrap over whole runs: the evaluations of one run are not independent points, so resampling
    them (as :func:`fit_compute_law` does) would give intervals that are far too narrow."""
    curves = [(np.asarray(c, dtype=float), np.asarray(l, dtype=float)) for c, l in curves]
    if not curves:
        raise ValueError("no runs to fit L(C) to")

    def pooled(items: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([c for c, _ in items]), np.concatenate([l for _, l in items])

    fit = fit_compute_law(*pooled(curves), n_boot=0, **kw)
    rng = np.random.default_rng(seed)
    draws = []
    fit.n_failed = fit.n_degenerate = 0
    for _ in range(n_boot):
        pick = rng.integers(len(curves), size=len(curves))
        try:
            f = fit_compute_law(*pooled([curves[i] for i in pick]), n_boot=0, warm=(fit.a, fit.alpha, fit.c), **kw)
        except ValueError:  # a resample whose frontier has fewer than 3 points
            fit.n_degenerate += 1
            continue
        if f.converged:
            draws.append((f.a, f.alpha, f.c))
        else:
            fit.n_failed += 1
    fit.boot_params = np.array(draws).reshape(-1, 3)
    fit.a_ci, fit.alpha_ci, fit.c_ci = (_percentile_ci(fit.boot_params[:, i]) for i in range(3))
    fit.n_boot = len(draws)
    return fit


# ------------------------------------------------------------------------ joint law E + A/N^alpha + B/D^beta


@dataclass
class JointFit:
    """A fitted ``L = E + A / N**alpha + B / D**beta`` with 95% bootstrap percentile intervals.

    ``E_fixed`` marks a fit whose floor was given, not fitted (``L - E = A N^-alpha + B D^-beta``)."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    E_ci: tuple[float, float]
    A_ci: tuple[float, float]
    alpha_ci: tuple[float, float]
    B_ci: tuple[float, float]
    beta_ci: tuple[float, float]
    r2: float
    residuals: list[float]
    n_points: int
    n_boot: int
    converged: bool
    # Bootstrap draws, columns (E, A, alpha, B, beta).
    boot_params: np.ndarray = field(default_factory=lambda: np.empty((0, 5)), repr=False)
    n_groups: int = 0  # what the bootstrap resampled: runs (each with all its points), or single points
    n_failed: int = 0  # bootstrap refits that did not converge (left out of the intervals, and reported)
    n_degenerate: int = 0  # resamples skipped for having fewer than 3 distinct N or D
    E_fixed: bool = False
    boot_rows: np.ndarray = field(default_factory=lambda: np.empty(0, int), repr=False)  # resample of each draw
    L_min: float = 0.0  # the smallest loss fitted: a floor E far below it is at its bound 0

    def bounds(self) -> dict[str, identification.Bound]:
        """The search bounds of the fitted parameters that have any (amplitudes have none; a fixed E is not fitted)."""
        exponent = identification.Bound(0.0, ALPHA_MAX, identification.ABS_TOL)
        out = {} if self.E_fixed else {"E": identification.Bound(0.0, None, identification.REL_TOL * self.L_min)}
        return {**out, "alpha": exponent, "beta": exponent}

    def not_identified(self) -> dict[str, dict]:
        """The parameters at a bound, in the point fit or in the bootstrap draws (:mod:`.identification`)."""
        column = {"E": 0, "alpha": 2, "beta": 4}
        out = {}
        for name, bound in self.bounds().items():
            info = identification.not_identified(getattr(self, name), self.boot_params[:, column[name]], bound)
            if info:
                out[name] = info
        return out

    @property
    def params(self) -> tuple[float, float, float, float, float]:
        return self.E, self.A, self.alpha, self.B, self.beta

    def predict(self, N: Any, D: Any) -> np.ndarray:
        """Predicted loss at (N, D); arrays broadcast; ``D = inf`` gives the data-unlimited loss E + A N^-alpha."""
        return joint_law(self.params, N, D)

    def predict_draws(self, N: Any, D: Any) -> np.ndarray:
        """The prediction of every bootstrap draw, shape ``(n_boot,) + broadcast(N, D).shape``."""
        N, D = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
        draws = self.boot_params.reshape((-1, 5) + (1,) * N.ndim)
        return joint_law(tuple(draws[:, i] for i in range(5)), N[None], D[None])

    def band(self, N: Any, D: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap predictions (NaN without draws)."""
        shape = np.broadcast(np.asarray(N), np.asarray(D)).shape
        if len(self.boot_params) == 0:
            return np.full(shape, np.nan), np.full(shape, np.nan)
        q = 100.0 * (1.0 - level) / 2.0
        lo, hi = np.percentile(self.predict_draws(N, D), [q, 100.0 - q], axis=0)
        return lo, hi

    def compute_optimal(
        self, C: Any, flops_per_token_per_param: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Loss-minimising (N, D) at compute C = k * N * D (Hoffmann et al. 2022, eq. 4)."""
        C = np.asarray(C, dtype=float)
        s = self.alpha + self.beta
        if not (self.alpha > 0 and self.beta > 0):
            raise ValueError("compute_optimal needs alpha > 0 and beta > 0")
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / s)
        budget = C / flops_per_token_per_param
        N_opt = G * budget ** (self.beta / s)
        return N_opt, budget / N_opt

    def optimal_exponents(self, level: float = 0.95) -> dict[str, Any]:
        """Exponents of N_opt ~ C^a and D_opt ~ C^b (a = beta/(alpha+beta), b = 1 - a) with bootstrap CIs."""
        a = self.beta / (self.alpha + self.beta)
        bp = self.boot_params
        with np.errstate(invalid="ignore", divide="ignore"):
            a_boot = bp[:, 4] / (bp[:, 2] + bp[:, 4]) if len(bp) else np.empty(0)
        lo, hi = _percentile_ci(a_boot[np.isfinite(a_boot)], level)
        out = {"a": a, "a_ci": (lo, hi), "b": 1.0 - a, "b_ci": (1.0 - hi, 1.0 - lo)}
        unknown = {k: v for k, v in self.not_identified().items() if k in ("alpha", "beta")}
        if unknown:  # a = beta/(alpha+beta) is pinned by its exponents only: one at a bound, and a is not a measurement
            name, info = next(iter(unknown.items()))
            out["not_identified"] = {k: {**info, "via": name} for k in ("a", "b", "a_own_flops")}
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (NaN becomes null; bootstrap draws are left out)."""
        d: dict[str, Any] = {}
        for name in ("E", "A", "alpha", "B", "beta"):
            d[name] = json_safe(getattr(self, name))
            d[f"{name}_ci"] = json_safe(getattr(self, f"{name}_ci"))
        d.update(
            r2=json_safe(self.r2),
            residuals=[float(r) for r in self.residuals],
            n_points=int(self.n_points),
            n_groups=int(self.n_groups),
            n_boot=int(self.n_boot),
            n_failed=int(self.n_failed),
            n_degenerate=int(self.n_degenerate),
            converged=bool(self.converged),
            E_fixed=bool(self.E_fixed),
            not_identified=self.not_identified(),
            no_fit=identification.no_fit(self.r2),
        )
        return d


def joint_law(params: Sequence[Any], N: Any, D: Any) -> np.ndarray:
    """``E + A N^-alpha + B D^-beta`` for ``params = (E, A, alpha, B, beta)`` (arrays broadcast)."""
    E, A, alpha, B, beta = params
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    with np.errstate(divide="ignore", over="ignore"):
        return E + A * N ** (-alpha) + B * D ** (-beta)


def _joint_objective(
    q: np.ndarray, xc: np.ndarray, yc: np.ndarray, logL: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Huber objective of the centred joint law; q = (log A', log B', log E, alpha, beta)."""
    la, lb, le, alpha, beta = q
    u = la - alpha * xc
    v = lb - beta * yc
    m = np.logaddexp(np.logaddexp(u, v), le)
    wu, wv = np.exp(u - m), np.exp(v - m)
    we = np.exp(le - m)
    f, psi = _huber(logL - m, delta)
    g = -np.array(
        [np.sum(psi * wu), np.sum(psi * wv), np.sum(psi * we), -np.sum(psi * wu * xc), -np.sum(psi * wv * yc)]
    )
    return f, g


def _joint_newton_terms(Q: np.ndarray, xc: np.ndarray, yc: np.ndarray, logL: np.ndarray, W: np.ndarray,
                        delta: float, hessian: bool = True):
    """Objective, gradient and exact Hessian of :func:`_joint_objective` for many parameter vectors at once:
    ``Q`` is (B, 5), ``W`` (B, n) the multiplicity of each point in each bootstrap resample."""
    la, lb, le, alpha, beta = (Q[:, k:k + 1] for k in range(5))
    u, v = la - alpha * xc, lb - beta * yc
    m = np.logaddexp(np.logaddexp(u, v), le)
    wu, wv, we = np.exp(u - m), np.exp(v - m), np.exp(le - m)
    r = logL - m
    inside = np.abs(r) <= delta
    F = np.sum(W * np.where(inside, 0.5 * r * r / delta, np.abs(r) - 0.5 * delta), axis=1)
    if not hessian:
        return F
    psi = W * np.clip(r / delta, -1.0, 1.0)
    dm = np.stack([wu, wv, we, -wu * xc, -wv * yc], -1)  # d m / d q, (B, n, 5)
    G = -np.einsum("bn,bni->bi", psi, dm)
    # d2h/dq2 = h'' dm dm^T - psi d2m, with d2m = sum over the terms s of w_s (ds/dq)(ds/dq)^T - dm dm^T;
    # ds/dq of u = la - alpha x has entries 1 (la) and -x (alpha), of v likewise, of le a single 1
    H = np.matmul((dm * (W * inside / delta + psi)[..., None]).transpose(0, 2, 1), dm)
    pu, pv = psi * wu, psi * wv
    for (i, j), value in (((0, 0), pu.sum(1)), ((0, 3), -(pu * xc).sum(1)), ((3, 3), (pu * xc * xc).sum(1)),
                          ((1, 1), pv.sum(1)), ((1, 4), -(pv * yc).sum(1)), ((4, 4), (pv * yc * yc).sum(1)),
                          ((2, 2), (psi * we).sum(1))):
        H[:, i, j] -= value
        if i != j:
            H[:, j, i] -= value
    return F, G, H


def _joint_newton(q0: np.ndarray, xc: np.ndarray, yc: np.ndarray, logL: np.ndarray, W: np.ndarray, delta: float,
                  bounds: Bounds, max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Minimise many problems at once: row b of ``W`` weights the points (a bootstrap resample's
    multiplicities, or all ones), row b of ``q0`` (or ``q0`` itself for every row) is its start. A damped
    Newton method (Levenberg-Marquardt on the exact Hessian, bounds by projection), vectorised over rows.

    Returns the (B, 5) optima and which of them settled: a full Newton step that no longer moves the
    parameters or the objective. The rest are left to L-BFGS-B (:func:`fit_joint_law`)."""
    n_draws = len(W)
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
    Q = np.clip(np.broadcast_to(q0, (n_draws, 5)), lo, hi).copy()
    lam = np.full(n_draws, 1e-3)
    settled, stuck = np.zeros(n_draws, bool), np.zeros(n_draws, bool)
    F, G, H = _joint_newton_terms(Q, xc, yc, logL, W, delta)
    eye = np.eye(5)
    for _ in range(max_iter):
        act = np.flatnonzero(~(settled | stuck))  # only the rows still moving are computed
        if not len(act):
            break
        q, g, h, f, lm = Q[act], G[act], H[act], F[act], lam[act]
        blocked = ((q <= lo + 1e-12) & (g > 0)) | ((q >= hi - 1e-12) & (g < 0))
        free = ~blocked
        hf = h * free[:, :, None] * free[:, None, :] + eye * blocked[:, None, :]
        ev = np.linalg.eigvalsh(hf)
        shift = np.maximum(0.0, -ev[:, 0]) + lm * np.maximum(1.0, np.abs(ev).max(axis=1))
        step = -np.linalg.solve(hf + shift[:, None, None] * eye, (g * free)[..., None])[..., 0] * free
        qn = np.clip(q + step, lo, hi)
        fn = _joint_newton_terms(qn, xc, yc, logL, W[act], delta, hessian=False)
        better = fn < f
        done = better & (lm <= 1e-6) & ((np.abs(step).max(axis=1) < 1e-9) | (f - fn <= 1e-13 * np.maximum(1.0, f)))
        settled[act[done]] = True
        lam[act] = np.where(better, np.maximum(lm / 4, 1e-12), lm * 8)
        stuck[act[lam[act] > 1e10]] = True
        moved = act[better]
        if len(moved):
            Q[moved] = qn[better]
            F[moved], G[moved], H[moved] = _joint_newton_terms(Q[moved], xc, yc, logL, W[moved], delta)
    return Q, settled


def _joint_bounds(L: np.ndarray, log_E: float | None = None) -> Bounds:
    if log_E is not None:  # a given floor: log E pinned
        return [(None, None), (None, None), (log_E, log_E), (0.0, ALPHA_MAX), (0.0, ALPHA_MAX)]
    le_lo = math.log(L.min()) - _LOG_FLOOR_SPAN
    return [(None, None), (None, None), (le_lo, None), (0.0, ALPHA_MAX), (0.0, ALPHA_MAX)]


def _joint_grid(L: np.ndarray, E: float | None = None) -> list[np.ndarray]:
    L_gm = math.exp(float(np.mean(np.log(L))))
    starts = []
    for frac in _JOINT_FLOOR_FRACTIONS if E is None else (None,):
        floor = frac * L.min() if E is None else E
        excess = max(L_gm - floor, 1e-3 * L_gm)
        for s in _JOINT_SPLITS:
            for alpha in _JOINT_EXP_GRID:
                for beta in _JOINT_EXP_GRID:
                    la, lb = math.log(s * excess), math.log((1 - s) * excess)
                    starts.append(np.array([la, lb, math.log(floor), alpha, beta]))
    return starts


def group_resamples(groups: Any, n_boot: int, seed: int, keys: Sequence[np.ndarray],
                    strata: Any = None) -> tuple[np.ndarray, int]:
    """Multiplicities (n_boot, n_points) of bootstrap resamples of whole groups (runs), and how many resamples
    were skipped for having fewer than 3 distinct values of a key (at most 3 * n_boot are drawn).

    With ``strata`` (a label per point, e.g. its N), groups are resampled within each stratum: every size of a
    designed grid stays in every resample, and only its seeds are drawn again, as a rerun of the study with
    new seeds would do. A stratum with one group then contributes no resampling variation."""
    labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
    if strata is None:
        cells = [np.arange(len(labels))]
    else:
        stratum_of = dict(zip(inverse, np.asarray(strata)))
        by_stratum: dict = {}
        for g in range(len(labels)):
            by_stratum.setdefault(stratum_of[g], []).append(g)
        cells = [np.array(v) for v in by_stratum.values()]
    rng = np.random.default_rng(seed)
    rows, degenerate = [], 0
    for _ in range(3 * n_boot):
        if len(rows) == n_boot:
            break
        counts = np.zeros(len(labels), dtype=int)
        for cell in cells:
            np.add.at(counts, cell[rng.integers(0, len(cell), len(cell))], 1)
        w = counts[inverse]
        if any(len(np.unique(k[w > 0])) < 3 for k in keys):
            degenerate += 1
            continue
        rows.append(w)
    return np.array(rows, dtype=float).reshape(-1, len(groups)), degenerate


def fit_joint_law(
    N: Any,
    D: Any,
    L: Any,
    *,
    groups: Any = None,
    strata: Any = None,
    delta: float = 1e-3,
    n_boot: int = 200,
    seed: int = 0,
    E: float | None = None,
    start: JointFit | None = None,
    resamples: np.ndarray | None = None,
) -> JointFit:
    """Fit ``L = E + A/N**alpha + B/D**beta`` (Chinchilla approach 3) with bootstrap CIs.

    Needs at least 3 distinct N, 3 distinct D and 6 points. Exponents are kept in [0, 5].

    - ``groups`` labels each point with its run: the bootstrap resamples whole runs, so that the points of
      one run (its cooldown branches share a trunk) move together. Without it, points are resampled.
      ``strata`` (e.g. N) resamples the runs within each stratum (:func:`group_resamples`).
    - ``E`` fixes the floor instead of fitting it (``L - E = A N^-alpha + B D^-beta``, e.g. ``E = H*``).
    - ``start``, a fit to related data (the same study without its largest sizes, say), replaces the grid
      of starting points by that solution and a few around it.
    - ``resamples`` (n_boot, n_points) gives the bootstrap's multiplicities instead of drawing them, so that
      a caller can apply the same resamples to something else (:mod:`musicscale.holdout`); ``boot_rows``
      then says which rows the draws come from.

    Every resample is refitted from the full-data optimum by a damped Newton method vectorised over
    resamples; the few it does not settle get L-BFGS-B from three starts; refits that still do not converge
    are counted in ``n_failed`` and left out of the intervals.
    """
    N = _as_positive_1d("N", N)
    D = _as_positive_1d("D", D)
    L = _as_positive_1d("L", L)
    _check_same_length(N=N, D=D, L=L)
    n = len(L)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups must label every point: got {len(groups)} labels for {n} points")
    if len(np.unique(N)) < 3 or len(np.unique(D)) < 3 or n < 6:
        raise ValueError(
            f"joint fit needs >= 3 distinct N, >= 3 distinct D and >= 6 points; "
            f"got {len(np.unique(N))} N, {len(np.unique(D))} D, {n} points"
        )
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")
    if E is not None and not E > 0:
        raise ValueError(f"a fixed floor E must be positive, got {E}")

    x, y = np.log(N), np.log(D)
    x_mean, y_mean = float(x.mean()), float(y.mean())
    xc, yc = x - x_mean, y - y_mean
    logL = np.log(L)
    bounds = _joint_bounds(L, None if E is None else math.log(E))

    def unpack(q: np.ndarray) -> tuple[float, float, float, float, float]:
        la, lb, le, alpha, beta = q
        A, B = math.exp(la + alpha * x_mean), math.exp(lb + beta * y_mean)
        return math.exp(le), A, float(alpha), B, float(beta)

    def pack(params: Sequence[float]) -> np.ndarray:
        E0, A0, alpha0, B0, beta0 = params
        return np.array([math.log(A0) - alpha0 * x_mean, math.log(B0) - beta0 * y_mean,
                         math.log(E if E is not None else max(E0, 1e-300)), alpha0, beta0])

    def around(q: np.ndarray) -> list[np.ndarray]:
        """``q`` and the same amplitudes and floor with the exponents halved or doubled."""
        starts = [q]
        for s in (0.5, 2.0):
            q2 = q.copy()
            q2[3:] = np.minimum(q2[3:] * s, ALPHA_MAX)
            starts.append(q2)
        return starts

    with _single_threaded_blas():
        starts = _joint_grid(L, E) if start is None else around(pack(start.params)) + _joint_grid(L, E)[::12]
        # Newton from every start at once; L-BFGS-B then polishes the best few and keeps the lowest
        Q0, _ = _joint_newton(np.array(starts), xc, yc, logL, np.ones((len(starts), n)), delta, bounds, max_iter=100)
        F0 = _joint_newton_terms(Q0, xc, yc, logL, np.ones((len(starts), n)), delta, hessian=False)
        best = [Q0[i] for i in np.argsort(np.where(np.isfinite(F0), F0, np.inf))[:_JOINT_POLISHED]]
        q_best, _, converged = _best_of(_joint_objective, best, bounds, (xc, yc, logL, delta))
        params = unpack(q_best)
        if resamples is not None:
            W, n_degenerate = np.asarray(resamples, dtype=float).reshape(-1, n), 0
        else:
            W, n_degenerate = (group_resamples(groups, n_boot, seed, [N, D], strata) if n_boot
                               else (np.empty((0, n)), 0))
        Q, settled = _joint_newton(q_best, xc, yc, logL, W, delta, bounds) if len(W) else (W[:, :5], W[:, 0] > 0)
        draws, rows, n_failed = [], [], 0
        for row, (w, q, ok) in enumerate(zip(W, Q, settled)):
            if not ok:  # polish from where Newton stopped; failing that, start afresh around the optimum
                idx = np.repeat(np.arange(n), w.astype(int))
                args = (xc[idx], yc[idx], logL[idx], delta)
                q, _, ok = _refit(_joint_objective, [q] + around(q_best), bounds, args)
            if ok:
                draws.append(unpack(q))
                rows.append(row)
            else:
                n_failed += 1
        boot = np.array(draws, dtype=float).reshape(-1, 5)

    pred = joint_law(params, N, D)
    cis = [_percentile_ci(boot[:, i]) for i in range(5)]
    return JointFit(*params, *cis, r2=_r2(L, pred), residuals=[float(r) for r in L - pred], n_points=n,
                    n_boot=len(boot), converged=converged, boot_params=boot, n_groups=len(np.unique(groups)),
                    n_failed=n_failed, n_degenerate=n_degenerate, E_fixed=E is not None, boot_rows=np.array(rows, int),
                    L_min=float(L.min()))


# --------------------------------------------------------------------------- comparisons and checks


def crossover(fit1: PowerLawFit, fit2: PowerLawFit, N_range: tuple[float, float]) -> float | None:
    """Smallest N in N_range where the two fitted curves cross, or None if they do not cross there."""
    lo, hi = float(N_range[0]), float(N_range[1])
    if not (0 < lo < hi):
        raise ValueError(f"N_range must satisfy 0 < lo < hi, got {N_range}")

    def diff(logn: float) -> float:
        n = math.exp(logn)
        return float(fit1.predict(n) - fit2.predict(n))

    grid = np.linspace(math.log(lo), math.log(hi), 2001)
    d = fit1.predict(np.exp(grid)) - fit2.predict(np.exp(grid))
    for i in range(len(grid) - 1):
        if d[i] == 0:
            return float(math.exp(grid[i]))
        if d[i] * d[i + 1] < 0:
            return float(math.exp(brentq(diff, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-14)))
    if d[-1] == 0:
        return hi
    return None


def flag_below_floor(losses: Any, floor: Any, tol: float = 1e-3) -> list[int]:
    """Indices of losses below ``floor - tol`` (floor: scalar or per-loss), with a warning if any.

    A test loss below the exact entropy floor H* is impossible for a model that has not seen the test
    data, so any hit points to leakage (or a wrong floor) and is reported loudly.
    """
    losses = np.asarray(losses, dtype=float)
    floor = np.broadcast_to(np.asarray(floor, dtype=float), losses.shape)
    idx = [int(i) for i in np.flatnonzero(losses < floor - tol)]
    if idx:
        worst = int(idx[np.argmin((losses - floor)[idx])])
        warnings.warn(
            f"{len(idx)} loss(es) below the entropy floor by more than {tol:g} nats/char "
            f"(worst: index {worst}, loss {losses[worst]:.6f} < floor {floor[worst]:.6f}); check for leakage",
            RuntimeWarning,
            stacklevel=2,
        )
    return idx
