"""The fitting machinery the scaling laws share: Huber loss in log space minimised by L-BFGS-B from several
starts, a scale-free test of convergence, and bootstrap resampling (of points, or of whole runs).

Following Besiroglu et al. 2024, optimiser tolerances are tight (so fits actually converge) and uncertainty
comes from a bootstrap; a refit that does not converge is counted, never hidden. The laws themselves live in
:mod:`musicscale.power_law`, :mod:`musicscale.joint_law` and :mod:`musicscale.kaplan_law`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

ALPHA_MAX = 5.0  # every fitted exponent lies in [0, ALPHA_MAX]
LOG_FLOOR_SPAN = 30.0  # log c may go this far below log min(L): c -> 0 stays a bounded problem
OPTIONS = {"maxiter": 5000, "maxfun": 20000, "ftol": 1e-15, "gtol": 1e-10}
CONVERGED_PGTOL = 1e-6  # projected-gradient size below which an optimum counts as converged
SETTLED_RTOL = 1e-10  # a restart that lowers the objective by less than this (relative) finds nothing new

Bounds = list[tuple[float | None, float | None]]


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run with one BLAS thread, restoring the previous setting afterwards.

    scipy's L-BFGS-B calls BLAS on tiny arrays. With OpenBLAS's default thread pool and the CPUs busy
    (training or notebooks running alongside), each call waits on the pool and a fit becomes 20-100x
    slower.
    """
    with threadpool_limits(1, user_api="blas"):
        yield


def huber(r: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Huber loss divided by delta (so large residuals cost ~|r|), and its derivative in r."""
    a = np.abs(r)
    h = np.where(a <= delta, 0.5 * r * r / delta, a - 0.5 * delta)
    return float(h.sum()), np.clip(r / delta, -1.0, 1.0)


def projected_grad_norm(p: np.ndarray, g: np.ndarray, bounds: Bounds) -> float:
    """Largest gradient component not blocked by an active bound (L-BFGS-B's own stopping measure)."""
    g = g.copy()
    for i, (lo, hi) in enumerate(bounds):
        if lo is not None and p[i] <= lo + 1e-12 and g[i] > 0:
            g[i] = 0.0
        if hi is not None and p[i] >= hi - 1e-12 and g[i] < 0:
            g[i] = 0.0
    return float(np.max(np.abs(g)))


def best_of(
    fun: Callable, starts: list[np.ndarray], bounds: Bounds, args: tuple
) -> tuple[np.ndarray, float, bool]:
    """Run L-BFGS-B from every start and keep the lowest objective; report whether it converged."""
    best_p, best_f = None, math.inf
    for p0 in starts:
        res = minimize(fun, p0, args=args, jac=True, method="L-BFGS-B", bounds=bounds, options=OPTIONS)
        if np.all(np.isfinite(res.x)) and res.fun < best_f:
            best_p, best_f = res.x, float(res.fun)
    if best_p is None:
        return np.full(len(bounds), np.nan), math.inf, False
    best_p, best_f, ok = settle(fun, best_p, best_f, bounds, args)
    return best_p, best_f, ok


def refit(fun: Callable, starts: list[np.ndarray], bounds: Bounds, args: tuple) -> tuple[np.ndarray, float, bool]:
    """Run L-BFGS-B from each start in turn and return the first optimum that settles (a bootstrap refit or a
    warm start, whose first start is already near the answer: the others are only a fallback)."""
    p, f, ok = np.full(len(bounds), np.nan), math.inf, False
    for p0 in starts:
        p, f, ok = best_of(fun, [p0], bounds, args)
        if ok:
            break
    return p, f, ok


def settle(fun: Callable, p: np.ndarray, f: float, bounds: Bounds, args: tuple) -> tuple[np.ndarray, float, bool]:
    """Whether ``p`` is a minimum, judged in a way that does not depend on the objective's scale.

    A small projected gradient settles it. Otherwise (L-BFGS-B often ends with "abnormal termination in
    line search", and with a small Huber delta the objective is nearly L1, so its gradient need not vanish
    at the optimum) L-BFGS-B is restarted from ``p`` with a fresh memory: if it cannot lower the objective
    by more than a relative 1e-10, ``p`` is a minimum; if it can, the better point is tested again."""
    for _ in range(3):
        _, g = fun(p, *args)
        if projected_grad_norm(p, g, bounds) < CONVERGED_PGTOL:
            return p, f, True
        res = minimize(fun, p, args=args, jac=True, method="L-BFGS-B", bounds=bounds, options=OPTIONS)
        if not (np.all(np.isfinite(res.x)) and res.fun < f - SETTLED_RTOL * max(1.0, abs(f))):
            return p, f, True
        p, f = res.x, float(res.fun)
    return p, f, False


def bootstrap(
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


def as_positive_1d(name: str, v: Any) -> np.ndarray:
    arr = np.asarray(v, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be positive; got min({name}) = {arr.min():g}")
    return arr


def check_same_length(**arrays: np.ndarray) -> None:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")


def percentile_ci(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    if draws.size == 0:
        return (math.nan, math.nan)
    q = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(draws, [q, 100.0 - q])
    return (float(lo), float(hi))


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot if ss_tot > 0 else math.nan


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
