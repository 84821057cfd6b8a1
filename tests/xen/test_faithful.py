"""Faithful mode: Xen's known superpage bugs, reproduced, and refused by default.

``hypervisor.faithful: true`` makes xensim do what the real code did (docs/xen-facts.md,
section 8); by default it refuses. Each bug is shown both ways: the bad outcome in
faithful mode on the releases that had it, and the default (or fixed-release) refusal
with its exact errno and a machine left bit for bit as it was.

Machine: RAM [0, 48 MiB) and [64 MiB, 128 MiB) (frames 0..0x2fff and 0x4000..0x7fff;
the hole 0x3000..0x3fff shares PDX group 0 with RAM, so its MFNs are mfn_valid but have
no superpage-table entry); max_page 0x8000. Guests populate 2 MiB extents, build their
tree with GuestKernel and get an L2 table for the direct map.
"""

from __future__ import annotations

import errno

import pytest

from xensim import Machine, MemoryMap, audit
from xensim.fuzz import isolation
from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
from xensim.xen._mmu import MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER, MmuextOp, MmuUpdate
from xensim.mem._page_info import (PGC_allocated, PGT_l1_page_table, PGT_type_mask,
                               PGT_validated, PGT_writable_page, SGT_count_mask, SGT_dynamic,
                               SGT_mark, SGT_type_mask)
from xensim.xen._pagetable import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW,
                               _PAGE_USER, make_pte)

MiB = 1 << 20
P, RW, U, PSE = _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_PSE
LINK = P | RW | U                              # an L2 entry pointing at an L1 table
PSE_RW = P | RW | U | _PAGE_ACCESSED | _PAGE_DIRTY | PSE
VERSIONS = ("4.1", "4.5", "4.7", "4.8")
L1_LIVE_1 = PGT_l1_page_table | PGT_validated | 1
HOLE_SP, BEYOND, HUGE = 0x3200, 0x8000, (1 << 40) - 512


class G:
    """A guest: its kernel, superpages and an L2 table for the direct map."""

    def __init__(self, m: Machine, name: str, superpages: int = 6):
        self.domid = m.create_domain(name, superpages * 512 + 64)
        self.k = GuestKernel(m, self.domid)
        assert self.k.populate(0, superpages * 512) == superpages
        assert self.k.build() == 0
        self.l2, rc = self.k.ensure_table(DIRECTMAP_BASE, 2)
        assert rc == 0
        self.sp = self.k.superpage_mfns(0, superpages)

    def set(self, index: int, val: int) -> int:
        """mmu_update of L2 entry ``index``."""
        return self.k.mmu_update([((self.l2 << 12) | index * 8, val)])

    def ext(self, cmd: int, mfn: int, foreigndom=None) -> int:
        if foreigndom is None:
            return self.k.mmuext([MmuextOp(cmd, mfn)])
        return self.k.m.hypercall(self.domid, 26, [MmuextOp(cmd, mfn)], [0], foreigndom)


def machine(version: str, faithful: bool, design: str = "xen-4.1") -> Machine:
    return Machine(MemoryMap([(0, 48 * MiB), (64 * MiB, 128 * MiB)], name="faithful"), "none",
                   version=version, faithful=faithful, superpage=design)


def words(m: Machine, mfn: int) -> tuple[int, int]:
    page = m.mfn_to_page(mfn)
    return m.frame_table.count_info(page), m.frame_table.type_info(page)


def spage(m: Machine, mfn: int) -> int:
    return m.spage_table.read(m.mfn_to_pdx(mfn) >> 9)


def unchanged(m: Machine, snap) -> None:
    assert m.same_as(snap)
    assert audit(m).ok, str(audit(m))
    assert not m.violations


# ---------------------------------------------------------------------------------------
# XSA-148 (CVE-2015-7835): mod_l2_entry's fast path, PSE flipped without revalidation
# ---------------------------------------------------------------------------------------

def l1_at_superpage(version, faithful):
    """A live L1 table in the first frame of one of the guest's superpages, linked at L2[5]."""
    m = machine(version, faithful)
    g = G(m, "g")
    s = g.sp[3]
    assert g.set(5, make_pte(s, LINK)) == 0
    assert m.pt.live_level(m.mfn_to_page(s)) == 1
    assert words(m, s) == (PGC_allocated | 2, L1_LIVE_1)        # owner + the L2 entry
    assert audit(m).ok
    return m, g, s


