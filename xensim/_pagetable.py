"""PV guest page tables: entries, validation, devalidation, and entry updates.

A page table is one frame of the guest holding 512 64-bit x86 entries. It
becomes a table through its type (PGT_l1..l4_page_table), taken when it is
pinned or linked from the level above; the type's validation is
:meth:`PageTables.alloc_page_type`: every present entry takes its references
(docs/xen-facts.md, section 4):

==============  =======================================================
L1, read-only   get_page(target, owner)
L1, RW          get_page_and_type(target, owner, PGT_writable_page)
L2, no PSE      get_page_and_type(target, owner, PGT_l1_page_table)
L2, PSE         the superpage design's get_superpage (2 MiB, 512 frames)
L3              get_page_and_type(target, owner, PGT_l2_page_table)
L4              get_page_and_type(target, owner, PGT_l3_page_table)
==============  =======================================================

When the type count reaches 0 the table is devalidated
(:meth:`PageTables.free_page_type`) and every entry drops what it held.
:meth:`PageTables.mod_entry` is Xen's mod_l1_entry .. mod_l4_entry: the new
entry takes its references before the old one drops its own.

The contents of guest frames live in :class:`GuestMemory` (only frames ever
written); this is guest state, and the guest writes it directly only where it
could through a writable mapping of its own (never a live page table).
"""

from __future__ import annotations

import errno

import numpy as np

from ._page_info import (PGC_count_mask, PGT_count_mask, PGT_l1_page_table, PGT_l2_page_table,
                         PGT_l3_page_table, PGT_l4_page_table, PGT_PAGE_TABLE_TYPES,
                         PGT_type_mask, PGT_type_shift, PGT_validated, PGT_writable_page)
from ._units import PAGE_SHIFT, SUPERPAGE_PAGES
from ._page_info import PGT_seg_desc_page
from ._segdesc import alloc_segdesc_page
from ._superpage import put_spage_pages

# x86 page-table entry flags
_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_USER = 0x004
_PAGE_PWT = 0x008
_PAGE_PCD = 0x010
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_PSE = 0x080
_PAGE_GLOBAL = 0x100
_PAGE_NX = 1 << 63

PADDR_MASK = ((1 << 52) - 1) & ~((1 << PAGE_SHIFT) - 1)
#: bits 52-62: available to software on x86, refused by Xen in PV entries
RESERVED_MASK = ((1 << 63) - 1) & ~((1 << 52) - 1)
#: flags whose change on a live entry needs no new references (Xen's fast-path whitelist)
L1_FASTPATH_FLAGS = _PAGE_NX | _PAGE_GLOBAL | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_USER

ENTRIES = 512
#: L4 slots reserved for Xen's own mappings in a 64-bit PV guest
ROOT_PAGETABLE_FIRST_XEN_SLOT = 256
ROOT_PAGETABLE_LAST_XEN_SLOT = 271

LEVEL_TYPES = {1: PGT_l1_page_table, 2: PGT_l2_page_table, 3: PGT_l3_page_table,
               4: PGT_l4_page_table}
#: the type an entry at level N takes on its target (L2 without PSE -> an L1 table, ...)
CHILD_TYPES = {2: PGT_l1_page_table, 3: PGT_l2_page_table, 4: PGT_l3_page_table}


def pte_mfn(e: int) -> int:
    return (e & PADDR_MASK) >> PAGE_SHIFT


def make_pte(mfn: int, flags: int) -> int:
    return (mfn << PAGE_SHIFT) | flags


def has_changed(old: int, new: int, flags: int) -> bool:
    """Xen's l?e_has_changed: the frame or any of ``flags`` differs."""
    return bool((old ^ new) & (PADDR_MASK | flags))


def is_xen_slot(level: int, index: int) -> bool:
    return level == 4 and ROOT_PAGETABLE_FIRST_XEN_SLOT <= index <= ROOT_PAGETABLE_LAST_XEN_SLOT


class GuestMemory:
    """Contents of guest frames that were ever written: mfn -> 512 uint64 entries."""

    def __init__(self):
        self._frames: dict[int, np.ndarray] = {}

    def table(self, mfn: int) -> np.ndarray:
        """The frame's 512 words (a zero array, not stored, if never written)."""
        a = self._frames.get(mfn)
        return a if a is not None else np.zeros(ENTRIES, dtype=np.uint64)

    def read(self, mfn: int, index: int) -> int:
        a = self._frames.get(mfn)
        return 0 if a is None else int(a[index])

    def write(self, mfn: int, index: int, value: int) -> None:
        a = self._frames.get(mfn)
        if a is None:
            if value == 0:
                return
            a = self._frames[mfn] = np.zeros(ENTRIES, dtype=np.uint64)
        a[index] = value

    def write_many(self, mfn: int, indexes: np.ndarray, values: np.ndarray) -> None:
        a = self._frames.get(mfn)
        if a is None:
            a = self._frames[mfn] = np.zeros(ENTRIES, dtype=np.uint64)
        a[indexes] = values

    def drop_range(self, mfn: int, n: int) -> None:
        """Frames going back to the heap are scrubbed."""
        if n > 64:
            for k in [k for k in self._frames if mfn <= k < mfn + n]:
                del self._frames[k]
        else:
            for k in range(mfn, mfn + n):
                self._frames.pop(k, None)

    def snapshot(self) -> tuple:
        return tuple(sorted((k, v.tobytes()) for k, v in self._frames.items() if v.any()))


