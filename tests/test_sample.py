"""Sampling: deterministic per seed, stopped at the separator, batched rows with their own prompt and temperature,
and a cache that changes nothing but the speed."""

import pytest
import torch
from torch import nn

from musicscale.sample import sample_requests, sample_tunes

VOCAB = ["¤", "X", ":", "1", "\n", "a", "b", "c"]  # "¤" is the end-of-tune separator


class CharTok:
    eot_id = 0

    def encode(self, text):
        return [VOCAB.index(ch) for ch in text]

    def decode(self, ids):
        return "".join(VOCAB[i] for i in ids)


class Bigram(nn.Module):
    """Logits depend only on the last token; refuses inputs longer than its context."""

    carries_state, cache_bounded = False, False  # a LanguageModel (musicscale.models): its cache is unused

    def __init__(self, table: torch.Tensor, context_length: int = 4):
        super().__init__()
        self.register_buffer("table", table)
        self.context_length = context_length
        self.seen_lengths = set()

    def forward(self, idx, cache=None):
        assert idx.size(1) <= self.context_length, "sampler must crop to context_length"
        self.seen_lengths.add(idx.size(1))
        return self.table[idx]


def chain_table() -> torch.Tensor:
    """Favours "\n" -> a -> b -> c -> EOT, with every other token still possible."""
    table = torch.zeros(len(VOCAB), len(VOCAB))
    for src, dst in [("\n", "a"), ("a", "b"), ("b", "c"), ("c", "¤")]:
        table[VOCAB.index(src), VOCAB.index(dst)] = 3.0
    return table


def no_eot_table() -> torch.Tensor:
    table = torch.zeros(len(VOCAB), len(VOCAB))
    table[:, 0] = -float("inf")
    return table


def test_greedy_with_top_k_1_follows_the_chain_and_stops_at_eot():
    model = Bigram(chain_table())
    tunes = sample_tunes(model, CharTok(), 3, top_k=1, temperature=5.0, max_new_tokens=50)
    assert [t["text"] for t in tunes] == ["X:1\nabc"] * 3
    assert all(t["finished"] and t["n_chars"] == len("X:1\nabc") for t in tunes)


def test_deterministic_per_seed_and_different_across_seeds():
    model, tok = Bigram(torch.zeros(len(VOCAB), len(VOCAB))), CharTok()
    a = sample_tunes(model, tok, 6, seed=1, max_new_tokens=30)
    b = sample_tunes(model, tok, 6, seed=1, max_new_tokens=30)
    c = sample_tunes(model, tok, 6, seed=2, max_new_tokens=30)
    assert a == b
    assert [t["text"] for t in a] != [t["text"] for t in c]


def test_stops_each_sequence_at_eot_and_strips_it():
    model = Bigram(chain_table())
    tunes = sample_tunes(model, CharTok(), 40, max_new_tokens=200, batch_size=16)
    assert len(tunes) == 40
    finished = [t for t in tunes if t["finished"]]
    assert len(finished) >= 35  # EOT is likely after every "c"
    assert all("¤" not in t["text"] and t["text"].startswith("X:1\n") for t in tunes)
    assert all(t["n_chars"] == len(t["text"]) for t in tunes)


def test_unfinished_when_eot_never_comes_and_context_is_cropped():
    model = Bigram(no_eot_table(), context_length=4)
    tunes = sample_tunes(model, CharTok(), 2, max_new_tokens=20)
    assert all(not t["finished"] and t["n_chars"] == len("X:1\n") + 20 for t in tunes)
    assert max(model.seen_lengths) == 4


