"""The MMUEXT commands besides pins, base pointers and marks: the TLB and cache
flushes, SET_LDT, CLEAR_PAGE and COPY_PAGE (``do_mmuext_op`` in ``mm.c``, read at
RELEASE-4.1.0, 4.5.0, 4.7.0, 4.8.0 and 4.22.0; docs/xen-facts.md section 6d).

The foreign-domain rule: from 4.5 every one of them but CLEAR_PAGE and COPY_PAGE
is -EPERM when the call names another domain (``d != pg_owner``); 4.1 checks only
FLUSH_CACHE_GLOBAL's (``foreigndom != DOMID_SELF``: -EINVAL) and acts on the caller.
CLEAR_PAGE and COPY_PAGE act on the page owner's frames from 4.5
(``get_page_from_gfn(pg_owner, ...)``), on the caller's in 4.1.

The TLB model (:mod:`._tlbflush`) gives each domain one CPU of its own, shared by its
vCPUs: a whole flush of that CPU (TLB_FLUSH_LOCAL, TLB_FLUSH_ALL, TLB_FLUSH_MULTI naming
one of the domain's vCPUs, SET_LDT changing the calling vCPU's LDT up to 4.8) ticks the TLB
clock and is counted as every flush is
(``RefStats.tlb_flushes``, the ``tlb_flush`` event with no page); INVLPG of one
address flushes no whole TLB (Xen's ``flush_area_local`` with order 0: no clock
tick), so it changes nothing modelled. A vCPU mask is the mask itself (``arg2``),
not a guest pointer: it cannot fault.
"""

from __future__ import annotations

import errno

import numpy as np

from ..mem import PGT_writable_page
from ._release import Release

MMUEXT_TLB_FLUSH_LOCAL = 6
MMUEXT_INVLPG_LOCAL = 7
MMUEXT_TLB_FLUSH_MULTI = 8
MMUEXT_INVLPG_MULTI = 9
MMUEXT_TLB_FLUSH_ALL = 10
MMUEXT_INVLPG_ALL = 11
MMUEXT_FLUSH_CACHE = 12
MMUEXT_SET_LDT = 13
MMUEXT_NEW_USER_BASEPTR = 15
MMUEXT_CLEAR_PAGE = 16
MMUEXT_COPY_PAGE = 17
MMUEXT_FLUSH_CACHE_GLOBAL = 18

#: the commands this module answers, by number: their Xen names (``MMUEXT_`` dropped)
OTHER_NAMES = {6: "tlb_flush_local", 7: "invlpg_local", 8: "tlb_flush_multi",
               9: "invlpg_multi", 10: "tlb_flush_all", 11: "invlpg_all", 12: "flush_cache",
               13: "set_ldt", 16: "clear_page", 17: "copy_page", 18: "flush_cache_global"}

#: SET_LDT: at most this many entries (8 bytes each: 16 pages)
LDT_MAX_ENTS = 8192
#: 4.14 on (cb8a478e1d): an empty LDT's base, x86's ZERO_BLOCK_PTR (asm/config.h), which
#: no check looks at
ZERO_BLOCK_PTR = 0xBAD0BAD0BAD0BAD0
#: the end of Xen's own part of the 64-bit address space (HYPERVISOR_VIRT_END)
HYPERVISOR_VIRT_END = 0xFFFF880000000000
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


def addr_ok(m, va: int) -> bool:
    """Xen's ``__addr_ok`` (x86_64 ``uaccess.h``): below the guest's half (4.1: 1 << 48,
    letting non-canonical addresses through; 4.5 on: 1 << 47) or past Xen's range."""
    va &= _U64
    top = 1 << 48 if m.release == Release.R4_1 else 1 << 47
    return va < top or va >= HYPERVISOR_VIRT_END


def cache_flush_permitted(d) -> bool:
    """Xen's ``cache_flush_permitted``: the domain has I/O memory or I/O port rights.
    xensim's dom0 has them (a hardware domain is given them at boot); a domU has none
    (no device passed through)."""
    return d.is_privileged


def flush_own_tlb(m, d) -> None:
    """A whole flush of ``d``'s CPU, as the TLB model counts every flush."""
    m.refs.tlb.flush(-1, d.domid, 0)


def names_a_vcpu(d, vcpumask: int) -> bool:
    """Does a vCPU bitmap name one of ``d``'s vCPUs (vcpumask_to_pcpumask: bits from
    max_vcpus on name nobody)? In the TLB model, then ``d``'s CPU is in the mask."""
    return vcpumask & ((1 << len(d.vcpus)) - 1) != 0


