"""Whole runs, alone against grouped: K runs of one shape trained one after another by the trainer
(:func:`musicscale.train.train`) against the same K trained as one group (:func:`musicscale.grouped.train_group`).

    python benchmarks/grouped_runs.py [--size micro] [--members 4] [--batch-sizes 1,16] [--steps 256]
                                      [--device cpu] [--threads 1]

Each run is a WSD run with two branches on a synthetic token stream, measured (validation and test) as the
study measures its runs, so the times are whole runs, evaluation included. Prints, per batch size, both wall
times and their ratio (above 1: the group is faster). Numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from musicscale.grouped import train_group
from musicscale.train import TrainConfig, train

VOCAB = 21


def stream(n: int, rng: np.random.Generator) -> np.ndarray:
    """A learnable stream of ``n`` tokens with a tune separator (0) every 60 and at the end."""
    s = (np.cumsum(rng.integers(1, 3, n)) % (VOCAB - 1) + 1).astype(np.int64)
    s[::60] = 0
    s[-1] = 0
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="micro")
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--context-length", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*batching rule.*")  # torch's note that attention loops over members
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    tokens = {"train": stream(400_000, rng), "val": stream(5_000, rng), "test": stream(5_000, rng)}
    print(f"transformer {args.size}, {args.members} runs, {args.steps} steps each, device {args.device}, "
          f"threads {args.threads}")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        cfgs = [TrainConfig(arch="transformer", size=args.size, seed=i, context_length=args.context_length,
                            token_budget=args.steps * batch * args.context_length, batch_size=batch, n_branches=2,
                            eval_tokens=1024, threads=args.threads, device=args.device) for i in range(args.members)]
        folder = Path(tempfile.mkdtemp())
        t0 = time.perf_counter()
        for i, cfg in enumerate(cfgs):
            train(cfg, tokens, VOCAB, folder / f"alone{i}", log=None)
        alone = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_group(cfgs, tokens, VOCAB, [folder / f"group{i}" for i in range(args.members)], log=None)
        grouped = time.perf_counter() - t0
        print(f"batch {batch:>3}: alone {alone:6.1f} s, grouped {grouped:6.1f} s, "
              f"alone / grouped {alone / grouped:.2f}")


if __name__ == "__main__":
    main()
