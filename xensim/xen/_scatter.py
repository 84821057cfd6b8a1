"""Reference puts on scattered frames at once: an L1 table's entries being devalidated.

:class:`ScatteredPuts` is mixed into :class:`~xensim.xen.RefCounts` (its fields hold
the state). ``put_scattered`` gives back what a list of entries held, each a
general reference and, where ``typed``, a writable or shared typed one, on frames
in any order and with repeats: the same words, TLB stamps, frees and statistics as
``put_page_type`` / ``put_page`` entry by entry (xen/arch/x86/mm.c's
``put_page_from_l1e`` over ``free_l1_table``), since no put of such a frame
devalidates anything. It refuses (and does nothing) when the loop would not be a
plain sequence of puts, or when anything observes the words: the loop is the
reference and the per-frame events are its own.
"""

from __future__ import annotations

import numpy as np

from ..mem import PDX_GROUP_MASK, PDX_GROUP_SHIFT
from ..mem import PGC_count_mask, PGT_count_mask, PGT_shared_page, PGT_type_mask, PGT_writable_page

_U = np.uint64


class ScatteredPuts:
    """``put_scattered`` (a mixin of RefCounts)."""

    def put_scattered(self, pages: np.ndarray, typed: np.ndarray) -> bool:
        """put_page_type (where ``typed``) then put_page for each of ``pages`` (PDXs, int64,
        repeats allowed), as the loop in that order would. False, and nothing changed,
        while anything observes the steps (atomic steps, word changes), or when a count would fall below 0 or a typed
        frame is not writable or shared (the loop then raises, or devalidates)."""
        if self.atomic_step is not None or self.word_changed is not None:
            return False                 # the steps are observed (what is written may be)
        uniq, inv = np.unique(pages, return_inverse=True)
        refs = np.bincount(inv, minlength=uniq.size)
        trefs = np.bincount(inv, weights=typed, minlength=uniq.size).astype(np.int64)
        ft = self.ft
        ci, ti, _ = ft.gather(uniq)
        if ((ci & _U(PGC_count_mask)).astype(np.int64) < refs).any():
            return False
        tcount = (ti & _U(PGT_count_mask)).astype(np.int64)
        kind = ti & _U(PGT_type_mask)
        held = trefs > 0
        if ((tcount < trefs) | (held & (kind != _U(PGT_writable_page))
                                & (kind != _U(PGT_shared_page)))).any():
            return False
        ci1, ti1 = ci - refs.astype(np.uint64), ti - trefs.astype(np.uint64)
        if held.any():
            ft.set_many(uniq[held], 1, ti1[held])
        ft.set_many(uniq, 0, ci1)
        s = self.stats
        s.put_page += int(pages.size)
        s.put_page_type += int(trefs.sum())
        stamped = uniq[held & (tcount == trefs)]    # their last typed reference went
        for g in np.unique(stamped >> PDX_GROUP_SHIFT).tolist():
            sel = stamped[(stamped >> PDX_GROUP_SHIFT) == g]
            self._stamp_group(g)[sel & PDX_GROUP_MASK] = self.tlbflush_clock
        freed = uniq[(ci1 & _U(PGC_count_mask)) == 0]
        if freed.size:
            s.frees += int(freed.size)
            self._clear_stamps(freed)
            self.free_page(freed)
        return True
