"""The training loop: one function that trains one model on a token budget and returns its record.

AdamW (decay on matrices only), linear warm-up then cosine decay, gradient clipping, evaluation at
regular token counts, the best-validation weights kept (``best.pt``) and the test loss measured with
them. The full training state is checkpointed atomically (``checkpoint.pt``) at each evaluation, so
an interrupted run resumes and ends exactly as an uninterrupted one would (on the CPU, for a fixed
thread count).
"""

from __future__ import annotations

import math
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import __version__
from .models import build_model, non_embedding_parameters, total_parameters
from .workdir import CorruptArtifactError, atomic_write, load_torch, move_aside

NATS_TO_BITS = 1.0 / math.log(2.0)


@dataclass
class TrainConfig:
    """Everything that determines a run besides the data; notebook parameters override these."""

    arch: str = "transformer"
    size: str = "tiny"
    seed: int = 0
    token_budget: int = 200_000
    context_length: int = 128
    batch_size: int = 32
    lr: float | None = None  # None: the architecture's default below
    min_lr_ratio: float = 0.1
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    n_evals: int = 10
    eval_tokens: int = 65_536  # validation tokens per periodic evaluation
    device: str = "auto"
    threads: int | None = None  # torch CPU threads; None leaves torch's default

    def __post_init__(self) -> None:
        for name in ("token_budget", "context_length", "batch_size", "n_evals", "eval_tokens"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.token_budget < self.context_length * self.batch_size:
            raise ValueError(
                f"token_budget={self.token_budget} is less than one batch "
                f"(batch_size*context_length={self.batch_size * self.context_length})"
            )
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.arch]

    @property
    def batch_tokens(self) -> int:
        return self.batch_size * self.context_length

    @property
    def total_steps(self) -> int:
        return self.token_budget // self.batch_tokens


# Peak learning rates per architecture, from benchmarks/lr_probe.py on the real corpus (see the methods page).
DEFAULT_LR = {"transformer": 3e-3, "lstm": 1e-2}


