"""mmu_update (hypercall 1) and update_va_mapping (14): entries at every level, the
references they take and drop, the fast path, plain writes, MACHPHYS updates, batches,
and every refusal (exact errno, machine unchanged).

The layout (conftest.small_machine: 64 MiB, PDX none so page == mfn):

=========================  =============================================
guest (dom1)               superpage 0x000 (gpfn 0), frames 0x200..0x20f
                           (gpfn 512..527), superpage 0x400 (gpfn 1024)
other (dom2)               superpage 0x600, frames 0x210..0x217
free                       frame 0x3000, superpage 0x1000
=========================  =============================================

The guest pins 0x200..0x203 as an empty L1, L2, L3 and L4; 0x204.. are spare frames.
"""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from xensim.xen import RELEASE_NAMES
from xensim import HYPERVISOR_mmu_update, HYPERVISOR_update_va_mapping, Machine, MemoryMap
from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
from xensim.xen._mmu import (MMU_MACHPHYS_UPDATE, MMU_PT_UPDATE_PRESERVE_AD,
                         MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE,
                         MMUEXT_PIN_L4_TABLE, MmuextOp, MmuUpdate)
from xensim.mem._page_info import (PGC_allocated, PGT_l1_page_table, PGT_l2_page_table,
                               PGT_l3_page_table, PGT_l4_page_table, PGT_pinned, PGT_validated,
                               PGT_writable_page, SGT_dynamic)
from xensim.xen._pagetable import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GLOBAL, _PAGE_NX, _PAGE_PCD,
                               _PAGE_PRESENT, _PAGE_PSE, _PAGE_PWT, _PAGE_RW, _PAGE_USER,
                               make_pte)

from conftest import MiB, assert_clean, ext, hc, mmu, populate, ptr, sp_words, spage, two_domains, words

P, RW, PSE, A, D, U = _PAGE_PRESENT, _PAGE_RW, _PAGE_PSE, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_USER
ALLOC1 = PGC_allocated | 1
WR = PGT_writable_page | PGT_validated
L1V, L2V = PGT_l1_page_table | PGT_validated, PGT_l2_page_table | PGT_validated
L3V, L4V = PGT_l3_page_table | PGT_validated, PGT_l4_page_table | PGT_validated
PIN = PGT_pinned

G_SP, G_SP2 = 0x000, 0x400
T1, T2, T3, T4 = 0x200, 0x201, 0x202, 0x203
F0, F1, F2, F3, F4 = 0x204, 0x205, 0x206, 0x207, 0x208
O_SP, O_F = 0x600, 0x210
FREE, FREE_SP = 0x3000, 0x1000


def build(m: Machine, pin: bool = True) -> SimpleNamespace:
    lay = two_domains(m, (G_SP, G_SP2), O_SP)
    if pin:
        assert ext(m, lay.g, MmuextOp(MMUEXT_PIN_L1_TABLE, T1), MmuextOp(MMUEXT_PIN_L2_TABLE, T2),
                   MmuextOp(MMUEXT_PIN_L3_TABLE, T3), MmuextOp(MMUEXT_PIN_L4_TABLE, T4)) == (0, 4)
    return lay


@pytest.fixture
def lay(m) -> SimpleNamespace:
    return build(m)