@pytest.mark.parametrize("version", ["4.1", "4.5"])
def test_xsa148_pse_set_on_a_live_l1_link_faithful(version):
    """Faithful 4.1/4.5: L2[5] -> L1 table s, rewritten with PSE on the same MFN, takes the
    fast path (only PRESENT compared): accepted, no reference taken. The guest now maps
    the 512 frames s..s+511 writable, s being a live page table, with no writable type
    reference anywhere; the auditor sees 512 missing references. Unmapping then runs
    put_superpage on a NONE entry: the count underflows into the state bits. The L1's
    type reference is never dropped: the domain can never be fully destroyed."""
    m, g, s = l1_at_superpage(version, True)
    fast = m.pt_stats["fast_path"]
    assert g.set(5, make_pte(s, LINK | PSE)) == 0
    assert m.pt_stats["fast_path"] == fast + 1
    assert m.mem.read(g.l2, 5) == make_pte(s, LINK | PSE)        # a writable 2 MiB mapping of s
    assert m.pt.live_level(m.mfn_to_page(s)) == 1                # ... and s is a live L1 table
    assert words(m, s) == (PGC_allocated | 2, L1_LIVE_1)         # no writable type reference
    assert spage(m, s) == 0                                      # the design took nothing
    for mfn in (s + 1, s + 511):
        assert words(m, mfn) == (PGC_allocated | 1, 0)           # mapped, unreferenced
    rep = audit(m)
    assert not rep.ok
    assert rep.total_differences >= 511
    assert any(d.mfn == s + 1 and d.field == "count_info.count" for d in rep.differences)
    # unmapping: put_superpage on a NONE entry underflows into the state bits
    assert g.set(5, 0) == 0
    word = spage(m, s)
    assert word == (1 << 64) - 1
    assert word & SGT_type_mask == SGT_type_mask and word & SGT_count_mask == SGT_count_mask
    assert words(m, s) == (PGC_allocated | 2, L1_LIVE_1)         # the L1 reference leaked
    # ... and so the domain never goes away
    assert m.destroy_domain(g.domid) == 0
    assert g.domid in m.domains and m.domains[g.domid].is_dying
    assert s in m.domains[g.domid].owned


@pytest.mark.parametrize("version, faithful", [(v, False) for v in VERSIONS] +
                         [("4.7", True), ("4.8", True)])
def test_xsa148_pse_set_refused(version, faithful):
    """Default mode (and the fixed releases, faithful): the PSE flip goes through the slow
    path, get_superpage tries get_page_and_type(PGT_writable_page) on the 512 frames, s is
    an L1 table: type conflict, -EINVAL, nothing changed."""
    m, g, s = l1_at_superpage(version, faithful)
    snap = m.snapshot()
    assert g.set(5, make_pte(s, LINK | PSE)) == -errno.EINVAL
    unchanged(m, snap)
    assert m.mem.read(g.l2, 5) == make_pte(s, LINK)
    assert words(m, s) == (PGC_allocated | 2, L1_LIVE_1)
    assert words(m, s + 1) == (PGC_allocated | 1, 0)
    assert spage(m, s) == 0
    assert "fast_path" not in m.pt_stats


@pytest.mark.parametrize("version", ["4.1", "4.5"])
def test_xsa148_pse_cleared_on_a_live_superpage_faithful(version):
    """The other direction: a live PSE mapping of superpage s (DYNAMIC|1, 512 writable
    references) has PSE cleared, same MFN: fast path again. The hardware now walks the
    guest's own data page s as its L1 table, unvalidated, while the guest may still hold
    it writable: s is typed writable, not L1. The superpage stays DYNAMIC|1 with no PSE
    entry holding it."""
    m = machine(version, True)
    g = G(m, "g")
    s = g.sp[2]
    assert g.set(7, make_pte(s, PSE_RW)) == 0
    assert spage(m, s) == SGT_dynamic | 1
    assert words(m, s) == (PGC_allocated | 2, PGT_writable_page | PGT_validated | 1)
    assert audit(m).ok
    assert g.set(7, make_pte(s, PSE_RW & ~PSE)) == 0
    assert m.mem.read(g.l2, 7) & PSE == 0                         # L2[7] -> "L1 table" s
    assert words(m, s)[1] & PGT_type_mask == PGT_writable_page   # ... which is a data page
    assert m.pt.live_level(m.mfn_to_page(s)) == 0                # never validated
    assert spage(m, s) == SGT_dynamic | 1
    rep = audit(m)
    assert rep.total_differences >= 2 * 511       # 511 frames: a count and a type count too many
    assert any(d.mfn == s + 1 and d.field == "count_info.count" and (d.expected, d.actual) == (1, 2)
               for d in rep.differences)


