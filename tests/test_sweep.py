"""Sweeps and the study's design: finished runs reused, Dask runs equal in-process ones, the learning-rate search
brackets its best rate, budgets are powers of two, and the schedule check and the ablation are the study's own
or refused before any run."""

import pytest

from musicscale import design
from musicscale.stages import train
from musicscale.sweep import collect_results, grid, run_sweep
from musicscale.train import TrainConfig
from musicscale.workdir import read_json


def test_sweep_skips_finished_runs(tokenized_workdir, monkeypatch):
    base = TrainConfig(token_budget=8 * 8 * 16, context_length=16, batch_size=8, n_branches=2, eval_tokens=512,
                       threads=1, device="cpu")
    specs = grid(["markov"], ["transformer", "lstm"], ["micro"], [0], base)
    first = run_sweep(tokenized_workdir.root, specs, log=None)
    assert [r["run"] for r in first] == ["transformer-micro-s0-t1024", "lstm-micro-s0-t1024"]
    saved = read_json(tokenized_workdir.sweep_results("markov"))
    assert len(saved["runs"]) == 2

    calls = []
    import musicscale.sweep as sweep_module

    real = sweep_module.run_one
    monkeypatch.setattr(sweep_module, "run_one", lambda *a, **k: calls.append(a[1].name) or real(*a, **k))
    more = grid(["markov"], ["transformer", "lstm"], ["micro"], [0, 1], base)
    second = run_sweep(tokenized_workdir.root, more, log=None)
    assert calls == ["transformer-micro-s1-t1024", "lstm-micro-s1-t1024"]  # only the new seed trained
    assert second[0] == first[0]
    assert len(collect_results(tokenized_workdir.root, "markov")) == 4

    # a changed configuration is not mistaken for a finished run
    calls.clear()
    run_sweep(tokenized_workdir.root, grid(["markov"], ["lstm"], ["micro"], [0], base.__class__(
        **{**base.__dict__, "lr": 1e-3})), log=None)
    assert calls == ["lstm-micro-s0-t1024"]


def test_grid_rejects_unknown_names():
    with pytest.raises(ValueError, match="sizes: unknown transformer size 'giant'"):
        grid(["d"], ["transformer"], ["giant"], [0], TrainConfig())


def test_dask_cluster_gives_the_same_runs_as_in_process(tokenized_workdir, tmp_path):
    import shutil

    from musicscale.workdir import Workdir

    other = Workdir(tmp_path / "other")
    shutil.copytree(tokenized_workdir.tokens_dir("markov"), other.tokens_dir("markov"))
    kwargs = dict(archs=["transformer", "lstm"], sizes=["micro"], context_length=16, batch_size=8, n_branches=2,
                  eval_tokens=512, device="cpu", log=None, min_steps=8, max_steps=8, lr_factors=[0.5, 1.0, 2.0],
                  lr_probe_branches=1, extra_seeds=0, schedule_check=None)
    local = train.run(tokenized_workdir.root, **kwargs)["runs"]
    on_dask = train.run(other.root, n_workers=2, **kwargs)["runs"]
    assert [r["run"] for r in on_dask] == [r["run"] for r in local]
    assert [r["test_loss"] for r in on_dask] == [r["test_loss"] for r in local]  # one thread each: identical
    assert len(read_json(other.sweep_results("markov"))["runs"]) == 2


def test_learning_rate_search_extends_the_grid_until_it_brackets_the_best_rate(tokenized_workdir):
    study = train.Params(min_steps=8, max_steps=8, lr_factors=[1.0, 2.0, 4.0], lr_probe_branches=1,
                         lr_max_extensions=8).study()
    base = TrainConfig(context_length=16, batch_size=8, n_branches=2, eval_tokens=512, threads=1, device="cpu")
    mains = design.plan_runs(["markov"], ["lstm"], ["micro"], 0, base, study)
    lines: list[str] = []
    (found,) = design.lr_search(tokenized_workdir, mains, study, log=lines.append).values()
    # rates far below the lstm's optimum: the search extends upward until a worse rate lies above the best
    assert found["bracketed"] and len(found["rates"]) > 3 and found["rates"] == sorted(found["rates"])
    best = found["rates"].index(found["chosen"])
    assert 0 < best < len(found["rates"]) - 1 and found["val_loss"][best] == min(found["val_loss"])
    assert any("high end of the grid" in line for line in lines)


def test_choose_rate_never_picks_a_diverged_probe():
    assert design.choose_rate([1e-3, 1e-2, 1e-1], [2.0, 1.5, float("nan")]) == (1e-2, "inside")
    assert design.choose_rate([1e-3, 1e-2, 1e-1], [1.0, 1.5, 2.0]) == (1e-3, "low")


def test_budgets_are_powers_of_two_steps_within_bounds():
    budget = design.token_budget("transformer", "small", 64, 16, tokens_per_param=30, min_steps=32, max_steps=1024)
    assert budget == 1024 * 64 * 16  # 30 x 25,472 / 1,024 tokens per step = 746 -> the nearest power of two
    assert design.token_budget("transformer", "micro", 64, 16, tokens_per_param=30, min_steps=32,
                              max_steps=1024) == 64 * 64 * 16


