"""The five superpage refcount designs, behind one interface (xensim.designs._superpage).

One behavioural suite runs against every design: a guest on the 64 MiB machine
(PDX none, so page == mfn) owns four superpages at MFNs 0, 0x200, 0x400, 0x600
and maps them with PSE entries of one live L2 table, through mmu_update and
mmuext_op; the auditor runs after every hypercall (conftest.hc).

What every design must do alike: a RW mapping holds get_page_and_type(writable)
on all 512 frames (count_info PGC_allocated|2, type writable|validated|1 after
the first); the last unmapping gives them back; a type conflict or a foreign
superpage is refused and leaves the machine bit for bit as it was; destroying
the domain returns every frame to the heap.

Where the designs differ, by design (each difference has its own test below):

==================  ==========  ===============  =================  ==============  =====
                    metadata    2nd mapping      read-only mapping  MARK_SUPER      race
==================  ==========  ===============  =================  ==============  =====
per-mapping         none        512 more refs    writable refs      option off      none
pageinfo-count      8 B/frame   count only       writable (1 cnt)   pin: 1 count    safe
superpage-info      16 B/2 MiB  count only       general refs only  pin: 1 RW count safe
                                                 (its own count)
xen-4.1             8 B/2 MiB   count only       writable (1 cnt)   SGT_mark        safe
sketch (BUGGY)      8 B/2 MiB   count only       writable (1 cnt)   none            leaks
==================  ==========  ===============  =================  ==============  =====
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

from xensim import (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op, Machine, MemoryMap,
                    RefcountBug, audit, load_preset, overhead)
from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
from xensim.xen._mmu import (MMUEXT_MARK_SUPER, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE,
                         MMUEXT_UNMARK_SUPER, MmuextOp, MmuUpdate)
from xensim.mem._page_info import (PGC_allocated, PGT_l1_page_table, PGT_validated,
                               PGT_writable_page, SGT_count_mask, SGT_dynamic, SGT_mark)
from xensim.xen._pagetable import _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER, make_pte
from xensim.designs import REGISTRY, make_design

from conftest import assert_clean, hc

ALL = ["per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch"]
COUNTING = [n for n in ALL if n != "per-mapping"]          # a count per superpage
MARKING = ["pageinfo-count", "superpage-info", "xen-4.1"]  # MMUEXT_MARK_SUPER supported
NO_MARK = ["per-mapping", "sketch"]

ALLOC1 = PGC_allocated | 1          # an allocated frame: the owner's reference only
WR = PGT_writable_page | PGT_validated
MARK = 1 << 63                      # pageinfo-count / superpage-info: the pinned word's flag
N = 4                               # superpages the guest owns


def pse(mfn: int, rw: bool = True) -> int:
    return make_pte(mfn, _PAGE_PRESENT | _PAGE_USER | _PAGE_PSE | (_PAGE_RW if rw else 0))


class Env:
    """A guest owning superpages sp[0..3] (MFNs 0, 0x200, 0x400, 0x600) and a live L2 table."""

    def __init__(self, name: str, version: str = "4.8", faithful: bool = False):
        self.m = m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none", superpage=name,
                             version=version, faithful=faithful)
        self.g = m.create_domain("guest", N * 512 + 64)
        self.k = k = GuestKernel(m, self.g)
        assert k.populate(0, N * 512) == N and k.build() == 0
        self.sp = k.superpage_mfns(0, N)
        assert self.sp == [0, 0x200, 0x400, 0x600]
        self.l2, rc = k.ensure_table(DIRECTMAP_BASE, 2)
        assert rc == 0
        assert_clean(m)

    @property
    def design(self):
        return self.m.superpage

    def update(self, slot: int, val: int, *, caller: int | None = None) -> int:
        """mmu_update of entry ``slot`` of the L2 table (audited)."""
        return hc(self.m, self.g if caller is None else caller, HYPERVISOR_mmu_update,
                  [MmuUpdate((self.l2 << 12) | (slot * 8), val)])

    def map(self, slot: int, mfn: int, rw: bool = True) -> int:
        return self.update(slot, pse(mfn, rw))

    def unmap(self, slot: int) -> int:
        return self.update(slot, 0)

    def mmuext(self, cmd: int, mfn: int) -> int:
        return hc(self.m, self.g, HYPERVISOR_mmuext_op, [MmuextOp(cmd, mfn)])

    def pin_l1(self, mfn: int) -> None:
        assert self.mmuext(MMUEXT_PIN_L1_TABLE, mfn) == 0

    def other_domain(self) -> tuple[int, int, GuestKernel]:
        """A second guest with one superpage (MFN 0xa00) and its own page tables."""
        o = self.m.create_domain("other", 512 + 64)
        ko = GuestKernel(self.m, o)
        assert ko.populate(0, 512) == 1 and ko.build() == 0
        return o, ko.superpage_mfns(0, 1)[0], ko

    def frames(self, mfn: int) -> tuple[int, int]:
        """(count_info, type_info) shared by all 512 frames of the superpage at ``mfn``."""
        ci, ti, owner = self.m.frame_table.read_slices(self.m.mfn_to_page(mfn), 512)
        assert len(set(ci.tolist())) == 1 and len(set(ti.tolist())) == 1, "frames differ"
        return int(ci[0]), int(ti[0])

    def words(self, mfn: int) -> tuple[int, ...]:
        """What the design keeps for the superpage: () / the page_info field / table words."""
        d = self.design
        if d.name == "per-mapping":
            return ()
        if d.name == "pageinfo-count":
            return (d.field(mfn),)
        t = self.m.spage_table
        return tuple(t.read(d.spdx(mfn), w) for w in range(t.words_per_entry))

    def snapshot(self):
        """The machine, plus pageinfo-count's fields (which Machine.snapshot does not hold)."""
        d = self.design
        return self.m.snapshot(), d.snapshot() if d.name == "pageinfo-count" else None

    def same_as(self, snap) -> bool:
        d = self.design
        return self.m.same_as(snap[0]) and snap[1] == (
            d.snapshot() if d.name == "pageinfo-count" else None)

    def stats(self) -> tuple[int, int, int, int]:
        s = self.design.stats
        return s["slow_get"], s["slow_put"], s["fast_get"], s["fast_put"]


