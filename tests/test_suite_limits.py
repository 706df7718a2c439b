"""The suite's own time limits cannot be lost: a test that hangs fails at its pytest-timeout limit and the
rest of the suite runs; a hang that swallows that limit's exception is ended by the watchdog of the root
``conftest.py``, which names the test. Both run in a pytest of their own, on a limit of one second."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[1]

HANGS = textwrap.dedent('''
    class SwallowsEverything:
        def __del__(self):  # Python drops an exception raised in here ("Exception ignored in ...")
            while True:
                try:
                    while True:
                        pass
                except BaseException:
                    pass

    def test_hangs():
        while True:
            pass

    def test_runs_after_a_hang():
        pass

    def test_hangs_and_swallows_the_limit():
        SwallowsEverything()

    def test_never_reached():
        pass
''')


def test_a_hang_fails_at_its_limit_and_a_swallowed_limit_is_still_enforced(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\ntimeout = 1\n")
    (tmp_path / "test_hangs.py").write_text(HANGS)
    run = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "test_hangs.py"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 1
    assert "test_hangs FAILED" in out and "Timeout" in out  # pytest-timeout: the test fails, the suite goes on
    assert "test_runs_after_a_hang PASSED" in out
    assert "in test_hangs_and_swallows_the_limit" in out  # the watchdog's stack dump names the test
    assert "test_never_reached" not in out
