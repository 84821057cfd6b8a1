"""The inventory of machine state (xensim.xen: Machine.capture / restore / capture_records /
restore_records, same_as; INVENTORY and inventory_problems), per API."""

from __future__ import annotations

import numpy as np
import pytest

from xensim import Machine, MemoryMap
from xensim.guest import DIRECTMAP_BASE, GuestKernel
from xensim.xen import (INVENTORY, MMUEXT_PIN_L1_TABLE, MmuextOp, inventory_problems,
                        records_difference, same_records)

MiB = 1 << 20
VA4K = DIRECTMAP_BASE + (1 << 30)


def worked(design: str = "xen-4.1") -> tuple[Machine, GuestKernel, GuestKernel]:
    """A 64 MiB machine where every part of the state is non-trivial: two guests with
    superpages and tables (live, pinned, a base pointer), a marked superpage, a frame
    stamped by the TLB clock, one flush counted (the clock at 2)."""
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", superpage=design)
    ks = []
    for name in ("a", "b"):
        k = GuestKernel(m, m.create_domain(name, 4 * 512 + 64))
        assert k.populate(0, 2 * 512) == 2 and k.populate(1024, 16, superpages=False) == 16
        assert k.build() == 0
        ks.append(k)
    a, _ = ks
    sp = a.superpage_mfns(0, 2)
    assert a.map_superpages(DIRECTMAP_BASE, [sp[0]]) == 0 and a.mark_superpage(sp[1]) == 0
    frame = a.mfn(1024)
    assert a.map_pages(VA4K, [frame], writable=True) == 0
    assert a.unmap(VA4K, 1, superpages=False) == 0            # writable count to 0: stamped
    assert a.mmuext([MmuextOp(MMUEXT_PIN_L1_TABLE, frame)]) == 0     # type change: a flush
    assert m.refs.stats.tlb_flushes == 1 and m.refs.tlbflush_clock == 2
    return m, ks[0], ks[1]


def test_a_machine_that_ran_declares_every_attribute():
    m, _, _ = worked()
    assert inventory_problems(m) == []


def test_an_attribute_added_and_not_declared_fails_the_inventory():
    m, a, _ = worked()
    m.heap.extra = 0                                          # planted: a new field
    m.spare = {}
    m.domains[a.domid].owned.note = 1
    assert inventory_problems(m) == [
        "machine: Machine.spare is not in the inventory (state or not?)",
        "heap: DomainHeap.extra is not in the inventory (state or not?)",
        f"domains[{a.domid}].owned: RangeSet.note is not in the inventory (state or not?)"]


def test_a_declared_attribute_gone_and_an_undeclared_class_fail_the_inventory():
    m, _, _ = worked()
    inv = {k: dict(v) for k, v in INVENTORY.items()}
    inv["FrameMap"]["state"] += ("leaves",)
    del inv["GuestMemory"]
    problems = inventory_problems(m, inv)
    assert "m2p: FrameMap.leaves is in the inventory but not on the object" in problems
    assert "mem: class GuestMemory is not in the inventory" in problems


def test_every_kind_is_named():
    from xensim.xen import KINDS
    assert {k for kinds in INVENTORY.values() for k in kinds} <= set(KINDS)


# -- capture / restore -------------------------------------------------------------------
def everything(m: Machine) -> tuple:
    """The machine's state as a test reads it through public names, orders included."""
    return (m.frame_table.snapshot(), m.refs.tlb.capture_stamps(), m.mem.capture(),
            m.capture_records()[:3], m.capture_records()[4:])


def test_restore_undoes_every_part_and_brings_back_a_freed_domain():
    m, a, b = worked()
    st = m.capture()
    want = everything(m)
    objs = dict(m.domains)
    assert a.unmap(DIRECTMAP_BASE, 1) == 0                   # the design's count, frames
    assert a.unmark_superpage(a.superpage_mfns(0, 2)[1]) == 0
    assert m.destroy_domain(b.domid) == 0                     # freed with its last frame
    assert b.domid not in m.domains
    m.create_domain("c", 512)
    assert m.refs.stats.tlb_flushes >= 1
    m.refs.tlb.flush(0, a.domid, 1)                           # the clock ticks again
    assert not m.same_as(st)
    m.restore(st)
    assert everything(m) == want and m.same_as(st)
    assert m.domains == objs and all(m.domains[i] is d for i, d in objs.items())
    assert m.refs.tlbflush_clock == 2 and m.create_domain("c", 512) == 3


def test_same_as_leaves_the_tlb_out_and_restore_puts_it_back():
    m, a, _ = worked()
    st = m.capture()
    page = m.mfn_to_page(a.mfn(1024))
    stamp = m.refs.tlbflush_timestamp(page)
    m.refs.tlb.flush(page, a.domid, stamp)
    m.refs.tlb.stamp(page + 1)
    assert m.same_as(st)                                      # not compared ...
    assert m.refs.tlbflush_clock == 3
    m.restore(st)                                             # ... but restored
    assert m.refs.tlbflush_clock == 2 and m.refs.tlbflush_timestamp(page + 1) == 0
    assert m.refs.tlbflush_time == {a.domid: 2}


