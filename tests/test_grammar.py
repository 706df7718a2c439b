"""The synthetic grammar: deterministic by seed, tunes that are valid normalised ABC, exact log-probabilities that
rescore what was generated, and an entropy rate H* that the sampler matches."""

import math
import re

import numpy as np
import pytest
from scipy import stats

from musicscale.grammar import (
    GrammarConfig,
    entropy_rate,
    enumerate_tunes,
    parse_tune,
    sample_tunes,
    score_tune,
)

TINY = GrammarConfig.tiny()


@pytest.fixture(scope="module")
def tunes():
    return sample_tunes(300, seed=0)


@pytest.fixture(scope="module")
def tiny_tunes():
    return list(enumerate_tunes(TINY))


def bar_lengths(text: str) -> tuple[int, list[int]]:
    """(units per bar from M:, summed note lengths of every bar), read independently of the grammar."""
    lines = text.split("\n")
    num, den = map(int, lines[1][2:].split("/"))
    body = re.sub(r'"[^"]*"', "", "".join(lines[4:]))
    body = body.replace("|:", "").replace(":|", "|").replace(" ", "")
    bars = [bar for bar in body.split("|") if bar]
    return 8 * num // den, [sum(int(n or 1) for n in re.findall(r"[A-Ga-g](\d?)", bar)) for bar in bars]


def test_sampling_is_deterministic_by_seed():
    assert sample_tunes(20, seed=1) == sample_tunes(20, seed=1)
    assert sample_tunes(20, seed=1) != sample_tunes(20, seed=2)


def test_tunes_look_like_normalised_abc(tunes):
    for text, logp in tunes:
        assert text.startswith("X:1\nM:") and "\nL:1/8\nK:" in text
        assert "\n\n" not in text and not text.endswith("\n")
        assert logp < 0
    lengths = [len(t) for t, _ in tunes]
    assert 150 < np.mean(lengths) < 400
    assert {t.split("\n")[1] for t, _ in tunes} == {"M:6/8", "M:4/4", "M:3/4", "M:2/4"}
    assert any('"' in t for t, _ in tunes) and any('"' not in t for t, _ in tunes)


def test_every_bar_fills_the_meter(tunes):
    for text, _ in tunes:
        units, bars = bar_lengths(text)
        assert len(bars) >= 8
        assert bars == [units] * len(bars), text


def test_rescoring_gives_the_generation_log_prob(tunes):
    for text, logp in tunes[:200]:
        assert score_tune(text) == pytest.approx(logp, abs=1e-9)


def test_texts_outside_the_grammar_score_minus_inf(tunes):
    text = tunes[0][0]
    last_line = text.rsplit("\n", 1)[1]
    broken = {
        "extra space": text.replace("|", " |", 1),
        "note out of range": re.sub(r"[A-Ga-g](?=\d?:\|$)", "C", text),
        "not ending on the tonic": re.sub(r"[A-Ga-g](?=\d?:\|$)", "f", text),  # no default key is in F
        "bar too long": text.replace(last_line, last_line.replace(":|", "A:|")),
        "no header": text.split("\n", 4)[4],
        "other config": text.replace("L:1/8", "L:1/16"),
    }
    for what, bad in broken.items():
        assert bad != text, what
        assert score_tune(bad) == -math.inf, what
    with pytest.raises(ValueError, match="header"):
        score_tune("X:2\nM:6/8\nL:1/8\nK:G\n|:G6:|", strict=True)
    with pytest.raises(ValueError, match="pitch 'C'"):
        score_tune(broken["note out of range"], strict=True)


def test_parse_reads_back_the_choices(tunes):
    text = tunes[0][0]
    choices = parse_tune(text)
    meter, key = text.split("\n")[1][2:], text.split("\n")[3][2:]
    assert choices[:2] == [meter, key]
    assert choices[3] == text.count("|:")  # number of parts


def test_tiny_config_is_a_normalised_injective_distribution(tiny_tunes):
    texts = [t for t, _ in tiny_tunes]
    assert 1000 < len(texts) < 20000
    assert len(set(texts)) == len(texts)  # different choices never give the same text
    assert math.fsum(math.exp(lp) for _, lp in tiny_tunes) == pytest.approx(1.0, abs=1e-9)
    for text, lp in tiny_tunes[::25]:
        assert score_tune(text, TINY) == pytest.approx(lp, abs=1e-9)


def test_sampler_matches_the_exact_distribution(tiny_tunes):
    exact = -math.fsum(math.exp(lp) * lp for _, lp in tiny_tunes)
    samples = sample_tunes(20000, seed=7, config=TINY)
    nll = -np.array([lp for _, lp in samples])
    stderr = nll.std() / math.sqrt(len(nll))
    assert abs(nll.mean() - exact) < 4 * stderr
    # chi-square goodness of fit: the 100 most probable tunes each in a bin, the rest in one
    top = sorted(tiny_tunes, key=lambda t: -t[1])[:100]
    index = {text: i for i, (text, _) in enumerate(top)}
    observed = np.bincount([index.get(text, len(top)) for text, _ in samples], minlength=len(top) + 1)
    probs = np.array([math.exp(lp) for _, lp in top])
    expected = len(samples) * np.append(probs, 1 - probs.sum())
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(1 - 1e-4, df=len(top))


def test_entropy_rate_counts_one_separator_per_tune(tunes):
    assert entropy_rate([-3.0, -1.0], ["ab", "cdef"]) == pytest.approx(4.0 / 8)
    assert entropy_rate([-3.0, -1.0], ["ab", "cdef"], separator_chars=2) == pytest.approx(4.0 / 10)
    with pytest.raises(ValueError):
        entropy_rate([-1.0], ["a", "b"])
    rate = entropy_rate([lp for _, lp in tunes], [t for t, _ in tunes])
    assert 0.5 < rate < 1.5


def test_music21_reads_generated_tunes(tunes):
    music21 = pytest.importorskip("music21")
    for text, _ in tunes[:4]:
        units, bars = bar_lengths(text)
        score = music21.converter.parse(text, format="abc")
        part = score.parts[0] if score.parts else score
        measures = list(part.getElementsByClass("Measure"))
        assert len(measures) == len(bars)
        assert {m.duration.quarterLength for m in measures} == {units / 2}
        n_notes = len(re.findall(r"[A-Ga-g]", re.sub(r'"[^"]*"', "", "".join(text.split("\n")[4:]))))
        assert len(part.flatten().getElementsByClass("Note")) == n_notes
