"""The study's design: which runs it trains. Each size's budget, the learning-rate search on validation (probes
of each size's own schedule, the grid extended while the best rate is at an end), the schedule check, the
repetition experiment and the ablation, each as :class:`musicscale.sweep.RunSpec` s that :func:`run_sweep` trains.

What each experiment may leave out, and its default, is one dict here (``*_DEFAULTS``); a stage's parameter
merges over it and anything else is rejected before any run starts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .models import architecture, check_arch_size, describe
from .params import as_int
from .schedule import schedule_points, warmup_steps
from .sweep import RunSpec, run_sweep
from .train import TrainConfig
from .workdir import Workdir


def token_budget(arch: str, size: str, context_length: int, batch_size: int, *, tokens_per_param: float,
                 min_steps: int, max_steps: int) -> int:
    """The longest branch of a size: ``tokens_per_param`` x N (times the family's ``budget_factor``), rounded to a
    power-of-two number of steps within ``[min_steps, max_steps]``. Powers of two put every size's branches on one
    grid of D, so sizes share token counts (the L(N) comparison at a common D needs that)."""
    n = describe(arch, size, vocab_size=128, context_length=context_length)["params_non_embedding"]
    batch_tokens = batch_size * context_length
    per_param = tokens_per_param * architecture(arch).budget_factor
    steps = 2 ** round(math.log2(max(1.0, per_param * n / batch_tokens)))
    return int(min(max(steps, min_steps), max_steps)) * batch_tokens


# What a schedule check may leave out: its seeds, and how many branch lengths (from the longest) it checks.
# What the schedule check may leave out: its model (dataset, arch, size: the study's own, see
# resolve_schedule_check), the seeds of each schedule and the number of branch lengths compared.
SCHEDULE_CHECK_DEFAULTS = {"dataset": None, "arch": None, "size": None, "seeds": 2, "points": 2}
# What the repetition experiment may leave out: its dataset (the synthetic one, where the study has it), its
# sizes (the second and third smallest of each family), the repetition factors D/U and the seeds per run.
REPETITION_DEFAULTS = {"dataset": None, "sizes": None, "factors": [4, 16], "seeds": 1}
# What the ablation may leave out: its dataset (as the schedule check's), its family (the study's first with
# variants), its sizes (the smallest), the seeds of every arm, the budget factor of the longer arm, the rate
# factors tried at the full budget, and the model variants (None: every variant the family registers).
ABLATION_DEFAULTS = {"dataset": None, "arch": None, "sizes": None, "seeds": 2, "budget_factor": 4,
                     "lr_factors": [0.5, 2.0], "variants": None}


@dataclass(frozen=True)
class Study:
    """What the train stage runs, besides the :class:`TrainConfig` fields shared by every run. The train
    stage's parameters (:class:`musicscale.stages.train.Params`) hold the defaults."""

    tokens_per_param: float  # the longest branch of a size is about this many tokens per parameter ...
    min_steps: int  # ... but at least this many optimizer steps (the shortest branch needs a few) ...
    max_steps: int  # ... and at most this many (the profile's time budget)
    extra_seeds: int  # more seeds (seed + 1, ...) of the sizes below
    extra_seed_sizes: tuple[str, ...]
    lr_factors: tuple[float, ...]  # the search grid, times the architecture's rate
    lr_probe_branches: int  # a probe is a run of its own as long as this branch of its size's (shortest) main run
    lr_max_extensions: int  # grid points added at an end while the best rate is at that end
    schedule_check: dict | None  # {"dataset", "arch", "size", "seeds", "points"}: cosine runs vs branches
    repetition: dict | None = None  # {"dataset", "sizes", "factors", "seeds"}: runs on a prefix of D / factor tokens
    ablation: dict | None = None  # see ABLATION_DEFAULTS: main runs with one thing changed
    # the longest branches of every size's main runs, in tokens, the same for every N (so D does not grow with N);
    # None: one run per size, its budget from tokens_per_param (token_budget)
    budgets: tuple[int, ...] | None = None
    beta2s: tuple[float, ...] = (0.95,)  # AdamW beta2 values searched with the rate (each against every rate)
    # the sizes whose recipe is searched; every other size takes the rate of the power law in N fitted to them and
    # the beta2 of the nearest searched size (None: every size is searched)
    recipe_sizes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("min_steps", "max_steps"):
            v = getattr(self, name)
            if v < 1 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two, got {v}")
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps={self.min_steps} is larger than max_steps={self.max_steps}")
        if not self.tokens_per_param > 0:
            raise ValueError(f"tokens_per_param must be positive, got {self.tokens_per_param}")
        as_int("extra_seeds", self.extra_seeds, minimum=0)
        as_int("lr_probe_branches", self.lr_probe_branches, minimum=1)
        as_int("lr_max_extensions", self.lr_max_extensions, minimum=0)
        if len(self.lr_factors) < 3 or sorted(self.lr_factors) != list(self.lr_factors) or min(self.lr_factors) <= 0:
            raise ValueError(f"lr_factors must be at least 3 increasing positive factors, got {self.lr_factors}")
        if self.schedule_check is not None:
            check = self.schedule_check
            if not isinstance(check, dict) or set(check) - set(SCHEDULE_CHECK_DEFAULTS):
                raise ValueError(f"schedule_check must be None or a dict with keys among "
                                 f"{sorted(SCHEDULE_CHECK_DEFAULTS)}, got {self.schedule_check!r}")
            for key in ("seeds", "points"):
                value = self.schedule_check.get(key, SCHEDULE_CHECK_DEFAULTS[key])
                as_int(f"schedule_check[{key!r}]", value, minimum=1)
        if self.repetition is not None:
            rep = self.repetition
            if not isinstance(rep, dict) or set(rep) - set(REPETITION_DEFAULTS):
                raise ValueError(f"repetition must be None or a dict with keys among {sorted(REPETITION_DEFAULTS)}, "
                                 f"got {rep!r}")
            factors = rep.get("factors", REPETITION_DEFAULTS["factors"])
            if (not isinstance(factors, (list, tuple)) or not factors
                    or any(isinstance(f, bool) or not isinstance(f, int) or f < 2 or f & (f - 1) for f in factors)):
                raise ValueError(f"repetition['factors'] must be powers of two of at least 2 (D / U), got {factors!r}")
            as_int("repetition['seeds']", rep.get("seeds", REPETITION_DEFAULTS["seeds"]), minimum=1)
            sizes = rep.get("sizes")
            if sizes is not None and (not isinstance(sizes, (list, tuple)) or not sizes):
                raise ValueError(f"repetition['sizes'] must be None or a list of sizes, got {sizes!r}")
        if self.ablation is not None:
            check_ablation(self.ablation)
        if self.budgets is not None:
            if (not isinstance(self.budgets, (list, tuple)) or not self.budgets
                    or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 or b & (b - 1)
                           for b in self.budgets) or list(self.budgets) != sorted(set(self.budgets))):
                raise ValueError(f"budgets must be None or increasing powers of two (tokens), got {self.budgets!r}")
        if not self.beta2s or any(isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b < 1
                                  for b in self.beta2s):
            raise ValueError(f"beta2s must be a non-empty list of values in (0, 1), got {self.beta2s!r}")
        if self.recipe_sizes is not None and not self.recipe_sizes:
            raise ValueError("recipe_sizes must be None (search every size) or a non-empty list of sizes")


