"""The analyze stage on runs with a known law: the fits, the JSON contract, the floor check, the figures."""

import re

import numpy as np
import pytest

from musicscale import analysis, plots
from musicscale.findings import findings
from musicscale.stages import analyze
from musicscale.workdir import Workdir, read_json, write_json

SIZES = {"micro": 2e3, "tiny": 7e3, "small": 3e4, "medium": 9e4, "large": 2e5, "xl": 4.5e5}
TRUE = {"transformer": (6.0, 0.3, 1.2), "lstm": (5.0, 0.25, 1.3)}  # a, alpha, c


def law(arch, n, d):
    a, alpha, c = TRUE[arch]
    return c + a * n ** -alpha + 40.0 * d ** -0.35


def fake_run(arch, size, seed, budget, rng):
    """A WSD run: seven cooldown branches at budget / 8 .. budget (ratio sqrt 2: none early, and three at or below
    a quarter of the budget for the held-out check in D), losses from the known law with 0.2% noise."""
    n = SIZES[size]
    curve = []
    for k, tokens in enumerate(budget / 2 ** (np.arange(6, -1, -1) / 2)):
        loss = law(arch, n, tokens) * (1 + 0.002 * rng.standard_normal())
        curve.append({"step": k, "tokens": int(tokens), "flops": float(6 * n * tokens), "val_loss": float(loss),
                      "test_loss": float(loss), "train_loss": float(loss)})
    test = curve[-1]["test_loss"]
    return {"dataset": "toy", "arch": arch, "size": size, "seed": seed, "run": f"{arch}-{size}-s{seed}-t{budget}",
            "params_non_embedding": int(n), "params_total": int(n) + 2000, "flops_per_token": 6 * n,
            "tokens_seen": budget, "flops": 6 * n * budget, "curve": curve,
            "test_loss": float(test), "test_bpc": float(test / np.log(2)), "val_loss": float(test),
            "data_fingerprint": "toy-data", "config": {"lr": 1e-3}}


@pytest.fixture
def toy_workdir(tmp_path):
    rng = np.random.default_rng(0)
    runs = [fake_run(a, s, 0, 10**6, rng) for a in TRUE for s in SIZES]
    runs += [fake_run(a, s, k, 10**6, rng) for a in TRUE for s in ("micro", "tiny", "small", "xl") for k in (1, 2)]
    wd = Workdir(tmp_path)
    write_json(wd.sweep_results("toy"), {"runs": runs})
    write_json(wd.tokens_meta("toy"), {"vocab_size": 40, "entropy_rate": {"test": 1.25}, "fingerprint": "toy-data"})
    return wd


def test_analysis_writes_the_contract_and_recovers_the_law(toy_workdir):
    results = analyze.run(toy_workdir.root, n_boot=200, seed=0)
    saved = read_json(toy_workdir.experiment_results)
    assert len(saved["runs"]) == len(results["runs"]) == 6 * 2 + 4 * 2 * 2
    toy = saved["datasets"]["toy"]
    assert toy["entropy_rate"] == 1.25 and [b["D"] for b in toy["budgets"]["lstm"]] == [10**6] * 6
    for arch, (_a, alpha, c) in TRUE.items():
        joint = toy["joint"][arch]  # every branch of every run: 7 points per run, resampled by run
        assert len(joint["points"]["D"]) == 7 * 14 and joint["n_groups"] == 14
        assert toy["fit_points"][arch] == {"all": 7 * 14, "early": 0, "below_tokens": 0}  # one budget: none early
        for key, true in (("alpha", alpha), ("beta", 0.35), ("E", c)):
            assert joint[f"{key}_ci"][0] <= true <= joint[f"{key}_ci"][1], (arch, key)
        assert joint["n_boot"] + joint["n_failed"] == 200 and joint["common_D"] == 10**6
        assert joint["optimal_exponents"]["a"] == pytest.approx(0.35 / (alpha + 0.35), abs=0.1)
        # C = 6 N D exactly here, so the numerical exponent with "own" FLOPs is the closed form
        assert joint["optimal_exponents"]["a_own_flops"] == pytest.approx(joint["optimal_exponents"]["a"], abs=0.02)
        infinite = {row["size"]: row["L"] for row in joint["loss_at_infinite_D"]}
        assert infinite["xl"] == pytest.approx(c + TRUE[arch][0] * SIZES["xl"] ** -alpha, abs=0.02)
        # held out: N >= 10x the fitted sizes (micro..small -> xl) and D = 4x the longest fitted branch
        for axis, fitted, held in (("N", 3, [SIZES["xl"]]), ("D", 3, [10**6])):
            h = toy["holdout"][arch][axis]
            assert len(h["fitted"]) == fitted and h["held_out"] == held
            assert h["extrapolation"] >= {"N": 10, "D": 4}[axis]
            assert h["law_error"] < min(h["flat_error"], h["loglinear_error"])
            # in D the law is fitted on three lengths within 2x of each other: beyond noise only in N
            assert h["law_better"] or axis == "D"
            assert h["seed_sd"] is not None and h["n_seeds"] == 3
        truth = toy["ground_truth"][arch]
        assert truth["H"] == 1.25 and truth["fixed_floor"]["E_fixed"]
        assert [row["variant"] for row in toy["sensitivity"][arch]][1:] == [
            "total parameters (embeddings included)", "Huber δ = 0.01", "Huber δ = 0.1", "without the smallest size"]
        single = toy["single_budget"][arch]  # at the common D, the data term is a constant absorbed into c
        assert single["D"] == 10**6 and single["c"] == pytest.approx(c + 40.0 * 1e6 ** -0.35, abs=0.05)
        gain = toy["last_doubling_gain"][arch]["xl"]  # what the last doubling of D bought: from the law
        assert gain == pytest.approx(40 * (5e5 ** -0.35 - 1e6 ** -0.35), abs=0.01)
        assert "alpha" in toy["compute"][arch] and len(toy["compute"][arch]["frontier_flops"]) >= 3
    # every toy loss is above H* = 1.25: nothing flagged
    assert toy["below_floor"] == []
    gap = {row["where"]: row for row in toy["architecture_gap"]["rows"]}
    assert set(gap) == {"smallest N", "largest N", "smallest common C", "largest common C"}
    for where in ("smallest N", "largest N"):  # the toy Transformer is lower at every N
        n = gap[where]["at"]
        true = (1.2 + 6.0 * n ** -0.3) - (1.3 + 5.0 * n ** -0.25)
        assert gap[where]["ci"][0] <= true <= gap[where]["ci"][1] < 0
        assert gap[where]["verdict"].startswith("the transformer is lower")


