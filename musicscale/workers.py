"""Long-lived worker processes for the music21 and verovio work of the generate stage.

music21 can loop for minutes on garbled model output and verovio's C++ engraver can abort the process, so
neither runs in the notebook kernel. A :class:`WorkerPool` keeps a few child processes for the whole stage
(starting one costs a second or two of imports, so not one per tune): each task runs in one worker under a
time limit; a worker that crashes or runs past the limit is killed and replaced, and only that task fails
(:class:`WorkerFailed`). ``close()`` (or leaving the ``with`` block) stops every worker; a :class:`LazyPool`
starts its pool only when a first task comes.

The tune tasks parse each tune once per worker (:func:`parsed`, kept in a small cache) and measure, engrave
and record it from that one score. Tasks about the same tune go to the worker that parsed it (``key``), so
the rendering of a sample reuses the score parsed for its validity metrics.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from . import prompts, render, validity


class WorkerFailed(RuntimeError):
    """The worker running a task crashed or ran past the task's time limit (and was replaced)."""


def default_workers() -> int:
    """As many workers as cores, at most 4 (the stage has about a thousand short tasks)."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class _Task:
    fn: Callable[..., Any]
    args: tuple
    timeout: float | None
    key: str | None
    future: Future = field(default_factory=Future)


@dataclass
class _Worker:
    process: subprocess.Popen
    conn: Connection
    ready: bool = False  # its initializer has run: time limits count from here
    task: _Task | None = None
    deadline: float | None = None


MAX_KEYS = 4096  # keys whose worker the pool remembers (a forgotten key's next task goes to any worker)
MAX_FAILED_STARTS = 3  # workers in a row that die before they are ready: the pool gives up


class WorkerPool:
    """``n_workers`` child processes that run picklable module-level functions, each task under a time limit.

    ``submit`` returns a :class:`concurrent.futures.Future`: the function's result, the exception it raised,
    or :class:`WorkerFailed` if its worker crashed or ran past ``timeout`` seconds. Workers are fresh Python
    processes (never a fork of a kernel with threads, and unlike multiprocessing's "spawn" they do not re-run
    the caller's script) and run ``initializer`` before their first task. A background thread hands out the
    tasks, watches the time limits and replaces failed workers.
    """

    def __init__(self, n_workers: int | None = None, *, initializer: Callable[[], Any] | None = None,
                 timeout: float | None = None):
        n = default_workers() if n_workers is None else n_workers
        if n < 1:
            raise ValueError(f"n_workers must be >= 1, got {n}")
        self._initializer = initializer
        self._timeout = timeout
        self._lock = threading.Lock()
        self._own: list[deque[_Task]] = [deque() for _ in range(n)]  # tasks whose key a worker has run
        self._shared: deque[_Task] = deque()  # other tasks: the first idle worker's
        self._owner: OrderedDict[str, int] = OrderedDict()  # key -> the worker that ran its first task
        self._closing = False  # no new tasks: set by close(), or when workers cannot start
        self._closed = False
        self._cancelled = False  # closed without waiting: failed workers are not replaced
        self._failed_starts = 0
        self._wake_recv, self._wake_send = (Connection(s.detach()) for s in socket.socketpair())
        self._workers = [self._start() for _ in range(n)]
        self._thread = threading.Thread(target=self._dispatch, name="musicscale-workers", daemon=True)
        self._thread.start()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(wait=exc_type is None)

    @property
    def pids(self) -> list[int]:
        """The process ids of the current workers (they change when a worker is replaced)."""
        return [w.process.pid for w in self._workers]

    def submit(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
               key: str | None = None) -> Future:
        """Run ``fn(*args)`` in the first idle worker; a task whose ``key`` an earlier task had runs in that
        task's worker (and finds its caches). ``timeout`` (default: the pool's) counts from the task's start."""
        task = _Task(fn, args, self._timeout if timeout is None else timeout, key)
        with self._lock:
            if self._closing:
                raise RuntimeError("the worker pool is closed")
            owner = self._owner.get(key) if key is not None else None
            (self._shared if owner is None else self._own[owner]).append(task)
        self._wake()
        return task.future

    def close(self, wait: bool = True) -> None:
        """Stop the workers: after the submitted tasks are done (``wait``), or now, cancelling what has not
        started and failing what runs. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = self._closing = True
            if not wait:
                self._cancel(None)
        self._wake()
        self._thread.join()
        for w in self._workers:
            self._stop(w)
        self._wake_recv.close()
        self._wake_send.close()

    # -- parent side: the dispatcher thread -----------------------------------------------------------

    def _start(self) -> _Worker:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        code = f"from musicscale.workers import _serve; _serve({child.fileno()}, {os.getpid()})"
        process = subprocess.Popen([sys.executable, "-c", code], pass_fds=(child.fileno(),), env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        child.close()  # the parent keeps only its end, so a dead worker reads as the end of the socket
        conn = Connection(parent.detach())
        conn.send(self._initializer)
        return _Worker(process, conn)

    @staticmethod
    def _stop(w: _Worker, grace: float = 5.0) -> None:
        try:
            w.conn.send(None)
        except (OSError, ValueError):
            pass
        try:
            w.process.wait(grace)
        except subprocess.TimeoutExpired:
            w.process.kill()
            w.process.wait()
        w.conn.close()

    def _wake(self) -> None:
        try:
            self._wake_send.send_bytes(b"")
        except (OSError, ValueError):
            pass  # closed: the dispatcher has finished

    def _cancel(self, error: BaseException | None) -> None:
        """Stop for good: cancel the queued tasks (or fail them with ``error``) and kill the busy workers."""
        self._cancelled = True
        for queue in (*self._own, self._shared):
            while queue:
                future = queue.popleft().future
                if error is None or not future.set_running_or_notify_cancel():
                    future.cancel()
                elif not future.done():
                    future.set_exception(error)
        for w in self._workers:
            if w.task is not None:
                w.process.kill()  # the dispatcher reads the end of its socket and fails the task

    def _next_task(self, i: int) -> _Task | None:
        for queue in (self._own[i], self._shared):
            while queue:
                task = queue.popleft()
                owner = self._owner.setdefault(task.key, i) if task.key is not None else i
                if owner != i:  # its key was taken by another worker meanwhile
                    self._own[owner].append(task)
                    continue
                if task.key is not None:
                    self._owner.move_to_end(task.key)
                    while len(self._owner) > MAX_KEYS:
                        self._owner.popitem(last=False)
                if task.future.running() or task.future.set_running_or_notify_cancel():
                    return task
        return None

    def _replace(self, i: int, error: BaseException | None) -> None:
        """Kill worker ``i``, fail its task with ``error`` and start a fresh worker in its place (unless the
        pool is being closed without waiting)."""
        w = self._workers[i]
        w.process.kill()
        w.process.wait()
        if w.task is not None and error is not None:
            w.task.future.set_exception(error)
        w.task = w.deadline = None
        for key in [k for k, owner in self._owner.items() if owner == i]:
            del self._owner[key]  # its caches are gone with it
        if not self._cancelled:
            w.conn.close()
            self._workers[i] = self._start()

    def _hand_out(self) -> None:
        """Give every ready, idle worker its next task."""
        for i, w in enumerate(self._workers):
            while w.ready and w.task is None:
                task = self._next_task(i)
                if task is None:
                    break
                try:
                    w.conn.send((task.fn, task.args))
                except OSError:  # the worker died while idle: its successor takes the task when ready
                    self._own[i].appendleft(task)
                    self._replace(i, None)
                    break
                except Exception as err:  # the task cannot be pickled; the worker is fine
                    task.future.set_exception(err)
                    continue
                w.task = task
                w.deadline = None if task.timeout is None else time.monotonic() + task.timeout

    def _dispatch(self) -> None:
        try:
            self._dispatch_loop()
        except BaseException as err:  # a bug here must not leave callers waiting forever
            with self._lock:
                for w in self._workers:
                    if w.task is not None and not w.task.future.done():
                        w.task.future.set_exception(WorkerFailed(f"the worker pool failed: {err!r}"))
                self._closing = True
                self._cancel(WorkerFailed(f"the worker pool failed: {err!r}"))
            raise

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                self._hand_out()
                queued = any(self._own) or bool(self._shared)
                if self._closing and not queued and all(w.task is None for w in self._workers):
                    return
                watched = {w.conn: i for i, w in enumerate(self._workers) if w.task is not None or not w.ready}
                deadlines = [w.deadline for w in self._workers if w.deadline is not None]
            wait_for = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready = wait([self._wake_recv, *watched], timeout=wait_for)
            with self._lock:
                if self._wake_recv in ready:
                    while self._wake_recv.poll():
                        self._wake_recv.recv_bytes()
                for conn in ready:
                    if conn in watched:
                        self._receive(watched[conn])
                now = time.monotonic()
                for i, w in enumerate(self._workers):
                    if w.task is not None and w.deadline is not None and now >= w.deadline:
                        self._replace(i, WorkerFailed(f"no result within {w.task.timeout:g} s"))

    def _receive(self, i: int) -> None:
        """Read worker ``i``'s message: ready, or its task's outcome; or find that it died."""
        w = self._workers[i]
        try:
            ok, value = w.conn.recv()
        except (EOFError, OSError):
            self._died(i)
            return
        if not w.ready:
            w.ready, self._failed_starts = True, 0
            return
        task, w.task, w.deadline = w.task, None, None
        if ok:
            task.future.set_result(value)
        else:
            task.future.set_exception(value)

    def _died(self, i: int) -> None:
        w = self._workers[i]
        try:
            code: int | str | None = w.process.wait(1.0)
        except subprocess.TimeoutExpired:
            code = "none: it closed its socket"
        if w.ready:
            self._replace(i, WorkerFailed(f"the worker died (exit code {code})"))
            return
        self._failed_starts += 1
        if self._failed_starts < MAX_FAILED_STARTS:
            self._replace(i, None)
            return
        self._closing = True  # a worker that cannot start will not start next time either
        self._cancel(WorkerFailed(f"{MAX_FAILED_STARTS} workers in a row died while starting (exit code {code})"))
        w.process.wait()


# -- child side --------------------------------------------------------------------------------------


_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def _die_with_parent(parent_pid: int) -> None:
    """Have Linux kill this worker when its parent dies, so that a worker stuck in a task is never left
    behind by a killed kernel; elsewhere a worker ends at the end of its pipe."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl
        os._exit(1)


