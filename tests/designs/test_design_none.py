"""The sixth design, ``none`` (Xen 4.10 on: no PV superpages), per API.

A guest on the 64 MiB machine (PDX none, so page == mfn) owns four superpages at
MFNs 0, 0x200, 0x400, 0x600 and a live L2 table; its kernel learns from
``Machine.pv_superpages`` that there are no PV superpages and maps each 2 MiB
extent with an L1 table of 512 entries from its page-table pool. Every
hypercall is audited (conftest.hc). Hand-computed values:

* a RW fallback mapping: each of the 512 frames PGC_allocated|2 and
  writable|validated|1; the L1 frame PGC_allocated|2 and l1|validated|1;
  get_page 514 (the request's temporary reference on the L2, the L1 frame,
  512 entries), get_page_type 513, put_page 1 (the temporary one);
* a RO one: the frames PGC_allocated|2 and no type reference; get_page 514,
  get_page_type 1 (the L1 frame's);
* its unmap: put_page 514 and put_page_type 513 (RW) or 1 (RO), get_page 1.
"""

from __future__ import annotations

import errno

import pytest

from xensim import (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op, Machine, MemoryMap,
                    NoSuperpages, design_names, load_config, build_memory_map, start)
import xensim
from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
from xensim.mem import (PGC_allocated, PGT_l1_page_table, PGT_l2_page_table, PGT_validated,
                        PGT_writable_page)
from xensim.xen._mmu import (MMUEXT_MARK_SUPER, MMUEXT_PIN_L2_TABLE, MMUEXT_UNMARK_SUPER,
                             MmuextOp, MmuUpdate)
from xensim.xen._pagetable import (_PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER, make_pte,
                                   pte_mfn)

from conftest import assert_clean, hc
from test_designs import Env as DesignsEnv

N = 4
SP = 2 << 20
WR1 = PGT_writable_page | PGT_validated | 1
L1V1 = PGT_l1_page_table | PGT_validated | 1
LINK = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER


def pse(mfn: int, rw: bool = True) -> int:
    return make_pte(mfn, _PAGE_PRESENT | _PAGE_USER | _PAGE_PSE | (_PAGE_RW if rw else 0))


class Env(DesignsEnv):
    """test_designs' layout on ``none``: a guest owning superpages sp[0..3] (MFNs 0, 0x200,
    0x400, 0x600) and a live L2 table (``allow_superpage``: the option, set after boot)."""

    def __init__(self, version: str = "4.8", faithful: bool = False,
                 allow_superpage: bool = True):
        super().__init__("none", version, faithful)
        self.m.allow_superpage = allow_superpage

    def frame(self, mfn: int) -> tuple[int, int]:
        page = self.m.mfn_to_page(mfn)
        return self.m.frame_table.count_info(page), self.m.frame_table.type_info(page)

    def refs(self) -> tuple[int, int, int, int]:
        s = self.m.refs.stats
        return s.get_page, s.get_page_type, s.put_page, s.put_page_type

    def delta(self, fn) -> tuple[int, ...]:
        before = self.refs()
        rc = fn()
        assert rc == 0
        assert_clean(self.m)
        return tuple(a - b for a, b in zip(self.refs(), before))

    def update(self, table: int, index: int, val: int, caller: int | None = None) -> tuple[int, int]:
        done = [-1]
        rc = hc(self.m, self.g if caller is None else caller, HYPERVISOR_mmu_update,
                [MmuUpdate((table << 12) | (index * 8), val)], done)
        return rc, done[0]


@pytest.fixture
def env() -> Env:
    return Env()


# =====================================================================================
# The design and the machine's interface
# =====================================================================================
def test_registered_last_with_no_metadata_and_no_pse():
    assert design_names()[-1] == "none"
    m = Env().m
    d = m.superpage
    assert type(d) is NoSuperpages and xensim.NoSuperpages is NoSuperpages
    assert d.name == "none" and d.description and not d.buggy
    assert (d.supports_pse, d.supports_mark, d.words_per_entry) == (False, False, 1)
    assert d.metadata_bytes() == 0
    assert m.pv_superpages is False


@pytest.mark.parametrize("name", [n for n in design_names() if n != "none"])
def test_every_other_design_has_pv_superpages(name):
    m = Machine(MemoryMap([(0, 64 << 20)]), "none", superpage=name)
    assert m.superpage.supports_pse is True and m.pv_superpages is True
    assert GuestKernel(m, m.create_domain("g", 64)).pv_superpages is True


def test_the_kernel_learns_it_once():
    e = Env()
    assert e.k.pv_superpages is False and e.k.fallback == {}


