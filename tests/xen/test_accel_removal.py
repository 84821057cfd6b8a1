"""decrease_reservation (Xen's common/memory.c: guest_remove_page frame by frame) and its
accelerator RemoveRun (xensim.xen.accel), fixed examples: where the run of frames in the
simple state ends (every frame simple, frames mapped elsewhere, frames that lost
PGC_allocated, a pinned frame, a foreign frame, a count at its top, an invalid MFN, a P2M
entry that maps another frame) with the figures each leaves; the whole hypercall through
the harness (conftest.both_modes: stepwise against vectorised); which observers turn the
accelerator off; and a failed request's check (Machine._check_undone) on the journal.
The generated states are tests/xen/test_accel.py's.

The 64 MiB machine: frames 0..0x3fff, one PDX group (conftest.small_machine).
"""

from __future__ import annotations

import copy
import errno

import numpy as np
import pytest

from xensim import (HYPERVISOR_memory_op, INVALID, MMUEXT_PIN_L1_TABLE,
                    XENMEM_decrease_reservation, Machine, MemoryMap, MmuextOp,
                    XenMemoryReservation)
from xensim._errors import RefcountBug
from xensim.mem._page_info import (PGC_allocated, PGC_count_mask, PGC_state_free,
                                   PGC_state_inuse, PGT_l1_page_table, PGT_pinned,
                                   PGT_validated, PGT_writable_page)
from xensim.xen import VECTOR_MIN_FRAMES, accel
from xensim.xen.accel._removal import remove_run

from conftest import assert_clean, both_modes, ext, full_state, populate

MOP = HYPERVISOR_memory_op
MiB = 1 << 20


def same_removal(m: Machine, domid: int, mfn: int, n: int, expected: int) -> Machine:
    """remove_run on ``m`` removes the ``expected`` leading frames of [mfn, mfn+n), and
    guest_remove_page frame by frame (the machine stepwise) on a copy removes them to the
    same machine; the copy is returned."""
    t = copy.deepcopy(m)
    assert remove_run(m, m.domain(domid), mfn, n) == expected
    with t.events.stepwise():
        assert t.remove_extent(t.domain(domid), mfn, expected) == expected
    assert full_state(m) == full_state(t)
    return t


def removal_accelerated(m: Machine) -> bool:
    """Does ``Machine.remove_extent`` try RemoveRun now?"""
    slot = vars(m).get("remove_extent")
    return slot is not None and any(isinstance(a, accel.RemoveRun) for a in slot.accelerators)


def decrease(m: Machine, caller: int, mfns: list[int], order: int) -> int:
    return m.hypercall(caller, MOP, XENMEM_decrease_reservation,
                       XenMemoryReservation(list(mfns), len(mfns), order))


def same_call(m: Machine, caller: int, mfns: list[int], order: int, expected: int,
              audited: bool = True) -> None:
    """The hypercall through the harness (stepwise and vectorised: same rc, machine,
    statistics, events), then on ``m`` (vectorised), and (``audited``: no reference the
    auditor does not know of) the auditor agrees."""
    assert removal_accelerated(m)
    rc, _, v = both_modes(m, lambda c: decrease(c, caller, mfns, order))
    assert rc == expected
    assert decrease(m, caller, mfns, order) == expected
    assert full_state(m) == full_state(v)
    if audited:
        assert_clean(m)


@pytest.fixture
def g(m) -> int:
    """A guest with one superpage at MFN 0 (gpfns 0..511) and 2048 pages of max memory."""
    g = m.create_domain("guest", 2048)
    assert populate(m, g, [0], 9) == [0]
    return g


