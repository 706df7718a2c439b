"""The learning-rate schedules and where a run is measured: warmup-stable-decay (WSD; Hägele et al. 2024) with
cooldown branches at a geometric series of token counts, or the classic cosine run.

A WSD run warms up linearly, then trains a *trunk* at the constant peak rate; at each of ``n_branches`` token
counts ``D_k`` (each ``branch_ratio`` times the last, the longest ``token_budget``) a branch forks at
``(1 - cooldown_frac) D_k`` and decays the rate to zero as ``1 - sqrt(progress)``: one measured point per branch,
each the loss a complete WSD run of length ``D_k`` reaches. The functions read a
:class:`musicscale.train.TrainConfig` (its ``schedule``, budget, batch, branches, warm-up and rates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # TrainConfig validates itself with these functions: only its type is needed here
    from .train import TrainConfig


@dataclass(frozen=True)
class Point:
    """Where a run is measured: after ``end`` optimizer steps, the last ``cooldown`` of them on a branch."""

    end: int
    cooldown: int

    @property
    def fork(self) -> int:
        return self.end - self.cooldown


def schedule_points(cfg: TrainConfig) -> list[Point]:
    """The measurement points of a run: WSD branch ends (a geometric series up to ``token_budget``, only
    the first ``train_branches`` for a probe), or ``n_evals`` evenly spaced points of a cosine run."""
    total = cfg.total_steps
    if cfg.schedule == "cosine":
        ends = sorted({max(1, round(total * (i + 1) / cfg.n_evals)) for i in range(cfg.n_evals)})
        return [Point(e, 0) for e in ends]
    ends = [max(1, round(total / cfg.branch_ratio ** (cfg.n_branches - 1 - k))) for k in range(cfg.n_branches)]
    points = [Point(e, max(1, round(cfg.cooldown_frac * e))) for e in ends]
    return points[: cfg.train_branches] if cfg.train_branches else points


def schedule_cost(cfg: TrainConfig) -> float:
    """The optimizer steps of a whole run (the trunk up to its last fork, then every branch's cooldown) over
    the steps of its longest branch: what measuring every branch costs beyond training the longest alone."""
    points = schedule_points(cfg)
    return (points[-1].fork + sum(p.cooldown for p in points)) / points[-1].end


def warmup_steps(cfg: TrainConfig) -> int:
    """Warm-up steps: a fraction of the shortest branch (every branch shares the trunk's warm-up), or of a
    cosine run."""
    base = cfg.total_steps if cfg.schedule == "cosine" else schedule_points(cfg)[0].end
    return max(1, round(cfg.warmup_frac * base))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The trunk's rate at ``step``: linear warm-up to the peak, then constant (WSD) or cosine decay to
    ``min_lr_ratio`` of the peak (cosine)."""
    peak, total, warmup = cfg.learning_rate, cfg.total_steps, warmup_steps(cfg)
    if step < warmup:
        return peak * (step + 1) / warmup
    if cfg.schedule == "wsd":
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def cooldown_lr(step: int, point: Point, cfg: TrainConfig) -> float:
    """A branch's rate at ``step``: from the peak down towards zero as ``1 - sqrt(progress)``."""
    return cfg.learning_rate * (1.0 - math.sqrt((step - point.fork) / point.cooldown))
