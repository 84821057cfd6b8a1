"""The simulated x86_64 host: the one engine object.

``Machine`` owns the memory map, PDX, the frame table, the superpage table,
the domain heap, the domains, the M2P, the reference primitives and the event
bus (``events``: what observers subscribe to, see _events). The hypercall layer
and the auditor act on it.
"""

from __future__ import annotations

import errno
from operator import is_

import numpy as np

from ._baseptr import vcpu_destroy_pagetables
from ._domain import Domain
from ._events import Events
from ..mem import PDX_GROUP_FRAMES, PDX_GROUP_MASK, PDX_GROUP_SHIFT, FrameTable
from collections import Counter

from ..mem import DomainHeap
from ._hypercall import (HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                         HYPERVISOR_update_va_mapping, HypercallLayer)
from ._memory_op import do_memory_op, remove_extent
from ._mmu import do_mmu_update, do_mmuext_op, do_update_va_mapping, mmu_update_requests
from ._grant_audit import grant_expect
from ._partial_audit import partial_expect
from ._grant_table import HYPERVISOR_grant_table_op, GrantTables, do_grant_table_op
from . import accel
from ._pagetable import GuestMemory, PageTables
from ._validate import relinquish_tables
from ..designs import default_design, design_class
from ._host import MachineHost
from ..mem import MemoryMap
from ..mem import INVALID, FrameMap
from ..mem import (DOMID_INVALID, PGC_allocated, PGC_count_mask, PGC_state_free,
                         PGC_state_inuse, PGT_count_mask, PGT_pinned)
from ..mem import Pdx, make_pdx
from ._refcount import RefCounts, RefcountBug
from ._preempt import ERESTART, Preemption, parse_preemption
from ._release import LATEST_RELEASE, Release, release_label
from ._state import DomainObjects, MachineState, Records, same_state
from ..mem import SuperpageTable
from ..mem import SUPERPAGE_ORDER

_U = np.uint64
#: Records from a tuple of its fields, without the named tuple's __new__ (taken after
#: every fuzzed call)
_new_records = tuple.__new__
#: how many mfn_valid answers a machine keeps (then it starts again)
_MFN_VALID_KEPT = 1 << 16


