"""The runner: papermill execution of the stage notebooks, and the jupyter-book build.

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
from .profiles import PROFILES, profiles_table  # noqa: F401 (re-exported: the runner's profiles)
from .workdir import Workdir, atomic_path, remove_partial_files

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
STAGES = tuple(stage_modules.STAGES)


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

    ``root`` holds ``_config.yml``, ``_toc.yml``, ``_static/`` and ``book/``: the executed notebooks go to
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
