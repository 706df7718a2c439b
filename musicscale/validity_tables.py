"""The generate page's tables of the stage's summaries: validity per model and of real tunes, how the largest models
obey each prompt, the temperature sweep, and the power-law fit of the share of wrong bars against model size."""

from __future__ import annotations

from collections.abc import Sequence

from . import validity
from .generated import REFERENCE
from .models import arch_order


def validity_table(summaries: Sequence[dict]):
    """One row per model (and the reference row of real tunes) with the validity shares."""
    from .tables import markdown_table

    return markdown_table(summaries, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("size", "size", None),
        ("params_non_embedding", "N (non-emb.)", ","), ("n", "samples", None),
        *((s.key, s.header, s.spec) for s in validity.SHARES),
        ("degenerate", "degenerate by kind", lambda d: ", ".join(f"{k} {v}" for k, v in d.items() if v) or "—")])


def prompts_table(summaries: Sequence[dict]):
    """Per dataset and prompt, how the largest model of each family obeys it: its samples' shares that parse,
    whose meter and key music21 reads as asked, of bars with the asked meter's length, and that obey it."""
    from .tables import markdown_table

    rows = []
    for d in dict.fromkeys(s["dataset"] for s in summaries):
        models = [s for s in summaries if s["dataset"] == d and s["arch"] != REFERENCE and s.get("prompted")]
        largest = [max((s for s in models if s["arch"] == a), key=lambda s: s["params_non_embedding"])
                   for a in arch_order(models)]
        for k, prompt in enumerate(largest[0]["prompted"] if largest else []):
            for s in largest:
                rows.append({"dataset": d, "prompt": f"`{prompt['label']}`", "source": prompt["source"],
                             "model": f"{s['arch']} {s['size']}", **s["prompted"][k]})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("prompt", "prompt", None), ("source", "made from", None),
        ("model", "model", None), ("n", "samples", None), ("share_parses", "parses", ".0%"),
        ("share_meter_ok", "meter as asked", ".0%"), ("share_key_ok", "key as asked", ".0%"),
        ("prompt_bar_accuracy", "bars in the asked meter", ".1%"), ("share_obeys", "obeys the prompt", ".0%")])


def with_sweep(summaries: Sequence[dict]) -> list[dict]:
    """The rows with a temperature sweep (the largest model of each family)."""
    return [s for s in summaries if s.get("temperature_sweep")]


def temperature_table(summaries: Sequence[dict]):
    """The temperature sweep: per dataset, largest model of each family and temperature, the validity shares
    and the share that parse and are novel."""
    from .tables import markdown_table

    rows = [{"dataset": s["dataset"], "model": f"{s['arch']} {s['size']}", **point}
            for s in with_sweep(summaries) for point in s["temperature_sweep"]]
    shares = [(s.key, s.header, s.spec) for s in validity.SHARES if s.key in validity.summarize([])]
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("model", "model", None), ("temperature", "temperature", ".2f"),
        ("n", "samples", None), *shares, ("share_parses_novel", "parses and novel", ".0%")])


def validity_fits(summaries: Sequence[dict], seed: int = 0, n_boot: int = 200) -> list[dict]:
    """Fit ``1 - bars correct = a N^-alpha + c`` per dataset and architecture where >= 3 sizes have errors."""
    from .power_law import fit_power_law

    rows = []
    for d in dict.fromkeys(s["dataset"] for s in summaries):
        for arch in dict.fromkeys(s["arch"] for s in summaries if s["dataset"] == d and s["arch"] != REFERENCE):
            pts = [(s["params_non_embedding"], 1.0 - s["pooled_bar_accuracy"]) for s in summaries
                   if s["dataset"] == d and s["arch"] == arch and s.get("pooled_bar_accuracy") is not None]
            pts = [(n, e) for n, e in pts if e > 0]
            row = {"dataset": d, "arch": arch, "sizes": len(pts)}
            if len({n for n, _ in pts}) >= 3:
                fit = fit_power_law([n for n, _ in pts], [e for _, e in pts], n_boot=n_boot, seed=seed)
                row.update(fit.to_dict())
            rows.append(row)
    return rows


def validity_fits_table(summaries: Sequence[dict], seed: int = 0):
    """:func:`validity_fits` as a Markdown table."""
    from .identification import format_ci
    from .tables import markdown_table

    rows = [{**r, "alpha_s": format_ci(r, "alpha"), "c_s": format_ci(r, "c")} for r in validity_fits(summaries, seed)]
    return markdown_table(rows, [("dataset", "dataset", None), ("arch", "arch", None),
                                 ("sizes", "sizes with wrong bars", None), ("alpha_s", "α [95% CI]", None),
                                 ("c_s", "c [95% CI]", None), ("r2", "R²", ".3f")])
