"""Prompts for the generate stage: header fields and opening bars a sample starts from, and whether it obeys them.

A prompt is written as a dict of ABC header fields and, optionally, the opening bars of a tune::

    {"M": "6/8", "L": "1/8", "K": "D"}                 a header: the model writes the tune
    {"M": "4/4", "L": "1/8", "K": "G", "bars": "|:GABc dedB|"}   a header and first bars: the model goes on

The fields a prompt takes are :data:`FIELDS` (meter, unit note length, rhythm word, tempo, key); a prompt with
bars needs ``K``, because in ABC the header ends with the K: line and the music follows it. A sample starts
from ``X:1``, then the prompt's fields one a line in the order of :data:`FIELDS` (K last), then its bars.

A prompt is checked twice before any sampling: on its own (:meth:`Prompt.from_dict`: known fields, a meter
and a key that music21 reads, a well-formed unit length) and against each dataset (:func:`check_for_dataset`:
fields its training tunes use, characters in its vocabulary, a length within the models' context). When the
user gives none, :func:`default_prompts` makes them from the dataset itself: its most common training headers
and the opening bars of one validation tune (never a test tune).

Obeying (:func:`obedience`) is read from music21's parse of the sample: the first time signature and key
signature music21 finds must be the asked ones, other asked fields must stand as written wherever the sample
repeats them, and every checked bar must have the asked meter's length (bars are counted as
:func:`musicscale.validity.written_bars` writes them; short pickups and bars at repeats are excused).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from . import validity
from .corpus import _NOTE_COLON, DEFAULT_KEEP_FIELDS  # "A:|" is a note before a repeat, not a field line

HEADER = "X:1\n"  # every sample starts from the first header line of a tune
FIELDS = ("M", "L", "R", "Q", "K")  # the header fields a prompt takes, in the order they are written (K last)
BARS = "bars"  # the key of a prompt's opening bars
FIELD_NAMES = {"M": "meter", "L": "unit note length", "R": "rhythm", "Q": "tempo", "K": "key"}
DEFAULT_HEADERS = 2  # default prompts: the most common headers of the training tunes ...
DEFAULT_BARS = 2  # ... and the opening bars (at most this many) of one validation tune
DEFAULT_FIELDS = ("M", "L", "K")  # the fields a default prompt copies from a tune's header


@dataclass(frozen=True)
class Prompt:
    """Header fields (in the order of :data:`FIELDS`) and opening bars that a sample starts from."""

    fields: tuple[tuple[str, str], ...]
    bars: str = ""
    source: str = "given"  # where the prompt comes from, for the reader

    @classmethod
    def from_dict(cls, value: Any, where: str = "prompt", source: str = "given") -> Prompt:
        """A prompt from its dict form (see the module docstring); ValueError naming ``where`` and why."""
        if not isinstance(value, Mapping) or not value:
            raise ValueError(f"{where}: a prompt is a dict of header fields {list(FIELDS)} and/or {BARS!r}, "
                             f"e.g. {{'M': '6/8', 'K': 'D'}}; got {value!r}")
        shown = f"{where} {dict(value)!r}"
        unknown = [k for k in value if k not in (*FIELDS, BARS)]
        if unknown:
            raise ValueError(f"{shown}: unknown field(s) {unknown}; a prompt takes the header fields "
                             f"{list(FIELDS)} ({', '.join(f'{k} {n}' for k, n in FIELD_NAMES.items())}) and {BARS!r}")
        for k, v in value.items():
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"{shown}: {k} must be a non-empty string, got {v!r}")
            if k != BARS and "\n" in v:
                raise ValueError(f"{shown}: {k} must be one line, got {v!r}")
        fields = tuple((k, value[k].strip()) for k in FIELDS if k in value)
        bars = value.get(BARS, "").strip()
        prompt = cls(fields, bars, source)
        reason = prompt.problem()
        if reason:
            raise ValueError(f"{shown}: {reason}")
        return prompt

    def problem(self) -> str | None:
        """Why this prompt cannot be used on any dataset, or None."""
        asked = dict(self.fields)
        if "M" in asked:
            _, why = read_meter(asked["M"])
            if why:
                return why
        if "L" in asked and not (validity._LENGTH.fullmatch(asked["L"]) and validity._fraction_ok(asked["L"])):
            return f"L:{asked['L']} is not a unit note length such as 1/8"
        if "K" in asked:
            _, why = read_key(asked["K"])
            if why:
                return why
        if self.bars:
            if "K" not in asked:
                return "opening bars follow the header, which ends with its K: line: a prompt with bars needs K"
            lines = self.bars.split("\n")
            if any(validity._FIELD.match(line.strip()) and not _NOTE_COLON.match(line.strip()) for line in lines):
                return f"{BARS} must be music, not header fields: {self.bars!r}"
            if not re.search(r"[A-Ga-g]", validity._QUOTED.sub("", self.bars)):
                return f"{BARS} hold no note: {self.bars!r}"
        return None

    def to_dict(self) -> dict[str, str]:
        """The dict form (:meth:`from_dict` reads it back)."""
        return {**dict(self.fields), **({BARS: self.bars} if self.bars else {})}

    def asked(self, letter: str) -> str | None:
        return dict(self.fields).get(letter)

    @property
    def text(self) -> str:
        """What a sample starts from: ``X:1``, the header lines, the bars."""
        return HEADER + "".join(f"{k}:{v}\n" for k, v in self.fields) + self.bars

    @property
    def label(self) -> str:
        """The prompt on one line, as the report shows it: ``M:6/8 L:1/8 K:D |:A|dfa afd|``."""
        return " ".join([*(f"{k}:{v}" for k, v in self.fields), *([self.bars.replace("\n", " ")] if self.bars else [])])


def parse_prompts(values: Any, name: str = "prompts") -> list[Prompt]:
    """The user's prompts (a list of dicts, already a list) as :class:`Prompt` s; ValueError naming the bad one."""
    return [Prompt.from_dict(v, where=f"{name}[{i}]") for i, v in enumerate(values)]


