"""memory_op (hypercall 12): populate_physmap, increase_reservation, decrease_reservation,
their stops (max_pages, heap exhaustion, foreign frames), and their argument errors.

The 64 MiB machine: frames 0..0x3fff, all free at boot as one order-14 block.
"""

from __future__ import annotations

import errno

import pytest

from xensim.xen import RELEASE_NAMES
from xensim import (HYPERVISOR_memory_op, INVALID, XENMEM_decrease_reservation,
                    XENMEM_increase_reservation, XENMEM_populate_physmap, Machine, MemoryMap,
                    XenMemoryReservation)
from xensim.mem._page_info import DOMID_INVALID, PGC_allocated, PGC_state_free, PGT_writable_page

from xensim.mem._page_info import PGT_l1_page_table, PGT_pinned, PGT_validated
from xensim.xen import MMUEXT_PIN_L1_TABLE, MMUEXT_UNPIN_TABLE, MmuextOp

from conftest import MiB, assert_clean, ext, hc, populate, small_machine

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

    @pytest.mark.parametrize("version", RELEASE_NAMES)
    def test_pinned_frame_unpinned_up_to_4_8_kept_pinned_on_4_22(self, version):
        """guest_remove_page (common/memory.c): up to 4.10 it unpins a pinned frame first
        (its type reference and the pin's general reference go, the frame is freed);
        XSA-252 (d798a09529, 4.11) removed the implicit unpin: on 4.22 PGC_allocated is
        dropped but the pin keeps the frame, typed and owned, until the guest unpins it."""
        m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version)
        g = m.create_domain("guest", 2048)
        populate(m, g, [0], 9)
        d = m.domain(g)
        assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, 7)) == (0, 1)
        assert hc(m, g, MOP, XENMEM_decrease_reservation, res([7])) == 1
        if version != "4.22":
            assert m.frame_table.count_info(7) == PGC_state_free and m.heap.is_free(7)
            assert not d.pinned and d.tot_pages == 511
        else:
            assert m.frame_table.count_info(7) == 1 and m.frame_table.owner(7) == g
            assert m.frame_table.type_info(7) == (PGT_l1_page_table | PGT_validated
                                                  | PGT_pinned | 1)
            assert 7 in d.pinned and 7 not in d.allocated and d.tot_pages == 512
            assert_clean(m)
            assert ext(m, g, MmuextOp(MMUEXT_UNPIN_TABLE, 7)) == (0, 1)
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

    def test_domu_acting_on_another_domain_does_nothing_4_8(self, m, guest):
        """do_memory_op 4.8: xsm_memory_adjust_reservation refuses, the call returns
        start_extent (0) and nothing changes (per release: TestReleases)."""
        other = m.create_domain("other", 16)
        snap = m.snapshot()
        assert hc(m, guest, MOP, XENMEM_populate_physmap, res([0], domid=other)) == 0
        assert m.same_as(snap)

    def test_dom0_populates_a_guest(self, m, guest):
        assert hc(m, 0, MOP, XENMEM_populate_physmap, res([0], 9, domid=guest)) == 1
        assert m.domain(guest).tot_pages == 512

    def test_dom0_on_a_missing_domain_does_nothing_4_8(self, m):
        """do_memory_op 4.8: rcu_lock_domain_by_any_id finds nothing: start_extent (0)."""
        snap = m.snapshot()
        assert hc(m, 0, MOP, XENMEM_populate_physmap, res([0], domid=42)) == 0
        assert m.same_as(snap)

    def test_order_above_domu_max_does_nothing(self, m, guest):
        snap = m.snapshot()
        assert hc(m, guest, MOP, XENMEM_populate_physmap, res([0], order=10)) == 0
        assert m.same_as(snap)

    @pytest.mark.parametrize("cmd", [XENMEM_increase_reservation, XENMEM_populate_physmap,
                                     XENMEM_decrease_reservation], ids=["increase", "populate", "decrease"])
    def test_short_extent_list_does_nothing_4_8(self, m, guest, cmd):
        """increase_reservation / populate_physmap / decrease_reservation 4.8: the guest
        handle's range check fails before the first extent: 0 done, not -EFAULT."""
        populate(m, guest, [0], 0)
        snap = m.snapshot()
        assert hc(m, guest, MOP, cmd, XenMemoryReservation([0], 3, 0)) == 0
        assert m.same_as(snap)

    @pytest.mark.parametrize("cmd", [XENMEM_populate_physmap, XENMEM_decrease_reservation],
                             ids=["populate", "decrease"])
    def test_null_extent_list_does_nothing_4_8(self, m, guest, cmd):
        populate(m, guest, [0], 0)
        snap = m.snapshot()
        assert hc(m, guest, MOP, cmd, res(None, n=1)) == 0
        assert m.same_as(snap)

    def test_increase_reservation_takes_a_null_list(self, m, guest):
        assert hc(m, guest, MOP, XENMEM_increase_reservation, res(None, n=2)) == 2
        assert m.domain(guest).tot_pages == 2

    @pytest.mark.parametrize("arg", [None, 7, {"nr_extents": 1}], ids=["none", "int", "dict"])
    def test_unreadable_argument_does_nothing_4_8(self, m, guest, arg):
        """do_memory_op 4.8: copy_from_guest of the reservation fails: start_extent (0)."""
        snap = m.snapshot()
        assert hc(m, guest, MOP, XENMEM_populate_physmap, arg) == 0
        assert m.same_as(snap)

    @pytest.mark.parametrize("nr", [-1, 1 << 26, 1 << 40], ids=["negative", "2^26", "2^40"])
    def test_too_many_extents_for_a_continuation_do_nothing_4_8(self, m, guest, nr):
        """do_memory_op 4.8: nr_extents > UINT_MAX >> MEMOP_EXTENT_SHIFT returns 0 (a
        negative count reads as a huge unsigned one)."""
        snap = m.snapshot()
        assert hc(m, guest, MOP, XENMEM_increase_reservation, res(None, n=nr)) == 0
        assert m.same_as(snap)

    def test_unknown_hypercall_and_caller(self, m, guest):
        assert hc(m, guest, 99) == -errno.ENOSYS
        assert hc(m, 77, MOP, XENMEM_populate_physmap, res([0])) == -errno.ESRCH

    def test_a_per_vcpu_handler_gets_its_calling_vcpu(self, m, guest):
        """HypercallLayer.register(per_vcpu=True): vCPU 0's calls leave ``vcpu`` to its
        default, which must be 0; others pass it. A handler whose default is not 0 is
        refused at registration."""
        seen = []

        def handler(m, caller, x, vcpu=0):
            seen.append((x, vcpu))
            return 0

        def wrong(m, caller, vcpu=1):
            return 0

        m.hypercall.register(99, handler, per_vcpu=True)
        assert hc(m, guest, 99, 7) == 0
        assert m.hypercall(guest, 99, 8, vcpu=0) == 0
        assert seen == [(7, 0), (8, 0)]
        with pytest.raises(ValueError, match="wrong: a per-vCPU handler's vcpu must default to 0"):
            m.hypercall.register(98, wrong, per_vcpu=True)
        assert 98 not in m.hypercall.handlers

    def test_statistics(self, m, guest):
        hc(m, guest, MOP, XENMEM_populate_physmap, res([0]))
        hc(m, guest, MOP, 99, res([0]))
        hc(m, guest, 99)
        assert m.hypercall.as_dict() == {
            "hypercall99": {"calls": 1, "errors": {"ENOSYS": 1}},
            "memory_op": {"calls": 2, "errors": {"ENOSYS": 1}},
        }