def rw_words(name: str, n: int, marked: bool = False) -> tuple[int, ...]:
    """The design's words for a superpage with ``n`` RW mappings (+ a mark)."""
    c = n + marked
    return {
        "per-mapping": (),
        "pageinfo-count": ((MARK if marked else 0) | c,),
        "superpage-info": (0, (MARK if marked else 0) | c),
        "xen-4.1": ((SGT_mark if marked else SGT_dynamic if c else 0) | c,),
        "sketch": (c,),
    }[name]


@pytest.fixture(params=ALL)
def env(request) -> Env:
    return Env(request.param)


@pytest.fixture(params=COUNTING)
def counting(request) -> Env:
    return Env(request.param)


@pytest.fixture(params=MARKING)
def marking(request) -> Env:
    return Env(request.param)


# =====================================================================================
# The interface
# =====================================================================================
@pytest.mark.parametrize("name", ALL)
def test_registered_with_the_interface(name):
    m = Machine(MemoryMap([(0, 64 << 20)]), "none", superpage=name)
    d = m.superpage
    assert d.name == name and type(d) is REGISTRY[name]
    assert d.stats == {"slow_get": 0, "slow_put": 0, "fast_get": 0, "fast_put": 0}
    assert d.description
    assert d.buggy == (name == "sketch")
    assert d.supports_mark == (name in MARKING)
    assert d.words_per_entry == (2 if name == "superpage-info" else 1)
    assert m.spage_table.words_per_entry == d.words_per_entry
    if d.buggy:
        assert "BUGGY" in d.description


def test_every_configurable_design_is_registered():
    from xensim.config import parse_config
    assert parse_config(f"compare: [{', '.join(ALL)}]\n").compare == list(ALL)
    for name in ALL:
        assert parse_config(f"hypervisor: {{superpage: {name}}}\n").hypervisor.superpage == name
    m = Machine(MemoryMap([(0, 64 << 20)]), "none")
    for name in ALL:
        assert make_design(name, m.design_host).name == name
    with pytest.raises(ValueError, match="unknown superpage design"):
        make_design("nope", m.design_host)


# =====================================================================================
# The behavioural suite: every design
# =====================================================================================
def test_first_rw_mapping_takes_512_writable_references(env):
    sp = env.sp[0]
    assert env.map(0, sp) == 0
    assert env.frames(sp) == (ALLOC1 + 1, WR | 1)
    assert env.words(sp) == rw_words(env.design.name, 1)
    assert env.stats() == (1, 0, 0, 0)
    assert env.frames(env.sp[1]) == (ALLOC1, 0)                      # the neighbour: untouched


def test_second_mapping(env):
    sp = env.sp[0]
    assert env.map(0, sp) == 0 and env.map(1, sp) == 0
    if env.design.name == "per-mapping":
        # 512 more references: count 3, type count 2, both slow
        assert env.frames(sp) == (ALLOC1 + 2, WR | 2)
        assert env.stats() == (2, 0, 0, 0)
    else:
        # only the count moves: the frames are as after the first mapping
        assert env.frames(sp) == (ALLOC1 + 1, WR | 1)
        assert env.stats() == (1, 0, 1, 0)
    assert env.words(sp) == rw_words(env.design.name, 2)


def test_map_unmap_sequence(env):
    sp = env.sp[1]
    steps = [env.map(0, sp), env.map(1, sp), env.unmap(0), env.map(2, sp), env.unmap(1),
             env.unmap(2), env.map(3, sp), env.unmap(3)]
    assert steps == [0] * 8
    if env.design.name == "per-mapping":
        assert env.stats() == (4, 4, 0, 0)                           # 4 maps, 4 unmaps: all slow
    else:
        # 0->1 (slow), 1->2, 2->1, 1->2, 2->1 (fast), 1->0 (slow), 0->1, 1->0 (slow)
        assert env.stats() == (2, 2, 2, 2)
    assert env.frames(sp) == (ALLOC1, WR)                             # type left, count 0
    assert env.words(sp) == rw_words(env.design.name, 0)


def test_distinct_superpages_are_independent(env):
    assert [env.map(i, mfn) for i, mfn in enumerate(env.sp)] == [0] * N
    assert env.stats() == (N, 0, 0, 0)
    assert env.unmap(2) == 0
    assert env.frames(env.sp[2]) == (ALLOC1, WR)
    assert all(env.frames(env.sp[i]) == (ALLOC1 + 1, WR | 1) for i in (0, 1, 3))
    assert env.stats() == (N, 1, 0, 0)


