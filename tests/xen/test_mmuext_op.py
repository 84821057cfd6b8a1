"""mmuext_op (hypercall 26): PIN_L1..L4_TABLE, UNPIN_TABLE, NEW_BASEPTR, MARK_SUPER /
UNMARK_SUPER (the xen-4.1 design and each release's order of checks), unknown commands,
batches, and foreign-domain rules. Exact words and errno; every failure leaves the machine
as it was; the auditor runs after every call.

The layout (conftest.small_machine: 64 MiB, PDX none so page == mfn):

=========================  =============================================
guest (dom1)               superpage 0x000 (gpfn 0), frames 0x200..0x20f
                           (gpfn 512..527), superpage 0x400 (gpfn 1024)
other (dom2)               superpage 0x600, frames 0x210..0x217
free                       frame 0x3000
=========================  =============================================
"""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from xensim import DOMID_SELF, HYPERVISOR_mmu_update, Machine, MemoryMap
from xensim.xen._mmu import (MMUEXT_MARK_SUPER, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L1_TABLE,
                         MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE,
                         MMUEXT_UNMARK_SUPER, MMUEXT_UNPIN_TABLE, MmuextOp, MmuUpdate)
from xensim.mem._page_info import (PGC_allocated, PGT_l1_page_table, PGT_l2_page_table,
                               PGT_l3_page_table, PGT_l4_page_table, PGT_pinned, PGT_validated,
                               PGT_writable_page, SGT_dynamic, SGT_mark)
from xensim.xen._pagetable import _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, make_pte

from conftest import MiB, assert_clean, ext, hc, populate, refused_ext, sp_words, spage, two_domains, words

P, RW, PSE = _PAGE_PRESENT, _PAGE_RW, _PAGE_PSE
ALLOC1 = PGC_allocated | 1
WR = PGT_writable_page | PGT_validated
PIN = PGT_pinned
LT = {1: PGT_l1_page_table, 2: PGT_l2_page_table, 3: PGT_l3_page_table, 4: PGT_l4_page_table}
LV = {n: t | PGT_validated for n, t in LT.items()}
PIN_CMD = {1: MMUEXT_PIN_L1_TABLE, 2: MMUEXT_PIN_L2_TABLE, 3: MMUEXT_PIN_L3_TABLE,
           4: MMUEXT_PIN_L4_TABLE}

G_SP, G_SP2 = 0x000, 0x400
F = list(range(0x200, 0x210))          # the guest's 4 KiB frames
O_SP, O_F = 0x600, 0x210
FREE = 0x3000


def op(cmd: int, mfn: int) -> MmuextOp:
    return MmuextOp(cmd, mfn)


def mmu(m, caller: int, *reqs) -> tuple[int, int]:
    done = [-1]
    rc = hc(m, caller, HYPERVISOR_mmu_update, [MmuUpdate((t << 12) | (i * 8), v) for t, i, v in reqs], done)
    return rc, done[0]


def small(**kw) -> Machine:
    return Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", **kw)


def build(m: Machine) -> SimpleNamespace:
    return two_domains(m, (G_SP, G_SP2), O_SP)


@pytest.fixture
def lay(m) -> SimpleNamespace:
    return build(m)


