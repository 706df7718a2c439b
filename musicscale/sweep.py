"""A grid of training runs -> one ``result.json`` per run, locally or on a Dask cluster.

A run whose ``result.json`` exists with the same configuration is skipped, so an interrupted sweep
continues where it stopped (an interrupted run resumes from its own checkpoint). The sweep's results
file is rewritten atomically after every finished run.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .models import SIZE_GRIDS, check_arch_size
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


def run_sweep(workdir: str | Path, specs: Sequence[RunSpec], *, client=None, progress: bool = True) -> list[dict]:
    """Run every spec not already finished; return all results in spec order.

    ``client`` is an optional ``dask.distributed.Client``: runs are then submitted to its workers (one
    run per worker thread; give each worker one thread and set ``TrainConfig.threads=1``).
    """
    wd = Workdir(workdir)
    results: dict[str, dict] = {}
    pending = []
    for spec in specs:
        done = finished_result(wd, spec)
        if done is not None:
            results[f"{spec.dataset}/{spec.name}"] = done
        else:
            pending.append(spec)
    bar = tqdm(total=len(specs), initial=len(specs) - len(pending), disable=not progress, desc="sweep", unit="run")

    def record(spec: RunSpec, result: dict) -> None:
        results[f"{spec.dataset}/{spec.name}"] = result
        for dataset in {s.dataset for s in specs}:
            mine = [r for k, r in results.items() if k.split("/")[0] == dataset]
            write_json(wd.sweep_results(dataset), {"updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": mine})
        bar.set_postfix_str(f"{spec.dataset}/{spec.name} test={result['test_loss']:.3f}")
        bar.update(1)

    if client is None:
        for spec in pending:
            bar.set_description(f"sweep: {spec.dataset}/{spec.name}")
            record(spec, run_one(wd.root, spec))
    else:
        from dask.distributed import as_completed

        # Largest models first, so the slowest run does not start last.
        order = sorted(pending, key=lambda s: -s.config.token_budget * _grid_rank(s.config))
        futures = {client.submit(run_one, str(wd.root), spec, pure=False): spec for spec in order}
        for future in as_completed(futures):
            record(futures[future], future.result())
    bar.close()
    return [results[f"{s.dataset}/{s.name}"] for s in specs]


def _grid_rank(cfg: TrainConfig) -> int:
    """1 for the smallest size of an architecture's grid, 2 for the next, ...: a rough cost order."""
    return list(SIZE_GRIDS[cfg.arch]).index(cfg.size) + 1


def local_cluster(n_workers: int = 2, threads_per_worker: int = 1):
    """A ``dask.distributed`` client on a local process cluster (one run per worker)."""
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=None)
    return Client(cluster)


def collect_results(workdir: str | Path, dataset: str | None = None) -> list[dict]:
    """Every finished run's ``result.json`` under ``runs/`` (of one dataset, or all)."""
    wd = Workdir(workdir)
    datasets = [dataset] if dataset else wd.datasets("runs")
    out = []
    for d in datasets:
        for path in sorted(wd.runs_dir(d).glob("*/result.json")):
            out.append(read_json(path))
    return out
