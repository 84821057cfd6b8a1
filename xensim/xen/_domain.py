"""A domain: what Xen knows of a guest, and the guest's own P2M.

Hypervisor-side state (Xen's ``struct domain``): ``domid``, ``max_pages``,
``tot_pages``, the frames on its page list (``owned``) and which of them still
hold the owner's ``PGC_allocated`` reference (``allocated``), the tables it has
pinned and the superpages it has marked (``marked``: the design host's records,
written by MMUEXT_MARK_SUPER / UNMARK_SUPER through it, never by a design).
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
    #: the root table of its (single) vCPU: MMUEXT_NEW_BASEPTR's MFN
    baseptr: int | None = None
    is_dying: bool = False
    p2m: FrameMap = field(default=None)   # sized in __post_init__

    def __post_init__(self):
        if self.p2m is None:
            self.p2m = FrameMap(max(-(-self.max_pages // 512) * 512, 512))

    @property
    def is_privileged(self) -> bool:
        return self.domid == 0

    def summary(self) -> dict:
        return {"domid": self.domid, "name": self.name, "max_pages": self.max_pages,
                "tot_pages": self.tot_pages, "allocated_pages": len(self.allocated),
                "owned_runs": len(self.owned.runs()), "pinned": len(self.pinned),
                "marked": len(self.marked), "p2m_entries": self.p2m.count,
                "baseptr": self.baseptr,
                "dying": self.is_dying}
