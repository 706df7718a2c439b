import pytest

from musicscale import sweep
from musicscale.sweep import collect_results, grid, run_sweep
from musicscale.train import TrainConfig
from musicscale.workdir import read_json


def test_sweep_skips_finished_runs(tokenized_workdir, monkeypatch):
    base = TrainConfig(token_budget=4 * 8 * 16, context_length=16, batch_size=8, n_evals=2, eval_tokens=512,
                       threads=1, device="cpu")
    specs = grid(["markov"], ["transformer", "lstm"], ["micro"], [0], base)
    first = run_sweep(tokenized_workdir.root, specs, log=None)
    assert [r["run"] for r in first] == ["transformer-micro-s0-t512", "lstm-micro-s0-t512"]
    saved = read_json(tokenized_workdir.sweep_results("markov"))
    assert len(saved["runs"]) == 2

    calls = []
    import musicscale.sweep as sweep_module

    real = sweep_module.run_one
    monkeypatch.setattr(sweep_module, "run_one", lambda *a, **k: calls.append(a[1].name) or real(*a, **k))
    more = grid(["markov"], ["transformer", "lstm"], ["micro"], [0, 1], base)
    second = run_sweep(tokenized_workdir.root, more, log=None)
    assert calls == ["transformer-micro-s1-t512", "lstm-micro-s1-t512"]  # only the new seed trained
    assert second[0] == first[0]
    assert len(collect_results(tokenized_workdir.root, "markov")) == 4

    # a changed configuration is not mistaken for a finished run
    calls.clear()
    run_sweep(tokenized_workdir.root, grid(["markov"], ["lstm"], ["micro"], [0], base.__class__(
        **{**base.__dict__, "lr": 1e-3})), log=None)
    assert calls == ["lstm-micro-s0-t512"]


def test_grid_rejects_unknown_names():
    with pytest.raises(ValueError, match="sizes: unknown transformer size 'giant'"):
        grid(["d"], ["transformer"], ["giant"], [0], TrainConfig())


def test_dask_cluster_gives_the_same_runs_as_in_process(tokenized_workdir, tmp_path):
    import shutil

    from musicscale.workdir import Workdir

    other = Workdir(tmp_path / "other")
    shutil.copytree(tokenized_workdir.tokens_dir("markov"), other.tokens_dir("markov"))
    kwargs = dict(archs=["transformer", "lstm"], sizes=["micro"], token_budget=4 * 8 * 16, context_length=16,
                  batch_size=8, n_evals=2, eval_tokens=512, device="cpu", log=None)
    local = sweep.train_stage(tokenized_workdir.root, **kwargs)
    on_dask = sweep.train_stage(other.root, n_workers=2, **kwargs)
    assert [r["run"] for r in on_dask] == [r["run"] for r in local]
    assert [r["test_loss"] for r in on_dask] == [r["test_loss"] for r in local]  # one thread each: identical
    assert len(read_json(other.sweep_results("markov"))["runs"]) == 2
