"""The PV MMU hypercalls: mmu_update (1), update_va_mapping (14), mmuext_op (26).

Batches run in order and stop at the first failing request; the number done
is written to ``done[0]`` when a ``done`` list is given (Xen's ``pdone`` /
``success_count``), on the exits where the release writes it. Every request runs
inside :meth:`Machine.request`: a request that fails leaves the machine bit for
bit as it was.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from ._domain import DOMID_SELF
from ._hypercall import HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op
from ._preempt import ERESTART, Continuation
from ._baseptr import new_guest_cr3, new_user_baseptr, put_old_guest_table, rules_for
from ._mmuext_other import (MMUEXT_NEW_USER_BASEPTR, OTHER_NAMES, flush_own_tlb, names_a_vcpu,
                             other_command)
from ._release import Release
from ..mem import PGT_l1_page_table, PGT_type_mask, PGT_writable_page
from ._grant_host import guest_map_l1e
from ._pagetable import LEVEL_TYPES, _PAGE_PRESENT, _PAGE_PSE, pte_mfn
from ..mem import PAGE_SHIFT, SUPERPAGE_ORDER, SUPERPAGE_PAGES

# mmu_update request types: the low 3 bits of ``ptr`` (Xen masks with
# sizeof(l1_pgentry_t) - 1, so 3..7 are unknown commands: -ENOSYS)
MMU_NORMAL_PT_UPDATE = 0
MMU_MACHPHYS_UPDATE = 1
MMU_PT_UPDATE_PRESERVE_AD = 2
MMU_CMD_MASK = 7

# update_va_mapping's flags (public/xen.h): the flush type in bits 0-1, then what to flush:
# the local TLB (0), every TLB of the domain (4), or any other value: a pointer to a vCPU
# bitmap (UVMF_MULTI)
UVMF_NONE = 0
UVMF_TLB_FLUSH = 1
UVMF_INVLPG = 2
UVMF_FLUSHTYPE_MASK = 3
UVMF_LOCAL = 0
UVMF_ALL = 4

_U64 = (1 << 64) - 1

# mmuext_op commands
MMUEXT_PIN_L1_TABLE = 0
MMUEXT_PIN_L2_TABLE = 1
MMUEXT_PIN_L3_TABLE = 2
MMUEXT_PIN_L4_TABLE = 3
MMUEXT_UNPIN_TABLE = 4
MMUEXT_NEW_BASEPTR = 5
MMUEXT_MARK_SUPER = 19
MMUEXT_UNMARK_SUPER = 20

#: every command of the modelled releases by its Xen name (``MMUEXT_`` dropped, lower case),
#: in number order
MMUEXT_NAMES = dict(sorted({0: "pin_l1_table", 1: "pin_l2_table", 2: "pin_l3_table",
                            3: "pin_l4_table", 4: "unpin_table", 5: "new_baseptr",
                            15: "new_user_baseptr", 19: "mark_super", 20: "unmark_super",
                            **OTHER_NAMES}.items()))


@dataclass
class MmuUpdate:
    """struct mmu_update: ``ptr`` is the machine address of the entry | request type."""
    ptr: int
    val: int


@dataclass
class MmuextOp:
    """struct mmuext_op: ``arg1`` an MFN (pins, bases, marks, CLEAR/COPY_PAGE's
    destination) or a linear address (INVLPG_*, SET_LDT); ``arg2`` COPY_PAGE's source
    MFN, SET_LDT's number of entries or TLB_FLUSH_MULTI / INVLPG_MULTI's vCPU mask."""
    cmd: int
    arg1: int = 0
    arg2: int = 0


def _privileged_for(d, t) -> bool:
    """May ``d`` act on ``t``? The default XSM_TARGET policy of 4.5 on (xsm/dummy.h):
    itself, or a privileged domain. (4.1's IS_PRIV_FOR is ``d.is_privileged`` alone, even
    for ``t is d``: xensim has no device-model domains with a target.)"""
    return d is t or d.is_privileged


def get_pg_owner(m, curr, domid: int):
    """Xen's get_pg_owner: the domain a ``foreigndom`` names, or None (the caller's -ESRCH).

    DOMID_SELF is the caller; the caller's own domid is refused ("cannot specify
    itself as foreign domain"); another domain is looked up, dying or not. Up to
    4.1 the privilege check is in here too (IS_PRIV_FOR: a domU gets -ESRCH);
    from 4.3 it moved to XSM, which the callers apply (-EPERM). DOMID_IO and
    DOMID_XEN are not modelled: they name no domain here.
    """
    domid &= 0xFFFF                                       # a domid_t
    if domid == DOMID_SELF:
        return curr
    if domid == curr.domid:
        return None
    pg_owner = m.domain(domid)
    if pg_owner is None or (m.release == Release.R4_1 and not curr.is_privileged):
        return None
    return pg_owner


def _set_done(done, n: int) -> None:
    if done is not None:
        done[0] = n


def _batch(m, reqs, done, fn, *args, v=None) -> int:
    """Run ``fn(m, req, *args)`` for each request in order, each as one all-or-nothing
    request; the number done in ``done[0]``. With a preemption source
    (``Machine.preempt``) the loop asks ``hypercall_preempt_check()`` before each request,
    as do_mmu_update's and do_mmuext_op's loops do: 4.1 before every one, 4.5 on before
    every one but the first, and stops (-ERESTART) also when vCPU ``v`` has a put to
    finish (``old_guest_table``). -ERESTART: the requests after ``done[0]`` are to be
    continued."""
    n = 0
    rc = 0
    request = m.request
    check = m.preempt.pending
    if check is None:
        for req in reqs:
            rc = request(fn, m, req, *args)
            if rc < 0:
                break
            n += 1
    else:
        first = m.release == Release.R4_1
        for req in reqs:
            if ((v is not None and v.old_guest_table is not None)
                    or ((n or first) and check())):
                rc = -ERESTART
                break
            rc = request(fn, m, req, *args)
            if rc < 0:
                break
            n += 1
    if done is not None:
        done[0] = n
    return rc if rc < 0 else 0


def _continued(number: int, reqs, n: int, rc: int, done, base: int, args: tuple):
    """The end of a batch (do_mmu_update's, do_mmuext_op's): the guest's ``done`` gets the
    requests done by this call added to ``base`` (what the continued call had done);
    -ERESTART becomes the continuation of the requests after the ``n`` done, the count
    marked MMU_UPDATE_PREEMPTED (``preempted=True``)."""
    if done is not None:
        done[0] = base + n
    if rc == -ERESTART:
        return Continuation(number, (reqs[n:], done) + args + (True,))
    return rc


# -- mmu_update ----------------------------------------------------------------------
def do_mmu_update(m, caller: int, reqs: list[MmuUpdate], done: list | None = None,
                  foreigndom: int = DOMID_SELF, preempted: bool = False, vcpu: int = 0) -> int:
    """Xen's do_mmu_update, issued by vCPU ``vcpu`` of ``caller``. ``foreigndom`` carries
    the page owner in its low 16 bits (get_pg_owner) and, when bits 16-31 are not 0, the
    page-table owner's domid plus one. ``done`` is written on every exit but one: from
    4.5, an unknown page-table owner returns before it. From 4.5 a put a preempted call
    left (``old_guest_table``) is finished first (itself preemptible: then the same call
    is continued). ``preempted`` is the count's MMU_UPDATE_PREEMPTED bit: a continued
    call adds what it does to ``done[0]``. Preempted between two requests, it returns
    the :class:`Continuation` of the rest."""
    d = m.domains.get(caller)
    v = d.vcpus[vcpu]
    if (v.old_guest_table is not None and rules_for(m.release).old_guest_table
            and (rc := put_old_guest_table(m, v))):
        if rc == -ERESTART:
            return Continuation(HYPERVISOR_mmu_update, (reqs, done, foreigndom, preempted))
        return rc
    if reqs is None and preempted:                # the put finished: the call's result
        return foreigndom
    base = done[0] if preempted and done is not None else 0
    old = m.release == Release.R4_1
    foreigndom &= 0xFFFFFFFF                              # an unsigned int
    pt_owner = d
    pt_dom = foreigndom >> 16
    if pt_dom:
        pt_owner = m.domain(pt_dom - 1)
        if pt_owner is None:
            rc = -errno.EINVAL if m.release <= Release.R4_5 else -errno.ESRCH
            if old:
                _set_done(done, 0)
            return rc
        # (every xensim domain has its vCPU 0, which Xen also requires here)
        if old and not d.is_privileged:                  # IS_PRIV_FOR, even for itself
            _set_done(done, 0)
            return -errno.ESRCH
    pg_owner = get_pg_owner(m, d, foreigndom)
    if pg_owner is None:
        _set_done(done, 0)
        return -errno.ESRCH
    # 4.5 on: XSM's check (xsm_mmu_update) is made at the first request that needs it
    # and gives that request -EPERM; up to 4.1 get_pg_owner has checked already
    pg_ok = old or _privileged_for(d, pg_owner)
    normal_ok = pg_ok and (old or _privileged_for(d, pt_owner))
    machphys_ok = pg_ok and (old or d is pt_owner)
    if m.preempt.pending is None:
        return m.mmu_update_requests(reqs, done, pt_owner, pg_owner, normal_ok, machphys_ok)
    count = [0]
    v = v if rules_for(m.release).old_guest_table else None
    rc = m.mmu_update_requests(reqs, count, pt_owner, pg_owner, normal_ok, machphys_ok, v)
    if rc != -ERESTART and v is not None and v.old_guest_table is not None:
        # a deferred put left at the end: finished by a continuation with no requests
        _continued(HYPERVISOR_mmu_update, reqs, count[0], rc, done, base, ())
        return Continuation(HYPERVISOR_mmu_update, (None, None, rc, True))
    return _continued(HYPERVISOR_mmu_update, reqs, count[0], rc, done, base, (foreigndom,))


def mmu_update_requests(m, reqs: list[MmuUpdate], done, pt_owner, pg_owner, normal_ok: bool,
                        machphys_ok: bool, v=None) -> int:
    """do_mmu_update's loop: each request in order, each all or nothing; 0 or the first
    failing request's errno, the number done in ``done[0]`` (``Machine.mmu_update_requests``,
    an accelerated slot: xensim.xen.accel). ``v``: the calling vCPU, given while preemption
    can happen (4.5 on): an L3 or L4 entry's old table is put through its
    ``old_guest_table``, and the loop stops while that is set."""
    return _batch(m, reqs, done, mmu_update_one, pt_owner, pg_owner, normal_ok, machphys_ok, v,
                  v=v)


def mmu_update_one(m, req: MmuUpdate, pt_owner, pg_owner, normal_ok: bool = True,
                   machphys_ok: bool = True, v=None) -> int:
    """One request of do_mmu_update's loop: 0 or a negative errno."""
    ptr = req.ptr & _U64
    cmd = ptr & MMU_CMD_MASK
    if cmd == MMU_MACHPHYS_UPDATE:
        if not machphys_ok:                               # 4.5 on: not the caller's tables,
            return -errno.EPERM                           # or XSM refuses the page owner
        mfn = ptr >> PAGE_SHIFT                           # bits 3-11 are ignored
        if not m.mfn_valid(mfn) or not m.refs.get_page(m.mfn_to_page(mfn), pg_owner.domid):
            return -errno.EINVAL
        # Xen's M2P holds unsigned longs (~0UL is INVALID_M2P_ENTRY): keep the 64-bit
        # value in two's complement, so ~0 reads back as INVALID (-1)
        val = req.val & _U64
        m.m2p.set(mfn, val - (1 << 64) if val >> 63 else val)
        m.refs.put_page(m.mfn_to_page(mfn))
        return 0
    if cmd != MMU_NORMAL_PT_UPDATE and cmd != MMU_PT_UPDATE_PRESERVE_AD:
        return -errno.ENOSYS
    if not normal_ok:
        return -errno.EPERM
    ptr -= cmd                                            # the entry's address, 8-aligned
    mfn, index = ptr >> PAGE_SHIFT, (ptr & ((1 << PAGE_SHIFT) - 1)) >> 3
    if not m.mfn_valid(mfn):
        return -errno.EINVAL
    page = m.mfn_to_page(mfn)
    refs = m.refs
    if not refs.get_page(page, pt_owner.domid):         # the table must be the guest's own
        return -errno.EINVAL
    try:
        level = m.pt.live_level(page)
        if level:
            # mod_l3_entry / mod_l4_entry validate a new entry's table preemptibly; do_mmu_update
            # continues any level's -ERESTART (-EINTR too), so an L2's PSE entry may be
            # preempted too where the superpage design declares it (preemptible_take; an L2
            # entry's L1 table and an L1 entry are never validated preemptibly)
            rc = m.pt.mod_entry(mfn, index, req.val, level, pt_owner.domid,
                                cmd == MMU_PT_UPDATE_PRESERVE_AD, pg_owner.domid, level >= 2, v)
            return -ERESTART if rc == -errno.EINTR else rc
        # not a live page table: an ordinary write, allowed while it can be writable
        if not refs.get_page_type(page, PGT_writable_page):
            return -errno.EINVAL
        m.mem.write(mfn, index, req.val)
        refs.put_page_type(page)
        return 0
    finally:
        refs.put_page(page)