# -----------------------------------------------------------------------------
# how music21 reads a meter and a key


@lru_cache(maxsize=256)  # the default prompts read the header of every training tune: a few distinct values
def read_meter(value: str) -> tuple[Any, str | None]:
    """(music21's TimeSignature of ``M:value``, None), or (None, why music21 cannot read it). Not to be changed:
    the result is shared."""
    from music21 import abcFormat

    with validity.quiet():
        try:
            meta = abcFormat.ABCMetadata(f"M:{value}")
            meta.preParse()
            ts = meta.getTimeSignatureObject()
        except Exception as err:  # music21 raises many kinds on a bad meter
            return None, f"music21 cannot read the meter M:{value} ({type(err).__name__})"
    if ts is None:
        return None, f"M:{value} is no meter music21 can check bars against"
    written = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if written and (int(written.group(1)), int(written.group(2))) != (ts.numerator, ts.denominator):
        return None, f"music21 reads the meter M:{value} as {ts.ratioString}"
    if not written and value.strip() not in ("C", "C|"):
        return None, f"music21 reads the meter M:{value} as {ts.ratioString}, not as written"
    return ts, None


@lru_cache(maxsize=256)
def read_key(value: str) -> tuple[Any, str | None]:
    """(music21's key signature of ``K:value``, None), or (None, why it is not a key music21 reads). Not to be
    changed: the result is shared."""
    from music21 import abcFormat

    if not validity._KEY.fullmatch(value):
        return None, f"K:{value} is not an ABC key such as D, Ador or F#m"
    with validity.quiet():
        try:
            meta = abcFormat.ABCMetadata(f"K:{value}")
            meta.preParse()
            ks = meta.getKeySignatureObject()
        except Exception as err:
            return None, f"music21 cannot read the key K:{value} ({type(err).__name__})"
    if ks is None:
        return None, f"music21 reads no key in K:{value}"
    return ks, None


def _key_name(ks: Any) -> str:
    mode = getattr(ks, "mode", None)
    return f"{ks.tonic.name} {mode}" if mode and getattr(ks, "tonic", None) is not None else f"{ks.sharps:+d} sharps"


def _same_key(asked: Any, read: Any) -> bool:
    """The same key signature, and the same mode where both name one."""
    if asked.sharps != read.sharps:
        return False
    modes = getattr(asked, "mode", None), getattr(read, "mode", None)
    return None in modes or modes[0] == modes[1]


# -----------------------------------------------------------------------------
# checks against a dataset, and the default prompts made from it


def header_fields(tune: str) -> dict[str, str]:
    """The header fields of a tune (the first value of each)."""
    return validity._split_header(tune)[0]


