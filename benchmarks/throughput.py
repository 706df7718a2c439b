"""Training and sampling throughput of every grid size on this machine, with model FLOP utilisation (MFU).

    python benchmarks/throughput.py [--sizes micro,xl] [--threads 1] [--steps 30] [--device auto]
                                    [--precision fp32|tf32|bf16] [--peak-tflops X] [--json out.json]

The same run first measures this machine's matrix-multiply peak in the benchmark's precision (the best of
a few square products), then trains every size for ``--steps`` steps and reports tokens/s, achieved model
FLOP/s (the model's own training FLOPs per token, 3 x the forward pass, times tokens/s), MFU against the
measured peak (and against ``--peak-tflops``, a published peak, when given) and peak memory. Speed targets
live here, not in the tests; numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import time

import torch
from torch.nn import functional as F

from musicscale.models import CPU_SIZES, SIZE_GRIDS, build_model, describe
from musicscale.sample import generate
from musicscale.train import TrainConfig, make_optimizer, resolve_device, window_stream

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, precision: str, sizes: tuple[int, ...] | None = None, reps: int = 5) -> float:
    """The best FLOP/s of square matrix products in ``precision`` on ``device`` (2 n^3 FLOPs each)."""
    sizes = sizes or ((4096, 8192) if device.type == "cuda" else (256, 512, 1024))
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
        b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
        for _ in range(2):
            a @ b
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, reps * 2 * n ** 3 / (time.perf_counter() - start))
    return best


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_tokens_per_s(arch: str, size: str, cfg: TrainConfig, steps: int, precision: str,
                       vocab: int = 92) -> tuple[float, int, float]:
    """(tokens/s, training FLOPs per token, peak memory in MiB) of ``steps`` optimizer steps after 3 warm-ups."""
    device = resolve_device(cfg.device)
    model = build_model(arch, size, vocab, cfg.context_length).to(device)
    opt = make_optimizer(model, cfg)
    data = torch.randint(0, vocab, (200_000,), device=device)
    stream = window_stream(data, cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(steps + 3):
        if i == 3:  # warm-up steps excluded
            _sync(device)
            start = time.perf_counter()
        x, y = stream.batch(i)
        with _autocast(device, precision):
            loss = F.cross_entropy(model(x).reshape(-1, vocab).float(), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    tokens_per_s = steps * cfg.batch_tokens / (time.perf_counter() - start)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:  # the process's high-water mark so far: sizes run in order, so it is an upper bound for this one
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return tokens_per_s, model.flops_per_token(), memory


@torch.no_grad()
def sample_tokens_per_s(arch: str, size: str, cfg: TrainConfig, batch: int = 50, new: int = 300,
                        vocab: int = 92) -> float:
    device = resolve_device(cfg.device)
    model = build_model(arch, size, vocab, cfg.context_length).to(device).eval()
    idx = torch.zeros(batch, 4, dtype=torch.long, device=device)
    start = time.perf_counter()
    out = generate(model, idx, new, eot_id=-1, generator=torch.Generator(device=device).manual_seed(0))
    _sync(device)
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
    parser.add_argument("--precision", choices=list(DTYPES), default="fp32",
                        help="fp32; tf32 (TF32 matrix products on a GPU); bf16 (autocast)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="a published peak in this precision, for a second MFU column")
    parser.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    cfg = TrainConfig(context_length=args.context_length, batch_size=args.batch_size, device=args.device,
                      token_budget=args.batch_size * args.context_length * args.steps, schedule="cosine")
    device = resolve_device(args.device)
    for arch in args.archs.split(","):
        for size in args.sizes.split(","):
            if arch not in SIZE_GRIDS or size not in SIZE_GRIDS[arch]:
                raise SystemExit(f"--archs/--sizes: unknown {arch} size {size!r}")
    peak = matmul_peak(device, args.precision)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, threads {torch.get_num_threads()}, precision "
          f"{args.precision}, batch {args.batch_size} x context {args.context_length}")
    print(f"measured matmul peak {peak / 1e12:.3f} TFLOP/s"
          + (f"; published peak {args.peak_tflops:g} TFLOP/s" if args.peak_tflops else ""))
    header = f"{'arch':12} {'size':7} {'N':>11} {'train tok/s':>12} {'GFLOP/s':>9} {'MFU':>6}"
    header += f" {'MFU pub.':>8}" if args.peak_tflops else ""
    print(header + f" {'peak MiB':>9} {'sample tok/s':>13}")
    rows = []
    for arch in args.archs.split(","):
        for size in args.sizes.split(","):
            n = describe(arch, size, 92, args.context_length)["params_non_embedding"]
            tps, fpt, memory = train_tokens_per_s(arch, size, cfg, args.steps, args.precision)
            sample = sample_tokens_per_s(arch, size, cfg)
            row = {"arch": arch, "size": size, "params_non_embedding": n, "train_tokens_per_s": tps,
                   "train_flops_per_token": fpt, "achieved_flops_per_s": tps * fpt, "mfu": tps * fpt / peak,
                   "mfu_published": tps * fpt / (args.peak_tflops * 1e12) if args.peak_tflops else None,
                   "peak_memory_mib": memory, "sample_tokens_per_s": sample}
            rows.append(row)
            line = (f"{arch:12} {size:7} {n:>11,} {tps:>12,.0f} {tps * fpt / 1e9:>9,.1f} {row['mfu']:>6.1%}"
                    + (f" {row['mfu_published']:>8.2%}" if args.peak_tflops else ""))
            print(line + f" {memory:>9,.0f} {sample:>13,.0f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"device": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "precision": args.precision, "batch_size": args.batch_size,
                       "context_length": args.context_length, "matmul_peak_flops_per_s": peak,
                       "published_peak_tflops": args.peak_tflops, "sizes": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
