"""The model families, their size grids, and the registry that holds everything specific to a family.

Every model maps ``idx`` (a batch of token ids, shape ``(B, T)``) to next-token logits ``(B, T, V)``, carries
``context_length``, and says on itself how it is evaluated (``carries_state``) and sampled (``cache_bounded``),
so the trainer, the evaluation and the sampler never branch on a family (:class:`LanguageModel` is that
contract). What the rest of the project needs
to know about a family (its class, named sizes, the centre of its learning-rate search, its colour and label
in the figures) is one :class:`Architecture` entry in ``ARCHITECTURES``: :func:`register` adds a family.

N, the size a scaling law is fitted against, is the **non-embedding** parameter count (Kaplan et al.
2020): every parameter except the vocabulary matrices (token embedding, LSTM output head) and the
position embedding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

import torch
import torch.nn as nn
from torch.nn import functional as F


class LanguageModel(Protocol):
    """What every family's model provides, and all that the trainer, the evaluation and the sampler use of it."""

    context_length: int  # the longest input it takes
    carries_state: bool  # evaluation: True runs each tune in one pass (recurrent); False slides windows over it
    cache_bounded: bool  # sampling: True when its cache holds at most context_length positions (then it restarts)

    def __call__(self, idx: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """Next-token logits ``(B, T, V)`` for ``idx`` ``(B, T)``; with ``cache`` (sampling) it continues what the
        cache has seen."""

    def embedding_parameters(self) -> int:
        """The parameters N leaves out (vocabulary and position matrices)."""

    def flops_per_token(self) -> int:
        """Training FLOPs per token."""


# How a Transformer knows where a token is. "alibi" (Press et al. 2022) adds to every attention score a fixed
# penalty proportional to the distance between query and key, one slope per head: a model sees "recent characters
# matter" from its first step. With a learned table (GPT-2's) our small models first spend ~0.5 M tokens on a plateau
# near the bigram loss before they learn to look at the previous characters (tiny, synthetic, 1 M tokens: 1.56
# nats/char learned, 1.29 ALiBi); the ablation trains the learned table and none as its variants. torch 2.13 has no
# trainable rotary embedding (torch.onnx.ops.rotary_embedding has no autograd formula). A causal decoder can also
# infer position without any (Haviv et al. 2022).
POSITIONS = ("alibi", "learned", "none")


def alibi_bias(n_head: int, start: int, T: int, device: torch.device | None = None) -> torch.Tensor:
    """ALiBi's additive attention bias ``(1, n_head, T, start + T)`` for queries at positions ``start .. start + T - 1``
    over keys ``0 .. start + T - 1``: ``-slope_h * (i - j)`` for a key at or before its query, -inf after it (causal).
    The slopes are the geometric sequence ``2^(-8 (h + 1) / n_head)`` of Press et al. 2022. The leading batch axis
    is what lets scaled_dot_product_attention take its fused CPU kernel (a 3-d mask falls back to the math path:
    ~5x slower attention, medium at batch 64 x 256 on one core)."""
    q = torch.arange(start, start + T, device=device)
    distance = (q[:, None] - torch.arange(start + T, device=device)[None, :]).float()  # (T, start + T)
    slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / n_head) for h in range(n_head)], device=device)
    return (-slopes[None, :, None, None] * distance).masked_fill(distance < 0, float("-inf"))  # (1, H, T, start + T)


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 32
    n_head: int = 2
    n_layer: int = 2
    dropout: float = 0.0
    positions: str = "alibi"  # "alibi" (distance penalties), "learned" (a table of context_length vectors), "none"

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")

    def shape(self) -> str:
        return f"d={self.d_model}, heads={self.n_head}, layers={self.n_layer}"


@dataclass(frozen=True)
class LSTMConfig:
    d_embed: int = 32
    d_hidden: int = 64
    n_layer: int = 2
    dropout: float = 0.0

    def shape(self) -> str:
        return f"embed={self.d_embed}, hidden={self.d_hidden}, layers={self.n_layer}"


# The named grids. tiny/small/medium are the original project's six models; the rest extend each grid
# to span more than two orders of magnitude of N on a CPU (about 1.5k to 0.5M), and the "gpu" sizes
# go further for a GPU run.
TRANSFORMER_SIZES: dict[str, TransformerConfig] = {
    "nano": TransformerConfig(4, 1, 2),
    "micro": TransformerConfig(8, 2, 2),
    "mini": TransformerConfig(12, 2, 2),
    "tiny": TransformerConfig(16, 2, 2),
    "small": TransformerConfig(32, 2, 2),
    "medium": TransformerConfig(48, 4, 3),
    "large": TransformerConfig(64, 4, 4),
    "xl": TransformerConfig(96, 4, 4),
    "gpu-s": TransformerConfig(128, 4, 6),
    "gpu-m": TransformerConfig(256, 8, 6),
    "gpu-l": TransformerConfig(384, 8, 8),
}
LSTM_SIZES: dict[str, LSTMConfig] = {
    "nano": LSTMConfig(4, 8, 1),
    "micro": LSTMConfig(8, 16, 1),
    "mini": LSTMConfig(12, 24, 1),
    "tiny": LSTMConfig(16, 32, 1),
    "small": LSTMConfig(32, 64, 2),
    "medium": LSTMConfig(48, 96, 2),
    "large": LSTMConfig(64, 160, 2),
    "xl": LSTMConfig(80, 192, 2),
    "gpu-s": LSTMConfig(128, 384, 2),
    "gpu-m": LSTMConfig(256, 768, 2),
    "gpu-l": LSTMConfig(384, 1152, 3),
}
CPU_SIZES = ("nano", "micro", "mini", "tiny", "small", "medium", "large", "xl")