def test_type_conflict_refuses_and_changes_nothing(env):
    sp = env.sp[2]
    env.pin_l1(sp + 100)                         # frame 100 of the superpage becomes an L1 table
    snap, stats = env.snapshot(), env.stats()
    assert env.map(0, sp) == -errno.EINVAL
    assert env.same_as(snap) and env.stats() == stats
    assert env.m.frame_table.type_info(sp) == 0                      # frame 0: no type left behind
    assert env.words(sp) == rw_words(env.design.name, 0)


def test_type_conflict_at_the_last_frame(env):
    sp = env.sp[0]
    env.pin_l1(sp + 511)
    snap = env.snapshot()
    assert env.map(5, sp) == -errno.EINVAL
    assert env.same_as(snap)


def test_foreign_superpage_is_refused(env):
    """Another domain's unmapped, unmarked superpage: the 512 get_page fail, -EINVAL, as in
    Xen 4.1's get_superpage (get_spage_pages -> get_page_and_type fails; xen-facts 8)."""
    o, theirs, _ = env.other_domain()
    snap, stats = env.snapshot(), env.stats()
    assert env.map(0, theirs) == -errno.EINVAL
    assert env.same_as(snap) and env.stats() == stats


def test_foreign_superpage_mapped_by_its_owner_is_refused(env):
    """The fast path must check the owner too (xensim's check, -EPERM; Xen 4.1 had none
    there). per-mapping takes the 512 references at every map: get_page fails, -EINVAL."""
    o, theirs, ko = env.other_domain()
    assert ko.map_superpages(DIRECTMAP_BASE, [theirs]) == 0
    assert_clean(env.m)
    snap, stats = env.snapshot(), env.stats()
    assert env.map(0, theirs) == (-errno.EINVAL if env.design.name == "per-mapping" else -errno.EPERM)
    assert env.same_as(snap) and env.stats() == stats


@pytest.mark.parametrize("name", ALL)
def test_faithful_mode_checks_the_owner_only_when_taking_references(name):
    """docs/xen-facts.md section 8: Xen 4.1 checked the owner only on the NONE -> taken transition, so a domain
    could map a superpage another domain already had mapped. Faithful mode reproduces that
    for every counting design; per-mapping takes (and checks) the 512 references every time."""
    env = Env(name, version="4.1", faithful=True)
    o, theirs, ko = env.other_domain()
    snap = env.snapshot()
    assert env.map(0, theirs) == -errno.EINVAL                        # NONE: get_page refuses
    assert env.same_as(snap)
    assert ko.map_superpages(DIRECTMAP_BASE, [theirs]) == 0
    rc = env.m.hypercall(env.g, HYPERVISOR_mmu_update,
                         [MmuUpdate(env.l2 << 12, pse(theirs))])
    if name == "per-mapping":
        assert rc == -errno.EINVAL and audit(env.m).ok
    else:
        assert rc == 0                          # the guest now maps the other's memory:
        assert env.frames(theirs) == (ALLOC1 + 1, WR | 1)       # one set of references,
        assert env.words(theirs) == rw_words(name, 2)           # two mappings counted


def test_failed_batch_stops_and_reports_done(env):
    o, theirs, _ = env.other_domain()
    done = [0]
    reqs = [MmuUpdate((env.l2 << 12) | (i * 8), pse(mfn)) for i, mfn in
            enumerate([env.sp[0], theirs, env.sp[1]])]
    assert env.m.hypercall(env.g, HYPERVISOR_mmu_update, reqs, done) == -errno.EINVAL
    assert done == [1]
    assert_clean(env.m)
    assert env.frames(env.sp[0]) == (ALLOC1 + 1, WR | 1)
    assert env.frames(env.sp[1]) == (ALLOC1, 0)




@pytest.mark.parametrize("name", ALL)
def test_failed_l2_validation_undoes_its_superpages(name):
    """Pinning an L2 table whose entry 1 conflicts: entry 0's superpage is put back.
    (per-mapping and pageinfo-count keep no word in the superpage table.)"""
    env = Env(name)
    k, m = env.k, env.m
    table = k._alloc_table()
    k._write_own(table, 0, pse(env.sp[0]))
    k._write_own(table, 1, pse(env.sp[1]))
    env.pin_l1(env.sp[1] + 7)
    snap = env.snapshot()
    assert env.mmuext(MMUEXT_PIN_L2_TABLE, table) == -errno.EINVAL
    assert env.same_as(snap)
    # the undone transition is counted: statistics are calls, not state
    assert env.stats() == (1, 1, 0, 0)
    # and the same table with a good entry 1 pins: both superpages taken
    k._write_own(table, 1, pse(env.sp[2]))
    assert env.mmuext(MMUEXT_PIN_L2_TABLE, table) == 0
    assert env.frames(env.sp[0]) == env.frames(env.sp[2]) == (ALLOC1 + 1, WR | 1)


def test_remapping_a_superpage_entry_to_another(env):
    assert env.map(0, env.sp[0]) == 0
    assert env.map(0, env.sp[3]) == 0                   # new references first, then the old go
    assert env.frames(env.sp[0]) == (ALLOC1, WR)
    assert env.frames(env.sp[3]) == (ALLOC1 + 1, WR | 1)
    assert env.stats() == (2, 1, 0, 0)


