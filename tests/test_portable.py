"""The committed notebook outputs are compared by nbval only where they are stable across CPUs.

Another x86-64 CPU rounds the training's sums differently, and a training loss moves in its fourth
decimal. Here every training loss of the smoke study is moved by 1e-4, up or down at random (far beyond
that noise), ``04_analyze`` is executed again on those losses by nbval itself, with the same sanitizers
as ``make test``, and its outputs must still match the committed notebook.
"""

import shutil
import subprocess
import sys

import numpy as np

from musicscale.pipeline import ROOT
from musicscale.workdir import Workdir, read_json, write_json

LOSS_KEYS = ("test_loss", "val_loss", "val_bpc", "test_bpc")


def perturb(runs: list[dict], rng: np.random.Generator, eps: float = 1e-4) -> None:
    """Move every loss of every run (final, best and each evaluation's) by ``±eps`` in place."""
    for run in runs:
        for key in LOSS_KEYS:
            if run.get(key) is not None:
                run[key] += eps * rng.choice([-1.0, 1.0])
        for point in run["curve"]:
            for key in ("val_loss", "test_loss", "train_loss"):
                if point.get(key) is not None:
                    point[key] += eps * rng.choice([-1.0, 1.0])


def test_analysis_outputs_survive_perturbed_losses(smoke_report, tmp_path):
    root, _ = smoke_report
    work = tmp_path / "work" / "smoke"  # where the committed notebook's default workdir points
    shutil.copytree(root / "work", work, ignore=shutil.ignore_patterns("*.pt", "generated", "results"))
    wd = Workdir(work)
    rng = np.random.default_rng(0)
    for dataset in wd.datasets("runs"):
        sweep = read_json(wd.sweep_results(dataset))
        perturb(sweep["runs"], rng)
        write_json(wd.sweep_results(dataset), sweep)
        if wd.repetition(dataset).exists():  # the repetition experiment's runs, which the analysis fits too
            repeats = read_json(wd.repetition(dataset))
            perturb(repeats, rng)
            write_json(wd.repetition(dataset), repeats)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("04_analyze.ipynb", "conftest.py"):
        shutil.copy(ROOT / "notebooks" / name, notebooks / name)
    check = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "notebooks/04_analyze.ipynb",
         "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout[-6000:] + check.stderr[-2000:]
