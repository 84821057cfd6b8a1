"""Isolation: a guest can take references only on its own frames, and can never make one of
its page tables writable.

Every entry level (L1 read-only, L1 writable, L2, L2 PSE, L3, L4) is pointed at every kind
of frame that is not the guest's, on conftest.holey_machine (RAM frames 0..0x7ff and
0x1000..0x17ff, a hole 0x800..0xfff that shares a PDX group with RAM, max_page 0x1800) and
on a sparse machine (RAM 0..0x7ff and 0x20000..0x207ff: frame 0x10000 lies in a PDX group
with no RAM, so it has no page_info at all). Each refusal has its exact errno and leaves
the machine bit for bit as it was; the auditor runs after every call.

Layout (the same MFNs on both machines): guest superpage 0x000 and frames 0x200..0x20f,
of which 0x200..0x203 are pinned as L1..L4; other domain superpage 0x400 and frames
0x210..0x217 (0x210 pinned as its L1); superpage 0x600 free.
"""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from xensim import HYPERVISOR_update_va_mapping, Machine, MemoryMap
from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
from xensim.xen._mmu import (MMU_MACHPHYS_UPDATE, MMUEXT_MARK_SUPER, MMUEXT_NEW_BASEPTR,
                         MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE,
                         MMUEXT_PIN_L4_TABLE, MMUEXT_UNMARK_SUPER, MMUEXT_UNPIN_TABLE, MmuextOp)
from xensim.mem._page_info import (PGC_allocated, PGT_l1_page_table, PGT_pinned, PGT_validated,
                               PGT_writable_page, SGT_dynamic, SGT_mark)
from xensim.xen._pagetable import _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, make_pte

from conftest import MiB, ext, hc, holey_machine, mmu, populate, ptr, refused, two_domains, words

P, RW, PSE = _PAGE_PRESENT, _PAGE_RW, _PAGE_PSE
ALLOC1 = PGC_allocated | 1
WR = PGT_writable_page | PGT_validated
T = {1: 0x200, 2: 0x201, 3: 0x202, 4: 0x203}
PIN_CMD = {1: MMUEXT_PIN_L1_TABLE, 2: MMUEXT_PIN_L2_TABLE, 3: MMUEXT_PIN_L3_TABLE,
           4: MMUEXT_PIN_L4_TABLE}
G_SP, G_F = 0x000, 0x204
O_SP, O_L1 = 0x400, 0x210

# entry kind: (table level, flags)
LEVELS = {"l1-ro": (1, P), "l1-rw": (1, P | RW), "l2": (2, P | RW), "l2-pse": (2, P | RW | PSE),
          "l3": (3, P | RW), "l4": (4, P | RW)}
# target kind: (machine, 512-aligned MFN)
TARGETS = {
    "foreign": ("holey", O_SP),
    "free": ("holey", 0x600),
    "hole": ("holey", 0x800),
    "hole-no-frame-table": ("sparse", 0x10000),
    "max-page": ("holey", 0x1800),
    "huge": ("holey", (1 << 40) - 512),
}
#: get_page_from_l1e (4.5 on, here 4.8): a RAM frame with a frame table that is not the
#: guest's (or free) is could_not_pin, -EBUSY; an MFN that is not RAM takes Xen's I/O-memory
#: path, which a domain without I/O memory fails with -EPERM (-EINVAL for INVALID_MFN,
#: 2**40 - 1, the last frame of "huge")
L1_ERR = {"foreign": errno.EBUSY, "free": errno.EBUSY, "hole": errno.EBUSY,
          "hole-no-frame-table": errno.EPERM, "max-page": errno.EPERM, "huge": errno.EPERM}


def sparse_machine() -> Machine:
    return Machine(MemoryMap([(0, 8 * MiB), (512 * MiB, 520 * MiB)], name="sparse"), "none")


