"""Checking notebook parameters before a stage does any work.

papermill passes ``-p name value`` as a string, so a list written on the command line arrives as the
text ``'["tiny", "small"]'``. :func:`as_list` accepts a real list, or a string holding a JSON list, and
rejects anything else with a message that shows the form that works (``-y``), instead of letting a
string be split into characters far from where it was given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

PAPERMILL_HINT = "with papermill pass lists as YAML: -y '{name}: [tiny, small]'"


def as_list(name: str, value: Any, *, allowed: Iterable[str] | None = None, item: type | tuple = str,
            allow_empty: bool = False) -> list:
    """``value`` as a list of ``item``s, checked against ``allowed``; ValueError naming ``name`` otherwise."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, list):
            raise ValueError(f"{name} must be a list, got the string {value!r}; "
                             + PAPERMILL_HINT.format(name=name))
        value = parsed
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list, got {type(value).__name__} {value!r}")
    values = list(value)
    if not values and not allow_empty:
        raise ValueError(f"{name} must name at least one value")
    kind = getattr(item, "__name__", "number")
    for v in values:
        if not isinstance(v, item) or isinstance(v, bool):
            raise ValueError(f"{name}: every entry must be a {kind}, got {v!r}")
    if allowed is not None:
        allowed = list(allowed)
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise ValueError(f"{name}: unknown value(s) {unknown}; allowed: {allowed}")
    return values


def as_optional_list(name: str, value: Any, **kwargs) -> list | None:
    """None stays None (meaning "all"); anything else goes through :func:`as_list`."""
    return None if value is None else as_list(name, value, **kwargs)


def as_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """An integer (not a bool) of at least ``minimum``; ValueError naming ``name`` otherwise."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
