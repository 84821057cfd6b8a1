"""PV page-table entries as Xen judges them, release by release: the per-level disallow
masks (get_page_from_l1e .. l4e, mod_l1_entry .. mod_l4_entry), the L4 slots that belong
to Xen (alloc_l4_table, mod_l4_entry), linear page tables (get_l2_linear_pagetable ..
get_l4_linear_pagetable, and their teardown in relinquish_memory), and which flags each
release's fast path compares (l1e_has_changed .. l4e_has_changed).

The layout (conftest: 64 MiB, PDX none so page == mfn): the guest (dom1) owns superpage
0x000 and frames 0x200..0x20f; 0x200..0x203 are pinned as an empty L1, L2, L3 and L4
(T1..T4), 0x204.. are spare; the other domain (dom2) owns superpage 0x400 and frames
0x210..0x217. Every call is audited; every refusal leaves the machine as it was.
"""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from xensim import HYPERVISOR_update_va_mapping, Machine, MemoryMap
from xensim.xen._mmu import (MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE,
                         MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE, MmuextOp)
from xensim.mem._page_info import (PGC_allocated, PGT_l1_page_table, PGT_l2_page_table,
                               PGT_l3_page_table, PGT_l4_page_table, PGT_pinned, PGT_validated,
                               PGT_writable_page)
from xensim.xen._pagetable import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GLOBAL, _PAGE_NX, _PAGE_PCD,
                               _PAGE_PRESENT, _PAGE_PSE, _PAGE_PWT, _PAGE_RW, _PAGE_USER,
                               make_pte)

from conftest import MiB, assert_clean, ext, hc, mmu, ptr, refused_mmu, two_domains, words

P, RW, PSE, A, D, U, G = (_PAGE_PRESENT, _PAGE_RW, _PAGE_PSE, _PAGE_ACCESSED, _PAGE_DIRTY,
                          _PAGE_USER, _PAGE_GLOBAL)
NX, PCD, PWT, PAT = _PAGE_NX, _PAGE_PCD, _PAGE_PWT, _PAGE_PSE     # bit 7 is PAT in an L1 entry
GNTTAB = 1 << 62
ALLOC1 = PGC_allocated | 1
WR = PGT_writable_page | PGT_validated
LT = {1: PGT_l1_page_table, 2: PGT_l2_page_table, 3: PGT_l3_page_table, 4: PGT_l4_page_table}
LV = {n: t | PGT_validated for n, t in LT.items()}
PIN = PGT_pinned
PIN_CMD = {1: MMUEXT_PIN_L1_TABLE, 2: MMUEXT_PIN_L2_TABLE, 3: MMUEXT_PIN_L3_TABLE,
           4: MMUEXT_PIN_L4_TABLE}
VERSIONS = ["4.1", "4.5", "4.7", "4.8", "4.22"]

G_SP = 0x000
T = {1: 0x200, 2: 0x201, 3: 0x202, 4: 0x203}
F0, F1, F2, F3, F4, F5 = 0x204, 0x205, 0x206, 0x207, 0x208, 0x209
O_SP, O_F = 0x400, 0x210


def op(cmd: int, mfn: int) -> MmuextOp:
    return MmuextOp(cmd, mfn)


def build(version: str = "4.8", pin: bool = True, **kw) -> SimpleNamespace:
    lay = two_domains(Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version,
                              **kw), (G_SP,), O_SP)
    if pin:
        for n in (1, 2, 3, 4):
            assert ext(lay.m, lay.g, op(PIN_CMD[n], T[n])) == (0, 1)
    return lay


