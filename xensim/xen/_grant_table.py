"""Grant tables, version 1 (Xen's ``common/grant_table.c``): one domain lets another map
its frames.

Each domain has a grant table (``GrantTable``, Xen's ``struct grant_table``): its
*shared entries* (``grant_entry_v1``: flags, the grantee's domid, the frame), which the
granting guest writes in its grant frames and Xen only reads and marks (``GTF_reading``,
``GTF_writing``); its *active entries* (the pin counts ``GNTPIN_hstw`` / ``hstr`` /
``devw`` / ``devr``, the grantee, the frame) while a grant is mapped; and, as a grantee,
its *maptrack* (one record per handle returned by a map: flags, granter, ref).

``GNTTABOP_map_grant_ref`` takes on the granter's frame one ``get_page`` per mapping
kind asked (host, device) and, writable, a ``PGT_writable_page`` type reference each;
a host mapping also writes the grantee's PTE (xen/_grant_host.py), which from then on
holds those references as any L1 entry would. ``GNTTABOP_unmap_grant_ref`` and
``GNTTABOP_unmap_and_replace`` undo it in two passes, as Xen does (``__gnttab_unmap_common``
for a batch, a TLB flush, then ``__gnttab_unmap_common_complete``). Each op has its
``status`` (``GNTST_*``); the hypercall's rc is 0, or -errno for the call itself.

Two of the modelled releases' bugs are reproduced in faithful mode, and refused
otherwise as Xen's later code does (RELEASE-4.22.0):

* XSA-224: the completion drops references for the kinds the maptrack record had when
  the unmap began, not for those this unmap removed: a host+device writable mapping
  unmapped in two calls drops one writable type reference too many;
* XSA-234: replacing or destroying a host mapping checks only the entry's frame, not
  that its PRESENT and RW are the grant's.

Hypercall 20 is ``do_grant_table_op(m, caller, cmd, ops, count=None)``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from ..mem import PAGE_SHIFT, PGT_count_mask, PGT_writable_page
from ._grant_host import (GNTMAP_contains_pte, GNTMAP_device_map, GNTMAP_host_map,
                          GNTMAP_readonly, create_grant_host_mapping,
                          replace_grant_host_mapping)
from ._hypercall import HYPERVISOR_grant_table_op
from ._release import Release

__all__ = [
    "HYPERVISOR_grant_table_op", "GNTTABOP_map_grant_ref", "GNTTABOP_unmap_grant_ref",
    "GNTTABOP_setup_table", "GNTTABOP_query_size", "GNTTABOP_unmap_and_replace",
    "GNTTABOP_NAMES", "GNTST_okay", "GNTST_general_error", "GNTST_bad_domain",
    "GNTST_bad_gntref", "GNTST_bad_handle", "GNTST_bad_dev_addr", "GNTST_no_device_space",
    "GNTST_permission_denied", "GNTST_bad_page", "GNTST_NAMES", "GTF_permit_access",
    "GTF_type_mask", "GTF_readonly", "GTF_reading", "GTF_writing", "GTF_sub_page",
    "GNTPIN_hstw_inc", "GNTPIN_hstr_inc", "GNTPIN_devw_inc", "GNTPIN_devr_inc",
    "GNTPIN_hstw_mask", "GNTPIN_hstr_mask", "GNTPIN_devw_mask", "GNTPIN_devr_mask",
    "INITIAL_NR_GRANT_FRAMES", "DEFAULT_MAX_NR_GRANT_FRAMES", "GRANT_ENTRIES_PER_FRAME",
    "MAPTRACK_PER_PAGE", "GNTTAB_UNMAP_BATCH_SIZE", "max_maptrack_frames", "pins",
    "GnttabMapGrantRef", "GnttabUnmapGrantRef", "GnttabUnmapAndReplace", "GnttabSetupTable",
    "GnttabQuerySize", "GrantTable", "GrantTables", "do_grant_table_op",
]


GNTTABOP_map_grant_ref = 0
GNTTABOP_unmap_grant_ref = 1
GNTTABOP_setup_table = 2
GNTTABOP_query_size = 6
GNTTABOP_unmap_and_replace = 7
GNTTABOP_NAMES = {0: "map_grant_ref", 1: "unmap_grant_ref", 2: "setup_table",
                  6: "query_size", 7: "unmap_and_replace"}

GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -3
GNTST_bad_handle = -4
GNTST_bad_dev_addr = -6
GNTST_no_device_space = -7
GNTST_permission_denied = -8
GNTST_bad_page = -9
GNTST_NAMES = {0: "okay", -1: "general_error", -2: "bad_domain", -3: "bad_gntref",
               -4: "bad_handle", -6: "bad_dev_addr", -7: "no_device_space",
               -8: "permission_denied", -9: "bad_page"}

GTF_permit_access = 1
GTF_type_mask = 3
GTF_readonly = 1 << 2
GTF_reading = 1 << 3
GTF_writing = 1 << 4
GTF_sub_page = 1 << 8

GNTPIN_hstw_inc, GNTPIN_hstr_inc, GNTPIN_devw_inc, GNTPIN_devr_inc = 1, 1 << 8, 1 << 16, 1 << 24
GNTPIN_hstw_mask, GNTPIN_hstr_mask = 0xFF, 0xFF << 8
GNTPIN_devw_mask, GNTPIN_devr_mask = 0xFF << 16, 0xFF << 24

INITIAL_NR_GRANT_FRAMES = 4
DEFAULT_MAX_NR_GRANT_FRAMES = 32
GRANT_ENTRIES_PER_FRAME = 512            # 4096 / sizeof(grant_entry_v1_t)
MAPTRACK_PER_PAGE = 512                  # 4096 / sizeof(struct grant_mapping)
GNTTAB_UNMAP_BATCH_SIZE = 32
_DOMID_SELF = 0x7FF0


def max_maptrack_frames(release: Release) -> int:
    """A domain's maptrack frames at most: 4.1 max_nr_grant_frames x 8 (256), 4.5
    DEFAULT_MAX_MAPTRACK_FRAMES 256, 4.7 and 4.8 1024."""
    return 256 if release <= Release.R4_5 else 1024


def pins(pin: int) -> tuple[int, int, int, int]:
    """An active entry's pin word as (hstw, hstr, devw, devr)."""
    return pin & 0xFF, (pin >> 8) & 0xFF, (pin >> 16) & 0xFF, (pin >> 24) & 0xFF


