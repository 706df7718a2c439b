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
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .grouped import group_key, groupable, train_group
from .models import check_arch_size, describe
from .schedule import schedule_points
from .train import TrainConfig, model_config, read_record, same_config, train, write_record
from .workdir import (
    CorruptArtifactError,
    Workdir,
    data_fingerprint,
    fingerprint,
    load_torch,
    move_aside,
    read_json,
    remove_partial_files,
    write_json,
)


@dataclass(frozen=True)
class RunSpec:
    """One point of a sweep: a dataset, a full training configuration, and what the run is for: a ``main``
    run of the study, an ``lr`` probe of the learning-rate search, or a ``cosine`` run of the schedule check."""

    dataset: str
    config: TrainConfig
    # or "lr", "cosine", "repeat" (the repetition experiment: a prefix of the data, in epochs), "ablation" (a main
    # run with one thing changed: its model's variant, its budget or its rate)
    kind: str = "main"

    @property
    def name(self) -> str:
        c = self.config
        base = f"{c.arch}-{c.size}-s{c.seed}-t{c.token_budget}"
        if self.kind == "lr":
            return f"{base}-lr{c.lr:.3g}-b{c.beta2:g}-probe{c.train_branches}"
        if self.kind == "cosine":
            return f"{base}-cosine"
        if self.kind == "repeat":
            return f"{base}-u{c.unique_tokens}"
        if self.kind == "ablation":
            return base + (f"-v{c.variant}" if c.variant else "") + (f"-lr{c.lr:.3g}" if c.lr is not None else "")
        return base


def grid(datasets: Iterable[str], archs: Iterable[str], sizes: Iterable[str], seeds: Iterable[int],
         base: TrainConfig) -> list[RunSpec]:
    """Every (dataset, arch, size, seed) combination of ``base``, validated (a sweep by hand, outside a study)."""
    archs, sizes = list(archs), list(sizes)
    for arch, size in itertools.product(archs, sizes):
        check_arch_size(arch, size)
    return [RunSpec(d, replace(base, arch=a, size=s, seed=seed))
            for d, a, s, seed in itertools.product(datasets, archs, sizes, seeds)]


def load_tokens(workdir: Workdir, dataset: str) -> tuple[dict[str, np.ndarray], dict]:
    """The three split streams and the meta of a tokenized dataset; ``meta["fingerprint"]`` is computed
    from the arrays themselves, so it always describes the data a run is given."""
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
    write_record(run_dir / "result.json", result)
    return {**result, "_notes": notes}


def run_group(workdir: str | Path, specs: Sequence[RunSpec]) -> list[dict]:
    """Train runs of one dataset and one :func:`musicscale.grouped.group_key` as one program and write each
    ``result.json`` (one spec: :func:`run_one`). Returns their records, each with ``_notes`` as :func:`run_one`'s."""
    if len(specs) == 1:
        return [run_one(workdir, specs[0])]
    wd = Workdir(workdir)
    dataset = specs[0].dataset
    tokens, meta = load_tokens(wd, dataset)
    notes: list[str] = []
    dirs = [wd.run_dir(dataset, s.name) for s in specs]
    records = train_group([s.config for s in specs], tokens, meta["vocab_size"], dirs,
                          data_fingerprint=meta["fingerprint"], log=notes.append)
    out = []
    for spec, run_dir, result in zip(specs, dirs, records):
        result.update(dataset=dataset, run=spec.name, entropy_rate=meta.get("entropy_rate"), group_size=len(specs))
        write_record(run_dir / "result.json", result)
        out.append({**result, "_notes": [n for n in notes if n.startswith(run_dir.name)]})
    return out


def groups(specs: Sequence[RunSpec], size: int) -> list[list[RunSpec]]:
    """``specs`` in groups of at most ``size`` runs that can train as one (same dataset and
    :func:`musicscale.grouped.group_key`, a family that batches under vmap), in the order of their first run;
    a run that can join no other is a group of one."""
    if size < 1:
        raise ValueError(f"group_size must be at least 1, got {size}")
    by_key: dict[tuple, list[list[RunSpec]]] = {}
    out: list[list[RunSpec]] = []
    for spec in specs:
        if size == 1 or not groupable(spec.config):
            out.append([spec])
            continue
        chunks = by_key.setdefault((spec.dataset, group_key(spec.config)), [])
        if not chunks or len(chunks[-1]) == size:
            chunks.append([])
            out.append(chunks[-1])
        chunks[-1].append(spec)
    return out


