#!/usr/bin/env python3
"""Wall time of one sweep on 1 worker and on K worker processes, the speed-up, and
each point's peak RSS.

Run from the repository root:

    python benchmarks/bench_sweep.py [--workers K] [--seeds N] [--iterations A,B] [--reps R]

The sweep: configs/when-pinning-pays.yaml (one superpage churned on the teaching
machine) on per-mapping, sketch and xen-4.1, over ``workload.iterations`` x
``workload.mark`` x ``seed`` (2 x 2 x N points). It runs twice, each time into a
fresh directory (no point resumed): on ``make_engine(1)`` (in this process: the
baseline) and on ``make_engine(K)`` (K worker processes, their start-up included),
alternately, ``--reps`` times each; the best wall time of each counts. Both must give
the same results.csv. Goal: a speed-up of at least 0.8 K (on a
machine with K idle cores: the figure drops when other work shares them, so the load
average is printed, and the CPU time the points took against the wall time: how many
cores the K workers actually got). On Linux with autogroup scheduling
(``/proc/sys/kernel/sched_autogroup_enabled`` is 1) the processes of one session share
one fair share of the CPUs: while other sessions keep the cores busy, K workers get no
more CPU time than one, and the speed-up says nothing of the engine. The per-point peak RSS is each worker's high-water mark while
it ran the point (reset before each point on Linux).

This is a script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from xensim.engines import make_engine
from xensim.output import Progress
from xensim.sweep import parse_sweep, run_sweep

REPO = Path(__file__).resolve().parent.parent


def sweep_text(iterations: list[int], seeds: int) -> str:
    return (f"base: {REPO / 'configs' / 'when-pinning-pays.yaml'}\n"
            f"compare: [per-mapping, sketch, xen-4.1]\n"
            f"grid:\n  workload.iterations: {iterations}\n  workload.mark: [false, true]\n"
            f"  seed: {list(range(seeds))}\n")


def timed(sweep, workers: int) -> tuple[float, object, str]:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with make_engine(workers) as engine:
            result = run_sweep(sweep, Path(d), engine, progress=Progress.off())
        wall = time.perf_counter() - t0
        table = (Path(d) / "results.csv").read_text()
    return wall, result, table


def autogroup() -> str:
    try:
        return {"1": "on", "0": "off"}[Path("/proc/sys/kernel/sched_autogroup_enabled")
                                       .read_text().strip()]
    except (OSError, KeyError):
        return "unknown"


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="K (default 2)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per combination (default 2)")
    ap.add_argument("--iterations", default="600,1200", help="churn iterations (default 600,1200)")
    ap.add_argument("--reps", type=int, default=2, help="runs of each engine, alternated; the "
                                                        "best wall time counts (default 2)")
    args = ap.parse_args()
    iterations = [int(x) for x in args.iterations.split(",")]
    sweep = parse_sweep(sweep_text(iterations, args.seeds), str(REPO / "bench-sweep.yaml"))
    k = args.workers
    print(f"sweep: {len(sweep.points)} points x 3 designs; load average before: "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; autogroup scheduling: "
          f"{autogroup()}")
    runs: dict[int, list[tuple[float, object]]] = {1: [], k: []}
    for _ in range(args.reps):                 # alternated: both see the same load
        t1, r1, table1 = timed(sweep, 1)
        tk, rk, tablek = timed(sweep, k)
        assert table1 == tablek, "the two engines gave different results.csv"
        runs[1].append((t1, r1))
        runs[k].append((tk, rk))
    walls = {n: [t for t, _ in runs[n]] for n in runs}
    (t1, r1), (tk, rk) = (min(runs[n], key=lambda run: run[0]) for n in (1, k))
    speedup = t1 / tk
    print(f"{'engine':<40} {'best wall':>10}  every run")
    print(f"{r1.engine:<40} {t1:>9.2f}s  {', '.join(f'{t:.2f}' for t in walls[1])}")
    print(f"{rk.engine:<40} {tk:>9.2f}s  {', '.join(f'{t:.2f}' for t in walls[k])}")
    print(f"speed-up on {k} workers: {speedup:.2f}x = {speedup / k:.2f} K "
          f"(goal >= 0.80 K); results.csv equal")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    cpu1 = sum(p.info["cpu_seconds"] for p in r1.points)
    cpuk = sum(p.info["cpu_seconds"] for p in rk.points)
    print(f"CPU time of the points: {cpu1:.2f} s on 1 worker, {cpuk:.2f} s on {k}; "
          f"cores busy with points: {cpu1 / t1:.2f} on 1 worker, {cpuk / tk:.2f} on {k}")
    print()
    print(f"{'point':<14} {'values':<50} {'wall 1':>7} {'wall K':>7} {'CPU 1':>7} {'CPU K':>7} "
          f"{'RSS 1':>9} {'RSS K':>9}")
    for a, b in zip(r1.points, rk.points):
        values = ", ".join(f"{k_}={v}" for k_, v in a.values.items())
        print(f"{a.id:<14} {values:<50} {a.info['seconds']:>6.2f}s {b.info['seconds']:>6.2f}s "
              f"{a.info['cpu_seconds']:>6.2f}s {b.info['cpu_seconds']:>6.2f}s "
              f"{mib(a.info['peak_rss_bytes']):>9} {mib(b.info['peak_rss_bytes']):>9}")
    rss = [p.info["peak_rss_bytes"] for p in rk.points]
    print(f"peak RSS per point on the worker processes: median {mib(statistics.median(rss))}, "
          f"max {mib(max(rss))}")


if __name__ == "__main__":
    main()
