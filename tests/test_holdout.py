"""The held-out checks: splits, the two baselines on a hand-made case, and the verdict on a known law."""

import math

import numpy as np
import pytest

from musicscale import holdout

LAW = (1.2, 30.0, 0.4, 400.0, 0.35)  # E, A, alpha, B, beta


def law(N, D):
    E, A, alpha, B, beta = LAW
    return E + A * np.asarray(N, float) ** -alpha + B * np.asarray(D, float) ** -beta


def study(sizes, seeds=1, noise=0.0, rng=None, branches=5, budget=2**20):
    """Points of WSD runs: every size at ``seeds`` seeds, branches at budget / 2^k, losses from LAW."""
    N, D, L, run = [], [], [], []
    for n in sizes:
        for s in range(seeds):
            for k in range(branches):
                d = budget / 2 ** k
                N.append(n), D.append(d), run.append(f"{n}-s{s}")
                L.append(law(n, d) * (1 + noise * rng.standard_normal()) if noise else law(n, d))
    return holdout.Points(np.array(N, float), np.array(D, float), np.array(L), np.array(run))


def test_baselines_on_a_hand_made_case():
    # two fitted sizes at one D: N = 10 with L = 4 and N = 100 with L = 2; the target is N = 1000 at that D
    fitted = holdout.Points(np.array([10.0, 100.0, 100.0]), np.array([5.0, 5.0, 5.0]), np.array([4.0, 1.5, 2.5]),
                            np.array(["a", "b", "c"]))
    flat, line = holdout.baselines(fitted, np.ones(3), [(1000.0, 5.0)], "N")
    assert flat[0] == 2.0  # the largest fitted size's loss (mean over its two runs)
    assert line[0] == pytest.approx(1.0)  # log-log line: halves per decade -> 2 / 2
    # resample weights count: run "c" twice, "b" dropped -> the largest size's mean is 2.5
    flat, line = holdout.baselines(fitted, np.array([1.0, 0.0, 2.0]), [(1000.0, 5.0)], "N")
    assert flat[0] == 2.5 and line[0] == pytest.approx(2.5 * math.exp(math.log(2.5 / 4.0)))
    # along D: the same arithmetic with the roles swapped; a target with no two references is NaN
    along_d = holdout.Points(np.array([7.0, 7.0]), np.array([10.0, 100.0]), np.array([4.0, 2.0]), np.array(["r", "r"]))
    flat, line = holdout.baselines(along_d, np.ones(2), [(7.0, 1000.0), (8.0, 1000.0)], "D")
    assert flat[0] == 2.0 and line[0] == pytest.approx(1.0) and math.isnan(flat[1])


def test_splits_extrapolate_at_least_the_factor():
    pts = study([1e3, 2e3, 4e3, 8e3, 3e4, 1e5])
    fit, held = holdout.split(pts, "N", 10)
    assert set(pts.N[fit]) == {1e3, 2e3, 4e3, 8e3} and set(pts.N[held]) == {1e5}  # 3e4 is neither
    fit, held = holdout.split(pts, "D", 4)
    assert set(pts.D[fit]) == {2**20 / 4, 2**20 / 8, 2**20 / 16} and set(pts.D[held]) == {2**20}
    with pytest.raises(ValueError, match="needs 3 sizes at or below N_max/10"):
        holdout.split(study([1e3, 2e3, 1e5]), "N", 10)


def test_the_law_beats_the_baselines_on_points_it_was_not_fitted_on():
    rng = np.random.default_rng(0)
    pts = study([5e2, 1e3, 2e3, 4e3, 8e3, 1e5], seeds=3, noise=0.002, rng=rng)
    for axis, factor in (("N", 10.0), ("D", 4.0)):
        result = holdout.check(pts, axis, factor, n_boot=60, seed=0)
        assert result["extrapolation"] >= factor
        assert result["law_error"] < min(result["flat_error"], result["loglinear_error"])
        assert result["law_better"] and result["verdict"].startswith("the law predicts better")
        assert result["seed_sd"] == pytest.approx(0.002 * np.mean([t["observed"] for t in result["targets"]]), rel=0.8)
        assert result["n_seeds"] == 3 and result["n_boot"] > 40


def test_verdict_follows_the_interval():
    assert holdout.verdict(0.05, (0.01, 0.09)).startswith("the law predicts better than both baselines, by 0.050")
    assert holdout.verdict(-0.05, (-0.09, -0.01)).startswith("it does not: a baseline")
    assert "beyond noise" in holdout.verdict(0.01, (-0.02, 0.04))
