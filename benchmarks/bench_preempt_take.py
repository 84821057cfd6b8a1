"""What a preemptible 0 -> 1 costs: xen-4.1-preemptible against xen-4.1 in the same run.

A guest maps 64 superpages (one mmu_update each, through the guest kernel, which
re-issues continuations) and unmaps them, 8 rounds: every mapping is a 0 -> 1 (the slow
path). For each preemption source (``hypervisor.preempt``: never, every 64 checks,
random 1%), each design runs the same churn ``--repeat`` times, alternating; the table
gives the median time per 0 -> 1 (its unmapping included) and the ratio preemptible /
xen-4.1 of the medians (its spread: the least and greatest ratio of the runs paired in
order), the mmu_update calls per 0 -> 1 (continuations included),
hypercall_preempt_check() calls per 0 -> 1 while mapping, and the design's superpage-table
entry (bytes per 2 MiB with RAM).

The time is the simulator's: preempting, the preemptible loop takes its frames one by
one (a check before each), where a take that nobody can preempt is one vectorised run of
512; in Xen both loops take the frames one by one and the preemptible one adds a check per
frame and a hypercall entry per preemption, which the counts columns give.

Run: nice -n 10 python benchmarks/bench_preempt_take.py [--repeat 5] [--superpages 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from xensim import GuestKernel, Machine, MemoryMap
from xensim.designs import load_design_file

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ("xen-4.1", "xen-4.1-preemptible")
SOURCES = ("never", "every 64", "random 0.01 seed 1")
VA = 1 << 39


def calls(m: Machine) -> int:
    """Hypercalls issued so far (every number)."""
    return sum(s["calls"] for s in m.hypercall.as_dict().values())


def churn(design: str, preempt: str, superpages: int, rounds: int) -> dict:
    """One run: seconds of the churn, hypercalls, checks, slow gets, bytes per superpage."""
    m = Machine(MemoryMap([(0, (superpages * 2 + 64) << 20)], name="bench"), "none",
                superpage=design)
    k = GuestKernel(m, m.create_domain("guest", superpages * 512 + 256))
    assert k.populate(0, superpages * 512) == superpages and k.build([VA]) == 0
    mfns = k.superpage_mfns(0, superpages)
    assert k.ensure_table(VA, 2)[1] == 0
    m.set_preempt(preempt)
    dt = mapping = checks = 0
    for _ in range(rounds):
        calls0, checks0 = calls(m), m.preempt.checks
        t = time.perf_counter()
        for i, mfn in enumerate(mfns):
            assert k.map_superpages(VA + (i << 21), [mfn]) == 0
        dt += time.perf_counter() - t
        mapping += calls(m) - calls0
        checks += m.preempt.checks - checks0
        t = time.perf_counter()
        assert k.unmap(VA, superpages) == 0
        dt += time.perf_counter() - t
    slow = m.superpage.stats["slow_get"]
    assert slow == superpages * rounds
    return {"seconds": dt, "calls": mapping, "checks": checks, "slow": slow,
            "bytes": 8 * m.superpage.words_per_entry}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--superpages", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    a = ap.parse_args()
    load_design_file(ROOT / "examples" / "designs" / "preemptible_take.py")
    for d in DESIGNS:                                   # warm up (imports, first paths)
        churn(d, "every 64", 2, 1)
    print(f"{a.superpages} superpages x {a.rounds} rounds, {a.repeat} runs of each design, "
          f"alternating")
    print(f"{'preempt':<20} {'design':<21} {'us/0->1':>9} {'ratio':>6} {'spread':>13} "
          f"{'calls/0->1':>10} {'checks/0->1':>11} {'B/2MiB':>6}")
    for preempt in SOURCES:
        runs = {d: [] for d in DESIGNS}
        for _ in range(a.repeat):
            for d in DESIGNS:
                runs[d].append(churn(d, preempt, a.superpages, a.rounds))
        base = statistics.median(r["seconds"] for r in runs[DESIGNS[0]])
        for d in DESIGNS:
            rs = runs[d]
            med = statistics.median(r["seconds"] for r in rs)
            pair = [r["seconds"] / b["seconds"] for r, b in zip(rs, runs[DESIGNS[0]])]
            r0 = rs[0]
            print(f"{preempt:<20} {d:<21} {1e6 * med / r0['slow']:>9.1f} {med / base:>6.2f} "
                  f"{min(pair):>6.2f}-{max(pair):<6.2f} {r0['calls'] / r0['slow']:>10.2f} "
                  f"{r0['checks'] / r0['slow']:>11.1f} {r0['bytes']:>6.0f}")


if __name__ == "__main__":
    main()
