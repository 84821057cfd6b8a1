"""The reference primitives against Xen's source, release by release.

Each test names the Xen function it checks and the releases read (xen/arch/x86/mm.c at
RELEASE-4.1.0, 4.5.0, 4.7.0, 4.8.0; 4.10.0 and 4.22.0 for get_page), and asserts Xen's
exact answer: the words after the call, the call counts, the machine unchanged after a
refusal. The vectorised 512-frame forms are checked equal to the per-frame loop at the
same boundaries.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

from xensim import RefcountBug
from xensim.mem._page_info import (PGC_allocated, PGC_count_mask, PGT_l1_page_table,
                               PGT_l2_page_table, PGT_locked, PGT_partial, PGT_pinned,
                               PGT_seg_desc_page, PGT_shared_page, PGT_validated,
                               PGT_writable_page)
from xensim.xen._refcount import GET_PAGE_COUNT_MAX, get_page_allowed
from xensim.xen._segdesc import FLAT_KERNEL_CS, FIRST_RESERVED_GDT_ENTRY, check_descriptor

from conftest import assert_clean, populate, small_machine

WR = PGT_writable_page | PGT_validated
TOP = PGC_count_mask                    # Xen's count "-1"


@pytest.fixture
def sp(m, guest):
    assert populate(m, guest, [0], 9) == [0]
    return 0



def stepwise_get(m, first, n, d, type):
    """get_pages_and_type by Xen's frame loop (the machine stepwise)."""
    with m.events.stepwise():
        return m.refs.get_pages_and_type(first, n, d, type)


def stepwise_put(m, first, n, typed=True):
    """put_pages_and_type by the frame loop (the machine stepwise)."""
    with m.events.stepwise():
        return m.refs.put_pages_and_type(first, n, typed)

def machines(n=2):
    out = []
    for _ in range(n):
        m = small_machine()
        g = m.create_domain("guest", 2048)
        populate(m, g, [0], 9)
        out.append((m, g))
    return out


# -- get_page: page_get_owner_and_reference refuses count 0 and the top two counts ----------
class TestGetPageBoundary:
    """page_get_owner_and_reference (mm.c), 4.1, 4.5, 4.7, 4.8, 4.10, 4.22: the same rule in
    every release, ``((x + 2) & PGC_count_mask) <= 2`` refuses: count 0 (a free frame), -1
    (the count would wrap) and -2 (the last reference is kept for get_page_light)."""

    @pytest.mark.parametrize("count, ok", [(0, False), (1, True), (2, True),
                                           (TOP - 3, True), (TOP - 2, True),
                                           (TOP - 1, False), (TOP, False)])
    def test_rule_at_every_boundary_4_1_to_4_22(self, count, ok):
        assert get_page_allowed(count) is ok
        assert get_page_allowed(count) == (((count + 2) & PGC_count_mask) > 2)

    @pytest.mark.parametrize("count", [TOP - 1, TOP])
    def test_get_page_refuses_the_top_two_counts_4_8(self, m, guest, sp, count):
        m.frame_table.set_count_info(7, PGC_allocated | count)
        snap = m.snapshot()
        assert not m.refs.get_page(7, guest)
        assert m.same_as(snap)
        assert m.frame_table.count_info(7) == PGC_allocated | count
        assert (m.refs.stats.get_page, m.refs.stats.get_page_failed) == (1, 1)

    def test_get_page_takes_the_last_allowed_reference_4_8(self, m, guest, sp):
        m.frame_table.set_count_info(7, PGC_allocated | (TOP - 2))
        assert m.refs.get_page(7, guest)
        assert m.frame_table.count_info(7) == PGC_allocated | (TOP - 1)
        assert not m.refs.get_page(7, guest)                  # now at -2: refused
        assert GET_PAGE_COUNT_MAX == TOP - 2

    @pytest.mark.parametrize("count, reason", [(TOP - 2, None), (TOP - 1, "overflow"),
                                               (TOP, "overflow"), (0, "free")])
    @pytest.mark.parametrize("at", [0, 511])
    def test_run_equals_the_frame_loop_at_the_boundary(self, count, reason, at):
        """get_pages_and_type (vectorised), runs_ok and the per-frame loop (stepwise) agree at each
        boundary count."""
        (mv, g), (ml, gl) = machines()
        for mm in (mv, ml):
            mm.frame_table.set_count_info(at, (PGC_allocated if count else 0) | count)
            mm.refs.stats.reset()
        snap = mv.snapshot()
        assert bool(mv.refs.runs_ok(np.array([0]), 512, g, PGT_writable_page)[0]) is (reason is None)
        rv = mv.refs.get_pages_and_type(0, 512, g, PGT_writable_page)
        rl = stepwise_get(ml, 0, 512, gl, PGT_writable_page)
        assert (rv.ok, rv.reason) == (rl.ok, rl.reason) == (reason is None, reason)
        if reason is not None:
            assert rv.failed_index == rl.failed_index == at and rv.errno == -errno.EINVAL
            assert mv.same_as(snap)
        else:
            assert mv.frame_table.count_info(at) == PGC_allocated | (TOP - 1)
        assert mv.frame_table.snapshot() == ml.frame_table.snapshot()
        assert mv.refs.stats == ml.refs.stats


