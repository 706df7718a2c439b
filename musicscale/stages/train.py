"""Stage 3, training: the learning-rate search, the main runs of the study, the schedule check and the
repetition experiment -> ``runs/<dataset>/<run>/{result.json,model.pt}`` and
``runs/<dataset>/{sweep_results,lr_search,schedule_check,repetition}.json``.

Every run is one WSD trunk with cooldown branches (:mod:`musicscale.train`); its budget comes from its size
(:func:`musicscale.design.token_budget`) and its peak rate from a search on validation loss
(:func:`musicscale.design.lr_search`). Finished runs of the same configuration and data are reused. On a
dataset whose data are unlimited (the grammar's), no run may read a training token twice: the stage checks
that before any run. The repetition experiment trains chosen sizes on a prefix of D / factor tokens, read
factor times (:func:`musicscale.design.repetition_specs`), to measure what a repeated token is worth.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..batches import n_windows
from ..design import (
    ABLATION_DEFAULTS,
    REPETITION_DEFAULTS,
    SCHEDULE_CHECK_DEFAULTS,
    Study,
    ablation_arms,
    ablation_specs,
    compare_schedules,
    lr_search,
    plan_runs,
    reference_runs,
    repetition_specs,
    resolve_schedule_check,
    schedule_check_specs,
    size_budgets,
    split_tokens_needed,
    tokens_read,
)
from ..evaluate import covers_every_tune
from ..models import SIZE_GRIDS, architecture, check_arch_size, describe, size_grid_table
from ..params import StageParameters, as_int, as_list, as_optional_list
from ..repetition import FRESH_EPOCHS
from ..schedule import schedule_cost
from ..sweep import RunSpec, cluster, run_sweep
from ..tables import glue_text, html_table, markdown_table
from ..train import ADAM_BETA1, PRECISIONS, TrainConfig, check_device, resolve_device
from ..workdir import Workdir, write_json

# runs per group on a GPU when group_size is None: a guess, not yet sized by measured memory (issue 24)
CUDA_GROUP_SIZE = 16


@dataclass
class Params(StageParameters):
    """The train stage's parameters. Those named like a :class:`TrainConfig` field set every run's shape (and
    default to its defaults); those named like a :class:`Study` field set the study."""

    stage = "03_train"

    datasets: list | None = None  # None: every tokenized dataset
    archs: list = field(default_factory=lambda: ["transformer", "lstm"])
    sizes: list = field(default_factory=lambda: ["micro", "tiny", "small"])  # names from the size grid below
    context_length: int = TrainConfig.context_length
    batch_size: int = TrainConfig.batch_size  # sequences per optimizer step
    n_branches: int = TrainConfig.n_branches  # cooldown branches per run, each half as long as the next
    cooldown_frac: float = TrainConfig.cooldown_frac  # a branch decays over this fraction of its tokens
    tokens_per_param: float = 30  # a size's longest branch: about this many tokens per parameter ...
    min_steps: int = 32  # ... but at least this many optimizer steps (a power of two) ...
    max_steps: int = 64  # ... and at most this many
    lr_factors: list = field(default_factory=lambda: [0.25, 1.0, 4.0])  # rates tried, times the family's default
    lr_probe_branches: int = 2  # a probe trains this many of its size's shortest branches, scored on the last
    lr_max_extensions: int = 6  # rates added beyond an end of the grid while the best rate is at that end
    beta2s: list = field(default_factory=lambda: [0.95])  # AdamW beta2 values searched, each against every rate
    # the sizes whose recipe is searched (None: every size); the others take the rate law's rate (a power law in N
    # fitted to the searched sizes' optima) and the beta2 of the nearest searched size
    recipe_sizes: list | None = None
    # the longest branches (tokens) of every size's main runs, the same for every N, so that D does not grow with
    # N; None: one run per size, its longest branch from tokens_per_param, min_steps and max_steps
    budgets: list | None = None
    extra_seeds: int = 1  # more seeds of the sizes below
    extra_seed_sizes: list = field(default_factory=lambda: ["micro"])
    # cosine runs against WSD branches of one model (seeds, and branch lengths from the longest), or None; a model
    # left out (None) is the study's own (design.resolve_schedule_check)
    schedule_check: dict | None = field(default_factory=lambda: dict(SCHEDULE_CHECK_DEFAULTS))
    # runs on the first D / factor training tokens, read factor times; None: no repetition experiment
    repetition: dict | None = field(default_factory=lambda: dict(REPETITION_DEFAULTS))
    # main runs with one thing changed (a longer budget, another rate, a model variant) at chosen sizes of one
    # family, each arm with its seeds; None: no ablation (see design.ABLATION_DEFAULTS for what may be left out)
    ablation: dict | None = field(default_factory=lambda: dict(ABLATION_DEFAULTS))
    eval_tokens: int = TrainConfig.eval_tokens  # validation tokens per measurement; the test split is measured whole
    device: str = TrainConfig.device  # "auto" takes CUDA when present
    # runs of one shape (a size's rate probes, its seeds) trained as one program of up to this many
    # (musicscale.grouped); None: CUDA_GROUP_SIZE on a GPU, 1 (each run alone) on the CPU, where it does not pay
    group_size: int | None = None
    # "fp32", or "bf16" (the training forward under autocast); None: bf16 on a GPU at the sizes where it measured
    # faster (models.Architecture.bf16_sizes), fp32 everywhere else
    precision: str | None = None
    n_workers: int = 1  # > 1: a local Dask cluster runs that many runs at once
    scheduler_address: str | None = None  # or the address of a running Dask scheduler, e.g. "tcp://10.0.0.1:8786"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.datasets = as_optional_list("datasets", self.datasets)
        self.archs = as_list("archs", self.archs, allowed=SIZE_GRIDS)
        self.sizes = as_list("sizes", self.sizes)
        for arch, size in itertools.product(self.archs, self.sizes):
            check_arch_size(arch, size)
        self.extra_seed_sizes = as_list("extra_seed_sizes", self.extra_seed_sizes, allow_empty=True)
        self.lr_factors = [float(f) for f in as_list("lr_factors", self.lr_factors, item=(int, float))]
        self.beta2s = [float(b) for b in as_list("beta2s", self.beta2s, item=(int, float))]
        self.recipe_sizes = as_optional_list("recipe_sizes", self.recipe_sizes)
        for size in self.recipe_sizes or []:
            if size not in self.sizes:
                raise ValueError(f"recipe_sizes: {size!r} is not one of the study's sizes ({self.sizes})")
        self.budgets = as_optional_list("budgets", self.budgets, item=int)
        self.n_workers = as_int("n_workers", self.n_workers, minimum=1)
        if self.group_size is not None:
            self.group_size = as_int("group_size", self.group_size, minimum=1)
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be None or one of {PRECISIONS}, got {self.precision!r}")
        as_int("context_length", self.context_length, minimum=1)
        check_device(self.device)
        study = self.study()  # checks the study's own fields
        try:
            self.base_config()
        except ValueError as err:
            raise ValueError(f"{err} (the shortest size gets min_steps={study.min_steps} steps: raise min_steps "
                             "or lower n_branches)") from err

    def study(self) -> Study:
        """The fields of :class:`Study` (what the stage runs besides each run's shape)."""
        values = {f.name: getattr(self, f.name) for f in fields(Study) if hasattr(self, f.name)}
        tuples = {k: tuple(values[k]) for k in ("extra_seed_sizes", "lr_factors", "beta2s", "recipe_sizes", "budgets")
                  if values[k] is not None}
        return Study(**{**values, **tuples})

    def specs(self, datasets: Sequence[str], recipes: dict | None = None) -> tuple[list[RunSpec], list[RunSpec]]:
        """The main runs, and the schedule check's, the repetition experiment's and the ablation's runs, planned
        (and checked) before any run; ``recipes`` are the chosen rates and beta2 (None before the search)."""
        plan, base = self.study(), self.base_config()
        mains = plan_runs(datasets, self.archs, self.sizes, self.seed, base, plan, recipes)
        ref = reference_runs(mains, plan)
        extra = schedule_check_specs(ref, plan.schedule_check, self.seed) if plan.schedule_check else []
        if plan.repetition is not None:
            extra += repetition_specs(ref, plan.repetition, datasets, self.seed)
        extra += ablation_specs(ref, plan.ablation, self.seed)
        # one spec per run: the checks' baseline runs may be each other's, and a check's run that is a main run
        # (the ablation's longer arm at the next budget) is that main run (they stay here too: the checks read their
        # results from this sweep, which reuses them)
        main_of = {(m.dataset, _config_key(m.config)): m for m in mains}
        extra = [main_of.get((s.dataset, _config_key(s.config)), s) for s in extra]
        extra = list({(s.dataset, s.name): s for s in extra}.values())
        return [self._with_precision(s) for s in mains], [self._with_precision(s) for s in extra]

    def _with_precision(self, spec: RunSpec) -> RunSpec:
        """The run in its precision: ``precision``, or bf16 on a GPU at its family's bf16 sizes, else fp32."""
        precision = self.precision or ("bf16" if resolve_device(self.device).type == "cuda"
                                       and spec.config.size in architecture(spec.config.arch).bf16_sizes else "fp32")
        return replace(spec, config=replace(spec.config, precision=precision))

    def resolved_group_size(self) -> int:
        """How many runs of one shape train as one program: ``group_size``, or by the device the runs train on."""
        if self.group_size is not None:
            return self.group_size
        return CUDA_GROUP_SIZE if resolve_device(self.device).type == "cuda" else 1

    def base_config(self) -> TrainConfig:
        """The shape of every run; its budget is set per size (one thread per run: deterministic, and runs
        go in parallel)."""
        return TrainConfig(token_budget=self.min_steps * self.batch_size * self.context_length, threads=1,
                           **{f.name: getattr(self, f.name) for f in fields(TrainConfig)
                              if hasattr(self, f.name) and f.name != "precision"})  # set per size (specs)


def _config_key(cfg: TrainConfig) -> str:
    return repr(sorted(asdict(cfg).items()))


def synthetic_tokens_needed(**values) -> int:
    """The training tokens the synthetic split must hold for the train stage with these parameters to read
    none twice (the runner passes it to the data stage as ``synthetic_train_tokens``)."""
    p = Params.build(**{**values, "device": "cpu"})  # budgets do not depend on the device (nor need one here)
    if p.datasets is not None and "synthetic" not in p.datasets:
        return 0
    mains, extra = p.specs(["synthetic"])
    return split_tokens_needed(mains + extra).get("synthetic", 0)


def run(workdir: str | Path, *, log: Callable[[str], None] | None = print, **params) -> dict:
    """The train stage: for every tokenized dataset, the learning-rate search, the main runs (skipping
    finished ones), the optional schedule check and the repetition experiment. Returns ``{"runs", "lr_search",
    "schedule_check", "repetition"}``.

    ``n_workers > 1`` runs on a local Dask cluster; ``scheduler_address`` connects to an existing one.
    """
    p = Params.build(workdir=workdir, **params)
    wd = Workdir(p.workdir)
    datasets = p.datasets or wd.datasets("tokens")
    if not datasets:
        wd.require(wd.tokens_meta("<dataset>"))
    check_splits(wd, datasets, p.context_length)
    plan = p.study()
    mains, extra = p.specs(datasets)  # every budget, check and experiment is planned here, before any run
    check_fresh(wd, mains + extra)
    with cluster(p.n_workers, p.scheduler_address) as client:
        group = p.resolved_group_size()
        searched = lr_search(wd, [m for m in mains if m.config.seed == p.seed], plan, client=client, log=log,
                             group_size=group)
        for dataset in datasets:
            write_json(wd.lr_search(dataset), [v for k, v in searched.items() if k[0] == dataset])
        mains, extra = p.specs(datasets, searched)
        runs = run_sweep(wd.root, mains, client=client, log=log, group_size=group)
        # the schedule check's and the repetition experiment's runs, in one sweep (they share the workers)
        rest = run_sweep(wd.root, extra, client=client, log=log, index=False, group_size=group) if extra else []
        done = list(zip(extra, rest))
    checked: list[dict] = []
    if plan.schedule_check:
        check = resolve_schedule_check(reference_runs(mains, plan), plan.schedule_check, p.seed)
        checked = compare_schedules([r for s, r in done if s.kind == "main"],
                                    [r for s, r in done if s.kind == "cosine"])
        for row in checked:
            row.update({k: check[k] for k in ("dataset", "arch", "size")})
        write_json(wd.schedule_check(check["dataset"]), checked)
    repeated = [r for s, r in done if s.kind == "repeat"]
    if repeated:
        write_json(wd.repetition(repeated[0]["dataset"]), repeated)
    ablated = ablation_records(ablation_arms(reference_runs(mains, plan), plan.ablation, p.seed),
                               runs + [r for _, r in done])
    if ablated:
        write_json(wd.ablation(ablated[0]["dataset"]), ablated)
    return {"runs": runs, "lr_search": list(searched.values()), "schedule_check": checked, "repetition": repeated,
            "ablation": ablated, "check_runs": [{**r, "kind": s.kind} for s, r in done]}


def ablation_records(arms: Sequence, results: Sequence[dict]) -> list[dict]:
    """One record per run of the ablation's arms: its arm, what changed, and the run's result (found by its
    configuration: an arm's run may be a main run, as the longer arm is at the next budget)."""
    by_config = {(r["dataset"], repr(sorted(r["config"].items()))): r for r in results}
    return [{"arm": a.name, "what": a.what, **by_config[(s.dataset, _config_key(s.config))]}
            for a in arms for s in a.specs]


def check_fresh(wd: Workdir, specs: Sequence[RunSpec]) -> None:
    """No run may read a training token twice on a dataset whose data are unlimited (the grammar's), and a
    repetition run's prefix must fit its split: a ValueError naming the run and the fix, before any run."""
    for dataset, need in split_tokens_needed(specs).items():
        unlimited = wd.unlimited(dataset)
        n = len(np.load(wd.require(wd.tokens(dataset, "train")), mmap_mode="r"))
        for s in (s for s in specs if s.dataset == dataset):
            unique = n_windows(n, s.config.context_length, s.config.unique_tokens) * s.config.context_length
            if s.config.unique_tokens and unique < s.config.unique_tokens:
                raise ValueError(f"repetition: run {s.name} of {dataset!r} trains on the first "
                                 f"{s.config.unique_tokens:,} tokens, but the training split holds {n:,}")
            if unlimited and not s.config.unique_tokens and tokens_read(s.config) > unique:
                raise ValueError(
                    f"dataset {dataset!r} is drawn from the grammar, whose data are unlimited, and no run may read "
                    f"one of its training tokens twice: run {s.name} reads {tokens_read(s.config):,} tokens, but the "
                    f"training split holds {n:,}. Re-run 01_data with synthetic_train_tokens={need:,} or more "
                    "(`python -m musicscale run` sets it from the train stage's budgets)")


def check_splits(wd: Workdir, datasets: Sequence[str], context_length: int) -> None:
    """Every split of every dataset must be longer than one context window; the error names which is not."""
    for d in datasets:
        wd.require(wd.tokens_meta(d))
        for split in ("train", "val", "test"):
            n = len(np.load(wd.require(wd.tokens(d, split)), mmap_mode="r"))
            if n < context_length + 2:
                raise ValueError(f"context_length={context_length} is too long for dataset {d!r}: its {split} split "
                                 f"has {n} tokens, and training needs at least context_length + 2")


TABLE_VOCAB = 100  # the vocabulary of the size table's parameter counts (each dataset has its own)


def size_table(params: Params, vocab_size: int = TABLE_VOCAB):
    """The size grid as a Markdown table: shape, total and non-embedding parameters, FLOPs per token."""
    rows = []
    for r in size_grid_table(tuple(params.archs), tuple(params.sizes), vocab_size, params.context_length):
        r["shape"] = SIZE_GRIDS[r["arch"]][r["size"]].shape()
        rows.append(r)
    return markdown_table(rows, [("arch", "arch", None), ("size", "size", None), ("shape", "shape", None),
                                 ("params_total", "params (total)", ","), ("params_non_embedding", "N (non-emb.)", ","),
                                 ("flops_per_token", "train FLOPs/token", ",")])


def budget_table(params: Params):
    """Per size and budget: N, the longest branch D_max, the shortest D_min, and the range of D/N they cover."""
    base, rows = params.base_config(), []
    for a, s in itertools.product(params.archs, params.sizes):
        n = describe(a, s, vocab_size=128, context_length=params.context_length)["params_non_embedding"]
        for d_max in size_budgets(a, s, base, params.study()):
            d_min = d_max / base.branch_ratio ** (params.n_branches - 1)
            rows.append({"arch": a, "size": s, "n": n, "d_min": d_min, "d_max": d_max, "lo": d_min / n,
                         "hi": d_max / n})
    return markdown_table(rows, [
        ("arch", "arch", None), ("size", "size", None), ("n", "N (non-emb.)", ","),
        ("d_min", "shortest branch D (tokens)", ",.0f"), ("d_max", "longest branch D (tokens)", ",.0f"),
        ("lo", "D/N from", ",.1f"), ("hi", "D/N to", ",.0f")])


def runs_table(results: Sequence[dict]):
    """One row per run: dataset, model, N, its longest branch D and D/N, validation and test loss there."""
    rows = sorted(results, key=lambda r: (r["dataset"], r["arch"], r["params_non_embedding"], r["seed"]))
    rows = [{**r, "d_per_n": r["tokens_seen"] / r["params_non_embedding"], "lr": r["config"]["lr"],
             "points": len(r["curve"])} for r in rows]
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None), ("seed", "seed", None),
        ("params_non_embedding", "N (non-emb.)", ","), ("lr", "peak rate", ".2e"), ("points", "branches", None),
        ("tokens_seen", "longest D (tokens)", ","), ("d_per_n", "D/N", ",.0f"),
        ("val_loss", "val (nats/char)", ".4f"), ("test_loss", "test (nats/char)", ".4f"),
        ("test_bpc", "test (bits/char)", ".4f")])