def test_destroy_with_live_mappings_frees_everything(env):
    m, sp = env.m, env.sp
    assert env.map(0, sp[0]) == 0 and env.map(1, sp[0]) == 0
    assert env.map(2, sp[1], rw=False) == 0 and env.map(3, sp[2]) == 0
    if env.design.supports_mark:
        assert env.mmuext(MMUEXT_MARK_SUPER, sp[2]) == 0
        assert env.mmuext(MMUEXT_MARK_SUPER, sp[3]) == 0                  # marked, not mapped
    o, theirs, ko = env.other_domain()
    assert ko.map_superpages(DIRECTMAP_BASE, [theirs]) == 0
    assert m.destroy_domain(env.g) == 0
    assert env.g not in m.domains
    assert_clean(m)
    assert env.frames(theirs) == (ALLOC1 + 1, WR | 1)                     # the other is intact
    assert m.destroy_domain(o) == 0
    assert_clean(m)
    assert m.heap.free_frames == m.memmap.ram_frames
    assert list(m.domains) == [0]
    assert env.words(sp[0]) == env.words(sp[2]) == env.words(theirs) == rw_words(env.design.name, 0)
    assert m.spage_table.nonzero_entries().size == 0


def test_the_auditor_sees_what_the_design_holds(env):
    """Corrupting one frame, or the design's own word, is reported."""
    m, sp = env.m, env.sp[0]
    assert env.map(0, sp) == 0
    m.frame_table.set_count_info(sp + 3, ALLOC1 + 2)
    assert not audit(m).ok
    m.frame_table.set_count_info(sp + 3, ALLOC1 + 1)
    assert audit(m).ok
    if env.design.name == "pageinfo-count":
        d = env.design
        d._groups[0][sp] += 1
        rep = audit(m)
        assert not rep.ok and "page_info superpage count" in str(rep)
        d._groups[0][sp] -= 1
        d._groups[0][sp + 1] = 1                      # a count on a frame that is not a superpage's
        assert not audit(m).ok
        d._groups[0][sp + 1] = 0
    elif env.design.name != "per-mapping":
        t, e = m.spage_table, m.spage_table.entry_index(env.design.spdx(sp))
        t.store[-1, e] += np.uint64(1)
        assert not audit(m).ok
        t.store[-1, e] -= np.uint64(1)
    assert audit(m).ok


def test_superpage_above_the_pdx_hole(env):
    """Mask PDX squeezes bits 18-19: MFN 0x100000 (4 GiB) is page 0x40000, spdx 0x200."""
    name = env.design.name
    m = Machine(MemoryMap([(0, 64 << 20), (4 << 30, (4 << 30) + (64 << 20))], name="split"),
                "mask", superpage=name)
    g = m.create_domain("guest", 40 * 512)
    k = GuestKernel(m, g)
    assert k.populate(0, 33 * 512) == 33 and k.build() == 0    # the low 64 MiB, then 4 GiB
    high = k.superpage_mfns(32 * 512, 1)[0]
    assert high == 0x100000 and m.mfn_to_page(high) == 0x40000
    assert k.map_superpages(DIRECTMAP_BASE, [high, high]) == 0
    assert_clean(m)
    ci, ti, _ = m.frame_table.read_slices(0x40000, 512)
    assert (ci == ALLOC1 + (2 if name == "per-mapping" else 1)).all()
    assert (ti == WR | (2 if name == "per-mapping" else 1)).all()
    if name == "pageinfo-count":
        assert m.superpage.field(high) == 2 and m.superpage._groups.keys() == {4}
    elif name != "per-mapping":
        assert m.superpage.spdx(high) == 0x200
        assert m.spage_table.read(0x200, m.spage_table.words_per_entry - 1) & 0xFFFF == 2
    assert m.destroy_domain(g) == 0
    assert_clean(m)
    assert m.heap.free_frames == m.memmap.ram_frames


def test_long_batches_map_and_unmap(env):
    """Batches of >= 8 PSE updates may take the vectorised path (a design's get_superpages):
    the outcome is that of the requests in order."""
    m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none", superpage=env.design.name)
    g = m.create_domain("guest", 12 * 512 + 64)
    k = GuestKernel(m, g)
    assert k.populate(0, 12 * 512) == 12 and k.build() == 0
    mfns = k.superpage_mfns(0, 12)
    assert k.map_superpages(DIRECTMAP_BASE, mfns) == 0 and k.done == 12
    assert_clean(m)
    assert k.map_superpages(DIRECTMAP_BASE + (12 << 21), mfns[:9], writable=False) == 0
    assert_clean(m)
    assert k.unmap(DIRECTMAP_BASE, 21) == 0 and k.done == 21
    assert_clean(m)
    s = m.superpage.stats
    if env.design.name == "per-mapping":
        assert s == {"slow_get": 21, "slow_put": 21, "fast_get": 0, "fast_put": 0}
    elif env.design.name == "superpage-info":     # the read-only maps have their own count
        assert s == {"slow_get": 21, "slow_put": 21, "fast_get": 0, "fast_put": 0}
    else:
        assert s == {"slow_get": 12, "slow_put": 12, "fast_get": 9, "fast_put": 9}
    ci, ti, _ = m.frame_table.read_slices(0, 12 * 512)
    assert (ci == ALLOC1).all() and (ti & 0xFFFF == 0).all()