@dataclass(frozen=True)
class Architecture:
    """Everything specific to one model family that other modules need."""

    name: str
    model: type  # a LanguageModel, built as model(size_config, vocab_size, context_length)
    sizes: dict[str, object] = field(repr=False)  # named size configs (each with a ``shape()`` for tables)
    lr: float  # the centre of the per-size learning-rate search, and the rate of a run given none
    color: str  # its colour in every figure
    label: str  # how figures and tables name it
    # named changes to its size configs that the ablation trains (design.ablation_specs): name -> (fields, what)
    variants: dict[str, tuple[dict, str]] = field(default_factory=dict, repr=False)
    budget_factor: float = 1.0  # its runs' budgets: this times the study's tokens_per_param (design.token_budget)
    groupable: bool = False  # its forward batches under torch.func.vmap, so runs of one shape train as one (grouped.py)
    # the sizes that train faster under bf16 autocast than in fp32 on a GPU (benchmarks/throughput.py, one H200,
    # batch 64 x 256: README); on a GPU they train in bf16 unless the train stage's precision says otherwise
    bf16_sizes: tuple[str, ...] = ()

    def size_config(self, size: str, variant: str | None = None):
        """The config of a named size, with a named variant's changes applied."""
        cfg = self.sizes[size]
        if variant is None:
            return cfg
        if variant not in self.variants:
            raise ValueError(f"variant: {self.name} has no variant {variant!r}; allowed: {list(self.variants)}")
        return replace(cfg, **self.variants[variant][0])


ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Add a model family (the two below are registered at import; a test registers a third)."""
    ARCHITECTURES[arch.name] = arch
    return arch


def architecture(name: str) -> Architecture:
    """The registry entry of ``name``; ValueError naming the registered families otherwise."""
    check_arch_size(name)
    return ARCHITECTURES[name]


class _SizeGrids(Mapping):
    """``SIZE_GRIDS[arch][size]``: a live view of the registry's size grids."""

    def __getitem__(self, arch: str) -> dict:
        return ARCHITECTURES[arch].sizes

    def __iter__(self) -> Iterator[str]:
        return iter(ARCHITECTURES)

    def __len__(self) -> int:
        return len(ARCHITECTURES)


SIZE_GRIDS: Mapping[str, dict] = _SizeGrids()


def check_arch_size(arch: str, size: str | None = None) -> None:
    """Raise ValueError naming the parameter and the allowed values for an unknown arch or size."""
    if arch not in SIZE_GRIDS:
        raise ValueError(f"archs: unknown architecture {arch!r}; allowed: {list(SIZE_GRIDS)}")
    if size is not None and size not in SIZE_GRIDS[arch]:
        raise ValueError(f"sizes: unknown {arch} size {size!r}; allowed: {list(SIZE_GRIDS[arch])}")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, cache: dict | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``cache`` (sampling only) holds this layer's keys and values of the tokens seen so far; ``bias`` (ALiBi's,
        causal mask included) is added to the attention scores, else attention is plainly causal."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None and "k" in cache:  # sampling: one new token attends to everything cached
            if T != 1:
                raise ValueError("a cached forward pass continues one token at a time")
            k, v = torch.cat((cache["k"], k), dim=2), torch.cat((cache["v"], v), dim=2)
        if cache is not None:
            cache["k"], cache["v"] = k, v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=bias is None and T > 1,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor, cache: dict | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, bias)
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    """Decoder-only transformer: ALiBi (or a learned position table, or none), pre-LN blocks, tied input/output
    embedding."""

    carries_state: bool = False  # sees only its window: evaluation slides windows over long tunes
    cache_bounded: bool = True  # its sampling cache (keys, values) holds at most context_length positions

    def __init__(self, cfg: TransformerConfig, vocab_size: int, context_length: int):
        super().__init__()
        self.cfg, self.vocab_size, self.context_length = cfg, vocab_size, context_length
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(context_length, cfg.d_model) if cfg.positions == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """Logits for every position. With ``cache`` (a dict, empty at first; sampling only) ``idx``
        continues the tokens already cached, whose keys and values are reused instead of recomputed."""
        start = cache.get("length", 0) if cache is not None else 0
        T = idx.shape[1]
        if start + T > self.context_length:
            raise ValueError(f"sequence length {start + T} exceeds context_length {self.context_length}")
        x = self.tok_emb(idx)  # (B, T, d)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(start, start + T, device=idx.device))
        x = self.drop(x)
        bias = alibi_bias(self.cfg.n_head, start, T, idx.device) if self.cfg.positions == "alibi" else None
        for i, block in enumerate(self.blocks):
            x = block(x, cache.setdefault(i, {}) if cache is not None else None, bias)
        if cache is not None:
            cache["length"] = start + T
        return self.head(self.ln_f(x))

    def embedding_parameters(self) -> int:
        return self.tok_emb.weight.numel() + (self.pos_emb.weight.numel() if self.pos_emb is not None else 0)

    def flops_per_token(self) -> int:
        """Training FLOPs per token: 3 x forward, forward = 2 x (N + head matmul) + attention scores."""
        d, L, T = self.cfg.d_model, self.cfg.n_layer, self.context_length
        forward = 2 * (non_embedding_parameters(self) + d * self.vocab_size) + 2 * L * T * d
        return 3 * forward


