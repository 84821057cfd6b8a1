"""Engines: one function over many tasks, on local worker processes or a Dask
cluster (_engine: the interface and ``TaskFailed``; _local: worker processes of this
machine; _dask: dask.distributed, the optional ``cluster`` extra; _make:
``make_engine`` from ``--workers`` and ``--scheduler``).

A low layer: it knows nothing of configs or machines. Sweeps and fuzz campaigns run
their tasks through it::

    with make_engine(workers=2) as engine:
        for task, result in engine.map_unordered(fn, tasks):
            ...            # result: fn(task), or a TaskFailed
"""

from ._engine import CLUSTER_EXTRA, LOCAL_DASK, PAUSE, Engine, TaskFailed, run_task
from ._local import LocalEngine
from ._dask import CONNECT_TIMEOUT, DaskEngine, dask_available
from ._make import MAX_WORKERS, check_workers, default_workers, make_engine, pool_size

__all__ = ["CLUSTER_EXTRA", "DaskEngine", "Engine", "LOCAL_DASK", "LocalEngine", "TaskFailed",
           "MAX_WORKERS", "PAUSE", "check_workers", "dask_available", "default_workers", "make_engine",
           "pool_size", "run_task", "CONNECT_TIMEOUT"]