# -- __get_page_type ----------------------------------------------------------------------
class Recorder:
    """A validator that records alloc_page_type calls and accepts."""

    def __init__(self):
        self.calls = []

    def alloc_page_type(self, page, type):
        self.calls.append((page, type))
        return 0

    def free_page_type(self, page, type):
        self.calls.append(("free", page, type))


class TestGetPageType:
    """__get_page_type (mm.c), 4.1 and 4.8 (identical in what follows)."""

    @pytest.mark.parametrize("type", [PGT_writable_page, PGT_shared_page])
    def test_writable_and_shared_are_valid_at_once_4_1_4_8(self, m, guest, sp, type):
        rec = m.refs.validator = Recorder()
        assert m.refs.get_page_type(3, type)
        assert m.frame_table.type_info(3) == type | PGT_validated | 1
        assert rec.calls == [] and m.refs.stats.validations == 0

    @pytest.mark.parametrize("type", [PGT_seg_desc_page, PGT_l1_page_table])
    def test_segdesc_and_tables_go_to_alloc_page_type_4_1_4_8(self, m, guest, sp, type):
        rec = m.refs.validator = Recorder()
        assert m.refs.get_page_type(3, type)
        assert rec.calls == [(3, type)] and m.refs.stats.validations == 1
        assert m.frame_table.type_info(3) == type | PGT_validated | 1

    def test_type_change_clears_only_type_and_validated_4_1_4_8(self, m, guest, sp):
        """``nx &= ~(PGT_type_mask | PGT_validated)``: PGT_pinned, PGT_partial and PGT_locked
        survive a type change at type count 0 (PGT_partial planted here on a writable
        page: the get that follows is not a resumed validation, so no reference is put)."""
        m.refs.validator = Recorder()
        kept = PGT_pinned | PGT_partial | PGT_locked
        m.frame_table.set_type_info(3, WR | kept)
        assert m.refs.get_page_type(3, PGT_l2_page_table)
        assert m.frame_table.type_info(3) == PGT_l2_page_table | kept | PGT_validated | 1

    def test_same_type_at_count_zero_keeps_its_validation_4_1_4_8(self, m, guest, sp):
        """A validated segment descriptor page at type count 0 (never devalidated:
        __put_page_type devalidates page tables only) is taken again without validation."""
        rec = m.refs.validator = Recorder()
        assert m.refs.get_page_type(3, PGT_seg_desc_page)
        m.refs.put_page_type(3)
        assert m.frame_table.type_info(3) == PGT_seg_desc_page | PGT_validated
        assert m.refs.get_page_type(3, PGT_seg_desc_page)
        assert rec.calls == [(3, PGT_seg_desc_page)]
        assert m.frame_table.type_info(3) == PGT_seg_desc_page | PGT_validated | 1

    def test_validation_under_way_is_waited_for_not_refused_4_1_4_8(self, m, guest, sp):
        """Same type, references, PGT_validated clear: Xen spins until the word changes. On
        one CPU nobody else can finish the validation: xensim says so instead of refusing."""
        m.frame_table.set_type_info(3, PGT_l1_page_table | 1)
        with pytest.raises(RefcountBug, match="spin forever"):
            m.refs.get_page_type(3, PGT_l1_page_table)
        assert m.frame_table.type_info(3) == PGT_l1_page_table | 1

    def test_other_type_while_validating_is_einval_4_1_4_8(self, m, guest, sp):
        m.frame_table.set_type_info(3, PGT_l1_page_table | 1)
        snap = m.snapshot()
        assert m.refs._get_page_type(3, PGT_writable_page) == -errno.EINVAL
        assert m.same_as(snap)


