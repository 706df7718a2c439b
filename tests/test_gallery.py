"""Choosing the gallery's samples, and the report's tables and glued text."""

from musicscale.stages.generate import best_sample, qualifies, rank_samples, realistic_bars
from musicscale.tables import markdown_table, text_value


def sample(text: str, *, finished=True, parses=True, checked=0, correct=0, headers=True, novel=True) -> dict:
    return {"text": text, "finished": finished,
            "metrics": {"parses": parses, "bars_checked": checked, "bars_correct": correct,
                        "bar_accuracy": correct / checked if checked else None, "headers_ok": headers,
                        "novel": novel}}


def test_short_fragments_and_unfinished_tunes_never_beat_a_complete_tune():
    fragment = sample("two perfect bars", checked=2, correct=2)
    unfinished = sample("long, cut off", finished=False, checked=20, correct=20)
    whole = sample("a whole tune", checked=10, correct=8)
    better = sample("a better whole tune", checked=9, correct=9)
    ranked, n_ok = rank_samples([fragment, unfinished, whole, better], min_bars=8)
    assert [s["text"] for s in ranked[:2]] == ["a better whole tune", "a whole tune"] and n_ok == 2
    assert not qualifies(fragment, 8) and not qualifies(unfinished, 8)


def test_when_none_qualifies_the_closest_is_shown():
    empty = sample("X:1\nK:G\n", checked=0)
    short = sample("four bars", checked=4, correct=4)
    unparsable = sample("@@@", parses=False)
    ranked, n_ok = rank_samples([empty, unparsable, short], min_bars=8)
    assert n_ok == 0 and ranked[0] is short and best_sample([empty, short], 8) is short


def test_realistic_length_is_the_lower_quartile_of_real_tunes():
    bar = "ABcd efga|"
    tunes = [f"X:1\nM:4/4\nL:1/8\nK:D\n|{bar * n}]\n" for n in (4, 8, 12, 16)]
    assert realistic_bars(tunes) in (4, 8)  # the first and last bars are boundary bars, checked when full
    assert realistic_bars([]) == 1


def test_numeric_columns_are_right_aligned_and_missing_values_read_na():
    table = markdown_table([{"name": "a", "n": 1234, "share": 0.5, "ci": "0.12 [0.10, 0.14]"},
                            {"name": "b", "n": None, "share": float("nan"), "ci": "—"}],
                           [("name", "name", None), ("n", "N", ","), ("share", "share", ".0%"), ("ci", "α", None)])
    lines = table.data.splitlines()
    assert lines[1] == "|---|---:|---:|---:|"
    assert "| a | 1,234 | 50% | 0.12 [0.10, 0.14] |" in lines and "nan" not in table.data
    assert text_value(float("nan"), ".1%", "no bar could be checked") == "n/a (no bar could be checked)"
    assert text_value(None) == "n/a (not measured)" and text_value(0.0941, ".1%") == "9.4%"


def test_sheet_music_is_left_out_least_important_first_to_fit_the_page():
    from musicscale.render import gallery_html
    from musicscale.stages.generate import _fit_budget

    items = [{"title": f"t{i}", "svg": "<svg>" + "x" * 1000 + "</svg>", "abc": "X:1", "priority": p}
             for i, p in enumerate((0, 1, 2, 1, 2))]
    full = len(gallery_html(items))
    _fit_budget(items, full - 1500)  # two scores too many
    assert [bool(it["svg"]) for it in items] == [True, True, False, True, False]
    assert len(gallery_html(items)) <= full - 1500 and "left out to keep this page under 2 MB" in gallery_html(items)
