"""The analyze stage on runs with a known law: the fits, the JSON contract, the floor check, the figures."""

import numpy as np
import pytest

from musicscale import analysis, plots
from musicscale.workdir import Workdir, read_json, write_json

SIZES = {"micro": 2e3, "tiny": 7e3, "small": 3e4, "medium": 9e4, "large": 2e5, "xl": 4.5e5}
TRUE = {"transformer": (6.0, 0.3, 1.2), "lstm": (5.0, 0.25, 1.3)}  # a, alpha, c


def law(arch, n, d):
    a, alpha, c = TRUE[arch]
    return c + a * n ** -alpha + 40.0 * d ** -0.35


def fake_run(arch, size, seed, budget, rng):
    """A WSD run: five cooldown branches at budget / 16 .. budget, losses from the known law with 0.2% noise."""
    n = SIZES[size]
    curve = []
    for k, tokens in enumerate(budget / 2 ** np.arange(4, -1, -1)):
        loss = law(arch, n, tokens) * (1 + 0.002 * rng.standard_normal())
        curve.append({"step": k, "tokens": int(tokens), "flops": float(6 * n * tokens), "val_loss": float(loss),
                      "test_loss": float(loss), "train_loss": float(loss)})
    test = curve[-1]["test_loss"]
    return {"dataset": "toy", "arch": arch, "size": size, "seed": seed, "run": f"{arch}-{size}-s{seed}-t{budget}",
            "params_non_embedding": int(n), "tokens_seen": budget, "flops": 6 * n * budget, "curve": curve,
            "test_loss": float(test), "test_bpc": float(test / np.log(2)), "val_loss": float(test),
            "data_fingerprint": "toy-data", "config": {"lr": 1e-3}}


@pytest.fixture
def toy_workdir(tmp_path):
    rng = np.random.default_rng(0)
    runs = [fake_run(a, s, 0, 10**6, rng) for a in TRUE for s in SIZES]
    runs += [fake_run(a, s, 1, 10**6, rng) for a in TRUE for s in ("micro", "tiny", "small")]
    wd = Workdir(tmp_path)
    write_json(wd.sweep_results("toy"), {"runs": runs})
    write_json(wd.tokens_meta("toy"), {"vocab_size": 40, "entropy_rate": {"test": 1.25}, "fingerprint": "toy-data"})
    return wd


def test_analysis_writes_the_contract_and_recovers_the_law(toy_workdir):
    results = analysis.analyze(toy_workdir.root, n_boot=200, seed=0)
    saved = read_json(toy_workdir.experiment_results)
    assert len(saved["runs"]) == len(results["runs"]) == 6 * 2 + 3 * 2
    toy = saved["datasets"]["toy"]
    assert toy["entropy_rate"] == 1.25 and [b["D"] for b in toy["budgets"]["lstm"]] == [10**6] * 6
    for arch, (_a, alpha, c) in TRUE.items():
        fit = toy["fits"][arch]
        for key in ("a", "alpha", "c", "a_ci", "alpha_ci", "c_ci", "r2", "extrapolation_rel_error"):
            assert key in fit, key
        # at a fixed budget the data term is a constant that the fit absorbs into c
        c_eff = c + 40.0 * 1e6 ** -0.35
        assert fit["alpha_ci"][0] <= alpha <= fit["alpha_ci"][1]
        assert fit["c"] == pytest.approx(c_eff, abs=0.05)
        assert fit["r2"] > 0.99 and fit["extrapolation_rel_error"] < 0.02
        joint = toy["joint"][arch]  # every branch of every run: 5 points per run
        assert len(joint["points"]["D"]) == 5 * (6 + 3) and joint["beta"] == pytest.approx(0.35, abs=0.1)
        # what the last doubling of D bought, from the law: 40 (5e5^-0.35 - 1e6^-0.35)
        gain = toy["last_doubling_gain"][arch]["xl"]
        assert gain == pytest.approx(40 * (5e5 ** -0.35 - 1e6 ** -0.35), abs=0.01)
        assert "alpha" in toy["compute"][arch] and len(toy["compute"][arch]["frontier_flops"]) >= 3
    # every toy loss is above H* = 1.25: nothing flagged
    assert toy["below_floor"] == []
    assert toy["comparison"]["largest"]["better"] in TRUE


def test_losses_below_the_exact_entropy_rate_are_flagged(toy_workdir):
    meta = {"vocab_size": 40, "entropy_rate": {"test": 2.5}, "fingerprint": "toy-data"}
    write_json(toy_workdir.tokens_meta("toy"), meta)
    with pytest.warns(RuntimeWarning, match="below the entropy floor"):
        results = analysis.analyze(toy_workdir.root, n_boot=0)
    assert len(results["datasets"]["toy"]["below_floor"]) > 0
    assert "WARNING" in analysis.floor_check(results).data


def test_figures_and_tables_render(toy_workdir, tmp_path):
    results = analysis.analyze(toy_workdir.root, n_boot=50)
    for make in (plots.scaling_laws, plots.architecture_comparison, plots.training_curves, plots.compute_frontier,
                 plots.joint_law):
        plots.save(make(results), tmp_path / f"{make.__name__}.png")
        assert (tmp_path / f"{make.__name__}.png").stat().st_size > 10_000
    table = analysis.fits_table(results).data
    assert len(table.splitlines()) == 2 + 2 and "toy" in table  # header, rule, one row per architecture
    values = analysis.findings(results)
    assert values["toy_transformer_alpha"] == results["datasets"]["toy"]["fits"]["transformer"]["alpha"]
    assert "power law holds" in values["toy_transformer_law_verdict"]


def test_missing_sweep_names_the_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_train.ipynb"):
        analysis.analyze(tmp_path)


def test_validity_figure_draws_when_no_model_has_checkable_bars(tmp_path):
    base = {"dataset": "toy", "share_parses": 0.0, "share_headers_ok": 0.0, "pooled_bar_accuracy": None,
            "share_novel": 1.0}
    summaries = [{**base, "arch": "reference", "params_non_embedding": None, "pooled_bar_accuracy": 0.98}]
    summaries += [{**base, "arch": a, "params_non_embedding": n} for a in ("transformer", "lstm") for n in (2e3, 2e4)]
    plots.save(plots.validity_vs_size(summaries), tmp_path / "validity.png")
    assert (tmp_path / "validity.png").stat().st_size > 10_000