def size_budgets(arch: str, size: str, base: TrainConfig, study: Study) -> list[int]:
    """The longest branches (tokens) of a size's main runs: ``study.budgets`` (the same for every N), or the one
    budget of :func:`token_budget`."""
    if study.budgets is not None:
        for b in study.budgets:
            if b % base.batch_tokens:
                raise ValueError(f"budgets: {b:,} tokens is not a whole number of steps of "
                                 f"{base.batch_tokens:,} tokens (batch_size x context_length)")
        return list(study.budgets)
    return [token_budget(arch, size, base.context_length, base.batch_size, tokens_per_param=study.tokens_per_param,
                         min_steps=study.min_steps, max_steps=study.max_steps)]


def plan_runs(datasets: Sequence[str], archs: Sequence[str], sizes: Sequence[str], seed: int, base: TrainConfig,
              study: Study, recipes: dict[tuple[str, str, str], dict] | None = None) -> list[RunSpec]:
    """The main runs: every size at each of its budgets (:func:`size_budgets`), at ``seed`` and
    ``study.extra_seeds`` more seeds of ``extra_seed_sizes``, each with, once the search has chosen it, its
    recipe (``recipes``: (dataset, arch, size) -> {"lr", "beta2"})."""
    specs = []
    for d, a, s in itertools.product(datasets, archs, sizes):
        check_arch_size(a, s)
        seeds = [seed] + (list(range(seed + 1, seed + 1 + study.extra_seeds)) if s in study.extra_seed_sizes else [])
        recipe = (recipes or {}).get((d, a, s), {})
        optimizer = {"lr": recipe["lr"], "beta2": recipe["beta2"]} if recipe else {}
        specs += [RunSpec(d, replace(base, arch=a, size=s, seed=sd, token_budget=budget, **optimizer))
                  for budget in size_budgets(a, s, base, study) for sd in seeds]
    return specs


