"""Preemption in a fuzz campaign: :class:`FuzzPreemption`, the machine's preemption
source (``Machine.preempt``, the one ``hypercall_preempt_check()`` port) while the fuzzer
runs, and :class:`Pending`, a preempted call's continuation left on its vCPU.

Which checks answer true is part of each call (its ``preempt`` list: the ordinals, from
1, of the call's ``hypercall_preempt_check()`` questions that answered true), so that a
replay of the call list is exact whatever was removed before it. While the fuzzer
generates, each question answers true with probability ``probability`` from a generator
seeded from the episode's own (reproducible, the same on any worker) and the ordinals
that did are written into the call; a replay answers from the list. The batch check's
and the refused-call check's replays ask with preemption off (every answer false), as do
calls without a list.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass

from ..xen import Continuation, Preemption

__all__ = ["FuzzPreemption", "Pending"]


class FuzzPreemption(Preemption):
    """``hypercall_preempt_check()`` of a fuzzed machine: per call, from the call's list of
    ordinals (:meth:`start`), or drawn with ``probability`` and recorded (``rng`` given).

    It is a :class:`~xensim.xen.Preemption` whose ``pending`` is never None (the loops
    always ask, the accelerators with a preemption point stand aside), so a call runs the
    same path whether or not one of its questions answers true."""

    def __init__(self, probability: float, rng: random.Random | None = None):
        super().__init__("random", probability=probability, seed=0)
        #: draws the answers while generating (None: replaying, every answer from a list)
        self.draw = rng
        self._plan: frozenset = frozenset()
        self._asked = 0
        self._off = 0
        self._drawing = False
        #: the ordinals that answered true in the current call
        self.hits: list[int] = []

    def start(self, plan) -> None:
        """A new call: its questions are counted from 1; ``plan`` (the call's ``preempt``
        list) says which answer true; None while generating: drawn (and recorded in
        ``hits``)."""
        self._plan = frozenset(plan or ())
        self._asked = 0
        self.hits = []
        self._drawing = plan is None and self.draw is not None

    @contextmanager
    def off(self):
        """Every question answers false inside (the checks' replays)."""
        self._off += 1
        try:
            yield
        finally:
            self._off -= 1

    def hypercall_preempt_check(self) -> bool:
        self.checks += 1
        if self._off:
            return False
        self._asked += 1
        if self._drawing:
            hit = self.draw.random() < self.probability
        else:
            hit = self._asked in self._plan
        if hit:
            self.preemptions += 1
            self.hits.append(self._asked)
        return hit

    def __str__(self) -> str:
        return f"fuzzed, probability {self.probability:g} per check"

    def capture(self) -> tuple:
        return (self.checks, self.preemptions, None)


@dataclass
class Pending:
    """A preempted call's continuation on its vCPU: what Xen wrote back into the vCPU's
    registers (``cont``), the guest's count of requests done (``done``: the list the
    continued call adds to) and the number of requests of the call (``n``)."""
    cont: Continuation
    done: list | None
    n: int
    #: the op's label (what the continue is counted under)
    label: str


#: while a continuation is pending, the chance that the next action is a vCPU with one
#: re-entering it (else any other action, from any vCPU or domain, comes first)
RESUME = 0.35
#: the chance that a guest, when its turn comes, never re-enters it (its vCPU goes on
#: with other calls; the put or partial table is left to later calls and destruction)
ABANDON = 0.1


def interleave(fuzzer, r: random.Random) -> bool:
    """Maybe act on a pending continuation (the fuzzer's ``pending``): re-enter one
    (a ``continue`` op from its vCPU), or let its guest forget it. True if it acted."""
    m = fuzzer.m
    keys = sorted(k for k in fuzzer.pending if k[0] in m.domains and not m.domains[k[0]].is_dying)
    if not keys or r.random() >= RESUME:
        return False
    domid, vcpu = r.choice(keys)
    if r.random() < ABANDON:
        del fuzzer.pending[(domid, vcpu)]
        return False
    fuzzer.step({"op": "continue", "domain": fuzzer.name_of(domid),
                 **({"vcpu": vcpu} if vcpu else {})})
    return True
