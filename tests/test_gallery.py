"""The gallery's page budget: sheet music is left out least important first until the page fits, and each item
that loses its score says so."""

from musicscale.gallery import _fit_budget
from musicscale.render import gallery_html


def test_sheet_music_is_left_out_least_important_first_to_fit_the_page():
    items = [{"title": f"t{i}", "svg": "<svg>" + "x" * 1000 + "</svg>", "abc": "X:1", "priority": p}
             for i, p in enumerate((0, 1, 2, 1, 2))]
    full = len(gallery_html(items))
    _fit_budget(items, full - 1500)  # two scores too many
    assert [bool(it["svg"]) for it in items] == [True, True, False, True, False]
    assert len(gallery_html(items)) <= full - 1500 and "left out to keep this page under 2 MB" in gallery_html(items)
