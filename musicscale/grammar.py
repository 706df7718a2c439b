"""A synthetic folk-tune grammar whose tunes come with their exact log-probability.

A tune is made by a short sequence of random choices, each from a finite distribution:

    meter, key, has_chords, n_parts, then per part: n_bars, then per bar:
        chord (only if has_chords), rhythm pattern, one pitch per note

and rendered as ABC in the shape of the normalised real corpus::

    X:1
    M:6/8
    L:1/8
    K:Bm
    |:"Bm"B3 d2d|"A"g3 b2a|"Bm"bfe cdf|"Bm"efe ffb|
    "D"aef d3|"D"BEf a3|"Bm"fdf g3|"Bm"b6:|
    |:"Bm"F2A dcA|"A"G3 B2F|"A"E3 E2F|"D"G3 F2G|
    "Bm"EDD BGF|"Bm"E3 F2E|"A"DFA G2E|"Bm"F3 b3:|

* Rhythm: a bar is one pattern of note lengths (units of L:1/8) from a per-meter list, so every bar sums to
  the meter. A bar repeats the previous bar's pattern with probability ``rhythm_repeat`` (the draw is a
  mixture, scored as such); the last bar of a part uses the meter's ``final`` patterns. Spaces split the
  bar into beat groups (3 units in x/8 compound meters, 4 in 4/4, 2 otherwise): they follow from the
  pattern, so they add no choice.
* Harmony: with probability ``chord_prob`` every bar carries a chord symbol of the key (I IV V vi in
  major, i III v VII in minor); a part starts and ends on the tonic chord, in between the chord stays with
  ``chord_stay`` or moves to another.
* Melody: letters only (the key signature supplies the accidentals) between ``lowest`` and ``highest``,
  first-order Markov: the weight of a step of d letters is ``step_weights[d]`` (the last entry for longer
  leaps), times ``chord_tone_boost`` for a tone of the bar's chord (no boost in a tune without chords).
  A part opens on a tone of its first chord (the tonic triad without chords) and ends on the tonic.

Rendering is injective: ``parse_tune`` reads the choices back from the text and re-renders it, so
``score_tune(text) == log p(text)`` exactly. A character model sees each tune plus one end-of-tune
separator; the generator's decision to stop after the last part is that separator's event, so the
entropy rate floor of a set of tunes is ``-sum(log p) / sum(len + 1)`` (``entropy_rate``).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

LETTERS = "CDEFGABcdefgab"  # pitch index 0..13; index % 7 is the letter class (C=0 ... B=6)
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_NATURAL = dict(zip("CDEFGAB", _MAJOR))

Weighted = tuple[tuple[Any, float], ...]

# meter -> (bar patterns, final-bar patterns), lengths in units of L:1/8
DEFAULT_RHYTHMS: tuple[tuple[str, Weighted, Weighted], ...] = (
    ("6/8",
     (((1, 1, 1, 1, 1, 1), 3.0), ((2, 1, 2, 1), 2.0), ((2, 1, 1, 1, 1), 1.5), ((1, 1, 1, 2, 1), 1.5),
      ((3, 1, 1, 1), 1.0), ((3, 2, 1), 1.0), ((1, 1, 1, 3), 0.7)),
     (((2, 1, 3), 1.0), ((3, 3), 1.0), ((1, 1, 1, 3), 0.7), ((6,), 0.5))),
    ("4/4",
     (((1, 1, 1, 1, 1, 1, 1, 1), 3.0), ((2, 1, 1, 2, 1, 1), 1.0), ((2, 2, 1, 1, 1, 1), 1.0),
      ((1, 1, 1, 1, 2, 2), 1.0), ((3, 1, 1, 1, 1, 1), 1.0), ((2, 1, 1, 1, 1, 2), 0.8)),
     (((2, 2, 4), 1.0), ((1, 1, 1, 1, 4), 1.0), ((2, 1, 1, 4), 1.0), ((4, 4), 0.5))),
    ("3/4",
     (((2, 2, 2), 2.0), ((1, 1, 1, 1, 2), 1.5), ((1, 1, 1, 1, 1, 1), 1.5), ((2, 1, 1, 2), 1.0),
      ((1, 1, 2, 2), 1.0), ((3, 1, 2), 1.0)),
     (((4, 2), 1.0), ((6,), 1.0), ((2, 4), 1.0))),
    ("2/4",
     (((1, 1, 1, 1), 3.0), ((2, 1, 1), 1.0), ((1, 1, 2), 1.0), ((2, 2), 1.0), ((3, 1), 1.0)),
     (((2, 2), 1.0), ((4,), 1.0), ((1, 1, 2), 1.0))),
)


@dataclass(frozen=True)
class GrammarConfig:
    """Parameters of the grammar; ``(value, weight)`` tuples are normalised to probabilities."""

    meters: Weighted = (("6/8", 0.3), ("4/4", 0.35), ("3/4", 0.15), ("2/4", 0.2))
    keys: Weighted = (("G", 0.25), ("D", 0.25), ("A", 0.1), ("C", 0.1), ("Em", 0.1), ("Am", 0.1),
                      ("Bm", 0.05), ("Dm", 0.05))
    n_parts: Weighted = ((2, 1.0),)  # AABB: every tune (at most 253 tokens) fits in a 256-character context
    bars_per_part: Weighted = ((4, 0.2), (8, 0.8))
    rhythms: tuple[tuple[str, Weighted, Weighted], ...] = DEFAULT_RHYTHMS
    rhythm_repeat: float = 0.4
    chord_prob: float = 0.5
    major_chords: Weighted = ((0, 1.0), (3, 0.8), (4, 1.0), (5, 0.4))  # scale degree of the root, weight
    minor_chords: Weighted = ((0, 1.0), (2, 0.6), (4, 0.6), (6, 0.8))
    chord_stay: float = 0.4
    lowest: str = "D"
    highest: str = "b"
    step_weights: tuple[float, ...] = (0.3, 1.0, 0.55, 0.3, 0.15, 0.08, 0.04, 0.02)
    chord_tone_boost: float = 2.5
    bars_per_line: int = 4

    @classmethod
    def tiny(cls) -> GrammarConfig:
        """A configuration small enough to enumerate every tune (a few thousand)."""
        return cls(
            meters=(("2/4", 1.0),),
            keys=(("G", 0.6), ("Em", 0.4)),
            n_parts=((1, 0.6), (2, 0.4)),
            bars_per_part=((1, 0.5), (2, 0.5)),
            rhythms=(("2/4", (((2, 2), 0.6), ((4,), 0.4)), (((2, 2), 0.7), ((4,), 0.3))),),
            chord_prob=0.3,
            lowest="E",
            highest="A",
        )


@dataclass(frozen=True)
class _Dist:
    """One choice point: options with their probabilities (all > 0)."""

    name: str
    options: tuple
    logp: tuple[float, ...]
    cum: tuple[float, ...]
    index: dict

    @classmethod
    def make(cls, name: str, weighted: Sequence[tuple[Any, float]]) -> _Dist:
        weighted = [(o, w) for o, w in weighted if w > 0]
        if not weighted:
            raise ValueError(f"{name}: no option has positive weight")
        total = sum(w for _, w in weighted)
        probs = [w / total for _, w in weighted]
        cum = np.cumsum(probs).tolist()
        cum[-1] = 1.0
        options = tuple(o for o, _ in weighted)
        if len(set(options)) != len(options):
            raise ValueError(f"{name}: repeated options {options}")
        return cls(name, options, tuple(math.log(p) for p in probs), tuple(cum),
                   {o: i for i, o in enumerate(options)})


def _meter_units(meter: str) -> int:
    num, den = map(int, meter.split("/"))
    if (8 * num) % den:
        raise ValueError(f"meter {meter} is not a whole number of eighths")
    return 8 * num // den


def _beat_group(meter: str) -> int:
    num, den = map(int, meter.split("/"))
    if den == 8 and num % 3 == 0:
        return 3
    return 4 if meter == "4/4" else max(1, 8 // den)


def _key_scale(key: str) -> tuple[int, tuple[int, ...], bool]:
    """(tonic letter class, pitch class of each letter class C..B, is_minor) of a key like ``F#m``."""
    m = re.fullmatch(r"([A-G])([#b]?)(m?)", key)
    if not m:
        raise ValueError(f"unsupported key {key!r} (use e.g. G, Bb, F#m)")
    tonic = "CDEFGAB".index(m.group(1))
    tonic_pc = (_NATURAL[m.group(1)] + {"#": 1, "b": -1, "": 0}[m.group(2)]) % 12
    minor = m.group(3) == "m"
    pcs = [0] * 7
    for step, interval in enumerate(_MINOR if minor else _MAJOR):
        pcs[(tonic + step) % 7] = (tonic_pc + interval) % 12
    return tonic, tuple(pcs), minor