def build(kind: str = "holey", version: str = "4.8") -> SimpleNamespace:
    memmap = (holey_machine() if kind == "holey" else sparse_machine()).memmap
    lay = two_domains(Machine(memmap, "none", version=version), (G_SP,), O_SP)
    m, g, o = lay.m, lay.g, lay.o
    assert ext(m, g, *[MmuextOp(PIN_CMD[n], T[n]) for n in (1, 2, 3, 4)]) == (0, 4)
    assert ext(m, o, MmuextOp(MMUEXT_PIN_L1_TABLE, O_L1)) == (0, 1)
    assert m.heap.is_free(0x600) and m.heap.is_free(0x7ff)
    return lay


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("level", list(LEVELS))
def test_entry_to_a_frame_that_is_not_the_guests(level, target, request):
    machine, mfn = TARGETS[target]
    lay = build(machine)
    n, flags = LEVELS[level]
    # l2-pse: Xen 4.1's get_superpage on an unmapped, unmarked superpage takes the 512
    # references (get_spage_pages) and get_page fails: -EINVAL, whoever owns it
    err = errno.EINVAL
    if n == 1:
        err = L1_ERR[target]
    m = lay.m
    # the superpage's first frame, and for 4 KiB entries also its last and a middle one
    mfns = [mfn] if level == "l2-pse" else [mfn, mfn + 511, mfn + 7]
    for target_mfn in mfns:
        e = errno.EINVAL if n == 1 and target_mfn == (1 << 40) - 1 else err
        refused(m, lambda: mmu(m, lay.g, (ptr(T[n], 5), make_pte(target_mfn, flags))), (-e, 0))
    # and through a table being validated (pinned): same verdict, errno of the validation
    m.mem.write(G_F, 5, make_pte(mfn, flags))
    refused(m, lambda: ext(m, lay.g, MmuextOp(PIN_CMD[n], G_F)), (-err, 0))


def test_software_bits_52_to_62_do_not_change_the_target():
    """Bits 52-62 are software bits, flags and not address bits (get_pte_flags; Xen
    4.1-4.8 accept them in every entry but bit 62 in L1): set on an entry to a frame that
    is not the guest's, the entry is still refused for its frame, with that frame's errno."""
    lay = build()
    m = lay.m
    for n, flags in LEVELS.values():
        target, err = ((O_SP, errno.EINVAL) if flags & PSE else
                       (O_L1, errno.EBUSY if n == 1 else errno.EINVAL))   # 4.8: could_not_pin
        for bit in (52, 61):
            refused(m, lambda: mmu(m, lay.g, (ptr(T[n], 0), make_pte(target, flags) | 1 << bit)),
                    (-err, 0))


@pytest.mark.parametrize("target", list(TARGETS))
def test_pin_of_a_frame_that_is_not_the_guests(target):
    machine, mfn = TARGETS[target]
    lay = build(machine)
    m = lay.m
    for n in (1, 2, 3, 4):
        for cmd_mfn in (mfn, mfn + 1):
            refused(m, lambda: ext(m, lay.g, MmuextOp(PIN_CMD[n], cmd_mfn)), (-errno.EINVAL, 0))
    refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_NEW_BASEPTR, mfn)), (-errno.EINVAL, 0))
    refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_UNPIN_TABLE, mfn)), (-errno.EINVAL, 0))


# MARK_SUPER / UNMARK_SUPER of a superpage that is not the guest's own, per release: Xen
# 4.1's mark_superpage fails taking the 512 references (get_spage_pages), unmark_superpage
# finds no mark: -EINVAL whoever owns it
_MARK = {target: errno.EINVAL for target in TARGETS}


@pytest.mark.parametrize("version", ["4.1", "4.5", "4.7", "4.8"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_mark_super_of_a_superpage_that_is_not_the_guests(target, version):
    machine, mfn = TARGETS[target]
    lay = build(machine, version)
    m = lay.m
    for cmd in (MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER):
        refused(m, lambda: ext(m, lay.g, MmuextOp(cmd, mfn)), (-_MARK[target], 0))
    if target == "foreign":
        # marked by its owner: MARK again is Xen's duplicate mark (-EINVAL); UNMARK of another
        # domain's mark Xen 4.1 let through (section 8): xensim -EPERM
        assert ext(m, lay.o, MmuextOp(MMUEXT_MARK_SUPER, O_SP)) == (0, 1)
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_MARK_SUPER, mfn)), (-errno.EINVAL, 0))
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_UNMARK_SUPER, mfn)), (-errno.EPERM, 0))
        assert m.spage_table.read(O_SP >> 9) == SGT_mark | 1


