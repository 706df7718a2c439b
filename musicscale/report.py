"""Small display helpers for the stage notebooks: Markdown tables and the parameter table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from IPython.display import Markdown

Column = tuple[str, str, Callable[[Any], str] | str | None]  # key, header, formatter


def fmt(value: Any, spec: Callable[[Any], str] | str | None = None) -> str:
    """Format one cell: ``spec`` is a format spec (``".3f"``), a callable, or None for ``str``."""
    if value is None:
        return "—"
    if callable(spec):
        return spec(value)
    if spec:
        return format(value, spec)
    return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[Column]) -> Markdown:
    """A Markdown table of ``rows`` (dicts) with one column per ``(key, header, format)``."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(k), f).replace("|", "\\|") for k, _, f in columns) + " |")
    return Markdown("\n".join(lines))


def show_parameters(params: dict) -> Markdown:
    """The notebook's parameters as a two-column table (what this execution was run with)."""
    return markdown_table([{"name": f"`{k}`", "value": f"`{v!r}`"} for k, v in params.items()],
                          [("name", "parameter", None), ("value", "value", None)])
