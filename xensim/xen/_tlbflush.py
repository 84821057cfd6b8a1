"""Xen's TLB clock and flush filter: :class:`TlbFlushFilter` (docs/xen-facts.md, section 3).

When a frame's type count falls to 0, __put_page_type stamps the frame with the
TLB clock (``tlbflush_timestamp``). When __get_page_type later changes the
frame's type, a CPU whose TLB may still hold the frame under its old type (its
last flush is not after the stamp: NEED_FLUSH) is flushed, and the clock ticks.
xensim gives each domain one CPU of its own, which all its vCPUs share (the domain's
dirty mask is that CPU), so "the owner's CPU" is the domain's. :class:`~xensim.xen.RefCounts` holds one filter (``refs.tlb``) and
calls it where Xen's primitives stamp and filter; each flush is counted in the
primitives' ``stats.tlb_flushes`` and emitted as the ``tlb_flush`` event.

Its state (the clock, each CPU's last flush, each frame's stamp) is part of the
machine's inventory (xen/_state.py): :meth:`TlbFlushFilter.capture_clock` /
:meth:`~TlbFlushFilter.restore_clock`, the stamps frame by frame with
:meth:`~TlbFlushFilter.stamps_at` / :meth:`~TlbFlushFilter.set_stamps` or whole with
:meth:`~TlbFlushFilter.capture_stamps` / :meth:`~TlbFlushFilter.restore_stamps`.
"""

from __future__ import annotations

import numpy as np

from ..mem import DOMID_INVALID, PDX_GROUP_FRAMES, PDX_GROUP_MASK, PDX_GROUP_SHIFT, mapped_zeros

__all__ = ["TlbFlushFilter"]