# -- update_va_mapping ---------------------------------------------------------------
def do_update_va_mapping(m, caller: int, va: int, val: int, flags: int = 0,
                         vcpumask: int | None = None, vcpu: int = 0) -> int:
    """Xen's do_update_va_mapping: the entry mapping ``va`` in the calling vCPU's
    kernel root table (its ``guest_table``), then the flush ``flags`` ask for
    (:func:`uvmf_flush`; ``vcpumask``: the bitmap UVMF_MULTI's pointer points at, None
    where the pointer cannot be read)."""
    d = m.domain(caller)
    table = d.vcpus[vcpu].guest_table
    slot = None if d.is_dying or table is None else guest_map_l1e(m, d, va, vcpu)
    if slot is None:
        rc = -errno.EINVAL
    else:
        rc = m.request(_update_l1_entry, m, d, slot[0], slot[1], val)
    return uvmf_flush(m, d, flags, vcpumask, rc)


def uvmf_flush(m, d, flags: int, vcpumask: int | None, rc: int) -> int:
    """The end of __do_update_va_mapping: the flush ``flags`` ask for, after the update's
    result ``rc``; the call's result. Up to 4.11 it flushes whether or not the update was
    made, from 4.12 (6c8d502887) only after it was. In the TLB model (one CPU per domain)
    UVMF_TLB_FLUSH of the local TLB, of every TLB of the domain, or of a vCPU bitmap naming
    one of its vCPUs is a whole flush of that CPU; UVMF_INVLPG of one address flushes no
    whole TLB. A bitmap is read (vcpumask_to_pcpumask) whatever the type, and its result
    becomes the call's: -EFAULT where it cannot be read (nothing flushed), else 0, even
    after a failed update (up to 4.11: the update's errno is lost)."""
    if rc and m.release > Release.R4_11:
        return rc
    kind, bmap = flags & UVMF_FLUSHTYPE_MASK, flags & ~UVMF_FLUSHTYPE_MASK
    if kind != UVMF_TLB_FLUSH and kind != UVMF_INVLPG:
        return rc
    if bmap == UVMF_LOCAL or bmap == UVMF_ALL:
        whole = kind == UVMF_TLB_FLUSH
    elif vcpumask is None:
        rc, whole = -errno.EFAULT, False
    else:
        rc, whole = 0, kind == UVMF_TLB_FLUSH and names_a_vcpu(d, vcpumask)
    if whole:
        flush_own_tlb(m, d)
    return rc


