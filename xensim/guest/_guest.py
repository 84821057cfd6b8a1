"""A PV guest kernel: what Linux's Xen PV code does, through hypercalls only.

The kernel owns its P2M view and the contents of its own frames (guest state);
everything the hypervisor keeps (the frame table, the superpage table, pins,
types) it changes only through ``machine.hypercall``. It:

* populates its memory (populate_physmap, 2 MiB or 4 KiB extents),
* builds its initial L4/L3 tree in fresh frames, pins the L4 (which validates
  the tree) and loads it with MMUEXT_NEW_BASEPTR,
* runs on its domain's vCPUs (``vcpu``: the one its next hypercall comes from). With
  several, each vCPU runs a process of its own whose user page table is an L4 of its
  own (pinned at build, as Linux pins a process's ``user_pgd``), and every operation
  the kernel is given on a vCPU starts with a process switch there: Linux's
  ``xen_write_cr3``, MMUEXT_NEW_BASEPTR of the kernel L4 and MMUEXT_NEW_USER_BASEPTR of
  the process's user L4 in one mmuext_op (:meth:`GuestKernel.switch_to`),
* maps a virtual range with 2 MiB (L2 PSE) or 4 KiB (L1) entries, read-only or
  writable, remaps, unmaps, through mmu_update (batched); on a hypervisor without
  PV superpages (``Machine.pv_superpages`` False: Xen 4.10 on) a 2 MiB mapping is
  an L1 table of 512 entries, as Linux's PV code falls back to,
* marks and unmarks superpages (MMUEXT_MARK_SUPER / UNMARK_SUPER),
* balloons memory out and in (decrease_reservation / populate_physmap),
* grants its frames to another domain (writing its grant entries, as Linux's
  gnttab_grant_foreign_access) and maps and unmaps the frames others grant it
  (GNTTABOP_map_grant_ref / unmap_grant_ref, a backend's host mappings).

Page tables come from a pool of 4 KiB frames populated at the top of its GPFN
space. Virtual addresses of data default to Linux's direct map, L4 slot 272.
"""

from __future__ import annotations

import numpy as np

from ..xen import (Continuation, HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                   HYPERVISOR_grant_table_op, GNTMAP_host_map, GNTMAP_readonly,
                   GNTTABOP_map_grant_ref, GNTTABOP_setup_table, GNTTABOP_unmap_grant_ref,
                   INITIAL_NR_GRANT_FRAMES, DOMID_SELF, GnttabMapGrantRef, GnttabSetupTable,
                   GnttabUnmapGrantRef, errno_name)
from ..xen import (XENMEM_decrease_reservation, XENMEM_populate_physmap,
                         XenMemoryReservation)
from ..xen import (MMU_NORMAL_PT_UPDATE, MMUEXT_MARK_SUPER, MMUEXT_NEW_BASEPTR,
                   MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L4_TABLE, MMUEXT_UNMARK_SUPER, MMUEXT_UNPIN_TABLE, MmuextOp,
                   MmuUpdate)
from ..mem import INVALID
from ..xen import (ENTRIES, PADDR_MASK, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PSE,
                   _PAGE_RW, _PAGE_USER, make_pte, pte_mfn)
from ..mem import PAGE_SHIFT, SUPERPAGE_PAGES, SUPERPAGE_SHIFT

DIRECTMAP_BASE = 0xFFFF_8800_0000_0000        # Linux x86_64: L4 slot 272
_SHIFT = {4: 39, 3: 30, 2: 21, 1: 12}


#: continuations of one hypercall after which the guest gives up (a preemption source that
#: answers true at every check livelocks Xen 4.1's loops, which check before their first op)
MAX_CONTINUATIONS = 100_000


class GuestError(RuntimeError):
    """The guest kernel's own misuse (a bug in the caller, not a hypercall result)."""


def _va_index(va: int, level: int) -> int:
    return (va >> _SHIFT[level]) & 511


