"""mmu_update's ordinary writes into one frame that is not a live page table (a guest
filling an L1 table before pinning it; Xen's do_mmu_update: get_page, get_page_type
(writable), the write, the puts, request by request) and the devalidation of an L1
table of scattered frames (free_l1_table: put_page_from_l1e entry by entry), fixed
examples with their figures, hand-computed; each runs through the harness
(conftest.both_modes: stepwise, request by request and entry by entry, against
vectorised, where PlainWriteBatch and L1ScatteredPut do them at once), then on the
machine itself. The generated states are tests/xen/test_accel.py's.

The 64 MiB machine (conftest.small_machine); the guest owns the superpage at MFN 0.
"""

from __future__ import annotations

import copy
import errno

import numpy as np
import pytest

from xensim import (HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                    MMU_MACHPHYS_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_PIN_L1_TABLE,
                    MMUEXT_UNPIN_TABLE, XENMEM_decrease_reservation, Machine, MmuextOp,
                    MmuUpdate, XenMemoryReservation)
from xensim._errors import RefcountBug
from xensim.mem._page_info import (PGC_allocated, PGC_state_inuse, PGT_l1_page_table,
                                   PGT_validated, PGT_writable_page)

from xensim.xen import accel

from conftest import both_modes, ext, full_state, machine_state, populate, ptr

TABLE = 0x10


def batch(m: Machine, caller: int, reqs) -> tuple[int, int]:
    done = [-1]
    rc = m.hypercall(caller, HYPERVISOR_mmu_update, [MmuUpdate(p, v) for p, v in reqs], done)
    return rc, done[0]


def same_batch(m: Machine, caller: int, reqs, expected: tuple[int, int]) -> Machine:
    """The batch through the harness, then on ``m`` (vectorised): the same answer and
    machine, and the same entries written as guest_write says. The stepwise copy is
    returned."""
    out, _, _ = both_modes(m, lambda c: batch(c, caller, reqs))
    assert out == expected
    t = copy.deepcopy(m)
    loop, at_once = set(), set()
    with t.events.listening(guest_write=lambda *a: loop.update(_written(*a))), \
            t.events.stepwise():
        assert batch(t, caller, reqs) == expected
    with m.events.listening(guest_write=lambda *a: at_once.update(_written(*a))):
        assert batch(m, caller, reqs) == expected        # an observer of writes: still at once
    assert full_state(m) == full_state(t)
    assert at_once == loop                 # the same entries changed, as guest_write says
    return t


def _written(mfn, index, old, new) -> set:
    """The (mfn, index) pairs one guest_write event changed (one entry, or arrays of them;
    a store of the value already there changes nothing)."""
    index, old, new = (np.atleast_1d(x) for x in np.broadcast_arrays(index, old, new))
    return {(mfn, int(i)) for i, a, b in zip(index, old, new) if a != b}


@pytest.fixture
def g(m) -> int:
    g = m.create_domain("guest", 2048)
    assert populate(m, g, [0], 9) == [0]
    return g


def fill(table: int, n: int = 512, first: int = 0x100):
    """n entries mapping frames first.. (the guest's, from 0x100 on) read-write: what a
    guest writes before pinning."""
    return [(ptr(table, i), ((first + i % (0x200 - first)) << 12) | 0x67) for i in range(n)]


