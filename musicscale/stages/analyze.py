"""Stage 4, analysis: the runs of the last sweep -> the scaling laws and the checks on them
(:mod:`musicscale.analysis`) -> ``results/experiment_results.json``, the tables of the analyze page and
the findings the book's prose cites.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, ablation
from ..analysis import (
    HOLDOUT_FACTORS,
    analyze_dataset,
    analyze_repetition,
    architecture_job,
    architecture_jobs,
    cooldown_points,
    effective_joint,
)
from ..artifacts import NoRunsError, load_sweep  # noqa: F401 (NoRunsError: what run raises)
from ..findings import findings, largest_loss
from ..identification import format_ci
from ..joint_law import joint_fit
from ..params import StageParameters, as_int, as_optional_list
from ..tables import glue_text, html_table, markdown_table
from ..workdir import Workdir, git_commit, read_json, write_json


@dataclass
class Params(StageParameters):
    stage = "04_analyze"

    datasets: list | None = None  # None: every dataset with a finished sweep
    n_boot: int = 100  # bootstrap resamples of whole runs, for the joint law and each held-out check
    n_workers: int = 2  # processes that fit the (dataset, architecture) pairs in parallel

    def __post_init__(self) -> None:
        super().__post_init__()
        self.datasets = as_optional_list("datasets", self.datasets)
        self.n_boot = as_int("n_boot", self.n_boot, minimum=0)
        self.n_workers = as_int("n_workers", self.n_workers, minimum=1)


def run(workdir: str | Path, **params) -> dict:
    """Fit everything for every dataset of the last sweep and write ``results/experiment_results.json``.

    ``n_workers > 1`` fits the (dataset, architecture) pairs in that many processes. The returned dict is what
    the JSON file holds: every fit with its bootstrap draws, so that :mod:`musicscale.plots` redraws every figure
    from the file alone (``JointFit.from_dict``).
    """
    p = Params.build(workdir=workdir, **params)
    n_boot, seed = p.n_boot, p.seed
    wd = Workdir(p.workdir)
    sweeps = load_sweep(p.workdir, p.datasets)
    results: dict = {"runs": [], "datasets": {}, "parameters": {"n_boot": n_boot, "seed": seed,
                                                                 "holdout_factors": HOLDOUT_FACTORS},
                     "units": "nats per character; N = non-embedding parameters; C = training FLOPs",
                     "versions": {"musicscale": __version__, "python": platform.python_version()},
                     "git_commit": git_commit()}
    metas = {d: read_json(wd.require(wd.tokens_meta(d))) for d in sweeps}
    h_star = {d: (m.get("entropy_rate") or {}).get("test") for d, m in metas.items()}
    jobs = {(d, a): job for d, runs in sweeps.items()
            for a, job in architecture_jobs(runs, h_star[d], n_boot, seed).items()}
    if p.n_workers > 1 and len(jobs) > 1:  # the costliest part, and independent: one process per job
        with ProcessPoolExecutor(min(p.n_workers, len(jobs))) as pool:
            done = dict(zip(jobs, pool.map(architecture_job, jobs.values())))
    else:
        done = {k: architecture_job(job) for k, job in jobs.items()}
    for dataset, runs in sweeps.items():
        results["runs"].extend(runs)
        per_arch = {a: v for (d, a), v in done.items() if d == dataset}
        ds = results["datasets"][dataset] = analyze_dataset(runs, entropy_rate=h_star[dataset], n_boot=n_boot,
                                                            seed=seed, per_arch=per_arch)
        ds["vocab_size"] = metas[dataset]["vocab_size"]
        searches = read_json(wd.lr_search(dataset)) if wd.lr_search(dataset).exists() else []
        ds["lr_search"] = {a: [s for s in searches if s["arch"] == a] for a in per_arch}
        ds["points"] = {a: cooldown_points([r for r in runs if r["arch"] == a]) for a in per_arch}
        if wd.repetition(dataset).exists():
            repeats = read_json(wd.repetition(dataset))
            ds["repetition"] = {a: analyze_repetition([r for r in repeats if r["arch"] == a],
                                                      [r for r in runs if r["arch"] == a], joint_fit(v["joint"]),
                                                      n_boot=n_boot, seed=seed)
                                for a, v in per_arch.items() if joint_fit(v["joint"]) is not None}
        if wd.ablation(dataset).exists():
            ds["ablation"] = analyze_ablation(read_json(wd.ablation(dataset)), per_arch)
    # the real corpora's laws on effective data, with the R* each family showed where the truth is known
    measured = {a: rep for ds in results["datasets"].values() for a, rep in ds.get("repetition", {}).items()}
    for dataset, runs in sweeps.items():
        if not wd.unlimited(dataset):
            results["datasets"][dataset]["joint_effective"] = {
                a: effective_joint([r for r in runs if r["arch"] == a], measured.get(a), joint, n_boot=n_boot,
                                   seed=seed)
                for a, joint in results["datasets"][dataset]["joint"].items()}
    write_json(wd.experiment_results, results)
    return results


def analyze_ablation(records: Sequence[dict], per_arch: dict[str, dict]) -> dict:
    """The ablation's arms against their baseline, with the gap to the first other family's joint law."""
    family = records[0]["arch"]
    laws = {a: fit for a, v in per_arch.items() if a != family and (fit := joint_fit(v["joint"])) is not None}
    other = next(iter(laws), None)
    law = (lambda N, D: float(laws[other].predict(N, D))) if other else None
    return ablation.summary(ablation.compare_arms(records, law), family, other)


def ablation_table(results: dict):
    """Per dataset ablated, size and arm: what changed, the tokens read, the mean test loss over seeds, its
    difference from the baseline with a 95% interval, the verdict, and the share of the gap to the other family
    it closes."""
    rows = []
    for d, ds in results["datasets"].items():
        for r in (ds.get("ablation") or {}).get("rows", []):
            diff = "—" if r["difference"] is None else format_ci(
                {"v": r["difference"], "v_ci": r["ci"]}, "v", "+.3f")
            closed = r["closed"] if r["ci"] is not None and r["ci"][1] < 0 else None
            rows.append({"dataset": d, **r, "diff": diff, "closed_s": "—" if closed is None else f"{closed:.0%}"})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("size", "size", None), ("N", "N", ","), ("arm", "arm", None),
        ("what", "what changed", None), ("D", "D (tokens)", ","), ("n_seeds", "seeds", None),
        ("loss", "test loss (nats/char)", ".4f"), ("diff", "− baseline [95% CI]", None), ("verdict", "verdict", None),
        ("gap", "gap to the other family's law", "+.3f"), ("closed_s", "gap closed", None)])


def _rows(results: dict, key: str):
    """(dataset, arch, entry) for every dataset and architecture that has ``key``."""
    for d, ds in results["datasets"].items():
        for arch, entry in ds.get(key, {}).items():
            yield d, arch, entry


def joint_table(results: dict):
    """The joint law per dataset and architecture: parameters with 95% intervals (bootstrap over runs), the
    compute-optimal exponent a of N_opt ∝ C^a (C = 6ND and own FLOPs), R², and how many bootstrap draws
    converged."""
    rows = []
    for d, arch, j in _rows(results, "joint"):
        opt = j.get("optimal_exponents") or {}
        rows.append({"dataset": d, "arch": arch, "points": j.get("n_points"), "runs": j.get("n_groups"),
                     "E": format_ci(j, "E"), "alpha": format_ci(j, "alpha"), "beta": format_ci(j, "beta"),
                     "a": format_ci(opt, "a", ".2f") if opt else j.get("error", "—"),
                     "a_own": format_ci(opt, "a_own_flops", ".2f") if opt else "—", "r2": j.get("r2"),
                     "draws": f"{j['n_boot']} ({j['n_failed']} failed)" if "n_boot" in j else "—"})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("runs", "runs", None), ("points", "points", None),
        ("E", "E (nats) [95% CI]", None), ("alpha", "α [95% CI]", None), ("beta", "β [95% CI]", None),
        ("a", "a (C = 6ND)", None), ("a_own", "a (own FLOPs)", None), ("r2", "R²", ".4f"),
        ("draws", "bootstrap draws", None)])


def holdout_table(results: dict):
    """The held-out checks: what was fitted and predicted, the law's error beside both baselines and the
    seed-to-seed spread, and the law's advantage with its interval."""
    from IPython.display import Markdown

    rows, not_run = [], []
    for d, arch, checks in _rows(results, "holdout"):
        for axis, h in checks.items():
            name = f"in {axis}, ≥{h['factor']:g}×"
            if "error" in h:  # the reason goes below the table: a long text in a cell makes a very tall row
                not_run.append(f"- {d}, {arch}, {name}: {h['error']}.")
                rows.append({"dataset": d, "arch": arch, "check": name, "what": f"not run ({len(not_run)})"})
                continue
            held = ", ".join(f"{n:,.0f}" for n in h["held_out"])
            what = (f"{len(h['fitted'])} sizes ≤ {max(h['fitted']):,.0f} → {held}" if axis == "N"
                    else f"branches ≤ D_max/{h['factor']:g} → D_max")
            rows.append({"dataset": d, "arch": arch, "check": name, "what": what, "reach": h["extrapolation"],
                         "targets": h["n_targets"], "law": h["law_error"], "flat": h["flat_error"],
                         "line": h["loglinear_error"], "sd": h["seed_sd"],
                         "advantage": format_ci(h, "advantage")})
    table = markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("check", "check", None),
        ("what", "fitted → predicted", None), ("reach", "reach (×)", ".1f"), ("targets", "points", None),
        ("law", "law error (nats)", ".4f"), ("flat", "no-improvement error", ".4f"),
        ("line", "log-log line error", ".4f"), ("sd", "seed SD", ".4f"),
        ("advantage", "advantage [95% CI]", None)])
    if not not_run:
        return table
    why = markdown_table([{"n": f"({i})", "check": line[2:].split(": ", 1)[0], "why": line[2:].split(": ", 1)[1]}
                          for i, line in enumerate(not_run, 1)],
                         [("n", "", None), ("check", "check not run", None), ("why", "why", None)])
    return Markdown(table.data + "\n\n" + why.data)