def field_counts(tunes: Sequence[str]) -> Counter[str]:
    """How many tunes use each header field letter (a prompt may ask only for fields the training tunes use)."""
    return Counter(letter for t in tunes for letter in header_fields(t))


def check_for_dataset(prompt: Prompt, vocabulary: set[str], context_length: int, fields_used: Mapping[str, int],
                      dataset: str) -> str | None:
    """Why ``prompt`` cannot be sampled from the models of ``dataset``, or None: a field none of its training tunes
    uses (the cleaning of :mod:`musicscale.corpus` keeps few), characters outside the vocabulary, or more tokens
    than the models' context."""
    for letter, _ in prompt.fields:
        if not fields_used.get(letter):
            kept = "" if letter in DEFAULT_KEEP_FIELDS else (
                f" (the corpus cleaning keeps only the header fields {', '.join(DEFAULT_KEEP_FIELDS)})")
            return f"the training tunes of {dataset!r} have no {letter}: field{kept}, so its models never saw one"
    unknown = sorted(set(prompt.text) - vocabulary)
    if unknown:
        return f"characters outside the vocabulary of {dataset!r}: {', '.join(map(repr, unknown))}"
    n = 1 + len(prompt.text)  # the tune separator, then one token per character
    if n > context_length:
        return (f"it is {n} tokens (with the tune separator), longer than the context of {dataset!r}'s models "
                f"({context_length} tokens)")
    return None