# -- PIN ---------------------------------------------------------------------------------------
class TestPin:
    @pytest.mark.parametrize("level", [1, 2, 3, 4])
    def test_pin_an_empty_table(self, lay, level):
        m = lay.m
        assert ext(m, lay.g, op(PIN_CMD[level], F[0])) == (0, 1)
        assert words(m, F[0]) == (ALLOC1 + 1, LV[level] | PIN | 1)
        assert lay.d.pinned == {m.mfn_to_page(F[0]): LT[level]}
        assert m.pt.live[F[0]] == (level, lay.g)

    def test_pin_l4_validates_the_whole_tree(self, lay):
        m = lay.m
        l4, l3, l2, l1, leaf = F[:5]
        m.mem.write(l4, 0, make_pte(l3, P | RW))
        m.mem.write(l3, 0, make_pte(l2, P | RW))
        m.mem.write(l2, 0, make_pte(l1, P | RW))
        m.mem.write(l2, 1, make_pte(G_SP, P | RW | PSE))
        m.mem.write(l1, 0, make_pte(leaf, P | RW))
        m.mem.write(l1, 1, make_pte(F[5], P))
        assert ext(m, lay.g, op(MMUEXT_PIN_L4_TABLE, l4)) == (0, 1)
        assert words(m, l4) == (ALLOC1 + 1, LV[4] | PIN | 1)
        assert words(m, l3) == (ALLOC1 + 1, LV[3] | 1)
        assert words(m, l2) == (ALLOC1 + 1, LV[2] | 1)
        assert words(m, l1) == (ALLOC1 + 1, LV[1] | 1)
        assert words(m, leaf) == (ALLOC1 + 1, WR | 1)
        assert words(m, F[5]) == (ALLOC1 + 1, 0)
        assert spage(m, G_SP) == SGT_dynamic | 1
        assert sp_words(m, G_SP) == ({ALLOC1 + 1}, {WR | 1})
        assert m.refs.stats.validations == 4
        # unpinning tears the whole tree down again
        assert ext(m, lay.g, op(MMUEXT_UNPIN_TABLE, l4)) == (0, 1)
        assert [words(m, t) for t in (l4, l3, l2, l1)] == [(ALLOC1, LT[n]) for n in (4, 3, 2, 1)]
        assert words(m, leaf) == (ALLOC1, WR) and words(m, F[5]) == (ALLOC1, 0)
        assert spage(m, G_SP) == 0 and sp_words(m, G_SP) == ({ALLOC1}, {WR})
        assert m.refs.stats.devalidations == 4 and m.pt.live == {}
        assert lay.d.pinned == {}

    def test_pin_twice_is_einval(self, lay):
        m = lay.m
        ext(m, lay.g, op(MMUEXT_PIN_L2_TABLE, F[0]))
        refused_ext(m, lay.g, [op(MMUEXT_PIN_L2_TABLE, F[0])], errno.EINVAL)
        assert words(m, F[0]) == (ALLOC1 + 1, LV[2] | PIN | 1)

    def test_pin_as_another_level_is_einval(self, lay):
        m = lay.m
        ext(m, lay.g, op(MMUEXT_PIN_L2_TABLE, F[0]))
        refused_ext(m, lay.g, [op(MMUEXT_PIN_L1_TABLE, F[0])], errno.EINVAL)

    def test_pin_a_table_linked_from_above(self, lay):
        """Already typed (count 1, from an L2 entry): pinning adds the pin's reference."""
        m = lay.m
        ext(m, lay.g, op(MMUEXT_PIN_L2_TABLE, F[0]))
        assert mmu(m, lay.g, (F[0], 0, make_pte(F[1], P | RW))) == (0, 1)
        assert ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F[1])) == (0, 1)
        assert words(m, F[1]) == (ALLOC1 + 2, LV[1] | PIN | 2)
        assert m.refs.stats.validations == 2

    @pytest.mark.parametrize("level,entries", [
        (2, [(0, make_pte(0x201, P | RW)), (1, make_pte(G_SP + 1, P | RW | PSE))]),
        (2, [(0, make_pte(G_SP2 + 0x100, P | PSE))]),
        (1, [(0, make_pte(0x201, P | RW)), (1, make_pte(O_F, P))]),
        (1, [(3, make_pte(FREE, P | RW))]),
        (1, [(0, make_pte(0x201, P | 0x10))]),                # PCD in L1
        (3, [(0, make_pte(0x201, P | RW)), (2, make_pte(G_SP, P | RW | PSE))]),
        (4, [(0, make_pte(0x201, P | RW)), (1, make_pte(0x202, P | RW | PSE))]),
        (4, [(7, make_pte(0x200, P | RW))]),                  # itself, writable: no linear
        (4, [(0, make_pte(0x201, P | RW)), (3, make_pte(0x202, P | RW | 0x100))]),
        (4, [(5, make_pte(0x201, P | RW | 0x10))]),           # PCD at L4
        (2, [(0, make_pte(0x203, P | RW))]),                  # an L1 whose entry is foreign
    ], ids=["l2-pse-unaligned-after-good", "l2-pse-unaligned", "l1-foreign-after-good", "l1-free",
            "l1-pcd", "l3-pse", "l4-pse", "l4-self-rw", "l4-global-after-good", "l4-pcd",
            "l2-deep-foreign"])
    def test_pin_with_invalid_entries_is_refused_and_undone(self, lay, level, entries, request):
        """-EINVAL, but an L1 entry to a frame that cannot be taken: get_page_from_l1e's
        could_not_pin (4.8), -EBUSY, passed on by alloc_l1_table and every level above."""
        m = lay.m
        m.mem.write(0x203, 9, make_pte(O_SP, P))               # used by the l2-deep case
        for i, e in entries:
            m.mem.write(0x200, i, e)
        ebusy = request.node.callspec.id in ("l1-foreign-after-good", "l1-free", "l2-deep-foreign")
        refused_ext(m, lay.g, [op(PIN_CMD[level], 0x200)], errno.EBUSY if ebusy else errno.EINVAL)
        assert words(m, 0x201) == (ALLOC1, 0) and words(m, 0x203) == (ALLOC1, 0)
        assert lay.d.pinned == {} and m.pt.live == {}

    @pytest.mark.parametrize("mfn", [O_F, O_SP, FREE, 0x4000, (1 << 40) - 1],
                             ids=["foreign", "foreign-sp", "free", "max_page", "huge"])
    @pytest.mark.parametrize("level", [1, 4])
    def test_pin_a_frame_that_is_not_the_guests(self, lay, mfn, level):
        refused_ext(lay.m, lay.g, [op(PIN_CMD[level], mfn)], errno.EINVAL)

    def test_pin_a_writable_mapped_frame(self, lay):
        m = lay.m
        m.mem.write(F[0], 0, make_pte(F[1], P | RW))
        ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F[0]))
        for level in (1, 2, 3, 4):
            refused_ext(m, lay.g, [op(PIN_CMD[level], F[1])], errno.EINVAL)

    def test_dom0_pins_for_a_guest(self, lay):
        m = lay.m
        assert ext(m, 0, op(MMUEXT_PIN_L1_TABLE, F[0]), foreigndom=lay.g) == (0, 1)
        assert lay.d.pinned == {F[0]: PGT_l1_page_table}
        assert m.domain(0).pinned == {}
        assert ext(m, 0, op(MMUEXT_UNPIN_TABLE, F[0]), foreigndom=lay.g) == (0, 1)
        assert words(m, F[0]) == (ALLOC1, LT[1])

    def test_dom0_pinning_as_itself_a_guest_frame(self, lay):
        refused_ext(lay.m, 0, [op(MMUEXT_PIN_L1_TABLE, F[0])], errno.EINVAL)