class TestSharedSuperpage:
    """docs/xen-facts.md section 8: in Xen's merged get_superpage the owner is checked only on NONE -> taken.
    xensim (non-faithful) checks it on every map, mark and unmark."""

    @pytest.fixture
    def lay(self):
        lay = build()
        m = lay.m
        assert ext(m, lay.o, MmuextOp(MMUEXT_PIN_L2_TABLE, 0x211)) == (0, 1)
        return lay

    def test_map_of_a_superpage_another_domain_has_dynamic(self, lay):
        m = lay.m
        assert mmu(m, lay.o, (ptr(0x211, 0), make_pte(O_SP, P | RW | PSE))) == (0, 1)
        assert m.spage_table.read(O_SP >> 9) == SGT_dynamic | 1
        refused(m, lambda: mmu(m, lay.g, (ptr(T[2], 0), make_pte(O_SP, P | PSE))), (-errno.EPERM, 0))

    def test_map_of_a_superpage_another_domain_has_marked(self, lay):
        m = lay.m
        assert ext(m, lay.o, MmuextOp(MMUEXT_MARK_SUPER, O_SP)) == (0, 1)
        assert m.spage_table.read(O_SP >> 9) == SGT_mark | 1
        refused(m, lambda: mmu(m, lay.g, (ptr(T[2], 0), make_pte(O_SP, P | PSE))), (-errno.EPERM, 0))
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_UNMARK_SUPER, O_SP)), (-errno.EPERM, 0))
        # Xen 4.1's mark_superpage: a duplicate mark is -EINVAL, whoever asks
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_MARK_SUPER, O_SP)), (-errno.EINVAL, 0))

    def test_mark_of_a_superpage_another_domain_has_dynamic(self, lay):
        """Xen 4.1's mark_superpage on a DYNAMIC superpage takes nothing and checks no owner
        (section 8): xensim refuses another domain's (-EPERM); its UNMARK finds no mark."""
        m = lay.m
        assert mmu(m, lay.o, (ptr(0x211, 0), make_pte(O_SP, P | RW | PSE))) == (0, 1)
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_MARK_SUPER, O_SP)), (-errno.EPERM, 0))
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_UNMARK_SUPER, O_SP)), (-errno.EINVAL, 0))

    def test_other_domain_cannot_map_the_guests_superpage(self, lay):
        m = lay.m
        assert mmu(m, lay.g, (ptr(T[2], 0), make_pte(G_SP, P | PSE))) == (0, 1)
        refused(m, lambda: mmu(m, lay.o, (ptr(0x211, 0), make_pte(G_SP, P | RW | PSE))), (-errno.EPERM, 0))


class TestOtherDomainsTables:
    def test_cannot_write_entries_into_another_domains_table(self):
        lay = build()
        m = lay.m
        for val in (make_pte(G_F, P | RW), make_pte(0x211, P), 0):
            refused(m, lambda: mmu(m, lay.g, (ptr(O_L1, 0), val)), (-errno.EINVAL, 0))

    def test_cannot_write_into_another_domains_plain_frame(self):
        lay = build()
        m = lay.m
        refused(m, lambda: mmu(m, lay.g, (ptr(0x212, 3), 0x1234)), (-errno.EINVAL, 0))
        refused(m, lambda: mmu(m, lay.g, ((0x212 << 12) | MMU_MACHPHYS_UPDATE, 1)), (-errno.EINVAL, 0))

    def test_cannot_unpin_or_load_another_domains_table(self):
        lay = build()
        m = lay.m
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_UNPIN_TABLE, O_L1)), (-errno.EINVAL, 0))
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_NEW_BASEPTR, O_L1)), (-errno.EINVAL, 0))
        assert words(m, O_L1) == (ALLOC1 + 1, PGT_l1_page_table | PGT_validated | PGT_pinned | 1)

    def test_cannot_act_as_another_domain(self):
        lay = build()
        m = lay.m
        refused(m, lambda: mmu(m, lay.g, (ptr(O_L1, 0), make_pte(0x212, P)), foreigndom=lay.o),
                (-errno.EPERM, 0))
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_UNPIN_TABLE, O_L1), foreigndom=lay.o),
                (-errno.EPERM, -1))


