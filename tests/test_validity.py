"""Validity metrics: parsing, header fields, bar lengths, novelty, degenerate samples."""

import pytest
from toy_data import JIG, JIG_FULL_BARS, REEL, REEL_FULL_BARS

from musicscale import validity
from musicscale.validity import (
    NoveltyIndex,
    bar_duration_stats,
    header_fields_ok,
    measure,
    parse_abc,
    summarize,
    tune_body,
    validity_metrics,
    written_bars,
)

# Five bars: one too long (4.5 quarters), one too short in the middle (3 quarters).
BAD_BARS = "X:3\nM:4/4\nL:1/8\nK:D\nABcd efga|ABcd efgab|ABcd ef|ABcd efga|ABcd efga|]\n"


# --- parsing and headers -----------------------------------------------------------------------


def test_parse_abc_returns_score_or_error():
    assert parse_abc(REEL).score is not None and parse_abc(REEL).error is None
    bad = parse_abc("@@@###")
    assert bad.score is None and bad.error


@pytest.mark.parametrize(
    "key",
    [
        "G",
        "Dmix",
        "Ador",
        "Bm",
        "F#m",
        "Amaj",
        "Bb",
        "Ebmaj",
        "E dorian",
        "Emin",
        "D clef=bass",
        "none",
        "HP",
    ],
)
def test_header_accepts_valid_keys(key):
    assert header_fields_ok(f"X:1\nM:6/8\nL:1/8\nK:{key}\nabc|\n")["ok"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("K", "H"),
        ("K", "gm"),
        ("K", "Gx"),
        ("K", ""),
        ("M", "6/0"),
        ("M", "six"),
        ("L", "8"),
        ("L", "1/0"),
        ("X", "one"),
    ],
)
def test_header_rejects_malformed_fields(field, value):
    fields = {"X": "1", "M": "4/4", "L": "1/8", "K": "G", field: value}
    text = "".join(f"{k}:{v}\n" for k, v in fields.items()) + "abc|\n"
    got = header_fields_ok(text)
    assert not got[field] and not got["ok"]
    assert all(got[k] for k in "XMLK" if k != field)


@pytest.mark.parametrize("meter", ["6/8", "C", "C|", "4/4", "none", "3/4"])
def test_header_accepts_meters(meter):
    assert header_fields_ok(f"X:1\nM:{meter}\nL:1/8\nK:G\nabc|\n")["M"]


def test_header_missing_k_and_body_split():
    got = header_fields_ok("X:1\nM:4/4\nL:1/8\nGABc dedB|\n")
    assert got == {"X": True, "M": True, "L": True, "K": False, "ok": False}
    assert tune_body(REEL).startswith("|:GA|") and "K:" not in tune_body(REEL)


# --- bar lengths -------------------------------------------------------------------------------


@pytest.mark.parametrize("tune, full_bars", [(REEL, REEL_FULL_BARS), (JIG, JIG_FULL_BARS)])
def test_good_tunes_are_fully_valid(tune, full_bars):
    m = validity_metrics(tune)
    assert m["parses"] and m["headers_ok"] and m["parse_error"] is None and m["degenerate"] is None
    assert (m["bars_checked"], m["bars_correct"], m["bar_accuracy"]) == (full_bars, full_bars, 1.0)
    assert m["n_notes"] > 30


def test_wrong_bar_lengths_give_the_exact_share():
    assert [b.length for b in written_bars(BAD_BARS)] == [4.0, 4.5, 3.0, 4.0, 4.0]
    assert bar_duration_stats(BAD_BARS) == (5, 3)
    assert validity_metrics(BAD_BARS)["bar_accuracy"] == pytest.approx(0.6)
    # Three bars, one of them too long.
    assert bar_duration_stats("X:1\nM:4/4\nL:1/8\nK:D\nABcd efga|ABcd efga2|ABcd efga|]\n") == (3, 2)


