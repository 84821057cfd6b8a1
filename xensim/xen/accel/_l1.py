"""The L1 table accelerators: validating and devalidating an L1 table's entries at once
(``PageTables.get_entries`` / ``put_entries``, the loops of alloc_l1_table and
free_l1_table).

* :class:`L1RunGet` / :class:`L1RunPut`: the present entries map one run of
  consecutive frames of one PDX group with the same flags (the 2 MiB fallback's
  table, no PV superpages): their references are those of
  ``RefCounts.get_pages_and_type`` / ``put_pages_and_type`` on the run.
* :class:`L1ScatteredPut`: entries on frames in any order, with repeats: the puts
  of the entry loop at once (xen/arch/x86/mm.c's put_page_from_l1e over
  free_l1_table), since no put of a writable or shared frame devalidates anything.
"""

from __future__ import annotations

import numpy as np

from ._contract import Accelerator, register
from .._pagetable import PADDR_MASK, _PAGE_RW
from ...mem import (PAGE_SHIFT, PDX_GROUP_SHIFT, PGC_count_mask, PGT_count_mask, PGT_shared_page,
                    PGT_type_mask, PGT_writable_page)

_U = np.uint64
#: an L1 table with at least this many present entries is tried as a run
RUN_MIN_ENTRIES = 64
#: ... and with at least this many, as scattered puts
SCATTERED_MIN_ENTRIES = 16


def l1_run(pt, entries: np.ndarray, present: np.ndarray) -> tuple[int, int, bool] | None:
    """(first page, n, writable) when an L1 table's present entries map one run of
    consecutive frames of one PDX group, in entry order, with the same allowed flags;
    else None."""
    n = int(present.size)
    if n < RUN_MIN_ENTRIES:
        return None
    e = entries[present]
    addr = _U(PADDR_MASK)
    first = int(e[0])
    if ((e & ~addr) != _U(first & ~PADDR_MASK)).any() or pt.disallowed(1, first):
        return None
    mfns = (e & addr) >> _U(PAGE_SHIFT)
    if not (np.diff(mfns.astype(np.int64)) == 1).all():
        return None
    m = pt.m
    mfn0 = (first & PADDR_MASK) >> PAGE_SHIFT
    if not (m.mfn_valid(mfn0) and m.mfn_valid(mfn0 + n - 1)):
        return None
    pdx0 = m.mfn_to_pdx(mfn0)
    if (m.mfn_to_pdx(mfn0 + n - 1) != pdx0 + n - 1
            or pdx0 >> PDX_GROUP_SHIFT != (pdx0 + n - 1) >> PDX_GROUP_SHIFT):
        return None
    return pdx0, n, bool(first & _PAGE_RW)


class L1RunGet(Accelerator):
    """An L1 table mapping one run of frames, validated with get_pages_and_type."""
    slot = ("pt", "get_entries")
    min_size = (4, RUN_MIN_ENTRIES)          # present
    precondition = (f"an L1 table with at least {RUN_MIN_ENTRIES} present entries mapping "
                    "consecutive frames of one PDX group in entry order, all with the same "
                    "allowed flags, every one of which would succeed (RefCounts.runs_ok)")
    hides = ("word_changed", "entry_get_begin", "entry_get_end", "entry_put_begin",
             "entry_put_end")

    def apply(self, pt, level: int, mfn: int, d: int, entries: np.ndarray, present: np.ndarray):
        if level != 1 or (run := l1_run(pt, entries, present)) is None:
            return None
        first, n, rw = run
        want = PGT_writable_page if rw else None
        refs = pt.m.refs
        if not refs.runs_ok(np.array([first]), n, d, want)[0]:
            return None                        # one would fail: the loop finds which
        refs.get_pages_and_type(first, n, d, want)
        return 0


class L1RunPut(Accelerator):
    """The same table devalidated with put_pages_and_type."""
    slot = ("pt", "put_entries")
    min_size = (3, RUN_MIN_ENTRIES)          # present
    precondition = (f"not faithful; an L1 table as for L1RunGet whose frames can all be put "
                    "(RefCounts.put_runs_ok)")
    hides = L1RunGet.hides + ("range_put",)

    def apply(self, pt, level: int, mfn: int, entries: np.ndarray, present: np.ndarray):
        if level != 1 or pt.m.faithful or (run := l1_run(pt, entries, present)) is None:
            return None
        first, n, rw = run
        refs = pt.m.refs
        if not refs.put_runs_ok(np.array([first]), n, typed=rw)[0]:
            return None
        refs.put_pages_and_type(first, n, typed=rw)
        return True


def put_scattered(refs, pages: np.ndarray, typed: np.ndarray) -> bool:
    """put_page_type (where ``typed``) then put_page for each of ``pages`` (PDXs, int64,
    repeats allowed), as the loop in that order would. False, and nothing changed, when a
    count would fall below 0 or a typed frame is not writable or shared (the loop then
    raises, or devalidates)."""
    uniq, inv = np.unique(pages, return_inverse=True)
    refs_n = np.bincount(inv, minlength=uniq.size)
    trefs = np.bincount(inv, weights=typed, minlength=uniq.size).astype(np.int64)
    ft = refs.ft
    ci, ti, _ = ft.gather(uniq)
    if ((ci & _U(PGC_count_mask)).astype(np.int64) < refs_n).any():
        return False
    tcount = (ti & _U(PGT_count_mask)).astype(np.int64)
    kind = ti & _U(PGT_type_mask)
    held = trefs > 0
    if ((tcount < trefs) | (held & (kind != _U(PGT_writable_page))
                            & (kind != _U(PGT_shared_page)))).any():
        return False
    ci1, ti1 = ci - refs_n.astype(np.uint64), ti - trefs.astype(np.uint64)
    if held.any():
        ft.set_many(uniq[held], 1, ti1[held])
    ft.set_many(uniq, 0, ci1)
    refs.stats.add(put_page=int(pages.size), put_page_type=int(trefs.sum()))
    stamped = uniq[held & (tcount == trefs)]    # their last typed reference went
    if stamped.size:
        refs.tlb.stamp_pages(stamped)
    freed = uniq[(ci1 & _U(PGC_count_mask)) == 0]
    if freed.size:
        refs.frames_freed(freed)
    return True


class L1ScatteredPut(Accelerator):
    """An L1 table's entries on frames in any order, devalidated at once."""
    slot = ("pt", "put_entries")
    min_size = (3, SCATTERED_MIN_ENTRIES)    # present
    precondition = (f"not faithful (its guard looks at each entry); an L1 table with at least "
                    f"{SCATTERED_MIN_ENTRIES} present entries, every one on a valid frame, "
                    "with enough general and typed references for all its puts, the typed "
                    "frames writable or shared")
    hides = ("word_changed", "entry_put_begin", "entry_put_end")

    def apply(self, pt, level: int, mfn: int, entries: np.ndarray, present: np.ndarray):
        m = pt.m
        if level != 1 or m.faithful or present.size < SCATTERED_MIN_ENTRIES:
            return None
        e = entries[present]
        mfns = ((e & _U(PADDR_MASK)) >> _U(PAGE_SHIFT)).astype(np.int64)
        if not m.mfn_valid_array(mfns).all():
            return None
        pages = np.asarray(m.mfn_to_pdx(mfns.astype(np.uint64)), dtype=np.int64)
        return True if put_scattered(m.refs, pages, (e & _U(_PAGE_RW)) != 0) else None


register(L1RunGet())
register(L1RunPut())
register(L1ScatteredPut())
