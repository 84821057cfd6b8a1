"""The reference primitives: get_page, put_page, get_page_type, put_page_type, the pairs,
pins, and the run forms (get_pages_and_type / put_pages_and_type: Xen 4.1's get_superpage
loop over 512 frames), each run through the accelerator harness (conftest.both_modes).

Each test builds the 64 MiB machine of conftest.small_machine (PDX none, so page == mfn),
gives a guest a superpage at MFN 0 and asserts exact words.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

from xensim import RefcountBug
from xensim.mem._page_info import (DOMID_INVALID, PGC_allocated, PGC_count_mask, PGC_state_free,
                               PGT_count_mask, PGT_l1_page_table, PGT_l2_page_table, PGT_pinned,
                               PGT_validated, PGT_writable_page)

from conftest import assert_clean, both_modes, populate, small_machine

ALLOC1 = PGC_allocated | 1          # a freshly allocated frame: the owner's reference only
WR = PGT_writable_page | PGT_validated


@pytest.fixture
def sp(m, guest):
    """The guest owns MFNs 0..511 (one superpage, populated at gpfn 0)."""
    assert populate(m, guest, [0], 9) == [0]
    return 0


def words(m, page):
    return m.frame_table.count_info(page), m.frame_table.type_info(page), m.frame_table.owner(page)


# -- get_page / put_page -----------------------------------------------------------
class TestGetPage:
    def test_takes_a_general_reference(self, m, guest, sp):
        assert m.refs.get_page(5, guest)
        assert words(m, 5) == (ALLOC1 + 1, 0, guest)
        assert m.refs.stats.get_page == 1 and m.refs.stats.get_page_failed == 0

    def test_free_frame_fails_and_changes_nothing(self, m, guest, sp):
        snap = m.snapshot()
        assert not m.refs.get_page(0x1000, guest)              # never allocated
        assert m.frame_table.count_info(0x1000) == PGC_state_free
        assert m.same_as(snap)
        assert m.refs.stats.get_page_failed == 1

    def test_owner_mismatch_drops_the_reference(self, m, guest, sp):
        other = m.create_domain("other", 16)
        snap = m.snapshot()
        assert not m.refs.get_page(5, other)
        assert m.same_as(snap)
        assert words(m, 5) == (ALLOC1, 0, guest)

    def test_overflow_is_refused(self, m, guest, sp):
        m.frame_table.set_count_info(7, PGC_allocated | PGC_count_mask)
        snap = m.snapshot()
        assert not m.refs.get_page(7, guest)
        assert m.same_as(snap)

    def test_put_page_decrements(self, m, guest, sp):
        m.refs.get_page(5, guest)
        m.refs.put_page(5)
        assert words(m, 5) == (ALLOC1, 0, guest)
        assert_clean(m)

    def test_put_page_frees_at_zero(self, m, guest, sp):
        d = m.domain(guest)
        free0 = m.heap.free_frames
        assert m.refs.clear_allocated(9)                       # the owner gives it up...
        d.allocated.remove(9, 10)
        assert words(m, 9) == (1, 0, guest)
        m.refs.put_page(9)                                      # ...and its last reference goes
        assert words(m, 9) == (PGC_state_free, 0, DOMID_INVALID)
        assert m.heap.is_free(9) and m.heap.free_frames == free0 + 1
        assert d.tot_pages == 511 and 9 not in d.owned
        assert m.refs.stats.frees == 1
        assert_clean(m)

    def test_put_page_on_zero_is_a_bug(self, m, guest, sp):
        with pytest.raises(RefcountBug):
            m.refs.put_page(0x1000)


# -- get_page_type / put_page_type ----------------------------------------------------
class TestGetPageType:
    def test_writable_from_none_is_validated_at_once(self, m, guest, sp):
        assert m.refs.get_page_type(3, PGT_writable_page)
        assert m.frame_table.type_info(3) == WR | 1
        assert m.refs.get_page_type(3, PGT_writable_page)
        assert m.frame_table.type_info(3) == WR | 2

    def test_put_leaves_the_type_with_count_zero(self, m, guest, sp):
        m.refs.get_page_type(3, PGT_writable_page)
        m.refs.put_page_type(3)
        assert m.frame_table.type_info(3) == WR               # type stays until the next change

    def test_type_conflict_is_einval_and_changes_nothing(self, m, guest, sp):
        m.refs.get_page_type(3, PGT_writable_page)
        snap = m.snapshot()
        assert m.refs._get_page_type(3, PGT_l1_page_table) == -errno.EINVAL
        assert m.same_as(snap)
        assert m.refs.stats.get_page_type_failed == 1

    def test_type_changes_when_count_is_zero(self, m, guest, sp):
        m.refs.get_page_type(3, PGT_writable_page)
        m.refs.put_page_type(3)
        assert m.refs.get_page_type(3, PGT_l1_page_table)
        assert m.frame_table.type_info(3) == PGT_l1_page_table | PGT_validated | 1
        assert m.refs.stats.validations == 1

    def test_page_table_validated_then_devalidated(self, m, guest, sp):
        calls = []

        class Hook:
            def alloc_page_type(self, page, type):
                calls.append(("alloc", page, type))
                return 0

            def free_page_type(self, page, type):
                calls.append(("free", page, type))
        m.refs.validator = Hook()
        assert m.refs.get_page_type(4, PGT_l2_page_table)
        assert m.refs.get_page_type(4, PGT_l2_page_table)          # second ref: no new validation
        m.refs.put_page_type(4)
        assert calls == [("alloc", 4, PGT_l2_page_table)]
        m.refs.put_page_type(4)                                   # count 1 -> 0: devalidated
        assert calls == [("alloc", 4, PGT_l2_page_table), ("free", 4, PGT_l2_page_table)]
        assert m.frame_table.type_info(4) == PGT_l2_page_table    # validated cleared, type kept
        assert m.refs.stats.devalidations == 1

    def test_failed_validation_restores_the_word(self, m, guest, sp):
        class Refuse:
            def alloc_page_type(self, page, type):
                return -errno.EINVAL

            def free_page_type(self, page, type):
                raise AssertionError("never validated")
        m.refs.validator = Refuse()
        snap = m.snapshot()
        assert m.refs._get_page_type(4, PGT_l1_page_table) == -errno.EINVAL
        assert m.same_as(snap)

    def test_type_count_overflow(self, m, guest, sp):
        m.frame_table.set_type_info(6, WR | PGT_count_mask)
        snap = m.snapshot()
        assert not m.refs.get_page_type(6, PGT_writable_page)
        assert m.same_as(snap)

    def test_put_page_type_on_zero_is_a_bug(self, m, guest, sp):
        with pytest.raises(RefcountBug):
            m.refs.put_page_type(3)


class TestPairs:
    def test_get_page_and_type(self, m, guest, sp):
        assert m.refs.get_page_and_type(8, guest, PGT_writable_page)
        assert words(m, 8) == (ALLOC1 + 1, WR | 1, guest)
        m.refs.put_page_and_type(8)
        assert words(m, 8) == (ALLOC1, WR, guest)

    def test_type_failure_gives_the_general_reference_back(self, m, guest, sp):
        m.refs.get_page_type(8, PGT_l1_page_table)
        snap = m.snapshot()
        assert not m.refs.get_page_and_type(8, guest, PGT_writable_page)
        assert m.same_as(snap)
        s = m.refs.stats
        assert (s.get_page, s.put_page, s.get_page_type, s.get_page_type_failed) == (1, 1, 2, 1)

    def test_owner_failure_takes_no_type(self, m, guest, sp):
        other = m.create_domain("other", 16)
        snap = m.snapshot()
        assert not m.refs.get_page_and_type(8, other, PGT_writable_page)
        assert m.same_as(snap)
        assert m.refs.stats.get_page_type == 0


class TestPins:
    def test_set_and_clear_pinned(self, m, guest, sp):
        assert m.refs.set_pinned(2)
        assert not m.refs.set_pinned(2)
        assert m.frame_table.type_info(2) == PGT_pinned
        assert m.refs.clear_pinned(2)
        assert not m.refs.clear_pinned(2)
        assert m.frame_table.type_info(2) == 0


# -- vectorised forms ------------------------------------------------------------------
def _setup_failure(m, guest, reason: str, at: int) -> None:
    if reason == "owner":
        m.frame_table.set_owner(at, m.create_domain("thief", 16))
    elif reason == "type":
        m.refs.get_page_type(at, PGT_l1_page_table)
    elif reason == "free":
        m.frame_table.set_count_info(at, 0)
    elif reason == "overflow":
        m.frame_table.set_count_info(at, PGC_allocated | PGC_count_mask)
    elif reason == "type-overflow":
        m.frame_table.set_type_info(at, WR | PGT_count_mask)


class TestRuns:
    def test_512_frames_writable(self, m, guest, sp):
        r = m.refs.get_pages_and_type(0, 512, guest, PGT_writable_page)
        assert r.ok and r.failed_index is None
        ci, ti, owner = m.frame_table.read_slices(0, 512)
        assert (ci == ALLOC1 + 1).all() and (ti == WR | 1).all() and (owner == guest).all()
        assert m.refs.stats.get_page == 512 and m.refs.stats.get_page_type == 512
        m.refs.put_pages_and_type(0, 512)
        ci, ti, _ = m.frame_table.read_slices(0, 512)
        assert (ci == ALLOC1).all() and (ti == WR).all()
        assert m.refs.stats.put_page == 512 and m.refs.stats.put_page_type == 512

    def test_general_only(self, m, guest, sp):
        assert m.refs.get_pages(0, 512, guest)
        assert (m.frame_table.read_slices(0, 512)[1] == 0).all()
        m.refs.put_pages(0, 512)
        assert (m.frame_table.read_slices(0, 512)[0] == ALLOC1).all()

    @pytest.mark.parametrize("reason", ["owner", "type", "free", "overflow", "type-overflow"])
    @pytest.mark.parametrize("at", [0, 300, 511])
    def test_failure_at_frame_i_undoes_the_first_i(self, reason, at):
        m = small_machine()
        g = m.create_domain("guest", 2048)
        populate(m, g, [0], 9)
        _setup_failure(m, g, reason, at)
        m.refs.stats.reset()
        snap = m.snapshot()
        r, _, v = both_modes(m, lambda c: c.refs.get_pages_and_type(0, 512, g, PGT_writable_page))
        assert (r.ok, r.failed_index, r.reason) == (False, at, reason)
        assert r.errno == -errno.EINVAL
        assert v.same_as(snap)                                    # nothing left behind
        # the loop's calls: get_page on [0, at], the undo's put_page on [0, at) ...
        st = v.refs.stats
        assert st.get_page == at + 1 and st.put_page_type == at

    def test_put_pages_frees_frames_reaching_zero(self, m, guest, sp):
        d = m.domain(guest)
        m.refs.get_pages(0, 512, guest)
        ci, _, _ = m.frame_table.slices(0, 512)
        ci &= np.uint64(~PGC_allocated & (2**64 - 1))             # the guest gave all 512 up
        d.allocated.remove(0, 512)
        free0 = m.heap.free_frames
        m.refs.put_pages(0, 512)                                  # ...and put that reference:
        assert m.heap.free_frames == free0 and (m.frame_table.read_slices(0, 512)[0] == 1).all()
        m.refs.put_pages(0, 512)                                  # the mapping goes: all free
        assert m.heap.free_frames == free0 + 512 and d.tot_pages == 0
        assert m.frame_table.count_info(0) == PGC_state_free
        assert_clean(m)

    def test_put_on_zero_type_count_is_a_bug_and_changes_nothing(self, m, guest, sp):
        snap = m.snapshot()
        with pytest.raises(RefcountBug):
            m.refs.put_pages_and_type(0, 512)
        assert m.same_as(snap)

    def test_page_table_types_are_refused(self, m, guest, sp):
        with pytest.raises(ValueError):
            m.refs.get_pages_and_type(0, 512, guest, PGT_l1_page_table)
