"""Profiles, papermill execution of the stage notebooks, and the jupyter-book build.

``run_pipeline("default")`` executes ``notebooks/01_data.ipynb`` ... ``05_generate.ipynb`` in order with
papermill, each with the profile's parameters and one shared ``workdir`` and ``seed``, writes the
executed copies to ``book/stages/`` (where ``_toc.yml`` expects them), renders the pages of
``book/templates/`` for the build's datasets, then builds the book into ``_build/html`` with warnings as errors.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import stages as stage_modules
from .workdir import Workdir, atomic_path, remove_partial_files

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
STAGES = tuple(stage_modules.STAGES)

# Parameters per stage on top of the defaults of each stage's Params (musicscale/stages), which are the smoke run
# and which each notebook's parameters cell repeats. The data stage's synthetic_train_tokens is set from the train
# stage's budgets (stage_parameters) unless a profile or an override sets it.
PROFILES: dict[str, dict[str, dict]] = {
    "smoke": {},
    "default": {
        "01_data": {"corpus": ["music21", "synthetic"], "n_synthetic_eval_tunes": 400, "n_workers": 2},
        "03_train": {
            # the four sizes up to tiny span the fit of the held-out check in N; medium lies >= 10x beyond them.
            # Two seeds of every size: the bootstrap redraws the seeds of each size, and the held-out points have a
            # seed spread. (A third seed of every size took the default report past 25 minutes on 2 cores.)
            "sizes": ["nano", "micro", "mini", "tiny", "small", "medium"],
            "context_length": 256, "batch_size": 16, "n_branches": 6,
            "tokens_per_param": 30, "min_steps": 256, "max_steps": 1024,
            "lr_factors": [0.25, 0.5, 1.0, 2.0, 4.0], "lr_probe_branches": 3,
            "extra_seeds": 1, "extra_seed_sizes": ["nano", "micro", "mini", "tiny", "small", "medium"],
            # the schedule check and the repetition experiment on the study's synthetic dataset where it has one
            # (else its first dataset / no repetition experiment): a profile never names a dataset
            "schedule_check": {"arch": "transformer", "size": "tiny", "seeds": 3, "points": 2},
            # what a repeated token is worth: two sizes per family on 1/4, 1/16 and 1/64 of their D
            "repetition": {"sizes": ["mini", "tiny"], "factors": [4, 16, 64], "seeds": 2},
            # why the Transformer trails: its tiny and small runs again with one thing changed, two seeds per arm
            "ablation": {"sizes": ["tiny", "small"], "seeds": 2},
            "eval_tokens": 65_536, "n_workers": 2,
        },
        "04_analyze": {"n_boot": 500},
        # prompts from every size (3 prompts x 4), the temperature sweep on the largest (4 temperatures x 16)
        "05_generate": {"n_samples": 50, "max_new_tokens": 500, "prompt_samples": 4, "temperature_samples": 16},
    },
    "gpu": {
        "01_data": {"corpus": ["music21", "synthetic"], "n_synthetic_eval_tunes": 2000, "n_workers": 16},
        "03_train": {
            "sizes": ["micro", "tiny", "small", "medium", "large", "xl", "gpu-s", "gpu-m", "gpu-l"],
            "context_length": 256, "batch_size": 64, "n_branches": 7,
            "tokens_per_param": 40, "min_steps": 512, "max_steps": 8192,
            "lr_factors": [0.25, 0.5, 1.0, 2.0, 4.0], "lr_probe_branches": 4,
            "extra_seeds": 2, "extra_seed_sizes": ["micro", "tiny", "small", "gpu-l"],
            "schedule_check": {"arch": "transformer", "size": "medium", "seeds": 3, "points": 3},
            "repetition": {"sizes": ["tiny", "small"], "factors": [4, 16, 64], "seeds": 2},
            "ablation": {"sizes": ["small", "medium"], "seeds": 3},
            "eval_tokens": 262_144, "device": "cuda", "n_workers": 1,
        },
        "04_analyze": {"n_boot": 2000},
        "05_generate": {"n_samples": 100, "max_new_tokens": 600, "prompt_samples": 10, "temperature_samples": 50,
                        "device": "cuda"},
    },
}


def profiles_table(unique_tokens: dict[str, int] | None = None):
    """What each profile runs, from :data:`PROFILES` over the stages' defaults (the reproduce page shows it),
    with the most tokens any branch reads and, for the real corpora of ``unique_tokens`` (dataset -> training
    tokens of this build), the epochs that makes; the grammar's data are drawn to size (no token read twice)."""
    from .tables import markdown_table

    rows = []
    for name, profile in PROFILES.items():
        p = {stage: {**stage_modules.module(stage).Params.defaults(), **profile.get(stage, {})} for stage in STAGES}
        data, train = p["01_data"], p["03_train"]
        reads = stage_modules.module("03_train").synthetic_tokens_needed(**train) - train["context_length"]
        epochs = [f"{d}: {reads / n:.2g}" for d, n in (unique_tokens or {}).items() if d in data["corpus"]]
        if "synthetic" in data["corpus"]:
            epochs.append("synthetic: ≤ 1 (drawn to size)")
        seeded = [s for s in train["sizes"] if s in train["extra_seed_sizes"]]
        n_seeds = 1 + train["extra_seeds"]
        rows.append({
            "profile": f"`{name}`", "datasets": ", ".join(data["corpus"]), "sizes": ", ".join(train["sizes"]),
            "seeds": (f"{n_seeds} for {', '.join(seeded)}; 1 for the others" if 0 < len(seeded) < len(train["sizes"])
                      else str(n_seeds if seeded else 1)),
            "branches": train["n_branches"], "steps": f"{train['min_steps']:,}–{train['max_steps']:,}",
            "context": train["context_length"], "rates": len(train["lr_factors"]),
            "boot": p["04_analyze"]["n_boot"], "samples": p["05_generate"]["n_samples"], "device": train["device"],
            "reads": reads, "epochs": "; ".join(epochs) or "—"})
    return markdown_table(rows, [
        ("profile", "profile", None), ("datasets", "datasets", None), ("sizes", "sizes (each family)", None),
        ("seeds", "seeds", None), ("branches", "branches", None), ("steps", "longest branch (steps)", None),
        ("context", "context", None), ("reads", "most tokens a branch reads", ","),
        ("epochs", "largest epochs (real corpora of this build)", None),
        ("rates", "rates probed", None), ("boot", "bootstrap draws", ","),
        ("samples", "samples per model", None), ("device", "device", None)])


