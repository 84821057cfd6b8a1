"""The loops of alloc_l2_table .. alloc_l4_table and free_l2_table .. free_l4_table
(4.22: promote_lN_table, demote_lN_table), as preemptible as each release makes them
(read at RELEASE-4.1.0, 4.5.0, 4.7.0, 4.8.0, 4.22.0, ``mm.c``; docs/xen-facts.md, section 3b).

A table's validation runs from entry ``nr_validated_ptes`` (0 for a fresh one) up;
its devalidation from entry ``nr_validated_ptes - 1`` down (512 for a table that was
whole). Where the release asks ``hypercall_preempt_check()`` (``Machine.preempt``) and
it answers true, or where the table one level down was preempted, the loop records
how far it got in the frame's ``nr_validated_ptes`` / partial entry
(``FrameTable.progress``) and returns -ERESTART; the caller (``RefCounts``) leaves the
table ``PGT_partial``. The check points, per release:

==================  ==============================================================
alloc_l2_table      before entry i, i > 0 (4.1) / i > nr_validated_ptes (4.5 on)
free_l2_table       after entry i's put, i > 0 (4.1-4.8: a put that dropped something;
                    4.22: every entry, present or not)
promote_l3_table    4.22: before entry i > nr_validated_ptes
demote_l3_table     4.22: after every entry i > 0
alloc_l3/l4_table   none of their own (4.22: L4 only): the L3 or L2 of entry i was
                    preempted (``partial_pte`` 1: entry i holds only that table's
                    partial type reference; ``partial_flags``: 1, a general one too)
free_l3/l4_table    none of their own (4.22: L4 only): entry i's table was preempted
                    while it was devalidated (``partial_pte`` -1 / ``partial_flags`` 1:
                    entry i still holds its general reference)
==================  ==============================================================

L1 tables are never preempted (alloc_l1_table and free_l1_table have no check): their
loop is ``PageTables.get_entries`` / ``put_entries``, an accelerated slot.
"""

from __future__ import annotations

import errno

import numpy as np

from ..mem import (PDX_GROUP_MASK, PDX_GROUP_SHIFT, PGT_l1_page_table, PGT_l2_page_table,
                   PGT_l3_page_table, PGT_l4_page_table, PGT_partial, PGT_type_mask,
                   PGT_type_shift, PGT_validated)
from ._preempt import ERESTART
from ._release import Release

_PRESENT = np.uint64(1)
_PAGE_PSE = 1 << 7
_ENTRIES = 512
#: the MFN bits of an entry shifted down (Xen's PADDR_MASK >> PAGE_SHIFT)
_MFN_MASK = (1 << 40) - 1


def alloc_table(pt, page: int, level: int, mfn: int, d: int, preemptible: bool,
                is_xen_slot) -> int:
    """alloc_l2_table .. alloc_l4_table from ``nr_validated_ptes``: 0, -ERESTART, or the
    failing entry's errno (the entries this call took given back, in reverse)."""
    m = pt.m
    progress = m.frame_table.progress
    nr, partial = progress.get(page)
    check = m.preempt.pending if preemptible else None
    entries = m.mem.table(mfn)
    # the levels whose loop asks: L2 (every release), L3 (4.13 on: promote_l3_table)
    checked = check is not None and (level == 2 or (level == 3 and m.release > Release.R4_8))
    if not checked:                               # only present entries can do anything
        present = np.flatnonzero(entries & _PRESENT)
        indexes = present[present >= nr].tolist() if nr else present.tolist()
        if nr and (not indexes or indexes[0] != nr):
            partial = 0                           # the partial entry is gone: nothing kept
    else:
        indexes = range(nr, _ENTRIES)
    first_check = nr + 1 if m.release >= Release.R4_5 else 1
    flags = m.partial_flags
    # a resumed entry whose general reference an earlier call left held (partial_pte -1,
    # PTF_partial_set): this call takes only its type, and an undo gives back only that
    held = nr if partial and (partial < 0 or flags) else -1
    resumed = partial != 0
    taken: list[int] = []
    for i in indexes:
        if checked and i >= first_check and check():
            progress.set(page, i, 0)              # (-EINTR: the entry at i untouched)
            return -ERESTART
        e = entries.item(i)
        if not e & 1 or is_xen_slot(level, i):
            partial = 0
            continue
        rc = pt.get_page_from_entry(level, e, d, mfn, check is not None and level > 2,
                                    partial, flags)
        if rc == -ERESTART:
            # the table below is PGT_partial: entry i holds its partial type reference
            # (4.1-4.8: partial_pte 1, or still -1 with the general reference it kept),
            # and with partial_flags a general reference too (PTF_partial_set)
            progress.set(page, i, 1 if flags else (partial or 1))
            return rc
        if rc == -errno.EINTR and i:
            # the table below was being validated by another CPU and this one stopped
            # waiting: the table is continued from entry i, which holds nothing new; a
            # partial entry keeps its flag with partial_flags (XSA-310, 4e70f4476c),
            # 4.1-4.8 write 0 (a -1 entry's general reference then held by no record)
            progress.set(page, i, partial if flags else 0)
            return -ERESTART
        if rc != 0:
            with m.design_host.undo():            # the puts give back this request's gets
                for j in reversed(taken):
                    if j == held:
                        m.refs.put_page_type(m.mfn_to_page((entries.item(j) >> 12) & _MFN_MASK))
                    else:
                        pt.put_page_from_entry(level, entries.item(j), mfn)
            if taken and taken[0] == nr and resumed:
                # the partial entry's table, taken over and finished, cannot be made
                # partial again by puts (Xen leaves the whole table to old_guest_table):
                # the request's rollback restores it, not this undo
                m.design_host.hooked = True
            return rc
        taken.append(i)
        partial = 0
    return 0