# =====================================================================================
# Read-only mappings: what each design takes (differs by design)
# =====================================================================================
def test_read_only_mapping(env):
    sp, name = env.sp[0], env.design.name
    assert env.map(0, sp, rw=False) == 0
    assert env.stats() == (1, 0, 0, 0)
    if name == "superpage-info":
        # its own RO count, whose 512 references are general only
        assert env.frames(sp) == (ALLOC1 + 1, 0)
        assert env.words(sp) == (1, 0)
    else:
        # one count for everything: writable references, also for read-only mappings
        assert env.frames(sp) == (ALLOC1 + 1, WR | 1)
        assert env.words(sp) == rw_words(name, 1)
    assert env.unmap(0) == 0
    assert env.stats() == (1, 1, 0, 0)
    assert env.words(sp) == rw_words(name, 0)


def test_read_only_and_read_write_together(env):
    sp, name = env.sp[0], env.design.name
    assert env.map(0, sp, rw=False) == 0 and env.map(1, sp) == 0
    if name == "per-mapping":
        assert env.frames(sp) == (ALLOC1 + 2, WR | 2)
        assert env.stats() == (2, 0, 0, 0)
    elif name == "superpage-info":
        # two 0->1 transitions, one per count: general + writable references
        assert env.frames(sp) == (ALLOC1 + 2, WR | 1)
        assert env.words(sp) == (1, 1)
        assert env.stats() == (2, 0, 0, 0)
    else:
        assert env.frames(sp) == (ALLOC1 + 1, WR | 1)
        assert env.words(sp) == rw_words(name, 2)
        assert env.stats() == (1, 0, 1, 0)
    assert env.unmap(1) == 0                                          # the RW mapping goes
    if name == "superpage-info":
        assert env.frames(sp) == (ALLOC1 + 1, WR) and env.words(sp) == (1, 0)
    else:
        assert env.frames(sp) == (ALLOC1 + 1, WR | 1)


def test_read_only_mapping_of_a_superpage_holding_a_page_table(env):
    """Only superpage-info can map read-only a superpage one of whose frames is an L1 table;
    and only there can a frame of a read-only mapped superpage become one."""
    sp, name = env.sp[0], env.design.name
    env.pin_l1(sp + 9)
    snap = env.snapshot()
    rc = env.map(0, sp, rw=False)
    if name == "superpage-info":
        assert rc == 0 and env.words(sp) == (1, 0)
        ft = env.m.frame_table
        assert ft.count_info(sp + 9) == ALLOC1 + 2                    # the pin's + the mapping's
        assert ft.type_info(sp + 9) & PGT_l1_page_table                # still an L1 table
        assert (ft.count_info(sp + 8), ft.type_info(sp + 8)) == (ALLOC1 + 1, 0)
        assert env.map(1, sp) == -errno.EINVAL                         # RW still conflicts
        assert env.words(sp) == (1, 0)
    else:
        assert rc == -errno.EINVAL and env.same_as(snap)
    sp2 = env.sp[1]
    assert env.map(2, sp2, rw=False) == 0
    rc = env.mmuext(MMUEXT_PIN_L1_TABLE, sp2 + 5)
    assert rc == (0 if name == "superpage-info" else -errno.EINVAL)


def test_remap_between_read_only_and_writable(env):
    """A revalidating RW -> RO flip: new reference first, then the old one goes."""
    sp, name = env.sp[0], env.design.name
    assert env.map(0, sp) == 0
    before = env.stats()
    assert env.update(0, pse(sp, rw=False)) == 0
    delta = tuple(a - b for a, b in zip(env.stats(), before))
    if name == "per-mapping":
        assert delta == (1, 1, 0, 0)                                  # 512 in, 512 out
    elif name == "superpage-info":
        assert delta == (1, 1, 0, 0)                                  # RO 0->1, RW 1->0
        assert env.frames(sp) == (ALLOC1 + 1, WR) and env.words(sp) == (1, 0)
    else:
        assert delta == (0, 0, 1, 1)                                  # one count: 1->2->1
        assert env.frames(sp) == (ALLOC1 + 1, WR | 1)


def test_xsa148_rw_flip_breaks_only_the_split_counts():
    """Xen 4.1 faithful: mod_l2_entry's fast path lets a guest set RW on a live read-only PSE
    entry without revalidation (XSA-148). For the one-count designs that is harmless to the
    counts (the references are writable anyway); superpage-info's RO count then holds general
    references under a writable mapping, and the unmapping puts an RW count that was never got."""
    for name in ALL:
        env = Env(name, version="4.1", faithful=True)
        sp = env.sp[0]
        assert env.map(0, sp, rw=False) == 0
        rc = env.m.hypercall(env.g, HYPERVISOR_mmu_update,
                             [MmuUpdate(env.l2 << 12, pse(sp, rw=True))])
        assert rc == 0
        clean = audit(env.m).ok
        assert env.m.hypercall(env.g, HYPERVISOR_mmu_update, [MmuUpdate(env.l2 << 12, 0)]) == 0
        if name == "superpage-info":
            assert not clean
            assert env.m.violations and "underflow" in env.m.violations[0]
            assert env.frames(sp) == (ALLOC1 + 1, 0)                  # RO references leaked
            assert not audit(env.m).ok
        else:
            assert clean and audit(env.m).ok and not env.m.violations


