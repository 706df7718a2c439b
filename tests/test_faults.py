"""Faults and bad inputs, one test per failure the QA review found: each one fails loudly, names its cause
before any work starts, and never costs the last good artifact."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from toy_data import markov_tunes

from musicscale import generated, pipeline, sweep
from musicscale.__main__ import main
from musicscale.artifacts import load_model
from musicscale.params import as_list
from musicscale.stages import analyze, data, generate, train
from musicscale.tokenizer import CharTokenizer
from musicscale.train import TrainConfig
from musicscale.workdir import Workdir, data_fingerprint, fingerprint, read_json, remove_partial_files, write_json

KW = dict(archs=["transformer", "lstm"], sizes=["micro"], context_length=16, batch_size=8, n_branches=2,
          eval_tokens=512, device="cpu", min_steps=8, max_steps=8, lr_factors=[0.5, 1.0, 2.0], lr_probe_branches=1,
          lr_max_extensions=0, extra_seeds=0, schedule_check=None, ablation=None)
RUN_KEYS = ("context_length", "batch_size", "n_branches", "eval_tokens", "device")


def retokenize(wd: Workdir, dataset: str, seed: int) -> None:
    """Replace a dataset's token files (as regenerated data would) and its meta, fingerprint included."""
    splits = {"train": markov_tunes(300, seed), "val": markov_tunes(40, seed + 1), "test": markov_tunes(40, seed + 2)}
    tok = CharTokenizer.from_texts(splits["train"])
    fps = {}
    for name, tunes in splits.items():
        stream = tok.encode_tunes(tunes)
        np.save(wd.tokens(dataset, name), stream)
        fps[name] = fingerprint(stream)
    write_json(wd.tokens_meta(dataset), {"vocab_size": tok.vocab_size, "vocabulary": tok.itos,
                                         "fingerprint": data_fingerprint(fps, tok.itos)})


# 2. stale results are never reused after the data change
def test_runs_trained_on_other_data_are_trained_again(tokenized_workdir):
    wd = tokenized_workdir
    first = train.run(wd.root, log=None, **KW)["runs"]
    retokenize(wd, "markov", seed=7)
    with pytest.raises(analyze.NoRunsError, match=r"dataset 'markov': 2 of 2 runs .* other data.*03_train"):
        analyze.load_sweep(wd.root)
    lines: list[str] = []
    second = train.run(wd.root, log=lines.append, **KW)["runs"]
    # every probe (3 rates x 2 architectures) and both main runs: retrained, and the log says why
    assert sum("made with other data" in line or "another configuration" in line for line in lines) == 8, lines
    assert not any("finished earlier" in line for line in lines)
    assert [r["data_fingerprint"] for r in second] != [r["data_fingerprint"] for r in first]
    assert second[0]["test_loss"] != first[0]["test_loss"]
    assert analyze.load_sweep(wd.root)["markov"][0]["data_fingerprint"] == second[0]["data_fingerprint"]


def test_a_checkpoint_of_other_data_is_not_resumed(tokenized_workdir, tmp_path):
    from musicscale.train import train

    tokens, meta = sweep.load_tokens(tokenized_workdir, "markov")
    cfg = TrainConfig(**{k: KW[k] for k in RUN_KEYS}, arch="lstm",
                      size="micro", threads=1, token_budget=8 * 8 * 16)
    lines: list[str] = []
    a = train(cfg, tokens, meta["vocab_size"], tmp_path / "a", data_fingerprint="one", log=lines.append)
    b = train(cfg, tokens, meta["vocab_size"], tmp_path / "a", data_fingerprint="two", log=lines.append)
    assert lines == ["a: the checkpoint was made with another data; training from scratch"]
    assert a["curve"] == b["curve"]  # trained again from step 0 on the same streams


def test_samples_of_other_weights_are_not_reused(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"inputs_fingerprint": "old", "n": 4})
    lines: list[str] = []
    assert generated.cached_summary(path, "new", lines.append) is None and "other weights" in lines[0]
    assert generated.cached_summary(path, "old", lines.append)["n"] == 4
    path.write_bytes(b"\x00\xff\xfe")
    assert generated.cached_summary(path, "old", lines.append) is None
    assert (tmp_path / "summary.json.corrupt").exists() and "not valid JSON" in lines[-1]


