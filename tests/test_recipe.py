"""The training recipe and the design: the rate law, the choice of beta2, budgets that spread D/N at every N, and
the joint law recovered on that design."""

import math

import numpy as np
import pytest

from musicscale import design
from musicscale.holdout import Points
from musicscale.joint_law import fit_joint_law
from musicscale.stages import train
from musicscale.sweep import RunSpec
from musicscale.train import TrainConfig


def test_the_optimum_between_grid_points_is_the_vertex_of_a_parabola_in_log_rate():
    rates = [1e-3, 2e-3, 4e-3, 8e-3]
    best = 3e-3
    losses = [1.0 + 0.5 * (math.log(r) - math.log(best)) ** 2 for r in rates]
    assert design.optimum_rate(rates, losses) == pytest.approx(best, rel=1e-9)
    # at an end of the grid there is no vertex to trust: the best grid rate
    assert design.optimum_rate(rates, sorted(losses)) == rates[0]


def test_the_rate_law_is_recovered_from_exact_optima():
    sizes = np.array([1_700.0, 6_600.0, 25_000.0])
    c, k = 0.5, 0.3
    law = design.fit_rate_law(sizes, c * sizes ** -k)
    assert law["c"] == pytest.approx(c, rel=1e-9) and law["k"] == pytest.approx(k, rel=1e-9)
    assert design.rate_of_law(law, 85_000) == pytest.approx(c * 85_000 ** -k, rel=1e-9)
    # one searched size: its rate for every size
    assert design.fit_rate_law([6_600.0], [3e-3]) == {"c": pytest.approx(3e-3), "k": 0.0}


def _mains(sizes=("micro", "mini", "tiny", "small", "medium"), budgets=(2 ** 18, 2 ** 22), n_branches=5):
    """The default design's main runs: two budgets the same for every N, five branches each."""
    p = train.Params(archs=["transformer"], sizes=list(sizes), context_length=256, batch_size=4, n_branches=n_branches,
                     budgets=list(budgets), extra_seed_sizes=list(sizes), recipe_sizes=["micro", "tiny", "small"],
                     lr_probe_branches=4)
    return p, design.plan_runs(["synthetic"], p.archs, p.sizes, 0, p.base_config(), p.study())


def test_unsearched_sizes_take_the_law_s_rate_and_the_nearest_searched_beta2():
    p, mains = _mains()
    n = {m.config.size: design._non_embedding(m) for m in mains}
    c, k = 0.2, 0.25
    searched = {("synthetic", "transformer", s): {"N": n[s], "optimum": c * n[s] ** -k, "beta2": b2, "searched": True}
                for s, b2 in (("micro", 0.95), ("tiny", 0.99), ("small", 0.999))}
    recipes = design.apply_rate_law(searched, mains)
    assert set(recipes) == {("synthetic", "transformer", s) for s in p.sizes}
    for (_, _, size), r in recipes.items():
        assert r["lr"] == pytest.approx(c * n[size] ** -k, rel=1e-9)
    assert recipes[("synthetic", "transformer", "mini")]["beta2"] == 0.99  # mini lies nearest tiny in log N
    assert recipes[("synthetic", "transformer", "medium")]["beta2"] == 0.999
    assert not recipes[("synthetic", "transformer", "medium")]["searched"]
    # every main run trains with its size's recipe
    planned = design.plan_runs(["synthetic"], p.archs, p.sizes, 0, p.base_config(), p.study(), recipes)
    assert all(m.config.lr == recipes[("synthetic", "transformer", m.config.size)]["lr"] for m in planned)


def test_probes_are_runs_of_their_own_with_a_full_cooldown_at_the_scored_length():
    p, mains = _mains()
    study = p.study()
    probes = design.probe_specs(mains[0], [(1e-2, 0.99)], study)
    (probe,) = probes
    assert probe.config.n_branches == 1 and probe.config.token_budget == 2 ** 17  # branch 4 of the 256 K run's 5
    assert probe.config.beta2 == 0.99 and probe.config.lr == 1e-2 and probe.kind == "lr"
    assert "-b0.99-" in probe.name


def test_every_size_spreads_d_per_n_over_16x_and_every_d_is_reached_by_every_size():
    p, mains = _mains()
    base = p.base_config()
    points: dict[str, set[int]] = {}
    for m in mains:
        ends = [pt.end * base.batch_tokens for pt in design.schedule_points(m.config)]
        # the points a fit uses: not the early ones (below the shortest budget, analysis.early_tokens)
        points.setdefault(m.config.size, set()).update(d for d in ends if d >= min(p.budgets))
    for size, ds in points.items():
        assert len(ds) >= 3 and max(ds) / min(ds) >= 16, size  # three D/N ratios at least, over 16x
    assert len(set.intersection(*points.values())) >= 4  # N varied at fixed D: every size at the same D


def test_budgets_must_be_whole_steps_and_increasing():
    with pytest.raises(ValueError, match="budgets must be None or increasing powers of two"):
        train.Params(budgets=[2 ** 20, 2 ** 18])
    with pytest.raises(ValueError, match="budgets: 512 tokens is not a whole number of steps"):
        _mains(budgets=(512, 2 ** 20, 2 ** 22))