# -- successful updates, level by level ------------------------------------------------------
class TestEntries:
    def test_pinned_tables_of_the_layout(self, lay):
        m = lay.m
        assert words(m, T1) == (ALLOC1 + 1, L1V | PIN | 1)
        assert words(m, T4) == (ALLOC1 + 1, L4V | PIN | 1)
        assert m.pt.live[T3] == (3, lay.g)

    def test_l1_read_only_takes_a_general_reference_only(self, lay):
        m = lay.m
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P))) == (0, 1)
        assert words(m, F0) == (ALLOC1 + 1, 0)
        assert m.mem.read(T1, 0) == make_pte(F0, P)

    def test_l1_writable_takes_a_writable_type_reference(self, lay):
        m = lay.m
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW)), (ptr(T1, 1), make_pte(F0, P | RW))) == (0, 2)
        assert words(m, F0) == (ALLOC1 + 2, WR | 2)

    def test_l2_entry_types_the_target_l1_and_validates_its_entries(self, lay):
        m = lay.m
        m.mem.write(F0, 0, make_pte(F1, P | RW))             # the guest fills a fresh frame...
        m.mem.write(F0, 7, make_pte(F2, P))
        v0 = m.refs.stats.validations
        assert mmu(m, lay.g, (ptr(T2, 3), make_pte(F0, P | RW))) == (0, 1)   # ...and links it
        assert words(m, F0) == (ALLOC1 + 1, L1V | 1)
        assert words(m, F1) == (ALLOC1 + 1, WR | 1)
        assert words(m, F2) == (ALLOC1 + 1, 0)
        assert m.pt.live[F0] == (1, lay.g)
        assert m.refs.stats.validations == v0 + 1

    def test_l2_entry_to_an_l1_with_a_bad_entry_fails_and_undoes(self, lay):
        m = lay.m
        m.mem.write(F0, 0, make_pte(F1, P | RW))             # good: taken, then given back
        m.mem.write(F0, 1, make_pte(O_F, P))                 # another domain's frame
        snap = m.snapshot()
        # alloc_l1_table passes on get_page_from_l1e's could_not_pin (4.8): -EBUSY
        assert mmu(m, lay.g, (ptr(T2, 3), make_pte(F0, P | RW))) == (-errno.EBUSY, 0)
        assert m.same_as(snap)
        assert words(m, F1) == (ALLOC1, 0) and F0 not in m.pt.live

    def test_l2_pse_maps_a_superpage_xen41(self, lay):
        m = lay.m
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP, P | RW | PSE))) == (0, 1)
        assert sp_words(m, G_SP) == ({ALLOC1 + 1}, {WR | 1})
        assert spage(m, G_SP) == SGT_dynamic | 1
        assert m.superpage.stats["slow_get"] == 1

    def test_read_only_pse_also_takes_writable_references_xen41(self, lay):
        m = lay.m
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP, P | PSE))) == (0, 1)
        assert sp_words(m, G_SP) == ({ALLOC1 + 1}, {WR | 1})
        assert spage(m, G_SP) == SGT_dynamic | 1

    def test_second_pse_entry_takes_the_fast_path(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP, P | RW | PSE)))
        get0 = m.refs.stats.get_page
        assert mmu(m, lay.g, (ptr(T2, 1), make_pte(G_SP, P | PSE))) == (0, 1)
        assert spage(m, G_SP) == SGT_dynamic | 2
        assert sp_words(m, G_SP) == ({ALLOC1 + 1}, {WR | 1})   # no frame touched
        assert m.refs.stats.get_page == get0 + 1                 # only the table's own reference
        assert m.superpage.stats == {"slow_get": 1, "slow_put": 0, "fast_get": 1, "fast_put": 0}

    def test_last_pse_entry_gone_drops_the_512_references(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP, P | RW | PSE)), (ptr(T2, 1), make_pte(G_SP, P | PSE)))
        assert mmu(m, lay.g, (ptr(T2, 0), 0)) == (0, 1)
        assert spage(m, G_SP) == SGT_dynamic | 1
        assert sp_words(m, G_SP) == ({ALLOC1 + 1}, {WR | 1})
        assert mmu(m, lay.g, (ptr(T2, 1), 0)) == (0, 1)
        assert spage(m, G_SP) == 0
        assert sp_words(m, G_SP) == ({ALLOC1}, {WR})
        assert m.superpage.stats == {"slow_get": 1, "slow_put": 1, "fast_get": 1, "fast_put": 1}

    def test_l3_entry_takes_an_l2_type(self, lay):
        m = lay.m
        assert mmu(m, lay.g, (ptr(T3, 5), make_pte(F0, P | RW))) == (0, 1)
        assert words(m, F0) == (ALLOC1 + 1, L2V | 1)
        assert mmu(m, lay.g, (ptr(T3, 6), make_pte(T2, P | RW))) == (0, 1)   # a pinned L2
        assert words(m, T2) == (ALLOC1 + 2, L2V | PIN | 2)

    @pytest.mark.parametrize("slot", [0, 255, 272, 511])
    def test_l4_entry_takes_an_l3_type(self, lay, slot):
        m = lay.m
        assert mmu(m, lay.g, (ptr(T4, slot), make_pte(F0, P | RW))) == (0, 1)
        assert words(m, F0) == (ALLOC1 + 1, L3V | 1)
        assert m.mem.read(T4, slot) == make_pte(F0, P | RW)

    def test_clearing_an_entry_drops_its_references(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T3, 5), make_pte(F0, P | RW)))
        assert mmu(m, lay.g, (ptr(T3, 5), 0)) == (0, 1)
        assert words(m, F0) == (ALLOC1, PGT_l2_page_table)        # devalidated, type kept
        assert F0 not in m.pt.live

    def test_clearing_an_absent_entry_is_a_no_op(self, lay):
        m = lay.m
        snap = m.snapshot()
        assert mmu(m, lay.g, (ptr(T1, 9), 0)) == (0, 1)
        assert m.same_as(snap)


class TestReplace:
    def test_pointing_an_l1_entry_elsewhere_moves_the_reference(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW)))
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F1, P | RW))) == (0, 1)
        assert words(m, F0) == (ALLOC1, WR)
        assert words(m, F1) == (ALLOC1 + 1, WR | 1)

    def test_read_only_to_writable_on_the_same_frame(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P)))
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW))) == (0, 1)
        assert words(m, F0) == (ALLOC1 + 1, WR | 1)
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P))) == (0, 1)
        assert words(m, F0) == (ALLOC1 + 1, WR)
        assert m.pt_stats["fast_path"] == 0

    def test_new_references_are_taken_before_the_old_are_dropped(self, lay):
        """Flipping RW on the only L2 entry to an L1 (a slow-path change at L2): if the old
        reference were dropped first, the L1 would be devalidated and validated again."""
        m = lay.m
        m.mem.write(F0, 0, make_pte(F1, P | RW))
        mmu(m, lay.g, (ptr(T2, 0), make_pte(F0, P | RW)))
        s = m.refs.stats
        v0, dv0 = s.validations, s.devalidations
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(F0, P))) == (0, 1)
        assert (s.validations, s.devalidations) == (v0, dv0)
        assert words(m, F0) == (ALLOC1 + 1, L1V | 1)
        assert words(m, F1) == (ALLOC1 + 1, WR | 1)
        assert m.pt_stats["fast_path"] == 0

    def test_replacing_an_l2_entry_devalidates_the_old_l1(self, lay):
        m = lay.m
        m.mem.write(F0, 0, make_pte(F2, P | RW))
        mmu(m, lay.g, (ptr(T2, 0), make_pte(F0, P | RW)))
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(F1, P | RW))) == (0, 1)
        assert words(m, F0) == (ALLOC1, PGT_l1_page_table)
        assert words(m, F1) == (ALLOC1 + 1, L1V | 1)
        assert words(m, F2) == (ALLOC1, WR)                     # F0's entry let go of F2

    def test_pse_to_another_superpage(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP, P | RW | PSE)))
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP2, P | RW | PSE))) == (0, 1)
        assert spage(m, G_SP) == 0 and spage(m, G_SP2) == SGT_dynamic | 1
        assert sp_words(m, G_SP) == ({ALLOC1}, {WR})
        assert sp_words(m, G_SP2) == ({ALLOC1 + 1}, {WR | 1})


