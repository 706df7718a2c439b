"""The scaling laws of a set of runs and the checks on them (the science of the analyze stage,
:mod:`musicscale.stages.analyze`, which reads the runs and writes ``experiment_results.json``).

Every run is a WSD trunk with cooldown branches (:mod:`musicscale.train`): each branch end is one point
(N, D, L). Per dataset and architecture the primary result is the joint law
``L(N, D) = E + A N^-alpha + B D^-beta`` fitted to every point of every run, with 95% intervals from a
bootstrap over whole runs; from it come ``L(N)`` with unlimited data (``E + A N^-alpha``), ``L(N)`` at the
largest D every size reached, and the compute-optimal split. Then the checks: held-out extrapolation in N
and in D beside naive baselines and other forms of the law (:mod:`musicscale.holdout`), ``E`` against the
exact entropy rate ``H*`` of the synthetic grammar and a fit of ``L - H*`` with no free floor, the
sensitivity of the exponents to the fit's choices, and, per dataset, the Transformer-LSTM difference with
its own interval. The compute frontier and ``L(C)`` use the validation loss (they select points), with
compute counted from each model's own FLOPs per token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import differences, holdout, identification, repetition
from .fitting import percentile_ci
from .joint_law import JointFit, fit_joint_law, flag_below_floor, joint_fit, joint_law
from .models import arch_order
from .power_law import compute_frontier, fit_compute_law_over_runs, fit_power_law
from .repetition import FRESH_EPOCHS
from .workdir import json_safe

HOLDOUT_FACTORS = {"N": 10.0, "D": 4.0}  # how far the held-out checks extrapolate, in N and in D
SENSITIVITY_DELTAS = (1e-3, 1e-2, 1e-1)  # Huber deltas of the sensitivity table (the first is the main fit's)


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


def early_tokens(runs: Sequence[dict]) -> int:
    """The D below which a point is early and not fitted: the shortest budget of a study that trains every size at
    several budgets (0, none early, for one run per size, where the branches are all the D there is). Early training
    follows other dynamics than the law's, and Choshen et al. (2025, "A Hitchhiker's Guide to Scaling Law
    Estimation") leave out the points before a number of tokens, not a fraction of each run: a point at 32 K tokens
    is early whether its run goes on to 256 K or to 4 M. The shortest budget is a threshold the design fixes in
    advance (every size reaches it after a full cooldown), so no loss, validation or test, moves it."""
    budgets: dict[str, set[int]] = {}
    for r in runs:
        budgets.setdefault(r["size"], set()).add(r["tokens_seen"])
    if not budgets or min(len(b) for b in budgets.values()) < 2:
        return 0
    return min(min(b) for b in budgets.values())


def cooldown_points(runs: Sequence[dict]) -> list[dict]:
    """Every end of a cooldown branch of every run: run, size, seed, N (non-embedding and total), D, its run's
    longest branch D_max, whether it is an early point (D below :func:`early_tokens` of ``runs``), D/N, training
    FLOPs of a run of that length, validation and test loss."""
    early = early_tokens(runs)
    return [{"run": r["run"], "size": r["size"], "seed": r["seed"], "N": r["params_non_embedding"],
             "N_total": r.get("params_total", r["params_non_embedding"]), "D": p["tokens"],
             "D_max": r["tokens_seen"], "early": p["tokens"] < early,
             "D_per_N": p["tokens"] / r["params_non_embedding"], "flops": p["flops"],
             "U": r.get("unique_tokens"), "epochs": p.get("epochs"),
             "val_loss": p["val_loss"], "test_loss": p["test_loss"]}
            for r in sorted(runs, key=lambda r: (r["params_non_embedding"], r["seed"])) for p in r["curve"]]


def common_tokens(runs: Sequence[dict]) -> int | None:
    """The largest D at which every size of ``runs`` has a cooldown point (None if there is none)."""
    by_size: dict[str, set[int]] = {}
    for r in runs:
        by_size.setdefault(r["size"], set()).update(p["tokens"] for p in r["curve"])
    shared = set.intersection(*by_size.values()) if by_size else set()
    return max(shared) if shared else None


def flops_of_size(runs: Sequence[dict]):
    """FLOPs per token as a function of N for one architecture (the project's own count, attention included,
    not 6N): piecewise linear in log-log through its sizes, extended beyond them along the end segments."""
    from scipy.interpolate import interp1d

    pairs = sorted({(float(r["params_non_embedding"]), float(r["flops_per_token"])) for r in runs})
    logn, logf = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    if len(pairs) == 1:  # one size: FLOPs proportional to N
        return lambda N: np.exp(logf[0] + np.log(np.asarray(N, dtype=float)) - logn[0])
    line = interp1d(logn, logf, fill_value="extrapolate", assume_sorted=True)
    return lambda N: np.exp(line(np.log(np.asarray(N, dtype=float))))


def frontier_loss(params: np.ndarray, C: float, n_range: tuple[float, float], flops) -> np.ndarray:
    """The lowest loss the law promises at compute C over N in ``n_range`` (each N trained on
    ``C / flops(N)`` tokens), for every row of ``params`` (n, 5) at once."""
    N = np.geomspace(n_range[0], n_range[1], 256)
    D = C / flops(N)
    P = np.atleast_2d(params)
    loss = joint_law(tuple(P[:, i, None] for i in range(5)), N[None, :], D[None, :])
    return loss.min(axis=1)


def optimal_size_exponent(params: np.ndarray, C_range: tuple[float, float], n_range: tuple[float, float],
                          flops) -> np.ndarray:
    """The slope of log N_opt against log C between the ends of ``C_range``, with compute counted by
    ``flops`` (this project's FLOPs per token), for every row of ``params``: the numerical counterpart of
    beta / (alpha + beta), which assumes C = 6 N D. N_opt is searched on a fine grid three decades wider
    than ``n_range`` on both sides (the law extrapolated, as the closed form does)."""
    N = np.geomspace(n_range[0] / 1e3, n_range[1] * 1e3, 2048)
    P = np.atleast_2d(params)
    logs = []
    for C in C_range:
        loss = joint_law(tuple(P[:, i, None] for i in range(5)), N[None, :], (C / flops(N))[None, :])
        logs.append(np.log(N[np.argmin(loss, axis=1)]))
    return (logs[1] - logs[0]) / (math.log(C_range[1]) - math.log(C_range[0]))


def _interval(values: np.ndarray) -> list[float | None]:
    return [json_safe(v) for v in percentile_ci(np.asarray(values)[np.isfinite(values)])]


def fit_joint(points: holdout.Points, *, n_boot: int, seed: int, delta: float = 1e-3,
              start: JointFit | None = None) -> JointFit:
    """The joint law on every end-of-cooldown point. The bootstrap resamples whole runs within each size:
    the sizes are the study's design, the seeds its randomness, so a resample is the study rerun with seeds
    drawn again (a size trained at one seed adds no resampling variation, which the report says)."""
    return fit_joint_law(points.N, points.D, points.L, groups=points.run, strata=points.strata, n_boot=n_boot,
                                 seed=seed, delta=delta, start=start)


def joint_summary(fit: JointFit, runs: Sequence[dict], records: Sequence[dict]) -> dict:
    """The joint fit for the JSON file, with what the report derives from it: L(N) with unlimited data and at
    the largest common D for every size, and the compute-optimal exponent (C = 6ND, and this project's
    own FLOPs per token)."""
    out = fit.to_dict()
    sizes = sorted({(r["params_non_embedding"], r["size"]) for r in runs})
    N = np.array([n for n, _ in sizes], dtype=float)
    d_common = common_tokens(runs)
    out["common_D"] = d_common
    for key, D in (("loss_at_infinite_D", math.inf), ("loss_at_common_D", d_common)):
        if D is None:
            out[key] = None
            continue
        lo, hi = fit.band(N, D)
        out[key] = [{"size": s, "N": float(n), "L": float(v), "ci": [json_safe(a), json_safe(b)]}
                    for (n, s), v, a, b in zip(sizes, fit.predict(N, D), lo, hi)]
    out["optimal_exponents"] = {k: list(v) if isinstance(v, tuple) else v for k, v in fit.optimal_exponents().items()}
    flops = flops_of_size(runs)
    C = np.array([p["flops"] for p in records], dtype=float)
    c_range, n_range = (float(C.min()), float(C.max())), (float(N.min()), float(N.max()))
    a_own = optimal_size_exponent(np.array([fit.params]), c_range, n_range, flops)[0]
    a_draws = optimal_size_exponent(fit.boot_params, c_range, n_range, flops) if len(fit.boot_params) else []
    out["optimal_exponents"].update(a_own_flops=float(a_own), a_own_flops_ci=_interval(np.asarray(a_draws)),
                                    C_range=list(c_range))
    out["points"] = {key: [r[field] for r in records]
                     for key, field in (("N", "N"), ("D", "D"), ("L", "test_loss"), ("run", "run"))}
    return out


def single_budget_fit(runs: Sequence[dict], D: int | None, *, n_boot: int, seed: int) -> dict:
    """``L(N) = a N^-alpha + c`` on the test losses at one common D (every seed a point): the single-budget
    law the original project fitted, for comparison with the joint law at the same D."""
    if D is None:
        return {"error": "no branch length that every size reached"}
    pts = [(r["params_non_embedding"], p["test_loss"]) for r in runs for p in r["curve"] if p["tokens"] == D]
    N, L = (np.array(v, dtype=float) for v in zip(*pts))
    out: dict = {"D": D, "n_points": len(L)}
    if len(np.unique(N)) < 3:
        out["error"] = f"only {len(np.unique(N))} distinct sizes at D = {D:,}: a 3-parameter law needs 3"
        return out
    fit = fit_power_law(N, L, n_boot=n_boot, seed=seed)
    out.update(fit.to_dict())
    return out


def ground_truth(fit: JointFit, points: holdout.Points, entropy_rate: float, *, n_boot: int,
                 seed: int) -> dict:
    """The fitted floor E (with its interval) against the exact entropy rate H*, and the law refitted with
    its floor fixed at H* (``L - H* = A N^-alpha + B D^-beta``)."""
    lo, hi = fit.E_ci
    unknown = {k: v for k, v in fit.not_identified().items() if k == "E"}
    # a floor at its bound is no estimate of H*: no relative error, no coverage
    covers = bool(lo <= entropy_rate <= hi) if math.isfinite(lo) and not unknown else None
    out = {"H": entropy_rate, "E": fit.E, "E_ci": [json_safe(lo), json_safe(hi)],
           "E_rel_error": None if unknown else (fit.E - entropy_rate) / entropy_rate, "covers": covers,
           "not_identified": unknown}
    excess = fit_joint_law(points.N, points.D, points.L, groups=points.run, strata=points.strata,
                                   E=entropy_rate, n_boot=n_boot, seed=seed, start=fit)
    out["fixed_floor"] = {k: v for k, v in excess.to_dict().items() if k not in ("residuals",)}
    return out


def sensitivity(fit: JointFit, records: Sequence[dict]) -> list[dict]:
    """alpha, beta, E and beta/(alpha+beta) of the joint law under other choices: total instead of
    non-embedding parameters, other Huber deltas, and without the smallest size (point estimates, each
    started from the main fit)."""
    points = holdout.Points.from_records(records)
    smallest = points.N.min()
    variants = [("main fit: non-embedding N, Huber δ = 1e-3", points, SENSITIVITY_DELTAS[0], fit)]
    total = points.with_values(N=np.array([r["N_total"] for r in records], dtype=float))
    variants.append(("total parameters (embeddings included)", total, SENSITIVITY_DELTAS[0], None))
    variants += [(f"Huber δ = {d:g}", points, d, None) for d in SENSITIVITY_DELTAS[1:]]
    variants.append(("without the smallest size", points[points.N > smallest], SENSITIVITY_DELTAS[0], None))
    rows = []
    for name, pts, delta, done in variants:
        try:
            f = done or fit_joint_law(pts.N, pts.D, pts.L, delta=delta, n_boot=0, start=fit)
        except ValueError as err:
            rows.append({"variant": name, "error": str(err)})
            continue
        rows.append({"variant": name, "alpha": f.alpha, "beta": f.beta, "E": f.E,
                     "a": f.beta / (f.alpha + f.beta) if f.alpha + f.beta > 0 else None,
                     "n_points": f.n_points, "converged": f.converged, "not_identified": f.not_identified()})
    return rows


def n_basis_check(records: Sequence[dict]) -> dict:
    """Which count of parameters the law extrapolates better in N: non-embedding N (Kaplan et al. 2020) or all
    parameters (Pearce & Song 2024: at small N the choice moves alpha). Each basis fits the law on the sizes at most
    1/:data:`HOLDOUT_FACTORS` ["N"] of the largest and predicts the larger ones, on **validation** losses (this
    chooses, so test data may not); the error is the mean absolute error over held-out (N, D) means."""
    out: dict = {}
    for basis, key in (("non_embedding", "N"), ("total", "N_total")):
        pts = holdout.Points.from_records([{**r, "N": r[key]} for r in records], loss="val_loss")
        try:
            fit_mask, held_mask = holdout.split(pts, "N", HOLDOUT_FACTORS["N"])
            fitted, held = pts[fit_mask], pts[held_mask]
            law = fit_joint_law(fitted.N, fitted.D, fitted.L, delta=SENSITIVITY_DELTAS[0], n_boot=0)
        except ValueError as err:
            return {"error": str(err)}
        means: dict[tuple[float, float], list[float]] = {}
        for n, d, v in zip(held.N, held.D, held.L):
            means.setdefault((n, d), []).append(v)
        errors = [abs(float(law.predict(n, d)) - float(np.mean(v))) for (n, d), v in means.items()]
        out[basis] = {"error": float(np.mean(errors)), "alpha": law.alpha, "n_held": len(errors)}
    out["chosen"] = min(("non_embedding", "total"), key=lambda b: out[b]["error"])
    return out


def gain_of_last_doubling(runs: Sequence[dict]) -> dict[str, float | None]:
    """Per size: the test loss at half the longest branch minus at the longest, averaged over seeds. Under
    WSD every branch ends cooled down, so this is what the last doubling of D bought: near zero means the
    size has stopped learning from more data at this budget."""
    gains: dict[str, list[float]] = {}
    longest = {}
    for r in runs:
        longest[r["size"]] = max(longest.get(r["size"], 0), r["tokens_seen"])
    for r in (r for r in runs if r["tokens_seen"] == longest[r["size"]]):  # each size's longest budget
        by_tokens = {p["tokens"]: p["test_loss"] for p in r["curve"]}
        half = by_tokens.get(r["tokens_seen"] // 2)
        if half is not None and r.get("test_loss") is not None:
            gains.setdefault(r["size"], []).append(half - r["test_loss"])
    return {size: float(np.mean(g)) for size, g in gains.items()}


def analyze_architecture(runs: Sequence[dict], *, entropy_rate: float | None, n_boot: int, seed: int) -> dict:
    """Every fit and check of one architecture on one dataset (a worker's unit of work)."""
    every = cooldown_points(runs)
    records = [r for r in every if not r["early"]]
    points = holdout.Points.from_records(records)
    n_check = max(50, n_boot // 5)  # bootstrap draws of the fixed-floor fit, whose intervals decide nothing
    out: dict = {"n_runs": len(runs), "fit_points": {"all": len(every), "early": len(every) - len(records),
                                                         "below_tokens": early_tokens(runs)}}
    out["budgets"] = [{"size": s, "N": n, "D": d, "D_per_N": d / n, "D_min": d_min}
                      for s, n, d, d_min in sorted({(r["size"], r["params_non_embedding"], r["tokens_seen"],
                                                     r["curve"][0]["tokens"]) for r in runs}, key=lambda t: t[1])]
    out["last_doubling_gain"] = gain_of_last_doubling(runs)
    out["epochs"] = epochs_summary(records)
    try:
        fit = fit_joint(points, n_boot=n_boot, seed=seed)
    except ValueError as err:
        out["joint"] = {"error": str(err)}
        fit = None
    if fit is not None:
        out["joint"] = joint_summary(fit, runs, records)
        out["holdout"] = {}
        for axis, factor in HOLDOUT_FACTORS.items():
            try:
                # a verdict follows this interval: as many draws as the joint law's; with H*, the law with its
                # floor fixed there is one of the forms compared
                out["holdout"][axis] = holdout.check(points, axis, factor, n_boot=n_boot, seed=seed, start=fit,
                                                     entropy_rate=entropy_rate)
            except ValueError as err:
                out["holdout"][axis] = {"axis": axis, "factor": factor, "error": str(err)}
        out["sensitivity"] = sensitivity(fit, records)
        out["n_basis"] = n_basis_check(records)
        # the exponents again from differences that cancel E: beside the joint fit's, whether floor and exponent
        # were told apart
        out["differences"] = differences.difference_exponents(points, n_boot=max(50, n_boot // 5), seed=seed)
        if entropy_rate is not None:
            out["ground_truth"] = ground_truth(fit, points, entropy_rate, n_boot=n_check, seed=seed)
    out["single_budget"] = single_budget_fit(runs, common_tokens(runs), n_boot=max(20, n_boot // 10), seed=seed)
    curves = compute_points(runs)
    C_f, L_f = compute_frontier(np.concatenate([c for c, _ in curves]), np.concatenate([v for _, v in curves]))
    entry: dict = {"frontier_flops": C_f.tolist(), "frontier_loss": L_f.tolist()}
    try:
        cfit = fit_compute_law_over_runs(curves, n_boot=max(20, n_boot // 10), seed=seed)
        entry.update(cfit.to_dict())
    except ValueError as err:
        entry["error"] = str(err)
    out["compute"] = entry
    return out


def epochs_summary(records: Sequence[dict]) -> dict:
    """How often the points' models read their data: the largest epochs, and the points beyond
    :data:`FRESH_EPOCHS` (where a repeated token is no longer nearly as good as a fresh one)."""
    epochs = [r["epochs"] for r in records if r.get("epochs") is not None]
    if not epochs:  # runs of an older record without epochs
        return {"max": None, "n_beyond": None, "n_points": len(records)}
    beyond = [f"{r['run']} at D = {r['D']:,}" for r in records if (r.get("epochs") or 0) > FRESH_EPOCHS]
    return {"max": float(max(epochs)), "unique_tokens": max(r["U"] for r in records if r.get("U")),
            "n_beyond": len(beyond), "beyond": beyond, "threshold": FRESH_EPOCHS, "n_points": len(records)}


def repeated_points(repeats: Sequence[dict], mains: Sequence[dict]) -> list[repetition.RepeatedPoint]:
    """Every branch end of the repetition runs of one family, beside the mean test loss of the main runs of
    its size at the same D (which read no token twice)."""
    fresh: dict[tuple[str, int], list[float]] = {}
    for r in mains:
        for p in r["curve"]:
            fresh.setdefault((r["size"], p["tokens"]), []).append(p["test_loss"])
    out = []
    for r in repeats:
        U = r["config"]["unique_tokens"]
        for p in r["curve"]:
            ref = fresh.get((r["size"], p["tokens"]))
            if ref:
                out.append(repetition.RepeatedPoint(r["run"], r["size"], round(r["tokens_seen"] / U),
                                                    float(r["params_non_embedding"]), float(p["tokens"]), float(U),
                                                    float(p["test_loss"]), float(np.mean(ref))))
    return out


def analyze_repetition(repeats: Sequence[dict], mains: Sequence[dict], fit: JointFit, *, n_boot: int,
                       seed: int) -> dict:
    """R* of one family (:mod:`musicscale.repetition`) given its fresh-data joint law ``fit``, what a repeated
    token is worth, and what the figure draws: the points at each run's longest branch (loss against epochs at
    fixed D) and the fitted curve per size."""
    pts = repeated_points(repeats, mains)
    try:
        rfit = repetition.fit_repetition(pts, fit.params, fit.boot_params, n_boot=n_boot, seed=seed)
    except ValueError as err:
        return {"error": str(err), "n_runs": len(repeats)}
    out = rfit.to_dict()
    R = rfit.R_star
    ci = [v if v is not None and math.isfinite(v) else None for v in rfit.R_star_ci]
    out["worth"] = {str(k): {"value": repetition.worth_of_epoch(k, R),
                        "ci": [repetition.worth_of_epoch(k, c) if c else None for c in ci]}
                    for k in (2, 4, 16)}
    sizes = sorted({(p.N, p.size) for p in pts})
    out["sizes"] = [s for _, s in sizes]
    out["max_epochs"] = float(max(p.D / p.U for p in pts))
    longest = {}
    for p in pts:
        longest[p.run] = max(longest.get(p.run, p), p, key=lambda q: q.D)
    out["figure"] = {"points": [{"size": p.size, "N": p.N, "epochs": p.D / p.U, "L": p.L, "L_fresh": p.L_fresh,
                                 "D": p.D} for p in longest.values()],
                     "fresh": [{"size": r["size"], "epochs": r.get("epochs"), "L": r["test_loss"],
                                "D": r["tokens_seen"]} for r in mains if r["size"] in out["sizes"]]}
    curves = []
    for N, size in sizes:
        D = max(p.D for p in pts if p.size == size)
        L_fresh = float(np.mean([p.L_fresh for p in pts if p.size == size and p.D == D]))
        epochs = np.geomspace(1.0, out["max_epochs"], 40)
        pred = L_fresh + joint_law(fit.params, N, repetition.effective_data(D, D / epochs, R)) \
            - joint_law(fit.params, N, D)
        curves.append({"size": size, "D": D, "epochs": epochs.tolist(), "L": pred.tolist()})
    out["figure"]["curves"] = curves
    return out


def effective_joint(runs: Sequence[dict], R_star: dict | None, joint: dict, *, n_boot: int, seed: int) -> dict:
    """The joint law of a real corpus on effective data: every point's D replaced by D' with the R* measured
    on the grammar for this family, where it is identified (points beyond the epochs that experiment measured are
    left out: D' would be extrapolated there); otherwise the law on the points within :data:`FRESH_EPOCHS` epochs
    only. Says which, and how many points that left out. Where that changes nothing (no R*, every point in the
    fresh range) it is the joint law on D, ``joint``, and is not fitted again."""
    records = [r for r in cooldown_points(runs) if not r["early"]]
    if any(r.get("U") is None for r in records):
        return {"error": "runs without a record of their unique tokens (trained before epochs were recorded)"}
    points = holdout.Points.from_records(records)
    U = np.array([r["U"] for r in records], dtype=float)
    out: dict = {"max_epochs": float(max(r["epochs"] for r in records))}
    if R_star and R_star.get("identified"):
        # D' is measured up to the repetition experiment's largest epochs: points beyond are extrapolation, left out
        keep = np.array([r["epochs"] <= R_star["max_epochs"] for r in records])
        out.update(basis="effective data D'", R_star=R_star["R_star"], n_left_out=int((~keep).sum()),
                   measured_epochs=R_star["max_epochs"])
        points = points.with_values(D=repetition.effective_data(points.D, U, R_star["R_star"]))[keep]
    else:
        keep = np.array([r["epochs"] <= FRESH_EPOCHS for r in records])
        out.update(basis=f"points within {FRESH_EPOCHS:g} epochs", R_star=None, n_left_out=int((~keep).sum()))
        if keep.all() and "error" not in joint:
            out.update({k: joint[k] for k in ("E", "E_ci", "A", "A_ci", "alpha", "alpha_ci", "B", "B_ci", "beta",
                                              "beta_ci", "r2", "n_points", "n_boot", "n_failed", "not_identified",
                                              "no_fit")}, same_as_D=True)
            return out
        points = points[keep]
    try:
        fit = fit_joint(points, n_boot=n_boot, seed=seed)
    except ValueError as err:
        out["error"] = str(err)
        return out
    out.update({k: v for k, v in fit.to_dict().items() if k != "residuals"})
    return out


def architecture_gap(runs: Sequence[dict], fits: dict[str, JointFit]) -> dict:
    """The difference ``L_first - L_second`` of the joint laws of the two families in ``fits`` (in its order: the
    registry's, so Transformer − LSTM for the built-in two), with a 95% interval from their
    bootstrap draws (independent resamples of each architecture's runs, paired by index): at the smallest
    and the largest N both architectures trained, at the largest D every size of both reached; and on the
    compute frontier (each law's best loss over its own range of N) at the smallest and largest compute
    both reached."""
    (a1, f1), (a2, f2) = fits.items()
    mine = {a: [r for r in runs if r["arch"] == a] for a in fits}
    n_lo = max(min(r["params_non_embedding"] for r in rs) for rs in mine.values())
    n_hi = min(max(r["params_non_embedding"] for r in rs) for rs in mine.values())
    D = common_tokens(runs)
    k = min(len(f1.boot_params), len(f2.boot_params))
    rows = []

    def row(where: str, point: float, diff: float, draws: np.ndarray, **extra) -> dict:
        lo, hi = _interval(draws) if k else [None, None]
        return {"where": where, "at": point, **extra, "difference": float(diff), "ci": [lo, hi],
                "verdict": gap_verdict(a1, a2, diff, lo, hi)}

    if D is not None:
        for where, n in (("smallest N", n_lo), ("largest N", n_hi)):
            diff = float(f1.predict(n, D) - f2.predict(n, D))
            draws = f1.predict_draws(n, D)[:k] - f2.predict_draws(n, D)[:k]
            rows.append(row(where, float(n), diff, draws, D=D))
    flops = {a: flops_of_size(rs) for a, rs in mine.items()}
    spans = {a: (min(r["params_non_embedding"] for r in rs), max(r["params_non_embedding"] for r in rs))
             for a, rs in mine.items()}
    C_all = {a: [p["flops"] for r in rs for p in r["curve"]] for a, rs in mine.items()}
    c_lo, c_hi = max(min(c) for c in C_all.values()), min(max(c) for c in C_all.values())
    if c_lo < c_hi:
        for where, C in (("smallest common C", c_lo), ("largest common C", c_hi)):
            best = {a: frontier_loss(np.array([f.params]), C, spans[a], flops[a])[0] for a, f in fits.items()}
            draws = (frontier_loss(f1.boot_params[:k], C, spans[a1], flops[a1])
                     - frontier_loss(f2.boot_params[:k], C, spans[a2], flops[a2])) if k else np.empty(0)
            rows.append(row(where, float(C), best[a1] - best[a2], draws))
    return {"archs": [a1, a2], "rows": rows, "n_boot": k}


def gap_verdict(a1: str, a2: str, diff: float, lo: float | None, hi: float | None) -> str:
    """Which architecture is lower, by how much, and whether the interval on the difference excludes zero."""
    if lo is None or hi is None or identification.collapsed((lo, hi)):
        return f"the {a1} is {'lower' if diff < 0 else 'higher'} by {abs(diff):.3f} nats/char (no interval)"
    if hi < 0 or lo > 0:
        better = a1 if hi < 0 else a2
        interval = (identification.narrow((lo, hi), "+.3f") if identification.collapsed((lo, hi), "+.3f")
                    else f"95% interval of {a1} − {a2}: {lo:+.3f} to {hi:+.3f}")
        return f"the {better} is lower, by {abs(diff):.3f} nats/char ({interval})"
    return (f"not resolved: {a1} − {a2} = {diff:+.3f} nats/char, 95% interval {lo:+.3f} to {hi:+.3f} "
            "includes zero")


def architecture_job(args: tuple) -> dict:
    runs, entropy_rate, n_boot, seed = args
    return analyze_architecture(runs, entropy_rate=entropy_rate, n_boot=n_boot, seed=seed)


def architecture_jobs(runs: Sequence[dict], entropy_rate: float | None, n_boot: int, seed: int) -> dict[str, tuple]:
    """One unit of work per architecture present, in the report's order."""
    return {a: ([r for r in runs if r["arch"] == a], entropy_rate, n_boot, seed) for a in arch_order(runs)}


def analyze_dataset(runs: Sequence[dict], *, entropy_rate: float | None, n_boot: int, seed: int,
                    per_arch: dict[str, dict] | None = None) -> dict:
    """Every fit of one dataset (see the module docstring); ``per_arch`` holds the architectures' results
    where they were computed already (in parallel, by :func:`musicscale.stages.analyze.run`)."""
    if per_arch is None:
        per_arch = {a: architecture_job(job) for a, job in architecture_jobs(runs, entropy_rate, n_boot, seed).items()}
    archs = list(per_arch)
    out: dict = {"n_runs": len(runs), "entropy_rate": entropy_rate}
    for key in ("budgets", "last_doubling_gain", "epochs", "joint", "holdout", "sensitivity", "ground_truth",
                "single_budget", "compute", "differences", "fit_points", "n_basis"):
        out[key] = {a: v[key] for a, v in per_arch.items() if key in v}
    fits = {a: joint_fit(v["joint"]) for a, v in per_arch.items()}
    if len(archs) >= 2 and all(fits.get(a) for a in archs[:2]):  # the report's comparison: the first two families
        pair = {a: fits[a] for a in archs[:2]}
        out["architecture_gap"] = architecture_gap([r for r in runs if r["arch"] in pair], pair)
    if entropy_rate is not None:  # every measured point of every run, not only the last
        named = [(f"{r['run']} at D = {p['tokens']:,}", p["test_loss"]) for r in runs for p in r["curve"]]
        flagged = flag_below_floor([v for _, v in named], entropy_rate)
        out["below_floor"] = [named[i][0] for i in flagged]
        out["min_test_loss"] = float(min(v for _, v in named))
    return out
