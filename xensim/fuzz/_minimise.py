"""Minimisation: :func:`minimise` delta-debugs a violating call list (replayed from
scratch on a fresh machine each time) down to a short one with the same signature,
then shrinks each batch request by request (docs/fuzzing.md, "Reproducers")."""

from __future__ import annotations

import math
import time

from ._runner import replay_ops
from ._setup import Setup

__all__ = ["minimise"]


def _ddmin(items: list, test, budget) -> list:
    """Zeller's delta debugging (complements first): a 1-minimal sublist with ``test`` true."""
    n = 2
    while len(items) >= 2 and budget():
        chunk = math.ceil(len(items) / n)
        for i in range(0, len(items), chunk):
            comp = items[:i] + items[i + chunk:]
            if comp and test(comp):
                items = comp
                n = max(n - 1, 2)
                break
            if not budget():
                return items
        else:
            if n >= len(items):
                break
            n = min(len(items), 2 * n)
    return items


def minimise(setup: Setup, ops: list[dict], signature: tuple, *, rcs: list | None = None,
             max_seconds: float = 120.0, batch_check: bool = True, tolerate=None,
             tick=None) -> list[dict]:
    """A short call list (delta debugging, 1-minimal unless the time runs out) whose replay
    from scratch gives a violation with ``signature``; batches are shrunk request by request
    too. ``tolerate``: other known violations that may happen on the way; ``tick()`` after
    each replay (a progress bar).

    A replay stops at the first violation; it tears the guests down at its end only for
    a violation that a teardown can give (of destroy_domain, or of the teardown).
    Crashes, recorded Xen bugs and zombies are first minimised with light replays (no
    audit, no batch replays: several times faster); the result must then reproduce with every
    check, else the minimisation is redone with every check."""
    deadline = time.monotonic() + max_seconds
    # the teardown (every guest destroyed, the heap and a full audit) can only end in a
    # violation of a destroy_domain or of the teardown itself: other replays skip it
    finish = signature[1] in ("destroy_domain", "teardown")

    def tol(v):
        return v.signature != signature and tolerate is not None and tolerate(v)

    def budget() -> bool:
        return time.monotonic() < deadline

    def shrink(ops: list[dict], light: bool) -> list[dict]:
        # only the batch and unchanged checks need the batch replays (twice the work)
        bc = batch_check and not light and signature[0] in ("batch", "unchanged")

        def fails(cand: list[dict]) -> bool:
            v, _ = replay_ops(setup, cand, batch_check=bc, tolerate=tol, light=light,
                              finish=finish)
            if tick is not None:
                tick()
            return v is not None and v.signature == signature

        if not fails(ops):
            return ops
        # refused calls must leave no trace: try dropping them all at once first
        if rcs is not None:
            keep = [op for i, op in enumerate(ops)
                    if i == len(ops) - 1 or i >= len(rcs) or rcs[i] is None or rcs[i] >= 0]
            if len(keep) < len(ops) and fails(keep):
                ops = keep
        ops = _ddmin(list(ops), fails, budget)
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

            items = _ddmin(list(op[key]), lambda it: fails(with_items(it)), budget)
            ops = with_items(items)
        return ops

    if signature[0] in ("crash", "xen-bug", "zombie"):
        small = shrink(list(ops), light=True)
        v, _ = replay_ops(setup, small, batch_check=batch_check, tolerate=tol)
        if v is not None and v.signature == signature:
            return small
    return shrink(list(ops), light=False)
