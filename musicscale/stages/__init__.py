"""The five stages of the study, one module per notebook of ``notebooks/``.

Each module defines ``Params`` (its parameters and their defaults, defined once: the notebook's parameters
cell repeats them and ``profiles.PROFILES`` overrides them), ``run(workdir, **params)`` (the whole stage: it
checks every parameter before any work, then writes the stage's artifacts under ``workdir``) and the tables
and glued values its notebook shows. The notebooks call these, and :mod:`musicscale.plots` for figures.
The computations live in the modules of the package root (``corpus``, ``grammar``, ``tokenizer``, ``models``,
``train``, ``joint_law``, ``holdout``, ``analysis``, ``validity``, ``render``), which know nothing of the
workdir's layout (they read and write the paths they are given); ``sweep`` runs a set of runs into it, and
``workdir`` names every path.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# notebook -> module, in the order the stages run
STAGES = {"01_data": "data", "02_tokenize": "tokenize", "03_train": "train", "04_analyze": "analyze",
          "05_generate": "generate"}


def module(stage: str) -> ModuleType:
    """The module of a stage notebook: ``module("03_train")`` is :mod:`musicscale.stages.train`."""
    return importlib.import_module(f"{__name__}.{STAGES[stage]}")
