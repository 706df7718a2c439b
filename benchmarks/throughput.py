"""Training and sampling throughput of every grid size on this machine (prints a table).

    python benchmarks/throughput.py [--sizes micro,xl] [--threads 1] [--steps 30] [--device auto]

Speed targets live here, not in the tests. Numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from torch.nn import functional as F

from musicscale.models import CPU_SIZES, SIZE_GRIDS, build_model, describe
from musicscale.sample import generate
from musicscale.train import TrainConfig, get_batch, make_optimizer, resolve_device


def train_tokens_per_s(arch: str, size: str, cfg: TrainConfig, steps: int, vocab: int = 92) -> float:
    device = resolve_device(cfg.device)
    model = build_model(arch, size, vocab, cfg.context_length).to(device)
    opt = make_optimizer(model, cfg)
    data = torch.randint(0, vocab, (200_000,), device=device)
    gen = torch.Generator().manual_seed(0)
    for i in range(steps + 3):
        if i == 3:  # warm-up steps excluded
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        x, y = get_batch(data, cfg, gen)
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_tokens / (time.perf_counter() - start)


@torch.no_grad()
def sample_tokens_per_s(arch: str, size: str, cfg: TrainConfig, batch: int = 50, new: int = 300,
                        vocab: int = 92) -> float:
    device = resolve_device(cfg.device)
    model = build_model(arch, size, vocab, cfg.context_length).to(device).eval()
    idx = torch.zeros(batch, 4, dtype=torch.long, device=device)
    start = time.perf_counter()
    out = generate(model, idx, new, eot_id=-1, generator=torch.Generator(device=device).manual_seed(0))
    return out.numel() / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(CPU_SIZES))
    parser.add_argument("--archs", default="transformer,lstm")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(context_length=args.context_length, batch_size=args.batch_size, device=args.device,
                      token_budget=args.batch_size * args.context_length * args.steps, schedule="cosine")
    print(f"device {resolve_device(args.device)}, torch threads {torch.get_num_threads()}, "
          f"batch {args.batch_size} x context {args.context_length}")
    print(f"{'arch':12} {'size':7} {'N':>9} {'train tok/s':>12} {'sample tok/s':>13}")
    for arch in args.archs.split(","):
        for size in args.sizes.split(","):
            if size not in SIZE_GRIDS[arch]:
                raise SystemExit(f"--sizes: unknown {arch} size {size!r}")
            n = describe(arch, size, 92, args.context_length)["params_non_embedding"]
            train = train_tokens_per_s(arch, size, cfg, args.steps)
            sample = sample_tokens_per_s(arch, size, cfg)
            print(f"{arch:12} {size:7} {n:>9,} {train:>12,.0f} {sample:>13,.0f}")
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
