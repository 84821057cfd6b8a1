"""The engines (xensim.engines): map_unordered brings back every task's result or its
error as data, keeps at most max_in_flight tasks submitted, stops on KeyboardInterrupt;
make_engine's one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xensim import ConfigError
from xensim.engines import (DaskEngine, LocalEngine, TaskFailed, dask_available, make_engine,
                            run_task)


def square(x):
    """A task: (x * x, the pid that ran it); 3 raises."""
    if x == 3:
        raise ValueError("three")
    return x * x, os.getpid()


def interrupt_at_2(x):
    if x == 2:
        raise KeyboardInterrupt
    return x


class Counted:
    """An iterable of 0..n-1 that counts the items taken from it."""

    def __init__(self, n):
        self.n, self.taken = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.taken += 1
            yield i


def results(engine, n=6):
    return sorted((task, r if isinstance(r, TaskFailed) else r[0])
                  for task, r in engine.map_unordered(square, range(n)))


def check_squares(got):
    assert [t for t, _ in got] == [0, 1, 2, 3, 4, 5]
    assert [r for t, r in got if t != 3] == [0, 1, 4, 16, 25]
    failed = got[3][1]
    assert isinstance(failed, TaskFailed)
    assert (failed.type, failed.message, str(failed)) == ("ValueError", "three",
                                                          "ValueError: three")
    assert "raise ValueError" in failed.traceback


def test_run_task_brings_an_exception_back_as_data():
    assert run_task(square, 2) == (4, os.getpid())
    assert str(run_task(square, 3)) == "ValueError: three"
    with pytest.raises(KeyboardInterrupt):
        run_task(interrupt_at_2, 2)


def test_one_worker_runs_in_this_process():
    engine = make_engine(1)
    assert isinstance(engine, LocalEngine) and engine.describe() == \
        "local, 1 worker (in this process)"
    check_squares(results(engine))
    assert {pid for _, (_, pid) in ((t, r) for t, r in engine.map_unordered(square, [1, 2]))} \
        == {os.getpid()}


def test_one_worker_reads_the_tasks_one_at_a_time_and_stops_on_ctrl_c():
    tasks = Counted(10)
    it = make_engine(1).map_unordered(interrupt_at_2, tasks)
    assert next(it) == (0, 0) and tasks.taken == 1
    assert next(it) == (1, 1) and tasks.taken == 2
    with pytest.raises(KeyboardInterrupt):
        next(it)
    assert tasks.taken == 3


def test_worker_processes():
    with make_engine(2) as engine:
        assert engine.describe() == "local, 2 worker processes"
        check_squares(results(engine))
        pids = {r[1] for _, r in engine.map_unordered(square, [0, 1, 2, 4])}
        assert os.getpid() not in pids and 1 <= len(pids) <= 2


def parent_pid(_):
    return os.getppid()


def test_workers_are_forked_while_the_caller_has_one_thread():
    """No other thread: the workers are the caller's children (fork); with another
    thread, a fork server's (the caller itself is never forked)."""
    code = ("import os, threading, sys\n"
            "from xensim.engines import make_engine\n"
            "sys.path.insert(0, %r)\n"
            "from test_engines import parent_pid\n"
            "if len(sys.argv) > 1:\n"
            "    stop = threading.Event(); threading.Thread(target=stop.wait, daemon=True).start()\n"
            "with make_engine(2) as engine:\n"
            "    ppids = {r for _, r in engine.map_unordered(parent_pid, range(4))}\n"
            "print(ppids == {os.getpid()})\n" % str(Path(__file__).resolve().parent))
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for argv, forked in (([], "True"), (["thread"], "False")):
        run = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                             text=True, timeout=120)
        assert (run.stdout.strip(), run.stderr) == (forked, "")


def test_worker_processes_bound_the_tasks_in_flight():
    tasks = Counted(8)
    with make_engine(2) as engine:
        it = engine.map_unordered(square, tasks, max_in_flight=2)
        next(it)
        assert tasks.taken == 2               # two submitted before the first result
        rest = list(it)
        assert len(rest) == 7 and tasks.taken == 8


def test_a_task_interrupted_in_a_worker_stops_the_run():
    tasks = Counted(50)
    engine = make_engine(2)
    with pytest.raises(KeyboardInterrupt):
        for _ in engine.map_unordered(interrupt_at_2, tasks, max_in_flight=2):
            pass
    assert tasks.taken < 50
    # the engine starts a fresh pool afterwards
    assert sorted(t for t, _ in engine.map_unordered(square, [0, 1])) == [0, 1]
    engine.close()


@pytest.mark.parametrize("workers, scheduler, message", [
    (0, None, "--workers: must be at least 1, got 0"),
    (2, "udp://x:1", "--scheduler: expected local-dask or a scheduler address "
                     "tcp://HOST:PORT, got 'udp://x:1'"),
])
def test_make_engine_bad_values(workers, scheduler, message):
    with pytest.raises(ConfigError) as e:
        make_engine(workers, scheduler)
    assert str(e.value) == message


def test_make_engine_without_dask_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert not dask_available()
    with pytest.raises(ConfigError) as e:
        make_engine(2, "local-dask")
    assert str(e.value) == ("--scheduler: needs dask.distributed, which is not installed: "
                            "pip install 'xensim[cluster]' (or: pip install 'dask[distributed]')")


@pytest.mark.skipif(not dask_available(), reason="dask.distributed is not installed")
def test_local_dask_cluster():
    with make_engine(2, "local-dask") as engine:
        assert isinstance(engine, DaskEngine)
        assert engine.workers == 2
        assert engine.describe() == "local-dask (LocalCluster), 2 worker threads"
        check_squares(results(engine))
        tasks = Counted(5)
        it = engine.map_unordered(square, tasks, max_in_flight=2)
        next(it)
        assert tasks.taken == 2               # the bound: the next is read once a result is used
        next(it)
        assert tasks.taken == 3               # the one submitted in its place
        assert len(list(it)) == 3
        # the same cluster by its address: tcp://HOST:PORT
        address = engine.cluster.scheduler_address
        assert address.startswith("tcp://")
        with make_engine(None, address) as remote:
            assert remote.name == address and remote.workers == 2
            assert remote.describe() == f"{address} (cluster), 2 worker threads"
            check_squares(results(remote))
        assert engine.cluster.scheduler_address == address      # closing a client leaves it


def test_an_unreachable_scheduler_is_one_line():
    if not dask_available():
        pytest.skip("dask.distributed is not installed")
    with pytest.raises(ConfigError) as e:
        DaskEngine.connect("tcp://127.0.0.1:9", timeout=1)
    assert str(e.value).startswith("--scheduler: cannot reach the scheduler at "
                                   "tcp://127.0.0.1:9: ")
    assert "\n" not in str(e.value)
