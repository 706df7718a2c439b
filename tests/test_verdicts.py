"""The verdict table's cells and the findings' headings: a verdict word only where an interval decides it."""

from musicscale import verdicts
from musicscale.verdicts import Outcome


def check(lo, hi):
    return {"advantage_ci": [lo, hi]}


def test_a_held_out_check_holds_fails_or_is_within_noise_by_its_interval():
    assert verdicts.holdout_outcome(check(0.01, 0.05)) is Outcome.HOLDS
    assert verdicts.holdout_outcome(check(-0.05, -0.01)) is Outcome.FAILS
    assert verdicts.holdout_outcome(check(-0.01, 0.05)) is Outcome.EVEN
    assert verdicts.holdout_outcome(check(0.02, 0.02)) is Outcome.EVEN  # an interval of no width decides nothing
    assert verdicts.holdout_outcome({"error": "too few sizes"}) is Outcome.NOT_RUN
    assert verdicts.holdout_cell({"N": check(-0.05, -0.01), "D": check(0.01, 0.05)}) == "N: fails · D: holds"
    assert verdicts.holdout_cell({}) == "not run"


def test_the_floor_holds_where_its_interval_covers_the_known_entropy():
    ds = {"entropy_rate": 0.98, "ground_truth": {
        "lstm": {"E_rel_error": -0.009, "covers": True},
        "transformer": {"E_rel_error": None, "covers": None}}}
    assert verdicts.floor_cell(ds, "lstm") == "holds (-0.9% from H*, interval covers H*)"
    assert verdicts.floor_cell(ds, "transformer") == "not identified"
    ds["ground_truth"]["lstm"] = {"E_rel_error": -0.13, "covers": False}
    assert verdicts.floor_cell(ds, "lstm").startswith("fails (-13.0% from H*")
    assert verdicts.floor_cell({"entropy_rate": None}, "lstm") == "no known floor"


def test_a_family_is_lower_only_where_the_difference_excludes_zero():
    gap = {"archs": ["transformer", "lstm"], "rows": [
        {"where": "largest N", "difference": 0.108, "ci": [0.05, 0.2]},
        {"where": "largest common C", "difference": -0.01, "ci": [-0.07, 0.001]}]}
    assert verdicts.gap_cell(gap, "largest N") == "LSTM lower by 0.108"
    assert verdicts.gap_cell(gap, "largest common C") == "within noise"
    assert verdicts.gap_cell(None, "largest N") == "not compared"
    gap["rows"][0] = {"where": "largest N", "difference": -0.2, "ci": [-0.3, -0.1]}
    assert verdicts.gap_cell(gap, "largest N") == "Transformer lower by 0.200"
    heading = verdicts.gap_heading({"architecture_gap": gap})
    assert heading == "At the largest N, the Transformer is lower by 0.200 nats/char"


def test_the_held_out_heading_counts_the_checks_that_ran():
    ds = {"holdout": {"lstm": {"N": check(0.01, 0.05), "D": check(-0.05, -0.01)},
                      "transformer": {"N": {"error": "too few sizes"}, "D": check(-0.01, 0.05)}}}
    assert verdicts.holdout_heading(ds) == ("The law beats the naive baselines in 1 of 3 held-out checks; a baseline "
                                            "is better in 1")
    assert verdicts.holdout_heading({"holdout": {}}) == "No held-out check could run"


def test_the_largest_model_is_the_largest_size_at_its_longest_budget():
    summaries = [{"dataset": "d", "arch": "lstm", "run": f"lstm-{size}-s0-t{budget}", "params_non_embedding": n,
                  "pooled_bar_accuracy": share}
                 for size, n, budget, share in [("small", 10, 2**22, 0.3), ("medium", 20, 2**22, 0.57),
                                                ("medium", 20, 2**18, 0.2), ("small", 10, 2**18, 0.1)]]
    summaries.append({"dataset": "d", "arch": "reference", "run": None, "params_non_embedding": 0,
                      "pooled_bar_accuracy": 0.98})
    assert verdicts.generation_verdicts(summaries)["d_verdict_bars"] == "57% (LSTM); real tunes 98%"


def test_the_headings_say_what_was_not_identified_and_when_no_check_ran():
    law = {"alpha": 5.0, "beta": 0.19, "not_identified": {"alpha": {"bound": 5.0}}}
    heading = verdicts.law_heading({"joint": {"lstm": law}})
    assert heading == "The loss falls as N (its exponent not identified) and D^−0.19 (LSTM)"
    results = {"datasets": {"d": {"joint": {"lstm": law}, "holdout": {"lstm": {"N": {"error": "too few sizes"}}}}}}
    assert verdicts.verdicts(results)["heading_verdicts"] == "No held-out check could run"
