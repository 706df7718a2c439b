"""The findings page at a glance: one short verdict per claim and dataset, and the headings that state what each
section found, by glue name.

A verdict word (holds, fails, within noise, not identified) is said only where an interval decides it, by the
same rules the sentences of :mod:`musicscale.findings` use; the numbers behind it stay in the section's tables.
Glue names: ``<dataset>[_<family>]_verdict_<claim>`` for a cell of the verdict table,
``<dataset>_heading_<section>`` for a section's heading (``<dataset>_verdict_bars`` and
``<dataset>_heading_music`` come from the generate stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from . import identification
from .generated import REFERENCE, model_order
from .models import ARCHITECTURES, arch_order


class Outcome(StrEnum):
    """What an interval says of a claim."""

    HOLDS = "holds"
    FAILS = "fails"
    EVEN = "within noise"
    NOT_RUN = "not run"


def label(arch: str | None) -> str:
    return ARCHITECTURES[arch].label if arch in ARCHITECTURES else str(arch)


def holdout_outcome(h: dict) -> Outcome:
    """A held-out check: the law beats the better naive baseline beyond noise (holds), a baseline beats it (fails),
    or neither."""
    if "error" in h:
        return Outcome.NOT_RUN
    lo, hi = h["advantage_ci"]
    if lo is not None and lo > 0 and not identification.collapsed((lo, hi)):
        return Outcome.HOLDS
    if hi is not None and hi < 0:
        return Outcome.FAILS
    return Outcome.EVEN


def holdout_cell(checks: dict) -> str:
    """One family's held-out checks (axis -> check) in a table cell: ``N: fails · D: holds``."""
    if not checks:
        return "not run"
    return " · ".join(f"{axis}: {holdout_outcome(h).value}" for axis, h in checks.items())


def floor_cell(ds: dict, arch: str) -> str:
    """The fitted floor against the known entropy H*: holds (the interval covers H*), fails, or not identified;
    or that no floor is known for the dataset."""
    if ds.get("entropy_rate") is None:
        return "no known floor"
    g = ds.get("ground_truth", {}).get(arch)
    if not g:
        return "no fit"
    if g["E_rel_error"] is None:
        return "not identified"
    return (f"{'holds' if g['covers'] else 'fails'} ({100 * g['E_rel_error']:+.1f}% from H*"
            f"{', interval covers H*' if g['covers'] else ', interval misses H*'})")


def gap_cell(gap: dict | None, where: str) -> str:
    """Which family is lower at one point of the comparison (``largest N`` or ``largest common C``), from the
    difference's interval."""
    row = next((r for r in (gap or {}).get("rows", []) if r["where"] == where), None)
    if row is None:
        return "not compared"
    lo, hi = row["ci"]
    first, second = (label(a) for a in gap["archs"])
    if lo is not None and lo > 0:
        return f"{second} lower by {row['difference']:.3f}"
    if hi is not None and hi < 0:
        return f"{first} lower by {-row['difference']:.3f}"
    return Outcome.EVEN.value


def repetition_cell(entries: dict) -> str:
    """What a repeated token is worth, per family: R* with its interval, or why it is not identified."""
    parts = []
    for arch, e in entries.items():
        if "error" in e:
            parts.append(f"{label(arch)}: not fitted")
        elif e["identified"]:
            r_star = identification.format_ci({"v": e["R_star"], "v_ci": e["R_star_ci"]}, "v", ".1f")
            parts.append(f"{label(arch)}: R* = {r_star}")
        else:
            bound = "at the lower bound" if e["bound_reached"] == "lower" else "not bounded above"
            parts.append(f"{label(arch)}: R* {bound}")
    return "; ".join(parts) if parts else "not measured on this dataset"


def holdout_heading(ds: dict) -> str:
    """The held-out section's heading: in how many checks the law beats the better baseline beyond noise."""
    outcomes = [holdout_outcome(h) for checks in ds.get("holdout", {}).values() for h in checks.values()]
    ran = [o for o in outcomes if o is not Outcome.NOT_RUN]
    if not ran:
        return "No held-out check could run"
    won, lost = ran.count(Outcome.HOLDS), ran.count(Outcome.FAILS)
    return (f"The law beats the naive baselines in {won} of {len(ran)} held-out checks"
            + (f"; a baseline is better in {lost}" if lost else ""))


def law_heading(ds: dict) -> str:
    """The joint law's heading: how fast each family's loss falls in N and in D."""
    parts = []
    for arch, j in ds["joint"].items():
        if "error" in j or j.get("alpha") is None:
            parts.append(f"the {label(arch)}'s law did not converge")
        else:
            loose = j.get("not_identified") or {}
            n, d = (f"{x}^−{j[k]:.2f}" if k not in loose else f"{x} (its exponent not identified)"
                    for x, k in (("N", "alpha"), ("D", "beta")))
            parts.append(f"as {n} and {d} ({label(arch)})")
    return "The loss falls " + "; ".join(parts) if parts else "No law was fitted"