_BETTER = {"additive": "the additive law", None: "neither"}  # who predicts better beyond noise, besides a form
_SYMBOLS = {"alpha": "α", "beta": "β", "alpha_N": "α_N", "alpha_D": "α_D"}


def forms_table(results: dict):
    """Per held-out check, each other form of the law against the additive one: both errors on the held-out points,
    the additive law's error minus the form's with its paired 95% interval, which predicts better beyond noise,
    and the form's parameters that are not identified (at a bound of their search)."""
    rows = []
    for d, arch, checks in _rows(results, "holdout"):
        for axis, h in checks.items():
            name = f"in {axis}, ≥{h['factor']:g}×"
            if "error" in h:
                rows.append({"dataset": d, "arch": arch, "check": name, "form": "not run (see the held-out table)"})
                continue
            for f in h.get("forms", {}).values():
                fit = f.get("fit") or {}
                at_bound = (", ".join(_SYMBOLS.get(k, k) for k in fit.get("not_identified") or {})
                            or ("no fit" if fit.get("no_fit") else "none"))
                rows.append({"dataset": d, "arch": arch, "check": name, "form": f["form"], "additive": h["law_error"],
                             "error": f["error"], "at_bound": at_bound,
                             "advantage": format_ci({"v": f["advantage_over_additive"], "v_ci": f["ci"]}, "v", "+.4f"),
                             "better": _BETTER.get(f["better"], f["form"])})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("check", "check", None), ("form", "form", None),
        ("additive", "additive law error (nats)", ".4f"), ("error", "form's error", ".4f"),
        ("advantage", "additive − form error [95% CI]", None), ("better", "better beyond noise", None),
        ("at_bound", "form's parameters at a bound", None)])