# -- the ops' argument structures (in and out fields as Xen's) --------------------------
@dataclass
class GnttabMapGrantRef:
    host_addr: int
    flags: int
    ref: int
    dom: int
    status: int = 0
    handle: int = -1
    dev_bus_addr: int = 0


@dataclass
class GnttabUnmapGrantRef:
    host_addr: int = 0
    dev_bus_addr: int = 0
    handle: int = 0
    status: int = 0


@dataclass
class GnttabUnmapAndReplace:
    host_addr: int = 0
    new_addr: int = 0
    handle: int = 0
    status: int = 0


@dataclass
class GnttabSetupTable:
    dom: int
    nr_frames: int
    status: int = 0
    frame_list: list = field(default_factory=list)


@dataclass
class GnttabQuerySize:
    dom: int
    nr_frames: int = 0
    max_nr_frames: int = 0
    status: int = 0


class GrantTable:
    """One domain's grant table: ``shared`` (ref -> (flags, domid, frame): what the guest
    wrote, with Xen's reading/writing marks), ``active`` (ref -> (pin, grantee, frame),
    while pinned), ``maptrack`` (handle -> (flags, granter, ref) of its own mappings) and
    the free handles (``free``: given back, the next at the end; then ``fresh`` up to
    ``limit``, the handles of the maptrack frames so far)."""

    def __init__(self, nr_frames: int = INITIAL_NR_GRANT_FRAMES):
        self.nr_frames = nr_frames
        #: gt_version: 0 until the domain sets its table up (setup_table), then 1
        self.version = 0
        self.shared: dict[int, tuple[int, int, int]] = {}
        self.active: dict[int, tuple[int, int, int]] = {}
        self.maptrack: dict[int, tuple[int, int, int]] = {}
        self.free: list[int] = []
        self.fresh = 0
        self.limit = 0

    def nr_entries(self) -> int:
        """nr_grant_entries: none before the table is set up (version 0)."""
        return self.nr_frames * GRANT_ENTRIES_PER_FRAME if self.version else 0

    def flags(self, ref: int) -> int:
        return self.shared.get(ref, (0, 0, 0))[0]

    def set_flags(self, ref: int, flags: int) -> None:
        _, domid, frame = self.shared.get(ref, (0, 0, 0))
        self.shared[ref] = (flags, domid, frame)

    def next_handle(self, max_frames: int) -> int:
        """The handle get_maptrack_handle would give: a given-back handle first, then the
        next of the maptrack's frames, of a new frame when they are used up (-1 past
        ``max_frames``). Taken by :meth:`take_handle` once the map succeeds (a failed map
        gives its handle straight back: the same as never taking it)."""
        if self.free:
            return self.free[-1]
        if self.fresh == self.limit and self.limit // MAPTRACK_PER_PAGE >= max_frames:
            return -1
        return self.fresh

    def take_handle(self, handle: int) -> None:
        if self.free and self.free[-1] == handle:
            self.free.pop()
            return
        if self.fresh == self.limit:
            self.limit += MAPTRACK_PER_PAGE
        self.fresh += 1

    def put_handle(self, handle: int) -> None:
        self.maptrack.pop(handle, None)
        self.free.append(handle)

    def capture(self) -> tuple:
        return (self.nr_frames, tuple(self.shared.items()), tuple(self.active.items()),
                tuple(self.maptrack.items()), tuple(self.free), self.fresh, self.limit,
                self.version)

    def restore(self, state: tuple) -> None:
        self.nr_frames, shared, active, maptrack, free, self.fresh, self.limit, self.version = state
        self.shared, self.active, self.maptrack = dict(shared), dict(active), dict(maptrack)
        self.free = list(free)


