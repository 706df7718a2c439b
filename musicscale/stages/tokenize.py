"""Stage 2, tokenization: ``data/<dataset>/*.txt`` -> ``tokens/<dataset>/{train,val,test}.npy`` and
``meta.json``.

The vocabulary is every character of the training split plus ``<eot>`` and ``<unk>``
(:class:`musicscale.tokenizer.CharTokenizer`); characters of the validation or test split outside it are
encoded as ``<unk>`` and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import corpus
from ..params import StageParameters, as_optional_list
from ..tables import markdown_table
from ..tokenizer import CharTokenizer, unigram_entropy
from ..workdir import (
    SPLITS,
    Workdir,
    atomic_write,
    data_fingerprint,
    fingerprint,
    read_json,
    remove_partial_files,
    write_json,
)


@dataclass
class Params(StageParameters):
    stage = "02_tokenize"

    datasets: list | None = None  # None: every dataset the data stage wrote

    def __post_init__(self) -> None:
        super().__post_init__()
        self.datasets = as_optional_list("datasets", self.datasets)


def run(workdir: str | Path, **params) -> list[dict]:
    """Tokenize the named datasets, or every dataset the data stage wrote; returns each one's meta."""
    p = Params.build(workdir=workdir, **params)
    wd = Workdir(p.workdir)
    names = p.datasets or wd.datasets("data")
    if not names:
        wd.require(wd.root / "data")
    for name in names:  # every input exists before any dataset is tokenized
        for path in (wd.corpus_report(name), *(wd.split_text(name, s) for s in SPLITS)):
            wd.require(path)
    return [tokenize_dataset(p.workdir, name) for name in names]


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


def vocabulary_table(metas: Sequence[dict]):
    """Per dataset and split: vocabulary size, tokens, characters outside the vocabulary, unigram entropy."""
    rows = [{"dataset": m["dataset"], "vocab": m["vocab_size"], "split": s, **m["splits"][s],
             "unknown_distinct": repr(m["splits"][s]["unknown_distinct"]) if m["splits"][s]["unknown_distinct"]
             else "—", "h": (m.get("entropy_rate") or {}).get(s)}
            for m in metas for s in SPLITS]
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("vocab", "vocabulary", None), ("split", "split", None),
        ("tokens", "tokens", ","), ("unknown_characters", "unseen chars", ","),
        ("unknown_distinct", "which", None), ("unigram_entropy", "unigram entropy (nats)", ".4f"),
        ("h", "H* (nats/char)", ".4f")])


def describe_vocabulary(meta: dict) -> str:
    """One line listing a dataset's vocabulary (line breaks shown as ``\\n``)."""
    symbols = "".join(c if len(c) == 1 else f" {c} " for c in meta["vocabulary"]).replace("\n", "\\n")
    return f"{meta['dataset']}: {meta['vocab_size']} symbols: {symbols}"
