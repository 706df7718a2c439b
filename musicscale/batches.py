"""The order in which a run reads its training split: epochs of shuffled windows, so that D counts tokens
read once, and a token is read a second time only once every other has been read.

The split (or its first ``unique_tokens``, in the repetition experiment) is cut into ``W`` windows of
``context_length + 1`` tokens at stride ``context_length`` (inputs and their next-token targets). Each epoch
visits every window once, in an order shuffled with the run's seed and the epoch's number, and at an offset
of 0 to ``context_length - 1`` tokens drawn with it (so a repeated tune is not cut at the same places again).
Batch ``s`` holds windows ``s B .. s B + B - 1`` of that sequence of epochs. A batch is therefore a function of
the seed and the step alone: a cooldown branch reads what the trunk would have read, a resumed run goes on
exactly, and a run of ``D`` tokens has read ``D / (W context_length)`` epochs (:meth:`WindowStream.epochs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


def n_windows(n_tokens: int, context_length: int, unique_tokens: int | None = None) -> int:
    """How many windows a run reads per epoch from a split of ``n_tokens`` (or its first ``unique_tokens``): as
    many as fit at stride ``context_length`` with up to ``context_length - 1`` tokens of slack for the offset."""
    T = context_length
    usable = n_tokens if unique_tokens is None else min(n_tokens, unique_tokens + T)
    if usable < T + 2:
        raise ValueError(f"a training stream of {usable} tokens is shorter than context_length + 2 = {T + 2}")
    return max(1, (usable - T) // T)


@dataclass(frozen=True)
class Epoch:
    """One pass over the windows: where the windows start this time, and their order."""

    offset: int
    order: torch.Tensor  # (W,) window indices


@dataclass
class WindowStream:
    """The training batches of one run (see the module's docstring)."""

    data: torch.Tensor  # (n_tokens,) the training split, int64, on the run's device
    context_length: int
    batch_size: int
    seed: int
    unique_tokens: int | None = None  # read only the first this many tokens of the split (None: all of it)
    _epochs: dict[int, Epoch] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        T = self.context_length
        self.n_windows = n_windows(len(self.data), T, self.unique_tokens)
        usable = len(self.data) if self.unique_tokens is None else min(len(self.data), self.unique_tokens + T)
        self._max_offset = min(T - 1, usable - 1 - self.n_windows * T)  # the slack where an epoch's offset goes
        self._window = torch.arange(T + 1, device=self.data.device)

    @property
    def unique(self) -> int:
        """The training tokens a run can read, each once per epoch (the targets of all windows)."""
        return self.n_windows * self.context_length

    def epochs(self, steps: int) -> float:
        """Epochs read after ``steps`` optimizer steps: tokens read / unique tokens."""
        return steps * self.batch_size / self.n_windows

    def _epoch(self, e: int) -> Epoch:
        if e not in self._epochs:
            if len(self._epochs) > 4:  # a run moves forward: keep only the latest few
                self._epochs.pop(min(self._epochs))
            seed = int(np.random.SeedSequence([self.seed, e]).generate_state(1)[0])
            gen = torch.Generator().manual_seed(seed)
            offset = int(torch.randint(self._max_offset + 1, (1,), generator=gen))
            self._epochs[e] = Epoch(offset, torch.randperm(self.n_windows, generator=gen).to(self.data.device))
        return self._epochs[e]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of optimizer step ``step``: (batch_size, context_length) each."""
        B, T, W = self.batch_size, self.context_length, self.n_windows
        slots = np.arange(step * B, (step + 1) * B)
        starts = torch.empty(B, dtype=torch.long, device=self.data.device)
        for e in np.unique(slots // W):  # usually one epoch; two where a batch crosses into the next
            mine = slots // W == e
            epoch = self._epoch(int(e))
            index = torch.as_tensor(slots[mine] % W, device=self.data.device)
            starts[torch.as_tensor(mine, device=self.data.device)] = epoch.offset + T * epoch.order[index]
        windows = self.data[starts[:, None] + self._window]  # (B, T + 1)
        return windows[:, :-1], windows[:, 1:]
