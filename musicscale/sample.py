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
from torch import nn


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
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    eot_id: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend each row of ``idx`` [B, T] by up to ``max_new_tokens``; stop early once all rows hit EOT.

    The model's cache (transformer keys and values, LSTM state) makes each step cost one token. When
    a bounded cache (``model.cache_bounded``: a transformer's) reaches ``context_length``, the last half of
    the context is encoded afresh and sampling goes on from there, so the model always sees between half
    and all of its context.
    Returns only the new tokens [B, <= max_new_tokens]; rows that finished early go on after their
    EOT (the caller cuts them there).
    """
    window = model.context_length
    keep = max(1, window // 2)
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    cache: dict = {}
    logits = model(idx[:, -window:], cache=cache)[:, -1, :]
    new = idx[:, :0]
    for _ in range(max_new_tokens):
        logits = logits.float() / temperature
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
            logits[logits < v[:, [-1]]] = -float("inf")
        probs = F.softmax(logits, dim=-1)
        idx_next = torch.multinomial(probs, num_samples=1, generator=generator)
        idx = torch.cat((idx, idx_next), dim=1)
        new = torch.cat((new, idx_next), dim=1)
        done |= idx_next.squeeze(1) == eot_id
        if done.all():
            break
        if getattr(model, "cache_bounded", False) and cache["length"] >= window:
            cache = {}
            logits = model(idx[:, -keep:], cache=cache)[:, -1, :]
        else:
            logits = model(idx_next, cache=cache)[:, -1, :]
    return new


def sample_tunes(
    model: nn.Module,
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
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    start = [tok.eot_id] + list(tok.encode(prompt))
    tunes = []
    try:
        for first in range(0, n, batch_size):
            rows = min(batch_size, n - first)
            idx = torch.tensor([start] * rows, dtype=torch.long, device=device)
            new = generate(
                model,
                idx,
                max_new_tokens,
                eot_id=tok.eot_id,
                temperature=temperature,
                top_k=top_k,
                generator=generator,
            )
            for ids in new.tolist():
                finished = tok.eot_id in ids
                if finished:
                    ids = ids[: ids.index(tok.eot_id)]
                text = prompt + tok.decode(ids)
                tunes.append({"text": text, "finished": finished, "n_chars": len(text)})
    finally:
        model.train(was_training)
    return tunes
