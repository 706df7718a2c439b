"""A tune as the report shows it: sheet music (SVG), a recording (Ogg Opus, with its MIDI file) and the
gallery's HTML.

Sheet music goes ABC -> music21 -> MusicXML -> verovio -> SVG. verovio's C++ engraver can abort or hang the
process on odd input, so the generate stage engraves in worker processes (:mod:`musicscale.workers`), where a
crash or a hang costs one picture, never the notebook. Model output is never given to verovio's own ABC
importer, which aborts the whole Python process on some real tunes.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .validity import SAMPLE_METRICS, ParseResult, parse_abc, quiet

# -----------------------------------------------------------------------------
# sheet music: ABC -> music21 -> MusicXML -> verovio SVG

VEROVIO_OPTIONS = {
    "pageWidth": 2100,  # 840 px at scale 40
    "pageHeight": 60000,  # tall enough for any tune to fit page 1; adjustPageHeight trims it
    "scale": 40,
    "adjustPageHeight": True,
    "breaks": "auto",
    "header": "none",
    "footer": "none",
    "svgViewBox": True,  # the SVG scales with its container
    "svgFormatRaw": True,  # no indentation: a third smaller
}


def _id_seed(abc_text: str) -> int:
    """A seed for verovio's element ids: stable for a tune (nbval-friendly), distinct between tunes."""
    return zlib.crc32(abc_text.encode("utf-8")) % 2_147_483_647 + 1


def score_to_svg(score: Any, abc_text: str) -> str:
    """Engrave a music21 score of ``abc_text`` (whose text seeds the element ids) in this process; raises on
    failure, and may crash the process: the stage calls it in a worker."""
    import verovio
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    with quiet():
        musicxml = GeneralObjectExporter(score).parse().decode("utf-8")
    verovio.enableLog(verovio.LOG_OFF)
    toolkit = verovio.toolkit()
    toolkit.setOptions({**VEROVIO_OPTIONS, "xmlIdSeed": _id_seed(abc_text)})
    if not toolkit.loadData(musicxml) or toolkit.getPageCount() < 1:
        raise ValueError("verovio cannot load the MusicXML")
    return toolkit.renderToSVG(1)


def abc_to_svg(abc_text: str) -> str:
    """Engrave ABC text in this process; raises on failure (see :func:`score_to_svg`)."""
    score = parse_abc(abc_text).score
    if score is None:
        raise ValueError("music21 cannot parse the tune")
    return score_to_svg(score, abc_text)


# -----------------------------------------------------------------------------
# audio: music21 writes MIDI; TinySoundFont plays it through a General MIDI SoundFont; Ogg Opus out

GM_PROGRAM = 40  # General MIDI violin: the folk fiddle
SOUNDFONT = "TimGM6mb.sf2"  # the General MIDI SoundFont shipped in pretty_midi's wheel
AUDIO_RATE = 24000  # Hz; one of Opus's native rates
OPUS_COMPRESSION = 0.97  # libsndfile's compression level: about 13 kbit/s, 1.6 KB a second
_OGG_SERIAL = 1  # libsndfile draws a random Ogg stream serial number; a fixed one makes the bytes repeatable


def soundfont_path() -> Path:
    """The General MIDI SoundFont file (from the installed pretty_midi package: no download)."""
    import pretty_midi

    return Path(pretty_midi.__file__).resolve().parent / SOUNDFONT


def score_to_midi(score_or_abc: Any, program: int = GM_PROGRAM, bpm: float = 120.0) -> bytes | None:
    """A Standard MIDI File of the tune (a music21 score or ABC text), repeats played, every part on GM
    ``program``; None if it has no notes or music21 cannot write it."""
    from music21 import midi

    score = parse_abc(score_or_abc).score if isinstance(score_or_abc, str) else score_or_abc
    if score is None:
        return None
    with quiet():
        try:
            score = score.expandRepeats()  # a copy: the caller's score is left as it is
        except Exception:
            score = copy.deepcopy(score)  # malformed repeats: play it through once
        if not score.flatten().notes:
            return None
        # music21 cannot export some scores (a meter found twice); then the notes alone, in one part
        for attempt in (score, _notes_only(score)):
            try:
                return midi.translate.streamToMidiFile(_on_program(attempt, program, bpm)).writestr()
            except Exception:
                continue
    return None


def _on_program(score: Any, program: int, bpm: float) -> Any:
    """``score`` with every part on GM ``program`` at ``bpm`` quarter notes a minute (changed in place)."""
    from music21 import instrument, tempo

    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    for part in parts:
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            part.remove(old, recurse=True)
        player = instrument.Instrument()
        player.midiProgram = program
        part.insert(0, player)
    for mark in list(score.recurse().getElementsByClass(tempo.MetronomeMark)):
        score.remove(mark, recurse=True)
    score.insert(0, tempo.MetronomeMark(number=bpm))
    return score


def _notes_only(score: Any) -> Any:
    """A one-part score of the notes and chords of ``score`` at their offsets, without meters or keys."""
    from music21 import stream

    part = stream.Part()
    for note in score.flatten().notes:
        part.insert(note.offset, copy.deepcopy(note))
    return stream.Score([part])


@lru_cache(maxsize=1)
def _soundfont_bytes() -> bytes:
    return soundfont_path().read_bytes()