def epochs_rows(runs: Sequence[dict]) -> list[dict]:
    """Per dataset and family: the unique training tokens, the largest D any branch read, the largest epochs
    (tokens read / unique tokens) and the branch points beyond :data:`FRESH_EPOCHS` epochs."""
    rows = []
    for (d, a), mine in itertools.groupby(sorted(runs, key=lambda r: (r["dataset"], r["arch"])),
                                          key=lambda r: (r["dataset"], r["arch"])):
        mine = list(mine)
        points = [(r, p) for r in mine for p in r["curve"]]
        beyond = [f"{r['size']} at D = {p['tokens']:,}" for r, p in points if p["epochs"] > FRESH_EPOCHS]
        rows.append({"dataset": d, "arch": a, "unique": max(r["unique_tokens"] for r in mine),
                     "D": max(p["tokens"] for _, p in points), "epochs": max(p["epochs"] for _, p in points),
                     "n_beyond": len(beyond), "beyond": ", ".join(dict.fromkeys(beyond)) or "none"})
    return rows


def epochs_table(runs: Sequence[dict]):
    """How often the main runs read their training data (see :func:`epochs_rows`)."""
    return markdown_table(epochs_rows(runs), [
        ("dataset", "dataset", None), ("arch", "arch", None), ("unique", "unique training tokens", ","),
        ("D", "largest D (tokens read)", ","), ("epochs", "largest epochs", ".2f"),
        ("n_beyond", f"points beyond {FRESH_EPOCHS:g} epochs", None), ("beyond", "which", None)])