class TlbFlushFilter:
    """The TLB clock, each domain's CPU's last flush and each frame's stamp; ``stats``
    (a RefStats: ``tlb_flushes``) and ``events`` (the bus: ``tlb_flush``) are the
    holder's."""

    def __init__(self, stats, events):
        self.stats = stats
        self.events = events
        #: Xen's TLB clock (tlbflush_clock): starts at 1, ticks at every flush counted
        self.clock = 1
        #: per domain: the clock when its CPU's TLB was last flushed (Xen's per-CPU
        #: tlbflush_time; one CPU per domain, shared by its vCPUs; 0: never)
        self.time: dict[int, int] = {}
        #: per PDX group: each frame's tlbflush_timestamp (the clock when its type count
        #: last fell to 0; 0: not since it was allocated), allocated on first stamp
        self.groups: dict[int, np.ndarray] = {}
        #: capture_clock() until the clock next moves
        self._clock_state: tuple | None = None
        #: moves at every write of stamps (an observer that copied them looks again only
        #: when it moved)
        self.version = 0

    # -- the stamps ----------------------------------------------------------------
    def group_for_write(self, g: int) -> np.ndarray:
        """Group ``g``'s stamps, allocated (zero) if none was stamped yet."""
        self.version += 1
        a = self.groups.get(g)
        if a is None:
            a = self.groups[g] = mapped_zeros(PDX_GROUP_FRAMES, np.uint32)
        return a

    def timestamp(self, page: int) -> int:
        """The clock when ``page``'s type count last fell to 0 (0: not since allocated)."""
        a = self.groups.get(page >> PDX_GROUP_SHIFT)
        return 0 if a is None else int(a[page & PDX_GROUP_MASK])

    def stamp(self, page: int) -> None:
        """put_page_type took the last typed reference: Xen records tlbflush_current_time()."""
        self.group_for_write(page >> PDX_GROUP_SHIFT)[page & PDX_GROUP_MASK] = self.clock

    def clear(self, pages, n: int = 0) -> None:
        """Frames going back to the heap (``pages``, or the run [pages, pages+n)): a frame
        allocated again needs no flush for its past (Xen's alloc_heap_pages flushes
        stale TLBs then; that flush is not counted here)."""
        if not self.groups:
            return
        self.version += 1
        if n == 1:                              # one frame (put_page's): no array made
            a = self.groups.get(pages >> PDX_GROUP_SHIFT)
            if a is not None:
                a[pages & PDX_GROUP_MASK] = 0
            return
        if n and pages >> PDX_GROUP_SHIFT == (pages + n - 1) >> PDX_GROUP_SHIFT:
            a = self.groups.get(pages >> PDX_GROUP_SHIFT)
            if a is not None:                   # a run in one group: a slice
                a[pages & PDX_GROUP_MASK:(pages & PDX_GROUP_MASK) + n] = 0
            return
        pages = np.arange(pages, pages + n) if n else np.atleast_1d(np.asarray(pages, dtype=np.int64))
        if not pages.size:
            return
        lo, hi = int(pages.min()), int(pages.max())
        if lo >> PDX_GROUP_SHIFT == hi >> PDX_GROUP_SHIFT:   # one group (a run's frames): no sort
            a = self.groups.get(lo >> PDX_GROUP_SHIFT)
            if a is None:
                pass
            elif hi - lo == pages.size - 1:     # (distinct frames) every one of [lo, hi]
                a[lo & PDX_GROUP_MASK:(hi & PDX_GROUP_MASK) + 1] = 0
            else:
                a[pages & PDX_GROUP_MASK] = 0
            return
        groups = pages >> PDX_GROUP_SHIFT
        for g in np.unique(groups):
            a = self.groups.get(int(g))
            if a is not None:
                a[pages[groups == g] & PDX_GROUP_MASK] = 0

    # -- the run forms (what an accelerator reports through) -----------------------
    def stamped_group(self, page: int) -> bool:
        """Has any frame of ``page``'s PDX group been stamped (can a type change there
        need a flush)?"""
        return page >> PDX_GROUP_SHIFT in self.groups

    def stamp_run(self, first: int, where: np.ndarray | None, n: int = 0) -> None:
        """put_page_type took the last typed references of the frames ``where`` selects in
        the run [first, first+len(where)) (one PDX group), or of every frame of the run
        [first, first+n) (``where`` None): stamp them with the clock."""
        off = first & PDX_GROUP_MASK
        a = self.group_for_write(first >> PDX_GROUP_SHIFT)
        if where is None:
            a[off:off + n].fill(self.clock)
        else:
            np.copyto(a[off:off + where.size], np.uint32(self.clock), where=where)

    def stamp_pages(self, pages: np.ndarray) -> None:
        """The same for scattered frames (``pages``: PDXs, int64)."""
        groups = pages >> PDX_GROUP_SHIFT
        for g in np.unique(groups).tolist():
            self.group_for_write(g)[pages[groups == g] & PDX_GROUP_MASK] = self.clock

    # -- the filter and the flush ---------------------------------------------------
    def need_flush(self, d: int, stamp) -> bool:
        """NEED_FLUSH: the owner's CPU last flushed its TLB no later than ``stamp``."""
        return d != DOMID_INVALID and 0 < stamp and self.time.get(d, 0) <= stamp

    def flush(self, page: int, d: int, stamp: int) -> None:
        """flush_tlb_mask on the owner's CPU: the clock ticks, the CPU's time is the new one."""
        self.stats.tlb_flushes += 1
        self.clock += 1
        self.time[d] = self.clock
        self._clock_state = None
        if (ev := self.events.tlb_flush) is not None:
            ev(page, d, stamp, self.clock)

    def type_change(self, page: int, owner: int) -> None:
        """A type change of ``page`` (owned by ``owner``): flush if the owner's CPU may
        still hold it in its TLB under the old type (its timestamp is not older than that
        CPU's last flush)."""
        stamp = self.timestamp(page)
        if self.need_flush(owner, stamp):
            self.flush(page, owner, stamp)

    def range_flush(self, first: int, changing: np.ndarray, d: int) -> None:
        """The per-frame loop's flushes over a run of ``d``'s frames, ``changing`` the ones
        whose type changes: at most one (after it, every older stamp is covered)."""
        a = self.groups.get(first >> PDX_GROUP_SHIFT)
        if a is None or not changing.any():
            return
        off = first & PDX_GROUP_MASK
        self.runs_flush(np.array([first]), changing.reshape(1, -1),
                        a[off:off + changing.size].reshape(1, -1), d)

    def runs_flush(self, firsts: np.ndarray, changing: np.ndarray, st: np.ndarray, d: int) -> None:
        """The same over runs at once (row r: the run at ``firsts[r]``, its stamps ``st[r]``):
        the first frame in run order that needs a flush gets the one flush."""
        need = changing & (st > 0) & (st >= self.time.get(d, 0))
        if d != DOMID_INVALID and need.any():
            r, c = divmod(int(np.argmax(need)), need.shape[1])
            self.flush(int(firsts[r]) + c, d, int(st[r, c]))

    # -- state (the machine's inventory) ---------------------------------------------
    def capture_clock(self) -> tuple:
        """The clock and each CPU's last flush, as plain values (the same tuple until a
        flush)."""
        if self._clock_state is None:
            self._clock_state = (self.clock, tuple(self.time.items()))
        return self._clock_state

    def restore_clock(self, state: tuple) -> None:
        self.clock = state[0]
        self.time = dict(state[1])
        self._clock_state = state

    def stamps_at(self, pages: np.ndarray) -> np.ndarray:
        """The stamps of ``pages`` (PDXs, sorted) as a uint32 array (0 where none)."""
        out = np.zeros(pages.size, dtype=np.uint32)
        for g, sel in _by_group(pages):
            a = self.groups.get(g)
            if a is not None:
                out[sel] = a[pages[sel] & PDX_GROUP_MASK]
        return out

    def set_stamps(self, pages: np.ndarray, values: np.ndarray) -> None:
        """Give ``pages`` (PDXs, sorted) the stamps ``values`` (a group is allocated only
        for a non-zero one)."""
        for g, sel in _by_group(pages):
            a = self.groups.get(g)
            if a is None:
                if not values[sel].any():
                    continue
                a = self.group_for_write(g)
            self.version += 1
            a[pages[sel] & PDX_GROUP_MASK] = values[sel]

    def capture_stamps(self) -> dict[int, bytes]:
        """Every stamped group's stamps (groups of zeros left out)."""
        return {g: a.tobytes() for g, a in self.groups.items() if a.any()}

    def restore_stamps(self, state: dict[int, bytes]) -> None:
        self.version += 1
        self.groups = {g: np.frombuffer(b, dtype=np.uint32).copy() for g, b in state.items()}


def _by_group(pages: np.ndarray):
    """(group, positions in ``pages``) for sorted ``pages`` (PDXs)."""
    if not pages.size:
        return
    g0, g1 = int(pages[0]) >> PDX_GROUP_SHIFT, int(pages[-1]) >> PDX_GROUP_SHIFT
    if g0 == g1:                                # the usual case: one PDX group
        yield g0, slice(None)
        return
    groups = pages >> PDX_GROUP_SHIFT
    for g in np.unique(groups).tolist():
        yield g, np.flatnonzero(groups == g)
