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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
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
    repetition_specs,
    resolve_schedule_check,
    schedule_check_specs,
    split_tokens_needed,
    token_budget,
    tokens_read,
)
from ..evaluate import covers_every_tune
from ..models import SIZE_GRIDS, architecture, check_arch_size, describe, size_grid_table
from ..params import StageParameters, as_int, as_list, as_optional_list
from ..repetition import FRESH_EPOCHS
from ..schedule import schedule_cost
from ..sweep import RunSpec, cluster, run_sweep
from ..tables import glue_text, html_table, markdown_table
from ..train import ADAM_BETAS, PRECISIONS, TrainConfig, check_device, resolve_device
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
        return Study(**{**values, "extra_seed_sizes": tuple(values["extra_seed_sizes"]),
                        "lr_factors": tuple(values["lr_factors"])})

    def specs(self, datasets: Sequence[str], lrs: dict | None = None) -> tuple[list[RunSpec], list[RunSpec]]:
        """The main runs, and the schedule check's and the repetition experiment's runs, planned (and checked)
        before any run; ``lrs`` are the chosen rates (None before the search)."""
        plan, base = self.study(), self.base_config()
        mains = plan_runs(datasets, self.archs, self.sizes, self.seed, base, plan, lrs)
        extra = schedule_check_specs(mains, plan.schedule_check, self.seed) if plan.schedule_check else []
        if plan.repetition is not None:
            extra += repetition_specs(mains, plan.repetition, datasets, self.seed)
        extra += ablation_specs(mains, plan.ablation, self.seed)
        # one spec per run: the checks' baseline runs may be each other's (those that are main runs stay here too:
        # the checks read their results from this sweep, which reuses them)
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
        mains, extra = p.specs(datasets, {k: v["chosen"] for k, v in searched.items()})
        runs = run_sweep(wd.root, mains, client=client, log=log, group_size=group)
        # the schedule check's and the repetition experiment's runs, in one sweep (they share the workers)
        rest = run_sweep(wd.root, extra, client=client, log=log, index=False, group_size=group) if extra else []
        done = list(zip(extra, rest))
    checked: list[dict] = []
    if plan.schedule_check:
        check = resolve_schedule_check(mains, plan.schedule_check, p.seed)
        checked = compare_schedules([r for s, r in done if s.kind == "main"],
                                    [r for s, r in done if s.kind == "cosine"])
        for row in checked:
            row.update({k: check[k] for k in ("dataset", "arch", "size")})
        write_json(wd.schedule_check(check["dataset"]), checked)
    repeated = [r for s, r in done if s.kind == "repeat"]
    if repeated:
        write_json(wd.repetition(repeated[0]["dataset"]), repeated)
    ablated = ablation_records(ablation_arms(mains, plan.ablation, p.seed), runs + [r for _, r in done])
    if ablated:
        write_json(wd.ablation(ablated[0]["dataset"]), ablated)
    return {"runs": runs, "lr_search": list(searched.values()), "schedule_check": checked, "repetition": repeated,
            "ablation": ablated}


def ablation_records(arms: Sequence, results: Sequence[dict]) -> list[dict]:
    """One record per run of the ablation's arms: its arm, what changed, and the run's result."""
    by_name = {(r["dataset"], r["run"]): r for r in results}
    return [{"arm": a.name, "what": a.what, **by_name[(s.dataset, s.name)]} for a in arms for s in a.specs]


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
    """Per size: N, the longest branch D_max, the shortest D_min, and the range of D/N the branches cover."""
    base, rows = params.base_config(), []
    for a, s in itertools.product(params.archs, params.sizes):
        n = describe(a, s, vocab_size=128, context_length=params.context_length)["params_non_embedding"]
        d_max = token_budget(a, s, params.context_length, params.batch_size, tokens_per_param=params.tokens_per_param,
                             min_steps=params.min_steps, max_steps=params.max_steps)
        d_min = d_max / base.branch_ratio ** (params.n_branches - 1)
        rows.append({"arch": a, "size": s, "n": n, "d_min": d_min, "d_max": d_max, "lo": d_min / n, "hi": d_max / n})
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
    """The learning-rate search: every rate tried with its validation loss, the chosen one marked."""
    rows = []
    for s in sorted(searches, key=lambda s: (s["dataset"], s["arch"], s["size"])):
        tried = ", ".join(("**" if r == s["chosen"] else "") + f"{r:.2e}: {v:.4f}" + ("**" if r == s["chosen"] else "")
                          for r, v in zip(s["rates"], s["val_loss"]))
        rows.append({**s, "tried": tried, "where": "yes" if s["bracketed"] else "no (at an end after extending)"})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None),
        ("probe_tokens", "probe D (tokens)", ","), ("tried", "rate: validation loss (nats/char)", None),
        ("chosen", "chosen rate", ".2e"), ("where", "bracketed", None)])


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
    glue_text("train_adam_betas", "(" + ", ".join(f"{b:g}" for b in ADAM_BETAS) + ")")
    wd = Workdir(params.workdir)
    real = {d: len(np.load(wd.tokens(d, "train"), mmap_mode="r")) for d in wd.datasets("runs")
            if wd.tokens(d, "train").exists() and not wd.unlimited(d)}
    glue_object("train_profiles_table", html_table(profiles_table(real)), display=False)
    glue_object("train_lr_table", html_table(lr_table(study["lr_search"])), display=False)
    glue_object("train_check_table", html_table(schedule_check_table(study["schedule_check"])), display=False)


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
    glue_text("train_n_lr_searches", len(searches), "d")
    glue_text("train_n_lr_bracketed", sum(s["bracketed"] for s in searches), "d")
    glue_text("train_n_lr_probes", sum(len(s["rates"]) for s in searches), "d")
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