def repetition_table(results: Sequence[dict]):
    """The repetition experiment's runs: size, seed, unique tokens U and D / U, test loss at the longest branch."""
    rows = sorted(results, key=lambda r: (r["dataset"], r["arch"], r["params_non_embedding"],
                                          -r["unique_tokens"], r["seed"]))
    rows = [{**r, "factor": r["tokens_seen"] / r["unique_tokens"]} for r in rows]
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None), ("seed", "seed", None),
        ("params_non_embedding", "N (non-emb.)", ","), ("tokens_seen", "D (tokens read)", ","),
        ("unique_tokens", "U (unique tokens)", ","), ("factor", "epochs D/U", ".0f"),
        ("test_loss", "test (nats/char)", ".4f")])


def ablation_table(records: Sequence[dict]):
    """The ablation's runs: arm, what changed, size, seed, variant, rate, tokens read and test loss."""
    rows = [{**r, "lr": r["config"]["lr"], "variant": r["config"].get("variant") or "—"} for r in records]
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None), ("arm", "arm", None),
        ("what", "what changed", None), ("seed", "seed", None), ("lr", "peak rate", ".2e"),
        ("tokens_seen", "D (tokens read)", ","), ("test_loss", "test (nats/char)", ".4f")])


def lr_table(searches: Sequence[dict]):
    """The learning-rate search: every rate tried (at the best beta2) with its validation loss, the chosen one
    marked; sizes that were not searched are left out (:func:`recipe_table` lists them)."""
    rows = []
    for s in sorted((s for s in searches if s.get("searched", True)), key=lambda s: (s["dataset"], s["arch"], s["N"]
                                                                                    if "N" in s else s["size"])):
        tried = ", ".join(("**" if r == s["chosen"] else "") + f"{r:.2e}: {v:.4f}" + ("**" if r == s["chosen"] else "")
                          for r, v in zip(s["rates"], s["val_loss"]))
        rows.append({**s, "tried": tried, "where": "yes" if s["bracketed"] else "no (at an end after extending)"})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None),
        ("probe_tokens", "probe D (tokens)", ","), ("tried", "rate: validation loss (nats/char)", None),
        ("chosen", "chosen rate", ".2e"), ("where", "bracketed", None)])


