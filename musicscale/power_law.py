"""Power laws in one variable, ``L = a x^-alpha + c``: in N (the original project's law at one D) or in
training compute C on the compute frontier, and where two such curves cross.

Losses are nats per character, N the non-embedding parameter count, C training FLOPs. The fit follows
Hoffmann et al. 2022 (approach 3): the law is written in log space as a log-sum-exp and the Huber loss of
``log L - log L_hat`` is minimised (:mod:`musicscale.fitting`). ``log N`` is centred on its mean, so the
amplitude is the curve's value at the geometric-mean size rather than at N = 1: this removes the strong
amplitude-exponent correlation and makes L-BFGS-B converge in a few dozen steps. Parameters are reported on the
usual scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq

from . import fitting, identification
from .workdir import json_float, json_safe

ALPHA_GRID = (0.05, 0.1, 0.2, 0.4, 0.8, 1.5)  # starting exponents of the grid search
FLOOR_FRACTIONS = (0.05, 0.3, 0.6, 0.9)  # initial c as a fraction of min(L)


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
        return {"alpha": identification.Bound(0.0, fitting.ALPHA_MAX, identification.ABS_TOL),
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
        """Plain-JSON summary (NaN becomes null), with the bootstrap draws: :meth:`from_dict` restores the fit."""
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
            "L_min": float(self.L_min),
            "c_max": self.c_max,
            "boot_params": self.boot_params.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PowerLawFit:
        """The fit that :meth:`to_dict` wrote (read back from ``experiment_results.json``), bit for bit."""
        values = {name: json_float(d[name]) for name in ("a", "alpha", "c")}
        cis = {f"{name}_ci": tuple(json_float(v) for v in d[f"{name}_ci"]) for name in values}
        return cls(**values, **cis, r2=json_float(d["r2"]), residuals=list(d["residuals"]), n_points=d["n_points"],
                   n_boot=d["n_boot"], converged=d["converged"],
                   boot_params=np.array(d["boot_params"], dtype=float).reshape(-1, 3), n_failed=d["n_failed"],
                   n_degenerate=d["n_degenerate"], L_min=d["L_min"], c_max=d["c_max"])


def _pl_objective(p: np.ndarray, xc: np.ndarray, logL: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Huber objective of the centred power law; p = (log a', alpha, log c), a' = a * exp(-alpha * mean x)."""
    la, alpha, lc = p
    u = la - alpha * xc
    m = np.logaddexp(u, lc)
    w = np.exp(u - m)  # d m / d u; 1 - w = d m / d lc
    f, psi = fitting.huber(logL - m, delta)
    g = -np.array([np.sum(psi * w), -np.sum(psi * w * xc), np.sum(psi * (1.0 - w))])
    return f, g


def _pl_start(alpha: float, c: float, xc: np.ndarray, L: np.ndarray) -> np.ndarray:
    """A start whose amplitude makes a * N^-alpha match L - c on average in log space."""
    la = float(np.mean(np.log(np.maximum(L - c, 1e-12 * L)) + alpha * xc))
    return np.array([la, alpha, math.log(c)])


def _pl_bounds(L: np.ndarray, c_max: float | None) -> fitting.Bounds:
    lc_lo = math.log(L.min()) - fitting.LOG_FLOOR_SPAN
    lc_hi = None if c_max is None else math.log(c_max)
    if lc_hi is not None:
        lc_lo = min(lc_lo, lc_hi - 1.0)
    return [(None, None), (0.0, fitting.ALPHA_MAX), (lc_lo, lc_hi)]


def _pl_grid(xc: np.ndarray, L: np.ndarray, c_max: float | None) -> list[np.ndarray]:
    starts = []
    for frac in FLOOR_FRACTIONS:
        c = frac * L.min()
        if c_max is not None:
            c = min(c, 0.999 * c_max)
        for alpha in ALPHA_GRID:
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
    N = fitting.as_positive_1d("N", N)
    L = fitting.as_positive_1d("L", L)
    fitting.check_same_length(N=N, L=L)
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
            _pl_start(min(alpha * s, fitting.ALPHA_MAX), c_best, xc[idx], L[idx]) for s in (0.5, 2.0)
        ]
        p, _, ok = fitting.refit(_pl_objective, starts, _pl_bounds(L[idx], c_max), (xc[idx], logL[idx], delta))
        return unpack(p) if ok else None

    if warm is None:
        starts = _pl_grid(xc, L, c_max)
    else:
        a0, alpha0, c0 = warm
        p0 = np.array([math.log(a0) - alpha0 * x_mean, alpha0, math.log(max(c0, 1e-300))])
        p0 = np.clip(p0, [b[0] if b[0] is not None else -np.inf for b in bounds],
                     [b[1] if b[1] is not None else np.inf for b in bounds])
        starts = [p0] + [_pl_start(min(alpha0 * f, fitting.ALPHA_MAX), max(c0, 1e-12), xc, L) for f in (0.5, 2.0)]
    with fitting.single_threaded_blas():
        search = fitting.best_of if warm is None else fitting.refit
        p_best, _, converged = search(_pl_objective, starts, bounds, (xc, logL, delta))
        a, alpha, c = unpack(p_best)
        boot, n_failed, n_degenerate = fitting.bootstrap([N], n_boot, seed, refit, n_params=3)

    n = len(N)
    pred = a * N ** (-alpha) + c
    return PowerLawFit(
        a=a,
        alpha=alpha,
        c=c,
        a_ci=fitting.percentile_ci(boot[:, 0]),
        alpha_ci=fitting.percentile_ci(boot[:, 1]),
        c_ci=fitting.percentile_ci(boot[:, 2]),
        r2=fitting.r2(L, pred),
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


def compute_frontier(C: Any, L: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lower envelope of (compute, loss) points, sorted by compute.

    A point is kept if every point with less or equal compute has strictly higher loss, so the
    frontier's loss strictly decreases (ties in C keep the lowest loss; a later point merely equal to
    the best so far is dropped).
    """
    C = fitting.as_positive_1d("C", C)
    L = np.asarray(L, dtype=float)
    fitting.check_same_length(C=C, L=L)
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
    fit.a_ci, fit.alpha_ci, fit.c_ci = (fitting.percentile_ci(fit.boot_params[:, i]) for i in range(3))
    fit.n_boot = len(draws)
    return fit


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
