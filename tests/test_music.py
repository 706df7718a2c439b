import io

import numpy as np
import pytest

from musicscale import music
from musicscale.music import (
    NoveltyIndex,
    bar_duration_stats,
    gallery_html,
    header_fields_ok,
    parse_abc,
    render_audio,
    render_svg,
    score_to_midi,
    summarize,
    tune_body,
    validity_metrics,
    written_bars,
)

# A reel with a pickup, repeats, first/second endings, a triplet, a broken rhythm and chord symbols.
REEL = """X:1
T:Test Reel
R:reel
M:4/4
L:1/8
K:G
|:GA|"G"BGdG BGdG|"Am"cAeA cAeA|BGdG (3Bcd ef|1 gedB G2:|2 gedB G2||
|:gf|edeg fdfg|e>deg a2ga|bgaf gedB|[1 cAFA G2:|[2 cAFA G4|]
"""
REEL_FULL_BARS = 7  # the bars that are not pickups or partial bars at repeats

# A jig with grace notes and a chord.
JIG = """X:2
T:Test Jig
R:jig
M:6/8
L:1/8
K:D
A|FAA dAA|BAB dAG|FAA {g}dfe|dBA BAG:|
|:f|afd dfa|bgb {a}g3|[df]ed cBA|1 dfe d2:|2 dfe d3|]
"""
JIG_FULL_BARS = 8

# Five bars: one too long (4.5 quarters), one too short in the middle (3 quarters).
BAD_BARS = "X:3\nM:4/4\nL:1/8\nK:D\nABcd efga|ABcd efgab|ABcd ef|ABcd efga|ABcd efga|]\n"


def audio_info(data: bytes) -> tuple[int, float, np.ndarray]:
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data))
    return rate, len(samples) / rate, samples


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


# --- rendering ---------------------------------------------------------------------------------


def test_render_svg_good_tune_is_deterministic():
    svg = render_svg(REEL)
    assert svg is not None and "<svg" in svg and "</svg>" in svg
    assert render_svg(REEL) == svg  # fixed element ids: notebooks stay byte-identical


def test_render_svg_unparsable_returns_none():
    assert render_svg("@@@###") is None


def test_render_svg_survives_a_crashing_worker(monkeypatch):
    monkeypatch.setenv("MUSICSCALE_RENDER_TEST_HOOK", "abort")
    assert render_svg(REEL) is None


def test_render_svg_times_out_on_a_hanging_worker(monkeypatch):
    monkeypatch.setenv("MUSICSCALE_RENDER_TEST_HOOK", "hang")
    assert render_svg(REEL, timeout=1.0) is None


# --- audio -------------------------------------------------------------------------------------

SCALE = "X:1\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|]\n"  # 8 quarter notes


def test_render_audio_is_opus_of_the_right_length_and_deterministic():
    audio, midi_bytes = render_audio(SCALE, bpm=120)
    assert audio[:4] == b"OggS" and b"OpusHead" in audio[:100]
    assert midi_bytes[:4] == b"MThd"
    rate, seconds, samples = audio_info(audio)
    assert rate == music.AUDIO_RATE
    assert seconds == pytest.approx(8 * 0.5 + 0.5, abs=0.1)  # the notes (last note-off at 4 s) and the tail
    assert np.abs(samples).max() > 0.3
    assert render_audio(SCALE, bpm=120) == (audio, midi_bytes)  # same tune, same bytes
    assert audio_info(render_audio(SCALE, bpm=60)[0])[1] == pytest.approx(8 + 0.5, abs=0.1)


def test_midi_plays_repeats_on_the_fiddle_and_leaves_the_score_alone():
    import mido

    repeated = "X:1\nM:4/4\nL:1/4\nK:C\n|:CDEF|GABc|cBAG|FEDC:|\n"  # 16 quarters, played twice
    score = parse_abc(repeated).score
    n_before = len(score.flatten().notes)
    midi_file = mido.MidiFile(file=io.BytesIO(score_to_midi(score)))
    messages = [m for track in midi_file.tracks for m in track]
    assert sum(m.type == "note_on" and m.velocity > 0 for m in messages) == 32
    assert {m.program for m in messages if m.type == "program_change"} == {music.GM_PROGRAM}
    assert len(score.flatten().notes) == n_before
    assert 16.0 <= midi_file.length <= 16.5  # 32 quarters at 120 a minute (music21 ends the track a beat later)


def test_render_audio_cuts_at_max_seconds():
    seconds = audio_info(render_audio(SCALE, max_seconds=2.0)[0])[1]
    assert seconds == pytest.approx(2.0 + 0.5, abs=0.1)


@pytest.mark.parametrize("text", ["", "@@@###", "X:1\nM:4/4\nL:1/8\nK:G\n"])
def test_render_audio_of_nothing_is_none(text):
    assert render_audio(text) is None


def test_soundfont_ships_with_pretty_midi():
    assert music.soundfont_path().stat().st_size > 1_000_000


# --- gallery -----------------------------------------------------------------------------------


def test_gallery_html(tmp_path):
    audio, midi_bytes = render_audio(SCALE)
    (tmp_path / "a.ogg").write_bytes(audio)
    items = [
        {
            "title": "Tune <1>",
            "note": "1 of 4 samples qualified",
            "svg": "<svg id='x'></svg>",
            "audio": audio,
            "midi": midi_bytes,
            "abc": "X:1\nK:G\nA<B|\n",
            "metrics": validity_metrics(REEL),
        },
        {"title": "Tune 2", "svg": None, "audio_path": tmp_path / "a.ogg", "abc": "@@@"},
    ]
    page = gallery_html(items)
    assert page == gallery_html(items)
    assert page.count("class='musicscale-tune'") == 2
    assert "<svg id='x'></svg>" in page and "could not render" in page
    assert page.count("data:audio/ogg;base64,") == 2
    assert page.count("download='tune-1.mid' href='data:audio/midi;base64,") == 1
    assert "A&lt;B" in page and "Tune &lt;1&gt;" in page and "A<B" not in page
    assert "bar accuracy: 1.00" in page and "1 of 4 samples qualified" in page


def test_a_tune_music21_loops_on_is_cut_off_not_hung(monkeypatch):
    """A garbled meter sampled from a model made music21 loop for minutes; it must cost one sample."""
    import time

    monkeypatch.setattr(music, "PARSE_TIMEOUT", 1.0)
    text = 'X:1\nM:2fedd f2beg2c|F2:1/4\nK:C\n|:G g2EBAe fgde|B3Be|d2eggeA dG|AFBB|\n"D"ee E2DF F3c|"G"D6:|'
    start = time.perf_counter()
    metrics = music.validity_metrics(text)
    assert time.perf_counter() - start < 5
    assert metrics["parses"] is False and "TimeoutError" in metrics["parse_error"]
    assert metrics["degenerate"] == "unparsable"
