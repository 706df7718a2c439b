"""The study's profiles: what each runs, as parameters per stage on top of each stage's defaults (the smoke run), and
the table of them that the reproduce page shows."""

from __future__ import annotations

from . import stages as stage_modules

STAGES = tuple(stage_modules.STAGES)

# Parameters per stage on top of the defaults of each stage's Params (musicscale/stages), which are the smoke run
# and which each notebook's parameters cell repeats. The data stage's synthetic_train_tokens is set from the train
# stage's budgets (stage_parameters) unless a profile or an override sets it.
PROFILES: dict[str, dict[str, dict]] = {
    "smoke": {},
    "default": {
        "01_data": {"corpus": ["music21", "synthetic"], "n_synthetic_eval_tunes": 400, "n_workers": 2},
        "03_train": {
            # the three sizes up to tiny span the fit of the held-out check in N; medium lies >= 10x beyond them.
            # Every size trains at two budgets, the same for every N: 256 K tokens and 4 M, each with five branches
            # (16 K .. 256 K and 256 K .. 4 M). The points a fit uses (from 256 K on, analysis.early_tokens) spread
            # D/N over 16x at every N, and N over 48x (Transformer) or 78x (LSTM) at every D. One 4 M trunk measures
            # 4 M, 2 M, 1 M and 512 K for 1.19 times its own cost: three budgets of 128 K, 512 K and 2 M cost
            # 1.17 x 2.6 M tokens per size and left every Transformer far from its floor (the tiny one on the
            # grammar: 1.23 nats/char at 2 M, 1.19 at 4 M, 1.17 at 8 M; H* = 0.98). Batches of 4 x 256 tokens: at
            # these sizes a step is worth more than a wide batch (tiny Transformer, 1 M tokens: 1.99 nats/char at
            # 16 x 256, 1.54 at 4 x 256). Two seeds of every run: the bootstrap redraws them.
            "sizes": ["micro", "mini", "tiny", "small", "medium"],
            "context_length": 256, "batch_size": 4, "n_branches": 5,
            "budgets": [262_144, 4_194_304],
            # the recipe (rate x beta2) is searched at three sizes on probes of 128 K tokens (branch 4 of the
            # shorter budget's five), each with its own cooldown; the rate law fitted to them sets every size's rate
            "lr_factors": [0.5, 1.0, 2.0], "beta2s": [0.95, 0.99, 0.999], "lr_probe_branches": 4,
            "lr_max_extensions": 3, "recipe_sizes": ["micro", "tiny", "small"],
            "extra_seeds": 1, "extra_seed_sizes": ["micro", "mini", "tiny", "small", "medium"],
            # the schedule check and the repetition experiment on the study's synthetic dataset where it has one
            # (else its first dataset / no repetition experiment), at the shorter budget: a profile never names a
            # dataset
            "schedule_check": {"arch": "transformer", "size": "tiny", "seeds": 3, "points": 2},
            # what a repeated token is worth: two sizes per family on 1/4, 1/16 and 1/64 of their D
            "repetition": {"sizes": ["mini", "tiny"], "factors": [4, 16, 64], "seeds": 2},
            # whether the Transformer's recipe leaves loss behind: its tiny and small runs of the shorter budget again
            # with one thing changed (the rate, the positions, the heads; the 4x arm reads 1 M tokens), two seeds
            "ablation": {"sizes": ["tiny", "small"], "seeds": 2},
            "eval_tokens": 65_536, "n_workers": 2,
        },
        "04_analyze": {"n_boot": 500},
        # prompts from every size (3 prompts x 4), the temperature sweep on the largest (4 temperatures x 16)
        "05_generate": {"n_samples": 50, "max_new_tokens": 500, "prompt_samples": 4, "temperature_samples": 16},
    },
    "gpu": {
        "01_data": {"corpus": ["music21", "synthetic"], "n_synthetic_eval_tunes": 2000, "n_workers": 16},
        "03_train": {
            # the default's design at 16x its tokens: batches of 64 x 256 tokens, every size at two budgets the
            # same for every N (4 M and 64 M tokens, five branches each: the longest reads 4,096 steps, as the
            # default's does), so the fitted points (4 M .. 64 M) spread D/N over 16x at every N; the recipe
            # (rate x beta2) searched at four sizes on probes of 2 M tokens, the rate law for the others
            "sizes": ["micro", "tiny", "small", "medium", "large", "xl", "gpu-s", "gpu-m", "gpu-l"],
            "context_length": 256, "batch_size": 64, "n_branches": 5,
            "budgets": [4_194_304, 67_108_864],
            "lr_factors": [0.5, 1.0, 2.0], "beta2s": [0.95, 0.99, 0.999], "lr_probe_branches": 4,
            "lr_max_extensions": 3, "recipe_sizes": ["micro", "small", "xl", "gpu-m"],
            "extra_seeds": 2, "extra_seed_sizes": ["micro", "tiny", "small", "gpu-l"],
            "schedule_check": {"arch": "transformer", "size": "medium", "seeds": 3, "points": 3},
            "repetition": {"sizes": ["tiny", "small"], "factors": [4, 16, 64], "seeds": 2},
            "ablation": {"sizes": ["small", "medium"], "seeds": 3},
            "eval_tokens": 262_144, "device": "cuda", "n_workers": 1,
        },
        "04_analyze": {"n_boot": 2000},
        "05_generate": {"n_samples": 100, "max_new_tokens": 600, "prompt_samples": 10, "temperature_samples": 50,
                        "device": "cuda"},
    },
}