class Machine:
    """A booted host running a Xen of ``version`` with superpage design ``superpage`` (default:
    the registry's default design).

    ``allow_superpage`` is Xen's allowsuperpage boot option (up to 4.9; a release
    without PV superpages has none: there a superpage design runs as if merged with the
    option on, ``hypothetical``, and ``none`` as Xen itself); ``faithful`` makes
    xensim reproduce the real code's known bugs (docs/xen-facts.md, section 8)
    instead of refusing what they let through; ``pv_linear_pt`` is the pv-linear-pt
    option (4.10 on). ``spage_words`` overrides the
    superpage table's entry width (1 or 2 words; default: the design's).
    """

    def __init__(self, memmap: MemoryMap, pdx_mode: str = "mask", *,
                 version: str | Release = LATEST_RELEASE, allow_superpage: bool = True,
                 superpage: str | None = None, faithful: bool = False,
                 spage_words: int | None = None, pv_linear_pt: bool = True,
                 preempt: "str | Preemption" = "never"):
        #: the Xen release simulated (ordered: ``m.release >= Release.R4_7``)
        self.release = Release.parse(version)
        #: the release as written ("4.8"), as outputs print it
        self.version = str(self.release)
        self.faithful = faithful
        #: the partial entry of a preempted (de)validation is kept as XSA-299's fix keeps it
        #: (4.13 on: ``partial_flags``, the entry always holding a general reference, and
        #: puts that only clean up a table still PGT_partial): 4.22, and 4.1-4.8 unless
        #: faithful (then ``partial_pte`` as released, XSA-299/310's bugs and all)
        self.partial_flags = self.release > Release.R4_8 or not faithful
        #: when hypercall_preempt_check() answers true (xen/_preempt.py; "never" by default)
        self.preempt = self._preemption(preempt)
        #: Xen's pv-linear-pt boot option (4.10 on; default on, as in 4.22): linear page
        #: tables allowed. Before 4.10 there is no option: always allowed
        self.pv_linear_pt = pv_linear_pt or self.release < Release.R4_10
        #: the event bus: every observer of this machine subscribes here (see _events)
        self.events = Events()
        design = design_class(superpage or default_design())
        #: a superpage design on a release without PV superpages: as if merged into it
        self.hypothetical = not self.release.pv_superpages and design.supports_pse
        self.allow_superpage = (allow_superpage if self.release.pv_superpages
                                else design.supports_pse)
        #: which Xen produced this machine's outputs ("Xen 4.8"; "Xen 4.22, hypothetical: ...")
        self.release_label = release_label(self.release, design.supports_pse, design.name)
        self.memmap = memmap
        self.pdx: Pdx = make_pdx(memmap.frame_ranges, pdx_mode, memmap.pdx_regions)
        self._to_pdx, self._to_mfn, self._covers = self.pdx.scalar_forms()
        #: mfn -> mfn_valid(mfn), as asked (at most _MFN_VALID_KEPT kept)
        self._mfn_valid: dict[int, bool] = {}
        #: Xen's max_page: one past the highest RAM frame.
        self.max_page = memmap.max_pfn
        self.ram_pdx_ranges = [(self.mfn_to_pdx(s), self.mfn_to_pdx(e - 1) + 1)
                               for s, e in memmap.frame_ranges]
        self.frame_table = FrameTable(self.ram_pdx_ranges, self.pdx.max_pdx)
        self.events.attach(self.frame_table, ("frames_written",))
        self.spage_table = SuperpageTable(self.spdx_with_ram(),
                                          spage_words or design.words_per_entry)
        self.events.attach(self.spage_table, ("atomic_step", "spage_cmpxchg", "spage_write",
                                              "spage_write_many"))
        self.heap = DomainHeap(memmap.frame_ranges)
        #: the machine-to-phys table (mfn -> gfn), Xen's machine_to_phys_mapping
        self.m2p = FrameMap(self.max_page)
        #: contents of guest frames (page tables): guest state
        self.mem = GuestMemory()
        self.events.attach(self.mem, ("guest_write",))
        self.pt = PageTables(self)
        self.pt_stats: Counter = Counter()
        self.refs = RefCounts(self.frame_table, self._free_pages, validator=self.pt,
                              events=self.events, preempt=self.preempt)
        self.domains: dict[int, Domain] = {0: Domain(0, "Domain-0", max_pages=0)}
        self._next_domid = 1
        #: every domain's grant table (xen/_grant_table.py)
        self.gnttab = GrantTables()
        #: hooks run by destroy_domain before PGC_allocated is dropped, in order: forget
        #: the grant mappings it holds (domain_kill's gnttab_release_mappings), drop each
        #: vCPU's roots and unpin every table, clear superpage marks, then devalidate the
        #: tables still valid (linear loops), L4, L3, L2
        self.relinquish_hooks: list = [lambda m, d: m.gnttab.release_mappings(m, d), _unpin_all,
                                       lambda m, d: m.design_host.relinquish(d.domid),
                                       lambda m, d: relinquish_tables(m.pt, d)]
        #: what subsystems hold, for the auditor: f(machine, expected) (see _audit.Expected)
        self.audit_contributors: list = [self.pt.expect, partial_expect, grant_expect]
        #: what faithful mode let through that real Xen got wrong (docs/xen-facts.md, section 8)
        self.violations: list[str] = []
        self._in_request = False
        self._concurrent = False
        #: "stepwise" (every operation by its scalar path, every atomic step visible) or
        #: "vectorised" (accelerators allowed); set by xensim.xen.accel's bind, see mode
        self.mode = accel.VECTORISED
        #: the design's port to this machine (designs.SuperpageHost), and the design
        self.design_host = MachineHost(self)
        self.superpage = design(self.design_host)
        self.design_host.attach_design(self.superpage)
        self.hypercall = HypercallLayer(self)
        self.hypercall.register(HYPERVISOR_memory_op, do_memory_op)
        self.hypercall.register(HYPERVISOR_mmu_update, do_mmu_update, per_vcpu=True)
        self.hypercall.register(HYPERVISOR_mmuext_op, do_mmuext_op, per_vcpu=True)
        self.hypercall.register(HYPERVISOR_update_va_mapping, do_update_va_mapping, per_vcpu=True)
        self.hypercall.register(HYPERVISOR_grant_table_op, do_grant_table_op, per_vcpu=True)
        self.events.watch(self._bind)

    def set_preempt(self, preempt: "str | Preemption") -> None:
        """Change the preemption source (``hypervisor.preempt``'s forms); the slots are
        bound again (an accelerator of a slot with a preemption point is not used while
        preemption can happen)."""
        self.preempt = self.refs.preempt = self._preemption(preempt)
        self._bind()

    @staticmethod
    def _preemption(preempt: "str | Preemption") -> Preemption:
        return preempt if isinstance(preempt, Preemption) else parse_preemption(preempt)

    # -- the execution mode ------------------------------------------------------------
    @property
    def concurrent(self) -> bool:
        """True while the explorer interleaves CPUs: no request journal (a rollback would
        clobber other CPUs' steps; the undo paths alone must be right), and stepwise."""
        return self._concurrent

    @concurrent.setter
    def concurrent(self, value: bool) -> None:
        self._concurrent = bool(value)
        self._bind()

    def _bind(self) -> None:
        """The one place the mode follows from: the explorer (``concurrent``) or a
        subscriber needing steps make it stepwise; the slots are bound to match
        (xensim.xen.accel). Called by the bus after every change of its subscriptions."""
        accel.bind(self)
        self.request = self._observed_request if self.events.observe_request else self._request

    # -- accelerated slots: Xen's algorithm (xen/_mmu.py, xen/_memory_op.py) as methods;
    # -- their accelerators are in xensim.xen.accel
    #: do_mmu_update's loop over its requests (``m.mmu_update_requests(reqs, done, pt_owner,
    #: pg_owner, normal_ok, machphys_ok)``)
    mmu_update_requests = mmu_update_requests
    #: decrease_reservation's guest_remove_page over an extent's frames, in order, stopping
    #: at the first it refuses (``m.remove_extent(d, gmfn, n)``): the frames removed
    remove_extent = remove_extent

    @property
    def pv_superpages(self) -> bool:
        """Does this hypervisor have PV superpages at all (the design's ``supports_pse``)?

        What a PV guest kernel asks before it maps 2 MiB with an L2 PSE entry (False:
        Xen 4.10 on, the ``none`` design; it maps an L1 table of 512 entries instead).
        The allowsuperpage option is not part of it: with the option off a PSE entry
        is refused as the release refuses it."""
        return self.superpage.supports_pse

    @classmethod
    def from_config(cls, cfg, memmap: MemoryMap) -> "Machine":
        hv = cfg.hypervisor
        return cls(memmap, cfg.machine.pdx, version=hv.version,
                   allow_superpage=hv.allow_superpage, superpage=hv.superpage,
                   faithful=hv.faithful, pv_linear_pt=hv.pv_linear_pt, preempt=hv.preempt)

    # -- one hypercall request: all or nothing ---------------------------------------
    def request(self, fn, *args) -> int:
        """Run one request (``fn(*args) -> 0 or -errno``); a failure leaves no trace.

        On failure the request's own undo paths have already given back what
        they took, Xen-style; this checks that they did (every count as before,
        else RefcountBug: a leak in an undo path is never papered over), then
        restores the words bit for bit (type bits left behind with count 0). A
        request in which a design's hook acted (references a design kept with no
        mapping, let go) is not checked: those are no undo, the rollback restores them.
        Between request_enter and request_leave while they have subscribers (the
        machine binds ``request`` to match when the subscriptions change).
        """
        return self._request(fn, *args)

    def _request(self, fn, *args) -> int:
        if self._in_request or self._concurrent:
            return fn(*args)
        ft, sp = self.frame_table, self.spage_table
        ft.begin()
        sp.begin()
        # the PGT_partial tables' records, while there are any (a failed resumed validation
        # is rolled back, not undone: xen/_validate.py's alloc_table)
        partial = self.pt.capture_partial() if self.pt.partial else None
        self._in_request = True
        self.design_host.hooked = False
        try:
            rc = fn(*args)
            if rc < 0 and rc != -ERESTART and not self.design_host.hooked:
                self._check_undone()
        except BaseException:
            ft.rollback()
            sp.rollback()
            raise
        finally:
            self._in_request = False
        if rc < 0 and rc != -ERESTART:      # a preempted request keeps what it did
            ft.rollback()
            sp.rollback()
            if partial is not None:
                self.pt.restore_partial(partial)
        else:
            ft.commit()
            sp.commit()
        return rc

    def _observed_request(self, fn, *args) -> int:
        """:meth:`request` between request_enter and request_leave (rc None: it raised)."""
        ev, rc = self.events, None
        if ev.request_enter is not None:
            ev.request_enter()
        try:
            rc = self._request(fn, *args)
        finally:
            if ev.request_leave is not None:
                ev.request_leave(rc)
        return rc

    def _check_undone(self) -> None:
        ft = self.frame_table
        if ft.journal_short():                 # a few words: no arrays
            for row in ft.journal_changes():
                if _left_changed(*row[1:]):
                    self._undone_bug(row)
        elif (frames := ft.journal_frames()) is not None:
            bad = _left_changed(*frames[1:])
            if bad.any():
                i = int(np.argmax(bad))                 # the first frame left changed
                self._undone_bug([int(a[i]) for a in frames])
        for (word, e), old in self.spage_table.journal_oldest().items():
            if int(self.spage_table.store[word, e]) != old:
                raise RefcountBug(f"a failed request left superpage entry {e} word {word} changed")

    def _undone_bug(self, row) -> None:
        pdx, ci0, ti0, o0, ci1, ti1, o1 = row
        raise RefcountBug(
            f"a failed request left mfn {int(self.pdx_to_mfn(pdx)):#x} changed: count_info "
            f"{ci0:#x} -> {ci1:#x}, type_info {ti0:#x} -> {ti1:#x}, owner {o0} -> {o1}")

    def xsa167(self, mfn: int) -> int:
        """Faithful mode: MARK/UNMARK on an invalid MFN, which 4.1-4.5 did not check."""
        self.violations.append(f"XSA-167: superpage table indexed with invalid mfn {mfn:#x}")
        return 0

    # -- address translation ------------------------------------------------------
    def mfn_to_pdx(self, mfn):
        if type(mfn) is int:                     # the hot scalar path: no dispatch
            return self._to_pdx(mfn)
        return self.pdx.mfn_to_pdx(mfn)

    def pdx_to_mfn(self, pdx):
        if type(pdx) is int:
            return self._to_mfn(pdx)
        return self.pdx.pdx_to_mfn(pdx)

    mfn_to_page = mfn_to_pdx      # Xen's names: a page is its page_info's index
    page_to_mfn = pdx_to_mfn

    def mfn_valid(self, mfn: int) -> bool:
        """Xen's mfn_valid(): below max_page, not in the PDX hole, in a PDX group with RAM.

        Like Xen's, it is true for some non-RAM frames (those sharing a group
        with RAM): validity says a page_info exists, not that the frame is RAM.
        """
        if type(mfn) is not int:
            mfn = int(mfn)
        known = self._mfn_valid.get(mfn)
        if known is not None:                    # (the map, PDX and groups never change)
            return known
        known = bool(0 <= mfn < self.max_page and self._covers(mfn)
                     and self.frame_table.group_valid(self._to_pdx(mfn)))
        if len(self._mfn_valid) >= _MFN_VALID_KEPT:
            self._mfn_valid.clear()
        self._mfn_valid[mfn] = known
        return known

    def mfn_valid_array(self, mfns: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`mfn_valid`."""
        mfns = np.asarray(mfns, dtype=np.int64)
        ok = (mfns >= 0) & (mfns < self.max_page)
        ok[ok] = self.pdx.covers(mfns[ok])
        pdx = np.asarray(self.pdx.mfn_to_pdx(mfns[ok].astype(np.uint64)), dtype=np.int64)
        ok[ok] = self.frame_table.group_valid_many(pdx)
        return ok

    def spdx_with_ram(self) -> np.ndarray:
        """Superpage indexes (pdx >> 9) of every 2 MiB superpage holding RAM."""
        spages = self.memmap.superpages_with_ram().astype(np.uint64)
        pdx = self.pdx.mfn_to_pdx(spages << np.uint64(SUPERPAGE_ORDER))
        return np.asarray(pdx, dtype=np.int64) >> SUPERPAGE_ORDER

    def pdx_runs(self, mfn: int, n: int):
        """Split frames [mfn, mfn+n) of one RAM range into (pdx, count) runs within PDX groups."""
        pdx = self.mfn_to_pdx(mfn)
        while n:
            k = min(n, PDX_GROUP_FRAMES - (pdx & PDX_GROUP_MASK))
            yield pdx, k
            pdx += k
            n -= k

    #: (xen/_pagetable.py's name for it, until it calls pdx_runs)

    # -- domains --------------------------------------------------------------------
    def domain(self, domid: int) -> Domain | None:
        return self.domains.get(domid)

    def create_domain(self, name: str, max_pages: int, caller: int = 0, vcpus: int = 1) -> int:
        """XEN_DOMCTL_createdomain + max_mem + max_vcpus: a new domain id, or -EPERM for a
        non-dom0 caller (-EINVAL for fewer than one vCPU)."""
        if caller != 0:
            return -errno.EPERM
        if vcpus < 1:
            return -errno.EINVAL
        domid = self._next_domid
        self._next_domid += 1
        self.domains[domid] = Domain(domid, name, max_pages, vcpus=vcpus)
        self.gnttab.create(domid)
        return domid

    def destroy_domain(self, domid: int, caller: int = 0) -> int:
        """XEN_DOMCTL_destroydomain, in Xen's order.

        1. the relinquish hooks: unpin every pinned table, clear superpage
           marks (and, with page tables, tear down the tables' references),
           then force-devalidate the tables linear entries still hold;
        2. drop each frame's PGC_allocated reference: a frame returns to the
           heap when its count reaches 0.
        The domain disappears once it owns no frame (else it stays dying, a
        zombie held by references from elsewhere). Returns 0 or -errno.
        """
        if caller != 0:
            return -errno.EPERM
        d = self.domains.get(domid)
        if d is None or domid == 0:
            return -errno.ESRCH if d is None else -errno.EPERM
        d.is_dying = True
        if (step := self.events.atomic_step) is not None:
            # domain_kill pauses the domain first: its hypercalls in flight complete
            step("pause", domid, 0)
        for hook in self.relinquish_hooks:
            hook(self, d)
        for start, end in d.allocated.runs():
            self._drop_allocated_run(d, start, end - start)
        if not d.owned:
            self.domains.pop(domid, None)
        return 0

    # -- the domain heap -----------------------------------------------------------
    def alloc_domheap_pages(self, d: Domain, order: int) -> int:
        """Allocate 2^order frames and assign them to ``d``: the first MFN, or -errno.

        -ENOMEM when the heap has no free block that large; -E2BIG past
        ``max_pages`` and -EINVAL for a dying domain (Xen's assign_pages refuses both).
        """
        if d.is_dying:
            return -errno.EINVAL
        if d.tot_pages + (1 << order) > d.max_pages:
            return -errno.E2BIG
        mfns = self.alloc_domheap_extents(d, order, 1)
        return mfns[0] if mfns else -errno.ENOMEM

    def alloc_domheap_extents(self, d: Domain, order: int, count: int) -> list[int]:
        """``count`` x alloc_domheap_pages(d, order), stopping at the first failure.

        The same result as the loop, with the bookkeeping (frame table, the
        domain's runs, the M2P) done once per run of contiguous extents.
        """
        n = 1 << order
        count = 0 if d.is_dying else max(0, min(count, (d.max_pages - d.tot_pages) // n))
        mfns = self.heap.alloc_many(order, count)
        start = 0
        for i in range(1, len(mfns) + 1):
            if i == len(mfns) or mfns[i] != mfns[i - 1] + n:
                first, frames = mfns[start], (i - start) * n
                for pdx, k in self.pdx_runs(first, frames):
                    ci, ti, owner = self.frame_table.slices(pdx, k)
                    # assign_pages: allocated, in use, the owner's own reference
                    ci[:] = _U(PGC_state_inuse | PGC_allocated | 1)
                    ti[:] = 0
                    owner[:] = d.domid
                d.owned.add(first, first + frames)
                d.allocated.add(first, first + frames)
                self.m2p.clear_run(first, frames)
                start = i
        d.tot_pages += len(mfns) * n
        return mfns

    def _free_pages(self, pages: np.ndarray | int) -> None:
        """Frames whose general count reached 0 go back to the heap and leave their owner."""
        if type(pages) is int:
            return self._free_page(pages)
        pages = np.atleast_1d(np.asarray(pages, dtype=np.int64))
        if (freed := self.events.pages_freed) is not None:
            owners = self.frame_table.gather(pages)[2].astype(np.int64)
        for first, n, mfn in self._page_runs(pages):
            ci, ti, owner = self.frame_table.slices(first, n)
            if (ci & _U(PGC_count_mask)).any():
                raise AssertionError(f"freeing referenced frames at mfn {mfn:#x}")
            o0, o1 = int(owner.min()), int(owner.max())     # one owner (a run's): no sort
            for domid in [o0] if o0 == o1 else np.unique(owner).tolist():
                d = self.domains.get(domid)
                if d is None:
                    continue
                if o0 != o1 and int((owner == domid).sum()) != n:
                    raise AssertionError(f"a free run at mfn {mfn:#x} mixes owners")
                d.owned.remove(mfn, mfn + n)
                d.tot_pages -= n
                if d.is_dying and not d.owned:
                    del self.domains[d.domid]
            ci[:] = _U(PGC_state_free)
            ti[:] = 0
            owner[:] = DOMID_INVALID
            self.m2p.clear_run(mfn, n)
            self.mem.drop_range(mfn, n)
            self.heap.free_range(mfn, mfn + n)
        if freed is not None:
            freed(pages, owners)

    def _page_runs(self, pages: np.ndarray):
        """(first pdx, frames, first mfn) of each run of ``pages`` (distinct PDXs, in order)
        whose frames are consecutive in both numberings: frames freed together are
        usually one run in one group (no array of MFNs made)."""
        lo, hi = int(pages.min()), int(pages.max())
        if (hi - lo == pages.size - 1 and lo >> PDX_GROUP_SHIFT == hi >> PDX_GROUP_SHIFT
                and self._to_mfn(hi) - self._to_mfn(lo) == hi - lo):
            return [(lo, pages.size, self._to_mfn(lo))]     # (distinct: the whole run)
        mfns = np.asarray(self.pdx_to_mfn(pages.astype(np.uint64)), dtype=np.int64)
        cuts = np.flatnonzero(np.diff(mfns) != 1) + 1
        return [(int(p[0]), int(p.size), int(f[0]))
                for p, f in zip(np.split(pages, cuts), np.split(mfns, cuts))]

    def _free_page(self, page: int) -> None:
        """:meth:`_free_pages` of one frame (put_page's), with no array made."""
        ft = self.frame_table
        owner = ft.owner(page)
        mfn = self._to_mfn(page)
        if ft.count_info(page) & PGC_count_mask:
            raise AssertionError(f"freeing referenced frames at mfn {mfn:#x}")
        d = self.domains.get(owner)
        if d is not None:
            d.owned.remove(mfn, mfn + 1)
            d.tot_pages -= 1
            if d.is_dying and not d.owned:
                del self.domains[d.domid]
        ft.set_frame(page, PGC_state_free, 0, DOMID_INVALID)
        if self.m2p.get(mfn) != INVALID:
            self.m2p.clear(mfn)
        self.mem.drop_range(mfn, 1)
        self.heap.free(mfn, 0)
        if (freed := self.events.pages_freed) is not None:
            freed(np.array([page], dtype=np.int64), np.array([owner], dtype=np.int64))

    def _drop_allocated_run(self, d: Domain, mfn: int, n: int) -> None:
        """Clear PGC_allocated on frames [mfn, mfn+n) of ``d`` and put that reference."""
        d.allocated.remove(mfn, mfn + n)
        for pdx, k in self.pdx_runs(mfn, n):
            ci, _, _ = self.frame_table.slices(pdx, k)
            if not (ci & _U(PGC_allocated)).all():
                raise AssertionError(f"frames at mfn {mfn:#x} lost PGC_allocated behind {d.name}'s back")
            ci &= _U(~PGC_allocated & 0xFFFFFFFFFFFFFFFF)
            self.refs.put_pages(pdx, k)

    # -- the machine's state (the inventory: xen/_state.py) ---------------------------
    def capture(self) -> MachineState:
        """Everything :meth:`restore` needs to put the machine back as it is now."""
        return MachineState(self.frame_table.snapshot(), self.refs.tlb.capture_stamps(),
                            self.mem.capture(), self.capture_records())

    def capture_records(self) -> Records:
        """The state besides frame words, stamps and page-table contents (small: the
        fuzzer's journal takes it after every call)."""
        ds = self.domains.values()
        return _new_records(Records, (
            self.heap.snapshot(), self.m2p.capture(), tuple([d.capture() for d in ds]),
            DomainObjects(ds), self.pt.capture_live(), self.superpage.snapshot(),
            self.spage_table.snapshot(), self.refs.tlb.capture_clock(), self._next_domid,
            self.gnttab.capture(), self.pt.capture_linear(), self.pt.capture_partial()))

    def restore(self, state: MachineState) -> None:
        """Put the machine back as ``state`` (a :meth:`capture`) has it; frame words and
        page-table contents go back through their writers (the bus sees them)."""
        self.frame_table.restore(state.frames)
        self.refs.tlb.restore_stamps(state.stamps)
        self.mem.restore(state.tables)
        self.restore_records(state.records)

    def restore_records(self, rec: Records, now: Records | None = None) -> None:
        """The records as ``rec`` (a :meth:`capture_records`) has them, orders included;
        only what differs from ``now`` (the records now, when the caller has them) is
        rebuilt."""
        if now is None:
            now = self.capture_records()
        if now.heap != rec.heap:
            self.heap.restore(rec.heap)
        if now.m2p != rec.m2p:
            self.m2p.restore(rec.m2p)
        if now.domains != rec.domains or not _same_objects(now.objects, rec.objects):
            if not _same_objects(now.objects, rec.objects):
                self.domains.clear()
                self.domains.update((d.domid, d) for d in rec.objects)
            was = {st[0]: st for st in now.domains}
            for d, st in zip(rec.objects, rec.domains):
                cur = was.get(st[0])
                if cur != st:
                    d.restore(st, cur)
        if now.live != rec.live:
            self.pt.restore_live(rec.live)
        if now.linear != rec.linear:
            self.pt.restore_linear(rec.linear)
        if now.design != rec.design:
            self.superpage.restore(rec.design)
        if now.spage != rec.spage:
            self.spage_table.restore(rec.spage)
        if now.tlb != rec.tlb:
            self.refs.tlb.restore_clock(rec.tlb)
        self._next_domid = rec.next_domid
        if now.grants != rec.grants:
            self.gnttab.restore(rec.grants)
        if now.partial != rec.partial:
            self.pt.restore_partial(rec.partial)

    def snapshot(self) -> MachineState:
        """Everything a failed call must leave unchanged (compare with :meth:`same_as`):
        :meth:`capture`."""
        return self.capture()

    def same_as(self, snap: MachineState) -> bool:
        """Is the machine as ``snap`` has it (orders aside, the TLB left out: see
        xen/_state.py)?"""
        return same_state(self.capture(), snap, self.frame_table.same_as(snap.frames))

    def summary(self) -> dict:
        mm = self.memmap
        return {
            "name": mm.name,
            "source": mm.source,
            "ram_bytes": mm.ram_bytes,
            "ram_frames": mm.ram_frames,
            "max_pfn": mm.max_pfn,
            "ranges": len(mm.ranges),
            "holes": len(mm.holes),
            "superpages_with_ram": mm.n_superpages_with_ram,
            "superpages_full": mm.n_superpages_full,
            "pdx": self.pdx.to_dict(),
            "max_pdx": self.pdx.max_pdx,
            "pdx_groups_with_ram": self.frame_table.valid_groups,
            "pdx_group_frames": 1 << PDX_GROUP_SHIFT,
            "frame_table_allocated_bytes": self.frame_table.allocated_bytes(),
            "spage_table_allocated_bytes": self.spage_table.allocated_bytes,
            "free_frames": self.heap.free_frames,
            "domains": len(self.domains),
        }


def _left_changed(ci0, ti0, o0, ci1, ti1, o1):
    """Did a failed request leave a frame changed (ints, or arrays frame by frame)? Its
    counts, owner and pin as before, and its type too unless the type count is 0 (a type
    taken and given back with count 0 may stay)."""
    tcount0, tcount1 = ti0 & PGT_count_mask, ti1 & PGT_count_mask
    return ((ci0 != ci1) | (o0 != o1) | (tcount0 != tcount1) | ((ti0 ^ ti1) & PGT_pinned != 0)
            | ((tcount1 != 0) & (ti0 != ti1)))


def _same_objects(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(map(is_, a, b))


def _unpin_all(m: Machine, d: Domain) -> None:
    """relinquish step 1: each vCPU drops its root tables (vcpu_destroy_pagetables), every
    pinned table loses its pin; tables whose last typed reference goes are devalidated,
    down the tree."""
    for v in d.vcpus:
        vcpu_destroy_pagetables(m, v)
    for page in sorted(d.pinned):
        del d.pinned[page]
        if m.refs.clear_pinned(page):
            m.refs.put_page_and_type(page)
