"""A study of any datasets builds its book: the smoke profile on a user's own ABC folder given only as
``corpus=``, on music21 alone and on the synthetic grammar alone, each to a strict (``-W -n --keep-going``)
book whose pages speak of the datasets the build has."""

from __future__ import annotations

import re

import pytest
from book_sources import book_sources
from test_report import soup_of, visible_text
from toy_data import write_folk_corpus

from musicscale.identification import format_ci
from musicscale.pipeline import run_pipeline
from musicscale.workdir import Workdir, read_json

OWN = "my_tunes"  # the folder the user's tunes are in, so the dataset's name


@pytest.fixture(scope="module", params=["own", "music21", "synthetic"])
def single_study(request, tmp_path_factory):
    """``python -m musicscale run --profile smoke -p '01_data.corpus=[...]'`` on one dataset, in a copy of the
    book's sources; returns ``(root, dataset name)``."""
    root = book_sources(tmp_path_factory.mktemp(f"study-{request.param}"))
    source = write_folk_corpus(root / "abc" / OWN) if request.param == "own" else request.param
    run_pipeline("smoke", root / "work", root=root, overrides={"01_data": {"corpus": [source]}})
    return root, OWN if request.param == "own" else request.param


def page_text(root, page: str) -> str:
    return visible_text(soup_of(root / "_build" / "html" / "book" / f"{page}.html"))


def test_the_book_speaks_of_the_datasets_the_build_has(single_study):
    root, dataset = single_study
    results = read_json(Workdir(root / "work").experiment_results)
    assert list(results["datasets"]) == [dataset]
    findings = page_text(root, "findings")
    titles = {"music21": "Real corpus (music21)", "synthetic": "Synthetic grammar", OWN: f"Your corpus ({OWN})"}
    for d, title in titles.items():
        assert (title in findings) == (d == dataset), title  # a section for its dataset, none for another
    squashed = re.sub(r"\s+", "", findings)  # a glued value is an element of its own, spaced apart
    for arch, law in results["datasets"][dataset]["joint"].items():
        assert re.sub(r"\s+", "", format_ci(law, "alpha")) in squashed, arch  # its interval, or why none
    if dataset == "synthetic":
        assert "exactentropyrateofthetestsplitisH*=" in squashed
    else:
        assert "hasnoknownentropyrate" in squashed
    for page in ("findings", "methods", "literature", "intro"):
        text = page_text(root, page)
        assert "{glue" not in text and not re.search(r"\b(nan|NaN)\b", text), page


def test_the_schedule_check_defaults_to_the_study_s_own_model(single_study):
    root, dataset = single_study
    check = read_json(Workdir(root / "work").schedule_check(dataset))
    assert check and {r["dataset"] for r in check} == {dataset}
