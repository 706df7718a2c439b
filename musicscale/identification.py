"""When a fitted number is a measurement: a parameter at a bound of its search, or a fit no better than a
constant, is reported as such, never as a value with an interval.

A fit keeps its parameters inside bounds (exponents in [0, 5], floors positive): a parameter that the data do
not pin down runs onto one. An interval whose end is a bound is then the search's limit, not the data's. The
rule here, applied to every fit the report shows:

- a parameter is **not identified** when the point fit lies at a bound (within a small tolerance), or when more
  than :data:`BOUND_SHARE` of its bootstrap draws do: more than 2.5% and the 95% percentile interval reaches
  the bound;
- a fit whose R² is below :data:`R2_MIN` is **no fit**: it explains too little of the spread of what it fits (an
  R² below 0 is worse than the constant mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BOUND_SHARE = 0.025  # (1 - 0.95) / 2: more draws at a bound than this and the 95% interval reaches it
R2_MIN = 0.5  # a fit that explains less than half of the variance of what it fits is reported as no fit
ABS_TOL = 1e-3  # an exponent within this of a bound of [0, 5] is at it
REL_TOL = 1e-3  # a floor below this fraction of the smallest loss fitted is at its bound 0


@dataclass(frozen=True)
class Bound:
    """The search interval of one fitted parameter, and how close to an end counts as on it."""

    lo: float | None
    hi: float | None
    tol: float  # absolute

    def reached(self, values: Any) -> tuple[np.ndarray, np.ndarray]:
        """Masks of ``values`` at the lower and at the upper bound."""
        v = np.asarray(values, dtype=float)
        lo = np.zeros(v.shape, bool) if self.lo is None else v <= self.lo + self.tol
        hi = np.zeros(v.shape, bool) if self.hi is None else v >= self.hi - self.tol
        return lo, hi


def not_identified(point: float, draws: Any, bound: Bound) -> dict | None:
    """``None`` if the parameter is identified; else which bound it reaches, whether the point fit lies there,
    and the share of the bootstrap draws that do."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    for end, value in (("lower", bound.lo), ("upper", bound.hi)):
        if value is None:
            continue
        point_at = bool(bound.reached([point])[0 if end == "lower" else 1][0])
        share = float(np.mean(bound.reached(draws)[0 if end == "lower" else 1])) if draws.size else 0.0
        if point_at or share > BOUND_SHARE:
            return {"bound": float(value), "end": end, "point_at_bound": point_at, "share": share}
    return None


def describe(info: dict, spec: str = "g") -> str:
    """``not identified (at its bound 0 in the fit and in 41% of the bootstrap draws)``."""
    where = ("in the fit and in " if info["point_at_bound"] else "in ") + f"{info['share']:.0%} of the bootstrap draws"
    if info["point_at_bound"] and info["share"] == 0:
        where = "in the fit"
    via = {"alpha": "α", "beta": "β"}.get(info.get("via"), info.get("via"))
    its = f"{via} is at its" if via else "at its"
    return f"not identified ({its} {info['end']} bound {info['bound']:{spec}} {where})"


def no_fit(r2: float | None) -> str | None:
    """Why a fit with this R² is no fit, or ``None`` if it is one."""
    if r2 is None or not np.isfinite(r2):
        return "no fit (R² undefined)"
    if r2 < R2_MIN:
        return f"no fit (R² = {r2:.3f}, below {R2_MIN:g})"
    return None


def format_ci(entry: dict, key: str, spec: str = ".3f") -> str:
    """``entry[key]`` with its interval ``entry[key + "_ci"]`` as the report prints it: ``0.854 [0.789, 0.863]``,
    or why it is no measurement (the fit's ``no_fit``, or ``not_identified[key]``), or "—" if it is missing."""
    if entry.get("no_fit"):
        return entry["no_fit"]
    info = (entry.get("not_identified") or {}).get(key)
    if info:
        return describe(info)
    value, ci = entry.get(key), entry.get(f"{key}_ci") or [None, None]
    if value is None:
        return "—"
    if ci[0] is None:
        return format(value, spec)
    if collapsed(ci, spec):
        return f"{value:{spec}} ({narrow(ci, spec)})"
    return f"{value:{spec}} [{ci[0]:{spec}}, {ci[1]:{spec}}]"


def collapsed(ci, spec: str | None = None) -> bool:
    """Whether an interval has no width (or none at the precision ``spec`` shows): its resamples barely varied, as
    when the sizes near a point were trained at one seed and the bootstrap redraws only seeds. Printed as
    ``[x, x]`` it would read as certainty."""
    lo, hi = ci
    if lo is None or hi is None:
        return False
    return abs(hi - lo) <= 1e-12 * max(1.0, abs(lo), abs(hi)) or (spec is not None and format(lo, spec) ==
                                                                    format(hi, spec))


def narrow(ci, spec: str) -> str:
    """What a :func:`collapsed` interval is said to be instead of ``[x, x]``."""
    if abs(ci[1] - ci[0]) <= 1e-12 * max(1.0, abs(ci[0]), abs(ci[1])):
        return "no interval: every resample gives the same"
    return f"95% interval only {ci[1] - ci[0]:.1g} wide: its resamples barely vary"


def short(entry: dict, key: str, spec: str = ".3f") -> str:
    """``entry[key]`` without its interval, or "not identified" / "no fit": for a figure's legend or title."""
    if entry.get("no_fit"):
        return "no fit"
    if (entry.get("not_identified") or {}).get(key):
        return "not identified"
    return "—" if entry.get(key) is None else format(entry[key], spec)