def test_restore_writes_frames_back_through_the_bus():
    m, a, _ = worked()
    st = m.capture()
    seen = []
    m.events.subscribe("frames_written", lambda pdx, n: seen.append((pdx, n)))
    m.events.subscribe("guest_write", lambda mfn, i, old, new: seen.append(("mem", mfn)))
    assert a.unmap(DIRECTMAP_BASE, 1) == 0
    seen.clear()
    m.restore(st)
    assert (0, 1 << 16) in seen                               # the one PDX group, whole
    assert ("mem", a.tables[(2, DIRECTMAP_BASE >> 30)]) in seen   # the L2 written back


def test_capture_records_is_small_and_orders_are_kept():
    m, a, _ = worked()
    d = m.domains[a.domid]
    rec = m.capture_records()
    assert len(d.pinned) == 2                                 # its L4 and the L1
    d.pinned = dict(reversed(list(d.pinned.items())))
    now = m.capture_records()
    assert now != rec and same_records(now, rec)              # the same, orders aside
    m.restore_records(rec, now)
    assert m.capture_records() == rec                         # the order too


def test_records_difference_names_the_part():
    m, a, _ = worked()
    rec = m.capture_records()
    m.domains[a.domid].max_pages += 1
    assert records_difference(m, m.capture_records(), rec) == \
        f"dom{a.domid}.max_pages: {4 * 512 + 65} vs {4 * 512 + 64}"
    m.domains[a.domid].max_pages -= 1
    m.create_domain("c", 1)
    assert records_difference(m, m.capture_records(), rec) == "domains [0, 1, 2, 3] vs [0, 1, 2]"
    m.restore_records(rec)
    assert records_difference(m, m.capture_records(), rec) is None


@pytest.mark.parametrize("design", ["pageinfo-count", "superpage-info"])
def test_the_design_state_is_captured_by_the_design(design):
    m, a, _ = worked(design)
    st = m.capture()
    assert a.unmap(DIRECTMAP_BASE, 1) == 0
    if m.superpage.snapshot() != st.records.design:
        assert not m.same_as(st)
    m.restore(st)
    assert m.same_as(st) and m.superpage.snapshot() == st.records.design


def test_restore_of_guest_memory_zeroes_and_drops_a_frame_written_since():
    m, a, _ = worked()
    st = m.capture()
    m.mem.write(0x3ffe, 3, 0x1234)
    m.restore(st)
    assert not m.mem.holds(0x3ffe) and m.mem.capture() == st.tables
    assert np.array_equal(m.mem.table(0x3ffe), np.zeros(512, dtype=np.uint64))


def test_the_explorers_deep_copy_of_a_world_holds_the_whole_inventory():
    """explore/_scenario.py's Runner deep-copies its booted World per schedule: the copy's
    machine has every part of the original's state (and none shared with it)."""
    import copy
    m, _, _ = worked()
    twin = copy.deepcopy(m)
    a, b = m.capture(), twin.capture()
    assert (a.frames, a.stamps, a.tables) == (b.frames, b.stamps, b.tables)
    assert a == b                           # equal values, whatever the Domain objects
    assert inventory_problems(twin) == []
    assert not set(map(id, a.records.objects)) & set(map(id, b.records.objects))
    twin.refs.tlb.stamp(0)
    twin.domains[1].tot_pages += 1
    assert m.capture_records() == a.records and m.refs.tlbflush_timestamp(0) == 0


# -- the TLB filter's state (TlbFlushFilter, refs.tlb) -------------------------------------
def test_tlb_stamps_frame_by_frame_and_whole():
    from xensim.xen import RefStats, Events, TlbFlushFilter
    t = TlbFlushFilter(RefStats(), Events())
    pages = np.array([3, 70000, 70001], dtype=np.int64)     # two PDX groups
    assert t.stamps_at(pages).tolist() == [0, 0, 0]
    t.set_stamps(pages, np.zeros(3, dtype=np.uint32))
    assert t.groups == {} and t.capture_stamps() == {}       # zeros allocate nothing
    t.clock = 5
    t.stamp(70001)
    t.set_stamps(pages[:1], np.array([4], dtype=np.uint32))
    assert t.stamps_at(pages).tolist() == [4, 0, 5] and sorted(t.groups) == [0, 1]
    whole = t.capture_stamps()
    t.clear(70001, 1)
    t.flush(70001, 2, 5)
    assert (t.clock, t.time, t.stats.tlb_flushes) == (6, {2: 6}, 1)
    clock = t.capture_clock()
    t.restore_stamps(whole)
    t.restore_clock((5, ()))
    assert t.stamps_at(pages).tolist() == [4, 0, 5] and (t.clock, t.time) == (5, {})
    t.restore_clock(clock)
    assert (t.clock, t.time) == (6, {2: 6})