def recipe_table(searches: Sequence[dict]):
    """The recipe every size trains with: its rate from the rate law, its beta2, and for a searched size its own
    optimum (the parabola vertex of its probes) and the beta2 its probes chose."""
    rows = sorted(searches, key=lambda s: (s["dataset"], s["arch"], s.get("N", 0)))
    rows = [{**s, "how": "searched" if s.get("searched", True) else "rate law, β₂ of the nearest searched size",
             "law_text": f"{s['law']['c']:.3g} N^-{s['law']['k']:.3f}" if s.get("law") else "—",
             "own": s.get("optimum")} for s in rows]
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None), ("N", "N (non-emb.)", ","),
        ("how", "recipe from", None), ("own", "own optimum (probes)", lambda v: "—" if v is None else f"{v:.2e}"),
        ("law_text", "rate law lr*(N)", None), ("lr", "rate used", ".2e"), ("beta2", "β₂ used", "g")])


def time_by_kind(study: dict) -> list[dict]:
    """Where the train stage's run time went: per kind of run (rate probes, main runs per budget, the schedule
    check, the repetition experiment, the ablation), how many runs and their training time (``wall_time_s``:
    without evaluation and checkpoints), summed over the runs that trained in this build or an earlier one."""
    rows: dict[str, dict] = {}

    def add(kind: str, seconds: float | None, n: int = 1) -> None:
        row = rows.setdefault(kind, {"kind": kind, "runs": 0, "seconds": 0.0})
        row["runs"] += n
        row["seconds"] += seconds or 0.0

    for s in study["lr_search"]:
        if s.get("searched", True):
            add("rate probes", s.get("probe_time_s"), len(s.get("grid") or s["rates"]))
    for r in sorted(study["runs"], key=lambda r: r["tokens_seen"]):
        add(f"main runs, longest branch {r['tokens_seen']:,} tokens", r.get("wall_time_s"))
    seen = {(r["dataset"], r["run"]) for r in study["runs"]}
    names = {"cosine": "schedule check (cosine runs, its extra WSD seeds)", "main": "schedule check (cosine runs, "
             "its extra WSD seeds)", "repeat": "repetition experiment", "ablation": "ablation (arms not among the "
             "main runs)"}
    for r in study.get("check_runs", []):
        if (r["dataset"], r["run"]) not in seen:
            seen.add((r["dataset"], r["run"]))
            add(names.get(r["kind"], r["kind"]), r.get("wall_time_s"))
    total = sum(r["seconds"] for r in rows.values())
    return [{**r, "share": r["seconds"] / total if total else math.nan} for r in rows.values()]


