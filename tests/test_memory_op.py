"""memory_op (hypercall 12): populate_physmap, increase_reservation, decrease_reservation,
their stops (max_pages, heap exhaustion, foreign frames), and their argument errors.

The 64 MiB machine: frames 0..0x3fff, all free at boot as one order-14 block.
"""

from __future__ import annotations

import errno

import pytest

from xensim import (HYPERVISOR_memory_op, INVALID, XENMEM_decrease_reservation,
                    XENMEM_increase_reservation, XENMEM_populate_physmap, XenMemoryReservation)
from xensim._page_info import DOMID_INVALID, PGC_allocated, PGC_state_free, PGT_writable_page

from conftest import assert_clean, hc, populate, small_machine

MOP = HYPERVISOR_memory_op


def res(extents, order=0, domid=0x7FF0, n=None):
    return XenMemoryReservation(list(extents) if extents is not None else None,
                                len(extents) if n is None else n, order, domid=domid)


class TestPopulatePhysmap:
    def test_two_superpages_and_a_frame(self, m, guest):
        r = res([0, 512], order=9)
        assert hc(m, guest, MOP, XENMEM_populate_physmap, r) == 2
        # lowest-first buddy: the order-14 block splits; extents at MFN 0 and 0x200
        assert r.extent_start == [0, 0x200]
        r1 = res([1024])
        assert hc(m, guest, MOP, XENMEM_populate_physmap, r1) == 1
        assert r1.extent_start == [0x400]              # smallest free block: 0x400 order 10
        d = m.domain(guest)
        assert d.tot_pages == 1025 and len(d.allocated) == 1025
        assert d.p2m.get(0) == 0 and d.p2m.get(511) == 511 and d.p2m.get(512) == 0x200
        assert d.p2m.get(1024) == 0x400 and d.p2m.get(1025) == INVALID
        assert m.m2p.get(0x201) == 513 and m.m2p.get(0x400) == 1024
        assert m.frame_table.count_info(0x3ff) == PGC_allocated | 1
        assert m.frame_table.owner(0x3ff) == guest
        assert m.heap.free_frames == 0x4000 - 1025

    def test_stops_at_max_pages(self, m):
        g = m.create_domain("small", 1024 + 5)
        r = res([0, 512, 1024], order=9)
        assert hc(m, g, MOP, XENMEM_populate_physmap, r) == 2     # the third would pass 1029
        assert m.domain(g).tot_pages == 1024
        assert hc(m, g, MOP, XENMEM_populate_physmap, res(range(1024, 1030))) == 5

    def test_occupied_or_unaligned_gpfn_stops(self, m, guest):
        populate(m, guest, [0], 9)
        snap = m.snapshot()
        assert hc(m, guest, MOP, XENMEM_populate_physmap, res([5])) == 0        # gpfn taken
        assert hc(m, guest, MOP, XENMEM_populate_physmap, res([513], 9)) == 0   # unaligned
        assert hc(m, guest, MOP, XENMEM_populate_physmap, res([2048], 9)) == 0  # past the P2M
        assert m.same_as(snap)

    def test_heap_exhaustion(self):
        m = small_machine()
        g = m.create_domain("big", 1 << 20)
        r = res(range(0, 0x5000, 512), order=9)                   # 40 extents, RAM has 32
        assert hc(m, g, MOP, XENMEM_populate_physmap, r) == 32
        assert m.heap.free_frames == 0
        assert m.alloc_domheap_pages(m.domain(g), 0) == -errno.ENOMEM


class TestIncreaseReservation:
    def test_returns_mfns_without_p2m(self, m, guest):
        r = res([0, 0, 0], order=0)
        assert hc(m, guest, MOP, XENMEM_increase_reservation, r) == 3
        assert r.extent_start == [0, 1, 2]
        d = m.domain(guest)
        assert d.tot_pages == 3 and d.p2m.count == 0
        assert m.m2p.get(1) == INVALID

    def test_no_list_is_allowed(self, m, guest):
        r = XenMemoryReservation(None, 4, 0)
        assert hc(m, guest, MOP, XENMEM_increase_reservation, r) == 4