# -- UNPIN -------------------------------------------------------------------------------------
class TestUnpin:
    def test_unpin_drops_the_pin_and_the_entries(self, lay):
        m = lay.m
        m.mem.write(F[0], 0, make_pte(F[1], P | RW))
        m.mem.write(F[0], 1, make_pte(F[2], P))
        ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F[0]))
        assert words(m, F[1]) == (ALLOC1 + 1, WR | 1)
        assert ext(m, lay.g, op(MMUEXT_UNPIN_TABLE, F[0])) == (0, 1)
        assert words(m, F[0]) == (ALLOC1, LT[1])              # devalidated, type kept, unpinned
        assert words(m, F[1]) == (ALLOC1, WR)
        assert words(m, F[2]) == (ALLOC1, 0)
        assert lay.d.pinned == {} and F[0] not in m.pt.live

    def test_unpin_of_a_table_still_linked_keeps_it_valid(self, lay):
        m = lay.m
        m.mem.write(F[1], 0, make_pte(F[2], P | RW))
        ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F[1]), op(MMUEXT_PIN_L2_TABLE, F[0]))
        mmu(m, lay.g, (F[0], 0, make_pte(F[1], P | RW)))
        assert words(m, F[1]) == (ALLOC1 + 2, LV[1] | PIN | 2)
        assert ext(m, lay.g, op(MMUEXT_UNPIN_TABLE, F[1])) == (0, 1)
        assert words(m, F[1]) == (ALLOC1 + 1, LV[1] | 1)
        assert words(m, F[2]) == (ALLOC1 + 1, WR | 1)
        assert lay.d.pinned == {F[0]: PGT_l2_page_table}

    def test_unpin_not_pinned_is_einval(self, lay):
        m = lay.m
        refused_ext(m, lay.g, [op(MMUEXT_UNPIN_TABLE, F[0])], errno.EINVAL)
        mmu(m, lay.g, (F[0], 0, 0))                           # a typed-writable frame, not a table
        refused_ext(m, lay.g, [op(MMUEXT_UNPIN_TABLE, F[0])], errno.EINVAL)

    def test_unpin_twice_is_einval(self, lay):
        m = lay.m
        ext(m, lay.g, op(MMUEXT_PIN_L3_TABLE, F[0]), op(MMUEXT_UNPIN_TABLE, F[0]))
        refused_ext(m, lay.g, [op(MMUEXT_UNPIN_TABLE, F[0])], errno.EINVAL)

    @pytest.mark.parametrize("mfn", [O_F, FREE, 0x4000, (1 << 40) - 1],
                             ids=["foreign-pinned", "free", "max_page", "huge"])
    def test_unpin_a_frame_that_is_not_the_guests(self, lay, mfn):
        m = lay.m
        ext(m, lay.o, op(MMUEXT_PIN_L1_TABLE, O_F))
        refused_ext(m, lay.g, [op(MMUEXT_UNPIN_TABLE, mfn)], errno.EINVAL)
        assert words(m, O_F) == (ALLOC1 + 1, LV[1] | PIN | 1)