# =====================================================================================
# map_superpages: the fallback
# =====================================================================================
@pytest.mark.parametrize("rw, frames_after, delta", [
    (True, (PGC_allocated | 2, WR1), (514, 513, 1, 0)),
    (False, (PGC_allocated | 2, 0), (514, 1, 1, 0)),
])
def test_map_one_superpage(env, rw, frames_after, delta):
    assert env.delta(lambda: env.k.map_superpages(DIRECTMAP_BASE, [env.sp[1]], rw)) == delta
    l1 = env.k.fallback[DIRECTMAP_BASE]
    assert env.frames(env.sp[1]) == frames_after
    assert env.frame(l1) == (PGC_allocated | 2, L1V1)
    assert env.m.mem.read(env.l2, 0) == make_pte(l1, LINK)
    flags = _PAGE_PRESENT | _PAGE_USER | 0x20 | (_PAGE_RW | 0x40 if rw else 0)
    entries = env.m.mem.table(l1)
    assert [int(x) for x in entries] == [make_pte(env.sp[1] + i, flags) for i in range(512)]
    assert env.m.pt.live[env.m.mfn_to_page(l1)] == (1, env.g)
    assert env.m.superpage.stats == {"slow_get": 0, "slow_put": 0, "fast_get": 0, "fast_put": 0}
    # entry updates: the set-up's link of the L2 and this L2 entry (validation is not one)
    assert env.m.pt_stats["slow_path"] == 2 and env.m.pt_stats["fast_path"] == 0


@pytest.mark.parametrize("rw, delta", [(True, (1, 0, 514, 513)), (False, (1, 0, 514, 1))])
def test_unmap_one_superpage(env, rw, delta):
    assert env.k.map_superpages(DIRECTMAP_BASE, [env.sp[1]], rw) == 0
    l1 = env.k.fallback[DIRECTMAP_BASE]
    assert env.delta(lambda: env.k.unmap(DIRECTMAP_BASE)) == delta
    ci, ti = env.frames(env.sp[1])
    assert ci == PGC_allocated | 1 and ti & 0xFFFF == 0       # no reference left
    ci, ti = env.frame(l1)
    assert ci == PGC_allocated | 1 and ti & PGT_validated == 0  # devalidated, not a table
    assert env.m.mem.read(env.l2, 0) == 0 and env.k.fallback == {}
    assert env.k._l1_free == [l1]
    # the next fallback mapping reuses the frame, rewritten whole
    assert env.k.map_superpages(DIRECTMAP_BASE + SP, [env.sp[2]], False) == 0
    assert env.k.fallback == {DIRECTMAP_BASE + SP: l1}
    assert [pte_mfn(int(x)) for x in env.m.mem.table(l1)] == list(range(0x400, 0x600))
    assert_clean(env.m)


def test_map_and_unmap_several_superpages(env):
    va = DIRECTMAP_BASE
    assert env.delta(lambda: env.k.map_superpages(va, env.sp[:3], True)) == (3 * 514, 3 * 513, 3, 0)
    assert env.k.done == 3
    l1s = [env.k.fallback[va + i * SP] for i in range(3)]
    assert len(set(l1s)) == 3
    for i in range(3):
        assert env.frames(env.sp[i]) == (PGC_allocated | 2, WR1)
        assert env.frame(l1s[i]) == (PGC_allocated | 2, L1V1)
    assert env.frames(env.sp[3]) == (PGC_allocated | 1, 0)
    # a second mapping of superpage 0, read-only, beside the first: 512 more references
    assert env.delta(lambda: env.k.map_superpages(va + 3 * SP, [env.sp[0]], False)) == (514, 1, 1, 0)
    assert env.frames(env.sp[0]) == (PGC_allocated | 3, WR1)
    l1s.append(env.k.fallback[va + 3 * SP])
    assert len(set(l1s)) == 4
    assert env.delta(lambda: env.k.unmap(va, 4)) == (4, 0, 4 * 514, 3 * 513 + 1)
    for i in range(4):
        assert env.frames(env.sp[i])[0] == PGC_allocated | 1
    assert env.k.fallback == {} and sorted(env.k._l1_free) == sorted(l1s)
    for l1 in l1s:
        assert env.frame(l1)[0] == PGC_allocated | 1