class TestFastPath:
    FAST = A | D | U | _PAGE_GLOBAL | _PAGE_NX

    def test_l1_whitelisted_flags_change_without_references(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW)))
        get0, type0 = m.refs.stats.get_page, m.refs.stats.get_page_type
        new = make_pte(F0, P | RW | self.FAST)
        assert mmu(m, lay.g, (ptr(T1, 0), new)) == (0, 1)
        assert m.mem.read(T1, 0) == new
        assert words(m, F0) == (ALLOC1 + 1, WR | 1)
        assert m.pt_stats["fast_path"] == 1
        assert m.refs.stats.get_page == get0 + 1                 # the table's own, nothing else
        assert m.refs.stats.get_page_type == type0

    def test_rw_change_takes_the_slow_path(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW)))
        for flags in (P, P | RW):
            assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, flags))) == (0, 1)
        assert m.pt_stats["fast_path"] == 0
        assert m.pt_stats["slow_path"] == 3
        assert words(m, F0) == (ALLOC1 + 1, WR | 1)

    def test_l2_pse_accessed_dirty_change_is_fast(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP, P | RW | PSE)))
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP, P | RW | PSE | A | D))) == (0, 1)
        assert m.pt_stats["fast_path"] == 1
        assert spage(m, G_SP) == SGT_dynamic | 1
        assert m.superpage.stats["fast_get"] == 0

    def test_identical_entry_is_fast(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T3, 0), make_pte(F0, P | RW)))
        assert mmu(m, lay.g, (ptr(T3, 0), make_pte(F0, P | RW))) == (0, 1)
        assert m.pt_stats["fast_path"] == 1
        assert words(m, F0) == (ALLOC1 + 1, L2V | 1)


class TestPlainWrite:
    def test_write_to_a_frame_that_is_not_a_table(self, lay):
        m = lay.m
        assert mmu(m, lay.g, (ptr(F0, 7), 0xDEADBEEF)) == (0, 1)
        assert m.mem.read(F0, 7) == 0xDEADBEEF
        assert words(m, F0) == (ALLOC1, WR)                     # typed writable for the write
        assert F0 not in m.pt.live

    def test_write_to_a_writable_mapped_frame(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW)))
        assert mmu(m, lay.g, (ptr(F0, 0), 1234)) == (0, 1)
        assert m.mem.read(F0, 0) == 1234
        assert words(m, F0) == (ALLOC1 + 1, WR | 1)

    def test_write_of_a_present_entry_into_a_plain_frame_takes_nothing(self, lay):
        m = lay.m
        assert mmu(m, lay.g, (ptr(F0, 0), make_pte(F1, P | RW))) == (0, 1)
        assert words(m, F1) == (ALLOC1, 0)                      # not a table: just data


class TestPreserveAD:
    def test_keeps_accessed_and_dirty(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW | A | D)))
        assert mmu(m, lay.g, (ptr(T1, 0, MMU_PT_UPDATE_PRESERVE_AD), make_pte(F0, P | RW))) == (0, 1)
        assert m.mem.read(T1, 0) == make_pte(F0, P | RW | A | D)
        assert words(m, F0) == (ALLOC1 + 1, WR | 1)

    def test_keeps_them_across_a_new_frame(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW | A)))
        assert mmu(m, lay.g, (ptr(T1, 0, MMU_PT_UPDATE_PRESERVE_AD), make_pte(F1, P))) == (0, 1)
        assert m.mem.read(T1, 0) == make_pte(F1, P | A)
        assert words(m, F0) == (ALLOC1, WR)
        assert words(m, F1) == (ALLOC1 + 1, 0)

    def test_normal_update_does_not_preserve(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | A | D)))
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P))) == (0, 1)
        assert m.mem.read(T1, 0) == make_pte(F0, P)

    def test_ors_old_bits_into_the_new_value(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW)))
        assert mmu(m, lay.g, (ptr(T1, 0, MMU_PT_UPDATE_PRESERVE_AD), make_pte(F0, P | RW | A | D))) == (0, 1)
        assert m.mem.read(T1, 0) == make_pte(F0, P | RW | A | D)


