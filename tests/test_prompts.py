"""Prompts: the dict form and its refusals (each naming the prompt and why), the checks against a dataset, the
default prompts made from the data, and whether a sample obeys its prompt, on hand-written ABC."""

import pytest
from toy_data import JIG, TUNES

from musicscale import prompts
from musicscale.prompts import Prompt
from musicscale.stages import generate

VOCAB = set("X:1\nMLKQ/0123456789 ABCDEFGabcdefg|:[]#=^_,'()-<>zm")
JIG_PROMPT = {"M": "6/8", "L": "1/8", "K": "D"}


def resolve(given, *, vocabulary=VOCAB, context_length=64, train=TUNES, val=()):
    return prompts.resolve(given, "toy", vocabulary=vocabulary, context_length=context_length, train=train, val=val)


# --- the dict form --------------------------------------------------------------------------------------


def test_a_prompt_is_written_as_header_lines_after_x_then_its_bars():
    p = Prompt.from_dict({"K": "G", "bars": "|:GABc dedB|", "M": "4/4"})
    assert p.text == "X:1\nM:4/4\nK:G\n|:GABc dedB|"  # the fields in ABC order, K last, then the music
    assert p.label == "M:4/4 K:G |:GABc dedB|"
    assert Prompt.from_dict(p.to_dict()) == p


@pytest.mark.parametrize("value, why", [
    ({"M": "6/8", "T": "My tune"}, r"prompts\[0\] \{'M': '6/8', 'T': 'My tune'\}: unknown field\(s\) \['T'\]"),
    ({"meter": "6/8"}, r"unknown field\(s\) \['meter'\]; a prompt takes the header fields"),
    ({"M": "7/0", "K": "D"}, r"music21 cannot read the meter M:7/0"),
    ({"M": "six-eight"}, r"music21 cannot read the meter M:six-eight"),
    ({"M": "none", "K": "D"}, r"M:none is no meter music21 can check bars against"),
    ({"M": "3+2/8"}, r"music21 reads the meter M:3\+2/8 as 32/8"),
    ({"K": "zz"}, r"K:zz is not an ABC key"),
    ({"L": "eighth", "K": "D"}, r"L:eighth is not a unit note length"),
    ({"M": "6/8", "bars": "|:dfa afd|"}, r"a prompt with bars needs K"),
    ({"K": "D", "bars": "| | |"}, r"bars hold no note"),
    ({"M": ""}, r"M must be a non-empty string"),
    ({"M": 6}, r"M must be a non-empty string"),
    ({}, r"a prompt is a dict of header fields"),
    ("M:6/8", r"prompts: every entry must be a dict, got 'M:6/8'"),
])
def test_a_bad_prompt_is_refused_by_the_stage_parameters_naming_it_and_why(value, why):
    with pytest.raises(ValueError, match=why):
        generate.Params(prompts=[value])


def test_prompts_parameter_accepts_json_and_none_and_an_empty_list():
    params = generate.Params(prompts='[{"M": "6/8", "K": "D"}]')  # papermill's -p passes text
    assert params.prompts == [{"M": "6/8", "K": "D"}]
    assert generate.Params().prompts is None and generate.Params(prompts=[]).prompts == []
    with pytest.raises(ValueError, match="prompts must be a list"):
        generate.Params(prompts={"M": "6/8"})
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        generate.Params(temperatures=[0.8, 0])
    with pytest.raises(ValueError, match="prompt_samples must be >= 1"):
        generate.Params(prompt_samples=0)


# --- against a dataset ----------------------------------------------------------------------------------


def test_a_prompt_longer_than_the_context_is_refused():
    long = {"K": "D", "bars": "|:dfa afd|ecA ABc|dfa afd|e3 d2:|"}  # 8 + 33 characters
    assert resolve([long], context_length=42)
    with pytest.raises(ValueError, match=r"prompts\[1\] .*: it is 42 tokens \(with the tune separator\), longer than "
                                         r"the context of 'toy''s models \(41 tokens\)"):
        resolve([JIG_PROMPT, long], context_length=41)


def test_characters_outside_the_vocabulary_are_named():
    with pytest.raises(ValueError, match=r"prompts\[1\] .*: characters outside the vocabulary of 'toy': '~', 'é'"):
        resolve([JIG_PROMPT, {"K": "D", "bars": "|:d~fé afd|"}])


def test_a_field_the_training_tunes_never_use_is_refused():
    with pytest.raises(ValueError, match=r"the training tunes of 'toy' have no R: field \(the corpus cleaning keeps "
                                         r"only the header fields X, M, L, K, Q, P, V\)"):
        resolve([{"M": "6/8", "R": "jig", "K": "D"}], vocabulary=VOCAB | set("Rjig"))
    with pytest.raises(ValueError, match=r"have no Q: field, so its models never saw one"):
        resolve([{"Q": "1/4=120", "K": "D"}])
    assert resolve([{"R": "jig", "K": "D"}], vocabulary=VOCAB | set("Rjig"), train=[JIG])  # a corpus keeping R: may