def reference_runs(mains: Sequence[RunSpec], study: Study) -> list[RunSpec]:
    """The main runs that the schedule check, the repetition experiment and the ablation start from: those at the
    middle budget of ``study.budgets``, the shorter of the two middle ones for an even count (the first of two:
    where a 4x longer arm is still affordable), or every main run where each size has one budget."""
    if study.budgets is None:
        return list(mains)
    middle = study.budgets[(len(study.budgets) - 1) // 2]
    return [m for m in mains if m.config.token_budget == middle]


def probe_config(main: TrainConfig, study: Study) -> TrainConfig:
    """The shape of a size's probes: a WSD run of its own, as long as branch ``lr_probe_branches`` of the main
    run, with its own warm-up, stable phase and full cooldown at that length, scored on validation at its end
    (``train_branches=1``: a probe never measures the test split)."""
    branch = min(study.lr_probe_branches, main.n_branches)
    tokens = schedule_points(main)[branch - 1].end * main.batch_tokens
    return replace(main, token_budget=tokens, n_branches=1, train_branches=1)


def probe_specs(main: RunSpec, grid: Iterable[tuple[float, float]], study: Study) -> list[RunSpec]:
    """Probes of a main run (:func:`probe_config`), one per (rate, beta2) of ``grid``."""
    cfg = probe_config(main.config, study)
    return [RunSpec(main.dataset, replace(cfg, lr=float(r), beta2=float(b)), "lr") for r, b in grid]


def choose_rate(rates: Sequence[float], val_losses: Sequence[float]) -> tuple[float, str]:
    """The rate of lowest validation loss, and where it lies in the grid: ``"inside"``, ``"low"`` or ``"high"``
    (at an end: the grid does not bracket the optimum). A diverged probe (non-finite loss) never wins."""
    losses = [v if v is not None and math.isfinite(v) else math.inf for v in val_losses]
    order = sorted(range(len(rates)), key=lambda i: rates[i])
    best = min(order, key=lambda i: losses[i])
    where = "low" if best == order[0] else "high" if best == order[-1] else "inside"
    return rates[best], where


def optimum_rate(rates: Sequence[float], val_losses: Sequence[float]) -> float:
    """The rate of lowest validation loss between grid points: the vertex of the parabola in log(rate) through
    the best probe and its two neighbours (the best grid rate where it lies at an end, or the parabola opens
    downwards); the vertex is kept within the neighbours."""
    best, where = choose_rate(rates, val_losses)
    if where != "inside":
        return best
    order = sorted(range(len(rates)), key=lambda i: rates[i])
    k = [rates[i] for i in order].index(best)
    x = np.log([rates[order[k - 1]], best, rates[order[k + 1]]])
    y = np.array([val_losses[order[k - 1]], val_losses[order[k]], val_losses[order[k + 1]]], dtype=float)
    if not np.all(np.isfinite(y)):
        return best
    curvature, slope, _ = np.polyfit(x, y, 2)
    if not curvature > 0:
        return best
    return float(np.exp(np.clip(-slope / (2 * curvature), x[0], x[2])))


def fit_rate_law(sizes: Sequence[float], rates: Sequence[float]) -> dict:
    """``lr*(N) = c N^-k`` by least squares in log-log through the searched sizes' optimal rates (Porian et al.
    2024; DeepSeek LLM 2024): ``{"c", "k"}``; with one searched size, ``k = 0`` (its rate for every size)."""
    x, y = np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(rates, dtype=float))
    if len(np.unique(x)) < 2:
        return {"c": float(np.exp(y.mean())), "k": 0.0}
    slope, intercept = np.polyfit(x, y, 1)
    return {"c": float(np.exp(intercept)), "k": float(-slope)}


