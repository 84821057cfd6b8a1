"""Xen's reference primitives on the frame table.

``get_page``/``put_page`` move the general count in ``count_info``;
``get_page_type``/``put_page_type`` move the typed count in ``type_info``
(docs/xen-facts.md, section 3). A *page* here is its PDX, the index of its
page_info in the frame table (``Machine.mfn_to_page`` gives it), just as Xen
passes a ``struct page_info *``.

Every read-modify-write of a frame word goes through :meth:`RefCounts.cmpxchg_count`
or :meth:`RefCounts.cmpxchg_type`: one place, so that the concurrency
explorer can make each of them one atomic step.

**Undo is exact** (a deliberate difference, docs/ARCHITECTURE.md): what a failed
acquisition took is given back by a cmpxchg from the word installed to the word seen
before (under concurrency, if another CPU changed it, a plain put), so a failed call
leaves every word as it was; Xen's put_page_type leaves a new type at count 0.

The run forms (``get_pages_and_type``, ``put_pages_and_type``) act on a run of frames
in one PDX group, all or nothing in frame order, between the run events; their loops
(``take_run``, ``drop_run``) are slots xensim.xen.accel's run accelerators replace. The
many-run forms (``runs_ok``, ``get_runs_and_type`` ...) are the designs' batch forms.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from .._errors import RefcountBug
from ._events import Events
from ._preempt import ERESTART, Preemption
from ._tlbflush import TlbFlushFilter
from ..mem import (PDX_GROUP_FRAMES, PDX_GROUP_MASK, PDX_GROUP_SHIFT, FrameTable, PGC_count_mask,
                   PGT_count_mask, PGT_PAGE_TABLE_TYPES, PGT_partial, PGT_pinned, PGT_shared_page,
                   PGT_type_mask, PGT_validated, PGT_writable_page, PGC_allocated, type_name)

_U = np.uint64

#: the types __get_page_type validates at once (every other type goes to alloc_page_type)
VALID_AT_ONCE = (PGT_writable_page, PGT_shared_page)
#: what a type change at type count 0 clears: the type and PGT_validated (Xen 4.1-4.8);
#: PGT_pinned, PGT_partial, PGT_locked and the count survive
_TYPE_CHANGE_KEEP = ~(PGT_type_mask | PGT_validated) & 0xFFFFFFFFFFFFFFFF


class PageTypeValidator(Protocol):
    """The hook that gives page-table types their meaning (filled in by the page-table layer).

    ``alloc_page_type`` validates a frame that is becoming a page table of
    ``type``: every present entry takes its references; on failure it gives back what it
    took and returns a negative errno. ``free_page_type`` devalidates: every entry drops
    its references. ``preemptible`` (and ``partial``, the table was PGT_partial) are passed
    only when set (a validator never preempted may leave them out); -ERESTART
    (xen/_preempt.py) is a preempted one's answer.
    """
    def alloc_page_type(self, page: int, type: int, preemptible: bool = False) -> int: ...
    def free_page_type(self, page: int, type: int, preemptible: bool = False,
                       partial: bool = False) -> int: ...


class NoPageTables:
    """Until page tables exist, a page-table frame has no present entries: always valid."""
    def alloc_page_type(self, page: int, type: int, preemptible: bool = False) -> int:
        return 0

    def free_page_type(self, page: int, type: int, preemptible: bool = False, partial=False) -> int:
        return 0


@dataclass
class RefStats:
    """How often each primitive was called (vectorised calls count per frame)."""
    get_page: int = 0
    put_page: int = 0
    get_page_type: int = 0
    put_page_type: int = 0
    get_page_failed: int = 0
    get_page_type_failed: int = 0
    validations: int = 0
    devalidations: int = 0
    frees: int = 0
    #: TLB flushes a type change asked for (__get_page_type's tlbflush_filter found a CPU
    #: whose TLB may still hold the frame under its old type; see RefCounts.tlbflush_time)
    tlb_flushes: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def add(self, **calls: int) -> None:
        """Count calls n at a time (``add(get_page=512)``): what a run of the primitives
        done at once (an accelerator) counts, as the loop would."""
        counts = self.__dict__
        for name, n in calls.items():
            if name not in counts:
                raise ValueError(f"unknown statistic {name!r}")
            counts[name] += n

    def reset(self) -> None:
        for k in self.__dict__:
            setattr(self, k, 0)


def get_page_allowed(count: int) -> bool:
    """May get_page take a reference at general count ``count``? Not at 0 (a free
    frame), nor at the top two counts (one would wrap; the other is kept for
    get_page_light): Xen refuses when ``((count + 2) & PGC_count_mask) <= 2``."""
    return ((count + 2) & PGC_count_mask) > 2


#: the highest general count at which get_page still takes a reference
GET_PAGE_COUNT_MAX = PGC_count_mask - 2

#: failure reasons of a range operation, with the errno a hypercall reports
REASONS = {
    "free": errno.EINVAL,           # count 0: frame not allocated
    "overflow": errno.EINVAL,       # general count at its top two values (would overflow)
    "owner": errno.EINVAL,          # owned by another domain
    "type": errno.EINVAL,           # type conflict (type count non-zero, other type)
    "type-overflow": errno.EINVAL,  # type count would overflow
}


@dataclass
class RangeResult:
    """The outcome of a vectorised acquisition over ``n`` frames."""
    ok: bool
    n: int
    failed_index: int | None = None     # frame i (0-based) that failed; frames [0, i) were undone
    reason: str | None = None           # one of REASONS

    @property
    def errno(self) -> int:
        return 0 if self.ok else -REASONS[self.reason]

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class RefCounts:
    """The reference primitives, bound to one frame table.

    ``free_page(pages)`` is called when puts drop frames' last general
    references (a page, or a numpy array of pages freed by one vectorised put);
    the machine returns them to the heap. ``validator`` gives
    page-table types their meaning.
    """
    ft: FrameTable
    free_page: Callable[[int | np.ndarray], None]
    validator: PageTypeValidator = field(default_factory=NoPageTables)
    #: ``f(page, have, want) -> bool``, asked when a type change is refused because the
    #: frame holds typed references of another type (True: some went, look again); the
    #: design's ``type_conflict`` hook (None: the design has none)
    type_conflict: Callable[[int, int, int], bool] | None = None
    preempt: Preemption = field(default_factory=Preemption)   #: Machine.preempt
    stats: RefStats = field(default_factory=RefStats)
    #: the machine's event bus (atomic_step, word_changed, tlb_flush, range_*; see _events)
    events: Events = field(default_factory=Events)
    #: Xen's TLB clock and flush filter: the stamps, the flushes (xen/_tlbflush.py)
    tlb: TlbFlushFilter = field(init=False, repr=False)

    # -- the only read-modify-writes of frame words --------------------------------
    def __post_init__(self):
        #: atomic_step and word_changed: the bus's attributes, mirrored here (see _events)
        self.events.attach(self, ("atomic_step", "word_changed"))
        self.tlb = TlbFlushFilter(self.stats, self.events)

    # the TLB filter under the names of Xen's variables (tlbflush_clock, tlbflush_time,
    # a frame's tlbflush_timestamp)
    tlbflush_clock = property(lambda self: self.tlb.clock)
    tlbflush_time = property(lambda self: self.tlb.time)

    def tlbflush_timestamp(self, page: int) -> int:
        return self.tlb.timestamp(page)

    # Nothing runs between a primitive's read of a word and its cmpxchg (the explorer
    # switches CPUs only at atomic steps), so get_page, put_page, get_page_type,
    # put_page_type and clear_allocated store what their cmpxchg would (inlined: hot)
    # and emit word_changed as _cmpxchg_* does; the undo paths' cmpxchg may fail.
    def cmpxchg_count(self, page: int, old: int, new: int, why: str) -> bool:
        cur = self.ft.count_info(page)
        if cur != old:
            return False
        self.ft.set_count_info(page, new, old)
        if self.word_changed is not None:
            self.word_changed(page, "count_info", old, new, why)
        return True

    def cmpxchg_type(self, page: int, old: int, new: int, why: str) -> bool:
        cur = self.ft.type_info(page)
        if cur != old:
            return False
        self.ft.set_type_info(page, new, old)
        if self.word_changed is not None:
            self.word_changed(page, "type_info", old, new, why)
        return True

    # -- general references -------------------------------------------------------
    def get_page(self, page: int, d: int) -> bool:
        """Take a general reference on ``page`` for domain ``d``.

        Fails on a free frame (count 0), near overflow, and on an owner other
        than ``d`` (the reference taken is dropped again). Near overflow means
        the top two counts, as Xen's page_get_owner_and_reference (4.1 to 4.22):
        the last reference before the count wraps is kept for get_page_light.
        """
        if self.atomic_step is not None:
            self.atomic_step("get_page", page, d)
        self.stats.get_page += 1
        ft = self.ft
        while True:
            x = ft.count_info(page)
            if ((x + 2) & PGC_count_mask) <= 2:         # not get_page_allowed (inlined: hot)
                self.stats.get_page_failed += 1
                return False
            ft.set_count_info(page, x + 1, x)             # the cmpxchg finds x
            if self.word_changed is not None:
                self.word_changed(page, "count_info", x, x + 1, "get_page")
            break
        if ft.owner(page) != d:
            # the reference is given back exactly (see module docstring)
            self._undo_count(page, x + 1, x, "get_page: owner mismatch")
            self.stats.get_page_failed += 1
            return False
        return True

    def put_page(self, page: int) -> None:
        """Drop a general reference; at 0 the frame goes back to the heap."""
        if self.atomic_step is not None:
            self.atomic_step("put_page", page, 0)
        self.stats.put_page += 1
        ft = self.ft
        while True:
            x = ft.count_info(page)
            if x & PGC_count_mask == 0:
                raise RefcountBug(f"put_page on page {page:#x} with count 0 (count_info {x:#x})")
            ft.set_count_info(page, x - 1, x)             # the cmpxchg finds x
            if self.word_changed is not None:
                self.word_changed(page, "count_info", x, x - 1, "put_page")
            break
        if (x - 1) & PGC_count_mask == 0:
            self.stats.frees += 1
            self.tlb.clear(page, 1)
            self.free_page(page)

    def _undo_count(self, page: int, taken: int, before: int, why: str) -> None:
        if self.atomic_step is not None:
            self.atomic_step("put_page", page, 0)
        self.stats.put_page += 1
        if not self.cmpxchg_count(page, taken, before, why):
            self.stats.put_page -= 1
            self.put_page(page)

    # -- typed references ---------------------------------------------------------
    def _get_page_type(self, page: int, type: int, preemptible: bool = False) -> int:
        """Xen's __get_page_type (4.1-4.8): 0, or a negative errno (-ERESTART: preempted).

        At type count 0 a new type replaces the old one (only the type and
        PGT_validated are cleared; a TLB flush may be due, see :meth:`TlbFlushFilter.type_change`);
        writable and shared pages are valid at once, every other type (page tables,
        segment descriptor pages) is validated by ``validator.alloc_page_type``.
        The same type, not yet validated, with references: another CPU is validating
        it, and Xen waits until the word changes, then looks again; unless the table is
        ``PGT_partial`` (a preempted validation, its type count left at 1): then this get
        takes that count over (PGT_partial cleared, the count stays 1) and validation
        resumes at ``nr_validated_ptes``. ``preemptible`` (get_page_type_preemptible): the
        validation may be preempted (the table PGT_partial with one more general reference,
        get_page_light; -ERESTART), a wait on another CPU's validation too (-EINTR).
        """
        if self.atomic_step is not None:
            self.atomic_step("get_page_type", page, type)
        self.stats.get_page_type += 1
        while True:
            x = self.ft.type_info(page)
            count = x & PGT_count_mask
            nx = x + 1
            if count == PGT_count_mask:
                self.stats.get_page_type_failed += 1
                return -errno.EINVAL                      # type count overflow
            if count == 0:
                if x & PGT_type_mask != type:
                    # the type may change only while nobody holds a typed reference
                    self.tlb.type_change(page, self.ft.owner(page))
                    nx = (nx & _TYPE_CHANGE_KEEP) | type
                    if type in VALID_AT_ONCE:
                        nx |= PGT_validated
            elif x & PGT_type_mask != type:
                if (self.type_conflict is not None
                        and self.type_conflict(page, x & PGT_type_mask, type)
                        and self.ft.type_info(page) != x):
                    continue                              # the holder let references go
                self.stats.get_page_type_failed += 1
                return -errno.EINVAL                      # type conflict
            elif not x & PGT_validated:
                if x & PGT_partial:
                    # the type count was left at 1 when PGT_partial was set: take it over
                    if count != 1:
                        raise RefcountBug(f"page {page:#x}: PGT_partial with type count "
                                          f"{count} ({x:#x}): Xen ASSERTs 1")
                    nx = x & ~PGT_partial
                else:
                    # another CPU took the first reference and is validating the table:
                    # Xen spins until type_info changes (validated, or the attempt undone),
                    # then retries (-EINTR: preemptible, hypercall_preempt_check() said true)
                    step = self.atomic_step
                    if step is None:
                        raise RefcountBug(f"get_page_type on page {page:#x} ({type_name(type)}) "
                                          f"waits for a validation no other CPU runs ({x:#x}): "
                                          "Xen would spin forever")
                    if preemptible and (self.preempt.pending or bool)():
                        return -errno.EINTR   # the spin's hypercall_preempt_check(): nothing taken
                    step("wait_validated", page, x)     # the explorer runs us again once it changed
                    continue
            self.ft.set_type_info(page, nx, x)            # the cmpxchg finds x
            if self.word_changed is not None:
                self.word_changed(page, "type_info", x, nx, f"get_page_type({type_name(type)})")
            break
        if not nx & PGT_validated:
            if type in VALID_AT_ONCE:
                raise RefcountBug(f"page {page:#x}: {type_name(type)} with type count 0 but not "
                                  f"validated ({x:#x}): Xen's alloc_page_type BUG()s")
            self.stats.validations += 1
            resumed = x & PGT_partial and not nx & PGT_partial
            if not x & PGT_partial:                       # a fresh validation starts at 0
                self.ft.progress.set(page, 0, 0)
            rc = (self.validator.alloc_page_type(page, type, True) if preemptible
                  else self.validator.alloc_page_type(page, type))
            if rc == -ERESTART:
                # alloc_page_type: the table keeps its type count 1 as PGT_partial and one
                # more general reference (get_page_light); a resumed one gives back its old
                self.get_page_light(page)
                self._set_type_flag(page, PGT_partial, "validation preempted")
                if resumed:
                    self.put_page(page)
                return rc
            if rc != 0:
                self._undo_type(page, nx, x, "validation failed")
                self.stats.get_page_type_failed += 1
                return rc
            if self.atomic_step is not None:
                self.atomic_step("set_validated", page, type)
            self._set_type_flag(page, PGT_validated, "validated")
            if resumed:                                   # the resumed table's get_page_light
                self.put_page(page)
        return 0

    def _set_type_flag(self, page: int, flag: int, why: str) -> None:
        while True:
            cur = self.ft.type_info(page)
            if self.cmpxchg_type(page, cur, cur | flag, why):
                return

    def get_page_light(self, page: int) -> None:
        """Xen's get_page_light: one more general reference, on a frame known to hold some."""
        while True:
            x = self.ft.count_info(page)
            if x & PGC_count_mask == 0:
                raise RefcountBug(f"get_page_light on page {page:#x} with count 0 ({x:#x})")
            if self.cmpxchg_count(page, x, x + 1, "get_page_light"):
                self.stats.get_page += 1
                return

    def get_page_type_preemptible(self, page: int, type: int) -> int:
        """Xen's get_page_type_preemptible: 0, -ERESTART (the table PGT_partial), -errno."""
        return self._get_page_type(page, type, True)

    def get_page_type(self, page: int, type: int) -> bool:
        return self._get_page_type(page, type) == 0

    def put_page_type(self, page: int, preemptible: bool = False,
                      partial_set: bool = False) -> int:
        """Drop a typed reference (Xen's __put_page_type): a page table whose count reaches 0
        is devalidated first (PGT_validated / PGT_partial cleared, ``validator.free_page_type``,
        then the count 0). ``preemptible``: that may be preempted: the table keeps its type
        count 1 as PGT_partial with one more general reference, -ERESTART. ``partial_set``
        (4.13 on, PTF_partial_set): only a partial (de)validation's clean-up: nothing unless
        the page is still PGT_partial."""
        if self.atomic_step is not None:
            self.atomic_step("put_page_type", page, 0)
        self.stats.put_page_type += 1
        while True:
            x = self.ft.type_info(page)
            count = x & PGT_count_mask
            if partial_set and not x & PGT_partial:
                return 0                          # taken over (or finished) by another
            if count == 0:
                raise RefcountBug(f"put_page_type on page {page:#x} with type count 0 ({x:#x})")
            if (count == 1 and x & PGT_type_mask in PGT_PAGE_TABLE_TYPES
                    and x & (PGT_validated | PGT_partial)):
                # last typed reference to a (partly) validated table: devalidate first
                nx = x & ~(PGT_validated | PGT_partial)
                if not self.cmpxchg_type(page, x, nx, "devalidating"):
                    continue
                self.stats.devalidations += 1
                rc = (self.validator.free_page_type(page, x & PGT_type_mask, preemptible,
                                                    bool(x & PGT_partial))
                      if preemptible or x & PGT_partial
                      else self.validator.free_page_type(page, x & PGT_type_mask))
                if rc == -ERESTART:              # __put_final_page_type: left PGT_partial
                    self.get_page_light(page)
                    self._set_type_flag(page, PGT_partial, "devalidation preempted")
                else:
                    self.tlb.stamp(page)               # __put_final_page_type's timestamp
                    while not self.cmpxchg_type(page, nx, nx - 1, "put_page_type"):
                        nx = self.ft.type_info(page)
                if x & PGT_partial:                    # the partial table's get_page_light
                    self.put_page(page)
                return rc
            self.ft.set_type_info(page, x - 1, x)         # the cmpxchg finds x
            if self.word_changed is not None:
                self.word_changed(page, "type_info", x, x - 1, "put_page_type")
            if count == 1:
                self.tlb.stamp(page)               # the last typed reference went
            return 0

    def _undo_type(self, page: int, taken: int, before: int, why: str) -> None:
        if self.atomic_step is not None:
            self.atomic_step("put_page_type", page, 0)
        self.stats.put_page_type += 1
        if not self.cmpxchg_type(page, taken, before, why):
            self.stats.put_page_type -= 1
            self.put_page_type(page)

    def get_page_and_type(self, page: int, d: int, type: int) -> bool:
        return self.get_page_and_type_rc(page, d, type) == 0

    def get_page_and_type_rc(self, page: int, d: int, type: int, preemptible: bool = False,
                             held: bool = False, retain: bool = False) -> int:
        """get_page_and_type with the errno (get_page_and_type_from_pagenr): 0, -EINVAL when
        get_page fails, or get_page_type's -errno, the general reference given back exactly
        (at -ERESTART too, unless ``retain``: 4.13 on, PTF_retain_ref_on_restart). ``held``:
        the entry already holds one (partial_pte -1, PTF_partial_set): none taken or given."""
        if held:                                  # (its errors leave the held reference)
            return self._get_page_type(page, type, preemptible)
        before = self.ft.count_info(page)
        if not self.get_page(page, d):
            return -errno.EINVAL
        rc = self._get_page_type(page, type, preemptible)
        if rc == -ERESTART and not retain:
            self.put_page(page)
        elif rc != 0 and rc != -ERESTART:
            self._undo_count(page, before + 1, before, "get_page_and_type: type failed")
        return rc

    def put_page_and_type(self, page: int) -> None:
        self.put_page_type(page)
        self.put_page(page)

    def put_page_and_type_preemptible(self, page: int) -> int:
        """Xen's put_page_and_type_preemptible: the general reference goes only when the
        typed one went all the way (0); at -ERESTART the caller still holds it."""
        rc = self.put_page_type(page, True)
        if rc == 0:
            self.put_page(page)
        return rc

    # -- pins (PGT_pinned, set and cleared in one place) --------------------------------
    def set_pinned(self, page: int) -> bool:
        """Test-and-set PGT_pinned: False if it was already set."""
        if self.atomic_step is not None:
            self.atomic_step("type_flags", page, 0)
        while True:
            x = self.ft.type_info(page)
            if x & PGT_pinned:
                return False
            if self.cmpxchg_type(page, x, x | PGT_pinned, "pin"):
                return True

    def clear_pinned(self, page: int) -> bool:
        """Test-and-clear PGT_pinned: False if it was not set."""
        if self.atomic_step is not None:
            self.atomic_step("type_flags", page, 0)
        while True:
            x = self.ft.type_info(page)
            if not x & PGT_pinned:
                return False
            if self.cmpxchg_type(page, x, x & ~PGT_pinned, "unpin"):
                return True

    def clear_allocated(self, page: int) -> bool:
        """Test-and-clear PGC_allocated (the owner's own reference is then put by the caller)."""
        if self.atomic_step is not None:
            self.atomic_step("count_flags", page, 0)
        while True:
            x = self.ft.count_info(page)
            if not x & PGC_allocated:
                return False
            self.ft.set_count_info(page, x & ~PGC_allocated, x)   # the cmpxchg finds x
            if self.word_changed is not None:
                self.word_changed(page, "count_info", x, x & ~PGC_allocated,
                                  "clear PGC_allocated")
            return True

    # -- a run of frames in one PDX group (a superpage's 512) ---------------------------
    def get_pages_and_type(self, first: int, n: int, d: int, type: int | None) -> RangeResult:
        """get_page (+ get_page_type(type) unless type is None) on frames [first, first+n),
        between range_get and range_got.

        All or nothing, in frame order: if frame i fails, frames [0, i) are
        given back and the result names i and the reason. Page-table types
        need per-frame validation and are refused here.
        """
        if type in PGT_PAGE_TABLE_TYPES:
            raise ValueError("get_pages_and_type is for writable/shared types only")
        ev = self.events
        if ev.range_get is not None:
            ev.range_get(first, n, d, type)
        r = self.take_run(first, n, d, type)
        if ev.range_got is not None:
            ev.range_got(first, n, d, type, r)
        return r

    def take_run(self, first: int, n: int, d: int, type: int | None) -> RangeResult:
        """get_pages_and_type's loop, frame by frame as Xen's get_superpage (an accelerated
        slot: xensim.xen.accel): get_page, then get_page_type; at a failure the frames
        taken are given back exactly, in reverse."""
        taken: list[tuple[int, int, int, int, int]] = []
        for i in range(n):
            page = first + i
            ci0, ti0 = self.ft.count_info(page), self.ft.type_info(page)
            if not self.get_page(page, d):
                c = ci0 & PGC_count_mask
                reason = "free" if c == 0 else "overflow" if c > GET_PAGE_COUNT_MAX else "owner"
                self._undo_loop(taken)
                return RangeResult(False, n, i, reason)
            if type is not None:
                rc = self._get_page_type(page, type)
                if rc != 0:
                    reason = "type-overflow" if ti0 & PGT_count_mask == PGT_count_mask else "type"
                    self._undo_count(page, ci0 + 1, ci0, "undo")
                    self._undo_loop(taken)
                    return RangeResult(False, n, i, reason)
            taken.append((page, ci0, ci0 + 1, ti0, self.ft.type_info(page) if type is not None else -1))
        return RangeResult(True, n)

    def _undo_loop(self, taken) -> None:
        for page, ci0, ci1, ti0, ti1 in reversed(taken):
            if ti1 != -1:
                self._undo_type(page, ti1, ti0, "undo")
            self._undo_count(page, ci1, ci0, "undo")

    def put_pages_and_type(self, first: int, n: int, typed: bool = True) -> None:
        """put_page_type (if ``typed``) then put_page on frames [first, first+n), freeing at
        0, after range_put."""
        if self.events.range_put is not None:
            self.events.range_put(first, n, typed)
        self.drop_run(first, n, typed)

    def drop_run(self, first: int, n: int, typed: bool = True) -> int:
        """put_pages_and_type's loop, frame by frame (an accelerated slot): n."""
        for page in range(first, first + n):
            if typed:
                self.put_page_type(page)
            self.put_page(page)
        return n

    def frames_freed(self, pages: np.ndarray) -> None:
        """Frames (PDXs) whose general count a run of puts done at once brought to 0: counted,
        their TLB stamps cleared, back to the heap (``free_page``), as put_page does."""
        self.stats.frees += int(pages.size)
        self.tlb.clear(pages)
        self.free_page(pages)

    def get_pages(self, first: int, n: int, d: int) -> RangeResult:
        return self.get_pages_and_type(first, n, d, None)

    def put_pages(self, first: int, n: int) -> None:
        self.put_pages_and_type(first, n, typed=False)

    # -- many runs at once (a batch of superpages): check, then apply ----------------------
    def _run_blocks(self, firsts: np.ndarray, n: int):
        """Per PDX group: (rows, index) where ``index`` selects the runs' frames in the group
        arrays: a slice reshaped (rows x n) when the runs are consecutive, else a fancy index."""
        groups = firsts >> PDX_GROUP_SHIFT
        cols = np.arange(n, dtype=np.int64)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            pos = firsts[rows] & PDX_GROUP_MASK
            if (pos + n > PDX_GROUP_FRAMES).any():
                raise ValueError("a run crosses a PDX group boundary")
            if rows.size == 1 or (np.diff(pos) == n).all():
                yield int(g), rows, (int(pos[0]), rows.size)
            else:
                yield int(g), rows, pos[:, None] + cols

    def _view(self, arr: np.ndarray, index, n: int) -> np.ndarray:
        if isinstance(index, tuple):
            start, r = index
            return arr[start:start + r * n].reshape(r, n)
        return arr[index]

    def runs_ok(self, firsts: np.ndarray, n: int, d: int, type: int | None) -> np.ndarray:
        """Per run: would get_pages_and_type(first, n, d, type) succeed? (Reads only.)"""
        firsts = np.asarray(firsts, dtype=np.int64)
        ok = np.ones(firsts.size, dtype=bool)
        for g, rows, index in self._run_blocks(firsts, n):
            ci_g, ti_g, owner_g = self.ft.group(g)
            ci, owner = self._view(ci_g, index, n), self._view(owner_g, index, n)
            good = ((ci & _U(PGC_count_mask)) - _U(1)) < _U(GET_PAGE_COUNT_MAX)
            good &= owner == d
            if type is not None:
                ti = self._view(ti_g, index, n)
                tcnt = ti & _U(PGT_count_mask)
                good &= ((tcnt == 0) | ((ti & _U(PGT_type_mask)) == _U(type))) & (tcnt != _U(PGT_count_mask))
            ok[rows] = good.all(axis=1)
        return ok

    def get_runs_and_type(self, firsts: np.ndarray, n: int, d: int, type: int | None) -> None:
        """get_pages_and_type on every run; the caller checked them with :meth:`runs_ok`."""
        if type in PGT_PAGE_TABLE_TYPES:
            raise ValueError("vectorised get_page_type is for writable/shared types only")
        firsts = np.asarray(firsts, dtype=np.int64)
        if (get := self.events.range_get) is not None:
            for first in firsts.tolist():
                get(first, n, d, type)
        for g, rows, index in self._run_blocks(firsts, n):
            ci_g, ti_g, _ = self.ft.group_for_runs(g, firsts[rows], n)
            self._apply(ci_g, index, n, lambda ci: np.add(ci, _U(1), out=ci))
            if type is not None:
                if g in self.tlb.groups:                   # the flush a type change asks for
                    ti = self._view(ti_g, index, n)
                    self.tlb.runs_flush(firsts[rows], ((ti & _U(PGT_count_mask)) == 0)
                                     & ((ti & _U(PGT_type_mask)) != _U(type)),
                                     self._view(self.tlb.groups[g], index, n), d)
                # runs_ok passed: a frame with typed references already holds exactly
                # ``type | PGT_validated``, so setting them on every frame changes only
                # the frames whose type count was 0 (the first typed reference)
                keep = _U(_TYPE_CHANGE_KEEP)
                t = _U(type | PGT_validated)

                def take_type(ti):
                    np.bitwise_and(ti, keep, out=ti)
                    np.bitwise_or(ti, t, out=ti)
                    np.add(ti, _U(1), out=ti)
                self._apply(ti_g, index, n, take_type)
        k = firsts.size * n
        self.stats.get_page += k
        if type is not None:
            self.stats.get_page_type += k
        if (got := self.events.range_got) is not None:
            for first in firsts.tolist():
                got(first, n, d, type, RangeResult(True, n))

    def _apply(self, arr: np.ndarray, index, n: int, fn) -> None:
        """Run the in-place update ``fn`` on the runs' frames of one group."""
        if isinstance(index, tuple):
            fn(self._view(arr, index, n))
        else:
            v = arr[index]
            fn(v)
            arr[index] = v

    def put_runs_ok(self, firsts: np.ndarray, n: int, typed: bool = True) -> np.ndarray:
        """Per run: can put_pages_and_type(first, n) run without a count going below 0?"""
        firsts = np.asarray(firsts, dtype=np.int64)
        ok = np.ones(firsts.size, dtype=bool)
        for g, rows, index in self._run_blocks(firsts, n):
            ci_g, ti_g, _ = self.ft.group(g)
            good = (self._view(ci_g, index, n) & _U(PGC_count_mask)) != 0
            if typed:
                ti = self._view(ti_g, index, n)
                good &= ((ti & _U(PGT_count_mask)) != 0) & ((ti >> _U(60)) - _U(1) >= _U(4))
            ok[rows] = good.all(axis=1)
        return ok

    def put_runs_and_type(self, firsts: np.ndarray, n: int, typed: bool = True) -> None:
        """put_pages_and_type on every run (checked with :meth:`put_runs_ok`); frees at 0."""
        firsts = np.asarray(firsts, dtype=np.int64)
        if (put := self.events.range_put) is not None:
            for first in firsts.tolist():
                put(first, n, typed)
        freed = []
        for g, rows, index in self._run_blocks(firsts, n):
            ci_g, ti_g, _ = self.ft.group_for_runs(g, firsts[rows], n)
            if typed:
                self._apply(ti_g, index, n, lambda ti: np.subtract(ti, _U(1), out=ti))
                tzero = (self._view(ti_g, index, n) & _U(PGT_count_mask)) == 0
                if tzero.any():                         # the last typed references went
                    clock = np.uint32(self.tlb.clock)
                    self._apply(self.tlb.group_for_write(g), index, n,
                                lambda st: np.copyto(st, clock, where=tzero))
            self._apply(ci_g, index, n, lambda ci: np.subtract(ci, _U(1), out=ci))
            cnt = self._view(ci_g, index, n) & _U(PGC_count_mask)
            if not cnt.all():
                r, c = np.nonzero(cnt == 0)
                freed.append(firsts[rows][r] + c)
        k = firsts.size * n
        self.stats.put_page += k
        if typed:
            self.stats.put_page_type += k
        if freed:
            pages = np.sort(np.concatenate(freed))
            self.stats.frees += int(pages.size)
            self.tlb.clear(pages)
            self.free_page(pages)
