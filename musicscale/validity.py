"""Is a generated tune music? Validity metrics of ABC text, from cheap to strict:

- ``parses``: music21's ABC reader turns it into a score without raising;
- ``headers_ok``: the X, M, L and K header fields are present and well formed;
- bar accuracy: the share of bars whose written length equals the time signature's bar length;
- ``novel``: less than half of its body's 12-grams occur in the training tunes (not a copy).

The music21 part (parsing, bar lengths) is :func:`measure`; it is what the rendering workers
(:mod:`musicscale.workers`) compute, from the same parse as the sheet music and the audio.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
def quiet() -> Iterator[None]:
    """Silence music21, which reports problems with ``warnings`` and by writing to stderr."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


PARSE_TIMEOUT = 10.0  # seconds of CPU time music21 may spend on one tune


class _CpuTimeLimit:
    """Raise TimeoutError in the block once it has used ``seconds`` of CPU time, and again every
    ``seconds / 4`` until the block ends: music21 can loop for minutes on some model output (a meter such
    as ``M:2/64`` in a garbled header).

    CPU time, not wall time, so that a busy machine does not turn a slow tune (some take 3 s) into an
    unparsable one: the metrics do not depend on the load. It keeps firing because Python runs a signal
    handler wherever the main thread is, a ``__del__`` or a weakref callback included, and there an exception
    is printed and dropped: a limit that fired once could be lost, and the parse would hang. The handler
    does not raise inside this class's own ``__enter__``/``__exit__``, so the timer is always disarmed and the
    previous handler restored. Uses SIGPROF, so it applies in the main thread on Unix (as in a notebook
    kernel or a worker); elsewhere the block runs without a limit."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.usable = (seconds is not None and hasattr(signal, "setitimer")
                       and threading.current_thread() is threading.main_thread())

    def _expire(self, signum, frame) -> None:
        if self.armed and (frame is None or frame.f_code not in _OWN_CODE):
            raise TimeoutError(f"music21 took longer than {self.seconds:g} s")

    def __enter__(self) -> None:
        self.armed = False
        if self.usable:
            self.previous = signal.signal(signal.SIGPROF, self._expire)
            self.armed = True
            signal.setitimer(signal.ITIMER_PROF, self.seconds, self.seconds / 4)

    def __exit__(self, *exc) -> None:
        if self.usable:
            signal.setitimer(signal.ITIMER_PROF, 0)
            self.armed = False  # a signal already raised at the C level but not yet handled does nothing
            signal.signal(signal.SIGPROF, self.previous)


_OWN_CODE = {_CpuTimeLimit.__enter__.__code__, _CpuTimeLimit.__exit__.__code__}


def parse_abc(text: str, timeout: float | None = None) -> ParseResult:
    """Parse one ABC tune with music21; never raises (a parse over ``timeout`` s, by default
    ``PARSE_TIMEOUT``, is an error). If the text holds several tunes, the first."""
    from music21 import converter, stream

    try:
        with quiet(), _CpuTimeLimit(PARSE_TIMEOUT if timeout is None else timeout):
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
        with quiet(), _CpuTimeLimit(PARSE_TIMEOUT):
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


def bar_duration_stats(abc_text: str, bars: Sequence[Bar] | None = None) -> tuple[int, int]:
    """(bars checked, bars whose length matches the meter), by the rule in the comment above; ``bars`` are
    :func:`written_bars` of the text if they were read already."""
    n_checked = n_correct = 0
    for bar in written_bars(abc_text) if bars is None else bars:
        if bar.expected is None:
            continue
        if bar.boundary and bar.length < bar.expected - 1e-6:
            continue  # a pickup or the partial bar next to a repeat
        n_checked += 1
        n_correct += abs(bar.length - bar.expected) < 1e-6
    return n_checked, n_correct


# -----------------------------------------------------------------------------
# novelty

NOVELTY_N = 12  # the length of the character sequences compared with the training tunes
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

    def __init__(self, train_tunes: Sequence[str], n: int = NOVELTY_N):
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


@dataclass(frozen=True)
class Measures:
    """What music21 says about one tune: the costly part of its validity metrics."""

    parse_error: str | None  # None if it parses
    n_notes: int | None  # None if it does not parse
    bars_checked: int
    bars_correct: int


def measure(text: str, parsed: ParseResult | None = None, bars: Sequence[Bar] | None = None) -> Measures:
    """Parse ``text`` (or take its ``parsed`` result, to share one parse with the rendering) and count
    its notes and bars (or take its :func:`written_bars`)."""
    parsed = parse_abc(text) if parsed is None else parsed
    n_notes = len(parsed.score.flatten().notes) if parsed.score is not None else None
    return Measures(parsed.error, n_notes, *bar_duration_stats(text, bars))


def validity_metrics(text: str, novelty_index: NoveltyIndex | None = None, *, finished: bool = True,
                     measures: Measures | None = None) -> dict:
    """All validity measures of one generated tune; never raises. ``measures`` is :func:`measure`'s
    result if it was computed elsewhere (in a worker).

    ``degenerate`` names the first failure of: "empty" (no body, or no notes), "unfinished" (the
    sampler hit its length limit before EOT; pass ``finished``), "unparsable"; else None.
    """
    m = measure(text) if measures is None else measures
    parses = m.n_notes is not None
    overlap = novelty_index.overlap(text) if novelty_index is not None else None
    if not tune_body(text).strip() or m.n_notes == 0:
        degenerate = "empty"
    elif not finished:
        degenerate = "unfinished"
    elif not parses:
        degenerate = "unparsable"
    else:
        degenerate = None
    return {
        "parses": parses,
        "parse_error": m.parse_error,
        "headers_ok": header_fields_ok(text)["ok"],
        "bars_checked": m.bars_checked,
        "bars_correct": m.bars_correct,
        "bar_accuracy": m.bars_correct / m.bars_checked if m.bars_checked else None,
        "train_overlap": overlap,
        "novel": None if overlap is None else overlap < NOVELTY_THRESHOLD,
        "degenerate": degenerate,
        "n_notes": m.n_notes,
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


@dataclass(frozen=True)
class Share:
    """One aggregate of :func:`summarize` as the report shows it. The generate page's table and figure and the
    glued findings read :data:`SHARES` (and the gallery :data:`SAMPLE_METRICS`), so a new measure is computed in
    :func:`validity_metrics`, aggregated in :func:`summarize` and listed here, and touches no other module."""

    key: str  # the key in a summary
    header: str  # its column in the validity table
    title: str | None  # its panel in the validity figure, or None for the table only
    spec: str  # its display format
    glue: str | None  # its name in the findings' sentences (:func:`musicscale.findings.generation_findings`), or None
    missing: str  # why it can be missing, for the reader


SHARES = (
    Share("share_parses", "parses", "share that music21 parses", ".0%", "parses", "no samples"),
    Share("pooled_bar_accuracy", "bars correct", "share of bars with the meter's length", ".1%", "bars",
          "no bar could be checked"),
    Share("share_headers_ok", "headers ok", "share with valid X/M/L/K headers", ".0%", None, "no samples"),
    Share("share_novel", "novel", "share not copied from training", ".0%", "novel", "no sample long enough to compare"),
    Share("share_degenerate", "degenerate", None, ".0%", None, "no samples"),
    # from the prompted samples (musicscale.prompts), not from summarize; for real tunes, against their own header
    Share("share_obeys", "obeys the prompt", "share of prompted samples that obey the prompt", ".0%", "obeys",
          "no prompted samples"),
)
SAMPLE_METRICS = ("parses", "headers_ok", "bar_accuracy", "novel", "degenerate")  # a sample's, in the gallery