def test_schedule_check_keys_are_checked():
    with pytest.raises(ValueError, match=r"schedule_check must be None or a dict with keys among \['arch'"):
        train.Params(schedule_check={"dataset": "synthetic", "arch": "lstm", "sise": "tiny"})


def _mains(datasets, archs=("transformer", "lstm")):
    p = train.Params(archs=list(archs), sizes=["micro", "tiny", "small"], extra_seed_sizes=["tiny"])
    return design.plan_runs(datasets, p.archs, p.sizes, 0, p.base_config(), p.study())


def test_the_schedule_check_left_out_is_the_study_s_own():
    # the synthetic dataset where the study has it, the first family, its smallest size with extra seeds
    assert {k: v for k, v in design.resolve_schedule_check(_mains(["music21", "synthetic"]), {}, 0).items()
            if k in ("dataset", "arch", "size")} == {"dataset": "synthetic", "arch": "transformer", "size": "tiny"}
    # a user's corpus alone (no synthetic data), one family: its own
    own = design.resolve_schedule_check(_mains(["irish"], ["lstm"]), {"dataset": None, "seeds": 3}, 0)
    assert (own["dataset"], own["arch"], own["size"], own["seeds"]) == ("irish", "lstm", "tiny", 3)
    specs = design.schedule_check_specs(_mains(["irish"], ["lstm"]), {}, 0)
    assert {s.dataset for s in specs} == {"irish"} and {s.config.size for s in specs} == {"tiny"}


def test_a_schedule_check_named_outside_the_study_is_refused_before_any_run():
    with pytest.raises(ValueError, match=r"schedule_check: dataset 'synthetic' is not one of this study's "
                                         r"\(\['irish'\]\)"):
        design.resolve_schedule_check(_mains(["irish"]), {"dataset": "synthetic", "arch": "lstm"}, 0)
    with pytest.raises(ValueError, match=r"schedule_check: size 'medium' is not one of this study's lstm sizes"):
        design.resolve_schedule_check(_mains(["irish"]), {"arch": "lstm", "size": "medium"}, 0)


def test_the_ablation_changes_one_thing_per_arm_and_keeps_the_seeds():
    mains = design.plan_runs(["music21", "synthetic"], ["transformer", "lstm"], ["micro", "tiny"], 0,
                            train.Params().base_config(), train.Params().study(),
                            {(d, a, s): {"lr": 1e-3, "beta2": 0.99} for d in ("music21", "synthetic")
                             for a in ("transformer", "lstm") for s in ("micro", "tiny")})
    arms = design.ablation_arms(mains, {"sizes": ["micro", "tiny"], "seeds": 3}, 0)
    assert [a.name for a in arms if a.size == "tiny"] == ["baseline", "budget ×4", "rate ×0.5", "rate ×2",
                                                         "learned-positions", "no-positions", "one-head"]
    base = {s.config.seed: s.config for a in arms if (a.size, a.name) == ("tiny", "baseline") for s in a.specs}
    assert sorted(base) == [0, 1, 2]
    for a in arms:
        assert {s.dataset for s in a.specs} == {"synthetic"} and {s.config.arch for s in a.specs} == {"transformer"}
        assert sorted(s.config.seed for s in a.specs) == [0, 1, 2]
        for spec in a.specs:
            ref = base[spec.config.seed] if a.size == "tiny" else None
            if ref is None:
                continue
            changed = {k for k, v in vars(spec.config).items() if getattr(ref, k) != v}
            assert changed == {"baseline": set(), "budget ×4": {"token_budget"}, "rate ×0.5": {"lr"},
                               "rate ×2": {"lr"}, "learned-positions": {"variant"}, "no-positions": {"variant"},
                               "one-head": {"variant"}}[a.name]
    names = [s.name for a in arms for s in a.specs]
    assert len(names) == len(set(names))  # every arm's runs have their own folders
    # at micro (d=8, 2 heads) one head is a change; a variant that changes nothing would be left out
    assert "one-head" in [a.name for a in arms if a.size == "micro"]


def test_an_ablation_named_outside_the_study_or_misspelt_is_refused_before_any_run():
    with pytest.raises(ValueError, match=r"ablation must be None or a dict with keys among"):
        train.Params(ablation={"size": ["tiny"]})
    with pytest.raises(ValueError, match=r"ablation\['seeds'\]"):
        train.Params(ablation={"seeds": 1})
    with pytest.raises(ValueError, match=r"ablation: variant 'rotary' is not one of the transformer's"):
        design.ablation_arms(_mains(["irish"]), {"variants": ["rotary"]}, 0)
    with pytest.raises(ValueError, match=r"ablation: size 'medium' is not one of this study's transformer sizes"):
        design.ablation_arms(_mains(["irish"]), {"sizes": ["medium"]}, 0)
    assert design.ablation_arms(_mains(["irish"], ["lstm"]), {}, 0) == []  # no family with variants: no ablation
