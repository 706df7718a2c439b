"""Tune-aligned evaluation: every target of every tune is scored exactly once, from its separator, and batching,
padding and windowing give the loss each tune gets alone."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from musicscale.evaluate import covers_every_tune, eval_windows, evaluate_tunes, tune_spans
from musicscale.models import LSTM, Transformer, build_model

V = 12


def make_stream(lengths, seed=0) -> np.ndarray:
    """``EOT t1 EOT t2 ... EOT`` with tunes of the given numbers of characters (ids 1..V-1)."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(1, dtype=np.int64)]
    for n in lengths:
        parts += [rng.integers(1, V, size=n), np.zeros(1, dtype=np.int64)]
    return np.concatenate(parts)


def scored_positions(plan):
    """Stream positions of the targets each window scores, and each one's history (inputs seen)."""
    out = []
    for w in range(len(plan)):
        s, n, off = int(plan.start[w]), int(plan.n_inputs[w]), int(plan.first_target[w])
        out += [(s + j + 1, j + 1, w) for j in range(off, n)]
    return out


def hand_loss(model, stream, spans, initial_state=None):
    """Each tune on its own, in one pass from its EOT: the reference the evaluation must reproduce."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for s, e in spans.tolist():
            x = torch.as_tensor(stream[s:e])[None]
            y = torch.as_tensor(stream[s + 1:e + 1])
            total += F.cross_entropy(model(x)[0], y, reduction="sum").item()
            count += e - s
    return total / count


def test_tune_spans_on_a_hand_made_stream():
    stream = np.array([0, 5, 6, 0, 0, 7, 0, 3, 3, 3, 0])
    np.testing.assert_array_equal(tune_spans(stream), [[0, 3], [3, 4], [4, 6], [6, 10]])
    np.testing.assert_array_equal(tune_spans(np.array([9, 5, 9]), eot_id=9), [[0, 2]])
    assert tune_spans(torch.tensor([0, 4, 0], dtype=torch.uint8)).tolist() == [[0, 2]]


@pytest.mark.parametrize("stream,problem", [
    ([], "empty"), ([5, 0], "start"), ([0, 5], "end"), ([0], "no tune"),
])
def test_tune_spans_rejects_streams_not_cut_at_separators(stream, problem):
    with pytest.raises(ValueError, match=problem):
        tune_spans(np.array(stream, dtype=np.int64))


def test_every_target_scored_exactly_once_for_random_tunes_and_contexts():
    rng = np.random.default_rng(0)
    for trial in range(300):
        C = int(rng.integers(1, 40))
        # lengths in tokens around the boundaries (C - 1, C, C + 1, 2C, ...) and at random, plus empty tunes
        boundary = [C - 2, C - 1, C, C + 1, C // 2 + C, 2 * C - 1, 2 * C, 2 * C + 1, 3 * C + 1]
        lengths = [max(0, n) for n in rng.choice(boundary, size=3)] + list(rng.integers(0, 4 * C + 3, size=5))
        rng.shuffle(lengths)
        stream = make_stream(lengths, seed=trial)
        plan = eval_windows(stream, C)
        targets = sorted(t for t, _, _ in scored_positions(plan))
        assert targets == list(range(1, len(stream))), (C, lengths)
        assert (plan.n_inputs <= C).all() and (plan.n_inputs >= 1).all()
        assert ((plan.first_target >= 0) & (plan.first_target < plan.n_inputs)).all()
        spans = tune_spans(stream)
        for w in range(len(plan)):  # a window never leaves its tune
            s, e = spans[plan.tune[w]]
            assert s <= plan.start[w] and plan.start[w] + plan.n_inputs[w] <= e


def test_tunes_that_fit_get_one_window_from_their_separator():
    C = 8
    stream = make_stream([C - 1, 0, 3, C, C - 1])  # lengths in tokens 8, 1, 4, 9, 8
    plan = eval_windows(stream, C)
    spans = tune_spans(stream)
    fits = [0, 1, 2, 4]
    for i in fits:
        (w,) = np.flatnonzero(plan.tune == i)
        assert (plan.start[w], plan.n_inputs[w], plan.first_target[w]) == (spans[i, 0], spans[i, 1] - spans[i, 0], 0)
    assert (plan.tune == 3).sum() == 2  # one token too long: a second window scores the last target
    assert covers_every_tune(stream, C) == (False, C + 1)
    assert covers_every_tune(stream, C + 1) == (True, C + 1)


def test_windows_keep_half_a_context_of_history_after_the_first():
    rng = np.random.default_rng(1)
    for trial in range(100):
        C = int(rng.integers(2, 33))
        stream = make_stream(rng.integers(0, 5 * C, size=6), seed=trial)
        plan = eval_windows(stream, C)
        first_of_tune = np.r_[True, plan.tune[1:] != plan.tune[:-1]]
        for _, history, w in scored_positions(plan):
            if not first_of_tune[w]:
                assert history >= C // 2 + 1, (C, w)  # the inputs before the target, its EOT included
            assert history <= C


def test_transformer_matches_each_tune_run_alone():
    torch.manual_seed(0)
    C = 32
    model = build_model("transformer", "micro", V, C)
    stream = make_stream([31, 0, 5, 17, 30, 2, 12, 31, 9])
    assert covers_every_tune(stream, C)[0]
    want = hand_loss(model, stream, tune_spans(stream))
    model.train()
    got = evaluate_tunes(model, stream, C, batch_size=4)
    assert model.training  # mode restored
    # batched windows vs one pass per tune: float32 sums in another order (~1e-7 here on a loss of ~2.5, more on
    # another CPU); a window off by one token moves this loss by >= 1e-4, so 1e-5 tells rounding from a bug
    assert got["loss"] == pytest.approx(want, abs=1e-5)
    assert got["tokens"] == len(stream) - 1 and got["tunes"] == 9
    assert got["longest_tune"] == 32 and got["tunes_longer_than_context"] == 0 and not got["recurrent"]
    model.eval()
    evaluate_tunes(model, stream, C)
    assert not model.training


def test_right_padding_does_not_change_earlier_logits():
    torch.manual_seed(0)
    model = build_model("transformer", "micro", V, 16).eval()
    x = torch.randint(0, V, (1, 9))
    padded = torch.cat([x, torch.zeros(1, 7, dtype=torch.long)], dim=1)
    with torch.no_grad():
        # two sequence lengths, two sets of kernel shapes: logits of ~0.3 round differently in the last bits
        # (~1e-8 here); padding that leaked into earlier positions would move them by ~1e-1
        torch.testing.assert_close(model(padded)[:, :9], model(x), atol=1e-5, rtol=0)


def test_batched_and_padded_equals_one_by_one():
    torch.manual_seed(0)
    C = 16
    rng = np.random.default_rng(2)
    stream = make_stream(rng.integers(0, 3 * C, size=20))
    for arch in ("transformer", "lstm"):
        model = build_model(arch, "micro", V, C)
        batched = evaluate_tunes(model, stream, C, batch_size=64)
        alone = evaluate_tunes(model, stream, C, batch_size=1)
        # other batch shapes sum in another order: rounding ~1e-7; a padded or misplaced target >= 1e-4
        assert batched["loss"] == pytest.approx(alone["loss"], abs=1e-5)
        assert batched["tokens"] == alone["tokens"] == len(stream) - 1


def test_lstm_matches_each_tune_in_one_pass_from_zero_state():
    torch.manual_seed(0)
    C = 8
    model = build_model("lstm", "micro", V, C)
    assert model.carries_state and not Transformer.carries_state and LSTM.carries_state
    stream = make_stream([3, 40, 0, 8, 7, 25, 16])  # several tunes longer than the context: chunked
    want = hand_loss(model, stream, tune_spans(stream))
    got = evaluate_tunes(model, stream, C, batch_size=3)
    # chunked and batched vs one pass per tune: rounding ~1e-7; a state lost between chunks moves the loss >= 1e-4
    assert got["loss"] == pytest.approx(want, abs=1e-5)
    assert got["recurrent"] and got["tokens"] == len(stream) - 1
    assert got["tunes_longer_than_context"] == 4 and got["longest_tune"] == 41  # 41, 9, 26, 17 tokens


def test_max_tokens_picks_whole_tunes():
    torch.manual_seed(0)
    C = 16
    model = build_model("transformer", "micro", V, C)
    stream = make_stream([9, 4, 20, 6])  # tokens per tune 10, 5, 21, 7
    spans = tune_spans(stream)
    for max_tokens, tunes in [(1, 1), (10, 1), (11, 2), (15, 2), (16, 3), (43, 4), (10**6, 4)]:
        got = evaluate_tunes(model, stream, C, max_tokens=max_tokens)
        assert got["tunes"] == tunes
        assert got["tokens"] == int((spans[:tunes, 1] - spans[:tunes, 0]).sum())
        want = evaluate_tunes(model, stream[:spans[tunes - 1, 1] + 1], C)
        # the same windows in the same batches: the same computation twice, so a tight tolerance is safe
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-7)
    with pytest.raises(ValueError, match="max_tokens"):
        evaluate_tunes(model, stream, C, max_tokens=0)


def test_tunes_longer_than_context_give_a_finite_loss_over_every_target():
    torch.manual_seed(0)
    C = 8
    stream = make_stream([30, 2, 50, 8, 15])
    for arch in ("transformer", "lstm"):
        got = evaluate_tunes(build_model(arch, "micro", V, C), stream, C, batch_size=5)
        assert np.isfinite(got["loss"]) and got["loss"] > 0
        assert got["tokens"] == len(stream) - 1
        assert got["tunes_longer_than_context"] == 4


def test_context_beyond_the_transformers_positions_is_refused():
    model = build_model("transformer", "micro", V, 8)
    with pytest.raises(ValueError, match="context_length"):
        evaluate_tunes(model, make_stream([3]), 16)