# -- a guest never makes its own page tables writable ---------------------------------------
class TestTablesStayReadOnly:
    @pytest.mark.parametrize("level", [1, 2, 3, 4])
    def test_writable_l1_entry_to_a_live_table(self, level):
        """A writable L1 entry to a live table: get_page_type(PGT_writable_page) fails, and
        get_page_from_l1e (4.8) answers could_not_pin, -EBUSY."""
        lay = build()
        m = lay.m
        refused(m, lambda: mmu(m, lay.g, (ptr(T[1], 9), make_pte(T[level], P | RW))), (-errno.EBUSY, 0))
        # read-only is fine: the guest may read its tables
        assert mmu(m, lay.g, (ptr(T[1], 9), make_pte(T[level], P))) == (0, 1)
        # ...but not upgrade that entry to writable
        refused(m, lambda: mmu(m, lay.g, (ptr(T[1], 9), make_pte(T[level], P | RW))), (-errno.EBUSY, 0))

    @pytest.mark.parametrize("level", [1, 2, 3, 4])
    def test_table_linked_below_a_live_entry(self, level):
        """A table that is live only because an entry above links it (not pinned)."""
        lay = build()
        m = lay.m
        child = G_F
        if level < 4:
            assert mmu(m, lay.g, (ptr(T[level + 1], 0), make_pte(child, P | RW))) == (0, 1)
        else:
            assert ext(m, lay.g, MmuextOp(MMUEXT_NEW_BASEPTR, child)) == (0, 1)
        assert m.pt.live[child][0] == level
        refused(m, lambda: mmu(m, lay.g, (ptr(T[1], 0), make_pte(child, P | RW))), (-errno.EBUSY, 0))

    def test_writable_mapping_inside_a_pinned_l1_of_itself(self):
        """An L1 being validated cannot map itself writable either."""
        lay = build()
        m = lay.m
        m.mem.write(G_F, 0, make_pte(G_F, P | RW))
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_PIN_L1_TABLE, G_F)), (-errno.EBUSY, 0))
        m.mem.write(G_F, 0, make_pte(G_F, P))                  # read-only self-map: allowed
        assert ext(m, lay.g, MmuextOp(MMUEXT_PIN_L1_TABLE, G_F)) == (0, 1)
        assert words(m, G_F) == (ALLOC1 + 2, PGT_l1_page_table | PGT_validated | PGT_pinned | 1)

    def test_superpage_holding_a_table_cannot_be_mapped(self):
        lay = build()
        m = lay.m
        assert ext(m, lay.g, MmuextOp(MMUEXT_PIN_L1_TABLE, G_SP + 100)) == (0, 1)
        for flags in (P | PSE, P | RW | PSE):
            refused(m, lambda: mmu(m, lay.g, (ptr(T[2], 0), make_pte(G_SP, flags))), (-errno.EINVAL, 0))
        refused(m, lambda: ext(m, lay.g, MmuextOp(MMUEXT_MARK_SUPER, G_SP)), (-errno.EINVAL, 0))

    def test_frame_of_a_mapped_superpage_cannot_become_a_table(self):
        lay = build()
        m = lay.m
        assert mmu(m, lay.g, (ptr(T[2], 0), make_pte(G_SP, P | PSE))) == (0, 1)
        for n in (1, 2, 3, 4):
            refused(m, lambda: ext(m, lay.g, MmuextOp(PIN_CMD[n], G_SP + 100)), (-errno.EINVAL, 0))
        refused(m, lambda: mmu(m, lay.g, (ptr(T[2], 1), make_pte(G_SP + 100, P | RW))), (-errno.EINVAL, 0))

    def test_update_va_mapping_cannot_map_a_table_writable(self):
        m = holey_machine()
        g = m.create_domain("guest", 2048)
        k = GuestKernel(m, g)
        assert k.populate(0, 8, superpages=False) == 8
        assert k.build() == 0
        assert k.map_pages(DIRECTMAP_BASE, [k.mfn(0)]) == 0
        l1 = k.tables[(1, DIRECTMAP_BASE >> 21)]
        for table in (l1, k.tables[(2, DIRECTMAP_BASE >> 30)], k.tables[(3, DIRECTMAP_BASE >> 39)], k.root):
            refused(m, lambda: hc(m, g, HYPERVISOR_update_va_mapping, DIRECTMAP_BASE,
                                  make_pte(table, P | RW), 0), -errno.EBUSY)