class TestDecreaseReservation:
    def test_gives_frames_back(self, m, guest):
        populate(m, guest, [0], 9)
        assert hc(m, guest, MOP, XENMEM_decrease_reservation, res([0x10, 0x11])) == 2
        d = m.domain(guest)
        assert d.tot_pages == 510 and d.p2m.get(0x10) == INVALID and m.m2p.get(0x10) == INVALID
        assert m.frame_table.count_info(0x10) == PGC_state_free and m.heap.is_free(0x10)
        # an order-9 extent at MFN 0: Xen removes page by page, so frames 0..0xf go,
        # then frame 0x10 (already given back) stops it: 0 extents done, 510 - 16 left
        assert hc(m, guest, MOP, XENMEM_decrease_reservation, res([0], 9)) == 0
        assert d.tot_pages == 494 and d.owned.runs() == [(0x12, 0x200)]
        assert m.heap.is_free(0) and m.heap.is_free(0xf)

    def test_referenced_frame_is_freed_at_its_last_reference(self, m, guest):
        populate(m, guest, [0], 9)
        d = m.domain(guest)
        page = m.mfn_to_page(7)
        assert m.refs.get_page_and_type(page, guest, PGT_writable_page)   # e.g. a mapping
        snap_holder = []
        m.audit_contributors.append(lambda mm, exp: [exp.typed(7, guest, PGT_writable_page)
                                                     for _ in snap_holder])
        snap_holder.append(1)
        assert hc(m, guest, MOP, XENMEM_decrease_reservation, res([7])) == 1
        # PGC_allocated dropped first; the frame stays owned while the mapping holds it
        assert m.frame_table.count_info(7) == 1 and m.frame_table.owner(7) == guest
        assert 7 in d.owned and 7 not in d.allocated and d.tot_pages == 512
        snap_holder.clear()
        m.refs.put_page_and_type(page)                          # the mapping goes
        assert m.frame_table.count_info(7) == PGC_state_free and d.tot_pages == 511
        assert_clean(m)

    def test_whole_extent_partial_failure_stops_mid_extent(self, m, guest):
        populate(m, guest, [0], 9)
        other = m.create_domain("other", 4)
        populate(m, other, [0], 0)                                 # MFN 0x200 belongs to other
        # extent [0x1f0, 0x1f0 + 512) isn't aligned for order 9 in Xen's sense, but PV
        # passes MFNs: frames 0x1f0..0x1ff are ours, 0x200 is not -> stop there
        r = res([0x1f0], order=4)
        assert hc(m, guest, MOP, XENMEM_decrease_reservation, r) == 1
        r = res([0x1f8, 0x200], order=3)
        assert hc(m, guest, MOP, XENMEM_decrease_reservation, r) == 0   # 0x1f8.. already gone
        assert m.domain(guest).tot_pages == 512 - 16

    def test_foreign_free_and_invalid_frames_stop_with_nothing_done(self, m, guest):
        populate(m, guest, [0], 9)
        other = m.create_domain("other", 4)
        populate(m, other, [0], 0)
        snap = m.snapshot()
        for mfn in (0x200, 0x3000, 0x4000, 0x10_0000_0000):        # foreign, free, past RAM, absurd
            assert hc(m, guest, MOP, XENMEM_decrease_reservation, res([mfn])) == 0
        assert m.same_as(snap)


class TestArguments:
    def test_unknown_subop_is_enosys(self, m, guest):
        assert hc(m, guest, MOP, 99, res([0])) == -errno.ENOSYS

    def test_domu_acting_on_another_domain_is_eperm(self, m, guest):
        other = m.create_domain("other", 16)
        snap = m.snapshot()
        assert hc(m, guest, MOP, XENMEM_populate_physmap, res([0], domid=other)) == -errno.EPERM
        assert m.same_as(snap)

    def test_dom0_populates_a_guest(self, m, guest):
        assert hc(m, 0, MOP, XENMEM_populate_physmap, res([0], 9, domid=guest)) == 1
        assert m.domain(guest).tot_pages == 512

    def test_dom0_on_a_missing_domain_is_esrch(self, m):
        assert hc(m, 0, MOP, XENMEM_populate_physmap, res([0], domid=42)) == -errno.ESRCH

    def test_order_above_domu_max_does_nothing(self, m, guest):
        snap = m.snapshot()
        assert hc(m, guest, MOP, XENMEM_populate_physmap, res([0], order=10)) == 0
        assert m.same_as(snap)

    def test_short_extent_list_is_efault(self, m, guest):
        r = XenMemoryReservation([0], 3, 0)
        assert hc(m, guest, MOP, XENMEM_populate_physmap, r) == -errno.EFAULT

    def test_unknown_hypercall_and_caller(self, m, guest):
        assert hc(m, guest, 99) == -errno.ENOSYS
        assert hc(m, 77, MOP, XENMEM_populate_physmap, res([0])) == -errno.ESRCH

    def test_statistics(self, m, guest):
        hc(m, guest, MOP, XENMEM_populate_physmap, res([0]))
        hc(m, guest, MOP, 99, res([0]))
        hc(m, guest, 99)
        assert m.hypercall.as_dict() == {
            "hypercall99": {"calls": 1, "errors": {"ENOSYS": 1}},
            "memory_op": {"calls": 2, "errors": {"ENOSYS": 1}},
        }