# -- get_page_from_l1e's own answers -----------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_get_page_from_l1e_refusals_per_release(version):
    """get_page_from_l1e (mm.c): in 4.1 it answers 1 or 0 and every refusal becomes -EINVAL;
    from 4.5 it gives its own errnos. A RAM frame that cannot be taken (another domain's, a
    free one, or a live table mapped writable) is could_not_pin: -EBUSY. An MFN that is not
    RAM goes down the I/O-memory path, which a domain without I/O memory fails: -EPERM, and
    -EINVAL for INVALID_MFN (all address bits set). Each is refused with nothing changed, as
    a new entry (mmu_update) and through validation (a pin: alloc_l1_table passes it on)."""
    new = version != "4.1"
    cases = [(make_pte(O_F, P), errno.EBUSY), (make_pte(0x800, P), errno.EBUSY),
             (make_pte(T[2], P | RW), errno.EBUSY), (make_pte(0x4000, P), errno.EPERM),
             (make_pte((1 << 40) - 1, P), errno.EINVAL), (make_pte(F0, P | PCD), errno.EINVAL)]
    for e, err in cases:
        err = err if new else errno.EINVAL
        lay = build(version)
        m = lay.m
        assert m.heap.is_free(0x800)
        refused_mmu(m, lay.g, [(ptr(T[1], 7), e)], err)
        m.mem.write(F5, 3, e)
        snap = m.snapshot()
        assert ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F5)) == (-err, 0)
        assert m.same_as(snap)


# -- 1. entry bits: the per-level disallow masks ---------------------------------------------
#: (level, target, base flags) of a valid new entry at each level
ENTRY = {1: (F0, P | RW), 2: (F0, P | RW), "2-pse": (G_SP, P | RW | PSE), 3: (F0, P | RW),
         4: (F0, P | RW)}
#: bits a guest may set at each level in every release: USER, A/D, AVAIL (9-11), the
#: software bits 52-62 (62 too in L1: a release build's _PAGE_GNTTAB is 0) and NX;
#: GLOBAL in L1 only
ACCEPTED = {1: [U, A | D, 1 << 9, 1 << 11, 1 << 52, 1 << 57, 1 << 61, GNTTAB, NX, G],
            2: [U, A | D, 1 << 9, 1 << 11, 1 << 52, 1 << 61, GNTTAB, NX],
            "2-pse": [U, A | D, 1 << 10, 1 << 52, 1 << 61, GNTTAB, NX],
            3: [U, A | D, 1 << 10, 1 << 52, 1 << 61, GNTTAB, NX],
            4: [U, A | D, 1 << 11, 1 << 52, 1 << 61, GNTTAB, NX]}
#: ... and the bits each level's disallow mask refuses
REFUSED = {1: [PWT, PCD, PAT], 2: [PWT, PCD, G], "2-pse": [PWT, PCD, G],
           3: [PWT, PCD, PSE, G], 4: [PWT, PCD, PSE, G]}


def _table(level) -> int:
    return T[2] if level == "2-pse" else T[level]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("level", list(ENTRY))
def test_get_page_from_lNe_accepts_software_bits_and_nx(version, level):
    """get_page_from_l1e .. l4e, 4.1-4.8: BASE_DISALLOW_MASK leaves PRESENT, RW, USER, A/D,
    bits 9-11, bits 52-62 and NX to the guest, L1 also GLOBAL (a debug build of Xen refuses
    bit 62, _PAGE_GNTTAB, in L1; in a release build, NDEBUG, it is 0): each is accepted on a
    new entry, which takes the usual references."""
    for bit in ACCEPTED[level]:
        lay = build(version)
        m = lay.m
        target, flags = ENTRY[level]
        assert mmu(m, lay.g, (ptr(_table(level), 7), make_pte(target, flags | bit))) == (0, 1)
        if level == "2-pse":
            assert words(m, G_SP + 5) == (ALLOC1 + 1, WR | 1)
        else:
            child = {1: WR, 2: LV[1], 3: LV[2], 4: LV[3]}[level]
            assert words(m, target) == (ALLOC1 + 1, child | 1)
        assert m.mem.read(_table(level), 7) == make_pte(target, flags | bit)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("level", list(ENTRY))
