"""mmuext_op (hypercall 26): the commands besides pins, base pointers and marks
(xensim/xen/_mmuext_other.py): TLB_FLUSH_LOCAL/MULTI/ALL, INVLPG_LOCAL/MULTI/ALL,
FLUSH_CACHE, FLUSH_CACHE_GLOBAL, SET_LDT, CLEAR_PAGE, COPY_PAGE, each as Xen's
do_mmuext_op answers it (mm.c at RELEASE-4.1.0, 4.5.0, 4.7.0, 4.8.0), the foreign-domain
rules, and the TLB model's count of the flushes. Every refusal leaves the machine as it was.

The layout is tests/xen/test_mmuext_op.py's (conftest.two_domains): the guest (dom1) owns
superpage 0x000 and frames 0x200..0x20f; the other domain (dom2) superpage 0x600 and
frames 0x210..0x217.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

from xensim import Machine, MemoryMap
from xensim.mem._page_info import PGC_allocated, PGT_l1_page_table, PGT_validated, PGT_writable_page
from xensim.xen._mmu import MMUEXT_NAMES, MMUEXT_PIN_L1_TABLE, MmuextOp
from xensim.xen._mmuext_other import (
    MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE, MMUEXT_FLUSH_CACHE, MMUEXT_FLUSH_CACHE_GLOBAL,
    MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI, MMUEXT_NEW_USER_BASEPTR,
    MMUEXT_SET_LDT, MMUEXT_TLB_FLUSH_ALL, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_MULTI)

from conftest import MiB, assert_clean, ext, refused_ext, two_domains, words

VERSIONS = ("4.1", "4.5", "4.7", "4.8", "4.22")
F = list(range(0x200, 0x210))          # the guest's 4 KiB frames
O_F = 0x210                            # the other domain's first frame
ALLOC1 = PGC_allocated | 1


def lay(version: str = "4.8"):
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version)
    return two_domains(m, (0x000, 0x400), 0x600)


def flushes(m) -> tuple[int, int]:
    """(RefStats.tlb_flushes, the TLB clock)."""
    return m.refs.stats.tlb_flushes, m.refs.tlbflush_clock


# -- the numbers and names -----------------------------------------------------------------------
def test_command_numbers_and_names():
    """MMUEXT_TLB_FLUSH_LOCAL 6 .. FLUSH_CACHE_GLOBAL 18 (public/xen.h, Xen 4.1-4.8): every
    command of the modelled releases has its Xen name; 14 is no command."""
    assert (MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_INVLPG_LOCAL, MMUEXT_TLB_FLUSH_MULTI,
            MMUEXT_INVLPG_MULTI, MMUEXT_TLB_FLUSH_ALL, MMUEXT_INVLPG_ALL, MMUEXT_FLUSH_CACHE,
            MMUEXT_SET_LDT, MMUEXT_NEW_USER_BASEPTR, MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE,
            MMUEXT_FLUSH_CACHE_GLOBAL) == (6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18)
    assert sorted(MMUEXT_NAMES) == [*range(14), *range(15, 21)]
    assert (MMUEXT_NAMES[6], MMUEXT_NAMES[7], MMUEXT_NAMES[18]) == (
        "tlb_flush_local", "invlpg_local", "flush_cache_global")
    assert MMUEXT_NAMES[15] == "new_user_baseptr"


# -- TLB flushes ---------------------------------------------------------------------------------
class TestTlbFlush:
    @pytest.mark.parametrize("version", VERSIONS)
    @pytest.mark.parametrize("cmd,arg2", [(MMUEXT_TLB_FLUSH_LOCAL, 0), (MMUEXT_TLB_FLUSH_ALL, 0),
                                          (MMUEXT_TLB_FLUSH_MULTI, 1)])
    def test_a_whole_flush_of_the_callers_cpu_ticks_the_clock(self, version, cmd, arg2):
        """do_mmuext_op TLB_FLUSH_LOCAL (flush_tlb_local), TLB_FLUSH_ALL (the domain's dirty
        CPUs: its one CPU), TLB_FLUSH_MULTI naming vCPU 0, Xen 4.1-4.8: one flush, counted,
        the clock ticks and the CPU's time is the new clock (flush_area_local's pre/post_flush)."""
        t = lay(version)
        n0, c0 = flushes(t.m)
        assert ext(t.m, t.g, MmuextOp(cmd, 0, arg2)) == (0, 1)
        assert flushes(t.m) == (n0 + 1, c0 + 1) and t.m.refs.tlbflush_time[t.g] == c0 + 1
        assert_clean(t.m)

    @pytest.mark.parametrize("version", VERSIONS)
    @pytest.mark.parametrize("cmd,arg2", [(MMUEXT_INVLPG_LOCAL, 0), (MMUEXT_INVLPG_MULTI, 1),
                                          (MMUEXT_INVLPG_ALL, 0), (MMUEXT_TLB_FLUSH_MULTI, 2),
                                          (MMUEXT_TLB_FLUSH_MULTI, 0)])
    def test_one_address_or_no_vcpu_is_no_whole_flush(self, version, cmd, arg2):
        """INVLPG_* flush one address (flush_area_local with order 0: no clock tick);
        TLB_FLUSH_MULTI naming no vCPU of the domain (vcpumask_to_pcpumask stops at
        max_vcpus) flushes nothing. 0, nothing counted."""
        t = lay(version)
        before = flushes(t.m)
        assert ext(t.m, t.g, MmuextOp(cmd, 0x7f0000001000, arg2)) == (0, 1)
        assert flushes(t.m) == before

    @pytest.mark.parametrize("cmd", [MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_INVLPG_LOCAL,
                                     MMUEXT_TLB_FLUSH_MULTI, MMUEXT_INVLPG_MULTI,
                                     MMUEXT_TLB_FLUSH_ALL, MMUEXT_INVLPG_ALL])
    @pytest.mark.parametrize("version", ["4.5", "4.7", "4.8"])
    def test_a_foreign_domain_is_eperm_from_4_5(self, version, cmd):
        """do_mmuext_op, Xen 4.5-4.8: ``d != pg_owner`` -> -EPERM (dom0 naming the guest)."""
        t = lay(version)
        refused_ext(t.m, 0, [MmuextOp(cmd, 0, 1)], errno.EPERM, foreigndom=t.g)

    def test_4_1_ignores_the_foreign_domain(self):
        """do_mmuext_op, Xen 4.1: the TLB commands act on the caller whatever foreigndom names."""
        t = lay("4.1")
        n0, c0 = flushes(t.m)
        assert ext(t.m, 0, MmuextOp(MMUEXT_TLB_FLUSH_LOCAL, 0), foreigndom=t.g) == (0, 1)
        assert flushes(t.m) == (n0 + 1, c0 + 1) and t.m.refs.tlbflush_time[0] == c0 + 1


# -- cache flushes -------------------------------------------------------------------------------
class TestFlushCache:
    @pytest.mark.parametrize("version,err", [("4.1", errno.EINVAL), ("4.5", errno.EACCES),
                                             ("4.7", errno.EACCES), ("4.8", errno.EACCES)])
    def test_flush_cache_needs_io_rights(self, version, err):
        """do_mmuext_op FLUSH_CACHE: a domU without I/O rights (cache_flush_permitted false)
        -> 4.1 -EINVAL (okay = 0), 4.5-4.8 -EACCES; dom0 (it has them) -> 0."""
        t = lay(version)
        refused_ext(t.m, t.g, [MmuextOp(MMUEXT_FLUSH_CACHE, 0)], err)
        assert ext(t.m, 0, MmuextOp(MMUEXT_FLUSH_CACHE, 0)) == (0, 1)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_flush_cache_global(self, version):
        """do_mmuext_op FLUSH_CACHE_GLOBAL, Xen 4.1-4.8: without cache_flush_permitted
        -EINVAL (4.22: -EACCES, FLUSH_CACHE's case since bbaea9878b, 4.21); a foreign
        domain named: 4.1 -EINVAL (foreigndom != DOMID_SELF), 4.5 on -EPERM; dom0 on
        itself -> 0. No TLB flush."""
        t = lay(version)
        refused_ext(t.m, t.g, [MmuextOp(MMUEXT_FLUSH_CACHE_GLOBAL, 0)],
                    errno.EACCES if version == "4.22" else errno.EINVAL)
        refused_ext(t.m, 0, [MmuextOp(MMUEXT_FLUSH_CACHE_GLOBAL, 0)],
                    errno.EINVAL if version == "4.1" else errno.EPERM, foreigndom=t.g)
        before = flushes(t.m)
        assert ext(t.m, 0, MmuextOp(MMUEXT_FLUSH_CACHE_GLOBAL, 0)) == (0, 1)
        assert flushes(t.m) == before

    def test_flush_cache_foreign_is_eperm_from_4_5(self):
        """do_mmuext_op FLUSH_CACHE, Xen 4.5: ``d != pg_owner`` -> -EPERM before the rights."""
        t = lay("4.5")
        refused_ext(t.m, 0, [MmuextOp(MMUEXT_FLUSH_CACHE, 0)], errno.EPERM, foreigndom=t.g)


# -- SET_LDT -------------------------------------------------------------------------------------
class TestSetLdt:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_a_new_ldt_flushes_once_the_same_again_nothing(self, version):
        """do_mmuext_op SET_LDT, Xen 4.1-4.8: a changed LDT invalidates the shadow LDT and
        flushes the local TLB (one counted flush); the same base and entries again: nothing.
        4.22 (pv_destroy_ldt, since bfa83bbc33 in 4.11): a flush only when shadow-LDT pages
        were mapped, and none are (no LDT fault): the LDT changes, no flush."""
        t = lay(version)
        n0, c0 = flushes(t.m)
        flushed = 0 if version == "4.22" else 1
        assert ext(t.m, t.g, MmuextOp(MMUEXT_SET_LDT, 0x7f0000000000, 16)) == (0, 1)
        assert (t.d.vcpus[0].ldt_base, t.d.vcpus[0].ldt_ents) == (0x7f0000000000, 16)
        assert flushes(t.m) == (n0 + flushed, c0 + flushed)
        assert ext(t.m, t.g, MmuextOp(MMUEXT_SET_LDT, 0x7f0000000000, 16)) == (0, 1)
        assert flushes(t.m) == (n0 + flushed, c0 + flushed)

    @pytest.mark.parametrize("version", VERSIONS)
    @pytest.mark.parametrize("ptr,ents", [(0x7f0000000008, 1), (0x1000, 8193),
                                          (0xFFFF800000001000, 1)])
    def test_bad_arguments_are_einval(self, version, ptr, ents):
        """SET_LDT: a base not page-aligned, more than 8192 entries, a base inside Xen's
        range [HYPERVISOR_VIRT_START, HYPERVISOR_VIRT_END) -> -EINVAL (__addr_ok)."""
        t = lay(version)
        refused_ext(t.m, t.g, [MmuextOp(MMUEXT_SET_LDT, ptr, ents)], errno.EINVAL)

    @pytest.mark.parametrize("version,rc", [("4.1", 0), ("4.5", -errno.EINVAL),
                                            ("4.7", -errno.EINVAL), ("4.8", -errno.EINVAL),
                                            ("4.22", -errno.EINVAL)])
    def test_non_canonical_base_passes_4_1_only(self, version, rc):
        """__addr_ok (x86_64 uaccess.h): 4.1 lets addresses below 1 << 48 through (a
        non-canonical 0x0000_8000_0000_0000), 4.5 on stop at 1 << 47."""
        t = lay(version)
        assert ext(t.m, t.g, MmuextOp(MMUEXT_SET_LDT, 1 << 47, 1)) == (rc, int(rc == 0))

    @pytest.mark.parametrize("version,base", [("4.5", 0), ("4.7", 0), ("4.8", 0),
                                              ("4.22", 0xBAD0BAD0BAD0BAD0)])
    def test_no_entries_base_by_release(self, version, base):
        """SET_LDT with 0 entries: 4.7 and 4.8 take the base as 0 (``ents ? linear_addr :
        0``), so a base in Xen's range passes; 4.5 checks the base as given (-EINVAL, the
        LDT left as it was); 4.22 (cb8a478e1d, 4.14) takes ZERO_BLOCK_PTR and checks no
        base of an empty LDT, a misaligned one included."""
        t = lay(version)
        rc = ext(t.m, t.g, MmuextOp(MMUEXT_SET_LDT, 0xFFFF800000001000, 0))
        assert rc == ((-errno.EINVAL, 0) if version == "4.5" else (0, 1))
        assert (t.d.vcpus[0].ldt_base, t.d.vcpus[0].ldt_ents) == (base, 0)
        if version == "4.22":
            assert ext(t.m, t.g, MmuextOp(MMUEXT_SET_LDT, 0x7f0000000008, 0)) == (0, 1)
            assert (t.d.vcpus[0].ldt_base, t.d.vcpus[0].ldt_ents) == (base, 0)

    @pytest.mark.parametrize("version", ["4.5", "4.8"])
    def test_a_foreign_domain_is_eperm_from_4_5(self, version):
        t = lay(version)
        refused_ext(t.m, 0, [MmuextOp(MMUEXT_SET_LDT, 0x1000, 1)], errno.EPERM, foreigndom=t.g)


# -- CLEAR_PAGE, COPY_PAGE -----------------------------------------------------------------------
class TestClearAndCopy:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_clear_page_zeroes_and_gives_the_references_back(self, version):
        """do_mmuext_op CLEAR_PAGE, Xen 4.1-4.8: get_page + get_page_type(writable) on the
        frame, cleared, put_page_and_type: the words as before but the type (writable, count 0)."""
        t = lay(version)
        t.m.mem.write(F[3], 5, 0x1234)
        assert ext(t.m, t.g, MmuextOp(MMUEXT_CLEAR_PAGE, F[3])) == (0, 1)
        assert not t.m.mem.table(F[3]).any()
        assert words(t.m, F[3]) == (ALLOC1, PGT_writable_page | PGT_validated)
        assert_clean(t.m)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_copy_page_copies_the_source(self, version):
        """COPY_PAGE: the source by get_page, the destination as a writable page; after,
        the destination holds the source's words and both frames' counts are as before."""
        t = lay(version)
        t.m.mem.write(F[1], 7, 0xabc)
        t.m.mem.write(F[2], 9, 0xdef)
        assert ext(t.m, t.g, MmuextOp(MMUEXT_COPY_PAGE, F[2], F[1])) == (0, 1)
        assert np.array_equal(t.m.mem.table(F[2]), t.m.mem.table(F[1]))
        assert t.m.mem.read(F[2], 7) == 0xabc and t.m.mem.read(F[2], 9) == 0
        assert words(t.m, F[1])[0] == ALLOC1 and words(t.m, F[2])[0] == ALLOC1
        assert_clean(t.m)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_a_page_table_or_another_domains_frame_is_einval(self, version):
        """CLEAR_PAGE / COPY_PAGE onto a pinned L1 table (get_page_type(writable) fails), onto
        or from another domain's frame (get_page fails), onto no frame: -EINVAL, nothing changed."""
        t = lay(version)
        assert ext(t.m, t.g, MmuextOp(MMUEXT_PIN_L1_TABLE, F[0])) == (0, 1)
        assert words(t.m, F[0])[1] & PGT_l1_page_table
        for o in (MmuextOp(MMUEXT_CLEAR_PAGE, F[0]), MmuextOp(MMUEXT_COPY_PAGE, F[0], F[1]),
                  MmuextOp(MMUEXT_CLEAR_PAGE, O_F), MmuextOp(MMUEXT_COPY_PAGE, F[1], O_F),
                  MmuextOp(MMUEXT_CLEAR_PAGE, 0x3fffff)):
            refused_ext(t.m, t.g, [o], errno.EINVAL)

    @pytest.mark.parametrize("version,rc", [("4.1", -errno.EINVAL), ("4.5", 0), ("4.8", 0)])
    def test_the_foreign_domains_frame(self, version, rc):
        """dom0 naming the guest: 4.5 on clears the page owner's frame
        (get_page_from_gfn(pg_owner, ...)); 4.1 acts on the caller's frames (get_page of
        dom0 on the guest's frame fails: -EINVAL)."""
        t = lay(version)
        assert ext(t.m, 0, MmuextOp(MMUEXT_CLEAR_PAGE, F[3]), foreigndom=t.g) == (rc, int(rc == 0))