def other_command(m, op, curr, pg_owner, vcpu) -> int | None:
    """``op`` if it is one of this module's commands (its 0 or -errno), else None
    (``vcpu``: the calling vCPU of ``curr``)."""
    cmd = op.cmd
    if cmd not in OTHER_NAMES:
        return None
    v = m.release
    foreign = pg_owner is not curr
    if cmd in (MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE):
        return _clear_or_copy(m, op, curr if v == Release.R4_1 else pg_owner)
    if cmd == MMUEXT_FLUSH_CACHE_GLOBAL:
        if foreign:
            return -errno.EINVAL if v == Release.R4_1 else -errno.EPERM
        if cache_flush_permitted(curr):
            return 0
        # 4.21 on (bbaea9878b: FLUSH_CACHE and FLUSH_CACHE_GLOBAL one case): -EACCES
        return -errno.EACCES if v >= Release.R4_22 else -errno.EINVAL
    if foreign and v > Release.R4_1:
        return -errno.EPERM
    if cmd == MMUEXT_FLUSH_CACHE:
        if cache_flush_permitted(curr):
            return 0
        return -errno.EINVAL if v == Release.R4_1 else -errno.EACCES
    if cmd == MMUEXT_SET_LDT:
        return _set_ldt(m, curr, vcpu, op.arg1, op.arg2)
    if cmd in (MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_ALL) or (
            cmd == MMUEXT_TLB_FLUSH_MULTI and names_a_vcpu(curr, op.arg2)):
        flush_own_tlb(m, curr)
    return 0                                   # INVLPG_*: one address, no whole flush


def _set_ldt(m, d, v, ptr: int, ents: int) -> int:
    """SET_LDT: vCPU ``v``'s LDT at linear address ``ptr``, ``ents`` entries (``nr_ents`` is
    a 32-bit field); the same LDT again does nothing. Up to 4.8 a change flushes the CPU's
    TLB (``invalidate_shadow_ldt`` + ``flush_tlb_local``); from 4.11 (bfa83bbc33) only when
    ``pv_destroy_ldt`` dropped shadow-LDT mappings, which xensim never makes (no LDT
    faults): 4.22 does not flush. No entries means base 0 on 4.7 and 4.8; from 4.14
    (cb8a478e1d) base ZERO_BLOCK_PTR, and the base of an empty LDT is not checked."""
    ents &= _U32
    ptr &= _U64
    new = m.release >= Release.R4_22
    if m.release >= Release.R4_7 and not ents:
        ptr = ZERO_BLOCK_PTR if new else 0
    if ents > LDT_MAX_ENTS or ((ents or not new) and (ptr & 0xFFF or not addr_ok(m, ptr))):
        return -errno.EINVAL
    if (v.ldt_base, v.ldt_ents) != (ptr, ents):
        if not new:
            flush_own_tlb(m, d)
        v.ldt_base, v.ldt_ents = ptr, ents
    return 0


def _clear_or_copy(m, op, owner) -> int:
    """CLEAR_PAGE (``arg1``) / COPY_PAGE (``arg2`` -> ``arg1``): the destination taken
    as a writable page of ``owner`` for the write (any failure -EINVAL: a type
    conflict, a frame not the owner's), the source by a general reference; both given
    back after. The destination's contents become zero / the source's."""
    refs = m.refs
    src = None
    if op.cmd == MMUEXT_COPY_PAGE:
        if not m.mfn_valid(op.arg2) or not refs.get_page(m.mfn_to_page(op.arg2), owner.domid):
            return -errno.EINVAL
        src = op.arg2
    dst = op.arg1
    if not m.mfn_valid(dst) or not refs.get_page_and_type(m.mfn_to_page(dst), owner.domid,
                                                           PGT_writable_page):
        if src is not None:
            refs.put_page(m.mfn_to_page(src))
        return -errno.EINVAL
    new = m.mem.table(src) if src is not None else None
    if m.mem.holds(dst) or (new is not None and new.any()):
        old = m.mem.table(dst)
        new = np.zeros_like(old) if new is None else new
        idx = np.flatnonzero(old != new)
        if idx.size:
            m.mem.write_many(dst, idx, new[idx])
    refs.put_page_and_type(m.mfn_to_page(dst))
    if src is not None:
        refs.put_page(m.mfn_to_page(src))
    return 0