def test_get_page_from_lNe_refuses_each_disallowed_flag(version, level):
    """L1_DISALLOW_MASK (PWT, PCD, PAT for a domain without I/O capabilities), L2_DISALLOW_MASK (PWT, PCD, GLOBAL; PSE allowed with superpages on),
    L3/L4 (BASE_DISALLOW_MASK: PWT, PCD, PSE, GLOBAL), 4.1-4.8: -EINVAL, nothing done,
    on a new entry and, before the fast path, on a live one."""
    lay = build(version)
    m = lay.m
    target, flags = ENTRY[level]
    table = _table(level)
    for bit in REFUSED[level]:
        refused_mmu(m, lay.g, [(ptr(table, 3), make_pte(target, flags | bit))], errno.EINVAL)
    assert mmu(m, lay.g, (ptr(table, 3), make_pte(target, flags))) == (0, 1)
    for bit in REFUSED[level]:
        refused_mmu(m, lay.g, [(ptr(table, 3), make_pte(target, flags | bit))], errno.EINVAL)
    assert m.pt_stats["fast_path"] == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_alloc_l1_table_refuses_a_disallowed_flag_and_undoes(version):
    """Validation (alloc_l1_table .. alloc_l4_table) judges each entry with the same masks:
    a good entry then a PCD one: -EINVAL, the good entry's reference given back."""
    lay = build(version, pin=False)
    m = lay.m
    m.mem.write(F0, 0, make_pte(F1, P | RW | (1 << 55)))      # software bit: fine
    m.mem.write(F0, 1, make_pte(F2, P | PCD))
    snap = m.snapshot()
    assert ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F0)) == (-errno.EINVAL, 0)
    assert m.same_as(snap)
    m.mem.write(F0, 1, make_pte(F2, P | (1 << 61) | NX))
    assert ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F0)) == (0, 1)
    assert words(m, F1) == (ALLOC1 + 1, WR | 1) and words(m, F2) == (ALLOC1 + 1, 0)


@pytest.mark.parametrize("version", ["4.7", "4.8"])
def test_l2_disallow_mask_has_pse_without_superpages_4_7(version):
    """4.7 and 4.8 (XSA-148's fix): with allowsuperpage off, L2_DISALLOW_MASK keeps PSE,
    so PSE on a live L2 link is refused before the fast path (which compares PRESENT only
    then)."""
    lay = build(version, allow_superpage=False)
    m = lay.m
    assert mmu(m, lay.g, (ptr(T[2], 0), make_pte(F0, P | RW))) == (0, 1)
    refused_mmu(m, lay.g, [(ptr(T[2], 0), make_pte(F0, P | RW | PSE))], errno.EINVAL)
    assert m.pt_stats["fast_path"] == 0


# -- 2. the L4 slots that belong to Xen ------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_alloc_l4_table_skips_xen_slots_256_271(version):
    """alloc_l4_table (4.1, 4.8): is_guest_l4_slot is false for slots 256-271, so what the
    guest left there is not validated (a foreign frame, a writable self-map, a disallowed
    flag, even PSE) and takes nothing; Xen then writes its own entries there (xensim: 0)."""
    lay = build(version, pin=False)
    m = lay.m
    m.mem.write(F0, 0, make_pte(F1, P | RW))                  # a guest slot: an L3
    junk = {256: make_pte(O_F, P | RW), 258: make_pte(F0, P | RW), 260: make_pte(F2, P | PCD),
            271: make_pte(G_SP, P | RW | PSE)}
    for i, e in junk.items():
        m.mem.write(F0, i, e)
    ci_o = words(m, O_F)
    assert ext(m, lay.g, op(MMUEXT_PIN_L4_TABLE, F0)) == (0, 1)
    assert words(m, F0) == (ALLOC1 + 1, LV[4] | PIN | 1)
    assert words(m, F1) == (ALLOC1 + 1, LV[3] | 1)
    assert words(m, O_F) == ci_o and words(m, F2) == (ALLOC1, 0)
    assert all(m.mem.read(F0, i) == 0 for i in range(256, 272))
    assert ext(m, lay.g, op(MMUEXT_UNPIN_TABLE, F0)) == (0, 1)
    assert words(m, F0) == (ALLOC1, LT[4]) and words(m, F1) == (ALLOC1, LT[3])