class TestMachphys:
    def test_sets_the_m2p(self, lay):
        m = lay.m
        assert m.m2p.get(F0) == 516
        snap_ft = m.frame_table.snapshot()
        assert mmu(m, lay.g, ((F0 << 12) | MMU_MACHPHYS_UPDATE, 0x777)) == (0, 1)
        assert m.m2p.get(F0) == 0x777
        assert m.frame_table.same_as(snap_ft)                   # the temporary reference is gone

    def test_ignores_the_offset_bits_of_ptr_4_8(self, lay):
        """do_mmu_update 4.1/4.8: MMU_MACHPHYS_UPDATE's frame is ptr >> PAGE_SHIFT; bits
        3-11 (an entry offset for the other commands) are ignored."""
        m = lay.m
        assert mmu(m, lay.g, ((F0 << 12) | 0xff8 | MMU_MACHPHYS_UPDATE, 0x777)) == (0, 1)
        assert m.m2p.get(F0) == 0x777

    @pytest.mark.parametrize("version", RELEASE_NAMES)
    @pytest.mark.parametrize("cmd", [3, 4, 5, 6, 7])
    def test_command_is_ptr_and_7_others_are_enosys(self, version, cmd):
        """do_mmu_update 4.1-4.8: the command is ptr & (sizeof(l1_pgentry_t) - 1); 3-7 are
        unknown (-ENOSYS), so ptr | 5 is no M2P update and ptr | 6 no PRESERVE_AD."""
        m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version)
        lay = build(m)
        snap = m.snapshot()
        assert mmu(m, lay.g, ((F0 << 12) | cmd, 0x777)) == (-errno.ENOSYS, 0)
        assert mmu(m, lay.g, (ptr(T1, 0) | cmd, make_pte(F0, P))) == (-errno.ENOSYS, 0)
        assert m.same_as(snap)
        assert m.m2p.get(F0) == 516

    @pytest.mark.parametrize("mfn", [O_F, FREE, 0x4000, (1 << 40) - 1], ids=["foreign", "free", "max_page", "huge"])
    def test_refuses_frames_that_are_not_the_guests(self, lay, mfn):
        m = lay.m
        snap = m.snapshot()
        assert mmu(m, lay.g, ((mfn << 12) | MMU_MACHPHYS_UPDATE, 5)) == (-errno.EINVAL, 0)
        assert m.same_as(snap)

    def test_dom0_updates_a_guest_frame_with_foreigndom(self, lay):
        m = lay.m
        assert mmu(m, 0, ((O_F << 12) | MMU_MACHPHYS_UPDATE, 0x99), foreigndom=lay.o) == (0, 1)
        assert m.m2p.get(O_F) == 0x99
        snap = m.snapshot()
        assert mmu(m, 0, ((O_F << 12) | MMU_MACHPHYS_UPDATE, 0x98), foreigndom=lay.g) == (-errno.EINVAL, 0)
        assert m.same_as(snap)


class TestBatch:
    def test_stops_at_the_first_failure(self, lay):
        m = lay.m
        rc, done = mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW)), (ptr(T1, 1), make_pte(F1, P)),
                       (ptr(T1, 2), make_pte(O_F, P)), (ptr(T1, 3), make_pte(F2, P)))
        assert (rc, done) == (-errno.EBUSY, 2)                 # get_page_from_l1e, 4.8
        assert words(m, F0) == (ALLOC1 + 1, WR | 1)
        assert words(m, F1) == (ALLOC1 + 1, 0)
        assert words(m, O_F) == (ALLOC1, 0)
        assert words(m, F2) == (ALLOC1, 0)                     # never reached
        assert [m.mem.read(T1, i) for i in range(4)] == [make_pte(F0, P | RW), make_pte(F1, P), 0, 0]
        assert m.hypercall.stats["mmu_update"].errors == {"EBUSY": 1}

    def test_first_request_failing_does_nothing(self, lay):
        m = lay.m
        snap = m.snapshot()
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(FREE, P)), (ptr(T1, 1), make_pte(F1, P))) == (-errno.EBUSY, 0)
        assert m.same_as(snap)

    def test_empty_batch_and_no_done_list(self, lay):
        m = lay.m
        assert mmu(m, lay.g) == (0, 0)
        assert hc(m, lay.g, HYPERVISOR_mmu_update, [MmuUpdate(ptr(T1, 0), make_pte(F0, P))]) == 0
        assert words(m, F0) == (ALLOC1 + 1, 0)