class GrantTables:
    """Every domain's grant table (``Machine.gnttab``), made with the domain
    (grant_table_create) and kept while anything may name it."""

    def __init__(self):
        self.tables: dict[int, GrantTable] = {0: GrantTable()}

    def create(self, domid: int) -> None:
        self.tables[domid] = GrantTable()

    def table(self, domid: int) -> GrantTable | None:
        return self.tables.get(domid)

    # -- the granting guest's writes to its own grant frames ------------------------------
    def grant_access(self, domid: int, ref: int, grantee: int, frame: int,
                     readonly: bool = False) -> bool:
        """Guest ``domid`` writes entry ``ref``: ``grantee`` may map ``frame`` (its MFN: a
        PV guest's frame numbers are machine frames). The guest writes domid and frame,
        then the flags (gnttab_grant_foreign_access); Xen's marks stay. False: ``ref`` is
        outside its grant frames (none before setup_table gave it them)."""
        gt = self.tables[domid]
        if not 0 <= ref < gt.nr_entries():
            return False
        marks = gt.flags(ref) & (GTF_reading | GTF_writing)
        gt.shared[ref] = (GTF_permit_access | (GTF_readonly if readonly else 0) | marks,
                          grantee, frame)
        return True

    def end_access(self, domid: int, ref: int) -> bool:
        """Guest ``domid`` revokes entry ``ref`` (gnttab_end_foreign_access_ref: refused while
        Xen marks it reading or writing). True if revoked."""
        gt = self.tables[domid]
        flags = gt.flags(ref)
        if flags & (GTF_reading | GTF_writing):
            return False
        gt.shared.pop(ref, None)
        return True

    # -- the machine's state ---------------------------------------------------------------
    def capture(self) -> tuple:
        return tuple((domid, gt.capture()) for domid, gt in self.tables.items())

    def restore(self, state: tuple) -> None:
        tables = {}
        for domid, st in state:
            gt = self.tables.get(domid) or GrantTable()
            if gt.capture() != st:
                gt.restore(st)
            tables[domid] = gt
        self.tables = tables

    def release_mappings(self, m, d) -> None:
        """gnttab_release_mappings at domain_kill: every mapping ``d`` still holds is
        forgotten, its pins dropped; a device mapping's references are put, a PV host
        mapping's stay with the PTE (dropped when ``d``'s tables go)."""
        gt = self.tables.get(d.domid)
        if gt is None:
            return
        for handle in sorted(gt.maptrack):
            flags, dom, ref = gt.maptrack[handle]
            rgt = self.tables.get(dom) if dom in m.domains else None
            if rgt is not None and ref in rgt.active:
                pin, grantee, frame = rgt.active[ref]
                ro = flags & GNTMAP_readonly
                if flags & GNTMAP_device_map:
                    pin -= GNTPIN_devr_inc if ro else GNTPIN_devw_inc
                    _put(m, frame, not ro, "release_mappings")
                if flags & GNTMAP_host_map:
                    pin -= GNTPIN_hstr_inc if ro else GNTPIN_hstw_inc
                _set_pin(rgt, ref, pin, grantee, frame, writable_dropped=not ro)
            del gt.maptrack[handle]
            gt.free.append(handle)


