"""The foreign domain of mmu_update (1) and mmuext_op (26), release by release: Xen's
get_pg_owner, the privilege check after it (inside it up to 4.1, XSM's from 4.3), the
page-table owner in the upper bits of mmu_update's foreigndom, which exits write the done
count, and what a pin on behalf of a dying domain does.

The layout (conftest.small_machine: 64 MiB, PDX none so page == mfn):

=========================  =============================================
guest (dom1)               frames 0x000..0x00f; 0x000 pinned as an L1
other (dom2)               frames 0x010..0x017
dom0                       frames 0x018..0x01b (max_pages 4)
=========================  =============================================

``done`` starts at -1: a -1 after the call means Xen returned before writing it.
"""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from xensim.xen import RELEASE_NAMES
from xensim import DOMID_SELF, Machine, MemoryMap
from xensim.xen._mmu import (MMU_MACHPHYS_UPDATE, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L1_TABLE,
                         MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE, MmuextOp)
from xensim.mem._page_info import (PGC_allocated, PGT_l1_page_table, PGT_l4_page_table, PGT_pinned,
                               PGT_validated)
from xensim.xen._pagetable import _PAGE_PRESENT, make_pte

from conftest import MiB, assert_clean, ext, mmu, populate, ptr, words

VERSIONS = RELEASE_NAMES
P = _PAGE_PRESENT
ALLOC1 = PGC_allocated | 1
L1V = PGT_l1_page_table | PGT_validated
T1, F0, F1 = 0x000, 0x001, 0x002          # the guest's pinned L1 and two plain frames
O_F = 0x010                               # a frame of the other domain
D0_L1, D0_F = 0x018, 0x019                # dom0's own frames


def layout(version: str) -> SimpleNamespace:
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version)
    g = m.create_domain("guest", 2048)
    o = m.create_domain("other", 2048)
    m.domain(0).max_pages = 4
    assert populate(m, g, range(16), 0) == list(range(0x000, 0x010))
    assert populate(m, o, range(8), 0) == list(range(0x010, 0x018))
    assert populate(m, 0, range(4), 0) == list(range(0x018, 0x01c))
    assert ext(m, g, MmuextOp(MMUEXT_PIN_L1_TABLE, T1)) == (0, 1)
    return SimpleNamespace(m=m, g=g, o=o)


def pin(mfn: int) -> MmuextOp:
    return MmuextOp(MMUEXT_PIN_L1_TABLE, mfn)


def pt_dom(domid: int, pg: int = DOMID_SELF) -> int:
    """mmu_update's foreigndom naming ``domid`` as the page-table owner, ``pg`` as page owner."""
    return ((domid + 1) << 16) | pg


def nothing_changes(m, call, expected):
    snap = m.snapshot()
    assert call() == expected
    assert m.same_as(snap)


