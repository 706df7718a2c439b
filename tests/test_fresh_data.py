"""D counts what a model reads for the first time: on the grammar's data, which are unlimited, no run of any
profile reads a training token twice; the data stage draws the training split to size (validation and test
fixed); the train stage refuses, before any run, a split too small; every branch records its epochs; and the
repetition experiment's runs read their prefix the number of times they say."""

import numpy as np
import pytest

from musicscale import pipeline
from musicscale.batches import n_windows
from musicscale.design import tokens_read
from musicscale.stages import data, tokenize, train
from musicscale.workdir import Workdir, read_json


def reads_of(train_values: dict) -> list[tuple[str, int, int, int | None]]:
    """(run, tokens read, context, unique_tokens) of every synthetic run the train stage would plan."""
    p = train.Params.build(**{**train_values, "device": "cpu"})
    mains, extra = p.specs(["synthetic"])
    return [(s.name, tokens_read(s.config), s.config.context_length, s.config.unique_tokens) for s in mains + extra]


@pytest.mark.parametrize("profile", pipeline.PROFILES)
def test_no_profile_reads_a_synthetic_training_token_twice(profile, tmp_path):
    params = pipeline.stage_parameters(profile, tmp_path)
    tokens = params["01_data"].get("synthetic_train_tokens", data.Params.defaults()["synthetic_train_tokens"])
    runs = reads_of(params["03_train"])
    for name, reads, T, unique in runs:
        windows = n_windows(tokens, T, unique) * T
        if unique is None:
            assert reads <= windows, (profile, name, reads, windows)
        else:  # a repetition run reads its prefix reads / unique times
            assert windows == unique and reads > unique, (profile, name)
    assert any(u is not None for *_, u in runs), profile  # every profile measures what a repeat is worth


def test_the_data_stage_defaults_cover_the_train_stage_defaults(tmp_path):
    need = train.synthetic_tokens_needed(workdir=str(tmp_path))
    assert data.Params.defaults()["synthetic_train_tokens"] >= need > 0


def test_the_grammar_is_drawn_to_size_with_fixed_evaluation_splits(tmp_path):
    one = data.run(tmp_path / "a", corpus="synthetic", synthetic_train_tokens=30_000, n_synthetic_eval_tunes=7)
    two = data.run(tmp_path / "b", corpus="synthetic", synthetic_train_tokens=30_000, n_synthetic_eval_tunes=7,
                   n_workers=2)
    (report,) = one
    splits = report["splits"]
    assert splits["val"]["tunes"] == splits["test"]["tunes"] == 7
    assert 30_000 <= splits["train"]["characters"] + splits["train"]["tunes"] < 30_000 + 400  # one tune over at most
    assert report["unlimited"] and report["train_tokens_asked"] == 30_000
    for split in ("train", "val", "test"):  # the same tunes however many processes draw them
        a, b = (Workdir(tmp_path / w).split_text("synthetic", split).read_text() for w in ("a", "b"))
        assert a == b
    assert two[0]["entropy_rate"] == report["entropy_rate"]
    bigger = data.run(tmp_path / "c", corpus="synthetic", synthetic_train_tokens=60_000, n_synthetic_eval_tunes=7)[0]
    assert bigger["entropy_rate"]["test"] == report["entropy_rate"]["test"]  # H* does not move with the budget
    (meta,) = tokenize.run(tmp_path / "a")
    assert meta["splits"]["train"]["tokens"] >= 30_000


def test_a_synthetic_split_too_small_is_refused_before_any_run(tmp_path):
    wd = Workdir(tmp_path)
    data.run(wd.root, corpus="synthetic", synthetic_train_tokens=20_000)
    tokenize.run(wd.root)
    with pytest.raises(ValueError, match=r"no run may read one of its training tokens twice.*"
                                         r"synthetic_train_tokens=262,208 or more"):  # the ablation: 4x micro's
        train.run(wd.root, log=None)
    assert not wd.runs_dir("synthetic").exists() or not any(wd.runs_dir("synthetic").glob("*/result.json"))


def test_every_branch_records_its_epochs_and_repetition_runs_repeat_their_prefix(tmp_path):
    wd = Workdir(tmp_path)
    data.run(wd.root, corpus="synthetic")
    tokenize.run(wd.root)
    study = train.run(wd.root, archs=["lstm"], sizes=["micro", "tiny"], extra_seeds=0, schedule_check=None,
                      lr_factors=[0.5, 1.0, 2.0], lr_max_extensions=0, log=None,
                      repetition={"sizes": ["tiny"], "factors": [4], "seeds": 1})
    for r in study["runs"]:
        assert 0 < r["epochs"] <= 1 and r["epochs"] == r["curve"][-1]["epochs"]
        assert read_json(wd.runs_dir("synthetic") / r["run"] / "result.json")["epochs"] == r["epochs"]
    (rep,) = study["repetition"]
    assert rep["unique_tokens"] == rep["tokens_seen"] // 4 and rep["epochs"] == pytest.approx(4.0)
    assert [p["epochs"] for p in rep["curve"]] == pytest.approx([1.0, 2.0, 4.0])  # one branch per doubling
    assert read_json(wd.repetition("synthetic")) == study["repetition"]
    main = next(r for r in study["runs"] if r["size"] == "tiny")
    assert rep["config"]["lr"] == main["config"]["lr"] and rep["tokens_seen"] == main["tokens_seen"]


def test_the_repetition_experiment_names_what_the_study_lacks(tmp_path):
    values = {"workdir": str(tmp_path), "archs": ["lstm"], "sizes": ["micro", "tiny"], "schedule_check": None}
    p = train.Params.build(**values, repetition={"sizes": ["small"]})
    with pytest.raises(ValueError, match=r"repetition: size 'small' is not a size of this study's lstm runs"):
        p.specs(["synthetic"])
    p = train.Params.build(**values)  # the default: on the synthetic data where the study has them, else none
    assert [s for s in p.specs(["music21"])[1] if s.kind == "repeat"] == []
    assert {s.config.size for s in p.specs(["synthetic"])[1] if s.kind == "repeat"} == {"tiny"}
    with pytest.raises(ValueError, match=r"repetition\['factors'\] must be powers of two"):
        train.Params.build(**values, repetition={"factors": [3]})
    with pytest.raises(ValueError, match="repetition must be None or a dict"):
        train.Params.build(**values, repetition={"epochs": 4})


def test_windows_cover_the_split_without_reading_a_token_twice():
    assert n_windows(10_240 + 64, 64) * 64 == 10_240  # D (a whole number of windows) + one window of slack
    with pytest.raises(ValueError):
        n_windows(10, 64)
    assert np.isclose(n_windows(4096 + 64, 64, unique_tokens=1024) * 64, 1024)