def ground_truth_table(results: dict):
    """Per architecture on a dataset with an exact entropy rate: H*, the fitted E with its interval, their
    relative difference, and the exponents of the law refitted with its floor fixed at H*."""
    rows = []
    for d, arch, g in _rows(results, "ground_truth"):
        fixed = g["fixed_floor"]
        rows.append({"dataset": d, "arch": arch, "H": g["H"], "E": format_ci(g, "E", ".4f"),
                     "rel": "—" if g["E_rel_error"] is None else f"{g['E_rel_error']:.1%}",
                     "covers": {True: "yes", False: "no"}.get(g["covers"], "—"),
                     "alpha": format_ci(fixed, "alpha"), "beta": format_ci(fixed, "beta"), "r2": fixed.get("r2")})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("H", "H* (nats)", ".4f"),
        ("E", "fitted E [95% CI]", None), ("rel", "(E − H*)/H*", None), ("covers", "interval covers H*", None),
        ("alpha", "L − H*: α [95% CI]", None), ("beta", "L − H*: β [95% CI]", None), ("r2", "L − H*: R²", ".4f")])


def gap_table(results: dict):
    """The difference of the first two families' joint laws (registry order) at equal N (and D) and at equal
    compute."""
    rows = []
    for d, ds in results["datasets"].items():
        gap = ds.get("architecture_gap")
        for r in (gap or {}).get("rows", []):
            at = f"N = {r['at']:,.0f}, D = {r['D']:,}" if "D" in r else f"C = {r['at']:.2e} FLOPs"
            rows.append({"dataset": d, "pair": " − ".join(gap["archs"]), "where": r["where"], "at": at,
                         "diff": format_ci({"v": r["difference"], "v_ci": r["ci"]}, "v", "+.3f"),
                         "verdict": r["verdict"]})
    return markdown_table(rows, [("dataset", "dataset", None), ("pair", "difference", None),
                                 ("where", "compared at", None), ("at", "", None),
                                 ("diff", "nats [95% CI]", None), ("verdict", "verdict", None)])


