"""Why one family trails another: its main runs against the same runs with one thing changed (the arms of
:func:`musicscale.design.ablation_arms`: a longer budget, another rate at the full budget, a model variant).

Each arm is compared with the baseline at the same size by the difference of mean test losses over seeds (at the
end of each run's longest branch). Its 95% interval is Student's t with the seed variance pooled over every arm of
the size (the arms differ in what they change, not in how much their seeds scatter, so each arm's few seeds lend
each other degrees of freedom). A verdict is stated only where the interval excludes 0. Beside it: the gap the
ablation is about, each arm's loss less the other family's joint law at the arm's own N and D (an arm that reads more
tokens is held against the other family reading as many), and the share of the baseline's gap each arm closes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass
class ArmResult:
    """One arm at one size: its runs' mean test loss, and its difference from the baseline with an interval."""

    size: str
    N: int  # non-embedding parameters of the baseline (a variant may have another N, e.g. without a position table)
    arm: str
    what: str
    D: int  # tokens its longest branch read
    n_seeds: int
    loss: float  # mean test loss over seeds (nats/char)
    difference: float | None  # loss − the baseline's (None for the baseline itself)
    ci: tuple[float, float] | None
    verdict: str
    gap: float | None  # this arm's loss less the other family's law at the arm's own N and D (more data helps both)
    closed: float | None  # the share of the baseline's gap this arm closes: 1 − gap / the baseline's gap


def _pooled_sd(groups: Sequence[np.ndarray]) -> tuple[float, int]:
    """The seed standard deviation pooled over groups, and its degrees of freedom."""
    dof = sum(len(g) - 1 for g in groups)
    if dof < 1:
        return math.nan, 0
    return math.sqrt(sum(float(np.sum((g - g.mean()) ** 2)) for g in groups) / dof), dof


def verdict(diff: float, ci: tuple[float, float] | None) -> str:
    if ci is None or not all(math.isfinite(c) for c in ci):
        return "no interval (one seed per arm)"
    if ci[1] < 0:
        return f"lower by {-diff:.3f} nats/char"
    if ci[0] > 0:
        return f"higher by {diff:.3f} nats/char"
    return "within seed noise"


def compare_arms(records: Sequence[dict], other_law: Callable[[float, float], float] | None = None) -> list[ArmResult]:
    """Every arm at every size against the baseline (records from the train stage's ``ablation.json``: each a run
    result with ``arm`` and ``what``). ``other_law(N, D)`` is the other family's fitted loss, for the gap."""
    out = []
    for size in dict.fromkeys(r["size"] for r in records):
        mine = [r for r in records if r["size"] == size]
        arms = list(dict.fromkeys(r["arm"] for r in mine))
        losses = {a: np.array([r["test_loss"] for r in mine if r["arm"] == a], dtype=float) for a in arms}
        sd, dof = _pooled_sd(list(losses.values()))
        base = next(r for r in mine if r["arm"] == "baseline")
        N, D0 = base["params_non_embedding"], base["tokens_seen"]
        b = losses["baseline"]
        base_gap = float(b.mean() - other_law(N, D0)) if other_law is not None else None
        for a in arms:
            x = losses[a]
            first = next(r for r in mine if r["arm"] == a)
            gap = float(x.mean() - other_law(N, first["tokens_seen"])) if other_law is not None else None
            diff = ci = None
            if a != "baseline":
                diff = float(x.mean() - b.mean())
                if dof:
                    half = stats.t.ppf(0.5 + LEVEL / 2, dof) * sd * math.sqrt(1 / len(x) + 1 / len(b))
                    ci = (diff - half, diff + half)
            out.append(ArmResult(
                size=size, N=N, arm=a, what=first["what"], D=first["tokens_seen"], n_seeds=len(x), loss=float(x.mean()),
                difference=diff, ci=ci, verdict="the reference" if a == "baseline" else verdict(diff, ci), gap=gap,
                closed=None if diff is None or not base_gap else 1.0 - gap / base_gap))
    return out


def summary(rows: Sequence[ArmResult], family: str, other: str | None) -> dict:
    """The ablation for ``experiment_results.json``: its rows, and the arm that closes the most of the gap beyond
    noise at each size (None where none lowers the loss beyond noise)."""
    best = {}
    for size in dict.fromkeys(r.size for r in rows):
        lower = [r for r in rows if r.size == size and r.ci is not None and r.ci[1] < 0]
        best[size] = min(lower, key=lambda r: r.difference).arm if lower else None
    return {"family": family, "other": other, "rows": [asdict(r) for r in rows], "best": best}


def sentence(s: dict, label: Callable[[str], str]) -> str:
    """The ablation in words, per size: the gap, what each arm changes, and the verdict."""
    parts = []
    for size in dict.fromkeys(r["size"] for r in s["rows"]):
        rows = [r for r in s["rows"] if r["size"] == size]
        base = rows[0]
        head = f"at {size} (N = {base['N']:,}, {base['n_seeds']} seeds per arm)"
        if base["gap"] is not None:
            where = "above" if base["gap"] >= 0 else "below"
            head += (f" the {label(s['family'])} is {abs(base['gap']):.3f} nats/char {where} the "
                     f"{label(s['other'])}'s law")
        arms = []
        for r in rows[1:]:
            text = f"{r['arm']} {r['difference']:+.3f}"
            if r["ci"] is not None:
                text += f" [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]"
            if r["closed"] is not None and r["ci"] is not None and r["ci"][1] < 0:
                text += f" (closes {r['closed']:.0%} of the gap"
                text += (f"; at its D = {r['D']:,} it is {r['gap']:+.3f} from the {label(s['other'])}'s law there)"
                         if r["D"] != base["D"] else ")")
            arms.append(text)
        parts.append(head + ": " + ", ".join(arms))
    return "; ".join(parts)


def overall(s: dict, label: Callable[[str], str]) -> str:
    """The verdict the findings page states: which arm, if any, closes most of the gap at every size."""
    family, other = label(s["family"]), label(s["other"]) if s["other"] else None
    if not any(s["best"].values()):
        return (f"no change tried lowers the {family}'s loss beyond seed noise at any size ablated, so its recipe "
                "here (budget, rate, position table, heads) does not explain where it stands")
    closes = {size: max((r["closed"] or 0.0) for r in s["rows"] if r["size"] == size and r["arm"] == arm)
              for size, arm in s["best"].items() if arm}
    text = "; ".join(f"at {size}, {s['best'][size]} helps most" + (f", closing {c:.0%} of the gap to the {other}"
                                                                      if other else "")
                     for size, c in closes.items())
    if other and all(c >= 0.5 for c in closes.values()) and len(closes) == len({r["size"] for r in s["rows"]}):
        return text + f": at these sizes the gap is mostly the {family}'s recipe, not its architecture"
    if other:
        return text + f": most of the gap to the {other} is left standing by every change tried"
    return text