# -- what each release answers ------------------------------------------------------------------
VERSIONS = RELEASE_NAMES
MiB = 1 << 20


def machine(version: str) -> Machine:
    return Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version)


class TestReleases:
    """do_memory_op and its sub-ops in xen/common/memory.c, 4.1, 4.5, 4.7 and 4.8."""

    @pytest.mark.parametrize("version", VERSIONS)
    def test_domu_naming_another_domain_is_0_but_eperm_in_4_5(self, version):
        """4.1: IS_PRIV_FOR fails, start_extent (0); 4.5: xsm_memory_adjust_reservation's
        -EPERM is returned; 4.7/4.8: the same check, but start_extent (0)."""
        m = machine(version)
        g, o = m.create_domain("guest", 2048), m.create_domain("other", 2048)
        snap = m.snapshot()
        for cmd in (XENMEM_increase_reservation, XENMEM_populate_physmap, XENMEM_decrease_reservation):
            rc = hc(m, g, MOP, cmd, res([0], domid=o))
            assert rc == (-errno.EPERM if version == "4.5" else 0)
        assert m.same_as(snap)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_domu_naming_its_own_domid(self, version):
        """4.1 looks a domid other than DOMID_SELF up and asks IS_PRIV_FOR even when it is
        the caller's own: a domU gets 0; 4.5 on (rcu_lock_domain_by_any_id, XSM_TARGET)
        accept the caller itself."""
        m = machine(version)
        g = m.create_domain("guest", 2048)
        snap = m.snapshot()
        rc = hc(m, g, MOP, XENMEM_populate_physmap, res([0], domid=g))
        if version == "4.1":
            assert rc == 0 and m.same_as(snap)
        else:
            assert rc == 1 and m.domain(g).tot_pages == 1

    @pytest.mark.parametrize("version", VERSIONS)
    def test_unknown_domain_is_0(self, version):
        m = machine(version)
        snap = m.snapshot()
        assert hc(m, 0, MOP, XENMEM_populate_physmap, res([0], domid=42)) == 0
        assert hc(m, 0, MOP, XENMEM_decrease_reservation, res([0], domid=42)) == 0
        assert m.same_as(snap)

    @pytest.mark.parametrize("version", VERSIONS)
    @pytest.mark.parametrize("order,done", [(9, 1), (10, 0), (18, 0), (-1, 0)])
    def test_domu_order_limit_is_9(self, version, order, done):
        """multipage_allocation_permitted (4.1, 4.5) and max_order (4.7 to 4.22): a domU
        without I/O capabilities may ask for orders up to 9 (-1 reads as 2^32 - 1)."""
        m = machine(version)
        g = m.create_domain("guest", 0x4000)
        snap = m.snapshot()
        assert hc(m, g, MOP, XENMEM_populate_physmap, res([0], order=order)) == done
        if done == 0:
            assert m.same_as(snap)
        assert hc(m, g, MOP, XENMEM_increase_reservation, res(None, order=order, n=1)) == done

    @pytest.mark.parametrize("version", VERSIONS)
    @pytest.mark.parametrize("order,done", [(13, 1), (19, 0)])
    def test_dom0_order_limit(self, version, order, done):
        """dom0 (control and hardware domain, every I/O capability): 4.1/4.5 permit any
        order and the allocator has none above MAX_ORDER (18); 4.7 to 4.22's max_order gives
        the control domain CONFIG_CTLDOM_MAX_ORDER (18), above the hardware domain's 12."""
        m = machine(version)
        g = m.create_domain("guest", 0x4000)
        snap = m.snapshot()
        r = res([0], order=order, domid=g)
        assert hc(m, 0, MOP, XENMEM_populate_physmap, r) == done
        if done:
            assert r.extent_start == [0] and m.domain(g).tot_pages == 1 << 13
        else:
            assert m.same_as(snap)

    @pytest.mark.parametrize("version,done,removed", [("4.1", 1, 1024), ("4.5", 1, 1024),
                                                      ("4.7", 0, 0), ("4.8", 0, 0),
                                                      ("4.22", 0, 0)])
    def test_decrease_reservation_order_10(self, version, done, removed):
        """decrease_reservation: 4.1 has no order check, 4.5 checks only MAX_ORDER (18),
        4.7 on check max_order (a domU: 9; 4.22's adds a passthrough domain's limit, and
        no xensim domain has I/O resources)."""
        m = machine(version)
        g = m.create_domain("guest", 2048)
        populate(m, g, [0, 512], 9)
        snap = m.snapshot()
        assert hc(m, g, MOP, XENMEM_decrease_reservation, res([0], order=10)) == done
        assert m.domain(g).tot_pages == 1024 - removed
        if not done:
            assert m.same_as(snap)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_decrease_reservation_order_19(self, version):
        """4.1 removes page by page without an order check: the frames it owns go, the
        extent is not complete (0 done); 4.5 on refuse the order before anything."""
        m = machine(version)
        g = m.create_domain("guest", 2048)
        populate(m, g, [0, 512], 9)
        snap = m.snapshot()
        assert hc(m, g, MOP, XENMEM_decrease_reservation, res([0], order=19)) == 0
        if version == "4.1":
            assert m.domain(g).tot_pages == 0 and m.heap.free_frames == 0x4000
        else:
            assert m.same_as(snap)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_dying_domain_gets_no_memory(self, version):
        """No up-front refusal of a dying domain: assign_pages refuses it, so
        increase_reservation / populate_physmap by dom0 do 0 extents; decrease_reservation
        still removes its frames (guest_remove_page does not look)."""
        m = machine(version)
        g = m.create_domain("guest", 2048)
        populate(m, g, [0, 1], 0)                         # MFNs 0 and 1
        assert m.refs.get_page(m.mfn_to_page(1), g)       # something else holds frame 1
        m.audit_contributors.append(lambda mm, exp: exp.ref(1, g) if g in mm.domains else None)
        assert m.destroy_domain(g) == 0
        assert m.domain(g).is_dying and m.domain(g).owned.runs() == [(1, 2)]
        snap = m.snapshot()
        assert hc(m, 0, MOP, XENMEM_populate_physmap, res([5], domid=g)) == 0
        assert hc(m, 0, MOP, XENMEM_increase_reservation, res(None, n=1, domid=g)) == 0
        assert m.same_as(snap)
        assert hc(m, 0, MOP, XENMEM_decrease_reservation, res([1], domid=g)) == 1
        assert m.domain(g).tot_pages == 1 and m.frame_table.count_info(1) == 1
        m.audit_contributors.clear()
        m.refs.put_page(m.mfn_to_page(1))                 # the last reference: it goes
        assert g not in m.domains and m.heap.free_frames == 0x4000
        assert_clean(m)
