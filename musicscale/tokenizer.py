"""Character-level tokenization: a vocabulary built from the training split, encode/decode, split arrays.

Id 0 is the end-of-tune separator (``EOT``) and id 1 stands for characters never seen in training
(``UNK``); the rest are the training characters in sorted order. A split is encoded as one stream
``EOT tune1 EOT tune2 EOT ...``, so every character of every tune, and each tune's closing ``EOT``,
is a prediction target (the first ``EOT`` only gives the first tune a context).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

EOT = "<eot>"
UNK = "<unk>"


@dataclass
class CharTokenizer:
    """A character vocabulary: ``itos[i]`` is the symbol with id ``i``."""

    itos: list[str]
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.itos[:2] != [EOT, UNK]:
            raise ValueError(f"vocabulary must start with {EOT!r}, {UNK!r}; got {self.itos[:2]!r}")
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        # code point -> id lookup for vectorized encoding (the characters are sorted, ids start at 2)
        self._codes = np.array([ord(c) for c in self.itos[2:]], dtype=np.int64)
        self._ids = np.arange(2, self.vocab_size, dtype=np.int64)
        order = np.argsort(self._codes)
        self._codes, self._ids = self._codes[order], self._ids[order]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """Build the vocabulary from the characters of ``texts`` (the training split)."""
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        return cls([EOT, UNK, *sorted(chars)])

    @property
    def eot_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def dtype(self) -> type:
        """The smallest unsigned integer type that holds every id."""
        return np.uint8 if self.vocab_size <= 256 else np.uint16

    def encode_array(self, text: str) -> np.ndarray:
        """Ids of the characters of ``text`` as an int64 array; unseen characters become ``UNK``."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        if len(self._codes) == 0:
            return np.ones(len(codes), dtype=np.int64)
        pos = np.searchsorted(self._codes, codes).clip(max=len(self._codes) - 1)
        return np.where(self._codes[pos] == codes, self._ids[pos], 1)

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text``; unseen characters become ``UNK``."""
        return self.encode_array(text).tolist()

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; ``EOT`` becomes a blank line between tunes and ``UNK`` becomes U+FFFD."""
        out = []
        for i in ids:
            i = int(i)
            out.append("\n\n" if i == 0 else "\ufffd" if i == 1 else self.itos[i])
        return "".join(out)

    def unknown_characters(self, texts: Iterable[str]) -> Counter[str]:
        """Counts of the characters of ``texts`` that are outside the vocabulary."""
        unseen: Counter[str] = Counter()
        for text in texts:
            for ch in set(text).difference(self.stoi):
                unseen[ch] += text.count(ch)
        return unseen

    def encode_tunes(self, tunes: Sequence[str]) -> np.ndarray:
        """Encode tunes as one stream ``EOT t1 EOT t2 ... EOT`` in the tokenizer's dtype."""
        eot = np.zeros(1, dtype=np.int64)
        parts = [eot]
        for tune in tunes:
            parts += [self.encode_array(tune), eot]
        return np.concatenate(parts).astype(self.dtype)

    def decode_tunes(self, stream: np.ndarray) -> list[str]:
        """Inverse of :meth:`encode_tunes` (exact when the tunes had no unseen characters)."""
        tunes, current = [], []
        for i in np.asarray(stream).tolist()[1:]:
            if i == 0:
                tunes.append("".join(current))
                current = []
            else:
                current.append("\ufffd" if i == 1 else self.itos[i])
        return tunes

    def to_dict(self) -> dict:
        return {"itos": self.itos}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        return cls(list(d["itos"]))


def unigram_entropy(stream: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats per token) of the empirical token distribution of ``stream``: the loss of the
    best model that ignores context, so a trained model must beat it."""
    counts = np.bincount(np.asarray(stream, dtype=np.int64), minlength=vocab_size).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
