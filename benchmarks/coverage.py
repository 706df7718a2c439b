"""How often the study's 95% intervals cover a known law: simulated studies of the default design's shape.

Each study draws the fitted end-of-cooldown points of the default profile's design (its sizes, budgets, branches
per run and two seeds, read from ``musicscale.profiles``; early points, below the shortest budget, left out) from
``L = E + A N^-alpha + B D^-beta`` times log-normal noise (one draw per run, shared by its branches, as a seed's
luck is, plus one per point), fits the joint law with its bootstrap over runs, and the exponents from
differences; it prints, per parameter, how often the interval covered the truth, and the median error of the
estimate.

    .venv/bin/python benchmarks/coverage.py --studies 40 --boot 200
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from musicscale.differences import difference_exponents
from musicscale.holdout import Points
from musicscale.joint_law import fit_joint_law
from musicscale.models import describe
from musicscale.profiles import PROFILES

DESIGN = PROFILES["default"]["03_train"]
# the default's Transformer sizes (non-embedding parameters)
SIZES = tuple(describe("transformer", s, vocab_size=128, context_length=DESIGN["context_length"])
              ["params_non_embedding"] for s in DESIGN["sizes"])
BUDGETS = tuple(DESIGN["budgets"])
BRANCHES = DESIGN["n_branches"]


def simulate(truth: dict, run_noise: float, point_noise: float, seed: int, seeds: int = 2) -> Points:
    rng = np.random.default_rng(seed)
    rows = []
    for n in SIZES:
        for budget in BUDGETS:
            for s in range(seeds):
                luck = run_noise * rng.standard_normal()
                for k in range(BRANCHES):
                    d = budget / 2 ** (BRANCHES - 1 - k)
                    if len(BUDGETS) > 1 and d < BUDGETS[0]:
                        continue  # an early point, not fitted (analysis.early_tokens)
                    loss = truth["E"] + truth["A"] * n ** -truth["alpha"] + truth["B"] * d ** -truth["beta"]
                    noisy = loss * math.exp(luck + point_noise * rng.standard_normal())
                    rows.append((n, d, noisy, f"{n}-{budget}-{s}"))
    N, D, L, run = (np.array(v) for v in zip(*rows))
    return Points(N.astype(float), D.astype(float), L.astype(float), run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--run-noise", type=float, default=0.005, help="log-normal s.d. shared by a run's points")
    parser.add_argument("--point-noise", type=float, default=0.002, help="log-normal s.d. of each point")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    truth = {"E": 0.98, "A": 30.0, "alpha": 0.5, "B": 200.0, "beta": 0.4}
    hits: dict[str, list[bool]] = {}
    errors: dict[str, list[float]] = {}
    for study in range(args.studies):
        pts = simulate(truth, args.run_noise, args.point_noise, seed=study)
        fit = fit_joint_law(pts.N, pts.D, pts.L, groups=pts.run, strata=pts.strata, n_boot=args.boot, seed=study)
        diff = difference_exponents(pts, n_boot=args.boot, seed=study)
        for name in ("E", "alpha", "beta"):
            lo, hi = getattr(fit, f"{name}_ci")
            hits.setdefault(f"joint {name}", []).append(lo <= truth[name] <= hi)
            errors.setdefault(f"joint {name}", []).append(abs(getattr(fit, name) - truth[name]))
        for name in ("alpha", "beta"):
            lo, hi = diff[f"{name}_ci"]
            hits.setdefault(f"differences {name}", []).append(lo is not None and lo <= truth[name] <= hi)
            errors.setdefault(f"differences {name}", []).append(abs(diff[name] - truth[name]))
    rows = [{"parameter": k, "coverage": float(np.mean(v)), "median_abs_error": float(np.median(errors[k]))}
            for k, v in hits.items()]
    print(f"{args.studies} simulated studies, {args.boot} bootstrap draws each, run noise {args.run_noise}, "
          f"point noise {args.point_noise}")
    for r in rows:
        print(f"{r['parameter']:<18} 95% interval covers the truth in {r['coverage']:.0%}; median |error| "
              f"{r['median_abs_error']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
