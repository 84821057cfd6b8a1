"""The local engine: tasks on worker processes of this machine (``--workers N``).

One worker runs the tasks in the calling process itself, one after the other (no
process is started: nothing to pickle, a Ctrl-C stops the task at once). Two or more
run them on a pool of that many worker processes (``concurrent.futures``), each
process one task at a time. The processes are forked from the caller while it has no
other thread, else started by a fork server (a clean process forked per worker, so a
parent holding threads, e.g. a Dask client, is never forked; the server imports the
task function's module once, before it forks); they ignore SIGINT and SIGTERM: a Ctrl-C
or SIGTERM reaches the caller alone, which cancels what is queued and kills the workers,
losing only the tasks in flight. While the caller is inside the pool's own code (submit,
wait, shut down) those two signals are held back and raised as it leaves it: a
KeyboardInterrupt raised by a signal handler inside ``wait`` would leave the futures'
locks held, the pool's manager thread blocked on one, and the interpreter's exit waiting
for that thread for ever. ``wait`` is polled (``POLL``) so a held signal is raised
within that time. A worker that
dies (killed, out of memory) fails its task (``TaskFailed``, ``BrokenProcessPool``)
and the pool is started again for the tasks after it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from ._engine import PAUSE, Engine, TaskFailed, run_task
from ..output import signals_held

__all__ = ["LocalEngine"]


#: seconds between two looks at the futures (a held stop signal waits at most this long)
POLL = 0.2


@contextlib.contextmanager
def _signals_held():
    """Run the block with SIGINT and SIGTERM recorded, not handled; when it ends, the
    first recorded is raised again, to the handler that was there before (in the main
    thread only: elsewhere signals are not delivered and this does nothing)."""
    got: list[int] = []
    try:
        with signals_held() as got:
            yield
    finally:
        if got:
            signal.raise_signal(got[0])


def _ignore_sigint() -> None:
    """A worker's initializer: Ctrl-C and SIGTERM are the caller's to handle (a SIGTERM
    to the whole process group stops the command as Ctrl-C does, not its workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _context(preload: str) -> multiprocessing.context.BaseContext:
    """How to start the workers: fork while this process has no other thread (the
    fastest: nothing to import again); else the fork server (a parent holding threads
    is never forked; the server, when this starts it, imports ``preload``, the task
    function's module, once for every worker); spawn where neither exists."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(sorted({"__main__", preload}))   # __main__: as by default
    return ctx


class LocalEngine(Engine):
    """``workers`` worker processes (1: the calling process itself)."""

    name = "local"

    def __init__(self, workers: int):
        super().__init__(workers)
        self._pool: ProcessPoolExecutor | None = None

    def describe(self) -> str:
        if self.workers == 1:
            return "local, 1 worker (in this process)"
        return f"local, {self.workers} worker processes"

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any],
                      max_in_flight: int | None = None) -> Iterator[tuple[Any, Any]]:
        if self.workers == 1:
            for task in tasks:
                if task is PAUSE:                  # nothing is in flight here
                    raise RuntimeError("the tasks paused with no task in flight")
                yield task, run_task(fn, task)
            return
        yield from self._pooled(fn, iter(tasks), self.in_flight(max_in_flight))

    def _pooled(self, fn, tasks: Iterator[Any], bound: int) -> Iterator[tuple[Any, Any]]:
        running: dict[Future, Any] = {}
        try:
            exhausted = False
            while True:
                while not exhausted and len(running) < bound:
                    task = next(tasks, _END)
                    if task is _END:
                        exhausted = True
                        break
                    if task is PAUSE:
                        if not running:
                            raise RuntimeError("the tasks paused with no task in flight")
                        break                      # read on once a result is back
                    with _signals_held():
                        running[self._submit(fn, task)] = task
                if not running:
                    return
                done: set[Future] = set()
                while not done:
                    with _signals_held():
                        done, _ = wait(running, timeout=POLL, return_when=FIRST_COMPLETED)
                for f in done:
                    task = running.pop(f)
                    exc = f.exception()
                    if isinstance(exc, KeyboardInterrupt):
                        raise exc
                    yield task, (TaskFailed.of(exc) if exc is not None else f.result())
        except BaseException:
            with _signals_held():
                for f in running:
                    f.cancel()
                self._terminate()
            raise

    def _submit(self, fn, task) -> Future:
        for attempt in (0, 1):
            if self._pool is None:
                sys.stdout.flush()             # a forked worker would write it out again
                sys.stderr.flush()
                self._pool = ProcessPoolExecutor(self.workers,
                                                 mp_context=_context(fn.__module__),
                                                 initializer=_ignore_sigint)
            try:
                return self._pool.submit(run_task, fn, task)
            except BrokenProcessPool:          # a worker died: a fresh pool for the rest
                if attempt:
                    raise
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        raise AssertionError("unreachable")

    def _terminate(self) -> None:
        """Stop now: cancel the queue and kill the worker processes (they ignore SIGTERM)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.kill()
        for p in procs:
            p.join(timeout=5)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


_END = object()