# -- names in tables, reproducers and the trace --------------------------------------------------
def test_tables_name_every_command_by_its_xen_name():
    """The fuzzer's refusal table labels a command given by number by its Xen name."""
    from xensim.fuzz._ops import op_label
    assert op_label({"op": "mmuext_op", "ops": [[6, 0]]}) == "mmuext_op/tlb_flush_local"
    assert op_label({"op": "mmuext_op", "ops": [[18, 0]]}) == "mmuext_op/flush_cache_global"
    assert op_label({"op": "mmuext_op", "ops": [[21, 0]]}) == "mmuext_op/cmd21"


def test_a_reproducers_op_carries_arg2():
    """``[cmd, arg1, arg2]`` in a script's ops: COPY_PAGE's source reaches do_mmuext_op."""
    from xensim.config._hypercall_ops import HypercallOp
    from xensim.config._loader import Loader
    from xensim.fuzz._ops import execute
    t = lay()
    t.m.mem.write(F[1], 3, 0x77)
    data = {"op": "mmuext_op", "domain": "guest", "ops": [["copy_page", F[2], F[1]]]}
    op = Loader(None, "r.yaml").load_dataclass(HypercallOp, data, (), ())
    assert op.as_dict()["ops"] == [["copy_page", F[2], F[1]]]
    res = execute(t.m, {"guest": t.g}, op.as_dict())
    assert (res.rc, res.done) == (0, 1) and t.m.mem.read(F[2], 3) == 0x77


def test_the_trace_narrates_the_guests_own_flush():
    from xensim.teach import Tracer
    t = lay()
    tr = Tracer(t.m, "superpage").install()
    try:
        assert ext(t.m, t.g, MmuextOp(MMUEXT_TLB_FLUSH_LOCAL, 0)) == (0, 1)
    finally:
        tr.uninstall()
    clock = t.m.refs.tlbflush_clock
    assert [ln.text for ln in tr.lines] == ["mmuext_op dom1: tlb_flush_local mfn 0x0",
                                            f"TLB flush of dom1's CPU (clock -> {clock})", "-> 0"]
    assert tr.flushes == 1 and tr.untraced == 0