@pytest.mark.parametrize("version", VERSIONS)
def test_alloc_l4_table_failure_leaves_the_xen_slots(version):
    """A validation that fails (a bad guest slot) returns before Xen's entries are written:
    the frame, junk in the Xen slots included, is as it was."""
    lay = build(version, pin=False)
    m = lay.m
    m.mem.write(F0, 257, make_pte(O_F, P))
    m.mem.write(F0, 300, make_pte(O_F, P | RW))               # a guest slot, foreign: -EINVAL
    snap = m.snapshot()
    assert ext(m, lay.g, op(MMUEXT_PIN_L4_TABLE, F0)) == (-errno.EINVAL, 0)
    assert m.same_as(snap) and m.mem.read(F0, 257) == make_pte(O_F, P)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("index", [256, 263, 271])
def test_mod_l4_entry_of_a_xen_slot_is_einval(version, index):
    """mod_l4_entry (4.1, 4.8): !is_guest_l4_slot -> -EINVAL, whatever the new value."""
    lay = build(version)
    for val in (make_pte(F0, P | RW), make_pte(T[4], P), 0):
        refused_mmu(lay.m, lay.g, [(ptr(T[4], index), val)], errno.EINVAL)


# -- 3. linear page tables ---------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("level", [2, 3, 4])
def test_get_lN_linear_pagetable_to_itself_takes_nothing(version, level):
    """get_l2/l3/l4_linear_pagetable (4.1-4.8): a read-only entry pointing at its own table
    is accepted with no reference at all; clearing it drops nothing."""
    lay = build(version)
    m = lay.m
    t = T[level]
    before = words(m, t)
    assert mmu(m, lay.g, (ptr(t, 9), make_pte(t, P | A))) == (0, 1)
    assert words(m, t) == before
    assert mmu(m, lay.g, (ptr(t, 9), 0)) == (0, 1)
    assert words(m, t) == before


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("level", [2, 3, 4])
def test_get_lN_linear_pagetable_refuses_rw(version, level):
    """A writable linear entry would give the guest write access to its own tables:
    refused (-EINVAL), to itself or to another table of its level."""
    lay = build(version)
    m = lay.m
    assert ext(m, lay.g, op(PIN_CMD[level], F0)) == (0, 1)
    for target in (T[level], F0):
        refused_mmu(m, lay.g, [(ptr(T[level], 9), make_pte(target, P | RW))], errno.EINVAL)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("level", [2, 3, 4])
def test_get_lN_linear_pagetable_to_another_validated_table(version, level):
    """To another validated table of the same level: one general and one type reference
    on it (the type's count + 1; no revalidation); clearing the entry gives them back."""
    lay = build(version)
    m = lay.m
    assert ext(m, lay.g, op(PIN_CMD[level], F0)) == (0, 1)
    s = m.refs.stats
    v0 = s.validations
    assert mmu(m, lay.g, (ptr(T[level], 4), make_pte(F0, P))) == (0, 1)
    assert words(m, F0) == (ALLOC1 + 2, LV[level] | PIN | 2)
    assert s.validations == v0
    assert mmu(m, lay.g, (ptr(T[level], 4), 0)) == (0, 1)
    assert words(m, F0) == (ALLOC1 + 1, LV[level] | PIN | 1)


@pytest.mark.parametrize("version", VERSIONS)
def test_get_l4_linear_pagetable_needs_the_domains_own_validated_table(version):
    """The target must be the domain's (get_page_from_pagenr) and already validated:
    another domain's pinned L4, read-only, is -EINVAL."""
    lay = build(version)
    m = lay.m
    assert ext(m, lay.o, op(MMUEXT_PIN_L4_TABLE, O_F)) == (0, 1)
    refused_mmu(m, lay.g, [(ptr(T[4], 4), make_pte(O_F, P))], errno.EINVAL)