class GuestKernel:
    """The PV kernel of domain ``domid`` on machine ``m``."""

    def __init__(self, m, domid: int, pt_pool_pages: int = 64):
        self.m = m
        self.domid = domid
        self.d = m.domain(domid)
        #: GPFNs [pt_base, max_pages) are the page-table pool
        self.pt_base = self.d.max_pages - pt_pool_pages
        self._pt_next = self.pt_base
        self._pt_free: list[int] = []              # MFNs of table frames given back
        #: (level, va >> shift of the level above) -> table MFN, for levels 1..3; root: level 4
        self.tables: dict[tuple[int, int], int] = {}
        self.root: int | None = None
        self.last_rc = 0
        #: the hypervisor has PV superpages (learned once, as Linux learns features)
        self.pv_superpages = bool(m.pv_superpages)
        #: without them: 2 MiB VA -> MFN of the L1 table that maps it (the fallback)
        self.fallback: dict[int, int] = {}
        #: fallback L1 frames given back, for the next fallback mapping (rewritten whole)
        self._l1_free: list[int] = []
        #: the domain's vCPUs, and the one the kernel's next hypercall comes from
        self.nr_vcpus = len(self.d.vcpus)
        self.vcpu = 0
        #: with several vCPUs: the user L4 of each vCPU's process (made and pinned by build)
        self.user_roots: list[int] = []
        #: operations given to :func:`~xensim.guest.apply` (which vCPU runs the next)
        self.ops_run = 0
        #: (granter, ref) -> the handle of this kernel's mapping of it
        self.grant_handles: dict[tuple[int, int], int] = {}
        #: hypercalls entered again after Xen preempted them (hypercall continuations)
        self.continuations = 0
        #: its grant table is set up (grant_setup)
        self.grants_set_up = False
        #: the page-table frames of the process :meth:`exec_process` pinned (its L4 first)
        self.process: list[int] | None = None

    # -- hypercalls ------------------------------------------------------------------------
    def _hc(self, number: int, *args) -> int:
        """Issue a hypercall from the current vCPU; a preempted one (a ``Continuation``) is
        entered again with the arguments Xen wrote back, until it ends, as the vCPU does
        when Xen rewinds it to its hypercall instruction (``continuations`` counts them)."""
        rc = self.m.hypercall(self.domid, number, *args, vcpu=self.vcpu)
        again = 0
        while isinstance(rc, Continuation):
            again += 1
            if again > MAX_CONTINUATIONS:
                raise GuestError(f"a hypercall was continued {MAX_CONTINUATIONS:,} times without "
                                 f"ending: preemption ({self.m.preempt}) never lets it finish")
            self.continuations += 1
            rc = self.m.hypercall(self.domid, rc.number, *rc.args, vcpu=self.vcpu)
        self.last_rc = rc
        return rc

    def switch_to(self, vcpu: int) -> int:
        """Run from now on vCPU ``vcpu``, switching to its process: the CR3 write of
        Linux's ``xen_write_cr3``, the kernel L4 (MMUEXT_NEW_BASEPTR) and the process's
        user L4 (MMUEXT_NEW_USER_BASEPTR) in one mmuext_op from that vCPU. 0 or -errno;
        with one vCPU (no user page tables made) only the vCPU is chosen."""
        self.vcpu = vcpu
        if not self.user_roots:
            return 0
        return self.mmuext([MmuextOp(MMUEXT_NEW_BASEPTR, self.root),
                            MmuextOp(MMUEXT_NEW_USER_BASEPTR, self.user_roots[vcpu])])

    def mmu_update(self, updates: list[tuple[int, int]]) -> int:
        """One mmu_update batch of (ptr, val); 0 or -errno (``self.done`` requests done)."""
        done = [0]
        rc = self._hc(HYPERVISOR_mmu_update, [MmuUpdate(p, v) for p, v in updates], done)
        self.done = done[0]
        return rc

    def mmuext(self, ops: list[MmuextOp]) -> int:
        done = [0]
        rc = self._hc(HYPERVISOR_mmuext_op, ops, done)
        self.done = done[0]
        return rc

    # -- memory ------------------------------------------------------------------------------
    def populate(self, first_gfn: int, pages: int, superpages: bool = True) -> int:
        """populate_physmap GPFNs [first_gfn, first_gfn+pages): extents done, or -errno."""
        order = 9 if superpages else 0
        n = 1 << order
        if superpages and (first_gfn % n or pages % n):
            raise GuestError("superpage-backed memory comes in aligned 2 MiB extents")
        r = XenMemoryReservation(list(range(first_gfn, first_gfn + pages, n)), pages // n, order)
        return self._hc(HYPERVISOR_memory_op, XENMEM_populate_physmap, r)

    def mfn(self, gfn: int) -> int:
        mfn = self.d.p2m.get(gfn)
        if mfn == INVALID:
            raise GuestError(f"gfn {gfn:#x} is not populated")
        return mfn

    def balloon_out(self, gfns: list[int]) -> int:
        """Give frames back (decrease_reservation of their MFNs): frames done, or -errno."""
        mfns = [self.mfn(g) for g in gfns]
        r = XenMemoryReservation(mfns, len(mfns), 0)
        return self._hc(HYPERVISOR_memory_op, XENMEM_decrease_reservation, r)

    def balloon_in(self, gfns: list[int]) -> int:
        """Take frames back at these GPFNs (populate_physmap, 4 KiB)."""
        r = XenMemoryReservation(list(gfns), len(gfns), 0)
        return self._hc(HYPERVISOR_memory_op, XENMEM_populate_physmap, r)

    def _write_own(self, mfn: int, index: int, value: int) -> None:
        """A store through the kernel's own writable mapping: never into a live table."""
        page = self.m.mfn_to_page(mfn)
        if self.m.frame_table.owner(page) != self.domid or self.m.pt.live_level(page):
            raise GuestError(f"mfn {mfn:#x} is not a writable frame of this guest")
        self.m.mem.write(mfn, index, value)

    def _write_own_table(self, mfn: int, values: np.ndarray) -> None:
        """Store all 512 entries of a frame through the kernel's own writable mapping.
        A dying domain's vCPU is paused: its stores go nowhere (its next hypercall fails)."""
        if self.d.is_dying:
            return
        page = self.m.mfn_to_page(mfn)
        if self.m.frame_table.owner(page) != self.domid or self.m.pt.live_level(page):
            raise GuestError(f"mfn {mfn:#x} is not a writable frame of this guest")
        self.m.mem.write_many(mfn, np.arange(ENTRIES), values)

    def _alloc_table(self) -> int:
        """A fresh, zeroed frame from the page-table pool (populated on demand)."""
        if self._pt_free:
            return self._pt_free.pop()
        return self._pool_frame()

    def _pool_frame(self) -> int:
        """The page-table pool's next frame (populated here, on demand)."""
        if self._pt_next >= self.d.max_pages:
            raise GuestError("page-table pool exhausted")
        gfn = self._pt_next
        if self.populate(gfn, 1, superpages=False) != 1:
            raise GuestError(f"no memory for a page table ({errno_name(self.last_rc)})")
        self._pt_next += 1
        return self.mfn(gfn)

    def _reserve(self, n: int) -> list[int]:
        """Populate ``n`` more frames of the page-table pool at once (one populate_physmap)
        -> their MFNs, in GPFN order."""
        n = max(0, min(n, self.d.max_pages - self._pt_next))
        if n == 0:
            return []
        done = self.populate(self._pt_next, n, superpages=False)
        if done < 0:
            return []
        mfns = [self.mfn(self._pt_next + i) for i in range(done)]
        self._pt_next += done
        return mfns

    def reserve_l1_tables(self, n: int) -> int:
        """Reserve ``n`` frames of the page-table pool for the 2 MiB fallback's L1 tables,
        so that a mapping takes its frame from the kernel's own memory, as Linux's
        pte_alloc does: no hypercall. Frames reserved."""
        mfns = self._reserve(n)
        self._l1_free.extend(mfns)
        return len(mfns)

    def reserve_tables(self, n: int) -> int:
        """Reserve ``n`` frames of the page-table pool for the tables a process's ``exec``
        builds (:meth:`_alloc_table` takes them): no hypercall then. Frames reserved."""
        mfns = self._reserve(n)
        self._pt_free.extend(reversed(mfns))          # popped in GPFN order
        return len(mfns)

    # -- a process's page tables (Linux's xen_pgd_pin / xen_pgd_unpin) ----------------------
    def exec_process(self, mfns: list[int], writable: bool = True) -> int:
        """Build a new process's page tables and pin its L4, as Linux does for a new mm
        (``xen_pgd_pin``): the kernel writes them as ordinary memory (an L4 whose slot 0
        links an L3, its slot 0 an L2, whose entry k links an L1 table mapping the 512
        frames of superpage ``mfns[k]`` with 4 KiB pages; the L4's direct-map slot shares
        the kernel's L3, as pgd_alloc copies the kernel's half), then MMUEXT_PIN_L4_TABLE
        makes Xen validate the whole tree at once. 0 or -errno (the frames back to the pool)."""
        if self.process is not None:
            raise GuestError("a process runs already: exit it first")
        l4, l3, l2 = self._alloc_table(), self._alloc_table(), self._alloc_table()
        l1s = [self._alloc_table() for _ in mfns]
        table = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER
        flags = np.uint64(self._flags(writable))
        for l1, first in zip(l1s, mfns):
            frames = np.arange(first, first + ENTRIES, dtype=np.uint64)
            self._write_own_table(l1, (frames << np.uint64(PAGE_SHIFT)) | flags)
        entries = np.zeros(ENTRIES, dtype=np.uint64)
        entries[:len(l1s)] = [make_pte(x, table) for x in l1s]
        self._write_own_table(l2, entries)
        entries = np.zeros(ENTRIES, dtype=np.uint64)
        entries[0] = make_pte(l2, table)
        self._write_own_table(l3, entries)
        entries[0] = make_pte(l3, table)
        kernel_l3 = self.tables.get((3, DIRECTMAP_BASE >> _SHIFT[4]))
        if kernel_l3 is not None:
            entries[_va_index(DIRECTMAP_BASE, 4)] = make_pte(kernel_l3, table)
        self._write_own_table(l4, entries)
        rc = self.mmuext([MmuextOp(MMUEXT_PIN_L4_TABLE, l4)])
        tables = [l4, l3, l2, *l1s]
        if rc != 0:
            self._pt_free.extend(reversed(tables))
            return rc
        self.process = tables
        return 0

    def exit_process(self) -> int:
        """The process exits: MMUEXT_UNPIN_TABLE of its L4 (Linux's ``xen_pgd_unpin``), Xen
        devalidating the whole tree; its frames go back to the page-table pool. 0 or -errno."""
        if self.process is None:
            raise GuestError("no process runs")
        tables, self.process = self.process, None
        rc = self.mmuext([MmuextOp(MMUEXT_UNPIN_TABLE, tables[0])])
        if rc == 0:
            self._pt_free.extend(reversed(tables))
        return rc

    # -- the page-table tree ----------------------------------------------------------------
    def build(self, vas: list[int] | None = None) -> int:
        """Build the L4 and the L3 tables for ``vas`` (default: the direct map), pin the
        L4 (validating the tree) and load it as the base pointer. 0 or -errno."""
        if self.root is not None:
            raise GuestError("already built")
        root = self._alloc_table()
        for va in vas or [DIRECTMAP_BASE]:
            key = (3, va >> _SHIFT[4])
            if key not in self.tables:
                l3 = self._alloc_table()
                self.tables[key] = l3
                self._write_own(root, _va_index(va, 4), make_pte(l3, _PAGE_PRESENT | _PAGE_RW | _PAGE_USER))
        ops = [MmuextOp(MMUEXT_PIN_L4_TABLE, root), MmuextOp(MMUEXT_NEW_BASEPTR, root)]
        users = [self._alloc_table() for _ in range(self.nr_vcpus)] if self.nr_vcpus > 1 else []
        ops += [MmuextOp(MMUEXT_PIN_L4_TABLE, u) for u in users]
        if users:
            ops.append(MmuextOp(MMUEXT_NEW_USER_BASEPTR, users[self.vcpu]))
        rc = self.mmuext(ops)
        if rc == 0:
            self.root = root
            self.user_roots = users
        return rc

    def _entry_ptr(self, table: int, index: int) -> int:
        return (table << PAGE_SHIFT) | (index * 8) | MMU_NORMAL_PT_UPDATE

    def ensure_table(self, va: int, level: int) -> tuple[int, int]:
        """The level-``level`` table covering ``va`` (creating and linking it): (mfn, 0) or (0, -errno)."""
        if level == 4:
            return self.root, 0
        key = (level, va >> _SHIFT[level + 1])
        if key in self.tables:
            return self.tables[key], 0
        parent, rc = self.ensure_table(va, level + 1)
        if rc:
            return 0, rc
        frame = self._alloc_table()
        rc = self.mmu_update([(self._entry_ptr(parent, _va_index(va, level + 1)),
                               make_pte(frame, _PAGE_PRESENT | _PAGE_RW | _PAGE_USER))])
        if rc:
            self._pt_free.append(frame)
            return 0, rc
        self.tables[key] = frame
        return frame, 0

    def table_frame(self) -> int:
        """A zeroed frame of the page-table pool, for a table the caller fills and
        links itself (an explorer scenario's ``page_tables``)."""
        return self._alloc_table()

    def give_back_table(self, mfn: int) -> None:
        """Return a page-table frame the kernel no longer uses to its pool (reused by the
        next table it creates)."""
        if mfn not in self._pt_free:
            self._pt_free.append(mfn)

    @staticmethod
    def _flags(writable: bool) -> int:
        return _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | (_PAGE_RW | _PAGE_DIRTY if writable else 0)

    def map_superpages(self, va: int, mfns: list[int], writable: bool = True) -> int:
        """Map 2 MiB superpages at va, va+2M, ... with L2 PSE entries, one mmu_update batch
        per L2 table. 0 or -errno (``self.done`` entries done in the failing batch).
        Without PV superpages: :meth:`map_fallback`."""
        if va & ((1 << SUPERPAGE_SHIFT) - 1):
            raise GuestError("a superpage mapping needs a 2 MiB aligned address")
        if not self.pv_superpages:
            return self.map_fallback(va, mfns, writable)
        batches: dict[int, list] = {}
        flags = self._flags(writable) | _PAGE_PSE
        l2 = gib = None
        for k, mfn in enumerate(mfns):
            v = va + (k << SUPERPAGE_SHIFT)
            if v >> 30 != gib:                       # the L2 table of each GiB, once
                gib = v >> 30
                l2, rc = self.ensure_table(v, 2)
                if rc:
                    return rc
                batch = batches.setdefault(l2, [])
            batch.append((self._entry_ptr(l2, _va_index(v, 2)), make_pte(mfn, flags)))
        for l2, ups in batches.items():
            rc = self.mmu_update(ups)
            if rc:
                return rc
        return 0

    def map_fallback(self, va: int, mfns: list[int], writable: bool = True) -> int:
        """Map 2 MiB extents without PV superpages, as Linux's PV code does: for each, a
        fresh L1 table from the page-table pool whose 512 entries the kernel writes while
        the frame is still an ordinary writable page of its own, then one mmu_update
        batch per L2 table of the entries linking them (Xen validates each L1:
        get_page_and_type(PGT_l1_page_table) on the frame, get_page_from_l1e on its 512
        entries). A slot already mapped this way gets the new table and its old one
        goes back to the pool. 0 or -errno, as :meth:`map_superpages`."""
        flags = np.uint64(self._flags(writable))
        batches: dict[int, list] = {}
        frames: dict[int, list] = {}
        try:
            for k, mfn in enumerate(mfns):
                v = va + (k << SUPERPAGE_SHIFT)
                l2, rc = self.ensure_table(v, 2)
                if rc:
                    return rc
                frame = self._l1_free.pop() if self._l1_free else self._alloc_table()
                frames.setdefault(l2, []).append((v, frame))
                ptes = (np.arange(mfn, mfn + ENTRIES, dtype=np.uint64) << np.uint64(PAGE_SHIFT)) | flags
                self._write_own_table(frame, ptes)
                batches.setdefault(l2, []).append(
                    (self._entry_ptr(l2, _va_index(v, 2)),
                     make_pte(frame, _PAGE_PRESENT | _PAGE_RW | _PAGE_USER)))
            for l2, ups in batches.items():
                rc = self.mmu_update(ups)
                done, todo = frames[l2][:self.done], frames.pop(l2)[self.done:]
                for v, frame in done:
                    old = self.fallback.get(v)
                    self.fallback[v] = frame
                    if old is not None:
                        self._l1_free.append(old)
                frames[l2] = todo
                if rc:
                    return rc
            return 0
        finally:
            for pending in frames.values():           # not linked: back to the pool
                self._l1_free.extend(frame for _, frame in pending)

    def map_pages(self, va: int, mfns: list[int], writable: bool = True) -> int:
        """Map 4 KiB pages at va, va+4K, ... with L1 entries (one batch per L1 table)."""
        batches: dict[int, list] = {}
        for k, mfn in enumerate(mfns):
            v = va + (k << PAGE_SHIFT)
            l1, rc = self.ensure_table(v, 1)
            if rc:
                return rc
            batches.setdefault(l1, []).append(
                (self._entry_ptr(l1, _va_index(v, 1)), make_pte(mfn, self._flags(writable))))
        for ups in batches.values():
            rc = self.mmu_update(ups)
            if rc:
                return rc
        return 0

    def _leaf(self, va: int) -> tuple[int, int, int]:
        """(table mfn, index, level) of the entry mapping ``va`` (L2 if PSE, else L1)."""
        l2 = self.tables.get((2, va >> _SHIFT[3]))
        if l2 is None:
            raise GuestError(f"nothing mapped at {va:#x}")
        e = self.m.mem.read(l2, _va_index(va, 2))
        if e & _PAGE_PSE or not e & _PAGE_PRESENT:
            return l2, _va_index(va, 2), 2
        return self.tables[(1, va >> _SHIFT[2])], _va_index(va, 1), 1

    def unmap(self, va: int, count: int = 1, superpages: bool = True) -> int:
        """Clear ``count`` consecutive 2 MiB (or 4 KiB) entries from ``va``. A fallback
        mapping (no PV superpages) is its L2 entry: Xen devalidates the L1 table (its
        512 references go) and the kernel gives the frame back to its pool."""
        step = 1 << (SUPERPAGE_SHIFT if superpages else PAGE_SHIFT)
        ups = []
        linked = []                                   # (request index, va) of fallback tables
        fallback = self.fallback
        for k in range(count):
            v = va + k * step
            if superpages and fallback and v in fallback:
                linked.append((len(ups), v))
                ups.append((self._entry_ptr(self.tables[(2, v >> _SHIFT[3])], _va_index(v, 2)), 0))
                continue
            table, index, _ = self._leaf(v)
            ups.append((self._entry_ptr(table, index), 0))
        rc = self.mmu_update(ups)
        for i, v in linked:
            if i < self.done:
                self._l1_free.append(self.fallback.pop(v))
        return rc

    def remap(self, va: int, writable: bool, count: int = 1, superpages: bool = True) -> int:
        """Flip entries between read-only and writable (a revalidating update)."""
        step = 1 << (SUPERPAGE_SHIFT if superpages else PAGE_SHIFT)
        if superpages and self.fallback and any(va + k * step in self.fallback for k in range(count)):
            return self._remap_fallback(va, writable, count)
        ups = []
        for k in range(count):
            table, index, level = self._leaf(va + k * step)
            e = self.m.mem.read(table, index)
            if not e & _PAGE_PRESENT:
                raise GuestError(f"nothing mapped at {va + k * step:#x}")
            flags = self._flags(writable) | (e & _PAGE_PSE)
            ups.append((self._entry_ptr(table, index), make_pte(pte_mfn(e), flags)))
        return self.mmu_update(ups)

    def _remap_fallback(self, va: int, writable: bool, count: int) -> int:
        """remap of 2 MiB slots mapped through L1 tables: each table's 512 entries flipped
        in one mmu_update batch (Linux's mprotect of a 2 MiB range), slot by slot."""
        flags = np.uint64(self._flags(writable))
        for k in range(count):
            v = va + (k << SUPERPAGE_SHIFT)
            frame = self.fallback.get(v)
            if frame is None:
                raise GuestError(f"nothing mapped at {v:#x}")
            e = self.m.mem.table(frame)
            idx = np.flatnonzero(e & np.uint64(_PAGE_PRESENT))
            vals = (e[idx] & np.uint64(PADDR_MASK)) | flags
            ptrs = (np.uint64(frame << PAGE_SHIFT) | (idx.astype(np.uint64) << np.uint64(3)))
            rc = self.mmu_update(list(zip(ptrs.tolist(), vals.tolist())))
            if rc:
                return rc
        return 0

    def mark_superpage(self, mfn: int) -> int:
        return self.mmuext([MmuextOp(MMUEXT_MARK_SUPER, mfn)])

    def unmark_superpage(self, mfn: int) -> int:
        return self.mmuext([MmuextOp(MMUEXT_UNMARK_SUPER, mfn)])

    # -- grants ------------------------------------------------------------------------------
    def domid_of(self, name: str) -> int:
        """The domid of the domain called ``name`` (a driver learns its peer from xenstore)."""
        for d in self.m.domains.values():
            if d.name == name:
                return d.domid
        raise GuestError(f"no domain {name!r}")

    def grant_setup(self) -> int:
        """Set its grant table up, once (Linux's gnttab_init: GNTTABOP_setup_table of the
        initial frames, which it then maps): the op's status, or the call's -errno."""
        if self.grants_set_up:
            return 0
        op = GnttabSetupTable(DOMID_SELF, INITIAL_NR_GRANT_FRAMES)
        rc = self._hc(HYPERVISOR_grant_table_op, GNTTABOP_setup_table, [op], None)
        self.grants_set_up = rc == 0 and op.status == 0
        return rc or op.status

    def grant_access(self, ref: int, grantee: int, mfn: int, readonly: bool = False) -> bool:
        """Write grant entry ``ref``: ``grantee`` may map frame ``mfn`` (the table set up
        first if it is not yet)."""
        if self.grant_setup() != 0:
            return False
        return self.m.gnttab.grant_access(self.domid, ref, grantee, mfn, readonly)

    def end_access(self, ref: int) -> bool:
        """Revoke grant entry ``ref`` (refused while it is mapped)."""
        return self.m.gnttab.end_access(self.domid, ref)

    def map_grant(self, granter: int, ref: int, va: int, readonly: bool = False) -> int:
        """Map ``granter``'s grant ``ref`` at ``va`` (a host mapping): its status (GNTST_*),
        or the call's -errno. The handle is kept for :meth:`unmap_grant`."""
        op = GnttabMapGrantRef(va, GNTMAP_host_map | (GNTMAP_readonly if readonly else 0),
                               ref, granter)
        rc = self._hc(HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, [op], None)
        if rc == 0 and op.status == 0:
            self.grant_handles[granter, ref] = op.handle
        return rc or op.status

    def unmap_grant(self, granter: int, ref: int, va: int) -> int:
        """Unmap the mapping :meth:`map_grant` made of ``granter``'s ``ref`` at ``va``."""
        handle = self.grant_handles.pop((granter, ref), None)
        if handle is None:
            raise GuestError(f"grant {ref} of dom{granter} is not mapped")
        op = GnttabUnmapGrantRef(va, 0, handle)
        rc = self._hc(HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref, [op], None)
        return rc or op.status

    def teardown(self) -> int:
        """Unpin and drop the whole tree (as a kernel does before it exits)."""
        if self.root is None:
            return 0
        return self.mmuext([MmuextOp(MMUEXT_UNPIN_TABLE, t) for t in [self.root, *self.user_roots]])

    def superpage_mfns(self, first_gfn: int, count: int) -> list[int]:
        """MFNs of the superpages backing GPFNs first_gfn, +512, ... (must be 2 MiB extents)."""
        out = []
        get = self.d.p2m.get
        for gfn in range(first_gfn, first_gfn + count * SUPERPAGE_PAGES, SUPERPAGE_PAGES):
            mfn = get(gfn)
            if mfn == INVALID:
                raise GuestError(f"gfn {gfn:#x} is not populated")
            if mfn % SUPERPAGE_PAGES:
                raise GuestError(f"gfn {gfn:#x} is not superpage-backed")
            out.append(mfn)
        return out
