"""One default per setting: each stage's ``Params`` holds its parameters and their defaults; the notebook's
``parameters`` cell repeats them exactly, every profile overrides only parameters that exist, and a stage's
``run`` rejects anything else before it does any work."""

import ast
import inspect
import json

import pytest
import torch

from musicscale.pipeline import NOTEBOOKS, PROFILES, STAGES
from musicscale.stages import module


def parameter_cell(stage: str) -> dict:
    """The names and literal values of a notebook's ``parameters`` cell, in order."""
    nb = json.loads((NOTEBOOKS / f"{stage}.ipynb").read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    values = {}
    for node in ast.parse("".join(cell["source"])).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


@pytest.mark.parametrize("stage", STAGES)
def test_the_notebook_declares_the_stage_parameters_with_their_defaults(stage):
    params = module(stage).Params
    assert list(parameter_cell(stage).items()) == list(params.defaults().items())
    assert params.stage == stage


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_sets_only_parameters_that_exist_with_valid_values(profile):
    for stage, values in PROFILES[profile].items():
        params = module(stage).Params
        assert set(values) <= set(params.names()), (profile, stage, set(values) - set(params.names()))
        if values.get("device") == "cuda" and not torch.cuda.is_available():
            values = {**values, "device": "cpu"}  # the gpu profile is checked here on a CPU
        built = params.build(**values)
        assert all(getattr(built, k) == v for k, v in values.items() if k != "device")


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_rejects_an_unknown_parameter_before_any_work(stage, tmp_path):
    run = module(stage).run
    assert list(inspect.signature(run).parameters)[0] == "workdir"
    with pytest.raises(ValueError, match=rf"{stage}: unknown parameter\(s\) \['colour'\]; notebooks/{stage}\.ipynb"):
        run(tmp_path / "w", colour="red")
    assert not (tmp_path / "w").exists()


def test_the_notebook_namespace_gives_the_parameters():
    from musicscale.stages import train

    namespace = {**train.Params.defaults(), "sizes": '["micro", "tiny"]', "unrelated": 1}
    params = train.Params.from_namespace(namespace)
    assert params.sizes == ["micro", "tiny"]  # papermill's string list, parsed
    assert "| `sizes` | `['micro', 'tiny']` |" in params._repr_markdown_()


def test_bad_values_are_named():
    from musicscale.stages import analyze, train

    with pytest.raises(ValueError, match="n_boot must be >= 0"):
        analyze.Params(n_boot=-1)
    with pytest.raises(ValueError, match="sizes: unknown transformer size 'huge'"):
        train.Params(sizes=["huge"])
    with pytest.raises(ValueError, match="min_steps must be a power of two"):
        train.Params(min_steps=33)