def test_the_checks_start_from_the_middle_budget_or_the_shorter_of_two():
    p, mains = _mains(budgets=(2 ** 18, 2 ** 20, 2 ** 22), n_branches=4)
    ref = design.reference_runs(mains, p.study())
    assert {m.config.token_budget for m in ref} == {2 ** 20}
    assert len(ref) == len(mains) // 3
    p, mains = _mains()
    ref = design.reference_runs(mains, p.study())
    assert {m.config.token_budget for m in ref} == {2 ** 18}
    assert len(ref) == len(mains) // 2


def test_the_ablation_s_longer_arm_is_the_main_run_of_the_next_budget():
    p = train.Params(archs=["transformer", "lstm"], sizes=["micro", "tiny"], context_length=64, batch_size=4,
                     n_branches=3, budgets=[2 ** 14, 2 ** 16, 2 ** 18], extra_seed_sizes=["micro", "tiny"],
                     ablation={"sizes": ["tiny"], "seeds": 2}, schedule_check=None, repetition=None)
    mains, extra = p.specs(["synthetic"])
    names = {(s.dataset, s.name) for s in mains}
    longer = [s for s in extra if s.config.token_budget == 2 ** 18 and s.config.size == "tiny"
              and s.config.variant is None]
    assert len(longer) == 2 and all(s.kind == "main" and (s.dataset, s.name) in names for s in longer)


def _law_points(truth, noise, seed=0):
    """The default design's fitted points (five sizes, two budgets, five branches from the shorter budget on, two
    seeds) of a known law."""
    E, A, alpha, B, beta = truth
    rng = np.random.default_rng(seed)
    rows = []
    for n in (1_760, 3_792, 6_592, 25_472, 84_912):
        for budget in (2 ** 18, 2 ** 22):
            for s in range(2):
                for k in range(5):
                    d = budget / 2 ** (4 - k)
                    if d < 2 ** 18:
                        continue  # an early point (analysis.early_tokens)
                    loss = (E + A * n ** -alpha + B * d ** -beta) * math.exp(noise * rng.standard_normal())
                    rows.append((n, d, loss, f"{n}-{budget}-{s}"))
    N, D, L, run = (np.array(v) for v in zip(*rows))
    return Points(N.astype(float), D.astype(float), L.astype(float), run)


def test_the_joint_law_with_a_known_floor_is_recovered_on_this_design():
    # how often the intervals cover the truth is a property over many studies: benchmarks/coverage.py measures it
    truth = (0.98, 30.0, 0.5, 200.0, 0.4)
    for seed in range(2):
        pts = _law_points(truth, noise=0.003, seed=seed)
        fit = fit_joint_law(pts.N, pts.D, pts.L, groups=pts.run, strata=pts.strata, n_boot=50, seed=0)
        assert not fit.not_identified()
        assert abs(fit.E / truth[0] - 1) < 0.05 and abs(fit.alpha - truth[2]) < 0.03
        assert abs(fit.beta - truth[4]) < 0.02
        for name in ("E", "alpha", "beta"):
            lo, hi = getattr(fit, f"{name}_ci")
            assert lo <= getattr(fit, name) <= hi


def test_a_run_spec_keeps_its_beta2_in_its_config():
    spec = RunSpec("synthetic", TrainConfig(beta2=0.99))
    assert spec.config.beta2 == 0.99
    with pytest.raises(ValueError, match="beta2 must be in"):
        TrainConfig(beta2=1.0)


def test_the_train_stage_says_where_its_time_went_per_kind_of_run():
    study = {"lr_search": [{"searched": True, "grid": [{}] * 9, "rates": [1, 2, 3], "probe_time_s": 30.0},
                           {"searched": False, "rates": []}],
             "runs": [{"dataset": "d", "run": "a", "tokens_seen": 2 ** 20, "wall_time_s": 10.0},
                      {"dataset": "d", "run": "b", "tokens_seen": 2 ** 22, "wall_time_s": 50.0}],
             "check_runs": [{"dataset": "d", "run": "b", "kind": "main", "wall_time_s": 50.0},  # a main run: once
                            {"dataset": "d", "run": "c", "kind": "repeat", "wall_time_s": 10.0}]}
    rows = {r["kind"]: r for r in train.time_by_kind(study)}
    assert rows["rate probes"]["runs"] == 9 and rows["rate probes"]["seconds"] == 30.0
    assert rows["main runs, longest branch 4,194,304 tokens"]["seconds"] == 50.0
    assert rows["repetition experiment"]["runs"] == 1
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)
    assert sum(r["runs"] for r in rows.values()) == 9 + 3


def test_the_budget_rule_is_stated_with_the_spread_it_gives():
    p, _ = _mains()
    rule = train.budget_rule(p)
    assert "the same for every N" in rule and "262,144, 4,194,304" in rule and "over 16x at every N" in rule
    assert "D grows with N" in train.budget_rule(train.Params())