def stage_parameters(profile: str, workdir: str | Path, seed: int = 0,
                     overrides: dict[str, dict] | None = None) -> dict[str, dict]:
    """The papermill parameters of each stage for a profile, with ``overrides`` merged last."""
    if profile not in PROFILES:
        raise ValueError(f"profile: unknown profile {profile!r}; allowed: {list(PROFILES)}")
    params = {stage: {"workdir": str(workdir), "seed": seed, **copy.deepcopy(PROFILES[profile].get(stage, {}))}
              for stage in STAGES}
    for stage, values in (overrides or {}).items():
        if stage not in params:
            raise ValueError(f"overrides: unknown stage {stage!r}; allowed: {list(STAGES)}")
        params[stage].update(values)
    data = params["01_data"]
    if "synthetic_train_tokens" not in data:  # the grammar draws what the train stage reads: no token read twice
        need = stage_modules.module("03_train").synthetic_tokens_needed(**params["03_train"])
        if need:
            data["synthetic_train_tokens"] = need
    return params


def check_parameters(params: dict[str, dict]) -> None:
    """Check every stage's parameters against its ``Params`` before anything runs: an unknown name (which
    papermill would only log, running with the default) or a bad value is a ValueError naming it."""
    for stage, values in params.items():
        stage_modules.module(stage).Params.build(**values)


