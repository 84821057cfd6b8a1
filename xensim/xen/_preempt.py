"""When Xen's ``hypercall_preempt_check()`` answers true: the machine's preemption source.

Xen asks ``hypercall_preempt_check()`` (softirq pending, or the scheduler wants the CPU)
at fixed points of its long loops and, when it answers true, stops with -ERESTART
(4.1: -EAGAIN) and leaves a hypercall continuation. What makes it answer true is the
rest of the host, which xensim does not model; :class:`Preemption` stands for it:

* ``never`` (the default): every check answers false, and the loops do not even ask
  (``pending`` is None: a run without preemption costs what it did before);
* ``every N``: every N-th check answers true (the first N-1 false);
* ``random P [seed S]``: each check answers true with probability P, from a generator
  seeded with S (default 0), so a run is repeatable;
* ``at N [N ...]``: the checks numbered N (from 1, counted from when the source was set)
  answer true, every other false: a replay preempts exactly where it says.
* an ``answer`` function (no config form: the race explorer's, which branches on each
  answer and records it in the schedule) answers every check, whatever the mode.

The check points are Xen's own, per release (docs/xen-facts.md, section 3b):
``alloc_l2_table``'s and ``free_l2_table``'s loops over their entries (4.22: those of
``promote_l2_table``, ``promote_l3_table``, ``demote_l2_table`` and ``demote_l3_table``),
and the loops of ``do_mmuext_op`` and ``do_mmu_update`` between two requests. (A table
without a check of its own is preempted when the table one level down is, or when a
contended ``__get_page_type`` / ``__put_page_type`` retries, which a sequential run never
does.)
"""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass, field

__all__ = ["Preemption", "parse_preemption", "PREEMPT_MODES", "ERESTART", "Continuation"]

#: what a preempted (de)validation and a preempted hypercall answer inside Xen: -ERESTART
#: (85, Xen's public errno.h); Xen 4.1 spells the same thing -EAGAIN. The guest never sees
#: it: the call becomes a continuation (:class:`Continuation`)
ERESTART = errno.ERESTART


class Continuation(int):
    """What a preempted hypercall returns to its vCPU: -ERESTART, carrying the arguments
    Xen's ``hypercall_create_continuation`` wrote back into the guest's registers
    (``number``, ``args``, ``kwargs``): the vCPU re-enters the hypercall with them, as
    Linux's hypercall page makes it (``GuestKernel`` re-issues it; a hostile guest may not)."""

    number: int
    args: tuple
    kwargs: dict

    def __new__(cls, number: int, args: tuple, kwargs: dict | None = None) -> "Continuation":
        c = super().__new__(cls, -ERESTART)
        c.number, c.args, c.kwargs = number, args, dict(kwargs or {})
        return c

    def __repr__(self) -> str:
        return f"Continuation(hypercall {self.number}, {len(self.args)} args)"

#: the modes a ``hypervisor.preempt`` value starts with
PREEMPT_MODES = ("never", "every", "random", "at")


@dataclass
class Preemption:
    """The answer of ``hypercall_preempt_check()``: never, every ``every``-th check, with
    ``probability`` from a generator seeded ``seed``, or at the checks numbered in ``at``.
    ``checks`` and ``preemptions`` count the questions asked and the true answers."""
    mode: str = "never"
    every: int = 0
    probability: float = 0.0
    seed: int = 0
    at: tuple = ()
    #: when set, what every check answers (``answer()``): the explorer's port
    answer: object = field(default=None, repr=False, compare=False)
    checks: int = 0
    preemptions: int = 0
    _rng: random.Random | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.mode not in PREEMPT_MODES:
            raise ValueError(f"unknown preemption mode {self.mode!r}; "
                             f"choose from {', '.join(PREEMPT_MODES)}")
        if self.mode == "every" and self.every < 1:
            raise ValueError(f"every N needs N >= 1, got {self.every}")
        if self.mode == "random":
            if not 0.0 <= self.probability <= 1.0:
                raise ValueError(f"random P needs 0 <= P <= 1, got {self.probability}")
            self._rng = random.Random(self.seed)
        if self.mode == "at":
            if not self.at or min(self.at) < 1:
                raise ValueError(f"at N [N ...] needs check numbers >= 1, got {list(self.at)}")
            self.at = tuple(sorted(set(self.at)))

    #: the check the loops call (``hypercall_preempt_check``), or None when it never
    #: answers true: ``if (p := m.preempt.pending) is not None and p(): ...`` (an attribute
    #: kept by ``__setattr__``, as every hypercall reads it)
    pending = None

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        if name in ("mode", "answer"):
            d = self.__dict__
            object.__setattr__(self, "pending",
                               None if d.get("mode") == "never" and d.get("answer") is None
                               else self.hypercall_preempt_check)

    def hypercall_preempt_check(self) -> bool:
        self.checks += 1
        if self.answer is not None:
            hit = bool(self.answer())
        elif self.mode == "every":
            hit = self.checks % self.every == 0
        elif self.mode == "random":
            hit = self._rng.random() < self.probability
        elif self.mode == "at":
            hit = self.checks in self.at
        else:
            hit = False
        if hit:
            self.preemptions += 1
        return hit

    def __str__(self) -> str:
        if self.answer is not None:
            return "answered by the explorer"
        if self.mode == "every":
            return f"every {self.every}"
        if self.mode == "random":
            return f"random {self.probability:g} seed {self.seed}"
        if self.mode == "at":
            return "at " + " ".join(map(str, self.at))
        return "never"

    def capture(self) -> tuple:
        """Its progress (the counts and the generator's state): the machine's inventory."""
        return (self.checks, self.preemptions,
                self._rng.getstate() if self._rng is not None else None)

    def restore(self, state: tuple) -> None:
        self.checks, self.preemptions, rng = state
        if rng is not None:
            self._rng.setstate(rng)


def parse_preemption(text: str) -> Preemption:
    """``"never"``, ``"every 64"``, ``"random 0.01"``, ``"random 0.01 seed 7"``,
    ``"at 1 512"`` -> :class:`Preemption`; ValueError with what is wrong."""
    words = str(text).split()
    usage = "write never, every N, random P [seed S], or at N [N ...]"
    if not words or words[0] not in PREEMPT_MODES:
        raise ValueError(f"{text!r}: {usage}")
    mode = words[0]
    try:
        if mode == "never" and len(words) == 1:
            return Preemption()
        if mode == "every" and len(words) == 2:
            return Preemption("every", every=int(words[1], 0))
        if mode == "random" and len(words) in (2, 4) and (len(words) == 2 or words[2] == "seed"):
            return Preemption("random", probability=float(words[1]),
                              seed=int(words[3], 0) if len(words) == 4 else 0)
        if mode == "at" and len(words) >= 2:
            return Preemption("at", at=tuple(int(w, 0) for w in words[1:]))
    except ValueError as e:
        if "needs" in str(e):
            raise ValueError(f"{text!r}: {e}") from None
        raise ValueError(f"{text!r}: {usage}") from None
    raise ValueError(f"{text!r}: {usage}")
