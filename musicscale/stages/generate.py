"""Stage 5, generation: sample from every trained size, measure musical validity, render a gallery.

For each dataset, the models are the main-budget runs of the first seed (one per architecture and size).
Writes ``generated/<dataset>/<run>/samples.jsonl`` (every sample with its metrics) and ``summary.json``;
the gallery's best sample per model is saved as ``best.svg``, ``best.ogg`` and ``best.mid`` beside them.
Per dataset, ``reference.json`` (the real tunes' row), ``min_bars.json`` (the gallery's length rule) and
``renders/`` (the gallery's sheet music and recordings) are caches, each reused only for the same inputs.
"""

from __future__ import annotations

import base64
import html
import json
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from .. import corpus, render, validity, workers
from ..analysis import arch_order
from ..models import ARCHITECTURES, build_model
from ..params import StageParameters, as_int, as_optional_list
from ..sample import sample_tunes
from ..train import TrainConfig, check_device, resolve_device
from ..workdir import (
    SPLITS,
    CorruptArtifactError,
    Workdir,
    file_fingerprint,
    fingerprint,
    load_torch,
    move_aside,
    read_json,
    remove_partial_files,
    write_bytes,
    write_json,
    write_text,
)
from .analyze import load_sweep
from .tokenize import load_tokenizer

REFERENCE = "reference"  # the summary row of real held-out tunes


def models_to_sample(runs: Sequence[dict]) -> list[dict]:
    """One run per (architecture, size): the first seed, ordered by N."""
    first_seed = min(r["seed"] for r in runs)
    chosen = [r for r in runs if r["seed"] == first_seed]
    return sorted(chosen, key=lambda r: (r["arch"], r["params_non_embedding"]))


