"""Kaplan et al.'s form of the joint law (musicscale/kaplan_law.py) and the held-out comparison of forms
(musicscale/holdout.py): the fit recovers a known Kaplan law, and on points it was not fitted on the comparison
picks the form the data came from, beyond its paired interval; its results are strict JSON and read as tables
and sentences."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from musicscale import findings, holdout, identification
from musicscale.kaplan_law import NAMES, fit_kaplan_law, kaplan_law
from musicscale.stages import analyze

KAPLAN = (2.5e6, 0.15, 5e6, 0.3)  # N_c, alpha_N, D_c, alpha_D: losses of about 2 to 4.5 nats over the study
ADDITIVE = (1.2, 8.0, 0.35, 60.0, 0.3)  # E, A, alpha, B, beta: a floor E, losses of about 2.3 to 4.3
SIZES = (5e2, 1e3, 2e3, 4e3, 8e3, 1e5)  # the last lies >= 10x beyond the rest: the held-out check in N


def additive(N, D):
    E, A, alpha, B, beta = ADDITIVE
    return E + A * np.asarray(N, float) ** -alpha + B * np.asarray(D, float) ** -beta


def study(loss, seeds=3, noise=0.002, seed=0, branches=5, budget=2**20) -> holdout.Points:
    """Every size at ``seeds`` seeds, branches at budget / 2^k, losses ``loss(N, D)`` with relative noise."""
    rng = np.random.default_rng(seed)
    rows = [(n, budget / 2**k, f"{n:g}-s{s}") for n in SIZES for s in range(seeds) for k in range(branches)]
    N, D = (np.array([r[i] for r in rows], float) for i in (0, 1))
    L = loss(N, D) * (1 + noise * rng.standard_normal(len(rows)))
    return holdout.Points(N, D, L, np.array([r[2] for r in rows]))


def test_the_fit_recovers_an_exact_kaplan_law():
    pts = study(lambda N, D: kaplan_law(KAPLAN, N, D), seeds=1, noise=0.0)
    fit = fit_kaplan_law(pts.N, pts.D, pts.L, n_boot=0)
    assert fit.converged and fit.n_boot == 0 and fit.r2 == pytest.approx(1.0, abs=1e-9)
    for got, true in zip(fit.params, KAPLAN):
        assert got == pytest.approx(true, rel=1e-4)
    np.testing.assert_allclose(fit.predict(pts.N, pts.D), pts.L, rtol=1e-6)
    assert fit.not_identified() == {} and all(math.isnan(v) for v in fit.ci("alpha_N"))


def test_the_bootstrap_refits_the_given_resamples_and_covers_the_truth():
    pts = study(lambda N, D: kaplan_law(KAPLAN, N, D))
    from musicscale.fitting import group_resamples

    W, _ = group_resamples(pts.run, 100, 0, [pts.N, pts.D], strata=pts.N)
    fit = fit_kaplan_law(pts.N, pts.D, pts.L, groups=pts.run, resamples=W)
    assert fit.n_boot + fit.n_failed == len(W) and fit.n_failed == 0 and fit.n_groups == len(SIZES) * 3
    assert set(fit.boot_rows.tolist()) <= set(range(len(W)))
    for name, true in zip(NAMES, KAPLAN):
        lo, hi = fit.ci(name)
        assert lo <= true <= hi, name


def test_to_dict_is_strict_json_and_says_what_is_not_identified():
    # no N dependence at all: alpha_N runs onto its bound 0, and N_c with it means nothing
    pts = study(lambda N, D: kaplan_law((1.0, 0.0, 5e6, 0.3), N, D), seeds=2)
    fit = fit_kaplan_law(pts.N, pts.D, pts.L, groups=pts.run, n_boot=30)
    d = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    assert set(NAMES) | {f"{n}_ci" for n in NAMES} | {"r2", "n_boot", "not_identified", "no_fit"} <= set(d)
    assert d["no_fit"] is None and d["not_identified"]["alpha_N"]["end"] == "lower"
    assert "N_c" in d["not_identified"]  # the N term is 1 whatever N_c is
    assert identification.format_ci(d, "alpha_N").startswith("not identified")
    assert not identification.format_ci(d, "alpha_D").startswith("not identified")


def test_on_data_with_a_floor_the_additive_law_predicts_better():
    pts = study(additive)
    for axis, factor in (("N", 10.0), ("D", 4.0)):
        result = holdout.check(pts, axis, factor, n_boot=60, seed=0, entropy_rate=ADDITIVE[0])
        kaplan = result["forms"]["kaplan"]
        assert kaplan["error"] > result["law_error"] and kaplan["ci"][1] < 0, axis  # interval excludes 0
        assert kaplan["better"] == "additive" and kaplan["verdict"].startswith("the additive law predicts better")
        assert kaplan["advantage_over_additive"] == pytest.approx(result["law_error"] - kaplan["error"])
        assert kaplan["n_boot"] > 40
        # the floor fixed at its true value is the additive law with one parameter fewer: no worse beyond noise
        assert result["forms"]["fixed_floor"]["better"] in (None, "fixed_floor")
        json.dumps(result, allow_nan=False)


def test_on_kaplan_data_kaplans_form_predicts_better():
    pts = study(lambda N, D: kaplan_law(KAPLAN, N, D))
    for axis, factor in (("N", 10.0), ("D", 4.0)):
        result = holdout.check(pts, axis, factor, n_boot=60, seed=0)
        assert set(result["forms"]) == {"kaplan"}  # no entropy rate, no fixed floor
        kaplan = result["forms"]["kaplan"]
        assert kaplan["ci"][0] > 0 and kaplan["better"] == "kaplan", axis
        assert kaplan["verdict"].startswith("Kaplan's form predicts better")


def test_the_verdict_follows_the_interval():
    assert holdout.form_verdict("kaplan", 0.02, (0.01, 0.03)).startswith("Kaplan's form predicts better, by 0.020")
    assert holdout.form_verdict("kaplan", -0.02, (-0.03, -0.01)).startswith("the additive law predicts better, by")
    assert holdout.form_verdict("fixed_floor", 0.0, (-0.01, 0.01)).startswith("neither predicts better beyond noise")
    assert "no interval" in holdout.form_verdict("kaplan", 0.01, (math.nan, math.nan))
    assert [holdout.better_form("kaplan", ci) for ci in ((0.1, 0.2), (-0.2, -0.1), (-0.1, 0.1), (math.nan, 1.0))] \
        == ["kaplan", "additive", None, None]


def test_the_forms_read_as_a_table_and_sentences():
    pts = study(additive)
    checks = {"N": holdout.check(pts, "N", 10.0, n_boot=30, seed=0, entropy_rate=ADDITIVE[0]),
              "D": {"axis": "D", "factor": 4.0, "error": "needs 3 branch lengths"}}
    results = {"datasets": {"toy": {"holdout": {"lstm": checks}}}}
    table = analyze.forms_table(results).data.splitlines()
    assert len(table) == 2 + 2 + 1  # header, rule, one row per form of the check that ran, one for the other
    assert "Kaplan's form" in table[2] and "the additive law" in table[2] and "not run" in table[4]
    summary = findings.forms_summary(checks)
    assert summary.startswith("in N, Kaplan's form errs by") and summary.endswith("in D, the check could not run")
    assert "the additive law predicts better" in summary
    tally = findings.forms_verdict(results)
    assert tally.startswith("against Kaplan's form, the additive law predicts the held-out points better beyond "
                            "noise in 1 of 1 check, Kaplan's form in 0 and neither in 0")
