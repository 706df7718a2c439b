"""Markdown tables and glued text: numeric columns are right-aligned, and a missing value reads as a dash in a
table and as "n/a (why)" in text."""

from musicscale.tables import markdown_table, text_value


def test_numeric_columns_are_right_aligned_and_missing_values_read_na():
    table = markdown_table([{"name": "a", "n": 1234, "share": 0.5, "ci": "0.12 [0.10, 0.14]"},
                            {"name": "b", "n": None, "share": float("nan"), "ci": "—"}],
                           [("name", "name", None), ("n", "N", ","), ("share", "share", ".0%"), ("ci", "α", None)])
    lines = table.data.splitlines()
    assert lines[1] == "|---|---:|---:|---|"  # a value given as text (with its interval) stays left
    assert "| a | 1,234 | 50% | 0.12 [0.10, 0.14] |" in lines and "nan" not in table.data
    assert text_value(float("nan"), ".1%", "no bar could be checked") == "n/a (no bar could be checked)"
    assert text_value(None) == "n/a (not measured)" and text_value(0.0941, ".1%") == "9.4%"
