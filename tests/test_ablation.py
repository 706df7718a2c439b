"""The ablation's comparison of arms: differences from the baseline with pooled-variance t intervals, verdicts only
where the interval excludes 0, and the share of the gap to the other family that an arm closes."""

from __future__ import annotations

import numpy as np
import pytest

from musicscale import ablation


def _records(shifts: dict[str, float], seeds: int = 3, sd: float = 0.002, size: str = "tiny"):
    rng = np.random.default_rng(0)
    return [{"arm": arm, "what": arm, "size": size, "params_non_embedding": 6000, "tokens_seen": 10_000,
             "test_loss": 2.0 + shift + rng.normal(0, sd)} for arm, shift in shifts.items() for _ in range(seeds)]


def test_an_arm_that_lowers_the_loss_beyond_noise_says_so_and_how_much_gap_it_closes():
    rows = ablation.compare_arms(_records({"baseline": 0.0, "budget ×4": -0.1, "one-head": 0.0005}),
                                 other_law=lambda N, D: 1.8)
    by = {r.arm: r for r in rows}
    assert by["budget ×4"].difference == pytest.approx(-0.1, abs=0.01)
    lo, hi = by["budget ×4"].ci
    assert lo < -0.1 < hi < 0 and by["budget ×4"].verdict.startswith("lower by")
    assert by["baseline"].gap == pytest.approx(0.2, abs=0.01) and by["budget ×4"].gap == pytest.approx(0.1, abs=0.01)
    assert by["budget ×4"].closed == pytest.approx(0.5, abs=0.05)
    assert by["one-head"].verdict == "within seed noise"
    s = ablation.summary(rows, "transformer", "lstm")
    assert s["best"] == {"tiny": "budget ×4"}
    text = ablation.overall(s, str.upper)
    assert "budget ×4 helps most" in text and "closing 50% of the gap to the LSTM" in text


def test_nothing_beyond_noise_leaves_the_gap_standing():
    rows = ablation.compare_arms(_records({"baseline": 0.0, "rate ×2": 0.001, "no-positions": -0.001}, sd=0.01),
                                 other_law=lambda N, D: 1.5)
    s = ablation.summary(rows, "transformer", "lstm")
    assert s["best"] == {"tiny": None}
    assert ablation.overall(s, str).startswith("no change tried lowers the transformer's loss beyond seed noise")
    text = ablation.sentence(s, str)
    assert "nats/char above the lstm's law" in text
    assert "rate ×2 " in text and "(closes" not in text  # no share of the gap where nothing is beyond noise


def test_the_interval_pools_the_seed_variance_of_every_arm():
    recs = _records({"baseline": 0.0, "a": 0.05, "b": 0.0}, seeds=2, sd=0.004)
    rows = {r.arm: r for r in ablation.compare_arms(recs)}
    losses = {a: np.array([r["test_loss"] for r in recs if r["arm"] == a]) for a in ("baseline", "a", "b")}
    pooled = np.sqrt(sum(np.sum((v - v.mean()) ** 2) for v in losses.values()) / 3)  # 3 arms x (2 - 1) dof
    from scipy import stats

    half = stats.t.ppf(0.975, 3) * pooled * np.sqrt(1 / 2 + 1 / 2)
    assert rows["a"].ci == pytest.approx((rows["a"].difference - half, rows["a"].difference + half), rel=1e-9)
    assert rows["baseline"].ci is None and rows["baseline"].gap is None  # no other family's law given


def test_an_arm_that_reads_more_tokens_is_held_against_the_other_family_reading_as_many():
    recs = _records({"baseline": 0.0, "budget ×4": -0.1})
    for r in recs:
        r["tokens_seen"] *= 4 if r["arm"] == "budget ×4" else 1
    law = lambda N, D: 1.8 - 0.05 * (D > 10_000)  # noqa: E731 (the other family gains 0.05 from the longer budget)
    by = {r.arm: r for r in ablation.compare_arms(recs, other_law=law)}
    assert by["budget ×4"].gap == pytest.approx(0.15, abs=0.01)  # 1.9 − 1.75, not 1.9 − 1.8
    assert by["budget ×4"].closed == pytest.approx(0.25, abs=0.05)