# -- NEW_BASEPTR -------------------------------------------------------------------------------
class TestNewBaseptr:
    def test_loads_an_l4(self, lay):
        m = lay.m
        m.mem.write(F[0], 3, make_pte(F[1], P | RW))
        assert ext(m, lay.g, op(MMUEXT_NEW_BASEPTR, F[0])) == (0, 1)
        assert lay.d.baseptr == F[0]
        assert words(m, F[0]) == (ALLOC1 + 1, LV[4] | 1)
        assert words(m, F[1]) == (ALLOC1 + 1, LV[3] | 1)

    def test_pinned_and_loaded(self, lay):
        m = lay.m
        assert ext(m, lay.g, op(MMUEXT_PIN_L4_TABLE, F[0]), op(MMUEXT_NEW_BASEPTR, F[0])) == (0, 2)
        assert words(m, F[0]) == (ALLOC1 + 2, LV[4] | PIN | 2)

    def test_replacing_drops_the_old_root(self, lay):
        m = lay.m
        m.mem.write(F[0], 3, make_pte(F[2], P | RW))
        ext(m, lay.g, op(MMUEXT_NEW_BASEPTR, F[0]))
        assert ext(m, lay.g, op(MMUEXT_NEW_BASEPTR, F[1])) == (0, 1)
        assert lay.d.baseptr == F[1]
        assert words(m, F[0]) == (ALLOC1, LT[4])
        assert words(m, F[2]) == (ALLOC1, LT[3])
        assert words(m, F[1]) == (ALLOC1 + 1, LV[4] | 1)

    def test_reloading_the_same_root(self, lay):
        m = lay.m
        ext(m, lay.g, op(MMUEXT_NEW_BASEPTR, F[0]))
        v0 = m.refs.stats.validations
        assert ext(m, lay.g, op(MMUEXT_NEW_BASEPTR, F[0])) == (0, 1)
        assert words(m, F[0]) == (ALLOC1 + 1, LV[4] | 1)
        assert m.refs.stats.validations == v0

    @pytest.mark.parametrize("case", ["writable", "pinned-l1", "bad-entry", "foreign", "free", "max_page"])
    def test_refused_keeps_the_old_root(self, lay, case):
        m = lay.m
        ext(m, lay.g, op(MMUEXT_NEW_BASEPTR, F[5]))
        target = F[0]
        if case == "writable":
            m.mem.write(F[6], 0, make_pte(F[0], P | RW))
            ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F[6]))         # F[0] is mapped RW
        elif case == "pinned-l1":
            ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F[0]))
        elif case == "bad-entry":
            m.mem.write(F[0], 0, make_pte(O_F, P | RW))
        else:
            target = {"foreign": O_F, "free": FREE, "max_page": 0x4000}[case]
        refused_ext(m, lay.g, [op(MMUEXT_NEW_BASEPTR, target)], errno.EINVAL)
        assert lay.d.baseptr == F[5]
        assert words(m, F[5]) == (ALLOC1 + 1, LV[4] | 1)

    def test_foreigndom_is_eperm(self, lay):
        refused_ext(lay.m, 0, [op(MMUEXT_NEW_BASEPTR, F[0])], errno.EPERM, foreigndom=lay.g)
        assert lay.m.domain(0).baseptr is None and lay.d.baseptr is None