@pytest.mark.parametrize("version", VERSIONS)
def test_xsa148_pse_cleared_refused_by_default(version):
    m = machine(version, False)
    g = G(m, "g")
    s = g.sp[2]
    assert g.set(7, make_pte(s, PSE_RW)) == 0
    snap = m.snapshot()
    assert g.set(7, make_pte(s, PSE_RW & ~PSE)) == -errno.EINVAL  # s is writable, not an L1
    unchanged(m, snap)
    assert spage(m, s) == SGT_dynamic | 1
    assert words(m, s) == (PGC_allocated | 2, PGT_writable_page | PGT_validated | 1)


@pytest.mark.parametrize("version, faithful", [("4.1", True), ("4.1", False), ("4.8", False)])
def test_rw_flip_of_a_pse_entry_keeps_the_counts(version, faithful):
    """RW flips of a live PSE entry: fast path in faithful 4.1, slow path (get then put)
    otherwise; in the xen-4.1 design the 512 references are writable either way, so the
    counts end equal."""
    m = machine(version, faithful)
    g = G(m, "g")
    s = g.sp[1]
    ro = make_pte(s, PSE_RW & ~(RW | _PAGE_DIRTY))
    assert g.set(9, ro) == 0
    before = (spage(m, s), words(m, s), words(m, s + 511))
    assert g.set(9, ro | RW) == 0
    assert (spage(m, s), words(m, s), words(m, s + 511)) == before == (
        SGT_dynamic | 1, (PGC_allocated | 2, PGT_writable_page | PGT_validated | 1),
        (PGC_allocated | 2, PGT_writable_page | PGT_validated | 1))
    assert m.pt_stats["fast_path"] == (1 if faithful else 0)
    assert audit(m).ok


# ---------------------------------------------------------------------------------------
# XSA-167 (CVE-2016-1570): MARK/UNMARK (and get_superpage) on MFNs that are not valid
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["4.1", "4.5"])
@pytest.mark.parametrize("cmd", [MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER])
@pytest.mark.parametrize("mfn", [BEYOND, HUGE], ids=["max_page", "huge"])
def test_xsa167_mark_unmark_invalid_faithful(version, cmd, mfn):
    """4.1/4.5 faithful: no validity check, the table is indexed with an invalid MFN: the
    machine records the violation and Xen says yes (rc 0) to a superpage that does not
    exist. Nothing else changes (xensim does not model the out-of-bounds write)."""
    m = machine(version, True)
    g = G(m, "g")
    snap = m.snapshot()
    assert g.ext(cmd, mfn) == 0
    assert m.violations == [f"XSA-167: superpage table indexed with invalid mfn {mfn:#x}"]
    assert m.same_as(snap)


@pytest.mark.parametrize("version, faithful", [(v, False) for v in VERSIONS] +
                         [("4.7", True), ("4.8", True)])
@pytest.mark.parametrize("cmd", [MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER])
@pytest.mark.parametrize("mfn", [BEYOND, HUGE, 0x7e00 + 512], ids=["max_page", "huge", "end"])
def test_xsa167_mark_unmark_invalid_refused(version, faithful, cmd, mfn):
    m = machine(version, faithful)
    g = G(m, "g")
    snap = m.snapshot()
    assert g.ext(cmd, mfn) == -errno.EINVAL
    unchanged(m, snap)


@pytest.mark.parametrize("version", ["4.1", "4.5"])
@pytest.mark.parametrize("mfn", [BEYOND, HUGE], ids=["max_page", "huge"])
def test_xsa167_pse_invalid_faithful(version, mfn):
    """A PSE entry on an invalid MFN, 4.1/4.5 faithful: get_superpage would index the table
    unchecked: recorded as a violation, then refused (-EINVAL), never a Python exception."""
    m = machine(version, True)
    g = G(m, "g")
    snap = m.snapshot()
    assert g.set(3, make_pte(mfn, PSE_RW)) == -errno.EINVAL
    assert m.violations == [f"XSA-167: superpage table indexed with invalid mfn {mfn:#x}"]
    assert m.same_as(snap)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("mfn", [BEYOND, HUGE], ids=["max_page", "huge"])
def test_xsa167_pse_invalid_refused_by_default(version, mfn):
    m = machine(version, False)
    g = G(m, "g")
    snap = m.snapshot()
    assert g.set(3, make_pte(mfn, PSE_RW)) == -errno.EINVAL
    unchanged(m, snap)