class LSTM(nn.Module):
    """Embedding -> multi-layer ``torch.nn.LSTM`` (the fused kernel) -> linear head."""

    carries_state: bool = True  # its state carries history: evaluation runs each tune in one pass
    cache_bounded: bool = False  # its sampling state has a fixed size, whatever the length

    def __init__(self, cfg: LSTMConfig, vocab_size: int, context_length: int):
        super().__init__()
        self.cfg, self.vocab_size, self.context_length = cfg, vocab_size, context_length
        self.emb = nn.Embedding(vocab_size, cfg.d_embed)
        self.lstm = nn.LSTM(
            cfg.d_embed, cfg.d_hidden, num_layers=cfg.n_layer, batch_first=True,
            dropout=cfg.dropout if cfg.n_layer > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_hidden, vocab_size)

    def forward(self, idx: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """Logits for every position. With ``cache`` (a dict, empty at first; sampling only) the
        recurrent state is carried over from the tokens already seen."""
        state = cache.get("state") if cache is not None else None
        out, state = self.lstm(self.drop(self.emb(idx)), state)
        if cache is not None:
            cache["state"], cache["length"] = state, cache.get("length", 0) + idx.shape[1]
        return self.head(self.drop(out))

    def embedding_parameters(self) -> int:
        return self.emb.weight.numel() + self.head.weight.numel() + self.head.bias.numel()

    def flops_per_token(self) -> int:
        """Training FLOPs per token: 3 x forward, forward = 2 x (N + head matmul)."""
        forward = 2 * (non_embedding_parameters(self) + self.cfg.d_hidden * self.vocab_size)
        return 3 * forward


def total_parameters(model: nn.Module) -> int:
    """All distinct parameters (a tied matrix counts once)."""
    return sum(p.numel() for p in model.parameters())


def non_embedding_parameters(model: nn.Module) -> int:
    """Kaplan's N: parameters outside the vocabulary and position matrices."""
    return total_parameters(model) - model.embedding_parameters()


register(Architecture("transformer", Transformer, TRANSFORMER_SIZES, lr=1e-2, color="tab:blue", label="Transformer",
                      variants={"learned-positions": ({"positions": "learned"}, "a learned position table"),
                                "no-positions": ({"positions": "none"}, "no position information"),
                                "one-head": ({"n_head": 1}, "one head as wide as the model")},
                      groupable=True, bf16_sizes=("gpu-m", "gpu-l")))
# nn.LSTM has no vmap batching rule: LSTM runs train alone
register(Architecture("lstm", LSTM, LSTM_SIZES, lr=3e-2, color="tab:orange", label="LSTM",
                      bf16_sizes=("gpu-s", "gpu-m", "gpu-l")))


def build_model(arch: str, size: str, vocab_size: int, context_length: int, variant: str | None = None) -> nn.Module:
    """A model of a named architecture and size (and variant, see :attr:`Architecture.variants`)."""
    check_arch_size(arch, size)
    family = ARCHITECTURES[arch]
    return family.model(family.size_config(size, variant), vocab_size, context_length)


def describe(arch: str, size: str, vocab_size: int, context_length: int, variant: str | None = None) -> dict:
    """Config, parameter counts and FLOPs per token of one grid entry (builds the model to count)."""
    model = build_model(arch, size, vocab_size, context_length, variant)
    return {
        "arch": arch,
        "size": size,
        **asdict(ARCHITECTURES[arch].size_config(size, variant)),
        "params_total": total_parameters(model),
        "params_non_embedding": non_embedding_parameters(model),
        "flops_per_token": model.flops_per_token(),
    }


def size_grid_table(archs: tuple[str, ...] | None = None, sizes: tuple[str, ...] = CPU_SIZES,
                    vocab_size: int = 100, context_length: int = 128) -> list[dict]:
    """:func:`describe` for every (arch, size) of a grid (every registered family by default)."""
    return [describe(a, s, vocab_size, context_length) for a in (archs or tuple(ARCHITECTURES)) for s in sizes]


def arch_order(runs: Sequence[dict]) -> list[str]:
    """The families of ``runs`` (dicts with ``arch``): registered ones in the registry's order, then any other (none
    is dropped)."""
    present = list(dict.fromkeys(r["arch"] for r in runs))
    return [a for a in ARCHITECTURES if a in present] + sorted(a for a in present if a not in ARCHITECTURES)
