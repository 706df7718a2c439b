"""Real ABC corpora: files split into tunes, normalised with every dropped tune counted by reason, and split by tune
into disjoint, deterministic train/validation/test sets."""

import pytest

from musicscale.corpus import (
    load_abc_corpus,
    normalize_tune,
    read_split,
    split_dataset,
    split_tunes_text,
    write_split,
)

TWO_TUNES = """% file header comment
X: 17
T:The First Tune
C:Someone
M:6/8
L:1/8
R:jig
K: G
|:GAB d2B|c2e dBG % a trailing comment
w:some lyrics here

%%MIDI program 1
T:Second part
P:B
ABc d3:|

X:18
T:Second Tune
M:4/4
L:1/8
K:D
|:DFAd fdAF|GBdg fdAF:|
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_split_tunes_text_splits_at_x_lines():
    parts = split_tunes_text(TWO_TUNES)
    assert len(parts) == 2
    assert parts[0].startswith("X: 17") and parts[1].startswith("X:18")
    assert "file header" not in parts[0]
    assert split_tunes_text("no tunes here\nK:G\nABC") == []


def test_normalize_filters_fields_and_comments():
    tune, reason = normalize_tune(split_tunes_text(TWO_TUNES)[0])
    assert reason is None
    assert tune == "X:1\nM:6/8\nL:1/8\nK:G\n|:GAB d2B|c2e dBG\nP:B\nABc d3:|"
    kept_titles, _ = normalize_tune(split_tunes_text(TWO_TUNES)[0], keep_fields=("X", "K", "T"))
    assert kept_titles.split("\n")[:3] == ["X:1", "T:The First Tune", "K:G"]
    assert "T:Second part" in kept_titles and "M:6/8" not in kept_titles


def test_normalize_drop_reasons():
    assert normalize_tune("X:1\nT:no key\nM:6/8\nGAB d2B|") == (None, "no_key")
    assert normalize_tune("X:1\nM:6/8\nK:G\n% only a comment\nw:la la") == (None, "no_body")
    assert normalize_tune('X:1\nK:G\nGAB "D d2B|') == (None, "truncated")
    assert normalize_tune("X:1\nK:G\nGAB [dg") == (None, "truncated")
    tune, reason = normalize_tune("X:1\nK:G\n|:GAB [dg]2 |1 A2:|2 B2|]")
    assert reason is None and tune.endswith("|1 A2:|2 B2|]")


def test_load_counts_files_tunes_and_drops(tmp_path):
    write(tmp_path, "a.abc", TWO_TUNES)
    # b.abc repeats tune 18 with other headers, spacing and bar lines, and adds a tune without K:
    write(tmp_path, "b.abc", "X:3\nT:Copy\nM:4/4\nK:D\n|: DFAd fdAF | GBdg fdAF :|\n\nX:4\nT:No key\nABC|\n")
    write(tmp_path, "c.abc", "% just a comment, no tunes\n")
    (tmp_path / "d.abc").write_bytes(b"\x80\x81\xfe\x00X:1\nK:G\nGAB|\n")  # not text
    result = load_abc_corpus(str(tmp_path / "*.abc"))
    r = result.report
    assert r["files_read"] == 3 and r["tunes_found"] == 4
    assert r["dropped"] == {"undecodable": 1, "no_tunes_in_file": 1, "no_key": 1}
    assert r["duplicates_removed"] == 1 and r["kept"] == 2 == len(result.tunes)
    assert r["characters"] == sum(map(len, result.tunes))
    assert r["distinct_characters"] == len(set("".join(result.tunes)))
    assert result.tunes[1].startswith("X:1\nM:4/4\nL:1/8\nK:D")  # first occurrence (a.abc) kept
    # a list of paths and a folder give the same result
    same = load_abc_corpus([str(tmp_path / "b.abc"), str(tmp_path / "a.abc")])
    assert same.tunes == result.tunes
    assert load_abc_corpus(str(tmp_path)).tunes == result.tunes


def test_missing_sources_raise(tmp_path):
    missing = str(tmp_path / "nope.abc")
    with pytest.raises(FileNotFoundError, match="nope.abc"):
        load_abc_corpus(missing)
    with pytest.raises(FileNotFoundError, match=r"nothing\*\.abc"):
        load_abc_corpus(str(tmp_path / "nothing*.abc"))


def test_split_dataset_is_deterministic_disjoint_and_complete():
    tunes = [f"X:1\nK:G\nA{i}" for i in range(103)]
    a = split_dataset(tunes, seed=0)
    assert a == split_dataset(tunes, seed=0)
    assert a != split_dataset(tunes, seed=1)
    assert [len(a[k]) for k in ("train", "val", "test")] == [83, 10, 10]
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(tunes)
    tiny = split_dataset(tunes[:3], seed=0)
    assert all(len(tiny[k]) == 1 for k in ("train", "val", "test"))
    with pytest.raises(ValueError, match="at least 3"):
        split_dataset(tunes[:2], seed=0)
    with pytest.raises(ValueError, match="fractions"):
        split_dataset(tunes, seed=0, fractions=(0.5, 0.5, 0.0))


def test_write_and_read_split_round_trip(tmp_path):
    tunes = ["X:1\nK:G\nGAB|", "X:1\nK:D\nDFA|\nAFD|"]
    path = write_split(tmp_path / "data" / "train.txt", tunes)
    assert path.read_text() == "X:1\nK:G\nGAB|\n\nX:1\nK:D\nDFA|\nAFD|\n"
    assert read_split(path) == tunes
    assert read_split(write_split(tmp_path / "empty.txt", [])) == []
    with pytest.raises(ValueError, match="blank line"):
        write_split(tmp_path / "bad.txt", ["X:1\n\nK:G"])


def test_music21_corpus_loads_with_plausible_counts():
    pytest.importorskip("music21")
    result = load_abc_corpus()
    r = result.report
    assert r["source"].startswith("music21")
    assert r["files_read"] > 1000 and r["tunes_found"] > 12000
    assert r["kept"] > 8000 and r["characters"] > 1_000_000 and r["duplicates_removed"] > 0
    assert r["kept"] + r["duplicates_removed"] + sum(r["dropped"].values()) == r["tunes_found"]
    assert all(t.startswith("X:1\n") and "\nK:" in t and "\n\n" not in t for t in result.tunes)
    assert not any(line.startswith(("T:", "N:", "%")) for t in result.tunes for line in t.split("\n"))
