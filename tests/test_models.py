"""The model families: the seed project's shapes, parameter counts checked by hand, causal forward passes, FLOP
counts, the registry's variants (a learned position table, none, one head), ALiBi's bias and its cache, and errors
that name unknown names."""

import pytest
import torch

from musicscale.models import (
    CPU_SIZES,
    LSTM,
    SIZE_GRIDS,
    Transformer,
    alibi_bias,
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
    assert total_parameters(model) == non_embedding_parameters(model) + V * 16  # tied head; ALiBi has no table
    learned = build_model("transformer", "tiny", V, T, variant="learned-positions")
    assert total_parameters(learned) == non_embedding_parameters(learned) + V * 16 + T * 16
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
    learned = build_model("transformer", "tiny", 20, 16, variant="learned-positions").eval()
    none = build_model("transformer", "tiny", 20, 16, variant="no-positions").eval()
    one = build_model("transformer", "tiny", 20, 16, variant="one-head")
    assert base.cfg.positions == "alibi" and base.pos_emb is None and none.pos_emb is None
    # the position table is an embedding: N is the same, the total is larger by exactly the table
    assert describe("transformer", "tiny", 20, 16, "learned-positions")["params_non_embedding"] == \
        describe("transformer", "tiny", 20, 16)["params_non_embedding"]
    assert sum(p.numel() for p in learned.parameters()) - sum(p.numel() for p in base.parameters()) == 16 * 16
    assert one.blocks[0].attn.n_head == 1 and base.blocks[0].attn.n_head == 2
    x = torch.randint(0, 20, (2, 16))
    x2 = x.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 20
    for model in (none, learned):
        assert torch.allclose(model(x2)[:, :10], model(x)[:, :10], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"variant: transformer has no variant 'rotary'; allowed: \['learned-pos"):
        build_model("transformer", "tiny", 20, 16, variant="rotary")
    with pytest.raises(ValueError, match="variant: lstm has no variant"):
        build_model("lstm", "tiny", 20, 16, variant="one-head")


def test_alibi_penalises_distance_by_one_slope_per_head_and_masks_the_future():
    bias = alibi_bias(2, 0, 4)[0]  # (1, H, T, T): the batch axis picks the fused attention kernel
    assert alibi_bias(2, 0, 4).shape == (1, 2, 4, 4)
    # Press et al. 2022: slopes 2^-8(h+1)/H, here 1/16 and 1/256; the score of key j for query i is -slope (i - j)
    assert torch.allclose(bias[0, 3, :], torch.tensor([-3 / 16, -2 / 16, -1 / 16, 0.0]))
    assert torch.allclose(bias[1, 2, :3], torch.tensor([-2 / 256, -1 / 256, 0.0]))
    assert torch.isinf(bias[:, 0, 1:]).all() and (bias[:, 0, 1:] < 0).all()
    # a continuation (queries 3 and 4 after 3 cached tokens) sees the rows of the whole sequence's bias
    assert torch.equal(alibi_bias(2, 3, 2), alibi_bias(2, 0, 5)[:, :, 3:5, :])


def test_a_cached_alibi_forward_gives_the_logits_of_the_whole_sequence():
    torch.manual_seed(0)
    model = build_model("transformer", "tiny", 20, 16).eval()
    x = torch.randint(0, 20, (2, 12))
    cache: dict = {}
    with torch.no_grad():
        full = model(x)
        steps = [model(x[:, :5], cache)] + [model(x[:, t:t + 1], cache) for t in range(5, 12)]
    # the same sums in another order: equal to rounding (logits ~0.3), far from any position error (~1e-2)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
