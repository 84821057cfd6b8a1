"""Grant tables v1: GNTTABOP_map_grant_ref / unmap_grant_ref / unmap_and_replace /
setup_table / query_size (``common/grant_table.c``) and the x86 host mapping
(``create_grant_host_mapping`` / ``replace_grant_host_mapping``, ``arch/x86/mm.c``), read at
RELEASE-4.1.0, 4.5.0, 4.7.0, 4.8.0 and 4.22.0. Every call is audited by both auditors."""

from __future__ import annotations

import errno

import pytest

from xensim import DIRECTMAP_BASE, GuestKernel, Machine, MemoryMap, audit
from xensim.mem import PGC_count_mask, PGT_count_mask
from xensim.xen import (
    GNTMAP_contains_pte, GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTST_bad_domain,
    GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_general_error, GNTST_okay,
    GNTST_permission_denied, GNTTABOP_map_grant_ref, GNTTABOP_query_size, GNTTABOP_setup_table,
    GNTTABOP_unmap_and_replace, GNTTABOP_unmap_grant_ref, GTF_reading, GTF_writing,
    HYPERVISOR_grant_table_op, HYPERVISOR_mmu_update, MMU_NORMAL_PT_UPDATE, GnttabMapGrantRef,
    GnttabQuerySize, GnttabSetupTable, GnttabUnmapAndReplace, GnttabUnmapGrantRef,
    IncrementalAuditor, MmuUpdate, grant_pte_flags, guest_map_l1e, make_pte, pins,
)

#: the backend's VA for host mappings (an L1 of its own covers it)
BVA = DIRECTMAP_BASE + (1 << 30)
#: the frontend's VA of its own 4 KiB mappings of its data frames
FVA = DIRECTMAP_BASE + (2 << 30)
RW, RO = GNTMAP_host_map, GNTMAP_host_map | GNTMAP_readonly


class World:
    """A frontend and a backend domain, each with 512 frames and its tables; the frontend
    maps its frames 5 and 6 writable at FVA (its own references, as XTF's frame[]); the
    backend has an L1 covering BVA."""

    def __init__(self, version: str = "4.8", faithful: bool = False):
        self.m = m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none",
                             version=version, faithful=faithful)
        self.k = {}
        for name in ("front", "back"):
            d = m.create_domain(name, 512 + 64)
            k = self.k[name] = GuestKernel(m, d)
            assert k.populate(0, 512) == 1 and k.build() == 0
        self.fe, self.be = self.k["front"].domid, self.k["back"].domid
        for k in self.k.values():
            assert k.grant_setup() == 0                # gnttab_init: setup_table
        f = self.k["front"]
        assert f.map_pages(FVA, [f.mfn(5), f.mfn(6)], writable=True) == 0
        self.l1, rc = self.k["back"].ensure_table(BVA, 1)
        assert rc == 0
        self.inc = IncrementalAuditor(m)
        self.check()

    def check(self) -> None:
        full, inc = audit(self.m), self.inc.check()
        assert full.ok, str(full)
        assert inc.ok, str(inc)

    def frame(self, gfn: int = 5) -> int:
        return self.k["front"].mfn(gfn)

    def grant(self, ref: int, gfn: int = 5, grantee: int | None = None, readonly: bool = False):
        assert self.m.gnttab.grant_access(self.fe, ref, self.be if grantee is None else grantee,
                                          self.frame(gfn), readonly)

    def op(self, caller: int, cmd: int, *ops, count=None) -> int:
        rc = self.m.hypercall(caller, HYPERVISOR_grant_table_op, cmd, list(ops), count)
        self.check()
        return rc

    def map(self, ref: int, flags: int = RW, host_addr: int = BVA, caller=None, dom=None):
        op = GnttabMapGrantRef(host_addr, flags, ref, self.fe if dom is None else dom)
        assert self.op(self.be if caller is None else caller, GNTTABOP_map_grant_ref, op) == 0
        return op

    def unmap(self, handle: int, host_addr: int = BVA, dev_bus_addr: int = 0, caller=None):
        op = GnttabUnmapGrantRef(host_addr, dev_bus_addr, handle)
        assert self.op(self.be if caller is None else caller, GNTTABOP_unmap_grant_ref, op) == 0
        return op.status

    def counts(self, gfn: int = 5) -> tuple[int, int]:
        page = self.m.mfn_to_page(self.frame(gfn))
        ft = self.m.frame_table
        return ft.count_info(page) & PGC_count_mask, ft.type_info(page) & PGT_count_mask

    def pte(self, va: int = BVA, caller=None) -> int:
        d = self.m.domain(self.be if caller is None else caller)
        return self.m.mem.read(*guest_map_l1e(self.m, d, va))

    def active(self, ref: int):
        return self.m.gnttab.tables[self.fe].active.get(ref)

    def flags(self, ref: int) -> int:
        return self.m.gnttab.tables[self.fe].flags(ref)


