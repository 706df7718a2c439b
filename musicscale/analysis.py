"""The analyze stage: the runs of the last sweep -> scaling-law fits -> ``experiment_results.json``.

Every run is a WSD trunk with cooldown branches (:mod:`musicscale.train`): each branch end is one point
(N, D, L). Per dataset and architecture: ``L(N) = a N^-alpha + c`` on the test loss of each size's longest
branch (about ``tokens_per_param`` tokens per parameter), with bootstrap intervals and a held-out check on
the largest size; both architectures compared; the compute frontier and ``L(C)`` from the end-of-cooldown
points, seeds averaged; the joint ``L(N, D)`` on every point of every run; and, on the synthetic grammar,
every test loss against the exact entropy rate ``H*`` of the test split.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__, scaling
from .train import git_commit
from .workdir import Workdir, read_json, write_json

ARCH_ORDER = ("transformer", "lstm")


class NoRunsError(FileNotFoundError):
    """A dataset has no finished run of the current data; the message names it and the notebook to run."""


def load_sweep(workdir: str | Path, datasets: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """The runs of the last sweep of each dataset (``runs/<dataset>/sweep_results.json``).

    Raises :class:`NoRunsError` naming a dataset that has no finished run, or whose runs were trained on
    other data than its token files hold now (the data were regenerated after training)."""
    from .params import as_optional_list
    from .sweep import current_fingerprint

    wd = Workdir(workdir)
    names = as_optional_list("datasets", datasets) or wd.datasets("runs")
    if not names:
        raise NoRunsError(f"no finished runs under {wd.root / 'runs'}: run notebooks/03_train.ipynb first "
                          f"(with the same workdir={str(wd.root)!r})")
    out = {}
    for d in names:
        path = wd.sweep_results(d)
        if not path.exists():
            raise NoRunsError(f"dataset {d!r} has no finished run ({path} does not exist): run "
                              f"notebooks/03_train.ipynb first (with the same workdir={str(wd.root)!r})")
        runs = read_json(path)["runs"]
        if not runs:
            raise NoRunsError(f"dataset {d!r} has no finished run in {path}: run notebooks/03_train.ipynb")
        fp = current_fingerprint(wd, d)
        stale = [r["run"] for r in runs if r.get("data_fingerprint") != fp]
        if stale:
            raise NoRunsError(f"dataset {d!r}: {len(stale)} of {len(runs)} runs in {path} were trained on other "
                              f"data than {wd.tokens_dir(d)} holds now (e.g. {stale[0]}): re-run "
                              "notebooks/03_train.ipynb, which retrains them")
        out[d] = runs
    return out


def longest_branch(runs: Sequence[dict]) -> dict[str, int]:
    """Each size's longest branch in tokens (the D its L(N) point is measured at), by size name."""
    return {r["size"]: r["tokens_seen"] for r in sorted(runs, key=lambda r: r["params_non_embedding"])}


