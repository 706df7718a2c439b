"""The five stages of the study, one module per notebook of ``notebooks/``.

Each module defines ``Params`` (its parameters and their defaults, defined once: the notebook's parameters
cell repeats them and ``pipeline.PROFILES`` overrides them), ``run(workdir, **params)`` (the whole stage: it
checks every parameter before any work, then writes the stage's artifacts under ``workdir``) and the tables
and glued values its notebook shows. The notebooks call these and nothing more. The computations live in the
modules of the package root (``corpus``, ``grammar``, ``tokenizer``, ``models``, ``train``, ``scaling``,
``holdout``, ``analysis``, ``validity``, ``render``), which know nothing of the workdir's layout; ``sweep``
runs a set of runs into it, and ``workdir`` names every path.
"""

from __future__ import annotations

from types import ModuleType

from . import analyze, data, generate, tokenize, train

STAGES: dict[str, ModuleType] = {"01_data": data, "02_tokenize": tokenize, "03_train": train,
                                 "04_analyze": analyze, "05_generate": generate}
