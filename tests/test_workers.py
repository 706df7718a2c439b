"""The worker pool (results, crashes, time limits, shutdown) and the tune tasks that share one parse.

The pool runs module-level functions in fresh Python processes, so the tasks here are standard-library
functions: os.abort crashes a worker, time.sleep hangs one."""

import math
import os
import time

import pytest
from toy_data import REEL, SCALE

from musicscale import gallery, render, validity, workers
from musicscale.workers import WorkerFailed, WorkerPool


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_results_and_exceptions_come_back():
    with WorkerPool(2) as pool:
        assert pool.submit(math.sqrt, 16.0).result() == 4.0
        with pytest.raises(ValueError, match="math domain error"):
            pool.submit(math.sqrt, -1.0).result()
        with pytest.raises(Exception, match="lambda"):  # cannot be sent to a worker
            pool.submit(lambda: 1).result()
        assert pool.submit(math.sqrt, 9.0).result() == 3.0


def test_a_crash_costs_only_its_task_and_the_worker_is_replaced():
    with WorkerPool(1) as pool:
        first = pool.submit(os.getpid).result()
        crash, after = pool.submit(os.abort), pool.submit(os.getpid)
        with pytest.raises(WorkerFailed, match="died"):
            crash.result()
        assert after.result() != first and not alive(first)


def test_a_hung_task_is_stopped_at_its_time_limit():
    with WorkerPool(1, timeout=60) as pool:
        pool.submit(math.sqrt, 1.0).result()  # started: the limit counts from the task's start
        start = time.monotonic()
        with pytest.raises(WorkerFailed, match="no result within 1 s"):
            pool.submit(time.sleep, 600, timeout=1.0).result()
        # not a speed test: any bound well under the pool's 60 s default (and the task's 600 s) shows that the
        # task's own 1 s limit stopped it, with room for a slow or busy machine
        assert time.monotonic() - start < 30
        assert pool.submit(math.sqrt, 9.0).result() == 3.0


def test_tasks_with_the_same_key_share_a_worker_and_new_keys_take_any_idle_one():
    with WorkerPool(2) as pool:
        first = pool.submit(os.getpid, key="a tune").result()
        assert {pool.submit(os.getpid, key="a tune").result() for _ in range(4)} == {first}
        busy = pool.submit(time.sleep, 5, key="a tune")
        start = time.monotonic()
        assert pool.submit(os.getpid, key="another tune").result() != first  # does not wait for "a tune"
        # had it waited, the 5 s task would be done: no wall-clock bound is needed to tell (not a speed test)
        assert not busy.done(), time.monotonic() - start
        assert pool.submit(os.getpid, key="a tune").result() == first


def test_close_waits_for_the_tasks_and_stops_every_worker():
    pool = WorkerPool(2)
    pids = pool.pids
    crash = pool.submit(os.abort)  # the replacement of the crashed worker must be stopped too
    futures = [pool.submit(math.sqrt, float(i)) for i in range(20)]
    pool.close()
    pids += pool.pids
    assert [f.result() for f in futures] == [math.sqrt(i) for i in range(20)]
    assert isinstance(crash.exception(), WorkerFailed)
    assert not any(alive(pid) for pid in pids)
    pool.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(math.sqrt, 1.0)


def test_leaving_the_block_with_an_error_stops_running_tasks_at_once():
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt), WorkerPool(1) as pool:
        running = pool.submit(time.sleep, 600)
        queued = pool.submit(time.sleep, 600)
        raise KeyboardInterrupt
    assert time.monotonic() - start < 60  # not a speed test: far under the 600 s tasks, with room for a busy machine
    assert running.cancelled() or isinstance(running.exception(), WorkerFailed)
    assert queued.cancelled()
    assert not any(alive(pid) for pid in pool.pids)


def test_workers_that_cannot_start_fail_the_tasks_instead_of_hanging():
    pool = WorkerPool(1, initializer=os.abort)
    with pytest.raises(WorkerFailed, match="died while starting"):
        pool.submit(math.sqrt, 4.0).result(timeout=60)
    pool.close()
    assert not any(alive(pid) for pid in pool.pids)


# --- the tune tasks ------------------------------------------------------------------------------


def test_a_worker_measures_and_renders_as_this_process_does():
    with workers.tune_pool(1) as pool:
        measures = pool.submit(workers.measure_tune, REEL, key=REEL).result()
        rendering = pool.submit(workers.render_tune, REEL, render.AUDIO_RATE, 12.0, key=REEL).result()
        with pytest.raises(ModuleNotFoundError):  # not importable in a worker; the worker carries on
            pool.submit(test_the_tune_tasks_parse_each_tune_once, key=REEL).result()
        assert pool.submit(workers.measure_tune, SCALE, key=REEL).result() == validity.measure(SCALE)
    assert measures == validity.measure(REEL)
    assert rendering == render.render_tune(REEL, max_seconds=12.0)


def test_the_tune_tasks_parse_each_tune_once(monkeypatch):
    calls = []
    monkeypatch.setattr(workers, "_parsed", workers.OrderedDict())
    monkeypatch.setattr(workers, "PARSED_CACHE", 1)
    monkeypatch.setattr(validity, "parse_abc", lambda text: calls.append(text) or validity.ParseResult(None, "x"))
    workers.measure_tune(REEL)
    workers.render_tune(REEL, render.AUDIO_RATE, 12.0)
    assert calls == [REEL]
    workers.measure_tune(SCALE)  # the cache holds one tune: REEL is dropped
    workers.measure_tune(REEL)
    assert calls == [REEL, SCALE, REEL] and list(workers._parsed) == [REEL]


@pytest.mark.parametrize("fault", ["abort", "hang"])
def test_a_crashing_or_hanging_engraving_costs_that_score_only(fault, monkeypatch, tmp_path):
    """A tune whose engraving kills or hangs its worker (on purpose, through the test hook) is shown with its
    recording and without a score; the other tunes are rendered as usual, and the failure is not saved."""
    monkeypatch.setenv(workers.TEST_HOOK, f"{fault}:T:Faulty")
    faulty = REEL.replace("T:Test Reel", "T:Faulty")
    with workers.LazyPool(2) as pool:
        renderings = gallery.Renderings(tmp_path, pool, sample_rate=render.AUDIO_RATE, max_seconds=12.0,
                                        timeout=3.0 if fault == "hang" else 60.0)
        for text in (REEL, faulty, SCALE):
            renderings.request(text)
        good, bad, scale = (renderings.get(text) for text in (REEL, faulty, SCALE))
    assert good == render.render_tune(REEL) and scale == render.render_tune(SCALE)
    assert bad.svg is None and (bad.audio, bad.midi) == render.render_audio(faulty)
    assert len(list((tmp_path / "renders").iterdir())) == 2

    class NoPool:
        def submit(self, *args, **kwargs):
            raise AssertionError("a saved rendering was made again")

    again = gallery.Renderings(tmp_path, NoPool(), sample_rate=render.AUDIO_RATE, max_seconds=12.0, timeout=60.0)
    assert again.get(REEL) == good and again.get(SCALE) == scale