def test_losses_below_the_exact_entropy_rate_are_flagged(toy_workdir):
    meta = {"vocab_size": 40, "entropy_rate": {"test": 2.5}, "fingerprint": "toy-data"}
    write_json(toy_workdir.tokens_meta("toy"), meta)
    with pytest.warns(RuntimeWarning, match="below the entropy floor"):
        results = analyze.run(toy_workdir.root, n_boot=0)
    assert len(results["datasets"]["toy"]["below_floor"]) > 0
    assert "WARNING" in analyze.floor_check(results).data


def test_figures_and_tables_render(toy_workdir, tmp_path):
    results = analyze.run(toy_workdir.root, n_boot=50, n_workers=1)
    for make in (plots.scaling_laws, plots.architecture_comparison, plots.training_curves, plots.compute_frontier,
                 plots.joint_law, plots.holdout):
        plots.save(make(results), tmp_path / f"{make.__name__}.png")
        assert (tmp_path / f"{make.__name__}.png").stat().st_size > 10_000
    for table, rows in ((analyze.joint_table, 2), (analyze.holdout_table, 4), (analyze.ground_truth_table, 2),
                        (analyze.gap_table, 4), (analyze.sensitivity_table, 10), (analyze.single_budget_table, 2),
                        (analyze.compute_table, 2)):
        text = table(results).data
        assert len(text.splitlines()) == 2 + rows and "toy" in text, table.__name__  # header, rule, rows
    values = findings(results)
    alpha = results["datasets"]["toy"]["joint"]["transformer"]["alpha"]
    assert f"α = {alpha:.3f} [" in values["toy_transformer_joint_law"]  # the value with its interval
    assert "the law predicts better" in values["toy_transformer_holdout_N"]
    assert "at the largest N, the transformer is lower" in values["toy_gap"]
    assert re.search(r"its interval (covers|does not cover) H\*|cannot be held against H\*",
                     values["toy_transformer_gt_floor"])


def test_missing_sweep_names_the_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_train.ipynb"):
        analyze.run(tmp_path)


def test_validity_figure_draws_when_no_model_has_checkable_bars(tmp_path):
    base = {"dataset": "toy", "share_parses": 0.0, "share_headers_ok": 0.0, "pooled_bar_accuracy": None,
            "share_novel": 1.0}
    summaries = [{**base, "arch": "reference", "params_non_embedding": None, "pooled_bar_accuracy": 0.98}]
    summaries += [{**base, "arch": a, "params_non_embedding": n} for a in ("transformer", "lstm") for n in (2e3, 2e4)]
    plots.save(plots.validity_vs_size(summaries), tmp_path / "validity.png")
    assert (tmp_path / "validity.png").stat().st_size > 10_000


def test_figure_paths_come_from_the_workdir(tmp_path):
    wd = Workdir(tmp_path)
    assert wd.figure("holdout") == tmp_path / "results" / "holdout.png"
    with pytest.raises(ValueError, match="unknown figure 'nope'"):
        wd.figure("nope")


def test_every_figure_of_the_report_is_drawn_by_its_namesake(tmp_path):
    from musicscale.workdir import FIGURES

    assert all(callable(getattr(plots, name, None)) for name in FIGURES)
    with pytest.raises(ValueError, match="unknown figure 'pie'"):
        plots.draw("pie", {}, tmp_path)


def test_early_points_are_those_before_the_shortest_budget_of_a_study_with_several():
    def run(size, budget):
        return {"run": f"{size}-{budget}", "size": size, "seed": 0, "params_non_embedding": 10, "tokens_seen": budget,
                "curve": [{"tokens": budget // k, "flops": 1, "val_loss": 1.0, "test_loss": 1.0} for k in (4, 2, 1)]}

    study = [run(s, b) for s in ("a", "b") for b in (100, 400)]
    assert analysis.early_tokens(study) == 100
    points = analysis.cooldown_points(study)
    # a point at 25 or 50 tokens is early whether its run goes on to 100 or to 400 tokens
    assert sorted({p["D"] for p in points if p["early"]}) == [25, 50]
    assert sorted({p["D"] for p in points if not p["early"]}) == [100, 200, 400]
    # one run per size: its branches are all the D there is, and none is early
    assert analysis.early_tokens([run("a", 100), run("b", 400)]) == 0
