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
L2-L4, linear   read-only, to a validated table of its own level: get_page
                and one more type reference (nothing if it is the table itself)
==============  =======================================================

When the type count reaches 0 the table is devalidated
(:meth:`PageTables.free_page_type`) and every entry drops what it held.
:meth:`PageTables.mod_entry` is Xen's mod_l1_entry .. mod_l4_entry: the new
entry takes its references before the old one drops its own.

The contents of guest frames live in :class:`GuestMemory` (only frames ever written):
guest state, written directly only through the guest's own writable mappings.
"""

from __future__ import annotations

import errno

import numpy as np

from ..mem import (PGC_count_mask, PGT_count_mask, PGT_l1_page_table, PGT_l2_page_table,
                         PGT_l3_page_table, PGT_l4_page_table, PGT_PAGE_TABLE_TYPES,
                         PGT_seg_desc_page, PGT_type_mask, PGT_type_shift, PGT_validated,
                         PGT_writable_page)
from ._baseptr import PGT_root_page_table, root_mfns
from ._linear import get_linear_pagetable_counted, put_linear
from ._release import Release
from ._preempt import ERESTART
from ._segdesc import alloc_segdesc_page
from ._validate import alloc_table, deferred, free_table, partial_pse, put_table_entry
from ._host import put_spage_pages
from ..mem import PAGE_SHIFT, SUPERPAGE_PAGES

# x86 page-table entry flags
_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_USER = 0x004
_PAGE_PWT = 0x008
_PAGE_PCD = 0x010
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_PSE = 0x080
_PAGE_PAT = 0x080                     # bit 7 of an L1 entry is PAT (PSE at L2-L4)
_PAGE_GLOBAL = 0x100
_PAGE_AVAIL = 0xE00                   # bits 9-11: free for software
_PAGE_AVAIL_HIGH = 0x7FF << 52        # bits 52-62: free for software
_PAGE_GNTTAB = 1 << 62                # Xen's mark of grant mappings (debug builds only)
_PAGE_NX = 1 << 63
PAGE_CACHE_ATTRS = _PAGE_PAT | _PAGE_PCD | _PAGE_PWT

PADDR_MASK = ((1 << 52) - 1) & ~((1 << PAGE_SHIFT) - 1)
#: the MFN an entry names when its address bits are all set (Xen: PADDR_MASK >> PAGE_SHIFT)
INVALID_MFN = PADDR_MASK >> PAGE_SHIFT


def get_pte_flags(e: int) -> int:
    """Xen's get_pte_flags: an entry's flag bits as one word, bits 0-11 as they are and
    bits 52-63 moved down to 12-23 (the disallow masks are written in this form)."""
    return ((e >> 40) & 0xFFF000) | (e & 0xFFF)


def put_pte_flags(f: int) -> int:
    """Xen's put_pte_flags: the inverse of :func:`get_pte_flags` (bits 24 and up are lost)."""
    return ((f & 0xFFF000) << 40) | (f & 0xFFF)


#: what a PV guest may set in any entry (Xen's arch_init_memory): PRESENT, RW, USER,
#: ACCESSED, DIRTY, the software bits 9-11 and 52-62, and NX (every modelled CPU has NX).
#: Everything else, PWT, PCD, PSE/PAT and GLOBAL, is Xen's BASE_DISALLOW_MASK. The same
#: bits in 4.1 (a constant there, 0xFF800198 without NX) and in 4.5-4.8 (computed).
BASE_DISALLOW_MASK = ~get_pte_flags(_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
                                    | _PAGE_DIRTY | _PAGE_AVAIL | _PAGE_AVAIL_HIGH
                                    | _PAGE_NX) & 0xFFFFFFFF
