"""Would runs that share a shape train faster as one batched model? Training tokens/s, solo against grouped.

    python benchmarks/batched.py [--archs transformer,lstm] [--sizes micro,tiny,small] [--members 5,9]
                                 [--context-length 256] [--batch-size 16] [--repeats 3] [--json out.json]

Every size is timed in one process, one thread, with its variants interleaved and repeated (the best of
``--repeats`` is kept, so load from other processes costs as little as it can):

* ``solo``: one run's optimizer step exactly as the trainer takes it (:func:`musicscale.train._steps`:
  batch, forward, cross-entropy, backward, gradient clipping, AdamW);
* ``vmap``: K members with their parameters stacked (``torch.func.stack_module_state``), one forward and
  backward for all (``vmap`` of ``functional_call``), each member its own batch, gradient norm and clipping,
  one AdamW over the stacked parameters. ``nn.LSTM`` has no batching rule in torch (vmap raises), so the
  LSTM rows say so instead;
* ``packed`` (LSTM only): K members as one ``nn.LSTM`` with block-diagonal weights (K times wider, so K
  times the work of K separate ones; off-diagonal gradients masked), embeddings and heads batched;
* ``ceiling``: one model with a K times larger batch. A grouped step does at least this work (the same
  kernels over K times the tokens, plus per-member parameters), so its ratio to ``solo`` bounds what any
  grouped implementation can gain at this shape.

Each grouped variant is also run once against its members alone on the same batches: the largest difference
of the logits, the losses and the gradients (0 where they agree to the last bit).

Throughput counts the tokens of all members: K runs of D tokens in one group take as long as one run of
K x D tokens at that rate, so ``x solo`` is the factor by which grouping would speed up the runs it holds.
Numbers depend on the machine and on what else runs on it; compare rows of one invocation.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F
from tqdm.auto import tqdm

from musicscale.models import SIZE_GRIDS, build_model
from musicscale.train import TrainConfig, _steps, make_optimizer, window_stream

VOCAB = 92  # about the music21 vocabulary


def solo_step(arch: str, size: str, cfg: TrainConfig, data: torch.Tensor) -> Callable[[], None]:
    """One optimizer step of one run, through the trainer's own step loop."""
    torch.manual_seed(cfg.seed)
    model = build_model(arch, size, VOCAB, cfg.context_length)
    optimizer = make_optimizer(model, cfg)
    stream = window_stream(data, cfg)
    bar = tqdm(disable=True)
    return lambda: _steps(model, optimizer, stream, cfg, 0, 1, lambda s: cfg.learning_rate, bar)


def member_models(arch: str, size: str, cfg: TrainConfig, k: int) -> list[nn.Module]:
    """The models ``train`` would start K runs of seeds ``cfg.seed .. cfg.seed + K - 1`` from."""
    models = []
    for i in range(k):
        torch.manual_seed(cfg.seed + i)
        models.append(build_model(arch, size, VOCAB, cfg.context_length))
    return models