# 3. a failed or killed book build keeps the last good report
def test_failed_book_build_keeps_the_last_good_report(tmp_path, monkeypatch):
    good = tmp_path / "_build" / "html" / "index.html"
    good.parent.mkdir(parents=True)
    good.write_text("last good report")
    (tmp_path / "._build.partial-leftover").mkdir()  # what a killed build leaves

    def failing_build(cmd, check):
        out = cmd[cmd.index("--path-output") + 1]
        (pipeline.Path(out) / "_build" / "html").mkdir(parents=True)
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(pipeline.subprocess, "run", failing_build)
    with pytest.raises(subprocess.CalledProcessError):
        pipeline.build_book(tmp_path)
    assert good.read_text() == "last good report"
    assert [p.name for p in tmp_path.iterdir()] == ["_build"]  # no temporary folder is left behind

    def working_build(cmd, check):
        out = pipeline.Path(cmd[cmd.index("--path-output") + 1]) / "_build" / "html"
        out.mkdir(parents=True)
        (out / "index.html").write_text("new report")

    monkeypatch.setattr(pipeline.subprocess, "run", working_build)
    assert pipeline.build_book(tmp_path).read_text() == "new report"
    assert [p.name for p in tmp_path.iterdir()] == ["_build"]


# 4. an interrupted sweep never lists a dataset without runs, and the analysis names that dataset
def test_interrupted_sweep_leaves_no_empty_dataset_and_analysis_names_it(tokenized_workdir, monkeypatch):
    wd = tokenized_workdir
    shutil.copytree(wd.tokens_dir("markov"), wd.tokens_dir("other"))
    real = sweep.run_one

    def killed_on_other(workdir, spec, progress=False):
        if spec.dataset == "other" and spec.kind == "main":  # killed after the rate search, during the runs
            wd.run_dir("other", spec.name).mkdir(parents=True, exist_ok=True)
            raise KeyboardInterrupt
        return real(workdir, spec, progress)

    monkeypatch.setattr(sweep, "run_one", killed_on_other)
    with pytest.raises(KeyboardInterrupt):
        train.run(wd.root, log=None, **KW)
    assert len(read_json(wd.sweep_results("markov"))["runs"]) == 2
    assert not wd.sweep_results("other").exists()
    with pytest.raises(analyze.NoRunsError, match=r"dataset 'other' has no finished run.*03_train"):
        analyze.run(wd.root, n_boot=0)
    with pytest.raises(analyze.NoRunsError, match=r"dataset 'other'"):
        generate.run(wd.root)


