"""Shared fixtures: a small tokenized dataset in a temporary workdir; the smoke report, built once."""

from __future__ import annotations

import numpy as np
import pytest
from book_sources import book_sources
from toy_data import markov_tunes

from musicscale.pipeline import run_pipeline
from musicscale.tokenizer import CharTokenizer
from musicscale.workdir import Workdir, write_json


@pytest.fixture
def tokenized_workdir(tmp_path):
    """A workdir holding tokens/markov/{train,val,test}.npy and meta.json."""
    wd = Workdir(tmp_path)
    splits = {"train": markov_tunes(300, 0), "val": markov_tunes(40, 1), "test": markov_tunes(40, 2)}
    tok = CharTokenizer.from_texts(splits["train"])
    wd.tokens_dir("markov").mkdir(parents=True)
    for name, tunes in splits.items():
        np.save(wd.tokens("markov", name), tok.encode_tunes(tunes))
    write_json(wd.tokens_meta("markov"), {"vocab_size": tok.vocab_size, "vocabulary": tok.itos})
    return wd


@pytest.fixture(scope="session")
def smoke_report(tmp_path_factory):
    """The smoke profile run end to end (five notebooks, book built with warnings as errors) in a temporary
    copy of the book's sources; returns ``(root, timings)``, the artifacts under ``root / "work"``."""
    root = book_sources(tmp_path_factory.mktemp("report"))
    timings = run_pipeline("smoke", root / "work", root=root)
    return root, timings