def time_table(study: dict):
    """:func:`time_by_kind` as a Markdown table."""
    return markdown_table(time_by_kind(study), [
        ("kind", "kind of run", None), ("runs", "runs", None), ("seconds", "training time (s, summed)", ",.0f"),
        ("share", "share", ".0%")])


def budget_rule(params: Params) -> str:
    """The budget rule in words, with the spread of D/N at every N and of N at every D it gives."""
    study = params.study()
    if study.budgets is None:
        return (f"a size's longest branch is about {params.tokens_per_param:g} tokens per non-embedding parameter, "
                f"rounded to a power-of-two number of steps within {params.min_steps:,} to {params.max_steps:,} "
                "steps, so D grows with N")
    n = [describe(a, s, vocab_size=TABLE_VOCAB, context_length=params.context_length)["params_non_embedding"]
         for a, s in itertools.product(params.archs, params.sizes)]
    shortest = study.budgets[0] / params.base_config().branch_ratio ** (params.n_branches - 1)
    fitted = study.budgets[0] if len(study.budgets) > 1 else shortest  # analysis.early_tokens
    return (f"every size trains at {len(study.budgets)} budget{'s' * (len(study.budgets) > 1)}, the same for every "
            "N (longest branches of " + ", ".join(f"{b:,}" for b in study.budgets) + " tokens), each with "
            f"{params.n_branches} branches down to {shortest:,.0f} tokens: from {fitted:,.0f} tokens on (the points "
            f"a fit uses) the branches spread D/N over {study.budgets[-1] / fitted:,.0f}x at every N, and at every D "
            f"the sizes spread N over {max(n) / min(n):,.0f}x")


