"""A domain's vCPUs and their root tables (xen/_baseptr.py): MMUEXT_NEW_BASEPTR
(``new_guest_cr3``), MMUEXT_NEW_USER_BASEPTR (``do_mmuext_op``), ``put_old_guest_table``
and ``vcpu_destroy_pagetables``, per vCPU, on Xen 4.1, 4.5, 4.7 and 4.8 (read at each
RELEASE-4.x.0). Exact words and errno; every failure leaves the machine as it was; after
every call both auditors (the full one, conftest's ``hc``, and the incremental one) run.

The layout (conftest.two_domains on a 64 MiB machine, PDX none so page == mfn): the guest
(dom1, two vCPUs) has frames 0x200..0x20f, the other domain (dom2, one vCPU) 0x210..0x217.
"""

from __future__ import annotations

import errno

import pytest

from xensim import Machine, MemoryMap
from xensim.mem import (PGC_allocated, PGT_l1_page_table, PGT_l3_page_table, PGT_l4_page_table,
                        PGT_pinned, PGT_validated)
from xensim.xen import (BASEPTR_RULES, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                        HYPERVISOR_update_va_mapping, MmuUpdate,
                        IncrementalAuditor, MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR,
                        MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE, MmuextOp,
                        Release, _PAGE_PRESENT, _PAGE_RW, audit, make_pte, root_mfns, rules_for)
from xensim.xen._mmuext_other import MMUEXT_SET_LDT, MMUEXT_TLB_FLUSH_MULTI

from conftest import MiB, ext, two_domains, words

VERSIONS = ("4.1", "4.5", "4.7", "4.8")
P, RW = _PAGE_PRESENT, _PAGE_RW
ALLOC1 = PGC_allocated | 1
L4V, L3V = PGT_l4_page_table | PGT_validated, PGT_l3_page_table | PGT_validated
F = list(range(0x200, 0x210))          # the guest's 4 KiB frames
O_F = 0x210                            # the other domain's first frame
NEW, USER = MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR


class Lay:
    """The layout, with an incremental auditor checked after every call."""

    def __init__(self, version: str, vcpus: int = 2):
        m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version)
        t = two_domains(m, (0x000, 0x400), 0x600, vcpus=vcpus)
        self.m, self.g, self.o, self.d = m, t.g, t.o, t.d
        self.inc = IncrementalAuditor(m)

    def ext(self, *ops, vcpu: int = 0, foreigndom=None, caller=None):
        kw = {} if foreigndom is None else {"foreigndom": foreigndom}
        rc = ext(self.m, self.g if caller is None else caller, *ops, vcpu=vcpu, **kw)
        rep = self.inc.check()
        assert rep.ok, str(rep)
        return rc

    def refused(self, ops, err: int, **kw):
        snap = self.m.snapshot()
        assert self.ext(*ops, **kw) == (-err, 0)
        assert self.m.same_as(snap)

    def v(self, i: int):
        return self.d.vcpus[i]


def op(cmd: int, mfn: int) -> MmuextOp:
    return MmuextOp(cmd, mfn)


def l4_over_l3(m) -> None:
    """F[0] an L4 whose slot 3 links F[1] (an L3)."""
    m.mem.write(F[0], 3, make_pte(F[1], P | RW))


# -- the rules per release -----------------------------------------------------------------
def test_rules_per_release():
    """do_mmuext_op / new_guest_cr3: 4.1 ignores a foreign domain, has no same-MFN exit and
    makes every failure -EINVAL; 4.5 on (XSA-45's restartable form: ``old_mfn == mfn``,
    put_old_guest_table) refuse a foreign domain and give the errno as found."""
    assert sorted(BASEPTR_RULES) == [Release.R4_1, Release.R4_5]
    old, new = rules_for(Release.R4_1), rules_for(Release.R4_8)
    assert (old.foreign_refused, old.same_mfn_exit, old.errno_as_given, old.old_guest_table) == (
        False, False, False, False)
    assert (new.foreign_refused, new.same_mfn_exit, new.errno_as_given, new.old_guest_table) == (
        True, True, True, True)
    assert rules_for(Release.R4_7) is new


