"""Is a generated tune music? Validity metrics, sheet music (SVG), audio (Ogg Opus from MIDI) and an HTML gallery.

Validity of one ABC text, from cheap to strict:

- ``parses``: music21's ABC reader turns it into a score without raising;
- ``headers_ok``: the X, M, L and K header fields are present and well formed;
- bar accuracy: the share of bars whose written length equals the time signature's bar length;
- ``novel``: less than half of its body's 12-grams occur in the training tunes (not a copy).

Rendering goes ABC -> music21 -> MusicXML -> verovio -> SVG in a child process, so that a crash
or a hang inside the C++ engraver costs one picture, never the notebook. Model output is never
given to verovio's own ABC importer, which aborts the whole Python process on some real tunes.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import html
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# -----------------------------------------------------------------------------
# parsing


@dataclass(frozen=True)
class ParseResult:
    """A music21 score, or None and the reason it could not be read."""

    score: Any  # music21.stream.Score | None
    error: str | None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence music21, which reports problems with ``warnings`` and by writing to stderr."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


PARSE_TIMEOUT = 10.0  # seconds music21 may spend on one tune


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TimeoutError in the block after ``seconds``: music21 can loop for minutes on some model
    output (a meter such as ``M:2/64`` in a garbled header). Uses SIGALRM, so it applies in the main
    thread on Unix (as in a notebook kernel); elsewhere the block runs without a limit."""
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"music21 took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_abc(text: str, timeout: float | None = None) -> ParseResult:
    """Parse one ABC tune with music21; never raises (a parse over ``timeout`` s, by default
    ``PARSE_TIMEOUT``, is an error). If the text holds several tunes, the first."""
    from music21 import converter, stream

    try:
        with _quiet(), _time_limit(PARSE_TIMEOUT if timeout is None else timeout):
            # parseData, not parse: a short string must never be mistaken for a file name.
            score = converter.parseData(text, format="abc")
    except Exception as err:  # music21 raises many kinds on malformed input
        return ParseResult(None, f"{type(err).__name__}: {err}"[:300])
    if isinstance(score, stream.Opus):
        score = score.scores.first()
    if score is None:
        return ParseResult(None, "no tune found")
    return ParseResult(score, None)


# -----------------------------------------------------------------------------
# header fields

_FIELD = re.compile(r"^([A-Za-z]):(.*)$")
_METER = re.compile(r"C\|?|none|\(?\d+(?:\+\d+)*\)?/\d+")
_LENGTH = re.compile(r"\d+/\d+")
# A tonic and an optional mode (only the first three letters count in ABC), then optional extras
# such as explicit accidentals or clef=bass; or the special keys none / HP / Hp.
_MODE = r"(?i:(?:maj|min|ion|dor|phr|lyd|mix|aeo|loc)[a-z]*|m)"
_KEY = re.compile(rf"(?:none|HP|Hp|[A-G][#b]?\s*{_MODE}?)(?:\s+.*)?")