def _update_l1_entry(m, d, table: int, index: int, val: int) -> int:
    """__do_update_va_mapping's request (4.1 to 4.22): a general reference on the table the
    walk reached (get_page_from_pagenr: -EINVAL if it is not the caller's), its type checked
    (through a linear entry a walk can end at another level's table: -EINVAL), the entry
    changed by mod_l1_entry, the reference given back."""
    if not m.mfn_valid(table):
        return -errno.EINVAL
    page = m.mfn_to_page(table)
    if not m.refs.get_page(page, d.domid):
        return -errno.EINVAL
    try:
        if m.frame_table.type_info(page) & PGT_type_mask != PGT_l1_page_table:
            return -errno.EINVAL
        return m.pt.mod_entry(table, index, val, 1, d.domid)
    finally:
        m.refs.put_page(page)


# -- mmuext_op -----------------------------------------------------------------------
def do_mmuext_op(m, caller: int, ops: list[MmuextOp] | None, done: list | None = None,
                 foreigndom: int = DOMID_SELF, preempted: bool = False, vcpu: int = 0) -> int:
    """Xen's do_mmuext_op, issued by vCPU ``vcpu`` of ``caller``. A refused
    ``foreigndom`` writes ``done`` (0) in 4.1 only: from 4.5 the call returns before it
    (-ESRCH from get_pg_owner, -EPERM from XSM). From 4.5 a put a preempted call left
    (``old_guest_table``) is finished first.

    ``preempted`` is the count's MMU_UPDATE_PREEMPTED bit: a continued call adds what it
    does to ``done[0]``. Preempted (between two ops, or inside a pin, NEW_BASEPTR or
    unpin), the call returns the :class:`Continuation` of the ops left; from 4.5 one
    that ends with a put left in ``old_guest_table`` continues with no ops (``ops``
    None) and its result in ``foreigndom``, as Xen's does."""
    curr = m.domain(caller)
    v = curr.vcpus[vcpu]
    old = m.release == Release.R4_1
    if (v.old_guest_table is not None and rules_for(m.release).old_guest_table
            and (rc := put_old_guest_table(m, v))):
        if rc == -ERESTART:                       # the same call, entered again later
            return Continuation(HYPERVISOR_mmuext_op, (ops, done, foreigndom, preempted))
        return rc
    if ops is None and preempted:                 # the put finished: the call's result
        return foreigndom
    base = done[0] if preempted and done is not None else 0
    pg_owner = get_pg_owner(m, curr, foreigndom)
    if pg_owner is None:
        if old:
            _set_done(done, base)
        return -errno.ESRCH
    if not old and not _privileged_for(curr, pg_owner):  # xsm_mmuext_op
        return -errno.EPERM
    if m.preempt.pending is None:
        return _batch(m, ops, done, _mmuext_one, curr, pg_owner, v)
    count = [0]
    rc = _batch(m, ops, count, _mmuext_one, curr, pg_owner, v, v=v)
    if rc != -ERESTART and v.old_guest_table is not None and not old:
        _continued(HYPERVISOR_mmuext_op, ops, count[0], rc, done, base, ())
        return Continuation(HYPERVISOR_mmuext_op, (None, None, rc, True))
    return _continued(HYPERVISOR_mmuext_op, ops, count[0], rc, done, base, (foreigndom,))