def load_model(workdir: str | Path, dataset: str, run: str, device: str = "cpu") -> torch.nn.Module:
    """The weights of a run at its last point (the end of its longest cooldown branch)."""
    wd = Workdir(workdir)
    path = wd.require(wd.run_dir(dataset, run) / "model.pt")
    try:
        state = load_torch(path, map_location=device)
    except CorruptArtifactError as err:
        move_aside(path)  # the train stage then sees the run as unfinished and trains it again
        raise CorruptArtifactError(f"{err}; moved aside as *.corrupt: re-run notebooks/03_train.ipynb") from err
    model = build_model(state["arch"], state["size"], state["vocab_size"], state["context_length"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()


@dataclass
class Params(StageParameters):
    stage = "05_generate"

    datasets: list | None = None  # None: every dataset with a finished sweep
    n_samples: int = 4  # samples per model
    temperature: float = 1.0
    top_k: int | None = None  # None: sample from the full distribution
    max_new_tokens: int = 300
    device: str = TrainConfig.device  # "auto" takes CUDA when present

    def __post_init__(self) -> None:
        super().__post_init__()
        self.datasets = as_optional_list("datasets", self.datasets)
        self.n_samples = as_int("n_samples", self.n_samples, minimum=1)
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if self.top_k is not None:
            self.top_k = as_int("top_k", self.top_k, minimum=1)
        self.max_new_tokens = as_int("max_new_tokens", self.max_new_tokens, minimum=1)
        check_device(self.device)


PROMPT = "X:1\n"  # every sample starts from the first header line of a tune


def run(workdir: str | Path, *, n_workers: int | None = None, log=print, **params) -> list[dict]:
    """Sample and score every model of every dataset; returns one summary per model plus a reference
    row per dataset (real test tunes, scored the same way: the ceiling a model can reach).

    This process samples while ``n_workers`` worker processes (:mod:`musicscale.workers`) parse the samples
    of the models before, measure them and render the ones the gallery will show (each tune parsed once);
    the renderings are cached for :func:`gallery`. Saved summaries, reference rows and renderings are reused
    when their inputs are the same.
    """
    p = Params.build(workdir=workdir, **params)
    wd = Workdir(p.workdir)
    dev = str(resolve_device(p.device))
    settings = {"n_samples": p.n_samples, "temperature": p.temperature, "top_k": p.top_k,
                "max_new_tokens": p.max_new_tokens, "prompt": PROMPT, "seed": p.seed}
    sweeps = load_sweep(p.workdir, p.datasets)
    for dataset in sweeps:
        remove_partial_files(wd.generated_dir(dataset))
    with _LazyPool(n_workers) as pool, _sampling_threads(dev):
        stage = _Generation(wd, pool, settings, dev, log)
        for dataset, runs in sweeps.items():
            stage.add_dataset(dataset, runs)
        return stage.finish()


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


class _LazyPool:
    """The stage's worker pool, started on first use (a stage with everything saved needs none) and closed
    on leaving the ``with`` block."""

    def __init__(self, n_workers: int | None):
        self.n_workers = n_workers
        self._pool: workers.WorkerPool | None = None

    def __enter__(self) -> _LazyPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._pool is not None:
            self._pool.close(wait=exc_type is None)

    def submit(self, *args, **kwargs) -> Future:
        if self._pool is None:
            self._pool = workers.tune_pool(self.n_workers)
        return self._pool.submit(*args, **kwargs)


MEASURE_TIMEOUT = 60.0  # a backstop per tune: music21's own limit (validity.PARSE_TIMEOUT) ends a parse first
RENDER_TIMEOUT = 30.0  # seconds a worker may take for one tune's sheet music and recording
GALLERY_AUDIO = {"sample_rate": render.AUDIO_RATE, "max_seconds": 12.0}  # the recordings the gallery plays


@dataclass
class _Pending:
    """One row of the stage's summaries: a model's samples (or a dataset's reference tunes) whose measures
    the workers are computing, or a saved ``summary``."""

    dataset: str
    run: dict | None  # None: the reference row
    texts: list[str] = field(default_factory=list)
    futures: list[Future] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    inputs: str = ""
    summary: dict | None = None


class _Generation:
    """The generate stage in flight: models are sampled here, in order, while the workers measure the
    samples handed to them; each model's summary is written once its measures are in, in order, and its
    gallery picks are sent to be rendered."""

    def __init__(self, wd: Workdir, pool: _LazyPool, settings: dict, device: str, log):
        self.wd, self.pool, self.settings, self.device, self.log = wd, pool, settings, device, log
        self.rows: list[dict] = []
        self.pending: deque[_Pending] = deque()
        self.indexes: dict[str, validity.NoveltyIndex] = {}
        self.context: dict[str, dict] = {}  # per dataset: min_bars, the largest run of each architecture, renderings

    def add_dataset(self, dataset: str, runs: Sequence[dict]) -> None:
        wd, n = self.wd, self.settings["n_samples"]
        train_path = wd.require(wd.split_text(dataset, "train"))
        test_path = wd.split_text(dataset, "test")
        test = corpus.read_split(test_path)[:n]
        ref_path = wd.generated_dir(dataset) / "reference.json"
        ref_inputs = fingerprint(file_fingerprint(train_path), file_fingerprint(test_path), n, code_version())
        saved = _saved(ref_path, ref_inputs)
        if saved is not None:
            self.pending.append(_Pending(dataset, None, summary=saved["summary"]))
        else:
            self._measure(dataset, None, test, inputs=ref_inputs)
        models = models_to_sample(runs)
        renderings = Renderings(wd.generated_dir(dataset), self.pool, timeout=RENDER_TIMEOUT, **GALLERY_AUDIO)
        renderings.request(corpus.read_split(train_path)[0])  # the gallery's real tune
        largest = {r["arch"]: r["run"] for r in models}  # ordered by N: the last of each architecture
        self.context[dataset] = {"min_bars": None, "renderings": renderings, "largest": set(largest.values())}
        tok = load_tokenizer(wd.root, dataset)
        for run in models:
            summary_path = wd.generated_dir(dataset, run["run"]) / "summary.json"
            # the samples depend on the weights, the vocabulary and the settings, and their measures on the code
            # that makes them (a new validity measure is computed for every model): reuse only if all match
            inputs = fingerprint(file_fingerprint(wd.require(wd.run_dir(dataset, run["run"]) / "model.pt")),
                                 tok.itos, self.settings, code_version())
            summary = cached_summary(summary_path, inputs, self.log)
            if summary is not None:
                self.pending.append(_Pending(dataset, run, summary=summary))
                self._drain(wait=False)
                continue
            model = load_model(wd.root, dataset, run["run"], self.device)
            s = self.settings
            samples = sample_tunes(model, tok, n, temperature=s["temperature"], top_k=s["top_k"], prompt=s["prompt"],
                                   max_new_tokens=s["max_new_tokens"], seed=s["seed"], device=self.device)
            self._measure(dataset, run, [t["text"] for t in samples], inputs=inputs, samples=samples)
            self._drain(wait=False)

    def finish(self) -> list[dict]:
        """Wait for every measure and rendering; the summaries in order."""
        self._drain(wait=True)
        for context in self.context.values():
            context["renderings"].finish()
        return list(self.rows)

    def _measure(self, dataset: str, run: dict | None, texts: list[str], **fields) -> None:
        futures = [self.pool.submit(workers.measure_tune, t, key=t, timeout=MEASURE_TIMEOUT) for t in texts]
        self.pending.append(_Pending(dataset, run, texts, futures, **fields))

    def _drain(self, wait: bool) -> None:
        """Finish the pending rows in order: all of them (``wait``), or those whose measures are all in."""
        while self.pending and (wait or all(f.done() for f in self.pending[0].futures)):
            job = self.pending.popleft()
            row = job.summary if job.summary is not None else self._summarize(job)
            self.rows.append(row)
            if job.run is not None:
                self._log(row)
                samples = job.samples if job.summary is None else read_samples(self.wd.root, job.dataset,
                                                                                 job.run["run"])
                self._request_picks(job.dataset, job.run["run"], samples)

    def _index(self, dataset: str) -> validity.NoveltyIndex:
        if dataset not in self.indexes:
            train = corpus.read_split(self.wd.require(self.wd.split_text(dataset, "train")))
            self.indexes[dataset] = validity.NoveltyIndex(train)
        return self.indexes[dataset]

    def _summarize(self, job: _Pending) -> dict:
        """The summary of a row whose measures are in (waiting for them), saved with its samples."""
        index = self._index(job.dataset)
        measures = [_measures(f, t) for f, t in zip(job.futures, job.texts)]
        if job.run is None:
            ref = validity.summarize([validity.validity_metrics(t, index, measures=m)
                                      for t, m in zip(job.texts, measures)])
            row = {"dataset": job.dataset, "arch": REFERENCE, "size": "test tunes", "run": REFERENCE,
                   "params_non_embedding": None, **ref}
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

    def _request_picks(self, dataset: str, run: str, samples: Sequence[dict]) -> None:
        """Send the samples the gallery will show of this model to be rendered."""
        context = self.context[dataset]
        if context["min_bars"] is None:  # not before: the workers wait for samples while this runs
            context["min_bars"] = gallery_min_bars(self.wd.root, dataset)
        k = N_BEST_LARGEST if run in context["largest"] else 1
        for sample in shown_samples(samples, context["min_bars"], k)[0]:
            context["renderings"].request(sample["text"])

    def _log(self, summary: dict) -> None:
        if self.log:
            self.log(f"{summary['dataset']}/{summary['run']}: {summary['n']} samples, "
                     f"parses {summary['share_parses']:.0%}")


def cached_summary(path: Path, inputs: str, log=print) -> dict | None:
    """The saved summary of a model's samples if it was made from the same inputs, else None (and a log
    line saying why: other weights or settings, or an unreadable file, which is moved aside)."""
    if not path.exists():
        return None
    try:
        summary = read_json(path)
    except CorruptArtifactError as err:
        move_aside(path)
        if log:
            log(f"{err}; moved aside as *.corrupt, sampling again")
        return None
    if summary.get("inputs_fingerprint") != inputs:
        if log:
            log(f"{path.parent.name}: the saved samples were made from other weights or settings; sampling again")
        return None
    return summary


def read_samples(workdir: str | Path, dataset: str, run: str) -> list[dict]:
    """The samples (with metrics) saved for one model."""
    wd = Workdir(workdir)
    path = wd.require(wd.generated_dir(dataset, run) / "samples.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _read_saved(path: Path) -> dict | None:
    """A saved artifact of the stage; None if there is none or it cannot be read (then it is moved aside)."""
    if not path.exists():
        return None
    try:
        return read_json(path)
    except CorruptArtifactError:
        move_aside(path)
        return None


def _saved(path: Path, inputs: str) -> dict | None:
    """A saved artifact of the stage if it was made from ``inputs``, else None."""
    saved = _read_saved(path)
    return saved if saved is not None and saved.get("inputs_fingerprint") == inputs else None


def _measures(future: Future, text: str) -> validity.Measures:
    """A tune's measures from its worker; if the worker failed, measured here (under music21's time limit)."""
    try:
        return future.result()
    except workers.WorkerFailed:
        return validity.measure(text)


@lru_cache(maxsize=1)
def code_version() -> str:
    """What the measures and renderings depend on besides their inputs: the code that makes them and the
    versions of the libraries it calls. A saved summary, rendering or reference row is reused only if this
    matches."""
    import soundfile

    code = [file_fingerprint(Path(module.__file__)) for module in (validity, render, workers)]
    libraries = {name: metadata.version(name) for name in
                 ("music21", "verovio", "tinysoundfont", "soundfile", "pretty_midi", "mutagen")}
    return fingerprint(code, libraries, soundfile.__libsndfile_version__)


QUARTILE = 0.25  # a sample of realistic length has at least as many checked bars as the shortest quarter of real tunes


def realistic_bars(tunes: Sequence[str]) -> int:
    """The fewest checked bars a sample needs to count as a whole tune: the lower quartile of the checked
    bars of real ``tunes`` (at least 1)."""
    counts = [validity.bar_duration_stats(t)[0] for t in tunes]
    return max(1, int(np.quantile(counts, QUARTILE, method="lower"))) if counts else 1


def gallery_min_bars(workdir: str | Path, dataset: str) -> int:
    """:func:`realistic_bars` of the dataset's test tunes, saved beside its samples (it takes seconds)."""
    wd = Workdir(workdir)
    test_path = wd.require(wd.split_text(dataset, "test"))
    path = wd.generated_dir(dataset) / "min_bars.json"
    inputs = fingerprint(file_fingerprint(test_path), QUARTILE, code_version())
    saved = _saved(path, inputs)
    if saved is None:
        saved = {"inputs_fingerprint": inputs, "min_bars": realistic_bars(corpus.read_split(test_path))}
        write_json(path, saved)
    return saved["min_bars"]


def qualifies(sample: dict, min_bars: int) -> bool:
    """A complete tune (the model closed it) that parses and has at least ``min_bars`` checked bars."""
    m = sample["metrics"]
    return bool(sample.get("finished", True)) and m["parses"] and m["bars_checked"] >= min_bars


def rank_samples(samples: Sequence[dict], min_bars: int) -> tuple[list[dict], int]:
    """(samples best first, how many qualify). Qualifying samples (:func:`qualifies`) come first, ranked by
    bar accuracy, valid headers, novelty and length; the rest follow, the closest to qualifying first."""
    def score(s: dict) -> tuple:
        m = s["metrics"]
        return (qualifies(s, min_bars), m["parses"], bool(s.get("finished", True)), min(m["bars_checked"], min_bars),
                m["bar_accuracy"] or 0.0, m["headers_ok"], bool(m["novel"]), m["bars_checked"])
    ranked = sorted(samples, key=score, reverse=True)  # stable: ties keep the sampling order
    return ranked, sum(qualifies(s, min_bars) for s in samples)


def best_sample(samples: Sequence[dict], min_bars: int = 1) -> dict:
    """The most musical sample: the first of :func:`rank_samples`."""
    return rank_samples(samples, min_bars)[0][0]


def shown_samples(samples: Sequence[dict], min_bars: int, k: int) -> tuple[list[dict], int]:
    """(the samples the gallery shows of a model, how many qualify): its ``k`` best if that many qualify,
    else those that do, or the single closest one if none does."""
    ranked, n_ok = rank_samples(samples, min_bars)
    return ranked[:max(1, min(k, n_ok))], n_ok


def validity_table(summaries: Sequence[dict]):
    """One row per model (and the reference row of real tunes) with the validity shares."""
    from ..tables import markdown_table

    return markdown_table(summaries, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None),
        ("params_non_embedding", "N (non-emb.)", ","), ("n", "samples", None),
        *((s.key, s.header, s.spec) for s in validity.SHARES),
        ("degenerate", "degenerate by kind", lambda d: ", ".join(f"{k} {v}" for k, v in d.items() if v) or "—")])


N_BEST_LARGEST = 3  # samples shown for the largest model of each architecture; one for every other size
MAX_PAGE_BYTES = 1_800_000  # the gallery's share of the generate page, which must stay under 2 MB


def gallery(workdir: str | Path, summaries: Sequence[dict], dataset: str, *,
            sample_rate: int = GALLERY_AUDIO["sample_rate"], max_seconds: float = GALLERY_AUDIO["max_seconds"],
            timeout: float = RENDER_TIMEOUT, max_bytes: int = MAX_PAGE_BYTES, n_workers: int | None = None):
    """HTML gallery of one dataset: how samples were chosen, a real training tune, then each model's best
    samples by size (three for the largest of each architecture): sheet music (SVG), an audio player with a
    MIDI download and the raw ABC. Also saves ``best.svg``/``best.ogg``/``best.mid`` per model.

    The renderings the stage made are read from its cache; any other is made by ``n_workers`` workers, each
    tune under ``timeout`` seconds (a tune whose engraving fails, crashes or hangs is shown without a score)."""
    from IPython.display import HTML

    with _LazyPool(n_workers) as pool:
        renderings = Renderings(Workdir(workdir).generated_dir(dataset), pool, sample_rate=sample_rate,
                                max_seconds=max_seconds, timeout=timeout)
        caption, items = _gallery_items(workdir, summaries, dataset, renderings)
    _fit_budget(items, max_bytes - len(caption))
    return HTML(caption + "\n" + render.gallery_html(items))


def _gallery_items(workdir: str | Path, summaries: Sequence[dict], dataset: str,
                   renderings: Renderings) -> tuple[str, list[dict]]:
    """The caption and the items of one dataset's gallery, each with a ``priority`` (0 the real tune, 1 a
    model's best sample, 2 the further samples of the largest models)."""
    wd = Workdir(workdir)
    reference = corpus.read_split(wd.require(wd.split_text(dataset, SPLITS[0])))[0]
    min_bars = gallery_min_bars(workdir, dataset)
    caption = (f"<p class='musicscale-caption'>A sample qualifies when the model closed the tune, music21 parses it "
               f"and it has at least {min_bars} checked bars (the lower quartile of real test tunes of "
               f"<em>{html.escape(dataset)}</em>). Qualifying samples are ranked by the share of correct bars, then "
               f"valid headers, novelty and length; the largest model of each architecture shows up to its "
               f"{N_BEST_LARGEST} best, every other size its best. Where no sample qualifies, the one closest to "
               f"qualifying is shown and says so.</p>")
    shown = [{"title": "A real training tune, for reference", "abc": reference, "metrics": None, "out": None,
              "note": None, "priority": 0}]
    models = [s for s in summaries if s["dataset"] == dataset and s["arch"] != REFERENCE]
    largest = {a: max((s for s in models if s["arch"] == a), key=lambda s: s["params_non_embedding"])["run"]
               for a in {s["arch"] for s in models}}
    for s in models:
        samples = read_samples(workdir, dataset, s["run"])
        picks, n_ok = shown_samples(samples, min_bars, N_BEST_LARGEST if largest[s["arch"]] == s["run"] else 1)
        title = f"{s['arch']} {s['size']} (N = {s['params_non_embedding']:,}, test loss {s['test_loss']:.3f} nats/char)"
        for rank, sample in enumerate(picks, 1):
            note = f"{n_ok} of {len(samples)} samples qualified"
            note += (f"; this is number {rank} of the {len(picks)} best shown." if qualifies(sample, min_bars) else
                     f"; shown instead: the sample closest to qualifying ({_shortfall(sample, min_bars)}).")
            shown.append({"title": title, "abc": sample["text"], "metrics": sample["metrics"], "note": note,
                          "out": wd.generated_dir(dataset, s["run"]) if rank == 1 else None,
                          "priority": 1 if rank == 1 else 2})
    for item in shown:
        renderings.request(item["abc"])  # all at once: the workers render them side by side
    return caption, [_item(item, renderings.get(item["abc"])) for item in shown]


def _fit_budget(items: list[dict], max_bytes: int) -> None:
    """Leave out sheet music, least important first (further samples, then best samples from the smallest
    model up), until the gallery's HTML fits in ``max_bytes``; each item that loses its score says so."""
    order = sorted(range(len(items)), key=lambda i: (-items[i].get("priority", 1), i))
    size = len(render.gallery_html(items))
    for i in order:
        if size <= max_bytes:
            return
        if items[i].get("svg"):
            size -= len(items[i]["svg"])
            items[i]["svg"] = None
            items[i]["svg_note"] = "sheet music left out to keep this page under 2 MB (the ABC below has it all)"


def _shortfall(sample: dict, min_bars: int) -> str:
    m, why = sample["metrics"], []
    if not sample.get("finished", True):
        why.append("the model did not close the tune")
    if not m["parses"]:
        why.append("music21 cannot parse it")
    if m["bars_checked"] < min_bars:
        why.append(f"{m['bars_checked']} checked bars")
    return ", ".join(why)


def _item(shown: dict, rendering: render.Rendering) -> dict:
    """A gallery item of a shown tune; saves its rendering as ``best.*`` in ``shown["out"]`` if given."""
    out = shown["out"]
    if out is not None:
        if rendering.svg:
            write_text(out / "best.svg", rendering.svg)
        if rendering.audio is not None:
            write_bytes(out / "best.ogg", rendering.audio)
            write_bytes(out / "best.mid", rendering.midi)
    return {"title": shown["title"], "note": shown["note"], "svg": rendering.svg, "audio": rendering.audio,
            "midi": rendering.midi, "abc": shown["abc"], "metrics": shown["metrics"], "priority": shown["priority"]}


class Renderings:
    """Sheet music and recordings of tunes, read from ``<folder>/renders`` when they were made before from the
    same tune, settings and :func:`code_version`, else made by the workers and saved there.

    A tune whose rendering crashed or hung its worker is recorded again without engraving: the crash costs
    its sheet music only. Such a result is not saved (a time limit may have been hit only under load)."""

    def __init__(self, folder: Path, pool: _LazyPool, *, sample_rate: int, max_seconds: float | None,
                 timeout: float):
        self.folder, self.pool, self.timeout = Path(folder) / "renders", pool, timeout
        self.settings = (sample_rate, max_seconds)
        self._futures: dict[str, Future] = {}

    def _path(self, text: str) -> Path:
        return self.folder / f"{fingerprint(text, *self.settings, code_version())}.json"

    def _submit(self, text: str, engrave: bool = True) -> Future:
        return self.pool.submit(workers.render_tune, text, *self.settings, engrave, key=text, timeout=self.timeout)

    def request(self, text: str) -> None:
        """Start making the rendering of ``text`` unless it is saved or under way."""
        if text not in self._futures and not self._path(text).exists():
            self._futures[text] = self._submit(text)

    def get(self, text: str) -> render.Rendering:
        """The rendering of ``text``: saved, or made now (waiting for it)."""
        path = self._path(text)
        saved = self._load(path)
        if saved is not None:
            return saved
        self.request(text)
        try:
            rendering = self._futures.pop(text).result()
        except Exception:  # the worker crashed, hung or failed: try the recording alone
            try:
                return self._submit(text, engrave=False).result()
            except Exception:
                return render.Rendering(None, None, None)
        write_json(path, {"svg": rendering.svg, "audio": _b64(rendering.audio), "midi": _b64(rendering.midi)})
        return rendering

    @staticmethod
    def _load(path: Path) -> render.Rendering | None:
        saved = _read_saved(path)
        return None if saved is None else render.Rendering(saved["svg"], _unb64(saved["audio"]), _unb64(saved["midi"]))

    def finish(self) -> None:
        """Wait for every rendering under way and save it."""
        for text in list(self._futures):
            self.get(text)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def galleries(workdir: str | Path, summaries: Sequence[dict], **kwargs):
    """The gallery of every dataset, one section each."""
    from IPython.display import HTML

    max_bytes = kwargs.pop("max_bytes", MAX_PAGE_BYTES)
    datasets = list(dict.fromkeys(s["dataset"] for s in summaries))
    return HTML("\n".join(f"<h3>{d}</h3>\n" + gallery(workdir, summaries, d, max_bytes=max_bytes // len(datasets),
                                                        **kwargs).data for d in datasets))


def validity_fits(summaries: Sequence[dict], seed: int = 0, n_boot: int = 200) -> list[dict]:
    """Fit ``1 - bars correct = a N^-alpha + c`` per dataset and architecture where >= 3 sizes have errors."""
    from ..scaling import fit_power_law

    rows = []
    for d in dict.fromkeys(s["dataset"] for s in summaries):
        for arch in dict.fromkeys(s["arch"] for s in summaries if s["dataset"] == d and s["arch"] != REFERENCE):
            pts = [(s["params_non_embedding"], 1.0 - s["pooled_bar_accuracy"]) for s in summaries
                   if s["dataset"] == d and s["arch"] == arch and s.get("pooled_bar_accuracy") is not None]
            pts = [(n, e) for n, e in pts if e > 0]
            row = {"dataset": d, "arch": arch, "sizes": len(pts)}
            if len({n for n, _ in pts}) >= 3:
                fit = fit_power_law([n for n, _ in pts], [e for _, e in pts], n_boot=n_boot, seed=seed)
                row.update(fit.to_dict())
            rows.append(row)
    return rows


def validity_fits_table(summaries: Sequence[dict], seed: int = 0):
    """:func:`validity_fits` as a Markdown table."""
    from ..tables import markdown_table
    from .analyze import format_ci

    rows = [{**r, "alpha_s": format_ci(r, "alpha"), "c_s": format_ci(r, "c")} for r in validity_fits(summaries, seed)]
    return markdown_table(rows, [("dataset", "dataset", None), ("arch", "arch", None),
                                 ("sizes", "sizes with wrong bars", None), ("alpha_s", "α [95% CI]", None),
                                 ("c_s", "c [95% CI]", None), ("r2", "R²", ".3f")])


def glue(summaries: Sequence[dict]) -> None:
    """Glue the validity figures the findings page cites, as text: smallest and largest model per
    architecture, and the reference row of real tunes (``<dataset>_<arch>_{smallest,largest}_{parses,bars,novel}``).
    A missing share reads "n/a (reason)"."""
    from ..tables import glue_text

    glue_text("novelty_n", validity.NOVELTY_N, "d")
    glue_text("novelty_threshold", validity.NOVELTY_THRESHOLD, ".0%")
    glue_text("gallery_best_largest", N_BEST_LARGEST, "d")
    keys = {s.glue: (s.key, s.spec, s.missing) for s in validity.SHARES if s.glue}
    for s in summaries:
        if s["arch"] == REFERENCE:
            for short, (key, spec, why) in keys.items():
                glue_text(f"{s['dataset']}_reference_{short}", s.get(key), spec, why)
    for d in dict.fromkeys(s["dataset"] for s in summaries):
        # every registered family (the book cites each, "n/a" where it has no model), then any other
        for arch in dict.fromkeys([*ARCHITECTURES, *arch_order([s for s in summaries if s["arch"] != REFERENCE])]):
            rows = sorted((s for s in summaries if s["dataset"] == d and s["arch"] == arch),
                          key=lambda s: s["params_non_embedding"])
            for which, s in (("smallest", rows[0] if rows else {}), ("largest", rows[-1] if rows else {})):
                for short, (key, spec, why) in keys.items():
                    glue_text(f"{d}_{arch}_{which}_{short}", s.get(key), spec, why if s else f"no {arch} model")