class TestRemoveRun:
    def test_simple_extent_is_removed_and_freed(self, m, g):
        same_removal(m, g, 0, 512, 512)
        d = m.domain(g)
        assert d.tot_pages == 0 and not d.owned and not d.allocated and d.p2m.count == 0
        assert m.frame_table.count_info(0x1ff) == PGC_state_free and m.heap.is_free(0x1ff)
        assert m.refs.stats.get_page == 512 and m.refs.stats.put_page == 1024
        assert m.refs.stats.frees == 512

    def test_frames_mapped_elsewhere_stay_owned(self, m, g):
        for mfn in (7, 300):
            assert m.refs.get_page_and_type(mfn, g, PGT_writable_page)    # e.g. a mapping
        same_removal(m, g, 0, 512, 512)
        d = m.domain(g)
        assert d.owned.runs() == [(7, 8), (300, 301)] and not d.allocated
        assert m.frame_table.count_info(7) == PGC_state_inuse | 1
        assert m.m2p.get(7) == INVALID and d.p2m.get(7) == INVALID and d.tot_pages == 2

    def test_frames_without_pgc_allocated_only_lose_their_m2p(self, m, g):
        for mfn in (20, 21, 40):
            assert m.refs.get_page_and_type(mfn, g, PGT_writable_page)
        assert decrease(m, g, [20, 21, 40], 0) == 3          # PGC_allocated goes, count 1
        m.m2p.set(21, 21)                                   # the M2P still names gpfn 21
        d = m.domain(g)
        d.p2m.set(21, 21)
        same_removal(m, g, 0, 512, 512)
        assert m.frame_table.count_info(21) == PGC_state_inuse | 1
        assert m.m2p.get(21) == INVALID and d.p2m.get(21) == INVALID

    def test_stops_at_a_pinned_frame(self, m, g):
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, 100)) == (0, 1)
        t = same_removal(m, g, 0, 512, 100)
        assert m.frame_table.type_info(100) & PGT_pinned and 100 in m.domain(g).pinned
        assert t.frame_table.count_info(99) == PGC_state_free

    def test_stops_at_a_foreign_frame(self, m, g):
        o = m.create_domain("other", 4)
        assert populate(m, o, [0], 0) == [0x200]
        assert populate(m, g, [512], 9) == [0x400]
        same_removal(m, g, 0x100, 512, 0x100)

    def test_stops_at_a_foreign_frame_without_pgc_allocated(self, m, g):
        o = m.create_domain("other", 4)
        assert populate(m, o, [0], 0) == [0x200]
        assert populate(m, g, [512], 9) == [0x400]
        assert m.refs.get_page_and_type(0x200, o, PGT_writable_page)
        assert decrease(m, o, [0x200], 0) == 1               # other's: count 1, no flag
        same_removal(m, g, 0x100, 512, 0x100)

    def test_stops_at_a_count_at_its_top(self, m, g):
        page = m.mfn_to_page(50)
        m.frame_table.set_count_info(page, PGC_allocated | PGC_state_inuse | (PGC_count_mask - 1))
        same_removal(m, g, 0, 512, 50)

    def test_stops_at_a_free_frame_and_past_ram(self, m):
        big = m.create_domain("big", 0x4000)
        assert populate(m, big, range(0, 0x4000, 512), 9) == list(range(0, 0x4000, 512))
        assert decrease(m, big, [0x3f80], 0) == 1
        same_removal(m, big, 0x3f00, 512, 0x80)              # 0x3f80 is free now
        same_removal(m, big, 0x3f81, 512, 0x7f)              # 0x4000 is past RAM
        assert remove_run(m, m.domain(big), 0x4000, 512) == 0
        assert remove_run(m, m.domain(big), -5, 512) == 0

    def test_stops_at_the_hole(self):
        m = Machine(MemoryMap([(0, 8 * MiB), (16 * MiB, 24 * MiB)], name="holey"), "none")
        g = m.create_domain("guest", 4096)
        assert populate(m, g, [0, 512, 1024, 1536], 9) == [0, 0x200, 0x400, 0x600]
        same_removal(m, g, 0x700, 512, 0x100)                # 0x800 is in the hole

    def test_p2m_entry_of_another_frame_is_kept(self, m, g):
        d = m.domain(g)
        d.p2m.set(5, 0x3000)                     # the guest remapped gpfn 5 elsewhere
        same_removal(m, g, 0, 512, 512)
        assert d.p2m.get(5) == 0x3000 and d.p2m.count == 1 and m.m2p.get(5) == INVALID

    def test_frames_after_the_first_non_simple_one_are_left(self, m, g):
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, 3)) == (0, 1)
        snap = m.snapshot()
        assert remove_run(m, m.domain(g), 3, 509) == 0       # frame 3 itself is pinned
        assert m.same_as(snap)


class TestHypercall:
    def test_whole_extents(self, m, g):
        assert populate(m, g, [512], 9) == [0x200]
        same_call(m, g, [0x200, 0], 9, 2)
        assert m.domain(g).tot_pages == 0 and m.heap.free_frames == 0x4000

    def test_pinned_frame_is_unpinned_by_the_loop_and_the_rest_goes_at_once(self, m, g):
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, 100)) == (0, 1)
        same_call(m, g, [0], 9, 1)
        assert not m.domain(g).pinned and m.domain(g).tot_pages == 0

    def test_partial_failure_counts_the_extents_done(self, m, g):
        o = m.create_domain("other", 4)
        assert populate(m, o, [0], 0) == [0x200]
        assert populate(m, g, [512], 9) == [0x400]
        same_call(m, g, [0x400, 0x100], 9, 1)            # 0x100.. stops at 0x200 (other's)
        d = m.domain(g)
        assert d.owned.runs() == [(0, 0x100)] and d.tot_pages == 0x100

    def test_frames_mapped_elsewhere_and_a_remapped_gpfn(self, m, g):
        assert m.refs.get_page_and_type(9, g, PGT_writable_page)
        m.domain(g).p2m.set(3, 0x3000)
        same_call(m, g, [0], 9, 1, audited=False)          # the auditor knows no mapping
        assert m.frame_table.count_info(9) == PGC_state_inuse | 1
        assert m.domain(g).p2m.get(3) == 0x3000

    def test_small_extents_take_the_loop(self, m, g):
        assert VECTOR_MIN_FRAMES == 16
        same_call(m, g, [0, 8], 3, 2)