class PageTables:
    """The page-table layer: Xen's alloc_page_type / free_page_type and mod_lN_entry.

    ``live`` maps each validated table (page) to (level, owner domid): recorded at
    validation and removed at devalidation, it lets the auditor recount every
    entry's references without reading a counter.
    """

    def __init__(self, machine):
        self.m = machine
        self.live: dict[int, tuple[int, int]] = {}

    # -- what one entry holds -----------------------------------------------------
    def get_page_from_entry(self, level: int, e: int, d: int) -> int:
        """Take the references a present entry needs; 0 or a negative errno."""
        m = self.m
        if e & RESERVED_MASK:
            return -errno.EINVAL
        mfn = pte_mfn(e)
        if level == 2 and e & _PAGE_PSE:
            if not m.allow_superpage or mfn & (SUPERPAGE_PAGES - 1):
                return -errno.EINVAL
            unchecked = m.faithful and m.version in ("4.1", "4.5")    # XSA-167, fixed in 4.7
            if not unchecked and not (m.mfn_valid(mfn) and m.mfn_valid(mfn + SUPERPAGE_PAGES - 1)):
                return -errno.EINVAL
            if not m.spage_table.has_entry(m.mfn_to_pdx(mfn) >> 9):
                # a superpage without RAM: nobody owns it. (Xen's dense table had a zero
                # entry there, so its get_page on frames without RAM failed: -EINVAL.)
                if m.faithful and not m.mfn_valid(mfn):
                    return m.xsa167(mfn) or -errno.EINVAL
                return -errno.EINVAL if m.faithful else -errno.EPERM
            return m.superpage.get_superpage(mfn, d, bool(e & _PAGE_RW))
        if level >= 3 and e & _PAGE_PSE:
            return -errno.EINVAL                              # no 1 GiB pages for PV guests
        if not m.mfn_valid(mfn):
            return -errno.EINVAL
        page = m.mfn_to_page(mfn)
        if level == 1:
            if e & _PAGE_RW:
                return m.refs._get_page_and_type(page, d, PGT_writable_page)
            return 0 if m.refs.get_page(page, d) else -errno.EINVAL
        return m.refs._get_page_and_type(page, d, CHILD_TYPES[level])

    def put_page_from_entry(self, level: int, e: int) -> None:
        """Drop what a present entry held."""
        m = self.m
        mfn = pte_mfn(e)
        if level == 2 and e & _PAGE_PSE:
            if not m.allow_superpage:          # Xen's put_superpage with the option off
                put_spage_pages(m, mfn)
                return
            m.superpage.put_superpage(mfn, bool(e & _PAGE_RW))
            return
        page = m.mfn_to_page(mfn)
        if m.faithful and not self._holds(level, e, page):
            # only reachable through a bug faithful mode lets through (XSA-148: PSE or RW
            # flipped on a live entry by the fast path): the real code put references it
            # never took; record it instead of corrupting the simulator's counts
            m.violations.append(f"L{level} entry to mfn {mfn:#x} drops references it never "
                                f"took (entry {e:#x})")
            return
        if level == 1 and not e & _PAGE_RW:
            m.refs.put_page(page)
        else:
            m.refs.put_page_and_type(page)

    def _holds(self, level: int, e: int, page: int) -> bool:
        """Can the frame pay for what this entry would drop? (faithful mode's guard)"""
        ft = self.m.frame_table
        if ft.count_info(page) & PGC_count_mask == 0:
            return False
        if level == 1 and not e & _PAGE_RW:
            return True
        ti = ft.type_info(page)
        want = PGT_writable_page if level == 1 else CHILD_TYPES[level]
        return bool(ti & PGT_count_mask) and ti & PGT_type_mask == want

    # -- the validation hook ------------------------------------------------------------
    def alloc_page_type(self, page: int, type: int) -> int:
        """Validate ``page`` as a table of ``type``: every present entry takes its references."""
        m = self.m
        if type == PGT_seg_desc_page:          # a GDT/LDT frame: its descriptors are checked
            return alloc_segdesc_page(m.mem.table(int(m.pdx_to_mfn(page))))
        level = type >> PGT_type_shift
        mfn = int(m.pdx_to_mfn(page))
        d = m.frame_table.owner(page)
        entries = m.mem.table(mfn)
        taken: list[int] = []
        for i in np.flatnonzero(entries & np.uint64(_PAGE_PRESENT)):
            i = int(i)
            e = int(entries[i])
            rc = -errno.EINVAL if is_xen_slot(level, i) else self.get_page_from_entry(level, e, d)
            if rc != 0:
                for j in reversed(taken):
                    self.put_page_from_entry(level, int(entries[j]))
                return rc
            taken.append(i)
        self.live[page] = (level, d)
        return 0

    def free_page_type(self, page: int, type: int) -> None:
        """Devalidate: every present entry drops its references."""
        level = type >> PGT_type_shift
        self.live.pop(page, None)
        entries = self.m.mem.table(int(self.m.pdx_to_mfn(page))).copy()
        for i in np.flatnonzero(entries & np.uint64(_PAGE_PRESENT)):
            self.put_page_from_entry(level, int(entries[int(i)]))

    # -- mod_lN_entry -------------------------------------------------------------------
    def mod_entry(self, table_mfn: int, index: int, new: int, level: int, d: int,
                  preserve_ad: bool = False, pg_owner: int | None = None) -> int:
        """Change entry ``index`` of a live level-``level`` table; 0 or a negative errno.

        References are taken for ``d``, the table's domain; an L1 entry's target may
        belong to ``pg_owner`` instead (a privileged domain mapping a foreign frame).

        The new entry takes its references before the old one drops its own.
        Changes that need no new references (same frame, only whitelisted flags)
        take the fast path: the entry is rewritten with no refcount traffic.
        """
        m = self.m
        if is_xen_slot(level, index):
            return -errno.EINVAL
        old = m.mem.read(table_mfn, index)
        if preserve_ad:                       # Xen's update_intpte: keep the hardware's A/D bits
            new |= old & (_PAGE_ACCESSED | _PAGE_DIRTY)
        if new & _PAGE_PRESENT:
            if new & RESERVED_MASK:           # the disallow mask is checked before anything else
                return -errno.EINVAL
            if old & _PAGE_PRESENT and not has_changed(old, new, self._slow_flags(level)):
                m.mem.write(table_mfn, index, new)              # fast path
                m.pt_stats["fast_path"] += 1
                return 0
            owner = pg_owner if level == 1 and pg_owner is not None else d
            rc = self.get_page_from_entry(level, new, owner)
            if rc != 0:
                return rc
        m.mem.write(table_mfn, index, new)
        if old & _PAGE_PRESENT:
            self.put_page_from_entry(level, old)
        return 0

    def _slow_flags(self, level: int) -> int:
        """Flags whose change forces revalidation of a live entry."""
        if level == 1:
            return ~L1_FASTPATH_FLAGS & ((1 << 64) - 1) & ~PADDR_MASK
        if level == 2:
            # XSA-148: before the fix only PRESENT was compared, so PSE and RW could be
            # flipped on a live entry without revalidation (faithful mode, Xen <= 4.5)
            if self.m.faithful and self.m.version in ("4.1", "4.5"):
                return _PAGE_PRESENT
            return _PAGE_PRESENT | _PAGE_RW | _PAGE_PSE
        return _PAGE_PRESENT | _PAGE_PSE

    def live_level(self, page: int) -> int:
        """The level of a live (typed, counted, validated) table at ``page``, else 0."""
        ti = self.m.frame_table.type_info(page)
        t = ti & PGT_type_mask
        if t in PGT_PAGE_TABLE_TYPES and ti & PGT_count_mask and ti & PGT_validated:
            return t >> PGT_type_shift
        return 0

    # -- the auditor's view ---------------------------------------------------------------
    def expect(self, m, exp) -> None:
        """What every live table's present entries hold (see _audit.Expected)."""
        pse: dict[int, list[int]] = {}
        for page, (level, domid) in self.live.items():
            entries = m.mem.table(int(m.pdx_to_mfn(page)))
            for i in np.flatnonzero(entries & np.uint64(_PAGE_PRESENT)):
                e = int(entries[int(i)])
                mfn = pte_mfn(e)
                if level == 1:
                    if e & _PAGE_RW:
                        exp.typed(mfn, domid, PGT_writable_page)
                    else:
                        exp.ref(mfn, domid)
                elif level == 2 and e & _PAGE_PSE:
                    c = pse.setdefault(mfn, [0, 0, domid])
                    c[1 if e & _PAGE_RW else 0] += 1
                    exp.holds(mfn, SUPERPAGE_PAGES, domid)
                else:
                    exp.typed(mfn, domid, CHILD_TYPES[level])
        for d in m.domains.values():
            if d.baseptr is not None:
                exp.typed(d.baseptr, d.domid, PGT_l4_page_table)
        # a privileged domain's L1 entries may map other domains' frames (foreigndom)
        exp.privileged.add(0)
        m.superpage.expect(exp, pse)
