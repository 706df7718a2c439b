"""What the generate stage saves, read back: the names of its rows and files, a model's saved samples, and the
reuse of a saved artifact (a summary, a reference row, the gallery's length rule, a rendering) only when it was
made from the same inputs and the same :func:`code_version`; an unreadable one is moved aside and made again."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from . import prompts, render, validity, workers
from .workdir import CorruptArtifactError, Workdir, file_fingerprint, fingerprint, move_aside, read_json

REFERENCE = "reference"  # the summary row of real held-out tunes
PROMPTED, SWEPT = "prompted", "temperatures"  # the files of a model's prompted samples and temperature sweep


def model_order(summary: dict) -> tuple[int, int]:
    """The sort key of a sampled model: its N, then its budget (the ``-t<tokens>`` of its run's name), so that of
    one size trained at several budgets the longest comes last (the largest model is the largest size at its
    longest budget)."""
    budget = re.search(r"-t(\d+)", summary.get("run") or "")
    return summary["params_non_embedding"], int(budget.group(1)) if budget else 0


def read_samples(workdir: str | Path, dataset: str, run: str, kind: str = "samples") -> list[dict]:
    """The samples (with metrics) saved for one model: its unprompted ones, or its ``PROMPTED`` or ``SWEPT`` ones."""
    wd = Workdir(workdir)
    path = wd.require(wd.generated_dir(dataset, run) / f"{kind}.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@lru_cache(maxsize=1)
def code_version() -> str:
    """What the measures and renderings depend on besides their inputs: the code that makes them and the
    versions of the libraries it calls. A saved summary, rendering or reference row is reused only if this
    matches."""
    import soundfile

    code = [file_fingerprint(Path(module.__file__)) for module in (validity, prompts, render, workers)]
    libraries = {name: metadata.version(name) for name in
                 ("music21", "verovio", "tinysoundfont", "soundfile", "pretty_midi", "mutagen")}
    return fingerprint(code, libraries, soundfile.__libsndfile_version__)


def read_saved(path: Path, log: Callable[[str], object] | None = None) -> dict | None:
    """A saved artifact; None if there is none or it cannot be read (then it is moved aside, and ``log``, if
    given, says so)."""
    if not path.exists():
        return None
    try:
        return read_json(path)
    except CorruptArtifactError as err:
        move_aside(path)
        if log:
            log(f"{err}; moved aside as *.corrupt, sampling again")
        return None


def cached_summary(path: Path, inputs: str, log: Callable[[str], object] | None = None) -> dict | None:
    """The saved artifact at ``path`` if it was made from the same ``inputs`` (its ``inputs_fingerprint``), else
    None (:func:`read_saved`; ``log``, if given, also says when the saved samples were made from other weights or
    settings)."""
    saved = read_saved(path, log)
    if saved is not None and saved.get("inputs_fingerprint") != inputs:
        if log:
            log(f"{path.parent.name}: the saved samples were made from other weights or settings; sampling again")
        return None
    return saved
