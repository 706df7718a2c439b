"""A third model family, registered in one place, goes through every stage: nothing else names a family."""

import pytest
import torch
from torch import nn
from toy_data import markov_tunes

from musicscale import models, plots
from musicscale.corpus import write_split
from musicscale.models import Architecture, LSTMConfig, register
from musicscale.stages import analyze, generate, train
from musicscale.workdir import read_json


class GRU(nn.Module):
    """Embedding -> ``torch.nn.GRU`` -> linear head: a family the project has never heard of."""

    carries_state = True
    cache_bounded = False

    def __init__(self, cfg: LSTMConfig, vocab_size: int, context_length: int):
        super().__init__()
        self.cfg, self.vocab_size, self.context_length = cfg, vocab_size, context_length
        self.emb = nn.Embedding(vocab_size, cfg.d_embed)
        self.gru = nn.GRU(cfg.d_embed, cfg.d_hidden, num_layers=cfg.n_layer, batch_first=True)
        self.head = nn.Linear(cfg.d_hidden, vocab_size)

    def forward(self, idx: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        state = cache.get("state") if cache is not None else None
        out, state = self.gru(self.emb(idx), state)
        if cache is not None:
            cache["state"], cache["length"] = state, cache.get("length", 0) + idx.shape[1]
        return self.head(out)

    def embedding_parameters(self) -> int:
        return self.emb.weight.numel() + self.head.weight.numel() + self.head.bias.numel()

    def flops_per_token(self) -> int:
        return 3 * 2 * (models.non_embedding_parameters(self) + self.cfg.d_hidden * self.vocab_size)


@pytest.fixture
def gru_family():
    sizes = {"a": LSTMConfig(4, 8, 1), "b": LSTMConfig(8, 16, 1), "c": LSTMConfig(12, 32, 1)}
    register(Architecture("gru", GRU, sizes, lr=1e-2, color="tab:green", label="GRU"))
    yield "gru"
    del models.ARCHITECTURES["gru"]


@pytest.fixture
def text_workdir(tokenized_workdir):
    """The tokenized dataset with its text splits too (the generate stage scores real tunes)."""
    for split, n, seed in (("train", 300, 0), ("val", 40, 1), ("test", 40, 2)):  # as tokenized_workdir draws them
        write_split(tokenized_workdir.split_text("markov", split), markov_tunes(n, seed))
    return tokenized_workdir


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_registered_family_goes_through_every_stage(gru_family, text_workdir, tmp_path):
    wd = text_workdir
    study = {"min_steps": 16, "max_steps": 16, "lr_factors": [0.5, 1.0, 2.0], "lr_probe_branches": 1,
             "lr_max_extensions": 0, "extra_seeds": 0, "schedule_check": None}
    # the GRU's own size names: plan, probe and train them like any family's
    out = train.run(wd.root, archs=["gru"], sizes=["a", "b", "c"], **study, context_length=16, batch_size=8,
                    n_branches=3, eval_tokens=512, device="cpu", log=None)
    assert {r["arch"] for r in out["runs"]} == {"gru"} and len(out["runs"]) == 3
    assert all(s["rates"] == [5e-3, 1e-2, 2e-2] for s in out["lr_search"])  # its registered rate is the centre

    results = analyze.run(wd.root, n_boot=20, n_workers=1)
    ds = results["datasets"]["markov"]
    assert set(ds["joint"]) == {"gru"} and "alpha" in ds["joint"]["gru"]  # not dropped
    assert "gru" in analyze.joint_table(results).data
    for make in (plots.scaling_laws, plots.training_curves, plots.joint_law, plots.compute_frontier):
        plots.save(make(results), tmp_path / f"{make.__name__}.png")
        assert (tmp_path / f"{make.__name__}.png").stat().st_size > 5_000

    summaries = generate.run(wd.root, n_samples=4, max_new_tokens=60, device="cpu", n_workers=1, log=None)
    assert sorted(s["size"] for s in summaries if s["arch"] == "gru") == ["a", "b", "c"]
    assert read_json(wd.generated_dir("markov", out["runs"][0]["run"]) / "summary.json")["arch"] == "gru"
    plots.save(plots.validity_vs_size(summaries), tmp_path / "validity.png")