def _set_pin(rgt: GrantTable, ref: int, pin: int, grantee: int, frame: int,
             writable_dropped: bool) -> None:
    """The active entry's new pin word; the shared entry's GTF_writing cleared when no
    writable pin is left (after a writable one went), GTF_reading when no pin is left."""
    flags = rgt.flags(ref)
    if writable_dropped and not pin & (GNTPIN_hstw_mask | GNTPIN_devw_mask):
        flags &= ~GTF_writing
    if pin == 0:
        flags &= ~GTF_reading
        rgt.active.pop(ref, None)
    else:
        rgt.active[ref] = (pin, grantee, frame)
    if flags != rgt.flags(ref):
        rgt.set_flags(ref, flags)


def _put(m, frame: int, typed: bool, why: str) -> None:
    """put_page (and put_page_type if ``typed``) on a granted frame; one the frame cannot
    pay for (only reachable through a bug faithful mode lets through) is recorded."""
    page = m.mfn_to_page(frame)
    if typed:
        if m.frame_table.type_info(page) & PGT_count_mask == 0:
            m.violations.append(f"{why}: writable type reference of mfn {frame:#x} dropped "
                                f"at type count 0")
        else:
            m.refs.put_page_type(page)
    m.refs.put_page(page)


# -- GNTTABOP_map_grant_ref -----------------------------------------------------------------
def _map_one(m, ld, op: GnttabMapGrantRef, vcpu: int = 0) -> int:
    """__gnttab_map_grant_ref for a PV grantee ``ld``: the op's status."""
    flags = op.flags
    if not flags & (GNTMAP_device_map | GNTMAP_host_map):
        return GNTST_bad_gntref
    rd = m.domains.get(op.dom)
    if rd is None:
        return GNTST_bad_domain
    lgt, rgt = m.gnttab.tables[ld.domid], m.gnttab.tables[rd.domid]
    handle = lgt.next_handle(max_maptrack_frames(m.release))
    if handle < 0:
        return GNTST_no_device_space
    rc = m.request(_map_pinned, m, ld, rd, lgt, rgt, op, handle, vcpu)
    if rc != GNTST_okay:
        return rc
    lgt.take_handle(handle)
    op.handle = handle
    return GNTST_okay


