"""A guest's whole life through hypercalls only (GuestKernel), audited after every step.

On the teaching preset (about 3 GiB of RAM over 5 GiB, PDX mask compression): populate
1 GiB in 2 MiB extents plus a page-table pool, build and load the tree, map the 1 GiB
with 512 writable PSE entries, remap them read-only, map one superpage's 512 frames again
with 4 KiB entries, unmap everything, unpin, destroy. At the end every frame is back in
the heap, exactly as at boot. A second, small life destroys a guest with everything still
mapped, pinned and marked.
"""

from __future__ import annotations

import errno

from xensim import HYPERVISOR_mmuext_op, DomainHeap, Machine, load_preset
from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
from xensim.xen._mmu import MMUEXT_PIN_L1_TABLE, MmuextOp
from xensim.mem._page_info import (PGC_allocated, PGT_l1_page_table, PGT_l2_page_table,
                               PGT_l3_page_table, PGT_l4_page_table, PGT_pinned, PGT_validated,
                               PGT_writable_page, SGT_dynamic, SGT_mark)
from xensim.xen._pagetable import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW,
                               _PAGE_USER, make_pte)

from conftest import assert_clean, hc, small_machine

ALLOC1 = PGC_allocated | 1
WR = PGT_writable_page | PGT_validated
L1V, L2V = PGT_l1_page_table | PGT_validated, PGT_l2_page_table | PGT_validated
L3V, L4V = PGT_l3_page_table | PGT_validated, PGT_l4_page_table | PGT_validated
GiB_PAGES = 1 << 18
POOL = 64
RW_FLAGS = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_RW | _PAGE_DIRTY
RO_FLAGS = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED


def words(m, mfn: int) -> tuple[int, int]:
    page = m.mfn_to_page(mfn)
    return m.frame_table.count_info(page), m.frame_table.type_info(page)


def spage(m, mfn: int) -> int:
    return m.spage_table.read(m.mfn_to_pdx(mfn) >> 9)


def sp_frames(m, mfn: int) -> tuple[set, set]:
    ci, ti, _ = m.frame_table.read_slices(m.mfn_to_page(mfn), 512)
    return {int(x) for x in ci}, {int(x) for x in ti}