#: L1: GLOBAL is allowed (user mappings). A debug build of Xen also refuses _PAGE_GNTTAB
#: (bit 62, its mark of grant mappings) here; a release build (NDEBUG, the default in
#: every modelled release) defines _PAGE_GNTTAB as 0, so bit 62 is the guest's in L1 too.
#: xensim models the release build.
L1_DISALLOW_MASK = BASE_DISALLOW_MASK & ~_PAGE_GLOBAL
L3_DISALLOW_MASK = L4_DISALLOW_MASK = BASE_DISALLOW_MASK

#: flags a guest may change on a live entry without revalidation, from 4.8 on (XSA-182)
FASTPATH_FLAG_WHITELIST = (get_pte_flags(_PAGE_NX | _PAGE_AVAIL_HIGH) | _PAGE_AVAIL
                           | _PAGE_GLOBAL | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_USER)

ENTRIES = 512
_ALL = np.arange(ENTRIES)
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

    #: the event a store emits (the machine's bus attaches it; None: nobody listens)
    guest_write = None

    def __init__(self):
        self._frames: dict[int, np.ndarray] = {}

    def frames(self) -> list[int]:
        """The MFNs of the frames ever written."""
        return list(self._frames)

    def table(self, mfn: int) -> np.ndarray:
        """The frame's 512 words (a zero array, not stored, if never written)."""
        a = self._frames.get(mfn)
        return a if a is not None else np.zeros(ENTRIES, dtype=np.uint64)

    def holds(self, mfn: int) -> bool:
        """Is frame ``mfn`` stored (ever written with something, not dropped since)?"""
        return mfn in self._frames

    def read(self, mfn: int, index: int) -> int:
        a = self._frames.get(mfn)
        return 0 if a is None else a.item(index)

    def write(self, mfn: int, index: int, value: int) -> None:
        a = self._frames.get(mfn)
        if self.guest_write is not None:
            self.guest_write(mfn, index, 0 if a is None else a.item(index), int(value))
        if a is None:
            if value == 0:
                return
            a = self._frames[mfn] = np.zeros(ENTRIES, dtype=np.uint64)
        a[index] = value

    def write_many(self, mfn: int, indexes: np.ndarray, values: np.ndarray) -> None:
        a = self._frames.get(mfn)
        if a is None:
            a = self._frames[mfn] = np.zeros(ENTRIES, dtype=np.uint64)
        if self.guest_write is not None:
            self.guest_write(mfn, np.asarray(indexes), a[indexes].copy(),
                             np.asarray(values, dtype=np.uint64))
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

    def capture(self) -> tuple:
        """Every stored frame's contents, in order (the machine's inventory, xen/_state.py)."""
        return tuple((k, v.tobytes()) for k, v in self._frames.items())

    def restore(self, state: tuple) -> None:
        """Hold exactly the frames of ``state`` (a :meth:`capture`); a frame that differs is
        written whole (``guest_write`` sees it), one not in ``state`` zeroed and dropped."""
        want = dict(state)
        for mfn in [k for k in self._frames if k not in want]:
            if self._frames[mfn].any():
                self.write_many(mfn, _ALL, np.zeros(ENTRIES, dtype=np.uint64))
            del self._frames[mfn]
        for mfn, b in state:
            if mfn not in self._frames or self._frames[mfn].tobytes() != b:
                self.write_many(mfn, _ALL, np.frombuffer(b, dtype=np.uint64).copy())
        self._frames = {mfn: self._frames[mfn] for mfn, _ in state}     # (their order)