def _map_pinned(m, ld, rd, lgt: GrantTable, rgt: GrantTable, op: GnttabMapGrantRef,
                handle: int, vcpu: int = 0) -> int:
    ref, flags = op.ref, op.flags
    ro = bool(flags & GNTMAP_readonly)
    if rgt.version == 0 and m.release <= Release.R4_5:
        return GNTST_general_error              # "remote grant table not yet set up"
    if not 0 <= ref < rgt.nr_entries():         # 4.7 on: no entries before it is set up
        return GNTST_bad_gntref
    pin, grantee, frame = rgt.active.get(ref, (0, ld.domid, 0))
    if pin and (grantee != ld.domid or pin & 0x80808080):
        return GNTST_general_error              # another grantee, or a pin count would overflow
    sflags, sdom, sframe = rgt.shared.get(ref, (0, 0, 0))
    old_flags = sflags
    first_get = False
    if not pin or (not ro and not pin & (GNTPIN_hstw_mask | GNTPIN_devw_mask)):
        # _set_status_v1: the entry must permit ld (checked while not pinned), and not be
        # read-only for a writable mapping; Xen marks it reading (and writing)
        if not pin and ((sflags & (GTF_type_mask | GTF_sub_page)) != GTF_permit_access
                        or sdom != ld.domid):
            return GNTST_general_error
        if not ro and sflags & GTF_readonly:
            return GNTST_general_error
        rgt.set_flags(ref, sflags | GTF_reading | (0 if ro else GTF_writing))
        if not pin:
            frame = sframe
            if m.release >= Release.R4_5:
                # __get_paged_frame: get_page_from_gfn takes the frame's first reference
                if not m.mfn_valid(frame) or not m.refs.get_page(m.mfn_to_page(frame), rd.domid):
                    rgt.set_flags(ref, old_flags)
                    return GNTST_bad_page
                first_get = True
    new_pin = pin + ((GNTPIN_devr_inc if ro else GNTPIN_devw_inc) if flags & GNTMAP_device_map else 0) \
        + ((GNTPIN_hstr_inc if ro else GNTPIN_hstw_inc) if flags & GNTMAP_host_map else 0)
    rgt.active[ref] = (new_pin, ld.domid, frame)
    rc = _map_references(m, ld, rd, op, frame, ro, first_get, vcpu)
    if rc != GNTST_okay:
        _set_pin(rgt, ref, pin, ld.domid, frame, writable_dropped=not ro)
        return rc
    lgt.maptrack[handle] = (flags, rd.domid, ref)
    op.dev_bus_addr = frame << PAGE_SHIFT
    return GNTST_okay


def _map_references(m, ld, rd, op: GnttabMapGrantRef, frame: int, ro: bool,
                    first_get: bool, vcpu: int = 0) -> int:
    """The references of one mapping (the frame is ``rd``'s RAM; else general_error, as
    no xensim domain may map I/O memory), and the host PTE; undone on failure."""
    flags = op.flags
    page = m.mfn_to_page(frame) if m.mfn_valid(frame) else None
    if page is None:
        return GNTST_general_error                     # iomem_access_permitted fails
    if not first_get:
        # page_get_owner_and_reference: a reference whoever owns it, then owner == rd?
        if m.frame_table.owner(page) != rd.domid or not m.refs.get_page(page, rd.domid):
            return GNTST_general_error
    if not ro and not m.refs.get_page_type(page, PGT_writable_page):
        m.refs.put_page(page)                          # could_not_pin
        return GNTST_general_error
    if flags & GNTMAP_host_map:
        rc = create_grant_host_mapping(m, ld, op.host_addr, frame, flags, vcpu)
        if rc != GNTST_okay:                           # undo_out
            if not ro:
                m.refs.put_page_type(page)
            m.refs.put_page(page)
            return rc
        if flags & GNTMAP_device_map:                  # the device mapping's own references
            m.refs.get_page(page, rd.domid)
            if not ro:
                m.refs.get_page_type(page, PGT_writable_page)
    return GNTST_okay


# -- GNTTABOP_unmap_grant_ref / unmap_and_replace ------------------------------------------
def _fixed(m) -> bool:
    """Has the unmap XSA-224's and XSA-234's fixes? Outside faithful mode always; in it,
    from 4.10 (the bugs were fixed in 4.9 and 4.10: every release before them had both)."""
    return not m.faithful or m.release >= Release.R4_10