class TestObserved:
    def test_step_observers_turn_the_accelerator_off(self, m):
        assert removal_accelerated(m) and m.mode == accel.VECTORISED
        for name in ("atomic_step", "word_changed"):
            with m.events.listening(**{name: lambda *a: None}):
                assert not removal_accelerated(m)
        assert m.mode == accel.VECTORISED
        for name in ("frames_written", "range_put", "pages_freed"):   # what was written
            with m.events.listening(**{name: lambda *a: None}):
                assert removal_accelerated(m)
        with m.events.stepwise():
            assert not removal_accelerated(m) and m.mode == accel.STEPWISE
        m.concurrent = True
        assert not removal_accelerated(m) and m.mode == accel.STEPWISE
        m.concurrent = False
        assert removal_accelerated(m) and m.mode == accel.VECTORISED

    def test_an_observer_of_what_was_written_sees_the_run(self, m, g):
        written, freed = set(), []

        def on_written(pdx, n):
            written.update(range(pdx, pdx + n))
        with m.events.listening(frames_written=on_written,
                                pages_freed=lambda pages, owners: freed.append(
                                    (pages.tolist(), owners.tolist()))):
            assert decrease(m, g, [0], 9) == 1
        assert written == set(range(512))
        assert [p for pages, _ in freed for p in pages] == list(range(512))
        assert {o for _, owners in freed for o in owners} == {g}
        assert len(freed) < 512                             # as runs, not frame by frame

    def test_an_observer_sees_each_frame_s_word_changes(self, m, g):
        seen, freed = [], []
        with m.events.listening(word_changed=lambda *a: seen.append(a),
                                pages_freed=lambda pages, owners: freed.append(pages.tolist())):
            assert decrease(m, g, [0], 9) == 1
        live = PGC_state_inuse | PGC_allocated | 1
        expected = []
        for p in range(512):
            expected += [(p, "count_info", live, live + 1, "get_page"),
                         (p, "count_info", live + 1, live + 1 - PGC_allocated,
                          "clear PGC_allocated"),
                         (p, "count_info", PGC_state_inuse | 2, PGC_state_inuse | 1, "put_page"),
                         (p, "count_info", PGC_state_inuse | 1, PGC_state_inuse, "put_page")]
        assert seen == expected
        assert freed == [[p] for p in range(512)]


