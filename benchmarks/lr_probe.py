"""Probe the peak learning rate: test loss of a few sizes at a few rates on a tokenized dataset.

    python benchmarks/lr_probe.py --workdir work/default --dataset music21 --arch lstm \
        --sizes small,large --lrs 1e-3,3e-3,1e-2 --budget 500000

Prints one line per (size, rate). The defaults in ``musicscale.train.DEFAULT_LR`` came from this probe
(500k tokens, context 128, batch 32, seed 0); it is not part of the report because it is a choice
made before the study, not a result of it.
"""

from __future__ import annotations

import argparse
import tempfile

from musicscale.sweep import load_tokens
from musicscale.train import TrainConfig, train
from musicscale.workdir import Workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="work/default")
    parser.add_argument("--dataset", default="music21")
    parser.add_argument("--arch", default="transformer")
    parser.add_argument("--sizes", default="small,large")
    parser.add_argument("--lrs", default="1e-3,3e-3,1e-2")
    parser.add_argument("--budget", type=int, default=500_000)
    args = parser.parse_args()
    tokens, meta = load_tokens(Workdir(args.workdir), args.dataset)
    print(f"{'arch':12} {'size':7} {'lr':>8} {'test loss':>10}")
    for size in args.sizes.split(","):
        for lr in (float(x) for x in args.lrs.split(",")):
            cfg = TrainConfig(arch=args.arch, size=size, token_budget=args.budget, lr=lr, threads=1,
                              n_evals=2, eval_tokens=16_384)
            with tempfile.TemporaryDirectory() as run_dir:
                result = train(cfg, tokens, meta["vocab_size"], run_dir)
            print(f"{args.arch:12} {size:7} {lr:>8.0e} {result['test_loss']:>10.4f}", flush=True)


if __name__ == "__main__":
    main()
