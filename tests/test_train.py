"""The training loop: it learns, its WSD and cosine schedules are what they say, a probe is its full run's prefix,
an interrupted run resumes to the same result, a seed decides a run, and a bad configuration is named."""

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from musicscale.schedule import cooldown_lr, lr_at, schedule_points, warmup_steps
from musicscale.sweep import load_tokens
from musicscale.tokenizer import unigram_entropy
from musicscale.train import TrainConfig, same_config, train


def small_config(**kw) -> TrainConfig:
    base = dict(arch="transformer", size="tiny", token_budget=64 * 16 * 32, context_length=32, batch_size=16,
                n_branches=3, eval_tokens=2048, threads=1, device="cpu")
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_short_run_beats_the_unigram_entropy(tokenized_workdir, tmp_path, arch):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    result = train(small_config(arch=arch, lr=1e-2), tokens, meta["vocab_size"], tmp_path / arch)
    unigram = unigram_entropy(tokens["test"], meta["vocab_size"])
    # the Markov chain's structure is learnable: a trained model must be clearly better than unigram
    assert result["test_loss"] < unigram - 0.3, (result["test_loss"], unigram)
    assert [p["tokens"] for p in result["curve"]] == [16 * 16 * 32, 32 * 16 * 32, 64 * 16 * 32]
    assert result["tokens_seen"] == 64 * 16 * 32 and result["test_loss"] == result["curve"][-1]["test_loss"]
    assert result["flops"] == result["tokens_seen"] * result["flops_per_token"]
    # the trunk runs to 0.8 of the longest branch, and every branch cools down on its own
    assert result["trained_tokens"] == (51 + 3 + 6 + 13) * 16 * 32
    assert result["test_bpc"] == pytest.approx(result["test_loss"] / np.log(2))
    assert (tmp_path / arch / "model.pt").exists() and (tmp_path / arch / "checkpoint.pt").exists()


def test_wsd_schedule_points_and_rates():
    cfg = small_config(token_budget=256 * 16 * 32, n_branches=6, lr=1e-3)
    points = schedule_points(cfg)
    assert [p.end for p in points] == [8, 16, 32, 64, 128, 256]
    assert [p.cooldown for p in points] == [2, 3, 6, 13, 26, 51]
    assert warmup_steps(cfg) == 1 and lr_at(0, cfg) == pytest.approx(1e-3)
    assert all(lr_at(s, cfg) == pytest.approx(1e-3) for s in range(1, 256))  # the trunk never decays
    last = points[-1]
    rates = [cooldown_lr(s, last, cfg) for s in range(last.fork, last.end)]
    assert rates[0] == pytest.approx(1e-3) and all(a > b for a, b in zip(rates, rates[1:]))
    assert rates[-1] == pytest.approx(1e-3 * (1 - math.sqrt(50 / 51)))  # 1 - sqrt, close to zero at the end
    with pytest.raises(ValueError, match="too short for 6 branches"):
        small_config(token_budget=16 * 16 * 32, n_branches=6)


def test_cosine_schedule_warms_up_then_decays():
    cfg = small_config(token_budget=100 * 16 * 32, lr=1e-3, warmup_frac=0.1, schedule="cosine", n_evals=4)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] == pytest.approx(1e-4, rel=0.05)
    assert [p.end for p in schedule_points(cfg)] == [25, 50, 75, 100]


def test_a_probe_is_the_prefix_of_its_full_run(tokenized_workdir, tmp_path):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    full = train(small_config(arch="lstm"), tokens, meta["vocab_size"], tmp_path / "full")
    probe = train(small_config(arch="lstm", train_branches=2), tokens, meta["vocab_size"], tmp_path / "probe")
    # bit-identical: the probe runs the same steps as the full run's start, in the same process and threads
    assert [p["val_loss"] for p in probe["curve"]] == [p["val_loss"] for p in full["curve"][:2]]
    assert all(p["test_loss"] is None for p in probe["curve"])  # a probe never measures the test split
    assert probe["test_loss"] is None and probe["val_loss"] == full["curve"][1]["val_loss"]


def test_interrupted_run_resumes_to_the_same_result(tokenized_workdir, tmp_path):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    cfg = small_config()
    full = train(cfg, tokens, meta["vocab_size"], tmp_path / "full")

    class Interrupt(Exception):
        pass

    def stop_after_second_branch(point):
        if point["step"] >= 32:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, tokens, meta["vocab_size"], tmp_path / "resumed", callback=stop_after_second_branch)
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert len(state["curve"]) == 2 and state["step"] == 32 - 6  # the trunk stands at the second fork
    resumed = train(cfg, tokens, meta["vocab_size"], tmp_path / "resumed")
    # bit-identical: resuming restores the exact state, so the run is the same computation as the uninterrupted one
    assert resumed["curve"] == full["curve"]
    assert resumed["test_loss"] == full["test_loss"]
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_run_other_seed_other_run(tokenized_workdir, tmp_path):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    cfg = small_config(token_budget=16 * 16 * 32, n_branches=2)
    r1 = train(cfg, tokens, meta["vocab_size"], tmp_path / "a")
    r2 = train(cfg, tokens, meta["vocab_size"], tmp_path / "b")
    r3 = train(small_config(token_budget=16 * 16 * 32, n_branches=2, seed=1), tokens, meta["vocab_size"],
               tmp_path / "c")
    assert r1["curve"] == r2["curve"] and r1["test_loss"] == r2["test_loss"]  # the same computation twice
    assert r3["test_loss"] != r1["test_loss"]


@pytest.mark.parametrize("field,value,match", [
    ("token_budget", -5, "token_budget must be a positive integer"),
    ("batch_size", 0, "batch_size must be a positive integer"),
    ("token_budget", 100, "less than one batch"),
    ("device", "tpu", "device must be"),
    ("lr", -1.0, "lr must be positive"),
    ("schedule", "linear", "schedule must be"),
    ("train_branches", 7, "train_branches must be"),
    ("variant", "rotary", "variant: transformer has no variant 'rotary'"),
])
def test_bad_config_is_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        small_config(**{field: value})


def test_a_record_made_before_a_config_field_existed_describes_the_run_with_its_default():
    """A result.json written before ``variant`` existed was made with no variant: it is the same run (and reused),
    while a record of another variant is not."""
    cfg = small_config()
    old = {k: v for k, v in asdict(cfg).items() if k != "variant"}
    assert same_config(old, cfg)
    assert not same_config({**old, "variant": "one-head"}, cfg)
    assert not same_config({**old, "seed": cfg.seed + 1}, cfg)
