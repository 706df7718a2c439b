"""Held-out checks of the joint law: fitted on one end of the study, does it predict the other end better
than guesses that need no law?

A law with five free parameters fits a few dozen smooth points almost whatever they are, so the evidence
that matters is out of sample. Two checks, each on whole runs:

- **in N**: fit ``L(N, D)`` on the sizes at or below ``N_max / factor`` and predict, at the same ``D``, every
  size at least ``factor`` times larger than the largest fitted one;
- **in D**: fit on each run's branches at or below ``D_max / factor`` of that run and predict its branches at
  least ``factor`` times longer than its longest fitted one.

Each prediction sits beside two baselines: *no further improvement* (the loss of the largest fitted size,
or longest fitted branch, at the same ``D``, or ``N``) and *a straight line in log-log* through the two
largest fitted sizes (or longest fitted branches). Errors are mean absolute errors in nats/char over the
held-out ``(N, D)`` points, each the mean over its seeds; the seed-to-seed standard deviation there says
how small an error can get. The law's *advantage* is the better baseline's error minus the law's. Its
95% interval comes from a bootstrap that redraws the seeds of every size, fitted (refitting the law and
recomputing both baselines on each resample) and held out; the verdict follows that interval.

Each check also compares forms of the law (``"forms"``): Kaplan et al.'s (:mod:`musicscale.kaplan_law`), and,
where the dataset's entropy rate H* is known exactly, the additive law with its floor fixed at H*, each fitted
on the same points and bootstrap resamples and asked for the same held-out points. A form's *advantage over
the additive law* is the additive law's error minus its own; its interval is paired: each draw refits both
forms on the same resample and scores them against the same redraw of the held-out seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import fitting, identification, kaplan_law
from .joint_law import JointFit, fit_joint_law, joint_law
from .workdir import json_safe

AXES = {"N": "D", "D": "N"}  # the axis extrapolated along -> the one held equal
FORMS = {"kaplan": "Kaplan's form", "fixed_floor": "the law with its floor fixed at H*"}  # compared with the additive


@dataclass
class Points:
    """End-of-cooldown points: parameters N, tokens D, loss L, and the run each belongs to."""

    N: np.ndarray
    D: np.ndarray
    L: np.ndarray
    run: np.ndarray

    @classmethod
    def from_records(cls, records: Sequence[dict], loss: str = "test_loss") -> Points:
        """From :func:`musicscale.analysis.cooldown_points` records (keys N, D, run and ``loss``)."""
        return cls(np.array([r["N"] for r in records], dtype=float), np.array([r["D"] for r in records], dtype=float),
                   np.array([r[loss] for r in records], dtype=float), np.array([r["run"] for r in records]))

    @property
    def strata(self) -> np.ndarray:
        """What a bootstrap resamples runs within: the sizes. Every size stays in every resample, and its runs (all
        budgets and seeds) are drawn again: with two seeds per budget, drawing within each budget too gives
        intervals that cover a known law's parameters even less often (``benchmarks/coverage.py``)."""
        return self.N

    def with_values(self, N: np.ndarray | None = None, D: np.ndarray | None = None) -> Points:
        """The same points (runs, losses) with other N or D (total parameters, effective data)."""
        return Points(self.N if N is None else N, self.D if D is None else D, self.L, self.run)

    def __getitem__(self, mask: np.ndarray) -> Points:
        return Points(self.N[mask], self.D[mask], self.L[mask], self.run[mask])

    def __len__(self) -> int:
        return len(self.L)


def design_cells(points: Points) -> np.ndarray:
    """Per point, the cell of the design its run fills: its size and its run's longest branch (the runs of one cell
    differ only in their seed, and reach the same (N, D))."""
    longest = {r: points.D[points.run == r].max() for r in np.unique(points.run)}
    return np.array([f"{n:.0f}:{longest[r]:.0f}" for n, r in zip(points.N, points.run)])


