"""Linear page tables after XSA-240 (Xen 4.10 on): one level only, and counted.

A linear (or recursive) entry is a read-only L2-L4 entry pointing at a table of its own
level. Up to 4.9 Xen let such entries chain (a table with linear entries could itself
be mapped linearly, and two L4s could map each other); XSA-240 (6987fc7558, 4.10)
limits them to one level: each page-table frame has a signed ``linear_pt_count``
(``struct page_info``, 16 bits), positive when the table *holds* that many linear
entries to other tables, negative when it *is used* by that many linear entries of
other tables; a table cannot be both. An entry to its own table is neither counted nor
refused. 3285e75dea (4.10) made them optional: the ``pv-linear-pt`` boot option
(``CONFIG_PV_LINEAR_PT``, default on: 4.22's default is on). 77beba7c92 (4.13) adjusts
both counts whenever such an entry's put begins the target's devalidation too.

xensim keeps the counts in :attr:`PageTables.linear_pt_count` (frame PDX -> count, the
zeros left out); :func:`linear_differences` recounts them from the live tables for the
auditors.
"""

from __future__ import annotations

import numpy as np

from ..mem import (PAGE_SHIFT, PGT_count_mask, PGT_l2_page_table, PGT_l3_page_table,
                   PGT_l4_page_table, PGT_type_mask, PGT_validated)
from ._release import Release

__all__ = ["LINEAR_PT_COUNT_MAX", "LINEAR_PT_COUNT_MIN", "get_linear_pagetable_counted",
           "put_linear", "expected_linear_counts", "linear_differences"]

#: the range of a 16-bit signed linear_pt_count (asm-x86/mm.h)
LINEAR_PT_COUNT_MAX = (1 << 15) - 1
LINEAR_PT_COUNT_MIN = -(1 << 15)

# the entry bits read here (x86 PTE positions: present, writable, PSE), the address
# bits 12-51, the type of a table of each level, and an L4's Xen slots 256-271
_PRESENT, _RW, _PSE = 0x1, 0x2, 0x80
_ADDR = ((1 << 52) - 1) & ~((1 << PAGE_SHIFT) - 1)
_TABLE_TYPE = {2: PGT_l2_page_table, 3: PGT_l3_page_table, 4: PGT_l4_page_table}
_XEN_SLOTS = range(256, 272)


def _inc_linear_entries(counts: dict, page: int) -> bool:
    """inc_linear_entries: ``page`` may hold one more linear entry unless it is used as
    a linear table itself (count < 0) or the count would overflow."""
    c = counts.get(page, 0)
    if c < 0 or c >= LINEAR_PT_COUNT_MAX:
        return False
    counts[page] = c + 1
    return True


def _inc_linear_uses(counts: dict, page: int) -> bool:
    """inc_linear_uses: ``page`` may be used by one more linear entry unless it holds
    linear entries itself (count > 0) or the count would overflow."""
    c = counts.get(page, 0)
    if c > 0 or c <= LINEAR_PT_COUNT_MIN:
        return False
    counts[page] = c - 1
    return True


def _add(counts: dict, page: int, delta: int) -> None:
    c = counts.get(page, 0) + delta
    if c:
        counts[page] = c
    else:
        counts.pop(page, None)