# -- NEW_USER_BASEPTR ---------------------------------------------------------------------
class TestNewUserBaseptr:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_takes_a_root_type_reference(self, version):
        """do_mmuext_op MMUEXT_NEW_USER_BASEPTR, Xen 4.1-4.8:
        get_page_and_type_from_pagenr(mfn, PGT_root_page_table) validates the L4 and its
        tree; the vCPU's guest_table_user is set, guest_table untouched."""
        t = Lay(version)
        l4_over_l3(t.m)
        assert t.ext(op(USER, F[0]), vcpu=1) == (0, 1)
        assert (t.v(1).guest_table_user, t.v(1).guest_table, t.v(0).guest_table_user) == (
            F[0], None, None)
        assert words(t.m, F[0]) == (ALLOC1 + 1, L4V | 1)
        assert words(t.m, F[1]) == (ALLOC1 + 1, L3V | 1)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_zero_means_none_and_puts_the_old_root(self, version):
        """NEW_USER_BASEPTR with MFN 0: no root (``if ( op.arg1.mfn != 0 )``), the old
        root's references put (put_page_and_type): its tree devalidated."""
        t = Lay(version)
        l4_over_l3(t.m)
        t.ext(op(USER, F[0]))
        assert t.ext(op(USER, 0)) == (0, 1)
        assert t.v(0).guest_table_user is None
        assert words(t.m, F[0]) == (ALLOC1, PGT_l4_page_table)
        assert words(t.m, F[1]) == (ALLOC1, PGT_l3_page_table)
        snap = t.m.snapshot()
        assert t.ext(op(USER, 0)) == (0, 1)                  # none again: nothing
        assert t.m.same_as(snap)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_replacing_puts_the_old_root(self, version):
        """NEW_USER_BASEPTR: the new root's references are taken before the old one's are put."""
        t = Lay(version)
        t.ext(op(USER, F[0]))
        assert t.ext(op(USER, F[1])) == (0, 1)
        assert t.v(0).guest_table_user == F[1]
        assert (words(t.m, F[0]), words(t.m, F[1])) == (
            (ALLOC1, PGT_l4_page_table), (ALLOC1 + 1, L4V | 1))

    @pytest.mark.parametrize("version,calls", [("4.1", 1), ("4.5", 0), ("4.7", 0), ("4.8", 0)])
    def test_the_same_mfn_again(self, version, calls):
        """NEW_USER_BASEPTR of the installed root: 4.5 on return at once (``old_mfn ==
        op.arg1.mfn``, XSA-45's restart guard: no reference taken); 4.1 takes a second and
        puts the first. The same words either way."""
        t = Lay(version)
        t.ext(op(USER, F[0]))
        g0 = t.m.refs.stats.get_page_type
        assert t.ext(op(USER, F[0])) == (0, 1)
        assert t.m.refs.stats.get_page_type - g0 == calls
        assert words(t.m, F[0]) == (ALLOC1 + 1, L4V | 1)

    @pytest.mark.parametrize("version", VERSIONS)
    @pytest.mark.parametrize("case", ["pinned-l1", "bad-entry", "foreign", "free", "max_page"])
    def test_refused_is_einval_and_keeps_the_old_root(self, version, case):
        """get_page_and_type_from_pagenr fails (a frame typed otherwise, an L4 entry to
        another domain's frame, a frame not the guest's, free, past max_page): -EINVAL,
        nothing changed, the old user root kept."""
        t = Lay(version)
        t.ext(op(USER, F[5]))
        target = F[0]
        if case == "pinned-l1":
            t.ext(op(MMUEXT_PIN_L1_TABLE, F[0]))
        elif case == "bad-entry":
            t.m.mem.write(F[0], 0, make_pte(O_F, P | RW))
        else:
            target = {"foreign": O_F, "free": 0x3000, "max_page": 0x4000}[case]
        t.refused([op(USER, target)], errno.EINVAL)
        assert t.v(0).guest_table_user == F[5]
        assert words(t.m, F[5]) == (ALLOC1 + 1, L4V | 1)

    @pytest.mark.parametrize("version,err", [("4.1", errno.EINVAL), ("4.5", errno.EPERM),
                                             ("4.7", errno.EPERM), ("4.8", errno.EPERM)])
    def test_a_deep_failure_keeps_its_errno_from_4_5(self, version, err):
        """An L1 entry to a frame that is not RAM four levels down: get_page_from_l1e's
        -EPERM (4.5 on) comes back through alloc_l4_table; 4.1 makes any failure of
        NEW_USER_BASEPTR -EINVAL (``okay = 0``)."""
        t = Lay(version)
        m = t.m
        l4_over_l3(m)
        m.mem.write(F[1], 0, make_pte(F[2], P | RW))
        m.mem.write(F[2], 0, make_pte(F[3], P | RW))
        m.mem.write(F[3], 0, make_pte(0x5000, P | RW))
        t.refused([op(USER, F[0])], err)
        t.refused([op(NEW, F[0])], err)

    @pytest.mark.parametrize("version", ["4.5", "4.7", "4.8"])
    def test_a_foreign_domain_is_eperm_from_4_5(self, version):
        """do_mmuext_op 4.5 on: ``d != pg_owner`` -> -EPERM before anything."""
        t = Lay(version)
        t.refused([op(USER, F[0])], errno.EPERM, caller=0, foreigndom=t.g)

    def test_4_1_ignores_the_foreign_domain(self):
        """do_mmuext_op 4.1: NEW_USER_BASEPTR acts on the caller's own vCPU and frames
        (``curr``, ``d``): dom0 naming the guest loads nothing of the guest's (dom0 owns no
        memory: -EINVAL), and the guest's vCPU is untouched."""
        t = Lay("4.1")
        t.refused([op(USER, F[0])], errno.EINVAL, caller=0, foreigndom=t.g)
        assert t.v(0).guest_table_user is None


