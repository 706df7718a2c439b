"""Sheet music, recordings and the gallery's HTML of a tune, made in this process."""

import io

import numpy as np
import pytest
from toy_data import REEL, SCALE

from musicscale import render
from musicscale.render import gallery_html, render_audio, render_tune, score_to_midi
from musicscale.validity import measure, parse_abc, validity_metrics


def audio_info(data: bytes) -> tuple[int, float, np.ndarray]:
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data))
    return rate, len(samples) / rate, samples


# --- sheet music -------------------------------------------------------------------------------


def test_sheet_music_of_a_good_tune_is_deterministic():
    svg = render.abc_to_svg(REEL)
    assert "<svg" in svg and "</svg>" in svg
    assert render.abc_to_svg(REEL) == svg  # fixed element ids: notebooks stay byte-identical


def test_unparsable_tune_has_no_sheet_music():
    with pytest.raises(ValueError, match="cannot parse"):
        render.abc_to_svg("@@@###")
    assert render_tune("@@@###") == render.Rendering(None, None, None)


def test_one_parse_gives_the_same_sheet_music_and_recording_as_separate_parses():
    """render_tune shares one parse between the recording and the engraving; neither may change the other."""
    parsed = parse_abc(REEL)
    measure(REEL, parsed)  # as in a worker: the validity metrics use the score first
    first = render_tune(REEL, parsed)
    assert first.svg == render.abc_to_svg(REEL)
    assert (first.audio, first.midi) == render_audio(REEL)
    assert render_tune(REEL, parsed) == first  # the shared score is left as it was parsed
    assert render_tune(REEL, parsed, engrave=False) == render.Rendering(None, first.audio, first.midi)


# --- audio -------------------------------------------------------------------------------------

def test_render_audio_is_opus_of_the_right_length_and_deterministic():
    audio, midi_bytes = render_audio(SCALE, bpm=120)
    assert audio[:4] == b"OggS" and b"OpusHead" in audio[:100]
    assert midi_bytes[:4] == b"MThd"
    rate, seconds, samples = audio_info(audio)
    assert rate == render.AUDIO_RATE
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
    assert {m.program for m in messages if m.type == "program_change"} == {render.GM_PROGRAM}
    assert len(score.flatten().notes) == n_before
    assert 16.0 <= midi_file.length <= 16.5  # 32 quarters at 120 a minute (music21 ends the track a beat later)


def test_render_audio_cuts_at_max_seconds():
    seconds = audio_info(render_audio(SCALE, max_seconds=2.0)[0])[1]
    assert seconds == pytest.approx(2.0 + 0.5, abs=0.1)


@pytest.mark.parametrize("text", ["", "@@@###", "X:1\nM:4/4\nL:1/8\nK:G\n"])
def test_render_audio_of_nothing_is_none(text):
    assert render_audio(text) is None


def test_soundfont_ships_with_pretty_midi():
    assert render.soundfont_path().stat().st_size > 1_000_000


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
