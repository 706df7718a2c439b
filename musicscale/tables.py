"""What the stage notebooks show: Markdown tables, the parameter table, glued text."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from IPython.display import Markdown

Column = tuple[str, str, Callable[[Any], str] | str | None]  # key, header, formatter

MISSING = "—"
# A cell that reads as a number: "1,234", "-0.5", "12%", "1.2e+05", "0.31 [0.2, 0.4]" (a value and its interval).
_NUMERIC = re.compile(r"[-+−]?[\d,]*\.?\d+(?:e[-+]?\d+)?%?(?: \[.*\])?")


def fmt(value: Any, spec: Callable[[Any], str] | str | None = None) -> str:
    """Format one cell: ``spec`` is a format spec (``".3f"``), a callable, or None for ``str``.
    A missing value (None or NaN) is a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if callable(spec):
        return spec(value)
    if spec:
        return format(value, spec)
    return str(value)


def _numeric(cells: Sequence[str]) -> bool:
    filled = [c for c in cells if c != MISSING]
    return bool(filled) and all(_NUMERIC.fullmatch(c) for c in filled)


def markdown_table(rows: Sequence[dict], columns: Sequence[Column]) -> Markdown:
    """A Markdown table of ``rows`` (dicts) with one column per ``(key, header, format)``.
    Columns whose cells are all numbers are right-aligned; a column of text (a value given as a string, such as a
    value with its interval) never is, so its alignment does not change with what a build's fits print."""
    cells = [[fmt(row.get(k), f) for k, _, f in columns] for row in rows]
    text = [any(isinstance(row.get(k), str) and row.get(k) != MISSING for row in rows) for k, _, _ in columns]
    align = ["---:" if not text[j] and _numeric([r[j] for r in cells]) else "---" for j in range(len(columns))]
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return Markdown("\n".join(lines))


def show_parameters(params: dict) -> Markdown:
    """The notebook's parameters as a two-column table (what this execution was run with)."""
    return markdown_table([{"name": f"`{k}`", "value": f"`{v!r}`"} for k, v in params.items()],
                          [("name", "parameter", None), ("value", "value", None)])


def glue_text(name: str, value: Any, spec: str = "", missing: str = "not measured") -> None:
    """Glue ``value`` formatted with ``spec`` as text (myst-nb); a missing value (None or NaN) reads
    "n/a (<missing>)", never "nan". Cite it as {glue:text}`page.ipynb::name:s`."""
    from myst_nb import glue

    glue(name, text_value(value, spec, missing), display=False)


def text_value(value: Any, spec: str = "", missing: str = "not measured") -> str:
    """What :func:`glue_text` glues."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"n/a ({missing})"
    return value if isinstance(value, str) else format(value, spec)


def html_table(table: Markdown):
    """A :func:`markdown_table` as HTML, for pasting into another page of the book (myst-nb pastes a glued
    HTML table across pages, but not a Markdown one)."""
    from IPython.display import HTML
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(table.data)
    return HTML(html.replace("<table>", '<table class="table">'))
