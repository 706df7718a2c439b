"""The joint law ``L(N, D) = E + A N^-alpha + B D^-beta`` (Hoffmann et al. 2022, eq. 2), fitted with bootstrap
intervals over whole runs, and the compute-optimal split it implies.

The fit is approach 3 of Hoffmann et al.: the law in log space as a log-sum-exp, the Huber loss of
``log L - log L_hat`` minimised from a grid of starts (:mod:`musicscale.fitting`), with ``log N`` and
``log D`` centred on their means. The bootstrap refits run as one vectorised damped Newton method over all
resamples (L-BFGS-B takes the few it does not settle), which makes a thousand refits take about a second.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import fitting, identification
from .workdir import json_float, json_safe

JOINT_EXP_GRID = (0.1, 0.3, 0.6, 1.2)  # starting exponents alpha and beta of the grid search
JOINT_FLOOR_FRACTIONS = (0.2, 0.6, 0.9)  # initial E as a fraction of min(L)
JOINT_SPLITS = (0.2, 0.5, 0.8)  # initial share of the excess loss that the N term carries
JOINT_POLISHED = 4  # grid starts (after a vectorised Newton pass) that L-BFGS-B polishes


@dataclass
class JointFit:
    """A fitted ``L = E + A / N**alpha + B / D**beta`` with 95% bootstrap percentile intervals.

    ``E_fixed`` marks a fit whose floor was given, not fitted (``L - E = A N^-alpha + B D^-beta``)."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    E_ci: tuple[float, float]
    A_ci: tuple[float, float]
    alpha_ci: tuple[float, float]
    B_ci: tuple[float, float]
    beta_ci: tuple[float, float]
    r2: float
    residuals: list[float]
    n_points: int
    n_boot: int
    converged: bool
    # Bootstrap draws, columns (E, A, alpha, B, beta).
    boot_params: np.ndarray = field(default_factory=lambda: np.empty((0, 5)), repr=False)
    n_groups: int = 0  # what the bootstrap resampled: runs (each with all its points), or single points
    n_failed: int = 0  # bootstrap refits that did not converge (left out of the intervals, and reported)
    n_degenerate: int = 0  # resamples skipped for having fewer than 3 distinct N or D
    E_fixed: bool = False
    boot_rows: np.ndarray = field(default_factory=lambda: np.empty(0, int), repr=False)  # resample of each draw
    L_min: float = 0.0  # the smallest loss fitted: a floor E far below it is at its bound 0

    def bounds(self) -> dict[str, identification.Bound]:
        """The search bounds of the fitted parameters that have any (amplitudes have none; a fixed E is not fitted)."""
        exponent = identification.Bound(0.0, fitting.ALPHA_MAX, identification.ABS_TOL)
        out = {} if self.E_fixed else {"E": identification.Bound(0.0, None, identification.REL_TOL * self.L_min)}
        return {**out, "alpha": exponent, "beta": exponent}

    def not_identified(self) -> dict[str, dict]:
        """The parameters at a bound, in the point fit or in the bootstrap draws (:mod:`.identification`)."""
        column = {"E": 0, "alpha": 2, "beta": 4}
        out = {}
        for name, bound in self.bounds().items():
            info = identification.not_identified(getattr(self, name), self.boot_params[:, column[name]], bound)
            if info:
                out[name] = info
        return out

    @property
    def params(self) -> tuple[float, float, float, float, float]:
        return self.E, self.A, self.alpha, self.B, self.beta

    def predict(self, N: Any, D: Any) -> np.ndarray:
        """Predicted loss at (N, D); arrays broadcast; ``D = inf`` gives the data-unlimited loss E + A N^-alpha."""
        return joint_law(self.params, N, D)

    def predict_draws(self, N: Any, D: Any) -> np.ndarray:
        """The prediction of every bootstrap draw, shape ``(n_boot,) + broadcast(N, D).shape``."""
        N, D = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
        draws = self.boot_params.reshape((-1, 5) + (1,) * N.ndim)
        return joint_law(tuple(draws[:, i] for i in range(5)), N[None], D[None])

    def band(self, N: Any, D: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap predictions (NaN without draws)."""
        shape = np.broadcast(np.asarray(N), np.asarray(D)).shape
        if len(self.boot_params) == 0:
            return np.full(shape, np.nan), np.full(shape, np.nan)
        q = 100.0 * (1.0 - level) / 2.0
        lo, hi = np.percentile(self.predict_draws(N, D), [q, 100.0 - q], axis=0)
        return lo, hi

    def compute_optimal(
        self, C: Any, flops_per_token_per_param: float = 6.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Loss-minimising (N, D) at compute C = k * N * D (Hoffmann et al. 2022, eq. 4)."""
        C = np.asarray(C, dtype=float)
        s = self.alpha + self.beta
        if not (self.alpha > 0 and self.beta > 0):
            raise ValueError("compute_optimal needs alpha > 0 and beta > 0")
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / s)
        budget = C / flops_per_token_per_param
        N_opt = G * budget ** (self.beta / s)
        return N_opt, budget / N_opt

    def optimal_exponents(self, level: float = 0.95) -> dict[str, Any]:
        """Exponents of N_opt ~ C^a and D_opt ~ C^b (a = beta/(alpha+beta), b = 1 - a) with bootstrap CIs."""
        a = self.beta / (self.alpha + self.beta)
        bp = self.boot_params
        with np.errstate(invalid="ignore", divide="ignore"):
            a_boot = bp[:, 4] / (bp[:, 2] + bp[:, 4]) if len(bp) else np.empty(0)
        lo, hi = fitting.percentile_ci(a_boot[np.isfinite(a_boot)], level)
        out = {"a": a, "a_ci": (lo, hi), "b": 1.0 - a, "b_ci": (1.0 - hi, 1.0 - lo)}
        unknown = {k: v for k, v in self.not_identified().items() if k in ("alpha", "beta")}
        if unknown:  # a = beta/(alpha+beta) is pinned by its exponents only: one at a bound, and a is not a measurement
            name, info = next(iter(unknown.items()))
            out["not_identified"] = {k: {**info, "via": name} for k in ("a", "b", "a_own_flops")}
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (NaN becomes null), with the bootstrap draws: :meth:`from_dict` restores the fit."""
        d: dict[str, Any] = {}
        for name in ("E", "A", "alpha", "B", "beta"):
            d[name] = json_safe(getattr(self, name))
            d[f"{name}_ci"] = json_safe(getattr(self, f"{name}_ci"))
        d.update(
            r2=json_safe(self.r2),
            residuals=[float(r) for r in self.residuals],
            n_points=int(self.n_points),
            n_groups=int(self.n_groups),
            n_boot=int(self.n_boot),
            n_failed=int(self.n_failed),
            n_degenerate=int(self.n_degenerate),
            converged=bool(self.converged),
            E_fixed=bool(self.E_fixed),
            not_identified=self.not_identified(),
            no_fit=identification.no_fit(self.r2),
            L_min=float(self.L_min),
            boot_params=self.boot_params.tolist(),
            boot_rows=self.boot_rows.tolist(),
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JointFit:
        """The fit that :meth:`to_dict` wrote (read back from ``experiment_results.json``): its predictions and
        bands are the original's, bit for bit, since JSON keeps every float exactly."""
        values = {name: json_float(d[name]) for name in ("E", "A", "alpha", "B", "beta")}
        cis = {f"{name}_ci": tuple(json_float(v) for v in d[f"{name}_ci"]) for name in values}
        return cls(**values, **cis, r2=json_float(d["r2"]), residuals=list(d["residuals"]), n_points=d["n_points"],
                   n_boot=d["n_boot"], converged=d["converged"],
                   boot_params=np.array(d["boot_params"], dtype=float).reshape(-1, 5), n_groups=d["n_groups"],
                   n_failed=d["n_failed"], n_degenerate=d["n_degenerate"], E_fixed=d["E_fixed"],
                   boot_rows=np.array(d["boot_rows"], dtype=int), L_min=d["L_min"])