def _mmuext_one(m, op: MmuextOp, curr, pg_owner, v) -> int:
    cmd = op.cmd
    if MMUEXT_PIN_L1_TABLE <= cmd <= MMUEXT_PIN_L4_TABLE:
        return _pin(m, op.arg1, LEVEL_TYPES[cmd - MMUEXT_PIN_L1_TABLE + 1], pg_owner, curr)
    if cmd == MMUEXT_UNPIN_TABLE:
        return _unpin(m, op.arg1, pg_owner, v)
    if cmd == MMUEXT_NEW_BASEPTR or cmd == MMUEXT_NEW_USER_BASEPTR:
        # 4.1 ignores the foreign domain here (the caller's own vCPU); 4.5 on refuse
        if pg_owner is not curr and rules_for(m.release).foreign_refused:
            return -errno.EPERM
        install = new_guest_cr3 if cmd == MMUEXT_NEW_BASEPTR else new_user_baseptr
        return install(m, curr, v, op.arg1 & _U64)
    if cmd in (MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER):
        return _mark_unmark(m, cmd, op.arg1, curr, pg_owner)
    rc = other_command(m, op, curr, pg_owner, v)       # flushes, SET_LDT, CLEAR/COPY_PAGE
    return -errno.ENOSYS if rc is None else rc