def finished_result(workdir: Workdir, spec: RunSpec, data_fingerprint: str | None = None) -> tuple[dict | None, str]:
    """``(result, "")`` if ``spec`` finished with the same configuration and data, else ``(None, why)``.

    An unreadable ``result.json`` or ``model.pt`` is moved aside as ``*.corrupt`` (the reason says so)."""
    run_dir = workdir.run_dir(spec.dataset, spec.name)
    path, best = run_dir / "result.json", run_dir / "model.pt"
    if not path.exists():
        return None, "not trained yet"
    try:
        result = read_record(path)
        load_torch(best)
    except (CorruptArtifactError, FileNotFoundError) as err:
        if path.exists():
            move_aside(path)
        if best.exists():
            move_aside(best)
            (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # its measured weights are gone: start over
        return None, f"{err}; moved aside as *.corrupt, training again"
    if not same_config(result.get("config") or {}, spec.config):
        return None, "its result was made with another configuration, training again"
    if result.get("model") != model_config(spec.config):
        return None, (f"its result was made with another model ({result.get('model') or 'not recorded'}, now "
                      f"{model_config(spec.config)}), training again")
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
              log: Callable[[str], None] | None = print, index: bool = True, group_size: int = 1) -> list[dict]:
    """Run every spec not already finished; return all results in spec order.

    ``client`` is an optional ``dask.distributed.Client``: runs are then submitted to its workers (one
    run per worker thread; give each worker one thread and set ``TrainConfig.threads=1``). ``log``
    receives one line per run: its loss, and the time it took with an estimate of the time left.
    ``index=False`` leaves ``sweep_results.json`` alone (the learning-rate probes and the schedule check).
    ``group_size > 1`` trains runs of one shape (a size's rate probes, its seeds) as one program of up to that
    many (:mod:`musicscale.grouped`); each keeps its own run folder, checkpoints and ``result.json``.
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
    cost = {_key(s): _cost(s.config) for s in pending}
    remaining, spent, start = sum(cost.values()), 0.0, time.perf_counter()
    for i, spec in enumerate(s for s in specs if _key(s) in results):
        if log:
            log(f"[{i + 1}/{len(specs)}] {_key(spec)}: {_loss_text(results[_key(spec)])} (finished earlier)")

    def write_index(dataset: str) -> None:
        if not index:
            return
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
            log(f"[{len(results)}/{len(specs)}] {_key(spec)}: {_loss_text(result)} "
                f"(trained in {result['wall_time_s']:.0f} s; {elapsed:.0f} s so far, ETA {eta:.0f} s)")

    tasks = groups(pending, group_size)
    if client is None:
        for task in tasks:
            for spec, result in zip(task, run_group(wd.root, task)):
                record(spec, result)
    else:
        from dask.distributed import as_completed

        # Costliest first, so the slowest run does not start last.
        order = sorted(tasks, key=lambda t: -sum(cost[_key(s)] for s in t))
        futures = {client.submit(run_group, str(wd.root), task, pure=False): task for task in order}
        for future in as_completed(futures):
            for spec, result in zip(futures[future], future.result()):
                record(spec, result)
    return [results[_key(s)] for s in specs]


def _key(spec: RunSpec) -> str:
    return f"{spec.dataset}/{spec.name}"


def _loss_text(result: dict) -> str:
    """A run's loss for the log: the test loss, or the validation loss of a probe (which measures no test)."""
    if result.get("test_loss") is not None:
        return f"test {result['test_loss']:.4f} nats/char"
    return f"val {result['val_loss']:.4f} nats/char"


def _cost(cfg: TrainConfig) -> float:
    """Training FLOPs of a run (trunk and branches), for the time estimate and the order of submission."""
    points = schedule_points(cfg)
    steps = points[-1].fork + sum(p.cooldown for p in points)
    fpt = describe(cfg.arch, cfg.size, vocab_size=128, context_length=cfg.context_length,
                   variant=cfg.variant)["flops_per_token"]
    return steps * cfg.batch_tokens * fpt


def collect_results(workdir: str | Path, dataset: str | None = None) -> list[dict]:
    """Every finished run's ``result.json`` under ``runs/`` (of one dataset, or all)."""
    wd = Workdir(workdir)
    datasets = [dataset] if dataset else wd.datasets("runs")
    out = []
    for d in datasets:
        for path in sorted(wd.runs_dir(d).glob("*/result.json")):
            out.append(read_record(path))
    return out


@contextmanager
def cluster(n_workers: int, scheduler_address: str | None):
    """A Dask client for the runs (an existing scheduler, a local cluster of ``n_workers``), or None."""
    if scheduler_address:
        from dask.distributed import Client

        with Client(scheduler_address) as client:
            yield client
    elif n_workers > 1:
        from dask.distributed import Client, LocalCluster

        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as c:
            with Client(c) as client:
                yield client
    else:
        yield None
