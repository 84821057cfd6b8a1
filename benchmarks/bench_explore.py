"""Race explorer figures.

For each shipped scenario and design: schedules, atomic steps, steps/s and schedules/s of
the exhaustive search under preemption bound 2 (DPOR + sleep sets; hypercall preemption
off); the raw step rate of plain seeded-random schedules (no reduction bookkeeping); the
time to find the sketch's leak; the step rate with hypercall preemption points on (each
hypercall_preempt_check() a step the search branches on) against off, in the same run;
and the time to find each XSA-299 scenario's bug on the releases that have it (and to
search the fixed ones through). Goals: at least 100k steps/s; the leak in under a
second; each XSA-299 bug in under 10 s.

Run: python benchmarks/bench_explore.py
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

from xensim.explore import explore, load_scenario
from xensim.xen import Release

SCEN = Path(__file__).resolve().parent.parent / "scenarios"
DESIGNS = ("xen-4.1", "superpage-info", "pageinfo-count", "per-mapping")


def main() -> None:
    print("== exhaustive DFS, preemption bound 2 (DPOR + sleep sets) ==")
    print(f"  {'scenario':14} {'design':15} {'schedules':>9} {'cut':>4} {'steps':>9} {'seconds':>8} "
          f"{'steps/s':>9} {'sched/s':>8}  verdict")
    tot_steps = tot_s = 0.0
    for path in sorted(SCEN.glob("*.yaml")):
        sc = load_scenario(path)
        if sc.hypercall_preemptions and sc.name.startswith("vcpus-cold-map"):
            continue                     # vcpus-cold-map with preemption: its own section
        sc = dataclasses.replace(sc, hypercall_preemptions=0)
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


    preemption_points()
    xsa299()


#: (scenario, release, design, CPU preemption bound) the on/off rate is measured on
RATE_RUNS = (("vcpus-cold-map", "4.1", "xen-4.1", 1), ("vcpus-cold-map", "4.8", "xen-4.1", 1),
             ("vcpus-pin-wait", "4.8", "xen-4.1", 2), ("xsa-58-pin-error", "4.5", "xen-4.1", 2))


def _rate(sc, design: str, bound: int, hp: int) -> tuple[float, object]:
    r = explore(dataclasses.replace(sc, hypercall_preemptions=hp), design, "dfs", bound,
                max_schedules=100_000)
    return r.steps / r.seconds, r


def preemption_points(repeats: int = 3) -> None:
    """Steps/s with hypercall preemption points on (1 answer pending per schedule at most)
    against off, the same search otherwise, alternated ``repeats`` times (median, range)."""
    print()
    print("== hypercall preemption points: steps/s on (hypercall_preemptions 1) vs off (0) ==")
    print(f"  {'scenario':18} {'rel':4} {'bound':>5} {'off steps/s':>12} {'on steps/s':>11} "
          f"{'ratio':>6} {'(range)':>13} {'sched off/on':>13}")
    for name, version, design, bound in RATE_RUNS:
        sc = dataclasses.replace(load_scenario(SCEN / f"{name}.yaml"), version=Release.parse(version))
        offs, ons, ratios = [], [], []
        for _ in range(repeats):
            off, r_off = _rate(sc, design, bound, 0)
            on, r_on = _rate(sc, design, bound, 1)
            offs.append(off)
            ons.append(on)
            ratios.append(on / off)
        print(f"  {name:18} {version:4} {bound:5} {statistics.median(offs):12,.0f} "
              f"{statistics.median(ons):11,.0f} {statistics.median(ratios):6.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}) {r_off.schedules:6}/{r_on.schedules:<6}")


def xsa299() -> None:
    """Each scenarios/xsa-299-*.yaml on each release (faithful as written, and the fixed
    mode): time to the first violation, or to the end of the search when there is none."""
    paths = sorted(SCEN.glob("xsa-299-*.yaml"))
    print()
    print("== XSA-299 scenarios: time to find the bug (goal < 10 s), or to search through ==")
    if not paths:
        print("  (no scenarios/xsa-299-*.yaml)")
    for path in paths:
        sc = load_scenario(path)
        for version in ("4.5", "4.7", "4.8", "4.22"):
            for faithful in (True, False):
                s = dataclasses.replace(sc, version=Release.parse(version), faithful=faithful)
                r = explore(s, None, "dfs", None, max_schedules=100_000)
                what = (f"found after {r.schedules} schedule(s), {r.steps:,} steps"
                        if r.violations else f"nothing in {r.schedules} schedules"
                        + ("" if r.complete else " (incomplete)"))
                print(f"  {sc.name:26} {version:4} {'faithful' if faithful else 'fixed':8} "
                      f"{r.seconds:7.2f} s  {what}")


if __name__ == "__main__":
    main()
