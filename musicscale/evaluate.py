"""Tune-aligned evaluation: validation and test losses computed tune by tune.

A split is one stream ``EOT t1 EOT t2 ... EOT`` (see :mod:`musicscale.tokenizer`). Cutting it into
consecutive fixed windows (the training batches' view) scores most characters without their tune's header
(meter, key) in view, so the loss depends on where the cuts fall. Here every tune is scored from the
separator before it:

* a tune that fits in the context is scored in one window that starts at its preceding ``EOT``;
* a longer tune (windowed models) is scored with overlapping windows of ``context_length`` inputs, stride
  ``context_length // 2``, each scoring only the targets the previous window did not, so every target after
  the first window keeps at least half a context of history from within its tune;
* a model that carries state (the LSTM, ``carries_state = True``) runs each tune in one pass from its
  ``EOT`` (chunked by ``context_length`` with the state carried across chunks), so every target has the
  whole tune as history.

Either way every character and every closing ``EOT`` (stream positions ``1 .. len(stream) - 1``) is
predicted exactly once; the first ``EOT`` only gives context.

Sizes: a tune of ``n`` characters spans ``n + 1`` inputs (its preceding ``EOT`` and its characters) and
``n + 1`` targets (its characters and its closing ``EOT``); its *length in tokens* is ``n + 1``, and it fits
in the context when ``n + 1 <= context_length``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from .models import LanguageModel


def _as_array(stream: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(stream, torch.Tensor):
        stream = stream.detach().cpu().numpy()
    stream = np.asarray(stream)
    if stream.ndim != 1:
        raise ValueError(f"stream must be one-dimensional; got shape {stream.shape}")
    return stream.astype(np.int64, copy=False)


def tune_spans(stream: np.ndarray | torch.Tensor, eot_id: int = 0) -> np.ndarray:
    """``(n_tunes, 2)`` int64 array of ``(start, end)``: a tune's preceding ``EOT`` (its context start) and
    its closing ``EOT`` (its last target). Its inputs are ``stream[start:end]``, its targets
    ``stream[start + 1:end + 1]``, and its length in tokens is ``end - start``.

    Raises ValueError when the stream is empty, holds no tune, or does not start and end with ``EOT``:
    a stream cut elsewhere would leave a tune without its context or its closing target."""
    stream = _as_array(stream)
    if len(stream) == 0:
        raise ValueError("stream is empty; expected EOT tune1 EOT ... EOT")
    if stream[0] != eot_id:
        raise ValueError(f"stream must start with the EOT id {eot_id}; it starts with {int(stream[0])}")
    if stream[-1] != eot_id:
        raise ValueError(f"stream must end with the EOT id {eot_id}; it ends with {int(stream[-1])}")
    if len(stream) < 2:
        raise ValueError("stream holds no tune: it is a single EOT")
    eots = np.flatnonzero(stream == eot_id)
    return np.stack([eots[:-1], eots[1:]], axis=1).astype(np.int64)


class WindowPlan(NamedTuple):
    """Windows to score, one entry each: inputs ``stream[start:start + n_inputs]``, targets one position
    later, of which only window positions ``first_target .. n_inputs - 1`` are scored (the earlier ones are
    history already scored by the previous window); ``tune`` is the index of the window's tune."""

    start: np.ndarray
    n_inputs: np.ndarray
    first_target: np.ndarray
    tune: np.ndarray

    def __len__(self) -> int:  # the number of windows, not of fields
        return len(self.start)


