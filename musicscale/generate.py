"""The generate stage: sample from every trained size, measure musical validity, render a gallery.

For each dataset, the models are the main-budget runs of the first seed (one per architecture and size).
Writes ``generated/<dataset>/<run>/samples.jsonl`` (every sample with its metrics) and ``summary.json``;
the gallery's best sample per model is saved as ``best.svg``, ``best.ogg`` and ``best.mid`` beside them.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import corpus, music
from .analysis import load_sweep
from .datasets import load_tokenizer
from .models import build_model
from .sample import sample_tunes
from .train import resolve_device
from .workdir import (
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


def check_sampling(n_samples: int, temperature: float, top_k: int | None, max_new_tokens: int) -> None:
    """Raise ValueError naming the notebook parameter that is out of range."""
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or a positive integer, got {top_k!r}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")


def generate_stage(workdir: str | Path, *, datasets: Sequence[str] | None = None, n_samples: int = 50,
                   temperature: float = 1.0, top_k: int | None = None, max_new_tokens: int = 500,
                   prompt: str = "X:1\n", seed: int = 0, device: str = "auto", log=print) -> list[dict]:
    """Sample and score every model of every dataset; returns one summary per model plus a reference
    row per dataset (real test tunes, scored the same way: the ceiling a model can reach)."""
    check_sampling(n_samples, temperature, top_k, max_new_tokens)
    wd = Workdir(workdir)
    dev = str(resolve_device(device))
    settings = {"n_samples": n_samples, "temperature": temperature, "top_k": top_k,
                "max_new_tokens": max_new_tokens, "prompt": prompt, "seed": seed}
    summaries = []
    sweeps = load_sweep(workdir, datasets)
    for dataset in sweeps:
        remove_partial_files(wd.generated_dir(dataset))
    for dataset, runs in sweeps.items():
        train = corpus.read_split(wd.require(wd.split_text(dataset, "train")))
        index = music.NoveltyIndex(train)
        test = corpus.read_split(wd.split_text(dataset, "test"))[:n_samples]
        ref = music.summarize([music.validity_metrics(t, index) for t in test])
        summaries.append({"dataset": dataset, "arch": REFERENCE, "size": "test tunes", "run": REFERENCE,
                          "params_non_embedding": None, **ref})
        tok = load_tokenizer(workdir, dataset)
        for run in models_to_sample(runs):
            out = wd.generated_dir(dataset, run["run"])
            summary_path = out / "summary.json"
            # the samples depend on the weights, the vocabulary and the settings: reuse only if all match
            inputs = fingerprint(file_fingerprint(wd.require(wd.run_dir(dataset, run["run"]) / "model.pt")),
                                 tok.itos, settings)
            summary = cached_summary(summary_path, inputs, log)
            if summary is None:
                model = load_model(workdir, dataset, run["run"], dev)
                samples = sample_tunes(model, tok, n_samples, temperature=temperature, top_k=top_k, prompt=prompt,
                                       max_new_tokens=max_new_tokens, seed=seed, device=dev)
                for s in samples:
                    s["metrics"] = music.validity_metrics(s["text"], index, finished=s["finished"])
                write_text(out / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
                summary = {"dataset": dataset, "arch": run["arch"], "size": run["size"], "run": run["run"],
                           "params_non_embedding": run["params_non_embedding"], "test_loss": run["test_loss"],
                           "settings": settings, "inputs_fingerprint": inputs,
                           **music.summarize([s["metrics"] for s in samples])}
                write_json(summary_path, summary)
            if log:
                log(f"{dataset}/{run['run']}: {summary['n']} samples, parses {summary['share_parses']:.0%}")
            summaries.append(summary)
    return summaries


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


QUARTILE = 0.25  # a sample of realistic length has at least as many checked bars as the shortest quarter of real tunes


def realistic_bars(tunes: Sequence[str]) -> int:
    """The fewest checked bars a sample needs to count as a whole tune: the lower quartile of the checked
    bars of real ``tunes`` (at least 1)."""
    counts = [music.bar_duration_stats(t)[0] for t in tunes]
    return max(1, int(np.quantile(counts, QUARTILE, method="lower"))) if counts else 1


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


def validity_table(summaries: Sequence[dict]):
    """One row per model (and the reference row of real tunes) with the validity shares."""
    from .report import markdown_table

    return markdown_table(summaries, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None),
        ("params_non_embedding", "N (non-emb.)", ","), ("n", "samples", None), ("share_parses", "parses", ".0%"),
        ("share_headers_ok", "headers ok", ".0%"), ("pooled_bar_accuracy", "bars correct", ".1%"),
        ("share_novel", "novel", ".0%"), ("share_degenerate", "degenerate", ".0%"),
        ("degenerate", "degenerate by kind", lambda d: ", ".join(f"{k} {v}" for k, v in d.items() if v) or "—")])


N_BEST_LARGEST = 3  # samples shown for the largest model of each architecture; one for every other size
MAX_PAGE_BYTES = 1_800_000  # the gallery's share of the generate page, which must stay under 2 MB


def gallery(workdir: str | Path, summaries: Sequence[dict], dataset: str, *, sample_rate: int = music.AUDIO_RATE,
            max_seconds: float = 12.0, timeout: float = 30.0, max_bytes: int = MAX_PAGE_BYTES):
    """HTML gallery of one dataset: how samples were chosen, a real training tune, then each model's best
    samples by size (three for the largest of each architecture): sheet music (SVG), an audio player with a
    MIDI download and the raw ABC. Also saves ``best.svg``/``best.ogg``/``best.mid`` per model."""
    from IPython.display import HTML

    caption, items = _gallery_items(workdir, summaries, dataset, sample_rate, max_seconds, timeout)
    _fit_budget(items, max_bytes - len(caption))
    return HTML(caption + "\n" + music.gallery_html(items))


def _gallery_items(workdir: str | Path, summaries: Sequence[dict], dataset: str, sample_rate: int,
                   max_seconds: float, timeout: float) -> tuple[str, list[dict]]:
    """The caption and the items of one dataset's gallery, each with a ``priority`` (0 the real tune, 1 a
    model's best sample, 2 the further samples of the largest models)."""
    wd = Workdir(workdir)
    reference = corpus.read_split(wd.require(wd.split_text(dataset, SPLITS[0])))[0]
    min_bars = realistic_bars(corpus.read_split(wd.require(wd.split_text(dataset, "test"))))
    caption = (f"<p class='musicscale-caption'>A sample qualifies when the model closed the tune, music21 parses it "
               f"and it has at least {min_bars} checked bars (the lower quartile of real test tunes of "
               f"<em>{html.escape(dataset)}</em>). Qualifying samples are ranked by the share of correct bars, then "
               f"valid headers, novelty and length; the largest model of each architecture shows up to its "
               f"{N_BEST_LARGEST} best, every other size its best. Where no sample qualifies, the one closest to "
               f"qualifying is shown and says so.</p>")
    items = [_item("A real training tune, for reference", reference, None, None, sample_rate, max_seconds, timeout)]
    models = [s for s in summaries if s["dataset"] == dataset and s["arch"] != REFERENCE]
    largest = {a: max((s for s in models if s["arch"] == a), key=lambda s: s["params_non_embedding"])["run"]
               for a in {s["arch"] for s in models}}
    for s in models:
        samples = read_samples(workdir, dataset, s["run"])
        ranked, n_ok = rank_samples(samples, min_bars)
        k = N_BEST_LARGEST if largest[s["arch"]] == s["run"] else 1
        shown = ranked[:max(1, min(k, n_ok))]  # only qualifying samples, or the single closest one
        title = f"{s['arch']} {s['size']} (N = {s['params_non_embedding']:,}, test loss {s['test_loss']:.3f} nats/char)"
        for rank, sample in enumerate(shown, 1):
            note = f"{n_ok} of {len(samples)} samples qualified"
            note += (f"; this is number {rank} of the {len(shown)} best shown." if qualifies(sample, min_bars) else
                     f"; shown instead: the sample closest to qualifying ({_shortfall(sample, min_bars)}).")
            out = wd.generated_dir(dataset, s["run"]) if rank == 1 else None
            items.append({**_item(title, sample["text"], sample["metrics"], out, sample_rate, max_seconds, timeout,
                                  note), "priority": 1 if rank == 1 else 2})
    items[0]["priority"] = 0
    return caption, items


