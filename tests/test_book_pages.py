"""The book's page templates (musicscale/report.py): a page cites only what its stage notebook glued, and
says so by name before Sphinx runs; the committed templates render for any set of datasets."""

from __future__ import annotations

import json

import pytest

from musicscale import report
from musicscale.report import BookContents, DatasetSection, Family, MissingGlueError, render_pages


def executed_notebook(path, names, workdir="/somewhere"):
    """A stage notebook as papermill and myst-nb leave it: its parameters, and one glue output per name."""
    outputs = [{"output_type": "display_data", "data": {"application/papermill.record/text/plain": "'1'"},
                "metadata": {"scrapbook": {"name": n, "mime_prefix": "application/papermill.record/"}}}
               for n in names]
    nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": outputs}],
          "metadata": {"papermill": {"parameters": {"workdir": workdir, "seed": 0}}}, "nbformat": 4,
          "nbformat_minor": 5}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))


def contents(tmp_path, *datasets):
    lstm = Family("lstm", "LSTM")
    return BookContents(datasets=tuple(
        DatasetSection(name=d, title=d.title(), kind=d if d in ("music21", "synthetic") else "abc", source=d,
                       families=(lstm,), exact_entropy=d == "synthetic", compared=False) for d in datasets),
        families=(lstm,), workdir=tmp_path)


def test_a_page_cites_what_its_notebook_glued_and_names_what_it_did_not(tmp_path):
    executed_notebook(tmp_path / "book" / "stages" / "04_analyze.ipynb", ["irish_lstm_joint_alpha"])
    (tmp_path / "book" / "templates").mkdir(parents=True)
    (tmp_path / "book" / "templates" / "page.md").write_text(
        "# Page\n{% for d in build.datasets %}α = {{ analyze(d.name ~ '_lstm_joint_alpha') }}\n{% endfor %}")
    (page,) = render_pages(tmp_path, contents(tmp_path, "irish"))
    assert page.read_text() == "# Page\nα = {glue:text}`stages/04_analyze.ipynb::irish_lstm_joint_alpha:s`\n"

    with pytest.raises(MissingGlueError, match=r"book/page.md: cites 'reels_lstm_joint_alpha', which "
                                               r"book/stages/04_analyze.ipynb does not glue"):
        render_pages(tmp_path, contents(tmp_path, "irish", "reels"))
    assert "irish" in page.read_text()  # the failed rendering left the last good page


def test_the_workdir_of_a_build_is_the_one_its_notebooks_ran_on(tmp_path):
    executed_notebook(tmp_path / "04_analyze.ipynb", [], workdir="../work/x")
    assert report.notebook_workdir(tmp_path / "04_analyze.ipynb") == (tmp_path / "../work/x").resolve()
    (tmp_path / "plain.ipynb").write_text(json.dumps({"cells": [], "metadata": {}}))
    with pytest.raises(ValueError, match="was not executed by papermill with a workdir parameter"):
        report.notebook_workdir(tmp_path / "plain.ipynb")


def test_a_book_without_executed_stages_says_what_to_run(tmp_path):
    (tmp_path / "book" / "templates").mkdir(parents=True)
    (tmp_path / "book" / "templates" / "page.md").write_text("# Page\n")
    with pytest.raises(FileNotFoundError, match=r"04_analyze.ipynb does not exist: .* \(`python -m musicscale run`\)"):
        render_pages(tmp_path)


def test_lists_read_as_prose():
    assert [report.and_list(x) for x in (["a"], ["a", "b"], ["a", "b", "c"])] == ["a", "a and b", "a, b and c"]