def _clip_per_member(grads: list[torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` for each member of stacked gradients (leading dimension = member)."""
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))


class VmapGroup:
    """K members with their parameters stacked, run as one with ``vmap(functional_call)``."""

    def __init__(self, models: list[nn.Module]):
        self.params, self.buffers = stack_module_state(models)
        self.base = copy.deepcopy(models[0])  # kept on the CPU: moving it to "meta" would untie the tied head
        self.loops: list[str] = []  # operators vmap runs as a loop over the members (no batching rule)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx`` (K, B, T) -> logits (K, B, T, V); raises where a layer has no batching rule."""
        run = lambda p, b, x: functional_call(self.base, (p, b), (x,))  # noqa: E731
        return vmap(run, randomness="different")(self.params, self.buffers, idx)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def clip_grads(self, max_norm: float) -> None:
        _clip_per_member([p.grad for p in self.parameters()], max_norm)

    def member_grads(self, i: int) -> dict[str, torch.Tensor]:
        return {name: p.grad[i] for name, p in self.params.items()}


class PackedLSTM(nn.Module):
    """K LSTM members in one ``nn.LSTM`` K times wider, its weights block-diagonal (member i's inputs and
    state feed only member i's gates); embeddings and heads are stacked and batched."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        k, cfg = len(models), models[0].cfg
        self.k, self.hidden = k, cfg.d_hidden
        self.emb = nn.Parameter(torch.stack([m.emb.weight.detach() for m in models]))
        self.head_w = nn.Parameter(torch.stack([m.head.weight.detach().T for m in models]))
        self.head_b = nn.Parameter(torch.stack([m.head.bias.detach()[None] for m in models]))
        self.lstm = nn.LSTM(k * cfg.d_embed, k * cfg.d_hidden, num_layers=cfg.n_layer, batch_first=True)
        self.masks = {}
        with torch.no_grad():
            for name, p in self.lstm.named_parameters():
                p.zero_()
                for i, m in enumerate(models):
                    self._block(p, i).copy_(getattr(m.lstm, name).view(self._block(p, i).shape))
                if p.dim() == 2:  # 4 gates stacked row-wise, each block-diagonal over the members
                    block = torch.ones(cfg.d_hidden, p.shape[1] // k)
                    self.masks[name] = torch.block_diag(*[block] * k).repeat(4, 1)

    def _view(self, t: torch.Tensor) -> torch.Tensor:
        """An LSTM weight (4 gates x K members x H rows, K members x inputs) or bias, the members as dimensions."""
        return t.view(4, self.k, self.hidden, self.k, -1) if t.dim() == 2 else t.view(4, self.k, self.hidden)

    def _block(self, t: torch.Tensor, i: int) -> torch.Tensor:
        """Member i's part of an LSTM weight (4, H, inputs) or bias (4, H), a view."""
        return self._view(t)[:, i, :, i] if t.dim() == 2 else self._view(t)[:, i]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx`` (K, B, T) -> logits (K, B, T, V)."""
        k, b, t = idx.shape
        x = self.emb[torch.arange(k)[:, None, None], idx]  # (K, B, T, E)
        out, _ = self.lstm(x.permute(1, 2, 0, 3).reshape(b, t, -1))
        out = out.reshape(b * t, k, self.hidden).transpose(0, 1)  # (K, B*T, H)
        return torch.baddbmm(self.head_b, out, self.head_w).view(k, b, t, -1)

    def clip_grads(self, max_norm: float) -> None:
        """Zero the off-diagonal gradients, then clip each member's gradient to its own norm."""
        stacked = [self.emb.grad, self.head_w.grad, self.head_b.grad]
        blocks = []
        for name, p in self.lstm.named_parameters():
            if name in self.masks:
                p.grad.mul_(self.masks[name])
            blocks.append(self._view(p.grad))
        squares = sum(g.flatten(1).pow(2).sum(1) for g in stacked)
        squares = squares + sum(g.pow(2).sum(dim=[d for d in range(g.dim()) if d != 1]) for g in blocks)
        coef = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
        for g in stacked:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
        for g in blocks:
            g.mul_(coef.view(1, -1, *[1] * (g.dim() - 2)))

    def member_grads(self, i: int) -> dict[str, torch.Tensor]:
        grads = {"emb.weight": self.emb.grad[i], "head.weight": self.head_w.grad[i].T,
                 "head.bias": self.head_b.grad[i, 0]}
        for name, p in self.lstm.named_parameters():
            block = self._block(p.grad, i)
            grads[f"lstm.{name}"] = block.reshape(4 * self.hidden, -1) if p.dim() == 2 else block.reshape(-1)
        return grads


def _streams(cfg: TrainConfig, data: torch.Tensor, k: int) -> list:
    """The batches members ``cfg.seed .. cfg.seed + k - 1`` would read."""
    return [window_stream(data, replace(cfg, seed=cfg.seed + i)) for i in range(k)]


def _batches(streams: list, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = zip(*(s.batch(step) for s in streams))
    return torch.stack(x), torch.stack(y)


def _member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's mean loss, computed as the trainer computes a run's (one mean over a (B*T, V) batch: a
    mean over a (K, B*T) view would sum in another order)."""
    return torch.stack([F.cross_entropy(lg.reshape(-1, lg.size(-1)), t.reshape(-1)) for lg, t in zip(logits, y)])


def grouped_step(group: VmapGroup | PackedLSTM, cfg: TrainConfig, data: torch.Tensor, k: int) -> Callable[[], None]:
    """A step of K members: each its own batch, one forward and backward for all, clipping per member, one
    AdamW over the stacked parameters (one rate and weight decay on every tensor: a rate per member and
    decay on matrices only cost the same elementwise work, and this is a timing)."""
    optimizer = torch.optim.AdamW(group.parameters(), lr=cfg.learning_rate, betas=(0.9, 0.95),
                                  weight_decay=cfg.weight_decay, foreach=True)
    streams, steps = _streams(cfg, data, k), iter(range(1 << 62))

    def step() -> None:
        x, y = _batches(streams, next(steps))
        losses = _member_losses(group(x), y)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        group.clip_grads(cfg.grad_clip)
        optimizer.step()
        losses.tolist()

    return step


def identity(group: VmapGroup | PackedLSTM, models: list[nn.Module], cfg: TrainConfig, data: torch.Tensor) -> dict:
    """How far one grouped forward and backward is from each member's own: the largest absolute difference
    of the logits, of the losses and of the gradients, and which parameters' gradients differ at all."""
    x, y = _batches(_streams(cfg, data, len(models)), 0)
    logits = group(x)
    losses = _member_losses(logits, y)
    losses.sum().backward()
    logits, losses = logits.detach(), losses.detach()
    out = {"logits": 0.0, "loss": 0.0, "grad": 0.0, "grads_differ": set()}
    for i, m in enumerate(models):
        solo = m(x[i])
        loss = F.cross_entropy(solo.reshape(-1, solo.size(-1)), y[i].reshape(-1))
        loss.backward()
        solo, loss = solo.detach(), loss.detach()
        out["logits"] = max(out["logits"], float((solo - logits[i]).abs().max()))
        out["loss"] = max(out["loss"], abs(float(loss) - float(losses[i])))
        mine = group.member_grads(i)
        for name, p in m.named_parameters():
            diff = float((p.grad - mine[name]).abs().max())
            out["grad"] = max(out["grad"], diff)
            if diff:
                out["grads_differ"].add(name)
    out["grads_differ"] = sorted(out["grads_differ"])
    return out


def tokens_per_s(step: Callable[[], None], tokens_per_step: int, budget_s: float) -> float:
    """Tokens/s of ``step`` over about ``budget_s`` seconds, after two warm-up steps."""
    start = time.perf_counter()
    for _ in range(2):
        step()
    per_step = (time.perf_counter() - start) / 2
    n = max(3, round(budget_s / per_step))
    start = time.perf_counter()
    for _ in range(n):
        step()
    return n * tokens_per_step / (time.perf_counter() - start)


def group_variants(arch: str, size: str, cfg: TrainConfig, k: int) -> dict[str, VmapGroup | PackedLSTM | str]:
    """The grouped implementations of K members that exist for an architecture, or why one does not."""
    out: dict[str, VmapGroup | PackedLSTM | str] = {}
    group = VmapGroup(member_models(arch, size, cfg, k))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            group(torch.zeros(k, 1, 2, dtype=torch.long))
            out["vmap"] = group
        except RuntimeError as err:
            out["vmap"] = str(err).splitlines()[0]
    group.loops = sorted({m for w in caught for m in re.findall(r"batching rule for (aten::\w+)", str(w.message))})
    if arch == "lstm":
        out["packed"] = PackedLSTM(member_models(arch, size, cfg, k))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="transformer,lstm")
    parser.add_argument("--sizes", default="micro,tiny,small")
    parser.add_argument("--members", default="5,9", help="group sizes K to time")
    parser.add_argument("--context-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.6, help="timed seconds per variant and repeat")
    parser.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    members = [int(k) for k in args.members.split(",")]
    cfg = TrainConfig(context_length=args.context_length, batch_size=args.batch_size, device="cpu",
                      token_budget=args.batch_size * args.context_length * 64, schedule="cosine")
    data = torch.randint(0, VOCAB, (500_000,), generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, 1 thread, batch {args.batch_size} x context {args.context_length}; "
          f"training tokens/s of all K members together, best of {args.repeats}")
    rows = []
    for arch in args.archs.split(","):
        for size in args.sizes.split(","):
            if arch not in SIZE_GRIDS or size not in SIZE_GRIDS[arch]:
                raise SystemExit(f"--archs/--sizes: unknown {arch} size {size!r}")
            c = replace(cfg, arch=arch)
            print(f"{arch} {size}:")
            steps: dict[tuple[str, int], tuple[Callable[[], None], int]] = {
                ("solo", 1): (solo_step(arch, size, c, data), c.batch_tokens)}
            notes: dict[tuple[str, int], str | None] = {}
            checks: dict[tuple[str, int], dict] = {}
            for k in members:
                steps[("ceiling", k)] = (solo_step(arch, size, replace(c, batch_size=k * c.batch_size), data),
                                         k * c.batch_tokens)
                for name, group in group_variants(arch, size, c, k).items():
                    if isinstance(group, str):
                        notes[(name, k)] = group
                        continue
                    checks[(name, k)] = identity(group, member_models(arch, size, c, k), c, data)
                    loops = getattr(group, "loops", [])
                    notes[(name, k)] = f"vmap loops over {', '.join(loops)} (no batching rule)" if loops else None
                    steps[(name, k)] = (grouped_step(group, c, data, k), k * c.batch_tokens)
            rates: dict[tuple[str, int], float] = {}
            for _ in range(args.repeats):  # interleaved, so that load from elsewhere hits every variant alike
                for key, (step, tokens) in steps.items():
                    rates[key] = max(rates.get(key, 0.0), tokens_per_s(step, tokens, args.seconds))
            solo = rates[("solo", 1)]
            for key in sorted(steps.keys() | notes.keys(), key=lambda key: (key[1], key[0])):
                rate, check = rates.get(key), checks.get(key)
                row = {"arch": arch, "size": size, "variant": key[0], "members": key[1], "tokens_per_s": rate,
                       "speedup": rate / solo if rate else None, "identity": check, "note": notes.get(key)}
                rows.append(row)
                line = f"  {key[0]:8} K={key[1]:<2} "
                if rate is None:
                    print(line + str(notes[key]))
                    continue
                line += f"{rate:>9,.0f} tokens/s {rate / solo:>5.2f}x solo"
                if check:
                    same = "bit-identical" if not (check["logits"] or check["loss"] or check["grad"]) else (
                        f"max |diff| logits {check['logits']:.1e}, loss {check['loss']:.1e}, grad {check['grad']:.1e}"
                        + (f" in {len(check['grads_differ'])} tensors" if check["grads_differ"] else ""))
                    line += f"; one step vs solo: {same}"
                if notes.get(key):
                    line += f"; {notes[key]}"
                print(line, flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"torch": torch.__version__, "threads": 1, "batch_size": args.batch_size,
                       "context_length": args.context_length, "repeats": args.repeats, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
