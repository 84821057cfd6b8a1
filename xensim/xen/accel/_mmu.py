"""mmu_update's accelerators: a batch of PSE maps or unmaps into one L2 table, and a
batch of ordinary writes into one frame that is not a live page table.

Both accelerate ``Machine.mmu_update_requests`` (do_mmu_update's loop, after Xen's
prologue has found the page-table and page owners and the XSM answers).
"""

from __future__ import annotations

import numpy as np

from ._contract import Accelerator, register
from .._mmu import (MMU_CMD_MASK, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, mmu_update_one,
                    mmu_update_requests)
from .._pagetable import PADDR_MASK, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, put_pte_flags
from ...mem import PAGE_SHIFT, SUPERPAGE_PAGES

_U64 = (1 << 64) - 1

#: batches at least this long are tried by mmu_update's accelerators
PSE_BATCH_MIN = 8


def _set_done(done, n: int) -> None:
    if done is not None:
        done[0] = n


class PseBatch(Accelerator):
    """The leading requests of a batch of PSE maps (or unmaps), at once."""
    slot = ("machine", "mmu_update_requests")
    min_size = (0, PSE_BATCH_MIN)            # reqs
    precondition = (f"at least {PSE_BATCH_MIN} MMU_NORMAL_PT_UPDATE requests (XSM allows them) "
                    "into one live L2 table of the page-table owner, at distinct indexes: all "
                    "PSE maps of distinct, aligned, valid superpages into empty entries, or all "
                    "clears of entries mapping distinct superpages; the design's "
                    "get_superpages / put_superpages take the longest prefix that succeeds "
                    "in order, the scalar loop does the rest")
    #: none: its superpage words are reported as spage_write_many and its frames as range
    #: events, the run forms the tracer narrates as one batch; the requests' temporary
    #: references on the table leave its words as they were (no request, entry or
    #: word_changed events are emitted for the batch: only a stepwise machine has them)
    hides = ()

    def apply(self, m, reqs, done, pt_owner, pg_owner, normal_ok, machphys_ok):
        if not normal_ok or len(reqs) < PSE_BATCH_MIN:
            return None
        f = self.prefix(m, reqs, pt_owner, pg_owner)
        if not f:
            return None
        rc = mmu_update_requests(m, reqs[f:], done, pt_owner, pg_owner, normal_ok, machphys_ok)
        if done is not None:
            done[0] += f
        return rc

    @staticmethod
    def prefix(m, reqs, pt_owner, pg_owner) -> int:
        """Do the leading requests of the batch at once; how many were done (0: none).

        Every request of such a batch touches its own superpage word and its own 512
        frames, so the requests are independent; each one's temporary reference on the
        table (get_page, put_page) leaves the table's words as they were."""
        design = m.superpage
        if not design.supports_pse or not m.allow_superpage:
            return 0
        if not all(0 <= r.ptr < (1 << 63) for r in reqs):      # odd pointers: the scalar loop
            return 0
        ptrs = np.fromiter((r.ptr for r in reqs), dtype=np.int64, count=len(reqs))
        table = int(ptrs[0]) >> PAGE_SHIFT
        if ((ptrs & 7) != 0).any() or ((ptrs >> PAGE_SHIFT) != table).any() or not m.mfn_valid(table):
            return 0
        page = m.mfn_to_page(table)
        if m.frame_table.owner(page) != pt_owner.domid or m.pt.live_level(page) != 2:
            return 0
        idx = (ptrs & ((1 << PAGE_SHIFT) - 1)) >> 3
        vals = np.array([r.val for r in reqs], dtype=np.uint64)
        old = m.mem.table(table)[idx]
        present = np.uint64(_PAGE_PRESENT)
        if (vals & present).all() and not (old & present).any():
            mapping = True
            entries = vals
            refused = np.uint64(put_pte_flags(m.pt.disallow_mask(2)))   # L2_DISALLOW_MASK
            ok = ((vals & np.uint64(_PAGE_PSE)) != 0) & ((vals & refused) == 0)
        elif not vals.any() and ((old & present) != 0).all() and ((old & np.uint64(_PAGE_PSE)) != 0).all():
            mapping = False
            entries = old
            ok = np.ones(len(reqs), dtype=bool)
        else:
            return 0
        mfns = ((entries & np.uint64(PADDR_MASK)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        if mapping:
            # invalid MFNs never enter the batch: the scalar path refuses them (or, in
            # faithful mode, records XSA-167 the way the release did)
            ok &= (mfns & (SUPERPAGE_PAGES - 1)) == 0
            ok &= m.mfn_valid_array(mfns) & m.mfn_valid_array(mfns + SUPERPAGE_PAGES - 1)
        p = int(np.argmin(ok)) if not ok.all() else ok.size
        # indexes and superpages must be distinct within the prefix
        if p == 0 or np.unique(idx[:p]).size != p or np.unique(mfns[:p]).size != p:
            return 0
        rw = (entries[:p] & np.uint64(_PAGE_RW)) != 0
        f = (design.get_superpages(mfns[:p], pg_owner.domid, rw) if mapping
             else design.put_superpages(mfns[:p], rw))
        if f:
            m.mem.write_many(table, idx[:f], vals[:f])
            m.refs.stats.add(get_page=f, put_page=f)      # each request's table reference
            if mapping:                                  # mod_l2_entry's slow path, each
                m.pt_stats["slow_path"] += f
        return f


class PlainWriteBatch(Accelerator):
    """A guest filling an ordinary frame (an L1 table before it pins it), at once."""
    slot = ("machine", "mmu_update_requests")
    min_size = (0, PSE_BATCH_MIN)            # reqs
    precondition = (f"at least {PSE_BATCH_MIN} MMU_NORMAL_PT_UPDATE / PRESERVE_AD requests "
                    "(XSM allows them) into one valid frame that is not a live page table, "
                    "with 64-bit values: the first request runs by the scalar path; once it "
                    "succeeded the frame is writable-typed and validated with its counts as "
                    "before, and every later request takes and drops the same references "
                    "(no type change: no flush, the same TLB stamp), so their writes are "
                    "done at once (the last write of an index wins) with the loop's statistics")
    hides = ("word_changed", "request_enter", "request_leave")

    def apply(self, m, reqs, done, pt_owner, pg_owner, normal_ok, machphys_ok):
        if not normal_ok or len(reqs) < PSE_BATCH_MIN:
            return None
        table = (reqs[0].ptr & _U64) >> PAGE_SHIFT
        if not m.mfn_valid(table) or m.pt.live_level(m.mfn_to_page(table)):
            return None                             # (a live table first: no request read)
        ptrs = [r.ptr & _U64 for r in reqs]
        if any(p >> PAGE_SHIFT != table or p & MMU_CMD_MASK not in (MMU_NORMAL_PT_UPDATE,
                                                                     MMU_PT_UPDATE_PRESERVE_AD)
               for p in ptrs):
            return None
        vals = [r.val for r in reqs]
        if not all(type(v) is int and 0 <= v <= _U64 for v in vals):
            return None
        rc = m.request(mmu_update_one, m, reqs[0], pt_owner, pg_owner, True, machphys_ok)
        if rc < 0:
            _set_done(done, 0)
            return rc
        k = len(reqs) - 1
        idx = np.array([(p & ((1 << PAGE_SHIFT) - 1)) >> 3 for p in ptrs[1:]], dtype=np.int64)
        val = np.array(vals[1:], dtype=np.uint64)
        last = idx.size - 1 - np.unique(idx[::-1], return_index=True)[1]   # the last write wins
        if val.any() or m.mem.holds(table):             # a zero write stores no new frame
            m.mem.write_many(table, idx[last], val[last])
        # each request: the table's general reference, its writable type (count 0 -> 1 -> 0)
        m.refs.stats.add(get_page=k, get_page_type=k, put_page_type=k, put_page=k)
        _set_done(done, len(reqs))
        return 0


register(PlainWriteBatch())
register(PseBatch())
