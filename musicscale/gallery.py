"""The gallery: what the generate page shows of each dataset (a real tune, each model's best samples, the largest
models' prompted ones, chosen by :mod:`musicscale.ranking`), the page's size budget (sheet music left out, least
important first), and :class:`Renderings`, the cache of the sheet music and recordings the workers make.
:mod:`musicscale.render` engraves and records one tune and writes the HTML of the items chosen here."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from . import corpus, render, workers
from .generated import PROMPTED, REFERENCE, code_version, read_samples, read_saved
from .ranking import disobeys, gallery_min_bars, prompted_picks, qualifies, shortfall, shown_samples
from .workdir import SPLITS, Workdir, fingerprint, write_bytes, write_json, write_text
from .workers import LazyPool

RENDER_TIMEOUT = 30.0  # seconds a worker may take for one tune's sheet music and recording
GALLERY_AUDIO = {"sample_rate": render.AUDIO_RATE, "max_seconds": 12.0}  # the recordings the gallery plays
N_BEST_LARGEST = 3  # samples shown for the largest model of each architecture; one for every other size
MAX_PAGE_BYTES = 1_800_000  # the gallery's share of the generate page, which must stay under 2 MB


def galleries(workdir: str | Path, summaries: Sequence[dict], **kwargs):
    """The gallery of every dataset, one section each."""
    from IPython.display import HTML

    max_bytes = kwargs.pop("max_bytes", MAX_PAGE_BYTES)
    datasets = list(dict.fromkeys(s["dataset"] for s in summaries))
    return HTML("\n".join(f"<h3>{d}</h3>\n" + gallery(workdir, summaries, d, max_bytes=max_bytes // len(datasets),
                                                        **kwargs).data for d in datasets))


def gallery(workdir: str | Path, summaries: Sequence[dict], dataset: str, *,
            sample_rate: int = GALLERY_AUDIO["sample_rate"], max_seconds: float = GALLERY_AUDIO["max_seconds"],
            timeout: float = RENDER_TIMEOUT, max_bytes: int = MAX_PAGE_BYTES, n_workers: int | None = None):
    """HTML gallery of one dataset: how samples were chosen, a real training tune, then each model's best
    samples by size (three for the largest of each architecture): sheet music (SVG), an audio player with a
    MIDI download and the raw ABC. Also saves ``best.svg``/``best.ogg``/``best.mid`` per model.

    The renderings the stage made are read from its cache; any other is made by ``n_workers`` workers, each
    tune under ``timeout`` seconds (a tune whose engraving fails, crashes or hangs is shown without a score)."""
    from IPython.display import HTML

    with LazyPool(n_workers) as pool:
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
               f"qualifying is shown and says so. After its unprompted samples, the largest model of each "
               f"architecture shows one sample per prompt: the best that obeys it, or the closest.</p>")
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
                     f"; shown instead: the sample closest to qualifying ({shortfall(sample, min_bars)}).")
            shown.append({"title": title, "abc": sample["text"], "metrics": sample["metrics"], "note": note,
                          "out": wd.generated_dir(dataset, s["run"]) if rank == 1 else None,
                          "priority": 1 if rank == 1 else 2})
        if largest[s["arch"]] == s["run"] and s.get("prompted"):
            shown += _prompted_items(workdir, s, title, min_bars)
    for item in shown:
        renderings.request(item["abc"])  # all at once: the workers render them side by side
    return caption, [_item(item, renderings.get(item["abc"])) for item in shown]


def _prompted_items(workdir: str | Path, summary: dict, title: str, min_bars: int) -> list[dict]:
    """The gallery items of a model's prompted samples: one per prompt, beside its unprompted ones."""
    samples = read_samples(workdir, summary["dataset"], summary["run"], PROMPTED)
    items = []
    for sample in prompted_picks(samples, summary["prompted"], min_bars):
        prompt = summary["prompted"][sample["prompt"]]
        n_obey = round(prompt["share_obeys"] * prompt["n"]) if prompt["share_obeys"] is not None else 0
        note = f"Prompted with {prompt['label']} ({prompt['source']}): {n_obey} of {prompt['n']} samples obey it; "
        note += ("this one does." if sample["obedience"]["obeys"] else
                 f"none does, shown: the closest ({disobeys(sample, prompt)}).")
        # priority 1, after the model's own: the page keeps their sheet music longer than any but the real tune's
        items.append({"title": f"{title}, prompted", "abc": sample["text"], "metrics": sample["metrics"],
                      "note": note, "out": None, "priority": 1})
    return items


def _fit_budget(items: list[dict], max_bytes: int) -> None:
    """Leave out sheet music, least important first (further samples, then best samples from the smallest
    model up, the largest models' prompted samples last), until the gallery's HTML fits in ``max_bytes``; each
    item that loses its score says so."""
    order = sorted(range(len(items)), key=lambda i: (-items[i].get("priority", 1), i))
    size = len(render.gallery_html(items))
    for i in order:
        if size <= max_bytes:
            return
        if items[i].get("svg"):
            size -= len(items[i]["svg"])
            items[i]["svg"] = None
            items[i]["svg_note"] = "sheet music left out to keep this page under 2 MB (the ABC below has it all)"


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
    same tune, settings and :func:`~musicscale.generated.code_version`, else made by the workers and saved there.

    A tune whose rendering crashed or hung its worker is recorded again without engraving: the crash costs
    its sheet music only. Such a result is not saved (a time limit may have been hit only under load)."""

    def __init__(self, folder: Path, pool: LazyPool, *, sample_rate: int, max_seconds: float | None,
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
        saved = read_saved(path)
        return None if saved is None else render.Rendering(saved["svg"], _unb64(saved["audio"]), _unb64(saved["midi"]))

    def finish(self) -> None:
        """Wait for every rendering under way and save it."""
        for text in list(self._futures):
            self.get(text)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
