"""The data and tokenize stages: a corpus or the grammar -> split text files -> token arrays.

``prepare_dataset`` makes ``data/<dataset>/{train,val,test}.txt`` and ``corpus_report.json``;
``tokenize_dataset`` makes ``tokens/<dataset>/{train,val,test}.npy`` and ``meta.json``.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import corpus, grammar
from .params import as_int
from .tokenizer import CharTokenizer, unigram_entropy
from .workdir import SPLITS, Workdir, atomic_write, fingerprint, read_json, remove_partial_files, write_json

BUILTIN = ("music21", "synthetic")


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


def prepare_datasets(workdir: str | Path, corpus_param, *, seed: int = 0, n_synthetic_tunes: int = 2000) -> list[dict]:
    """The data stage: check every parameter and source first, then prepare each dataset in turn."""
    sources = check_corpus(corpus_param)
    as_int("seed", seed)
    if any(s == "synthetic" for s in sources):
        as_int("n_synthetic_tunes", n_synthetic_tunes, minimum=3)
    for s in sources:  # a missing file or empty glob stops the stage before any dataset is written
        if not (isinstance(s, str) and s in BUILTIN):
            try:
                corpus._resolve(s)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"corpus: {err} (the built-in sources are {list(BUILTIN)})") from err
    remove_partial_files(Workdir(workdir).root / "data")
    return [prepare_dataset(workdir, s, seed=seed, n_synthetic_tunes=n_synthetic_tunes, name=name)
            for s, name in zip(sources, dataset_names(sources))]


def prepare_dataset(workdir: str | Path, source: str | Sequence[str] = "music21", *, seed: int = 0,
                    n_synthetic_tunes: int = 2000, keep_fields: Sequence[str] = corpus.DEFAULT_KEEP_FIELDS,
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


def tokenize_dataset(workdir: str | Path, dataset: str) -> dict:
    """Build the vocabulary on the training split, encode all splits and write arrays and meta."""
    wd = Workdir(workdir)
    report = read_json(wd.require(wd.corpus_report(dataset)))
    splits = {s: corpus.read_split(wd.require(wd.split_text(dataset, s))) for s in SPLITS}
    remove_partial_files(wd.tokens_dir(dataset))
    tok = CharTokenizer.from_texts(splits["train"])
    meta: dict = {"dataset": dataset, "source": report.get("source"), "seed": report.get("seed"),
                  "vocab_size": tok.vocab_size, "vocabulary": tok.itos, "dtype": np.dtype(tok.dtype).name,
                  "unknown_rule": "characters absent from the training split are encoded as <unk> (id 1)",
                  "splits": {}}
    for split in SPLITS:
        stream = tok.encode_tunes(splits[split])
        unseen = tok.unknown_characters(splits[split])
        meta["splits"][split] = {
            "tunes": len(splits[split]), "tokens": int(len(stream)),
            "predicted_tokens": int(len(stream) - 1),
            "unknown_characters": int(sum(unseen.values())),
            "unknown_distinct": "".join(sorted(unseen)),
            "unigram_entropy": unigram_entropy(stream, tok.vocab_size),
        }
        meta["splits"][split]["fingerprint"] = fingerprint(stream)
        atomic_write(wd.tokens(dataset, split), lambda tmp, a=stream: np.save(tmp, a), suffix=".npy")
    if "entropy_rate" in report:
        meta["entropy_rate"] = report["entropy_rate"]
    meta["fingerprint"] = data_fingerprint({s: m["fingerprint"] for s, m in meta["splits"].items()}, tok.itos)
    write_json(wd.tokens_meta(dataset), meta)
    return meta


def data_fingerprint(split_fingerprints: dict[str, str], vocabulary: Sequence[str]) -> str:
    """The fingerprint of a tokenized dataset: its vocabulary and the fingerprint of each split's tokens.
    A run records it; a run, checkpoint or sample made from other data is never reused."""
    return fingerprint(list(vocabulary), {s: split_fingerprints[s] for s in SPLITS})


def load_tokenizer(workdir: str | Path, dataset: str) -> CharTokenizer:
    """The tokenizer saved by the tokenize stage."""
    wd = Workdir(workdir)
    return CharTokenizer(read_json(wd.require(wd.tokens_meta(dataset)))["vocabulary"])



def corpus_table(reports: Sequence[dict]):
    """One row per dataset: what was read, dropped (by reason), de-duplicated and kept."""
    from .report import markdown_table

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
    from .report import markdown_table

    rows = [{"dataset": r["dataset"], "split": s, **r["splits"][s],
             "h": (r.get("entropy_rate") or {}).get(s)} for r in reports for s in SPLITS]
    return markdown_table(rows, [("dataset", "dataset", None), ("split", "split", None), ("tunes", "tunes", ","),
                                 ("characters", "characters", ","), ("h", "H* (nats/char)", ".4f")])


def first_tune(workdir: str | Path, dataset: str, split: str = "train") -> str:
    """The first tune of a split, as written by the data stage."""
    wd = Workdir(workdir)
    return corpus.read_split(wd.require(wd.split_text(dataset, split)))[0]


def vocabulary_table(metas: Sequence[dict]):
    """Per dataset and split: vocabulary size, tokens, characters outside the vocabulary, unigram entropy."""
    from .report import markdown_table

    rows = [{"dataset": m["dataset"], "vocab": m["vocab_size"], "split": s, **m["splits"][s],
             "unknown_distinct": repr(m["splits"][s]["unknown_distinct"]) if m["splits"][s]["unknown_distinct"]
             else "—", "h": (m.get("entropy_rate") or {}).get(s)}
            for m in metas for s in SPLITS]
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("vocab", "vocabulary", None), ("split", "split", None),
        ("tokens", "tokens", ","), ("unknown_characters", "unseen chars", ","),
        ("unknown_distinct", "which", None), ("unigram_entropy", "unigram entropy (nats)", ".4f"),
        ("h", "H* (nats/char)", ".4f")])


def tokenize_datasets(workdir: str | Path, names: Sequence[str] | None = None) -> list[dict]:
    """Tokenize the named datasets, or every dataset the data stage wrote."""
    from .params import as_optional_list

    wd = Workdir(workdir)
    names = as_optional_list("datasets", names)
    names = names if names else wd.datasets("data")
    if not names:
        wd.require(wd.root / "data")
    for name in names:  # every input exists before any dataset is tokenized
        for path in (wd.corpus_report(name), *(wd.split_text(name, s) for s in SPLITS)):
            wd.require(path)
    return [tokenize_dataset(workdir, name) for name in names]


def describe_vocabulary(meta: dict) -> str:
    """One line listing a dataset's vocabulary (line breaks shown as ``\\n``)."""
    symbols = "".join(c if len(c) == 1 else f" {c} " for c in meta["vocabulary"]).replace("\n", "\\n")
    return f"{meta['dataset']}: {meta['vocab_size']} symbols: {symbols}"
