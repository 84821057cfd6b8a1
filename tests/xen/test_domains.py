"""Domains: creation by dom0, the heap under populate/decrease on a map with a hole,
destruction in Xen's order, and a whole life that leaks nothing."""

from __future__ import annotations

import errno

from xensim import (HYPERVISOR_memory_op, DomainHeap, XENMEM_decrease_reservation,
                    XenMemoryReservation, load_preset, Machine)
from xensim.mem._page_info import (PGC_allocated, PGC_state_free, PGT_l1_page_table, PGT_pinned,
                               PGT_validated, PGT_writable_page)

from conftest import assert_clean, hc, holey_machine, populate, small_machine


class TestCreateDestroy:
    def test_dom0_exists_at_boot(self, m):
        assert list(m.domains) == [0] and m.domain(0).name == "Domain-0"

    def test_only_dom0_creates_and_destroys(self, m, guest):
        assert m.create_domain("x", 16, caller=guest) == -errno.EPERM
        assert m.destroy_domain(guest, caller=guest) == -errno.EPERM
        assert m.destroy_domain(0) == -errno.EPERM
        assert m.destroy_domain(99) == -errno.ESRCH
        assert m.create_domain("y", 16) == guest + 1

    def test_destroy_returns_every_frame(self, m, guest):
        boot = DomainHeap(m.memmap.frame_ranges).snapshot()
        populate(m, guest, [0, 512], 9)
        populate(m, guest, list(range(1024, 1040)), 0)
        assert m.destroy_domain(guest) == 0
        assert guest not in m.domains
        assert m.heap.snapshot() == boot and m.heap.free_frames == 0x4000
        assert_clean(m)

    def test_destroy_unpins_first(self, m, guest):
        populate(m, guest, [0], 9)
        d = m.domain(guest)
        assert m.refs.get_page_and_type(3, guest, PGT_l1_page_table) and m.refs.set_pinned(3)
        d.pinned[3] = PGT_l1_page_table
        assert m.frame_table.type_info(3) == PGT_l1_page_table | PGT_validated | PGT_pinned | 1
        assert_clean(m)
        assert m.destroy_domain(guest) == 0
        assert m.heap.free_frames == 0x4000 and guest not in m.domains
        assert_clean(m)

    def test_a_foreign_reference_keeps_a_zombie(self, m, guest):
        populate(m, guest, [0], 9)
        assert m.refs.get_page(5, guest)                 # something still holds frame 5
        m.audit_contributors.append(lambda mm, exp: exp.ref(5, guest) if guest in mm.domains else None)
        assert m.destroy_domain(guest) == 0
        d = m.domain(guest)
        assert d is not None and d.is_dying and d.tot_pages == 1 and d.owned.runs() == [(5, 6)]
        assert m.frame_table.count_info(5) == 1          # PGC_allocated gone, one reference left
        assert_clean(m)
        m.audit_contributors.clear()
        m.refs.put_page(5)                               # the last reference: the zombie goes
        assert guest not in m.domains and m.heap.free_frames == 0x4000
        assert_clean(m)

    def test_a_dying_domain_issues_no_hypercalls(self, m, guest):
        """A dying domain never runs again: its own calls are refused as a missing
        caller's (-ESRCH); dom0's populate_physmap for it does nothing (assign_pages
        refuses a dying domain: 0 extents done, Xen 4.1-4.8)."""
        populate(m, guest, [0], 0)
        m.refs.get_page(m.mfn_to_page(0), guest)
        m.audit_contributors.append(lambda mm, exp: exp.ref(0, guest) if guest in mm.domains else None)
        m.destroy_domain(guest)
        snap = m.snapshot()
        assert hc(m, guest, HYPERVISOR_memory_op, 6, XenMemoryReservation([1], 1, 0)) == -errno.ESRCH
        assert hc(m, 0, HYPERVISOR_memory_op, 6, XenMemoryReservation([1], 1, 0, domid=guest)) == 0
        assert m.same_as(snap)


class TestHeapAcrossAHole:
    """RAM frames [0, 0x800) and [0x1000, 0x1800): boot blocks (0, 11) and (0x1000, 11)."""

    def test_boot_extents(self):
        m = holey_machine()
        assert m.heap.extents() == [(0, 11), (0x1000, 11)]

    def test_fragment_then_coalesce(self):
        m = holey_machine()
        g = m.create_domain("g", 0x1000)
        # 4 KiB frames at gpfns 0..0x7ff take the low range frame by frame (lowest first)
        mfns = populate(m, g, list(range(0x800)), 0)
        assert mfns == list(range(0x800))
        assert m.heap.extents() == [(0x1000, 11)]
        # give back every other frame: nothing can coalesce
        r = XenMemoryReservation(list(range(0, 0x800, 2)), 0x400, 0)
        assert hc(m, g, HYPERVISOR_memory_op, XENMEM_decrease_reservation, r) == 0x400
        assert m.heap.count_by_order()[0] == 0x400
        # an order-9 extent now comes from the high range: no extent crosses the hole
        assert populate(m, g, [0x800], 9) == [0x1000]
        r = XenMemoryReservation(list(range(1, 0x800, 2)), 0x400, 0)
        assert hc(m, g, HYPERVISOR_memory_op, XENMEM_decrease_reservation, r) == 0x400
        assert m.heap.extents() == [(0, 11), (0x1200, 9), (0x1400, 10)]
        m.destroy_domain(g)
        assert m.heap.extents() == [(0, 11), (0x1000, 11)]
        assert_clean(m)


class TestWholeLife:
    def test_create_populate_decrease_destroy_on_teaching(self):
        m = Machine(load_preset("teaching"), "mask")
        boot = m.heap.snapshot()
        g = m.create_domain("guest", 1 << 18)                          # 1 GiB max
        mfns = populate(m, g, list(range(0, 64 * 512, 512)), 9)         # 64 MiB in 2 MiB extents
        assert len(set(mfns)) == 64 and all(mf % 512 == 0 for mf in mfns)
        populate(m, g, list(range(64 * 512, 64 * 512 + 100)), 0)        # 100 4 KiB frames
        d = m.domain(g)
        assert d.tot_pages == 64 * 512 + 100
        r = XenMemoryReservation([mfns[3]], 1, 9)
        assert hc(m, g, HYPERVISOR_memory_op, XENMEM_decrease_reservation, r) == 1
        assert d.tot_pages == 63 * 512 + 100
        for mf in (mfns[5], mfns[5] + 511):
            assert m.frame_table.count_info(m.mfn_to_page(mf)) == PGC_allocated | 1
        assert m.destroy_domain(g) == 0
        assert m.heap.snapshot() == boot and m.heap.free_frames == m.memmap.ram_frames
        assert_clean(m)

    def test_superpages_above_the_pdx_hole(self):
        """qemu-2node with mask PDX: frames above 4 GiB have compressed page indexes."""
        m = Machine(load_preset("qemu-2node"), "mask")
        g = m.create_domain("g", 1 << 20)
        # fill the low node so the next extent lands above the hole
        mfns = populate(m, g, list(range(0, 0x80000, 512)), 9)
        high = populate(m, g, [0x80000], 9)[0]
        assert high == 0x100000 and m.mfn_to_page(high) == 0x80000
        assert m.refs.get_pages_and_type(m.mfn_to_page(high), 512, g, PGT_writable_page)
        m.refs.put_pages_and_type(m.mfn_to_page(high), 512)
        m.destroy_domain(g)
        assert m.heap.free_frames == m.memmap.ram_frames
        assert_clean(m)
