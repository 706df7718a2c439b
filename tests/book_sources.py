"""A copy of the book's sources for a test build (the tests build books outside the repository)."""

from __future__ import annotations

import shutil

from musicscale.pipeline import ROOT


def book_sources(root):
    """A copy of the book's sources (configuration, pages, page templates, style sheet) in ``root``, unbuilt."""
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("stages", "*.ipynb"))
    shutil.copytree(ROOT / "_static", root / "_static")  # the book's own style sheet
    return root
