"""The study on one GPU, timed per stage: the prepared check for a lent GPU machine (issue 24).

    python benchmarks/gpu_study.py [--profiles default,gpu] [--group-size 16] [--json gpu_study.json]

For each profile, runs the five stages and the book with ``python -m musicscale run``'s own runner
(:func:`musicscale.pipeline.run_pipeline`) on CUDA, the runs of one shape grouped (``03_train.group_size``), each
profile in a fresh workdir under ``work/gpu-study/``, and writes the wall time of every stage as JSON (and prints
it). With the per-stage times of the same profile on the 2-core CPU (README) this gives the train stage's
speed-up; ``--group-size 1`` times the same design with every run alone, for the share grouping has in it.
Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from musicscale.pipeline import ROOT, run_pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", default="default,gpu", help="comma-separated profiles, timed in this order")
    ap.add_argument("--group-size", type=int, default=16, help="03_train.group_size (1: every run alone)")
    ap.add_argument("--json", default="gpu_study.json", help="where the timings go")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_study.py times the study on CUDA, and torch sees no CUDA device here")
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "python": platform.python_version(),
           "group_size": args.group_size, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "profiles": {}}
    for profile in args.profiles.split(","):
        workdir = ROOT / "work" / "gpu-study" / profile
        shutil.rmtree(workdir, ignore_errors=True)  # a fresh study: nothing reused from an earlier run
        overrides = {"03_train": {"device": "cuda", "group_size": args.group_size}, "05_generate": {"device": "cuda"}}
        out["profiles"][profile] = run_pipeline(profile, workdir, overrides=overrides)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")  # what finished survives a later failure
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
