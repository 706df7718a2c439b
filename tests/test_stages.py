"""Each stage stops at once, naming the missing artifact and the notebook that makes it; bad notebook
parameters are named with the allowed values."""

import pytest

from musicscale import pipeline
from musicscale.stages import data, generate, tokenize, train
from musicscale.workdir import Workdir, read_json


def test_stages_name_the_missing_input_and_its_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.*01_data\.ipynb"):
        tokenize.run(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"tokens.*02_tokenize\.ipynb"):
        train.run(tmp_path, archs=["lstm"], sizes=["micro"])
    with pytest.raises(FileNotFoundError, match=r"runs.*03_train\.ipynb"):
        generate.run(tmp_path)


def test_bad_parameters_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"corpus: no files match the glob '/nowhere/\*\.abc'"):
        data.run(tmp_path, corpus="/nowhere/*.abc")
    with pytest.raises(ValueError, match="n_synthetic_eval_tunes"):
        data.run(tmp_path, corpus="synthetic", n_synthetic_eval_tunes=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        generate.Params(temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        generate.Params(top_k=0)
    with pytest.raises(ValueError, match=r"profile: unknown profile 'huge'; allowed: \['smoke', 'default', 'gpu'\]"):
        pipeline.stage_parameters("huge", tmp_path)
    with pytest.raises(ValueError, match="overrides: unknown stage"):
        pipeline.stage_parameters("smoke", tmp_path, overrides={"06_publish": {}})


def test_data_and_tokenize_stages_on_user_files(tmp_path):
    abc = tmp_path / "tunes"
    abc.mkdir()
    tunes = "\n\n".join(f"X:{i}\nT:Tune {i}\nM:4/4\nL:1/8\nK:G\n|:{'GABc dedB|' * (i % 4 + 1)}:|" for i in range(12))
    (abc / "a.abc").write_text(tunes)
    wd = Workdir(tmp_path / "work")
    report = data.prepare_dataset(wd.root, str(abc / "*.abc"), seed=3)
    assert report["dataset"] == "tunes" and report["duplicates_removed"] == 8  # 4 distinct bodies
    assert sum(s["tunes"] for s in report["splits"].values()) == 4
    assert read_json(wd.corpus_report("tunes"))["seed"] == 3
    (meta,) = tokenize.run(wd.root)
    assert meta["dataset"] == "tunes" and meta["vocab_size"] == len(meta["vocabulary"])
    assert all(m["tokens"] == m["predicted_tokens"] + 1 for m in meta["splits"].values())
    assert "T:" not in data.first_tune(wd.root, "tunes")