# -- map and unmap: the references ---------------------------------------------------------
def test_map_grant_ref_writable_host_map_takes_get_page_and_a_writable_type_4_8():
    """__gnttab_map_grant_ref + create_grant_host_mapping (4.8): get_page and
    get_page_type(PGT_writable_page) on the granter's frame, the grantee's PTE written
    with the grant's flags, the pin hstw 1, the entry marked reading and writing."""
    w = World()
    w.grant(8)
    before = w.counts()
    assert w.unmap(w.map(8).handle) == GNTST_okay       # the maptrack's first frame
    snap = w.m.snapshot()
    op = w.map(8)
    assert (op.status, op.handle, op.dev_bus_addr) == (GNTST_okay, 0, w.frame() << 12)
    assert w.counts() == (before[0] + 1, before[1] + 1)
    assert w.pte() == make_pte(w.frame(), grant_pte_flags(RW))
    assert pins(w.active(8)[0]) == (1, 0, 0, 0) and w.active(8)[1:] == (w.be, w.frame())
    assert w.flags(8) & (GTF_reading | GTF_writing) == GTF_reading | GTF_writing
    assert w.unmap(op.handle) == GNTST_okay
    assert w.pte() == 0 and w.active(8) is None
    assert w.m.same_as(snap)


def test_map_grant_ref_read_only_takes_get_page_only_4_8():
    w = World()
    w.grant(9, gfn=7, readonly=True)
    before = w.counts(7)
    op = w.map(9, RO)
    assert op.status == GNTST_okay
    assert w.counts(7) == (before[0] + 1, before[1])
    assert pins(w.active(9)[0]) == (0, 1, 0, 0)
    assert w.flags(9) & (GTF_reading | GTF_writing) == GTF_reading
    assert w.unmap(op.handle) == GNTST_okay and w.counts(7) == before


def test_map_grant_ref_host_and_device_take_two_of_each_and_one_unmap_drops_both_4_8():
    """host+device writable: one get_page + writable type per kind (nr_gets 2); an unmap
    naming the host address and the bus address removes both."""
    w = World()
    w.grant(8)
    before = w.counts()
    op = w.map(8, RW | GNTMAP_device_map)
    assert w.counts() == (before[0] + 2, before[1] + 2)
    assert pins(w.active(8)[0]) == (1, 0, 1, 0)
    assert w.unmap(op.handle, dev_bus_addr=op.dev_bus_addr) == GNTST_okay
    assert w.counts() == before and w.active(8) is None
    assert w.m.gnttab.tables[w.be].maptrack == {}


def test_map_grant_ref_device_only_takes_one_of_each_4_8():
    w = World()
    w.grant(8)
    before = w.counts()
    op = w.map(8, GNTMAP_device_map)
    assert w.counts() == (before[0] + 1, before[1] + 1) and w.pte() == 0
    assert w.unmap(op.handle, host_addr=0, dev_bus_addr=op.dev_bus_addr) == GNTST_okay
    assert w.counts() == before


def test_map_grant_ref_contains_pte_names_the_entry_by_machine_address_4_8():
    """GNTMAP_contains_pte: host_addr is the PTE's machine address (create_grant_pte_mapping)."""
    w = World()
    w.grant(8)
    l1, i = guest_map_l1e(w.m, w.m.domain(w.be), BVA + 4096)
    op = w.map(8, RW | GNTMAP_contains_pte, host_addr=(l1 << 12) | (i * 8))
    assert op.status == GNTST_okay and w.pte(BVA + 4096) & ~0xFFF & ((1 << 52) - 1) == w.frame() << 12
    assert w.unmap(op.handle, host_addr=(l1 << 12) | (i * 8)) == GNTST_okay


