"""Fuzzing throughput with every check after every call: the incremental
auditor against the full one, per design, measured in the same run.

Each design runs the same seeded episode four ways: ``--audit incremental`` (the
default: what each call changed, a full audit every 1,000 checks and at the end),
``--audit full`` (every frame after every call), the same call list replayed with every
check but the batch check's replay (what that replay costs) and the calls alone (replayed
with no check, no undo journal: the floor the checks sit on). Every check
of docs/fuzzing.md runs in the first two (unchanged, batch, audit, isolation, xen-bug,
the journal's verify with every full audit). The guests' grant calls are in the mix
(the default); a fifth run without them (``--no-grants``) gives the incremental rate
of the calls before grants, and the ratio; a sixth with preemption on (``--preempt
0.02``: 2% of hypercall_preempt_check()s true, the continuations among the calls) gives
its rate beside the incremental one (preemption off) and the ratio.
Rates are calls per CPU second of this process (per core: the figure does not
depend on what else the machine runs), wall-clock beside them.

Run: python benchmarks/bench_fuzz.py [CALLS] [DESIGN ...]   (default 1500, every design)
"""

from __future__ import annotations

import random
import sys
import time

from xensim import design_names
from xensim.fuzz import Fuzzer, Setup, replay_ops


#: the preemption probability of the run with preemption on
PREEMPT = 0.02


def episode(setup: Setup, calls: int) -> tuple[Fuzzer, float, float]:
    """One checked episode of about ``calls`` calls: (fuzzer, CPU s, wall s)."""
    f = Fuzzer(setup, random.Random("bench"))
    c0, w0 = time.process_time(), time.perf_counter()
    f.start()
    while f.calls < calls:
        f.random_call()
    return f, time.process_time() - c0, time.perf_counter() - w0


def calls_alone(setup: Setup, ops: list[dict]) -> float:
    """CPU seconds of replaying ``ops`` with no check at all."""
    c0 = time.process_time()
    v, _ = replay_ops(setup, ops, batch_check=False, finish=False, light=True)
    assert v is None, v
    return time.process_time() - c0


def without_replays(setup: Setup, ops: list[dict]) -> float:
    """CPU seconds of replaying ``ops`` with every check but the batch check's replay of
    each batch request by request (what that replay costs, by difference)."""
    c0 = time.process_time()
    v, _ = replay_ops(setup, ops, batch_check=False, finish=False)
    assert v is None, v
    return time.process_time() - c0


def main(argv: list[str]) -> None:
    calls = int(argv[0]) if argv else 1500
    designs = argv[1:] or list(design_names())
    print(f"fuzzing with every check after every call, {calls:,} calls per design "
          f"(calls per CPU second; wall-clock seconds in brackets)\n")
    print(f"{'design':16} {'incremental':>18} {'full':>18} {'ratio':>7} {'no replays':>11}"
          f" {'calls alone':>12} {'checks':>7} {'full audits':>11} {'no grants':>10} {'ratio':>6}"
          f" {'preempt':>9} {'ratio':>6}")
    for design in designs:
        inc, inc_cpu, inc_wall = episode(Setup(design=design, audit="incremental"), calls)
        full, full_cpu, full_wall = episode(Setup(design=design, audit="full"), calls)
        assert inc.log == full.log, "the same seed makes the same calls in both modes"
        alone = calls_alone(Setup(design=design), inc.log)
        norep = without_replays(Setup(design=design), inc.log)
        ng, ng_cpu, _ = episode(Setup(design=design, audit="incremental", grants=False), calls)
        pre, pre_cpu, _ = episode(Setup(design=design, audit="incremental", preempt=PREEMPT), calls)
        r_inc, r_full, r_ng = inc.calls / inc_cpu, full.calls / full_cpu, ng.calls / ng_cpu
        r_pre = pre.calls / pre_cpu
        print(f"{design:16} {r_inc:>9,.0f}/s ({inc_wall:4.1f}s) {r_full:>9,.0f}/s "
              f"({full_wall:4.1f}s) {r_inc / r_full:>6.1f}x {len(inc.log) / norep:>9,.0f}/s"
              f" {len(inc.log) / alone:>10,.0f}/s {inc.checks:>7,} {inc.full_audits:>11,}"
              f" {r_ng:>8,.0f}/s {r_inc / r_ng:>5.2f}x {r_pre:>7,.0f}/s {r_pre / r_inc:>5.2f}x")
    print("\nratio: incremental / full, the same calls in the same run; no replays: the same "
          "call list with every\ncheck but the batch check's replay of each batch request by "
          "request; calls alone: with no check (the floor);\nno grants: incremental, the guests "
          "making no grant call (ratio: with grants / without);\npreempt: incremental with "
          f"--preempt {PREEMPT} (continuations counted as calls; ratio: on / off)")


if __name__ == "__main__":
    main(sys.argv[1:])
