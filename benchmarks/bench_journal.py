"""The fuzzer's undo journal: its own CPU time per done call, per refused call
and per batch, beside the checked episode it runs in (measured in the same run).

One seeded episode per design, with every check (as ``xensim fuzz``), whose runner's
journal is a :class:`~xensim.fuzz.CallJournal` that times its own methods: ``commit``
after a done call; ``changed`` and ``forget`` after a refused one; per batch the batch
check's ``capture``, ``rollback``, ``differs_from`` and ``settle`` (the replayed requests
are not the journal's and are not counted). CPU seconds of this process.

Run: python benchmarks/bench_journal.py [CALLS] [DESIGN ...]   (default 1500, xen-4.1 none)
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter

from xensim.fuzz import CallJournal, Fuzzer, Setup

_TIMED = ("commit", "changed", "forget", "capture", "rollback", "differs_from", "settle")


class TimedJournal(CallJournal):
    """A CallJournal that adds the CPU time of each outermost call of its methods."""

    def __init__(self, m):
        self.cpu: Counter = Counter()
        self.calls: Counter = Counter()
        self._depth = 0
        super().__init__(m)


def _timed(name: str):
    plain = getattr(CallJournal, name)

    def method(self, *args, **kwargs):
        if self._depth:
            return plain(self, *args, **kwargs)
        self._depth += 1
        t0 = time.process_time()
        try:
            return plain(self, *args, **kwargs)
        finally:
            self.cpu[name] += time.process_time() - t0
            self.calls[name] += 1
            self._depth -= 1
    method.__name__ = name
    return method


for _name in _TIMED:
    setattr(TimedJournal, _name, _timed(_name))


def episode(design: str, calls: int) -> tuple[Fuzzer, TimedJournal, float]:
    f = Fuzzer(Setup(design=design, audit="incremental"), random.Random("bench"))
    f.journal.detach()
    j = f.journal = TimedJournal(f.m)
    c0 = time.process_time()
    f.start()
    while f.calls < calls:
        f.random_call()
    return f, j, time.process_time() - c0


def main(argv: list[str]) -> None:
    calls = int(argv[0]) if argv else 1500
    designs = argv[1:] or ["xen-4.1", "none"]
    print(f"the undo journal's own CPU time in a checked episode of {calls:,} calls "
          f"(microseconds each)\n")
    print(f"{'design':10} {'episode/call':>12} {'done':>6} {'commit':>7} {'refused':>8} "
          f"{'changed':>8} {'batches':>8} {'per batch':>10} {'journal share':>14}")
    for design in designs:
        f, j, cpu = episode(design, calls)
        done = j.calls["commit"]
        refused = j.calls["forget"]
        batches = j.calls["settle"]
        batch = sum(j.cpu[k] for k in ("capture", "rollback", "differs_from", "settle"))
        total = sum(j.cpu.values())
        print(f"{design:10} {cpu / f.calls * 1e6:>12,.0f} {done:>6} "
              f"{j.cpu['commit'] / max(done, 1) * 1e6:>7.1f} {refused:>8} "
              f"{(j.cpu['changed'] + j.cpu['forget']) / max(refused, 1) * 1e6:>8.1f} "
              f"{batches:>8} {batch / max(batches, 1) * 1e6:>10.1f} {total / cpu:>13.1%}")
    print("\ndone: calls committed (settle's commit not counted); refused: changed + forget; "
          "per batch: capture,\nrollback, differs_from and settle of one batch check; "
          "journal share: of the episode's CPU time")


if __name__ == "__main__":
    main(sys.argv[1:])