@pytest.mark.parametrize("version", VERSIONS)
def test_unused_table_of_the_same_level_is_retyped_not_linear(version):
    """The linear check runs only when get_page_and_type for the level below fails: an L4
    nobody holds any more (type count 0) simply becomes an L3 and is validated as one."""
    lay = build(version)
    m = lay.m
    assert ext(m, lay.g, op(MMUEXT_PIN_L4_TABLE, F0)) == (0, 1)
    assert ext(m, lay.g, op(MMUEXT_UNPIN_TABLE, F0)) == (0, 1)
    assert words(m, F0) == (ALLOC1, LT[4])
    assert mmu(m, lay.g, (ptr(T[4], 4), make_pte(F0, P))) == (0, 1)
    assert words(m, F0) == (ALLOC1 + 1, LV[3] | 1)


@pytest.mark.parametrize("version", VERSIONS)
def test_validation_accepts_linear_entries(version):
    """alloc_l4_table via get_page_from_l4e: an L4 mapping itself and another validated L4,
    read-only, validates; only the other L4 gains a reference."""
    lay = build(version, pin=False)
    m = lay.m
    assert ext(m, lay.g, op(MMUEXT_PIN_L4_TABLE, F1)) == (0, 1)
    m.mem.write(F0, 0, make_pte(F0, P))
    m.mem.write(F0, 1, make_pte(F1, P | A))
    m.mem.write(F0, 2, make_pte(F2, P | RW))                  # an ordinary L3 link
    assert ext(m, lay.g, op(MMUEXT_PIN_L4_TABLE, F0)) == (0, 1)
    assert words(m, F0) == (ALLOC1 + 1, LV[4] | PIN | 1)
    assert words(m, F1) == (ALLOC1 + 2, LV[4] | PIN | 2)
    assert words(m, F2) == (ALLOC1 + 1, LV[3] | 1)


@pytest.mark.parametrize("version", VERSIONS[:4])       # 4.22 refuses the loop (XSA-240):
def test_a_linear_loop_outlives_its_pins_and_destruction_breaks_it(version):   # test_linear.py
    """Two L4s mapping each other read-only hold each other's type: unpinned, both stay
    validated (count 1 each, Xen's behaviour). Domain destruction (relinquish_memory,
    4.1-4.8) force-devalidates the still-valid L4s, L3s and L2s: every frame comes back."""
    lay = build(version)
    m = lay.m
    for t in (F0, F1):
        assert ext(m, lay.g, op(MMUEXT_PIN_L4_TABLE, t)) == (0, 1)
    assert mmu(m, lay.g, (ptr(F1, 0), make_pte(F2, P | RW))) == (0, 1)        # F2: an L3
    assert mmu(m, lay.g, (ptr(F2, 0), make_pte(F3, P | RW))) == (0, 1)        # F3: an L2
    assert mmu(m, lay.g, (ptr(F3, 1), make_pte(F3, P))) == (0, 1)             # F3 -> itself
    assert mmu(m, lay.g, (ptr(F0, 5), make_pte(F1, P)), (ptr(F1, 5), make_pte(F0, P))) == (0, 2)
    for t in (F0, F1):
        assert ext(m, lay.g, op(MMUEXT_UNPIN_TABLE, t)) == (0, 1)
    assert words(m, F0) == (ALLOC1 + 1, LV[4] | 1)
    assert words(m, F1) == (ALLOC1 + 1, LV[4] | 1)
    assert words(m, F3) == (ALLOC1 + 1, LV[2] | 1)
    free0 = m.heap.free_frames
    assert m.destroy_domain(lay.g) == 0
    assert lay.g not in m.domains
    assert m.heap.free_frames == free0 + 512 + 16
    assert all(page not in m.pt.live for page in range(0x200, 0x210))
    assert_clean(m)


