"""The x86 side of a grant mapping: the grantee's PTE (Xen's ``create_grant_host_mapping``,
``replace_grant_host_mapping`` and their PV helpers in ``arch/x86/mm.c``).

A PV host mapping is an L1 entry of the grantee written straight into the table
(``UPDATE_ENTRY``): it takes no reference of its own, the grant code took them
(``get_page`` and, writable, a ``PGT_writable_page`` type reference on the granter's
frame). Once written the entry is an ordinary L1 entry: removed by the grant
interface (``replace_grant_host_mapping``, which clears it without
``put_page_from_l1e``: the grant's unmap drops the references), or by anything that
removes L1 entries (``mod_l1_entry``, the table's devalidation), which drops them as
``put_page_from_l1e`` does. That is why ``gnttab_release_mappings`` drops no host
mapping's references for a PV domain: its page tables hold them. (A debug build marks
the entry with ``_PAGE_GNTTAB`` and crashes a domain that removes one implicitly; the
release build xensim models has the mark at 0.)

``host_addr`` is a linear address of the grantee, walked to its L1 entry
(``guest_map_l1e``), or with ``GNTMAP_contains_pte`` the machine address of the entry.
Either way the L1 must be the grantee's own, a live L1 table (``page_lock`` needs it
typed, counted and validated); anything else is ``GNTST_general_error``.
"""

from __future__ import annotations

from ..mem import PAGE_SHIFT
from ._pagetable import (_PAGE_ACCESSED, _PAGE_AVAIL, _PAGE_DIRTY, _PAGE_NX,
                         _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER, make_pte, pte_mfn)

__all__ = ["GNTMAP_device_map", "GNTMAP_host_map", "GNTMAP_readonly", "GNTMAP_application_map",
           "GNTMAP_contains_pte", "GNTST_okay", "GNTST_general_error", "grant_pte_flags",
           "guest_map_l1e", "create_grant_host_mapping", "replace_grant_host_mapping"]

# GNTMAP_* (public/grant_table.h)
GNTMAP_device_map = 1 << 0
GNTMAP_host_map = 1 << 1
GNTMAP_readonly = 1 << 2
GNTMAP_application_map = 1 << 3
GNTMAP_contains_pte = 1 << 4
_GNTMAP_guest_avail0 = 16

GNTST_okay = 0
GNTST_general_error = -1


def grant_pte_flags(flags: int) -> int:
    """The PTE flags of a host mapping made with GNTMAP ``flags`` (create_grant_host_mapping
    4.1-4.8, grant_to_pte_flags 4.22): PRESENT, ACCESSED, DIRTY, the grant mark (0 in a
    release build), NX (every modelled CPU has it), RW unless read-only, USER for an
    application mapping, the guest's avail bits from the flags' top half."""
    pte = _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_NX      # _PAGE_GNTTAB: 0
    if flags & GNTMAP_application_map:
        pte |= _PAGE_USER
    if not flags & GNTMAP_readonly:
        pte |= _PAGE_RW
    pte |= ((flags >> _GNTMAP_guest_avail0) << 9) & _PAGE_AVAIL
    return pte


def guest_map_l1e(m, d, va: int, vcpu: int = 0) -> tuple[int, int] | None:
    """The L1 entry mapping linear address ``va`` in the page tables of ``d``'s vCPU
    ``vcpu`` (its kernel root, ``guest_table``): (table MFN, index), or None when the walk
    meets an absent entry or a superpage (Xen's guest_map_l1e; the table's type is for
    the caller to check)."""
    table = None if d is None else d.vcpus[vcpu].guest_table
    if table is None:
        return None
    for shift in (39, 30, 21):
        e = m.mem.read(table, (va >> shift) & 511)
        if not e & _PAGE_PRESENT or (shift == 21 and e & _PAGE_PSE):
            return None
        table = pte_mfn(e)
    return table, (va >> PAGE_SHIFT) & 511