def test_remap_flips_the_512_entries_in_one_batch(env):
    assert env.k.map_superpages(DIRECTMAP_BASE, [env.sp[1]], True) == 0
    calls = env.m.hypercall.stats["mmu_update"].calls
    # RW -> RO: each entry a new general reference, the old writable one dropped, and each
    # request's temporary reference on the L1 table
    assert env.delta(lambda: env.k.remap(DIRECTMAP_BASE, False)) == (1024, 0, 1024, 512)
    assert env.m.hypercall.stats["mmu_update"].calls == calls + 1 and env.k.done == 512
    assert env.frames(env.sp[1]) == (PGC_allocated | 2, WR1 - 1)
    assert env.delta(lambda: env.k.remap(DIRECTMAP_BASE, True)) == (1024, 512, 1024, 0)
    assert env.frames(env.sp[1]) == (PGC_allocated | 2, WR1)


def test_a_refused_fallback_mapping_gives_its_frame_back(env):
    o, _, _ = other_domain(env)
    foreign = env.m.domain(o).p2m.get(0)
    snap_refs = env.refs()
    rc = env.k.map_superpages(DIRECTMAP_BASE, [foreign], True)
    assert rc == -errno.EBUSY and env.k.done == 0      # get_page_from_l1e on a foreign frame
    assert env.k.fallback == {} and len(env.k._l1_free) == 1
    assert env.m.mem.read(env.l2, 0) == 0
    assert env.refs()[0] - snap_refs[0] == 3          # temporary, L1 frame, first entry: undone
    assert_clean(env.m)


def other_domain(env):
    o = env.m.create_domain("other", 512 + 64)
    ko = GuestKernel(env.m, o)
    assert ko.populate(0, 512) == 1 and ko.build() == 0
    return o, ko.superpage_mfns(0, 1)[0], ko


# =====================================================================================
# PSE entries refused, exactly as Xen 4.10 refuses them
# =====================================================================================
@pytest.mark.parametrize("version, faithful, allow", [
    ("4.8", False, True), ("4.8", False, False), ("4.1", True, True), ("4.5", True, False),
    ("4.7", False, True), ("4.1", False, True),
])
def test_mmu_update_of_a_pse_entry_is_einval(version, faithful, allow):
    e = Env(version, faithful, allow)
    snap = e.m.snapshot()
    for val in (pse(e.sp[1]), pse(e.sp[1], rw=False), pse(e.sp[1] + 1), pse(0x3fffe00),
                pse(e.sp[1]) | 0x10):                   # aligned, RO, unaligned, invalid, PCD
        assert e.update(e.l2, 5, val) == (-errno.EINVAL, 0)
        assert e.m.same_as(snap)


def test_pse_on_a_foreign_superpage_is_einval_not_eperm(env):
    _, mfn, _ = other_domain(env)
    snap = env.m.snapshot()
    assert env.update(env.l2, 0, pse(mfn)) == (-errno.EINVAL, 0)
    assert env.m.same_as(snap)


@pytest.mark.parametrize("version, faithful", [("4.1", True), ("4.5", True), ("4.8", False)])
def test_pse_flip_on_a_live_link_is_refused_before_the_fast_path(version, faithful):
    """XSA-148's shape: PSE set on a live L2 entry that links an L1 table. Faithful 4.1 and
    4.5 let the fast path take it for the other designs; 4.10's mask refuses it first."""
    e = Env(version, faithful)
    assert e.k.map_superpages(DIRECTMAP_BASE, [e.sp[1]], True) == 0
    old = e.m.mem.read(e.l2, 0)
    snap = e.m.snapshot()
    assert e.update(e.l2, 0, old | _PAGE_PSE) == (-errno.EINVAL, 0)
    assert e.m.same_as(snap) and e.m.violations == []


def test_a_batch_of_pse_maps_takes_no_vectorised_path(env):
    reqs = [MmuUpdate((env.l2 << 12) | (100 + i) * 8, pse(env.sp[i % N])) for i in range(12)]
    snap = env.m.snapshot()
    done = [-1]
    assert hc(env.m, env.g, HYPERVISOR_mmu_update, reqs, done) == -errno.EINVAL
    assert done == [0] and env.m.same_as(snap)


@pytest.mark.parametrize("how", ["link", "pin"])
def test_a_new_l2_table_with_a_pse_entry_fails_validation(env, how):
    """The guest writes a PSE entry into a fresh frame (still an ordinary page), then links it
    from its L3 or pins it as an L2: alloc_l2_table's get_page_from_l2e refuses it."""
    frame = env.k._alloc_table()
    env.k._write_own(frame, 7, pse(env.sp[2]))
    l3 = env.k.tables[(3, DIRECTMAP_BASE >> 39)]
    snap = env.m.snapshot()
    if how == "link":
        assert env.update(l3, 1, make_pte(frame, LINK)) == (-errno.EINVAL, 0)
    else:
        done = [-1]
        assert hc(env.m, env.g, HYPERVISOR_mmuext_op,
                  [MmuextOp(MMUEXT_PIN_L2_TABLE, frame)], done) == -errno.EINVAL
        assert done == [0]
    assert env.m.same_as(snap)
    assert env.frame(frame)[1] & PGT_validated == 0
    assert env.frames(env.sp[2]) == (PGC_allocated | 1, 0)