def gap_heading(ds: dict) -> str:
    """The families' section heading: who is lower at the largest N both trained."""
    gap = ds.get("architecture_gap")
    if not (gap or {}).get("rows"):
        return "One family only: nothing to compare"
    cell = gap_cell(gap, "largest N")
    if cell == Outcome.EVEN.value:
        return "At the largest N, the two families are within noise of each other"
    return f"At the largest N, the {cell.replace(' lower by', ' is lower by')} nats/char"


def floor_heading(ds: dict) -> str:
    """The ground-truth heading: each family's floor against H*, or that the dataset has no known floor."""
    if ds.get("entropy_rate") is None:
        return "No floor is known for these tunes: the fitted one is all the largest model is held against"
    parts = []
    for arch in ds["joint"]:
        g = ds.get("ground_truth", {}).get(arch)
        if g and g["E_rel_error"] is not None:
            parts.append(f"the {label(arch)}'s floor is {abs(100 * g['E_rel_error']):.1f}% "
                         f"{'below' if g['E_rel_error'] < 0 else 'above'} H* (interval "
                         f"{'covers' if g['covers'] else 'misses'} it)")
        else:
            parts.append(f"the {label(arch)}'s floor is not identified")
    text = "; ".join(parts)
    return text[0].upper() + text[1:]


def split_heading(ds: dict) -> str:
    """The compute-optimal split's heading: the exponent a of N_opt ∝ C^a per family."""
    parts = [f"C^{j['optimal_exponents']['a']:.2f} ({label(arch)})" for arch, j in ds["joint"].items()
             if (j.get("optimal_exponents") or {}).get("a") is not None]
    return ("The compute-optimal size grows as " + " and ".join(parts)) if parts else "No compute-optimal split"


def n_basis_reading(ds: dict) -> str:
    """Which count of N extrapolates better on validation, per family (:func:`musicscale.analysis.n_basis_check`)."""
    parts = [f"{'non-embedding N' if c['chosen'] == 'non_embedding' else 'all parameters'} for the {label(a)}"
             for a, c in (ds.get("n_basis") or {}).items() if "chosen" in c]
    return ("the count that extrapolates better is " + "; ".join(parts)) if parts else "the counts were not compared"


def verdicts(results: dict) -> dict[str, str]:
    """The analysis's verdict cells and section headings, by glue name."""
    every = [h for ds in results["datasets"].values() for checks in ds.get("holdout", {}).values()
             for h in checks.values()]
    tally = holdout_heading({"holdout": {"all": dict(enumerate(every))}})
    ran = any(holdout_outcome(h) is not Outcome.NOT_RUN for h in every)
    out: dict[str, str] = {"heading_verdicts": "In this build, t" + tally[1:] if ran else tally}
    repeated = [repetition_cell(ds["repetition"]) for ds in results["datasets"].values() if ds.get("repetition")]
    out["heading_repetition"] = (("What a repeated token is worth, against a fresh one: " + "; ".join(repeated))
                                 if repeated else "No repetition experiment in this build")
    for d, ds in results["datasets"].items():
        for arch in ds["joint"]:
            out[f"{d}_{arch}_verdict_holdout"] = holdout_cell(ds.get("holdout", {}).get(arch, {}))
            out[f"{d}_{arch}_verdict_floor"] = floor_cell(ds, arch)
        out[f"{d}_verdict_gap_N"] = gap_cell(ds.get("architecture_gap"), "largest N")
        out[f"{d}_verdict_gap_C"] = gap_cell(ds.get("architecture_gap"), "largest common C")
        if ds.get("repetition"):
            out[f"{d}_verdict_repetition"] = repetition_cell(ds["repetition"])
        out[f"{d}_heading_law"] = law_heading(ds)
        out[f"{d}_n_basis_reading"] = n_basis_reading(ds)
        out[f"{d}_heading_holdout"] = holdout_heading(ds)
        out[f"{d}_heading_gap"] = gap_heading(ds)
        out[f"{d}_heading_floor"] = floor_heading(ds)
        out[f"{d}_heading_split"] = split_heading(ds)
    return out


def generation_verdicts(summaries: Sequence[dict]) -> dict[str, str]:
    """The generate stage's cell (the largest models' bars of the meter's length against real tunes') and the
    musical section's heading, per dataset."""
    out: dict[str, str] = {}
    for d in dict.fromkeys(s["dataset"] for s in summaries):
        models = [s for s in summaries if s["dataset"] == d and s["arch"] != REFERENCE]
        reference = next((s for s in summaries if s["dataset"] == d and s["arch"] == REFERENCE), None)
        largest = {a: max((s for s in models if s["arch"] == a), key=model_order)
                   for a in arch_order(models)}
        shares = [f"{_pct(s.get('pooled_bar_accuracy'))} ({label(a)})" for a, s in largest.items()]
        real = f"real tunes {_pct(reference.get('pooled_bar_accuracy'))}" if reference else None
        out[f"{d}_verdict_bars"] = "; ".join(shares + ([real] if real else [])) or "not sampled"
        out[f"{d}_heading_music"] = ("The largest models' bars match the meter in " + " and ".join(shares)
                                     + (f"; {real}" if real else "")) if shares else "No model was sampled"
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
