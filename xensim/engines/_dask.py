"""The Dask engine (the optional ``cluster`` extra, dask.distributed): tasks on a
Dask cluster's workers.

``DaskEngine.local(n)`` starts a ``LocalCluster`` of ``n`` worker processes with one
thread each (one task at a time per worker) for the length of the run, started with
SIGINT ignored (a Ctrl-C is the caller's: it cancels the tasks and closes the cluster);
``DaskEngine.connect("tcp://HOST:8786")`` submits to a running cluster, whose workers
need xensim installed (start them with ``--nthreads 1``: one task per worker process
at a time); a refused connection fails at once, a host that does not answer after
``CONNECT_TIMEOUT`` seconds. Tasks and results travel pickled; nothing is read from or written to the
caller's disk by a worker. dask is imported only here, and only when an engine is made.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import signal
import socket
import threading
import time
from urllib.parse import urlsplit
from typing import Any, Callable, Iterable, Iterator

from .._errors import ConfigError
from ._engine import LOCAL_DASK, PAUSE, Engine, TaskFailed, run_task

__all__ = ["CONNECT_TIMEOUT", "DaskEngine", "dask_available"]

#: seconds ``--scheduler tcp://HOST:PORT`` waits for a scheduler that does not answer
CONNECT_TIMEOUT = 5.0
#: a Dask scheduler's port when the address names none
_DASK_PORT = 8786


def dask_available() -> bool:
    """Is dask.distributed installed?"""
    return importlib.util.find_spec("distributed") is not None


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored for the block (in the main thread): processes started in it ignore
    it too, so a Ctrl-C at the terminal reaches only the caller, which stops the run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class DaskEngine(Engine):
    """A ``distributed.Client``, and the LocalCluster it owns (if it started one)."""

    def __init__(self, client, cluster=None, name: str = LOCAL_DASK):
        self.client = client
        self.cluster = cluster
        self.name = name
        super().__init__(self._threads())

    @classmethod
    def local(cls, workers: int) -> "DaskEngine":
        from distributed import Client, LocalCluster
        with _sigint_ignored():               # inherited by the worker processes started now
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        try:
            return cls(Client(cluster), cluster, LOCAL_DASK)
        except BaseException:
            cluster.close()
            raise

    @classmethod
    def connect(cls, address: str, timeout: float = CONNECT_TIMEOUT) -> "DaskEngine":
        """A running cluster's scheduler. ConfigError at once if nothing listens at the
        address (connection refused, unknown host), after ``timeout`` seconds if the
        host does not answer, or does not answer as a Dask scheduler."""
        from distributed import Client
        _reachable(address, timeout)
        try:
            client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise _unreachable(address, f"no answer from a Dask scheduler within "
                                        f"{timeout:g} s ({exc})") from None
        return cls(client, None, address)

    def _threads(self) -> int:
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(w.get("nthreads", 1) for w in workers.values()))

    def describe(self) -> str:
        kind = "LocalCluster" if self.cluster is not None else "cluster"
        return f"{self.name} ({kind}), {self.workers} worker thread{'s' * (self.workers != 1)}"

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any],
                      max_in_flight: int | None = None) -> Iterator[tuple[Any, Any]]:
        from distributed import as_completed
        tasks = iter(tasks)
        bound = self.in_flight(max_in_flight)
        running: dict = {}

        def fill() -> list:
            """Submit tasks up to the bound (fewer at the end, or at a PAUSE)."""
            new = []
            while len(running) < bound:
                task = next(tasks, _END)
                if task is _END:
                    break
                if task is PAUSE:
                    if not running:
                        raise RuntimeError("the tasks paused with no task in flight")
                    break
                f = self.client.submit(run_task, fn, task, pure=False)
                running[f] = task
                new.append(f)
            return new

        try:
            queue = as_completed(fill())
            for f in queue:
                task = running.pop(f)
                try:
                    result = f.result()
                except Exception as exc:      # noqa: BLE001  the cluster's: a worker lost
                    result = TaskFailed.of(exc)
                yield task, result
                for nxt in fill():
                    queue.add(nxt)
        except BaseException:
            if running:
                self.client.cancel(list(running))
            raise

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.close()


def _unreachable(address: str, why: str) -> ConfigError:
    return ConfigError(None, "--scheduler", f"cannot reach the scheduler at {address}: {why}")


def _reachable(address: str, timeout: float) -> None:
    """Open a TCP connection to the scheduler's host and port and (``tcp://``) wait for
    the first byte of the scheduler's handshake (then close it): ConfigError at once when it is
    refused or the host is unknown, after ``timeout`` seconds when the host does not
    answer (dask's own Client waits for ever on a host that accepts and says nothing)."""
    try:
        url = urlsplit(address)
        host, port = url.hostname, url.port or _DASK_PORT
    except ValueError as exc:                 # a port that is not a number
        raise _unreachable(address, str(exc)) from None
    if not host:
        raise _unreachable(address, "no host in the address (tcp://HOST:PORT)")
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            # a Dask scheduler writes its handshake as soon as it accepts a connection
            # (over TLS the client speaks first: the TCP connection is all there is to see)
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            if url.scheme == "tcp" and not sock.recv(1, socket.MSG_PEEK):
                raise _unreachable(address, "the host closed the connection (not a Dask "
                                            "scheduler?)")
    except ConnectionRefusedError:
        raise _unreachable(address, f"connection refused (nothing listens on port {port} "
                                    f"of {host})") from None
    except socket.timeout:
        raise _unreachable(address, f"no answer from a Dask scheduler within {timeout:g} s") from None
    except OSError as exc:                    # an unknown host, no route, ...
        raise _unreachable(address, exc.strerror or str(exc)) from None


_END = object()