def test_short_bars_allowed_only_at_boundaries_and_long_ones_never():
    pickup_and_end = "X:1\nM:3/4\nL:1/4\nK:C\nC|DEF|GAB|c2:|\n"
    assert bar_duration_stats(pickup_and_end) == (2, 2)
    long_last = "X:1\nM:3/4\nL:1/4\nK:C\nC|DEF|GAB|c4|]\n"
    assert bar_duration_stats(long_last) == (3, 2)


def test_unbarred_line_end_closes_a_full_bar_and_carries_a_partial_one():
    essen_style = "X:1\nM:2/4\nL:1/8\nK:G\nG2GB|A2A2|GFEF|G2D2\nG2GB|A2A2|GFEF|G4\n"
    assert bar_duration_stats(essen_style) == (8, 8)
    pickup_on_next_line = "X:1\nM:6/8\nL:1/8\nK:G\nd/c/|B2G GAG|A2B c2\nd/c/|B2G GAG|B3 G2:|\n"
    assert [b.length for b in written_bars(pickup_on_next_line)] == [0.5, 3.0, 3.0, 3.0, 2.5]
    assert bar_duration_stats(pickup_on_next_line) == (3, 3)


def test_inline_meter_change_and_tuplets():
    tune = "X:1\nM:4/4\nL:1/8\nK:D\n(3ABc d2 efga|ABcd efga|[M:3/4]ABcd ef|ABcd ef|ABcd ef|]\n"
    assert bar_duration_stats(tune) == (5, 5)


# --- novelty -----------------------------------------------------------------------------------


def test_novelty_copy_is_not_novel_and_new_tune_is():
    index = NoveltyIndex([REEL, JIG, BAD_BARS])
    assert len(index) > 100
    copy = REEL.replace("X:1", "X:7").replace("Test Reel", "Another title")  # same body
    assert index.overlap(copy) == 1.0 and index.is_novel(copy) is False
    new = "X:1\nM:3/4\nL:1/4\nK:C\nCEG|cBA|GFE|D3|EGc|edc|BAG|c3|]\n"
    assert index.overlap(new) == 0.0 and index.is_novel(new) is True
    half = REEL[: REEL.index("|:gf|")] + "|:CEG cBA GFE D3|EGc edc BAG c3|CEG cBA GFE D3|]\n"
    assert 0.0 < index.overlap(half) < 1.0
    assert index.overlap("X:1\nK:G\nabc\n") is None  # body shorter than 12 characters
    metrics = [validity_metrics(copy, index), validity_metrics(new, index)]
    assert [m["novel"] for m in metrics] == [False, True]
    summary = summarize(metrics)
    assert summary["share_novel"] == 0.5 and summary["mean_train_overlap"] == 0.5


# --- degenerate samples and summaries ----------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind",
    [
        ("", "empty"),
        ("X:1\nM:4/4\nL:1/8\nK:G\n", "empty"),
        ("@@@###", "unparsable"),
        ("X:1\nM:4/4\nL:1/8\nK:G\n[[[ ((( abc", "unparsable"),
    ],
)
def test_garbage_is_degenerate_and_never_raises(text, kind):
    m = validity_metrics(text)
    assert m["degenerate"] == kind
    assert m["bar_accuracy"] is None or 0.0 <= m["bar_accuracy"] <= 1.0


@pytest.mark.parametrize("text", [REEL, JIG, BAD_BARS, "", "@@@###", "X:1\nM:4/4\nL:1/8\nK:G\n"])
def test_metrics_from_measures_made_elsewhere_are_the_same(text):
    """The workers send back measure(text, parsed); the metrics built from it must not differ."""
    measures = measure(text, parse_abc(text))
    assert validity_metrics(text, measures=measures, finished=False) == validity_metrics(text, finished=False)
    assert validity_metrics(text, measures=measures) == validity_metrics(text)


def test_unfinished_sample_is_degenerate_even_if_it_parses():
    m = validity_metrics(REEL, finished=False)
    assert m["parses"] and m["degenerate"] == "unfinished"


