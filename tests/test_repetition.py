"""What a repeated token is worth: effective data D' behaves as Muennighoff et al. define it, R* is recovered
from losses made with a known R*, and a repetition that costs nothing is reported as R* not identified."""

import math

import numpy as np
import pytest

from musicscale import repetition
from musicscale.joint_law import joint_law
from musicscale.repetition import RepeatedPoint, effective_data, fit_repetition, worth_of_epoch

LAW = (1.0, 40.0, 0.4, 300.0, 0.35)  # E, A, alpha, B, beta


def test_effective_data():
    assert effective_data(100, 400, 5.0) == 100  # fresh: D' = D
    assert effective_data(400, 400, 5.0) == 400
    # R = 15 repetitions of U: worth U (1 + R* (1 - e^(-R/R*)))
    assert effective_data(1600 * 4, 400, 5.0) == pytest.approx(400 * (1 + 5 * (1 - math.exp(-15 / 5))))
    assert effective_data(1e9, 1.0, 5.0) == pytest.approx(6.0)  # at most U (1 + R*)
    assert effective_data(4000, 1000, 1e9) == pytest.approx(4000, rel=1e-6)  # R* -> inf: as good as fresh
    assert worth_of_epoch(1, 3.0) == 1.0 and worth_of_epoch(4, 3.0) == pytest.approx(math.exp(-1))


def points(R_star: float | None, noise: float = 0.0, seed: int = 0) -> list[RepeatedPoint]:
    """Two sizes, factors 4/16/64, three seeds, six branches: losses from LAW at D' (or at D: no cost)."""
    rng, out = np.random.default_rng(seed), []
    for size, N in (("a", 2e3), ("b", 8e3)):
        D_max = 2 ** 20
        for factor in (4, 16, 64):
            for s in range(3):
                for k in range(6):
                    D, U = D_max / 2 ** k, D_max / factor
                    fresh = float(joint_law(LAW, N, D))
                    D_eff = D if R_star is None else effective_data(D, U, R_star)
                    L = float(joint_law(LAW, N, D_eff)) + noise * rng.standard_normal()
                    out.append(RepeatedPoint(f"{size}-{factor}-{s}", size, factor, N, D, U, L, fresh))
    return out


def test_a_known_R_star_is_recovered_with_an_interval_that_covers_it():
    fit = fit_repetition(points(8.0, noise=0.002), LAW, n_boot=60, seed=1)
    assert fit.identified and fit.bound_reached is None and fit.R_star == pytest.approx(8.0, rel=0.2)
    assert fit.R_star_ci[0] <= 8.0 <= fit.R_star_ci[1]
    assert fit.rmse < fit.rmse_no_cost  # the model explains what "repeats are free" cannot
    exact = fit_repetition(points(8.0), LAW, n_boot=0)
    assert exact.R_star == pytest.approx(8.0, rel=1e-3)


def test_repetition_that_costs_nothing_is_not_identified():
    fit = fit_repetition(points(None, noise=0.001), LAW, n_boot=30)
    assert not fit.identified and fit.R_star_ci[1] == pytest.approx(repetition.R_STAR_BOUNDS[1], rel=0.05)
    assert fit.bound_reached == "upper" and fit.to_dict()["bound_reached"] == "upper"


def test_no_repeated_point_is_an_error():
    fresh = [p for p in points(8.0) if p.D <= p.U]
    with pytest.raises(ValueError, match="more than once"):
        fit_repetition(fresh, LAW)
