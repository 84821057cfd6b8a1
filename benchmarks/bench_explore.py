"""Race explorer figures.

For each shipped scenario and design: schedules, atomic steps, steps/s and schedules/s of
the exhaustive search under preemption bound 2 (DPOR + sleep sets); the raw step rate of
plain seeded-random schedules (no reduction bookkeeping); and the time to find the
sketch's leak. Goals: at least 100k steps/s; the leak in under a second.

Run: python benchmarks/bench_explore.py
"""

from __future__ import annotations

import time
from pathlib import Path

from xensim.explore import explore, load_scenario

SCEN = Path(__file__).resolve().parent.parent / "scenarios"
DESIGNS = ("xen-4.1", "superpage-info", "pageinfo-count", "per-mapping")


def main() -> None:
    print("== exhaustive DFS, preemption bound 2 (DPOR + sleep sets) ==")
    print(f"  {'scenario':14} {'design':15} {'schedules':>9} {'cut':>4} {'steps':>9} {'seconds':>8} "
          f"{'steps/s':>9} {'sched/s':>8}  verdict")
    tot_steps = tot_s = 0.0
    for path in sorted(SCEN.glob("*.yaml")):
        sc = load_scenario(path)
        marks = any(op.op in ("mark", "unmark") for ops in [sc.setup] + sc.cpus for op in ops)
        for design in DESIGNS:
            if marks and design == "per-mapping":
                continue
            r = explore(sc, design, "dfs", 2, max_schedules=100_000)
            tot_steps += r.steps
            tot_s += r.seconds
            verdict = f"{r.violations} violation(s)" + ("" if r.complete else " (incomplete)")
            print(f"  {sc.name:14} {design:15} {r.schedules:9} {r.pruned:4} {r.steps:9,} {r.seconds:8.2f} "
                  f"{r.steps / r.seconds:9,.0f} {(r.schedules + r.pruned) / r.seconds:8.1f}  {verdict}")
    print(f"  all: {tot_steps:,.0f} steps in {tot_s:.1f} s = {tot_steps / tot_s:,.0f} steps/s")
    print()
    print("== raw step rate: 200 seeded-random schedules of map-map (no reduction bookkeeping) ==")
    for design in ("xen-4.1", "superpage-info"):
        r = explore(load_scenario(SCEN / "map-map.yaml"), design, "random", max_schedules=200, seed=7,
                    stop_at_first=False)
        print(f"  {design:15} {r.steps:,} steps in {r.seconds:.2f} s = {r.steps / r.seconds:,.0f} steps/s, "
              f"{r.schedules / r.seconds:.1f} schedules/s, {r.violations} violations")
    print()
    print("== time to find the sketch's leak (map-map) ==")
    sc = load_scenario(SCEN / "map-map.yaml")
    for sched, bound in (("dfs", 1), ("dfs", 2), ("pct", None), ("random", None)):
        t = time.perf_counter()
        r = explore(sc, "sketch", sched, bound or 2, max_schedules=1000, seed=1)
        dt = time.perf_counter() - t
        label = f"{sched}" + (f" bound {bound}" if bound is not None else "")
        print(f"  {label:14} {dt * 1e3:8.1f} ms  after {r.schedules} schedule(s), {r.steps:,} steps: "
              f"{'found' if r.violations else 'NOT found'}")


if __name__ == "__main__":
    main()