class TestSegdesc:
    """alloc_segdesc_page and check_descriptor (x86_64/mm.c), 4.1 and 4.8, 64-bit PV guest."""

    @staticmethod
    def desc(a, b):
        return (b << 32) | a

    def test_accepted_descriptors(self):
        assert check_descriptor(0)                                       # not present
        assert check_descriptor(self.desc(0xFFFF, 0x00CF_9A00))          # code segment
        assert check_descriptor(self.desc(0, 0x8000))                    # present, type 0
        gate = self.desc(FLAT_KERNEL_CS << 16, 0x0000_EC00)              # call gate to Xen's CS
        assert check_descriptor(gate)
        assert check_descriptor(self.desc(0x0008 << 16, 0xEC00))         # a guest GDT selector

    def test_refused_descriptors(self):
        assert not check_descriptor(self.desc(0, 0x8900))                # a TSS: system, not a gate
        xen_sel = (FIRST_RESERVED_GDT_ENTRY + 1) << 3
        assert not check_descriptor(self.desc(xen_sel << 16, 0xEC00))    # gate into Xen's GDT
        assert not check_descriptor(self.desc(FLAT_KERNEL_CS << 16, 0xEC01))   # reserved bits

    def test_bad_descriptor_page_is_einval_and_changes_nothing_4_8(self, m, guest, sp):
        m.mem.write(5, 3, self.desc(0, 0x8900))
        snap = m.snapshot()
        assert m.refs.get_page_and_type_rc(5, guest, PGT_seg_desc_page) == -errno.EINVAL
        assert m.same_as(snap)
        m.mem.write(5, 3, self.desc(0xFFFF, 0x00CF_9A00))
        assert m.refs.get_page_and_type(5, guest, PGT_seg_desc_page)
        assert m.frame_table.type_info(5) == PGT_seg_desc_page | PGT_validated | 1
        assert m.refs.stats.validations == 2


