"""Picking an engine from the command line's ``--workers`` and ``--scheduler``, and
sizing its pool: never more local worker processes than the cores or the tasks."""

from __future__ import annotations

import os
from typing import Callable

from .._errors import ConfigError
from ._dask import DaskEngine, dask_available
from ._engine import CLUSTER_EXTRA, LOCAL_DASK, Engine
from ._local import LocalEngine

__all__ = ["MAX_WORKERS", "check_workers", "default_workers", "make_engine", "pool_size"]

#: ``--workers`` above this is refused up front (no machine runs that many usefully)
MAX_WORKERS = 1024


def default_workers() -> int:
    """The cores this process may run on (``--workers``' default)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_workers(workers: int | None) -> None:
    """ConfigError (``--workers: ...``) unless ``workers`` is None or 1..MAX_WORKERS."""
    if workers is None:
        return
    if workers < 1:
        raise ConfigError(None, "--workers", f"must be at least 1, got {workers}")
    if workers > MAX_WORKERS:
        raise ConfigError(None, "--workers", f"must be at most {MAX_WORKERS:,}, got {workers:,}")


def pool_size(workers: int | None, tasks: int, what: str = "tasks") -> tuple[int, str | None]:
    """The local processes to start for ``--workers`` (None: the cores) and ``tasks``
    tasks to run: at most the cores and the tasks (at least 1) -> (size, the one-line
    note when a ``--workers`` given was lowered, else None). ``what`` names the tasks."""
    cores = default_workers()
    asked = cores if workers is None else workers
    size = max(1, min(asked, cores, tasks))
    if workers is None or size == workers:
        return size, None
    pool = f"{size} worker processes" if size > 1 else "1 worker (in this process)"
    return size, f"--workers {workers:,}: {pool} (the cores: {cores}; the {what} to run: {tasks:,})"


def make_engine(workers: int | None = None, scheduler: str | None = None, *,
                tasks: int | None = None, what: str = "tasks",
                note: Callable[[str], None] | None = None) -> Engine:
    """The engine for ``--workers N`` and ``--scheduler ADDRESS``: local worker
    processes without a scheduler; ``local-dask``, a LocalCluster of N workers;
    ``tcp://HOST:PORT``, an existing Dask cluster (its own workers; N is ignored).
    With ``tasks`` (how many ``what`` are to run), the local processes are at most the
    cores and the tasks (:func:`pool_size`); ``note(line)`` is told when a ``--workers``
    given was lowered. ConfigError (``--workers`` / ``--scheduler``: what is wrong) for
    a bad value, when dask.distributed is not installed or the scheduler cannot be
    reached."""
    check_workers(workers)
    local = scheduler is None or scheduler == LOCAL_DASK
    if local and tasks is not None:
        workers, lowered = pool_size(workers, tasks, what)
        if lowered and note is not None:
            note(lowered)
    if scheduler is None:
        return LocalEngine(workers or default_workers())
    if scheduler != LOCAL_DASK and not scheduler.startswith(("tcp://", "tls://")):
        raise ConfigError(None, "--scheduler", f"expected {LOCAL_DASK} or a scheduler "
                                               f"address tcp://HOST:PORT, got {scheduler!r}")
    if not dask_available():
        raise ConfigError(None, "--scheduler", f"needs dask.distributed, which is not "
                                               f"installed: {CLUSTER_EXTRA}")
    if scheduler == LOCAL_DASK:
        return DaskEngine.local(workers or default_workers())
    return DaskEngine.connect(scheduler)