def sensitivity_table(results: dict):
    """The joint law's exponents and floor under other choices of N, Huber δ and sizes (a parameter at a bound
    of its search says so: it is not identified there)."""
    rows = []
    for d, arch, rs in _rows(results, "sensitivity"):
        for row in rs:
            unknown = row.get("not_identified") or {}
            cells = {k: (f"at bound {unknown[k]['bound']:g}" if k in unknown else row.get(k))
                     for k in ("alpha", "beta", "E")}
            if unknown.keys() & {"alpha", "beta"}:
                cells["a"] = "—"
            rows.append({"dataset": d, "arch": arch, **row, **cells,
                         "variant": row["variant"] + (f" (not fitted: {row['error']})" if "error" in row else "")})
    def number(spec: str):
        return lambda v: v if isinstance(v, str) else format(v, spec)

    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("variant", "variant", None),
        ("alpha", "α", number(".3f")), ("beta", "β", number(".3f")), ("E", "E (nats)", number(".3f")),
        ("a", "β/(α+β)", number(".2f"))])


def differences_table(results: dict):
    """The exponents of the joint fit beside those from differences that cancel the floor
    (:mod:`musicscale.differences`), and the held-out validation error of the law with N counted without and with
    embeddings (:func:`musicscale.analysis.n_basis_check`)."""
    rows = []
    for d, arch, diff in _rows(results, "differences"):
        j = results["datasets"][d]["joint"].get(arch, {})
        basis = results["datasets"][d].get("n_basis", {}).get(arch, {})
        rows.append({"dataset": d, "arch": arch, "joint_alpha": format_ci(j, "alpha") if "alpha" in j else "—",
                     "diff_alpha": format_ci(diff, "alpha"), "joint_beta": format_ci(j, "beta") if "beta" in j else "—",
                     "diff_beta": format_ci(diff, "beta"),
                     "ne": basis.get("non_embedding", {}).get("error"), "tot": basis.get("total", {}).get("error")})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("joint_alpha", "α, joint fit", None),
        ("diff_alpha", "α, from differences", None), ("joint_beta", "β, joint fit", None),
        ("diff_beta", "β, from differences", None),
        ("ne", "held-out error in N, non-embedding N (val)", lambda v: "—" if v is None else f"{v:.4f}"),
        ("tot", "… all parameters (val)", lambda v: "—" if v is None else f"{v:.4f}")])


