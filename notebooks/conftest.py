"""nbval: compare only what is stable across CPUs.

``tests/nbval_sanitize.cfg`` (passed with ``--nbval-sanitize-with``) applies to every notebook: it masks
run timings. The data and tokenize notebooks are otherwise compared exactly: their outputs are counts,
texts and entropies computed from the same bytes on any machine.

The notebooks downstream of training are not: another CPU rounds the training's floating-point sums
differently, a loss moves in its fourth decimal, and the seconds-sized smoke fits (three sizes, a floor
at its bound) magnify that into other digits of every fitted value. So in ``RUN_DEPENDENT`` notebooks
every non-integer number is masked, and so is any text the analysis derives from a fit (glued verdicts, and
whether a table reports a fitted value with its interval, as not identified or as no fit):
what nbval still compares there is the structure of each output (the tables' columns and rows, run names,
parameter counts, token counts, which fits exist). ``tests/test_portable.py`` proves that the compared
outputs survive a perturbation of every training loss far beyond cross-CPU noise. Fit correctness is the
job of the unit tests on known laws. In ``05_generate`` the cells that show samples or statistics of
samples (the validity tables, the gallery) are tagged ``nbval-ignore-output``: a sample is drawn from the
model's probabilities, and a weight that differs in its last bit can change which character is drawn.
In ``03_train`` the training log and the learning-rate table are tagged too: which rate wins, and whether the
grid is extended, is decided by comparing losses, and two rates within float noise of each other may swap. In
``04_analyze`` the repetition tables are tagged: whether R* is identified is decided by where a fit of the
seconds-sized smoke runs lands against a bound, which noise can move, and the real corpus's law follows it; so
is the ablation table, whose verdicts follow intervals of two seeds per arm that noise can move across 0; so
is the compute table, whose count of frontier points is decided by comparing the losses of sizes that can lie
within float noise of each other.
"""

from __future__ import annotations

from pathlib import Path

RUN_DEPENDENT = ("03_train.ipynb", "04_analyze.ipynb", "05_generate.ipynb")

MASKS = {
    # a fitted value as a table reports it: with its interval, or not identified (at a bound of its search), or no
    # fit (R² below the threshold). Which of the three a smoke fit lands on is decided against a bound or a
    # threshold that noise can cross (musicscale.identification); and a cell left empty ("—") for a value that is
    # not measured stands where a number stands otherwise
    r"not identified \([^)]*\)": "<estimate>",
    r"no fit \([^)]*\)": "<estimate>",
    r"at bound [-+]?\d+(\.\d+)?": "<estimate>",
    r"[-+−]?\d+\.\d+ \((95% interval only|no interval:) [^)]*\)": "<estimate>",
    r"[-+−]?\d+\.\d+ \[[-+−]?\d+\.\d+, [-+−]?\d+\.\d+\]": "<estimate>",
    r"(?<=\| )(—|[-+−]?\d+\.\d+%?)(?= \|)": "<estimate>",
    # a glued text value (papermill records a string as its repr, in double quotes if it holds a single one):
    # verdicts derived from fitted values
    r"(?s)^'.*'$": "<text>",
    r'(?s)^".*"$': "<text>",
    # a table's yes/no verdict on a fitted value (does an interval cover H*?)
    r"\b(yes|no)\b": "<yes/no>",
    # decimals and scientific notation, with an optional sign, exponent or percent sign
    r"[-+]?\d+(\.\d+)?[eE][-+]?\d+": "<x>",
    r"[-+]?\d+\.\d+%?": "<x>",
    r"\d+%": "<x>",
    r"\b(nan|inf)\b": "<x>",
}


def pytest_collection_modifyitems(items) -> None:
    """Add :data:`MASKS` to the sanitizer of every run-dependent notebook (nbval reads its patterns into
    ``IPyNbFile.sanitize_patterns`` when the notebook's kernel starts)."""
    for parent in {item.parent for item in items if hasattr(item.parent, "setup_sanitize_files")}:
        if Path(str(parent.path)).name not in RUN_DEPENDENT:
            continue

        def setup(parent=parent, original=parent.setup_sanitize_files) -> None:
            original()
            parent.sanitize_patterns.update(MASKS)

        parent.setup_sanitize_files = setup
