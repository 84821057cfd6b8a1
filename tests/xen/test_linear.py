"""Linear page tables: a read-only L2-L4 entry to a table of its own level.

Xen 4.1-4.8 (get_l2_linear_pagetable .. get_l4_linear_pagetable, mm.c) accept them at any
depth, loops included; XSA-240 (6987fc7558, 4.10) limits them to one level with a
per-frame signed ``linear_pt_count`` (mm.c of 4.22: inc_linear_entries / inc_linear_uses,
dec_linear_entries / dec_linear_uses), 3285e75dea (4.10) adds the ``pv-linear-pt`` option
(on by default), and 77beba7c92 (4.13) adjusts the counts when a put devalidates. The
auditor recounts the counts after every step.

The machine: 64 MiB, one guest owning frames 0..0x1ff; tables at 0x10, 0x11, 0x12.
"""

from __future__ import annotations

import errno

import pytest

from xensim import Machine, MemoryMap
from xensim.mem._page_info import (PGC_allocated, PGT_l3_page_table, PGT_l4_page_table,
                                   PGT_pinned, PGT_validated)
from xensim.xen import (MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE, MmuextOp,
                        audit, make_pte, _PAGE_PRESENT as P, _PAGE_RW as RW)

from conftest import MiB, assert_clean, ext, mmu, populate, ptr, refused, words

A, B, C = 0x10, 0x11, 0x12
L4 = PGT_l4_page_table | PGT_validated | PGT_pinned


def machine(version: str, pv_linear_pt: bool = True, pins=(A, B)):
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version,
                superpage="none", pv_linear_pt=pv_linear_pt)
    g = m.create_domain("guest", 2048)
    populate(m, g, [0], 9)
    for t in pins:
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L4_TABLE, t)) == (0, 1)
    return m, g


def counts(m) -> dict[int, int]:
    return {int(m.pdx_to_mfn(p)): c for p, c in m.pt.linear_pt_count.items()}


@pytest.mark.parametrize("version", ["4.1", "4.5", "4.7", "4.8", "4.22"])
def test_read_only_loop_between_two_l4s_4_8_accepts_4_22_refuses(version):
    """get_l4_linear_pagetable: L4 A maps L4 B read-only, then B maps A. 4.1-4.8 accept
    both (a loop only domain destruction's forced devalidation ends); 4.22 (XSA-240,
    6987fc7558) refuses the second: A holds a linear entry, so it cannot be used as
    one (-EINVAL), and nothing changes."""
    m, g = machine(version)
    assert mmu(m, g, (ptr(A, 5), make_pte(B, P))) == (0, 1)
    assert words(m, B) == (PGC_allocated | 3, L4 | 2)
    if version == "4.22":
        assert counts(m) == {A: 1, B: -1}
        refused(m, lambda: mmu(m, g, (ptr(B, 5), make_pte(A, P))), (-errno.EINVAL, 0))
    else:
        assert counts(m) == {}
        assert mmu(m, g, (ptr(B, 5), make_pte(A, P))) == (0, 1)
        assert words(m, A) == (PGC_allocated | 3, L4 | 2)
    assert_clean(m)
    assert m.destroy_domain(g) == 0 and m.pt.linear_pt_count == {}
    assert_clean(m)


def test_a_used_table_cannot_hold_linear_entries_4_22():
    """inc_linear_entries fails on a table used linearly (count < 0), inc_linear_uses on a
    table holding linear entries (count > 0): one level only (XSA-240, 4.22). A table
    may be used by several (count -2) and hold several (count 2)."""
    m, g = machine("4.22", pins=(A, B, C))
    assert mmu(m, g, (ptr(A, 1), make_pte(B, P)), (ptr(C, 1), make_pte(B, P))) == (0, 2)
    assert counts(m) == {A: 1, C: 1, B: -2}
    refused(m, lambda: mmu(m, g, (ptr(B, 1), make_pte(C, P))), (-errno.EINVAL, 0))
    assert mmu(m, g, (ptr(A, 2), make_pte(C, P))) == (-errno.EINVAL, 0)   # C holds one
    assert mmu(m, g, (ptr(C, 2), make_pte(A, P))) == (-errno.EINVAL, 0)   # A holds one
    assert words(m, B) == (PGC_allocated | 4, L4 | 3)
    assert_clean(m)


def test_clearing_the_entries_gives_the_counts_back_4_22():
    """put_page_from_l4e of a linear entry: _put_page_type's dec_linear_uses on the target
    and dec_linear_entries on the table (4.22); then the other direction is allowed."""
    m, g = machine("4.22")
    assert mmu(m, g, (ptr(A, 5), make_pte(B, P))) == (0, 1)
    assert mmu(m, g, (ptr(A, 5), 0)) == (0, 1)
    assert counts(m) == {} and words(m, B) == (PGC_allocated | 2, L4 | 1)
    assert mmu(m, g, (ptr(B, 5), make_pte(A, P))) == (0, 1)
    assert counts(m) == {B: 1, A: -1}
    assert_clean(m)


