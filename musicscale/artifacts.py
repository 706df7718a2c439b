"""What a later stage reads back of what an earlier one saved: the finished runs of the last sweep (refused, naming
the dataset and the notebook to run, where a dataset has none or its runs were trained on other data than its
token files hold now), the tokenizer a dataset was saved with, and a run's trained model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .params import as_optional_list
from .tokenizer import CharTokenizer
from .workdir import CorruptArtifactError, Workdir, load_torch, move_aside, read_json

if TYPE_CHECKING:
    import torch


class NoRunsError(FileNotFoundError):
    """A dataset has no finished run of the current data; the message names it and the notebook to run."""


def load_sweep(workdir: str | Path, datasets: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """The runs of the last sweep of each dataset (``runs/<dataset>/sweep_results.json``).

    Raises :class:`NoRunsError` naming a dataset that has no finished run, or whose runs were trained on
    other data than its token files hold now (the data were regenerated after training)."""
    wd = Workdir(workdir)
    names = as_optional_list("datasets", datasets) or wd.datasets("runs")
    if not names:
        raise NoRunsError(f"no finished runs under {wd.root / 'runs'}: run notebooks/03_train.ipynb first "
                          f"(with the same workdir={str(wd.root)!r})")
    out = {}
    for d in names:
        path = wd.sweep_results(d)
        if not path.exists():
            raise NoRunsError(f"dataset {d!r} has no finished run ({path} does not exist): run "
                              f"notebooks/03_train.ipynb first (with the same workdir={str(wd.root)!r})")
        runs = read_json(path)["runs"]
        if not runs:
            raise NoRunsError(f"dataset {d!r} has no finished run in {path}: run notebooks/03_train.ipynb")
        fp = read_json(wd.require(wd.tokens_meta(d))).get("fingerprint")
        if fp is None:  # a meta.json older than fingerprints: compute it (this needs the training stack)
            from .sweep import current_fingerprint  # imports torch: only for an old meta.json

            fp = current_fingerprint(wd, d)
        stale = [r["run"] for r in runs if r.get("data_fingerprint") != fp]
        if stale:
            raise NoRunsError(f"dataset {d!r}: {len(stale)} of {len(runs)} runs in {path} were trained on other "
                              f"data than {wd.tokens_dir(d)} holds now (e.g. {stale[0]}): re-run "
                              "notebooks/03_train.ipynb, which retrains them")
        out[d] = runs
    return out


def load_tokenizer(workdir: str | Path, dataset: str) -> CharTokenizer:
    """The tokenizer the tokenize stage saved for ``dataset`` (its vocabulary, in ``tokens/<dataset>/meta.json``)."""
    wd = Workdir(workdir)
    return CharTokenizer(read_json(wd.require(wd.tokens_meta(dataset)))["vocabulary"])


def load_model(workdir: str | Path, dataset: str, run: str, device: str = "cpu") -> torch.nn.Module:
    """The model of a run with its weights at its last point (the end of its longest cooldown branch), in eval
    mode; a damaged ``model.pt`` is moved aside (the train stage then trains the run again)."""
    from .models import build_model  # imports torch: only where a model is loaded

    wd = Workdir(workdir)
    path = wd.require(wd.run_dir(dataset, run) / "model.pt")
    try:
        state = load_torch(path, map_location=device)
    except CorruptArtifactError as err:
        move_aside(path)  # the train stage then sees the run as unfinished and trains it again
        raise CorruptArtifactError(f"{err}; moved aside as *.corrupt: re-run notebooks/03_train.ipynb") from err
    model = build_model(state["arch"], state["size"], state["vocab_size"], state["context_length"],
                        state.get("variant"))
    model.load_state_dict(state["model"])
    return model.to(device).eval()
