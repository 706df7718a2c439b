"""The training loop: one function that trains one model and returns its record.

A run follows its schedule (:mod:`musicscale.schedule`): warmup-stable-decay, whose trunk never decays and whose
cooldown branches each end at one measured point ``(N, D_k, L)``, the loss a full WSD run of length ``D_k`` would
reach, for about 1.2 times the cost of the longest run alone; or, for the schedule check, the classic cosine run.

Batches are epochs of shuffled windows of the training split (:mod:`musicscale.batches`), a function of
the seed and the step, so a branch reads what the trunk would have read; every point records its epochs
(tokens read / unique training tokens). AdamW (decay on matrices only), gradient clipping. Validation and
test losses are tune-aligned (:mod:`musicscale.evaluate`). The full training state is checkpointed
atomically (``checkpoint.pt``) at each branch, so an interrupted run resumes and ends exactly as an
uninterrupted one would (on the CPU, for a fixed thread count); the weights of the last point are saved as
``model.pt``.
"""

from __future__ import annotations

import copy
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import __version__
from .batches import WindowStream
from .evaluate import evaluate_tunes
from .models import architecture, build_model, non_embedding_parameters, total_parameters
from .schedule import Point, cooldown_lr, lr_at, schedule_points, warmup_steps
from .workdir import CorruptArtifactError, atomic_write, git_commit, load_torch, move_aside, read_json, write_json

NATS_TO_BITS = 1.0 / math.log(2.0)
PRECISIONS = ("fp32", "bf16")
ADAM_BETA1 = 0.9


