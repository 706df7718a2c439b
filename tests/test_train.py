import numpy as np
import pytest
import torch

from musicscale.sweep import load_tokens
from musicscale.tokenizer import unigram_entropy
from musicscale.train import TrainConfig, lr_at, train


def small_config(**kw) -> TrainConfig:
    base = dict(arch="transformer", size="tiny", token_budget=96 * 16 * 32, context_length=32, batch_size=16,
                n_evals=4, eval_tokens=2048, threads=1, device="cpu")
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_short_run_beats_the_unigram_entropy(tokenized_workdir, tmp_path, arch):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    result = train(small_config(arch=arch), tokens, meta["vocab_size"], tmp_path / arch)
    unigram = unigram_entropy(tokens["test"], meta["vocab_size"])
    # the Markov chain's structure is learnable: a trained model must be clearly better than unigram
    assert result["test_loss"] < unigram - 0.3, (result["test_loss"], unigram)
    assert result["best_val_loss"] == min(p["val_loss"] for p in result["curve"])
    assert [p["tokens"] for p in result["curve"]] == sorted(p["tokens"] for p in result["curve"])
    assert result["tokens_seen"] == 96 * 16 * 32
    assert result["flops"] == result["tokens_seen"] * result["flops_per_token"]
    assert result["test_bpc"] == pytest.approx(result["test_loss"] / np.log(2))
    assert (tmp_path / arch / "best.pt").exists() and (tmp_path / arch / "checkpoint.pt").exists()


def test_interrupted_run_resumes_to_the_same_result(tokenized_workdir, tmp_path):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    cfg = small_config(token_budget=40 * 16 * 32)
    full = train(cfg, tokens, meta["vocab_size"], tmp_path / "full")

    class Interrupt(Exception):
        pass

    def stop_at_second_eval(point):
        if point["step"] >= 20:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, tokens, meta["vocab_size"], tmp_path / "resumed", callback=stop_at_second_eval)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["step"] == 20
    resumed = train(cfg, tokens, meta["vocab_size"], tmp_path / "resumed")
    assert resumed["curve"] == full["curve"]
    assert resumed["test_loss"] == full["test_loss"]
    a = torch.load(tmp_path / "full" / "best.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "best.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_run_other_seed_other_run(tokenized_workdir, tmp_path):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    cfg = small_config(token_budget=8 * 16 * 32, n_evals=2)
    r1 = train(cfg, tokens, meta["vocab_size"], tmp_path / "a")
    r2 = train(cfg, tokens, meta["vocab_size"], tmp_path / "b")
    r3 = train(small_config(token_budget=8 * 16 * 32, n_evals=2, seed=1), tokens, meta["vocab_size"], tmp_path / "c")
    assert r1["curve"] == r2["curve"] and r1["test_loss"] == r2["test_loss"]
    assert r3["test_loss"] != r1["test_loss"]


def test_schedule_warms_up_then_decays():
    cfg = small_config(token_budget=100 * 16 * 32, lr=1e-3, warmup_frac=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] == pytest.approx(1e-4, rel=0.05)


@pytest.mark.parametrize("field,value,match", [
    ("token_budget", -5, "token_budget must be a positive integer"),
    ("batch_size", 0, "batch_size must be a positive integer"),
    ("token_budget", 100, "less than one batch"),
    ("device", "tpu", "device must be"),
    ("lr", -1.0, "lr must be positive"),
])
def test_bad_config_is_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        small_config(**{field: value})
