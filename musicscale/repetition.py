"""What a repeated token is worth: the effective data of Muennighoff et al. (2023, "Scaling Data-Constrained
Language Models"), measured where the fresh-data law is known.

A run that reads ``D`` tokens of a prefix of ``U`` unique tokens has repeated its data ``R = D / U - 1`` times.
Muennighoff et al. model what those repetitions are worth as fresh data::

    D' = U + U R* (1 - exp(-R / R*))            (D' = D while D <= U)

so the k-th epoch's tokens are worth ``exp(-(k - 1) / R*)`` of fresh ones and, however long a run repeats, its
data are worth at most ``U (1 + R*)``. ``R*`` is fitted on the repetition experiment of the train stage (runs
of the study's sizes on ``D / factor`` tokens, :func:`musicscale.design.repetition_specs`): each point's loss is
predicted as the measured fresh-data loss of its size at the same D (the main runs, which read no token twice)
plus what the fresh-data joint law says is lost between D and D'::

    L(N, D, U) = L_fresh(N, D) + [law(N, D') - law(N, D)]

which leaves out whatever the law gets wrong at that (N, D). The interval comes from a bootstrap that redraws
the repetition runs within each (size, factor) and takes the joint law from the matching draw of its own
bootstrap over runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from .fitting import percentile_ci
from .joint_law import joint_law
from .workdir import json_safe

FRESH_EPOCHS = 4.0  # up to about this many epochs repeated data were nearly as good as fresh (Muennighoff et al.)
R_STAR_BOUNDS = (0.05, 1000.0)  # the search range of R*: from "a repeat is worth nothing" to "as good as new"
AT_BOUND = 0.02  # a fit within 2% (in log) of a bound is at that bound: R* is not identified there


def repetitions(D: Any, U: Any) -> np.ndarray:
    """R = D / U - 1, the times a run of D tokens has repeated its U unique ones (0 while D <= U)."""
    return np.maximum(np.asarray(D, dtype=float) / np.asarray(U, dtype=float) - 1.0, 0.0)


def effective_data(D: Any, U: Any, R_star: float) -> np.ndarray:
    """Muennighoff et al.'s D' = U + U R* (1 - exp(-R / R*)): what D tokens read from U unique ones are worth
    as fresh tokens (D' = D while D <= U)."""
    D, U = np.asarray(D, dtype=float), np.asarray(U, dtype=float)
    R = repetitions(D, U)
    return np.where(R > 0, U + U * R_star * -np.expm1(-R / R_star), D)


def worth_of_epoch(k: float, R_star: float) -> float:
    """What a token read in the k-th epoch is worth against a fresh one: exp(-(k - 1) / R*)."""
    return math.exp(-(k - 1) / R_star)


@dataclass(frozen=True)
class RepeatedPoint:
    """One end of a cooldown branch of a repetition run, beside the fresh-data loss of its size at its D."""

    run: str
    size: str
    factor: int  # D_max / U of its run
    N: float
    D: float
    U: float
    L: float  # its test loss
    L_fresh: float  # the mean test loss of the main runs of its size at the same D


@dataclass
class RepetitionFit:
    """R* with a 95% bootstrap interval; ``identified`` is False where the point fit or an end of the
    interval lies at a bound of the search (the data then bound R* on one side only, or not at all)."""

    R_star: float
    R_star_ci: tuple[float, float]
    identified: bool
    n_points: int
    n_runs: int
    n_boot: int
    rmse: float  # of the fitted model over the points, nats/char
    rmse_no_cost: float  # of "a repeated token is as good as a fresh one" (D' = D), for comparison
    boot: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def bound_reached(self) -> str | None:
        """Which bound of the search the fit (or else its interval) reaches: "lower" (a repeat is worth next to
        nothing), "upper" (no cost detected: R* is bounded from below only), or None (identified)."""
        if self.identified:
            return None
        value = self.R_star if at_bound(self.R_star) else self.R_star_ci[1]
        return "upper" if math.isfinite(value) and at_bound(value) and value > 1.0 else "lower"

    def to_dict(self) -> dict:
        return {"R_star": self.R_star, "R_star_ci": [json_safe(v) for v in self.R_star_ci],
                "identified": self.identified, "bound_reached": self.bound_reached, "bounds": list(R_STAR_BOUNDS),
                "n_points": self.n_points,
                "n_runs": self.n_runs, "n_boot": self.n_boot, "rmse": self.rmse, "rmse_no_cost": self.rmse_no_cost}


def _predict(points: Sequence[RepeatedPoint], law: Sequence[float], R_star: float) -> np.ndarray:
    N = np.array([p.N for p in points])
    D = np.array([p.D for p in points])
    U = np.array([p.U for p in points])
    fresh = np.array([p.L_fresh for p in points])
    return fresh + joint_law(law, N, effective_data(D, U, R_star)) - joint_law(law, N, D)


def _fit(points: Sequence[RepeatedPoint], law: Sequence[float]) -> float:
    L = np.array([p.L for p in points])

    def sse(log_r: float) -> float:
        return float(np.sum((L - _predict(points, law, math.exp(log_r))) ** 2))

    lo, hi = (math.log(b) for b in R_STAR_BOUNDS)
    grid = np.linspace(lo, hi, 41)  # the error can have more than one dip: start from the best grid point
    best = grid[int(np.argmin([sse(g) for g in grid]))]
    step = grid[1] - grid[0]
    res = minimize_scalar(sse, bounds=(max(lo, best - step), min(hi, best + step)), method="bounded",
                          options={"xatol": 1e-6})
    return math.exp(float(res.x))


def at_bound(R_star: float) -> bool:
    return any(abs(math.log(R_star / b)) < AT_BOUND for b in R_STAR_BOUNDS)


def fit_repetition(points: Sequence[RepeatedPoint], law: Sequence[float], boot_laws: np.ndarray | None = None,
                   *, n_boot: int = 200, seed: int = 0) -> RepetitionFit:
    """Fit R* to the points that repeated their data (R > 0) given the fresh-data joint law's parameters
    ``law`` = (E, A, alpha, B, beta); ``boot_laws`` are that law's bootstrap draws (row b is used with resample
    b, so the law's own uncertainty enters the interval). ValueError if no point repeated its data."""
    pts = [p for p in points if p.D > p.U]
    if not pts:
        raise ValueError("no point of the repetition experiment read its data more than once")
    R_star = _fit(pts, law)
    L = np.array([p.L for p in pts])
    rmse = float(np.sqrt(np.mean((L - _predict(pts, law, R_star)) ** 2)))
    rmse_no_cost = float(np.sqrt(np.mean((L - np.array([p.L_fresh for p in pts])) ** 2)))
    runs = sorted({p.run for p in pts})
    strata: dict[tuple[str, int], list[str]] = {}
    for p in pts:
        key = (p.size, p.factor)
        if p.run not in strata.setdefault(key, []):
            strata[key].append(p.run)
    by_run = {r: [p for p in pts if p.run == r] for r in runs}
    rng = np.random.default_rng(seed)
    boot = []
    for b in range(n_boot):
        drawn = [p for members in strata.values() for r in rng.choice(members, size=len(members)) for p in by_run[r]]
        law_b = law if boot_laws is None or len(boot_laws) == 0 else boot_laws[b % len(boot_laws)]
        boot.append(_fit(drawn, law_b))
    boot_arr = np.array(boot)
    ci = percentile_ci(boot_arr) if n_boot else (math.nan, math.nan)
    identified = not at_bound(R_star) and not any(at_bound(v) for v in ci if math.isfinite(v))
    return RepetitionFit(R_star, ci, identified, len(pts), len(runs), n_boot, rmse, rmse_no_cost, boot_arr)