def _pin(m, mfn: int, type: int, d, curr=None) -> int:
    """Pin ``mfn`` as a table of ``d`` (the page owner). A pin on behalf of a dying
    domain succeeds and is dropped at once, as Xen does when it races the domain's
    destruction: relinquish has already unpinned its tables, so the pin's
    references go straight back (the page keeps its type, at count 0)."""
    if not m.mfn_valid(mfn):
        return -errno.EINVAL
    page = m.mfn_to_page(mfn)
    # get_page_type_preemptible (every release): a preempted validation is -ERESTART, the
    # table left PGT_partial and the general reference given back
    rc = m.refs.get_page_and_type_rc(page, d.domid, type, True)
    if rc == -errno.EINTR:                    # a spin on another CPU's validation gave up
        return -ERESTART
    if rc != 0:
        return rc
    if not m.refs.set_pinned(page):                       # already pinned
        m.refs.put_page_and_type(page)
        return -errno.EINVAL
    if curr is not None and d is not curr and d.is_dying:
        m.refs.clear_pinned(page)
        m.refs.put_page_and_type(page)
        return 0
    d.pinned[page] = type
    return 0


def _unpin(m, mfn: int, d, v) -> int:
    if not m.mfn_valid(mfn):
        return -errno.EINVAL
    page = m.mfn_to_page(mfn)
    if not m.refs.get_page(page, d.domid):
        return -errno.EINVAL
    if not m.refs.clear_pinned(page):
        m.refs.put_page(page)
        return -errno.EINVAL
    del d.pinned[page]
    if rules_for(m.release).old_guest_table:
        # put_page_and_type_preemptible (4.5 on): a preempted devalidation leaves the
        # pin's references to the vCPU's old_guest_table, finished by the next call
        if m.refs.put_page_and_type_preemptible(page) == -ERESTART:
            v.old_guest_table, v.old_guest_table_partial = int(m.pdx_to_mfn(page)), True
    else:
        m.refs.put_page_and_type(page)                    # the pin's references (4.1)
    m.refs.put_page(page)                                 # ours
    return 0


