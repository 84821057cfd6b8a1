"""XSA-299's appendices replayed at hypercall granularity, vCPU by vCPU, preempted at named
checks (``hypervisor.preempt: at N ...``).

The fix commits (xen.git, 2019-10-10, part of XSA-299) each end with an appendix: two or
three vCPUs of one guest, a type change preempted on one, the others' calls, then the
first one's continuation, with count_info and type_info at every step. Faithful 4.5-4.8
(``partial_pte`` as released, RELEASE-4.x.0 ``mm.c``) reach the bug; outside faithful
mode, and on 4.22 (``partial_flags``, RELEASE-4.22.0 ``arch/x86/mm.c``), the fixed code
does not. (4.1 has no preemptible put a guest can reach: its unpin, the appendices' first
step, runs to the end.)

The layout (conftest.two_domains, PDX none: page == mfn): A (F[0]) an L3 whose entry 0
links the L2 C (F[1]: entries 0 and 1 link the L1s F[3], F[4]) and entry 1 = x the L2 B
(F[2]: entry 0 links the L1 F[7]); D (F[9]) an empty L3 and E (F[10]) an empty L4, both
pinned. Both auditors run after every call.
"""

import pytest

from conftest import MiB, two_domains, words
from xensim import Machine, MemoryMap
from xensim.mem import (PGC_allocated, PGC_count_mask, PGT_l2_page_table, PGT_l3_page_table, PGT_partial,
                        PGT_pinned, PGT_validated)
from xensim.xen import (Continuation, HYPERVISOR_memory_op, HYPERVISOR_mmu_update,
                        HYPERVISOR_mmuext_op, IncrementalAuditor, MMUEXT_UNPIN_TABLE, MmuUpdate,
                        MmuextOp, XENMEM_decrease_reservation, XenMemoryReservation, audit,
                        make_pte)

F = list(range(0x200, 0x210))
A_, C_, B_, D_, E_ = F[0], F[1], F[2], F[9], F[10]
AL = PGC_allocated
L2, L3 = PGT_l2_page_table, PGT_l3_page_table
L2V, L3V = L2 | PGT_validated, L3 | PGT_validated
L2P, L3P = L2 | PGT_partial, L3 | PGT_partial

#: the checks to preempt at, per release: P1's unpin preempted in C's devalidation after
#: its entry 1 (A left at entry 0), P2's validation of A preempted in B's, at its entry 1.
#: 4.5-4.8: free_l2_table asks after each put of i > 0 (C's entry 1: check 1), alloc_l2_table
#: before entry i > nr_validated_ptes (C resumed at 1: checks 2-511, B: check 512).
#: 4.22: demote_l2/l3_table ask after every entry (A's 511..2: 1-510, B's 511..1: 511-1021,
#: A's 1: 1022, C's 511..1: 1023-1533), promote_l2/l3_table before entry i > nr (C's 2..511:
#: 1534-2043, A's 1: 2044, B's 1: 2045).
CHECKS = {"4.5": "at 1 512", "4.7": "at 1 512", "4.8": "at 1 512", "4.22": "at 1533 2045"}
#: (release, faithful) and whether the bug happens
MODES = [("4.5", True, True), ("4.7", True, True), ("4.8", True, True), ("4.8", False, False),
         ("4.5", False, False), ("4.22", False, False), ("4.22", True, False)]