def _fit_budget(items: list[dict], max_bytes: int) -> None:
    """Leave out sheet music, least important first (further samples, then best samples from the smallest
    model up), until the gallery's HTML fits in ``max_bytes``; each item that loses its score says so."""
    order = sorted(range(len(items)), key=lambda i: (-items[i].get("priority", 1), i))
    size = len(music.gallery_html(items))
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


def _item(title: str, text: str, metrics: dict | None, out: Path | None, sample_rate: int, max_seconds: float,
          timeout: float, note: str | None = None) -> dict:
    svg = music.render_svg(text, timeout=timeout)
    parsed = music.parse_abc(text)
    rendered = music.render_audio(parsed.score, sample_rate=sample_rate, max_seconds=max_seconds) if parsed.score \
        else None
    audio, midi_bytes = rendered or (None, None)
    if out is not None:
        if svg:
            write_text(out / "best.svg", svg)
        if rendered:
            write_bytes(out / "best.ogg", audio)
            write_bytes(out / "best.mid", midi_bytes)
    return {"title": title, "note": note, "svg": svg, "audio": audio, "midi": midi_bytes, "abc": text,
            "metrics": metrics}


def galleries(workdir: str | Path, summaries: Sequence[dict], **kwargs):
    """The gallery of every dataset, one section each."""
    from IPython.display import HTML

    max_bytes = kwargs.pop("max_bytes", MAX_PAGE_BYTES)
    datasets = list(dict.fromkeys(s["dataset"] for s in summaries))
    return HTML("\n".join(f"<h3>{d}</h3>\n" + gallery(workdir, summaries, d, max_bytes=max_bytes // len(datasets),
                                                        **kwargs).data for d in datasets))


