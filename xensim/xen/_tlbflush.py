"""TLB flush accounting of the reference primitives: Xen's tlbflush_timestamp and
tlbflush_filter (docs/xen-facts.md, section 3).

When a frame's type count falls to 0, __put_page_type stamps the frame with the
TLB clock (``tlbflush_timestamp``). When __get_page_type later changes the
frame's type, a CPU whose TLB may still hold the frame under its old type (its
last flush is not after the stamp: NEED_FLUSH) is flushed, and the clock ticks.
xensim gives each domain one vCPU on a CPU of its own, so "the owner's CPU" is
the domain's. :class:`TlbFlushes` is mixed into :class:`~xensim.xen.RefCounts`,
which holds the state (``tlbflush_clock``, ``tlbflush_time``, ``_stamps``); each
flush is counted in ``stats.tlb_flushes`` and emitted as the ``tlb_flush`` event.
"""

from __future__ import annotations

import numpy as np

from ..mem import DOMID_INVALID, PDX_GROUP_FRAMES, PDX_GROUP_MASK, PDX_GROUP_SHIFT


class TlbFlushes:
    """The stamps and flushes (a mixin of RefCounts: its fields hold the state)."""

    def _stamp_group(self, g: int) -> np.ndarray:
        a = self._stamps.get(g)
        if a is None:
            a = self._stamps[g] = np.zeros(PDX_GROUP_FRAMES, dtype=np.uint32)
        return a

    def tlbflush_timestamp(self, page: int) -> int:
        """The clock when ``page``'s type count last fell to 0 (0: not since allocated)."""
        a = self._stamps.get(page >> PDX_GROUP_SHIFT)
        return 0 if a is None else int(a[page & PDX_GROUP_MASK])

    def _stamp(self, page: int) -> None:
        """put_page_type took the last typed reference: Xen records tlbflush_current_time()."""
        self._stamp_group(page >> PDX_GROUP_SHIFT)[page & PDX_GROUP_MASK] = self.tlbflush_clock

    def _clear_stamps(self, pages, n: int = 0) -> None:
        """Frames going back to the heap (``pages``, or the run [pages, pages+n)): a frame
        allocated again needs no flush for its past (Xen's alloc_heap_pages flushes
        stale TLBs then; that flush is not counted here)."""
        if not self._stamps:
            return
        if n == 1:                              # one frame (put_page's): no array made
            a = self._stamps.get(pages >> PDX_GROUP_SHIFT)
            if a is not None:
                a[pages & PDX_GROUP_MASK] = 0
            return
        pages = np.arange(pages, pages + n) if n else np.atleast_1d(np.asarray(pages, dtype=np.int64))
        groups = pages >> PDX_GROUP_SHIFT
        for g in np.unique(groups):
            a = self._stamps.get(int(g))
            if a is not None:
                a[pages[groups == g] & PDX_GROUP_MASK] = 0

    # -- the public run forms (what an accelerator reports through) ---------------------
    def stamped_group(self, page: int) -> bool:
        """Has any frame of ``page``'s PDX group been stamped (can a type change there
        need a flush)?"""
        return page >> PDX_GROUP_SHIFT in self._stamps

    def stamp_run(self, first: int, where: np.ndarray) -> None:
        """put_page_type took the last typed references of the frames ``where`` selects in
        the run [first, first+len(where)) (one PDX group): stamp them with the clock."""
        off = first & PDX_GROUP_MASK
        np.copyto(self._stamp_group(first >> PDX_GROUP_SHIFT)[off:off + where.size],
                  np.uint32(self.tlbflush_clock), where=where)

    def stamp_pages(self, pages: np.ndarray) -> None:
        """The same for scattered frames (``pages``: PDXs, int64)."""
        for g in np.unique(pages >> PDX_GROUP_SHIFT).tolist():
            sel = pages[(pages >> PDX_GROUP_SHIFT) == g]
            self._stamp_group(g)[sel & PDX_GROUP_MASK] = self.tlbflush_clock

    def run_type_flush(self, first: int, changing: np.ndarray, d: int) -> None:
        """The per-frame loop's flushes over a run of ``d``'s frames, ``changing`` the ones
        whose type changes: at most one (after it, every older stamp is covered)."""
        self._range_flush(first, changing, d)

    def _need_flush(self, d: int, stamp) -> bool:
        """NEED_FLUSH: the owner's CPU last flushed its TLB no later than ``stamp``."""
        return d != DOMID_INVALID and 0 < stamp and self.tlbflush_time.get(d, 0) <= stamp

    def _flush(self, page: int, d: int, stamp: int) -> None:
        """flush_tlb_mask on the owner's CPU: the clock ticks, the CPU's time is the new one."""
        self.stats.tlb_flushes += 1
        self.tlbflush_clock += 1
        self.tlbflush_time[d] = self.tlbflush_clock
        if (ev := self.events.tlb_flush) is not None:
            ev(page, d, stamp, self.tlbflush_clock)

    def _type_change_flush(self, page: int) -> None:
        """A type change of ``page``: flush if the owner's CPU may still hold it in its TLB
        under the old type (its timestamp is not older than that CPU's last flush)."""
        d = self.ft.owner(page)
        stamp = self.tlbflush_timestamp(page)
        if self._need_flush(d, stamp):
            self._flush(page, d, stamp)

    def _range_flush(self, first: int, changing: np.ndarray, d: int) -> None:
        """The per-frame loop's flushes over a run of ``d``'s frames, ``changing`` the ones
        whose type changes: at most one (after it, every older stamp is covered)."""
        a = self._stamps.get(first >> PDX_GROUP_SHIFT)
        if a is None or not changing.any():
            return
        off = first & PDX_GROUP_MASK
        self._runs_flush(np.array([first]), changing.reshape(1, -1),
                         a[off:off + changing.size].reshape(1, -1), d)

    def _runs_flush(self, firsts: np.ndarray, changing: np.ndarray, st: np.ndarray, d: int) -> None:
        """The same over runs at once (row r: the run at ``firsts[r]``, its stamps ``st[r]``):
        the first frame in run order that needs a flush gets the one flush."""
        need = changing & (st > 0) & (st >= self.tlbflush_time.get(d, 0))
        if d != DOMID_INVALID and need.any():
            r, c = divmod(int(np.argmax(need)), need.shape[1])
            self._flush(int(firsts[r]) + c, d, int(st[r, c]))
