"""The five stages of the study, one module per notebook of ``notebooks/``.

Each module defines ``Params`` (its parameters and their defaults, once), ``run(workdir, **params)`` (the
whole stage: it checks every parameter, does the work and writes the stage's artifacts under
``workdir``) and the tables and glued values its notebook shows. The notebooks call these and nothing
more; the computations live in the pure modules (``corpus``, ``grammar``, ``tokenizer``, ``models``,
``train``, ``sweep``, ``scaling``, ``holdout``, ``analysis``, ``validity``, ``render``), which know nothing
of the workdir layout.
"""

from __future__ import annotations

from types import ModuleType

from . import analyze, data, generate, tokenize, train

STAGES: dict[str, ModuleType] = {"01_data": data, "02_tokenize": tokenize, "03_train": train,
                                 "04_analyze": analyze, "05_generate": generate}