def _chord_name(root_class: int, pcs: tuple[int, ...]) -> str:
    letter = "CDEFGAB"[root_class]
    accidental = {0: "", 1: "#", 11: "b"}[(pcs[root_class] - _NATURAL[letter]) % 12]
    third = (pcs[(root_class + 2) % 7] - pcs[root_class]) % 12
    fifth = (pcs[(root_class + 4) % 7] - pcs[root_class]) % 12
    if fifth != 7:
        raise ValueError(f"chord on {letter} is not a major or minor triad")
    return letter + accidental + ("m" if third == 3 else "")


class _Model:
    """The distributions of a config, built once and looked up by context."""

    def __init__(self, config: GrammarConfig):
        c = self.config = config
        self.meter = _Dist.make("meter", c.meters)
        self.key = _Dist.make("key", c.keys)
        self.has_chords = _Dist.make("has_chords", ((True, c.chord_prob), (False, 1 - c.chord_prob)))
        self.n_parts = _Dist.make("n_parts", c.n_parts)
        self.n_bars = _Dist.make("n_bars", c.bars_per_part)
        self.range = range(LETTERS.index(c.lowest), LETTERS.index(c.highest) + 1)
        self.rhythms = {m: (_Dist.make("rhythm", body), _Dist.make("final rhythm", final))
                        for m, body, final in c.rhythms}
        for meter in self.meter.options:
            if meter not in self.rhythms:
                raise ValueError(f"no rhythm patterns for meter {meter}")
            units = _meter_units(meter)
            for dist in self.rhythms[meter]:
                for pattern in dist.options:
                    if sum(pattern) != units or not set(pattern) <= {1, 2, 3, 4, 6, 8}:
                        raise ValueError(f"rhythm {pattern}: not a {meter} bar of lengths 1, 2, 3, 4, 6, 8")
        self.keys = {}
        for key in self.key.options:
            tonic, pcs, minor = _key_scale(key)
            if not any(y % 7 == tonic for y in self.range):
                raise ValueError(f"key {key}: no tonic note between {c.lowest} and {c.highest}")
            degrees = c.minor_chords if minor else c.major_chords
            chords = {_chord_name((tonic + d) % 7, pcs): (tonic + d) % 7 for d, _ in degrees}
            weights = dict(zip(chords, (w for _, w in degrees)))
            self.keys[key] = (tonic, chords, weights)
        self._cache: dict = {}

    def _cached(self, key: tuple, build: Callable[[], _Dist]) -> _Dist:
        dist = self._cache.get(key)
        if dist is None:
            dist = self._cache[key] = build()
        return dist

    def rhythm(self, meter: str, prev: tuple | None, final: bool) -> _Dist:
        body, last = self.rhythms[meter]
        if final:
            return last
        if prev is None:
            return body
        r = self.config.rhythm_repeat
        return self._cached(("rhythm", meter, prev), lambda: _Dist.make(
            "rhythm", [(p, (1 - r) * math.exp(lp) + (r if p == prev else 0.0))
                       for p, lp in zip(body.options, body.logp)]))

    def chord(self, key: str, prev: str | None, first: bool, last: bool) -> _Dist:
        tonic, chords, weights = self.keys[key]
        tonic_name = next(name for name, root in chords.items() if root == tonic)
        if first or last:
            return self._cached(("tonic chord", key), lambda: _Dist.make("chord", [(tonic_name, 1.0)]))
        stay = self.config.chord_stay

        def build() -> _Dist:
            others = sum(w for name, w in weights.items() if name != prev)
            return _Dist.make("chord", [(name, stay if name == prev else (1 - stay) * w / others)
                                        for name, w in weights.items()])
        return self._cached(("chord", key, prev), build)

    def pitch(self, key: str, prev: int | None, tones: frozenset[int], last: bool) -> _Dist:
        """Next pitch index given the previous one (None at a part start) and the bar's chord tones."""
        def build() -> _Dist:
            c = self.config
            tonic = self.keys[key][0]
            steps = c.step_weights
            options = []
            for y in self.range:
                if last and y % 7 != tonic:
                    continue
                if prev is None:
                    w = 1.0 if last or y % 7 in tones else 0.0
                else:
                    w = steps[min(abs(y - prev), len(steps) - 1)]
                    w *= c.chord_tone_boost if (not last and y % 7 in tones) else 1.0
                options.append((y, w))
            return _Dist.make("pitch", options)
        return self._cached(("pitch", key, prev, tones, last), build)

    def chord_tones(self, key: str, chord: str | None) -> frozenset[int]:
        tonic, chords, _ = self.keys[key]
        root = tonic if chord is None else chords[chord]
        return frozenset((root + i) % 7 for i in (0, 2, 4))


