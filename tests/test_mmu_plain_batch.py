"""mmu_update's batch of ordinary writes into one frame that is not a live page table
(a guest filling an L1 table before pinning it): the first request as usual, the rest
at once. Each case runs the batch unobserved (the batch path) and on an observed copy
(a guest_write subscriber: request by request) and asserts the same rc, done count and
machine; and the statistics against hand-computed figures.

The 64 MiB machine (conftest.small_machine); the guest owns the superpage at MFN 0.
"""

from __future__ import annotations

import copy
import errno

import pytest

from xensim import (HYPERVISOR_mmu_update, MMU_MACHPHYS_UPDATE, MMU_PT_UPDATE_PRESERVE_AD,
                    MMUEXT_PIN_L1_TABLE, MMUEXT_UNPIN_TABLE, Machine, MmuextOp, MmuUpdate)
from xensim.mem._page_info import (PGC_allocated, PGC_state_inuse, PGT_l1_page_table,
                                   PGT_validated, PGT_writable_page)

from conftest import ext, machine_state, populate, ptr

TABLE = 0x10


def batch(m: Machine, caller: int, reqs) -> tuple[int, int]:
    done = [-1]
    rc = m.hypercall(caller, HYPERVISOR_mmu_update, [MmuUpdate(p, v) for p, v in reqs], done)
    return rc, done[0]


def same_batch(m: Machine, caller: int, reqs, expected: tuple[int, int]) -> Machine:
    """The batch on ``m`` and, request by request, on an observed copy: same answer and
    machine, and the same entries written. The copy is returned."""
    t = copy.deepcopy(m)
    writes = []
    with t.events.listening(guest_write=lambda *a: writes.append(a)):
        assert batch(t, caller, reqs) == expected
    assert batch(m, caller, reqs) == expected
    assert machine_state(m) == machine_state(t)
    return t


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
        t = copy.deepcopy(m)
        with pytest.raises(OverflowError):
            batch(m, g, huge)
        with t.events.listening(guest_write=lambda *a: None), pytest.raises(OverflowError):
            batch(t, g, huge)
        assert machine_state(m) == machine_state(t)