def rate_of_law(law: dict, n: float) -> float:
    """The rate the law :func:`fit_rate_law` gives a size of ``n`` non-embedding parameters."""
    return float(law["c"] * n ** -law["k"])


def _searched_sizes(mains: Sequence[RunSpec], study: Study) -> dict[tuple[str, str, str], RunSpec]:
    """Per (dataset, arch, size) whose recipe is searched, the main run its probes copy: its shortest budget."""
    first: dict[tuple[str, str, str], RunSpec] = {}
    for m in sorted(mains, key=lambda m: m.config.token_budget):
        if study.recipe_sizes is None or m.config.size in study.recipe_sizes:
            first.setdefault((m.dataset, m.config.arch, m.config.size), m)
    return first


def lr_search(workdir: Workdir, mains: Sequence[RunSpec], study: Study, *, client=None,
              log: Callable[[str], None] | None = print, group_size: int = 1) -> dict[tuple[str, str, str], dict]:
    """Choose the recipe, peak rate and AdamW beta2, of each (dataset, arch, size) on **validation** loss.

    At each searched size (``study.recipe_sizes``, or every size) a grid of rates around the architecture's
    default, each at every beta2 of ``study.beta2s``, is probed (:func:`probe_config`: short runs with their own
    cooldown); while the best rate is at an end of the grid the next rate beyond that end is added (at most
    ``lr_max_extensions`` times). The optimum of each size is the best beta2's parabola vertex
    (:func:`optimum_rate`); the rate law ``lr*(N) = c N^-k`` fitted to them (per dataset and family) gives
    **every** size its rate, and a size not searched takes the beta2 of the nearest searched size in log N.
    Probes are runs like any other: cached, resumed, fingerprinted, grouped where ``group_size > 1``. Returns
    one entry per (dataset, arch, size) of ``mains``: ``lr`` and ``beta2`` (what its runs use), and for a
    searched size its grid and own choice."""
    first = _searched_sizes(mains, study)
    rates = {k: [architecture(k[1]).lr * f for f in study.lr_factors] for k in first}
    step = {k: study.lr_factors[1] / study.lr_factors[0] for k in first}
    done: dict[tuple[str, str, str], dict] = {}
    found: dict[tuple[str, str, str], dict[tuple[float, float], float]] = {k: {} for k in first}
    seconds: dict[tuple[str, str, str], float] = {}  # the probes' training time, per size
    for round_ in range(study.lr_max_extensions + 1):
        specs = [p for k, v in rates.items() if k not in done
                 for p in probe_specs(first[k], [(r, b) for r in v for b in study.beta2s
                                                  if (r, b) not in found[k]], study)]
        for spec, r in zip(specs, run_sweep(workdir.root, specs, client=client, log=log, index=False,
                                            group_size=group_size)):
            k = (spec.dataset, spec.config.arch, spec.config.size)
            found[k][(spec.config.lr, spec.config.beta2)] = r["val_loss"]
            seconds[k] = seconds.get(k, 0.0) + (r.get("wall_time_s") or 0.0)
        for k in [k for k in rates if k not in done]:
            grid = found[k]
            best_b2 = min(study.beta2s, key=lambda b: min(_finite(grid[(r, b)]) for r in rates[k]))
            column = sorted(rates[k])
            best, where = choose_rate(column, [grid[(r, best_b2)] for r in column])
            if where == "inside" or round_ == study.lr_max_extensions:
                probe = probe_config(first[k].config, study)
                done[k] = {"dataset": k[0], "arch": k[1], "size": k[2], "searched": True,
                           "N": _non_embedding(first[k]), "rates": column,
                           "val_loss": [grid[(r, best_b2)] for r in column], "chosen": best,
                           "optimum": optimum_rate(column, [grid[(r, best_b2)] for r in column]),
                           "beta2": best_b2, "bracketed": where == "inside",
                           "grid": [{"lr": r, "beta2": b, "val_loss": grid[(r, b)]} for r in column
                                    for b in study.beta2s],
                           "probe_tokens": probe.token_budget, "probe_warmup_steps": warmup_steps(probe),
                           "probe_time_s": seconds.get(k, 0.0)}
            else:
                rates[k] = column + [column[0] / step[k] if where == "low" else column[-1] * step[k]]
                if log:
                    log(f"{k[0]}/{k[1]}-{k[2]}: the best rate {best:.3g} is at the {where} end of the grid; "
                        "adding the next rate beyond it")
    return apply_rate_law(done, mains)


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else math.inf


