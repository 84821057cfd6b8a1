#!/usr/bin/env python3
"""Wall time of one fuzz campaign in this process and split over K worker processes,
and the speed-up; both must give the same merged result.

Run from the repository root:

    python benchmarks/bench_campaign.py [--workers K] [--calls N] [--episode E]
                                        [--design NAME] [--faithful [--minimise]]
                                        [--version 4.1] [--rounds R]

The campaign (default: xen-4.1, Xen 4.8, 3 guests, 1,200 calls in episodes of 200) runs
with ``campaign`` (in this process: the baseline) and with ``split_campaign`` on
``make_engine(K)`` (K worker processes, their start-up included). The episodes are
run ahead with the full budget and the last one again with its own (docs/fuzzing.md,
"Campaigns on workers"), so the ideal speed-up is a little under K; the figure drops
when other work shares the cores (the load average is printed).

``--faithful --minimise`` is the campaign of ``xensim fuzz --faithful`` (Xen's recorded
bugs found, each distinct one minimised once): most of its time is minimisation, whose
trials the workers share with the episodes. ``--rounds R`` runs the two R times,
alternated (which goes first alternates too), and prints each ratio, then their median
and spread (the machine's other work moves them: the load average is printed).

This is a script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from xensim.engines import make_engine
from xensim.fuzz import Setup, campaign, split_campaign


def merged(c) -> tuple:
    return (c.calls, c.episodes, c.by_call, c.refused,
            [(sig, f.count, f.minimal) for sig, f in c.findings.items()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--calls", type=int, default=1200)
    ap.add_argument("--episode", type=int, default=200)
    ap.add_argument("--design", default="xen-4.1")
    ap.add_argument("--version", default="4.8")
    ap.add_argument("--faithful", action="store_true")
    ap.add_argument("--minimise", action="store_true",
                    help="minimise each distinct violation (as xensim fuzz does)")
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    setup = Setup(design=a.design, version=a.version, faithful=a.faithful)
    # no time budget for minimising: on a loaded machine the 120 s of xensim fuzz can run
    # out at different points in the two runs, which would then differ
    kw = dict(episode_calls=a.episode, minimise_findings=a.minimise, minimise_seconds=1e9)
    print(f"campaign: {a.design}, Xen {a.version}{' faithful' if a.faithful else ''}, "
          f"{a.calls:,} calls in episodes of {a.episode}"
          f"{', minimised' if a.minimise else ''}; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    ratios = []
    for r in range(a.rounds):
        def in_process():
            t = time.perf_counter()
            c = campaign(setup, a.calls, 0, **kw)
            return c, time.perf_counter() - t

        def on_workers():
            t = time.perf_counter()             # the workers' start-up included
            with make_engine(a.workers) as engine:
                c = split_campaign(engine, setup, a.calls, 0, **kw)
                where = engine.describe()
            return c, time.perf_counter() - t, where

        if r % 2:
            split, tk, where = on_workers()
            one, t1 = in_process()
        else:
            one, t1 = in_process()
            split, tk, where = on_workers()
        assert merged(split) == merged(one), "the split campaign differs from the one in process"
        print(f"in this process:  {one.calls:,} calls, {one.episodes} episodes, {t1:7.2f} s "
              f"({one.calls / t1:,.0f} calls/s)")
        print(f"{where}: {split.calls:,} calls, {split.episodes} episodes, {tk:7.2f} s "
              f"({split.calls / tk:,.0f} calls/s)")
        print(f"speed-up: {t1 / tk:.2f}x on {a.workers} workers (same merged result: yes; "
              f"{len(one.findings)} distinct violation(s)); load average "
              f"{os.getloadavg()[0]:.2f}")
        ratios.append(t1 / tk)
    if len(ratios) > 1:
        print(f"speed-ups: {', '.join(f'{r:.2f}x' for r in ratios)}; median "
              f"{statistics.median(ratios):.2f}x, spread {min(ratios):.2f}-{max(ratios):.2f}x "
              f"over {len(ratios)} rounds")


if __name__ == "__main__":
    main()
