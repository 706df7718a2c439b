"""The workdir layout and atomic writes: the one place that names artifact paths.

Every stage writes under one ``workdir``::

    data/<dataset>/{train,val,test}.txt, corpus_report.json      (01_data)
    tokens/<dataset>/{train,val,test}.npy, meta.json              (02_tokenize)
    runs/<dataset>/<arch>-<size>-s<seed>-t<budget>[-lr<rate>-probe<k>|-cosine]/{checkpoint.pt,model.pt,result.json},
    runs/<dataset>/{sweep_results,lr_search,schedule_check,repetition}.json  (03_train)
    results/experiment_results.json, *.png                        (04_analyze)
    generated/<dataset>/<arch>-<size>/{samples.jsonl,summary.json,best.svg,best.ogg,best.mid},
    results/generation_results.json, validity_vs_size.png, temperature_sweep.png  (05_generate)

Files are written to a temporary name in the same folder (``.<name>.partial-*``), flushed, fsynced and
renamed, so a reader never sees half a file and an interrupted stage leaves the previous version intact;
:func:`remove_partial_files` clears what a killed process left behind. :func:`fingerprint` hashes the
inputs of an artifact, so that a cached artifact is reused only when its inputs are the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")

# Which notebook makes each artifact family, for the "run this first" message.
PRODUCER = {
    "data": "notebooks/01_data.ipynb",
    "tokens": "notebooks/02_tokenize.ipynb",
    "runs": "notebooks/03_train.ipynb",
    "results": "notebooks/04_analyze.ipynb",
    "generated": "notebooks/05_generate.ipynb",
}


class MissingArtifactError(FileNotFoundError):
    """A stage's input does not exist; the message names it and the notebook that makes it."""


# The report's figures, by the stage that draws them: 03 the rate search, 04 the laws, 05 musical validity.
FIGURES = ("lr_search", "joint_law", "scaling_laws", "holdout", "architecture_comparison", "training_curves",
           "compute_frontier", "repetition", "validity_vs_size", "temperature_sweep")


@dataclass(frozen=True)
class Workdir:
    """Paths of every artifact under one root folder."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]):
        object.__setattr__(self, "root", Path(root).expanduser())
        check_folder(self.root, "workdir")

    def data_dir(self, dataset: str) -> Path:
        return self.root / "data" / dataset

    def split_text(self, dataset: str, split: str) -> Path:
        return self.data_dir(dataset) / f"{split}.txt"

    def corpus_report(self, dataset: str) -> Path:
        return self.data_dir(dataset) / "corpus_report.json"

    def unlimited(self, dataset: str) -> bool:
        """Whether a dataset's data are unlimited (drawn from the grammar), as its corpus report says: there no
        run may read a training token twice."""
        report = self.corpus_report(dataset)
        return bool(report.exists() and read_json(report).get("unlimited", False))

    def tokens_dir(self, dataset: str) -> Path:
        return self.root / "tokens" / dataset

    def tokens(self, dataset: str, split: str) -> Path:
        return self.tokens_dir(dataset) / f"{split}.npy"

    def tokens_meta(self, dataset: str) -> Path:
        return self.tokens_dir(dataset) / "meta.json"

    def runs_dir(self, dataset: str) -> Path:
        return self.root / "runs" / dataset

    def run_dir(self, dataset: str, run_name: str) -> Path:
        return self.runs_dir(dataset) / run_name

    def sweep_results(self, dataset: str) -> Path:
        return self.runs_dir(dataset) / "sweep_results.json"

    def lr_search(self, dataset: str) -> Path:
        return self.runs_dir(dataset) / "lr_search.json"

    def schedule_check(self, dataset: str) -> Path:
        return self.runs_dir(dataset) / "schedule_check.json"

    def repetition(self, dataset: str) -> Path:
        return self.runs_dir(dataset) / "repetition.json"

    def ablation(self, dataset: str) -> Path:
        return self.runs_dir(dataset) / "ablation.json"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def experiment_results(self) -> Path:
        return self.results_dir / "experiment_results.json"

    @property
    def generation_results(self) -> Path:
        """Every summary of the generate stage (one per model, one reference row per dataset): its figures'
        data."""
        return self.results_dir / "generation_results.json"

    def figure(self, name: str) -> Path:
        """A figure of the report (``results/<name>.png``); ``name`` is one of :data:`FIGURES`."""
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r}; the report's figures are {list(FIGURES)}")
        return self.results_dir / f"{name}.png"

    def generated_dir(self, dataset: str, model_name: str | None = None) -> Path:
        base = self.root / "generated" / dataset
        return base / model_name if model_name else base

    def datasets(self, family: str = "tokens") -> list[str]:
        """Datasets that have artifacts of one family (``data``, ``tokens`` or ``runs``)."""
        folder = self.root / family
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def require(self, path: Path) -> Path:
        """Return ``path`` if it exists, else raise naming it and the notebook that makes it."""
        if path.exists():
            return path
        try:
            family = path.relative_to(self.root).parts[0]
        except ValueError:
            family = ""
        maker = PRODUCER.get(family, "the previous stage")
        raise MissingArtifactError(
            f"missing artifact {path}: run {maker} first (with the same workdir={str(self.root)!r})"
        )


def check_folder(path: Path, name: str) -> None:
    """Raise NotADirectoryError naming ``name`` if ``path`` or one of its ancestors is not a folder."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise NotADirectoryError(f"{name}={str(path)!r}: {p} is a file, not a folder")
            return