# -- refusals -------------------------------------------------------------------------------
# (name, [(ptr, val)], errno): the guest's own batch, refused at its first request
_ERRORS = [
    ("cmd-3", [(ptr(T1, 0) | 3, make_pte(F0, P))], errno.ENOSYS),
    ("cmd-4", [(ptr(T1, 0) | 4, make_pte(F0, P))], errno.ENOSYS),
    ("cmd-5-is-not-machphys", [(ptr(F0, 0) | 5, 0x777)], errno.ENOSYS),
    ("cmd-6-is-not-preserve-ad", [(ptr(T1, 0) | 6, make_pte(F0, P))], errno.ENOSYS),
    ("cmd-7", [(ptr(T1, 0) | 7, make_pte(F0, P))], errno.ENOSYS),
    ("table-beyond-max-page", [(ptr(0x4000, 0), make_pte(F0, P))], errno.EINVAL),
    ("table-huge-mfn", [(ptr((1 << 40) - 1, 0), make_pte(F0, P))], errno.EINVAL),
    ("table-free", [(ptr(FREE, 0), make_pte(F0, P))], errno.EINVAL),
    ("table-foreign-frame", [(ptr(O_F, 0), 1)], errno.EINVAL),
    ("pcd-l1", [(ptr(T1, 0), make_pte(F0, P | _PAGE_PCD))], errno.EINVAL),
    ("pwt-l1", [(ptr(T1, 0), make_pte(F0, P | _PAGE_PWT))], errno.EINVAL),
    ("pat-l1", [(ptr(T1, 0), make_pte(F0, P | PSE))], errno.EINVAL),
    ("global-l2", [(ptr(T2, 0), make_pte(F0, P | RW | _PAGE_GLOBAL))], errno.EINVAL),
    ("pcd-l2-pse", [(ptr(T2, 0), make_pte(G_SP, P | RW | PSE | _PAGE_PCD))], errno.EINVAL),
    ("global-l3", [(ptr(T3, 0), make_pte(F0, P | RW | _PAGE_GLOBAL))], errno.EINVAL),
    ("pwt-l4", [(ptr(T4, 0), make_pte(F0, P | RW | _PAGE_PWT))], errno.EINVAL),
    ("pse-unaligned-mfn", [(ptr(T2, 0), make_pte(G_SP + 1, P | RW | PSE))], errno.EINVAL),
    ("pse-unaligned-mfn-256", [(ptr(T2, 0), make_pte(G_SP + 256, P | PSE))], errno.EINVAL),
    ("l3-pse", [(ptr(T3, 0), make_pte(G_SP, P | RW | PSE))], errno.EINVAL),
    ("l4-pse", [(ptr(T4, 0), make_pte(G_SP, P | RW | PSE))], errno.EINVAL),
    ("l4-xen-slot-256", [(ptr(T4, 256), make_pte(F0, P | RW))], errno.EINVAL),
    ("l4-xen-slot-271", [(ptr(T4, 271), make_pte(F0, P | RW))], errno.EINVAL),
    ("l4-xen-slot-clear", [(ptr(T4, 260), 0)], errno.EINVAL),
    ("l1-rw-to-live-l1", [(ptr(T1, 0), make_pte(T1, P | RW))], errno.EBUSY),
    ("l1-rw-to-live-l2", [(ptr(T1, 0), make_pte(T2, P | RW))], errno.EBUSY),
    ("l1-rw-to-live-l3", [(ptr(T1, 0), make_pte(T3, P | RW))], errno.EBUSY),
    ("l1-rw-to-live-l4", [(ptr(T1, 0), make_pte(T4, P | RW))], errno.EBUSY),
    ("l2-to-a-pinned-l2", [(ptr(T2, 0), make_pte(T2, P | RW))], errno.EINVAL),
    ("l3-to-a-pinned-l1", [(ptr(T3, 0), make_pte(T1, P | RW))], errno.EINVAL),
    ("l4-to-a-pinned-l4", [(ptr(T4, 0), make_pte(T4, P | RW))], errno.EINVAL),
    ("l2-to-foreign", [(ptr(T2, 0), make_pte(O_F, P | RW))], errno.EINVAL),
    # get_page_from_l1e (4.8): a RAM frame that cannot be taken is could_not_pin (-EBUSY);
    # an MFN that is not RAM is Xen's I/O-memory path, refused for a domU with -EPERM
    ("l1-to-free", [(ptr(T1, 0), make_pte(FREE, P))], errno.EBUSY),
    ("l1-beyond-max-page", [(ptr(T1, 0), make_pte(0x4000, P))], errno.EPERM),
]


class TestErrors:
    @pytest.mark.parametrize("reqs,err", [e[1:] for e in _ERRORS], ids=[e[0] for e in _ERRORS])
    def test_refused_and_nothing_changes(self, lay, reqs, err):
        m = lay.m
        snap = m.snapshot()
        assert mmu(m, lay.g, *reqs) == (-err, 0)
        assert m.same_as(snap)

    def test_pse_over_a_superpage_holding_a_live_table(self, lay):
        m = lay.m
        assert ext(m, lay.g, MmuextOp(MMUEXT_PIN_L1_TABLE, G_SP2 + 17)) == (0, 1)
        snap = m.snapshot()
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP2, P | PSE))) == (-errno.EINVAL, 0)
        assert m.same_as(snap)

    def test_linking_a_writable_mapped_frame_as_l1(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P | RW)))
        snap = m.snapshot()
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(F0, P | RW))) == (-errno.EINVAL, 0)
        assert m.same_as(snap)
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P))) == (0, 1)   # read-only now:
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(F0, P | RW))) == (0, 1)  # it may become an L1
        assert words(m, F0) == (ALLOC1 + 2, L1V | 1)

    def test_linking_a_frame_inside_a_mapped_superpage_as_l1(self, lay):
        m = lay.m
        mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP2, P | PSE)))        # read-only, still writable refs
        snap = m.snapshot()
        assert mmu(m, lay.g, (ptr(T2, 1), make_pte(G_SP2 + 3, P | RW))) == (-errno.EINVAL, 0)
        assert m.same_as(snap)

    def test_pse_without_allow_superpage(self):
        m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", allow_superpage=False)
        lay = build(m)
        snap = m.snapshot()
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(G_SP, P | RW | PSE))) == (-errno.EINVAL, 0)
        assert m.same_as(snap)
        assert mmu(m, lay.g, (ptr(T2, 0), make_pte(F0, P | RW))) == (0, 1)   # plain L2 entries work

    @pytest.mark.parametrize("level,table,val,bad", [
        (2, T2, make_pte(F0, P | RW), _PAGE_GLOBAL),
        (2, T2, make_pte(G_SP, P | RW | PSE), _PAGE_GLOBAL),
        (3, T3, make_pte(F0, P | RW), _PAGE_PCD),
        (4, T4, make_pte(F0, P | RW), _PAGE_PWT),
        (1, T1, make_pte(F0, P | RW), _PAGE_PWT),
        (1, T1, make_pte(F0, P | RW), _PAGE_PCD),
    ], ids=["l2", "l2-pse", "l3", "l4", "l1-pwt", "l1-pcd"])
    def test_disallowed_flag_on_a_live_entry(self, lay, level, table, val, bad):
        """A disallowed flag added to an entry that is already present (the fast-path shape)
        is refused like on a new entry: mod_l1_entry .. mod_l4_entry (4.1-4.8) check
        L?_DISALLOW_MASK before the fast path."""
        m = lay.m
        assert mmu(m, lay.g, (ptr(table, 0), val)) == (0, 1)
        snap = m.snapshot()
        assert mmu(m, lay.g, (ptr(table, 0), val | bad)) == (-errno.EINVAL, 0)
        assert m.same_as(snap)