def _mark_unmark(m, cmd: int, mfn: int, curr, pg_owner) -> int:
    """MMUEXT_MARK_SUPER / UNMARK_SUPER, with the check order of the configured release.

    Without PV superpages (a design with ``supports_pse = False``: Xen 4.10 on) both
    are -EOPNOTSUPP before any other check, whatever the release simulated."""
    if not m.superpage.supports_pse:
        return -errno.EOPNOTSUPP
    v = m.release
    off = not m.allow_superpage or not m.superpage.supports_mark
    foreign = pg_owner is not curr
    unaligned = bool(mfn & (SUPERPAGE_PAGES - 1))
    invalid = not (m.mfn_valid(mfn) and m.mfn_valid(mfn + SUPERPAGE_PAGES - 1))
    if v <= Release.R4_5:
        if v == Release.R4_5 and foreign:
            return -errno.EPERM
        if unaligned:
            return -errno.EINVAL
        if off:
            return -errno.ENOSYS
        # 4.1-4.5 index the table without checking the MFN (XSA-167): faithful mode only
        if invalid and not m.faithful:
            return -errno.EINVAL
        d = curr                                          # 4.1: the foreign domain is ignored
    else:                                                 # 4.7 (XSA-167 fixed), 4.8
        if off:
            return -errno.EOPNOTSUPP if v >= Release.R4_8 else -errno.ENOSYS
        if foreign:
            return -errno.EPERM
        if unaligned or invalid:
            return -errno.EINVAL
        d = curr
    if invalid:
        return m.xsa167(mfn)
    if not m.spage_table.has_entry(m.mfn_to_pdx(mfn) >> SUPERPAGE_ORDER):
        # a superpage with no RAM: nobody owns it. Xen's dense table had a zero entry
        # there, so MARK failed taking the 512 references and UNMARK found no MARK.
        return -errno.EINVAL
    if cmd == MMUEXT_MARK_SUPER:
        return m.design_host.mark_superpage(mfn, d.domid)
    return m.design_host.unmark_superpage(mfn, d.domid)
