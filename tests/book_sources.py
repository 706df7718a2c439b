"""A copy of the book's sources for a test build (the tests build books outside the repository)."""

from __future__ import annotations

import shutil

from musicscale.pipeline import ROOT


def book_sources(root):
    """A copy of the book's sources (configuration, pages, page templates) in ``root``, without any build."""
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("stages", "*.ipynb"))
    return root
