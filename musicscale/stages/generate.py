"""Stage 5, generation: sample from every trained size, measure musical validity, render a gallery.

For each dataset, the models are the main-budget runs of the first seed (one per architecture and size).
Writes ``generated/<dataset>/<run>/samples.jsonl`` (every sample with its metrics) and ``summary.json``;
the gallery's best sample per model is saved as ``best.svg``, ``best.ogg`` and ``best.mid`` beside them.
Per dataset, ``reference.json`` (the real tunes' row), ``min_bars.json`` (the gallery's length rule) and
``renders/`` (the gallery's sheet music and recordings) are caches, each reused only for the same inputs.

This module orchestrates the stage and glues what the findings cite; the library holds the rest: the reuse of
saved artifacts (:mod:`musicscale.generated`), the ranking of samples (:mod:`musicscale.ranking`), the gallery
(:mod:`musicscale.gallery`) and the page's tables (:mod:`musicscale.validity_tables`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import corpus, prompts, validity, workers
from ..artifacts import load_model, load_sweep, load_tokenizer
from ..findings import generation_findings
from ..gallery import GALLERY_AUDIO, N_BEST_LARGEST, RENDER_TIMEOUT, Renderings
from ..generated import PROMPTED, REFERENCE, SWEPT, cached_summary, code_version, read_samples
from ..params import StageParameters, as_int, as_list, as_optional_list
from ..prompts import Prompt
from ..ranking import gallery_min_bars, prompted_picks, shown_samples
from ..sample import sample_requests, sample_tunes
from ..train import TrainConfig, check_device, resolve_device
from ..validity_tables import with_sweep
from ..workdir import Workdir, file_fingerprint, fingerprint, remove_partial_files, write_json, write_text
from ..workers import LazyPool


def models_to_sample(runs: Sequence[dict]) -> list[dict]:
    """One run per (architecture, size): the first seed, ordered by N."""
    first_seed = min(r["seed"] for r in runs)
    chosen = [r for r in runs if r["seed"] == first_seed]
    return sorted(chosen, key=lambda r: (r["arch"], r["params_non_embedding"]))


@dataclass
class Params(StageParameters):
    stage = "05_generate"

    datasets: list | None = None  # None: every dataset with a finished sweep
    n_samples: int = 4  # samples per model
    temperature: float = 1.0
    top_k: int | None = None  # None: sample from the full distribution
    max_new_tokens: int = 300
    # None: made from each dataset (its most common training headers, the opening bars of a validation tune);
    # or a list such as [{"M": "6/8", "K": "D"}, {"M": "4/4", "L": "1/8", "K": "G", "bars": "|:GABc dedB|"}]
    prompts: list | None = None
    prompt_samples: int = 1  # samples per prompt from every model
    temperatures: list = field(default_factory=lambda: [0.6, 0.8, 1.0, 1.2])  # swept on each family's largest model
    temperature_samples: int = 2  # samples per temperature
    device: str = TrainConfig.device  # "auto" takes CUDA when present

    def __post_init__(self) -> None:
        super().__post_init__()
        self.datasets = as_optional_list("datasets", self.datasets)
        self.n_samples = as_int("n_samples", self.n_samples, minimum=1)
        _check_temperature("temperature", self.temperature)
        if self.top_k is not None:
            self.top_k = as_int("top_k", self.top_k, minimum=1)
        self.max_new_tokens = as_int("max_new_tokens", self.max_new_tokens, minimum=1)
        if self.prompts is not None:  # each checked on its own here, against each dataset before any sampling
            given = as_list("prompts", self.prompts, item=dict, allow_empty=True)
            self.prompts = [p.to_dict() for p in prompts.parse_prompts(given)]
        self.prompt_samples = as_int("prompt_samples", self.prompt_samples, minimum=1)
        self.temperatures = [float(t) for t in as_list("temperatures", self.temperatures, item=(int, float),
                                                       allow_empty=True)]
        for t in self.temperatures:
            _check_temperature("temperatures", t)
        self.temperature_samples = as_int("temperature_samples", self.temperature_samples, minimum=1)
        check_device(self.device)


def _check_temperature(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


PROMPT = prompts.HEADER  # every unprompted sample starts from the first header line of a tune


def run(workdir: str | Path, *, n_workers: int | None = None, log=print, **params) -> list[dict]:
    """Sample and score every model of every dataset; returns one summary per model plus a reference
    row per dataset (real test tunes, scored the same way: the ceiling a model can reach).

    This process samples while ``n_workers`` worker processes (:mod:`musicscale.workers`) parse the samples
    of the models before, measure them and render the ones the gallery will show (each tune parsed once);
    the renderings are cached for :func:`musicscale.gallery.gallery`. Saved summaries, reference rows and
    renderings are reused when their inputs are the same.
    """
    p = Params.build(workdir=workdir, **params)
    wd = Workdir(p.workdir)
    dev = str(resolve_device(p.device))
    settings = {"n_samples": p.n_samples, "temperature": p.temperature, "top_k": p.top_k,
                "max_new_tokens": p.max_new_tokens, "prompt": PROMPT, "seed": p.seed}
    sweeps = load_sweep(p.workdir, p.datasets)
    asked = {d: dataset_prompts(wd.root, d, runs, p.prompts) for d, runs in sweeps.items()}  # before any sampling
    extra = {"prompt_samples": p.prompt_samples, "temperatures": p.temperatures,
             "temperature_samples": p.temperature_samples}
    for dataset in sweeps:
        remove_partial_files(wd.generated_dir(dataset))
    with LazyPool(n_workers) as pool, _sampling_threads(dev):
        stage = _Generation(wd, pool, settings, dev, log, extra)
        for dataset, runs in sweeps.items():
            stage.add_dataset(dataset, runs, asked[dataset])
        summaries = stage.finish()
    write_json(wd.generation_results, summaries)  # what the page's figures and the findings are drawn from
    return summaries


def dataset_prompts(workdir: str | Path, dataset: str, runs: Sequence[dict], given: list | None) -> list[Prompt]:
    """The prompts of one dataset (:func:`musicscale.prompts.resolve`): the ``given`` ones, checked against its
    vocabulary, its training tunes' fields and its models' context (a ValueError naming the prompt and why), or
    None: made from its training and validation tunes (never its test tunes)."""
    wd = Workdir(workdir)
    tok = load_tokenizer(wd.root, dataset)
    context = min(r["config"]["context_length"] for r in models_to_sample(runs))
    vocabulary = set(tok.itos) - {tok.itos[tok.eot_id], tok.itos[tok.unk_id]}
    train = corpus.read_split(wd.require(wd.split_text(dataset, "train")))
    val = corpus.read_split(wd.require(wd.split_text(dataset, "val"))) if given is None else []
    try:
        return prompts.resolve(given, dataset, vocabulary=vocabulary, context_length=context, train=train, val=val)
    except ValueError as err:
        raise ValueError(f"{Params.stage}: {err}") from None


@contextmanager
def _sampling_threads(device: str) -> Iterator[None]:
    """Sample on one CPU thread: each step is a small batch, which a second thread barely speeds up, and
    while the workers keep the other cores busy every step would wait for a second thread to be scheduled
    (ten times slower). The samples do not depend on it."""
    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


MEASURE_TIMEOUT = 60.0  # a backstop per tune: music21's own limit (validity.PARSE_TIMEOUT) ends a parse first


@dataclass
class _Pending:
    """One job of the stage's summaries whose measures the workers are computing, or whose ``summary`` was saved:
    a model's samples (``kind`` "samples"), a dataset's reference tunes (``run`` None), a model's prompted samples
    ("prompted") or its temperature sweep ("temperatures"). The last two add to the row of their model."""

    dataset: str
    run: dict | None  # None: the reference row
    kind: str = "samples"
    texts: list[str] = field(default_factory=list)
    futures: list[Future] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    inputs: str = ""
    summary: dict | None = None
    prompts: list[Prompt | None] = field(default_factory=list)  # per text, the prompt it was measured against
    meta: dict = field(default_factory=dict)  # what the summary records besides the measures


class _Generation:
    """The generate stage in flight: models are sampled here, in order, while the workers measure the
    samples handed to them; each model's summary is written once its measures are in, in order, and its
    gallery picks are sent to be rendered. Each model is also sampled from every prompt, and the largest of each
    family at every temperature of the sweep; those summaries join the model's row."""

    def __init__(self, wd: Workdir, pool: LazyPool, settings: dict, device: str, log, extra: dict | None = None):
        self.wd, self.pool, self.settings, self.device, self.log = wd, pool, settings, device, log
        self.extra = {"prompt_samples": 1, "temperatures": [], "temperature_samples": 1, **(extra or {})}
        self.rows: list[dict] = []
        self.pending: deque[_Pending] = deque()
        self.indexes: dict[str, validity.NoveltyIndex] = {}
        self.context: dict[str, dict] = {}  # per dataset: min_bars, the largest run of each architecture, renderings
        self.row_of: dict[tuple[str, str], dict] = {}  # (dataset, run) -> its row, for the jobs that add to it

    def add_dataset(self, dataset: str, runs: Sequence[dict], asked: Sequence[Prompt] = ()) -> None:
        wd, n = self.wd, self.settings["n_samples"]
        train_path = wd.require(wd.split_text(dataset, "train"))
        test_path = wd.split_text(dataset, "test")
        test = corpus.read_split(test_path)[:n]
        ref_path = wd.generated_dir(dataset) / "reference.json"
        ref_inputs = fingerprint(file_fingerprint(train_path), file_fingerprint(test_path), n, code_version())
        saved = cached_summary(ref_path, ref_inputs)
        if saved is not None:
            self.pending.append(_Pending(dataset, None, summary=saved["summary"]))
        else:  # a real tune obeys its own header as well as a model could: the ceiling of "obeys the prompt"
            self._measure(dataset, None, test, [_own_header(t) for t in test], inputs=ref_inputs)
        models = models_to_sample(runs)
        renderings = Renderings(wd.generated_dir(dataset), self.pool, timeout=RENDER_TIMEOUT, **GALLERY_AUDIO)
        renderings.request(corpus.read_split(train_path)[0])  # the gallery's real tune
        largest = {r["arch"]: r["run"] for r in models}  # ordered by N: the last of each architecture
        self.context[dataset] = {"min_bars": None, "renderings": renderings, "largest": set(largest.values())}
        tok = load_tokenizer(wd.root, dataset)
        s, x = self.settings, self.extra
        prompted = {"prompts": [p.to_dict() for p in asked], "prompt_samples": x["prompt_samples"],
                    **{k: s[k] for k in ("temperature", "top_k", "max_new_tokens", "seed")}}
        swept = {"temperatures": x["temperatures"], "temperature_samples": x["temperature_samples"], "prompt": PROMPT,
                 **{k: s[k] for k in ("top_k", "max_new_tokens", "seed")}}
        for run in models:
            out = wd.generated_dir(dataset, run["run"])
            weights = file_fingerprint(wd.require(wd.run_dir(dataset, run["run"]) / "model.pt"))
            # the samples depend on the weights, the vocabulary and the settings, and their measures on the code
            # that makes them (a new validity measure is computed for every model): reuse only if all match
            inputs = fingerprint(weights, tok.itos, self.settings, code_version())
            model = _Model(wd.root, dataset, run["run"], self.device)
            summary = cached_summary(out / "summary.json", inputs, self.log)
            if summary is not None:
                self.pending.append(_Pending(dataset, run, summary=summary))
            else:
                samples = sample_tunes(model.get(), tok, n, temperature=s["temperature"], top_k=s["top_k"],
                                       prompt=s["prompt"], max_new_tokens=s["max_new_tokens"], seed=s["seed"],
                                       device=self.device)
                self._measure(dataset, run, [t["text"] for t in samples], inputs=inputs, samples=samples)
            if asked:  # every prompt, prompt_samples times, in one batch
                each = [(k, p) for k, p in enumerate(asked) for _ in range(x["prompt_samples"])]
                self._job(dataset, run, PROMPTED, model, tok, [(p.text, s["temperature"]) for _, p in each],
                          fingerprint(weights, tok.itos, prompted, code_version()), [p for _, p in each],
                          [{"prompt": k} for k, _ in each],
                          {"prompts": [{**p.to_dict(), "label": p.label, "source": p.source} for p in asked],
                           "prompt_samples": x["prompt_samples"]})
            if x["temperatures"] and run["run"] in largest.values():  # every temperature in one batch
                temps = [t for t in x["temperatures"] for _ in range(x["temperature_samples"])]
                self._job(dataset, run, SWEPT, model, tok, [(PROMPT, t) for t in temps],
                          fingerprint(weights, tok.itos, swept, code_version()), [None] * len(temps),
                          [{"temperature": t} for t in temps],
                          {"temperatures": x["temperatures"], "temperature_samples": x["temperature_samples"]})
            self._drain(wait=False)

    def _job(self, dataset: str, run: dict, kind: str, model: _Model, tok, requests: list[tuple[str, float]],
             inputs: str, asked: list[Prompt | None], tags: list[dict], meta: dict) -> None:
        """A prompted or temperature job of one model: its saved summary if made from the same ``inputs``, else
        its samples (one per request, each with its ``tags``), sampled in one batch and sent to be measured."""
        saved = cached_summary(self.wd.generated_dir(dataset, run["run"]) / f"{kind}.json", inputs)
        if saved is not None:
            self.pending.append(_Pending(dataset, run, kind, summary=saved))
            return
        s = self.settings
        samples = sample_requests(model.get(), tok, requests, top_k=s["top_k"], max_new_tokens=s["max_new_tokens"],
                                  seed=s["seed"], device=self.device)
        samples = [{**tag, **sample} for tag, sample in zip(tags, samples)]
        self._measure(dataset, run, [t["text"] for t in samples], asked, kind=kind, inputs=inputs, samples=samples,
                      meta=meta)

    def finish(self) -> list[dict]:
        """Wait for every measure and rendering; the summaries in order."""
        self._drain(wait=True)
        for context in self.context.values():
            context["renderings"].finish()
        return list(self.rows)

    def _measure(self, dataset: str, run: dict | None, texts: list[str], asked: Sequence[Prompt | None] = (),
                 **fields) -> None:
        asked = list(asked) or [None] * len(texts)
        if any(p is not None for p in asked):
            futures = [self.pool.submit(workers.measure_prompted, t, p, key=t, timeout=MEASURE_TIMEOUT)
                       for t, p in zip(texts, asked)]
        else:
            futures = [self.pool.submit(workers.measure_tune, t, key=t, timeout=MEASURE_TIMEOUT) for t in texts]
        self.pending.append(_Pending(dataset, run, texts=texts, futures=futures, prompts=asked, **fields))

    def _drain(self, wait: bool) -> None:
        """Finish the pending jobs in order: all of them (``wait``), or those whose measures are all in."""
        while self.pending and (wait or all(f.done() for f in self.pending[0].futures)):
            job = self.pending.popleft()
            if job.kind != "samples":
                self._add_to_row(job)
                continue
            row = job.summary if job.summary is not None else self._summarize(job)
            self.rows.append(row)
            if job.run is not None:
                self.row_of[job.dataset, job.run["run"]] = row
                self._log(row)
                samples = job.samples if job.summary is None else read_samples(self.wd.root, job.dataset,
                                                                                 job.run["run"])
                self._request_picks(job.dataset, job.run["run"], samples)

    def _add_to_row(self, job: _Pending) -> None:
        """Add a prompted or temperature job's summary to its model's row; send prompted picks to be rendered."""
        summary = job.summary if job.summary is not None else self._summarize_extra(job)
        row = self.row_of[job.dataset, job.run["run"]]
        if job.kind == PROMPTED:
            row.update({k: summary[k] for k in prompts.summarize([])}, prompted=summary["prompts"])
            if job.run["run"] in self.context[job.dataset]["largest"]:
                samples = job.samples if job.summary is None else read_samples(
                    self.wd.root, job.dataset, job.run["run"], PROMPTED)
                for sample in prompted_picks(samples, summary["prompts"], self._min_bars(job.dataset)):
                    self.context[job.dataset]["renderings"].request(sample["text"])
        else:
            row["temperature_sweep"] = summary["points"]

    def _index(self, dataset: str) -> validity.NoveltyIndex:
        if dataset not in self.indexes:
            train = corpus.read_split(self.wd.require(self.wd.split_text(dataset, "train")))
            self.indexes[dataset] = validity.NoveltyIndex(train)
        return self.indexes[dataset]

    def _summarize(self, job: _Pending) -> dict:
        """The summary of a row whose measures are in (waiting for them), saved with its samples."""
        index = self._index(job.dataset)
        measured = [_measures(f, t, p) for f, t, p in zip(job.futures, job.texts, job.prompts)]
        measures = [m for m, _ in measured]
        if job.run is None:
            ref = validity.summarize([validity.validity_metrics(t, index, measures=m)
                                      for t, m in zip(job.texts, measures)])
            obeyed = prompts.summarize([o for _, o in measured if o is not None])
            row = {"dataset": job.dataset, "arch": REFERENCE, "size": "test tunes", "run": REFERENCE,
                   "params_non_embedding": None, **ref, "share_obeys": obeyed["share_obeys"]}
            write_json(self.wd.generated_dir(job.dataset) / "reference.json",
                       {"inputs_fingerprint": job.inputs, "summary": row})
            return row
        run, samples, out = job.run, job.samples, self.wd.generated_dir(job.dataset, job.run["run"])
        for s, m in zip(samples, measures):
            s["metrics"] = validity.validity_metrics(s["text"], index, finished=s["finished"], measures=m)
        write_text(out / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
        summary = {"dataset": job.dataset, "arch": run["arch"], "size": run["size"], "run": run["run"],
                   "params_non_embedding": run["params_non_embedding"], "test_loss": run["test_loss"],
                   "settings": self.settings, "inputs_fingerprint": job.inputs,
                   **validity.summarize([s["metrics"] for s in samples])}
        write_json(out / "summary.json", summary)
        return summary

    def _summarize_extra(self, job: _Pending) -> dict:
        """The summary of a prompted or temperature job whose measures are in, saved with its samples
        (``<kind>.jsonl``, ``<kind>.json``): per prompt, or per temperature, the validity shares (and how the
        samples obey their prompt)."""
        index, out = self._index(job.dataset), self.wd.generated_dir(job.dataset, job.run["run"])
        for s, (m, obeyed) in zip(job.samples, (_measures(f, t, p) for f, t, p in
                                               zip(job.futures, job.texts, job.prompts))):
            s["metrics"] = validity.validity_metrics(s["text"], index, finished=s["finished"], measures=m)
            if obeyed is not None:
                s["obedience"] = obeyed
        write_text(out / f"{job.kind}.jsonl", "".join(json.dumps(s) + "\n" for s in job.samples))
        summary = {"inputs_fingerprint": job.inputs, **job.meta}
        if job.kind == PROMPTED:
            for k, p in enumerate(summary["prompts"]):
                mine = [s for s in job.samples if s["prompt"] == k]
                p.update(validity.summarize([s["metrics"] for s in mine]))  # its "n" is len(mine)
                p.update(prompts.summarize([s["obedience"] for s in mine]))
            summary.update(prompts.summarize([s["obedience"] for s in job.samples]))
        else:
            summary["points"] = [{"temperature": t, **temperature_point([s for s in job.samples
                                                                         if s["temperature"] == t])}
                                 for t in job.meta["temperatures"]]
        write_json(out / f"{job.kind}.json", summary)
        return summary

    def _min_bars(self, dataset: str) -> int:
        context = self.context[dataset]
        if context["min_bars"] is None:  # not before: the workers wait for samples while this runs
            context["min_bars"] = gallery_min_bars(self.wd.root, dataset)
        return context["min_bars"]

    def _request_picks(self, dataset: str, run: str, samples: Sequence[dict]) -> None:
        """Send the samples the gallery will show of this model to be rendered."""
        context = self.context[dataset]
        k = N_BEST_LARGEST if run in context["largest"] else 1
        for sample in shown_samples(samples, self._min_bars(dataset), k)[0]:
            context["renderings"].request(sample["text"])

    def _log(self, summary: dict) -> None:
        if self.log:
            self.log(f"{summary['dataset']}/{summary['run']}: {summary['n']} samples, "
                     f"parses {summary['share_parses']:.0%}")


class _Model:
    """A run's weights, loaded on first use (a model whose samples are all saved is never loaded)."""

    def __init__(self, workdir: Path, dataset: str, run: str, device: str):
        self.args, self._model = (workdir, dataset, run, device), None

    def get(self) -> torch.nn.Module:
        if self._model is None:
            self._model = load_model(*self.args)
        return self._model


def _own_header(tune: str) -> Prompt | None:
    """A real tune's own meter, unit length and key as a prompt (None if they make none music21 reads)."""
    return prompts._header_prompt(tune, "its own header")


def temperature_point(samples: Sequence[dict]) -> dict:
    """The validity shares of the samples at one temperature, and ``share_parses_novel``: the share that parse
    and are not copied from training (what a sampling temperature has to balance)."""
    metrics = [s["metrics"] for s in samples]
    both = [bool(m["parses"] and m["novel"]) for m in metrics]
    return {**validity.summarize(metrics), "share_parses_novel": sum(both) / len(both) if both else None}


def _measures(future: Future, text: str, prompt: Prompt | None = None) -> tuple[validity.Measures, dict | None]:
    """A tune's measures (and how it obeys ``prompt``) from its worker; if the worker failed, measured here
    (under music21's time limit)."""
    try:
        result = future.result()
    except workers.WorkerFailed:
        parsed = validity.parse_abc(text)
        return validity.measure(text, parsed), None if prompt is None else prompts.obedience(text, prompt, parsed)
    return result if isinstance(result, tuple) else (result, None)


def glue(summaries: Sequence[dict]) -> None:
    """Glue what the generate page and the findings cite, as text: the stage's settings (novelty, the gallery,
    the prompts' and the temperature sweep's samples) and, per dataset, the findings in words
    (:func:`musicscale.findings.generation_findings`). A missing value reads "n/a (reason)"."""
    from ..tables import glue_text

    glue_text("novelty_n", validity.NOVELTY_N, "d")
    glue_text("novelty_threshold", validity.NOVELTY_THRESHOLD, ".0%")
    glue_text("gallery_best_largest", N_BEST_LARGEST, "d")
    models = [s for s in summaries if s["arch"] != REFERENCE]
    prompted = [s for s in models if s.get("prompted")]
    glue_text("prompt_samples", prompted[0]["prompted"][0]["n"] if prompted else None, "d", "no prompts")
    points = [p for s in with_sweep(models) for p in s["temperature_sweep"]]
    glue_text("temperature_samples", points[0]["n"] if points else None, "d", "no temperature sweep")
    temps = sorted({p["temperature"] for p in points})
    glue_text("temperature_lowest", temps[0] if temps else None, "g", "no temperature sweep")
    glue_text("temperature_highest", temps[-1] if temps else None, "g", "no temperature sweep")
    glue_text("gallery_temperature", models[0]["settings"]["temperature"] if models else None, "g", "no model")
    for name, text in generation_findings(summaries).items():
        glue_text(name, text)