def _own_l1(m, d, l1: int) -> bool:
    """get_page_from_pagenr(l1, d) and page_lock: the grantee's own, live L1 table. The
    reference Xen holds while it writes the entry is taken and dropped here (the counts'
    statistics and steps are Xen's; the entry's write cannot fail in between)."""
    if not m.mfn_valid(l1):
        return False
    page = m.mfn_to_page(l1)
    if not m.refs.get_page(page, d.domid):
        return False
    ok = m.pt.live_level(page) == 1
    m.refs.put_page(page)
    return ok


def _slot(m, d, addr: int, contains_pte: bool, vcpu: int = 0) -> tuple[int, int] | None:
    """The grantee's L1 entry named by ``addr``: a machine address of the entry (8-byte
    aligned) or a linear address; None if it is not in a live L1 table of ``d``'s."""
    if contains_pte:
        if addr & 7:
            return None
        slot = (addr >> PAGE_SHIFT, (addr & 0xFFF) >> 3)
    else:
        slot = guest_map_l1e(m, d, addr, vcpu)
    if slot is None or not _own_l1(m, d, slot[0]):
        return None
    return slot


def create_grant_host_mapping(m, d, addr: int, frame: int, flags: int, vcpu: int = 0) -> int:
    """Write the grant PTE for ``frame`` at ``addr`` in ``d``'s tables (create_grant_va_mapping
    or, with GNTMAP_contains_pte, create_grant_pte_mapping): the entry there before drops
    its references (put_page_from_l1e). GNTST_okay or GNTST_general_error."""
    slot = _slot(m, d, addr, bool(flags & GNTMAP_contains_pte), vcpu)
    if slot is None:
        return GNTST_general_error
    l1, i = slot
    old = m.mem.read(l1, i)
    m.mem.write(l1, i, make_pte(frame, grant_pte_flags(flags)))
    if old & _PAGE_PRESENT:
        m.pt.put_page_from_entry(1, old, l1)
    return GNTST_okay


def replace_grant_host_mapping(m, d, addr: int, frame: int, new_addr: int, flags: int,
                               checks_flags: bool, vcpu: int = 0) -> int:
    """Remove the grant PTE of ``frame`` at ``addr`` (destroy_grant_va_mapping /
    destroy_grant_pte_mapping) or, with ``new_addr``, put there the entry stolen from
    ``new_addr`` (unmap_and_replace: the entry at ``new_addr`` is cleared and moves,
    references and all; if the replacement then fails they are dropped). The entry at
    ``addr`` must map ``frame``; with ``checks_flags`` (the XSA-234 fix) its PRESENT and
    RW must also be the grant's, else GNTST_general_error. The grant's references are
    the caller's to drop."""
    contains_pte = bool(flags & GNTMAP_contains_pte)
    if contains_pte and new_addr:
        return GNTST_general_error           # "Unsupported grant table operation"
    stolen = 0
    if new_addr:
        src = _slot(m, d, new_addr, False, vcpu)
        if src is None:
            return GNTST_general_error
        stolen = m.mem.read(*src)
        m.mem.write(src[0], src[1], 0)
    slot = _slot(m, d, addr, contains_pte, vcpu)
    rc = GNTST_general_error
    if slot is not None:
        old = m.mem.read(*slot)
        want = grant_pte_flags(flags)
        wrong = (old ^ want) & (_PAGE_PRESENT | _PAGE_RW)
        if pte_mfn(old) == frame and not (checks_flags and wrong):
            if wrong:
                m.violations.append(f"XSA-234: grant PTE {old:#x} at {addr:#x} removed for a "
                                    f"grant whose PTE would be {make_pte(frame, want):#x}")
            m.mem.write(slot[0], slot[1], stolen)
            rc = GNTST_okay
    if rc != GNTST_okay and stolen & _PAGE_PRESENT:
        m.pt.put_page_from_entry(1, stolen, src[0])
    return rc