def floor_gap_table(results: dict):
    """Where no floor is known: each family's largest model at its longest budget, its test loss, what its last
    doubling of data bought, and the fitted floor E it is held against."""
    rows = []
    for d, arch, j in _rows(results, "joint"):
        if results["datasets"][d].get("entropy_rate") is not None or "error" in j:
            continue
        largest, loss, gain = largest_loss(results, d, arch)
        identified = not (j.get("not_identified") or {}).get("E")
        rows.append({"dataset": d, "arch": arch, "N": largest["N"], "D": largest["D"], "loss": loss, "gain": gain,
                     "E": format_ci(j, "E"), "above": loss - j["E"] if identified and loss is not None else None})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("N", "largest N", ",.0f"), ("D", "its D", ",.0f"),
        ("loss", "test loss", ".3f"), ("gain", "last doubling bought", ".3f"), ("E", "fitted E [95% CI]", None),
        ("above", "loss − E", ".3f")])


def single_budget_table(results: dict):
    """L(N) = a N^-alpha + c at one common D (the original project's law) beside the joint law's alpha."""
    rows = []
    for d, arch, f in _rows(results, "single_budget"):
        joint = results["datasets"][d]["joint"].get(arch, {})
        rows.append({"dataset": d, "arch": arch, "D": f.get("D"),
                     "alpha": format_ci(f, "alpha") if "alpha" in f else f.get("error"), "c": format_ci(f, "c"),
                     "r2": f.get("r2"), "joint": format_ci(joint, "alpha")})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("D", "D (tokens)", ",d"),
        ("alpha", "single budget: α [95% CI]", None), ("c", "c (nats) [95% CI]", None), ("r2", "R²", ".4f"),
        ("joint", "joint law: α [95% CI]", None)])


def compute_table(results: dict):
    """L(C) = a C^-alpha_C + c on each architecture's compute frontier."""
    rows = [{"dataset": d, "arch": arch, "alpha": format_ci(c, "alpha"), "c": format_ci(c, "c"),
             "points": len(c.get("frontier_flops", [])), "draws": c.get("n_boot")}
            for d, arch, c in _rows(results, "compute")]
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("points", "frontier points", None),
        ("alpha", "α_C [95% CI]", None), ("c", "c (nats) [95% CI]", None), ("draws", "bootstrap draws", None)])


def repetition_table(results: dict):
    """Per family: R* of the effective data D' with its interval (or why it is not identified), what a token
    read for the 2nd, 4th and 16th time is worth against a fresh one, and the fit's error beside that of
    "a repeated token is as good as a fresh one"."""
    rows = []
    for d, arch, e in _rows(results, "repetition"):
        if "error" in e:
            rows.append({"dataset": d, "arch": arch, "R": f"not fitted: {e['error']}"})
            continue
        worth = {k: format_ci(w, "value", ".2f") if e["identified"] else "—"
                 for k, w in ((k, {"value": v["value"], "value_ci": v["ci"]}) for k, v in e["worth"].items())}
        rows.append({"dataset": d, "arch": arch, "sizes": ", ".join(e["sizes"]), "runs": e["n_runs"],
                     "points": e["n_points"], "epochs": e["max_epochs"],
                     "R": format_ci(e, "R_star", ".2f") if e["identified"] else _not_identified(e),
                     "w2": worth["2"], "w4": worth["4"], "w16": worth["16"], "rmse": e["rmse"],
                     "rmse0": e["rmse_no_cost"]})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("sizes", "sizes", None), ("runs", "runs", None),
        ("points", "points", None), ("epochs", "up to epochs", ".0f"), ("R", "R* [95% CI]", None),
        ("w2", "2nd read worth", None), ("w4", "4th read worth", None), ("w16", "16th read worth", None),
        ("rmse", "RMSE, D' (nats)", ".4f"), ("rmse0", "RMSE, repeats = fresh", ".4f")])


