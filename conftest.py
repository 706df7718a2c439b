"""Suite-wide time limits (tests/ and the nbval checks of notebooks/).

pytest-timeout (``timeout`` in pyproject.toml) fails a test that runs past its limit and lets the rest of
the suite run: it raises from a SIGALRM handler, once. Python runs that handler wherever the main thread is,
and inside a ``__del__`` or a weakref callback the exception is printed and dropped, so that limit can be
lost (as ``validity``'s own once was). Behind it stands :mod:`faulthandler`'s watchdog, a C thread that needs
neither the GIL nor a signal handler: at twice the test's limit it prints every thread's stack (the test's
file, line and function among them) to the terminal and ends the process with exit status 1. A hang
therefore fails in minutes, named, whatever it does with the first limit.
"""

from __future__ import annotations

import faulthandler
import os

import pytest

BACKSTOP_FACTOR = 2  # the watchdog waits this many times the test's own limit


def _limit(item: pytest.Item) -> float:
    """The test's pytest-timeout limit in seconds: its ``timeout`` marker, else the configured one."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getoption("timeout", None) or item.config.getini("timeout") or 0)


def _terminal_fd(config: pytest.Config) -> int:
    """A duplicate of the real standard error: while a test runs, pytest captures fd 2 into a file that an
    exiting process never shows."""
    if not hasattr(config, "_backstop_fd"):
        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            config._backstop_fd = os.dup(2)
    return config._backstop_fd


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    limit = _limit(item)
    if limit > 0:
        faulthandler.dump_traceback_later(BACKSTOP_FACTOR * limit, exit=True, file=_terminal_fd(item.config))
    try:
        yield
    finally:
        if limit > 0:
            faulthandler.cancel_dump_traceback_later()