def midi_to_samples(midi_bytes: bytes, sample_rate: int = AUDIO_RATE, max_seconds: float | None = 12.0,
                    tail: float = 0.5) -> np.ndarray:
    """Render MIDI to mono float32 samples with TinySoundFont: music past ``max_seconds`` is cut and
    faded out; ``tail`` seconds let the last note ring; the peak is normalised to 0.8."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    synth.sfload(_soundfont_bytes())
    events = tinysoundfont.midi.load_memory(midi_bytes)
    tinysoundfont.Sequencer(synth).add(events)
    end = max((e.t for e in events), default=0.0)
    if max_seconds is not None:
        end = min(end, max_seconds)
    n = int((end + tail) * sample_rate)
    audio = np.frombuffer(synth.generate(n), dtype=np.float32).reshape(-1, 2).mean(axis=1)
    audio = audio * np.clip((n - np.arange(n)) / (tail * sample_rate), 0.0, 1.0)  # fade out over the tail
    peak = float(np.abs(audio).max()) if n else 0.0
    return (audio * (0.8 / peak) if peak > 0 else audio).astype(np.float32)


def encode_opus(samples: np.ndarray, sample_rate: int = AUDIO_RATE) -> bytes:
    """Mono samples as Ogg Opus bytes (libsndfile via soundfile), with a fixed stream serial number so
    that the same samples always give the same bytes."""
    import soundfile
    from mutagen.ogg import OggPage

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format="OGG", subtype="OPUS", compression_level=OPUS_COMPRESSION)
    buffer.seek(0)
    pages = []
    while buffer.tell() < len(buffer.getbuffer()):
        page = OggPage(buffer)
        page.serial = _OGG_SERIAL
        pages.append(page.write())  # recomputes the page checksum
    return b"".join(pages)


def render_audio(score_or_abc: Any, *, sample_rate: int = AUDIO_RATE, max_seconds: float | None = 12.0,
                 bpm: float = 120.0, program: int = GM_PROGRAM) -> tuple[bytes, bytes] | None:
    """(Ogg Opus audio, MIDI file) of a tune played on GM ``program`` (the fiddle); None if it has no
    notes. Offline and deterministic: the same tune gives the same bytes."""
    midi_bytes = score_to_midi(score_or_abc, program=program, bpm=bpm)
    if midi_bytes is None:
        return None
    return encode_opus(midi_to_samples(midi_bytes, sample_rate, max_seconds), sample_rate), midi_bytes


# -----------------------------------------------------------------------------
# one tune, parsed once: sheet music and recording


@dataclass(frozen=True)
class Rendering:
    """What the gallery shows of a tune; None where that part could not be made."""

    svg: str | None
    audio: bytes | None  # Ogg Opus
    midi: bytes | None


def render_tune(abc_text: str, parsed: ParseResult | None = None, *, sample_rate: int = AUDIO_RATE,
                max_seconds: float | None = 12.0, engrave: bool = True) -> Rendering:
    """Sheet music (if ``engrave``) and recording of a tune from one music21 parse (``parsed``, or parsed here).
    The recording is made first: it works on a copy of the score, so the engraving sees the score as parsed."""
    parsed = parse_abc(abc_text) if parsed is None else parsed
    if parsed.score is None:
        return Rendering(None, None, None)
    recorded = render_audio(parsed.score, sample_rate=sample_rate, max_seconds=max_seconds)
    audio, midi_bytes = recorded or (None, None)
    svg = None
    if engrave:
        try:
            svg = score_to_svg(parsed.score, abc_text)
        except Exception:
            svg = None
    return Rendering(svg if svg and "<svg" in svg else None, audio, midi_bytes)


# -----------------------------------------------------------------------------
# HTML gallery for the report


def _metrics_line(metrics: dict) -> str:
    def fmt(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    return " · ".join(f"{k.replace('_', ' ')}: {fmt(metrics[k])}" for k in SAMPLE_METRICS if k in metrics)


NOT_RENDERED = "<p><em>could not render the score</em></p>"


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "tune"


def gallery_html(items: Sequence[dict]) -> str:
    """One HTML block per tune: title, optional note, inline SVG, an offline <audio> player (Ogg Opus) with
    a MIDI download link beside it, metrics and the ABC.

    Each item has ``title``, ``svg`` (str or None), ``abc``, optionally ``note``, ``svg_note`` (why there
    is no score), ``audio`` and ``midi`` (bytes, or ``audio_path``/``midi_path``) and ``metrics``.
    The output depends only on the items.
    """
    blocks = []
    for item in items:
        title = str(item.get("title", ""))
        parts = [f"<h4>{html.escape(title)}</h4>"]
        if item.get("note"):
            parts.append(f"<p class='musicscale-note'>{html.escape(item['note'])}</p>")
        svg = item.get("svg")
        if svg:
            parts.append(f"<div class='musicscale-score'>{svg}</div>")
        else:
            parts.append(f"<p><em>{html.escape(item['svg_note'])}</em></p>" if item.get("svg_note") else NOT_RENDERED)
        audio, midi_bytes = item.get("audio"), item.get("midi")
        if audio is None and item.get("audio_path"):
            audio = Path(item["audio_path"]).read_bytes()
        if midi_bytes is None and item.get("midi_path"):
            midi_bytes = Path(item["midi_path"]).read_bytes()
        player = []
        if audio:
            player.append(f"<audio controls preload='metadata' src='{_data_uri(audio, 'audio/ogg')}'></audio>")
        if midi_bytes:
            player.append(f"<a download='{_slug(title)}.mid' href='{_data_uri(midi_bytes, 'audio/midi')}'>"
                          "download MIDI</a>")
        if player:
            parts.append("<p class='musicscale-audio'>" + " ".join(player) + "</p>")
        if item.get("metrics"):
            parts.append(f"<p class='musicscale-metrics'>{html.escape(_metrics_line(item['metrics']))}</p>")
        parts.append(f"<pre>{html.escape(item.get('abc', ''))}</pre>")
        blocks.append("<div class='musicscale-tune'>\n" + "\n".join(parts) + "\n</div>")
    return "\n".join(blocks)

