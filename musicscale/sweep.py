"""A grid of training runs -> one ``result.json`` per run, locally or on a Dask cluster.

A run whose ``result.json`` exists with the same configuration is skipped, so an interrupted sweep
continues where it stopped (an interrupted run resumes from its own checkpoint). The sweep's results
file is rewritten atomically after every finished run.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .models import check_arch_size, describe
from .train import TrainConfig, train
from .workdir import Workdir, read_json, write_json


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
    """The three split streams and the meta of a tokenized dataset."""
    meta = read_json(workdir.require(workdir.tokens_meta(dataset)))
    tokens = {s: np.load(workdir.require(workdir.tokens(dataset, s))) for s in ("train", "val", "test")}
    return tokens, meta


def run_one(workdir: str | Path, spec: RunSpec, progress: bool = False) -> dict:
    """Train one run (resuming if a checkpoint exists) and write its ``result.json``."""
    wd = Workdir(workdir)
    tokens, meta = load_tokens(wd, spec.dataset)
    run_dir = wd.run_dir(spec.dataset, spec.name)
    result = train(spec.config, tokens, meta["vocab_size"], run_dir, progress=progress)
    result.update(dataset=spec.dataset, run=spec.name, entropy_rate=meta.get("entropy_rate"))
    write_json(run_dir / "result.json", result)
    return result


def finished_result(workdir: Workdir, spec: RunSpec) -> dict | None:
    """The saved result of ``spec`` if it exists and was made with the same configuration."""
    path = workdir.run_dir(spec.dataset, spec.name) / "result.json"
    if not path.exists():
        return None
    result = read_json(path)
    return result if result.get("config") == asdict(spec.config) else None


def run_sweep(workdir: str | Path, specs: Sequence[RunSpec], *, client=None,
              log: Callable[[str], None] | None = print) -> list[dict]:
    """Run every spec not already finished; return all results in spec order.

    ``client`` is an optional ``dask.distributed.Client``: runs are then submitted to its workers (one
    run per worker thread; give each worker one thread and set ``TrainConfig.threads=1``). ``log``
    receives one line per run: its test loss, and the time it took with an estimate of the time left.
    """
    wd = Workdir(workdir)
    results: dict[str, dict] = {}
    pending = []
    for spec in specs:
        done = finished_result(wd, spec)
        if done is not None:
            results[_key(spec)] = done
        else:
            pending.append(spec)
    cost = {_key(s): s.config.token_budget * _flops_per_token(s.config) for s in pending}
    remaining, spent, start = sum(cost.values()), 0.0, time.perf_counter()
    for i, spec in enumerate(s for s in specs if _key(s) in results):
        if log:
            log(f"[{i + 1}/{len(specs)}] {_key(spec)}: test {results[_key(spec)]['test_loss']:.4f} nats/char "
                "(finished earlier)")

    def record(spec: RunSpec, result: dict) -> None:
        nonlocal remaining, spent
        results[_key(spec)] = result
        for dataset in {s.dataset for s in specs}:
            mine = [r for k, r in results.items() if k.split("/")[0] == dataset]
            write_json(wd.sweep_results(dataset), {"updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": mine})
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
    datasets = list(datasets) if datasets else wd.datasets("tokens")
    if not datasets:
        wd.require(wd.tokens_meta("<dataset>"))
    for d in datasets:
        wd.require(wd.tokens_meta(d))
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    device = train_kwargs.get("device", "auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device; use 'auto' or 'cpu'")
    train_kwargs.setdefault("threads", 1)  # one thread per run: deterministic, and runs go in parallel
    specs = plan_runs(datasets, archs, sizes, seed, TrainConfig(**train_kwargs), **(plan or {}))
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