def test_maptrack_handles_are_given_back_last_in_first_out_4_1_4_8():
    """get_maptrack_handle / put_maptrack_handle: a free list, the handle given back last
    is the next one taken."""
    for version in ("4.1", "4.8"):
        w = World(version)
        for ref in (8, 9, 10):
            w.grant(ref)
        a = w.map(8, RW, BVA).handle
        b = w.map(9, RW, BVA + 4096).handle
        assert (a, b) == (0, 1)
        assert w.unmap(a) == GNTST_okay
        assert w.map(10, RW, BVA).handle == 0


def test_second_writable_map_of_one_grant_adds_to_the_pins_4_8():
    w = World()
    w.grant(8)
    a, b = w.map(8, RW, BVA), w.map(8, RW, BVA + 4096)
    assert pins(w.active(8)[0]) == (2, 0, 0, 0)
    assert w.unmap(a.handle) == GNTST_okay and pins(w.active(8)[0]) == (1, 0, 0, 0)
    assert w.unmap(b.handle, BVA + 4096) == GNTST_okay and w.active(8) is None
    assert w.flags(8) & (GTF_reading | GTF_writing) == 0


# -- refusals: the op's status, the call's rc, nothing changed ----------------------------------
@pytest.mark.parametrize("case, status", [
    ("no kind", GNTST_bad_gntref), ("no domain", GNTST_bad_domain),
    ("ref past the table", GNTST_bad_gntref), ("not granted", GNTST_general_error),
    ("granted to another", GNTST_general_error), ("read-only grant", GNTST_general_error),
    ("no L1 at host_addr", GNTST_general_error), ("frame of a third domain", GNTST_bad_page),
])
def test_map_grant_ref_refusals_change_nothing_4_8(case, status):
    """__gnttab_map_grant_ref's refusals (4.8): bad flags, rcu_lock_domain_by_id, the ref's
    bound, _set_status_v1, __get_paged_frame (get_page_from_gfn), create_grant_va_mapping."""
    w = World()
    w.grant(8, grantee=w.fe if case == "granted to another" else None,
            readonly=case == "read-only grant")
    if case == "frame of a third domain":
        w.m.gnttab.grant_access(w.fe, 8, w.be, w.k["back"].mfn(5))
    snap = w.m.snapshot()
    op = GnttabMapGrantRef(BVA if case != "no L1 at host_addr" else DIRECTMAP_BASE + (3 << 30),
                           0 if case == "no kind" else RW,
                           8 if case not in ("ref past the table", "not granted") else
                           (4 * 512 if case == "ref past the table" else 11),
                           12345 if case == "no domain" else w.fe)
    assert w.op(w.be, GNTTABOP_map_grant_ref, op) == 0
    assert op.status == status and op.handle == -1
    assert w.m.same_as(snap)


def test_map_grant_ref_foreign_frame_is_general_error_in_4_1():
    """4.1's __get_paged_frame takes no reference: a frame the granter does not own fails
    later, at page_get_owner_and_reference (could_not_pin): GNTST_general_error."""
    w = World("4.1")
    w.m.gnttab.grant_access(w.fe, 8, w.be, w.k["back"].mfn(5))
    snap = w.m.snapshot()
    op = GnttabMapGrantRef(BVA, RW, 8, w.fe)
    assert w.op(w.be, GNTTABOP_map_grant_ref, op) == 0 and op.status == GNTST_general_error
    assert w.m.same_as(snap)


def test_grant_table_op_call_errors_4_8():
    """do_grant_table_op: an unknown cmd is -ENOSYS, a negative count -EINVAL,
    setup_table and query_size take one op (-EINVAL), an array shorter than count -EFAULT."""
    w = World()
    snap = w.m.snapshot()
    assert w.op(w.be, 3) == -errno.ENOSYS
    assert w.op(w.be, GNTTABOP_map_grant_ref, count=-1) == -errno.EINVAL
    assert w.op(w.be, GNTTABOP_query_size, GnttabQuerySize(0x7FF0), GnttabQuerySize(0x7FF0)) == -errno.EINVAL
    assert w.op(w.be, GNTTABOP_map_grant_ref, count=1) == -errno.EFAULT
    assert w.m.same_as(snap)


def test_unmap_grant_ref_refusals_4_8():
    """__gnttab_unmap_common: a handle past the maptrack or not in use is GNTST_bad_handle;
    a host address whose PTE maps another frame is GNTST_general_error."""
    w = World()
    w.grant(8)
    op = w.map(8)
    snap = w.m.snapshot()
    assert w.unmap(5000) == GNTST_bad_handle and w.unmap(1) == GNTST_bad_handle
    assert w.unmap(op.handle, host_addr=BVA + 4096) == GNTST_general_error
    assert w.m.same_as(snap)


