"""The ranking of samples: which of a model's samples are whole tunes of realistic length (:func:`qualifies`, with
the length rule of :func:`realistic_bars` and :func:`gallery_min_bars`), their order best first
(:func:`rank_samples`), the ones the gallery shows of a model (:func:`shown_samples`) and of each prompt
(:func:`prompted_picks`), and what a shown sample lacks (:func:`shortfall`, :func:`disobeys`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import corpus, validity
from .generated import cached_summary, code_version
from .workdir import Workdir, file_fingerprint, fingerprint, write_json

QUARTILE = 0.25  # a sample of realistic length has at least as many checked bars as the shortest quarter of real tunes


def realistic_bars(tunes: Sequence[str]) -> int:
    """The fewest checked bars a sample needs to count as a whole tune: the lower quartile of the checked
    bars of real ``tunes`` (at least 1)."""
    counts = [validity.bar_duration_stats(t)[0] for t in tunes]
    return max(1, int(np.quantile(counts, QUARTILE, method="lower"))) if counts else 1


def gallery_min_bars(workdir: str | Path, dataset: str) -> int:
    """:func:`realistic_bars` of the dataset's test tunes, saved beside its samples (it takes seconds)."""
    wd = Workdir(workdir)
    test_path = wd.require(wd.split_text(dataset, "test"))
    path = wd.generated_dir(dataset) / "min_bars.json"
    # the rule's own code is an input too: a change to realistic_bars makes the length rule again
    inputs = fingerprint(file_fingerprint(test_path), QUARTILE, code_version(), file_fingerprint(Path(__file__)))
    saved = cached_summary(path, inputs)
    if saved is None:
        saved = {"inputs_fingerprint": inputs, "min_bars": realistic_bars(corpus.read_split(test_path))}
        write_json(path, saved)
    return saved["min_bars"]


def qualifies(sample: dict, min_bars: int) -> bool:
    """A complete tune (the model closed it) that parses and has at least ``min_bars`` checked bars."""
    m = sample["metrics"]
    return bool(sample.get("finished", True)) and m["parses"] and m["bars_checked"] >= min_bars


def rank_samples(samples: Sequence[dict], min_bars: int) -> tuple[list[dict], int]:
    """(samples best first, how many qualify). Qualifying samples (:func:`qualifies`) come first, ranked by
    bar accuracy, valid headers, novelty and length; the rest follow, the closest to qualifying first."""
    def score(s: dict) -> tuple:
        m = s["metrics"]
        return (qualifies(s, min_bars), m["parses"], bool(s.get("finished", True)), min(m["bars_checked"], min_bars),
                m["bar_accuracy"] or 0.0, m["headers_ok"], bool(m["novel"]), m["bars_checked"])
    ranked = sorted(samples, key=score, reverse=True)  # stable: ties keep the sampling order
    return ranked, sum(qualifies(s, min_bars) for s in samples)


def best_sample(samples: Sequence[dict], min_bars: int = 1) -> dict:
    """The most musical sample: the first of :func:`rank_samples`."""
    return rank_samples(samples, min_bars)[0][0]


def shown_samples(samples: Sequence[dict], min_bars: int, k: int) -> tuple[list[dict], int]:
    """(the samples the gallery shows of a model, how many qualify): its ``k`` best if that many qualify,
    else those that do, or the single closest one if none does."""
    ranked, n_ok = rank_samples(samples, min_bars)
    return ranked[:max(1, min(k, n_ok))], n_ok


def prompted_picks(samples: Sequence[dict], asked: Sequence[dict], min_bars: int) -> list[dict]:
    """The prompted sample the gallery shows per prompt: the best (:func:`rank_samples`) of those that obey it,
    else the one closest to obeying (it parses, keeps the asked meter and key, has most bars in the meter)."""
    def closeness(s: dict) -> tuple:
        o = s["obedience"]
        return (o["obeys"], o["parses"], o["meter_ok"] is not False, o["key_ok"] is not False,
                o["fields_ok"] is not False, o["bars_correct"] / o["bars_checked"] if o["bars_checked"] else 0.0)

    picks = []
    for k in range(len(asked)):
        ranked = rank_samples([s for s in samples if s["prompt"] == k], min_bars)[0]
        if ranked:
            picks.append(max(ranked, key=closeness))  # of equals, the first: the best by rank_samples
    return picks


def disobeys(sample: dict, prompt: dict) -> str:
    """How a sample falls short of its prompt, for the gallery."""
    o, why = sample["obedience"], []
    if not o["parses"]:
        why.append("music21 cannot parse it")
    if o["meter_ok"] is False:
        why.append(f"music21 reads the meter as {o['meter'] or 'none'}, not {prompt['M']}")
    if o["key_ok"] is False:
        why.append(f"music21 reads the key as {o['key'] or 'none'}")
    if o["fields_ok"] is False:
        why.append("it changes an asked field")
    if o["bars_checked"] > o["bars_correct"]:
        why.append(f"{o['bars_checked'] - o['bars_correct']} of {o['bars_checked']} checked bars off the asked meter")
    elif o["meter_ok"] is not None and not o["bars_checked"]:
        why.append("no bar to check against the asked meter")
    return "; ".join(why)


def shortfall(sample: dict, min_bars: int) -> str:
    """Why a sample does not qualify (:func:`qualifies`), for the gallery."""
    m, why = sample["metrics"], []
    if not sample.get("finished", True):
        why.append("the model did not close the tune")
    if not m["parses"]:
        why.append("music21 cannot parse it")
    if m["bars_checked"] < min_bars:
        why.append(f"{m['bars_checked']} checked bars")
    return ", ".join(why)