def get_linear_pagetable_counted(pt, level: int, e: int, table: int, d: int) -> bool:
    """get_l2_linear_pagetable .. get_l4_linear_pagetable, Xen 4.10 on (mm.c of 4.22).

    Refused: the pv-linear-pt option off, a writable entry, a table not ``d``'s, a
    target that is not ``d``'s (get_page), the table used as a linear table elsewhere or
    the target holding linear entries of its own (the counts), the target not a
    validated table of ``level`` or its type count at its maximum. An entry to its own
    table takes nothing. Otherwise: a general reference, one more type reference, and
    both counts moved."""
    m = pt.m
    if not m.pv_linear_pt or e & _RW:
        return False
    mfn = (e & _ADDR) >> PAGE_SHIFT
    if mfn == table:
        return True
    ft, refs = m.frame_table, m.refs
    ptpg = m.mfn_to_page(table)
    if ft.owner(ptpg) != d or not m.mfn_valid(mfn):
        return False
    page = m.mfn_to_page(mfn)
    if not refs.get_page(page, d):
        return False
    counts = pt.linear_pt_count
    if not _inc_linear_entries(counts, ptpg):
        refs.put_page(page)
        return False
    if not _inc_linear_uses(counts, page):
        _add(counts, ptpg, -1)
        refs.put_page(page)
        return False
    want = _TABLE_TYPE[level] | PGT_validated
    if (step := m.events.atomic_step) is not None:
        step("get_page_type", page, _TABLE_TYPE[level])
    refs.stats.get_page_type += 1
    while True:
        x = ft.type_info(page)
        if x & PGT_count_mask == PGT_count_mask or x & (PGT_type_mask | PGT_validated) != want:
            refs.stats.get_page_type_failed += 1
            _add(counts, page, 1)
            _add(counts, ptpg, -1)
            refs.put_page(page)
            return False
        if refs.cmpxchg_type(page, x, x + 1, f"linear L{level} page table"):
            return True


def put_linear(pt, level: int, page: int, table: int) -> None:
    """After the put of a linear entry of ``table`` (an MFN) to ``page`` (a PDX):
    dec_linear_uses on the target, dec_linear_entries on the table (_put_page_type and,
    when the put devalidates the target, _put_final_page_type: 77beba7c92)."""
    counts = pt.linear_pt_count
    _add(counts, page, 1)
    _add(counts, pt.m.mfn_to_page(table), -1)


def expected_linear_counts(m) -> dict[int, int]:
    """Every frame's linear_pt_count as the tables' entries say: each present entry of a
    live L2-L4 table whose target (not the table itself) is typed as a table of the same
    level is one linear entry (a normal entry's target has the level below). A
    PGT_partial table's entries below nr_validated_ptes count as a live table's: a
    (de)validation preempted part-way leaves what it did not reach, or has not yet put,
    counted (dec_linear_uses runs as each entry is put)."""
    out: dict[int, int] = {}
    for page, (level, _) in m.pt.live.items():
        _count_table(m, out, page, level, None)
    progress = m.frame_table.progress
    for page, (level, _) in m.pt.partial.items():
        _count_table(m, out, page, level, progress.get(page)[0])
    return out


def _count_table(m, out: dict[int, int], page: int, level: int, upto: int | None) -> None:
    """Add the linear entries of table ``page`` (entries below ``upto``; None: all)."""
    if level < 2:
        return
    mfn = int(m.pdx_to_mfn(page))
    if not m.mem.holds(mfn):
        return
    entries = m.mem.table(mfn)[:upto]
    present = entries & np.uint64(_PRESENT) != 0
    if level == 2:
        present &= entries & np.uint64(_PSE) == 0
    ft = m.frame_table
    for i in np.flatnonzero(present):
        if level == 4 and int(i) in _XEN_SLOTS:
            continue
        target = (int(entries[i]) & _ADDR) >> PAGE_SHIFT
        if target == mfn or not m.mfn_valid(target):
            continue
        tp = m.mfn_to_page(target)
        if ft.type_info(tp) & PGT_type_mask == _TABLE_TYPE[level]:
            _add(out, page, 1)
            _add(out, tp, -1)


def linear_differences(m) -> list[tuple[int, int, int]]:
    """The auditors' recount of linear_pt_count (Xen 4.10 on): (mfn, expected, found) of
    every frame whose count is not what :func:`expected_linear_counts` says."""
    if m.release < Release.R4_10:          # 4.1-4.8: linear entries are not counted
        return []
    want, have = expected_linear_counts(m), m.pt.linear_pt_count
    return [(int(m.pdx_to_mfn(page)), want.get(page, 0), have.get(page, 0))
            for page in sorted(set(want) | set(have)) if want.get(page, 0) != have.get(page, 0)]
