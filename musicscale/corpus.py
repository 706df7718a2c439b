"""The real ABC corpus: read, normalise, de-duplicate and split folk tunes.

The default source is every ``.abc`` file shipped in music21's core corpus (essenFolksong, oneills1850,
airdsAirs, ryansMammoth, miscFolk, plus a few Josquin voices and two Nottingham reels). Files are read
as plain text; nothing is parsed with music21, so the whole corpus loads in about a second.

Normalisation of one tune (``normalize_tune``), as folk-rnn did:

* ``%`` comments are removed (whole lines, ``%%`` directives, and trailing ``% ...`` text), tabs become
  spaces, leading and trailing whitespace is stripped and blank lines are dropped.
* Header fields (before and including the first ``K:``) are kept only if their letter is in
  ``keep_fields``; prose fields (T, C, O, R, S, N, Z, B, ...) are dropped. A kept field is rewritten as
  ``F:value`` with the value stripped, and the ``X:`` index (a running number, pure noise) becomes ``X:1``.
* Field lines inside the body follow the same rule (``P:A`` and ``K:D`` kept, ``T:`` and lyrics ``w:``
  dropped); music lines, with their inline fields, chord symbols and decorations, are kept verbatim.
* A tune is dropped with a reason: ``no_key`` (no ``K:`` line), ``no_body`` (no music line after ``K:``
  that holds a note or rest), ``truncated`` (the music breaks off inside a ``"..."`` string or a
  ``[...]`` chord / inline field: some line has an odd number of ``"`` or a ``[`` never closed on its line).

Duplicates (same music after removing whitespace, line continuations and bar-line variants) are removed
before splitting, keeping the first in sorted file order, so no tune leaks between train, val and test.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicscale.workdir import write_text

DEFAULT_KEEP_FIELDS: tuple[str, ...] = ("X", "M", "L", "K", "Q", "P", "V")

_COMMENT = re.compile(r"(?<!\\)%.*$")
_FIELD = re.compile(r"^([A-Za-z+]):(.*)$")
_NOTE_COLON = re.compile(r"^[A-Ga-g]:[|:]")  # "A:|" is a note before a repeat, not a field line
_QUOTED = re.compile(r'"[^"]*"')
_DECORATION = re.compile(r"![^!]*!")
_HAS_NOTE = re.compile(r"[A-Ga-gzxZ]")
_OPEN_BRACKET = re.compile(r"\[(?![\d|])[^\]]*$")  # a "[" (not "[1" or "[|") with no "]" after it
_BARLINE_VARIANTS = re.compile(r"\|\]|\[\||\|\|")


@dataclass
class CorpusResult:
    """Normalised, de-duplicated tunes and a report of what was read and dropped."""

    tunes: list[str]
    report: dict = field(default_factory=dict)


def split_tunes_text(text: str) -> list[str]:
    """Split the text of a multi-tune file at ``X:`` lines; text before the first ``X:`` is dropped."""
    tunes: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("X:"):
            tunes.append([line])
        elif tunes:
            tunes[-1].append(line)
    return ["\n".join(lines) for lines in tunes]


def _field(line: str, in_body: bool) -> tuple[str, str] | None:
    """``(letter, value)`` if ``line`` is a field line, else None."""
    if in_body and _NOTE_COLON.match(line):
        return None
    m = _FIELD.match(line)
    return (m.group(1), m.group(2).strip()) if m else None


def _is_truncated(line: str) -> bool:
    return line.count('"') % 2 == 1 or bool(_OPEN_BRACKET.search(_QUOTED.sub("", line)))


def normalize_tune(
    raw: str, keep_fields: Sequence[str] = DEFAULT_KEEP_FIELDS
) -> tuple[str, None] | tuple[None, str]:
    """Normalise one raw tune (see the module docstring).

    Returns ``(text, None)`` for a kept tune, or ``(None, reason)`` with reason ``"no_key"``,
    ``"no_body"`` or ``"truncated"``.
    """
    keep = set(keep_fields)
    lines = [_COMMENT.sub("", line).replace("\t", " ").strip() for line in raw.splitlines()]
    lines = [line for line in lines if line]
    k_index = next((i for i, line in enumerate(lines) if line.startswith("K:")), None)
    if k_index is None:
        return None, "no_key"

    out: list[str] = []
    for i, line in enumerate(lines):
        in_body = i > k_index
        f = _field(line, in_body)
        if f is None:
            if in_body:
                out.append(line)  # music line
            continue  # stray non-field text in the header
        letter, value = f
        if letter in keep:
            out.append("X:1" if letter == "X" else f"{letter}:{value}")

    music = [line for line in lines[k_index + 1 :] if _field(line, True) is None]
    if not any(_HAS_NOTE.search(_DECORATION.sub("", _QUOTED.sub("", line))) for line in music):
        return None, "no_body"
    if any(_is_truncated(line) for line in music):
        return None, "truncated"
    return "\n".join(out), None


def _dedup_key(tune: str) -> str:
    """The music of a tune with whitespace, line continuations and bar-line variants removed."""
    music = "".join(line for line in tune.split("\n") if _field(line, True) is None)
    music = re.sub(r"[\s\\]", "", music)
    return _BARLINE_VARIANTS.sub("|", music)


def _music21_files() -> tuple[list[Path], str]:
    import music21

    root = Path(music21.common.getCorpusFilePath())
    files = sorted(Path(p) for p in music21.corpus.getCorePaths(fileExtensions=("abc",)))
    collections = Counter(p.relative_to(root).parts[0] for p in files)
    parts = ", ".join(f"{name} {n}" for name, n in sorted(collections.items()))
    return files, f"music21 {music21.__version__} core corpus, {len(files)} .abc files ({parts})"


# The named ABC collections a ``corpus`` parameter may cite: name -> (files, description). A new one is one
# function and one entry here.
NAMED_CORPORA: dict[str, Callable[[], tuple[list[Path], str]]] = {"music21": _music21_files}


def resolve_files(source: str | Sequence[str]) -> tuple[list[Path], str]:
    """Sorted, unique files of a named corpus, or named by a path, directory or glob (or a list of them)."""
    if isinstance(source, (str, os.PathLike)):
        if str(source) in NAMED_CORPORA:
            return NAMED_CORPORA[str(source)]()
        source = [str(source)]
    files: set[Path] = set()
    for entry in map(str, source):
        if glob.has_magic(entry):
            found = [Path(p) for p in glob.glob(os.path.expanduser(entry), recursive=True)]
            found = [p for p in found if p.is_file()]
            if not found:
                raise FileNotFoundError(f"no files match the glob {entry!r}")
        else:
            path = Path(entry).expanduser()
            if not path.exists():
                raise FileNotFoundError(f"ABC source does not exist: {entry!r}")
            found = sorted(path.rglob("*.abc")) if path.is_dir() else [path]
            if not found:
                raise FileNotFoundError(f"no .abc files under the folder {entry!r}")
        files.update(p.resolve() for p in found)
    return sorted(files), ", ".join(map(str, source))


def load_abc_corpus(
    source: str | Sequence[str] = "music21", keep_fields: Sequence[str] = DEFAULT_KEEP_FIELDS
) -> CorpusResult:
    """Read, normalise and de-duplicate the tunes of ``source``.

    ``source`` is ``"music21"`` (the ABC files of music21's core corpus), or a path, folder (all ``*.abc``
    under it) or glob, or a list of them. A path that does not exist or a glob that matches nothing raises
    ``FileNotFoundError``. Files are read as UTF-8, or UTF-16/UTF-8 when they start with a byte-order mark;
    a file that is neither is skipped and counted as ``undecodable``; a file without an ``X:`` line is
    counted as ``no_tunes_in_file``. ``report["dropped_by_file"]`` says which file lost what.
    """
    files, description = resolve_files(source)
    dropped: Counter[str] = Counter()
    by_file: dict[str, dict[str, int]] = {}
    tunes: list[str] = []
    seen: set[str] = set()
    found = duplicates = 0
    for path in files:
        text = decode_text(path.read_bytes())
        if text is None:
            dropped["undecodable"] += 1
            by_file[str(path)] = {"undecodable": 1}
            continue
        raw_tunes = split_tunes_text(text)
        if not raw_tunes:
            dropped["no_tunes_in_file"] += 1
            by_file[str(path)] = {"no_tunes_in_file": 1}
        for raw in raw_tunes:
            found += 1
            tune, reason = normalize_tune(raw, keep_fields)
            if tune is None:
                dropped[reason] += 1
                file_counts = by_file.setdefault(str(path), {})
                file_counts[reason] = file_counts.get(reason, 0) + 1
                continue
            key = _dedup_key(tune)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            tunes.append(tune)
    report = {
        "source": description,
        "files_read": len(files) - dropped["undecodable"],
        "tunes_found": found,
        "dropped": dict(sorted(dropped.items())),
        "dropped_by_file": by_file,
        "duplicates_removed": duplicates,
        "kept": len(tunes),
        "characters": sum(map(len, tunes)),
        "distinct_characters": len(set().union(*map(set, tunes))),
    }
    return CorpusResult(tunes=tunes, report=report)


_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def decode_text(data: bytes) -> str | None:
    """Text of a file: UTF-8, or the encoding its byte-order mark names; None if it is not text."""
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    # binary data can be valid UTF-8 by chance only if it avoids NUL and most control characters
    if "\x00" in text:
        return None
    return text


def describe_drops(report: dict, limit: int = 5) -> str:
    """What was dropped and why, file by file (at most ``limit`` files named), for an error message."""
    reasons = {"undecodable": "not UTF-8 or UTF-16 text", "no_tunes_in_file": "no X: line, so no tune",
               "no_key": "tunes without a K: line", "no_body": "tunes without music after K:",
               "truncated": "tunes cut off inside a chord or quoted string"}
    items = list(report.get("dropped_by_file", {}).items())
    lines = [f"{path}: " + ", ".join(f"{n} {reasons.get(r, r)}" if r not in ("undecodable", "no_tunes_in_file")
                                     else reasons[r] for r, n in counts.items())
             for path, counts in items[:limit]]
    if len(items) > limit:
        lines.append(f"... and {len(items) - limit} more files")
    return "; ".join(lines)


SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test: the share of the tunes in each split


def split_dataset(
    tunes: Sequence[str], seed: int, fractions: Sequence[float] = SPLIT_FRACTIONS
) -> dict[str, list[str]]:
    """Shuffle whole tunes with ``seed`` and cut them into ``train``, ``val`` and ``test``.

    val and test get ``round(n * fraction)`` tunes but at least one each, train the rest.
    """
    n = len(tunes)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {tuple(fractions)}")
    if n < 3:
        raise ValueError(f"need at least 3 tunes to make non-empty train/val/test splits, got {n}")
    n_val = min(max(1, round(n * fractions[1])), n - 2)
    n_test = min(max(1, round(n * fractions[2])), n - 1 - n_val)
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [tunes[i] for i in order]
    return {
        "train": shuffled[: n - n_val - n_test],
        "val": shuffled[n - n_val - n_test : n - n_test],
        "test": shuffled[n - n_test :],
    }


def write_split(path: str | os.PathLike[str], tunes: Sequence[str]) -> Path:
    """Atomically write tunes separated by one blank line (tunes must hold no blank line)."""
    for i, tune in enumerate(tunes):
        if not tune or tune != tune.strip("\n") or "\n\n" in tune:
            raise ValueError(f"tune {i} is empty or holds a blank line; it would not read back as one tune")
    return write_text(path, "\n\n".join(tunes) + "\n" if tunes else "")


def read_split(path: str | os.PathLike[str]) -> list[str]:
    """Read tunes written by ``write_split``."""
    text = Path(path).read_text(encoding="utf-8").strip("\n")
    return text.split("\n\n") if text else []
