"""The character tokenizer: exact round trips, the vocabulary and its unknown-character rule, the array dtype, the
unigram entropy."""

import numpy as np
import pytest
from toy_data import TUNES

from musicscale.tokenizer import EOT, UNK, CharTokenizer, unigram_entropy


def test_round_trip_is_exact():
    tok = CharTokenizer.from_texts(TUNES)
    for tune in TUNES:
        assert tok.decode(tok.encode(tune)) == tune
    stream = tok.encode_tunes(TUNES)
    assert stream.dtype == np.uint8
    assert stream[0] == tok.eot_id and stream[-1] == tok.eot_id
    assert len(stream) == sum(len(t) + 1 for t in TUNES) + 1
    assert tok.decode_tunes(stream) == TUNES


def test_vocabulary_and_unknown_rule():
    tok = CharTokenizer.from_texts(["abca"])
    assert tok.itos == [EOT, UNK, "a", "b", "c"]
    assert tok.encode("abz") == [2, 3, tok.unk_id]
    assert tok.unknown_characters(["zzq", "a"]) == {"z": 2, "q": 1}
    assert CharTokenizer.from_dict(tok.to_dict()).itos == tok.itos
    with pytest.raises(ValueError, match="must start"):
        CharTokenizer(["a", "b"])


def test_large_vocab_uses_uint16():
    tok = CharTokenizer.from_texts(["".join(chr(0x100 + i) for i in range(300))])
    assert tok.encode_tunes(["\u0100"]).dtype == np.uint16


def test_unigram_entropy():
    assert unigram_entropy(np.array([0, 1, 0, 1]), 4) == pytest.approx(np.log(2))
    assert unigram_entropy(np.array([3, 3, 3]), 4) == pytest.approx(0.0)
