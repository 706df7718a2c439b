"""A fitted parameter at a bound of its search, or a fit worse than the stated R², is reported as such: never as a
value with an interval (musicscale.identification, and the fits and tables that use it)."""

from __future__ import annotations

import numpy as np
import pytest

from musicscale import identification
from musicscale.analysis import ground_truth
from musicscale.findings import floor_gap_sentence, ground_truth_sentence, largest_model
from musicscale.fitting import ALPHA_MAX
from musicscale.holdout import Points
from musicscale.identification import Bound, format_ci, not_identified
from musicscale.joint_law import fit_joint_law
from musicscale.power_law import fit_power_law


def _grid(seeds: int = 2):
    N, D = np.meshgrid(np.logspace(3, 5, 5), np.logspace(5, 7, 4))
    return np.tile(N.ravel(), seeds), np.tile(D.ravel(), seeds), np.repeat(np.arange(seeds), N.size)


def test_a_draw_share_beyond_the_tail_of_the_interval_is_not_identified():
    bound = Bound(0.0, 5.0, 1e-3)
    draws = np.r_[np.zeros(3), np.linspace(0.2, 0.4, 97)]  # 3% of the draws at 0: the 95% interval reaches it
    info = not_identified(0.3, draws, bound)
    assert info == {"bound": 0.0, "end": "lower", "point_at_bound": False, "share": pytest.approx(0.03)}
    assert not_identified(0.3, np.r_[np.zeros(2), np.linspace(0.2, 0.4, 98)], bound) is None  # 2%: it does not
    assert not_identified(5.0, np.linspace(0.2, 0.4, 100), bound)["end"] == "upper"  # the point fit alone
    assert "not identified (at its upper bound 5 in the fit and in 0%" not in identification.describe(
        not_identified(5.0, np.linspace(0.2, 0.4, 100), bound))
    assert identification.describe(not_identified(5.0, [], bound)) == "not identified (at its upper bound 5 in the fit)"


def test_a_law_without_a_floor_reports_its_floor_as_not_identified():
    """Losses that bend the wrong way for the form (A N^-alpha + B D^-beta less a constant: the "floor" it wants
    is negative): the fitted E runs onto its bound 0, and every report of it says "not identified", not
    "0.000 [0.000, 0.000]"."""
    N, D, run = _grid()
    L = (40.0 * N ** -0.3 + 60.0 * D ** -0.25 - 0.3) * np.exp(np.random.default_rng(1).normal(0, 0.002, N.size))
    fit = fit_joint_law(N, D, L, groups=run, n_boot=100, seed=0)
    entry = fit.to_dict()
    assert "E" in entry["not_identified"] and entry["not_identified"]["E"]["bound"] == 0.0
    assert format_ci(entry, "E").startswith("not identified (at its lower bound 0")
    assert format_ci(entry, "alpha").startswith(f"{fit.alpha:.3f} [")  # the exponents are measured
    g = ground_truth(fit, Points(N, D, L, run), 0.5, n_boot=20, seed=0)
    assert g["E_rel_error"] is None and g["covers"] is None
    assert ground_truth_sentence(g).startswith("E is not identified") and "from H*" not in ground_truth_sentence(g)
    # without a known floor, the largest model is set against the fitted one: here no distance can be given
    gap = floor_gap_sentence(entry, {"N": 1e5, "D": 1e7}, 0.9, 0.01)
    assert "ends at 0.900 nats/char and gained 0.010" in gap and "cannot say how far above it" in gap


def test_the_largest_model_is_set_against_an_identified_floor_with_its_interval():
    entry = {"E": 0.8, "E_ci": [0.7, 0.85], "not_identified": {}}
    gap = floor_gap_sentence(entry, {"N": 1e5, "D": 1e7}, 1.0, None)
    assert gap == ("the largest model (N = 100,000, D = 10,000,000) ends at 1.000 nats/char, 0.200 [0.150, 0.300] "
                   "nats/char above the fitted floor E = 0.800 [0.700, 0.850]")


def test_an_exponent_at_its_bound_leaves_the_compute_optimal_split_unmeasured():
    N, D, run = _grid()
    L = 1.0 + 40.0 * N ** -0.3 + 0.0 * D  # no dependence on D: beta runs to a bound
    fit = fit_joint_law(N, D, L * np.exp(np.random.default_rng(2).normal(0, 0.002, N.size)), groups=run, n_boot=50)
    assert "beta" in fit.not_identified()
    opt = fit.optimal_exponents()
    assert opt["not_identified"]["a"]["via"] == "beta"
    assert format_ci(opt, "a").startswith("not identified (β is at its")


def test_a_fit_worse_than_its_threshold_is_no_fit():
    rng = np.random.default_rng(3)
    N = np.repeat(np.logspace(3, 5, 5), 3)
    L = 2.0 + rng.normal(0, 0.05, N.size)  # no trend at all: a power law explains nothing
    entry = fit_power_law(N, L, n_boot=50, seed=0).to_dict()
    assert entry["r2"] < identification.R2_MIN
    assert entry["no_fit"].startswith("no fit (R² = ")
    assert format_ci(entry, "alpha") == format_ci(entry, "c") == entry["no_fit"]


def test_an_identified_fit_is_reported_with_its_interval():
    N = np.repeat(np.logspace(3, 6, 6), 2)
    L = (5.0 * N ** -0.3 + 0.8) * np.exp(np.random.default_rng(4).normal(0, 0.002, N.size))
    entry = fit_power_law(N, L, n_boot=100, seed=0).to_dict()
    assert entry["not_identified"] == {} and entry["no_fit"] is None
    assert format_ci(entry, "alpha") == f"{entry['alpha']:.3f} [{entry['alpha_ci'][0]:.3f}, {entry['alpha_ci'][1]:.3f}]"
    assert ALPHA_MAX == 5.0  # the upper bound the docstring of musicscale.identification states


def test_an_interval_without_width_at_the_precision_shown_is_not_printed_as_one():
    entry = {"v": 0.7622, "v_ci": [0.76214, 0.76222]}  # resamples that barely vary (sizes at one seed)
    assert format_ci(entry, "v", "+.3f") == "+0.762 (95% interval only 8e-05 wide: its resamples barely vary)"
    assert format_ci({"v": 1.0, "v_ci": [1.0, 1.0]}, "v") == "1.000 (no interval: every resample gives the same)"
    assert format_ci({"v": 0.5, "v_ci": [0.4, 0.6]}, "v") == "0.500 [0.400, 0.600]"


def test_the_largest_model_is_the_largest_size_at_its_longest_budget():
    # every size at two budgets, listed in no particular order within a size
    budgets = [{"size": s, "N": n, "D": d} for s, n in (("tiny", 6_592), ("medium", 84_912))
               for d in (2 ** 22, 2 ** 18)]
    assert largest_model(budgets) == {"size": "medium", "N": 84_912, "D": 2 ** 22}
    assert largest_model(list(reversed(budgets))) == {"size": "medium", "N": 84_912, "D": 2 ** 22}