class TestForeignDomain:
    """The foreign-domain rules of do_mmu_update per release are in test_pg_owner.py;
    these run on the default release (4.8)."""

    def test_domu_passing_foreigndom_is_eperm_at_the_first_request_4_8(self, lay):
        """do_mmu_update 4.8: get_pg_owner finds the domain, xsm_mmu_update refuses the
        first request (-EPERM); done is written (0)."""
        m = lay.m
        snap = m.snapshot()
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P)), foreigndom=lay.o) == (-errno.EPERM, 0)
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P)), foreigndom=0) == (-errno.EPERM, 0)
        assert m.same_as(snap)

    def test_foreigndom_naming_the_caller_is_esrch_4_8(self, lay):
        """get_pg_owner 4.8: "cannot specify itself as foreign domain"."""
        m = lay.m
        snap = m.snapshot()
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P)), foreigndom=lay.g) == (-errno.ESRCH, 0)
        assert m.same_as(snap)

    def test_dom0_naming_a_missing_domain_is_esrch_4_8(self, lay):
        m = lay.m
        snap = m.snapshot()
        assert mmu(m, 0, (ptr(T1, 0), make_pte(F0, P)), foreigndom=42) == (-errno.ESRCH, 0)
        assert m.same_as(snap)

    def test_dom0_cannot_write_a_guest_table_as_itself(self, lay):
        m = lay.m
        snap = m.snapshot()
        assert mmu(m, 0, (ptr(T1, 0), make_pte(F0, P))) == (-errno.EINVAL, 0)
        assert m.same_as(snap)

    def _dom0_tables(self, lay):
        """Dom0 gets 8 frames (0x218..0x21f) and pins 0x218 as its L1, 0x219 as its L2."""
        m = lay.m
        m.domain(0).max_pages = 8
        assert populate(m, 0, range(8), 0) == list(range(0x218, 0x220))
        assert ext(m, 0, MmuextOp(MMUEXT_PIN_L1_TABLE, 0x218), MmuextOp(MMUEXT_PIN_L2_TABLE, 0x219)) == (0, 2)
        return 0x218, 0x219

    def test_dom0_maps_a_guest_frame_into_its_own_table(self, lay):
        m = lay.m
        d0_l1, _ = self._dom0_tables(lay)
        rc = m.hypercall(0, HYPERVISOR_mmu_update, [MmuUpdate(ptr(d0_l1, 0), make_pte(F0, P | RW))],
                         [0], lay.g)
        assert rc == 0
        assert words(m, F0) == (ALLOC1 + 1, WR | 1)
        assert m.frame_table.owner(F0) == lay.g
        assert_clean(m)

    def test_dom0_links_its_own_l1_while_naming_a_foreign_domain(self, lay):
        m = lay.m
        _, d0_l2 = self._dom0_tables(lay)
        assert mmu(m, 0, (ptr(d0_l2, 0), make_pte(0x21a, P | RW)), foreigndom=lay.g) == (0, 1)
        assert words(m, 0x21a) == (ALLOC1 + 1, L1V | 1)

    def test_dom0_cannot_link_a_guest_frame_as_its_own_l1(self, lay):
        m = lay.m
        _, d0_l2 = self._dom0_tables(lay)
        snap = m.snapshot()
        rc = m.hypercall(0, HYPERVISOR_mmu_update, [MmuUpdate(ptr(d0_l2, 0), make_pte(F0, P | RW))],
                         [0], lay.g)
        assert rc == -errno.EINVAL
        assert m.same_as(snap)

    def test_a_dying_domain_issues_no_hypercalls(self, lay):
        """A dying domain's vCPUs never run again (domain_kill pauses it): xensim refuses
        its calls as a missing caller's, -ESRCH, and writes no done count."""
        m = lay.m
        m.domain(lay.g).is_dying = True
        snap = m.snapshot()
        assert mmu(m, lay.g, (ptr(T1, 0), make_pte(F0, P))) == (-errno.ESRCH, -1)
        assert m.same_as(snap)


# -- update_va_mapping ------------------------------------------------------------------------
VA = DIRECTMAP_BASE