def test_whole_life_on_the_teaching_machine():
    m = Machine(load_preset("teaching"), "mask")
    fresh = DomainHeap(m.memmap.frame_ranges).snapshot()
    ram = m.memmap.ram_frames
    assert m.heap.snapshot() == fresh and m.heap.free_frames == ram

    g = m.create_domain("life", GiB_PAGES + POOL)
    d = m.domain(g)
    k = GuestKernel(m, g, pt_pool_pages=POOL)

    # 1. 1 GiB in 512 extents of 2 MiB
    assert k.populate(0, GiB_PAGES) == 512
    assert_clean(m)
    sps = k.superpage_mfns(0, 512)
    assert len(set(sps)) == 512 and all(s % 512 == 0 for s in sps)
    assert d.tot_pages == GiB_PAGES and m.heap.free_frames == ram - GiB_PAGES
    sp0, f = sps[0], sps[0] + 5                      # a frame of the first superpage
    assert words(m, f) == (ALLOC1, 0)

    # 2. the tree: L4 (pinned and loaded) -> L3 for the direct map
    assert k.build() == 0
    assert_clean(m)
    root, l3 = k.root, k.tables[(3, DIRECTMAP_BASE >> 39)]
    assert d.baseptr == root and d.pinned == {m.mfn_to_page(root): PGT_l4_page_table}
    assert words(m, root) == (ALLOC1 + 2, L4V | PGT_pinned | 2)     # the pin and the vCPU
    assert words(m, l3) == (ALLOC1 + 1, L3V | 1)
    assert d.tot_pages == GiB_PAGES + 2

    # 3. 512 writable PSE entries: the whole GiB
    va, va2 = DIRECTMAP_BASE, DIRECTMAP_BASE + (1 << 30)
    assert k.map_superpages(va, sps, writable=True) == 0
    assert_clean(m)
    l2 = k.tables[(2, va >> 30)]
    assert words(m, l2) == (ALLOC1 + 1, L2V | 1)
    assert m.mem.read(l2, 0) == make_pte(sp0, RW_FLAGS | _PAGE_PSE)
    assert words(m, f) == (ALLOC1 + 1, WR | 1)                       # count 2, writable/1
    assert sp_frames(m, sps[511]) == ({ALLOC1 + 1}, {WR | 1})
    assert {spage(m, s) for s in sps} == {SGT_dynamic | 1}
    assert m.superpage.stats == {"slow_get": 512, "slow_put": 0, "fast_get": 0, "fast_put": 0}

    # 4. remap read-only: xen-4.1 keeps the 512 writable references per superpage
    assert k.remap(va, writable=False, count=512) == 0
    assert_clean(m)
    assert m.mem.read(l2, 511) == make_pte(sps[511], RO_FLAGS | _PAGE_PSE)
    assert words(m, f) == (ALLOC1 + 1, WR | 1)
    assert {spage(m, s) for s in sps} == {SGT_dynamic | 1}
    assert m.superpage.stats == {"slow_get": 512, "slow_put": 0, "fast_get": 512, "fast_put": 512}

    # 5. the first superpage's 512 frames again, as 4 KiB writable entries one GiB higher
    assert k.map_pages(va2, list(range(sp0, sp0 + 512)), writable=True) == 0
    assert_clean(m)
    l1 = k.tables[(1, va2 >> 21)]
    assert words(m, l1) == (ALLOC1 + 1, L1V | 1)
    assert words(m, f) == (ALLOC1 + 2, WR | 2)                       # count 3, writable/2
    assert sp_frames(m, sp0) == ({ALLOC1 + 2}, {WR | 2})
    assert sp_frames(m, sps[1]) == ({ALLOC1 + 1}, {WR | 1})

    # 6. the guest cannot make its L2 writable through that L1: refused (4.8: could_not_pin,
    #    -EBUSY), nothing changes
    snap = m.snapshot()
    assert k.mmu_update([(k._entry_ptr(l1, 0), make_pte(l2, RW_FLAGS))]) == -errno.EBUSY
    assert k.done == 0 and m.same_as(snap)
    assert_clean(m)

    # 7. unmap everything
    assert k.unmap(va2, 512, superpages=False) == 0
    assert_clean(m)
    assert words(m, f) == (ALLOC1 + 1, WR | 1)
    assert words(m, l1) == (ALLOC1 + 1, L1V | 1)                     # still linked, now empty
    assert k.unmap(va, 512, superpages=True) == 0
    assert_clean(m)
    assert words(m, f) == (ALLOC1, WR)
    assert sp_frames(m, sps[300]) == ({ALLOC1}, {WR})
    assert m.spage_table.nonzero_entries().size == 0
    assert m.superpage.stats == {"slow_get": 512, "slow_put": 512, "fast_get": 512, "fast_put": 512}

    # 8. unpin: the vCPU still holds the root, so the tree stays valid
    assert k.teardown() == 0
    assert_clean(m)
    assert d.pinned == {}
    assert words(m, root) == (ALLOC1 + 1, L4V | 1)
    assert words(m, l3) == (ALLOC1 + 1, L3V | 1)

    # 9. destroy: every frame back in the heap, exactly as at boot
    tables = [root, l3, l2, k.tables[(2, va2 >> 30)], l1]
    assert m.destroy_domain(g) == 0
    assert_clean(m)
    assert m.domain(g) is None and list(m.domains) == [0]
    assert m.heap.free_frames == ram
    assert m.heap.snapshot() == fresh
    assert m.pt.live == {} and m.mem.snapshot() == ()
    assert all(m.heap.is_free(t) for t in tables + [f])

    assert m.hypercall.as_dict() == {
        "memory_op": {"calls": 6, "errors": {}},          # 1 GiB + 5 page-table frames
        "mmu_update": {"calls": 9, "errors": {"EBUSY": 1}},
        "mmuext_op": {"calls": 2, "errors": {}},          # build (pin + base pointer), unpin
    }