@lru_cache(maxsize=16)
def _model(config: GrammarConfig) -> _Model:
    return _Model(config)


def _render_bar(chord: str | None, pattern: tuple[int, ...], pitches: Sequence[int], group: int) -> str:
    out = [f'"{chord}"'] if chord else []
    pos = 0
    for length, y in zip(pattern, pitches):
        if pos and pos % group == 0:
            out.append(" ")
        out.append(LETTERS[y] + (str(length) if length > 1 else ""))
        pos += length
    return "".join(out)


def _run(model: _Model, choose: Callable[[_Dist], int]) -> tuple[str, float]:
    """Make one tune, taking every decision from ``choose``; return (text, log p)."""
    logp = 0.0

    def pick(dist: _Dist) -> Any:
        nonlocal logp
        i = choose(dist)
        logp += dist.logp[i]
        return dist.options[i]

    meter, key = pick(model.meter), pick(model.key)
    has_chords = pick(model.has_chords)
    group, per_line = _beat_group(meter), model.config.bars_per_line
    parts = []
    for _ in range(pick(model.n_parts)):
        n_bars = pick(model.n_bars)
        bars, chord, rhythm, prev = [], None, None, None
        for b in range(n_bars):
            first, last = b == 0, b == n_bars - 1
            chord = pick(model.chord(key, chord, first, last)) if has_chords else None
            # the boosted tones, or at a part start the tones allowed (the tonic triad without chords)
            tones = model.chord_tones(key, chord) if (has_chords or first) else frozenset()
            rhythm = pick(model.rhythm(meter, rhythm, last))
            pitches = []
            for j in range(len(rhythm)):
                context = tones if (has_chords or prev is None) else frozenset()
                prev = pick(model.pitch(key, prev, context, last and j == len(rhythm) - 1))
                pitches.append(prev)
            bars.append(_render_bar(chord, rhythm, pitches, group))
        text = "|:"
        for b, bar in enumerate(bars):
            end = ":|" if b == n_bars - 1 else ("|\n" if (b + 1) % per_line == 0 else "|")
            text += bar + end
        parts.append(text)
    return "\n".join([f"X:1\nM:{meter}\nL:1/8\nK:{key}"] + parts), logp