class TestPlainWriteBatch:
    def test_a_fresh_frame_filled(self, m, g):
        before = m.refs.stats.as_dict()
        same_batch(m, g, fill(TABLE), (0, 512))
        st = m.refs.stats
        assert (st.get_page - before["get_page"], st.put_page - before["put_page"]) == (512, 512)
        assert (st.get_page_type - before["get_page_type"],
                st.put_page_type - before["put_page_type"]) == (512, 512)
        assert m.frame_table.type_info(TABLE) == PGT_writable_page | PGT_validated
        assert m.frame_table.count_info(TABLE) == PGC_state_inuse | PGC_allocated | 1
        assert m.mem.read(TABLE, 511) == (0x1ff << 12) | 0x67
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, TABLE)) == (0, 1)   # then pinned

    def test_the_last_write_of_an_index_wins_and_zeros_store_no_frame(self, m, g):
        reqs = [(ptr(TABLE, 3), 5), (ptr(TABLE, 4), 6)] * 4 + [(ptr(TABLE, 3), 7)]
        same_batch(m, g, reqs, (0, 9))
        assert (m.mem.read(TABLE, 3), m.mem.read(TABLE, 4)) == (7, 6)
        same_batch(m, g, [(ptr(0x11, i), 0) for i in range(16)], (0, 16))
        assert not m.mem.holds(0x11)
        reqs = [(ptr(0x12, 0), 9)] + [(ptr(0x12, 0), 0)] * 15      # stored, then zeroed
        same_batch(m, g, reqs, (0, 16))
        assert m.mem.holds(0x12) and m.mem.read(0x12, 0) == 0

    def test_preserve_ad_requests_are_ordinary_writes_too(self, m, g):
        reqs = [(ptr(TABLE, i, MMU_PT_UPDATE_PRESERVE_AD), i + 1) for i in range(10)]
        same_batch(m, g, reqs, (0, 10))

    def test_the_first_request_refused(self, m, g):
        o = m.create_domain("other", 16)
        assert populate(m, o, [0], 0) == [0x200]
        snap = m.snapshot()
        same_batch(m, g, fill(0x200, 16), (-errno.EINVAL, 0))   # other's frame
        assert m.same_as(snap)

    def test_a_frame_mapped_writable_elsewhere_keeps_its_type_count(self, m, g):
        assert m.refs.get_page_and_type(TABLE, g, PGT_writable_page)
        same_batch(m, g, fill(TABLE, 32), (0, 32))
        assert m.frame_table.type_info(TABLE) == PGT_writable_page | PGT_validated | 1

    def test_a_former_table_changes_type_once_with_its_flush(self, m, g):
        assert same_batch(m, g, fill(TABLE, 8), (0, 8))
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, TABLE)) == (0, 1)
        assert ext(m, g, MmuextOp(MMUEXT_UNPIN_TABLE, TABLE)) == (0, 1)  # stamped at count 0
        assert m.frame_table.type_info(TABLE) & PGT_l1_page_table
        flushes, clock = m.refs.stats.tlb_flushes, m.refs.tlbflush_clock
        t = same_batch(m, g, fill(TABLE, 64, 0x180), (0, 64))
        assert m.refs.stats.tlb_flushes == flushes + 1 == t.refs.stats.tlb_flushes
        assert m.refs.tlbflush_clock == clock + 1

    def test_a_live_table_takes_mod_entry(self, m, g):
        assert same_batch(m, g, fill(TABLE, 8), (0, 8))
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, TABLE)) == (0, 1)
        same_batch(m, g, fill(TABLE, 16, 0x1e0), (0, 16))
        assert m.pt_stats["slow_path"] >= 8

    def test_other_shapes_take_the_ordinary_path(self, m, g):
        mixed = fill(TABLE, 8) + fill(0x11, 8)                  # two frames
        same_batch(m, g, mixed, (0, 16))
        machphys = fill(0x12, 8) + [(ptr(0x13, 0, MMU_MACHPHYS_UPDATE), 5)]
        same_batch(m, g, machphys, (0, 9))
        unknown = fill(0x14, 8) + [(ptr(0x14, 9) | 3, 5)]        # command 3: -ENOSYS
        same_batch(m, g, unknown, (-errno.ENOSYS, 8))
        huge = fill(0x15, 8) + [(ptr(0x15, 9), 1 << 64)]        # wider than an entry
        out, _, _ = both_modes(m, lambda c: batch(c, g, huge))   # the same error, state
        assert out[:2] == ("raised", "OverflowError")
        with pytest.raises(OverflowError):
            batch(m, g, huge)


def scattered(table: int, n: int):
    """n entries of ``table`` mapping frames 0x100.. out of order and repeated, even ones
    read-write, odd ones read-only."""
    return [(ptr(table, i), ((0x100 + (i * 37) % 200) << 12) | (0x67 if i % 2 == 0 else 0x65))
            for i in range(n)]