# -- TLB flushes: tlbflush_timestamp set by __put_page_type, checked by __get_page_type -------
class TestTlbFlush:
    """__put_page_type / __put_final_page_type stamp tlbflush_timestamp when the type count
    falls to 0; __get_page_type's type change flushes the owner's dirty CPUs whose
    tlbflush_time is not after that stamp (tlbflush_filter, NEED_FLUSH): 4.1 and 4.8."""

    def test_writable_to_l1_after_a_writable_mapping_flushes_once_4_1_4_8(self, m, guest, sp):
        m.refs.validator = Recorder()
        r = m.refs
        assert r.get_page_type(3, PGT_writable_page)
        assert r.tlbflush_timestamp(3) == 0
        r.put_page_type(3)
        assert r.tlbflush_timestamp(3) == r.tlbflush_clock == 1      # stamped at the clock
        assert r.get_page_type(3, PGT_l1_page_table)                 # type change: flush
        assert r.stats.tlb_flushes == 1
        assert r.tlbflush_clock == 2 and r.tlbflush_time[guest] == 2
        r.put_page_type(3)                                           # devalidated: stamp 2
        assert r.tlbflush_timestamp(3) == 2
        assert r.get_page_type(3, PGT_writable_page)                 # 2 <= 2: flush again
        assert r.stats.tlb_flushes == 2

    def test_no_flush_for_a_stamp_older_than_the_last_flush_4_1_4_8(self, m, guest, sp):
        m.refs.validator = Recorder()
        r = m.refs
        for p in (3, 4):
            r.get_page_type(p, PGT_writable_page)
            r.put_page_type(p)
        assert r.get_page_type(3, PGT_l1_page_table) and r.stats.tlb_flushes == 1
        assert r.get_page_type(4, PGT_l1_page_table) and r.stats.tlb_flushes == 1  # covered

    def test_no_flush_without_a_type_change_or_a_stamp_4_1_4_8(self, m, guest, sp):
        r = m.refs
        assert r.get_page_type(3, PGT_writable_page)                 # none -> writable, never stamped
        r.put_page_type(3)
        assert r.get_page_type(3, PGT_writable_page)                 # same type: no flush
        assert r.stats.tlb_flushes == 0

    def test_freed_frame_forgets_its_stamp(self, m, guest, sp):
        r = m.refs
        r.get_page_type(9, PGT_writable_page)
        r.put_page_type(9)
        assert r.tlbflush_timestamp(9) == 1
        assert r.clear_allocated(9)
        m.domain(guest).allocated.remove(9, 10)
        r.put_page(9)                                                # freed
        assert r.tlbflush_timestamp(9) == 0

    @pytest.mark.parametrize("fail_at", [None, 0, 300])
    def test_run_flushes_equal_the_frame_loop(self, fail_at):
        """A superpage whose frames were writable and are now typed l1 at frame 200: taking
        it writable again changes the type of frames stamped earlier: one flush, in both forms."""
        ms = machines()
        for mm, g in ms:
            mm.refs.validator = Recorder()
            assert mm.refs.get_pages_and_type(0, 512, g, PGT_writable_page)
            mm.refs.put_pages_and_type(0, 512)                        # stamped at clock 1
            assert mm.refs.tlbflush_timestamp(511) == 1
            assert mm.refs.get_page_type(200, PGT_l1_page_table)      # flush 1
            mm.refs.put_page_type(200)                                # stamped at 2
            if fail_at is not None:
                mm.frame_table.set_count_info(fail_at, 0)
            mm.refs.stats.reset()
        (mv, g), (ml, gl) = ms
        rv = mv.refs.get_pages_and_type(0, 512, g, PGT_writable_page)
        rl = stepwise_get(ml, 0, 512, gl, PGT_writable_page)
        assert (rv.ok, rv.failed_index) == (rl.ok, rl.failed_index)
        want = 0 if fail_at == 0 else 1 if fail_at is None or fail_at > 200 else 0
        assert mv.refs.stats.tlb_flushes == ml.refs.stats.tlb_flushes == want
        assert mv.refs.stats == ml.refs.stats
        assert mv.refs.tlbflush_clock == ml.refs.tlbflush_clock == 2 + want
        assert mv.frame_table.snapshot() == ml.frame_table.snapshot()

    def test_runs_flush_like_the_loop(self):
        """get_runs_and_type over two superpages, both stamped: one flush, as in order."""
        ms = []
        for _ in range(2):
            m = small_machine()
            g = m.create_domain("guest", 4096)
            populate(m, g, [0, 512], 9)
            m.refs.validator = Recorder()
            for first in (0, 512):
                m.refs.get_pages_and_type(first, 512, g, PGT_writable_page)
                m.refs.put_pages_and_type(first, 512)
                m.refs.get_page_type(first + 7, PGT_l1_page_table)
                m.refs.put_page_type(first + 7)
            m.refs.stats.reset()
            ms.append((m, g))
        (mv, g), (ml, gl) = ms
        assert mv.refs.runs_ok(np.array([0, 512]), 512, g, PGT_writable_page).all()
        mv.refs.get_runs_and_type(np.array([0, 512]), 512, g, PGT_writable_page)
        for first in (0, 512):
            assert stepwise_get(ml, first, 512, gl, PGT_writable_page)
        assert mv.refs.stats == ml.refs.stats and mv.refs.stats.tlb_flushes == 1
        assert mv.frame_table.snapshot() == ml.frame_table.snapshot()
        mv.refs.put_runs_and_type(np.array([0, 512]), 512)
        for first in (0, 512):
            stepwise_put(ml, first, 512)
        assert mv.refs.tlbflush_clock == ml.refs.tlbflush_clock == 4       # 2 set-up flushes + 1
        assert mv.refs.tlbflush_timestamp(7) == ml.refs.tlbflush_timestamp(7) == 4
        assert mv.refs.tlbflush_timestamp(512 + 7) == ml.refs.tlbflush_timestamp(512 + 7) == 4
        assert_clean(mv)