def test_rows_of_different_prompts_share_a_batch_and_each_goes_on_from_its_own():
    model, tok = Bigram(chain_table()), CharTok()
    requests = [("X:1\n", 1.0), ("X:1\nab", 1.0), ("X:1\na", 1.0), ("X:1\nc", 1.0)]
    tunes = sample_requests(model, tok, requests, top_k=1, max_new_tokens=50)
    assert [t["text"] for t in tunes] == ["X:1\nabc", "X:1\nabc", "X:1\nabc", "X:1\nc"]
    assert all(t["finished"] for t in tunes)
    # each row gets max_new_tokens after its own prompt, however long the others' are
    tunes = sample_requests(Bigram(no_eot_table(), context_length=4), tok, [("X:1\n", 1.0), ("X:1\nabcab", 1.0)],
                            max_new_tokens=5)
    assert [t["n_chars"] for t in tunes] == [4 + 5, 9 + 5] and not any(t["finished"] for t in tunes)
    assert [t["text"][:9] for t in tunes][1] == "X:1\nabcab"


def test_rows_of_one_batch_sample_at_their_own_temperature():
    requests = [("X:1\n", 0.01)] * 5 + [("X:1\n", 100.0)] * 5
    tunes = sample_requests(Bigram(chain_table()), CharTok(), requests, max_new_tokens=30, seed=3)
    assert [t["text"] for t in tunes[:5]] == ["X:1\nabc"] * 5  # nearly greedy
    assert sum(t["text"] == "X:1\nabc" for t in tunes[5:]) < 5  # nearly uniform


def test_one_prompt_in_requests_is_sample_tunes():
    model, tok = Bigram(torch.zeros(len(VOCAB), len(VOCAB))), CharTok()
    assert sample_requests(model, tok, [("X:1\na", 0.7)] * 6, seed=4, max_new_tokens=20) == \
        sample_tunes(model, tok, 6, prompt="X:1\na", temperature=0.7, seed=4, max_new_tokens=20)


class Recorder(nn.Module):
    """Passes every call on to ``model`` and keeps the logits of each call's last position."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.context_length, self.cache_bounded = model, model.context_length, model.cache_bounded
        self.steps: list[torch.Tensor] = []

    def forward(self, idx, cache=None):
        logits = self.model(idx, cache=cache)
        self.steps.append(logits[:, -1, :])
        return logits


def test_cached_sampling_equals_uncached_sampling_of_real_models():
    """The cache (transformer keys/values, LSTM state) must not change what is sampled while the
    sequence fits the context: along the sampled sequence, the logits each cached step drew from must be
    those of re-running the whole sequence every step.

    The logits are compared, not the tokens drawn: the two are computed in different orders (one new
    position against cached keys, or the whole prefix again), so they differ in their last bits (~1e-8
    here), and a draw that falls that close to the boundary between two tokens would pick another token
    and send the two samplers apart on a CPU that rounds otherwise. The logits are ~0.3; a cache bug (a
    position restarting at 0, a state dropped) moves them by ~0.1, so 1e-5 tells rounding from a bug."""
    from musicscale.models import build_model
    from musicscale.sample import generate

    torch.manual_seed(0)
    for arch in ("transformer", "lstm"):
        model = build_model(arch, "tiny", len(VOCAB), 64).eval()
        start = torch.zeros(3, 2, dtype=torch.long)
        recorder = Recorder(model)
        cached = generate(recorder, start, 40, eot_id=-1, generator=torch.Generator().manual_seed(1))
        assert cached.shape == (3, 40) and len(recorder.steps) == 41, arch  # the prompt, then one per token
        seq = torch.cat((start, cached), dim=1)
        with torch.no_grad():
            uncached = torch.stack([model(seq[:, :2 + t])[:, -1, :] for t in range(40)], dim=1)
        torch.testing.assert_close(torch.stack(recorder.steps[:40], dim=1), uncached, atol=1e-5, rtol=0,
                                   msg=lambda m, arch=arch: f"{arch}: {m}")


def test_restores_training_mode_and_handles_n_zero():
    model = Bigram(chain_table())
    model.train()
    assert sample_tunes(model, CharTok(), 0) == []
    sample_tunes(model, CharTok(), 1, max_new_tokens=5)
    assert model.training


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"n": -1}, "n must"),
    ],
)
def test_rejects_bad_parameters(kwargs, name):
    args = {"n": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        sample_tunes(Bigram(chain_table()), CharTok(), **args)