@dataclass
class _Unmap:
    """Xen's struct gnttab_unmap_common: what the first pass found and did."""
    op: object
    host_addr: int
    dev_bus_addr: int
    new_addr: int
    handle: int
    rd: object = None
    ref: int = 0
    frame: int = 0
    flags: int = 0                       # the maptrack record's flags when the unmap began
    done: int = 0                        # what this unmap removed (the XSA-224 fix)
    status: int = GNTST_okay


def _unmap_common(m, ld, u: _Unmap, vcpu: int = 0) -> None:
    lgt = m.gnttab.tables[ld.domid]
    fixed = _fixed(m)
    rec = lgt.maptrack.get(u.handle) if 0 <= u.handle < lgt.limit else None
    if rec is None:
        u.status = GNTST_bad_handle
        return
    flags, dom, ref = rec
    rd = m.domains.get(dom)
    rgt = m.gnttab.tables.get(dom)
    if rd is None or rgt is None or ref not in rgt.active:
        u.status = GNTST_general_error    # Xen crashes the grantee (an implicit unmap raced)
        return
    u.rd, u.ref, u.flags = rd, ref, flags
    pin, grantee, frame = rgt.active[ref]
    ro = flags & GNTMAP_readonly
    u.frame = u.dev_bus_addr >> PAGE_SHIFT
    if fixed:
        if u.dev_bus_addr and flags & GNTMAP_device_map and u.frame != frame:
            u.status = GNTST_bad_dev_addr
            return
        u.frame = frame
        if u.host_addr and flags & GNTMAP_host_map:
            rc = replace_grant_host_mapping(m, ld, u.host_addr, frame, u.new_addr, flags, True,
                                            vcpu)
            if rc != GNTST_okay:
                u.status = rc
                return
            flags &= ~GNTMAP_host_map
            u.done |= GNTMAP_host_map | ro
        if u.dev_bus_addr and flags & GNTMAP_device_map:
            flags &= ~GNTMAP_device_map
            u.done |= GNTMAP_device_map | ro
    else:
        if u.frame == 0:
            u.frame = frame
        else:
            if u.frame != frame:
                u.status = GNTST_general_error
                return
            if flags & GNTMAP_device_map:
                flags &= ~GNTMAP_device_map
                pin -= GNTPIN_devr_inc if ro else GNTPIN_devw_inc
        if u.host_addr and flags & GNTMAP_host_map:
            rc = replace_grant_host_mapping(m, ld, u.host_addr, frame, u.new_addr, flags, False,
                                            vcpu)
            if rc != GNTST_okay:
                lgt.maptrack[u.handle] = (flags, dom, ref)
                rgt.active[ref] = (pin, grantee, frame)
                u.status = rc
                return
            flags &= ~GNTMAP_host_map
            pin -= GNTPIN_hstr_inc if ro else GNTPIN_hstw_inc
        rgt.active[ref] = (pin, grantee, frame)
    lgt.maptrack[u.handle] = (flags, dom, ref)


def _unmap_complete(m, ld, u: _Unmap) -> None:
    rd = u.rd
    if rd is None:
        return
    lgt, rgt = m.gnttab.tables[ld.domid], m.gnttab.tables[rd.domid]
    if u.ref not in rgt.active:
        return
    pin, grantee, frame = rgt.active[u.ref]
    if not _fixed(m):
        if u.frame != frame:
            return
        f, ro = u.flags, bool(u.flags & GNTMAP_readonly)
        if f & GNTMAP_device_map:
            if lgt.maptrack[u.handle][0] & GNTMAP_device_map:
                m.violations.append(f"XSA-224: unmap of handle {u.handle} drops the device "
                                    f"mapping's references of mfn {frame:#x}, still mapped")
            _put(m, frame, not ro, "XSA-224")
        if u.host_addr and f & GNTMAP_host_map:
            if u.status != GNTST_okay:
                return
            _put(m, frame, not ro, "unmap")
    else:
        if not u.done:
            return
        ro = bool(u.done & GNTMAP_readonly)
        if u.done & GNTMAP_device_map:
            _put(m, frame, not ro, "unmap")
            pin -= GNTPIN_devr_inc if ro else GNTPIN_devw_inc
        if u.done & GNTMAP_host_map:
            _put(m, frame, not ro, "unmap")
            pin -= GNTPIN_hstr_inc if ro else GNTPIN_hstw_inc
    if not lgt.maptrack[u.handle][0] & (GNTMAP_device_map | GNTMAP_host_map):
        lgt.put_handle(u.handle)
    _set_pin(rgt, u.ref, pin, grantee, frame, writable_dropped=not u.flags & GNTMAP_readonly)