class Replay:
    def __init__(self, version: str, faithful: bool):
        m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version,
                    faithful=faithful)
        t = two_domains(m, (0x000, 0x400), 0x600, vcpus=3)
        self.m, self.g, self.d = m, t.g, t.d
        m.mem.write(A_, 0, make_pte(C_, 3))
        m.mem.write(A_, 1, make_pte(B_, 3))
        m.mem.write(C_, 0, make_pte(F[3], 3))
        m.mem.write(C_, 1, make_pte(F[4], 3))
        m.mem.write(B_, 0, make_pte(F[7], 3))
        self.inc = IncrementalAuditor(m)
        pins = [MmuextOp(3, E_), MmuextOp(2, D_), MmuextOp(2, A_)]
        assert self.call(0, HYPERVISOR_mmuext_op, pins, [0]) == 0
        m.set_preempt(CHECKS[version])

    def call(self, vcpu, number, *args, bug=None):
        """The call on ``vcpu``, then both auditors: clean, or (``bug``) reporting it."""
        rc = self.m.hypercall(self.g, number, *args, vcpu=vcpu)
        full, inc = audit(self.m), self.inc.check()
        if bug is None:
            assert full.ok, str(full)
            assert inc.ok, str(inc)
        else:
            assert bug in str(full) and bug in str(inc), (str(full), str(inc))
        return rc

    def state(self):
        """(count_info, type_info, nr_validated_ptes, partial entry) of A, C and B."""
        ft = self.m.frame_table
        return [words(self.m, f) + ft.progress.get(self.m.mfn_to_page(f)) for f in (A_, C_, B_)]

    def p1_unpin_a(self, faithful: bool):
        """P1 (vCPU 0): UNPIN A, preempted in C's devalidation: B devalidated (its type 0, A[x]'s
        general reference gone), C left PGT_partial at 1, A at entry 0 (-1 / PTF_partial_set:
        the entry keeps C's general reference), old_guest_table = A."""
        rc = self.call(0, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNPIN_TABLE, A_)], [0])
        assert isinstance(rc, Continuation) and rc.args == (None, None, 0, True)
        v0 = self.d.vcpus[0]
        assert (v0.old_guest_table, v0.old_guest_table_partial) == (A_, True)
        p = 1 if self.m.partial_flags else -1
        assert self.state() == [(AL | 3, L3P | 1, 0, p), (AL | 3, L2P | 1, 1, 0),
                                (AL | 1, L2, 512, 0)]
        return rc

    def p2_l4_entry_to_a(self, faithful: bool):
        """P2 (vCPU 1): mmu_update E[0] = A: mod_l4_entry takes A over and resumes its
        validation (C resumed and finished), preempted in B's validation at its entry 1:
        B PGT_partial (get_page_light), A at x = 1 with partial_pte 1 (no general reference
        of B) / PTF_partial_set (the reference kept: PTF_retain_ref_on_restart). The guest
        never continues it."""
        rc = self.call(1, HYPERVISOR_mmu_update, [MmuUpdate(E_ << 12, make_pte(A_, 3))], [0])
        assert isinstance(rc, Continuation) and self.m.mem.read(E_, 0) == 0
        kept = 1 if self.m.partial_flags else 0
        assert self.state() == [(AL | 3, L3P | 1, 1, 1), (AL | 2, L2V | 1, 1, 0),
                                (AL | 2 + kept, L2P | 1, 1, 0)]

    def p3_l3_entry_to_b(self, faithful: bool):
        """P3 (vCPU 2): mmu_update D[0] = B: mod_l3_entry takes B's partial count over and
        finishes its validation: B's one type reference is now D[0]'s."""
        assert self.call(2, HYPERVISOR_mmu_update, [MmuUpdate(D_ << 12, make_pte(B_, 3))],
                         [0]) == 0
        kept = 1 if self.m.partial_flags else 0
        assert self.state()[2] == (AL | 2 + kept, L2V | 1, 1, 0)