def resolve_device(device: str) -> torch.device:
    """``auto`` takes CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to the peak, then cosine decay to ``min_lr_ratio`` of it."""
    peak, total = cfg.learning_rate, cfg.total_steps
    warmup = max(1, int(cfg.warmup_frac * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (dim >= 2) only, never on biases, norms or LSTM biases."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.95), foreach=True)


def get_batch(data: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``context_length + 1`` tokens from a split stream: inputs and targets."""
    starts = torch.randint(len(data) - cfg.context_length - 1, (cfg.batch_size,), generator=gen)
    offsets = torch.arange(cfg.context_length + 1)
    windows = data[starts[:, None] + offsets]
    return windows[:, :-1], windows[:, 1:]


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: torch.Tensor, context_length: int, max_tokens: int | None = None,
             batch_size: int = 64, device: torch.device | str = "cpu") -> float:
    """Mean next-token loss (nats) over consecutive non-overlapping windows of a split stream."""
    model.eval()
    n = len(data) - 1 if max_tokens is None else min(len(data) - 1, max_tokens)
    n_windows = max(1, n // context_length)
    total, count = 0.0, 0
    for first in range(0, n_windows, batch_size):
        idx = torch.arange(first, min(first + batch_size, n_windows))[:, None] * context_length
        rows = idx + torch.arange(context_length + 1)
        rows = rows.clamp(max=len(data) - 1)
        windows = data[rows].to(device)
        x, y = windows[:, :-1], windows[:, 1:]
        logits = model(x)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train()
    return total / count


def git_commit() -> str | None:
    """The commit of the code that made a result (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _state(model, optimizer, step, gen, curve, best, cfg, data_fingerprint) -> dict:
    return {
        "config": asdict(cfg), "data_fingerprint": data_fingerprint, "step": step, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "batch_rng": gen.get_state(), "torch_rng": torch.get_rng_state(),
        "curve": curve, "best": best,
    }


def load_resume_state(run_dir: Path, cfg: TrainConfig, data_fingerprint: str | None, device: torch.device,
                      log: Callable[[str], None] | None = print) -> dict | None:
    """The checkpoint of an interrupted run, if it was made with the same configuration and data.

    A checkpoint (or its ``best.pt``) that cannot be read is moved aside as ``*.corrupt``; one made with
    another configuration or other data is ignored. Either way the run starts from scratch, and ``log``
    says why."""
    ckpt_path, best_path = run_dir / "checkpoint.pt", run_dir / "best.pt"
    if not ckpt_path.exists():
        return None
    try:
        state = load_torch(ckpt_path, map_location=device)
        if state["best"]["step"] > 0:
            load_torch(best_path, map_location="cpu")
    except (CorruptArtifactError, FileNotFoundError, KeyError, TypeError) as err:
        for path in (ckpt_path, best_path):
            if path.exists():
                move_aside(path)
        if log:
            log(f"{run_dir.name}: {err}; moved aside as *.corrupt, training from scratch")
        return None
    if state["config"] != asdict(cfg) or state.get("data_fingerprint") != data_fingerprint:
        if log:
            what = "configuration" if state["config"] != asdict(cfg) else "data"
            log(f"{run_dir.name}: the checkpoint was made with another {what}; training from scratch")
        return None
    return state


def _save(obj: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


@dataclass
class _Clock:
    """Training wall time, excluding evaluation and checkpointing."""

    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def lap(self) -> None:
        now = time.perf_counter()
        self.seconds += now - self.started
        self.started = now

    def restart(self) -> None:
        self.started = time.perf_counter()


def train(
    cfg: TrainConfig,
    tokens: dict[str, np.ndarray],
    vocab_size: int,
    run_dir: str | Path,
    *,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
    data_fingerprint: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Train ``cfg.arch``/``cfg.size`` on ``tokens['train']`` for ``cfg.token_budget`` tokens.

    ``tokens`` holds the ``train``, ``val`` and ``test`` streams. Writes ``checkpoint.pt`` (resume state,
    at each evaluation) and ``best.pt`` (best-validation weights) under ``run_dir`` and returns the run
    record (also what :mod:`musicscale.sweep` saves as ``result.json``). ``callback`` is called with each
    evaluation record after the checkpoint is written (progress reporting; tests interrupt there).
    ``data_fingerprint`` identifies the token streams (:func:`musicscale.datasets.data_fingerprint`): a
    checkpoint is resumed only if it was made with the same configuration and the same data.
    """
    run_dir = Path(run_dir)
    for split in ("train", "val", "test"):
        if split not in tokens or len(tokens[split]) <= cfg.context_length + 1:
            n = len(tokens.get(split, []))
            raise ValueError(f"the {split} split has {n} tokens, fewer than context_length+2={cfg.context_length + 2}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, cfg.size, vocab_size, cfg.context_length).to(device)
    optimizer = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in tokens.items()}
    train_data = data["train"].to(device)
    flops_per_token = model.flops_per_token()

    step, curve, best = 0, [], {"val_loss": math.inf, "step": 0, "tokens": 0}
    wall_before = 0.0
    ckpt_path, best_path = run_dir / "checkpoint.pt", run_dir / "best.pt"
    state = load_resume_state(run_dir, cfg, data_fingerprint, device, log)
    if state is not None:  # resume
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["batch_rng"])
        torch.set_rng_state(state["torch_rng"])
        step, curve, best = state["step"], state["curve"], state["best"]
        wall_before = state.get("wall_time_s", 0.0)

    total = cfg.total_steps
    eval_steps = sorted({max(1, round(total * (i + 1) / cfg.n_evals)) for i in range(cfg.n_evals)})
    clock = _Clock(seconds=wall_before)
    running, n_running = 0.0, 0
    bar = tqdm(total=total, initial=step, disable=not progress, leave=False,
               desc=f"{cfg.arch}-{cfg.size}-s{cfg.seed}", unit="step")
    model.train()
    while step < total:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = get_batch(train_data, cfg, gen)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        running += loss.item()
        n_running += 1
        bar.update(1)
        if step in eval_steps:
            clock.lap()
            val = evaluate(model, data["val"], cfg.context_length, cfg.eval_tokens, device=device)
            tokens_seen = step * cfg.batch_tokens
            point = {"step": step, "tokens": tokens_seen, "flops": tokens_seen * flops_per_token,
                     "train_loss": running / n_running, "val_loss": val, "lr": lr_at(step - 1, cfg)}
            curve.append(point)
            running, n_running = 0.0, 0
            if val < best["val_loss"]:
                best = {"val_loss": val, "step": step, "tokens": tokens_seen}
                _save({"arch": cfg.arch, "size": cfg.size, "vocab_size": vocab_size,
                       "context_length": cfg.context_length, "step": step, "model": model.state_dict(),
                       "config": asdict(cfg), "data_fingerprint": data_fingerprint}, best_path)
            state = _state(model, optimizer, step, gen, curve, best, cfg, data_fingerprint)
            state["wall_time_s"] = clock.seconds
            _save(state, ckpt_path)
            bar.set_postfix(val=f"{val:.3f}")
            if callback is not None:
                callback(point)
            clock.restart()
    bar.close()
    clock.lap()

    try:
        best_state = load_torch(best_path, map_location=device)
    except CorruptArtifactError:
        move_aside(best_path)  # the next attempt sees no best.pt and trains the run again from scratch
        raise
    model.load_state_dict(best_state["model"])
    test = evaluate(model, data["test"], cfg.context_length, device=device)
    tokens_seen = total * cfg.batch_tokens
    n_params = non_embedding_parameters(model)
    wall = clock.seconds
    return {
        "run": f"{cfg.arch}-{cfg.size}-s{cfg.seed}",
        "arch": cfg.arch, "size": cfg.size, "seed": cfg.seed,
        "config": asdict(cfg), "data_fingerprint": data_fingerprint,
        "params_non_embedding": n_params, "params_total": total_parameters(model),
        "flops_per_token": flops_per_token, "tokens_seen": tokens_seen, "flops": tokens_seen * flops_per_token,
        "steps": total, "wall_time_s": wall, "tokens_per_s": tokens_seen / wall if wall > 0 else None,
        "curve": curve,
        "best_val_loss": best["val_loss"], "best_step": best["step"], "best_tokens": best["tokens"],
        "test_loss": test, "val_bpc": best["val_loss"] * NATS_TO_BITS, "test_bpc": test * NATS_TO_BITS,
        "device": str(device), "threads": torch.get_num_threads(),
        "versions": {"musicscale": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "git_commit": git_commit(),
    }
