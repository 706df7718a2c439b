"""The exponents of the joint law from differences that cancel its floor (Farseer, Li et al. 2025).

Under ``L(N, D) = E + A N^-alpha + B D^-beta`` two points of one size differ by ``B (D1^-beta - D2^-beta)``, and
two sizes at one D by ``A (N1^-alpha - N2^-alpha)``: E (and the other term) cancel. Fitting those differences
estimates each exponent without fitting E, so an exponent that the joint fit can only trade against its floor is
measured apart from it; set beside the joint fit's, a disagreement says the floor and the exponent are confounded.

- **beta** from consecutive branches of one run (the same model's trunk: their difference is the data term alone);
- **alpha** from consecutive sizes at one D (each the mean over the runs of that size and D).

Each difference ``dL = amp (x1^-e - x2^-e)`` (``x1 < x2``) is fitted by least squares in log space; intervals come
from a bootstrap that redraws the runs of each cell of the design, as the joint fit's does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from . import fitting
from .holdout import Points, seed_means
from .workdir import json_safe

EXPONENT_BOUNDS = (1e-3, 3.0)  # the search range of a difference exponent


@dataclass(frozen=True)
class Pairs:
    """Differences ``dL = L(x1) - L(x2)`` at ``x1 < x2``, each from the points ``i`` and ``j``."""

    x1: np.ndarray
    x2: np.ndarray
    i: np.ndarray
    j: np.ndarray


def branch_pairs(points: Points) -> Pairs:
    """Consecutive branches of every run: the points of one run, ordered by D, taken two by two."""
    rows = []
    for run in np.unique(points.run):
        idx = np.flatnonzero(points.run == run)
        idx = idx[np.argsort(points.D[idx])]
        rows += [(points.D[a], points.D[b], a, b) for a, b in zip(idx[:-1], idx[1:])]
    x1, x2, i, j = (np.array(v) for v in zip(*rows)) if rows else (np.empty(0),) * 4
    return Pairs(x1.astype(float), x2.astype(float), i.astype(int), j.astype(int))


def fit_difference(x1: np.ndarray, x2: np.ndarray, dL: np.ndarray, weights: np.ndarray | None = None
                   ) -> tuple[float, float]:
    """``(amp, e)`` of ``dL = amp (x1^-e - x2^-e)`` by least squares of ``log dL``; pairs whose difference is not
    positive carry no information on a log scale and are left out. (nan, nan) with fewer than 3 pairs left."""
    w = np.ones(len(dL)) if weights is None else np.asarray(weights, dtype=float)
    keep = (dL > 0) & (w > 0) & np.isfinite(dL)
    if keep.sum() < 3:
        return math.nan, math.nan
    x1, x2, y, sw = x1[keep], x2[keep], np.log(dL[keep]), np.sqrt(w[keep])
    lx1, lx2 = np.log(x1), np.log(x2)

    def residuals(q: np.ndarray) -> np.ndarray:
        la, e = q
        # log(x1^-e - x2^-e) = -e log x1 + log(1 - (x1/x2)^e), stable for small and large e alike
        return sw * (y - (la - e * lx1 + np.log(-np.expm1(-e * (lx2 - lx1)))))

    best = None
    for e0 in (0.1, 0.3, 0.7, 1.5):
        la0 = float(np.mean(y + e0 * lx1 - np.log(-np.expm1(-e0 * (lx2 - lx1)))))
        res = least_squares(residuals, [la0, e0], bounds=([-np.inf, EXPONENT_BOUNDS[0]], [np.inf, EXPONENT_BOUNDS[1]]))
        if best is None or res.cost < best.cost:
            best = res
    return float(np.exp(best.x[0])), float(best.x[1])


def _size_differences(points: Points, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consecutive sizes at every D both reached: (N1, N2, L(N1) - L(N2)) of the weighted means."""
    means = seed_means(points, weights)
    rows = []
    for d in sorted({k[1] for k in means}):
        sizes = sorted(n for n, dd in means if dd == d)
        rows += [(a, b, means[(a, d)] - means[(b, d)]) for a, b in zip(sizes[:-1], sizes[1:])]
    if not rows:
        return np.empty(0), np.empty(0), np.empty(0)
    return tuple(np.array(v, dtype=float) for v in zip(*rows))


def difference_exponents(points: Points, *, n_boot: int = 200, seed: int = 0) -> dict:
    """alpha (sizes at one D) and beta (branches of one run) from differences, with 95% bootstrap intervals
    (runs redrawn within each cell of the design), and how many differences each used."""
    pairs = branch_pairs(points)
    d_beta = points.L[pairs.i] - points.L[pairs.j]
    n1, n2, d_alpha = _size_differences(points, np.ones(len(points)))
    B, beta = fit_difference(pairs.x1, pairs.x2, d_beta)
    A, alpha = fit_difference(n1, n2, d_alpha)
    W, _ = fitting.group_resamples(points.run, n_boot, seed, [], strata=points.strata) if n_boot else (
        np.empty((0, len(points))), 0)
    draws = []
    for w in W:
        _, b = fit_difference(pairs.x1, pairs.x2, d_beta, w[pairs.i])  # a pair counts as often as its run
        m1, m2, dd = _size_differences(points, w)
        _, a = fit_difference(m1, m2, dd)
        draws.append((a, b))
    draws = np.array(draws, dtype=float).reshape(-1, 2)
    out = {}
    for k, (name, value, amp, n) in enumerate((("alpha", alpha, A, len(d_alpha)), ("beta", beta, B, len(d_beta)))):
        finite = draws[:, k][np.isfinite(draws[:, k])]
        out[name] = json_safe(value)
        out[f"{name}_ci"] = [json_safe(v) for v in fitting.percentile_ci(finite)]
        out[f"{name}_amplitude"] = json_safe(amp)
        out[f"{name}_n_differences"] = n
        out[f"{name}_n_positive"] = int(np.sum((d_alpha if name == "alpha" else d_beta) > 0))
    out["n_boot"] = int(len(draws))
    return out
