"""End to end: the smoke profile executes the five notebooks with papermill and builds the book with
warnings as errors, in a temporary copy of the book's sources (the ``smoke_report`` fixture)."""

import re

from musicscale.pipeline import STAGES
from musicscale.workdir import Workdir, read_json

SEED_OUTPUTS = ("scaling_laws.png", "architecture_comparison.png", "training_curves.png", "experiment_results.json")


def test_book_has_every_page_with_computed_findings(smoke_report):
    root, timings = smoke_report
    html = root / "_build" / "html"
    assert (html / "index.html").exists() and "book" in timings
    for stage in STAGES:
        page = (html / "book" / "stages" / f"{stage}.html").read_text()
        assert "injected-parameters" not in page  # papermill's cell is hidden; the parameter table shows
        assert "parameter" in page
    results = read_json(Workdir(root / "work").experiment_results)
    findings = re.sub(r"<[^>]+>", "", (html / "book" / "findings.html").read_text())  # the text, without tags
    assert f"{len(results['runs'])} runs in all" in findings
    alpha = results["datasets"]["music21"]["fits"]["transformer"]["alpha"]
    assert f"α = {alpha:.3f}" in findings
    assert "{glue" not in findings
    assert len(list((html / "_images").glob("*.png"))) >= 6  # the analysis figures and the validity figure


def test_run_folder_holds_the_seed_outputs_and_the_gallery(smoke_report):
    root, _ = smoke_report
    wd = Workdir(root / "work")
    for name in SEED_OUTPUTS:
        assert (wd.results_dir / name).stat().st_size > 0, name
    results = read_json(wd.experiment_results)
    synthetic = results["datasets"]["synthetic"]
    assert synthetic["entropy_rate"] > 0 and synthetic["below_floor"] == []
    for arch in ("transformer", "lstm"):
        assert {"a", "alpha", "c", "alpha_ci", "r2", "extrapolation_rel_error"} <= set(synthetic["fits"][arch])
    gallery = (root / "_build" / "html" / "book" / "stages" / "05_generate.html").read_text()
    assert "<svg" in gallery and "data:audio/wav;base64," in gallery