def test_the_last_type_reference_through_a_linear_entry_4_22():
    """B unpinned is held only by A's linear entry; clearing it drops B's last type
    reference, B is devalidated and both counts go back to 0 (_put_final_page_type's
    adjustment, 77beba7c92, 4.13)."""
    m, g = machine("4.22")
    assert mmu(m, g, (ptr(A, 5), make_pte(B, P))) == (0, 1)
    assert ext(m, g, MmuextOp(MMUEXT_UNPIN_TABLE, B)) == (0, 1)
    assert counts(m) == {A: 1, B: -1}
    assert_clean(m)
    assert mmu(m, g, (ptr(A, 5), 0)) == (0, 1)
    assert counts(m) == {} and words(m, B) == (PGC_allocated | 1, PGT_l4_page_table)
    assert_clean(m)


@pytest.mark.parametrize("version", ["4.8", "4.22"])
def test_an_entry_to_its_own_table_counts_nothing(version):
    """get_l4_linear_pagetable: an entry to the table itself takes nothing, and is not
    counted (4.22), whatever else the table holds or is used by."""
    m, g = machine(version)
    assert mmu(m, g, (ptr(A, 3), make_pte(A, P))) == (0, 1)
    assert mmu(m, g, (ptr(B, 3), make_pte(A, P))) == (0, 1)
    assert words(m, A) == (PGC_allocated | 3, L4 | 2)
    assert counts(m) == ({B: 1, A: -1} if version == "4.22" else {})
    assert mmu(m, g, (ptr(A, 4), make_pte(A, P))) == (0, 1)       # still itself
    assert_clean(m)


@pytest.mark.parametrize("version", ["4.1", "4.8", "4.22"])
def test_a_writable_linear_entry_is_refused(version):
    """get_l4_linear_pagetable: a writable linear entry would give the guest its own page
    tables writable: refused (-EINVAL) in every release."""
    m, g = machine(version)
    refused(m, lambda: mmu(m, g, (ptr(A, 5), make_pte(B, P | RW))), (-errno.EINVAL, 0))
    refused(m, lambda: mmu(m, g, (ptr(A, 5), make_pte(A, P | RW))), (-errno.EINVAL, 0))


def test_pv_linear_pt_off_refuses_every_linear_entry_4_22():
    """pv-linear-pt=0 (3285e75dea, 4.10): get_lN_linear_pagetable refuses at once, an entry
    to its own table too; validation of a table holding one fails."""
    m, g = machine("4.22", pv_linear_pt=False)
    refused(m, lambda: mmu(m, g, (ptr(A, 5), make_pte(B, P))), (-errno.EINVAL, 0))
    refused(m, lambda: mmu(m, g, (ptr(A, 5), make_pte(A, P))), (-errno.EINVAL, 0))
    m.mem.write(C, 7, make_pte(C, P))
    refused(m, lambda: ext(m, g, MmuextOp(MMUEXT_PIN_L4_TABLE, C)), (-errno.EINVAL, 0))
    assert machine("4.8", pv_linear_pt=False)[0].pv_linear_pt      # no option before 4.10


def test_l3_linear_entries_are_counted_too_4_22():
    """get_l3_linear_pagetable: the same rule one level down (pinned L3 tables)."""
    m, g = machine("4.22", pins=())
    L3 = PGT_l3_page_table | PGT_validated | PGT_pinned
    for t in (A, B):
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L3_TABLE, t)) == (0, 1)
    assert mmu(m, g, (ptr(A, 1), make_pte(B, P))) == (0, 1)
    assert counts(m) == {A: 1, B: -1} and words(m, B) == (PGC_allocated | 3, L3 | 2)
    refused(m, lambda: mmu(m, g, (ptr(B, 1), make_pte(A, P))), (-errno.EINVAL, 0))
    assert_clean(m)


def test_the_auditor_recounts_linear_pt_count_4_22():
    """The auditor recounts every frame's linear_pt_count from the live tables: a count
    set wrong is a difference naming the frame."""
    m, g = machine("4.22")
    assert mmu(m, g, (ptr(A, 5), make_pte(B, P))) == (0, 1)
    m.pt.linear_pt_count[m.mfn_to_page(B)] = -2
    rep = audit(m)
    assert not rep.ok and "linear_pt_count" in str(rep) and f"{B:#x}" in str(rep)