def sample_tunes(n: int, seed: int | Sequence[int], config: GrammarConfig | None = None) -> list[tuple[str, float]]:
    """``n`` tunes with their exact natural-log probabilities; deterministic given ``seed`` (an integer, or a
    sequence of them that names one independent stream, as ``numpy.random.default_rng`` takes it)."""
    model = _model(config or GrammarConfig())
    rng = np.random.default_rng(seed)
    uniforms = iter(())

    def choose(dist: _Dist) -> int:
        nonlocal uniforms
        if len(dist.options) == 1:
            return 0
        u = next(uniforms, None)
        if u is None:
            uniforms = iter(rng.random(4096).tolist())
            u = next(uniforms)
        return min(bisect_right(dist.cum, u), len(dist.options) - 1)

    return [_run(model, choose) for _ in range(n)]


TUNES_PER_CHUNK = 1000  # a sized draw is made of chunks of this many tunes, each from a stream of its own


def _chunk(args: tuple) -> list[tuple[str, float]]:
    seed, k, config = args
    return sample_tunes(TUNES_PER_CHUNK, seed=[*seed, k], config=config)


def sample_to_size(min_chars: int, seed: Sequence[int], config: GrammarConfig | None = None, *,
                   separator_chars: int = 1, n_workers: int = 1) -> list[tuple[str, float]]:
    """The fewest tunes, drawn in order from the seeded chunks ``[*seed, 0]``, ``[*seed, 1]``, ..., whose
    characters (each tune counted with ``separator_chars`` more) reach ``min_chars``; with their exact
    log-probabilities. ``n_workers`` processes draw chunks in parallel; the tunes do not depend on it."""
    from concurrent.futures import ProcessPoolExecutor

    tunes: list[tuple[str, float]] = []
    chars, k = 0, 0
    pool = ProcessPoolExecutor(n_workers) if n_workers > 1 else None
    try:
        while chars < min_chars:
            # about enough chunks for what is missing, at least one per worker
            per_chunk = (chars / len(tunes) + separator_chars) * TUNES_PER_CHUNK if tunes else 150 * TUNES_PER_CHUNK
            wave = max(n_workers, math.ceil((min_chars - chars) / per_chunk))
            args = [(tuple(seed), k + i, config) for i in range(wave)]
            for chunk in (pool.map(_chunk, args) if pool else map(_chunk, args)):
                for text, logp in chunk:
                    if chars >= min_chars:
                        break
                    tunes.append((text, logp))
                    chars += len(text) + separator_chars
            k += wave
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return tunes