def apply_rate_law(searched: dict[tuple[str, str, str], dict], mains: Sequence[RunSpec]
                   ) -> dict[tuple[str, str, str], dict]:
    """Every (dataset, arch, size) of ``mains`` with its recipe: the rate of the law fitted (per dataset and
    family) to the searched sizes' optima, and the beta2 of the nearest searched size in log N."""
    out: dict[tuple[str, str, str], dict] = {}
    sizes = {(m.dataset, m.config.arch, m.config.size): _non_embedding(m) for m in mains}
    for (d, a) in dict.fromkeys((k[0], k[1]) for k in sizes):
        mine = [v for k, v in searched.items() if k[:2] == (d, a)]
        if not mine:
            raise ValueError(f"recipe_sizes: no size of the {a} runs of {d!r} is searched; name at least one of "
                             f"{[k[2] for k in sizes if k[:2] == (d, a)]}")
        law = fit_rate_law([v["N"] for v in mine], [v["optimum"] for v in mine])
        for k, n in ((k, n) for k, n in sizes.items() if k[:2] == (d, a)):
            nearest = min(mine, key=lambda v: abs(math.log(v["N"] / n)))
            entry = searched.get(k) or {"dataset": d, "arch": a, "size": k[2], "searched": False, "N": n,
                                        "rates": [], "val_loss": [], "chosen": None, "bracketed": None}
            out[k] = {**entry, "lr": rate_of_law(law, n), "beta2": nearest["beta2"], "law": law}
    return out


def tokens_read(cfg: TrainConfig) -> int:
    """The training tokens the model of a run's last point reads: its longest branch (or the whole cosine run)."""
    return schedule_points(cfg)[-1].end * cfg.batch_tokens


def split_tokens_needed(specs: Iterable[RunSpec]) -> dict[str, int]:
    """Per dataset, the training tokens its split must hold so that no run of ``specs`` reads a token twice (a
    repetition run needs only its prefix): D plus one window's slack (:class:`musicscale.batches.WindowStream`)."""
    need: dict[str, int] = {}
    for s in specs:
        reads = s.config.unique_tokens or tokens_read(s.config)
        need[s.dataset] = max(need.get(s.dataset, 0), reads + s.config.context_length)
    return need