def execute_stage(stage: str, parameters: dict, out_dir: Path = ROOT / "book" / "stages") -> Path:
    """Execute one stage notebook with papermill into ``out_dir`` (atomically: a failed run keeps the
    previous copy, and papermill leaves the failed notebook beside it as ``<stage>.failed.ipynb``)."""
    import papermill

    src, dst = NOTEBOOKS / f"{stage}.ipynb", Path(out_dir) / f"{stage}.ipynb"
    failed = dst.with_suffix(".failed.ipynb")
    with atomic_path(dst, suffix=".ipynb") as tmp:
        try:
            papermill.execute_notebook(str(src), str(tmp), parameters=parameters, cwd=str(NOTEBOOKS),
                                       log_output=True, progress_bar=False, kernel_name="python3")
        except Exception:
            shutil.copyfile(tmp, failed)
            raise
        hide_parameter_cells(tmp)
    failed.unlink(missing_ok=True)
    return dst


def hide_parameter_cells(path: Path) -> None:
    """Tag the default and injected parameter cells ``remove-cell``: the book shows each stage's
    parameters as the table its notebook prints instead."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, path)


def build_book(root: Path = ROOT, strict: bool = True) -> Path:
    """Render the pages that speak of the build's datasets (:func:`musicscale.report.render_pages`), then build
    the jupyter-book from scratch (``-W -n --keep-going`` when ``strict``) into a temporary folder and swap it in
    for ``_build`` only when the build succeeded: a failed or killed build keeps the last good report."""
    from .report import render_pages

    root = Path(root)
    render_pages(root)
    for old in root.glob(f".{BUILD_PREFIX}*"):  # what a killed build left behind
        shutil.rmtree(old, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{BUILD_PREFIX}", dir=root))
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--path-output", str(tmp)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    try:
        subprocess.run(cmd, check=True)
        final, previous = root / "_build", root / f".{BUILD_PREFIX}previous"
        if final.exists():
            os.replace(final, previous)
        os.replace(tmp / "_build", final)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / "_build" / "html" / "index.html"


BUILD_PREFIX = "_build.partial-"


def run_pipeline(profile: str = "default", workdir: str | Path | None = None, *, seed: int = 0,
                 stages: tuple[str, ...] = STAGES, overrides: dict[str, dict] | None = None,
                 book: bool = True, strict: bool = True, root: Path = ROOT) -> dict:
    """Execute the stages in order for a profile, then build the book; returns timings per step.

    ``root`` holds ``_config.yml``, ``_toc.yml`` and ``book/``: the executed notebooks go to
    ``root/book/stages`` and the book to ``root/_build/html``.
    """
    root = Path(root)
    workdir = Path(workdir) if workdir else root / "work" / profile
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"stages: unknown stage(s) {unknown}; allowed: {list(STAGES)}")
    Workdir(workdir)  # a workdir under a file is reported before anything runs
    params = stage_parameters(profile, workdir.resolve(), seed, overrides)
    check_parameters({s: params[s] for s in stages})
    remove_partial_files(root / "book" / "stages")  # notebooks a killed run left half-written
    timings: dict[str, float] = {}
    start = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        print(f"[{i}/{len(stages)}] {stage}  (profile {profile}, workdir {workdir})", flush=True)
        t0 = time.perf_counter()
        execute_stage(stage, params[stage], root / "book" / "stages")
        timings[stage] = time.perf_counter() - t0
        print(f"[{i}/{len(stages)}] {stage} done in {timings[stage]:.0f} s", flush=True)
    if book:
        t0 = time.perf_counter()
        index = build_book(root, strict=strict)
        timings["book"] = time.perf_counter() - t0
        print(f"book built in {timings['book']:.0f} s: {index}", flush=True)
    timings["total"] = time.perf_counter() - start
    print(f"total {timings['total']:.0f} s", flush=True)
    return timings