def test_the_same_l2_table_without_pse_validates(env):
    frame = env.k._alloc_table()
    env.k._write_own(frame, 7, make_pte(env.k._alloc_table(), LINK))
    l3 = env.k.tables[(3, DIRECTMAP_BASE >> 39)]
    assert env.update(l3, 1, make_pte(frame, LINK)) == (0, 1)
    assert env.frame(frame)[1] == PGT_l2_page_table | PGT_validated | 1


# =====================================================================================
# MARK_SUPER / UNMARK_SUPER
# =====================================================================================
@pytest.mark.parametrize("version", ["4.1", "4.5", "4.7", "4.8"])
@pytest.mark.parametrize("cmd", [MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER])
@pytest.mark.parametrize("target", ["aligned", "unaligned", "invalid"])
def test_mark_and_unmark_are_eopnotsupp_whatever_the_release(version, cmd, target):
    e = Env(version)
    mfn = {"aligned": e.sp[1], "unaligned": e.sp[1] + 3, "invalid": 0x3fffe00}[target]
    snap = e.m.snapshot()
    done = [-1]
    assert hc(e.m, e.g, HYPERVISOR_mmuext_op, [MmuextOp(cmd, mfn)], done) == -errno.EOPNOTSUPP
    assert done == [0] and e.m.same_as(snap)
    assert e.k.mark_superpage(e.sp[0]) == -errno.EOPNOTSUPP


def test_dom0_marking_for_a_guest_is_eopnotsupp_too(env):
    snap = env.m.snapshot()
    done = [-1]
    assert hc(env.m, 0, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_MARK_SUPER, env.sp[0])], done,
              env.g) == -errno.EOPNOTSUPP
    assert env.m.same_as(snap)


# =====================================================================================
# Destruction, and a whole run
# =====================================================================================
def test_destroying_a_guest_with_fallback_mappings_frees_everything(env):
    assert env.k.map_superpages(DIRECTMAP_BASE, env.sp[:2], True) == 0
    assert env.k.map_superpages(DIRECTMAP_BASE + 2 * SP, [env.sp[0]], False) == 0
    assert env.m.domain(env.g).tot_pages == 4 * 512 + 6     # L4, L3, L2, 3 fallback L1s
    assert env.m.destroy_domain(env.g) == 0
    assert env.m.domain(env.g) is None
    assert env.m.heap.free_frames == 16384                  # every frame of the 64 MiB
    assert_clean(env.m)


#: per-op refcount deltas (get_page, get_page_type, put_page, put_page_type) of a fallback
#: 2 MiB operation on the default workload, by (op, writable)
PER_OP = {("map", True): (514, 513, 1, 0), ("map", False): (514, 1, 1, 0),
          ("remap", False): (1024, 0, 1024, 512), ("remap", True): (1024, 512, 1024, 0)}


def test_the_default_workload_on_none():
    cfg = load_config("configs/default.yaml")
    s = start(cfg, build_memory_map(cfg), "none")
    m = s.machine
    rw_of: dict[tuple[str, int], bool] = {}
    n_map = n_mark = 0
    for st, d in _steps_with_deltas(s):
        op = st.op
        if st.index % 50 == 0:
            assert_clean(m)
        if op.op in ("mark", "unmark"):
            assert not st.ok and st.errno == "EOPNOTSUPP" and d == (0, 0, 0, 0)
            n_mark += 1
            continue
        assert st.ok, st
        if op.op == "map":
            assert d == PER_OP[("map", op.writable)]
            rw_of[(op.domain, op.slot)] = op.writable
            n_map += 1
        elif op.op == "remap":
            assert d == PER_OP[("remap", op.writable)]
            rw_of[(op.domain, op.slot)] = op.writable
        elif op.op == "unmap":
            rw = rw_of.pop((op.domain, op.slot))
            assert d == (1, 0, 514, 513 if rw else 1)
    assert (s.ops_done, n_map, n_mark) == (300, 106, 18)
    assert m.superpage.stats == {"slow_get": 0, "slow_put": 0, "fast_get": 0, "fast_put": 0}
    assert_clean(m)
    assert s.teardown() == (0, 0)