def _non_embedding(spec: RunSpec) -> int:
    c = spec.config
    return describe(c.arch, c.size, vocab_size=128, context_length=c.context_length)["params_non_embedding"]


def repetition_specs(mains: Sequence[RunSpec], rep: dict, datasets: Sequence[str], seed: int) -> list[RunSpec]:
    """The repetition experiment (Muennighoff et al. 2023): at each chosen size of every family, the main run's
    configuration (its budget D, its chosen rate), trained on only the first ``D / factor`` tokens of the split,
    read ``factor`` times, for each factor and ``seeds`` seeds. [] where the study has no dataset for it."""
    dataset = rep.get("dataset") or ("synthetic" if "synthetic" in datasets else None)
    if dataset is None:
        return []
    if dataset not in datasets:
        raise ValueError(f"repetition: dataset {dataset!r} is not a dataset of this study ({list(datasets)})")
    specs = []
    for arch in dict.fromkeys(m.config.arch for m in mains):
        own = sorted({m.config.size: m for m in mains if m.dataset == dataset and m.config.arch == arch
                      and m.config.seed == seed}.values(), key=_non_embedding)
        sizes = rep.get("sizes") or [m.config.size for m in own[1:3]]
        for size in sizes:
            main = next((m for m in own if m.config.size == size), None)
            if main is None:
                raise ValueError(f"repetition: size {size!r} is not a size of this study's {arch} runs "
                                 f"({[m.config.size for m in own]}); set repetition['sizes']")
            D = main.config.token_budget
            for factor in rep.get("factors", REPETITION_DEFAULTS["factors"]):
                for sd in range(seed, seed + int(rep.get("seeds", REPETITION_DEFAULTS["seeds"]))):
                    specs.append(RunSpec(dataset, replace(main.config, seed=sd, unique_tokens=D // factor), "repeat"))
    return specs


def resolve_schedule_check(mains: Sequence[RunSpec], check: dict, seed: int) -> dict:
    """The schedule check with its model named: what ``check`` leaves out (or sets to None) is the study's own,
    the synthetic dataset where the study has it (else its first), the study's first family, and that family's
    smallest size with more than one seed (else its smallest). A model named outside the study is a ValueError."""
    out = {**SCHEDULE_CHECK_DEFAULTS, **check}
    datasets = list(dict.fromkeys(m.dataset for m in mains))
    archs = list(dict.fromkeys(m.config.arch for m in mains))
    out["dataset"] = out["dataset"] or ("synthetic" if "synthetic" in datasets else datasets[0])
    out["arch"] = out["arch"] or archs[0]
    for key, own in (("dataset", datasets), ("arch", archs)):
        if out[key] not in own:
            raise ValueError(f"schedule_check: {key} {out[key]!r} is not one of this study's ({own}); leave it out "
                             "for the study's own")
    by_n = sorted({m.config.size: m for m in mains
                   if (m.dataset, m.config.arch) == (out["dataset"], out["arch"])}.values(), key=_non_embedding)
    sizes = [m.config.size for m in by_n]
    if out["size"] is None:
        seeded = {m.config.size for m in mains if m.config.seed != seed}
        out["size"] = next((s for s in sizes if s in seeded), sizes[0])
    elif out["size"] not in sizes:
        raise ValueError(f"schedule_check: size {out['size']!r} is not one of this study's {out['arch']} sizes "
                         f"({sizes}); leave it out for the study's own")
    return out


def schedule_check_specs(mains: Sequence[RunSpec], check: dict, seed: int) -> list[RunSpec]:
    """Cosine runs of one size at the last ``points`` branch lengths of its WSD run, for ``seeds`` seeds, and
    the WSD runs of those seeds (the main runs of extra seeds where the study has none); ``check`` is
    resolved first (:func:`resolve_schedule_check`)."""
    check = resolve_schedule_check(mains, check, seed)
    main = next(m for m in mains if (m.dataset, m.config.arch, m.config.size) ==
                (check["dataset"], check["arch"], check["size"]) and m.config.seed == seed)
    cfg = main.config
    ends = [p.end for p in schedule_points(cfg)][-int(check["points"]):]
    seeds = range(seed, seed + int(check["seeds"]))
    wsd = [RunSpec(main.dataset, replace(cfg, seed=s)) for s in seeds]
    cosine = [RunSpec(main.dataset, replace(cfg, seed=s, schedule="cosine", token_budget=e * cfg.batch_tokens,
                                            n_evals=1, train_branches=None), "cosine")
              for e in ends for s in seeds]
    return wsd + cosine


def check_ablation(abl: dict) -> None:
    """A ValueError naming the key of an ablation dict that is not one, or whose value is not allowed."""
    if not isinstance(abl, dict) or set(abl) - set(ABLATION_DEFAULTS):
        raise ValueError(f"ablation must be None or a dict with keys among {sorted(ABLATION_DEFAULTS)}, got {abl!r}")
    as_int("ablation['seeds']", abl.get("seeds", ABLATION_DEFAULTS["seeds"]), minimum=2)  # an interval needs 2
    factor = abl.get("budget_factor", ABLATION_DEFAULTS["budget_factor"])
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, int) or factor < 2
                               or factor & (factor - 1)):
        raise ValueError(f"ablation['budget_factor'] must be None or a power of two of at least 2, got {factor!r}")
    rates = abl.get("lr_factors", ABLATION_DEFAULTS["lr_factors"])
    if not isinstance(rates, (list, tuple)) or any(isinstance(f, bool) or not isinstance(f, (int, float))
                                                   or not f > 0 or f == 1 for f in rates):
        raise ValueError(f"ablation['lr_factors'] must be a list of positive factors other than 1, got {rates!r}")
    for key in ("sizes", "variants"):
        value = abl.get(key)
        if value is not None and (not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)):
            raise ValueError(f"ablation[{key!r}] must be None or a list of names, got {value!r}")