def test_setup_table_and_query_size_4_1_4_8():
    """gnttab_setup_table grows the table (INITIAL_NR_GRANT_FRAMES 4, at most
    max_nr_grant_frames 32: beyond, GNTST_general_error); query_size reports both; another
    domain's table only for a privileged caller (GNTST_permission_denied)."""
    for version in ("4.1", "4.8"):
        w = World(version)
        q = GnttabQuerySize(0x7FF0)
        assert w.op(w.fe, GNTTABOP_query_size, q) == 0 and (q.nr_frames, q.max_nr_frames) == (4, 32)
        s = GnttabSetupTable(0x7FF0, 8)
        assert w.op(w.fe, GNTTABOP_setup_table, s) == 0 and s.status == GNTST_okay
        assert w.m.gnttab.tables[w.fe].nr_entries() == 8 * 512
        s = GnttabSetupTable(0x7FF0, 33)
        assert w.op(w.fe, GNTTABOP_setup_table, s) == 0 and s.status == GNTST_general_error
        q = GnttabQuerySize(w.fe)
        assert w.op(w.be, GNTTABOP_query_size, q) == 0 and q.status == GNTST_permission_denied
        q = GnttabQuerySize(w.fe)
        assert w.op(0, GNTTABOP_query_size, q) == 0 and (q.status, q.nr_frames) == (0, 8)


# -- what removes a host mapping besides the grant interface ------------------------------------
def test_implicit_unmap_drops_the_ptes_references_and_leaves_the_pin_4_8():
    """A grant PTE is an L1 entry: mod_l1_entry removing it drops its references
    (put_page_from_l1e; _PAGE_GNTTAB is 0 in a release build); the pin stays (an active
    grant the guest cannot destroy: the unmap finds no PTE, GNTST_general_error) until
    gnttab_release_mappings, which drops no host references for a PV domain."""
    w = World()
    w.grant(8)
    before = w.counts()
    op = w.map(8)
    l1, i = guest_map_l1e(w.m, w.m.domain(w.be), BVA)
    rc = w.m.hypercall(w.be, HYPERVISOR_mmu_update,
                       [MmuUpdate((l1 << 12) | (i * 8) | MMU_NORMAL_PT_UPDATE, 0)], None, 0x7FF0)
    w.check()
    assert rc == 0 and w.counts() == before and pins(w.active(8)[0]) == (1, 0, 0, 0)
    assert w.unmap(op.handle) == GNTST_general_error
    assert w.m.destroy_domain(w.be) == 0
    w.check()
    assert w.active(8) is None and w.counts() == before


def test_destroy_grantee_releases_its_mappings_4_8():
    """domain_kill: gnttab_release_mappings drops the device mapping's references and the
    pins; the host PTE's references go with the grantee's page tables."""
    w = World()
    w.grant(8)
    before = w.counts()
    w.map(8, RW | GNTMAP_device_map)
    assert w.m.destroy_domain(w.be) == 0
    w.check()
    assert w.counts() == before and w.active(8) is None
    assert w.flags(8) & (GTF_reading | GTF_writing) == 0


def test_destroy_granter_first_leaves_a_zombie_until_the_unmap_4_8():
    w = World()
    w.grant(8)
    op = w.map(8)
    assert w.m.destroy_domain(w.fe) == 0
    w.check()
    assert w.fe in w.m.domains and w.m.domains[w.fe].is_dying
    assert w.unmap(op.handle) == GNTST_okay
    assert w.fe not in w.m.domains


def test_unmap_and_replace_moves_the_entry_at_new_addr_4_8():
    """replace_grant_host_mapping with new_addr: the entry at new_addr is cleared and
    written at host_addr (its references move with it); the grant's own are dropped."""
    w = World()
    w.grant(8)
    b = w.k["back"]
    assert b.map_pages(BVA + 4096, [b.mfn(9)], writable=True) == 0
    w.check()
    moved = w.pte(BVA + 4096)
    before = w.counts()
    op = w.map(8)
    ur = GnttabUnmapAndReplace(BVA, BVA + 4096, op.handle)
    assert w.op(w.be, GNTTABOP_unmap_and_replace, ur) == 0 and ur.status == GNTST_okay
    assert w.pte(BVA) == moved and w.pte(BVA + 4096) == 0 and w.counts() == before


