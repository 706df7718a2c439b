"""Runs of one shape trained as one program: the rate probes of a size, its seeds.

A *group* is a set of runs that share everything that fixes the shape of a step (:func:`group_key`: family,
size, variant, context, batch, schedule, device) and differ in what makes them separate runs: the seed (so
their initial weights and their batches) and the peak rate. At every step the members' parameters are stacked
and one ``torch.func.vmap`` of the model's forward and backward computes every member's gradient at once;
each member keeps its own model, AdamW, gradient clipping and rate schedule (the solo trainer's, on its own
parameters), its own cooldown branches, checkpoints and record (:class:`musicscale.train._Run`). So a member
resumes alone or in a group alike, and its record is the solo trainer's up to the rounding of the batched
matrix products (its ``wall_time_s`` is the group's: the members train in the same seconds).

Why: on a GPU a step of a small model costs kernel launches, not FLOPs, so K members cost about what one does;
on the CPU it pays only at batch 1 (``benchmarks/batched.py``; torch 2.13 also has no batching rule for the
CPU's attention kernel, which it then runs member by member), and the solo path stays the default. A family
can be grouped if its forward has a vmap batching rule (:attr:`musicscale.models.Architecture.groupable`):
``nn.LSTM`` has none, so LSTM runs train alone.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, vmap
from torch.nn import functional as F

from .models import architecture
from .schedule import cooldown_lr, lr_at, schedule_points
from .train import RunRecord, TrainConfig, _branch, _Run, autocast


def group_key(cfg: TrainConfig) -> tuple:
    """What members of one group share: the shape of a step and the steps at which they fork and are measured."""
    return (cfg.arch, cfg.size, cfg.variant, cfg.context_length, cfg.batch_size, cfg.device, cfg.threads,
            cfg.eval_tokens, cfg.precision, tuple((p.end, p.cooldown) for p in schedule_points(cfg)))


def groupable(cfg: TrainConfig) -> bool:
    """Whether a run of ``cfg`` can train in a group (its family's forward batches under vmap)."""
    return architecture(cfg.arch).groupable


class _Stacked:
    """The members' forward and backward as one vmapped program: their parameters stacked (member first) at
    each step, the gradients handed back to each member's own parameters as views of the stacked ones."""

    def __init__(self, models: Sequence[torch.nn.Module]):
        self.models = list(models)
        self.base = copy.deepcopy(self.models[0])  # the structure functional_call runs (ties included)
        self.names = [n for n, _ in self.models[0].named_parameters()]

    def losses(self, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
        """Each member's mean training loss on its own batch (``x``, ``y``: (K, B, T)), with every member's
        gradient in its parameters' ``.grad``."""
        params = {n: torch.stack([m.get_parameter(n).detach() for m in self.models]).requires_grad_()
                  for n in self.names}
        self.base.train()
        with autocast(cfg, x.device), warnings.catch_warnings():
            # the member-by-member fallback of the CPU attention kernel under vmap is known (module docstring)
            warnings.filterwarnings("ignore", message=".*batching rule for aten::_scaled_dot_product")
            logits = vmap(lambda p, xi: functional_call(self.base, p, (xi,)), randomness="different")(params, x)
            # each member's loss as the solo trainer computes it: one mean over a (B*T, V) batch
            losses = torch.stack([F.cross_entropy(lg.reshape(-1, lg.size(-1)), t.reshape(-1))
                                  for lg, t in zip(logits, y)])
        losses.sum().backward()  # a member's loss depends on its own parameters only: each gets its own gradient
        for i, model in enumerate(self.models):
            for n in self.names:
                model.get_parameter(n).grad = params[n].grad[i]
        return losses.detach()


def _steps(runs: Sequence[_Run], models: Sequence[torch.nn.Module], optimizers: Sequence[torch.optim.Optimizer],
           start: int, end: int, rate: Callable[[TrainConfig, int], float]) -> list[float]:
    """Optimizer steps ``start .. end - 1`` of every member at its own ``rate(cfg, step)``, each with its own
    batches, clipping and AdamW; returns each member's mean training loss (as :func:`musicscale.train._steps`)."""
    stacked = _Stacked(models)
    totals, n = np.zeros(len(runs)), 0
    for model in models:
        model.train()
    for step in range(start, end):
        batches = [r.stream.batch(step) for r in runs]
        for r, optimizer in zip(runs, optimizers):
            for group in optimizer.param_groups:
                group["lr"] = rate(r.cfg, step)
            optimizer.zero_grad(set_to_none=True)
        losses = stacked.losses(torch.stack([x for x, _ in batches]), torch.stack([y for _, y in batches]), runs[0].cfg)
        for r, model, optimizer in zip(runs, models, optimizers):
            torch.nn.utils.clip_grad_norm_(model.parameters(), r.cfg.grad_clip)
            optimizer.step()
        totals += np.array(losses.tolist())
        n += 1
    return (totals / n).tolist() if n else [float("nan")] * len(runs)


def train_group(cfgs: Sequence[TrainConfig], tokens: dict[str, np.ndarray], vocab_size: int,
                run_dirs: Sequence[str | Path], *, data_fingerprint: str | None = None,
                log: Callable[[str], None] | None = print) -> list[RunRecord]:
    """Train the runs ``cfgs`` (one :func:`group_key`, each to its own ``run_dirs`` entry) as one group and return
    their records, in order: each what :func:`musicscale.train.train` returns for it, up to rounding. A member that
    resumed from a checkpoint trains with the members at the same point of the schedule."""
    if len(cfgs) != len(run_dirs) or not cfgs:
        raise ValueError(f"train_group needs one run folder per configuration, got {len(cfgs)} and {len(run_dirs)}")
    keys = {group_key(c) for c in cfgs}
    if len(keys) > 1:
        raise ValueError(f"the runs of a group must share family, size, context, batch and schedule; got {keys}")
    if not all(groupable(c) for c in cfgs):
        raise ValueError(f"{cfgs[0].arch} runs cannot train in a group (its forward has no vmap batching rule)")
    runs = [_Run.start(c, tokens, vocab_size, d, data_fingerprint=data_fingerprint, log=log)
            for c, d in zip(cfgs, run_dirs)]
    by_progress: dict[tuple[int, int], list[_Run]] = {}
    for r in runs:
        by_progress.setdefault((r.step, len(r.curve)), []).append(r)
    for members in by_progress.values():
        _train_together(members)
    return [r.record() for r in runs]


def _train_together(runs: Sequence[_Run]) -> None:
    """The solo trainer's loop (:func:`musicscale.train.train`) for members at the same point of one schedule."""
    for point in runs[0].pending:
        losses = _steps(runs, [r.model for r in runs], [r.optimizer for r in runs], runs[0].step, point.fork,
                        lambda cfg, s: lr_at(s, cfg))
        for r in runs:
            r.step = point.fork
        measured = [r.model for r in runs]
        if point.cooldown:
            branches = [_branch(r.model, r.optimizer, r.cfg) for r in runs]
            measured = [b for b, _ in branches]
            losses = _steps(runs, measured, [o for _, o in branches], point.fork, point.end,
                            lambda cfg, s, p=point: cooldown_lr(s, p, cfg))
        for r, model, loss in zip(runs, measured, losses):
            r.measure(point, model, loss)
