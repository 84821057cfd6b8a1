"""decrease_reservation's accelerator: an extent's frames in guest_remove_page's simple
state removed at once (``Machine.remove_extent``)."""

from __future__ import annotations

import numpy as np

from ._contract import Accelerator, register
from .._memory_op import guest_remove_page
from .._refcount import GET_PAGE_COUNT_MAX
from ...mem import INVALID, PDX_GROUP_FRAMES, PDX_GROUP_MASK, PDX_GROUP_SHIFT
from ...mem import PGC_allocated, PGC_count_mask

#: an extent of at least this many frames is tried at once
VECTOR_MIN_FRAMES = 16


def simple_prefix(m, d, mfn: int, n: int) -> tuple[int, int, np.ndarray]:
    """(pdx of ``mfn``, k, which of them hold PGC_allocated): frames [mfn, mfn+k) are in
    guest_remove_page's simple state (valid, contiguous in one PDX group, get_page takes
    them for ``d``, not pinned, on d's allocated list if they hold PGC_allocated), so
    removing them is the same few word changes each."""
    none = np.zeros(0, dtype=bool)
    if not 0 <= mfn < m.max_page:                 # the first frame is not valid
        return 0, 0, none
    n = min(n, m.max_page - mfn)
    mfns = np.arange(mfn, mfn + n, dtype=np.int64)
    valid = m.mfn_valid_array(mfns)
    k = n if valid.all() else int(np.argmin(valid))
    if k == 0:
        return 0, 0, none
    pdx = np.asarray(m.pdx.mfn_to_pdx(mfns[:k].astype(np.uint64)), dtype=np.int64)
    p0 = int(pdx[0])
    jump = pdx - p0 != np.arange(k)
    if jump.any():
        k = int(np.argmax(jump))
    k = min(k, PDX_GROUP_FRAMES - (p0 & PDX_GROUP_MASK))
    if d.pinned:
        k = min([k] + [p - p0 for p in d.pinned if p0 <= p < p0 + k])
    arrays = m.frame_table.written_group(p0 >> PDX_GROUP_SHIFT)
    if arrays is None:                            # never written: every frame is free
        return p0, 0, none
    off = p0 & PDX_GROUP_MASK
    ci, owner = arrays[0][off:off + k], arrays[2][off:off + k]
    ok = ((ci & np.uint64(PGC_count_mask)) - np.uint64(1)) < np.uint64(GET_PAGE_COUNT_MAX)
    allocated = (ci & np.uint64(PGC_allocated)) != 0
    ok &= (owner == d.domid) & (~allocated | d.allocated.members(mfn, mfn + k))
    if not ok.all():
        k = int(np.argmin(ok))
    return p0, k, allocated[:k]


def remove_run(m, d, mfn: int, n: int) -> int:
    """guest_remove_page on the leading frames of [mfn, mfn+n) that are in the simple state,
    at once: the frames it removed (0 to n), with the loop's final state and statistics.
    Each frame: get_page; if it holds PGC_allocated, the flag cleared and its reference
    put; M2P (and the P2M entry that maps it) cleared; the temporary reference put
    (freeing a frame whose count reaches 0)."""
    p0, k, allocated = simple_prefix(m, d, mfn, n)
    if k == 0:
        return 0
    gpfns = m.m2p.get_run(mfn, k)
    mapped = gpfns != INVALID
    if mapped.any():
        m.m2p.clear_run(mfn, k)
        gpfns, mfns = gpfns[mapped], np.arange(mfn, mfn + k, dtype=np.int64)[mapped]
        ours = d.p2m.get_many(gpfns) == mfns      # the P2M entries that map these frames
        if ours.any():
            d.p2m.clear_many(gpfns[ours])
    refs = m.refs
    # each frame: get_page, then put_page of a PGC_allocated reference or the temporary one
    refs.stats.add(get_page=k, put_page=k)
    if allocated.any():
        # each run of PGC_allocated frames: the flag and its reference go, then the
        # temporary reference (get_page's +1 and the first put_page cancel out)
        cuts = (np.flatnonzero(np.diff(allocated.view(np.int8))) + 1).tolist()
        for lo, hi in zip([0, *cuts], [*cuts, k]):
            if allocated[lo]:
                d.allocated.remove(mfn + lo, mfn + hi)
                ci, _, _ = m.frame_table.slices(p0 + lo, hi - lo)
                ci &= np.uint64(~PGC_allocated & 0xFFFFFFFFFFFFFFFF)
                refs.put_pages(p0 + lo, hi - lo)  # frees at 0
    return k


class RemoveRun(Accelerator):
    """An extent's frames removed a run at a time, the others by guest_remove_page."""
    slot = ("machine", "remove_extent")
    min_size = (2, VECTOR_MIN_FRAMES)        # n
    precondition = (f"an extent of at least {VECTOR_MIN_FRAMES} frames: its leading frames in "
                    "guest_remove_page's simple state (valid, consecutive PDXs of one group, "
                    "the domain's, general count 1..max-2, not pinned, PGC_allocated only on "
                    "the allocated list) are removed at once; a frame outside it goes through "
                    "guest_remove_page, then the next run is tried")
    hides = ("word_changed",)

    def apply(self, m, d, gmfn: int, n: int):
        if n < VECTOR_MIN_FRAMES:
            return None
        j = 0
        while j < n:
            if n - j >= VECTOR_MIN_FRAMES:
                j += remove_run(m, d, gmfn + j, n - j)
                if j == n:
                    break
            if not guest_remove_page(m, d, gmfn + j):
                return j
            j += 1
        return n


register(RemoveRun())
