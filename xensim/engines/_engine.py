"""The engine interface: run one function over many tasks, somewhere, and bring the
results back as they complete.

An :class:`Engine` knows nothing of what the tasks are (a sweep's points, a fuzz
campaign's seeds): a task is plain, picklable data and the function a module-level
one. ``map_unordered(fn, tasks)`` yields ``(task, result)`` in the order the tasks
complete, with at most ``max_in_flight`` submitted and not yet yielded (the rest of
``tasks`` is not even read until then), so ordering is the caller's job. ``tasks``
may yield :data:`PAUSE` while tasks are in flight: nothing to submit yet (the next
task depends on a result); the engine waits for the next result and reads on. A task that
raises an ``Exception`` comes back as a :class:`TaskFailed` (the error as data: its
type, message and traceback text), never raised in the caller; a KeyboardInterrupt
(in the caller, or raised by a task) stops the run: the tasks not started are
cancelled, the workers are stopped, and the KeyboardInterrupt propagates. Results of
tasks in flight at that moment are lost.

The engines: engines/_local.py, engines/_dask.py; engines/_make.py picks one.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

__all__ = ["TaskFailed", "Engine", "run_task", "LOCAL_DASK", "CLUSTER_EXTRA", "PAUSE"]

#: ``--scheduler local-dask``: a dask.distributed LocalCluster started for the run
LOCAL_DASK = "local-dask"
#: what to install for the Dask engines
CLUSTER_EXTRA = "pip install 'xensim[cluster]' (or: pip install 'dask[distributed]')"


class _Pause:
    def __repr__(self) -> str:
        return "PAUSE"


#: what a task iterator yields for "nothing to submit until a result comes back"
PAUSE = _Pause()


@dataclass
class TaskFailed:
    """A task that raised: the exception brought back as data."""
    type: str
    message: str
    traceback: str = ""

    @classmethod
    def of(cls, exc: BaseException) -> "TaskFailed":
        return cls(type(exc).__name__, str(exc),
                   "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


def run_task(fn: Callable[[Any], Any], task: Any) -> Any:
    """``fn(task)``, or a :class:`TaskFailed` if it raised an Exception (what every
    engine runs on its workers). A KeyboardInterrupt is not caught."""
    try:
        return fn(task)
    except Exception as exc:                # noqa: BLE001  brought back as data
        return TaskFailed.of(exc)


class Engine:
    """Runs ``fn`` over tasks on ``workers`` workers. Use as a context manager (or
    call :meth:`close`): the workers are stopped at the end."""

    #: the engine's name as the reports show it (``local``, ``local-dask``, ``tcp://...``)
    name = "engine"

    def __init__(self, workers: int):
        self.workers = workers

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any],
                      max_in_flight: int | None = None) -> Iterator[tuple[Any, Any]]:
        """Yield ``(task, fn(task) or TaskFailed)`` as each task completes; at most
        ``max_in_flight`` (default: twice the workers) tasks submitted at a time;
        :data:`PAUSE` from ``tasks``: wait for a result before reading on."""
        raise NotImplementedError

    def in_flight(self, max_in_flight: int | None) -> int:
        """The bound on tasks submitted and not yet yielded."""
        return max(1, max_in_flight or 2 * self.workers)

    def describe(self) -> str:
        """``local, 2 worker processes``: for a report's notes."""
        return f"{self.name}, {self.workers} worker{'s' * (self.workers != 1)}"

    def close(self) -> None:
        """Stop the workers (idempotent)."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
