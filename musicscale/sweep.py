"""A grid of training runs -> one ``result.json`` per run, locally or on a Dask cluster.

A run whose ``result.json`` exists with the same configuration and the same data (fingerprint of the
token streams) is skipped, so an interrupted sweep continues where it stopped (an interrupted run resumes
from its own checkpoint); a result made with other data, or one that cannot be read, is trained again and
the log says why. The sweep's results file lists the finished runs of each dataset; it is rewritten
atomically after every finished run and never lists a dataset with no finished run.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .models import SIZE_GRIDS, check_arch_size, describe
from .params import as_int, as_list, as_optional_list
from .train import TrainConfig, train
from .workdir import (
    CorruptArtifactError,
    Workdir,
    fingerprint,
    load_torch,
    move_aside,
    read_json,
    remove_partial_files,
    write_json,
)


@dataclass(frozen=True)
class RunSpec:
    """One point of a sweep: a dataset and a full training configuration."""

    dataset: str
    config: TrainConfig

    @property
    def name(self) -> str:
        c = self.config
        return f"{c.arch}-{c.size}-s{c.seed}-t{c.token_budget}"


def grid(datasets: Iterable[str], archs: Iterable[str], sizes: Iterable[str], seeds: Iterable[int],
         base: TrainConfig, token_budgets: Iterable[int] | None = None) -> list[RunSpec]:
    """Every (dataset, arch, size, seed, budget) combination, validated, cheapest architecture last."""
    archs, sizes = list(archs), list(sizes)
    for arch, size in itertools.product(archs, sizes):
        check_arch_size(arch, size)
    budgets = list(token_budgets) if token_budgets is not None else [base.token_budget]
    return [
        RunSpec(d, replace(base, arch=a, size=s, seed=seed, token_budget=b))
        for d, a, s, seed, b in itertools.product(datasets, archs, sizes, seeds, budgets)
    ]


def load_tokens(workdir: Workdir, dataset: str) -> tuple[dict[str, np.ndarray], dict]:
    """The three split streams and the meta of a tokenized dataset; ``meta["fingerprint"]`` is computed
    from the arrays themselves, so it always describes the data a run is given."""
    from .datasets import data_fingerprint

    meta = read_json(workdir.require(workdir.tokens_meta(dataset)))
    tokens = {s: np.load(workdir.require(workdir.tokens(dataset, s))) for s in ("train", "val", "test")}
    meta["fingerprint"] = data_fingerprint({s: fingerprint(a) for s, a in tokens.items()}, meta["vocabulary"])
    return tokens, meta


def current_fingerprint(workdir: Workdir, dataset: str) -> str:
    """The fingerprint of a dataset's token streams as the tokenize stage recorded it in ``meta.json``
    (computed from the arrays when an older meta lacks it)."""
    meta = read_json(workdir.require(workdir.tokens_meta(dataset)))
    return meta.get("fingerprint") or load_tokens(workdir, dataset)[1]["fingerprint"]


def run_one(workdir: str | Path, spec: RunSpec, progress: bool = False) -> dict:
    """Train one run (resuming if a checkpoint exists) and write its ``result.json``. The returned record
    also holds ``_notes``, what the trainer said about the checkpoint it found (for the sweep's log)."""
    wd = Workdir(workdir)
    tokens, meta = load_tokens(wd, spec.dataset)
    run_dir = wd.run_dir(spec.dataset, spec.name)
    notes: list[str] = []
    result = train(spec.config, tokens, meta["vocab_size"], run_dir, progress=progress,
                   data_fingerprint=meta["fingerprint"], log=notes.append)
    result.update(dataset=spec.dataset, run=spec.name, entropy_rate=meta.get("entropy_rate"))
    write_json(run_dir / "result.json", result)
    return {**result, "_notes": notes}


def finished_result(workdir: Workdir, spec: RunSpec, data_fingerprint: str | None = None) -> tuple[dict | None, str]:
    """``(result, "")`` if ``spec`` finished with the same configuration and data, else ``(None, why)``.

    An unreadable ``result.json`` or ``best.pt`` is moved aside as ``*.corrupt`` (the reason says so)."""
    run_dir = workdir.run_dir(spec.dataset, spec.name)
    path, best = run_dir / "result.json", run_dir / "best.pt"
    if not path.exists():
        return None, "not trained yet"
    try:
        result = read_json(path)
        load_torch(best)
    except (CorruptArtifactError, FileNotFoundError) as err:
        if path.exists():
            move_aside(path)
        if best.exists():
            move_aside(best)
            (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # its best weights are gone: start over
        return None, f"{err}; moved aside as *.corrupt, training again"
    if result.get("config") != asdict(spec.config):
        return None, "its result was made with another configuration, training again"
    if data_fingerprint is not None and result.get("data_fingerprint") != data_fingerprint:
        return None, (f"its result was made with other data (fingerprint {result.get('data_fingerprint')}, "
                      f"now {data_fingerprint}), training again")
    return result, ""


def _write_sweep_results(wd: Workdir, dataset: str, runs: list[dict], planned: int, fp: str | None) -> None:
    """Write the dataset's sweep results, or remove a stale file when no run of this sweep has finished."""
    path = wd.sweep_results(dataset)
    if runs:
        write_json(path, {"updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "data_fingerprint": fp,
                          "planned": planned, "runs": runs})
    else:
        path.unlink(missing_ok=True)


def run_sweep(workdir: str | Path, specs: Sequence[RunSpec], *, client=None,
              log: Callable[[str], None] | None = print) -> list[dict]:
    """Run every spec not already finished; return all results in spec order.

    ``client`` is an optional ``dask.distributed.Client``: runs are then submitted to its workers (one
    run per worker thread; give each worker one thread and set ``TrainConfig.threads=1``). ``log``
    receives one line per run: its test loss, and the time it took with an estimate of the time left.
    """
    wd = Workdir(workdir)
    datasets = list(dict.fromkeys(s.dataset for s in specs))
    for d in datasets:
        remove_partial_files(wd.runs_dir(d))
    fps = {d: current_fingerprint(wd, d) for d in datasets}
    planned = {d: sum(s.dataset == d for s in specs) for d in datasets}
    results: dict[str, dict] = {}
    pending = []
    for spec in specs:
        done, why = finished_result(wd, spec, fps[spec.dataset])
        if done is not None:
            results[_key(spec)] = done
        else:
            pending.append(spec)
            if log and why != "not trained yet":
                log(f"{_key(spec)}: {why}")
    cost = {_key(s): s.config.token_budget * _flops_per_token(s.config) for s in pending}
    remaining, spent, start = sum(cost.values()), 0.0, time.perf_counter()
    for i, spec in enumerate(s for s in specs if _key(s) in results):
        if log:
            log(f"[{i + 1}/{len(specs)}] {_key(spec)}: test {results[_key(spec)]['test_loss']:.4f} nats/char "
                "(finished earlier)")

    def write_index(dataset: str) -> None:
        mine = [results[_key(s)] for s in specs if s.dataset == dataset and _key(s) in results]
        _write_sweep_results(wd, dataset, mine, planned[dataset], fps[dataset])

    for dataset in datasets:  # the index lists this sweep's finished runs only, from the start
        write_index(dataset)

    def record(spec: RunSpec, result: dict) -> None:
        nonlocal remaining, spent
        for note in result.pop("_notes", []):
            if log:
                log(f"{spec.dataset}/{note}")
        results[_key(spec)] = result
        write_index(spec.dataset)
        remaining -= cost[_key(spec)]
        spent += cost[_key(spec)]
        elapsed = time.perf_counter() - start
        eta = elapsed / spent * remaining if spent else 0.0
        if log:
            log(f"[{len(results)}/{len(specs)}] {_key(spec)}: test {result['test_loss']:.4f} nats/char "
                f"(trained in {result['wall_time_s']:.0f} s; {elapsed:.0f} s so far, ETA {eta:.0f} s)")

    if client is None:
        for spec in pending:
            record(spec, run_one(wd.root, spec))
    else:
        from dask.distributed import as_completed

        # Costliest first, so the slowest run does not start last.
        order = sorted(pending, key=lambda s: -cost[_key(s)])
        futures = {client.submit(run_one, str(wd.root), spec, pure=False): spec for spec in order}
        for future in as_completed(futures):
            record(futures[future], future.result())
    return [results[_key(s)] for s in specs]


def _key(spec: RunSpec) -> str:
    return f"{spec.dataset}/{spec.name}"


def _flops_per_token(cfg: TrainConfig) -> int:
    return describe(cfg.arch, cfg.size, vocab_size=128, context_length=cfg.context_length)["flops_per_token"]


def collect_results(workdir: str | Path, dataset: str | None = None) -> list[dict]:
    """Every finished run's ``result.json`` under ``runs/`` (of one dataset, or all)."""
    wd = Workdir(workdir)
    datasets = [dataset] if dataset else wd.datasets("runs")
    out = []
    for d in datasets:
        for path in sorted(wd.runs_dir(d).glob("*/result.json")):
            out.append(read_json(path))
    return out


def plan_runs(datasets: Sequence[str], archs: Sequence[str], sizes: Sequence[str], seed: int, base: TrainConfig,
              *, extra_seeds: int = 0, extra_seed_sizes: Sequence[str] = (), data_budgets: Sequence[int] = (),
              data_sizes: Sequence[str] = ()) -> list[RunSpec]:
    """The runs of a study: every size at ``seed``; ``extra_seeds`` more seeds of ``extra_seed_sizes``
    (seed noise, visible where runs are cheap); and ``data_sizes`` at each of ``data_budgets`` (the
    L(N, D) grid). Duplicates are dropped, order kept."""
    if not archs or not sizes:
        raise ValueError("archs and sizes must each name at least one value")
    if extra_seeds < 0:
        raise ValueError(f"extra_seeds must be >= 0, got {extra_seeds}")
    for budget in data_budgets:
        if budget <= 0:
            raise ValueError(f"data_budgets must be positive token counts, got {budget}")
    specs = grid(datasets, archs, sizes, [seed], base)
    specs += grid(datasets, archs, extra_seed_sizes, range(seed + 1, seed + 1 + extra_seeds), base)
    if data_budgets:
        specs += grid(datasets, archs, data_sizes, [seed], base, token_budgets=data_budgets)
    unique: dict[str, RunSpec] = {}
    for spec in specs:
        unique.setdefault(_key(spec), spec)
    return list(unique.values())


def train_stage(workdir: str | Path, *, datasets: Sequence[str] | None = None, archs: Sequence[str],
                sizes: Sequence[str], seed: int = 0, n_workers: int = 1, scheduler_address: str | None = None,
                log: Callable[[str], None] | None = print, plan: dict | None = None, **train_kwargs) -> list[dict]:
    """The train stage: plan the runs for every tokenized dataset and run them (skipping finished ones).

    ``train_kwargs`` are :class:`TrainConfig` fields (token_budget, context_length, ...); ``plan`` holds
    :func:`plan_runs`' keyword arguments. ``n_workers > 1`` runs on a local Dask cluster;
    ``scheduler_address`` connects to an existing one (e.g. ``tcp://host:8786``).
    """
    wd = Workdir(workdir)
    datasets = as_optional_list("datasets", datasets) or wd.datasets("tokens")
    if not datasets:
        wd.require(wd.tokens_meta("<dataset>"))
    archs = as_list("archs", archs, allowed=SIZE_GRIDS)
    sizes = as_list("sizes", sizes)
    as_int("seed", seed)
    as_int("n_workers", n_workers, minimum=1)
    plan = dict(plan or {})
    for key in ("extra_seed_sizes", "data_sizes"):
        if key in plan:
            plan[key] = as_list(key, plan[key], allow_empty=True)
    if "data_budgets" in plan:
        plan["data_budgets"] = [as_int("data_budgets", b, minimum=1)
                                for b in as_list("data_budgets", plan["data_budgets"], item=int, allow_empty=True)]
    if "extra_seeds" in plan:
        as_int("extra_seeds", plan["extra_seeds"], minimum=0)
    device = train_kwargs.get("device", "auto")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device; use 'auto' or 'cpu'")
    train_kwargs.setdefault("threads", 1)  # one thread per run: deterministic, and runs go in parallel
    base = TrainConfig(**train_kwargs)
    check_splits(wd, datasets, base.context_length)
    specs = plan_runs(datasets, archs, sizes, seed, base, **plan)
    if scheduler_address:
        from dask.distributed import Client

        with Client(scheduler_address) as client:
            return run_sweep(wd.root, specs, client=client, log=log)
    if n_workers > 1:
        from dask.distributed import Client, LocalCluster

        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                return run_sweep(wd.root, specs, client=client, log=log)
    return run_sweep(wd.root, specs, log=log)


def check_splits(wd: Workdir, datasets: Sequence[str], context_length: int) -> None:
    """Every split of every dataset must be longer than one context window; the error names which is not."""
    for d in datasets:
        wd.require(wd.tokens_meta(d))
        for split in ("train", "val", "test"):
            n = len(np.load(wd.require(wd.tokens(d, split)), mmap_mode="r"))
            if n < context_length + 2:
                raise ValueError(f"context_length={context_length} is too long for dataset {d!r}: its {split} split "
                                 f"has {n} tokens, and training needs at least context_length + 2")


def runs_table(results: Sequence[dict]):
    """One row per run: dataset, model, N, tokens, best validation and test loss (nats and bits)."""
    from .report import markdown_table

    rows = sorted(results, key=lambda r: (r["dataset"], r["arch"], r["params_non_embedding"], r["seed"],
                                         r["tokens_seen"]))
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None), ("seed", "seed", None),
        ("params_non_embedding", "N (non-emb.)", ","), ("tokens_seen", "tokens", ","),
        ("flops", "FLOPs", ".2e"), ("best_val_loss", "best val (nats)", ".4f"),
        ("test_loss", "test (nats)", ".4f"), ("test_bpc", "test (bits/char)", ".4f")])


def throughput_table(results: Sequence[dict]):
    """Measured training speed per run (wall time excludes evaluation): varies with the machine."""
    from .report import markdown_table

    rows = sorted(results, key=lambda r: (r["dataset"], r["arch"], r["params_non_embedding"], r["seed"]))
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("run", "run", None), ("device", "device", None),
        ("threads", "threads", None), ("wall_time_s", "train time (s)", ".1f"), ("tokens_per_s", "tokens/s", ",.0f")])