def resolve(given: Sequence[dict] | None, dataset: str, *, vocabulary: set[str], context_length: int,
            train: Sequence[str], val: Sequence[str]) -> list[Prompt]:
    """The prompts of one dataset: the ``given`` ones, each checked against it (ValueError naming the prompt and
    why), or None: :func:`default_prompts` of its data."""
    fields_used = field_counts(train)
    if given is None:
        def fits(p: Prompt) -> bool:  # a default leaves the model half its context to go on in view of it
            return check_for_dataset(p, vocabulary, context_length // 2, fields_used, dataset) is None
        return default_prompts(train, val, fits)
    prompts = parse_prompts(given)
    for i, p in enumerate(prompts):
        why = check_for_dataset(p, vocabulary, context_length, fields_used, dataset)
        if why:
            raise ValueError(f"prompts[{i}] {p.to_dict()!r}: {why}")
    return prompts


def _header_prompt(tune: str, source: str) -> Prompt | None:
    fields = header_fields(tune)
    value = {k: fields[k] for k in DEFAULT_FIELDS if fields.get(k)}
    try:
        return Prompt.from_dict(value, source=source) if value else None
    except ValueError:  # e.g. M:none, which no bar can be checked against
        return None


_BARLINE = re.compile(r"[:|\[\]]*\|[:|\]]*\d?")  # a barline with its repeat signs and an ending's number


def opening_bars(body: str, n: int) -> str:
    """The first ``n`` bars of a tune's first line (with the barline that closes each), or "" if the line holds
    fewer than ``n`` closed bars with notes."""
    line = body.split("\n", 1)[0]
    count, start = 0, 0
    for bar in _BARLINE.finditer(line):
        if re.search(r"[A-Ga-g]", validity._QUOTED.sub("", line[start:bar.start()])):
            count += 1
            if count == n:
                return line[:bar.end()].rstrip()
        start = bar.end()
    return ""


def default_prompts(train: Sequence[str], val: Sequence[str], fits) -> list[Prompt]:
    """Prompts made from the dataset itself: its :data:`DEFAULT_HEADERS` most common training headers (meter,
    unit length and key, of those music21 reads), and the header and first bars (up to :data:`DEFAULT_BARS`, as
    many as ``fits``) of the first validation tune that has a meter and bars. ``fits(prompt)`` says whether a
    prompt suits the dataset's models; a default that does not is left out."""
    counts: Counter[tuple] = Counter()
    for tune in train:
        prompt = _header_prompt(tune, "")
        if prompt is not None and prompt.asked("K"):
            counts[prompt.fields] += 1
    out: list[Prompt] = []
    for rank, (fields, count) in enumerate(counts.most_common(), 1):
        which = {1: "the most common", 2: "the second most common"}.get(rank, f"common header number {rank} of the")
        prompt = Prompt(fields, "", f"{which} header of the training tunes ({count:,} of {len(train):,})")
        if fits(prompt):
            out.append(prompt)
        if len(out) == DEFAULT_HEADERS:
            break
    for i, tune in enumerate(val):
        header = _header_prompt(tune, "")
        if header is None or not header.asked("M") or not header.asked("K"):
            continue
        for n in range(DEFAULT_BARS, 0, -1):
            bars = opening_bars(validity.tune_body(tune), n)
            if not bars:
                continue
            prompt = Prompt(header.fields, bars, f"the header and opening {n} bar{'s' if n > 1 else ''} of "
                            f"validation tune {i + 1}")
            if fits(prompt) and prompt.problem() is None:
                out.append(prompt)
                return out
    return out


# -----------------------------------------------------------------------------
# does a sample obey its prompt?


def obedience(text: str, prompt: Prompt, parsed: validity.ParseResult | None = None,
              bars: Sequence[validity.Bar] | None = None) -> dict:
    """How a sample stands against its prompt, from music21's ``parsed`` score of it (parsed here if not given):
    ``parses``; ``meter`` and ``key`` as music21 reads them (the first of each in the score) and ``meter_ok``,
    ``key_ok`` (None where the prompt asks none); ``fields_ok`` (the other asked fields stand as written wherever
    the sample writes them, or None); ``bars_checked`` and ``bars_correct`` against the asked meter's bar
    length; ``obeys``: it parses, every asked field holds, and no checked bar is off the asked meter. ``bars`` are
    :func:`musicscale.validity.written_bars` of the text if they were read already."""
    from music21 import key as m21key
    from music21 import meter as m21meter

    parsed = validity.parse_abc(text) if parsed is None else parsed
    score, out = parsed.score, {"parses": parsed.score is not None}
    asked_meter, asked_key = prompt.asked("M"), prompt.asked("K")
    ts = ks = None
    if score is not None:
        ts = score.recurse().getElementsByClass(m21meter.TimeSignature).first()
        ks = score.recurse().getElementsByClass(m21key.KeySignature).first()
    out["meter"] = ts.ratioString if ts is not None else None
    out["key"] = _key_name(ks) if ks is not None else None
    out["meter_ok"] = out["key_ok"] = None
    checked = correct = 0
    if asked_meter:
        want = read_meter(asked_meter)[0]
        out["meter_ok"] = ts is not None and ts.ratioString == want.ratioString
        length = float(want.barDuration.quarterLength)
        for bar in validity.written_bars(text) if bars is None else bars:
            if bar.boundary and bar.length < length - 1e-6:
                continue  # a pickup or the partial bar next to a repeat, as validity excuses it
            checked += 1
            correct += abs(bar.length - length) < 1e-6
    if asked_key:
        out["key_ok"] = ks is not None and _same_key(read_key(asked_key)[0], ks)
    others = [(k, v) for k, v in prompt.fields if k not in ("M", "K")]
    out["fields_ok"] = all(_written_values(text, k) <= {v} for k, v in others) if others else None
    out["bars_checked"], out["bars_correct"] = checked, correct
    out["obeys"] = bool(out["parses"] and out["meter_ok"] is not False and out["key_ok"] is not False
                        and out["fields_ok"] is not False and correct == checked and (checked or not asked_meter))
    return out


def _written_values(text: str, letter: str) -> set[str]:
    """Every value the text gives field ``letter``: as a field line or inline (``[L:1/16]``)."""
    values = {m.group(1).split("%")[0].strip() for m in re.finditer(rf"(?m)^{letter}:(.*)$", text)}
    return values | {m.group(1).strip() for m in re.finditer(rf"\[{letter}:([^\]]*)\]", text)}


def summarize(results: Sequence[dict]) -> dict:
    """Shares of :func:`obedience` results: ``share_obeys``, ``share_meter_ok`` and ``share_key_ok`` (over the
    samples whose prompt asks for them), ``prompt_bar_accuracy`` (correct of checked bars, against the asked
    meter); None where nothing was measured."""
    def share(key: str) -> float | None:
        values = [r[key] for r in results if r[key] is not None]
        return sum(map(bool, values)) / len(values) if values else None

    checked = sum(r["bars_checked"] for r in results)
    return {"n_prompted": len(results), "share_obeys": share("obeys"), "share_prompt_parses": share("parses"),
            "share_meter_ok": share("meter_ok"), "share_key_ok": share("key_ok"),
            "prompt_bar_accuracy": sum(r["bars_correct"] for r in results) / checked if checked else None}