@dataclass(frozen=True)
class Arm:
    """One arm of the ablation: a size's main configuration with one thing changed (or none: the baseline)."""

    name: str  # "baseline", "budget ×4", "rate ×0.5", or a variant's name
    what: str  # what changed, in words
    size: str
    specs: tuple[RunSpec, ...]  # one run per seed


def resolve_ablation(mains: Sequence[RunSpec], abl: dict, seed: int) -> dict | None:
    """The ablation with its model named, or None where the study has no family with variants (and none was
    named): what ``abl`` leaves out is the study's own, as for the schedule check (:func:`resolve_schedule_check`),
    with the study's first family that registers variants and its smallest size."""
    out = {**ABLATION_DEFAULTS, **abl}
    datasets = list(dict.fromkeys(m.dataset for m in mains))
    archs = list(dict.fromkeys(m.config.arch for m in mains))
    out["dataset"] = out["dataset"] or ("synthetic" if "synthetic" in datasets else datasets[0])
    if out["arch"] is None:
        out["arch"] = next((a for a in archs if architecture(a).variants), None)
        if out["arch"] is None:
            return None
    for key, own in (("dataset", datasets), ("arch", archs)):
        if out[key] not in own:
            raise ValueError(f"ablation: {key} {out[key]!r} is not one of this study's ({own}); leave it out "
                             "for the study's own")
    sizes = [m.config.size for m in sorted({m.config.size: m for m in mains if (m.dataset, m.config.arch) ==
                                            (out["dataset"], out["arch"])}.values(), key=_non_embedding)]
    out["sizes"] = list(out["sizes"] or sizes[:1])
    for size in out["sizes"]:
        if size not in sizes:
            raise ValueError(f"ablation: size {size!r} is not one of this study's {out['arch']} sizes ({sizes}); "
                             "set ablation['sizes'] or leave it out for the study's smallest")
    own = architecture(out["arch"]).variants
    out["variants"] = list(own if out["variants"] is None else out["variants"])
    for v in out["variants"]:
        if v not in own:
            raise ValueError(f"ablation: variant {v!r} is not one of the {out['arch']}'s ({list(own)})")
    return out


