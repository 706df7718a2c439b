"""Stage 1, the data: a corpus or the grammar -> ``data/<dataset>/{train,val,test}.txt`` and
``corpus_report.json``, split 80/10/10 by tune.

A source is ``"music21"`` (the ABC tunes inside music21), ``"synthetic"`` (tunes drawn from
:mod:`musicscale.grammar`, whose exact entropy rate is known) or the user's own ``.abc`` files (a path, a
glob, or a list of them that make one dataset).

The grammar's data are unlimited, so no run may read a synthetic training token twice: its training split is
drawn to size, at least ``synthetic_train_tokens`` tokens (the runner sets it from the train stage's budgets,
:func:`musicscale.design.split_tokens_needed`), while its validation and test splits keep a fixed number of
tunes (``n_synthetic_eval_tunes`` each), so H* and the cost of evaluation do not move with the budgets.
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


@dataclass(frozen=True)
class SyntheticSize:
    """How much the grammar draws: a training split of at least ``train_tokens`` tokens (characters and one
    separator per tune), ``eval_tunes`` tunes in each of validation and test; ``n_workers`` drawing processes."""

    train_tokens: int = 263_000  # what the smoke train stage reads at most (its ablation: 4x the micro budget)
    eval_tunes: int = 30
    n_workers: int = 1


@dataclass
class Params(StageParameters):
    stage = "01_data"

    # "music21", "synthetic", a path or glob of .abc files, or a list of these
    corpus: list = field(default_factory=lambda: ["music21", "synthetic"])
    synthetic_train_tokens: int = SyntheticSize.train_tokens  # at least this many grammar tokens to train on
    n_synthetic_eval_tunes: int = SyntheticSize.eval_tunes  # grammar tunes in each of validation and test
    n_workers: int = SyntheticSize.n_workers  # processes drawing grammar tunes

    def __post_init__(self) -> None:
        super().__post_init__()
        self.corpus = check_corpus(self.corpus)
        self.n_workers = as_int("n_workers", self.n_workers, minimum=1)
        if "synthetic" in self.corpus:
            self.synthetic_train_tokens = as_int("synthetic_train_tokens", self.synthetic_train_tokens, minimum=1)
            self.n_synthetic_eval_tunes = as_int("n_synthetic_eval_tunes", self.n_synthetic_eval_tunes, minimum=1)
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
    synthetic = SyntheticSize(p.synthetic_train_tokens, p.n_synthetic_eval_tunes, p.n_workers)
    return [prepare_dataset(p.workdir, s, seed=p.seed, synthetic=synthetic, name=name)
            for s, name in zip(p.corpus, dataset_names(p.corpus))]


def synthetic_splits(seed: int, size: SyntheticSize, config: grammar.GrammarConfig | None = None
                     ) -> dict[str, list[tuple[str, float]]]:
    """The grammar's splits, each from a seeded stream of its own: a tune in two splits is a coincidence of
    the grammar (as it would be of a corpus), never a copy."""
    out = {split: grammar.sample_tunes(size.eval_tunes, seed=[seed, i], config=config)
           for i, split in enumerate(("val", "test"), start=1)}
    out["train"] = grammar.sample_to_size(size.train_tokens, seed=[seed, 3], config=config, n_workers=size.n_workers)
    return {split: out[split] for split in SPLITS}


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
                    synthetic: SyntheticSize = SyntheticSize(), keep_fields: Sequence[str] = corpus.DEFAULT_KEEP_FIELDS,
                    grammar_config: grammar.GrammarConfig | None = None, name: str | None = None) -> dict:
    """Load tunes and split them 80/10/10 by tune (seeded), or draw the grammar's splits (:func:`synthetic_splits`);
    write the splits and a report (in ``data/<name>``, by default :func:`dataset_name` of the source)."""
    wd = Workdir(workdir)
    name = name or dataset_name(source)
    if name == "synthetic":
        drawn = synthetic_splits(seed, synthetic, grammar_config)
        splits = {s: [t for t, _ in pairs] for s, pairs in drawn.items()}
        report: dict = {"source": "synthetic grammar", "unlimited": True,
                        "generated": sum(len(v) for v in splits.values()), "train_tokens_asked": synthetic.train_tokens,
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
            s: grammar.entropy_rate([lp for _, lp in drawn[s]], splits[s]) for s in SPLITS}
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
    synthetic = next((r for r in reports if r.get("unlimited")), None)
    glue_text("data_synthetic_train_tokens", synthetic and synthetic["train_tokens_asked"], ",",
              missing="no synthetic data in this build")
    glue_text("data_synthetic_eval_tunes", synthetic and synthetic["splits"]["test"]["tunes"], ",",
              missing="no synthetic data in this build")


def first_tune(workdir: str | Path, dataset: str, split: str = "train") -> str:
    """The first tune of a split, as written by the data stage."""
    wd = Workdir(workdir)
    return corpus.read_split(wd.require(wd.split_text(dataset, split)))[0]