class TestCheckUndone:
    def test_undone_changes_pass_and_are_rolled_back(self, m, g):
        ft = m.frame_table
        snap = m.snapshot()

        def undone():
            ci, ti, _ = ft.slices(0, 512)
            ci += 1
            ti[:] = PGT_writable_page                     # a type left with count 0: allowed
            ft.set_count_info(3, ft.count_info(3) + 5)
            ci -= 1
            ft.set_count_info(3, ft.count_info(3) - 5)
            return -errno.EINVAL
        assert m.request(undone) == -errno.EINVAL
        assert m.same_as(snap)

    def test_the_first_frame_left_changed_is_named(self, m, g):
        ft = m.frame_table
        snap = m.snapshot()
        before = ft.count_info(0x30)

        def leaks():
            ft.set_type_info(0x40, PGT_writable_page | 1)     # a typed reference left
            ci, _, _ = ft.slices(0x20, 0x20)
            ci[0x10] += 2                                      # frame 0x30: two references
            ft.set_count_info(0x30, ft.count_info(0x30) + 1)  # journaled after the slice
            return -errno.EINVAL
        with pytest.raises(RefcountBug) as e:
            m.request(leaks)
        assert str(e.value) == (f"a failed request left mfn 0x30 changed: count_info "
                                f"{before:#x} -> {before + 3:#x}, type_info 0x0 -> 0x0, "
                                f"owner {g} -> {g}")
        assert m.same_as(snap)

    def test_a_pin_bit_left_is_named(self, m, g):
        ft = m.frame_table
        assert m.refs.get_page_and_type(0x11, g, PGT_l1_page_table) is True
        ti = ft.type_info(0x11)

        def pins():
            ft.set_type_info(0x11, ti | PGT_pinned)
            return -errno.EINVAL
        with pytest.raises(RefcountBug, match=f"mfn 0x11 changed: .*type_info {ti:#x} -> "
                                              f"{ti | PGT_pinned:#x}"):
            m.request(pins)

    def test_journal_changes_rows(self, m, g):
        ft = m.frame_table
        ft.begin()
        ft.set_count_info(5, 99)
        ci, _, owner = ft.slices(4, 3)
        ci[:] = 7
        owner[2] = 3
        ft.set_owner(6, 4)
        live = PGC_state_inuse | PGC_allocated | 1
        assert list(ft.journal_changes()) == [(4, live, 0, g, 7, 0, g),
                                              (5, live, 0, g, 7, 0, g),
                                              (6, live, 0, g, 7, 0, 4)]
        ft.rollback()
        assert list(ft.journal_changes()) == []

    def test_fill_run_journals_one_entry_of_scalars(self, m, g):
        """FrameTable.fill_run (a uniform run's write, TakeRun/DropRun): one frames_written,
        one journal entry whose old words are scalars (not the owners: it writes none), read back per frame by
        journal_changes (the short span and the far-apart forms) and undone by rollback."""
        ft = m.frame_table
        snap = m.snapshot()
        live = PGC_state_inuse | PGC_allocated | 1
        w = ft.run_words(0x10, 8)
        assert w == (live, 0)
        written = []
        ft.begin()
        with m.events.listening(frames_written=lambda p, n: written.append((p, n))):
            ft.fill_run(0x10, 8, w, live + 1, PGT_writable_page | PGT_validated | 1)
            ft.fill_run(0x14, 2, ft.run_words(0x14, 2), live + 2)
        assert written == [(0x10, 8), (0x14, 2)]
        assert ft._journal == [(0x10, 8, live, 0), (0x14, 2, live + 1,
                                                    PGT_writable_page | PGT_validated | 1)]
        t1 = PGT_writable_page | PGT_validated | 1
        rows = [(p, live, 0, g, live + (2 if p in (0x14, 0x15) else 1), t1, g)
                for p in range(0x10, 0x18)]
        assert list(ft.journal_changes()) == rows
        ft.set_type_info(0x3005, 1)                     # far away: the general form
        free = ft.count_info(0x3005)
        assert list(ft.journal_changes()) == rows + [(0x3005, free, 0, 0x7FF4, free, 1, 0x7FF4)]
        assert ft.rollback()
        assert m.same_as(snap)

    def test_set_many_stores_journals_and_rolls_back(self, m, g):
        ft = m.frame_table
        snap = m.snapshot()
        pdx = np.array([3, 7, 8], dtype=np.int64)
        written = []
        ft.begin()
        with m.events.listening(frames_written=lambda p, n: written.append((p, n))):
            ft.set_many(pdx, 1, np.array([1, 2, 3], dtype=np.uint64))
            ft.set_many(pdx[1:], 0, np.array([4, 5], dtype=np.uint64))
        assert written == [(3, 1), (7, 1), (8, 1), (7, 1), (8, 1)]
        live = PGC_state_inuse | PGC_allocated | 1
        assert list(ft.journal_changes()) == [(3, live, 0, g, live, 1, g),
                                              (7, live, 0, g, 4, 2, g),
                                              (8, live, 0, g, 5, 3, g)]
        assert [tuple(a.tolist()) for a in ft.gather(pdx)] == [(live, 4, 5), (1, 2, 3),
                                                                (g, g, g)]
        assert ft.rollback()
        assert m.same_as(snap)

    def test_journal_changes_rows_far_apart(self, m, g):
        big = m.create_domain("big", 0x800)
        assert populate(m, big, [0], 9) == [0x200]
        m.refs.stats.reset()
        ft = m.frame_table
        ft.begin()                                  # 0x3005 is more than 4,096 frames away
        ft.set_type_info(0x3005, 1)
        ci, _, _ = ft.slices(0x1fe, 4)
        ci[:] = 9
        ft.set_count_info(0x1ff, 11)
        ft.set_count_info(0x3005, 12)
        live, free = PGC_state_inuse | PGC_allocated | 1, ft.count_info(0x3006)
        assert list(ft.journal_changes()) == [(0x1fe, live, 0, g, 9, 0, g),
                                              (0x1ff, live, 0, g, 11, 0, g),
                                              (0x200, live, 0, big, 9, 0, big),
                                              (0x201, live, 0, big, 9, 0, big),
                                              (0x3005, free, 0, 0x7FF4, 12, 1, 0x7FF4)]
        ft.rollback()
