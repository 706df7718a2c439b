"""The data and tokenize stages: a corpus or the grammar -> split text files -> token arrays.

``prepare_dataset`` makes ``data/<dataset>/{train,val,test}.txt`` and ``corpus_report.json``;
``tokenize_dataset`` makes ``tokens/<dataset>/{train,val,test}.npy`` and ``meta.json``.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import corpus, grammar
from .tokenizer import CharTokenizer, unigram_entropy
from .workdir import SPLITS, Workdir, atomic_write, read_json, write_json

BUILTIN = ("music21", "synthetic")


def dataset_name(source: str | Sequence[str]) -> str:
    """The folder name of a corpus source: ``music21``, ``synthetic``, or ``custom`` for user files."""
    return source if isinstance(source, str) and source in BUILTIN else "custom"


def check_source(source: str | Sequence[str]) -> None:
    """Raise naming the ``corpus`` parameter when a source is neither built in nor matches files."""
    if isinstance(source, str) and source in BUILTIN:
        return
    patterns = [source] if isinstance(source, str) else list(source)
    for pattern in patterns:
        if not (Path(pattern).exists() or glob.glob(str(pattern), recursive=True)):
            raise FileNotFoundError(
                f"corpus: {pattern!r} is not one of {list(BUILTIN)} and matches no file"
            )


def prepare_dataset(workdir: str | Path, source: str | Sequence[str] = "music21", *, seed: int = 0,
                    n_synthetic_tunes: int = 2000, keep_fields: Sequence[str] = corpus.DEFAULT_KEEP_FIELDS,
                    grammar_config: grammar.GrammarConfig | None = None) -> dict:
    """Load or generate tunes, split them 80/10/10 by tune (seeded) and write the splits and a report."""
    check_source(source)
    wd = Workdir(workdir)
    name = dataset_name(source)
    if name == "synthetic":
        if n_synthetic_tunes < 3:
            raise ValueError(f"n_synthetic_tunes must be at least 3, got {n_synthetic_tunes}")
        pairs = grammar.sample_tunes(n_synthetic_tunes, seed=seed, config=grammar_config)
        logp = dict(pairs)
        tunes = [t for t, _ in pairs]
        report: dict = {"source": "synthetic grammar", "generated": len(tunes),
                        "grammar": _asdict(grammar_config or grammar.GrammarConfig())}
    else:
        result = corpus.load_abc_corpus(source, keep_fields=keep_fields)
        tunes, report = result.tunes, dict(result.report)
        report["keep_fields"] = list(keep_fields)
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
        atomic_write(wd.tokens(dataset, split), lambda tmp, a=stream: np.save(tmp, a), suffix=".npy")
    if "entropy_rate" in report:
        meta["entropy_rate"] = report["entropy_rate"]
    write_json(wd.tokens_meta(dataset), meta)
    return meta


def load_tokenizer(workdir: str | Path, dataset: str) -> CharTokenizer:
    """The tokenizer saved by the tokenize stage."""
    wd = Workdir(workdir)
    return CharTokenizer(read_json(wd.require(wd.tokens_meta(dataset)))["vocabulary"])


def _asdict(obj) -> dict:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else dict(vars(obj))
