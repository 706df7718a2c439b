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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_grouped_against_solo(arch, variant)
    finally:
        torch.set_num_threads(threads)  # the tests after this one keep the machine's threads


def _check_grouped_against_solo(arch: str, variant: str) -> None:
    cfg = replace(CFG, arch=arch)
    data = torch.randint(0, batched.VOCAB, (5_000,), generator=torch.Generator().manual_seed(0))

    def measure() -> dict:  # a fresh group and fresh members: gradients accumulate across backward passes
        group = batched.group_variants(arch, "micro", cfg, 3)[variant]
        return batched.identity(group, batched.member_models(arch, "micro", cfg, 3), cfg, data)

    check = measure()
    # A grouped program may sum in another order than a member's own (vmap's matmul is a bmm, layer norm's
    # batching rule reduces differently): which last bits change is the CPU's business, so the claim is a
    # tolerance. float32 values of order 1 round at ~1e-7; a wrong member (another's weights, a mixed-up batch)
    # is off by ~1e-2, so 1e-5 tells the two apart on any CPU.
    assert check["loss"] <= 1e-5 and check["logits"] <= 1e-5 and check["grad"] <= 1e-5
    # The same computation run twice is the same to the last bit, on any machine.
    assert measure() == check