def gain_of_last_doubling(runs: Sequence[dict]) -> dict[str, float | None]:
    """Per size: the test loss at half the longest branch minus at the longest, averaged over seeds. Under
    WSD every branch ends cooled down, so this is what the last doubling of D bought: near zero means the
    size has stopped learning from more data at this budget."""
    gains: dict[str, list[float]] = {}
    for r in runs:
        by_tokens = {p["tokens"]: p["test_loss"] for p in r["curve"]}
        half = by_tokens.get(r["tokens_seen"] // 2)
        if half is not None and r.get("test_loss") is not None:
            gains.setdefault(r["size"], []).append(half - r["test_loss"])
    return {size: float(np.mean(g)) for size, g in gains.items()}


def _arrays(runs: Sequence[dict], *keys: str) -> list[np.ndarray]:
    return [np.array([float(r[k]) for r in runs]) for k in keys]


def fit_architecture(runs: Sequence[dict], *, n_boot: int, seed: int) -> dict:
    """Power law in N for one architecture's runs at one budget, with the held-out check."""
    N, L = _arrays(runs, "params_non_embedding", "test_loss")
    out: dict = {"n_runs": len(runs), "sizes": [s for _, s in sorted({(r["params_non_embedding"], r["size"])
                                                                       for r in runs})]}
    if len(np.unique(N)) < 3:
        out["error"] = f"only {len(np.unique(N))} distinct sizes: a 3-parameter law needs 3"
        return out
    fit = scaling.fit_power_law(N, L, n_boot=n_boot, seed=seed)
    out.update(fit.to_dict())
    out["_fit"] = fit
    try:
        held = scaling.holdout_extrapolation(N, L)
        out["extrapolation"] = held
        out["extrapolation_rel_error"] = held["rel_error"]
    except ValueError as err:  # fewer than 4 sizes
        out["extrapolation"] = None
        out["extrapolation_rel_error"] = None
        out["extrapolation_note"] = str(err)
    return out


def compute_points(runs: Sequence[dict], loss: str = "val_loss") -> list[tuple[np.ndarray, np.ndarray]]:
    """Per size, (training FLOPs of a run of length D, loss) at every end of cooldown, averaged over the
    seeds of that size (validation loss by default: the frontier selects points, so test data may not)."""
    by_size: dict[tuple[int, int], list[float]] = {}
    for r in runs:
        for p in r["curve"]:
            by_size.setdefault((r["params_non_embedding"], p["flops"]), []).append(p[loss])
    curves = []
    for n in sorted({n for n, _ in by_size}):
        pts = sorted((c, float(np.mean(v))) for (m, c), v in by_size.items() if m == n)
        curves.append((np.array([c for c, _ in pts], dtype=float), np.array([v for _, v in pts])))
    return curves


def cooldown_points(runs: Sequence[dict]) -> list[dict]:
    """Every end of a cooldown branch of every run: size, seed, N, D, D/N, validation and test loss."""
    return [{"size": r["size"], "seed": r["seed"], "N": r["params_non_embedding"], "D": p["tokens"],
             "D_per_N": p["tokens"] / r["params_non_embedding"], "val_loss": p["val_loss"], "test_loss": p["test_loss"]}
            for r in sorted(runs, key=lambda r: (r["params_non_embedding"], r["seed"])) for p in r["curve"]]


def joint_points(runs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, test loss) at every end of cooldown of every run: all sizes, all branches, all seeds."""
    pts = [(r["params_non_embedding"], p["tokens"], p["test_loss"]) for r in runs for p in r["curve"]]
    N, D, L = (np.array(v, dtype=float) for v in zip(*pts))
    return N, D, L


def analyze_dataset(runs: Sequence[dict], *, entropy_rate: float | None, n_boot: int, seed: int) -> dict:
    """Every fit of one dataset (see the module docstring)."""
    archs = [a for a in ARCH_ORDER if any(r["arch"] == a for r in runs)]
    main = list(runs)
    out: dict = {"n_runs": len(runs), "entropy_rate": entropy_rate, "fits": {}, "compute": {}, "joint": {},
                 "budgets": {}, "last_doubling_gain": {}}
    for arch in archs:
        mine = [r for r in main if r["arch"] == arch]
        out["budgets"][arch] = [{"size": s, "N": n, "D": d, "D_per_N": d / n, "D_min": d_min}
                                for s, n, d, d_min in sorted({(r["size"], r["params_non_embedding"], r["tokens_seen"],
                                                              r["curve"][0]["tokens"]) for r in mine},
                                                             key=lambda t: t[1])]
        out["last_doubling_gain"][arch] = gain_of_last_doubling(mine)
        out["fits"][arch] = fit_architecture(mine, n_boot=n_boot, seed=seed)

        curves = compute_points(mine)
        C_f, L_f = scaling.compute_frontier(np.concatenate([c for c, _ in curves]),
                                            np.concatenate([v for _, v in curves]))
        entry: dict = {"frontier_flops": C_f.tolist(), "frontier_loss": L_f.tolist()}
        try:
            cfit = scaling.fit_compute_law_over_runs(curves, n_boot=max(20, n_boot // 10), seed=seed)
            entry.update(cfit.to_dict())
            entry["_fit"] = cfit
        except ValueError as err:
            entry["error"] = str(err)
        out["compute"][arch] = entry

        N, D, Lj = joint_points(mine)
        try:
            jfit = scaling.fit_joint_law(N, D, Lj, n_boot=max(50, n_boot // 10), seed=seed)
            joint = jfit.to_dict()
            joint["optimal_exponents"] = {k: list(v) if isinstance(v, tuple) else v
                                          for k, v in jfit.optimal_exponents().items()}
            joint["points"] = {"N": N.tolist(), "D": D.tolist(), "L": Lj.tolist()}
            joint["_fit"] = jfit
        except ValueError as err:
            joint = {"error": str(err)}
        out["joint"][arch] = joint

    fitted = [out["fits"][a].get("_fit") for a in archs]
    if len(archs) == 2 and all(fitted):
        Ns = [r["params_non_embedding"] for r in main]
        cross = scaling.crossover(fitted[0], fitted[1], (min(Ns), max(Ns)))
        out["crossover_N"] = cross
        n_ref = max(Ns)
        out["loss_ratio_at_largest"] = float(fitted[0].predict(n_ref) / fitted[1].predict(n_ref))
        out["comparison"] = {where: compare_at(dict(zip(archs, fitted)), n) for where, n in
                             (("smallest", min(Ns)), ("largest", max(Ns)))}
    if entropy_rate is not None:  # every measured point of every run, not only the last
        named = [(f"{r['run']} at D = {p['tokens']:,}", p["test_loss"]) for r in runs for p in r["curve"]]
        flagged = scaling.flag_below_floor([v for _, v in named], entropy_rate)
        out["below_floor"] = [named[i][0] for i in flagged]
        out["min_test_loss"] = float(min(v for _, v in named))
    return out


def compare_at(fits: dict[str, scaling.PowerLawFit], N: float) -> dict:
    """Which architecture's fitted loss is lower at N, and whether the 95% bands separate there."""
    pred = {a: float(f.predict(N)) for a, f in fits.items()}
    band = {a: [float(v[0]) for v in f.band(np.array([N]))] for a, f in fits.items()}
    (better, lb), (worse, lw) = sorted(pred.items(), key=lambda kv: kv[1])
    separated = np.isfinite(band[better][1]) and band[better][1] < band[worse][0]
    bands = "the 95% bands do not overlap" if separated else "the 95% bands overlap, so this is not resolved"
    verdict = f"at N = {N:,.0f} the {better} is better ({lb:.3f} against {lw:.3f} nats/char; {bands})"
    return {"N": N, "predicted": pred, "band": band, "better": better, "separated": bool(separated),
            "verdict": verdict}


def law_verdict(fit: dict) -> str:
    """Does L(N) hold for one fit by the report's standard (R² >= 0.95, held-out error <= 5%)?"""
    if "r2" not in fit:
        return f"not fitted ({fit.get('error', 'no runs')})"
    err = fit.get("extrapolation_rel_error")
    err_text = "no held-out check (fewer than 4 sizes)" if err is None else f"held-out error {err:.1%}"
    holds = fit["r2"] >= 0.95 and err is not None and err <= 0.05
    return (f"R² = {fit['r2']:.3f}, {err_text}: " +
            ("the power law holds by this report's standard" if holds else
             "the power law does not meet this report's standard (R² >= 0.95 and held-out error <= 5%)"))


def analyze(workdir: str | Path, *, datasets: Sequence[str] | None = None, n_boot: int = 1000,
            seed: int = 0) -> dict:
    """Fit everything for every dataset of the last sweep and write ``results/experiment_results.json``.

    The returned dict also holds the fit objects under ``_fit`` keys (for plotting); the JSON file
    holds everything else.
    """
    from .params import as_int

    as_int("n_boot", n_boot, minimum=0)
    as_int("seed", seed)
    wd = Workdir(workdir)
    sweeps = load_sweep(workdir, datasets)
    results: dict = {"runs": [], "datasets": {}, "parameters": {"n_boot": n_boot, "seed": seed},
                     "units": "nats per character; N = non-embedding parameters; C = training FLOPs",
                     "versions": {"musicscale": __version__, "python": platform.python_version()},
                     "git_commit": git_commit()}
    for dataset, runs in sweeps.items():
        meta = read_json(wd.require(wd.tokens_meta(dataset)))
        h_star = (meta.get("entropy_rate") or {}).get("test")
        results["runs"].extend(runs)
        ds = results["datasets"][dataset] = analyze_dataset(runs, entropy_rate=h_star, n_boot=n_boot, seed=seed)
        ds["vocab_size"] = meta["vocab_size"]
        searches = read_json(wd.lr_search(dataset)) if wd.lr_search(dataset).exists() else []
        ds["lr_search"] = {a: [s for s in searches if s["arch"] == a] for a in ds["fits"]}
        ds["points"] = {a: cooldown_points([r for r in runs if r["arch"] == a]) for a in ds["fits"]}
    write_json(wd.experiment_results, strip_private(results))
    return results


def strip_private(obj):
    """``obj`` without the ``_fit`` entries (fit objects are for plotting, not for the JSON file)."""
    if isinstance(obj, dict):
        return {k: strip_private(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [strip_private(v) for v in obj]
    return obj


def format_ci(entry: dict, key: str, spec: str = ".3f") -> str:
    value, ci = entry.get(key), entry.get(f"{key}_ci") or [None, None]
    if value is None:
        return "—"
    if ci[0] is None:
        return format(value, spec)
    return f"{value:{spec}} [{ci[0]:{spec}}, {ci[1]:{spec}}]"


def fits_table(results: dict):
    """L(N) per dataset and architecture: parameters with 95% intervals, R², held-out error, H*."""
    from .report import markdown_table

    rows = []
    for d, ds in results["datasets"].items():
        for arch, f in ds["fits"].items():
            rows.append({"dataset": d, "arch": arch, "runs": f["n_runs"], "alpha": format_ci(f, "alpha"),
                         "a": format_ci(f, "a", ".2e"), "c": format_ci(f, "c"), "r2": f.get("r2"),
                         "extrap": f.get("extrapolation_rel_error"), "h": ds.get("entropy_rate")})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("runs", "runs", None),
        ("alpha", "α [95% CI]", None), ("a", "a [95% CI]", None), ("c", "c [95% CI] (nats)", None),
        ("r2", "R²", ".4f"), ("extrap", "held-out error", ".2%"), ("h", "H* (nats)", ".4f")])


def compute_table(results: dict):
    """L(C) on the compute frontier and the joint L(N, D) per dataset and architecture."""
    from .report import markdown_table

    rows = []
    for d, ds in results["datasets"].items():
        for arch in ds["fits"]:
            c, j = ds["compute"].get(arch, {}), ds["joint"].get(arch, {})
            opt = j.get("optimal_exponents") or {}
            rows.append({"dataset": d, "arch": arch, "alpha_c": format_ci(c, "alpha"), "c_c": format_ci(c, "c"),
                         "E": format_ci(j, "E"), "alpha": format_ci(j, "alpha"), "beta": format_ci(j, "beta"),
                         "n_opt": format_ci(opt, "a", ".2f") if opt else j.get("error", "—"), "r2": j.get("r2")})
    return markdown_table(rows, [
        ("dataset", "dataset", None), ("arch", "arch", None), ("alpha_c", "L(C): α_C [95% CI]", None),
        ("c_c", "L(C): c", None), ("E", "L(N,D): E", None), ("alpha", "L(N,D): α", None),
        ("beta", "L(N,D): β", None), ("n_opt", "N_opt ∝ C^a: a", None), ("r2", "L(N,D): R²", ".4f")])


def findings(results: dict) -> dict[str, object]:
    """The numbers the report's prose cites, by glue name (``<dataset>_<arch>_<quantity>``)."""
    values: dict[str, object] = {"n_runs": len(results["runs"]), "n_boot": results["parameters"]["n_boot"]}
    for d, ds in results["datasets"].items():
        ratios = [b["D_per_N"] for bs in ds["budgets"].values() for b in bs]
        values[f"{d}_min_tokens_per_param"], values[f"{d}_max_tokens_per_param"] = min(ratios), max(ratios)
        for arch, f in ds["fits"].items():
            for key in ("alpha", "a", "c", "r2"):
                values[f"{d}_{arch}_{key}"] = f.get(key)
            for key in ("alpha", "c"):
                lo, hi = f.get(f"{key}_ci") or [None, None]
                values[f"{d}_{arch}_{key}_lo"], values[f"{d}_{arch}_{key}_hi"] = lo, hi
            err = f.get("extrapolation_rel_error")
            values[f"{d}_{arch}_extrapolation_pct"] = None if err is None else 100 * err
            runs = [r for r in results["runs"] if r["dataset"] == d and r["arch"] == arch]
            best = min(runs, key=lambda r: r["test_loss"])
            values[f"{d}_{arch}_best_test"], values[f"{d}_{arch}_best_bpc"] = best["test_loss"], best["test_bpc"]
            values[f"{d}_{arch}_compute_alpha"] = ds["compute"].get(arch, {}).get("alpha")
            for key in ("alpha", "beta", "E"):
                values[f"{d}_{arch}_joint_{key}"] = ds["joint"].get(arch, {}).get(key)
        for arch, gains in ds["last_doubling_gain"].items():
            if gains:
                largest = max(ds["budgets"][arch], key=lambda b: b["N"])["size"]
                values[f"{d}_{arch}_gain_largest"] = gains.get(largest)
                values[f"{d}_{arch}_gain_smallest"] = gains.get(min(ds["budgets"][arch], key=lambda b: b["N"])["size"])
        values[f"{d}_loss_ratio"] = ds.get("loss_ratio_at_largest")
        for arch, f in ds["fits"].items():
            values[f"{d}_{arch}_law_verdict"] = law_verdict(f)
        for where, comp in (ds.get("comparison") or {}).items():
            values[f"{d}_compare_{where}"] = comp["verdict"]
        cross = ds.get("crossover_N")
        values[f"{d}_crossover"] = (f"cross at N ≈ {cross:,.0f}" if cross else
                                    "do not cross within the measured range of N")
        if ds.get("entropy_rate") is not None:
            values[f"{d}_entropy_rate"] = ds["entropy_rate"]
            values[f"{d}_min_test"] = ds["min_test_loss"]
            values[f"{d}_n_below_floor"] = len(ds["below_floor"])
    return values


def glue_findings(results: dict) -> None:
    """Glue every finding (myst-nb) as formatted text, so that the book's prose cites computed values,
    never typed ones; a missing number reads "n/a (...)" with the reason, never "nan"."""
    from .report import glue_text

    for name, value in findings(results).items():
        glue_text(name, value, _finding_spec(name), missing=_finding_missing(name))


def _finding_spec(name: str) -> str:
    """The display format of a finding, by its glue name."""
    if name.endswith(("entropy_rate", "min_test")):
        return ".4f"
    if name.endswith("tokens_per_param"):
        return ",.0f"
    if name.endswith("_pct"):
        return ".1f"
    if name.startswith("n_") or "_n_" in name:
        return "d"
    return ".3f"


def _finding_missing(name: str) -> str:
    """Why a finding can be missing, for the reader."""
    if "_joint_" in name:
        return "the joint L(N, D) fit did not converge"
    if "_compute_" in name:
        return "no L(C) fit"
    if name.endswith("_pct"):
        return "no held-out check"
    return "the fit did not converge"


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