# -- the vectorised path: a batch of >= 8 PSE maps into one L2 ---------------------------------
def batch_layout() -> SimpleNamespace:
    """RAM [0, 32 MiB) and [48 MiB, 64 MiB): a hole 0x2000..0x2fff in the PDX group of RAM."""
    m = Machine(MemoryMap([(0, 32 * MiB), (48 * MiB, 64 * MiB)], name="batch"), "none")
    g = m.create_domain("guest", 8 * 512 + 16)
    o = m.create_domain("other", 512 + 1)
    sps = populate(m, g, range(0, 8 * 512, 512), 9)
    assert sps == list(range(0x3000, 0x4000, 0x200))        # contiguous
    (o_sp,) = populate(m, o, [0], 9)
    frames = populate(m, g, range(8 * 512, 8 * 512 + 16), 0)
    (o_l2,) = populate(m, o, [512], 0)
    assert ext(m, g, MmuextOp(MMUEXT_PIN_L2_TABLE, frames[0])) == (0, 1)
    assert ext(m, o, MmuextOp(MMUEXT_PIN_L2_TABLE, o_l2)) == (0, 1)
    free_sp = next(-(-s // 512) * 512 for s, e in m.heap.free_ranges() if -(-s // 512) * 512 + 512 <= e)
    assert m.mfn_valid(0x2000) and m.memmap.frame_ranges[0][1] == 0x2000     # 0x2000: no RAM
    return SimpleNamespace(m=m, g=g, o=o, sps=sps, l2=frames[0], o_l2=o_l2, frames=frames,
                           targets={"foreign": o_sp, "foreign-mapped": o_sp, "foreign-marked": o_sp,
                                    "free": free_sp, "hole": 0x2000, "max-page": m.max_page,
                                    "huge": (1 << 40) - 512, "table-inside": sps[7],
                                    "unaligned": sps[7] - 256, "global-bit": sps[7]})


@pytest.mark.parametrize("target,err", [
    ("foreign", errno.EINVAL), ("foreign-mapped", errno.EPERM), ("foreign-marked", errno.EPERM),
    ("free", errno.EINVAL), ("hole", errno.EINVAL), ("max-page", errno.EINVAL), ("huge", errno.EINVAL),
    ("table-inside", errno.EINVAL), ("unaligned", errno.EINVAL), ("global-bit", errno.EINVAL)])
@pytest.mark.parametrize("at", [0, 3, 7])
def test_pse_batch_stops_at_a_superpage_that_is_not_the_guests(target, err, at, request):
    """Eight PSE entries into one L2 (the vectorised path), one of them bad at position
    ``at``: the batch does exactly the requests before it (as the same requests one by one
    would) and reports that errno. The unaligned one's 512 frames are all the guest's."""
    lays = batch_layout(), batch_layout()
    for lay in lays:
        m = lay.m
        if target == "table-inside":
            assert ext(m, lay.g, MmuextOp(MMUEXT_PIN_L1_TABLE, lay.sps[7] + 300)) == (0, 1)
        elif target == "foreign-mapped":
            assert mmu(m, lay.o, (ptr(lay.o_l2, 0), make_pte(lay.targets[target], P | PSE))) == (0, 1)
        elif target == "foreign-marked":
            assert ext(m, lay.o, MmuextOp(MMUEXT_MARK_SUPER, lay.targets[target])) == (0, 1)
    batch, twin = lays
    bad = batch.targets[target]
    own = iter(batch.sps)
    mfns = [bad if i == at else next(own) for i in range(8)]
    vals = [make_pte(mfn, P | RW | PSE) | (0x100 if target == "global-bit" and i == at else 0)
            for i, mfn in enumerate(mfns)]
    reqs = [(ptr(batch.l2, i), v) for i, v in enumerate(vals)]
    for p, v in reqs[:at]:                                # the twin, one request at a time
        assert mmu(twin.m, twin.g, (p, v)) == (0, 1)
    assert mmu(batch.m, batch.g, *reqs) == (-err, at)
    assert twin.m.same_as(batch.m.snapshot())
    assert [batch.m.spage_table.read(s >> 9) for s in mfns[:at]] == [SGT_dynamic | 1] * at