# -- unknown commands, batches, foreign domains ------------------------------------------------
class TestCommandsAndBatches:
    @pytest.mark.parametrize("cmd", [14, 21, 99, -1])          # 14: no command
    def test_unknown_command_is_enosys(self, lay, cmd):
        refused_ext(lay.m, lay.g, [op(cmd, F[0])], errno.ENOSYS)

    def test_batch_stops_at_the_first_failure(self, lay):
        m = lay.m
        rc = ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F[0]), op(MMUEXT_PIN_L2_TABLE, F[1]),
                 op(MMUEXT_PIN_L1_TABLE, F[0]), op(MMUEXT_PIN_L1_TABLE, F[2]))
        assert rc == (-errno.EINVAL, 2)
        assert set(lay.d.pinned) == {F[0], F[1]}
        assert words(m, F[2]) == (ALLOC1, 0)
        assert m.hypercall.stats["mmuext_op"].errors == {"EINVAL": 1}

    def test_unknown_command_stops_a_batch(self, lay):
        assert ext(lay.m, lay.g, op(MMUEXT_PIN_L1_TABLE, F[0]), op(42, 0),
                   op(MMUEXT_PIN_L1_TABLE, F[1])) == (-errno.ENOSYS, 1)
        assert set(lay.d.pinned) == {F[0]}

    def test_empty_batch(self, lay):
        assert ext(lay.m, lay.g) == (0, 0)

    def test_domu_passing_foreigndom_is_eperm(self, lay):
        m = lay.m
        snap = m.snapshot()
        assert ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, F[0]), foreigndom=lay.o) == (-errno.EPERM, -1)
        assert m.same_as(snap)

    def test_dom0_naming_a_missing_domain_is_esrch(self, lay):
        m = lay.m
        snap = m.snapshot()
        assert ext(m, 0, op(MMUEXT_PIN_L1_TABLE, F[0]), foreigndom=99) == (-errno.ESRCH, -1)
        assert m.same_as(snap)


# -- MARK_SUPER / UNMARK_SUPER: the xen-4.1 design ------------------------------------------
def mark(mfn):
    return op(MMUEXT_MARK_SUPER, mfn)


def unmark(mfn):
    return op(MMUEXT_UNMARK_SUPER, mfn)