# =====================================================================================
# MARK_SUPER / UNMARK_SUPER
# =====================================================================================
def test_mark_takes_the_references_once(marking):
    env, sp, name = marking, marking.sp[0], marking.design.name
    assert env.mmuext(MMUEXT_MARK_SUPER, sp) == 0
    assert env.frames(sp) == (ALLOC1 + 1, WR | 1)
    assert env.words(sp) == rw_words(name, 0, marked=True)
    assert env.m.domains[env.g].marked == {sp}
    snap = env.snapshot()
    assert env.mmuext(MMUEXT_MARK_SUPER, sp) == -errno.EINVAL          # marked twice
    assert env.same_as(snap)
    assert env.mmuext(MMUEXT_UNMARK_SUPER, sp) == 0
    assert env.frames(sp) == (ALLOC1, WR) and env.words(sp) == rw_words(name, 0)
    assert env.m.domains[env.g].marked == set()
    snap = env.snapshot()
    assert env.mmuext(MMUEXT_UNMARK_SUPER, sp) == -errno.EINVAL        # not marked
    assert env.same_as(snap)
    assert env.stats() == (0, 0, 0, 0)                                 # marks are not mappings


def test_marked_superpage_churn_takes_no_slow_path(marking):
    env, sp, name = marking, marking.sp[1], marking.design.name
    assert env.mmuext(MMUEXT_MARK_SUPER, sp) == 0
    for _ in range(3):
        assert env.map(0, sp) == 0 and env.unmap(0) == 0
        assert env.frames(sp) == (ALLOC1 + 1, WR | 1)
    assert env.stats() == (0, 0, 3, 3)
    assert env.words(sp) == rw_words(name, 0, marked=True)


def test_unmark_while_mapped_keeps_the_references(marking):
    env, sp, name = marking, marking.sp[0], marking.design.name
    assert env.map(0, sp) == 0
    assert env.mmuext(MMUEXT_MARK_SUPER, sp) == 0                      # no new references
    assert env.frames(sp) == (ALLOC1 + 1, WR | 1)
    assert env.words(sp) == rw_words(name, 1, marked=True)
    assert env.mmuext(MMUEXT_UNMARK_SUPER, sp) == 0
    assert env.frames(sp) == (ALLOC1 + 1, WR | 1)                     # the mapping keeps them
    assert env.words(sp) == rw_words(name, 1)
    assert env.unmap(0) == 0
    assert env.frames(sp) == (ALLOC1, WR)
    assert env.stats() == (1, 1, 0, 0)


def test_mark_with_a_read_only_mapping(marking):
    env, sp, name = marking, marking.sp[0], marking.design.name
    assert env.map(0, sp, rw=False) == 0
    assert env.mmuext(MMUEXT_MARK_SUPER, sp) == 0
    if name == "superpage-info":                  # the mark pins the RW count: 512 writable refs
        assert env.frames(sp) == (ALLOC1 + 2, WR | 1)
        assert env.words(sp) == (1, MARK | 1)
    else:
        assert env.frames(sp) == (ALLOC1 + 1, WR | 1)
        assert env.words(sp) == rw_words(name, 1, marked=True)
    assert env.unmap(0) == 0 and env.mmuext(MMUEXT_UNMARK_SUPER, sp) == 0
    assert env.frames(sp) == (ALLOC1, WR) and env.words(sp) == rw_words(name, 0)


def test_mark_refusals_change_nothing(marking):
    env = marking
    o, theirs, _ = env.other_domain()
    env.pin_l1(env.sp[2] + 300)
    snap = env.snapshot()
    # not the owner, superpage untaken: Xen 4.1's mark_superpage -> get_spage_pages fails
    # (-EINVAL) and unmark_superpage finds no mark (-EINVAL)
    assert env.mmuext(MMUEXT_MARK_SUPER, theirs) == -errno.EINVAL
    assert env.mmuext(MMUEXT_MARK_SUPER, env.sp[2]) == -errno.EINVAL   # type conflict
    assert env.mmuext(MMUEXT_MARK_SUPER, env.sp[0] + 1) == -errno.EINVAL   # unaligned
    assert env.mmuext(MMUEXT_UNMARK_SUPER, theirs) == -errno.EINVAL
    assert env.same_as(snap)


def test_unmark_of_another_domains_mark_is_refused(marking):
    env = marking
    o, theirs, ko = env.other_domain()
    assert ko.mark_superpage(theirs) == 0
    snap = env.snapshot()
    assert env.mmuext(MMUEXT_UNMARK_SUPER, theirs) == -errno.EPERM
    assert env.same_as(snap)


@pytest.mark.parametrize("name", NO_MARK)
@pytest.mark.parametrize("version, rc", [("4.8", -errno.EOPNOTSUPP), ("4.7", -errno.ENOSYS),
                                         ("4.5", -errno.ENOSYS), ("4.1", -errno.ENOSYS)])