# -- get_pg_owner -------------------------------------------------------------------------------
class TestGetPgOwner:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_get_pg_owner_own_domid_is_esrch(self, version):
        """get_pg_owner 4.1-4.8: "cannot specify itself as foreign domain". do_mmu_update
        writes done (0) on that exit in every release; do_mmuext_op only in 4.1 (from
        4.5 it returns before the done count)."""
        t = layout(version)
        m = t.m
        ext_done = 0 if version == "4.1" else -1
        for caller in (t.g, 0):
            nothing_changes(m, lambda: ext(m, caller, pin(F1), foreigndom=caller),
                            (-errno.ESRCH, ext_done))
            nothing_changes(m, lambda: mmu(m, caller, (ptr(T1, 0), make_pte(F0, P)), foreigndom=caller),
                            (-errno.ESRCH, 0))

    @pytest.mark.parametrize("version", VERSIONS)
    def test_get_pg_owner_domid_self_is_the_caller(self, version):
        """DOMID_SELF means the caller; mmuext_op's foreigndom is read as a domid_t, so
        bits above 15 do not matter there."""
        t = layout(version)
        m = t.m
        assert ext(m, t.g, pin(F0), foreigndom=DOMID_SELF) == (0, 1)
        assert ext(m, t.g, pin(F1), foreigndom=(1 << 16) | DOMID_SELF) == (0, 1)
        assert m.domain(t.g).pinned == {T1: PGT_l1_page_table, F0: PGT_l1_page_table,
                                        F1: PGT_l1_page_table}
        assert words(m, F1) == (ALLOC1 + 1, L1V | PGT_pinned | 1)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_get_pg_owner_unknown_domain_is_esrch(self, version):
        t = layout(version)
        m = t.m
        nothing_changes(m, lambda: ext(m, 0, pin(F0), foreigndom=42),
                        (-errno.ESRCH, 0 if version == "4.1" else -1))
        nothing_changes(m, lambda: mmu(m, 0, ((F0 << 12) | MMU_MACHPHYS_UPDATE, 7), foreigndom=42),
                        (-errno.ESRCH, 0))

    @pytest.mark.parametrize("version", VERSIONS)
    def test_domu_naming_another_domain_mmuext_op_esrch_4_1_eperm_4_5_on(self, version):
        """4.1: get_pg_owner's IS_PRIV_FOR fails (-ESRCH, done 0); 4.5-4.8: get_pg_owner
        finds the domain and xsm_mmuext_op refuses (-EPERM) before the done count."""
        t = layout(version)
        m = t.m
        want = (-errno.ESRCH, 0) if version == "4.1" else (-errno.EPERM, -1)
        nothing_changes(m, lambda: ext(m, t.g, pin(O_F), foreigndom=t.o), want)
        nothing_changes(m, lambda: ext(m, t.g, foreigndom=t.o), want)          # even empty
        nothing_changes(m, lambda: ext(m, t.g, pin(O_F), foreigndom=0), want)   # dom0 too

    @pytest.mark.parametrize("version", VERSIONS)
    def test_domu_naming_another_domain_mmu_update_per_request_from_4_5(self, version):
        """4.1: -ESRCH before any request. 4.5-4.8: XSM (xsm_mmu_update) is asked at the
        first request that needs it, which fails with -EPERM and done 0; a request of an
        unknown command fails first with -ENOSYS; an empty batch succeeds."""
        t = layout(version)
        m = t.m
        normal = (ptr(T1, 0), make_pte(F0, P))
        machphys = ((O_F << 12) | MMU_MACHPHYS_UPDATE, 7)
        unknown = ((F0 << 12) | 5, 7)
        if version == "4.1":
            for reqs in ([normal], [machphys], [unknown], []):
                nothing_changes(m, lambda: mmu(m, t.g, *reqs, foreigndom=t.o), (-errno.ESRCH, 0))
            return
        nothing_changes(m, lambda: mmu(m, t.g, normal, foreigndom=t.o), (-errno.EPERM, 0))
        nothing_changes(m, lambda: mmu(m, t.g, machphys, normal, foreigndom=t.o), (-errno.EPERM, 0))
        nothing_changes(m, lambda: mmu(m, t.g, unknown, normal, foreigndom=t.o), (-errno.ENOSYS, 0))
        nothing_changes(m, lambda: mmu(m, t.g, foreigndom=t.o), (0, 0))

    @pytest.mark.parametrize("version", VERSIONS)
    def test_dom0_acts_for_a_guest(self, version):
        """The privileged domain passes IS_PRIV_FOR (4.1) and XSM_TARGET (4.5 on)."""
        t = layout(version)
        m = t.m
        assert ext(m, 0, pin(F0), foreigndom=t.g) == (0, 1)
        assert m.domain(t.g).pinned == {T1: PGT_l1_page_table, F0: PGT_l1_page_table}
        assert m.domain(0).pinned == {}
        assert mmu(m, 0, ((F1 << 12) | MMU_MACHPHYS_UPDATE, 0x55), foreigndom=t.g) == (0, 1)
        assert m.m2p.get(F1) == 0x55
        assert ext(m, 0, MmuextOp(MMUEXT_UNPIN_TABLE, F0), foreigndom=t.g) == (0, 1)
        assert words(m, F0) == (ALLOC1, PGT_l1_page_table)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_new_baseptr_ignores_the_foreign_domain_in_4_1(self, version):
        """do_mmuext_op 4.1: NEW_BASEPTR loads the caller's own root whatever foreigndom
        says; 4.5 on refuse a foreign domain there (-EPERM)."""
        t = layout(version)
        m = t.m
        if version == "4.1":
            assert ext(m, 0, MmuextOp(MMUEXT_NEW_BASEPTR, D0_F), foreigndom=t.g) == (0, 1)
            assert (m.domain(0).baseptr, m.domain(t.g).baseptr) == (D0_F, None)
            assert words(m, D0_F) == (ALLOC1 + 1, PGT_l4_page_table | PGT_validated | 1)
        else:
            nothing_changes(m, lambda: ext(m, 0, MmuextOp(MMUEXT_NEW_BASEPTR, D0_F), foreigndom=t.g),
                            (-errno.EPERM, 0))


# -- a dying page owner -------------------------------------------------------------------------
def zombie(version: str) -> SimpleNamespace:
    """dom0 maps the guest's F0 read-only in its own L1, then destroys the guest: a dying
    domain held by that one reference."""
    t = layout(version)
    m = t.m
    assert ext(m, 0, pin(D0_L1)) == (0, 1)
    assert mmu(m, 0, (ptr(D0_L1, 0), make_pte(F0, P)), foreigndom=t.g) == (0, 1)
    assert m.destroy_domain(t.g) == 0
    d = m.domain(t.g)
    assert d.is_dying and d.owned.runs() == [(F0, F0 + 1)] and d.pinned == {}
    assert words(m, F0) == (1, 0)
    return t