def _split_header(text: str) -> tuple[dict[str, str], str]:
    """Split a tune into its header fields (first value of each) and its body.

    The header is the run of ``F:value`` lines (and % comments) at the start, ending with the first
    K: line. Without a K: line, the body starts at the first line that is not a field.
    """
    fields: dict[str, str] = {}
    lines = text.strip("\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        match = _FIELD.match(line)
        if not (match or line.startswith("%") or (not line and not fields)):
            break
        i += 1
        if match:
            fields.setdefault(match.group(1), match.group(2).split("%")[0].strip())
            if match.group(1) == "K":
                break
    return fields, "\n".join(lines[i:]).strip()


def tune_body(text: str) -> str:
    """The notes of a tune: everything after its header."""
    return _split_header(text)[1]


def _fraction_ok(value: str) -> bool:
    return all(int(part) > 0 for part in re.findall(r"\d+", value))


def header_fields_ok(text: str) -> dict[str, bool]:
    """Which of the X, M, L, K header fields are present and well formed, and ``ok`` if all are."""
    fields, _ = _split_header(text)
    got = {
        "X": bool(re.fullmatch(r"\d+", fields.get("X", ""))),
        "M": bool(_METER.fullmatch(fields.get("M", ""))) and _fraction_ok(fields["M"]),
        "L": bool(_LENGTH.fullmatch(fields.get("L", ""))) and _fraction_ok(fields["L"]),
        "K": bool(_KEY.fullmatch(fields.get("K", ""))),
    }
    return {**got, "ok": all(got.values())}


# -----------------------------------------------------------------------------
# bar lengths
#
# music21's Score does not keep the bars as written: its ABC reader splits an overlong bar into a
# full bar plus a new bar with an invented time signature ("reBar"), and builds no measures at all
# when a tune has fewer than two plain barlines. So bar lengths are summed from music21's ABC
# tokens instead: note and chord lengths (with broken rhythms and tuplets, without grace notes)
# between barlines, and the meter in force from M: fields.
#
# Line ends: many corpus tunes (the Essen folksongs) leave out the barline at the end of a line,
# while others carry a bar over into the next line (a pickup to the next phrase). So a line that does
# not end with a barline (or a \ continuation) ends its bar only if the bar is already full.
#
# Which bars are checked: pickups and the partial bars either side of a repeat or section end are
# legitimately short, so a *boundary* bar (the first, the last, or one next to any barline other
# than a plain "|", e.g. |: :| || |] [1 :|2) that is shorter than the meter is skipped. Every other
# bar is checked, and a bar is correct when its length equals the meter's exactly. A boundary bar
# that is too long is wrong. Bars without a meter (M:none or no M: field), and the rest of a text
# after a second X: field (a second tune), are not checked.


@dataclass(frozen=True)
class Bar:
    """One bar as written: its length and the meter's, in quarter notes."""

    length: float
    expected: float | None  # None without a meter
    boundary: bool  # first, last, or next to a non-plain barline


def _meter_length(meter: str) -> float | None:
    from music21 import meter as m21meter

    meter = meter.strip()
    if meter in ("C", "C|"):
        return 4.0
    try:
        return float(m21meter.TimeSignature(meter).barDuration.quarterLength)
    except Exception:
        return None


def _plain(barline: Any) -> bool:
    return barline.barType == "barline" and barline.barStyle == "regular" and not barline.repeatForm


_QUOTED = re.compile(r'"[^"]*"')
_INLINE_FIELD = re.compile(r"\[([A-Za-z]):([^\]]*)\]")  # music21 reads [M:3/4] as an empty chord
_LINE_END = "[r:eol]"  # a remark field, so music21 keeps it as a token where we put it
_BARRED_END = re.compile(r"(?:[|:\\]|\|\])$")


def _mark_line_ends(abc_text: str) -> str:
    r"""Append _LINE_END to every body line that does not end with a barline or a \ continuation."""
    lines = abc_text.split("\n")
    for i, line in enumerate(lines):
        music = line.split("%")[0].rstrip()
        if music and not _FIELD.match(music) and not _BARRED_END.search(music):
            lines[i] = music + _LINE_END
    return "\n".join(lines)


def written_bars(abc_text: str) -> list[Bar]:
    """The bars of the first tune in ``abc_text`` as written; [] if music21 cannot tokenize it."""
    from music21 import abcFormat

    handler = abcFormat.ABCHandler()
    try:
        with _quiet(), _time_limit(PARSE_TIMEOUT):
            handler.process(_mark_line_ends(abc_text))
    except Exception:
        return []
    bars: list[tuple[float, float | None, bool]] = []  # (length, expected, left barline is plain)
    meter: float | None = None
    length, bar_meter, has_notes, left_plain, n_x = 0.0, None, False, False, 0

    def close_bar(plain: bool) -> None:
        nonlocal length, has_notes, left_plain
        if has_notes:
            bars.append((length, bar_meter, left_plain))
            length, has_notes, left_plain = 0.0, False, True
        left_plain = left_plain and plain

    for tok in handler.tokens:
        if isinstance(tok, abcFormat.ABCMetadata):
            n_x += tok.tag == "X"
            if n_x > 1:
                break
            if tok.tag == "M":
                meter = _meter_length(tok.data)
            elif tok.tag == "V":  # a new voice starts like a new tune: its first bar may be short
                close_bar(plain=False)
        elif isinstance(tok, abcFormat.ABCBar):
            close_bar(plain=_plain(tok))
        elif isinstance(tok, abcFormat.ABCNote):  # ABCChord is a subclass
            src = _QUOTED.sub("", tok.src).strip()  # a chord symbol may be glued to a marker
            field = _INLINE_FIELD.fullmatch(src)
            if src == _LINE_END:
                if bar_meter is not None and length >= bar_meter - 1e-6:
                    close_bar(plain=True)
            elif field:
                if field.group(1) == "M":
                    meter = _meter_length(field.group(2))
            elif not tok.inGrace:
                if not has_notes:
                    bar_meter, has_notes = meter, True
                tuplet = float(tok.activeTuplet.tupletMultiplier()) if tok.activeTuplet else 1.0
                length += float(tok.quarterLength) * tuplet
    close_bar(plain=False)
    last = len(bars) - 1
    # The right barline of bar i is the left barline of bar i + 1.
    return [
        Bar(ql, expected, i in (0, last) or not left or not bars[i + 1][2])
        for i, (ql, expected, left) in enumerate(bars)
    ]


def bar_duration_stats(abc_text: str) -> tuple[int, int]:
    """(bars checked, bars whose length matches the meter), by the rule in the comment above."""
    n_checked = n_correct = 0
    for bar in written_bars(abc_text):
        if bar.expected is None:
            continue
        if bar.boundary and bar.length < bar.expected - 1e-6:
            continue  # a pickup or the partial bar next to a repeat
        n_checked += 1
        n_correct += abs(bar.length - bar.expected) < 1e-6
    return n_checked, n_correct


# -----------------------------------------------------------------------------
# novelty

NOVELTY_THRESHOLD = 0.5  # a sample is novel when less than half of its n-grams occur in training
_HASH_BASE = np.uint64(1099511628211)  # FNV prime: odd and large, so n-gram hashes spread over 64 bits


def _ngram_hashes(text: str, n: int) -> np.ndarray:
    """64-bit polynomial hashes of every n-byte window of the UTF-8 text (uint64 arithmetic wraps)."""
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint64)
    m = len(data) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    for i in range(n):
        h = h * _HASH_BASE + data[i : i + m]
    return h