def _plan(spans: np.ndarray, context_length: int) -> WindowPlan:
    if context_length < 1:
        raise ValueError(f"context_length must be at least 1; got {context_length}")
    C = context_length
    stride = max(1, C // 2)
    starts, n_inputs, offsets, tunes = [], [], [], []
    for i, (s, e) in enumerate(spans.tolist()):
        if e - s <= C:  # fits: the whole tune from its EOT
            starts.append(s), n_inputs.append(e - s), offsets.append(0), tunes.append(i)
            continue
        start, scored = s, s + C  # first window: C inputs from the EOT, all C targets scored
        starts.append(start), n_inputs.append(C), offsets.append(0), tunes.append(i)
        while scored < e:
            # advance by the stride; the last window ends at the tune's end, which only adds history
            start = min(start + stride, e - C)
            starts.append(start), n_inputs.append(C), offsets.append(scored - start), tunes.append(i)
            scored = start + C
    arrays = (np.asarray(a, dtype=np.int64) for a in (starts, n_inputs, offsets, tunes))
    return WindowPlan(*arrays)


def eval_windows(stream: np.ndarray | torch.Tensor, context_length: int, eot_id: int = 0) -> WindowPlan:
    """The windows that score every target of the stream exactly once, tune by tune.

    A tune whose length in tokens is at most ``context_length`` gets one window from its preceding ``EOT``.
    A longer one gets windows of ``context_length`` inputs starting at its ``EOT`` and advancing by
    ``context_length // 2`` (at least 1); each scores only the targets beyond the previous window's, so a
    scored target outside the first window sees at least ``context_length - context_length // 2 + 1``
    tokens of its tune (at least half a context). The last window is moved back to end at the tune's end
    (never past it, never into the previous tune), which keeps it full and only adds history."""
    return _plan(tune_spans(stream, eot_id), context_length)


def covers_every_tune(stream: np.ndarray | torch.Tensor, context_length: int, eot_id: int = 0) -> tuple[bool, int]:
    """Whether ``context_length`` covers every tune of the stream, and the longest tune's length in tokens
    (its characters plus its ``EOT``). When it covers, every target is predicted with its whole tune in view,
    so the entropy rate H* of a synthetic grammar is exactly the floor the measured loss is compared with."""
    spans = tune_spans(stream, eot_id)
    longest = int((spans[:, 1] - spans[:, 0]).max())
    return longest <= context_length, longest


def _select(spans: np.ndarray, max_tokens: int | None) -> np.ndarray:
    """The first whole tunes whose targets add up to at least ``max_tokens`` (all when None or more)."""
    if max_tokens is None:
        return spans
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1 (or None for the whole stream); got {max_tokens}")
    cum = np.cumsum(spans[:, 1] - spans[:, 0])
    n = min(len(spans), int(np.searchsorted(cum, max_tokens)) + 1)
    return spans[:n]


def _windowed_loss(model: LanguageModel, data: torch.Tensor, plan: WindowPlan, batch_size: int,
                   device: torch.device | str, pad_id: int) -> tuple[float, int]:
    """Sum of losses over the plan's scored targets. Windows are sorted by length so a batch pads little;
    padding goes on the right, where causal attention keeps it from changing the real positions' logits,
    and padded or already-scored targets are left out of the sum."""
    order = np.argsort(-plan.n_inputs, kind="stable")
    total, count = 0.0, 0
    for first in range(0, len(order), batch_size):
        sel = order[first:first + batch_size]
        starts = torch.as_tensor(plan.start[sel])
        n_in = torch.as_tensor(plan.n_inputs[sel])
        off = torch.as_tensor(plan.first_target[sel])
        T = int(n_in.max())
        pos = torch.arange(T + 1)
        valid = pos[None, :] <= n_in[:, None]  # inputs and the last target
        rows = torch.where(valid, starts[:, None] + pos, 0)
        windows = torch.where(valid, data[rows], pad_id)
        x, y = windows[:, :-1].to(device), windows[:, 1:].to(device)
        scored = ((pos[None, :T] >= off[:, None]) & (pos[None, :T] < n_in[:, None])).to(device)
        logits = model(x)
        total += F.cross_entropy(logits[scored].float(), y[scored], reduction="sum").item()
        count += int(scored.sum())
    return total, count


def _recurrent_loss(model: LanguageModel, data: torch.Tensor, spans: np.ndarray, context_length: int,
                    batch_size: int, device: torch.device | str, pad_id: int) -> tuple[float, int]:
    """Sum of losses with each tune run in one pass from its ``EOT``: tunes sorted by length are batched
    and right-padded (a padded step comes after every real step of its row, so it never reaches a real
    target), and each batch runs in chunks of ``context_length`` with the model's state carried across
    chunks through its sampling ``cache``, which equals one long pass."""
    lengths = spans[:, 1] - spans[:, 0]
    order = np.argsort(-lengths, kind="stable")
    total, count = 0.0, 0
    for first in range(0, len(order), batch_size):
        sel = order[first:first + batch_size]
        starts = torch.as_tensor(spans[sel, 0])
        n_in = torch.as_tensor(lengths[sel])
        T = int(n_in.max())
        pos = torch.arange(T + 1)
        valid = pos[None, :] <= n_in[:, None]
        rows = torch.where(valid, starts[:, None] + pos, 0)
        seqs = torch.where(valid, data[rows], pad_id).to(device)
        mask = (pos[None, :T] < n_in[:, None]).to(device)
        inputs, targets = seqs[:, :-1], seqs[:, 1:]
        cache: dict = {}
        for c in range(0, T, context_length):
            chunk = slice(c, c + context_length)
            x, y, m = inputs[:, chunk], targets[:, chunk], mask[:, chunk]
            logits = model(x, cache)
            total += F.cross_entropy(logits[m].float(), y[m], reduction="sum").item()
            count += int(m.sum())
    return total, count


def evaluate_tunes(model: LanguageModel, stream: np.ndarray | torch.Tensor, context_length: int, *,
                   max_tokens: int | None = None, batch_size: int = 64, device: torch.device | str = "cpu",
                   recurrent: bool | None = None, eot_id: int = 0) -> dict:
    """Mean loss (nats per predicted token) over the tunes of a split stream, each scored from its ``EOT``.

    ``recurrent`` (default: the model's ``carries_state``) runs each tune in one pass with the state carried
    through it; otherwise the model sees the windows of :func:`eval_windows`. ``max_tokens`` (for periodic
    evaluation on a budget) keeps only the first whole tunes whose targets add up to at least ``max_tokens``:
    always the same tunes, never part of one. ``batch_size`` counts windows (or tunes) per forward pass.

    Returns ``loss``, ``tokens`` (targets predicted), ``tunes``, ``longest_tune`` (tokens, see the module
    docstring) and ``tunes_longer_than_context``, all over the tunes evaluated, plus ``windows`` (forward
    windows; tunes for a recurrent model) and ``recurrent``. The model's training mode is restored."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if recurrent is None:
        recurrent = bool(model.carries_state)
    model_context = getattr(model, "context_length", None)
    if not recurrent and model_context is not None and context_length > model_context:
        raise ValueError(f"context_length {context_length} exceeds the model's context_length {model_context}")
    arr = _as_array(stream)
    spans = _select(tune_spans(arr, eot_id), max_tokens)
    plan = None if recurrent else _plan(spans, context_length)  # validates context_length
    if recurrent and context_length < 1:
        raise ValueError(f"context_length must be at least 1; got {context_length}")
    data = torch.from_numpy(arr)
    lengths = spans[:, 1] - spans[:, 0]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if recurrent:
                total, count = _recurrent_loss(model, data, spans, context_length, batch_size, device, eot_id)
            else:
                total, count = _windowed_loss(model, data, plan, batch_size, device, eot_id)
    finally:
        model.train(was_training)
    assert count == int(lengths.sum()), "every target of the evaluated tunes is scored exactly once"
    return {
        "loss": total / count,
        "tokens": count,
        "tunes": len(spans),
        "longest_tune": int(lengths.max()),
        "tunes_longer_than_context": int((lengths > context_length).sum()),
        "windows": len(spans) if recurrent else len(plan),
        "recurrent": recurrent,
    }