def test_summarize_counts():
    metrics = [validity_metrics(t) for t in (REEL, JIG, BAD_BARS, "", "@@@###")]
    s = summarize(metrics)
    assert s["n"] == 5
    assert s["share_parses"] == pytest.approx(3 / 5)
    assert s["share_headers_ok"] == pytest.approx(3 / 5)
    assert s["n_with_bars"] == 3
    assert s["mean_bar_accuracy"] == pytest.approx((1.0 + 1.0 + 0.6) / 3)
    checked = REEL_FULL_BARS + JIG_FULL_BARS + 5
    assert s["pooled_bar_accuracy"] == pytest.approx((checked - 2) / checked)
    assert s["degenerate"] == {"empty": 1, "unfinished": 0, "unparsable": 1}
    assert s["share_novel"] is None
    assert summarize([])["share_parses"] is None


def test_a_tune_music21_loops_on_is_cut_off_not_hung(monkeypatch):
    """A garbled meter sampled from a model made music21 loop for minutes; it must cost one sample."""
    import time

    monkeypatch.setattr(validity, "PARSE_TIMEOUT", 1.0)
    text = 'X:1\nM:2fedd f2beg2c|F2:1/4\nK:C\n|:G g2EBAe fgde|B3Be|d2eggeA dG|AFBB|\n"D"ee E2DF F3c|"G"D6:|'
    start = time.process_time()
    metrics = validity.validity_metrics(text)
    # CPU time, as the limit counts it (a busy machine stretches wall time, not this): two parses of 1 s
    # each and a few re-firings at most, against minutes without a limit
    assert time.process_time() - start < 10
    assert metrics["parses"] is False and "TimeoutError" in metrics["parse_error"]
    assert metrics["degenerate"] == "unparsable"


# --- the time limit ---------------------------------------------------------------------------------------
# The handler raises wherever the main thread is when the signal is handled. Inside a ``__del__`` or a weakref
# callback Python prints the exception ("Exception ignored in ...") and drops it: a limit that fires once is
# then lost, and music21 loops on. These fakes make the first signal land exactly there, then loop in plain
# code (for at most ``HANG`` s of CPU time, so that a lost limit fails the test instead of hanging it).

LIMIT, HANG = 0.3, 30.0


def _spin(cpu_seconds: float) -> None:
    """Busy-wait in Python bytecode (where signal handlers run) for ``cpu_seconds`` of this process's CPU time."""
    import time

    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        pass


class _SwallowsInDel:
    def __del__(self):
        _spin(3 * LIMIT)  # the limit expires in here: its TimeoutError is printed and dropped


def _swallow_in_del() -> None:
    _SwallowsInDel()  # dropped at once: __del__ runs


def _swallow_in_weakref_callback() -> None:
    import weakref

    class Tracked:
        pass

    obj = Tracked()
    ref = weakref.ref(obj, lambda _: _spin(3 * LIMIT))  # noqa: F841 (the reference must outlive obj)
    del obj  # the callback runs, and the limit expires in it


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped first raise
@pytest.mark.parametrize("swallow", [_swallow_in_del, _swallow_in_weakref_callback], ids=["__del__", "weakref"])
def test_a_time_limit_swallowed_once_still_ends_the_parse(monkeypatch, swallow):
    import time

    def hangs(text, format):  # stands in for a music21 parse that never ends
        swallow()
        _spin(HANG)
        return "a score after a lost time limit"

    monkeypatch.setattr("music21.converter.parseData", hangs)
    start = time.process_time()
    result = parse_abc(REEL, timeout=LIMIT)
    spent = time.process_time() - start
    assert result.score is None and "TimeoutError" in result.error
    # in CPU time (what the limit counts): the first limit, then a few re-firings, far under a lost limit's HANG
    assert spent < 15 * LIMIT


def test_the_time_limit_is_disarmed_when_the_block_ends():
    import signal
    import time

    before = signal.getsignal(signal.SIGPROF)
    assert parse_abc(REEL, timeout=LIMIT).error is None
    _spin(4 * LIMIT)  # no late TimeoutError out here
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGPROF) is before
    assert time.process_time() > 0