@dataclass
class TrainConfig:
    """Everything that determines a run besides the data. The train stage's parameters
    (:class:`musicscale.stages.train.Params`) take the defaults of the run's shape from here."""

    arch: str = "transformer"
    size: str = "tiny"
    variant: str | None = None  # a named change to the size's config (models.Architecture.variants), or None
    seed: int = 0
    token_budget: int = 200_000  # tokens of the longest branch (WSD) or of the whole run (cosine)
    context_length: int = 64
    batch_size: int = 16
    lr: float | None = None  # peak rate; None: the architecture's default below
    schedule: str = "wsd"  # "wsd" (trunk + cooldown branches) or "cosine"
    n_branches: int = 3  # WSD: cooldown points at token_budget / branch_ratio^k, k = 0 .. n_branches - 1
    branch_ratio: float = 2.0
    cooldown_frac: float = 0.2  # WSD: each branch decays over this fraction of its length
    train_branches: int | None = None  # WSD: train only the shortest few branches (a learning-rate probe)
    warmup_frac: float = 0.05  # linear warm-up over this fraction of the shortest branch (or of a cosine run)
    min_lr_ratio: float = 0.1  # cosine: the rate decays to this fraction of the peak
    n_evals: int = 4  # cosine: evaluations along the run
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    beta2: float = 0.95  # AdamW's second-moment decay (beta1 is ADAM_BETA1); the study chooses it per size
    eval_tokens: int = 8192  # validation tokens (whole tunes) per point; the test split is measured whole
    device: str = "auto"
    threads: int | None = None  # torch CPU threads; None leaves torch's default
    unique_tokens: int | None = None  # read only the first this many training tokens, in epochs (None: the split)
    precision: str = "fp32"  # "bf16": the training forward under bf16 autocast (weights, optimizer, evaluation fp32)

    def __post_init__(self) -> None:
        for name in ("token_budget", "context_length", "batch_size", "n_evals", "eval_tokens", "n_branches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
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
        if self.schedule not in ("wsd", "cosine"):
            raise ValueError(f"schedule must be 'wsd' or 'cosine', got {self.schedule!r}")
        if not self.branch_ratio > 1 or not 0 < self.cooldown_frac < 1 or not 0 <= self.warmup_frac < 1:
            raise ValueError("branch_ratio must be > 1, cooldown_frac in (0, 1) and warmup_frac in [0, 1)")
        if self.unique_tokens is not None and (isinstance(self.unique_tokens, bool) or not isinstance(
                self.unique_tokens, (int, np.integer)) or self.unique_tokens < self.context_length):
            raise ValueError(f"unique_tokens must be None or an integer of at least context_length="
                             f"{self.context_length}, got {self.unique_tokens!r}")
        if not 0 < self.beta2 < 1:
            raise ValueError(f"beta2 must be in (0, 1), got {self.beta2!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.variant is not None:
            architecture(self.arch).size_config(self.size, self.variant)  # ValueError naming the variants
        if self.train_branches is not None and not 1 <= self.train_branches <= self.n_branches:
            raise ValueError(f"train_branches must be None or 1..n_branches, got {self.train_branches!r}")
        points = schedule_points(self)
        if self.schedule == "wsd":
            ends = [p.end for p in points]
            first = points[0]
            if len(set(ends)) < len(ends) or first.end - first.cooldown < warmup_steps(self):
                raise ValueError(
                    f"token_budget={self.token_budget} is too short for {self.n_branches} branches at ratio "
                    f"{self.branch_ratio:g}: the shortest branch has {first.end} steps of {self.batch_tokens} tokens; "
                    "give more tokens or fewer branches")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else architecture(self.arch).lr

    @property
    def batch_tokens(self) -> int:
        return self.batch_size * self.context_length

    @property
    def total_steps(self) -> int:
        return self.token_budget // self.batch_tokens


# Fields added to TrainConfig after runs were recorded, with the value that reproduces what a record without
# them did: such a record was made with that value (so a finished run is still reused).
ADDED_FIELDS = {"variant": None, "precision": "fp32", "beta2": 0.95}


def same_config(stored: dict, cfg: TrainConfig) -> bool:
    """Whether a recorded ``asdict`` of a config describes ``cfg`` (fields added since filled as above)."""
    return {**ADDED_FIELDS, **stored} == asdict(cfg)


def model_config(cfg: TrainConfig) -> dict:
    """The model a run trains, field by field (its family's size config with its variant applied): recorded with the
    run, so that a run made before a family's defaults changed (the Transformer's positions, say) is not reused."""
    return {"family": cfg.arch, **asdict(architecture(cfg.arch).size_config(cfg.size, cfg.variant))}


class CurvePoint(TypedDict):
    """One measurement of a run: the end of a cooldown branch (WSD) or an evaluation (cosine)."""

    step: int
    fork_step: int
    tokens: int  # D: training tokens read by the end of this branch
    epochs: float  # D / unique training tokens
    flops: int
    train_loss: float
    val_loss: float
    test_loss: float | None  # None in a learning-rate probe (which never measures the test split)


class RunRecord(TypedDict):
    """What ``result.json`` holds for one finished run (losses in nats per character, N = ``params_non_embedding``).
    :func:`write_record` and :func:`read_record` are the one pair that writes and reads it."""

    arch: str
    size: str
    seed: int
    config: dict  # asdict(TrainConfig)
    model: dict  # model_config(config): the model it trained, field by field
    data_fingerprint: str | None
    params_non_embedding: int
    params_total: int
    flops_per_token: int
    tokens_seen: int  # D of the longest branch
    flops: int
    unique_tokens: int
    epochs: float
    steps: int
    trained_tokens: int  # every token of trunk and branches
    trained_flops: int
    wall_time_s: float
    tokens_per_s: float | None
    curve: list[CurvePoint]
    val_loss: float
    test_loss: float | None
    val_bpc: float
    test_bpc: float | None
    device: str
    threads: int
    versions: dict
    git_commit: str | None
    # set by the sweep that ran it (musicscale.sweep.run_one): where it belongs and its name (RunSpec.name)
    dataset: NotRequired[str]
    run: NotRequired[str]
    entropy_rate: NotRequired[dict | None]
    group_size: NotRequired[int]  # how many runs trained together with it as one program (musicscale.grouped)


def write_record(path: str | Path, record: RunRecord) -> Path:
    """Write a run's record atomically (a crash leaves the last good one)."""
    return write_json(path, record)


def read_record(path: str | Path) -> RunRecord:
    """A run's record; :class:`musicscale.workdir.CorruptArtifactError` if it cannot be read."""
    return read_json(path)


def check_device(device: str) -> str:
    """``device`` if it names a device this machine has (``auto``, ``cpu``, ``cuda[:i]``); ValueError otherwise."""
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device; use 'auto' or 'cpu'")
    return device


def resolve_device(device: str) -> torch.device:
    """``auto`` takes CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (dim >= 2) only, never on biases, norms or LSTM biases."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(ADAM_BETA1, cfg.beta2), foreach=True)


def window_stream(data: torch.Tensor, cfg: TrainConfig) -> WindowStream:
    """The order in which a run of ``cfg`` reads the training stream ``data`` (:mod:`musicscale.batches`)."""
    return WindowStream(data, cfg.context_length, cfg.batch_size, cfg.seed, cfg.unique_tokens)


def evaluate(model: torch.nn.Module, data: torch.Tensor, context_length: int, max_tokens: int | None = None,
             device: torch.device | str = "cpu") -> float:
    """Mean next-token loss (nats) over whole tunes, tune by tune (:func:`musicscale.evaluate.evaluate_tunes`)."""
    return evaluate_tunes(model, data, context_length, max_tokens=max_tokens, device=device)["loss"]


def _state(model, optimizer, step, curve, cfg, data_fingerprint) -> dict:
    return {
        "config": asdict(cfg), "model_config": model_config(cfg), "data_fingerprint": data_fingerprint, "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "curve": curve,
    }


def load_resume_state(run_dir: Path, cfg: TrainConfig, data_fingerprint: str | None, device: torch.device,
                      log: Callable[[str], None] | None = print) -> dict | None:
    """The checkpoint of an interrupted run, if it was made with the same configuration and data.

    A checkpoint that cannot be read is moved aside as ``*.corrupt``; one made with another configuration
    or other data is ignored. Either way the run starts from scratch, and ``log`` says why."""
    ckpt_path = run_dir / "checkpoint.pt"
    if not ckpt_path.exists():
        return None
    try:
        state = load_torch(ckpt_path, map_location=device)
        missing = {"config", "curve", "step"} - set(state)
        if missing:  # a checkpoint of an older layout is as unusable as a damaged one
            raise CorruptArtifactError(f"{ckpt_path}: no {sorted(missing)} (an older checkpoint layout)")
    except (CorruptArtifactError, TypeError) as err:
        move_aside(ckpt_path)
        if log:
            log(f"{run_dir.name}: {err}; moved aside as *.corrupt, training from scratch")
        return None
    same_model = state.get("model_config") == model_config(cfg)
    if not same_config(state["config"], cfg) or not same_model or state.get("data_fingerprint") != data_fingerprint:
        if log:
            what = ("configuration" if not same_config(state["config"], cfg) else "model" if not same_model
                    else "data")
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


def _steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, stream: WindowStream, cfg: TrainConfig,
           start: int, end: int, lr: Callable[[int], float], bar) -> float:
    """Optimizer steps ``start .. end - 1`` at rate ``lr(step)``; returns the mean training loss."""
    total, n = 0.0, 0
    model.train()
    for step in range(start, end):
        for group in optimizer.param_groups:
            group["lr"] = lr(step)
        x, y = stream.batch(step)
        with autocast(cfg, x.device):
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        total += loss.item()
        n += 1
        bar.update(1)
    return total / n if n else math.nan


def autocast(cfg: TrainConfig, device: torch.device):
    """The training forward's precision: bf16 autocast for ``precision="bf16"`` (cross-entropy stays fp32, as
    autocast keeps it), else a context that changes nothing."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


def _branch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """Independent copies of the model and the optimizer state, to cool down from here (the branch reads the
    batches the trunk would have read: a batch is a function of the step)."""
    b_model = copy.deepcopy(model)
    for module in b_model.modules():  # a copied cuDNN RNN holds its weights apart; put them in one block again
        if isinstance(module, torch.nn.RNNBase):
            module.flatten_parameters()
    b_opt = make_optimizer(b_model, cfg)
    b_opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return b_model, b_opt


@dataclass
class _Run:
    """One run as the loop advances it: its model, optimizer, batches and measurements so far. The solo loop
    (:func:`train`) and the grouped one (:mod:`musicscale.grouped`) share it, so a run's checkpoints, measurements
    and record do not depend on how it was trained."""

    cfg: TrainConfig
    run_dir: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    stream: WindowStream
    data: dict[str, torch.Tensor]
    device: torch.device
    vocab_size: int
    data_fingerprint: str | None
    callback: Callable[[dict], None] | None
    step: int = 0
    curve: list = field(default_factory=list)
    clock: _Clock = field(default_factory=_Clock)

    @classmethod
    def start(cls, cfg: TrainConfig, tokens: dict[str, np.ndarray], vocab_size: int, run_dir: str | Path, *,
              data_fingerprint: str | None, log: Callable[[str], None] | None,
              callback: Callable[[dict], None] | None = None) -> _Run:
        """The run built from its seed, or resumed from its checkpoint (same configuration and data)."""
        for split in ("train", "val", "test"):
            if split not in tokens or len(tokens[split]) <= cfg.context_length + 1:
                n = len(tokens.get(split, []))
                raise ValueError(f"the {split} split has {n} tokens, fewer than context_length+2="
                                 f"{cfg.context_length + 2}")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.arch, cfg.size, vocab_size, cfg.context_length, cfg.variant).to(device)
        optimizer = make_optimizer(model, cfg)
        data = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in tokens.items()}
        run = cls(cfg, Path(run_dir), model, optimizer, window_stream(data["train"].to(device), cfg), data, device,
                  vocab_size, data_fingerprint, callback)
        state = load_resume_state(run.run_dir, cfg, data_fingerprint, device, log)
        if state is not None:  # resume
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            run.step, run.curve = state["step"], state["curve"]
            run.clock = _Clock(seconds=state.get("wall_time_s", 0.0))
        return run

    @property
    def points(self) -> list[Point]:
        return schedule_points(self.cfg)

    @property
    def pending(self) -> list[Point]:
        """The points not measured yet (all of them, unless the run resumed)."""
        return self.points[len(self.curve):]

    @property
    def total_steps(self) -> int:
        """Optimizer steps the whole run takes: the trunk to its last fork, then every branch's cooldown."""
        points = self.points
        return points[-1].fork + sum(p.cooldown for p in points)

    @property
    def steps_done(self) -> int:
        return self.step + sum(p.cooldown for p in self.points[: len(self.curve)])

    def measure(self, point: Point, measured: torch.nn.Module, train_loss: float) -> dict:
        """Measure ``measured`` (the trunk, or the branch cooled down to ``point``), save the checkpoint (and, at
        the last point, the weights), and call the callback; returns the curve's entry."""
        cfg, device = self.cfg, self.device
        self.clock.lap()
        tokens_seen = point.end * cfg.batch_tokens
        flops_per_token = self.model.flops_per_token()
        entry = {"step": point.end, "fork_step": point.fork, "tokens": tokens_seen,
                 "epochs": self.stream.epochs(point.end), "flops": tokens_seen * flops_per_token,
                 "train_loss": train_loss,
                 "val_loss": evaluate(measured, self.data["val"], cfg.context_length, cfg.eval_tokens, device=device),
                 "test_loss": evaluate(measured, self.data["test"], cfg.context_length, device=device)
                 if cfg.train_branches is None else None}  # a learning-rate probe never measures the test split
        self.curve.append(entry)
        if point == self.points[-1]:
            _save({"arch": cfg.arch, "size": cfg.size, "variant": cfg.variant, "vocab_size": self.vocab_size,
                   "context_length": cfg.context_length, "step": point.end, "model": measured.state_dict(),
                   "config": asdict(cfg), "data_fingerprint": self.data_fingerprint}, self.run_dir / "model.pt")
        state = _state(self.model, self.optimizer, self.step, self.curve, cfg, self.data_fingerprint)
        state["wall_time_s"] = self.clock.seconds
        _save(state, self.run_dir / "checkpoint.pt")
        if self.callback is not None:
            self.callback(entry)
        self.clock.restart()
        return entry

    def record(self) -> RunRecord:
        """The run record of a run measured at every point."""
        cfg, model, last = self.cfg, self.model, self.curve[-1]
        flops_per_token = model.flops_per_token()
        wall = self.clock.seconds
        trained_tokens = self.total_steps * cfg.batch_tokens
        test = last["test_loss"]
        return {
            "arch": cfg.arch, "size": cfg.size, "seed": cfg.seed,
            "config": asdict(cfg), "model": model_config(cfg), "data_fingerprint": self.data_fingerprint,
            "params_non_embedding": non_embedding_parameters(model), "params_total": total_parameters(model),
            "flops_per_token": flops_per_token, "tokens_seen": last["tokens"], "flops": last["flops"],
            "unique_tokens": self.stream.unique, "epochs": last["epochs"],
            "steps": last["step"], "trained_tokens": trained_tokens, "trained_flops": trained_tokens * flops_per_token,
            "wall_time_s": wall, "tokens_per_s": trained_tokens / wall if wall > 0 else None,
            "curve": self.curve,
            "val_loss": last["val_loss"], "test_loss": test, "val_bpc": last["val_loss"] * NATS_TO_BITS,
            "test_bpc": None if test is None else test * NATS_TO_BITS,
            "device": str(self.device), "threads": torch.get_num_threads(),
            "versions": {"musicscale": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "git_commit": git_commit(),
        }


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
) -> RunRecord:
    """Train ``cfg.arch``/``cfg.size`` on ``tokens['train']`` and measure it at every point of its schedule.

    ``tokens`` holds the ``train``, ``val`` and ``test`` streams. Writes ``checkpoint.pt`` (resume state, at
    each point) and ``model.pt`` (the weights measured at the last point) under ``run_dir`` and returns the
    run record (also what :mod:`musicscale.sweep` saves as ``result.json``); ``record["curve"]`` holds one
    entry per point (tokens, FLOPs of a run of that length, validation and test loss). A learning-rate probe
    (``train_branches`` set) measures the validation loss only: its test loss is never computed.
    ``callback`` is called with each point after the checkpoint is written (tests interrupt there).
    ``data_fingerprint`` identifies the token streams (:func:`musicscale.workdir.data_fingerprint`): a
    checkpoint is resumed only if it was made with the same configuration and the same data.
    """
    run = _Run.start(cfg, tokens, vocab_size, run_dir, data_fingerprint=data_fingerprint, log=log, callback=callback)
    bar = tqdm(total=run.total_steps, initial=run.steps_done, disable=not progress, leave=False,
               desc=f"{cfg.arch}-{cfg.size}-s{cfg.seed}", unit="step")
    for point in run.pending:
        train_loss = _steps(run.model, run.optimizer, run.stream, cfg, run.step, point.fork,
                            lambda s: lr_at(s, cfg), bar)
        run.step = point.fork
        measured = run.model
        if point.cooldown:
            measured, b_opt = _branch(run.model, run.optimizer, cfg)
            train_loss = _steps(measured, b_opt, run.stream, cfg, point.fork, point.end,
                                lambda s, p=point: cooldown_lr(s, p, cfg), bar)
        entry = run.measure(point, measured, train_loss)
        bar.set_postfix(val=f"{entry['val_loss']:.3f}")
    bar.close()
    return run.record()