@pytest.mark.parametrize("version, faithful, bug", MODES)
def test_c40b33d726_a_type_ref_dropped_that_was_never_held(version, faithful, bug):
    """c40b33d726 ("Don't drop a type ref unless you held a ref to begin with"), appendix:
    P1 PIN_L3 A, UNPIN A interrupted after B was devalidated; P2 mod_l4_entry to A,
    interrupted while B is validated (A at x, partial_pte 1); P3 mod_l3_entry of another L3
    to B, which completes B; P1's continuation: put_old_guest_table -> free_l3_table from
    x with partial_pte 1 -> __put_page_type(B) drops the type reference D[0] holds (Xen 4.8,
    RELEASE-4.8.0 mm.c: put_page_from_l3e, free_l3_table, put_old_guest_table).
    Fixed (4.22 _put_page_type with PTF_partial_set, put_old_guest_table's
    old_guest_table_partial): B is no longer PGT_partial, so only A[x]'s general reference
    goes."""
    r = Replay(version, faithful)
    rc = r.p1_unpin_a(faithful)
    r.p2_l4_entry_to_a(faithful)
    r.p3_l3_entry_to_b(faithful)
    diff = "mfn 0x202 type_info.count: expected 1, actual 0"
    assert r.call(0, HYPERVISOR_mmuext_op, *rc.args, bug=diff if bug else None) == 0
    assert r.d.vcpus[0].old_guest_table is None and r.m.pt.partial == {}
    if bug:                    # B devalidated while D[0] maps it: a type count of 0
        assert r.state() == [(AL | 1, L3, 1, 1), (AL | 1, L2, 512, 0), (AL | 2, L2, 512, 0)]
    else:                      # B still D[0]'s validated L2
        assert r.state()[:2] == [(AL | 1, L3, 1, 1), (AL | 1, L2, 512, 0)]
        assert r.state()[2] == (AL | 2, L2V | 1, 1, 0)


@pytest.mark.parametrize("version, faithful, bug", MODES)
def test_18b0ab6978_partial_entry_put_after_its_page_was_freed(version, faithful, bug):
    """18b0ab6978 ("Always retain a general ref on partial"), appendix: as c40b33d726's up
    to P3, then V3 clears its L3 entry to B (mod_l3_entry's deferred put, finished by
    put_old_guest_table: B devalidated) and gives B back (decrease_reservation: PGC_allocated
    cleared). A[x] held no general reference of B (partial_pte 1), so B is freed; V1's
    continuation then puts B's type through A[x] on a frame nobody holds (Xen 4.8: a type
    count underflow, or another domain's reference if B was reassigned; xensim's faithful
    mode records it). Fixed: A[x] keeps B's general reference (PTF_partial_set), B is freed
    only when V1's continuation drops it."""
    r = Replay(version, faithful)
    rc = r.p1_unpin_a(faithful)
    r.p2_l4_entry_to_a(faithful)
    r.p3_l3_entry_to_b(faithful)
    kept = 1 if r.m.partial_flags else 0
    # V3 clears D[0]: the old entry's B goes to vCPU 2's old_guest_table (deferred put)
    cont = r.call(2, HYPERVISOR_mmu_update, [MmuUpdate(D_ << 12, 0)], [0])
    assert isinstance(cont, Continuation) and cont.args == (None, None, 0, True)
    assert (r.d.vcpus[2].old_guest_table, r.d.vcpus[2].old_guest_table_partial) == (B_, False)
    assert r.state()[2] == (AL | 2 + kept, L2V | 1, 1, 0)
    assert r.call(2, HYPERVISOR_mmu_update, *cont.args) == 0       # put_old_guest_table
    assert r.d.vcpus[2].old_guest_table is None
    assert r.state()[2] == (AL | 1 + kept, L2, 512, 0)
    res = XenMemoryReservation([B_], 1, 0)
    assert r.call(2, HYPERVISOR_memory_op, XENMEM_decrease_reservation, res) == 1
    ft = r.m.frame_table
    # faithful: freed (no count, no owner); fixed: A[x]'s general reference keeps it
    assert ft.count_info(B_) & PGC_count_mask == (0 if bug else 1)
    assert (ft.owner(B_) == r.g) is not bug
    assert r.m.violations == []
    assert r.call(0, HYPERVISOR_mmuext_op, *rc.args) == 0
    assert ft.count_info(B_) & PGC_count_mask == 0 and r.m.pt.partial == {}
    assert r.m.violations == (["XSA-299: L3 partial entry's put_page_type on mfn 0x202, "
                               "which nothing holds"] if bug else [])
    assert r.m.frame_table.owner(B_) != r.g