@pytest.mark.parametrize("version", VERSIONS[:4])       # 4.22 refuses the loop (XSA-240)
def test_relinquish_memory_devalidates_lower_level_loops(version):
    """Loops at L3 and L2 (two tables of a level mapping each other) are broken in the L3
    and L2 passes: every frame comes back, the domain disappears."""
    lay = build(version)
    m = lay.m
    for lv, (a, b) in ((3, (F0, F1)), (2, (F2, F3))):
        for t in (a, b):
            assert ext(m, lay.g, op(PIN_CMD[lv], t)) == (0, 1)
        assert mmu(m, lay.g, (ptr(a, 0), make_pte(b, P)), (ptr(b, 0), make_pte(a, P))) == (0, 2)
        for t in (a, b):
            assert ext(m, lay.g, op(MMUEXT_UNPIN_TABLE, t)) == (0, 1)
        assert words(m, a) == (ALLOC1 + 1, LV[lv] | 1)
    assert m.destroy_domain(lay.g) == 0
    assert lay.g not in m.domains
    assert_clean(m)


@pytest.mark.parametrize("version", VERSIONS)
def test_update_va_mapping_through_a_linear_walk_is_einval(version):
    """do_update_va_mapping (4.1-4.8) checks that the table its walk reached is an L1: a
    VA whose walk goes through a linear L4 entry ends at an L2 here, -EINVAL."""
    lay = build(version)
    m = lay.m
    assert mmu(m, lay.g, (ptr(T[4], 0), make_pte(T[3], P | RW)),
               (ptr(T[3], 0), make_pte(T[2], P | RW)),
               (ptr(T[2], 0), make_pte(T[1], P | RW)),
               (ptr(T[4], 1), make_pte(T[4], P))) == (0, 4)
    assert ext(m, lay.g, op(MMUEXT_NEW_BASEPTR, T[4])) == (0, 1)
    va_ok = 0
    va_linear = (1 << 39)                       # L4[1] -> T4 (as L3) -> [0] T3 (as L2) -> [0] T2
    assert hc(m, lay.g, HYPERVISOR_update_va_mapping, va_ok, make_pte(F0, P), 0) == 0
    snap = m.snapshot()
    assert hc(m, lay.g, HYPERVISOR_update_va_mapping, va_linear, make_pte(F0, P), 0) == -errno.EINVAL
    assert m.same_as(snap)


@pytest.mark.parametrize("version,faithful,rc", [
    ("4.1", False, -errno.EINVAL), ("4.5", False, -errno.EINVAL), ("4.7", False, -errno.EINVAL),
    ("4.1", True, 0), ("4.5", True, 0), ("4.7", True, 0),
    ("4.8", False, -errno.EINVAL), ("4.8", True, -errno.EINVAL)])
def test_xsa182_rw_on_a_linear_l4_entry(version, faithful, rc):
    """XSA-182: before 4.8, mod_l4_entry's fast path compared PRESENT only, so RW could be
    set on a live read-only linear entry. Faithful 4.1-4.7 let it through (a violation is
    recorded); otherwise xensim revalidates it and the linear check refuses it; 4.8
    compares RW (FASTPATH_FLAG_WHITELIST) and refuses it."""
    lay = build(version, faithful=faithful)
    m = lay.m
    assert mmu(m, lay.g, (ptr(T[4], 9), make_pte(T[4], P))) == (0, 1)
    snap = m.snapshot()
    assert mmu(m, lay.g, (ptr(T[4], 9), make_pte(T[4], P | RW))) == (rc, 0 if rc else 1)
    if rc:
        assert m.same_as(snap) and not m.violations
    else:
        assert m.pt_stats["fast_path"] == 1
        assert m.violations and m.violations[-1].startswith("XSA-182")