def schedule_check_table(rows: Sequence[dict]):
    """WSD branch against a cosine run of the same length: mean test losses over seeds and their spread."""
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None), ("tokens", "D (tokens)", ","),
        ("seeds", "seeds", None), ("wsd", "WSD branch (nats/char)", ".4f"), ("cosine", "cosine run (nats/char)", ".4f"),
        ("difference", "WSD − cosine", "+.4f"), ("interval", "± 2 s.e.", lambda v: f"[{v[0]:+.4f}, {v[1]:+.4f}]"),
        ("wsd_sd", "seed s.d., WSD", ".4f"), ("cosine_sd", "seed s.d., cosine", ".4f")])


def throughput_table(results: Sequence[dict]):
    """Measured training speed per run (wall time excludes evaluation): varies with the machine."""
    rows = sorted(results, key=lambda r: (r["dataset"], r["arch"], r["params_non_embedding"], r["seed"]))
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("run", "run", None), ("device", "device", None),
        ("threads", "threads", None), ("wall_time_s", "train time (s)", ".1f"), ("tokens_per_s", "tokens/s", ",.0f")])


def glue(study: dict, params: Params) -> None:
    """Glue what the methods page cites about the training design (names prefixed ``train_``): the design's
    numbers, whether the context covers every test tune, the learning-rate search, the schedule check and
    its tables."""
    from myst_nb import glue as glue_object

    from ..profiles import profiles_table  # imports every stage module, this one included: not at import time

    longest = replace(params.base_config(), token_budget=params.max_steps * params.batch_size * params.context_length)
    sizes = [describe(a, s, vocab_size=TABLE_VOCAB, context_length=params.context_length)["params_non_embedding"]
             for a, s in itertools.product(params.archs, params.sizes)]
    design = {"train_n_branches": params.n_branches, "train_context_length": params.context_length,
              "train_tokens_per_param": params.tokens_per_param, "train_cooldown_pct": 100 * params.cooldown_frac,
              "train_fork_pct": 100 * (1 - params.cooldown_frac), "train_eval_tokens": params.eval_tokens,
              "train_weight_decay": longest.weight_decay, "train_grad_clip": longest.grad_clip,
              "train_N_min": min(sizes), "train_N_max": max(sizes), "train_table_vocab": TABLE_VOCAB,
              "train_n_sizes": len(params.sizes)}
    _glue_study(study, context_coverage(params.workdir, params.context_length), design)
    glue_text("train_branch_cost", schedule_cost(longest), ".2f")
    glue_text("train_adam_betas", f"({ADAM_BETA1:g}, {params.beta2s[0]:g})" if len(params.beta2s) == 1 else
              f"({ADAM_BETA1:g}, β₂) with β₂ searched per size among " + ", ".join(f"{b:g}" for b in params.beta2s))
    wd = Workdir(params.workdir)
    real = {d: len(np.load(wd.tokens(d, "train"), mmap_mode="r")) for d in wd.datasets("runs")
            if wd.tokens(d, "train").exists() and not wd.unlimited(d)}
    glue_object("train_profiles_table", html_table(profiles_table(real)), display=False)
    glue_object("train_lr_table", html_table(lr_table(study["lr_search"])), display=False)
    glue_object("train_recipe_table", html_table(recipe_table(study["lr_search"])), display=False)
    glue_text("train_budget_rule", budget_rule(params))
    glue_text("train_recipe_summary", recipe_summary(study["lr_search"], params))
    glue_object("train_check_table", html_table(schedule_check_table(study["schedule_check"])), display=False)