def test_no_mark_answers_as_option_off(name, version, rc):
    env = Env(name, version=version)
    snap = env.snapshot()
    assert env.mmuext(MMUEXT_MARK_SUPER, env.sp[0]) == rc
    assert env.mmuext(MMUEXT_UNMARK_SUPER, env.sp[0]) == rc
    # the release's check order: 4.1-4.5 look at the alignment first, 4.7 on the option
    unaligned = env.mmuext(MMUEXT_MARK_SUPER, env.sp[0] + 1)
    assert unaligned == (-errno.EINVAL if version in ("4.1", "4.5") else rc)
    assert env.same_as(snap) and env.m.domains[env.g].marked == set()


# =====================================================================================
# Concurrency, injected: a second CPU completes a get_superpage between the first CPU's
# taking of the 512 references and its cmpxchg. (Issue 6 explores all interleavings.)
# =====================================================================================
def test_losing_the_race_gives_the_references_back_except_in_the_sketch(env):
    m, d, g, sp = env.m, env.design, env.g, env.sp[0]
    real = m.refs.get_pages_and_type
    injected = []

    def take_then_race(first, n, dom, type):
        r = real(first, n, dom, type)
        if not injected:
            injected.append(1)
            assert d.get_superpage(sp, g, True) == 0          # CPU B: reads 0, takes, wins
        return r
    m.refs.get_pages_and_type = take_then_race
    assert d.get_superpage(sp, g, True) == 0                  # CPU A
    m.refs.get_pages_and_type = real
    assert injected
    d.put_superpage(sp, True)
    d.put_superpage(sp, True)
    if d.name == "sketch":
        # A lost the cmpxchg, retried with x = 1 and kept its 512 references: a leak
        assert env.frames(sp) == (ALLOC1 + 1, WR | 1)
        assert d.leaked == 1
        assert not audit(m).ok
        assert env.words(sp) == (0,)
    else:
        assert env.frames(sp) == (ALLOC1, WR)
        assert audit(m).ok
        assert env.words(sp) == rw_words(d.name, 0)
        if d.name == "per-mapping":
            assert env.stats() == (2, 2, 0, 0)                # no race to lose: two slow gets
        else:
            assert env.stats() == (1, 1, 1, 1)                # A gave back and took the fast path


def test_sketch_is_correct_run_alone():
    env = Env("sketch")
    sp = env.sp[0]
    for i in range(3):
        assert env.map(i, sp) == 0
    for i in range(3):
        assert env.unmap(i) == 0
    assert env.design.leaked == 0 and env.frames(sp) == (ALLOC1, WR)


# =====================================================================================
# Non-faithful refusals of impossible puts (a put with no mapping to put)
# =====================================================================================
@pytest.mark.parametrize("name", COUNTING)
def test_put_without_a_mapping_is_a_bug(name):
    env = Env(name)
    snap = env.snapshot()
    with pytest.raises(RefcountBug):
        env.design.put_superpage(env.sp[0], True)
    assert env.same_as(snap)




@pytest.mark.parametrize("name", MARKING)
def test_put_on_a_mark_alone_is_a_bug(name):
    """A mark pays for no mapping: a put on a superpage held only by its mark is refused."""
    env = Env(name)
    assert env.mmuext(MMUEXT_MARK_SUPER, env.sp[0]) == 0
    snap = env.snapshot()
    with pytest.raises(RefcountBug):
        env.design.put_superpage(env.sp[0], True)
    assert env.same_as(snap)
    assert env.mmuext(MMUEXT_UNMARK_SUPER, env.sp[0]) == 0


def _set_count_to_max(env, mfn: int) -> None:
    """Write the largest count the design can hold (no reference behind it: words only)."""
    d, t = env.design, env.m.spage_table
    if d.name == "pageinfo-count":
        assert d.cas_count(mfn, 0, 0, MARK - 1)
    elif d.name == "superpage-info":
        t.write(d.spdx(mfn), MARK - 1, word=1)
    else:
        t.write(d.spdx(mfn), SGT_dynamic | SGT_count_mask)


@pytest.mark.parametrize("name", ["pageinfo-count", "superpage-info", "xen-4.1"])
def test_count_overflow_refuses_a_mapping(name):
    env = Env(name)
    _set_count_to_max(env, env.sp[0])
    before = env.words(env.sp[0])
    assert env.m.hypercall(env.g, HYPERVISOR_mmu_update,
                           [MmuUpdate(env.l2 << 12, pse(env.sp[0]))]) == -errno.EINVAL
    assert env.words(env.sp[0]) == before




@pytest.mark.parametrize("name", MARKING)
def test_count_overflow_refuses_a_mark(name):
    env = Env(name)
    _set_count_to_max(env, env.sp[0])
    before = env.words(env.sp[0])
    assert env.m.hypercall(env.g, HYPERVISOR_mmuext_op,
                           [MmuextOp(MMUEXT_MARK_SUPER, env.sp[0])]) == -errno.EINVAL
    assert env.words(env.sp[0]) == before