def _not_identified(e: dict) -> str:
    lo, hi = e["bounds"]
    return (f"not identified (fit {e['R_star']:.3g}, interval {e['R_star_ci'][0]:.3g}–{e['R_star_ci'][1]:.3g} reaches "
            f"the search bound {hi if e['bound_reached'] == 'upper' else lo:g})")


def effective_table(results: dict):
    """Per real corpus and family: the joint law on effective data D' (or within the fresh range of epochs)
    beside the law on D as read, with the largest epochs of its points."""
    rows = []
    for d, arch, e in _rows(results, "joint_effective"):
        j = results["datasets"][d]["joint"].get(arch, {})
        rows.append({"dataset": d, "arch": arch, "epochs": e.get("max_epochs"), "basis": e.get("basis", "—"),
                     "left": e.get("n_left_out"), "E0": format_ci(j, "E"), "E": format_ci(e, "E"),
                     "beta0": format_ci(j, "beta"), "beta": format_ci(e, "beta") if "beta" in e else e.get("error")})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("epochs", "largest epochs", ".2f"),
        ("basis", "fitted on", None), ("left", "points left out", None), ("E0", "E, on D [95% CI]", None),
        ("E", "E, on D' [95% CI]", None), ("beta0", "β, on D", None), ("beta", "β, on D'", None)])




def glue(results: dict) -> None:
    """Glue every finding (myst-nb) as the text the book's prose cites (:func:`musicscale.findings.findings`), so
    that the prose cites computed values, never typed ones."""
    from myst_nb import glue as glue_object

    for name, text in findings(results).items():
        glue_text(name, text)
    # the findings page's tables, one dataset each (myst-nb pastes a glued HTML table across pages)
    for d, ds in results["datasets"].items():
        one = {**results, "datasets": {d: ds}}
        tables = {"_holdout_table": holdout_table, "_forms_table": forms_table, "_joint_table": joint_table,
                  "_single_budget_table": single_budget_table, "_differences_table": differences_table}
        if ds.get("entropy_rate") is not None:
            tables["_ground_truth_table"] = ground_truth_table
        else:
            tables["_floor_gap_table"] = floor_gap_table
        if (ds.get("architecture_gap") or {}).get("rows"):
            tables["_gap_table"] = gap_table
        for suffix, table in tables.items():
            glue_object(d + suffix, html_table(table(one)), display=False)


def floor_check(results: dict):
    """Per dataset with an exact entropy rate: H*, the best test loss, and any run below H* (loudly)."""
    from IPython.display import Markdown

    lines = []
    for d, ds in results["datasets"].items():
        if ds.get("entropy_rate") is None:
            continue
        h, best = ds["entropy_rate"], ds["min_test_loss"]
        lines.append(f"- **{d}**: H* = {h:.4f} nats/char; best test loss {best:.4f} ({best - h:+.4f} above H*).")
        if ds["below_floor"]:
            lines.append(f"  **WARNING: {len(ds['below_floor'])} run(s) below the exact entropy rate, which is "
                         f"impossible without leakage or a bug: {', '.join(ds['below_floor'])}.**")
        else:
            lines.append("  No run is below H*.")
    return Markdown("\n".join(lines) or "No dataset with an exact entropy rate was analysed.")