def recipe_summary(searches: Sequence[dict], params: Params) -> str:
    """The recipe search in words: which sizes were searched, on what probes, and the rate law per dataset and
    family."""
    searched = [s for s in searches if s.get("searched", True)]
    if not searched:
        return "no size was searched"
    probe = searched[0]
    sizes = ", ".join(dict.fromkeys(s["size"] for s in searched))
    laws = "; ".join(f"{s['dataset']} {s['arch']}: lr*(N) = {s['law']['c']:.3g} N^-{s['law']['k']:.3f}"
                     for s in {(s["dataset"], s["arch"]): s for s in searches if s.get("law")}.values())
    return (f"searched at {sizes} (rates times " + ", ".join(f"{f:g}" for f in params.lr_factors)
            + " the family's default, each at β₂ = " + ", ".join(f"{b:g}" for b in params.beta2s)
            + f"), each probe a run of its own of {probe['probe_tokens']:,} tokens with "
            f"{probe.get('probe_warmup_steps', 0):,} warm-up steps and its own cooldown, scored on validation at its "
            f"end; the rate law fitted to the searched sizes' optima: {laws or 'none'}")


def context_coverage(workdir: str | Path, context_length: int) -> list[dict]:
    """Per dataset: the longest test tune in tokens (with its separator) and whether the context covers it."""
    wd = Workdir(workdir)
    rows = []
    for d in wd.datasets("runs"):
        if wd.tokens(d, "test").exists():
            fits, longest = covers_every_tune(np.load(wd.tokens(d, "test")), context_length)
            rows.append({"dataset": d, "context_length": context_length, "longest": longest, "covered": fits})
    return rows


