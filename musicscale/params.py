"""Checking notebook parameters before a stage does any work, and the base of each stage's parameters.

papermill passes ``-p name value`` as a string, so a list written on the command line arrives as the
text ``'["tiny", "small"]'``. :func:`as_list` accepts a real list, or a string holding a JSON list, and
rejects anything else with a message that shows the form that works (``-y``), instead of letting a
string be split into characters far from where it was given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

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


@dataclass
class StageParameters:
    """The parameters of one stage with their defaults, defined once.

    Each stage module (:mod:`musicscale.stages`) subclasses this with its own fields. The notebook's
    ``parameters`` cell repeats the same names and defaults (a test checks it), ``profiles.PROFILES`` may
    only override fields that exist, and the stage's ``run(workdir, **params)`` builds one of these, so a
    misspelt or badly typed parameter is reported before the stage does any work. The defaults are the
    smoke study, which runs in about a minute; the profiles scale it up.
    """

    stage: ClassVar[str] = ""  # the notebook's name, e.g. "03_train"

    workdir: str = "../work/smoke"  # where every stage reads and writes its artifacts (relative to notebooks/)
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.workdir, (str, os.PathLike)) or not str(self.workdir):
            raise ValueError(f"workdir must be a path, got {self.workdir!r}")
        self.workdir = str(self.workdir)
        self.seed = as_int("seed", self.seed)

    @classmethod
    def names(cls) -> list[str]:
        """The parameter names, in the order the notebook declares them."""
        return [f.name for f in fields(cls)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every parameter's default value."""
        return {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(cls)}

    @classmethod
    def build(cls, **values: Any) -> StageParameters:
        """The parameters from keyword values; a name the stage does not have is a ValueError naming it."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(f"{cls.stage}: unknown parameter(s) {unknown}; notebooks/{cls.stage}.ipynb "
                             f"declares {cls.names()}")
        return cls(**values)

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> StageParameters:
        """The parameters a notebook's ``parameters`` cell (and papermill's injected cell) left in its
        namespace: ``Params.from_namespace(globals())``."""
        return cls(**{name: namespace[name] for name in cls.names() if name in namespace})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.names()}

    def _repr_markdown_(self) -> str:
        """The notebook shows the parameters it ran with as a two-column table."""
        from .tables import show_parameters

        return show_parameters(self.as_dict()).data