@pytest.mark.parametrize("version", ["4.7", "4.8"])
@pytest.mark.parametrize("mfn", [BEYOND, HUGE], ids=["max_page", "huge"])
def test_xsa167_pse_invalid_fixed_releases_faithful(version, mfn):
    """XSA-167 was fixed in 4.7: faithful 4.7/4.8 refuse the PSE entry and record nothing.
    (Found by the fuzzer: get_page_from_entry skipped the check for every faithful release
    and recorded the violation; fixed.)"""
    m = machine(version, True)
    g = G(m, "g")
    snap = m.snapshot()
    assert g.set(3, make_pte(mfn, PSE_RW)) == -errno.EINVAL
    unchanged(m, snap)


@pytest.mark.parametrize("design", ["xen-4.1", "superpage-info", "pageinfo-count"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("cmd", [MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER])
def test_mark_unmark_of_a_hole_superpage_faithful(version, cmd, design):
    """A superpage in a hole whose MFNs are valid (same PDX group as RAM) has no entry in
    xensim's sparse table; Xen's dense table had a zero one, so MARK failed taking the 512
    references and UNMARK found no MARK: -EINVAL. (Found by the fuzzer: IndexError from
    the sparse table in xen-4.1 and superpage-info; fixed in _mmu._mark_unmark.)"""
    m = machine(version, True, design)
    g = G(m, "g")
    assert m.mfn_valid(HOLE_SP) and m.mfn_valid(HOLE_SP + 511)
    snap = m.snapshot()
    assert g.ext(cmd, HOLE_SP) == -errno.EINVAL
    unchanged(m, snap)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("cmd", [MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER])
def test_mark_unmark_of_a_hole_superpage_default(version, cmd):
    """Default mode as Xen 4.1's mark_superpage / unmark_superpage: nobody owns a hole, the
    512 get_page fail (get_spage_pages) and there is no mark: -EINVAL."""
    m = machine(version, False)
    g = G(m, "g")
    snap = m.snapshot()
    assert g.ext(cmd, HOLE_SP) == -errno.EINVAL
    unchanged(m, snap)


@pytest.mark.parametrize("version, faithful", [(v, f) for v in VERSIONS for f in (False, True)])
def test_pse_on_a_hole_superpage(version, faithful):
    """PSE on a hole superpage with valid MFNs: no table entry, refused, never an exception
    (-EINVAL in both modes, as Xen 4.1's get_superpage: get_page on the frames fails)."""
    m = machine(version, faithful)
    g = G(m, "g")
    snap = m.snapshot()
    assert g.set(3, make_pte(HOLE_SP, PSE_RW)) == -errno.EINVAL
    unchanged(m, snap)


# ---------------------------------------------------------------------------------------
# Xen 4.1's unchecked owner: the owner is checked only on the NONE -> taken transition
# ---------------------------------------------------------------------------------------

def two_guests(version, faithful):
    """a maps its superpage A0 (DYNAMIC) and marks A1 (MARK); b has its own L2 table."""
    m = machine(version, faithful)
    a, b = G(m, "a"), G(m, "b")
    a0, a1 = a.sp[0], a.sp[1]
    assert a.set(0, make_pte(a0, PSE_RW)) == 0
    assert a.ext(MMUEXT_MARK_SUPER, a1) == 0
    assert spage(m, a0) == SGT_dynamic | 1 and spage(m, a1) == SGT_mark | 1
    assert audit(m).ok and isolation(m) is None
    return m, a, b, a0, a1


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("which", ["dynamic", "mark"])
def test_foreign_pse_on_a_taken_superpage_faithful(version, which):
    """b maps a's superpage that a has DYNAMIC (or MARK): get_superpage sees a state that
    is not NONE, takes no frame reference and checks no owner: accepted. b now maps 2 MiB
    of a's memory writable; when a is destroyed, b's mapping keeps a's frames: a zombie."""
    m, a, b, a0, a1 = two_guests(version, True)
    target = a0 if which == "dynamic" else a1
    assert b.set(4, make_pte(target, PSE_RW)) == 0
    assert m.mem.read(b.l2, 4) == make_pte(target, PSE_RW)
    assert spage(m, target) == (SGT_dynamic if which == "dynamic" else SGT_mark) | 2
    assert m.frame_table.owner(m.mfn_to_page(target)) == a.domid
    assert f"owned by dom{a.domid}" in isolation(m)
    rep = audit(m)
    assert any(d.field == "referenced by" for d in rep.differences)
    assert m.destroy_domain(a.domid) == 0
    assert a.domid in m.domains and m.domains[a.domid].is_dying   # held by b's mapping


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("which", ["dynamic", "mark"])
def test_foreign_pse_on_a_taken_superpage_refused(version, which):
    m, a, b, a0, a1 = two_guests(version, False)
    snap = m.snapshot()
    assert b.set(4, make_pte(a0 if which == "dynamic" else a1, PSE_RW)) == -errno.EPERM
    unchanged(m, snap)


@pytest.mark.parametrize("version", VERSIONS)
def test_foreign_unmark_faithful(version):
    """b unmarks a's MARK: the state is MARK, count 1 -> NONE, the 512 references go, and
    a's mark is gone (a's own UNMARK now fails)."""
    m, a, b, a0, a1 = two_guests(version, True)
    assert b.ext(MMUEXT_UNMARK_SUPER, a1) == 0
    assert spage(m, a1) == 0
    assert a1 not in m.domains[a.domid].marked
    assert words(m, a1) == (PGC_allocated | 1, PGT_writable_page | PGT_validated)
    assert a.ext(MMUEXT_UNMARK_SUPER, a1) == -errno.EINVAL
    assert audit(m).ok                                      # consistent, but a lost its mark


@pytest.mark.parametrize("version", VERSIONS)
def test_foreign_unmark_refused(version):
    m, a, b, a0, a1 = two_guests(version, False)
    snap = m.snapshot()
    assert b.ext(MMUEXT_UNMARK_SUPER, a1) == -errno.EPERM
    unchanged(m, snap)
    assert a1 in m.domains[a.domid].marked


@pytest.mark.parametrize("version, faithful, rc", [
    ("4.1", True, 0),                  # 4.1 ignores the foreign domain: dom0 marks for itself
    ("4.1", False, -errno.EPERM),      # ... which xensim refuses by default (not dom0's)
    ("4.5", True, -errno.EPERM), ("4.5", False, -errno.EPERM),
    ("4.7", True, -errno.EPERM), ("4.8", True, -errno.EPERM)])
def test_dom0_marks_a_guests_dynamic_superpage_as_foreign(version, faithful, rc):
    """dom0 issues MARK_SUPER with foreigndom = a on a's DYNAMIC superpage."""
    m, a, b, a0, a1 = two_guests(version, faithful)
    snap = m.snapshot()
    got = m.hypercall(0, 26, [MmuextOp(MMUEXT_MARK_SUPER, a0)], [0], a.domid)
    assert got == rc
    if rc == 0:
        assert spage(m, a0) == SGT_mark | 2
        assert a0 in m.domains[0].marked                    # dom0 "holds" a's superpage
        assert "not all its own" in isolation(m)
    else:
        unchanged(m, snap)


# ---------------------------------------------------------------------------------------
# faithful mode never raises: a bad outcome is recorded (m.violations) or visible in the
# counts, the hypercall returns
# ---------------------------------------------------------------------------------------

DESIGNS_FAITHFUL = ["xen-4.1", "pageinfo-count", "superpage-info", "sketch", "per-mapping"]
@pytest.mark.parametrize("design", DESIGNS_FAITHFUL)
@pytest.mark.parametrize("version", ["4.1", "4.5"])
def test_xsa148_pse_set_then_unmap_never_raises(design, version):
    """After the XSA-148 flip (PSE set on a live L1 link, no reference taken) the unmap puts
    what was never taken: recorded, or underflowed into xen-4.1's word, never an exception.
    (Found by the fuzzer: RefcountBug out of per-mapping's put_superpage; fixed.)"""
    m = machine(version, True, design)
    g = G(m, "g")
    s = g.sp[3]
    assert g.set(5, make_pte(s, LINK)) == 0
    assert g.set(5, make_pte(s, LINK | PSE)) == 0                 # the fast path
    assert g.set(5, 0) == 0                                       # puts what was never taken
    if design != "xen-4.1":
        assert any("underflow" in v for v in m.violations)
    else:
        assert spage(m, s) == (1 << 64) - 1                       # underflowed into the state


@pytest.mark.parametrize("design", DESIGNS_FAITHFUL)
@pytest.mark.parametrize("version", ["4.1", "4.5"])
def test_xsa148_ro_pse_cleared_then_unmap_never_raises(design, version):
    """A read-only PSE mapping has PSE cleared by the fast path; unmapping it then puts the
    entry as an L2 -> L1 link. (Found by the fuzzer: in superpage-info, whose read-only count
    takes no type, put_page_and_type raised RefcountBug; fixed: recorded instead.)"""
    m = machine(version, True, design)
    g = G(m, "g")
    s = g.sp[2]
    ro = PSE_RW & ~(RW | _PAGE_DIRTY)
    assert g.set(7, make_pte(s, ro)) == 0
    assert g.set(7, make_pte(s, ro & ~PSE)) == 0                  # the fast path
    assert g.set(7, 0) in (0, -errno.EINVAL)


@pytest.mark.parametrize("design", DESIGNS_FAITHFUL)
@pytest.mark.parametrize("bad", [1 << 30, (1 << 40) - 1024], ids=["1T", "max"])
def test_faithful_pse_batch_with_an_invalid_mfn(design, bad):
    """A batch of 8 PSE maps (the vectorised path's shape), the 4th beyond the frame table,
    faithful 4.1: requests 0-2 done, request 3 recorded as XSA-167 and refused. (Found by
    the fuzzer: the vectorised prefix let invalid MFNs through in faithful mode and every
    design but xen-4.1 raised IndexError from the frame table; fixed.)"""
    m = machine("4.1", True, design)
    g = G(m, "g")
    sps = g.sp[:3] + [bad] + g.sp[3:] + [bad + 512]
    reqs = [MmuUpdate((g.l2 << 12) | (300 + i) * 8, make_pte(sp, PSE_RW))
            for i, sp in enumerate(sps)]
    done = [0]
    assert m.hypercall(g.domid, 1, reqs, done) == -errno.EINVAL
    assert done == [3]
    assert m.violations == [f"XSA-167: superpage table indexed with invalid mfn {bad:#x}"]


# ---------------------------------------------------------------------------------------
# put_superpage with allowsuperpage off: put_spage_pages, no superpage table
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["4.1", "4.5"])
def test_xsa148_pse_flip_with_superpages_off_puts_the_512_frames_directly(version):
    """put_superpage (mm.c, 4.1 to 4.8) with the allowsuperpage option off calls
    put_spage_pages: put_page_and_type on each of the 512 frames, and never touches the
    superpage table (none is allocated then). Only XSA-148 gets there (faithful 4.1/4.5,
    whose L2_DISALLOW_MASK allows PSE even with the option off): PSE set on the live link
    to L1 table s. Unmapping then drops s's own references (the link's: s is devalidated
    and the domain can go away, unlike with the option on) and would drop references the
    other 511 frames never held: recorded as a violation."""
    m = Machine(MemoryMap([(0, 48 * MiB), (64 * MiB, 128 * MiB)], name="faithful"), "none",
                version=version, faithful=True, allow_superpage=False)
    g = G(m, "g")
    s = g.sp[3]
    assert g.set(5, make_pte(s, LINK)) == 0
    assert words(m, s) == (PGC_allocated | 2, L1_LIVE_1)
    assert g.set(5, make_pte(s, LINK | PSE)) == 0                  # the fast path lets it through
    assert g.set(5, 0) == 0
    assert spage(m, s) == 0                                         # the table is never touched
    assert words(m, s) == (PGC_allocated | 1, PGT_l1_page_table)    # link's references dropped
    assert m.pt.live_level(m.mfn_to_page(s)) == 0
    for mfn in (s + 1, s + 511):
        assert words(m, mfn) == (PGC_allocated | 1, 0)              # skipped: nothing to drop
    assert m.violations == [f"put_superpage with allowsuperpage off: 511 of mfn {s:#x}'s "
                            "512 frames drop references they never took"]
    assert m.destroy_domain(g.domid) == 0
    assert g.domid not in m.domains


@pytest.mark.parametrize("version", ["4.7", "4.8"])
def test_pse_flip_with_superpages_off_refused_4_7_4_8(version):
    """Fixed releases (faithful): the flip takes the slow path, get_page_from_l2e refuses
    PSE with the option off (-EINVAL), nothing changes."""
    m = Machine(MemoryMap([(0, 48 * MiB), (64 * MiB, 128 * MiB)], name="faithful"), "none",
                version=version, faithful=True, allow_superpage=False)
    g = G(m, "g")
    s = g.sp[3]
    assert g.set(5, make_pte(s, LINK)) == 0
    snap = m.snapshot()
    assert g.set(5, make_pte(s, LINK | PSE)) == -errno.EINVAL
    assert m.same_as(snap) and m.violations == []