# =====================================================================================
# Metadata: 0.2% (a count in every page_info) vs 0.0004% (one 8-byte word per 2 MiB)
# =====================================================================================
# The teaching machine (configs/machines/teaching.yaml), PDX mask: RAM 3,220,831,232 B
# (0x9fc00 + 0x7ff00000 + 0x40000000). PDX space [0, 0xc0000) after squeezing bit 19:
# 12 PDX groups of 65,536 frames. Superpages with RAM: spdx 0..1023 (low 2 GiB) and
# 1024..1535 (the GiB above 4 GiB) = 1536 = 3 chunks of 512 entries, all full.
TEACHING_RAM = 3_220_831_232
TEACHING_METADATA = {
    "per-mapping": 0,
    "pageinfo-count": 8 * 65_536 * 12,            # 6,291,456 B = 6 MiB
    "xen-4.1": 8 * 512 * 3,                       # 12,288 B
    "sketch": 8 * 512 * 3,
    "superpage-info": 16 * 512 * 3,               # 24,576 B: two counts per 2 MiB
}


@pytest.fixture(scope="module")
def teaching():
    return {name: Machine(load_preset("teaching"), "mask", superpage=name) for name in ALL}


@pytest.mark.parametrize("name", ALL)
def test_metadata_bytes_on_teaching(teaching, name):
    m = teaching[name]
    assert m.superpage.metadata_bytes() == TEACHING_METADATA[name]
    row = {"per-mapping": "per-mapping", "pageinfo-count": "pageinfo-count",
           "xen-4.1": "sparse-8B", "sketch": "sparse-8B", "superpage-info": "sparse-16B"}[name]
    assert overhead(m).design(row).bytes == TEACHING_METADATA[name]


def test_the_two_percentages(teaching):
    pct = {n: 100 * teaching[n].superpage.metadata_bytes() / TEACHING_RAM for n in ALL}
    assert pct["pageinfo-count"] == pytest.approx(0.19533, abs=1e-5)        # ~0.2%
    assert pct["xen-4.1"] == pct["sketch"] == pytest.approx(0.000382, abs=1e-6)   # ~0.0004%
    assert pct["superpage-info"] == pytest.approx(0.000763, abs=1e-6)       # two words: x2
    # a count per frame costs 512 times a count per superpage
    assert TEACHING_METADATA["pageinfo-count"] == 512 * TEACHING_METADATA["xen-4.1"]


def test_pageinfo_count_fields_live_in_the_first_frame_and_materialise_lazily():
    env = Env("pageinfo-count")
    d = env.design
    assert d.allocated_bytes() == 0
    assert env.map(0, env.sp[2]) == 0 and env.map(1, env.sp[2]) == 0
    assert d.field(env.sp[2]) == 2
    assert all(d.field(env.sp[2] + i) == 0 for i in (1, 100, 511))
    assert d.allocated_bytes() == 8 * 65_536                          # one PDX group


# =====================================================================================
# TLB flushes a type change asks for (__get_page_type's tlbflush_filter, Xen 4.1 and 4.8)
# =====================================================================================
def test_tlb_flush_when_a_once_writable_frame_becomes_a_page_table(env):
    """__put_page_type stamps a frame's tlbflush_timestamp when its last typed reference
    goes; __get_page_type flushes the owner's CPUs when the frame then changes type and a
    CPU has not flushed since (4.1, 4.8). After an RW superpage mapping and its unmapping,
    the first of its frames to become an L1 table costs one flush, on every design; the
    next costs none (the flush covered every older stamp)."""
    sp, m = env.sp[1], env.m
    r = m.refs
    assert env.map(0, sp) == 0 and env.unmap(0) == 0
    f0 = r.stats.tlb_flushes
    assert r.tlbflush_timestamp(m.mfn_to_page(sp + 5)) == r.tlbflush_clock
    env.pin_l1(sp + 5)
    assert r.stats.tlb_flushes == f0 + 1 and r.tlbflush_time[env.g] == r.tlbflush_clock
    env.pin_l1(sp + 6)
    assert r.stats.tlb_flushes == f0 + 1


def test_tlb_flush_under_a_read_only_mapping_only_without_writable_references(env):
    """The designs differ: a read-only superpage mapping takes 512 writable references on
    every design but superpage-info (its RO count takes general references only). So only
    there can a frame of a read-only mapped, once writable superpage become an L1 table,
    and that type change flushes (the stale writable TLB entries); elsewhere it is refused
    (-EINVAL, type conflict) and nothing is flushed."""
    sp, name, r = env.sp[1], env.design.name, env.m.refs
    assert env.map(0, sp) == 0 and env.unmap(0) == 0
    assert env.map(1, sp, rw=False) == 0
    f0 = r.stats.tlb_flushes
    rc = env.mmuext(MMUEXT_PIN_L1_TABLE, sp + 5)
    if name == "superpage-info":
        assert rc == 0 and r.stats.tlb_flushes == f0 + 1
    else:
        assert rc == -errno.EINVAL and r.stats.tlb_flushes == f0


def test_a_mark_keeps_the_frames_typed_no_stamp_no_flush(marking):
    """MARK_SUPER holds the 512 writable references: unmapping leaves them, no frame's type
    count falls to 0, nothing is stamped (and no frame can change type while marked)."""
    env = marking
    sp, r, m = env.sp[1], env.m.refs, env.m
    assert env.mmuext(MMUEXT_MARK_SUPER, sp) == 0
    assert env.map(0, sp) == 0 and env.unmap(0) == 0
    assert r.tlbflush_timestamp(m.mfn_to_page(sp + 5)) == 0
    assert env.mmuext(MMUEXT_PIN_L1_TABLE, sp + 5) == -errno.EINVAL