def _steps_with_deltas(s):
    """Each step with its refcount deltas (get_page, get_page_type, put_page, put_page_type)."""
    stats = s.machine.refs.stats
    now = lambda: (stats.get_page, stats.get_page_type, stats.put_page, stats.put_page_type)
    mark = []
    for st in s.steps(before=lambda i, op: mark.append(now())):
        yield st, tuple(a - b for a, b in zip(now(), mark.pop()))


def test_the_vectorised_l1_validation_equals_the_entry_loop():
    """A fallback L1 table (512 consecutive frames, one flag set) is validated and
    devalidated with RefCounts' range forms; observed (here: word_changed), the entry-by-
    entry loop runs instead. Both leave the same machine and count the same."""
    runs = []
    for observed in (False, True):
        e = Env()
        o, _, _ = other_domain(e)
        ops = [lambda: e.k.map_superpages(DIRECTMAP_BASE, e.sp[:2], True),
               lambda: e.k.map_superpages(DIRECTMAP_BASE + 2 * SP, [e.sp[0]], False),
               lambda: e.k.remap(DIRECTMAP_BASE, False),
               lambda: e.k.unmap(DIRECTMAP_BASE + SP),
               lambda: e.k.map_superpages(DIRECTMAP_BASE + 3 * SP,
                                          [e.m.domain(o).p2m.get(0)], True),   # refused
               lambda: e.k.unmap(DIRECTMAP_BASE, 3)]
        rcs = []
        with e.m.events.listening(**({"word_changed": lambda *a: None} if observed else {})):
            for op in ops:
                rcs.append(op())
                assert_clean(e.m)
        runs.append((rcs, e.m.snapshot(), e.m.refs.stats.as_dict(), dict(e.m.pt_stats)))
    assert runs[0][0] == [0, 0, 0, 0, -errno.EBUSY, 0]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("design", ["per-mapping", "none"])
def test_the_set_up_reserves_one_l1_frame_per_slot_without_pv_superpages(design):
    """configs/default.yaml: 128 slots and 4 windows per guest. Without PV superpages the
    pool has 128 more frames, populated at set-up (one populate_physmap); with them,
    nothing changes: a pool of 10 (the L4, L3, the slots' L2, the windows' L2 and 4 L1s,
    2 spare)."""
    cfg = load_config("configs/default.yaml")
    s = start(cfg, build_memory_map(cfg), design)
    lay = s.workload.layout["web"]
    assert (len(lay.slots), len(lay.windows)) == (128, 4)
    assert (lay.pool_pages(), lay.pool_pages(fallback=True)) == (10, 138)
    k = s.kernels["web"]
    d = s.machine.domain(k.domid)
    fallback = design == "none"
    assert d.max_pages == 64 * 512 + (138 if fallback else 10)
    assert len(k._l1_free) == (128 if fallback else 0)
    # the 8 tables (+ the reserved frames)
    assert d.tot_pages == 64 * 512 + 8 + (128 if fallback else 0)
    # per guest: the 2 MiB extents, one call per table, (one for the reserved frames)
    assert s.machine.hypercall.stats["memory_op"].calls == 2 * (1 + 8 + fallback)


def test_xen_4_22_is_none_pse_einval_mark_eopnotsupp():
    """RELEASE-4.22.0: no PV superpages (56fff3e5e9, d3b4e23c06). get_page_from_l2e refuses
    a PSE entry by L2_DISALLOW_MASK (-EINVAL); do_mmuext_op answers MARK_SUPER /
    UNMARK_SUPER -EOPNOTSUPP and nothing else; the machine is not hypothetical, its label
    is the release's, and the guest's 2 MiB is the L1-table fallback."""
    env = Env(version="4.22")
    m = env.m
    assert not m.hypothetical and m.release_label == "Xen 4.22"
    snap = env.snapshot()
    assert env.update(env.l2, 0, pse(env.sp[0])) == (-errno.EINVAL, 0)
    assert env.mmuext(MMUEXT_MARK_SUPER, env.sp[0]) == -errno.EOPNOTSUPP
    assert env.mmuext(MMUEXT_UNMARK_SUPER, env.sp[0] + 1) == -errno.EOPNOTSUPP
    assert env.same_as(snap)
    assert env.k.map_superpages(DIRECTMAP_BASE, [env.sp[1]]) == 0
    assert env.frame(env.sp[1] + 7) == (PGC_allocated | 2, WR1)
    assert_clean(m)
