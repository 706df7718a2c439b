"""The model families: the seed project's shapes, parameter counts checked by hand, causal forward passes, FLOP
counts, the registry's variants (no position table, one head) and errors that name unknown names."""

import pytest
import torch

from musicscale.models import (
    CPU_SIZES,
    LSTM,
    SIZE_GRIDS,
    Transformer,
    build_model,
    describe,
    non_embedding_parameters,
    size_grid_table,
    total_parameters,
)


def test_seed_models_have_the_seed_shapes():
    assert (SIZE_GRIDS["transformer"]["tiny"].d_model, SIZE_GRIDS["transformer"]["tiny"].n_head) == (16, 2)
    assert SIZE_GRIDS["transformer"]["medium"] == type(SIZE_GRIDS["transformer"]["medium"])(48, 4, 3)
    assert (SIZE_GRIDS["lstm"]["small"].d_embed, SIZE_GRIDS["lstm"]["small"].d_hidden,
            SIZE_GRIDS["lstm"]["small"].n_layer) == (32, 64, 2)


def test_parameter_counts_by_hand():
    V, T = 50, 64
    # transformer d=16, 2 layers: per layer qkv 16*48+48, proj 16*16+16, mlp 16*64+64 + 64*16+16, 2 LN 4*16
    per_layer = (16 * 48 + 48) + (16 * 16 + 16) + (16 * 64 + 64) + (64 * 16 + 16) + 4 * 16
    model = build_model("transformer", "tiny", V, T)
    assert non_embedding_parameters(model) == 2 * per_layer + 2 * 16  # + final LayerNorm
    assert total_parameters(model) == non_embedding_parameters(model) + V * 16 + T * 16  # tied head
    # LSTM 16 -> 32, one layer: 4 gates x (W_ih 32x16 + W_hh 32x32 + two biases of 32)
    lstm = build_model("lstm", "tiny", V, T)
    assert non_embedding_parameters(lstm) == 4 * (32 * 16 + 32 * 32 + 2 * 32)
    assert total_parameters(lstm) == non_embedding_parameters(lstm) + V * 16 + 32 * V + V
    assert total_parameters(build_model("lstm", "small", 100, T)) == 68068  # the original README's note


def test_grid_spans_two_orders_of_magnitude():
    for arch in SIZE_GRIDS:
        ns = [r["params_non_embedding"] for r in size_grid_table((arch,), CPU_SIZES)]
        assert len(ns) >= 6 and ns == sorted(ns)
        assert ns[0] < 2500 and ns[-1] > 400_000 and ns[-1] / ns[0] > 100


def test_forward_shapes_and_causality():
    for arch in SIZE_GRIDS:
        model = build_model(arch, "tiny", 20, 16).eval()
        x = torch.randint(0, 20, (3, 16))
        logits = model(x)
        assert logits.shape == (3, 16, 20)
        x2 = x.clone()
        x2[:, 10:] = (x2[:, 10:] + 1) % 20  # changing the future must not change the past
        # another input, so no bit-identity is promised; logits are ~0.3 and the changed future moves its own
        # positions by ~0.2, so 1e-5 is far above rounding and far below any leak
        assert torch.allclose(model(x2)[:, :10], logits[:, :10], atol=1e-5, rtol=0)


def test_flops_and_describe():
    d = describe("transformer", "small", 100, 128)
    assert d["flops_per_token"] > 6 * d["params_non_embedding"]
    assert isinstance(build_model("lstm", "micro", 10, 8), LSTM)
    assert isinstance(build_model("transformer", "micro", 10, 8), Transformer)


def test_unknown_names_are_named():
    with pytest.raises(ValueError, match="archs: unknown architecture 'gru'"):
        build_model("gru", "tiny", 10, 8)
    with pytest.raises(ValueError, match=r"sizes: unknown lstm size 'huge'.*allowed"):
        build_model("lstm", "huge", 10, 8)
    with pytest.raises(ValueError, match="exceeds context_length"):
        build_model("transformer", "micro", 10, 8)(torch.zeros(1, 9, dtype=torch.long))


def test_the_transformer_variants_change_one_thing_and_stay_causal():
    base = build_model("transformer", "tiny", 20, 16)
    none = build_model("transformer", "tiny", 20, 16, variant="no-positions").eval()
    one = build_model("transformer", "tiny", 20, 16, variant="one-head")
    assert none.pos_emb is None and base.pos_emb is not None
    # the position table is an embedding: N is the same, the total is smaller by exactly the table
    assert describe("transformer", "tiny", 20, 16, "no-positions")["params_non_embedding"] == \
        describe("transformer", "tiny", 20, 16)["params_non_embedding"]
    assert sum(p.numel() for p in base.parameters()) - sum(p.numel() for p in none.parameters()) == 16 * 16
    assert one.blocks[0].attn.n_head == 1 and base.blocks[0].attn.n_head == 2
    x = torch.randint(0, 20, (2, 16))
    x2 = x.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 20
    assert torch.allclose(none(x2)[:, :10], none(x)[:, :10], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"variant: transformer has no variant 'rotary'; allowed: \['no-positions'"):
        build_model("transformer", "tiny", 20, 16, variant="rotary")
    with pytest.raises(ValueError, match="variant: lstm has no variant"):
        build_model("lstm", "tiny", 20, 16, variant="one-head")