def _unmap_batch(m, ld, ops: list, replace: bool, vcpu: int = 0) -> None:
    for start in range(0, len(ops), GNTTAB_UNMAP_BATCH_SIZE):
        batch = []
        for op in ops[start:start + GNTTAB_UNMAP_BATCH_SIZE]:
            u = _Unmap(op, op.host_addr, 0 if replace else op.dev_bus_addr,
                       op.new_addr if replace else 0, op.handle)
            _unmap_common(m, ld, u, vcpu)
            op.status = u.status
            batch.append(u)
        # (Xen flushes the grantee's TLB here, gnttab_flush_tlb: xensim's TLB model is the
        # owner's CPU alone, so nothing is counted)
        for u in batch:
            _unmap_complete(m, ld, u)


# -- setup_table, query_size -----------------------------------------------------------------
def _target(m, curr, dom: int):
    """The domain a setup_table / query_size names: (domain, status)."""
    if dom == _DOMID_SELF:
        return curr, GNTST_okay
    d = m.domains.get(dom)
    if d is None:
        return None, GNTST_bad_domain
    if not curr.is_privileged and d is not curr:
        return None, GNTST_permission_denied
    return d, GNTST_okay


def _setup_table(m, curr, op: GnttabSetupTable) -> None:
    if op.nr_frames > DEFAULT_MAX_NR_GRANT_FRAMES:
        op.status = GNTST_general_error
        return
    d, op.status = _target(m, curr, op.dom)
    if d is None:
        return
    gt = m.gnttab.tables[d.domid]
    gt.version = gt.version or 1
    gt.nr_frames = max(gt.nr_frames, op.nr_frames)        # gnttab_grow_table
    op.frame_list = list(range(op.nr_frames))             # the grant frames' indexes


def _query_size(m, curr, op: GnttabQuerySize) -> None:
    d, op.status = _target(m, curr, op.dom)
    if d is None:
        return
    op.nr_frames = m.gnttab.tables[d.domid].nr_frames
    op.max_nr_frames = DEFAULT_MAX_NR_GRANT_FRAMES


def do_grant_table_op(m, caller: int, cmd: int, ops: list, count: int | None = None,
                      vcpu: int = 0) -> int:
    """Hypercall 20 from vCPU ``vcpu`` of ``caller`` (a linear host address is walked in
    its page tables): ``cmd`` on ``count`` ops (default: all of ``ops``); each op's ``status``
    is set; rc 0, -EINVAL (a negative count; setup_table and query_size take exactly one),
    -EFAULT (fewer ops than ``count``: the guest's array ends), -ENOSYS (another cmd)."""
    ld = m.domains[caller]
    n = len(ops) if count is None else count
    if n < 0:
        return -errno.EINVAL
    todo = ops[:n]
    if cmd == GNTTABOP_map_grant_ref:
        for op in todo:
            op.status = _map_one(m, ld, op, vcpu)
    elif cmd in (GNTTABOP_unmap_grant_ref, GNTTABOP_unmap_and_replace):
        _unmap_batch(m, ld, todo, cmd == GNTTABOP_unmap_and_replace, vcpu)
    elif cmd in (GNTTABOP_setup_table, GNTTABOP_query_size):
        if n != 1:
            return -errno.EINVAL
        if todo:
            (_setup_table if cmd == GNTTABOP_setup_table else _query_size)(m, ld, todo[0])
    else:
        return -errno.ENOSYS
    return -errno.EFAULT if len(todo) < n else 0