def ablation_arms(mains: Sequence[RunSpec], abl: dict | None, seed: int) -> list[Arm]:
    """The arms of the ablation at each of its sizes, all from the main run's configuration (its budget D and its
    chosen rate) and the same seeds: the baseline (the main runs themselves), the budget times ``budget_factor``,
    the rate times each of ``lr_factors`` at the full budget, and each model variant. A variant that changes
    nothing at a size (one head where there is one already) is left out. [] without an ablation."""
    abl = resolve_ablation(mains, abl, seed) if abl is not None else None
    if abl is None:
        return []
    family = architecture(abl["arch"])
    seeds = range(seed, seed + int(abl["seeds"]))
    arms = []
    for size in abl["sizes"]:
        main = next(m for m in mains if (m.dataset, m.config.arch, m.config.size) ==
                    (abl["dataset"], abl["arch"], size) and m.config.seed == seed)
        cfg = main.config

        def arm(name: str, what: str, kind: str = "ablation", main: RunSpec = main, **change) -> Arm:
            return Arm(name, what, main.config.size,
                       tuple(RunSpec(main.dataset, replace(main.config, seed=s, **change), kind) for s in seeds))

        arms.append(arm("baseline", "the main runs", kind="main"))
        if abl["budget_factor"]:
            f = int(abl["budget_factor"])
            arms.append(arm(f"budget ×{f}", f"{f}× the tokens, the same rate", token_budget=cfg.token_budget * f))
        if cfg.lr is not None:  # once the search has chosen the rate
            for f in abl["lr_factors"]:
                arms.append(arm(f"rate ×{f:g}", f"{f:g}× the chosen rate at the full budget", lr=cfg.lr * f))
        for v in abl["variants"]:
            if family.size_config(size, v) != family.size_config(size):
                arms.append(arm(v, family.variants[v][1], variant=v))
    return arms


def ablation_specs(mains: Sequence[RunSpec], abl: dict | None, seed: int) -> list[RunSpec]:
    """Every run of :func:`ablation_arms` (the baseline's seeds beyond the main runs' included). Before the rate
    search there are no rate arms yet; they read what the baseline reads, so the data needs are the same."""
    return [s for a in ablation_arms(mains, abl, seed) for s in a.specs]


def compare_schedules(wsd: Sequence[dict], cosine: Sequence[dict]) -> list[dict]:
    """Per token count: the mean loss of the WSD branches and of the cosine runs over seeds, their difference,
    the seed-to-seed spread (standard deviation) of each, and the difference ± 2 standard errors: the two
    schedules agree within seed noise where that interval covers zero."""
    rows = []
    for tokens in sorted({r["tokens_seen"] for r in cosine}):
        cos = [r["test_loss"] for r in cosine if r["tokens_seen"] == tokens]
        br = [p["test_loss"] for r in wsd for p in r["curve"] if p["tokens"] == tokens]
        row = {"tokens": tokens, "wsd": float(np.mean(br)), "cosine": float(np.mean(cos)),
               "difference": float(np.mean(br) - np.mean(cos)), "seeds": len(cos),
               "wsd_sd": float(np.std(br, ddof=1)) if len(br) > 1 else None,
               "cosine_sd": float(np.std(cos, ddof=1)) if len(cos) > 1 else None}
        if row["wsd_sd"] is not None and row["cosine_sd"] is not None:
            se = math.sqrt(row["wsd_sd"] ** 2 / len(br) + row["cosine_sd"] ** 2 / len(cos))
            row["interval"] = [row["difference"] - 2 * se, row["difference"] + 2 * se]
            row["within_noise"] = row["interval"][0] <= 0 <= row["interval"][1]
        rows.append(row)
    return rows