# -- 4. the fast path, per release ---------------------------------------------------------
FAST, SLOW = True, False
#: (level, old entry, change) -> fast in 4.1, 4.5, 4.7, 4.8 (superpages on, not faithful)
_FAST = [
    (1, "rw", [SLOW, SLOW, SLOW, SLOW]),
    (1, "user", [FAST] * 4), (1, "ad", [FAST] * 4), (1, "global", [FAST] * 4),
    (1, "nx", [FAST] * 4), (1, "avail", [FAST] * 4), (1, "bit52", [FAST] * 4),
    (1, "bit62", [FAST] * 4),
    (1, "same", [FAST] * 4),
    (2, "rw", [SLOW, SLOW, SLOW, SLOW]), (2, "ad", [FAST] * 4), (2, "avail", [FAST] * 4),
    (2, "nx", [FAST] * 4), (2, "bit52", [FAST] * 4), (2, "bit62", [FAST] * 4),
    (3, "rw", [FAST, FAST, FAST, SLOW]), (3, "ad", [FAST] * 4), (3, "nx", [FAST] * 4),
    (3, "bit52", [FAST] * 4), (3, "user", [FAST] * 4),
    (4, "rw", [FAST, FAST, FAST, SLOW]), (4, "ad", [FAST] * 4), (4, "avail", [FAST] * 4),
    (4, "bit62", [FAST] * 4),
]
_CHANGE = {"rw": RW, "user": U, "ad": A | D, "global": G, "nx": NX, "avail": 1 << 10,
           "bit52": 1 << 52, "bit62": GNTTAB, "same": 0}


@pytest.mark.parametrize("level,change,fast", [
    (lv, ch, f) for lv, ch, fs in _FAST for f in [fs + fs[-1:]]],   # 4.22 compares as 4.8
    ids=[f"l{lv}-{ch}" for lv, ch, _ in _FAST])
@pytest.mark.parametrize("version", VERSIONS)
def test_mod_lN_entry_fast_path_per_release(version, level, change, fast):
    """mod_l1_entry .. mod_l4_entry: 4.1/4.5 compare PRESENT|RW in L1 (4.7 adds the cache
    attributes, which a domain without I/O capabilities cannot set), PRESENT|RW|PSE in L2
    with superpages on (XSA-148's fix), PRESENT in L3/L4; 4.8 (XSA-182) compares every
    flag outside FASTPATH_FLAG_WHITELIST at every level, and so does 4.22 (built with
    CONFIG_PV_LINEAR_PT, FASTPATH_PDE_FLAG_WHITELIST is that list). A fast change takes no reference;
    a slow one takes the new entry's and drops the old one's."""
    lay = build(version)
    m = lay.m
    target = F0
    old = make_pte(target, P | RW | U)
    assert mmu(m, lay.g, (ptr(T[level], 0), old)) == (0, 1)
    w0, s = words(m, target), m.refs.stats
    get0 = s.get_page
    assert mmu(m, lay.g, (ptr(T[level], 0), old ^ _CHANGE[change])) == (0, 1)
    f = fast[VERSIONS.index(version)]
    assert m.pt_stats["fast_path"] == (1 if f else 0)
    assert m.pt_stats["slow_path"] == (1 if f else 2)
    assert s.get_page == get0 + (1 if f else 2)       # the table's own, and the entry's if slow
    if level == 1 and change == "rw":
        assert words(m, target) == (ALLOC1 + 1, WR)   # read-only now: no writable reference
    else:
        assert words(m, target) == w0


@pytest.mark.parametrize("version,superpages,faithful,fast", [
    ("4.1", True, False, False), ("4.1", False, False, True), ("4.1", True, True, True),
    ("4.5", True, True, True), ("4.7", True, False, False), ("4.7", False, False, True),
    ("4.8", True, False, False), ("4.8", False, False, False)])
def test_mod_l2_entry_rw_flip_per_release(version, superpages, faithful, fast):
    """mod_l2_entry: RW on a link to an L1 is compared only with superpages on from 4.7
    (XSA-148's fix, which xensim applies to 4.1/4.5 unless faithful); faithful 4.1/4.5
    compare PRESENT only; 4.8 always compares RW."""
    lay = build(version, allow_superpage=superpages, faithful=faithful)
    m = lay.m
    assert mmu(m, lay.g, (ptr(T[2], 0), make_pte(F0, P | RW))) == (0, 1)
    assert mmu(m, lay.g, (ptr(T[2], 0), make_pte(F0, P))) == (0, 1)
    assert m.pt_stats["fast_path"] == (1 if fast else 0)
    assert words(m, F0) == (ALLOC1 + 1, LV[1] | 1)
