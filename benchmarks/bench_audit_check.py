"""The incremental check's cost per call against the call's own, measured in
the same run.

A seeded fuzz episode (``xensim fuzz``'s calls, every check) gives a call list; it is
replayed on a fresh machine with an incremental auditor, and each call is timed three
ways: the call itself, the auditor's :meth:`~xensim.xen.IncrementalAuditor.check` and
the isolation check of what it recounted (:func:`~xensim.fuzz.isolation_since`). Calls
are grouped by how many frames the check recounted (a few: <= 16; a superpage's 512 or
so; more), each group's median and mean in microseconds, and the check's median over the
call's median. CPU time of this process (time.process_time_ns).

Run: python benchmarks/bench_audit_check.py [CALLS] [DESIGN ...]   (default 1500 xen-4.1)
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from xensim.fuzz import Fuzzer, Setup, execute, isolation_since
from xensim.xen import IncrementalAuditor

#: (label, most frames recounted) of the groups, the last unbounded
GROUPS = (("<= 16 frames", 16), ("17-1,100 frames", 1100), ("more", None))


def call_list(setup: Setup, calls: int) -> list[dict]:
    """The calls of a seeded checked episode of about ``calls`` calls."""
    f = Fuzzer(setup, random.Random("bench"))
    f.start()
    while f.calls < calls:
        f.random_call()
    return f.log


def timed_replay(setup: Setup, ops: list[dict]) -> list[tuple[int, int, int, int]]:
    """(frames recounted, call ns, check ns, isolation ns) of each op replayed on a fresh
    machine, checked after every call (a difference stops the run: there must be none)."""
    m = setup.machine()
    doms = {"dom0": 0}
    auditor = IncrementalAuditor(m)
    clock = time.process_time_ns
    out = []
    for op in ops:
        t0 = clock()
        execute(m, doms, op)
        t1 = clock()
        rep = auditor.check()
        t2 = clock()
        msg = isolation_since(m, auditor)
        t3 = clock()
        assert rep.ok and msg is None, (op, str(rep), msg)
        out.append((rep.frames_checked, t1 - t0, t2 - t1, t3 - t2))
    return out


def _us(ns: list[int]) -> tuple[float, float]:
    return statistics.median(ns) / 1e3, statistics.fmean(ns) / 1e3


def main(argv: list[str]) -> None:
    calls = int(argv[0]) if argv else 1500
    designs = argv[1:] or ["xen-4.1"]
    print(f"the incremental check after each call, {calls:,} fuzzed calls per design "
          f"(CPU microseconds: median / mean)\n")
    print(f"{'design':14} {'group':16} {'calls':>6} {'the call':>15} {'check':>15} "
          f"{'isolation':>15} {'check/call':>10}")
    for design in designs:
        setup = Setup(design=design)
        rows = timed_replay(setup, call_list(setup, calls))
        lo = -1
        for label, hi in GROUPS:
            sel = [r for r in rows if r[0] > lo and (hi is None or r[0] <= hi)]
            lo = hi if hi is not None else lo
            if not sel:
                continue
            (cm, ca), (km, ka), (im, ia) = (_us([r[k] for r in sel]) for k in (1, 2, 3))
            print(f"{design:14} {label:16} {len(sel):>6,} {cm:>7.0f} /{ca:>6.0f} "
                  f"{km:>7.0f} /{ka:>6.0f} {im:>7.0f} /{ia:>6.0f} {km / cm:>9.2f}x")
        total = [sum(r[k] for r in rows) / 1e9 for k in (1, 2, 3)]
        print(f"{design:14} {'all (CPU s)':16} {len(rows):>6,} {total[0]:>15.3f} "
              f"{total[1]:>15.3f} {total[2]:>15.3f} {total[1] / total[0]:>9.2f}x")
    print("\ncheck/call: the check's median over the call's median, the same calls in the "
          "same run; isolation: isolation_since after the check")


if __name__ == "__main__":
    main(sys.argv[1:])
