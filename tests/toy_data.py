"""Small ABC corpora for the unit tests."""

from __future__ import annotations

import numpy as np

TUNES = [
    "X:1\nM:4/4\nL:1/8\nK:G\n|:GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA:|",
    "X:1\nM:6/8\nL:1/8\nK:D\n|:A|dfa afd|ecA ABc|dfa afd|e3 d2:|",
    "X:1\nM:3/4\nL:1/8\nK:Em\n|:E2 G2 B2|e4 d2|B2 A2 G2|F6:|",
]


def markov_tunes(n: int, seed: int) -> list[str]:
    """Tunes from a fixed first-order Markov chain over a few characters: learnable structure."""
    rng = np.random.default_rng(seed)
    alphabet = list("ABCDEFG|2 ")
    trans = np.random.default_rng(123).dirichlet(np.full(len(alphabet), 0.2), size=len(alphabet))
    tunes = []
    for _ in range(n):
        state, chars = rng.integers(len(alphabet)), []
        for _ in range(rng.integers(40, 80)):
            state = rng.choice(len(alphabet), p=trans[state])
            chars.append(alphabet[state])
        tunes.append("X:1\nK:G\n" + "".join(chars))
    return tunes


# A reel with a pickup, repeats, first/second endings, a triplet, a broken rhythm and chord symbols.
REEL = """X:1
T:Test Reel
R:reel
M:4/4
L:1/8
K:G
|:GA|"G"BGdG BGdG|"Am"cAeA cAeA|BGdG (3Bcd ef|1 gedB G2:|2 gedB G2||
|:gf|edeg fdfg|e>deg a2ga|bgaf gedB|[1 cAFA G2:|[2 cAFA G4|]
"""
REEL_FULL_BARS = 7  # the bars that are not pickups or partial bars at repeats

# A jig with grace notes and a chord.
JIG = """X:2
T:Test Jig
R:jig
M:6/8
L:1/8
K:D
A|FAA dAA|BAB dAG|FAA {g}dfe|dBA BAG:|
|:f|afd dfa|bgb {a}g3|[df]ed cBA|1 dfe d2:|2 dfe d3|]
"""
JIG_FULL_BARS = 8

SCALE = "X:1\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|]\n"  # 8 quarter notes


def write_folk_corpus(folder, n_tunes: int = 240, seed: int = 0, n_files: int = 3) -> str:
    """A user's own collection, as the tests write it: ``n_tunes`` seeded jigs, reels and waltzes in D, G and A
    minor over ``n_files`` files, with titles, rhythm words, comments and one duplicate per file (what a real
    folder of downloaded tunes holds). Every bar has the length of its meter. Returns the glob of its files."""
    from pathlib import Path

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scales = {"D": "DEFGABcd", "G": "GABcdefg", "Am": "ABcdefga"}  # the key signature sharpens F
    meters = {"jig": ("6/8", 6), "reel": ("4/4", 8), "waltz": ("3/4", 6)}  # eighth notes per bar (L:1/8)

    def bar(scale: str, eighths: int) -> str:
        out, left, i = [], eighths, int(rng.integers(len(scale)))
        while left:
            n = int(min(left, rng.choice([1, 1, 1, 2, 3])))
            i = int(np.clip(i + rng.integers(-2, 3), 0, len(scale) - 1))
            out.append(scale[i] + (str(n) if n > 1 else ""))
            left -= n
        return "".join(out)

    tunes = []
    for k in range(n_tunes):
        rhythm = ["jig", "reel", "waltz"][k % 3]
        meter, eighths = meters[rhythm]
        key = list(scales)[int(rng.integers(3))]
        parts = ["|:" + "|".join(bar(scales[key], eighths) for _ in range(4)) + ":|" for _ in range(2)]
        tunes.append(f"X:{k + 1}\nT:Tune number {k + 1}\nR:{rhythm}\nM:{meter}\nL:1/8\nK:{key}\n"
                     + "\n".join(parts) + "\n")
    per_file = -(-n_tunes // n_files)
    for f in range(n_files):
        chunk = tunes[f * per_file:(f + 1) * per_file]
        text = f"% tunes collected by a user, file {f + 1}\n\n" + "\n".join(chunk + chunk[:1])
        (folder / f"set{f + 1}.abc").write_text(text, encoding="utf-8")
    return str(folder / "*.abc")