def free_table(pt, page: int, level: int, mfn: int, preemptible: bool, partial_table: bool,
               is_xen_slot) -> int:
    """free_l2_table .. free_l4_table: each entry below ``nr_validated_ptes`` (512 for a
    whole table) drops what it holds, from the top down; 0 or -ERESTART."""
    m = pt.m
    progress = m.frame_table.progress
    check = m.preempt.pending if preemptible else None
    if partial_table:
        nr, partial = progress.get(page)
    else:
        nr, partial = _ENTRIES, 0
        if check is not None:                     # free_page_type: a whole table's 512
            progress.set(page, nr, 0)
    entries = m.mem.table(mfn).copy()
    top = nr - (0 if partial else 1)
    # demote_l2_table / demote_l3_table (4.13 on) ask after every entry, present or not
    every = check is not None and level < 4 and m.release > Release.R4_8
    if every:
        present = list(range(top, -1, -1))
    else:
        present = np.flatnonzero(entries[:top + 1] & _PRESENT).tolist() if top >= 0 else []
        if check is not None or partial_table:
            present.reverse()                     # Xen's order: from the top down
    # (never preempted, a whole table's entries go up from 0, as xensim always put them:
    # the same counts at the end, the frames freed back to the heap in that order)
    for i in present:
        e = entries.item(i)
        if not e & 1 or is_xen_slot(level, i):
            partial = 0
        elif level == 2:
            pt.put_page_from_entry(2, e, mfn)
            if (check is not None and not every and i and (e >> 12) & _MFN_MASK != mfn
                    and check()):
                progress.set(page, i, 0)          # 4.1-4.8: after a put that dropped
                return -ERESTART
        else:
            p = partial if i == top else 0
            rc = pt.put_page_from_entry(level, e, mfn, p, check is not None)
            if rc == -ERESTART:
                # entry i's table is PGT_partial: entry i keeps its general reference (-1,
                # or PTF_partial_set), or still only the partial type reference it had (1)
                progress.set(page, i, 1 if m.partial_flags else (p or -1))
                return rc
            partial = 0
        if every and i and check():
            progress.set(page, i, 0)              # -EINTR: entries 0 .. i-1 still held
            return -ERESTART
    return 0


def put_table_entry(pt, level: int, e: int, page: int, partial: int, preemptible: bool) -> int:
    """put_page_from_l3e / put_page_from_l4e of an entry to table ``page``: 0 or -ERESTART
    (``preemptible``: its devalidation was preempted; the entry keeps its general
    reference). ``partial``: the entry is a partial one (its table's nr_validated_ptes)."""
    m = pt.m
    refs = m.refs
    if partial and m.partial_flags:
        # PTF_partial_set (4.13 on): the partial type count, if the table below is still
        # PGT_partial, and always the entry's general reference (put_pt_page)
        rc = refs.put_page_type(page, preemptible, True)
        if rc == 0:
            refs.put_page(page)
        return rc
    if partial > 0:                               # 4.1-4.8's partial_pte 1: the type alone
        if m.faithful and not pt.pays_for(level, e, page):
            # XSA-299 (18b0ab6978): the partial entry held no general reference, so the
            # table below could be freed meanwhile: its type count underflows
            m.violations.append(f"XSA-299: L{level} partial entry's put_page_type on "
                                f"mfn {int(m.pdx_to_mfn(page)):#x}, which nothing holds")
            return 0
        return refs.put_page_type(page, preemptible)
    if preemptible:
        return refs.put_page_and_type_preemptible(page)
    refs.put_page_and_type(page)
    return 0