def test_default_prompts_come_from_the_training_headers_and_a_validation_tune():
    train = [TUNES[1]] * 3 + [TUNES[0]] * 2 + [TUNES[2], "X:1\nM:none\nL:1/8\nK:G\nGABc|"] * 4
    val = ["X:1\nK:G\nGABc|", TUNES[2], TUNES[0]]  # the first has no meter, so no bars to check
    made = resolve(None, train=train, val=val, context_length=100)
    assert [p.label for p in made] == ["M:3/4 L:1/8 K:Em", "M:6/8 L:1/8 K:D", "M:3/4 L:1/8 K:Em |:E2 G2 B2|e4 d2|"]
    assert made[0].source == "the most common header of the training tunes (4 of 13)"  # M:none is skipped
    assert made[2].source == "the header and opening 2 bars of validation tune 2"
    # a small context keeps only what fits in half of it: one bar, then no bars
    assert resolve(None, train=train, val=val, context_length=70)[2].bars == "|:E2 G2 B2|"
    assert [p.bars for p in resolve(None, train=train, val=val, context_length=44)] == ["", ""]
    assert resolve(None, train=["X:1\nK:G\nGABc|"] * 2, val=[]) == [Prompt((("K", "G"),), "", made[0].source
                                                                           .replace("4 of 13", "2 of 2"))]


def test_opening_bars_stop_at_the_nth_bar_with_notes():
    assert prompts.opening_bars("|:GA|\"G\"BGdG BGdG|\"Am\"cAeA|", 2) == "|:GA|\"G\"BGdG BGdG|"
    assert prompts.opening_bars("A|FAA dAA|BAB dAG|\nFAA dfe|", 3) == "A|FAA dAA|BAB dAG|"
    assert prompts.opening_bars("FAA dAA|BAB", 2) == ""  # the second bar is not closed on the line


# --- obeying ------------------------------------------------------------------------------------------------

REEL = "X:1\nM:4/4\nL:1/8\nK:G\n|:GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA:|\n"


def obey(text, prompt):
    return prompts.obedience(text, Prompt.from_dict(prompt))


def test_a_tune_obeys_the_header_it_was_written_in():
    o = obey(JIG, JIG_PROMPT)
    assert o["obeys"] and o["parses"] and o["meter_ok"] and o["key_ok"] and o["fields_ok"]
    assert (o["meter"], o["key"]) == ("6/8", "D major")
    assert o["bars_checked"] == o["bars_correct"] > 0
    assert obey(REEL, {"M": "C", "K": "G", "bars": "|:GABc dedB|"})["obeys"]  # C is 4/4 as music21 reads it
    assert obey(REEL, {"K": "G"})["meter_ok"] is None and obey(REEL, {"K": "G"})["obeys"]  # no meter asked


def test_another_meter_key_or_field_does_not_obey():
    o = obey(JIG, {"M": "4/4", "K": "D"})
    assert not o["obeys"] and o["meter_ok"] is False and o["key_ok"] is True
    assert o["bars_correct"] < o["bars_checked"]  # bars of 6/8 against a 4/4 bar
    o = obey(JIG, {"M": "6/8", "K": "Em"})
    assert not o["obeys"] and o["meter_ok"] and o["key_ok"] is False
    assert not obey(JIG, {"M": "6/8", "K": "Dm"})["key_ok"]  # one flat, not two sharps
    assert not obey(JIG, {"M": "6/8", "L": "1/16", "K": "D"})["fields_ok"]


def test_bars_off_the_asked_meter_do_not_obey():
    wrong_bar = REEL.replace("dedB dedB|", "dedB ded|")
    o = obey(wrong_bar, {"M": "4/4", "L": "1/8", "K": "G"})
    assert o["meter_ok"] and o["bars_checked"] == o["bars_correct"] + 1 and not o["obeys"]
    # a change of meter in the body: the first time signature is the asked one, the bars after it are not
    changed = "X:1\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|[M:3/4]c2e cBd|c2A2 A2|B2A2 G2|]\n"
    o = obey(changed, {"M": "4/4", "K": "G"})
    assert o["meter_ok"] and not o["obeys"] and o["bars_correct"] == 2


def test_a_sample_without_bars_does_not_obey_a_meter():
    o = obey("X:1\nM:6/8\nL:1/8\nK:D\n", JIG_PROMPT)  # no music at all
    assert not o["obeys"] and o["bars_checked"] == 0


def test_obedience_shares():
    results = [obey(JIG, JIG_PROMPT), obey(JIG, {"M": "4/4", "K": "D"}), obey(REEL, {"K": "G"})]
    s = prompts.summarize(results)
    assert s["n_prompted"] == 3 and s["share_obeys"] == pytest.approx(2 / 3)
    assert s["share_meter_ok"] == pytest.approx(0.5) and s["share_key_ok"] == pytest.approx(1.0)
    assert prompts.summarize([])["share_obeys"] is None


def test_the_temperature_figure_draws_with_and_without_a_sweep(tmp_path):
    from musicscale import plots

    point = {"share_parses": 0.5, "pooled_bar_accuracy": None, "share_headers_ok": 1.0, "share_novel": 0.8,
             "share_parses_novel": 0.4}
    swept = [{"dataset": "toy", "arch": a, "size": "tiny", "settings": {"temperature": 1.0},
              "temperature_sweep": [{**point, "temperature": t} for t in (0.6, 1.0, 1.4)]} for a in ("lstm", "gru")]
    for name, summaries in (("swept", swept), ("none", [{"dataset": "toy", "arch": "lstm"}])):
        plots.save(plots.temperature_sweep(summaries), tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000
