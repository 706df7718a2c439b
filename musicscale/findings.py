"""The sentences the report's prose cites: each finding of the analysis and of the generated tunes in words, by
glue name.

The findings page glues whole sentences (a law with its intervals, a comparison, a check and its verdict), so
that its source reads as prose and a number is proofread where it is worded: here. A glue name is
``<dataset>_<family>_<finding>``, ``<dataset>_<finding>`` or ``<finding>``; the ``<finding>`` part of every
name is written out literally below (``grep -n "_joint_law" musicscale/findings.py`` finds where the joint law's
sentence is made). Every interval goes through :func:`musicscale.identification.format_ci`, so a value that is no
measurement says why.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from . import ablation, differences, holdout, repetition, validity, verdicts
from .analysis import HOLDOUT_FACTORS
from .generated import REFERENCE, model_order
from .identification import format_ci
from .models import ARCHITECTURES, arch_order
from .report import and_list
from .tables import text_value
from .validity_tables import with_sweep


def label(arch: str | None) -> str:
    """How the prose names a family (its registry label)."""
    return ARCHITECTURES[arch].label if arch in ARCHITECTURES else str(arch)


def _rows(results: dict, key: str) -> Iterator[tuple[str, str, dict]]:
    """(dataset, arch, entry) for every dataset and architecture that has ``key``."""
    for d, ds in results["datasets"].items():
        for arch, entry in ds.get(key, {}).items():
            yield d, arch, entry


def findings(results: dict) -> dict[str, str]:
    """Every finding the book cites, as the text it reads, by glue name; a value that could not be measured reads
    "n/a (why)", never "nan"."""
    out = {"n_runs": text_value(len(results["runs"]), "d"),
           "n_boot": text_value(results["parameters"]["n_boot"], "d"),
           "holdout_factor_N": text_value(HOLDOUT_FACTORS["N"], "g"),
           "holdout_factor_D": text_value(HOLDOUT_FACTORS["D"], "g"),
           "early_tokens": early_tokens_text(results),
           "holdout_tally": holdout_tally(results),
           "forms_verdict": forms_verdict(results),
           "repetition_worth": repetition_worth(results),
           "repetition_effective_law": effective_summary(results)}
    for d, ds in results["datasets"].items():
        for arch, j in ds["joint"].items():
            p = f"{d}_{arch}"
            sizes = [b["N"] for b in ds["budgets"].get(arch, [])]
            out[f"{p}_joint_law"] = joint_law_sentence(j, sizes)
            out[f"{p}_N_range"] = f"{min(sizes):,.0f}–{max(sizes):,.0f}" if sizes else "n/a (no runs)"
            out[f"{p}_exponents"] = exponents(j)
            out[f"{p}_n_basis"] = n_basis_sentence(ds.get("n_basis", {}).get(arch))
            out[f"{p}_differences"] = differences_sentence(ds.get("differences", {}).get(arch), j,
                                                           ds.get("fit_points", {}).get(arch))
            out[f"{p}_single_budget"] = single_budget_sentence(ds["single_budget"].get(arch, {}))
            out[f"{p}_optimal_split"] = optimal_split(j)
            checks = ds.get("holdout", {}).get(arch, {})
            if "N" in checks:
                out[f"{p}_holdout_N"] = holdout_summary(checks["N"])
            if "D" in checks:
                out[f"{p}_holdout_D"] = holdout_summary(checks["D"])
            if any("forms" in h for h in checks.values()):  # a check that did not run says why in its summary
                out[f"{p}_forms"] = forms_summary(checks)
            g = ds.get("ground_truth", {}).get(arch)
            if not g and "error" not in j:  # no known floor: how far the largest model still is from the fitted one
                out[f"{p}_floor_gap"] = floor_gap_sentence(j, *largest_loss(results, d, arch))
            if g:
                runs = [r for r in results["runs"] if r["dataset"] == d and r["arch"] == arch]
                largest = largest_model(ds["budgets"][arch])
                out[f"{p}_gt_floor"] = ground_truth_sentence(
                    g, best=min(r["test_loss"] for r in runs),
                    gain=ds["last_doubling_gain"].get(arch, {}).get(largest["size"]))
                out[f"{p}_gt_fixed"] = fixed_floor_sentence(g["fixed_floor"])
        if any(ds["last_doubling_gain"].values()):
            out[f"{d}_last_doubling"] = last_doubling(ds)
        if (ds.get("architecture_gap") or {}).get("rows"):
            out[f"{d}_gap"] = gap_sentence(ds["architecture_gap"])
        if ds.get("ablation"):
            out[f"{d}_ablation"] = ablation.sentence(ds["ablation"], label)
            out[f"{d}_ablation_verdict"] = ablation.overall(ds["ablation"], label)
        if ds.get("entropy_rate") is not None:
            out[f"{d}_floor_check"] = floor_sentence(ds)
    return out | verdicts.verdicts(results)


def joint_law_sentence(j: dict, sizes: list[float]) -> str:
    """The joint law of one family in words: the range of N, the exponents and floor with their intervals, R²
    and how many bootstrap refits converged."""
    span = f"N from {min(sizes):,.0f} to {max(sizes):,.0f}" if sizes else "no runs"
    if "error" in j:
        return f"{span}: not fitted ({j['error']})"
    r2 = text_value(j.get("r2"), ".3f", "no fit")
    return (f"{span}: α = {format_ci(j, 'alpha')}, β = {format_ci(j, 'beta')}, floor E (nats/char) "
            f"{format_ci(j, 'E')}, R² = {r2} ({j['n_boot']} bootstrap refits converged, {j['n_failed']} failed)")


def exponents(j: dict) -> str:
    """α and β of a joint law with their intervals (the literature table's cell)."""
    if "error" in j:
        return f"not fitted ({j['error']})"
    return f"α = {format_ci(j, 'alpha')}, β = {format_ci(j, 'beta')}"


def n_basis_sentence(check: dict | None) -> str:
    """Which parameter count the law extrapolates better in N, on validation (:func:`analysis.n_basis_check`)."""
    if not check or "chosen" not in check:
        return f"the two counts of N were not compared ({(check or {}).get('error', 'no joint law')})"
    ne, tot = check["non_embedding"], check["total"]
    better = "non-embedding N" if check["chosen"] == "non_embedding" else "all parameters"
    return (f"held out in N on validation, the law errs by {ne['error']:.4f} nats/char with non-embedding N "
            f"(α = {ne['alpha']:.3f}) and by {tot['error']:.4f} with all parameters (α = {tot['alpha']:.3f}): "
            f"{better} extrapolates better")


def early_tokens_text(results: dict) -> str:
    """The number of tokens below which points were left out of the fits (the shortest run's budget), as one
    number where every dataset and family shares it, else each."""
    found = {f"{d} {a}": fp["below_tokens"] for d, ds in results["datasets"].items()
             for a, fp in (ds.get("fit_points") or {}).items() if "below_tokens" in fp}
    if not found:
        return "n/a (no fit recorded its threshold)"
    if len(set(found.values())) == 1:
        return f"{next(iter(found.values())):,}"
    return "; ".join(f"{k}: {v:,}" for k, v in found.items())


def differences_sentence(diff: dict | None, j: dict, fit_points: dict | None) -> str:
    """The exponents from differences that cancel the floor, beside the joint fit's: whether each interval of one
    overlaps the other's, and how many early points the fits left out."""
    early = (f"{fit_points['early']} of {fit_points['all']} points were early (left out of every fit)"
             if fit_points else "no count of early points")
    if not diff or "alpha" not in diff:
        return f"the exponents were not estimated from differences (no joint law to set them beside); {early}"
    parts = []
    for name, symbol in (("alpha", "α"), ("beta", "β")):
        value, (lo, hi) = diff[name], diff[f"{name}_ci"]
        if value is None or not math.isfinite(value):
            parts.append(f"{symbol} could not be estimated (fewer than 3 positive differences)")
            continue
        joint_lo, joint_hi = j.get(f"{name}_ci") or (None, None)
        agree = (joint_lo is not None and joint_hi is not None and lo is not None and hi is not None
                 and lo <= joint_hi and joint_lo <= hi)
        low, high = differences.EXPONENT_BOUNDS
        if any(v is not None and (v <= low * 1.01 or v >= high * 0.99) for v in (value, lo, hi)):
            parts.append(f"{symbol} is not identified from differences (it reaches a bound of its search, "
                         f"{low:g} or {high:g})")
            continue
        entry = {"v": value, "v_ci": [lo, hi]}
        parts.append(f"{symbol} = {format_ci(entry, 'v')} from {diff[f'{name}_n_positive']} positive "
                     f"differences, " + ("overlapping" if agree else "apart from") + " the joint fit's interval")
    return "; ".join(parts) + f"; {early}"


def single_budget_sentence(single: dict) -> str:
    """The original project's law L(N) = a N^-α + c at one common D, for comparison with the joint law."""
    if "alpha" not in single:
        return f"there is no single-budget fit ({single.get('error', 'not fitted')})"
    return f"the single-budget fit at D = {single['D']:,} tokens gives α = {format_ci(single, 'alpha')}"


def optimal_split(j: dict) -> str:
    """The compute-optimal exponent a of N_opt ∝ C^a, with C = 6ND and with the family's own FLOPs per token."""
    opt = j.get("optimal_exponents") or {}
    if not opt:
        return f"not fitted ({j.get('error', 'no joint law')})"
    return f"a = {format_ci(opt, 'a', '.2f')}; with its own FLOPs per token, {format_ci(opt, 'a_own_flops', '.2f')}"


def fixed_floor_sentence(fixed: dict) -> str:
    """The exponents of the law refitted with its floor fixed at H*."""
    return (f"α = {format_ci(fixed, 'alpha')} and β = {format_ci(fixed, 'beta')} "
            f"(R² = {text_value(fixed.get('r2'), '.3f', 'no fit')})")


def floor_sentence(ds: dict) -> str:
    """H* of a dataset with a known entropy rate, the best test loss, and how many points lie below H*."""
    n = len(ds["below_floor"])
    return (f"the exact entropy rate of the test split is H* = {ds['entropy_rate']:.4f} nats/char; the best model "
            f"reaches {ds['min_test_loss']:.4f}, and {n} point{'s' * (n != 1)} of any run lie{'s' * (n == 1)} below H*")


def last_doubling(ds: dict) -> str:
    """Per family: what the last doubling of data still bought at the smallest and the largest size (nats/char)."""
    parts = []
    for arch, gains in ds["last_doubling_gain"].items():
        if not gains:
            continue
        by_size = sorted(ds["budgets"][arch], key=lambda b: b["N"])
        small, large = (text_value(gains.get(b["size"]), ".3f") for b in (by_size[0], by_size[-1]))
        parts.append(f"{label(arch)}, {small} at the smallest size and {large} at the largest")
    return "; ".join(parts)


_WHERE = {"smallest N": "at the smallest N", "largest N": "at the largest N",
          "smallest common C": "at the smallest common compute", "largest common C": "at the largest"}


def gap_sentence(gap: dict) -> str:
    """The difference of two families' joint laws where it was compared, each with its verdict."""
    return "; ".join(f"{_WHERE.get(r['where'], 'at the ' + r['where'])}, {r['verdict']}" for r in gap["rows"])


def forms_summary(checks: dict) -> str:
    """The held-out checks of one family (axis -> check) in a sentence: per axis, each other form's error against
    the additive law's and the verdict, or why the check did not run."""
    parts = []
    for axis, h in checks.items():
        if "error" in h:
            parts.append(f"in {axis}, the check could not run")  # why is in its own summary
            continue
        forms = [f"{f['form']} errs by {f['error']:.4f} nats/char against the additive law's {h['law_error']:.4f}: "
                 f"{f['verdict']}" for f in h.get("forms", {}).values()]
        parts.append(f"in {axis}, " + "; ".join(forms) if forms else f"in {axis}, no other form was compared")
    return "; ".join(parts) if parts else "no held-out check ran"


def forms_verdict(results: dict) -> str:
    """Across every held-out check of the build, per other form: in how many the additive law predicts better
    beyond noise, in how many the form does, and in how many neither."""
    tally: dict[str, dict] = {}
    for _, _, checks in _rows(results, "holdout"):
        for h in checks.values():
            for key, f in h.get("forms", {}).items():
                count = tally.setdefault(key, {"additive": 0, key: 0, None: 0})
                count[f["better"]] += 1
    parts = []
    for key, count in tally.items():
        label, n = holdout.FORMS[key], sum(count.values())
        parts.append(f"against {label}, the additive law predicts the held-out points better beyond noise in "
                     f"{count['additive']} of {n} check{'s' * (n != 1)}, {label} in {count[key]} and neither in "
                     f"{count[None]}")
    return "; ".join(parts) if parts else "no held-out check ran, so no form of the law was compared"


def repetition_worth(results: dict) -> str:
    """One sentence per family: what a repeated token is worth against a fresh one, from the fitted R*."""
    parts = []
    for _, arch, e in _rows(results, "repetition"):
        if "error" in e:
            parts.append(f"for the {arch}, R* was not fitted ({e['error']})")
        elif not e["identified"]:
            lo_bound, hi_bound = e["bounds"]
            lo = e["R_star_ci"][0]
            if e["bound_reached"] == "lower":
                parts.append(f"for the {arch}, R* is not identified: its fit reaches the lower bound of the search "
                             f"({lo_bound:g}), so a repeated token is worth next to nothing")
            elif lo is None or repetition.at_bound(lo):
                parts.append(f"for the {arch}, R* is not identified: its fit and its whole interval lie at the upper "
                             f"bound of the search ({hi_bound:g}), so up to the experiment's {e['max_epochs']:.0f} "
                             "epochs a repeated token costs nothing it can detect")
            else:
                parts.append(f"for the {arch}, R* is bounded from below only: R* ≥ {lo:.0f} (the lower end of its 95% "
                             f"interval; the upper end reaches the search bound {hi_bound:g}), so up to the "
                             f"experiment's {e['max_epochs']:.0f} epochs a token read for the sixteenth time is worth "
                             f"at least {repetition.worth_of_epoch(16, lo):.2f} of a fresh one")
        else:
            w2, w4, w16 = (e["worth"][k] for k in ("2", "4", "16"))
            R = e["R_star"]

            def worth(w: dict) -> str:  # format_ci says so where an interval is no wider than its last digit
                return format_ci({"v": w["value"], "v_ci": w["ci"]}, "v", ".2f")

            parts.append(
                f"for the {arch}, R* = {format_ci({'v': R, 'v_ci': e['R_star_ci']}, 'v', '.2f')}: a token read for "
                f"the second time is worth {worth(w2)} of a fresh one, for the fourth time {worth(w4)} and for the "
                f"sixteenth {worth(w16)}; sixteen epochs of U unique tokens "
                f"are worth {1 + R * -math.expm1(-15 / R):.1f} U of fresh data, not 16 U")
    return "; ".join(parts) if parts else "no repetition experiment in this build"


def effective_summary(results: dict) -> str:
    """One sentence per real corpus and family: how far its largest epochs go and what D' changes."""
    parts = []
    for d, arch, e in _rows(results, "joint_effective"):
        j = results["datasets"][d]["joint"].get(arch, {})
        if "error" in e or j.get("beta") is None:
            parts.append(f"{d} {arch}: not fitted ({e.get('error', 'no joint law on D')})")
            continue
        how = (f"on D' with R* = {e['R_star']:.2f}" if e["R_star"] is not None
               else "on the points within the fresh range only")
        how += (f" ({e['n_left_out']} points beyond the measured epochs left out)" if e["n_left_out"]
                else " (every point lies in it: the fit on D)" if e["R_star"] is None else "")
        parts.append(f"{d} {arch} (at most {e['max_epochs']:.2f} epochs): fitted {how}, β {format_ci(e, 'beta')} "
                     f"against {format_ci(j, 'beta')} on D, floor E {format_ci(e, 'E')} against {format_ci(j, 'E')}")
    return "; ".join(parts) if parts else "no real corpus in this build"


def largest_model(budgets: list[dict]) -> dict:
    """The entry of a family's ``budgets`` (one per size and budget) of its largest size at that size's longest
    budget: where every size trains at several budgets, the largest N alone would pick any of them."""
    return max(budgets, key=lambda b: (b["N"], b["D"]))


def largest_loss(results: dict, dataset: str, arch: str) -> tuple[dict, float | None, float | None]:
    """A family's largest model at its longest budget (:func:`largest_model`), its test loss averaged over seeds,
    and what its last doubling of data bought (None where not measured)."""
    ds = results["datasets"][dataset]
    largest = largest_model(ds["budgets"][arch])
    runs = [r for r in results["runs"] if r["dataset"] == dataset and r["arch"] == arch
            and r["size"] == largest["size"] and r["tokens_seen"] == largest["D"]]
    return (largest, float(np.mean([r["test_loss"] for r in runs])) if runs else None,
            ds["last_doubling_gain"].get(arch, {}).get(largest["size"]))


def floor_gap_sentence(j: dict, largest: dict, loss: float | None, gain: float | None) -> str:
    """Where no floor is known: how far the largest model (at its longest budget, test loss over its seeds) lies above
    the fitted floor E, with the interval E's gives; or, where E is not identified, how much the largest model still
    gained from its last doubling of data, which is why the fit cannot place a floor yet."""
    if loss is None:
        return "no run of the largest size at its longest budget was measured"
    where = (f"the largest model (N = {largest['N']:,.0f}, D = {largest['D']:,.0f}) ends at {loss:.3f} nats/char"
             + (f" and gained {gain:.3f} in its last doubling of data" if gain is not None else ""))
    if (j.get("not_identified") or {}).get("E") or j.get("E") is None:
        return (f"{where}; the floor E is {format_ci(j, 'E')}, so the fit cannot say how far above it that is: the "
                f"losses have not yet bent towards a floor")
    lo, hi = j.get("E_ci") or [None, None]
    gap = {"gap": loss - j["E"], "gap_ci": [loss - hi, loss - lo] if lo is not None and hi is not None else None}
    return f"{where}, {format_ci(gap, 'gap')} nats/char above the fitted floor E = {format_ci(j, 'E')}"


def ground_truth_sentence(g: dict, best: float | None = None, gain: float | None = None) -> str:
    """The fitted floor against H* in words: its value, interval, relative error and whether it covers H*, or
    why E is no measurement (with the family's ``best`` test loss and what the last doubling of data still
    ``gain``-ed at its largest size: how far from its floor the grid stops)."""
    E = format_ci(g, "E", ".4f")
    if g["E_rel_error"] is None:
        why = ""
        if best is not None:
            why = (f": the family's best test loss is still {best - g['H']:.3f} nats/char above H*"
                   + (f", and its largest size gained {gain:.3f} nats/char in its last doubling of data"
                      if gain is not None else "")
                   + ", so the grid stops before the losses bend towards a floor that the fit could place")
        return f"E is {E}, so it cannot be held against H*{why}"
    covers = {True: "covers", False: "does not cover"}.get(g["covers"], "has no interval for")
    text = f"E = {E}, {100 * g['E_rel_error']:+.1f}% from H*; its interval {covers} H*"
    if g["covers"] is False and g["E_rel_error"] < 0:  # a floor no model can reach: the form, not the data, put it
        text += (": a floor below H* is one no model can reach, so the additive form bends wrongly here (it takes the"
                 " slowing of the largest runs for a floor) rather than measuring one")
    return text


def holdout_tally(results: dict) -> str:
    """Across every held-out check of the build: how many the law wins beyond noise, and, for the rest, which
    law fails to predict and by how much (its error against the better baseline's)."""
    won, lost, even, not_run = [], [], [], 0
    for d, arch, checks in _rows(results, "holdout"):
        for axis, h in checks.items():
            if "error" in h:
                not_run += 1
                continue
            name = f"{d} {label(arch)} in {axis}"
            outcome = verdicts.holdout_outcome(h)
            base = min(h["flat_error"], h["loglinear_error"])
            if outcome is verdicts.Outcome.HOLDS:
                won.append(name)
            elif outcome is verdicts.Outcome.FAILS:
                lost.append(f"{name} (errs by {h['law_error']:.3f} nats/char against {base:.3f})")
            else:
                even.append(f"{name} ({h['law_error']:.3f} against {base:.3f})")
    ran = len(won) + len(lost) + len(even)
    if not ran:
        return "no held-out check could run in this build"
    text = f"the law beats the better baseline beyond noise in {len(won)} of the {ran} held-out checks that ran"
    if lost:
        text += "; a baseline predicts better in " + and_list(lost)
    if even:
        text += "; within noise of it in " + and_list(even)
    return text + (f" ({not_run} could not run)" if not_run else "")


def holdout_summary(h: dict) -> str:
    """One held-out check in a sentence: the errors, the seed spread and the verdict, or why it did not run."""
    if "error" in h:
        return f"could not run ({h['error']})"
    sd = "one seed only" if h["seed_sd"] is None else f"{h['seed_sd']:.4f}"
    return (f"the law errs by {h['law_error']:.4f} nats/char, the baselines by {h['flat_error']:.4f} (no further "
            f"improvement) and {h['loglinear_error']:.4f} (log-log line), the seeds differ by {sd}: {h['verdict']}")


# --------------------------------------------------------------------------- the generate stage's findings


def _share(summary: dict, glue: str) -> str:
    """One validity share of a summary (:data:`musicscale.validity.SHARES`, by its ``glue`` name) as text."""
    share = next(s for s in validity.SHARES if s.glue == glue)
    return text_value(summary.get(share.key), share.spec, share.missing)


def _by_family(summaries: Sequence[dict], dataset: str) -> dict[str, list[dict]]:
    """The models of one dataset per family (report order), smallest first."""
    models = [s for s in summaries if s["dataset"] == dataset and s["arch"] != REFERENCE]
    return {a: sorted((s for s in models if s["arch"] == a), key=model_order)
            for a in arch_order(models)}


def generation_findings(summaries: Sequence[dict]) -> dict[str, str]:
    """What the findings page cites of the generate stage, per dataset, as the text it reads: the bars of the
    meter's length (smallest → largest model, and real held-out tunes), what the largest models write, the
    prompts obeyed, and the temperature that writes the most tunes that parse and are novel."""
    out: dict[str, str] = {}
    models = [s for s in summaries if s["arch"] != REFERENCE]
    gallery_t = models[0]["settings"]["temperature"] if models else None
    for d in dict.fromkeys(s["dataset"] for s in summaries):
        families = _by_family(summaries, d)
        reference = next((s for s in summaries if s["dataset"] == d and s["arch"] == REFERENCE), None)
        if reference is not None:
            out[f"{d}_bars"] = "; ".join(
                [f"{label(a)} {_share(rows[0], 'bars')} → {_share(rows[-1], 'bars')}" for a, rows in families.items()]
                + [f"real held-out tunes {_share(reference, 'bars')}"])
            out[f"{d}_largest_writes"] = "; ".join(
                f"{label(a)} parses {_share(rows[-1], 'parses')}, novel {_share(rows[-1], 'novel')}"
                for a, rows in families.items())
        asked = next((s["prompted"] for rows in families.values() for s in rows if s.get("prompted")), None)
        if asked:
            out[f"{d}_prompts_asked"] = (f"{len(asked)} prompt{'s' * (len(asked) != 1)}, header fields or opening "
                                         f"bars: {'; '.join(p['label'] for p in asked)}")
            obeys = [f"{label(a)} {_share(rows[0], 'obeys')} → {_share(rows[-1], 'obeys')}"
                     for a, rows in families.items()]
            if reference is not None:
                obeys.append(f"real held-out tunes against their own header {_share(reference, 'obeys')}")
            out[f"{d}_obeys"] = "; ".join(obeys)
        swept = {a: next(iter(with_sweep(rows)), None) for a, rows in families.items()}
        if any(swept.values()):
            out[f"{d}_temperature"] = "; ".join(temperature_sentence(label(a), s, gallery_t)
                                                for a, s in swept.items() if s)
    return out | verdicts.generation_verdicts(summaries)


def temperature_sentence(family: str, summary: dict, gallery_t: float | None) -> str:
    """The temperature at which one model writes the most tunes that parse and are novel, against the gallery's."""
    scored = [p for p in summary["temperature_sweep"] if p["share_parses_novel"] is not None]
    if not scored:
        return f"{family}: no swept sample could be scored"
    # the best share, and of equal shares the temperature nearest the gallery's
    best = max(scored, key=lambda p: (p["share_parses_novel"], -abs(p["temperature"] - (gallery_t or 1.0))))
    at_gallery = next((p for p in scored if p["temperature"] == gallery_t), None)
    against = (f"against {at_gallery['share_parses_novel']:.0%} at the gallery's {gallery_t:g}" if at_gallery
               else "the gallery's temperature is not in the sweep")
    return (f"{family} writes the most tunes that parse and are novel at {best['temperature']:g} "
            f"({best['share_parses_novel']:.0%}, {against})")
