"""Generate tunes from a trained model: batched autoregressive sampling with temperature and top-k.

The training stream is ``EOT tune EOT tune ...``, so a new tune starts from ``[EOT] + prompt`` and
ends when the model emits EOT again. Works with any model whose ``forward(idx[B, T])`` returns
logits ``[B, T, V]``, that takes a sampling ``cache`` and has ``context_length`` and ``cache_bounded``
attributes (every family of :mod:`musicscale.models`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

from .models import LanguageModel


class Tokenizer(Protocol):
    """What the sampler needs of a tokenizer."""

    eot_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def _check(n: int, temperature: float, top_k: int | None, max_new_tokens: int, batch_size: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be None or >= 1, got {top_k}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


@torch.no_grad()
def generate(
    model: LanguageModel,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    eot_id: int,
    temperature: float | torch.Tensor = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    forced: Sequence[Sequence[int]] | None = None,
) -> torch.Tensor:
    """Extend each row of ``idx`` [B, T] by up to ``max_new_tokens``; stop early once all rows hit EOT.

    The model's cache (transformer keys and values, LSTM state) makes each step cost one token. When
    a bounded cache (``model.cache_bounded``: a transformer's) reaches ``context_length``, the last half of
    the context is encoded afresh and sampling goes on from there, so the model always sees between half
    and all of its context.

    ``forced`` gives each row tokens to take before it samples (the rest of its prompt, when the rows of one
    batch have different prompts): row ``r`` takes ``forced[r]`` one step at a time, as if it had sampled them,
    then samples; the loop runs ``max_new_tokens`` steps past the longest. ``temperature`` may be one value or a
    [B, 1] tensor (a temperature per row).
    Returns only the new tokens [B, <= max_new_tokens + the longest of ``forced``], forced ones included; rows
    that finished early go on after their EOT (the caller cuts them there).
    """
    window = model.context_length
    keep = max(1, window // 2)
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    width = max((len(f) for f in forced), default=0) if forced is not None else 0
    if width:  # -1: this row samples at this step
        rows = [list(f) + [-1] * (width - len(f)) for f in forced]
        forced_ids = torch.tensor(rows, dtype=torch.long, device=idx.device)
    cache: dict = {}
    logits = model(idx[:, -window:], cache=cache)[:, -1, :]
    new = idx[:, :0]
    for step in range(max_new_tokens + width):
        logits = logits.float() / temperature
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
            logits[logits < v[:, [-1]]] = -float("inf")
        probs = F.softmax(logits, dim=-1)
        idx_next = torch.multinomial(probs, num_samples=1, generator=generator)
        if step < width:
            take = forced_ids[:, step : step + 1]
            idx_next = torch.where(take >= 0, take, idx_next)
        idx = torch.cat((idx, idx_next), dim=1)
        new = torch.cat((new, idx_next), dim=1)
        done |= idx_next.squeeze(1) == eot_id  # a prompt holds no EOT: only a sampled one ends a row
        if done.all():
            break
        if model.cache_bounded and cache["length"] >= window:
            cache = {}
            logits = model(idx[:, -keep:], cache=cache)[:, -1, :]
        else:
            logits = model(idx_next, cache=cache)[:, -1, :]
    return new


def sample_tunes(
    model: LanguageModel,
    tok: Tokenizer,
    n: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    prompt: str = "X:1\n",
    max_new_tokens: int = 600,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
) -> list[dict]:
    """Sample ``n`` tunes, each starting from ``prompt``.

    Returns per tune ``{"text": prompt + generated text (without EOT), "finished": hit EOT before
    max_new_tokens, "n_chars": len(text)}``. The same seed (and batch_size) gives the same tunes.
    """
    _check(n, temperature, top_k, max_new_tokens, batch_size)
    return sample_requests(model, tok, [(prompt, temperature)] * n, top_k=top_k, max_new_tokens=max_new_tokens,
                           seed=seed, device=device, batch_size=batch_size)


def sample_requests(
    model: LanguageModel,
    tok: Tokenizer,
    requests: Sequence[tuple[str, float]],
    *,
    top_k: int | None = None,
    max_new_tokens: int = 600,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
) -> list[dict]:
    """One tune per ``(prompt, temperature)`` request, in order, as :func:`sample_tunes` returns them (each
    with ``max_new_tokens`` after its own prompt). Requests of different prompts and temperatures share one
    batch: the rows start from the prompts' common beginning and take the rest of their own prompt before they
    sample (``forced`` of :func:`generate`), so a batch of many prompts costs about what one prompt does."""
    _check(len(requests), 1.0, top_k, max_new_tokens, batch_size)
    for _, temperature in requests:
        _check(0, temperature, top_k, max_new_tokens, batch_size)
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    tunes = []
    try:
        for first in range(0, len(requests), batch_size):
            chunk = requests[first : first + batch_size]
            encoded = [list(tok.encode(p)) for p, _ in chunk]
            common = _common_prefix(encoded)
            rest = [ids[len(common):] for ids in encoded]
            temps = [t for _, t in chunk]
            temperature = temps[0] if len(set(temps)) == 1 else torch.tensor(
                temps, dtype=torch.float32, device=device).unsqueeze(1)
            idx = torch.tensor([[tok.eot_id] + common] * len(chunk), dtype=torch.long, device=device)
            new = generate(
                model,
                idx,
                max_new_tokens,
                eot_id=tok.eot_id,
                temperature=temperature,
                top_k=top_k,
                generator=generator,
                forced=rest if any(rest) else None,
            )
            for (prompt, _), forced, ids in zip(chunk, rest, new.tolist()):
                ids = ids[len(forced) : len(forced) + max_new_tokens]
                finished = tok.eot_id in ids
                if finished:
                    ids = ids[: ids.index(tok.eot_id)]
                text = prompt + tok.decode(ids)
                tunes.append({"text": text, "finished": finished, "n_chars": len(text)})
    finally:
        model.train(was_training)
    return tunes


def _common_prefix(rows: Sequence[Sequence[int]]) -> list[int]:
    first = list(rows[0]) if rows else []
    for row in rows[1:]:
        k = 0
        while k < min(len(first), len(row)) and first[k] == row[k]:
            k += 1
        first = first[:k]
    return first