class PageTables:
    """The page-table layer: Xen's alloc_page_type / free_page_type and mod_lN_entry.

    ``live`` maps each validated table (page) to (level, owner domid): recorded at
    validation and removed at devalidation, it lets the auditor recount every
    entry's references without reading a counter. ``linear_pt_count`` is Xen's
    per-frame signed count of linear entries from 4.10 on (xen/_linear.py; page -> count,
    no zeros).
    """

    def __init__(self, machine):
        self.m = machine
        self.live: dict[int, tuple[int, int]] = {}
        #: tables whose validation or devalidation was preempted (PGT_partial): page ->
        #: (level, owner domid); how far each got is in ``FrameTable.progress``
        self.partial: dict[int, tuple[int, int]] = {}
        self.linear_pt_count: dict[int, int] = {}
        machine.events.watch(self._bind_entry_events)

    def _bind_entry_events(self) -> None:
        """get/put_page_from_entry between their entry events while observed (the bus calls this)."""
        ev = self.m.events
        self.get_page_from_entry = (self._observed_get if ev.observe_entry_get
                                    else self._get_page_from_entry)
        self.put_page_from_entry = (self._observed_put if ev.observe_entry_put
                                    else self._put_page_from_entry)

    def capture_live(self) -> tuple:
        """``live`` as (page, (level, owner)) pairs, in order (the machine's inventory)."""
        return tuple(self.live.items())

    def restore_live(self, state: tuple) -> None:
        self.live.clear()
        self.live.update(state)

    def capture_partial(self) -> tuple:
        """``partial`` and every frame's nr_validated_ptes / partial_pte (the inventory)."""
        return tuple(self.partial.items()), self.m.frame_table.progress.capture()

    def restore_partial(self, state: tuple) -> None:
        self.partial.clear()
        self.partial.update(state[0])
        self.m.frame_table.progress.restore(state[1])
    def capture_linear(self) -> tuple:
        """``linear_pt_count`` as (page, count) pairs, in order (the machine's inventory)."""
        return tuple(self.linear_pt_count.items())

    def restore_linear(self, state: tuple) -> None:
        self.linear_pt_count.clear()
        self.linear_pt_count.update(state)

    # -- what one entry holds -----------------------------------------------------
    def disallow_mask(self, level: int) -> int:
        """Xen's L1_DISALLOW_MASK .. L4_DISALLOW_MASK (flag-word form, get_pte_flags).

        Xen relaxes L1's mask for I/O-capable domains (their L1 entries may set the
        cache attributes); no xensim domain has I/O resources (dom0 owns no memory, so
        it has no tables), so every domain gets the plain mask. At L2 PSE is allowed
        and the superpage option judges a PSE entry; since XSA-148 (4.7 and 4.8, and
        xensim's 4.1 and 4.5 unless faithful) only while the option is on. A design
        without PV superpages (``supports_pse = False``, Xen 4.10 on) keeps PSE in the
        mask: 4.10's L2_DISALLOW_MASK is the base mask, faithful or not.
        """
        if level == 1:
            return L1_DISALLOW_MASK
        if level == 2:
            m = self.m
            if ((m.allow_superpage or (m.faithful and m.release <= Release.R4_5))
                    and m.superpage.supports_pse):
                return BASE_DISALLOW_MASK & ~_PAGE_PSE
            return BASE_DISALLOW_MASK
        return BASE_DISALLOW_MASK

    def disallowed(self, level: int, e: int) -> bool:
        """Does entry ``e`` set a flag its level's disallow mask refuses?"""
        return bool(get_pte_flags(e) & self.disallow_mask(level))

    def get_page_from_entry(self, level: int, e: int, d: int, table: int | None = None,
                            preemptible: bool = False, partial: int = 0,
                            retain: bool = False) -> int:
        """Take the references a present entry of table ``table`` (an MFN) needs; 0 or a
        negative errno (get_page_from_l1e .. l4e; ``preemptible``: an L3/L4 entry's table
        may be preempted, -ERESTART; ``partial``: a resumed validation's partial entry,
        ``retain``: a preempted get keeps its general reference, 4.13 on). Emits
        entry_get_begin / entry_get_end (rc None: it raised) while they have subscribers."""
        return self._get_page_from_entry(level, e, d, table, preemptible, partial, retain)

    def _get_page_from_entry(self, level: int, e: int, d: int, table: int | None,
                             preemptible: bool = False, partial: int = 0,
                             retain: bool = False) -> int:
        m = self.m
        if self.disallowed(level, e):
            return -errno.EINVAL
        mfn = pte_mfn(e)
        if level == 2 and e & _PAGE_PSE:
            if not m.allow_superpage or mfn & (SUPERPAGE_PAGES - 1):
                return -errno.EINVAL
            unchecked = m.faithful and m.release <= Release.R4_5    # XSA-167, fixed in 4.7
            if not unchecked and not (m.mfn_valid(mfn) and m.mfn_valid(mfn + SUPERPAGE_PAGES - 1)):
                return -errno.EINVAL
            if not m.spage_table.has_entry(m.mfn_to_pdx(mfn) >> 9):
                # a superpage without RAM: nobody owns it. Xen's dense table had a zero
                # entry there, so its get_page on frames without RAM failed: -EINVAL.
                if m.faithful and not m.mfn_valid(mfn):
                    return m.xsa167(mfn) or -errno.EINVAL
                return -errno.EINVAL
            if preemptible and m.superpage.preemptible_take:
                # mod_l2_entry in do_mmu_update: the design's -ERESTART is continued
                return m.design_host.continuable(m.superpage.get_superpage, mfn, d,
                                                 bool(e & _PAGE_RW))
            return m.superpage.get_superpage(mfn, d, bool(e & _PAGE_RW))
        if level == 1:
            # Xen 4.1's get_page_from_l1e answers 1 or 0 (its callers make 0 -EINVAL);
            # from 4.5 it gives errnos of its own
            errnos = m.release > Release.R4_1
            if not m.mfn_valid(mfn):
                # not RAM: Xen's I/O-memory path, and no xensim domain has I/O memory
                # (iomem_access_permitted fails): -EPERM, or -EINVAL for INVALID_MFN
                return -errno.EPERM if errnos and mfn != INVALID_MFN else -errno.EINVAL
            page = m.mfn_to_page(mfn)
            if e & _PAGE_RW:
                rc = m.refs.get_page_and_type_rc(page, d, PGT_writable_page)
            else:
                rc = 0 if m.refs.get_page(page, d) else -errno.EINVAL
            # a frame that is not the owner's (or free), or not typable writable: could_not_pin
            return -errno.EBUSY if rc and errnos else rc
        # the partial entry already holds a general reference: 4.1-4.8's partial_pte -1,
        # and every partial_flags one (get_page_and_type_from_pagenr / _from_mfn)
        held = partial < 0 or (partial > 0 and m.partial_flags)
        # get_page_from_l2e never validates its L1 table preemptibly (any release)
        rc = (m.refs.get_page_and_type_rc(m.mfn_to_page(mfn), d, CHILD_TYPES[level],
                                          preemptible and level >= 3, held, retain)
              if m.mfn_valid(mfn) else -errno.EINVAL)
        if rc == -errno.EINVAL and self.get_linear_pagetable(level, e, table, d):
            rc = 0
        return rc

    def get_linear_pagetable(self, level: int, e: int, table: int | None, d: int) -> bool:
        """Xen's get_l2_linear_pagetable .. get_l4_linear_pagetable (4.1 to 4.8 alike;
        from 4.10, XSA-240's one level, counted: xen/_linear.py).

        An entry at level N may point at a table of level N (a linear, or recursive,
        mapping) if it is read-only. Pointing at its own table it takes nothing; else
        the target must be the domain's (a general reference) and an already
        validated table of level N, whose type count goes up by one. (The type
        increment is the linear path's own, counted here as one get_page_type.)
        """
        m = self.m
        if m.release >= Release.R4_10:
            return table is not None and get_linear_pagetable_counted(self, level, e, table, d)
        if e & _PAGE_RW:
            return False                  # a writable view of its own page tables: refused
        mfn = pte_mfn(e)
        if mfn == table:
            return True
        if not m.mfn_valid(mfn):
            return False
        page = m.mfn_to_page(mfn)
        if not m.refs.get_page(page, d):
            return False
        refs = m.refs
        want = LEVEL_TYPES[level] | PGT_validated
        if (step := m.events.atomic_step) is not None:
            step("get_page_type", page, LEVEL_TYPES[level])
        refs.stats.get_page_type += 1
        while True:
            x = m.frame_table.type_info(page)
            if x & PGT_count_mask == PGT_count_mask or x & (PGT_type_mask | PGT_validated) != want:
                refs.stats.get_page_type_failed += 1
                refs.put_page(page)
                return False
            if refs.cmpxchg_type(page, x, x + 1, f"linear L{level} page table"):
                return True

    def _observed_get(self, level: int, e: int, d: int, table: int | None,
                      preemptible: bool = False, partial: int = 0, retain: bool = False) -> int:
        # get_page_from_entry between entry_get_begin and entry_get_end
        ev, rc = self.m.events, None
        if ev.entry_get_begin is not None:
            ev.entry_get_begin(level, e, d, table)
        try:
            rc = self._get_page_from_entry(level, e, d, table, preemptible, partial, retain)
        finally:
            if ev.entry_get_end is not None:
                ev.entry_get_end(level, e, d, table, rc)
        return rc

    def _observed_put(self, level: int, e: int, table: int | None, partial: int = 0,
                      preemptible: bool = False) -> int:
        ev = self.m.events
        if ev.entry_put_begin is not None:
            ev.entry_put_begin(level, e, table)
        try:
            return self._put_page_from_entry(level, e, table, partial, preemptible)
        finally:
            if ev.entry_put_end is not None:
                ev.entry_put_end(level, e, table)

    def put_page_from_entry(self, level: int, e: int, table: int | None = None, partial: int = 0,
                            preemptible: bool = False) -> int:
        """Drop what a present entry of table ``table`` held (between entry_put_begin and
        entry_put_end while they have subscribers); 0, or -ERESTART (``preemptible``: the
        L3/L4 entry's table was preempted; the entry keeps its general reference)."""
        return self._put_page_from_entry(level, e, table, partial, preemptible)

    def _put_page_from_entry(self, level: int, e: int, table: int | None, partial: int = 0,
                             preemptible: bool = False) -> int:
        m = self.m
        mfn = pte_mfn(e)
        if level >= 2 and mfn == table:
            return 0                      # a linear entry to its own table holds nothing
        if level >= 3 and (partial or preemptible):
            return put_table_entry(self, level, e, m.mfn_to_page(mfn), partial, preemptible)
        if level == 2 and e & _PAGE_PSE:
            if not m.allow_superpage:          # Xen's put_superpage with the option off
                put_spage_pages(m, mfn)
            else:
                m.superpage.put_superpage(mfn, bool(e & _PAGE_RW))
            return 0
        page = m.mfn_to_page(mfn)
        if m.faithful and not self.pays_for(level, e, page):
            # only reachable through a bug faithful mode lets through (XSA-148: PSE or RW
            # flipped on a live entry by the fast path): the real code put references it
            # never took; record it instead of corrupting the simulator's counts
            m.violations.append(f"L{level} entry to mfn {mfn:#x} drops references it never "
                                f"took (entry {e:#x})")
            return 0
        if level == 1 and not e & _PAGE_RW:
            m.refs.put_page(page)
        elif (level >= 2 and table is not None and m.release >= Release.R4_10
              and m.frame_table.type_info(page) & PGT_type_mask == LEVEL_TYPES[level]):
            m.refs.put_page_and_type(page)            # a linear entry (XSA-240): its counts
            put_linear(self, level, page, table)
        else:
            m.refs.put_page_and_type(page)
        return 0

    def pays_for(self, level: int, e: int, page: int) -> bool:
        """Can the frame pay for what this entry would drop? (faithful mode's guard)"""
        ft = self.m.frame_table
        ti = ft.type_info(page)
        want = (PGT_writable_page,) if level == 1 else (CHILD_TYPES[level], LEVEL_TYPES[level])
        return bool(ft.count_info(page) & PGC_count_mask) and bool(
            level == 1 and not e & _PAGE_RW or ti & PGT_count_mask and ti & PGT_type_mask in want)

    # -- the validation hook ------------------------------------------------------------
    def alloc_page_type(self, page: int, type: int, preemptible: bool = False) -> int:
        """Validate ``page`` as a table of ``type``: every present entry takes its references.
        0, a negative errno, or -ERESTART (``preemptible``, and validation was preempted:
        the table is recorded in ``partial``, its progress in ``FrameTable.progress``).

        An L4's slots 256-271 belong to Xen (is_guest_l4_slot): alloc_l4_table skips
        whatever the guest left there and, once the table is valid, writes Xen's own
        entries into them. xensim models no Xen mappings: it clears those slots.
        """
        m = self.m
        if type == PGT_seg_desc_page:          # a GDT/LDT frame: its descriptors are checked
            return alloc_segdesc_page(m.mem.table(int(m.pdx_to_mfn(page))))
        level = type >> PGT_type_shift
        mfn = int(m.pdx_to_mfn(page))
        d = m.frame_table.owner(page)
        if self.linear_pt_count:
            self.linear_pt_count.pop(page, None)    # _get_page_type: a new table counts afresh
        if level == 1 or (level != 4 and not m.mem.holds(mfn)
                          and (not preemptible or m.preempt.pending is None)):
            if level == 1 and m.mem.holds(mfn):          # alloc_l1_table: never preempted
                entries = m.mem.table(mfn)
                rc = self.get_entries(1, mfn, d, entries,
                                      np.flatnonzero(entries & np.uint64(_PAGE_PRESENT)))
                if rc != 0:
                    return rc
            self.live[page] = (level, d)       # (never written: no entry to validate)
            return 0
        rc = alloc_table(self, page, level, mfn, d, preemptible, is_xen_slot)
        if rc == -ERESTART:
            self.partial[page] = (level, d)
            return rc
        if rc != 0:
            return rc
        if level == 4:
            for i in range(ROOT_PAGETABLE_FIRST_XEN_SLOT, ROOT_PAGETABLE_LAST_XEN_SLOT + 1):
                m.mem.write(mfn, i, 0)
        self.partial.pop(page, None)
        self.live[page] = (level, d)
        return 0

    def get_entries(self, level: int, mfn: int, d: int, entries: np.ndarray,
                    present: np.ndarray) -> int:
        """alloc_l1_table's loop (L2-L4: xen/_validate.py): each present entry (indexes
        ``present``) of table ``mfn`` takes its references for ``d``, in order; at a failure
        those taken give theirs back, in reverse: 0 or the failing entry's errno (an
        accelerated slot)."""
        taken: list[int] = []
        for i in present:
            i = int(i)
            if is_xen_slot(level, i):
                continue
            rc = self.get_page_from_entry(level, int(entries[i]), d, mfn)
            if rc != 0:
                with self.m.design_host.undo():   # the puts give back this request's gets
                    for j in reversed(taken):
                        self.put_page_from_entry(level, int(entries[j]), mfn)
                return rc
            taken.append(i)
        return 0

    def free_page_type(self, page: int, type: int, preemptible: bool = False,
                       partial: bool = False) -> int:
        """Devalidate: every present entry drops its references (a ``partial`` table's:
        those below its ``nr_validated_ptes``, and its partial entry's). 0, or -ERESTART
        (``preemptible``: the devalidation was preempted, the table left in ``partial``)."""
        level = type >> PGT_type_shift
        self.live.pop(page, None)
        self.partial.pop(page, None)
        m = self.m
        mfn = int(m.pdx_to_mfn(page))
        if not m.mem.holds(mfn):            # never written: no entry holds anything
            return 0
        if level == 1:                          # free_l1_table: never preempted
            entries = m.mem.table(mfn).copy()
            self.put_entries(1, mfn, entries, np.flatnonzero(entries & np.uint64(_PAGE_PRESENT)))
            return 0
        rc = free_table(self, page, level, mfn, preemptible, partial, is_xen_slot)
        if rc == -ERESTART:
            self.partial[page] = (level, m.frame_table.owner(page))
        return rc

    def put_entries(self, level: int, mfn: int, entries: np.ndarray, present: np.ndarray) -> bool:
        """free_l1_table's loop: each present entry (indexes ``present``) of table ``mfn``
        drops what it holds, in order (an accelerated slot): True."""
        for i in present:
            if not is_xen_slot(level, int(i)):
                self.put_page_from_entry(level, int(entries[int(i)]), mfn)
        return True

    def mod_entry(self, table_mfn: int, index: int, new: int, level: int, d: int,
                  preserve_ad: bool = False, pg_owner: int | None = None,
                  preemptible: bool = False, defer=None) -> int:
        """Change entry ``index`` of a live level-``level`` table; 0 or a negative errno
        (``preemptible``: -ERESTART, the new entry's table was preempted; nothing written).

        References are taken for ``d``, the table's domain; an L1 entry's target may
        belong to ``pg_owner`` instead (a privileged domain mapping a foreign frame).

        The new entry takes its references before the old one drops its own.
        A change that keeps the frame and every flag the release compares
        (:meth:`fastpath_flags`) takes the fast path: the entry is rewritten
        with no refcount traffic. (Xen also ORs USER, and in L1 GLOBAL or its
        kernel mark, into 64-bit guests' entries, adjust_guest_l1e .. l4e;
        xensim stores the guest's value: those bits never change a refusal or
        a fast/slow decision.)
        """
        m = self.m
        if level == 4 and is_xen_slot(level, index):
            return -errno.EINVAL
        old = m.mem.read(table_mfn, index)
        if preserve_ad:                       # Xen's update_intpte: keep the hardware's A/D bits
            new |= old & (_PAGE_ACCESSED | _PAGE_DIRTY)
        if new & _PAGE_PRESENT:
            if self.disallowed(level, new):   # the disallow mask is checked before anything else
                return -errno.EINVAL
            fast = old & _PAGE_PRESENT and not has_changed(old, new, self.fastpath_flags(level))
            if fast and new & _PAGE_RW and not old & _PAGE_RW and self.is_linear(level, old, table_mfn):
                # XSA-182 (before 4.8): the fast path made a read-only linear entry
                # writable, the guest's own page tables writable to it. Faithful mode lets
                # it through; otherwise it revalidates, and the linear check refuses it.
                if m.faithful:
                    m.violations.append(f"XSA-182: L{level} linear entry {table_mfn:#x}[{index}] "
                                        f"made writable by the fast path")
                else:
                    fast = False
            if fast:
                m.mem.write(table_mfn, index, new)              # fast path
                m.pt_stats["fast_path"] += 1
                return 0
            owner = pg_owner if level == 1 and pg_owner is not None else d
            rc = self.get_page_from_entry(level, new, owner, table_mfn, preemptible)
            if rc != 0:
                return rc
            m.pt_stats["slow_path"] += 1
        m.mem.write(table_mfn, index, new)
        if old & _PAGE_PRESENT:
            if defer is not None and deferred(self, level, old, table_mfn):
                # mod_l3/l4_entry (4.5 on; mod_l2_entry 4.13 on): the old table and its
                # references go to the vCPU's old_guest_table
                defer.old_guest_table, defer.old_guest_table_partial = pte_mfn(old), False
            else:
                self.put_page_from_entry(level, old, table_mfn)
        return 0

    def is_linear(self, level: int, e: int, table: int) -> bool:
        """Is present entry ``e`` of ``table`` a linear one (its target a table of its level)?"""
        if level == 1 or (level == 2 and e & _PAGE_PSE):
            return False
        mfn = pte_mfn(e)
        if mfn == table:
            return True
        return self.m.mfn_valid(mfn) and self.live.get(self.m.mfn_to_page(mfn), (0,))[0] == level

    def fastpath_flags(self, level: int) -> int:
        """The flags (PTE positions) whose change on a live entry forces revalidation,
        per release (mod_l1_entry .. mod_l4_entry; the frame is always compared):

        ====  =================  ==================================  =========
        Xen   L1                 L2                                  L3, L4
        ====  =================  ==================================  =========
        4.1   PRESENT, RW        PRESENT (XSA-148: faithful only;    PRESENT
        4.5                      else as 4.7)
        4.7   + PAT, PCD, PWT    PRESENT, RW, PSE with superpages    PRESENT
                                 on, else PRESENT
        4.8   everything outside FASTPATH_FLAG_WHITELIST (XSA-182), every level
        ====  =================  ==================================  =========

        A design without PV superpages (``none``) compares L2 as with the option
        off; PSE itself never gets this far (the disallow mask refuses it first).
        """
        m = self.m
        v = m.release
        if v >= Release.R4_8:
            return put_pte_flags(~FASTPATH_FLAG_WHITELIST & 0xFFFFFFFF)
        if level == 1:
            return _PAGE_PRESENT | _PAGE_RW | (PAGE_CACHE_ATTRS if v == Release.R4_7 else 0)
        if level == 2:
            if m.faithful and v <= Release.R4_5:
                return _PAGE_PRESENT      # XSA-148: PSE and RW flip on a live entry unchecked
            return (_PAGE_PRESENT | _PAGE_RW | _PAGE_PSE
                    if m.allow_superpage and m.superpage.supports_pse else _PAGE_PRESENT)
        return _PAGE_PRESENT

    def live_level(self, page: int) -> int:
        """The level of a live (typed, counted, validated) table at ``page``, else 0."""
        ti = self.m.frame_table.type_info(page)
        t = ti & PGT_type_mask
        if t in PGT_PAGE_TABLE_TYPES and ti & PGT_count_mask and ti & PGT_validated:
            return t >> PGT_type_shift
        return 0

    # -- the auditor's view ---------------------------------------------------------------
    def expect(self, m, exp) -> None:
        """What every live table's present entries hold (see _audit.Expected).

        Recounted from the entries alone: an L2-L4 entry pointing at its own table
        holds nothing, one pointing at another live table of its own level holds a
        linear reference (a general and a typed reference of that level), any
        other a reference of the level below (L1: of a writable page, or general).
        """
        pse: dict[int, list[int]] = {}
        for page, (level, domid) in self.live.items():
            table = int(m.pdx_to_mfn(page))
            entries = m.mem.table(table)
            present = np.flatnonzero(entries & np.uint64(_PAGE_PRESENT))
            if level == 1:                        # the same recount, an L1 table at once
                e = entries[present]
                mfns = ((e & np.uint64(PADDR_MASK)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
                rw = (e & np.uint64(_PAGE_RW)) != 0
                if exp.typed_many(mfns[rw], domid, PGT_writable_page):
                    exp.refs_many(mfns[~rw], domid)
                    continue
            for i in present:
                if is_xen_slot(level, int(i)):
                    continue
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
                elif mfn == table:
                    continue
                elif self.live.get(m.mfn_to_page(mfn), (0,))[0] == level:
                    exp.typed(mfn, domid, LEVEL_TYPES[level])
                else:
                    exp.typed(mfn, domid, CHILD_TYPES[level])
        for mfn, rw, domid in partial_pse(m):                # PGT_partial L2s' PSE entries
            pse.setdefault(mfn, [0, 0, domid])[1 if rw else 0] += 1
            exp.holds(mfn, SUPERPAGE_PAGES, domid)
        for d in m.domains.values():                   # each vCPU's root tables
            for root in root_mfns(d):
                exp.typed(root, d.domid, PGT_root_page_table)
        # a privileged domain's L1 entries may map other domains' frames (foreigndom)
        exp.privileged.add(0)
        m.superpage.expect(exp, pse)