def test_destroying_a_guest_with_everything_live():
    """Mapped (PSE and 4 KiB), pinned, marked, loaded, partly ballooned out: destroy frees all."""
    m = small_machine()
    fresh = m.heap.snapshot()
    g = m.create_domain("busy", 4 * 512 + 64)
    d = m.domain(g)
    k = GuestKernel(m, g)
    assert k.populate(0, 4 * 512) == 4
    assert_clean(m)
    assert k.build() == 0
    assert_clean(m)
    sps = k.superpage_mfns(0, 4)
    assert k.map_superpages(DIRECTMAP_BASE, sps[:3], writable=True) == 0
    assert_clean(m)
    assert k.map_pages(DIRECTMAP_BASE + (1 << 30), [sps[3] + i for i in range(16)]) == 0
    assert_clean(m)
    assert k.mark_superpage(sps[0]) == 0 and k.mark_superpage(sps[3]) == 0
    assert_clean(m)
    assert spage(m, sps[0]) == SGT_mark | 2 and spage(m, sps[3]) == SGT_mark | 1
    # an extra pinned L1 outside the tree
    l1x = k._alloc_table()
    assert hc(m, g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L1_TABLE, l1x)], [0]) == 0
    # balloon out a frame that is still mapped: it stays owned until the mapping goes
    assert k.balloon_out([3 * 512 + 2]) == 1
    assert_clean(m)
    assert words(m, sps[3] + 2) == (2, WR | 2)                 # the 4 KiB map and the MARK
    assert len(d.pinned) == 2
    assert m.destroy_domain(g) == 0
    assert_clean(m)
    assert m.domain(g) is None
    assert m.heap.snapshot() == fresh and m.heap.free_frames == m.memmap.ram_frames
    assert m.spage_table.nonzero_entries().size == 0 and m.pt.live == {}


def test_a_process_tree_pinned_and_unpinned():
    """GuestKernel.exec_process builds a process's tree (L4 -> L3 -> L2 -> an L1 per
    superpage, the kernel's direct-map L3 shared at slot 272) as ordinary memory and pins
    the L4 (Linux's xen_pgd_pin): every frame mapped gets get_page + a writable type;
    exit_process unpins it (xen_pgd_unpin): all given back, the frames reused by the next
    exec. A second exec while one runs, or an exit with none, is the guest's own error."""
    import pytest
    from xensim.guest._guest import GuestError
    from xensim import audit
    from xensim import MemoryMap
    m = Machine(MemoryMap([(0, 64 << 20)], name="flat"), "none", superpage="xen-4.1")
    d = m.create_domain("g", 2048 + 16)
    k = GuestKernel(m, d, pt_pool_pages=16)
    assert k.populate(0, 2048) == 4 and k.build() == 0
    assert k.reserve_tables(5) == 5
    mfns = k.superpage_mfns(512, 2)
    kernel_l3 = k.tables[(3, DIRECTMAP_BASE >> 39)]
    assert words(m, kernel_l3)[1] == L3V | 1
    assert k.exec_process(mfns) == 0
    l4, l3, l2, *l1s = k.process
    assert len(l1s) == 2 and words(m, l4) == (PGC_allocated | 2, L4V | PGT_pinned | 1)
    assert words(m, l3) == (PGC_allocated | 2, L3V | 1) and words(m, l2)[1] == L2V | 1
    assert [words(m, x)[1] for x in l1s] == [L1V | 1] * 2
    assert sp_frames(m, mfns[0]) == ({ALLOC1 + 1}, {WR | 1})
    assert words(m, kernel_l3)[1] == L3V | 2                 # shared: one more type reference
    assert audit(m).ok
    with pytest.raises(GuestError, match="a process runs already"):
        k.exec_process(mfns)
    assert k.exit_process() == 0 and k.process is None
    assert sp_frames(m, mfns[0]) == ({ALLOC1}, {WR})
    assert words(m, kernel_l3)[1] == L3V | 1 and words(m, l4) == (ALLOC1, PGT_l4_page_table)
    with pytest.raises(GuestError, match="no process runs"):
        k.exit_process()
    assert k.exec_process(mfns[:1]) == 0 and k.process[0] == l4   # the pool's frames again
    assert audit(m).ok
