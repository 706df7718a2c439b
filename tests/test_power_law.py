"""musicscale.power_law: a known L = a N^-alpha + c is recovered with bootstrap intervals that cover it, the fit
round-trips through JSON, the compute frontier is the lower envelope, and two curves' crossing is found."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from musicscale.power_law import PowerLawFit, compute_frontier, crossover, fit_compute_law, fit_power_law

A_TRUE, ALPHA_TRUE, C_TRUE = 5.0, 0.3, 0.8
SPEC_KEYS = {"a", "alpha", "c", "a_ci", "alpha_ci", "c_ci", "r2", "residuals", "n_points", "n_boot"}
SPEC_KEYS |= {"converged", "n_failed", "n_degenerate", "not_identified", "no_fit", "L_min", "c_max", "boot_params"}


def law(N, a=A_TRUE, alpha=ALPHA_TRUE, c=C_TRUE):
    return a * np.asarray(N, dtype=float) ** (-alpha) + c


def make_fit(a: float, alpha: float, c: float) -> PowerLawFit:
    nan = (math.nan, math.nan)
    return PowerLawFit(a, alpha, c, nan, nan, nan, 1.0, [], 0, 0, True)


# --------------------------------------------------------------------------- fit_power_law


def test_exact_points_are_recovered():
    N = np.logspace(3, 6, 8)
    fit = fit_power_law(N, law(N), n_boot=0)
    assert fit.converged
    assert fit.a == pytest.approx(A_TRUE, rel=1e-3)
    assert fit.alpha == pytest.approx(ALPHA_TRUE, rel=1e-3)
    assert fit.c == pytest.approx(C_TRUE, rel=1e-3)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert max(abs(r) for r in fit.residuals) < 1e-6
    assert fit.n_points == 8 and fit.n_boot == 0
    assert all(math.isnan(v) for v in fit.alpha_ci)
    np.testing.assert_allclose(fit.predict(N), law(N), rtol=1e-6)


def test_pure_power_law_without_floor_drives_c_to_zero():
    N = np.logspace(3, 6, 8)
    fit = fit_power_law(N, 5.0 * N**-0.3, n_boot=0)
    assert fit.alpha == pytest.approx(0.3, rel=1e-3)
    assert fit.c < 1e-3


def test_bootstrap_intervals_cover_truth_and_are_informative():
    N = np.repeat(np.logspace(3, 6, 8), 2)  # two seeds per size
    rng = np.random.default_rng(3)
    L = law(N) * np.exp(rng.normal(0.0, 0.01, N.size))
    fit = fit_power_law(N, L, n_boot=400, seed=0)
    assert fit.converged
    assert fit.n_points == 16
    assert fit.n_boot == 400 and fit.boot_params.shape == (400, 3)
    for (lo, hi), true in [(fit.a_ci, A_TRUE), (fit.alpha_ci, ALPHA_TRUE), (fit.c_ci, C_TRUE)]:
        assert lo <= true <= hi
    assert fit.alpha_ci[1] - fit.alpha_ci[0] < 0.15
    assert fit.c_ci[1] - fit.c_ci[0] < 0.1
    assert not fit.alpha_ci[0] <= 0.6 <= fit.alpha_ci[1]
    assert not fit.c_ci[0] <= 0.5 <= fit.c_ci[1]
    # The point estimate lies inside its own interval, and the band brackets the true curve.
    assert fit.alpha_ci[0] <= fit.alpha <= fit.alpha_ci[1]
    grid = np.logspace(3, 6, 5)
    lo, hi = fit.band(grid)
    assert np.all(lo < hi)
    assert np.all((lo <= law(grid)) & (law(grid) <= hi))
    assert np.all((hi - lo) / law(grid) < 0.08)


def test_bootstrap_is_reproducible_for_a_seed():
    N = np.repeat(np.logspace(3, 6, 6), 2)
    L = law(N) * np.exp(np.random.default_rng(5).normal(0.0, 0.01, N.size))
    f1 = fit_power_law(N, L, n_boot=50, seed=7)
    f2 = fit_power_law(N, L, n_boot=50, seed=7)
    f3 = fit_power_law(N, L, n_boot=50, seed=8)
    assert f1.alpha_ci == f2.alpha_ci  # the same computation twice: bit-identical
    assert f1.alpha_ci != f3.alpha_ci


def test_band_without_bootstrap_is_nan():
    N = np.logspace(3, 6, 5)
    lo, hi = fit_power_law(N, law(N), n_boot=0).band(N)
    assert np.all(np.isnan(lo)) and np.all(np.isnan(hi))


def test_c_max_is_respected():
    N = np.logspace(3, 6, 8)
    fit = fit_power_law(N, law(N), n_boot=0, c_max=0.5)
    assert fit.c <= 0.5 * (1 + 1e-9)
    assert fit.r2 < 1.0


def test_to_dict_is_strict_json_with_spec_keys():
    N = np.logspace(3, 6, 6)
    d = fit_power_law(N, law(N), n_boot=0).to_dict()
    assert set(d) == SPEC_KEYS
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back["a_ci"] == [None, None]
    assert back["alpha"] == pytest.approx(ALPHA_TRUE, rel=1e-3)
    assert len(back["residuals"]) == 6


@pytest.mark.parametrize(
    ("N", "L", "match"),
    [
        ([1e3, 1e3, 1e4, 1e4], [2.0, 2.0, 1.5, 1.5], "3 distinct N"),
        ([1e3, 0.0, 1e5, 1e6], [2.0, 1.8, 1.5, 1.4], "N must be positive"),
        ([1e3, 1e4, 1e5, 1e6], [2.0, -1.8, 1.5, 1.4], "L must be positive"),
        ([1e3, 1e4, 1e5, 1e6], [2.0, np.nan, 1.5, 1.4], "L contains non-finite"),
        ([1e3, 1e4, 1e5, 1e6], [2.0, 1.8, 1.5], "same length"),
    ],
)
def test_bad_input_raises(N, L, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(N, L, n_boot=0)


# --------------------------------------------------------------------------- holdout


def test_compute_frontier_hand_made():
    C = [1, 2, 2, 3, 4, 5, 6, 7]
    L = [5.0, 4.0, 4.5, 4.2, 3.0, 3.0, 3.5, 2.0]
    C_f, L_f = compute_frontier(C, L)
    np.testing.assert_array_equal(C_f, [1, 2, 4, 7])
    np.testing.assert_array_equal(L_f, [5.0, 4.0, 3.0, 2.0])


def test_compute_frontier_sorts_unordered_input():
    C_f, L_f = compute_frontier([3, 1, 2], [1.0, 3.0, 2.0])
    np.testing.assert_array_equal(C_f, [1, 2, 3])
    np.testing.assert_array_equal(L_f, [3.0, 2.0, 1.0])


def test_fit_compute_law_uses_the_frontier():
    C = np.logspace(12, 16, 9)
    frontier = law(C, a=300.0, alpha=0.15, c=0.9)
    # Dominated points: same compute or more, but worse loss (e.g. too-small or too-large models).
    C_bad = np.concatenate([C, C * 1.5])
    L_bad = np.concatenate([frontier * 1.2, law(C * 1.5, a=300.0, alpha=0.15, c=0.9) * 1.2])
    fit = fit_compute_law(np.concatenate([C, C_bad]), np.concatenate([frontier, L_bad]), n_boot=0)
    assert fit.n_points == 9
    assert fit.alpha == pytest.approx(0.15, rel=1e-3)
    assert fit.c == pytest.approx(0.9, rel=1e-3)
    early = fit_compute_law(C, frontier, n_boot=0, min_compute=1e13)
    assert early.n_points == 7


def test_crossover_found_and_absent():
    steep = make_fit(10.0, 0.5, 1.0)
    flat = make_fit(1.0, 0.1, 1.0)  # 10 N^-0.5 = N^-0.1  <=>  N = 10**2.5
    assert crossover(steep, flat, (10.0, 1e4)) == pytest.approx(10**2.5, rel=1e-9)
    assert crossover(steep, flat, (1e3, 1e6)) is None
    with pytest.raises(ValueError):
        crossover(steep, flat, (1e4, 10.0))


def test_a_fit_read_back_from_json_predicts_what_the_original_did():
    N = np.logspace(3, 6, 8)
    rng = np.random.default_rng(0)
    fit = fit_power_law(N, law(N) * np.exp(rng.normal(0, 0.01, 8)), n_boot=50, c_max=2.0)
    back = PowerLawFit.from_dict(json.loads(json.dumps(fit.to_dict(), allow_nan=False)))
    grid = np.geomspace(1e3, 1e7, 20)
    assert np.array_equal(back.predict(grid), fit.predict(grid))  # the same computation on the same floats
    assert all(np.array_equal(a, b) for a, b in zip(back.band(grid), fit.band(grid)))
    assert back.to_dict() == fit.to_dict()