# -- several vCPUs ---------------------------------------------------------------------------
class TestSeveralVcpus:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_each_vcpu_holds_its_own_roots(self, version):
        """Two vCPUs, each with a kernel and a user root, two of them the same L4: one
        general and one type reference per root (struct vcpu's guest_table,
        guest_table_user); the auditors count them per vCPU."""
        t = Lay(version)
        assert t.ext(op(NEW, F[0]), op(USER, F[1]), vcpu=0) == (0, 2)
        assert t.ext(op(NEW, F[0]), op(USER, F[2]), vcpu=1) == (0, 2)
        assert [(v.guest_table, v.guest_table_user) for v in t.d.vcpus] == [
            (F[0], F[1]), (F[0], F[2])]
        assert root_mfns(t.d) == (F[0], F[1], F[0], F[2])
        assert words(t.m, F[0]) == (ALLOC1 + 2, L4V | 2)
        assert words(t.m, F[1]) == words(t.m, F[2]) == (ALLOC1 + 1, L4V | 1)
        assert t.d.baseptr == F[0]

    def test_both_auditors_see_a_root_nobody_took(self):
        """A user root set behind Xen's back (no references taken): the full auditor and
        the incremental one each report the frame's counts."""
        t = Lay("4.8")
        t.ext(op(NEW, F[0]), vcpu=1)
        t.v(1).guest_table_user = F[1]
        assert not audit(t.m).ok
        rep = t.inc.check()
        assert not rep.ok and f"{F[1]:#x}" in str(rep)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_destruction_puts_every_vcpus_roots(self, version):
        """domain_relinquish_resources: vcpu_destroy_pagetables on each vCPU puts
        guest_table then guest_table_user (4.1: domain.c; 4.5 on: mm.c, after
        put_old_guest_table); every frame goes back to the heap."""
        t = Lay(version)
        m = t.m
        l4_over_l3(m)
        t.ext(op(MMUEXT_PIN_L4_TABLE, F[0]), op(NEW, F[0]), op(USER, F[2]), vcpu=0)
        t.ext(op(NEW, F[2]), op(USER, F[0]), vcpu=1)
        free0 = m.heap.free_frames
        assert m.destroy_domain(t.g) == 0
        assert m.domain(t.g) is None
        assert m.heap.free_frames == free0 + 1040
        assert audit(m).ok

    @pytest.mark.parametrize("version", VERSIONS)
    def test_a_vcpu_the_domain_does_not_have_is_esrch(self, version):
        """A hypercall from a vCPU the domain does not have: refused as a caller that does
        not exist (-ESRCH), nothing changed."""
        t = Lay(version)
        snap = t.m.snapshot()
        assert t.m.hypercall(t.g, HYPERVISOR_mmuext_op, [op(NEW, F[0])], None, vcpu=2) \
            == -errno.ESRCH
        assert t.m.same_as(snap)

    def test_set_ldt_is_per_vcpu(self):
        """SET_LDT sets the calling vCPU's LDT (v->arch.pv_vcpu.ldt_base / ldt_ents)."""
        t = Lay("4.8")
        assert t.ext(MmuextOp(MMUEXT_SET_LDT, 0x7f0000000000, 16), vcpu=1) == (0, 1)
        assert [(v.ldt_base, v.ldt_ents) for v in t.d.vcpus] == [(0, 0), (0x7f0000000000, 16)]

    @pytest.mark.parametrize("mask,flushed", [(0b01, 1), (0b10, 1), (0b100, 0)])
    def test_tlb_flush_multi_names_the_domains_vcpus(self, mask, flushed):
        """TLB_FLUSH_MULTI: a mask naming one of the domain's vCPUs flushes (its CPU);
        one naming none of them flushes nothing."""
        t = Lay("4.8")
        n0 = t.m.refs.stats.tlb_flushes
        assert t.ext(MmuextOp(MMUEXT_TLB_FLUSH_MULTI, 0, mask)) == (0, 1)
        assert t.m.refs.stats.tlb_flushes - n0 == flushed

    def test_update_va_mapping_walks_the_calling_vcpus_root(self):
        """do_update_va_mapping walks the current vCPU's page tables: a vCPU with no
        kernel root gets -EINVAL while another has one."""
        t = Lay("4.8")
        t.ext(op(NEW, F[0]), vcpu=0)
        snap = t.m.snapshot()
        assert t.m.hypercall(t.g, HYPERVISOR_update_va_mapping, 0, 0, 0, vcpu=1) == -errno.EINVAL
        assert t.m.same_as(snap)