def _serve(fd: int, parent_pid: int) -> None:
    """A worker's loop on the socket ``fd``: run the initializer it receives first, then each ``(fn, args)``
    and send back ``(True, result)`` or ``(False, exception)``, until ``None`` or the end of the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupting the kernel is the parent's to handle
    _die_with_parent(parent_pid)
    conn = Connection(fd)
    try:
        initializer = conn.recv()
    except (EOFError, OSError):
        return
    if initializer is not None:
        initializer()
    conn.send((True, "ready"))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        except Exception as err:  # a task whose function cannot be imported here
            conn.send((False, _portable(err)))
            continue
        if message is None:
            os._exit(0)  # nothing to flush or close: skip tearing down music21's objects (a second or so)
        fn, args = message
        try:
            reply = (True, fn(*args))
        except Exception as err:
            reply = (False, _portable(err))
        try:
            conn.send(reply)
        except Exception as err:  # the result cannot be pickled
            conn.send((False, RuntimeError(f"{type(err).__name__}: {err}")))


def _portable(err: Exception) -> Exception:
    """``err`` if it survives pickling (some libraries' exceptions do not), else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


# -- the tune tasks ----------------------------------------------------------------------------------

PARSED_CACHE = 256  # tunes a worker keeps parsed (about 0.2 MB each)
_parsed: OrderedDict[str, validity.ParseResult] = OrderedDict()
TEST_HOOK = "MUSICSCALE_RENDER_TEST_HOOK"  # "abort:<text>" or "hang:<text>": engraving a tune holding <text>
# crashes or hangs the worker, so that tests can trigger both on purpose


def warm_up() -> None:
    """Import music21 and verovio before the first task (a worker initializer)."""
    import music21.abcFormat.translate  # noqa: F401
    import music21.musicxml.m21ToXml  # noqa: F401
    import verovio  # noqa: F401


def parsed(text: str) -> validity.ParseResult:
    """music21's parse of ``text``, from this worker's cache of recent tunes when it is there."""
    if text in _parsed:
        _parsed.move_to_end(text)
        return _parsed[text]
    result = _parsed[text] = validity.parse_abc(text)
    while len(_parsed) > PARSED_CACHE:
        _parsed.popitem(last=False)
    return result


def measure_tune(text: str) -> validity.Measures:
    """The music21 part of a tune's validity metrics (see :func:`musicscale.validity.measure`)."""
    return validity.measure(text, parsed(text))


def measure_prompted(text: str, prompt: prompts.Prompt | None) -> tuple[validity.Measures, dict | None]:
    """A tune's measures and, if it was sampled from ``prompt``, how it obeys it
    (:func:`musicscale.prompts.obedience`), from one parse."""
    result, bars = parsed(text), validity.written_bars(text)  # each read once, for both
    return (validity.measure(text, result, bars),
            None if prompt is None else prompts.obedience(text, prompt, result, bars))


def render_tune(text: str, sample_rate: int, max_seconds: float | None, engrave: bool = True) -> render.Rendering:
    """Sheet music and recording of a tune (see :func:`musicscale.render.render_tune`), from the cached parse."""
    hook = os.environ.get(TEST_HOOK, "")
    action, _, marker = hook.partition(":")
    if engrave and marker and marker in text:
        if action == "abort":
            os.abort()
        if action == "hang":
            time.sleep(3600)
    return render.render_tune(text, parsed(text), sample_rate=sample_rate, max_seconds=max_seconds, engrave=engrave)


def tune_pool(n_workers: int | None = None) -> WorkerPool:
    """A pool for the tune tasks, its workers importing music21 and verovio as they start."""
    return WorkerPool(n_workers, initializer=warm_up)


class LazyPool:
    """A :func:`tune_pool` started on first use (a stage with everything saved needs none) and closed on leaving
    the ``with`` block."""

    def __init__(self, n_workers: int | None):
        self.n_workers = n_workers
        self._pool: WorkerPool | None = None

    def __enter__(self) -> LazyPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._pool is not None:
            self._pool.close(wait=exc_type is None)

    def submit(self, *args, **kwargs) -> Future:
        """:meth:`WorkerPool.submit`, starting the pool first if it is not yet."""
        if self._pool is None:
            self._pool = tune_pool(self.n_workers)
        return self._pool.submit(*args, **kwargs)
