"""memory_op (hypercall 12): increase_reservation, decrease_reservation, populate_physmap.

Paraphrasing xen/common/memory.c: each sub-op walks its extents in order and
returns how many it completed; it stops at the first extent it cannot do (no
memory, max_pages reached, a frame the domain does not own). What Xen turns
down before it starts returns that count too, 0, not an errno: an argument it
cannot read, an unknown domain, a failed privilege check (except in 4.5, which
returns XSM's -EPERM), an extent list the guest cannot supply, an extent order
above the caller's limit. A dying domain is not turned down up front: its
allocations fail (assign_pages), so increase_reservation and populate_physmap
do nothing for it, while decrease_reservation still works page by page. Only
an unknown sub-op is an errno (-ENOSYS).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace

from ._domain import DOMID_SELF, Domain
from ._release import Release
from ..mem import INVALID
from ..mem import PGC_allocated
from ..mem import MAX_ORDER

XENMEM_increase_reservation = 0
XENMEM_decrease_reservation = 1
XENMEM_populate_physmap = 6

#: 4.7 on (memory.c's max_order): the largest extent order a domU, the control domain
#: and the hardware domain may ask for (CONFIG_DOMU_MAX_ORDER, CONFIG_CTLDOM_MAX_ORDER,
#: which defaults to the page allocator's MAX_ORDER, and CONFIG_HWDOM_MAX_ORDER)
DOMU_MAX_ORDER = 9
CTLDOM_MAX_ORDER = MAX_ORDER
HWDOM_MAX_ORDER = 12
#: 4.1 and 4.5 (multipage_allocation_permitted): any domain may ask for orders up to 9,
#: a domain with I/O capabilities for any order (in xensim only dom0 has them)
MULTIPAGE_MAX_ORDER = 9

#: Xen encodes a continuation's progress above this shift of the sub-op number
MEMOP_EXTENT_SHIFT = 6
_UINT_MAX = (1 << 32) - 1
_ULONG_MAX = (1 << 64) - 1


@dataclass
class XenMemoryReservation:
    """struct xen_memory_reservation. ``extent_start`` is the in/out guest array:
    GPFNs in (populate_physmap), MFNs in (decrease_reservation, PV's "gmfn"),
    MFNs out (increase_reservation and populate_physmap write each extent's first MFN).
    ``None`` is a null handle; a list shorter than ``nr_extents`` is an array the guest
    cannot supply (Xen's guest-handle range check fails)."""
    extent_start: list[int] | None
    nr_extents: int
    extent_order: int = 0
    mem_flags: int = 0
    domid: int = DOMID_SELF


def max_order(d: Domain) -> int:
    """4.7 on: the largest extent order ``d`` may use (dom0 is both control and hardware
    domain, so it gets the larger of the two)."""
    order = DOMU_MAX_ORDER
    if d.is_privileged:                                   # is_control_domain
        order = max(order, CTLDOM_MAX_ORDER)
    if d.domid == 0:                                      # is_hardware_domain
        order = max(order, HWDOM_MAX_ORDER)
    return min(order, MAX_ORDER)


def _order_allowed(m, curr: Domain, cmd: int, order: int) -> bool:
    """The order check of each sub-op, per release (the caller's limit, not the target's)."""
    v = m.release
    if cmd == XENMEM_decrease_reservation:
        if v == Release.R4_1:
            # no check; past 31 Xen's 1 << extent_order is undefined: xensim does nothing
            return order < 32
        return order <= (MAX_ORDER if v == Release.R4_5 else max_order(curr))
    if v <= Release.R4_5:
        return order <= MULTIPAGE_MAX_ORDER or curr.is_privileged
    return order <= max_order(curr)


def do_memory_op(m, caller: int, cmd: int, arg: XenMemoryReservation) -> int:
    """Xen's do_memory_op for the three reservation sub-ops, in its order of checks."""
    handler = _SUBOPS.get(cmd)
    if handler is None:
        return -errno.ENOSYS
    v = m.release
    if not isinstance(arg, XenMemoryReservation):
        return 0                                          # copy_from_guest failed
    nr = arg.nr_extents & _ULONG_MAX                      # xen_ulong_t
    if nr > (_ULONG_MAX if v == Release.R4_1 else _UINT_MAX) >> MEMOP_EXTENT_SHIFT:
        return 0                                          # too large for a continuation
    nr &= _UINT_MAX                                       # memop_args holds an unsigned int
    if nr == 0:
        return 0
    curr = m.domain(caller)
    domid = arg.domid & 0xFFFF                            # a domid_t
    if domid == DOMID_SELF:
        d = curr
    else:
        d = m.domain(domid)                               # dying or not
        if d is None:
            return 0
        if d is not curr or v == Release.R4_1:
            # 4.1: IS_PRIV_FOR, even for the caller's own domid; 4.5 on: XSM_TARGET
            if not curr.is_privileged:
                return -errno.EPERM if v == Release.R4_5 else 0
    order = arg.extent_order & _UINT_MAX                  # an unsigned int
    lst = arg.extent_start
    if (lst is not None or cmd != XENMEM_increase_reservation) and (lst is None or len(lst) < nr):
        return 0                                          # guest_handle_subrange_okay fails
    if not _order_allowed(m, curr, cmd, order):
        return 0
    if order > MAX_ORDER and cmd != XENMEM_decrease_reservation:
        return 0                                          # the allocator has no such block
    if nr != arg.nr_extents or order != arg.extent_order:    # the handlers only read it
        arg = replace(arg, nr_extents=nr, extent_order=order)
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
    """Give one frame back: unpin it (up to 4.10; XSA-252, d798a09529 in 4.11, stopped
    that: a pinned frame keeps its pin, and stays the domain's until it is unpinned or
    the domain dies), drop PGC_allocated, forget its M2P/P2M entries."""
    if not m.mfn_valid(mfn):
        return False
    page = m.mfn_to_page(mfn)
    refs = m.refs
    if not refs.get_page(page, d.domid):          # a temporary reference; fails if not ours
        return False
    if d.pinned and page in d.pinned and m.release < Release.R4_11:
        del d.pinned[page]
        if refs.clear_pinned(page):
            refs.put_page_and_type(page)
    if m.frame_table.count_info(page) & PGC_allocated:
        d.allocated.remove(mfn, mfn + 1)
        refs.clear_allocated(page)
        refs.put_page(page)
    gpfn = m.m2p.get(mfn)
    if gpfn != INVALID:
        m.m2p.clear(mfn)
        if d.p2m.get(gpfn) == mfn:
            d.p2m.clear(gpfn)
    refs.put_page(page)                           # the temporary reference: may free it now
    return True


def remove_extent(m, d: Domain, gmfn: int, n: int) -> int:
    """guest_remove_page on frames [gmfn, gmfn+n) in order, stopping at the first it
    refuses: how many it removed (``Machine.remove_extent``, an accelerated slot)."""
    for j in range(n):
        if not guest_remove_page(m, d, gmfn + j):
            return j
    return n


def decrease_reservation(m, d: Domain, a: XenMemoryReservation) -> int:
    n = 1 << a.extent_order
    host = m.design_host
    for i in range(a.nr_extents):
        gmfn = a.extent_start[i]
        if host.on_leave is not None:
            host.frames_leaving(d.domid, gmfn, n)
        if m.remove_extent(d, gmfn, n) < n:
            return i
    return a.nr_extents


_SUBOPS = {
    XENMEM_increase_reservation: increase_reservation,
    XENMEM_decrease_reservation: decrease_reservation,
    XENMEM_populate_physmap: populate_physmap,
}