def figure_path(workdir: str | Path) -> Path:
    """Where the validity-against-size figure is saved."""
    return Workdir(workdir).results_dir / "validity_vs_size.png"


def validity_fits(summaries: Sequence[dict], seed: int = 0, n_boot: int = 200) -> list[dict]:
    """Fit ``1 - bars correct = a N^-alpha + c`` per dataset and architecture where >= 3 sizes have errors."""
    from .scaling import fit_power_law

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
    from .analysis import format_ci
    from .report import markdown_table

    rows = [{**r, "alpha_s": format_ci(r, "alpha"), "c_s": format_ci(r, "c")} for r in validity_fits(summaries, seed)]
    return markdown_table(rows, [("dataset", "dataset", None), ("arch", "arch", None),
                                 ("sizes", "sizes with wrong bars", None), ("alpha_s", "α [95% CI]", None),
                                 ("c_s", "c [95% CI]", None), ("r2", "R²", ".3f")])


def glue_validity(summaries: Sequence[dict]) -> None:
    """Glue the validity figures the findings page cites, as text: smallest and largest model per
    architecture, and the reference row of real tunes (``<dataset>_<arch>_{smallest,largest}_{parses,bars,novel}``).
    A missing share reads "n/a (reason)"."""
    from .report import glue_text

    keys = {"parses": ("share_parses", ".0%", "no samples"),
            "bars": ("pooled_bar_accuracy", ".1%", "no bar could be checked"),
            "novel": ("share_novel", ".0%", "no sample long enough to compare")}
    for s in summaries:
        if s["arch"] == REFERENCE:
            for short, (key, spec, why) in keys.items():
                glue_text(f"{s['dataset']}_reference_{short}", s.get(key), spec, why)
    for d in dict.fromkeys(s["dataset"] for s in summaries):
        for arch in ("transformer", "lstm"):
            rows = sorted((s for s in summaries if s["dataset"] == d and s["arch"] == arch),
                          key=lambda s: s["params_non_embedding"])
            for which, s in (("smallest", rows[0] if rows else {}), ("largest", rows[-1] if rows else {})):
                for short, (key, spec, why) in keys.items():
                    glue_text(f"{d}_{arch}_{which}_{short}", s.get(key), spec, why if s else f"no {arch} model")