def parse_tune(text: str, config: GrammarConfig | None = None) -> list:
    """The choices that produce ``text``, in the order the grammar makes them.

    Raises ValueError naming the problem if the grammar cannot produce ``text``.
    """
    config = config or GrammarConfig()
    lines = text.split("\n")
    if len(lines) < 5 or lines[0] != "X:1" or lines[2] != "L:1/8" or not lines[1].startswith("M:") \
            or not lines[3].startswith("K:"):
        raise ValueError("header is not X:1, M:<meter>, L:1/8, K:<key>")
    body = "".join(lines[4:]).replace(" ", "")
    if not (body.startswith("|:") and body.endswith(":|")):
        raise ValueError("body does not start with |: and end with :|")
    parts = [part.split("|") for part in body[2:-2].split(":||:")]
    has_chords = parts[0][0].startswith('"')
    choices: list = [lines[1][2:], lines[3][2:], has_chords, len(parts)]
    for bars in parts:
        choices.append(len(bars))
        for bar in bars:
            m = re.fullmatch(r'(?:"([^"]*)")?((?:[A-Ga-g][2-8]?)+)', bar)
            if not m:
                raise ValueError(f"cannot read the bar {bar!r}")
            if (m.group(1) is not None) != has_chords:
                raise ValueError(f"bar {bar!r}: chord symbols must be on every bar or on none")
            if has_chords:
                choices.append(m.group(1))
            notes = re.findall(r"([A-Ga-g])([2-8]?)", m.group(2))
            choices.append(tuple(int(length or 1) for _, length in notes))
            choices.extend(LETTERS.index(letter) for letter, _ in notes)
    return choices


def score_tune(text: str, config: GrammarConfig | None = None, strict: bool = False) -> float:
    """Exact log p(text) under the grammar.

    A text the grammar cannot produce scores ``-inf``, or with ``strict=True`` raises ValueError naming why.
    """
    try:
        return _score(text, config or GrammarConfig())
    except ValueError:
        if strict:
            raise
        return -math.inf


def _score(text: str, config: GrammarConfig) -> float:
    choices = iter(parse_tune(text, config))

    def choose(dist: _Dist) -> int:
        value = next(choices, None)
        if value not in dist.index:
            shown = LETTERS[value] if dist.name == "pitch" and isinstance(value, int) else value
            raise ValueError(f"{dist.name} {shown!r} is not possible here")
        return dist.index[value]

    rendered, logp = _run(_model(config), choose)
    if next(choices, None) is not None or rendered != text:
        raise ValueError("text differs from the grammar's rendering of its choices (spacing or layout)")
    return logp


class _Branch(Exception):
    """Raised by ``_Replay`` at the first choice beyond its prefix, carrying the number of options."""

    def __init__(self, n: int):
        self.n = n


class _Replay:
    """A ``choose`` that replays a prefix of option indices."""

    def __init__(self, prefix: tuple[int, ...]):
        self.prefix, self.pos = prefix, 0

    def __call__(self, dist: _Dist) -> int:
        if self.pos == len(self.prefix):
            raise _Branch(len(dist.options))
        self.pos += 1
        return self.prefix[self.pos - 1]


def enumerate_tunes(config: GrammarConfig) -> Iterator[tuple[str, float]]:
    """Every tune of a (tiny) config with its log-probability, by depth-first search over choices."""
    model = _model(config)
    stack: list[tuple[int, ...]] = [()]
    while stack:
        prefix = stack.pop()
        try:
            yield _run(model, _Replay(prefix))
        except _Branch as branch:
            stack.extend(prefix + (i,) for i in reversed(range(branch.n)))


def entropy_rate(log_probs: Sequence[float], texts: Sequence[str], separator_chars: int = 1) -> float:
    """Nats per character: ``-sum(log p) / sum(len(text) + separator_chars)``.

    ``separator_chars`` is how many characters end each tune in the model's stream (the first carries the
    stop decision; any further ones are certain and only dilute the rate).
    """
    if len(log_probs) != len(texts) or not texts:
        raise ValueError(f"need equally many log-probs and texts, got {len(log_probs)} and {len(texts)}")
    return -float(sum(log_probs)) / sum(len(t) + separator_chars for t in texts)
