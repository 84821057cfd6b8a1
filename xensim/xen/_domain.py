"""A domain: what Xen knows of a guest, and the guest's own P2M.

Hypervisor-side state (Xen's ``struct domain``): ``domid``, ``max_pages``,
``tot_pages``, the frames on its page list (``owned``) and which of them still
hold the owner's ``PGC_allocated`` reference (``allocated``), the tables it has
pinned and the superpages it has marked (``marked``: the design host's records,
written by MMUEXT_MARK_SUPER / UNMARK_SUPER through it, never by a design), and its
vCPUs (``vcpus``: each one's root tables and LDT, xen/_baseptr.py).
``owned`` and ``allocated`` are kept by the allocator and memory_op themselves,
never derived from the frame table, so that the auditor can recount the frame
table against them.

Guest-side state: ``p2m`` (gfn -> mfn). A PV guest keeps its own P2M; xensim
updates it on the guest's behalf in populate_physmap and decrease_reservation,
as a PV kernel would straight after the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..mem import FrameMap
from ..mem import RangeSet
from ._baseptr import Vcpu

DOMID_SELF = 0x7FF0


@dataclass
class Domain:
    domid: int
    name: str
    max_pages: int
    tot_pages: int = 0
    owned: RangeSet = field(default_factory=RangeSet)
    allocated: RangeSet = field(default_factory=RangeSet)
    #: page (pdx) -> PGT_ type it is pinned as (MMUEXT_PIN_Lx_TABLE)
    pinned: dict[int, int] = field(default_factory=dict)
    #: first MFNs of the superpages this domain has MMUEXT_MARK_SUPER'd
    marked: set[int] = field(default_factory=set)
    is_dying: bool = False
    p2m: FrameMap = field(default=None)   # sized in __post_init__
    #: its vCPUs, vcpu_id 0 .. n-1 (XEN_DOMCTL_max_vcpus): an int is how many
    vcpus: list[Vcpu] | int = 1

    def __post_init__(self):
        if self.p2m is None:
            self.p2m = FrameMap(max(-(-self.max_pages // 512) * 512, 512))
        if isinstance(self.vcpus, int):
            self.vcpus = [Vcpu(i) for i in range(self.vcpus)]

    @property
    def baseptr(self) -> int | None:
        """vCPU 0's kernel root table (MMUEXT_NEW_BASEPTR's MFN), or None."""
        return self.vcpus[0].guest_table

    @property
    def is_privileged(self) -> bool:
        return self.domid == 0

    # -- state (the machine's inventory, xen/_state.py) ---------------------------------
    def capture(self) -> tuple:
        """Its records as plain values: (domid, tot_pages, max_pages, pinned, marked,
        is_dying, vCPUs (each ``Vcpu.capture()``), owned runs, allocated runs, P2M);
        ``pinned`` and ``marked`` in their iteration order, which :meth:`restore`
        restores too."""
        p2m = self.p2m
        return (self.domid, self.tot_pages, self.max_pages,
                tuple(self.pinned.items()) if self.pinned else (),
                tuple(self.marked) if self.marked else (), self.is_dying,
                tuple([v.capture() for v in self.vcpus]),
                self.owned.snapshot(), self.allocated.snapshot(), (p2m.snapshot(), p2m.count))

    def restore(self, state: tuple, now: tuple | None = None) -> None:
        """Hold exactly the records of ``state`` (a :meth:`capture` of this domain); only
        what differs from ``now`` (its capture now, when the caller has it) is rebuilt."""
        (_, self.tot_pages, self.max_pages, pinned, marked, self.is_dying, vcpus,
         owned, allocated, p2m) = state
        if now is None or now[6] != vcpus:
            for v, st in zip(self.vcpus, vcpus):
                v.restore(st)
        if now is None or now[3] != pinned:
            self.pinned = dict(pinned)
        if now is None or now[4] != marked:
            self.marked = set(marked)
        if now is None or now[7] != owned:
            self.owned.restore(owned)
        if now is None or now[8] != allocated:
            self.allocated.restore(allocated)
        if now is None or now[9] != p2m:
            self.p2m.restore(p2m)

    def summary(self) -> dict:
        return {"domid": self.domid, "name": self.name, "max_pages": self.max_pages,
                "tot_pages": self.tot_pages, "allocated_pages": len(self.allocated),
                "owned_runs": len(self.owned.runs()), "pinned": len(self.pinned),
                "marked": len(self.marked), "p2m_entries": self.p2m.count,
                "baseptr": self.baseptr, "vcpus": len(self.vcpus),
                "dying": self.is_dying}