def split(points: Points, axis: str, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the fitted and the held-out points for an extrapolation of at least ``factor`` along ``axis``.

    Raises ValueError, saying what is missing, when fewer than 3 sizes (or branch lengths) can be fitted or
    nothing lies ``factor`` beyond them."""
    if axis not in AXES:
        raise ValueError(f"axis must be 'N' or 'D', got {axis!r}")
    if axis == "N":
        sizes = np.unique(points.N)
        fitted = sizes[sizes <= sizes.max() / factor]
        if len(fitted) < 3:
            raise ValueError(f"needs 3 sizes at or below N_max/{factor:g} = {sizes.max() / factor:,.0f}; "
                             f"the study has {len(fitted)} (sizes: {', '.join(f'{n:,.0f}' for n in sizes)})")
        fit = points.N <= fitted.max()
        held = points.N >= factor * fitted.max()
    else:
        longest = {r: points.D[points.run == r].max() for r in np.unique(points.run)}
        d_max = np.array([longest[r] for r in points.run])
        fit = points.D <= d_max / factor
        last_fitted = {r: points.D[(points.run == r) & fit].max(initial=0.0) for r in longest}
        held = np.array([d >= factor * last_fitted[r] > 0 for d, r in zip(points.D, points.run)])
        if len(np.unique(points.D[fit])) < 3 or len(np.unique(points.N[fit])) < 3:
            lengths, sizes = len(np.unique(points.D[fit])), len(np.unique(points.N[fit]))
            raise ValueError(f"needs 3 branch lengths and 3 sizes at or below D_max/{factor:g} of their runs; "
                             f"the study has {lengths} length{'s' * (lengths != 1)} and {sizes} "
                             f"size{'s' * (sizes != 1)} there (more branches per run would help)")
    if not held.any():
        raise ValueError(f"nothing lies {factor:g}x beyond the fitted {'sizes' if axis == 'N' else 'branches'}")
    return fit, held


def seed_means(points: Points, weights: np.ndarray) -> dict[tuple[float, float], float]:
    """The weighted mean loss at each (N, D) (weights: how often each point's run was drawn)."""
    out: dict[tuple[float, float], list[float]] = {}
    for n, d, loss, w in zip(points.N, points.D, points.L, weights):
        if w > 0:
            acc = out.setdefault((n, d), [0.0, 0.0])
            acc[0] += w * loss
            acc[1] += w
    return {k: s / w for k, (s, w) in out.items()}


def baselines(fitted: Points, weights: np.ndarray, targets: Sequence[tuple[float, float]],
              axis: str) -> tuple[np.ndarray, np.ndarray]:
    """Per target (N, D): the "no further improvement" and the "straight line in log-log" predictions from the
    fitted points (NaN where fewer than 2 fitted points share the target's other coordinate)."""
    means = seed_means(fitted, weights)
    along = 0 if axis == "N" else 1
    flat, line = [], []
    for target in targets:
        refs = sorted((k[along], v) for k, v in means.items() if k[1 - along] == target[1 - along]
                      and k[along] < target[along])
        if len(refs) < 2:
            flat.append(math.nan)
            line.append(math.nan)
            continue
        (z1, l1), (z2, l2) = refs[-2:]
        slope = (math.log(l2) - math.log(l1)) / (math.log(z2) - math.log(z1))
        flat.append(l2)
        line.append(math.exp(math.log(l2) + slope * (math.log(target[along]) - math.log(z2))))
    return np.array(flat), np.array(line)


def check(points: Points, axis: str, factor: float, *, n_boot: int = 200, seed: int = 0,
          delta: float = 1e-3, start: JointFit | None = None, entropy_rate: float | None = None) -> dict:
    """The held-out check along ``axis`` (see the module docstring); a dict for ``experiment_results.json``.

    ``entropy_rate`` (the dataset's exact H*, if it has one) adds the law with its floor fixed there to the
    forms compared."""
    fit_mask, held_mask = split(points, axis, factor)
    fitted, held = points[fit_mask], points[held_mask]
    cells = design_cells(points)  # each run's size and longest branch: redrawing seeds within them keeps every target
    ones = np.ones(len(fitted))
    observed = seed_means(held, np.ones(len(held)))
    all_targets = sorted(observed)
    flat, line = baselines(fitted, ones, all_targets, axis)
    keep = np.isfinite(flat)
    targets = [t for t, k in zip(all_targets, keep) if k]
    if not targets:
        raise ValueError(f"no held-out point shares its {AXES[axis]} with two fitted "
                         f"{'sizes' if axis == 'N' else 'branches'}, so the baselines are undefined")
    flat, line = flat[keep], line[keep]
    obs = np.array([observed[t] for t in targets])
    tN, tD = (np.array([t[i] for t in targets]) for i in (0, 1))

    W, degenerate = fitting.group_resamples(fitted.run, n_boot, seed, [fitted.N, fitted.D],
                                             strata=cells[fit_mask])
    law = fit_joint_law(fitted.N, fitted.D, fitted.L, groups=fitted.run, delta=delta, start=start,
                                resamples=W)
    pred = law.predict(tN, tD)
    errors = {"law": float(np.mean(np.abs(pred - obs))), "flat": float(np.mean(np.abs(flat - obs))),
              "loglinear": float(np.mean(np.abs(line - obs)))}
    advantage = min(errors["flat"], errors["loglinear"]) - errors["law"]

    # the held-out seeds are drawn again too, within each held-out size and budget
    W_held, _ = fitting.group_resamples(held.run, len(W), seed + 1, [], strata=cells[held_mask])
    held_draws = {}  # per resample, the held-out seed means: every form is scored against the same redraw
    for row in law.boot_rows.tolist():
        means = seed_means(held, W_held[row])
        held_draws[row] = np.array([means[t] for t in targets])
    draws = []
    for params, row in zip(law.boot_params, law.boot_rows):
        b_flat, b_line = baselines(fitted, W[row], targets, axis)
        b_obs = held_draws[row]
        if not (np.all(np.isfinite(b_flat)) and np.all(np.isfinite(b_line))):
            continue  # a resample without two fitted sizes (branches) below some target
        b_law = np.mean(np.abs(joint_law(params, tN, tD) - b_obs))
        draws.append(min(np.mean(np.abs(b_flat - b_obs)), np.mean(np.abs(b_line - b_obs))) - b_law)
    lo, hi = fitting.percentile_ci(np.array(draws))

    alternatives: dict = {"kaplan": kaplan_law.fit_kaplan_law(fitted.N, fitted.D, fitted.L, groups=fitted.run,
                                                              delta=delta, resamples=W)}
    if entropy_rate is not None:
        alternatives["fixed_floor"] = fit_joint_law(fitted.N, fitted.D, fitted.L, groups=fitted.run,
                                                            delta=delta, E=entropy_rate, start=start, resamples=W)
    forms = {name: compare_forms(name, law, alt, tN, tD, obs, held_draws) for name, alt in alternatives.items()}

    sds = [float(np.std(held.L[(held.N == n) & (held.D == d)], ddof=1))
           for n, d in targets if np.sum((held.N == n) & (held.D == d)) > 1]
    along = fitted.N if axis == "N" else fitted.D
    reach = (min(tN) / fitted.N.max() if axis == "N" else
             min(d / fitted.D[fitted.run == r].max() for d, r in zip(held.D, held.run)))
    return {
        "axis": axis, "factor": factor, "extrapolation": float(reach),
        "fitted": sorted({float(v) for v in along}), "held_out": sorted({float(t[0 if axis == "N" else 1])
                                                                           for t in targets}),
        "n_fit_points": len(fitted), "n_fit_runs": len(np.unique(fitted.run)), "n_targets": len(targets),
        "n_skipped_targets": int(np.sum(~keep)),
        "targets": [{"N": float(n), "D": float(d), "observed": float(o), "law": float(p), "flat": float(f),
                     "loglinear": float(g)} for n, d, o, p, f, g in zip(tN, tD, obs, pred, flat, line)],
        "law": {k: json_safe(v) for k, v in zip(("E", "A", "alpha", "B", "beta"), law.params)},
        "law_error": errors["law"], "flat_error": errors["flat"], "loglinear_error": errors["loglinear"],
        "seed_sd": float(np.mean(sds)) if sds else None, "n_seeds": int(max(
            len(np.unique(held.run[(held.N == n) & (held.D == d)])) for n, d in targets)),
        "advantage": float(advantage), "advantage_ci": [json_safe(lo), json_safe(hi)],
        "n_boot": len(draws), "n_failed": law.n_failed, "n_degenerate": degenerate,
        "verdict": verdict(advantage, (lo, hi)), "law_better": bool(lo > 0) if math.isfinite(lo) else None,
        "forms": forms,
    }


def compare_forms(name: str, law: JointFit, alt: kaplan_law.KaplanFit | JointFit, tN: np.ndarray,
                  tD: np.ndarray, obs: np.ndarray, held_draws: dict[int, np.ndarray]) -> dict:
    """Another form ``alt`` of the law (fitted on the same points and resamples as the additive ``law``) against
    it on the held-out targets: its error, its advantage (the additive law's error minus its own) with a paired
    bootstrap interval, and the verdict. ``held_draws[row]`` holds the held-out seed means of resample
    ``row`` (its seeds redrawn); a row counts where both forms' refits converged."""
    pred = alt.predict(tN, tD)
    error = float(np.mean(np.abs(pred - obs)))
    advantage = float(np.mean(np.abs(law.predict(tN, tD) - obs))) - error
    alt_draws = dict(zip(alt.boot_rows.tolist(), alt.boot_params))
    alt_of = kaplan_law.kaplan_law if isinstance(alt, kaplan_law.KaplanFit) else joint_law
    draws = [np.mean(np.abs(joint_law(params, tN, tD) - held_draws[row]))
             - np.mean(np.abs(alt_of(alt_draws[row], tN, tD) - held_draws[row]))
             for params, row in zip(law.boot_params, law.boot_rows.tolist()) if row in alt_draws]
    lo, hi = fitting.percentile_ci(np.array(draws))
    fit = {k: v for k, v in alt.to_dict().items() if k != "residuals"}
    return {"form": FORMS[name], "error": error, "advantage_over_additive": advantage,
            "ci": [json_safe(lo), json_safe(hi)],
            "verdict": form_verdict(name, advantage, (lo, hi)), "better": better_form(name, (lo, hi)),
            "predictions": [float(p) for p in pred], "n_boot": len(draws), "n_failed": alt.n_failed, "fit": fit}


def better_form(name: str, ci: tuple[float, float]) -> str | None:
    """Which form predicts better beyond noise, "additive" or ``name``, from the interval on ``name``'s advantage
    over the additive law; None where the interval includes 0 (or there is none)."""
    lo, hi = ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return name if lo > 0 else "additive" if hi < 0 else None


def form_verdict(name: str, advantage: float, ci: tuple[float, float]) -> str:
    """What the interval on the advantage of form ``name`` (a key of :data:`FORMS`) over the additive law says."""
    label, (lo, hi) = FORMS[name], ci
    if not (math.isfinite(lo) and math.isfinite(hi)) or identification.collapsed((lo, hi)):
        return f"the advantage of {label} over the additive law is {advantage:+.3f} nats/char (no interval)"
    if lo > 0:
        return f"{label} predicts better, by {advantage:.3f} nats/char (95% interval {lo:.3f} to {hi:.3f})"
    if hi < 0:
        return (f"the additive law predicts better, by {-advantage:.3f} nats/char "
                f"(95% interval {-hi:.3f} to {-lo:.3f})")
    return (f"neither predicts better beyond noise (the advantage of {label} is {advantage:+.3f} nats/char, "
            f"95% interval {lo:+.3f} to {hi:+.3f})")


def verdict(advantage: float, ci: tuple[float, float]) -> str:
    """What the interval on the law's advantage over the better baseline says, in words."""
    lo, hi = ci
    if not (math.isfinite(lo) and math.isfinite(hi)) or identification.collapsed((lo, hi)):
        return f"the law's advantage over the better baseline is {advantage:+.3f} nats/char (no interval)"
    if lo > 0:
        return (f"the law predicts better than both baselines, by {advantage:.3f} nats/char "
                f"(95% interval {lo:.3f} to {hi:.3f})")
    if hi < 0:
        return (f"it does not: a baseline without a law predicts better, by {-advantage:.3f} nats/char "
                f"(95% interval {-hi:.3f} to {-lo:.3f})")
    return (f"it does not beat the better baseline beyond noise: the law's advantage is {advantage:+.3f} "
            f"nats/char (95% interval {lo:+.3f} to {hi:+.3f})")
