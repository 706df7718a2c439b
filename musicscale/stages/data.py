"""Stage 1, the data: a corpus or the grammar -> ``data/<dataset>/{train,val,test}.txt`` and
``corpus_report.json``, split 80/10/10 by tune.

A source is ``"music21"`` (the ABC tunes inside music21), ``"synthetic"`` (tunes drawn from
:mod:`musicscale.grammar`, whose exact entropy rate is known) or the user's own ``.abc`` files (a path, a
glob, or a list of them that make one dataset).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import corpus, grammar
from ..params import StageParameters, as_int
from ..tables import glue_text, markdown_table
from ..workdir import SPLITS, Workdir, fingerprint, remove_partial_files, write_json

BUILTIN = (*corpus.NAMED_CORPORA, "synthetic")  # the sources named by a word rather than a path


@dataclass
class Params(StageParameters):
    stage = "01_data"

    # "music21", "synthetic", a path or glob of .abc files, or a list of these
    corpus: list = field(default_factory=lambda: ["music21", "synthetic"])
    n_synthetic_tunes: int = 300  # tunes drawn from the grammar

    def __post_init__(self) -> None:
        super().__post_init__()
        self.corpus = check_corpus(self.corpus)
        if "synthetic" in self.corpus:
            self.n_synthetic_tunes = as_int("n_synthetic_tunes", self.n_synthetic_tunes, minimum=3)
        for s in self.corpus:  # a missing file or an empty glob stops the study before any stage runs
            if not (isinstance(s, str) and s in BUILTIN):
                try:
                    corpus.resolve_files(s)
                except FileNotFoundError as err:
                    raise FileNotFoundError(f"corpus: {err} (the built-in sources are {list(BUILTIN)})") from err


def run(workdir: str | Path, **params) -> list[dict]:
    """The data stage: check every parameter and source first, then prepare each dataset in turn.
    Returns the corpus report of each dataset."""
    p = Params.build(workdir=workdir, **params)
    remove_partial_files(Workdir(p.workdir).root / "data")
    return [prepare_dataset(p.workdir, s, seed=p.seed, n_synthetic_tunes=p.n_synthetic_tunes, name=name)
            for s, name in zip(p.corpus, dataset_names(p.corpus))]


def dataset_name(source: str | Sequence[str]) -> str:
    """The folder name of a corpus source: ``music21``, ``synthetic``, or for user files the name of the
    file or folder it points at (``~/abc/irish/*.abc`` is ``irish``, ``reels.abc`` is ``reels``)."""
    if isinstance(source, str) and source in BUILTIN:
        return source
    first = str(source if isinstance(source, (str, os.PathLike)) else source[0])
    parts = [p for p in Path(os.path.expanduser(first)).parts if not glob.has_magic(p) and p != os.sep]
    stem = Path(parts[-1]).stem if parts else ""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-").lower() or "custom"
    return f"{slug}-abc" if slug in BUILTIN else slug


def dataset_names(sources: Sequence[str | Sequence[str]]) -> list[str]:
    """Distinct folder names for the sources of one data stage; two user corpora that would share a name
    (``a/tunes/*.abc`` and ``b/tunes/*.abc``) get a short hash of their source appended."""
    names = [dataset_name(s) for s in sources]
    return [n if names.count(n) == 1 or n in BUILTIN else f"{n}-{fingerprint(s)[:6]}"
            for n, s in zip(names, sources)]


def check_corpus(corpus_param) -> list[str | list[str]]:
    """The ``corpus`` notebook parameter as a list of sources (a source is a name, a path or glob, or a
    list of paths and globs that make one dataset); ValueError naming the parameter otherwise."""
    sources = [corpus_param] if isinstance(corpus_param, (str, os.PathLike)) else corpus_param
    if not isinstance(sources, (list, tuple)) or not sources:
        raise ValueError(f"corpus must be a source or a list of sources, got {corpus_param!r}")
    out: list[str | list[str]] = []
    for s in sources:
        if isinstance(s, (str, os.PathLike)) and str(s):
            out.append(str(s))
        elif isinstance(s, (list, tuple)) and s and all(isinstance(x, (str, os.PathLike)) for x in s):
            out.append([str(x) for x in s])
        else:
            raise ValueError(f"corpus: each source must be 'music21', 'synthetic', a path or glob of .abc "
                             f"files, or a list of those, got {s!r}")
    names = [dataset_name(s) for s in out]
    if len(set(names)) < len(names) and any(names.count(b) > 1 for b in BUILTIN):
        raise ValueError(f"corpus: a built-in source is listed twice: {out}")
    return out


def prepare_dataset(workdir: str | Path, source: str | Sequence[str], *, seed: int,
                    n_synthetic_tunes: int, keep_fields: Sequence[str] = corpus.DEFAULT_KEEP_FIELDS,
                    grammar_config: grammar.GrammarConfig | None = None, name: str | None = None) -> dict:
    """Load or generate tunes, split them 80/10/10 by tune (seeded) and write the splits and a report
    (in ``data/<name>``, by default :func:`dataset_name` of the source)."""
    wd = Workdir(workdir)
    name = name or dataset_name(source)
    if name == "synthetic":
        if n_synthetic_tunes < 3:
            raise ValueError(f"n_synthetic_tunes must be at least 3, got {n_synthetic_tunes}")
        pairs = grammar.sample_tunes(n_synthetic_tunes, seed=seed, config=grammar_config)
        logp = dict(pairs)
        tunes = [t for t, _ in pairs]
        report: dict = {"source": "synthetic grammar", "generated": len(tunes),
                        "grammar": asdict(grammar_config or grammar.GrammarConfig())}
    else:
        try:
            result = corpus.load_abc_corpus(source, keep_fields=keep_fields)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"corpus: {err} (the built-in sources are {list(BUILTIN)})") from err
        tunes, report = result.tunes, dict(result.report)
        report["keep_fields"] = list(keep_fields)
        if len(tunes) < 3:
            why = corpus.describe_drops(report) or "every tune was a duplicate"
            n_files = report["files_read"] + report["dropped"].get("undecodable", 0)
            raise ValueError(f"corpus {source!r}: {len(tunes)} usable tunes of {report['tunes_found']} found in "
                             f"{n_files} file(s); a dataset needs at least 3. Dropped: {why}")
    splits = corpus.split_dataset(tunes, seed=seed)
    report.update(dataset=name, seed=seed, splits={
        s: {"tunes": len(splits[s]), "characters": sum(len(t) for t in splits[s])} for s in SPLITS})
    if name == "synthetic":
        report["entropy_rate"] = {
            s: grammar.entropy_rate([logp[t] for t in splits[s]], splits[s]) for s in SPLITS}
    for split in SPLITS:
        corpus.write_split(wd.split_text(name, split), splits[split])
    write_json(wd.corpus_report(name), report)
    return report


def corpus_table(reports: Sequence[dict]):
    """One row per dataset: what was read, dropped (by reason), de-duplicated and kept."""
    rows = []
    for r in reports:
        dropped = r.get("dropped") or {}
        rows.append({
            "dataset": r["dataset"], "files": r.get("files_read"), "found": r.get("tunes_found", r.get("generated")),
            "dropped": ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()) if v) or "none",
            "duplicates": r.get("duplicates_removed"),
            "kept": sum(s["tunes"] for s in r["splits"].values()),
            "chars": sum(s["characters"] for s in r["splits"].values()),
        })
    return markdown_table(rows, [("dataset", "dataset", None), ("files", "files read", None),
                                 ("found", "tunes found", ","), ("dropped", "dropped (reason count)", None),
                                 ("duplicates", "duplicates removed", ","), ("kept", "tunes kept", ","),
                                 ("chars", "characters kept", ",")])


def split_table(reports: Sequence[dict]):
    """Tunes and characters per split, and the exact entropy rate H* where the data are synthetic."""
    rows = [{"dataset": r["dataset"], "split": s, **r["splits"][s],
             "h": (r.get("entropy_rate") or {}).get(s)} for r in reports for s in SPLITS]
    return markdown_table(rows, [("dataset", "dataset", None), ("split", "split", None), ("tunes", "tunes", ","),
                                 ("characters", "characters", ","), ("h", "H* (nats/char)", ".4f")])


def glue(reports: Sequence[dict]) -> None:
    """Glue what the book's prose cites about the data: the split and, per dataset (every built-in one,
    "n/a" where this build has not made it), the tunes kept (``data_<dataset>_tunes``)."""
    glue_text("data_split", "/".join(f"{100 * f:g}" for f in corpus.SPLIT_FRACTIONS))
    kept = {r["dataset"]: sum(s["tunes"] for s in r["splits"].values()) for r in reports}
    for name in dict.fromkeys([*BUILTIN, *kept]):
        glue_text(f"data_{name}_tunes", kept.get(name), ",", missing="not in this build")


def first_tune(workdir: str | Path, dataset: str, split: str = "train") -> str:
    """The first tune of a split, as written by the data stage."""
    wd = Workdir(workdir)
    return corpus.read_split(wd.require(wd.split_text(dataset, split)))[0]