def same_unpin(m: Machine, g: int, table: int) -> Machine:
    """Unpin ``table`` (its last typed reference: devalidated) through the harness, then
    on ``m``: same answer and machine. The stepwise copy (the entry loop's) is returned."""
    out, t, _ = both_modes(m, lambda c: ext(c, g, MmuextOp(MMUEXT_UNPIN_TABLE, table)),
                           expect_accelerated=True)
    assert out == (0, 1)
    assert ext(m, g, MmuextOp(MMUEXT_UNPIN_TABLE, table)) == (0, 1)
    assert machine_state(m) == machine_state(t)
    return t


class TestScatteredDevalidation:
    def test_an_l1_of_scattered_frames_drops_its_references_at_once(self, m, g):
        assert same_batch(m, g, scattered(TABLE, 300), (0, 300))
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, TABLE)) == (0, 1)
        frame = m.mfn_to_page(0x100)               # entries 0 and 200: RW twice
        assert m.frame_table.type_info(frame) == PGT_writable_page | PGT_validated | 2
        before = m.refs.stats.as_dict()
        same_unpin(m, g, TABLE)
        st = m.refs.stats
        # the entries', the pin's and the op's own temporary reference to the table
        assert st.put_page - before["put_page"] == 300 + 1 + 1
        assert st.put_page_type - before["put_page_type"] == 150 + 1
        assert m.frame_table.type_info(frame) == PGT_writable_page | PGT_validated
        assert m.refs.tlbflush_timestamp(frame) == m.refs.tlbflush_clock

    def test_frames_whose_last_reference_was_the_mapping_are_freed(self, m, g):
        assert same_batch(m, g, scattered(TABLE, 64), (0, 64))
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, TABLE)) == (0, 1)
        mapped = sorted({0x100 + (i * 37) % 200 for i in range(64)})
        assert m.hypercall(g, HYPERVISOR_memory_op, XENMEM_decrease_reservation,
                           XenMemoryReservation(list(mapped), len(mapped), 0)) == len(mapped)
        free = m.heap.free_frames
        t = same_unpin(m, g, TABLE)
        assert m.heap.free_frames == free + len(mapped) == t.heap.free_frames
        assert m.domain(g).tot_pages == 512 - len(mapped)

    def test_a_count_that_would_fall_below_zero_raises_as_the_loop_does(self, m, g):
        assert same_batch(m, g, scattered(TABLE, 32), (0, 32))
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, TABLE)) == (0, 1)
        page = m.mfn_to_page(0x125)                    # mapped by entry 1 (read-only)
        m.frame_table.set_count_info(page, PGC_state_inuse)   # its references lost
        out, _, _ = both_modes(m, lambda c: c.hypercall(
            g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNPIN_TABLE, TABLE)], [0]))
        assert out[:2] == ("raised", "RefcountBug")     # the same error, the same state
        with pytest.raises(RefcountBug):
            m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNPIN_TABLE, TABLE)], [0])

    def test_put_scattered_is_off_while_observed_and_refuses_a_table_type(self, m, g):
        def scattered_on():
            slot = vars(m.pt).get("put_entries")
            return slot is not None and any(isinstance(a, accel.L1ScatteredPut)
                                            for a in slot.accelerators)
        assert scattered_on()
        for name in ("word_changed", "entry_put_begin", "entry_put_end"):
            with m.events.listening(**{name: lambda *a: None}):
                assert not scattered_on()
        pages = np.array([0x100, 0x101], dtype=np.int64)
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, 0x101)) == (0, 1)
        snap = m.snapshot()
        assert accel.put_scattered(m.refs, pages, np.array([False, True])) is False   # an L1
        assert m.same_as(snap)
        assert m.refs.get_page(0x100, g) and m.refs.get_page(0x101, g)
        written = []
        with m.events.listening(frames_written=lambda p, n: written.append((p, n))):
            assert accel.put_scattered(m.refs, pages, np.array([False, False])) is True
        assert written == [(0x100, 1), (0x101, 1)]       # an observer of writes sees them
        assert m.frame_table.count_info(0x100) == PGC_state_inuse | PGC_allocated | 1
        assert m.frame_table.count_info(0x101) == PGC_state_inuse | PGC_allocated | 2