class TestMarkSuper:
    def test_mark_none(self, lay):
        m = lay.m
        assert ext(m, lay.g, mark(G_SP)) == (0, 1)
        assert spage(m, G_SP) == SGT_mark | 1
        assert sp_words(m, G_SP) == ({ALLOC1 + 1}, {WR | 1})
        assert lay.d.marked == {G_SP}

    def test_mark_dynamic_takes_no_new_references(self, lay):
        m = lay.m
        ext(m, lay.g, op(MMUEXT_PIN_L2_TABLE, F[0]))
        mmu(m, lay.g, (F[0], 0, make_pte(G_SP, P | RW | PSE)))
        assert spage(m, G_SP) == SGT_dynamic | 1
        get0 = m.refs.stats.get_page
        assert ext(m, lay.g, mark(G_SP)) == (0, 1)
        assert spage(m, G_SP) == SGT_mark | 2
        assert sp_words(m, G_SP) == ({ALLOC1 + 1}, {WR | 1})
        assert m.refs.stats.get_page == get0
        # UNMARK at count 2 -> DYNAMIC 1: the mapping keeps the references
        assert ext(m, lay.g, unmark(G_SP)) == (0, 1)
        assert spage(m, G_SP) == SGT_dynamic | 1
        assert sp_words(m, G_SP) == ({ALLOC1 + 1}, {WR | 1})
        assert lay.d.marked == set()
        # ... until the mapping goes
        mmu(m, lay.g, (F[0], 0, 0))
        assert spage(m, G_SP) == 0 and sp_words(m, G_SP) == ({ALLOC1}, {WR})

    def test_unmark_at_one_drops_the_references(self, lay):
        m = lay.m
        ext(m, lay.g, mark(G_SP))
        assert ext(m, lay.g, unmark(G_SP)) == (0, 1)
        assert spage(m, G_SP) == 0
        assert sp_words(m, G_SP) == ({ALLOC1}, {WR})
        assert lay.d.marked == set()

    def test_mapping_a_marked_superpage(self, lay):
        m = lay.m
        ext(m, lay.g, mark(G_SP), op(MMUEXT_PIN_L2_TABLE, F[0]))
        mmu(m, lay.g, (F[0], 0, make_pte(G_SP, P | PSE)), (F[0], 1, make_pte(G_SP, P | RW | PSE)))
        assert spage(m, G_SP) == SGT_mark | 3
        mmu(m, lay.g, (F[0], 0, 0), (F[0], 1, 0))
        assert spage(m, G_SP) == SGT_mark | 1                    # a MARK keeps its references
        assert sp_words(m, G_SP) == ({ALLOC1 + 1}, {WR | 1})
        assert ext(m, lay.g, unmark(G_SP)) == (0, 1)
        assert spage(m, G_SP) == 0 and sp_words(m, G_SP) == ({ALLOC1}, {WR})

    def test_mark_twice_is_einval(self, lay):
        m = lay.m
        ext(m, lay.g, mark(G_SP))
        refused_ext(m, lay.g, [mark(G_SP)], errno.EINVAL)
        assert spage(m, G_SP) == SGT_mark | 1

    def test_unmark_unmarked_is_einval(self, lay):
        m = lay.m
        refused_ext(m, lay.g, [unmark(G_SP)], errno.EINVAL)
        ext(m, lay.g, op(MMUEXT_PIN_L2_TABLE, F[0]))
        mmu(m, lay.g, (F[0], 0, make_pte(G_SP, P | PSE)))
        refused_ext(m, lay.g, [unmark(G_SP)], errno.EINVAL)         # DYNAMIC is not a mark
        assert spage(m, G_SP) == SGT_dynamic | 1

    def test_mark_over_a_page_table_is_einval(self, lay):
        m = lay.m
        ext(m, lay.g, op(MMUEXT_PIN_L1_TABLE, G_SP2 + 511))
        refused_ext(m, lay.g, [mark(G_SP2)], errno.EINVAL)
        assert spage(m, G_SP2) == 0

    def test_a_marked_frame_cannot_become_a_table(self, lay):
        m = lay.m
        ext(m, lay.g, mark(G_SP))
        refused_ext(m, lay.g, [op(MMUEXT_PIN_L1_TABLE, G_SP + 9)], errno.EINVAL)

    def test_batch_mark_then_fail(self, lay):
        m = lay.m
        assert ext(m, lay.g, mark(G_SP), mark(G_SP2), mark(G_SP)) == (-errno.EINVAL, 2)
        assert lay.d.marked == {G_SP, G_SP2}

    def test_destroy_clears_marks_and_frees_everything(self, lay):
        m = lay.m
        ext(m, lay.g, mark(G_SP), op(MMUEXT_PIN_L2_TABLE, F[0]))
        mmu(m, lay.g, (F[0], 0, make_pte(G_SP, P | RW | PSE)))
        free0 = m.heap.free_frames
        assert m.destroy_domain(lay.g) == 0
        assert_clean(m)
        assert m.domain(lay.g) is None
        assert spage(m, G_SP) == 0
        assert m.heap.free_frames == free0 + 2 * 512 + 16


# -- MARK / UNMARK: the order of checks per release ---------------------------------------------
VERSIONS = ("4.1", "4.5", "4.7", "4.8")
D0_SP = 0x200                          # dom0's own superpage in the order tests
_OFF = {"4.1": errno.ENOSYS, "4.5": errno.ENOSYS, "4.7": errno.ENOSYS, "4.8": errno.EOPNOTSUPP}


def _all(e):
    return {v: e for v in VERSIONS}