@pytest.fixture
def kern(m):
    """A guest kernel with a built tree, 4 KiB frames k.f[0..7] and a superpage k.sp."""
    g = m.create_domain("guest", 2048)
    k = GuestKernel(m, g)
    assert k.populate(0, 512) == 1
    assert k.populate(512, 8, superpages=False) == 8
    assert k.build() == 0
    k.sp = k.mfn(0)
    k.f = [k.mfn(512 + i) for i in range(8)]
    assert k.map_pages(VA, [k.f[0]]) == 0
    assert k.map_superpages(VA + (1 << 30), [k.sp]) == 0
    assert_clean(m)
    return k


def uva(m, caller, va, val, flags=0):
    return hc(m, caller, HYPERVISOR_update_va_mapping, va, val, flags)


class TestUpdateVaMapping:
    def test_changes_the_4k_mapping(self, m, kern):
        k = kern
        assert words(m, k.f[0]) == (ALLOC1 + 1, WR | 1)
        assert uva(m, k.domid, VA, make_pte(k.f[1], P | RW)) == 0
        assert words(m, k.f[0]) == (ALLOC1, WR)
        assert words(m, k.f[1]) == (ALLOC1 + 1, WR | 1)
        l1 = k.tables[(1, VA >> 21)]
        assert m.mem.read(l1, 0) == make_pte(k.f[1], P | RW)

    def test_holds_a_general_reference_on_the_l1_table_while_it_writes(self, m, kern):
        """__do_update_va_mapping (4.1 to 4.22): get_page_from_pagenr on the L1 table the walk
        reached, mod_l1_entry, put_page: one get_page and one put_page of the table besides
        the entry's own (get_page + get_page_type of the new frame, put_page_type + put_page
        of the old); the table's words as before."""
        k = kern
        l1 = k.tables[(1, VA >> 21)]
        before, st = words(m, l1), m.refs.stats
        counts = (st.get_page, st.put_page, st.get_page_type, st.put_page_type)
        seen = []
        with m.events.listening(frames_written=lambda p, n: seen.append(p)):
            assert uva(m, k.domid, VA, make_pte(k.f[1], P | RW)) == 0
        assert (st.get_page, st.put_page, st.get_page_type, st.put_page_type) == (
            counts[0] + 2, counts[1] + 2, counts[2] + 1, counts[3] + 1)
        assert words(m, l1) == before
        assert seen.count(m.mfn_to_page(l1)) == 2          # taken, then given back

    def test_adds_and_clears_a_mapping_in_a_present_l1(self, m, kern):
        k = kern
        assert uva(m, k.domid, VA + 0x5000, make_pte(k.f[2], P)) == 0
        assert words(m, k.f[2]) == (ALLOC1 + 1, 0)
        assert uva(m, k.domid, VA + 0x5000, 0) == 0
        assert words(m, k.f[2]) == (ALLOC1, 0)

    def test_no_base_pointer(self, m):
        g = m.create_domain("bare", 16)
        populate(m, g, [0], 0)
        snap = m.snapshot()
        assert uva(m, g, VA, make_pte(0, P)) == -errno.EINVAL
        assert m.same_as(snap)

    @pytest.mark.parametrize("va", [VA + (2 << 30), 0x1000, VA + (1 << 30) + 0x3000],
                             ids=["no-l2", "no-l3", "under-pse"])
    def test_unmapped_or_superpage_va(self, m, kern, va):
        snap = m.snapshot()
        assert uva(m, kern.domid, va, make_pte(kern.f[1], P)) == -errno.EINVAL
        assert m.same_as(snap)

    def test_bad_new_entry_changes_nothing(self, m, kern):
        k = kern
        other = m.create_domain("other", 16)
        (omfn,) = populate(m, other, [0], 0)
        l1 = k.tables[(1, VA >> 21)]
        for val, err in ((make_pte(omfn, P), errno.EBUSY), (make_pte(l1, P | RW), errno.EBUSY),
                         (make_pte(k.f[1], P | _PAGE_PCD), errno.EINVAL)):   # 4.8's answers
            snap = m.snapshot()
            assert uva(m, k.domid, VA, val) == -err
            assert m.same_as(snap)


# -- update_va_mapping's flush flags ------------------------------------------------------------
from xensim.xen import (UVMF_ALL, UVMF_INVLPG, UVMF_LOCAL, UVMF_NONE,   # noqa: E402
                        UVMF_TLB_FLUSH)

#: a UVMF_MULTI flush: any pointer value besides UVMF_LOCAL (0) and UVMF_ALL (4)
MULTI_PTR = 0x7000


def _uvmf_kernel(version: str):
    """A guest on Xen ``version`` with a built tree, frames k.f[0..3] and VA mapped to k.f[0]
    (read-write) through an L1 table."""
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version)
    k = GuestKernel(m, m.create_domain("guest", 2048))
    assert k.populate(0, 16, superpages=False) == 16
    assert k.build() == 0
    k.f = [k.mfn(8 + i) for i in range(4)]
    assert k.map_pages(VA, [k.f[0]]) == 0
    return m, k


def _flushes(m) -> tuple[int, int]:
    """(RefStats.tlb_flushes, the TLB clock)."""
    return m.refs.stats.tlb_flushes, m.refs.tlbflush_clock


def _uva_flags(m, k, val, flags, vcpumask=None):
    return m.hypercall(k.domid, HYPERVISOR_update_va_mapping, VA, val, flags, vcpumask)


