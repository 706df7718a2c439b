"""The order a run reads its training data in: every window once per epoch, a batch a function of the seed and
the step, epochs counted exactly, and ``unique_tokens`` restricting a run to a prefix of the split."""

import pytest
import torch

from musicscale.batches import WindowStream

T, B = 8, 4


def stream(n_tokens: int = 1_000, **kw) -> WindowStream:
    return WindowStream(torch.arange(n_tokens), T, B, seed=kw.pop("seed", 0), **kw)


def starts_of(s: WindowStream, steps: range) -> list[int]:
    return [int(x[i, 0]) for step in steps for x in [s.batch(step)[0]] for i in range(B)]


def test_one_epoch_reads_every_window_once_then_the_next_epoch_reads_them_again():
    s = stream()
    assert s.n_windows == (1_000 - T) // T and s.unique == s.n_windows * T
    steps = s.n_windows // B
    first = starts_of(s, range(steps))
    assert len(set(first)) == len(first) == steps * B  # nothing read twice within an epoch
    assert len({x % T for x in first}) == 1  # one offset per epoch: the windows tile the split
    x, y = s.batch(0)
    assert x.shape == y.shape == (B, T) and torch.equal(x[:, 1:], y[:, :-1])  # targets are the next tokens
    assert s.epochs(steps) == pytest.approx(steps * B / s.n_windows) and s.epochs(steps) <= 1


def test_a_batch_is_a_function_of_seed_and_step():
    a, b = stream(), stream()
    for step in (0, 7, 300, 31):  # in any order, across epochs: a branch or a resumed run reads the same
        assert torch.equal(a.batch(step)[0], b.batch(step)[0])
    assert not torch.equal(stream(seed=1).batch(0)[0], a.batch(0)[0])


def test_unique_tokens_reads_a_prefix_in_epochs():
    s = stream(unique_tokens=64)
    assert s.n_windows == 8 and s.unique == 64
    starts = starts_of(s, range(40))  # 160 windows: 20 epochs of 8
    assert max(starts) + T < 64 + T and s.epochs(40) == 20
    for e in range(20):  # each epoch is a permutation of the 8 windows
        epoch = starts[8 * e: 8 * e + 8]
        assert len({x // T for x in epoch}) == 8


def test_an_epoch_shorter_than_a_batch_and_a_stream_too_short():
    s = stream(unique_tokens=2 * T)  # 2 windows, 4 per batch: one batch spans two epochs
    assert s.n_windows == 2 and s.epochs(1) == 2
    x, _ = s.batch(0)
    assert x.shape == (B, T)
    with pytest.raises(ValueError, match="shorter than context_length"):
        WindowStream(torch.arange(T + 1), T, B, seed=0)
