"""Picking an engine from the command line's ``--workers`` and ``--scheduler``."""

from __future__ import annotations

import os

from .._errors import ConfigError
from ._dask import DaskEngine, dask_available
from ._engine import CLUSTER_EXTRA, LOCAL_DASK, Engine
from ._local import LocalEngine

__all__ = ["default_workers", "make_engine"]


def default_workers() -> int:
    """The cores this process may run on (``--workers``' default)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def make_engine(workers: int | None = None, scheduler: str | None = None) -> Engine:
    """The engine for ``--workers N`` and ``--scheduler ADDRESS``: local worker
    processes without a scheduler; ``local-dask``, a LocalCluster of N workers;
    ``tcp://HOST:PORT``, an existing Dask cluster (its own workers; N is ignored).
    ConfigError (``--workers`` / ``--scheduler``: what is wrong) for a bad value or
    when dask.distributed is not installed."""
    if workers is not None and workers < 1:
        raise ConfigError(None, "--workers", f"must be at least 1, got {workers}")
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
