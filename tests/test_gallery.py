"""The report's tables and glued text, and the gallery's page budget."""

from musicscale.tables import markdown_table, text_value


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
