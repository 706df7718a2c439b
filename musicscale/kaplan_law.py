"""Kaplan et al. 2020 (eq. 1.5), ``L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D``: the other form of
the joint law that the held-out checks compare with the additive one (:mod:`musicscale.holdout`).

It is compared because it differs from ``E + A N^-alpha + B D^-beta`` in exactly the two ways that matter for
extrapolation: it has no floor (the loss goes to 0 as N and D grow), and N and D are coupled (the data term's
effect depends on N: a sum inside a power, not a sum of powers). Whichever form predicts points it was not
fitted on better is the better description of this task over the range studied.

The fit follows :func:`musicscale.joint_law.fit_joint_law`: the Huber loss of ``log L - log L_hat`` minimised with
L-BFGS-B from a small grid of starts, intervals from a bootstrap over whole runs whose resamples are refitted
from the full-data optimum. The scales are fitted as logarithms relative to the geometric-mean N and D, so that
they stay positive and are of order one; the exponents lie in [0, ``ALPHA_MAX``] (``alpha_D`` just above 0: it
divides ``alpha_N``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import identification
from .fitting import (
    ALPHA_MAX,
    as_positive_1d,
    best_of,
    check_same_length,
    group_resamples,
    huber,
    percentile_ci,
    r2,
    refit,
    single_threaded_blas,
)
from .workdir import json_safe

NAMES = ("N_c", "alpha_N", "D_c", "alpha_D")
_ALPHA_D_MIN = 0.1 * identification.ABS_TOL  # alpha_D divides alpha_N; this close to 0 it counts as at 0
# log(N_c / N_mean) and log(D_c / D_mean) stay within this: a scale that runs off (the form imitating a floor
# with a vanishing exponent) stays a bounded problem, and reads as not identified at the bound
_LOG_SCALE_SPAN = 100.0
_EXP_GRID = (0.05, 0.2, 0.6)
_SPLITS = (0.2, 0.5, 0.8)  # the N term's share of the bracket at the geometric-mean N and D, in the starts


def kaplan_law(params: Sequence[Any], N: Any, D: Any) -> np.ndarray:
    """``[(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D`` for ``params = (N_c, alpha_N, D_c, alpha_D)`` (arrays
    broadcast; ``D = inf`` gives the data-unlimited loss ``(N_c/N)^alpha_N``)."""
    N_c, alpha_N, D_c, alpha_D = params
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    with np.errstate(divide="ignore", over="ignore"):
        return ((N_c / N) ** (alpha_N / alpha_D) + D_c / D) ** alpha_D


@dataclass
class KaplanFit:
    """A fitted :func:`kaplan_law` with its bootstrap draws (columns as :data:`NAMES`)."""

    params: tuple[float, float, float, float]
    r2: float
    residuals: list[float]
    n_points: int
    converged: bool
    boot_params: np.ndarray = field(default_factory=lambda: np.empty((0, 4)), repr=False)
    boot_rows: np.ndarray = field(default_factory=lambda: np.empty(0, int), repr=False)  # resample of each draw
    n_groups: int = 0  # what the bootstrap resampled: runs (each with all its points), or single points
    n_failed: int = 0  # bootstrap refits that did not converge (left out of the intervals, and reported)
    n_degenerate: int = 0  # resamples skipped for having fewer than 3 distinct N or D
    scale_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # N_c's and D_c's search

    @property
    def n_boot(self) -> int:
        return len(self.boot_params)

    def ci(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """The bootstrap percentile interval of one parameter (NaN without draws)."""
        return percentile_ci(self.boot_params[:, NAMES.index(name)], level)

    def predict(self, N: Any, D: Any) -> np.ndarray:
        """Predicted loss at (N, D); arrays broadcast."""
        return kaplan_law(self.params, N, D)

    def bounds(self) -> dict[str, identification.Bound]:
        """The search bounds of the parameters. The scales are searched in log space, so theirs are bounds on
        ``log N_c`` and ``log D_c`` (a tolerance in log is a relative one)."""
        exponent = identification.Bound(0.0, ALPHA_MAX, identification.ABS_TOL)
        scales = {name: identification.Bound(math.log(lo), math.log(hi), identification.REL_TOL)
                  for name, (lo, hi) in self.scale_bounds.items()}
        return {"N_c": scales["N_c"], "alpha_N": exponent, "D_c": scales["D_c"], "alpha_D": exponent}

    def not_identified(self) -> dict[str, dict]:
        """The parameters at a bound, in the point fit or in the bootstrap draws (:mod:`.identification`); a
        scale's bound is reported on its own scale, not its log. With alpha_N at 0 the N term is 1 whatever N_c
        is, so N_c is then not identified either (``via`` alpha_N)."""
        out = {}
        for name, bound in self.bounds().items():
            i = NAMES.index(name)
            point, draws = self.params[i], self.boot_params[:, i]
            if name in self.scale_bounds:
                with np.errstate(divide="ignore"):
                    point, draws = math.log(point), np.log(draws)
            info = identification.not_identified(point, draws, bound)
            if info:
                if name in self.scale_bounds:
                    info["bound"] = self.scale_bounds[name][0 if info["end"] == "lower" else 1]
                out[name] = info
        if "N_c" not in out and (out.get("alpha_N") or {}).get("end") == "lower":
            out["N_c"] = {**out["alpha_N"], "via": "alpha_N"}
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (NaN and inf become null; bootstrap draws are left out)."""
        d: dict[str, Any] = {}
        for name, value in zip(NAMES, self.params):
            d[name] = json_safe(value)
            d[f"{name}_ci"] = json_safe(self.ci(name))
        d.update(r2=json_safe(self.r2), residuals=[float(r) for r in self.residuals], n_points=int(self.n_points),
                 n_groups=int(self.n_groups), n_boot=int(self.n_boot), n_failed=int(self.n_failed),
                 n_degenerate=int(self.n_degenerate), converged=bool(self.converged),
                 not_identified=self.not_identified(), no_fit=identification.no_fit(self.r2))
        return d


def _objective(q: np.ndarray, xc: np.ndarray, yc: np.ndarray, logL: np.ndarray,
               delta: float) -> tuple[float, np.ndarray]:
    """Huber objective in log space; q = (log N_c - mean log N, alpha_N, log D_c - mean log D, alpha_D), and
    ``xc``, ``yc`` the centred log N and log D."""
    c0, alpha_N, d0, alpha_D = q
    s = c0 - xc
    u = (alpha_N / alpha_D) * s  # log of the N term
    v = d0 - yc  # log of the D term
    m = np.logaddexp(u, v)
    wu, wv = np.exp(u - m), np.exp(v - m)
    f, psi = huber(logL - alpha_D * m, delta)
    # d log L_hat / dq: alpha_D m with m = log(e^u + e^v)
    g = -np.array([np.sum(psi * alpha_N * wu), np.sum(psi * wu * s), np.sum(psi * alpha_D * wv),
                   np.sum(psi * (m - wu * u))])
    return f, g


def _grid(logL: np.ndarray, bounds: list[tuple[float, float]]) -> list[np.ndarray]:
    """Starts whose bracket matches the geometric-mean loss at the geometric-mean N and D, split between its
    two terms in a few ways, at a few pairs of exponents."""
    log_gm = float(np.mean(logL))
    lo, hi = np.array(bounds).T
    starts = []
    for alpha_D in _EXP_GRID:
        for alpha_N in _EXP_GRID:
            for share in _SPLITS:
                c0 = (alpha_D * math.log(share) + log_gm) / alpha_N  # (alpha_N/alpha_D) c0 = log(share * bracket)
                d0 = math.log(1.0 - share) + log_gm / alpha_D
                starts.append(np.clip([c0, alpha_N, d0, alpha_D], lo, hi))
    return starts


def fit_kaplan_law(
    N: Any,
    D: Any,
    L: Any,
    *,
    groups: Any = None,
    strata: Any = None,
    delta: float = 1e-3,
    n_boot: int = 200,
    seed: int = 0,
    resamples: np.ndarray | None = None,
) -> KaplanFit:
    """Fit :func:`kaplan_law` (Huber on log L, L-BFGS-B from a grid) with bootstrap draws.

    The arguments mean what they mean for :func:`musicscale.joint_law.fit_joint_law`: ``groups`` (a run per point)
    makes the bootstrap resample whole runs, ``strata`` within each stratum; ``resamples`` (n_boot, n_points)
    gives the multiplicities instead of drawing them, so that two forms can be refitted on the same resamples
    (``boot_rows`` says which rows the draws come from). Every resample is refitted with L-BFGS-B from the
    full-data optimum (and, failing that, with its exponents halved or doubled); a refit that does not converge
    is counted in ``n_failed`` and left out.
    """
    N = as_positive_1d("N", N)
    D = as_positive_1d("D", D)
    L = as_positive_1d("L", L)
    check_same_length(N=N, D=D, L=L)
    n = len(L)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups must label every point: got {len(groups)} labels for {n} points")
    if len(np.unique(N)) < 3 or len(np.unique(D)) < 3 or n < 5:
        raise ValueError(f"Kaplan's form needs >= 3 distinct N, >= 3 distinct D and >= 5 points; "
                         f"got {len(np.unique(N))} N, {len(np.unique(D))} D, {n} points")
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")

    x, y = np.log(N), np.log(D)
    x_mean, y_mean = float(x.mean()), float(y.mean())
    xc, yc = x - x_mean, y - y_mean
    logL = np.log(L)
    bounds = [(-_LOG_SCALE_SPAN, _LOG_SCALE_SPAN), (0.0, ALPHA_MAX), (-_LOG_SCALE_SPAN, _LOG_SCALE_SPAN),
              (_ALPHA_D_MIN, ALPHA_MAX)]

    def unpack(q: np.ndarray) -> tuple[float, float, float, float]:
        return math.exp(q[0] + x_mean), float(q[1]), math.exp(q[2] + y_mean), float(q[3])

    def around(q: np.ndarray) -> list[np.ndarray]:
        """``q`` and the same scales with both exponents halved or doubled."""
        starts = [q]
        for s in (0.5, 2.0):
            q2 = q.copy()
            q2[[1, 3]] = np.clip(q2[[1, 3]] * s, _ALPHA_D_MIN, ALPHA_MAX)
            starts.append(q2)
        return starts

    with single_threaded_blas():
        q_best, _, converged = best_of(_objective, _grid(logL, bounds), bounds, (xc, yc, logL, delta))
        if resamples is not None:
            W, n_degenerate = np.asarray(resamples, dtype=float).reshape(-1, n), 0
        else:
            W, n_degenerate = (group_resamples(groups, n_boot, seed, [N, D], strata) if n_boot
                               else (np.empty((0, n)), 0))
        draws, rows, n_failed = [], [], 0
        for row, w in enumerate(W):
            idx = np.repeat(np.arange(n), w.astype(int))
            q, _, ok = refit(_objective, around(q_best), bounds, (xc[idx], yc[idx], logL[idx], delta))
            if ok:
                draws.append(unpack(q))
                rows.append(row)
            else:
                n_failed += 1

    params = unpack(q_best)
    pred = kaplan_law(params, N, D)
    scale_bounds = {name: (math.exp(mean - _LOG_SCALE_SPAN), math.exp(mean + _LOG_SCALE_SPAN))
                    for name, mean in (("N_c", x_mean), ("D_c", y_mean))}
    return KaplanFit(params=params, r2=r2(L, pred), residuals=[float(r) for r in L - pred], n_points=n,
                     converged=converged, boot_params=np.array(draws, dtype=float).reshape(-1, 4),
                     boot_rows=np.array(rows, int), n_groups=len(np.unique(groups)), n_failed=n_failed,
                     n_degenerate=n_degenerate, scale_bounds=scale_bounds)