# 5. a corrupt artifact is named, moved aside, and its run trained again
@pytest.mark.parametrize("damage", ["checkpoint.pt", "model.pt", "result.json"])
def test_corrupt_artifacts_are_moved_aside_and_the_run_retrained(tokenized_workdir, damage):
    wd = tokenized_workdir
    kw = {**KW, "archs": ["lstm"]}
    (first,) = train.run(wd.root, log=None, **kw)["runs"]
    path = wd.run_dir("markov", first["run"]) / damage
    data = path.read_bytes()
    path.write_bytes(b"\x89\xff\x00binary" if damage == "result.json" else data[: len(data) // 2])
    if damage == "checkpoint.pt":
        (wd.run_dir("markov", first["run"]) / "result.json").unlink()  # as if killed before the result was written
    lines: list[str] = []
    (again,) = train.run(wd.root, log=lines.append, **kw)["runs"]
    assert (path.parent / (damage + ".corrupt")).exists()
    assert any(str(path) in line and "moved aside" in line for line in lines), lines
    # bit-identical: retrained from scratch in this process, the same computation as the first run
    assert again["test_loss"] == first["test_loss"] and again["curve"] == first["curve"]
    if damage == "model.pt":
        with pytest.raises(ValueError, match=r"model\.pt.*cannot be read.*03_train"):
            path.write_bytes(b"PK\x03\x04 truncated")
            load_model(wd.root, "markov", first["run"])


# 6. list parameters are lists: a JSON string is parsed, anything else is named
def test_list_parameters_are_checked():
    assert as_list("sizes", '["tiny", "small"]') == ["tiny", "small"]
    with pytest.raises(ValueError, match=r"sizes must be a list, got the string 'tiny'.*-y 'sizes: \[tiny, small\]'"):
        as_list("sizes", "tiny")
    with pytest.raises(ValueError, match=r"archs: unknown value\(s\) \['gru'\]"):
        as_list("archs", ["gru"], allowed=["transformer", "lstm"])
    with pytest.raises(ValueError, match="data_budgets: every entry must be a int"):
        as_list("data_budgets", ["1000"], item=int)


def test_train_stage_accepts_papermills_string_lists(tokenized_workdir):
    results = train.run(tokenized_workdir.root, log=None, **{**KW, "archs": '["lstm"]', "sizes": '["micro"]'})
    assert [r["run"] for r in results["runs"]] == ["lstm-micro-s0-t1024"]


# 7. unknown parameters are rejected by the runner, naming the stage and the allowed names
def test_unknown_parameters_are_rejected(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"03_train: unknown parameter\(s\) \['lr'\]; .*declares .*'min_steps'"):
        pipeline.check_parameters({"03_train": {"lr": 1e-3, "tokens_per_param": 10}})
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--profile", "smoke", "--workdir", str(tmp_path / "w"), "-p", "03_train.lr=1e-3"])
    assert exit_info.value.code == 2 and "unknown parameter(s) ['lr']" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()  # nothing ran


# 8. corpus failures say what was dropped and why; UTF-16 and UTF-8 with a BOM are read
def test_corpus_failures_say_why(tmp_path):
    (tmp_path / "garbage.abc").write_bytes(bytes(range(128, 256)) * 4)
    (tmp_path / "nokey.abc").write_text("X:1\nT:a\n|:GABc:|\n\nX:2\nT:b\n|:cBAG:|\n")
    with pytest.raises(ValueError, match=r"0 usable tunes.*garbage\.abc: not UTF-8 or UTF-16 text.*nokey\.abc: "
                                         r"2 tunes without a K: line"):
        data.run(tmp_path / "w", corpus=str(tmp_path / "*.abc"))
    assert not (tmp_path / "w" / "data").exists() or not any((tmp_path / "w" / "data").iterdir())
    tunes = "\n\n".join(f"X:{i}\nM:4/4\nK:G\n|:{'GABc dedB|' * (i + 1)}:|" for i in range(4))
    (tmp_path / "utf16.abc").write_bytes(tunes.encode("utf-16"))
    (tmp_path / "bom8.abc").write_bytes(b"\xef\xbb\xbf" + tunes.replace("GABc", "ABcd").encode())
    report = data.prepare_dataset(tmp_path / "w", [str(tmp_path / "utf16.abc"), str(tmp_path / "bom8.abc")], seed=0)
    assert report["kept"] == 8 and report["dropped"] == {}


# 9. context_length is checked against every split of every dataset before any run trains
def test_context_length_is_checked_before_training(tokenized_workdir, monkeypatch):
    wd = tokenized_workdir
    shutil.copytree(wd.tokens_dir("markov"), wd.tokens_dir("short"))
    np.save(wd.tokens("short", "val"), np.zeros(20, dtype=np.uint8))
    monkeypatch.setattr(sweep, "run_one", lambda *a, **k: pytest.fail("trained before checking"))
    with pytest.raises(ValueError, match=r"context_length=32 is too long for dataset 'short': its val split has 20"):
        train.run(wd.root, log=None, **{**KW, "context_length": 32})


# 10. a workdir under a file is named as such; temporary files of a killed write are removed
def test_workdir_under_a_file_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"workdir=.*file/x': .*file is a file, not a folder"):
        train.run(tmp_path / "file" / "x", archs=["lstm"], sizes=["micro"])
    with pytest.raises(SystemExit):
        main(["run", "--profile", "smoke", "--workdir", str(tmp_path / "file" / "x")])


def test_partial_files_of_a_killed_write_are_removed(tmp_path):
    target = tmp_path / "stages" / "04_analyze.ipynb"
    killed = ("import os, sys; from musicscale.workdir import atomic_path; "
              "tmp = atomic_path(sys.argv[1], suffix='.ipynb').__enter__(); tmp.write_text('half'); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", killed, str(target)], timeout=120).returncode == 9
    (left,) = target.parent.iterdir()
    assert left.name.startswith(".04_analyze.ipynb.partial-") and not target.exists()  # never half-written
    assert remove_partial_files(tmp_path) == [left] and not any(target.parent.iterdir())


# 11. two user corpora get distinct names
def test_two_user_corpora_get_distinct_names(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder / "tunes").mkdir(parents=True)
        body = "GABc dedB|" if folder == "a" else "cdef gfed|"
        text = "\n\n".join(f"X:{i}\nM:4/4\nK:G\n|:{body * (i + 1)}:|" for i in range(5))
        (tmp_path / folder / "tunes" / "set.abc").write_text(text)
    sources = [str(tmp_path / "a" / "tunes" / "*.abc"), str(tmp_path / "b" / "tunes" / "*.abc")]
    reports = data.run(tmp_path / "w", corpus=sources)
    names = [r["dataset"] for r in reports]
    assert len(set(names)) == 2 and all(n.startswith("tunes-") for n in names)
    assert data.dataset_names(["/x/irish/*.abc", "reels.abc", "music21"]) == ["irish", "reels", "music21"]
