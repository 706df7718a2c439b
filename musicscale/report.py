"""The book's pages that speak of the build's datasets: Jinja templates in ``book/templates/``, rendered before
each book build into ``book/`` for the datasets, families and checks this build has.

A page is written once, as a template with one section per dataset (a loop, never a copy of a paragraph); the
numbers stay myst-nb glue references into the executed notebooks, so the book build still reads every number
from the notebooks. The template cites a glued value as ``{{ analyze("music21_lstm_joint_alpha") }}``, which
renders to ``{glue:text}`stages/04_analyze.ipynb::music21_lstm_joint_alpha:s```; a name that the notebook
did not glue stops the rendering with an error naming the page, the stage and the name, before Sphinx runs.
What the build has (:class:`BookContents`) is read from the executed notebooks and the workdir they ran on.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .models import ARCHITECTURES
from .workdir import Workdir, read_json, write_text

TEMPLATES = "book/templates"  # relative to the book's root; each renders to book/<same name>
STAGE_NOTEBOOKS = {"data": "01_data", "tokenize": "02_tokenize", "train": "03_train", "analyze": "04_analyze",
                   "generate": "05_generate"}


@dataclass(frozen=True)
class Family:
    """A model family of the build: its registry name (the glue names' infix) and how the report names it."""

    name: str
    label: str


@dataclass(frozen=True)
class DatasetSection:
    """One dataset of the build, as the pages describe it."""

    name: str  # the workdir's folder name, the prefix of its glue names
    title: str  # e.g. "Real corpus (music21)", "Synthetic grammar", "Your corpus (irish)"
    kind: str  # "music21", "synthetic" or "abc" (the user's own files)
    source: str  # what the data stage read, as its corpus report says
    families: tuple[Family, ...]  # the families fitted on it, in the registry's order
    exact_entropy: bool  # its entropy rate H* is known (the grammar's), so the fitted floor can be checked
    compared: bool  # the joint laws of two families were compared on it

    @property
    def real(self) -> bool:
        return self.kind != "synthetic"


@dataclass(frozen=True)
class BookContents:
    """What this build has: its datasets (in the order the data stage made them) and the families."""

    datasets: tuple[DatasetSection, ...]
    families: tuple[Family, ...]
    workdir: Path

    def of_kind(self, kind: str) -> list[DatasetSection]:
        return [d for d in self.datasets if d.kind == kind]


def glued_names(notebook: Path) -> set[str]:
    """The names a myst-nb ``glue`` call recorded in an executed notebook's outputs."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    return {o["metadata"]["scrapbook"]["name"] for c in nb.get("cells", []) for o in c.get("outputs", [])
            if "scrapbook" in o.get("metadata", {})}


def glued_texts(notebook: Path) -> dict[str, str]:
    """The text values a myst-nb ``glue`` call recorded in an executed notebook, by name (what a ``{glue:text}``
    role would paste)."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    out = {}
    for c in nb.get("cells", []):
        for o in c.get("outputs", []):
            book = o.get("metadata", {}).get("scrapbook")
            text = o.get("data", {}).get(f"{book['mime_prefix']}text/plain") if book else None
            if text is not None:
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    value = text
                out[book["name"]] = str(value)
    return out


def notebook_workdir(notebook: Path) -> Path:
    """The workdir an executed stage notebook ran on (papermill records its parameters)."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    workdir = nb.get("metadata", {}).get("papermill", {}).get("parameters", {}).get("workdir")
    if not workdir:
        raise ValueError(f"{notebook} was not executed by papermill with a workdir parameter: run the stages with "
                         "`python -m musicscale run` (or papermill -p workdir ...) before building the book")
    return (Path(notebook).parent / workdir).resolve() if not Path(workdir).is_absolute() else Path(workdir)


def _title(name: str, kind: str) -> str:
    return {"music21": "Real corpus (music21)", "synthetic": "Synthetic grammar"}.get(kind, f"Your corpus ({name})")


def book_contents(stages_dir: Path) -> BookContents:
    """What the build in ``stages_dir`` (the executed notebooks) has, from the results its analysis wrote."""
    analyzed = Path(stages_dir) / f"{STAGE_NOTEBOOKS['analyze']}.ipynb"
    if not analyzed.exists():
        raise FileNotFoundError(f"{analyzed} does not exist: the book is built from the executed stage notebooks; "
                                "run them first (`python -m musicscale run`)")
    wd = Workdir(notebook_workdir(analyzed))
    results = read_json(wd.require(wd.experiment_results))
    sections = []
    for name, ds in results["datasets"].items():
        report = read_json(wd.corpus_report(name)) if wd.corpus_report(name).exists() else {}
        kind = "synthetic" if report.get("unlimited") else "music21" if name == "music21" else "abc"
        families = tuple(Family(a, ARCHITECTURES[a].label if a in ARCHITECTURES else a) for a in ds["joint"])
        sections.append(DatasetSection(
            name=name, title=_title(name, kind), kind=kind, source=str(report.get("source", name)), families=families,
            exact_entropy=ds.get("entropy_rate") is not None,
            compared=bool((ds.get("architecture_gap") or {}).get("rows"))))
    families = tuple(dict.fromkeys(f for s in sections for f in s.families))
    return BookContents(datasets=tuple(sections), families=families, workdir=wd.root)


class MissingGlueError(ValueError):
    """A page's template cites a name that its stage notebook did not glue."""


def _citer(page: str, stage: str, names: set[str]) -> Callable[..., str]:
    """The template function that cites one stage's glued values: ``cite(name, fmt="s")``."""
    notebook = f"stages/{STAGE_NOTEBOOKS[stage]}.ipynb"

    def cite(name: str, fmt: str = "s") -> str:
        _check_glued(page, notebook, name, names)
        return f"{{glue:text}}`{notebook}::{name}:{fmt}`"

    return cite


def _check_glued(page: str, notebook: str, name: str, names) -> None:
    if name not in names:
        raise MissingGlueError(f"{page}: cites {name!r}, which book/{notebook} does not glue (is the "
                               f"template's condition for it wrong, or did the stage not run?)")


def heading(page: str, texts: dict[str, dict[str, str]]) -> Callable[[str, str], str]:
    """The template function for a heading that states a finding: ``heading(stage, name)`` is the text the stage
    glued under ``name``, pasted when the page renders (Sphinx cannot hold a glue reference in a section title);
    the page is rendered again from the executed notebooks before every book build, so it changes with them."""

    def text(stage: str, name: str) -> str:
        _check_glued(page, f"stages/{STAGE_NOTEBOOKS[stage]}.ipynb", name, texts[stage])
        return texts[stage][name]

    return text


def and_list(items) -> str:
    """``a``, ``a and b``, ``a, b and c``: how the pages list datasets and families."""
    items = [str(i) for i in items]
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


def render_pages(root: Path, contents: BookContents | None = None) -> list[Path]:
    """Render every template of ``root/book/templates`` into ``root/book`` for this build; a page that cannot
    be rendered leaves every page as it was (each is written atomically, after all have rendered). Returns the
    pages written."""
    root = Path(root)
    stages_dir = root / "book" / "stages"
    templates = sorted((root / TEMPLATES).glob("*.md"))
    if not templates:
        return []
    contents = contents or book_contents(stages_dir)
    values = {stage: glued_texts(stages_dir / f"{nb}.ipynb") if (stages_dir / f"{nb}.ipynb").exists() else {}
             for stage, nb in STAGE_NOTEBOOKS.items()}
    glued = {stage: glued_names(stages_dir / f"{nb}.ipynb") if (stages_dir / f"{nb}.ipynb").exists() else set()
             for stage, nb in STAGE_NOTEBOOKS.items()}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(root / TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["and_list"] = and_list
    texts = {}
    for path in templates:  # every page rendered before any is written
        page = f"book/{path.name}"
        cites = {stage: _citer(page, stage, names) for stage, names in glued.items()}

        def has(stage: str, name: str) -> bool:
            return name in glued[stage]

        texts[root / "book" / path.name] = env.get_template(path.name).render(
            build=contents, has=has, heading=heading(page, values), **cites)
    return [write_text(path, text) for path, text in texts.items()]