# name: (option on, caller "g"/0, foreigndom "self"/"g", target, {version: errno or 0, or
# (MARK's, UNMARK's)})
ORDER_CASES = {
    "ok": (True, "g", "self", G_SP, _all(0)),
    "option-off": (False, "g", "self", G_SP, _OFF),
    "foreign": (True, 0, "g", D0_SP, {"4.1": 0, "4.5": errno.EPERM, "4.7": errno.EPERM, "4.8": errno.EPERM}),
    # 4.1 acts on the caller (dom0) and the guest's superpage: MARK of it unmarked, Xen's
    # mark_superpage -> get_spage_pages fails (-EINVAL); UNMARK of the guest's mark, Xen
    # unmarks it (the unchecked owner, section 8): xensim -EPERM
    "foreign-guest-superpage": (True, 0, "g", G_SP, {**_all(errno.EPERM),
                                                     "4.1": (errno.EINVAL, errno.EPERM)}),
    "unaligned": (True, "g", "self", G_SP + 1, _all(errno.EINVAL)),
    "unaligned-256": (True, "g", "self", G_SP + 256, _all(errno.EINVAL)),
    "beyond-max-page": (True, "g", "self", 0x4000, _all(errno.EINVAL)),
    "huge": (True, "g", "self", (1 << 40) - 512, _all(errno.EINVAL)),
    "unaligned+off": (False, "g", "self", G_SP + 1,
                      {"4.1": errno.EINVAL, "4.5": errno.EINVAL, "4.7": errno.ENOSYS, "4.8": errno.EOPNOTSUPP}),
    "foreign+off": (False, 0, "g", D0_SP,
                    {"4.1": errno.ENOSYS, "4.5": errno.EPERM, "4.7": errno.ENOSYS, "4.8": errno.EOPNOTSUPP}),
    "foreign+unaligned": (True, 0, "g", D0_SP + 1,
                          {"4.1": errno.EINVAL, "4.5": errno.EPERM, "4.7": errno.EPERM, "4.8": errno.EPERM}),
    "invalid+off": (False, "g", "self", 0x4000, _OFF),
    "foreign+invalid": (True, 0, "g", 0x4000,
                        {"4.1": errno.EINVAL, "4.5": errno.EPERM, "4.7": errno.EPERM, "4.8": errno.EPERM}),
    "unaligned+invalid": (True, "g", "self", 0x4001, _all(errno.EINVAL)),
}


def _order_machine(version: str, on: bool) -> SimpleNamespace:
    """guest: superpage 0x000; dom0: superpage 0x200 (both marked first for UNMARK when the
    option is on, so that UNMARK has something to act on)."""
    m = small(version=version, allow_superpage=on)
    g = m.create_domain("guest", 2048)
    m.domain(0).max_pages = 512
    assert populate(m, g, [0], 9) == [G_SP]
    assert populate(m, 0, [0], 9) == [D0_SP]
    return SimpleNamespace(m=m, g=g)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("cmd", [MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER], ids=["mark", "unmark"])
@pytest.mark.parametrize("case", list(ORDER_CASES))
def test_mark_unmark_check_order(case, cmd, version):
    on, caller, fd, target, expected = ORDER_CASES[case]
    t = _order_machine(version, on)
    m = t.m
    caller = t.g if caller == "g" else 0
    fd = DOMID_SELF if fd == "self" else t.g
    if on and cmd == MMUEXT_UNMARK_SUPER:
        assert ext(m, t.g, mark(G_SP)) == (0, 1)
        assert ext(m, 0, mark(D0_SP)) == (0, 1)
    err = expected[version]
    if isinstance(err, tuple):
        err = err[cmd == MMUEXT_UNMARK_SUPER]
    snap = m.snapshot()
    rc = ext(m, caller, op(cmd, target), foreigndom=fd)
    if err:
        assert rc == (-err, 0)
        assert m.same_as(snap)
        assert m.violations == []
        return
    assert rc == (0, 1)
    acted_on = m.domain(caller)                                 # 4.1 ignores the foreign domain
    bystander = m.domain(t.g if caller == 0 else 0)
    if cmd == MMUEXT_MARK_SUPER:
        assert spage(m, target) == SGT_mark | 1
        assert sp_words(m, target) == ({ALLOC1 + 1}, {WR | 1})
        assert (acted_on.marked, bystander.marked) == ({target}, set())
    else:
        assert spage(m, target) == 0
        assert sp_words(m, target) == ({ALLOC1}, {WR})
        assert (acted_on.marked, bystander.marked) == (set(), {G_SP if caller == 0 else D0_SP})


@pytest.mark.parametrize("version,expected", [("4.1", 0), ("4.5", 0), ("4.7", -errno.EINVAL),
                                              ("4.8", -errno.EINVAL)])
def test_faithful_mark_of_an_invalid_mfn_is_xsa_167(version, expected):
    """Faithful mode: 4.1-4.5 index the table with an invalid MFN (recorded, nothing changes);
    4.7 and later check the MFN."""
    m = small(version=version, faithful=True)
    g = m.create_domain("guest", 2048)
    populate(m, g, [0], 9)
    snap = m.snapshot()
    assert ext(m, g, mark(0x4000)) == (expected, 1 if expected == 0 else 0)
    assert m.same_as(snap)
    assert m.violations == (["XSA-167: superpage table indexed with invalid mfn 0x4000"] if expected == 0 else [])