class NoveltyIndex:
    """The set of n-grams (as 64-bit hashes) of the training tunes' bodies, built once.

    ``overlap(text)`` is the share of a sample body's n-grams found in training: 1.0 for a copy of a
    training tune, near 0 for new music. Headers are left out, so the shared "X:1 M:4/4 L:1/8 K:G"
    does not count. Building it for 10k tunes takes about 2 s and 8 bytes per distinct n-gram.
    n-grams are of UTF-8 bytes (the same as characters for ASCII ABC) and compared by 64-bit hash.
    """

    def __init__(self, train_tunes: Sequence[str], n: int = 12):
        self.n = n
        hashes = [_ngram_hashes(tune_body(t), n) for t in train_tunes]
        self.hashes = np.unique(np.concatenate(hashes)) if hashes else np.empty(0, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.hashes)

    def overlap(self, text: str) -> float | None:
        """Share of the body's n-grams seen in training; None if the body is shorter than n."""
        h = _ngram_hashes(tune_body(text), self.n)
        if len(h) == 0:
            return None
        if len(self.hashes) == 0:
            return 0.0
        pos = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
        return float(np.mean(self.hashes[pos] == h))

    def is_novel(self, text: str) -> bool | None:
        """True if the overlap is below NOVELTY_THRESHOLD; None if the body is too short to tell."""
        overlap = self.overlap(text)
        return None if overlap is None else overlap < NOVELTY_THRESHOLD


# -----------------------------------------------------------------------------
# metrics of one sample, and of many

DEGENERATE_KINDS = ("empty", "unfinished", "unparsable")


def validity_metrics(text: str, novelty_index: NoveltyIndex | None = None, *, finished: bool = True) -> dict:
    """All validity measures of one generated tune; never raises.

    ``degenerate`` names the first failure of: "empty" (no body, or no notes), "unfinished" (the
    sampler hit its length limit before EOT; pass ``finished``), "unparsable"; else None.
    """
    parsed = parse_abc(text)
    n_notes = len(parsed.score.flatten().notes) if parsed.score is not None else None
    n_checked, n_correct = bar_duration_stats(text)
    overlap = novelty_index.overlap(text) if novelty_index is not None else None
    if not tune_body(text).strip() or n_notes == 0:
        degenerate = "empty"
    elif not finished:
        degenerate = "unfinished"
    elif parsed.score is None:
        degenerate = "unparsable"
    else:
        degenerate = None
    return {
        "parses": parsed.score is not None,
        "parse_error": parsed.error,
        "headers_ok": header_fields_ok(text)["ok"],
        "bars_checked": n_checked,
        "bars_correct": n_correct,
        "bar_accuracy": n_correct / n_checked if n_checked else None,
        "train_overlap": overlap,
        "novel": None if overlap is None else overlap < NOVELTY_THRESHOLD,
        "degenerate": degenerate,
        "n_notes": n_notes,
    }


