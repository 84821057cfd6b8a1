"""Minimisation: :func:`minimise_steps`, delta debugging of a violating call list as a
generator of trials (each a replay from scratch on a fresh machine), which
:func:`minimise` runs one after the other in this process and a split campaign runs on
its workers (xensim.fuzz._split); either way the shortest list found is the same
(docs/fuzzing.md, "Minimisation and the reproducer")."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..xen import ERESTART
from ._runner import replay_ops
from ._setup import Setup

__all__ = ["Trial", "minimise", "minimise_steps", "run_steps", "trial_result"]


@dataclass(frozen=True)
class Trial:
    """One replay the minimiser asks for: ``ops`` from scratch on a fresh machine of the
    campaign's setup; ``light``: only crashes, recorded Xen bugs and zombies checked (no
    auditor, no journal); ``batch_check``: batches replayed request by request;
    ``finish``: every guest torn down at the end, the heap and a full audit checked."""
    ops: list
    light: bool = False
    batch_check: bool = True
    finish: bool = False


def trial_result(setup: Setup, trial: Trial, signature: tuple, tolerate=None) -> tuple[bool, list]:
    """Replay ``trial``: (it ends in a violation of ``signature``, the rc of each call
    made). The other violations ``tolerate`` lets pass are tolerated on the way."""
    def tol(v):
        return v.signature != signature and tolerate is not None and tolerate(v)
    v, run = replay_ops(setup, trial.ops, batch_check=trial.batch_check, tolerate=tol,
                        light=trial.light, finish=trial.finish)
    return v is not None and v.signature == signature, run.rcs


def _ddmin_steps(items: list, make, budget):
    """Zeller's delta debugging (complements first), as rounds: each round yields the
    complements of the current chunking as trials and is sent the index of the first of
    them that fails (None: none did, or the time ran out). Returns a 1-minimal sublist
    (unless the time ran out)."""
    n = 2
    while len(items) >= 2 and budget():
        chunk = math.ceil(len(items) / n)
        comps = [items[:i] + items[i + chunk:] for i in range(0, len(items), chunk)]
        k = yield [make(c) for c in comps]
        if k is not None:
            items = comps[k]
            n = max(n - 1, 2)
            continue
        if not budget() or n >= len(items):
            break
        n = min(len(items), 2 * n)
    return items


def _shrink_steps(ops: list[dict], signature: tuple, light: bool, rcs, batch_check: bool,
                  finish: bool, budget):
    # only the batch and unchanged checks need the batch replays (twice the work)
    bc = batch_check and not light and signature[0] in ("batch", "unchanged")

    def make(cand: list[dict]) -> Trial:
        return Trial(cand, light, bc, finish)

    if (yield [make(ops)]) is None:
        return ops
    # refused calls must leave no trace: try dropping them all at once first (not a
    # preempted call, which leaves its partial state, nor a continued one)
    if rcs is not None:
        keep = [op for i, op in enumerate(ops)
                if i == len(ops) - 1 or i >= len(rcs) or rcs[i] is None or rcs[i] >= 0
                or rcs[i] == -ERESTART or op["op"] == "continue"]
        if len(keep) < len(ops) and (yield [make(keep)]) is not None:
            ops = keep
    ops = yield from _ddmin_steps(list(ops), make, budget)
    # then each batch's requests (or extents)
    for i in range(len(ops)):
        op = ops[i]
        key = {"mmu_update": "reqs", "mmuext_op": "ops"}.get(op["op"])
        if key is None and op["op"] == "memory_op" and op.get("extents") and "nr" not in op:
            key = "extents"
        if key is None or len(op[key]) < 2 or not budget():
            continue

        def with_items(items, i=i, key=key):
            return ops[:i] + [{**ops[i], key: items}] + ops[i + 1:]

        items = yield from _ddmin_steps(list(op[key]), lambda it: make(with_items(it)), budget)
        ops = with_items(items)
    # then each call's preemption points: the call without them, else a 1-minimal subset
    # (and the calls again, if a point went: continuations it left may be needed no more)
    before = ops
    for i in range(len(ops)):
        if "preempt" not in ops[i] or not budget():
            continue
        without = ops[:i] + [{k: v for k, v in ops[i].items() if k != "preempt"}] + ops[i + 1:]
        if (yield [make(without)]) is not None:
            ops = without
            continue

        def with_points(points, i=i):
            return ops[:i] + [{**ops[i], "preempt": points}] + ops[i + 1:]

        points = yield from _ddmin_steps(list(ops[i]["preempt"]),
                                         lambda p: make(with_points(p)), budget)
        ops = with_points(points)
    if ops != before:
        ops = yield from _ddmin_steps(list(ops), make, budget)
    return ops


def minimise_steps(ops: list[dict], signature: tuple, *, rcs: list | None = None,
                   batch_check: bool = True, budget=None):
    """The minimisation of ``ops`` (a violation of ``signature`` at its last call) as a
    generator of rounds: each round is a list of :class:`Trial` s, and the generator is
    sent the index of the first trial of the round whose replay shows a violation with
    ``signature`` (None: none does, or they were not all tried: ``budget()`` became
    false). Trying a round's trials in order and stopping at the first that fails is
    the sequential search; trying them at once and taking the lowest failing index gives
    the same answer. It returns the shortest list found (``StopIteration.value``).

    Delta debugging, 1-minimal unless ``budget()`` turns false: all refused calls at
    once, chunks of calls, then the requests of every remaining batch, then the preemption
    points of every call (``preempt``). A replay stops at
    the first violation; it tears the guests down at its end only for a violation that
    a teardown can give (of destroy_domain, or of the teardown). Crashes, recorded Xen
    bugs and zombies are first minimised with light replays (no audit, no batch replays:
    several times faster); the result must then reproduce with every check, else the
    minimisation is redone with every check."""
    budget = budget or (lambda: True)
    # the teardown (every guest destroyed, the heap and a full audit) can only end in a
    # violation of a destroy_domain or of the teardown itself: other replays skip it
    finish = signature[1] in ("destroy_domain", "teardown")
    if signature[0] in ("crash", "xen-bug", "zombie"):
        small = yield from _shrink_steps(list(ops), signature, True, rcs, batch_check,
                                         finish, budget)
        if (yield [Trial(small, False, batch_check, True)]) is not None:
            return small
    return (yield from _shrink_steps(list(ops), signature, False, rcs, batch_check, finish,
                                     budget))


def run_steps(steps, fails, budget=None, tick=None):
    """Run a :func:`minimise_steps` generator in this process: each round's trials in
    order until one fails (``fails(trial) -> bool``; ``tick()`` after each), or until
    ``budget()`` is false after one; its result."""
    budget = budget or (lambda: True)
    try:
        trials = next(steps)
        while True:
            first = None
            for i, trial in enumerate(trials):
                failed = fails(trial)
                if tick is not None:
                    tick()
                if failed:
                    first = i
                    break
                if not budget():
                    break
            trials = steps.send(first)
    except StopIteration as stop:
        return stop.value


def minimise(setup: Setup, ops: list[dict], signature: tuple, *, rcs: list | None = None,
             max_seconds: float = 120.0, batch_check: bool = True, tolerate=None,
             tick=None) -> list[dict]:
    """A short call list whose replay from scratch gives a violation with ``signature``
    (:func:`minimise_steps`, its trials one after the other, for at most
    ``max_seconds``). ``tolerate``: other known violations that may happen on the way;
    ``tick()`` after each replay (a progress bar)."""
    deadline = time.monotonic() + max_seconds

    def budget() -> bool:
        return time.monotonic() < deadline

    steps = minimise_steps(ops, signature, rcs=rcs, batch_check=batch_check, budget=budget)
    return run_steps(steps, lambda t: trial_result(setup, t, signature, tolerate)[0], budget,
                     tick)