class TestDyingPageOwner:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_foreign_pin_on_a_dying_domain_succeeds_and_is_dropped(self, version):
        """do_mmuext_op 4.1-4.8 has no up-front check that the owner is dying: the pin is
        taken, then, racing domain_relinquish_resources, cleared again and its references
        put (the frame keeps its new type at count 0, unvalidated, as Xen leaves it)."""
        t = zombie(version)
        m = t.m
        assert ext(m, 0, pin(F0), foreigndom=t.g) == (0, 1)
        assert m.domain(t.g).pinned == {}
        assert words(m, F0) == (1, PGT_l1_page_table)
        assert mmu(m, 0, (ptr(D0_L1, 0), 0)) == (0, 1)      # dom0's last reference goes:
        assert t.g not in m.domains                           # so does the dying domain
        assert m.heap.free_frames == 0x4000 - 4 - 8
        assert_clean(m)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_mmu_update_naming_a_dying_domain(self, version):
        """do_mmu_update 4.1-4.8: a dying page owner is not refused up front."""
        t = zombie(version)
        m = t.m
        assert mmu(m, 0, ((F0 << 12) | MMU_MACHPHYS_UPDATE, 0x66), foreigndom=t.g) == (0, 1)
        assert m.m2p.get(F0) == 0x66
        assert mmu(m, 0, (ptr(D0_L1, 1), make_pte(F0, P)), foreigndom=t.g) == (0, 1)
        assert words(m, F0) == (2, 0)

    def test_a_pin_of_an_own_frame_by_a_live_domain_stays(self):
        """The drop is for a foreign, dying owner only."""
        t = layout("4.8")
        assert ext(t.m, t.g, pin(F0)) == (0, 1)
        assert words(t.m, F0) == (ALLOC1 + 1, L1V | PGT_pinned | 1)


# -- mmu_update: the page-table owner in foreigndom's upper 16 bits ------------------------------
class TestPageTableOwner:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_dom0_writes_a_guest_table(self, version):
        """pt_owner = guest (bits 16-31 = domid + 1), pg_owner = guest: dom0 maps the
        guest's frame in the guest's own L1."""
        t = layout(version)
        m = t.m
        assert mmu(m, 0, (ptr(T1, 3), make_pte(F0, P)), foreigndom=pt_dom(t.g, t.g)) == (0, 1)
        assert m.mem.read(T1, 3) == make_pte(F0, P)
        assert words(m, F0) == (ALLOC1 + 1, 0)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_domu_naming_another_table_owner(self, version):
        """4.1: IS_PRIV_FOR(d, pt_owner) fails up front (-ESRCH, done 0); 4.5-4.8:
        xsm_mmu_update refuses the page-table owner at the first request (-EPERM)."""
        t = layout(version)
        m = t.m
        want = (-errno.ESRCH, 0) if version == "4.1" else (-errno.EPERM, 0)
        nothing_changes(m, lambda: mmu(m, t.g, (ptr(O_F, 0), 0), foreigndom=pt_dom(t.o)), want)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_domu_naming_itself_as_table_owner(self, version):
        """4.1 asks IS_PRIV_FOR even when the table owner is the caller (-ESRCH for a
        domU); 4.5 on accept it."""
        t = layout(version)
        m = t.m
        call = lambda: mmu(m, t.g, (ptr(T1, 0), make_pte(F0, P)), foreigndom=pt_dom(t.g))  # noqa: E731
        if version == "4.1":
            nothing_changes(m, call, (-errno.ESRCH, 0))
        else:
            assert call() == (0, 1)
            assert words(m, F0) == (ALLOC1 + 1, 0)

    @pytest.mark.parametrize("version,want", [("4.1", (-errno.EINVAL, 0)), ("4.5", (-errno.EINVAL, -1)),
                                              ("4.7", (-errno.ESRCH, -1)), ("4.8", (-errno.ESRCH, -1))])
    def test_unknown_table_owner(self, version, want):
        """rcu_lock_domain_by_id(pt_dom - 1) fails: -EINVAL in 4.1 (done written) and 4.5
        (returned before it), -ESRCH in 4.7 and 4.8 (before it)."""
        t = layout(version)
        m = t.m
        nothing_changes(m, lambda: mmu(m, 0, (ptr(T1, 0), 0), foreigndom=pt_dom(42)), want)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_machphys_with_a_foreign_table_owner(self, version):
        """MMU_MACHPHYS_UPDATE: 4.1 uses the page owner only; 4.5 on refuse it when the
        table owner is not the caller (-EPERM)."""
        t = layout(version)
        m = t.m
        call = lambda: mmu(m, 0, ((F0 << 12) | MMU_MACHPHYS_UPDATE, 0x44),  # noqa: E731
                           foreigndom=pt_dom(t.g, t.g))
        if version == "4.1":
            assert call() == (0, 1)
            assert m.m2p.get(F0) == 0x44
        else:
            nothing_changes(m, call, (-errno.EPERM, 0))


def test_pin_l4_for_a_guest_names_the_guest_as_owner():
    """dom0's pin with foreigndom = guest types the guest's frame (its owner stays)."""
    t = layout("4.8")
    m = t.m
    assert ext(m, 0, MmuextOp(MMUEXT_PIN_L4_TABLE, F1), foreigndom=t.g) == (0, 1)
    assert m.frame_table.owner(F1) == t.g
    assert m.domain(t.g).pinned[F1] == PGT_l4_page_table
