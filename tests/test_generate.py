"""The generate stage on the smoke study (the ``smoke_report`` fixture): made again from scratch in this
process it gives the same samples, metrics, gallery and files as the pipeline's run in a notebook kernel; a
second run reuses everything it saved without starting a worker; no worker outlives the stage."""

import os
import shutil
from pathlib import Path

import pytest

from musicscale import workers
from musicscale.stages import generate

SMOKE = {"n_samples": 4, "max_new_tokens": 300}  # the defaults of notebooks/05_generate.ipynb
COMPARED = ("samples.jsonl", "summary.json", "best.svg", "best.ogg", "best.mid")


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
    page = generate.galleries(work, summaries).data
    assert running_workers() == []

    files = sorted(p.relative_to(made) for p in (made / "generated").rglob("*") if p.name in COMPARED)
    models = [s for s in summaries if s["arch"] != generate.REFERENCE]
    assert sum(p.name == "summary.json" for p in files) == len(models) and any(p.suffix == ".svg" for p in files)
    # byte-identical: the same sampling on this machine, one torch thread in both (the stage sets it)
    assert [p for p in files if (made / p).read_bytes() != (work / p).read_bytes()] == []

    def no_pool(*args, **kwargs):
        raise AssertionError("a second run started workers")

    monkeypatch.setattr(workers, "tune_pool", no_pool)
    assert generate.run(work, log=None, **SMOKE) == summaries
    assert generate.galleries(work, summaries).data == page
    assert generate.galleries(made, summaries).data == page


def test_an_unreadable_cache_file_is_moved_aside_and_made_again(tmp_path):
    path = tmp_path / "reference.json"
    path.write_bytes(b"\x00\xff")
    assert generate._saved(path, "inputs") is None and (tmp_path / "reference.json.corrupt").exists()
    path.write_text('{"inputs_fingerprint": "other"}')
    assert generate._saved(path, "inputs") is None and path.exists()
