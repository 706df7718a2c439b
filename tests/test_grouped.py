"""Grouped training (musicscale.grouped): runs of one shape trained as one vmapped program give each member the
record it gets alone (rounding apart), with its own rate, seed, branches, checkpoints and resume; a family or a
mix of shapes that cannot be grouped is refused with the reason."""

import shutil
from dataclasses import replace

import pytest
import torch

from musicscale.grouped import group_key, train_group
from musicscale.sweep import RunSpec, groups, load_tokens, run_sweep
from musicscale.train import TrainConfig, train
from musicscale.workdir import Workdir

# the batched matrix products of vmap round differently from one run's on some CPUs: far below seed noise
TOL = 1e-4


def config(**kw) -> TrainConfig:
    base = dict(arch="transformer", size="micro", token_budget=32 * 8 * 32, context_length=32, batch_size=8,
                n_branches=2, eval_tokens=1024, threads=1, device="cpu")
    return TrainConfig(**{**base, **kw})


MEMBERS = [config(seed=0, lr=3e-3), config(seed=1, lr=3e-3), config(seed=0, lr=1e-2, train_branches=1)]


def losses(record: dict) -> list:
    return [[p[k] for k in ("train_loss", "val_loss", "test_loss")] for p in record["curve"]]


def assert_same_run(grouped: dict, solo: dict) -> None:
    for g, s in zip(losses(grouped), losses(solo), strict=True):
        assert g == pytest.approx(s, abs=TOL, nan_ok=True)
    for key in ("tokens_seen", "steps", "trained_tokens", "params_non_embedding", "flops", "epochs", "config"):
        assert grouped[key] == solo[key], key


def test_each_member_trains_as_it_does_alone(tokenized_workdir, tmp_path):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    solo = [train(c, tokens, meta["vocab_size"], tmp_path / f"solo{i}", log=None) for i, c in enumerate(MEMBERS[:2])]
    grouped = train_group(MEMBERS[:2], tokens, meta["vocab_size"], [tmp_path / "g0", tmp_path / "g1"], log=None)
    for g, s in zip(grouped, solo):
        assert_same_run(g, s)
    assert grouped[0]["test_loss"] != grouped[1]["test_loss"]  # two seeds: two runs, not one run twice
    weights = [torch.load(tmp_path / d / "model.pt")["model"] for d in ("g1", "solo1")]
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=TOL) for k in weights[1])


def test_a_probe_and_another_rate_keep_their_own_schedule(tokenized_workdir, tmp_path):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    probe = [MEMBERS[2], config(seed=1, lr=1e-3, train_branches=1)]
    grouped = train_group(probe, tokens, meta["vocab_size"], [tmp_path / "p0", tmp_path / "p1"], log=None)
    for i, cfg in enumerate(probe):
        solo = train(cfg, tokens, meta["vocab_size"], tmp_path / f"solo{i}", log=None)
        assert_same_run(grouped[i], solo)
        assert grouped[i]["test_loss"] is None  # a probe measures no test loss, grouped or not


def test_a_member_resumes_from_its_own_checkpoint(tokenized_workdir, tmp_path):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    vocab = meta["vocab_size"]

    def stop(entry):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # member 1 killed after its first point, alone
        train(MEMBERS[1], tokens, vocab, tmp_path / "g1", callback=stop, log=None)
    grouped = train_group(MEMBERS[:2], tokens, vocab, [tmp_path / "g0", tmp_path / "g1"], log=None)
    whole = train(MEMBERS[1], tokens, vocab, tmp_path / "whole", log=None)
    assert_same_run(grouped[1], whole)


def test_what_cannot_be_grouped_is_refused_with_the_reason(tokenized_workdir, tmp_path):
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    with pytest.raises(ValueError, match="no vmap batching rule"):
        train_group([config(arch="lstm", size="micro")], tokens, meta["vocab_size"], [tmp_path / "a"])
    with pytest.raises(ValueError, match="must share family, size"):
        train_group([config(), config(size="tiny")], tokens, meta["vocab_size"], [tmp_path / "a", tmp_path / "b"])
    assert group_key(config(seed=3, lr=1e-2)) == group_key(config())  # seed and rate are what members differ in


def test_a_sweep_groups_the_runs_that_share_a_shape_and_records_it(tokenized_workdir, tmp_path):
    specs = [RunSpec("markov", c) for c in (*MEMBERS, config(arch="lstm", size="micro"), config(seed=2, lr=1e-3))]
    parts = groups(specs, 2)
    assert [[s.name for s in g] for g in parts] == [[specs[0].name, specs[1].name], [specs[2].name],
                                                    [specs[3].name], [specs[4].name]]  # probe, LSTM, a third seed
    assert groups(specs, 1) == [[s] for s in specs]
    grouped = run_sweep(tokenized_workdir.root, specs[:2], log=None, index=False, group_size=2)
    assert [r["group_size"] for r in grouped] == [2, 2]
    alone = Workdir(tmp_path / "alone")
    (alone.root / "tokens").mkdir(parents=True)
    shutil.copytree(tokenized_workdir.tokens_dir("markov"), alone.tokens_dir("markov"))
    solo = run_sweep(alone.root, [replace(s) for s in specs[:2]], log=None, index=False)
    for g, s in zip(grouped, solo):
        assert_same_run(g, s)
        assert "group_size" not in s
    again = run_sweep(tokenized_workdir.root, specs[:2], log=None, index=False, group_size=2)
    assert [r["curve"] for r in again] == [r["curve"] for r in grouped]  # finished runs are reused, not retrained


def test_the_cpu_trains_each_run_alone_unless_asked(tmp_path):
    from musicscale.stages.train import Params

    assert Params.build(workdir=str(tmp_path), device="cpu").resolved_group_size() == 1  # grouping does not pay
    assert Params.build(workdir=str(tmp_path), device="cpu", group_size=4).resolved_group_size() == 4
    with pytest.raises(ValueError, match="group_size"):
        Params.build(workdir=str(tmp_path), group_size=0)


def test_a_bf16_run_stays_near_its_fp32_run_and_says_which_it_is(tokenized_workdir, tmp_path):
    """bf16 autocast (what a GPU run of a large size uses) rounds the forward to 8 bits of mantissa: the run's
    losses stay within 0.05 nats/char of fp32's here, and the record's config names its precision."""
    tokens, meta = load_tokens(tokenized_workdir, "markov")
    fp32 = train(MEMBERS[0], tokens, meta["vocab_size"], tmp_path / "fp32", log=None)
    bf16 = train(replace(MEMBERS[0], precision="bf16"), tokens, meta["vocab_size"], tmp_path / "bf16", log=None)
    assert bf16["config"]["precision"] == "bf16" and fp32["config"]["precision"] == "fp32"
    for a, b in zip(losses(bf16), losses(fp32)):
        assert a == pytest.approx(b, abs=0.05)
    assert bf16["test_loss"] != fp32["test_loss"]  # it did run in bf16
    with pytest.raises(ValueError, match="precision"):
        config(precision="fp16")


def test_every_run_of_the_stage_trains_in_its_precision(tmp_path):
    from musicscale.stages.train import Params

    for asked, expected in ((None, {"fp32"}), ("bf16", {"bf16"})):  # on the CPU, None is fp32 everywhere
        mains, extra = Params.build(workdir=str(tmp_path), device="cpu", precision=asked).specs(["markov"])
        assert {s.config.precision for s in mains + extra} == expected
