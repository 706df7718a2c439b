"""Ranking samples: a complete tune of realistic length always beats a fragment or an unfinished tune, the closest
sample is shown when none qualifies, and the length rule is the lower quartile of real tunes."""

from musicscale.ranking import best_sample, qualifies, rank_samples, realistic_bars


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