# -- the auditors catch a planted grant miscount -------------------------------------------------
def test_auditors_catch_a_planted_pin():
    w = World()
    w.grant(8)
    w.map(8, RW | GNTMAP_device_map)
    gt = w.m.gnttab.tables[w.fe]
    pin, grantee, frame = gt.active[8]
    gt.active[8] = (pin + (1 << 16), grantee, frame)          # one devw pin more
    full, inc = audit(w.m), w.inc.check()
    assert not full.ok and not inc.ok
    assert any("pins" in d.field for d in full.differences)
    assert sorted(map(str, full.differences)) == sorted(map(str, inc.differences))


def test_auditors_catch_a_device_reference_dropped_behind_the_grant():
    w = World()
    w.grant(8)
    w.map(8, GNTMAP_device_map)
    w.m.refs.put_page_and_type(w.m.mfn_to_page(w.frame()))
    full, inc = audit(w.m), w.inc.check()
    assert not full.ok and not inc.ok
    assert sorted(map(str, full.differences)) == sorted(map(str, inc.differences))


def test_auditors_catch_a_foreign_pte_no_grant_permits():
    """A grant PTE stays after its active entry is forgotten: a foreign frame in a domU's
    tables (referenced by dom2, owned by dom1)."""
    w = World()
    w.grant(8)
    w.map(8)
    gt = w.m.gnttab.tables[w.fe]
    del gt.active[8]
    gt.set_flags(8, gt.flags(8) & ~(GTF_reading | GTF_writing))
    w.m.gnttab.tables[w.be].maptrack.clear()
    full = audit(w.m)
    assert [str(d) for d in full.differences] == [
        f"mfn {w.frame():#x} referenced by: expected dom{w.be}'s own frame, actual owner dom{w.fe}"]


def test_map_grant_ref_walks_the_calling_vcpus_tables_4_8():
    """create_grant_va_mapping walks the current vCPU's page tables (guest_map_l1e): a
    vCPU with no root table of its own has no L1 for the linear address."""
    m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none")
    front = GuestKernel(m, m.create_domain("front", 512 + 64))
    back = GuestKernel(m, m.create_domain("back", 512 + 64, vcpus=2))
    for k in (front, back):
        assert k.populate(0, 512) == 1 and k.build() == 0 and k.grant_setup() == 0
    assert back.ensure_table(BVA, 1)[1] == 0
    assert m.gnttab.grant_access(front.domid, 8, back.domid, front.mfn(5))
    snap = m.snapshot()
    op = GnttabMapGrantRef(BVA, RW, 8, front.domid)
    assert m.hypercall(back.domid, HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, [op], None,
                       vcpu=1) == 0
    assert op.status == GNTST_general_error and m.same_as(snap)
    assert m.hypercall(back.domid, HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, [op], None,
                       vcpu=0) == 0
    assert op.status == GNTST_okay and audit(m).ok


@pytest.mark.parametrize("version, status", [("4.1", GNTST_general_error),
                                             ("4.5", GNTST_general_error),
                                             ("4.7", GNTST_bad_gntref), ("4.8", GNTST_bad_gntref)])
def test_map_grant_ref_before_the_granter_set_its_table_up(version, status):
    """gt_version is 0 until setup_table (or set_version): 4.1 and 4.5 refuse a map of such
    a table ("remote grant table not yet set up", GNTST_general_error); 4.7 and 4.8 find no
    entry in it (nr_grant_entries 0: GNTST_bad_gntref). The guest has no grant frames to
    write before it either."""
    m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none", version=version)
    front = GuestKernel(m, m.create_domain("front", 512 + 64))
    back = GuestKernel(m, m.create_domain("back", 512 + 64))
    for k in (front, back):
        assert k.populate(0, 512) == 1 and k.build() == 0
    assert back.ensure_table(BVA, 1)[1] == 0
    assert not m.gnttab.grant_access(front.domid, 8, back.domid, front.mfn(5))
    snap = m.snapshot()
    op = GnttabMapGrantRef(BVA, RW, 8, front.domid)
    assert m.hypercall(back.domid, HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, [op],
                       None) == 0
    assert op.status == status and m.same_as(snap)