def deferred(pt, level: int, old: int, table_mfn: int) -> bool:
    """Is the put of a changed entry's old value ``old`` deferred to the vCPU's
    old_guest_table (put_page_from_lNe's defer, PTF_defer)? L3 and L4 entries from 4.5,
    L2 from 4.13 (an L1 table's); not PSE entries, nor linear ones from 4.10 (xensim puts
    those at once: they carry old_guest_ptpg's linear counts)."""
    m = pt.m
    if level < (2 if m.release > Release.R4_8 else 3) or level == 2 and old & _PAGE_PSE:
        return False
    mfn = (old >> 12) & _MFN_MASK
    t = m.frame_table.type_info(m.mfn_to_page(mfn)) & PGT_type_mask
    return mfn != table_mfn and (t == _LEVEL_TYPES[level - 1] or m.release < Release.R4_10)


_LEVEL_TYPES = {1: PGT_l1_page_table, 2: PGT_l2_page_table, 3: PGT_l3_page_table, 4: PGT_l4_page_table}


def relinquish_tables(pt, d) -> None:
    """Domain destruction's forced devalidation (Xen's relinquish_memory, 4.1 to 4.8).

    After the roots and pins are gone, a table of the dying domain still validated is
    held only by linear entries, possibly in a loop (two L4s mapping each other) that no
    put would ever end; and a table a preempted call left PGT_partial (the guest never
    continued it) is held by nothing. Xen walks the domain's pages once per level, L4,
    then L3, then L2, and devalidates each table of that level still validated or
    partial: PGT_validated and PGT_partial are cleared and its entries (a partial
    table's: from its nr_validated_ptes) drop their references; a validated table's type
    count is left to fall as the other tables of the loop let go, a partial one gives
    back its count of 1 and get_page_light's reference. (L1 tables are referenced only
    from L2 entries.) xensim runs it to the end: no preemption here.
    """
    m = pt.m
    ft = m.frame_table
    # the domain's L2-L4 tables, in page order, found in one pass over its frames (a
    # devalidation only clears PGT_validated: each level's walk finds some of them)
    tables = []
    for s, e in d.owned.runs():
        for pdx, k in m.pdx_runs(s, e - s):
            arrays = ft.written_group(pdx >> PDX_GROUP_SHIFT)
            if arrays is None:
                continue                            # frames as at boot: no tables
            off = pdx & PDX_GROUP_MASK
            hit = (arrays[1][off:off + k] >> np.uint64(PGT_type_shift)) - np.uint64(2) < 3
            if hit.any():
                tables.extend((pdx + np.flatnonzero(hit)).tolist())
    either = PGT_validated | PGT_partial
    for level in (4, 3, 2):
        type = _LEVEL_TYPES[level]
        pages = [p for p in tables if ft.type_info(p) & PGT_type_mask == type
                 and ft.type_info(p) & either]
        for page in pages:
            while True:
                x = ft.type_info(page)
                if x & PGT_type_mask != type or not x & either:
                    break             # devalidated meanwhile, by a put down the loop
                if (step := m.events.atomic_step) is not None:
                    step("type_flags", page, 0)
                if m.refs.cmpxchg_type(page, x, x & ~either, "relinquish: forced devalidation"):
                    m.refs.stats.devalidations += 1
                    if x & PGT_partial:
                        pt.free_page_type(page, type, False, True)
                        while not m.refs.cmpxchg_type(page, ft.type_info(page),
                                                      ft.type_info(page) - 1,
                                                      "relinquish: the partial count"):
                            pass
                        m.refs.put_page(page)               # get_page_light's
                    else:
                        pt.free_page_type(page, type)
                    break


def partial_pse(m):
    """(superpage, writable, domid) of the PSE entries PGT_partial L2s hold: those below
    nr_validated_ptes (free_l2_table goes down from the top), as a live table's."""
    progress, flags = m.frame_table.progress, np.uint64(1 | _PAGE_PSE)   # PRESENT, PSE
    for page, (level, domid) in m.pt.partial.items():
        e = m.mem.table(int(m.pdx_to_mfn(page)))[:progress.get(page)[0]]
        for x in (e[(e & flags) == flags].tolist() if level == 2 else ()):
            yield (x >> 12) & _MFN_MASK, bool(x & 2), domid              # the frame, RW