def joint_fit(entry: dict[str, Any] | None) -> JointFit | None:
    """The fit an analysis entry holds (its :meth:`JointFit.to_dict` and more), or None where there is no fit."""
    return JointFit.from_dict(entry) if entry and "boot_params" in entry and "E" in entry else None


def joint_law(params: Sequence[Any], N: Any, D: Any) -> np.ndarray:
    """``E + A N^-alpha + B D^-beta`` for ``params = (E, A, alpha, B, beta)`` (arrays broadcast)."""
    E, A, alpha, B, beta = params
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    with np.errstate(divide="ignore", over="ignore"):
        return E + A * N ** (-alpha) + B * D ** (-beta)


def _joint_objective(
    q: np.ndarray, xc: np.ndarray, yc: np.ndarray, logL: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Huber objective of the centred joint law; q = (log A', log B', log E, alpha, beta)."""
    la, lb, le, alpha, beta = q
    u = la - alpha * xc
    v = lb - beta * yc
    m = np.logaddexp(np.logaddexp(u, v), le)
    wu, wv = np.exp(u - m), np.exp(v - m)
    we = np.exp(le - m)
    f, psi = fitting.huber(logL - m, delta)
    g = -np.array(
        [np.sum(psi * wu), np.sum(psi * wv), np.sum(psi * we), -np.sum(psi * wu * xc), -np.sum(psi * wv * yc)]
    )
    return f, g


def _joint_newton_terms(Q: np.ndarray, xc: np.ndarray, yc: np.ndarray, logL: np.ndarray, W: np.ndarray,
                        delta: float, hessian: bool = True):
    """Objective, gradient and exact Hessian of :func:`_joint_objective` for many parameter vectors at once:
    ``Q`` is (B, 5), ``W`` (B, n) the multiplicity of each point in each bootstrap resample."""
    la, lb, le, alpha, beta = (Q[:, k:k + 1] for k in range(5))
    u, v = la - alpha * xc, lb - beta * yc
    m = np.logaddexp(np.logaddexp(u, v), le)
    wu, wv, we = np.exp(u - m), np.exp(v - m), np.exp(le - m)
    r = logL - m
    inside = np.abs(r) <= delta
    F = np.sum(W * np.where(inside, 0.5 * r * r / delta, np.abs(r) - 0.5 * delta), axis=1)
    if not hessian:
        return F
    psi = W * np.clip(r / delta, -1.0, 1.0)
    dm = np.stack([wu, wv, we, -wu * xc, -wv * yc], -1)  # d m / d q, (B, n, 5)
    G = -np.einsum("bn,bni->bi", psi, dm)
    # d2h/dq2 = h'' dm dm^T - psi d2m, with d2m = sum over the terms s of w_s (ds/dq)(ds/dq)^T - dm dm^T;
    # ds/dq of u = la - alpha x has entries 1 (la) and -x (alpha), of v likewise, of le a single 1
    H = np.matmul((dm * (W * inside / delta + psi)[..., None]).transpose(0, 2, 1), dm)
    pu, pv = psi * wu, psi * wv
    for (i, j), value in (((0, 0), pu.sum(1)), ((0, 3), -(pu * xc).sum(1)), ((3, 3), (pu * xc * xc).sum(1)),
                          ((1, 1), pv.sum(1)), ((1, 4), -(pv * yc).sum(1)), ((4, 4), (pv * yc * yc).sum(1)),
                          ((2, 2), (psi * we).sum(1))):
        H[:, i, j] -= value
        if i != j:
            H[:, j, i] -= value
    return F, G, H


def _joint_newton(q0: np.ndarray, xc: np.ndarray, yc: np.ndarray, logL: np.ndarray, W: np.ndarray, delta: float,
                  bounds: fitting.Bounds, max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Minimise many problems at once: row b of ``W`` weights the points (a bootstrap resample's
    multiplicities, or all ones), row b of ``q0`` (or ``q0`` itself for every row) is its start. A damped
    Newton method (Levenberg-Marquardt on the exact Hessian, bounds by projection), vectorised over rows.

    Returns the (B, 5) optima and which of them settled: a full Newton step that no longer moves the
    parameters or the objective. The rest are left to L-BFGS-B (:func:`fit_joint_law`)."""
    n_draws = len(W)
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
    Q = np.clip(np.broadcast_to(q0, (n_draws, 5)), lo, hi).copy()
    lam = np.full(n_draws, 1e-3)
    settled, stuck = np.zeros(n_draws, bool), np.zeros(n_draws, bool)
    F, G, H = _joint_newton_terms(Q, xc, yc, logL, W, delta)
    eye = np.eye(5)
    for _ in range(max_iter):
        act = np.flatnonzero(~(settled | stuck))  # only the rows still moving are computed
        if not len(act):
            break
        q, g, h, f, lm = Q[act], G[act], H[act], F[act], lam[act]
        blocked = ((q <= lo + 1e-12) & (g > 0)) | ((q >= hi - 1e-12) & (g < 0))
        free = ~blocked
        hf = h * free[:, :, None] * free[:, None, :] + eye * blocked[:, None, :]
        ev = np.linalg.eigvalsh(hf)
        shift = np.maximum(0.0, -ev[:, 0]) + lm * np.maximum(1.0, np.abs(ev).max(axis=1))
        step = -np.linalg.solve(hf + shift[:, None, None] * eye, (g * free)[..., None])[..., 0] * free
        qn = np.clip(q + step, lo, hi)
        fn = _joint_newton_terms(qn, xc, yc, logL, W[act], delta, hessian=False)
        better = fn < f
        done = better & (lm <= 1e-6) & ((np.abs(step).max(axis=1) < 1e-9) | (f - fn <= 1e-13 * np.maximum(1.0, f)))
        settled[act[done]] = True
        lam[act] = np.where(better, np.maximum(lm / 4, 1e-12), lm * 8)
        stuck[act[lam[act] > 1e10]] = True
        moved = act[better]
        if len(moved):
            Q[moved] = qn[better]
            F[moved], G[moved], H[moved] = _joint_newton_terms(Q[moved], xc, yc, logL, W[moved], delta)
    return Q, settled


def _joint_bounds(L: np.ndarray, log_E: float | None = None) -> fitting.Bounds:
    if log_E is not None:  # a given floor: log E pinned
        return [(None, None), (None, None), (log_E, log_E), (0.0, fitting.ALPHA_MAX), (0.0, fitting.ALPHA_MAX)]
    le_lo = math.log(L.min()) - fitting.LOG_FLOOR_SPAN
    return [(None, None), (None, None), (le_lo, None), (0.0, fitting.ALPHA_MAX), (0.0, fitting.ALPHA_MAX)]


def _joint_grid(L: np.ndarray, E: float | None = None) -> list[np.ndarray]:
    L_gm = math.exp(float(np.mean(np.log(L))))
    starts = []
    for frac in JOINT_FLOOR_FRACTIONS if E is None else (None,):
        floor = frac * L.min() if E is None else E
        excess = max(L_gm - floor, 1e-3 * L_gm)
        for s in JOINT_SPLITS:
            for alpha in JOINT_EXP_GRID:
                for beta in JOINT_EXP_GRID:
                    la, lb = math.log(s * excess), math.log((1 - s) * excess)
                    starts.append(np.array([la, lb, math.log(floor), alpha, beta]))
    return starts


def fit_joint_law(
    N: Any,
    D: Any,
    L: Any,
    *,
    groups: Any = None,
    strata: Any = None,
    delta: float = 1e-3,
    n_boot: int = 200,
    seed: int = 0,
    E: float | None = None,
    start: JointFit | None = None,
    resamples: np.ndarray | None = None,
) -> JointFit:
    """Fit ``L = E + A/N**alpha + B/D**beta`` (Chinchilla approach 3) with bootstrap CIs.

    Needs at least 3 distinct N, 3 distinct D and 6 points. Exponents are kept in [0, 5].

    - ``groups`` labels each point with its run: the bootstrap resamples whole runs, so that the points of
      one run (its cooldown branches share a trunk) move together. Without it, points are resampled.
      ``strata`` (e.g. N) resamples the runs within each stratum (:func:`group_resamples`).
    - ``E`` fixes the floor instead of fitting it (``L - E = A N^-alpha + B D^-beta``, e.g. ``E = H*``).
    - ``start``, a fit to related data (the same study without its largest sizes, say), replaces the grid
      of starting points by that solution and a few around it.
    - ``resamples`` (n_boot, n_points) gives the bootstrap's multiplicities instead of drawing them, so that
      a caller can apply the same resamples to something else (:mod:`musicscale.holdout`); ``boot_rows``
      then says which rows the draws come from.

    Every resample is refitted from the full-data optimum by a damped Newton method vectorised over
    resamples; the few it does not settle get L-BFGS-B from three starts; refits that still do not converge
    are counted in ``n_failed`` and left out of the intervals.
    """
    N = fitting.as_positive_1d("N", N)
    D = fitting.as_positive_1d("D", D)
    L = fitting.as_positive_1d("L", L)
    fitting.check_same_length(N=N, D=D, L=L)
    n = len(L)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups must label every point: got {len(groups)} labels for {n} points")
    if len(np.unique(N)) < 3 or len(np.unique(D)) < 3 or n < 6:
        raise ValueError(
            f"joint fit needs >= 3 distinct N, >= 3 distinct D and >= 6 points; "
            f"got {len(np.unique(N))} N, {len(np.unique(D))} D, {n} points"
        )
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")
    if E is not None and not E > 0:
        raise ValueError(f"a fixed floor E must be positive, got {E}")

    problem = _Problem.of(N, D, L, delta, E)
    with fitting.single_threaded_blas():
        starts = _joint_grid(L, E) if start is None else _around(problem.pack(start.params)) + _joint_grid(L, E)[::12]
        # Newton from every start at once; L-BFGS-B then polishes the best few and keeps the lowest
        Q0, _ = problem.newton(np.array(starts), np.ones((len(starts), n)), max_iter=100)
        F0 = _joint_newton_terms(Q0, *problem.data, np.ones((len(starts), n)), delta, hessian=False)
        best = [Q0[i] for i in np.argsort(np.where(np.isfinite(F0), F0, np.inf))[:JOINT_POLISHED]]
        q_best, _, converged = fitting.best_of(_joint_objective, best, problem.bounds, (*problem.data, delta))
        params = problem.unpack(q_best)
        if resamples is not None:
            W, n_degenerate = np.asarray(resamples, dtype=float).reshape(-1, n), 0
        else:
            W, n_degenerate = (fitting.group_resamples(groups, n_boot, seed, [N, D], strata) if n_boot
                               else (np.empty((0, n)), 0))
        boot, rows, n_failed = problem.refit_resamples(q_best, W)

    pred = joint_law(params, N, D)
    cis = [fitting.percentile_ci(boot[:, i]) for i in range(5)]
    return JointFit(*params, *cis, r2=fitting.r2(L, pred), residuals=[float(r) for r in L - pred], n_points=n,
                    n_boot=len(boot), converged=converged, boot_params=boot, n_groups=len(np.unique(groups)),
                    n_failed=n_failed, n_degenerate=n_degenerate, E_fixed=E is not None, boot_rows=np.array(rows, int),
                    L_min=float(L.min()))


def _around(q: np.ndarray) -> list[np.ndarray]:
    """``q`` and the same amplitudes and floor with the exponents halved or doubled."""
    starts = [q]
    for s in (0.5, 2.0):
        q2 = q.copy()
        q2[3:] = np.minimum(q2[3:] * s, fitting.ALPHA_MAX)
        starts.append(q2)
    return starts


@dataclass(frozen=True)
class _Problem:
    """One joint-law fit in the optimiser's coordinates: ``log N`` and ``log D`` centred on their means, and
    q = (log A', log B', log E, alpha, beta) with A' = A exp(-alpha mean log N), B' likewise."""

    xc: np.ndarray  # log N - its mean
    yc: np.ndarray  # log D - its mean
    logL: np.ndarray
    x_mean: float
    y_mean: float
    delta: float
    E: float | None  # a fixed floor, or None
    bounds: fitting.Bounds

    @classmethod
    def of(cls, N: np.ndarray, D: np.ndarray, L: np.ndarray, delta: float, E: float | None) -> _Problem:
        x, y = np.log(N), np.log(D)
        x_mean, y_mean = float(x.mean()), float(y.mean())
        return cls(x - x_mean, y - y_mean, np.log(L), x_mean, y_mean, delta, E,
                   _joint_bounds(L, None if E is None else math.log(E)))

    @property
    def data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.xc, self.yc, self.logL

    def unpack(self, q: np.ndarray) -> tuple[float, float, float, float, float]:
        """(E, A, alpha, B, beta) on the usual scale."""
        la, lb, le, alpha, beta = q
        A, B = math.exp(la + alpha * self.x_mean), math.exp(lb + beta * self.y_mean)
        return math.exp(le), A, float(alpha), B, float(beta)

    def pack(self, params: Sequence[float]) -> np.ndarray:
        """The optimiser's q of (E, A, alpha, B, beta) (a fixed floor replaces E)."""
        E0, A0, alpha0, B0, beta0 = params
        return np.array([math.log(A0) - alpha0 * self.x_mean, math.log(B0) - beta0 * self.y_mean,
                         math.log(self.E if self.E is not None else max(E0, 1e-300)), alpha0, beta0])

    def newton(self, q0: np.ndarray, W: np.ndarray, max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
        return _joint_newton(q0, *self.data, W, self.delta, self.bounds, max_iter=max_iter)

    def refit_resamples(self, q_best: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, list[int], int]:
        """Refit every resample (row of multiplicities ``W``) from ``q_best``: Newton for all at once, L-BFGS-B
        for the rows it does not settle. Returns the draws (n_ok, 5), the rows they come from, and the number
        of refits that did not converge."""
        n = len(self.logL)
        Q, settled = self.newton(q_best, W) if len(W) else (W[:, :5], W[:, 0] > 0)
        draws, rows, n_failed = [], [], 0
        for row, (w, q, ok) in enumerate(zip(W, Q, settled)):
            if not ok:  # polish from where Newton stopped; failing that, start afresh around the optimum
                idx = np.repeat(np.arange(n), w.astype(int))
                args = (self.xc[idx], self.yc[idx], self.logL[idx], self.delta)
                q, _, ok = fitting.refit(_joint_objective, [q] + _around(q_best), self.bounds, args)
            if ok:
                draws.append(self.unpack(q))
                rows.append(row)
            else:
                n_failed += 1
        return np.array(draws, dtype=float).reshape(-1, 5), rows, n_failed


def flag_below_floor(losses: Any, floor: Any, tol: float = 1e-3) -> list[int]:
    """Indices of losses below ``floor - tol`` (floor: scalar or per-loss), with a warning if any.

    A test loss below the exact entropy floor H* is impossible for a model that has not seen the test
    data, so any hit points to leakage (or a wrong floor) and is reported loudly.
    """
    losses = np.asarray(losses, dtype=float)
    floor = np.broadcast_to(np.asarray(floor, dtype=float), losses.shape)
    idx = [int(i) for i in np.flatnonzero(losses < floor - tol)]
    if idx:
        worst = int(idx[np.argmin((losses - floor)[idx])])
        warnings.warn(
            f"{len(idx)} loss(es) below the entropy floor by more than {tol:g} nats/char "
            f"(worst: index {worst}, loss {losses[worst]:.6f} < floor {floor[worst]:.6f}); check for leakage",
            RuntimeWarning,
            stacklevel=2,
        )
    return idx