class TestUpdateVaMappingFlush:
    """__do_update_va_mapping's flush (mm.c, 4.1 and 4.8; 4.22 after 6c8d502887): the flush
    type in flags' bits 0-1, then UVMF_LOCAL (0), UVMF_ALL (4) or a pointer to a vCPU bitmap
    (UVMF_MULTI, read by vcpumask_to_pcpumask). xensim's TLB model: one CPU per domain."""

    @pytest.mark.parametrize("version", ["4.1", "4.8", "4.22"])
    @pytest.mark.parametrize("flags, whole", [
        (UVMF_NONE, 0), (UVMF_TLB_FLUSH | UVMF_LOCAL, 1), (UVMF_TLB_FLUSH | UVMF_ALL, 1),
        (UVMF_INVLPG | UVMF_LOCAL, 0), (UVMF_INVLPG | UVMF_ALL, 0), (UVMF_NONE | UVMF_ALL, 0),
        (3, 0)], ids=["none", "flush-local", "flush-all", "invlpg-local", "invlpg-all",
                      "none-all", "type-3"])
    def test_after_an_update_a_tlb_flush_is_one_whole_flush(self, version, flags, whole):
        m, k = _uvmf_kernel(version)
        f0, c0 = _flushes(m)
        assert _uva_flags(m, k, make_pte(k.f[1], P | RW), flags) == 0
        assert _flushes(m) == (f0 + whole, c0 + whole)
        assert m.mem.read(k.tables[(1, VA >> 21)], 0) == make_pte(k.f[1], P | RW)

    @pytest.mark.parametrize("version, whole", [("4.1", 1), ("4.8", 1), ("4.22", 0)])
    def test_a_failed_update_flushes_up_to_4_11(self, version, whole):
        """A refused entry (a frame of another domain: 4.1 -EINVAL, 4.8/4.22 -EBUSY) keeps
        its errno; the flush still happens before 4.12 (6c8d502887 skips it after an error)."""
        m, k = _uvmf_kernel(version)
        other = m.create_domain("other", 16)
        (omfn,) = populate(m, other, [0], 0)
        words_before = words(m, k.f[0])
        f0, c0 = _flushes(m)
        rc = _uva_flags(m, k, make_pte(omfn, P), UVMF_TLB_FLUSH | UVMF_LOCAL)
        assert rc == (-errno.EINVAL if version == "4.1" else -errno.EBUSY)
        assert _flushes(m) == (f0 + whole, c0 + whole)
        assert words(m, k.f[0]) == words_before

    @pytest.mark.parametrize("version", ["4.1", "4.8"])
    def test_up_to_4_11_a_multi_flush_after_a_failed_update_returns_0(self, version):
        """vcpumask_to_pcpumask's result replaces the update's: a refused entry with a
        readable vCPU bitmap returns 0, the entry unchanged, vCPU 0's CPU flushed."""
        m, k = _uvmf_kernel(version)
        other = m.create_domain("other", 16)
        (omfn,) = populate(m, other, [0], 0)
        l1 = k.tables[(1, VA >> 21)]
        entry = m.mem.read(l1, 0)
        f0, _ = _flushes(m)
        assert _uva_flags(m, k, make_pte(omfn, P), UVMF_TLB_FLUSH | MULTI_PTR, 0b1) == 0
        assert m.mem.read(l1, 0) == entry
        assert _flushes(m)[0] == f0 + 1

    def test_from_4_12_a_failed_update_keeps_its_errno_and_reads_no_bitmap(self):
        m, k = _uvmf_kernel("4.22")
        other = m.create_domain("other", 16)
        (omfn,) = populate(m, other, [0], 0)
        f0, _ = _flushes(m)
        assert _uva_flags(m, k, make_pte(omfn, P), UVMF_TLB_FLUSH | MULTI_PTR, 0b1) == -errno.EBUSY
        assert _uva_flags(m, k, make_pte(omfn, P), UVMF_TLB_FLUSH | MULTI_PTR, None) == -errno.EBUSY
        assert _flushes(m)[0] == f0

    @pytest.mark.parametrize("version", ["4.1", "4.8", "4.22"])
    @pytest.mark.parametrize("kind", [UVMF_TLB_FLUSH, UVMF_INVLPG], ids=["flush", "invlpg"])
    def test_an_unreadable_bitmap_is_efault_after_the_update(self, version, kind):
        """The entry was changed; the bitmap's copy_from_guest fails: -EFAULT, the mask
        cleared, nothing flushed."""
        m, k = _uvmf_kernel(version)
        f0, _ = _flushes(m)
        assert _uva_flags(m, k, make_pte(k.f[2], P), kind | MULTI_PTR, None) == -errno.EFAULT
        assert m.mem.read(k.tables[(1, VA >> 21)], 0) == make_pte(k.f[2], P)
        assert words(m, k.f[2])[0] == words(m, k.f[3])[0] + 1       # the new entry's reference
        assert _flushes(m)[0] == f0

    @pytest.mark.parametrize("mask, whole", [(0b1, 1), (0b10, 0), (0, 0), (0b11, 1)])
    def test_a_bitmap_flushes_when_it_names_one_of_the_domains_vcpus(self, mask, whole):
        """The domain has one vCPU: bit 0 names it; bit 1 is past max_vcpus (nothing)."""
        m, k = _uvmf_kernel("4.8")
        f0, _ = _flushes(m)
        assert _uva_flags(m, k, make_pte(k.f[1], P), UVMF_TLB_FLUSH | MULTI_PTR, mask) == 0
        assert _flushes(m)[0] == f0 + whole
