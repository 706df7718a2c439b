"""The exponents from differences that cancel the floor recover a known law."""

import numpy as np

from musicscale.differences import difference_exponents, fit_difference
from musicscale.holdout import Points

TRUE = {"E": 0.98, "A": 40.0, "alpha": 0.45, "B": 90.0, "beta": 0.35}


def law(N, D):
    return TRUE["E"] + TRUE["A"] * N ** -TRUE["alpha"] + TRUE["B"] * D ** -TRUE["beta"]


def design(noise: float, seed: int = 0) -> Points:
    """Five sizes, three budgets the same for every N, four branches each, two seeds: the default's shape."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in (1_700, 3_800, 6_600, 25_000, 85_000):
        for budget in (2 ** 18, 2 ** 20, 2 ** 22):
            for s in range(2):
                run = f"{n}-{budget}-{s}"
                for k in range(4):
                    d = budget / 2 ** (3 - k)
                    rows.append((n, d, law(n, d) * np.exp(noise * rng.standard_normal()), run))
    N, D, L, run = (np.array(v) for v in zip(*rows))
    return Points(N.astype(float), D.astype(float), L.astype(float), run)


def test_a_difference_fit_is_exact_on_exact_differences():
    x1 = np.array([1e3, 2e3, 4e3, 8e3])
    amp, e = fit_difference(x1, 2 * x1, 5.0 * (x1 ** -0.4 - (2 * x1) ** -0.4))
    assert abs(e - 0.4) < 1e-6 and abs(amp / 5.0 - 1) < 1e-5


def test_the_exponents_are_recovered_without_the_floor():
    out = difference_exponents(design(noise=0.0), n_boot=0)
    assert abs(out["alpha"] - TRUE["alpha"]) < 1e-4 and abs(out["beta"] - TRUE["beta"]) < 1e-4


def test_under_seed_noise_the_estimates_stay_near_the_truth_inside_their_intervals():
    out = difference_exponents(design(noise=0.002), n_boot=100, seed=1)
    for name in ("alpha", "beta"):
        lo, hi = out[f"{name}_ci"]
        assert abs(out[name] - TRUE[name]) < 0.03, (name, out[name])
        assert lo < out[name] < hi and hi - lo < 0.2, (name, lo, hi)