def _glue_study(study: dict, coverage: Sequence[dict], parameters: dict) -> None:
    """Glue what the methods page cites about the training design (names prefixed ``train_``)."""
    for name, value in parameters.items():  # each name written out where the design is gathered
        glue_text(name, value, ",g")
    for row in coverage:
        glue_text(f"train_{row['dataset']}_longest_test_tune", row["longest"], ",")
        glue_text(f"train_{row['dataset']}_context_covers", "covers every test tune" if row["covered"] else
                  "does not cover every test tune (longer ones are scored with overlapping windows)")
    searches = study["lr_search"]
    searched = [s for s in searches if s.get("searched", True)]
    glue_text("train_n_lr_searches", len(searched), "d")
    glue_text("train_n_lr_bracketed", sum(s["bracketed"] for s in searched), "d")
    glue_text("train_n_lr_probes", sum(len(s.get("grid") or s["rates"]) for s in searched), "d")
    glue_text("train_n_recipes", len(searches), "d")
    rows = epochs_rows(study["runs"])
    by_dataset: dict[str, float] = {}
    for r in rows:
        by_dataset[r["dataset"]] = max(by_dataset.get(r["dataset"], 0.0), r["epochs"])
    glue_text("train_max_epochs", "; ".join(f"{d}: {e:.2f}" for d, e in by_dataset.items()))
    glue_text("train_n_beyond_fresh", sum(r["n_beyond"] for r in rows), "d")
    glue_text("train_fresh_epochs", FRESH_EPOCHS, "g")
    repeated = study.get("repetition") or []
    glue_text("train_rep_runs", len(repeated), "d")
    none = "no repetition experiment in this build"
    archs = list(dict.fromkeys(r["arch"] for r in repeated))
    glue_text("train_rep_dataset", repeated[0]["dataset"] if repeated else None, missing=none)
    glue_text("train_rep_sizes", "; ".join(
        f"{a}: {', '.join(dict.fromkeys(r['size'] for r in repeated if r['arch'] == a))}" for a in archs) or None,
        missing=none)
    factors = sorted({round(r["tokens_seen"] / r["unique_tokens"]) for r in repeated})
    glue_text("train_rep_factors", ", ".join(f"{f:g}" for f in factors) or None, missing=none)
    glue_text("train_rep_seeds", len({r["seed"] for r in repeated}) if repeated else None, "d", missing=none)
    check = study["schedule_check"]
    if check:
        glue_text("train_check_model", f"{check[0]['dataset']} {check[0]['arch']} {check[0]['size']}")
        glue_text("train_check_seeds", check[0]["seeds"], "d")
        glue_text("train_check_summary", "; ".join(
            f"at D = {r['tokens']:,} the WSD branch is {r['difference']:+.4f} nats/char from the cosine run "
            + (f"(± 2 s.e. [{r['interval'][0]:+.4f}, {r['interval'][1]:+.4f}], "
               + ("within seed noise)" if r["within_noise"] else "outside seed noise)") if "interval" in r
               else "(one seed: no interval)") for r in check))
        n_within = sum(r.get("within_noise", False) for r in check)
        glue_text("train_check_verdict", f"{n_within} of {len(check)}")
        lower = sum(r["difference"] < 0 for r in check)
        glue_text("train_check_direction", f"lower than the cosine run's at {lower} of {len(check)}")
