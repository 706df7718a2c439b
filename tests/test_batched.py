"""The grouped steps of ``benchmarks/batched.py`` against their members run alone: the benchmark's speed
figures compare like with like only if a grouped step computes what each member's own step computes."""

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from musicscale.train import TrainConfig

spec = importlib.util.spec_from_file_location("batched", Path(__file__).parents[1] / "benchmarks" / "batched.py")
batched = importlib.util.module_from_spec(spec)
spec.loader.exec_module(batched)

CFG = TrainConfig(context_length=32, batch_size=4, device="cpu", token_budget=4 * 32 * 64, schedule="cosine")


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize(("arch", "variant"), [("transformer", "vmap"), ("lstm", "packed")])
def test_grouped_members_equal_solo_runs(arch, variant):
    torch.set_num_threads(1)
    cfg = replace(CFG, arch=arch)
    data = torch.randint(0, batched.VOCAB, (5_000,), generator=torch.Generator().manual_seed(0))
    group = batched.group_variants(arch, "micro", cfg, 3)[variant]
    check = batched.identity(group, batched.member_models(arch, "micro", cfg, 3), cfg, data)
    # the losses to the last bit; logits and gradients within what a reordered sum can change
    assert check["loss"] == 0.0
    assert check["logits"] <= 1e-6 and check["grad"] <= 1e-6
    if variant == "vmap":  # only layer norm's batching rule sums in another order
        assert all(".ln" in name or "ln_" in name or "norm" in name for name in check["grads_differ"])
