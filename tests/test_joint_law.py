"""musicscale.joint_law: a known L(N, D) = E + A N^-alpha + B D^-beta is recovered, its bootstrap over whole runs
covers it, the vectorised refits agree with L-BFGS-B's, the fit round-trips through JSON, and points below a floor
are flagged."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from musicscale.fitting import group_resamples
from musicscale.joint_law import JointFit, fit_joint_law, flag_below_floor, joint_fit

JOINT_TRUE = {"E": 1.5, "A": 400.0, "alpha": 0.34, "B": 2000.0, "beta": 0.28}


def joint_law(N, D, E=1.5, A=400.0, alpha=0.34, B=2000.0, beta=0.28):
    return E + A * N ** (-alpha) + B * D ** (-beta)


# --------------------------------------------------------------------------- joint law


def _joint_grid():
    N, D = np.meshgrid(np.logspace(4, 7, 5), np.logspace(6, 9, 4))
    return N.ravel(), D.ravel()


def test_joint_fit_recovers_exact_parameters():
    N, D = _joint_grid()
    fit = fit_joint_law(N, D, joint_law(N, D), n_boot=10)
    assert isinstance(fit, JointFit) and fit.converged
    for name, true in JOINT_TRUE.items():
        assert getattr(fit, name) == pytest.approx(true, rel=1e-3), name
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.n_points == 20 and fit.boot_params.shape == (10, 5)
    d = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    assert {"E", "A", "alpha", "B", "beta", "E_ci", "beta_ci", "r2", "n_points"} <= set(d)


def test_joint_fit_bootstrap_covers_truth_with_noise():
    N, D = _joint_grid()
    N, D = np.concatenate([N, N]), np.concatenate([D, D])
    L = joint_law(N, D) * np.exp(np.random.default_rng(0).normal(0.0, 0.005, N.size))
    fit = fit_joint_law(N, D, L, n_boot=100, seed=0)
    for name in ("alpha", "beta"):
        lo, hi = getattr(fit, f"{name}_ci")
        assert lo <= JOINT_TRUE[name] <= hi, name
        assert hi - lo < 0.2
        assert not lo <= 0.7 <= hi


def _runs_of_known_law(seed=0, sizes=6, seeds=2, noise=0.005):
    """WSD-like runs: every size at ``seeds`` seeds, 5 branches each; a run's points share one offset (as
    branches of one trunk do) besides their own noise."""
    rng = np.random.default_rng(seed)
    N, D, L, run = [], [], [], []
    for n in np.logspace(4, 7, sizes):
        for s in range(seeds):
            offset = rng.normal(0.0, noise)
            for d in np.logspace(7, 9, 5):
                N.append(n), D.append(d), run.append(f"{n:.0f}-{s}")
                L.append(joint_law(n, d) * math.exp(offset + rng.normal(0.0, noise / 2)))
    return np.array(N), np.array(D), np.array(L), np.array(run)


def test_run_bootstrap_recovers_the_law_within_its_intervals():
    N, D, L, run = _runs_of_known_law()
    fit = fit_joint_law(N, D, L, groups=run, n_boot=200, seed=0)
    assert fit.n_groups == 12 and fit.n_boot + fit.n_failed == 200 and fit.n_failed == 0
    for name in ("E", "alpha", "beta"):
        lo, hi = getattr(fit, f"{name}_ci")
        assert lo <= JOINT_TRUE[name] <= hi, name
    # resampling runs, not points, widens the intervals: a run's points are not independent
    by_point = fit_joint_law(N, D, L, n_boot=200, seed=0)
    assert np.diff(fit.alpha_ci)[0] > np.diff(by_point.alpha_ci)[0]
    lo, hi = fit.band(1e5, np.inf)
    assert lo <= fit.predict(1e5, np.inf) <= hi and fit.predict_draws(1e5, np.inf).shape == (200,)


def test_vectorised_refits_match_lbfgs_refits():
    N, D, L, run = _runs_of_known_law(seed=1)
    fit = fit_joint_law(N, D, L, groups=run, n_boot=0)
    W, _ = group_resamples(run, 40, 0, [N, D])
    newton = fit_joint_law(N, D, L, groups=run, resamples=W)
    for row, params in zip(newton.boot_rows, newton.boot_params):
        idx = np.repeat(np.arange(len(L)), W[row].astype(int))
        solo = fit_joint_law(N[idx], D[idx], L[idx], n_boot=0)
        # two optimisers: they agree to ~1e-8 here (both stop far tighter), 1e-4 leaves room for any CPU's rounding
        assert params[2] == pytest.approx(solo.alpha, abs=1e-4) and params[4] == pytest.approx(solo.beta, abs=1e-4)
    # the point fit does not depend on the resamples: the same computation in both calls
    assert newton.alpha == pytest.approx(fit.alpha, rel=1e-9)


def test_fixed_floor_fits_the_excess_over_it():
    N, D, L, run = _runs_of_known_law(noise=0.002)
    fit = fit_joint_law(N, D, L, groups=run, E=JOINT_TRUE["E"], n_boot=50)
    assert fit.E_fixed and fit.E == pytest.approx(JOINT_TRUE["E"]) and fit.E_ci == pytest.approx((1.5, 1.5))
    assert fit.alpha == pytest.approx(JOINT_TRUE["alpha"], abs=0.02)
    assert fit.beta == pytest.approx(JOINT_TRUE["beta"], abs=0.02)
    with pytest.raises(ValueError, match="fixed floor E must be positive"):
        fit_joint_law(N, D, L, E=0.0)


def test_a_tiny_huber_delta_drops_no_bootstrap_draw():
    # nearly L1: the gradient need not vanish at the optimum, which the old projected-gradient test took for
    # non-convergence; the restart test does not, and any failure would be counted, not hidden
    N, D, L, run = _runs_of_known_law(seed=2)
    fit = fit_joint_law(N, D, L, groups=run, delta=1e-5, n_boot=60, seed=0)
    assert fit.converged and fit.n_failed == 0 and fit.n_boot == 60


def test_compute_optimal_satisfies_budget_and_exponent():
    a, alpha, b, beta = 400.0, 0.34, 2000.0, 0.28
    nan = (math.nan, math.nan)
    fit = JointFit(1.5, a, alpha, b, beta, nan, nan, nan, nan, nan, 1.0, [], 0, 0, True)
    C = np.logspace(15, 21, 7)
    N_opt, D_opt = fit.compute_optimal(C)
    np.testing.assert_allclose(6.0 * N_opt * D_opt, C, rtol=1e-12)
    slope = np.polyfit(np.log(C), np.log(N_opt), 1)[0]
    assert slope == pytest.approx(beta / (alpha + beta), rel=1e-9)
    assert fit.optimal_exponents()["a"] == pytest.approx(beta / (alpha + beta))
    # Moving along the iso-compute curve in either direction raises the loss.
    for c, n in zip(C, N_opt):
        best = fit.predict(n, c / (6 * n))
        for f in (0.8, 1.25):
            assert fit.predict(n * f, c / (6 * n * f)) > best


def test_joint_fit_rejects_too_little_variation():
    N = np.array([1e4, 1e5, 1e6, 1e4, 1e5, 1e6])
    D = np.array([1e6, 1e6, 1e6, 1e7, 1e7, 1e7])
    with pytest.raises(ValueError, match="3 distinct D"):
        fit_joint_law(N, D, joint_law(N, D), n_boot=0)


# --------------------------------------------------------------------------- crossover and floor check


def test_flag_below_floor_warns_with_indices():
    with pytest.warns(RuntimeWarning, match="entropy floor"):
        idx = flag_below_floor([1.0, 0.5, 0.9995, 0.7], floor=1.0, tol=1e-3)
    assert idx == [1, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert flag_below_floor([1.0, 1.2], floor=[0.9, 1.2]) == []
    with pytest.warns(RuntimeWarning):
        assert flag_below_floor([1.0, 1.1], floor=[0.9, 1.2]) == [1]


def test_stratified_resamples_redraw_seeds_within_each_size():
    N, D, L, run = _runs_of_known_law(sizes=4, seeds=3)
    W, degenerate = group_resamples(run, 50, 0, [N, D], strata=N)
    assert degenerate == 0 and W.shape == (50, len(L))
    for n in np.unique(N):  # every size keeps its number of runs (3 seeds x 5 points), only which ones changes
        assert np.all(W[:, N == n].sum(axis=1) == 15)
    assert len({tuple(w) for w in W}) > 40  # and the draws differ
    fit = fit_joint_law(N, D, L, groups=run, strata=N, n_boot=100, seed=0)
    assert fit.n_degenerate == 0 and fit.alpha_ci[0] <= JOINT_TRUE["alpha"] <= fit.alpha_ci[1]


def test_a_fit_read_back_from_json_predicts_what_the_original_did():
    N, D, L, run = _runs_of_known_law(noise=0.005)
    fit = fit_joint_law(N, D, L, groups=run, strata=N, n_boot=40, seed=0)
    entry = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    back = joint_fit(entry)
    assert isinstance(back, JointFit) and back.to_dict() == fit.to_dict()
    grid = np.geomspace(N.min(), N.max() * 4, 30)
    assert np.array_equal(back.predict(grid, D.max()), fit.predict(grid, D.max()))
    assert np.array_equal(back.predict_draws(grid, np.inf), fit.predict_draws(grid, np.inf))
    assert joint_fit({"error": "too few sizes"}) is None and joint_fit(None) is None