def _share(values: list) -> float | None:
    return sum(map(bool, values)) / len(values) if values else None


def summarize(metrics: Sequence[dict]) -> dict:
    """Aggregate ``validity_metrics`` over samples. Shares are None when nothing was measured.

    ``mean_bar_accuracy`` averages over samples with checked bars; ``pooled_bar_accuracy`` divides
    all correct bars by all checked bars; ``share_novel`` is over samples whose novelty was measured.
    """
    accuracies = [m["bar_accuracy"] for m in metrics if m["bar_accuracy"] is not None]
    checked = sum(m["bars_checked"] for m in metrics)
    novel = [m["novel"] for m in metrics if m["novel"] is not None]
    overlaps = [m["train_overlap"] for m in metrics if m["train_overlap"] is not None]
    kinds = Counter(m["degenerate"] for m in metrics if m["degenerate"] is not None)
    return {
        "n": len(metrics),
        "share_parses": _share([m["parses"] for m in metrics]),
        "share_headers_ok": _share([m["headers_ok"] for m in metrics]),
        "mean_bar_accuracy": float(np.mean(accuracies)) if accuracies else None,
        "pooled_bar_accuracy": sum(m["bars_correct"] for m in metrics) / checked if checked else None,
        "n_with_bars": len(accuracies),
        "share_novel": _share(novel),
        "mean_train_overlap": float(np.mean(overlaps)) if overlaps else None,
        "n_novelty_measured": len(novel),
        "share_degenerate": _share([m["degenerate"] is not None for m in metrics]),
        "degenerate": {kind: kinds.get(kind, 0) for kind in DEGENERATE_KINDS},
    }


# -----------------------------------------------------------------------------
# sheet music: ABC -> music21 -> MusicXML -> verovio SVG, in a child process

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
_TEST_HOOK = "MUSICSCALE_RENDER_TEST_HOOK"  # "abort" or "hang": lets tests crash the worker


def _id_seed(abc_text: str) -> int:
    """A seed for verovio's element ids: stable for a tune (nbval-friendly), distinct between tunes."""
    return zlib.crc32(abc_text.encode("utf-8")) % 2_147_483_647 + 1


def abc_to_svg(abc_text: str) -> str:
    """Engrave in this process; raises on failure. Use ``render_svg``, which isolates it."""
    import verovio
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    score = parse_abc(abc_text).score
    if score is None:
        raise ValueError("music21 cannot parse the tune")
    with _quiet():
        musicxml = GeneralObjectExporter(score).parse().decode("utf-8")
    verovio.enableLog(verovio.LOG_OFF)
    toolkit = verovio.toolkit()
    toolkit.setOptions({**VEROVIO_OPTIONS, "xmlIdSeed": _id_seed(abc_text)})
    if not toolkit.loadData(musicxml) or toolkit.getPageCount() < 1:
        raise ValueError("verovio cannot load the MusicXML")
    return toolkit.renderToSVG(1)


def _render_worker() -> int:
    """Child process: ABC on stdin, SVG on stdout."""
    abc_text = sys.stdin.buffer.read().decode("utf-8")
    hook = os.environ.get(_TEST_HOOK)
    if hook == "abort":
        os.abort()
    if hook == "hang":
        time.sleep(3600)
    sys.stdout.buffer.write(abc_to_svg(abc_text).encode("utf-8"))
    return 0


def render_svg(abc_text: str, timeout: float = 20.0) -> str | None:
    """Sheet music of a tune as an SVG string; None if it fails, crashes or takes over ``timeout`` s."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "musicscale.music", "render"],
            input=abc_text.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None
    svg = proc.stdout.decode("utf-8", errors="replace")
    return svg if proc.returncode == 0 and "<svg" in svg else None


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
    with _quiet():
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
# HTML gallery for the report


def _metrics_line(metrics: dict) -> str:
    def fmt(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    keys = ("parses", "headers_ok", "bar_accuracy", "novel", "degenerate")
    return " · ".join(f"{k.replace('_', ' ')}: {fmt(metrics[k])}" for k in keys if k in metrics)


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


if __name__ == "__main__":
    if sys.argv[1:] == ["render"]:
        sys.exit(_render_worker())
    sys.exit(f"usage: {sys.executable} -m musicscale.music render < tune.abc > tune.svg")
