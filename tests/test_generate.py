"""The generate stage on the smoke study (the ``smoke_report`` fixture): made again from scratch in this
process it gives the same samples, metrics, gallery and files as the pipeline's run in a notebook kernel; a
second run reuses everything it saved without starting a worker; no worker outlives the stage."""

import os
import shutil
from pathlib import Path

import pytest

from musicscale import gallery, generated, workers
from musicscale.stages import generate

SMOKE = {"n_samples": 4, "max_new_tokens": 300}  # the defaults of notebooks/05_generate.ipynb
COMPARED = ("samples.jsonl", "summary.json", "best.svg", "best.ogg", "best.mid", "prompted.jsonl", "prompted.json",
            "temperatures.jsonl", "temperatures.json")


def running_workers() -> list[int]:
    """The worker processes still running under this process."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and b"musicscale.workers" in command:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through /proc")
def test_the_stage_from_scratch_matches_the_pipeline_and_reuses_what_it_saved(smoke_report, tmp_path, monkeypatch):
    made = smoke_report[0] / "work"
    work = tmp_path / "work"
    shutil.copytree(made, work, ignore=shutil.ignore_patterns("generated"))
    summaries = generate.run(work, log=None, **SMOKE)
    assert running_workers() == []
    page = gallery.galleries(work, summaries).data
    assert running_workers() == []

    files = sorted(p.relative_to(made) for p in (made / "generated").rglob("*") if p.name in COMPARED)
    models = [s for s in summaries if s["arch"] != generated.REFERENCE]
    assert sum(p.name == "summary.json" for p in files) == len(models) and any(p.suffix == ".svg" for p in files)
    # every model is sampled from every prompt; the largest of each family at every temperature of the sweep
    assert sum(p.name == "prompted.json" for p in files) == len(models)
    swept = [s for s in models if s.get("temperature_sweep")]
    assert {(s["dataset"], s["arch"]) for s in swept} == {(s["dataset"], s["arch"]) for s in models}
    assert len(swept) == len({(s["dataset"], s["arch"]) for s in models})
    defaults = generate.Params()
    for s in models:
        assert s["share_obeys"] is not None and len(s["prompted"]) == 3  # two headers and opening bars
        assert all(p["n"] == defaults.prompt_samples for p in s["prompted"])
    assert all([p["temperature"] for p in s["temperature_sweep"]] == defaults.temperatures for s in swept)
    assert all(s["share_obeys"] is not None for s in summaries if s["arch"] == generated.REFERENCE)
    # byte-identical: the same sampling on this machine, one torch thread in both (the stage sets it)
    assert [p for p in files if (made / p).read_bytes() != (work / p).read_bytes()] == []

    def no_pool(*args, **kwargs):
        raise AssertionError("a second run started workers")

    monkeypatch.setattr(workers, "tune_pool", no_pool)
    assert generate.run(work, log=None, **SMOKE) == summaries
    assert gallery.galleries(work, summaries).data == page
    assert gallery.galleries(made, summaries).data == page

    # other temperatures: only the sweep is sampled again; the unprompted and prompted samples are reused
    monkeypatch.undo()
    sampled, real = [], generate.sample_requests

    def record(model, tok, requests, **kwargs):
        sampled.append(requests)
        return real(model, tok, requests, **kwargs)

    monkeypatch.setattr(generate, "sample_tunes", no_pool)
    monkeypatch.setattr(generate, "sample_requests", record)
    again = generate.run(work, log=None, temperatures=[0.7], **SMOKE)
    assert len(sampled) == len(swept) and all(t == 0.7 for requests in sampled for _, t in requests)
    assert [{k: v for k, v in s.items() if k != "temperature_sweep"} for s in again] == \
        [{k: v for k, v in s.items() if k != "temperature_sweep"} for s in summaries]
    assert all([p["temperature"] for p in s["temperature_sweep"]] == [0.7] for s in again if "temperature_sweep" in s)


def test_bad_prompts_are_refused_before_any_sampling(smoke_report, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(smoke_report[0] / "work", work, ignore=shutil.ignore_patterns("generated"))

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the prompts were checked")

    monkeypatch.setattr(generate, "sample_tunes", no_sampling)
    monkeypatch.setattr(generate, "sample_requests", no_sampling)
    good = {"M": "6/8", "L": "1/8", "K": "D"}
    for bad, why in [({**good, "bars": "|:dfa afd|" * 8}, r"longer than the context of 'music21''s models \(64"),
                     ({**good, "R": "jig"}, r"the training tunes of 'music21' have no R: field"),
                     ({"K": "D", "bars": "|:d€fa|"}, r"characters outside the vocabulary of 'music21': '€'"),
                     ({"M": "7/0"}, r"music21 cannot read the meter M:7/0"),
                     ({"Key": "D"}, r"unknown field\(s\) \['Key'\]")]:
        with pytest.raises(ValueError, match=r"prompts\[1\] .*" + why):
            generate.run(work, log=None, prompts=[good, bad], **SMOKE)
    assert not (work / "generated").exists() or not any((work / "generated").rglob("*.json*"))


def test_an_unreadable_cache_file_is_moved_aside_and_made_again(tmp_path):
    path = tmp_path / "reference.json"
    path.write_bytes(b"\x00\xff")
    assert generated.cached_summary(path, "inputs") is None and (tmp_path / "reference.json.corrupt").exists()
    path.write_text('{"inputs_fingerprint": "other"}')
    assert generated.cached_summary(path, "inputs") is None and path.exists()
