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

With ``--against TREE`` (a checkout of another commit, e.g. a ``git worktree add --detach``;
repeatable) each design's incremental episode runs in this tree and in each TREE, in
turn, ``--repeats`` times (a fresh process each, alternated, so that a busy machine
slows all alike), and the table gives each tree's median rate, this tree's ratio to it
(the median and the spread, min-max, of the ratios of runs made side by side) and, with
``--goal TREE`` (one of them), each design's rate over that tree's xen-4.1 rate against
``--goal-ratio`` (default 0.71: 2,000 calls/s where the baseline 667cec7's xen-4.1 made
2,822 on a quiet machine), met when the median ratio is at least that.

Run: python benchmarks/bench_fuzz.py [CALLS] [DESIGN ...] [--against TREE ...] [--goal TREE]
     [--repeats N] [--goal-ratio R]   (default 1500 calls, every design)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


#: one incremental episode in a fresh process of a tree (any commit's API: Fuzzer, Setup)
CHILD = """
import random, sys, time
from xensim.fuzz import Fuzzer, Setup
f = Fuzzer(Setup(design=sys.argv[1], audit="incremental"), random.Random("bench"))
c0 = time.process_time()
f.start()
while f.calls < int(sys.argv[2]):
    f.random_call()
print(f.calls / (time.process_time() - c0))
"""


def child_rate(tree: Path, design: str, calls: int) -> float:
    """Calls per CPU second of the incremental episode of ``design`` in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", CHILD, design, str(calls)], cwd=tree, env=env,
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def compare(trees: list[Path], goal: Path | None, designs: list[str], calls: int,
            repeats: int, goal_ratio: float) -> None:
    """Each design's incremental rate in this tree and in ``trees``, alternated."""
    here = Path(__file__).resolve().parent.parent
    names = ["this tree"] + [str(t) for t in trees]
    every = [here] + trees
    todo = designs if goal is None or "xen-4.1" in designs else designs + ["xen-4.1"]
    rates = {(d, t): [] for d in todo for t in range(len(every))}
    for _ in range(repeats):
        for d in todo:
            for t, tree in enumerate(every):
                rates[d, t].append(child_rate(tree, d, calls))
    print(f"\nthe same episode ({calls:,} calls, incremental) in each tree, {repeats} alternated "
          f"runs each (median calls per CPU second; ratio: this tree's, the median and "
          f"the spread of the runs side by side)")
    for t, name in enumerate(names):
        print(f"  [{t}] {name}")
    head = f"{'design':16} " + " ".join(f"{'[' + str(t) + ']':>8}" for t in range(len(every)))
    head += " " + " ".join(f"{'[0]/[' + str(t) + ']':>20}" for t in range(1, len(every)))
    if goal is not None:
        head += f" {'/ goal xen-4.1':>22}"
    print(head)
    g = every.index(goal.resolve()) if goal is not None else None
    for d in designs:
        row = f"{d:16} " + " ".join(f"{statistics.median(rates[d, t]):>8,.0f}"
                                    for t in range(len(every)))
        for t in range(1, len(every)):
            r = [a / b for a, b in zip(rates[d, 0], rates[d, t])]
            row += f" {statistics.median(r):>7.2f}x ({min(r):.2f}-{max(r):.2f})"
        if g is not None:
            r = [a / b for a, b in zip(rates[d, 0], rates["xen-4.1", g])]
            ok = "met" if statistics.median(r) >= goal_ratio else "not met"
            row += f" {statistics.median(r):>5.2f}x ({min(r):.2f}-{max(r):.2f}) {ok}"
        print(row)
    if g is not None:
        print(f"\n/ goal xen-4.1: this tree's rate over [{g}]'s xen-4.1 rate in the same repeat; "
              f"the goal, {goal_ratio:.2f}x, is met when the median is at least that")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("calls", nargs="?", type=int, default=1500)
    ap.add_argument("designs", nargs="*")
    ap.add_argument("--against", action="append", type=Path, default=[])
    ap.add_argument("--goal", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--goal-ratio", type=float, default=2000 / 2822)
    ap.add_argument("--no-table", action="store_true", help="only the comparison")
    args = ap.parse_args(argv)
    calls = args.calls
    designs = args.designs or list(design_names())
    if args.goal is not None and args.goal.resolve() not in [t.resolve() for t in args.against]:
        args.against.append(args.goal)
    if not args.no_table:
        table(calls, designs)
    if args.against:
        compare([t.resolve() for t in args.against], args.goal, designs, calls, args.repeats,
                args.goal_ratio)


def table(calls: int, designs: list[str]) -> None:
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
