"""The tracer's event tree: what one hypercall did, as nodes, and the lines it becomes.

A :class:`Call` is one hypercall: its decoded head and requests and a root
:class:`Node` whose children are the events the tracer saw while it ran (a
request of a batch, an entry validated or dropped, a superpage word changed, a
frame word changed, a range of frames, a free, an allocation, a path taken, a
note). A :class:`Line` is one line of the narration.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Node:
    """One event. ``kind``: request, batch, entry, spage, frame, range, free, alloc,
    path, note, preempt, rollback, untraced (see :class:`~._narrate.Narrator`)."""
    kind: str
    data: dict = field(default_factory=dict)
    children: list["Node"] = field(default_factory=list)


@dataclass
class Call:
    caller: int
    number: int
    args: tuple
    head: str                               # "mmu_update dom1: ..." (one request) / "mmu_update dom1: 2 requests"
    requests: list[str]                     # each request decoded (before the call)
    node: Node = field(default_factory=lambda: Node("call"))
    tot_pages: dict = field(default_factory=dict)
    gpfns: list | None = None               # populate_physmap's GPFNs (the list is overwritten)
    stats0: dict = field(default_factory=dict)          # the design's stats at the call's start
    stats_first_request: dict | None = None             # ... when its first ordinary request began
    grants: list = field(default_factory=list)           # grant_table_op: (granter, ref) each op names
    vcpu: int = 0                                        # the calling vCPU
    old_guest_table: int | None = None                   # its old_guest_table when the call began
    done_before: int = 0                                 # a continuation's count when it began
    finishes_old: bool = False                           # mmu_update / mmuext_op: puts old_guest_table first


@dataclass
class Line:
    depth: int
    text: str
    kind: str = "detail"                    # op, call, request, detail, result, note


def path_nodes(counted: bool, stats0: dict, stats: dict) -> list[Node]:
    """The slow / fast paths a design took between two readings of its stats; ``counted``:
    the design keeps a mapping count (its ``keeps_count``)."""
    delta = {k: stats.get(k, 0) - stats0.get(k, 0) for k in stats}
    texts = {
        "slow_get": ("slow path: 0 -> 1, took the 512 frames' references" if counted else
                     "slow path: no count, every mapping takes the 512 frames' references"),
        "slow_put": ("slow path: 1 -> 0, dropped the 512 frames' references" if counted else
                     "slow path: no count, every unmapping drops the 512 frames' references"),
        "fast_get": "fast path: count + 1, no frame reference taken",
        "fast_put": "fast path: count - 1, no frame reference dropped",
    }
    out = []
    for k, text in texts.items():
        if delta.get(k):
            times = f" (x{delta[k]})" if delta[k] > 1 else ""
            head, _, rest = text.partition(":")
            out.append(Node("path", {"text": f"{head}{times}:{rest}"}))
    return out