# -- old_guest_table -------------------------------------------------------------------------
class TestOldGuestTable:
    def _left_by_a_preempted_put(self, t):
        """vCPU 1 holds F[0]'s references as old_guest_table (a put Xen preempted)."""
        page = t.m.mfn_to_page(F[0])
        assert t.m.refs.get_page_and_type_rc(page, t.g, PGT_l4_page_table) == 0
        t.v(1).old_guest_table = F[0]
        t.inc.resync()
        assert audit(t.m).ok

    @pytest.mark.parametrize("version", ["4.5", "4.7", "4.8"])
    def test_the_next_mmuext_op_finishes_it(self, version):
        """do_mmuext_op 4.5 on: ``rc = put_old_guest_table(curr)`` first: the vCPU's left
        root is put before the batch runs (the other vCPU's is not its business)."""
        t = Lay(version)
        self._left_by_a_preempted_put(t)
        assert t.ext(op(USER, 0), vcpu=0) == (0, 1)
        assert t.v(1).old_guest_table == F[0]
        assert t.ext(op(USER, 0), vcpu=1) == (0, 1)
        assert t.v(1).old_guest_table is None
        assert words(t.m, F[0]) == (ALLOC1, PGT_l4_page_table)

    @pytest.mark.parametrize("version", ["4.5", "4.8"])
    def test_the_next_mmu_update_finishes_it(self, version):
        """do_mmu_update 4.5 on: ``rc = put_old_guest_table(curr)`` first, even for a
        batch whose first request fails."""
        t = Lay(version)
        self._left_by_a_preempted_put(t)
        done = [0]
        assert t.m.hypercall(t.g, HYPERVISOR_mmu_update, [MmuUpdate(3, 0)], done,
                             vcpu=1) == -errno.ENOSYS
        assert t.v(1).old_guest_table is None
        assert words(t.m, F[0]) == (ALLOC1, PGT_l4_page_table)
        assert audit(t.m).ok

    @pytest.mark.parametrize("version", ["4.5", "4.8"])
    def test_destruction_finishes_it(self, version):
        """vcpu_destroy_pagetables 4.5 on: put_old_guest_table first."""
        t = Lay(version)
        self._left_by_a_preempted_put(t)
        free0 = t.m.heap.free_frames
        assert t.m.destroy_domain(t.g) == 0
        assert t.m.heap.free_frames == free0 + 1040


# -- NEW_BASEPTR with several vCPUs -----------------------------------------------------------
@pytest.mark.parametrize("version,calls", [("4.1", 1), ("4.5", 0), ("4.8", 0)])
def test_new_baseptr_same_mfn_exit_from_4_5(version, calls):
    """new_guest_cr3 4.5 on: ``old_base_mfn == mfn`` -> done, nothing taken; 4.1 takes
    the new reference and puts the old one (the same words)."""
    t = Lay(version)
    t.ext(op(NEW, F[0]), vcpu=1)
    g0 = t.m.refs.stats.get_page_type
    assert t.ext(op(NEW, F[0]), vcpu=1) == (0, 1)
    assert t.m.refs.stats.get_page_type - g0 == calls
    assert words(t.m, F[0]) == (ALLOC1 + 1, L4V | 1)


def test_unpin_with_roots_held_keeps_the_table_valid():
    """A pinned L4 that two vCPUs' roots hold: unpinning drops the pin's references only."""
    t = Lay("4.8")
    t.ext(op(MMUEXT_PIN_L4_TABLE, F[0]), op(NEW, F[0]))
    t.ext(op(USER, F[0]), vcpu=1)
    assert words(t.m, F[0]) == (ALLOC1 + 3, L4V | PGT_pinned | 3)
    assert t.ext(op(MMUEXT_UNPIN_TABLE, F[0])) == (0, 1)
    assert words(t.m, F[0]) == (ALLOC1 + 2, L4V | 2)
