"""The report's figures, one function each; every function returns a matplotlib Figure.

``draw`` makes a figure of the report by name and saves it where the workdir keeps it; ``save`` writes a
figure atomically as PNG. Losses are in nats per character; N is the non-embedding
parameter count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .analysis import compute_points
from .identification import format_ci, short
from .joint_law import joint_fit
from .models import ARCHITECTURES, arch_order
from .power_law import PowerLawFit
from .validity import SHARES
from .workdir import Workdir, atomic_write


def _color(arch: str) -> str:
    """The family's colour from the registry (grey for an unregistered one)."""
    return ARCHITECTURES[arch].color if arch in ARCHITECTURES else "tab:gray"


def save(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` as a PNG (atomically); the notebook's inline backend still shows it below the cell."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"), suffix=".png")


def draw(name: str, data: Any, workdir: str | Path) -> None:
    """Draw the report's figure ``name`` (one of :data:`musicscale.workdir.FIGURES`, each the name of a function
    here) from ``data`` and save it where the workdir keeps it: ``plots.draw("joint_law", results, workdir)``.
    The notebook's inline backend shows it below the cell."""
    path = Workdir(workdir).figure(name)  # an unknown name is a ValueError listing the figures
    save(globals()[name](data), path)


def _main_runs(results: dict, dataset: str, arch: str) -> list[dict]:
    return [r for r in results["runs"] if r["dataset"] == dataset and r["arch"] == arch]


def _archs(results: dict, datasets: Sequence[str]) -> list[str]:
    return arch_order([{"arch": a} for d in datasets for a in results["datasets"][d]["joint"]])


def _eq(entry: dict, key: str, interval: bool = False) -> str:
    """``= 0.854`` (or with its interval), or ``not identified``: a fitted value in a legend or title."""
    text = format_ci(entry, key) if interval else short(entry, key)
    return text if text.startswith(("not", "no fit")) else f"= {text}"


def _band(ax, x: np.ndarray, fit, N, D, color: str, label: str, **line) -> None:
    ax.plot(x, fit.predict(N, D), color=color, label=label, **line)
    lo, hi = fit.band(N, D)
    if np.isfinite(lo).all():
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, linewidth=0)


def _floor(ax, results: dict, dataset: str) -> None:
    h = results["datasets"][dataset].get("entropy_rate")
    if h is not None:
        ax.axhline(h, color="black", linestyle=":", label=f"exact entropy rate H* = {h:.3f}")


def scaling_laws(results: dict, datasets: Sequence[str] | None = None) -> Figure:
    """Test loss against N, one panel per (dataset, architecture): every run at the largest D all sizes
    reached, the joint law there and with unlimited data (each with its 95% band), and H*."""
    datasets = list(datasets or results["datasets"])
    archs = _archs(results, datasets)
    fig, axes = plt.subplots(len(datasets), len(archs), figsize=(6 * len(archs), 4 * len(datasets)),
                             squeeze=False)
    for i, d in enumerate(datasets):
        for j, arch in enumerate(archs):
            ax, joint = axes[i][j], results["datasets"][d]["joint"].get(arch, {})
            runs, D = _main_runs(results, d, arch), joint.get("common_D")
            fit = joint_fit(joint)
            if D is not None:
                pts = [(r["params_non_embedding"], p["test_loss"]) for r in runs for p in r["curve"]
                       if p["tokens"] == D]
                ax.scatter(*zip(*pts), color=_color(arch), zorder=3, s=18, label=f"runs at D = {D:,} (each seed)")
            if fit is not None:
                N = np.array([r["params_non_embedding"] for r in runs], dtype=float)
                grid = np.geomspace(N.min() / 1.5, N.max() * 1.5, 150)
                if D is not None:
                    _band(ax, grid, fit, grid, D, _color(arch), f"joint law at D = {D:,}")
                _band(ax, grid, fit, grid, np.inf, "gray", f"joint law, unlimited data (E {_eq(joint, 'E')})",
                      linestyle="--")
            else:
                ax.set_title(f"{d}: {arch} (no joint fit: {joint.get('error', 'no runs')})", fontsize=8)
            _floor(ax, results, d)
            ax.set(xscale="log", xlabel="N (non-embedding parameters)", ylabel="test loss (nats/char)",
                   title=f"{d}: {arch}")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def architecture_comparison(results: dict, datasets: Sequence[str] | None = None) -> Figure:
    """The difference of the two joint laws, Transformer minus LSTM, against N at the largest D every size
    of both reached, with its 95% band (paired bootstrap draws); below zero the Transformer is lower."""
    datasets = list(datasets or results["datasets"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.2), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        ds, gap = results["datasets"][d], results["datasets"][d].get("architecture_gap")
        rows = [r for r in (gap or {}).get("rows", []) if "D" in r]
        if not rows:
            ax.set_title(f"{d}: no comparison (both architectures need a joint fit)", fontsize=8)
            continue
        a1, a2 = gap["archs"]
        f1, f2 = joint_fit(ds["joint"][a1]), joint_fit(ds["joint"][a2])
        D, grid = rows[0]["D"], np.geomspace(rows[0]["at"], rows[-1]["at"], 120)
        k = min(len(f1.boot_params), len(f2.boot_params))
        ax.plot(grid, f1.predict(grid, D) - f2.predict(grid, D), color="black", label=f"{a1} − {a2} at D = {D:,}")
        if k:
            diff = f1.predict_draws(grid, D)[:k] - f2.predict_draws(grid, D)[:k]
            lo, hi = np.percentile(diff, [2.5, 97.5], axis=0)
            ax.fill_between(grid, lo, hi, color="gray", alpha=0.3, linewidth=0, label="95% interval")
        ax.axhline(0, color="gray", linewidth=1)
        for r in rows:
            lo, hi = r["ci"]
            # a percentile interval need not contain the full-data estimate: clip, not a negative bar
            yerr = None if lo is None else [[max(0.0, r["difference"] - lo)], [max(0.0, hi - r["difference"])]]
            ax.errorbar([r["at"]], [r["difference"]], yerr=yerr, fmt="o", color="black", capsize=3)
        ax.set(xscale="log", xlabel="N (non-embedding parameters)", ylabel=f"{a1} − {a2} test loss (nats/char)",
               title=d)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def holdout(results: dict, datasets: Sequence[str] | None = None) -> Figure:
    """The held-out checks that ran, one panel each: the held-out losses (seed means) against what the law
    fitted without them predicts and what the two baselines guess."""
    datasets = list(datasets or results["datasets"])
    ran = [(d, axis, arch, h) for d in datasets for axis in ("N", "D") for arch in _archs(results, datasets)
           if "error" not in (h := results["datasets"][d].get("holdout", {}).get(arch, {}).get(axis, {"error": ""}))]
    if not ran:
        fig, ax = plt.subplots(figsize=(8, 1.2))
        ax.text(0.5, 0.5, "No held-out check could run in this build (the table below says why).", ha="center",
                va="center", fontsize=11, transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    cols = min(2, len(ran))
    rows = -(-len(ran) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(ran):]:
        ax.set_axis_off()
    for ax, (d, axis, arch, h) in zip(axes.flat, ran):
        t = h["targets"]
        x = [p["D"] for p in t] if axis == "N" else [p["N"] for p in t]
        ax.scatter(x, [p["observed"] for p in t], color="black", zorder=4, label="held out (seed mean)")
        ax.plot(x, [p["law"] for p in t], "o-", color=_color(arch), label=f"law: error {h['law_error']:.3f}")
        ax.plot(x, [p["flat"] for p in t], "s--", color="gray", markersize=4,
                label=f"no further improvement: {h['flat_error']:.3f}")
        ax.plot(x, [p["loglinear"] for p in t], "^:", color="gray", markersize=4,
                label=f"log-log line: {h['loglinear_error']:.3f}")
        _floor(ax, results, d)
        what = f"N ≥ {h['factor']:g}× the fitted sizes" if axis == "N" else f"D ≥ {h['factor']:g}× the branches"
        ax.set(xscale="log", xlabel="D (tokens)" if axis == "N" else "N (non-embedding parameters)",
               ylabel="test loss (nats/char)", title=f"{d}: {arch}, held out: {what}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def training_curves(results: dict, datasets: Sequence[str] | None = None) -> Figure:
    """Validation loss at the end of every cooldown branch against its tokens D, for each size (first seed),
    one panel per (dataset, arch): each curve is the loss of WSD runs of every length D the size was run to."""
    datasets = list(datasets or results["datasets"])
    archs = _archs(results, datasets)
    fig, axes = plt.subplots(len(datasets), len(archs), figsize=(6 * len(archs), 4 * len(datasets)), squeeze=False)
    for i, d in enumerate(datasets):
        for j, arch in enumerate(archs):
            ax = axes[i][j]
            runs = [r for r in _main_runs(results, d, arch) if r["seed"] == min(x["seed"] for x in results["runs"])]
            runs.sort(key=lambda r: r["params_non_embedding"])
            cmap = plt.get_cmap("viridis", max(2, len(runs)))
            for k, r in enumerate(runs):
                tokens = [p["tokens"] for p in r["curve"]]
                ax.plot(tokens, [p["val_loss"] for p in r["curve"]], marker="o", markersize=3, color=cmap(k),
                        label=f"{r['size']} (N={r['params_non_embedding']:,})")
            _floor(ax, results, d)
            ax.set(xscale="log", xlabel="training tokens D (end of cooldown)", ylabel="validation loss (nats/char)",
                   title=f"{d}: {arch}")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def repetition(results: dict, datasets: Sequence[str] | None = None) -> Figure:
    """The repetition experiment, one panel per family: the test loss at each run's longest branch (fixed D)
    against the epochs it read its data for, per size (fresh runs at their epochs <= 1), with the fitted
    effective-data model (:mod:`musicscale.repetition`). Drawn from the results' JSON alone."""
    entries = [(d, a, e) for d in (datasets or results["datasets"])
               for a, e in results["datasets"][d].get("repetition", {}).items() if "figure" in e]
    fig, axes = plt.subplots(1, max(1, len(entries)), figsize=(6 * max(1, len(entries)), 4), squeeze=False)
    for ax, (d, arch, e) in zip(axes[0], entries):
        cmap = plt.get_cmap("viridis", max(2, len(e["sizes"])))
        for k, size in enumerate(e["sizes"]):
            mine = [p for p in e["figure"]["points"] + e["figure"]["fresh"] if p["size"] == size]
            curve = next(c for c in e["figure"]["curves"] if c["size"] == size)
            ax.scatter([p["epochs"] for p in mine], [p["L"] for p in mine], color=cmap(k), s=14,
                       label=f"{size}, D = {curve['D']:,.0f}")
            ax.plot(curve["epochs"], curve["L"], color=cmap(k), linewidth=1)
        ax.axvline(4.0, color="grey", linestyle=":", linewidth=1)
        R = e["R_star"]
        fitted = f"R* = {R:.3g}" if e["identified"] else f"R* not identified (fit at {R:.3g})"
        ax.set(xscale="log", xlabel="epochs of the unique data (D / U)", ylabel="test loss at D (nats/char)",
               title=f"{d}: {arch}, {fitted}")
        ax.legend(fontsize=7)
    if not entries:
        axes[0][0].text(0.5, 0.5, "no repetition experiment in this build", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.tight_layout()
    return fig


def compute_frontier(results: dict, datasets: Sequence[str] | None = None) -> Figure:
    """Validation loss against training FLOPs at every end of cooldown (seeds averaged), the frontier and L(C)."""
    datasets = list(datasets or results["datasets"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        for arch, entry in results["datasets"][d]["compute"].items():
            runs = [r for r in results["runs"] if r["dataset"] == d and r["arch"] == arch]
            for C, L in compute_points(runs):
                ax.scatter(C, L, s=8, alpha=0.4, color=_color(arch))
            ax.plot(entry["frontier_flops"], entry["frontier_loss"], color=_color(arch), marker="o", markersize=3,
                    linewidth=1, label=f"{arch} frontier")
            fit = PowerLawFit.from_dict(entry) if "boot_params" in entry else None
            if fit is not None:
                C = np.geomspace(min(entry["frontier_flops"]), max(entry["frontier_flops"]), 200)
                ax.plot(C, fit.predict(C), color=_color(arch), linestyle="--",
                        label=f"{arch} L(C): α_C {_eq(entry, 'alpha', True)}")
        _floor(ax, results, d)
        ax.set(xscale="log", xlabel="training compute C (FLOPs)", ylabel="validation loss (nats/char)", title=d)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def joint_law(results: dict, datasets: Sequence[str] | None = None) -> Figure:
    """Test loss against training tokens D for each N, with the fitted L(N, D) curves."""
    datasets = list(datasets or results["datasets"])
    archs = _archs(results, datasets)
    fig, axes = plt.subplots(len(datasets), len(archs), figsize=(6 * len(archs), 4 * len(datasets)), squeeze=False)
    for i, d in enumerate(datasets):
        for j, arch in enumerate(archs):
            ax, joint = axes[i][j], results["datasets"][d]["joint"].get(arch, {})
            fit = joint_fit(joint)
            if fit is None:
                ax.set_title(f"{d}: {arch} (no joint fit: {joint.get('error', 'no runs')})", fontsize=8)
                continue
            pts = joint["points"]
            N, D, L = (np.array(pts[k]) for k in ("N", "D", "L"))
            Ns = np.unique(N)
            cmap = plt.get_cmap("viridis", max(2, len(Ns)))
            grid = np.geomspace(D.min() / 1.3, D.max() * 1.3, 100)
            for k, n in enumerate(Ns):
                sel = N == n
                ax.scatter(D[sel], L[sel], color=cmap(k), s=18, zorder=3)
                ax.plot(grid, fit.predict(n, grid), color=cmap(k), linewidth=1, label=f"N={n:,.0f}")
            ax.axhline(fit.E, color="gray", linestyle="--", linewidth=1, label=f"E {_eq(joint, 'E')}")
            _floor(ax, results, d)
            ax.set(xscale="log", xlabel="training tokens D", ylabel="test loss (nats/char)",
                   title=f"{d}: {arch}: α {_eq(joint, 'alpha')}, β {_eq(joint, 'beta')}")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def validity_vs_size(summaries: Sequence[dict]) -> Figure:
    """Musical validity of samples against N: share parsing, share of correct bars, share with valid
    headers, share novel; the dashed line is the same measure on real held-out tunes."""
    metrics = [(s.key, s.title) for s in SHARES if s.title]
    datasets = sorted({s["dataset"] for s in summaries})
    sizes = [s["params_non_embedding"] for s in summaries if s["params_non_embedding"]]
    n_range = (min(sizes) / 1.5, max(sizes) * 1.5)  # fixed, so that a panel without points still draws
    fig, axes = plt.subplots(len(datasets), len(metrics), figsize=(4 * len(metrics), 3.4 * len(datasets)),
                             squeeze=False)
    for i, d in enumerate(datasets):
        for j, (key, label) in enumerate(metrics):
            ax = axes[i][j]
            for arch in arch_order([s for s in summaries if s["params_non_embedding"]]):
                rows = sorted((s for s in summaries if s["dataset"] == d and s["arch"] == arch),
                              key=lambda s: s["params_non_embedding"])
                xs = [s["params_non_embedding"] for s in rows if s.get(key) is not None]
                ys = [s[key] for s in rows if s.get(key) is not None]
                ax.plot(xs, ys, marker="o", color=_color(arch), label=arch)
            for ref in (s for s in summaries if s["dataset"] == d and s["arch"] == "reference"):
                if ref.get(key) is not None:
                    ax.axhline(ref[key], color="gray", linestyle="--", linewidth=1, label="real test tunes")
            ax.set(xscale="log", xlim=n_range, ylim=(-0.03, 1.03), xlabel="N (non-embedding parameters)",
                   ylabel=label, title=d)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def temperature_sweep(summaries: Sequence[dict]) -> Figure:
    """Validity and novelty of samples against the sampling temperature, for the largest model of each family
    (one panel per share, one row per dataset): share parsing, share of correct bars, share with valid headers,
    share novel, and share that parse and are novel; the dotted line is the gallery's temperature."""
    swept = [s for s in summaries if s.get("temperature_sweep")]
    panels = [(s.key, s.title) for s in SHARES if s.title and swept and s.key in swept[0]["temperature_sweep"][0]]
    panels.append(("share_parses_novel", "share that parses and is novel"))
    datasets = sorted({s["dataset"] for s in summaries})
    temps = [p["temperature"] for s in swept for p in s["temperature_sweep"]] or [1.0]
    t_range = (min(temps) - 0.05, max(temps) + 0.05)  # fixed, so that a panel with missing points still aligns
    fig, axes = plt.subplots(len(datasets), len(panels), figsize=(4 * len(panels), 3.4 * len(datasets)),
                             squeeze=False)
    for i, d in enumerate(datasets):
        mine = [s for s in swept if s["dataset"] == d]
        for j, (key, label) in enumerate(panels):
            ax = axes[i][j]
            for s in sorted(mine, key=lambda s: arch_order(mine).index(s["arch"])):
                points = [p for p in s["temperature_sweep"] if p.get(key) is not None]
                ax.plot([p["temperature"] for p in points], [p[key] for p in points], marker="o",
                        color=_color(s["arch"]), label=f"{s['arch']} {s['size']}")
            for t in {s["settings"]["temperature"] for s in mine}:
                ax.axvline(t, color="gray", linestyle=":", linewidth=1, label=f"gallery's temperature {t:g}")
            if not mine:
                ax.text(0.5, 0.5, "no temperature sweep", ha="center", va="center", transform=ax.transAxes)
            ax.set(xlim=t_range, ylim=(-0.03, 1.03), xlabel="sampling temperature", ylabel=label, title=d)
            if mine:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def lr_search(searches: Sequence[dict]) -> Figure:
    """Validation loss of every probe (at its size's best beta2) against its peak rate, one curve per searched
    size, one panel per (dataset, arch); the best grid rate of each size is circled, and the rate its runs train
    with (the rate law's) marked by a cross on the curve's level."""
    searched = [s for s in searches if s.get("searched", True)]
    keys = sorted({(s["dataset"], s["arch"]) for s in searched})
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.2 * max(1, len(keys)), 3.8), squeeze=False)
    for ax, (d, arch) in zip(axes[0], keys):
        mine = sorted((s for s in searched if (s["dataset"], s["arch"]) == (d, arch)),
                      key=lambda s: s.get("N", s.get("probe_tokens", 0)))
        cmap = plt.get_cmap("viridis", max(2, len(mine)))
        for k, s in enumerate(mine):
            ax.plot(s["rates"], s["val_loss"], marker="o", markersize=3, color=cmap(k), label=s["size"])
            best = s["rates"].index(s["chosen"])
            ax.scatter([s["chosen"]], [s["val_loss"][best]], s=80, facecolors="none", edgecolors=cmap(k))
            if s.get("lr"):
                ax.scatter([s["lr"]], [s["val_loss"][best]], marker="x", s=40, color=cmap(k))
        ax.set(xscale="log", xlabel="peak learning rate", ylabel="validation loss (nats/char)", title=f"{d}: {arch}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