PARTIAL = ".partial-"  # in the name of every temporary file of an atomic write


def remove_partial_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left under ``folder``; return them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.rglob(f".*{PARTIAL}*") if p.is_file()]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def move_aside(path: Path) -> Path:
    """Rename an unreadable artifact to ``<name>.corrupt`` (replacing an older one) and return the new path."""
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    return target


def fingerprint(*parts: Any) -> str:
    """A short SHA-256 of JSON-able values and numpy arrays: equal inputs, equal fingerprints."""
    import numpy as np

    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"array {part.dtype.str} {part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (bytes, bytearray)):
            h.update(b"bytes")
            h.update(part)
        else:
            h.update(json.dumps(json_safe(part), sort_keys=True).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def data_fingerprint(split_fingerprints: dict[str, str], vocabulary: Sequence[str]) -> str:
    """The fingerprint of a tokenized dataset: its vocabulary and the fingerprint of each split's tokens.
    A run records it; a run, checkpoint or sample made from other data is never reused."""
    return fingerprint(list(vocabulary), {s: split_fingerprints[s] for s in SPLITS})


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """A short SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{PARTIAL}", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp_path.chmod(0o666 & ~umask)  # mkstemp makes the file private; the result should be an ordinary file
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any], suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path, suffix) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write a UTF-8 text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write a binary file."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN is written as null)."""
    return write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=False) + "\n")


class CorruptArtifactError(ValueError):
    """An artifact exists but cannot be read; the message names it."""


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, naming the file if it is not valid UTF-8 JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorruptArtifactError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}") from err
    except UnicodeDecodeError as err:
        raise CorruptArtifactError(f"{path}: not valid JSON (not UTF-8 text at byte {err.start})") from err


def load_torch(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict:
    """``torch.load`` a checkpoint, raising :class:`CorruptArtifactError` naming the file if it is damaged."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated zip, an empty file, a pickle error: all mean "damaged"
        raise CorruptArtifactError(f"{path}: cannot be read ({type(err).__name__}: {err})") from err


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON values: numpy scalars and arrays as numbers and lists, paths as strings, NaN and inf as
    null (JSON has neither). The project's one such conversion: every fit's ``to_dict`` and every file go through it."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def json_float(value: float | None) -> float:
    """A float that :func:`json_safe` wrote, read back: null (NaN or inf) becomes NaN."""
    return float("nan") if value is None else float(value)


def git_commit() -> str | None:
    """The commit of the code that made a result (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
