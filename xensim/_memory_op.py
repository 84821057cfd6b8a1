"""memory_op (hypercall 12): increase_reservation, decrease_reservation, populate_physmap.

Paraphrasing xen/common/memory.c: each sub-op walks its extents in order and
returns how many it completed; it stops at the first extent it cannot do (no
memory, max_pages reached, a frame the domain does not own). Argument errors
give a negative errno before anything is done.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from ._domain import DOMID_SELF, Domain
from ._p2m import INVALID
from ._page_info import PGC_allocated

XENMEM_increase_reservation = 0
XENMEM_decrease_reservation = 1
XENMEM_populate_physmap = 6

#: largest extent_order a guest may ask for (Xen's CONFIG_DOMU_MAX_ORDER / CTLDOM_MAX_ORDER)
DOMU_MAX_ORDER = 9
CTLDOM_MAX_ORDER = 12


@dataclass
class XenMemoryReservation:
    """struct xen_memory_reservation. ``extent_start`` is the in/out guest array:
    GPFNs in (populate_physmap), MFNs in (decrease_reservation, PV's "gmfn"),
    MFNs out (increase_reservation and populate_physmap write each extent's first MFN)."""
    extent_start: list[int] | None
    nr_extents: int
    extent_order: int = 0
    mem_flags: int = 0
    domid: int = DOMID_SELF


def do_memory_op(m, caller: int, cmd: int, arg: XenMemoryReservation) -> int:
    handler = _SUBOPS.get(cmd)
    if handler is None:
        return -errno.ENOSYS
    if not isinstance(arg, XenMemoryReservation) or arg.nr_extents < 0:
        return -errno.EFAULT
    if arg.domid in (DOMID_SELF, caller):
        d = m.domain(caller)
    elif caller != 0:
        return -errno.EPERM                       # only the control domain acts on others
    else:
        d = m.domain(arg.domid)
        if d is None:
            return -errno.ESRCH
    if d.is_dying:
        return -errno.EINVAL
    max_order = CTLDOM_MAX_ORDER if caller == 0 else DOMU_MAX_ORDER
    if arg.extent_order > max_order or arg.extent_order < 0:
        return 0                                  # Xen returns start_extent: nothing done
    need_list = cmd != XENMEM_increase_reservation
    if (need_list or arg.extent_start is not None) and (
            arg.extent_start is None or len(arg.extent_start) < arg.nr_extents):
        return -errno.EFAULT
    return handler(m, d, arg)


def increase_reservation(m, d: Domain, a: XenMemoryReservation) -> int:
    for i in range(a.nr_extents):
        mfn = m.alloc_domheap_pages(d, a.extent_order)
        if mfn < 0:
            return i
        if a.extent_start is not None:
            a.extent_start[i] = mfn
    return a.nr_extents


def populate_physmap(m, d: Domain, a: XenMemoryReservation) -> int:
    """Extents in order; stops at the first GPFN run that is unaligned, outside the P2M
    or already populated (xensim keeps the guest's P2M), or when memory runs out."""
    n = 1 << a.extent_order
    limit, seen = a.nr_extents, set()
    for i in range(a.nr_extents):
        gpfn = a.extent_start[i]
        if (gpfn < 0 or gpfn % n or gpfn + n > d.p2m.size or gpfn in seen
                or d.p2m.any_in_run(gpfn, n)):
            limit = i
            break
        seen.add(gpfn)
    mfns = m.alloc_domheap_extents(d, a.extent_order, limit)
    start = 0
    for i in range(1, len(mfns) + 1):                 # one M2P/P2M run per contiguous stretch
        if (i == len(mfns) or mfns[i] != mfns[i - 1] + n
                or a.extent_start[i] != a.extent_start[i - 1] + n):
            k = (i - start) * n
            m.m2p.set_run(mfns[start], a.extent_start[start], k)
            d.p2m.set_run(a.extent_start[start], mfns[start], k)
            start = i
    a.extent_start[:len(mfns)] = mfns
    return len(mfns)


def guest_remove_page(m, d: Domain, mfn: int) -> bool:
    """Give one frame back: unpin it, drop PGC_allocated, forget its M2P/P2M entries."""
    if not m.mfn_valid(mfn):
        return False
    page = m.mfn_to_page(mfn)
    if not m.refs.get_page(page, d.domid):        # a temporary reference; fails if not ours
        return False
    if page in d.pinned:
        del d.pinned[page]
        if m.refs.clear_pinned(page):
            m.refs.put_page_and_type(page)
    if m.frame_table.count_info(page) & PGC_allocated:
        d.allocated.remove(mfn, mfn + 1)
        m.refs.clear_allocated(page)
        m.refs.put_page(page)
    gpfn = m.m2p.get(mfn)
    if gpfn != INVALID:
        m.m2p.clear(mfn)
        if d.p2m.get(gpfn) == mfn:
            d.p2m.clear(gpfn)
    m.refs.put_page(page)                         # the temporary reference: may free it now
    return True


def decrease_reservation(m, d: Domain, a: XenMemoryReservation) -> int:
    n = 1 << a.extent_order
    for i in range(a.nr_extents):
        gmfn = a.extent_start[i]
        for j in range(n):
            if not guest_remove_page(m, d, gmfn + j):
                return i
    return a.nr_extents


_SUBOPS = {
    XENMEM_increase_reservation: increase_reservation,
    XENMEM_decrease_reservation: decrease_reservation,
    XENMEM_populate_physmap: populate_physmap,
}