def profiles_table(unique_tokens: dict[str, int] | None = None):
    """What each profile runs, from :data:`PROFILES` over the stages' defaults (the reproduce page shows it),
    with the most tokens any branch reads and, for the real corpora of ``unique_tokens`` (dataset -> training
    tokens of this build), the epochs that makes; the grammar's data are drawn to size (no token read twice)."""
    from .tables import markdown_table

    rows = []
    for name, profile in PROFILES.items():
        p = {stage: {**stage_modules.module(stage).Params.defaults(), **profile.get(stage, {})} for stage in STAGES}
        data, train = p["01_data"], p["03_train"]
        reads = stage_modules.module("03_train").synthetic_tokens_needed(**train) - train["context_length"]
        epochs = [f"{d}: {reads / n:.2g}" for d, n in (unique_tokens or {}).items() if d in data["corpus"]]
        if "synthetic" in data["corpus"]:
            epochs.append("synthetic: ≤ 1 (drawn to size)")
        seeded = [s for s in train["sizes"] if s in train["extra_seed_sizes"]]
        n_seeds = 1 + train["extra_seeds"]
        rows.append({
            "profile": f"`{name}`", "datasets": ", ".join(data["corpus"]), "sizes": ", ".join(train["sizes"]),
            "seeds": (f"{n_seeds} for {', '.join(seeded)}; 1 for the others" if 0 < len(seeded) < len(train["sizes"])
                      else str(n_seeds if seeded else 1)),
            "branches": train["n_branches"],
            "steps": (f"{train['min_steps']:,}–{train['max_steps']:,} steps" if train.get("budgets") is None else
                      ", ".join(f"{b:,}" for b in train["budgets"]) + " tokens, every size"),
            "context": train["context_length"], "batch": train["batch_size"],
            "rates": f"{len(train['lr_factors'])} × {len(train['beta2s'])} β₂ at "
                     + (", ".join(train["recipe_sizes"]) if train.get("recipe_sizes") else "every size"),
            "boot": p["04_analyze"]["n_boot"], "samples": p["05_generate"]["n_samples"], "device": train["device"],
            "reads": reads, "epochs": "; ".join(epochs) or "—"})
    return markdown_table(rows, [
        ("profile", "profile", None), ("datasets", "datasets", None), ("sizes", "sizes (each family)", None),
        ("seeds", "seeds", None), ("branches", "branches", None), ("steps", "longest branches", None),
        ("context", "context", None), ("batch", "batch", None), ("reads", "most tokens a branch reads", ","),
        ("epochs", "largest epochs (real corpora of this build)", None),
        ("rates", "recipes probed (rates × β₂, at)", None), ("boot", "bootstrap draws", ","),
        ("samples", "samples per model", None), ("device", "device", None)])
