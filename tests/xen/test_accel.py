"""The accelerator harness: every accelerator (xensim.xen.accel) against the scalar path,
on generated states.

Each case builds a machine state, then ``conftest.both_modes`` runs the same call on two
deep copies, one stepwise (every operation by its scalar path, Xen's algorithm) and one
vectorised (accelerators allowed), and asserts the same result, the same machine, the
same statistics and the same events, normalised (what ``both_modes`` says it compares).
The states are drawn by Hypothesis, each scenario so that its accelerator's precondition
holds in many of them and fails, at some point, in the others; the fixed examples
elsewhere (test_memory_op.py, test_mmu_update.py ...) run through the same comparison.

The 64 MiB machine (conftest.small_machine): frames 0..0x3fff, one PDX group.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xensim import (HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                    MMUEXT_PIN_L1_TABLE, MMUEXT_UNPIN_TABLE, XENMEM_decrease_reservation,
                    Machine, MmuextOp, MmuUpdate, XenMemoryReservation)
from xensim.designs import REGISTRY, design_names
from xensim.guest._guest import GuestKernel
from xensim.mem._page_info import PGT_l1_page_table, PGT_shared_page, PGT_writable_page
from xensim.xen import accel
from xensim.xen._pagetable import _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER, make_pte

from conftest import both_modes, populate, pse_machine, ptr, small_machine

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: per accelerator, the scenario (a test of this module) that exercises it
SCENARIOS = {
    "TakeRun": "test_take_run", "DropRun": "test_drop_run", "PseBatch": "test_pse_batch",
    "PlainWriteBatch": "test_plain_write_batch", "RemoveRun": "test_remove_run",
    "L1RunGet": "test_l1_run", "L1RunPut": "test_l1_run", "L1ScatteredPut": "test_l1_scattered",
}


def test_every_accelerator_has_a_scenario():
    assert sorted(type(a).__name__ for a in accel.ACCELERATORS) == sorted(SCENARIOS)
    for name in set(SCENARIOS.values()):
        assert callable(globals()[name])


def test_every_accelerator_declares_its_contract():
    for a in accel.ACCELERATORS:
        assert a.slot in accel.slots() and a.precondition and isinstance(a.hides, tuple)


# -- frame states ------------------------------------------------------------------------
#: what a frame of the guest's superpage at MFN 0 may hold before a run is taken or put
FRAME = st.sampled_from(["plain", "ref", "writable", "writable2", "l1", "other-owner",
                         "given-up", "free", "top"])


def frames(m: Machine, g: int, o: int, states: list[str]) -> None:
    """Put frames 0.. of ``g``'s superpage (populated at MFN 0) in ``states``."""
    from xensim.mem._page_info import PGC_allocated, PGC_count_mask, PGC_state_inuse
    refs, ft = m.refs, m.frame_table
    for i, s in enumerate(states):
        if s == "ref":
            refs.get_page(i, g)
        elif s in ("writable", "writable2"):
            for _ in range(1 + (s == "writable2")):
                refs.get_page_and_type(i, g, PGT_writable_page)
        elif s == "l1":
            refs.get_page_and_type(i, g, PGT_l1_page_table)
        elif s == "other-owner":
            ft.set_owner(i, o)
        elif s == "given-up":
            refs.get_page(i, g)
            refs.clear_allocated(i)
            refs.put_page(i)                 # count 1 left, no PGC_allocated: freed at 0
        elif s == "free":
            ft.set_count_info(i, 0)
        elif s == "top":
            ft.set_count_info(i, PGC_state_inuse | PGC_allocated | (PGC_count_mask - 2))


def guest_machine(states: list[str]) -> tuple[Machine, int]:
    m = small_machine()
    g = m.create_domain("guest", 2048)
    o = m.create_domain("other", 16)
    populate(m, g, [0], 9)
    frames(m, g, o, states)
    m.refs.stats.reset()
    return m, g


# -- the run accelerators ----------------------------------------------------------------
@SETTINGS
@given(st.lists(FRAME, min_size=1, max_size=40), st.booleans(), st.integers(0, 8))
def test_take_run(states, typed, first):
    """get_pages_and_type on a run: TakeRun against the frame loop (Xen 4.1's
    get_superpage: get_page_and_type frame by frame, undone in reverse at a failure)."""
    m, g = guest_machine(states)
    n = max(1, len(states) - first)
    t = PGT_writable_page if typed else None
    both_modes(m, lambda c: c.refs.get_pages_and_type(first, n, g, t),
               expect_accelerated=True)


#: frame states every put of a run can take (a count to drop; typed: a type count too)
PUTTABLE = st.sampled_from(["plain", "ref", "writable", "writable2", "given-up", "l1"])


@SETTINGS
@given(st.lists(PUTTABLE, min_size=1, max_size=40), st.booleans())
def test_drop_run(states, typed):
    """put_pages_and_type on a run: DropRun against put_page_type / put_page frame by
    frame (frames reaching 0 freed; a page-table type: the loop, which devalidates)."""
    if typed:
        states = [s if s in ("writable", "writable2", "l1") else "writable" for s in states]
    m, g = guest_machine(states)
    has_table = typed and "l1" in states
    both_modes(m, lambda c: c.refs.put_pages_and_type(0, len(states), typed),
               expect_accelerated=not has_table)


def _uniform_taken(monkeypatch, name: str) -> list:
    """Record, in the list returned, each result of the run accelerators' same-words form
    ``name`` (``_take_uniform`` / ``_drop_uniform``): True when it took the run itself."""
    from xensim.xen.accel import _runs
    seen, real = [], getattr(_runs, name)
    monkeypatch.setattr(_runs, name, lambda *a: seen.append(real(*a)) or seen[-1])
    return seen


@pytest.mark.parametrize("state", ["plain", "ref", "writable", "writable2", "l1", "other-owner",
                                   "given-up", "free", "top", "stamped"])
@pytest.mark.parametrize("type", [None, PGT_writable_page, PGT_shared_page])
def test_take_run_uniform(state, type, monkeypatch):
    """get_pages_and_type on a run whose frames hold the same words (TakeRun's form decided
    from one frame's words, a superpage as populate_physmap or its last mapping left it),
    in each frame state, against the frame loop; ``stamped``: frames whose last typed
    references went (TLB stamps), taken with another type, which flushes."""
    m, g = guest_machine(["writable" if state == "stamped" else state] * 40)
    if state == "stamped":
        m.refs.put_pages_and_type(0, 40, True)
    seen = _uniform_taken(monkeypatch, "_take_uniform")
    _, s, _ = both_modes(m, lambda c: c.refs.get_pages_and_type(0, 40, g, type),
                         expect_accelerated=True)
    fails = state in ("other-owner", "free") or (
        type is not None and (state == "l1" or type == PGT_shared_page
                              and state in ("writable", "writable2")))
    assert seen == [not fails]
    if state == "stamped" and type == PGT_shared_page:
        assert s.refs.stats.tlb_flushes == 1


@pytest.mark.parametrize("state", ["plain", "ref", "writable", "writable2", "given-up", "l1"])
@pytest.mark.parametrize("typed", [False, True])
def test_drop_run_uniform(state, typed, monkeypatch):
    """put_pages_and_type on a run whose frames hold the same words (DropRun's form decided
    from one frame's words): the last references freed, the last typed ones stamped, a
    page-table type left to the loop, a count at 0 the loop's RefcountBug."""
    m, g = guest_machine([state] * 40)
    seen = _uniform_taken(monkeypatch, "_drop_uniform")
    out, _, _ = both_modes(m, lambda c: c.refs.put_pages_and_type(0, 40, typed))
    if typed and state in ("plain", "ref", "given-up"):
        assert out[0] == "raised" and out[1] == "RefcountBug"
    assert seen == [not (typed and state in ("plain", "ref", "given-up", "l1"))]


# -- mmu_update's batches --------------------------------------------------------------------
N = 12                                    # superpages the PSE guest owns
PSE_DESIGNS = [n for n in design_names() if REGISTRY[n].supports_pse]


def pse_guest(design: str):
    """pse_machine's layout, with the other domain's superpage MFN instead of its domid."""
    m, g, k, other, l2 = pse_machine(design, N)
    return m, g, k, GuestKernel(m, other).mfn(0), l2


def pse(mfn: int, rw: bool) -> int:
    return make_pte(mfn, _PAGE_PRESENT | _PAGE_USER | _PAGE_PSE | (_PAGE_RW if rw else 0))


def mmu_update(c: Machine, caller: int, reqs) -> tuple[int, int]:
    done = [-1]
    rc = c.hypercall(caller, HYPERVISOR_mmu_update, [MmuUpdate(p, v) for p, v in reqs], done)
    return rc, done[0]


#: one PSE request: a superpage of the guest (0..N-1), the foreign one, an unaligned or
#: invalid MFN, or a repeat of the previous one
PSE_PICK = st.one_of(st.integers(0, N - 1), st.sampled_from(["foreign", "unaligned", "invalid"]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PSE_DESIGNS), st.lists(PSE_PICK, min_size=8, max_size=14),
       st.lists(st.booleans(), min_size=14, max_size=14), st.integers(0, 13), st.booleans())
def test_pse_batch(design, picks, rws, unmap_at, unmap):
    """A batch of PSE maps into one L2 table (then, ``unmap``, a batch clearing them):
    PseBatch (the design's get_superpages / put_superpages) against do_mmu_update's loop,
    which stops at the first failing request with its errno."""
    m, g, k, foreign, l2 = pse_guest(design)
    sps = k.superpage_mfns(0, N)
    mfns = [sps[p] if isinstance(p, int) else foreign if p == "foreign"
            else sps[0] + 1 if p == "unaligned" else 0x7fffe00 for p in picks]
    reqs = [((l2 << 12) | (i * 8), pse(mfn, rws[i])) for i, mfn in enumerate(mfns)]
    if not unmap:
        both_modes(m, lambda c: mmu_update(c, g, reqs))
        return
    rc, done = mmu_update(m, g, reqs)
    clears = [((l2 << 12) | (i * 8), 0) for i in range(max(done, 8))]
    both_modes(m, lambda c: mmu_update(c, g, clears))


def test_pse_batch_applies():
    """The generated cases include ones the accelerator takes: a clean batch of maps, then
    of clears, is done at once (and agrees with the loop)."""
    for design in PSE_DESIGNS:
        m, g, k, foreign, l2 = pse_guest(design)
        reqs = [((l2 << 12) | (i * 8), pse(mfn, True)) for i, mfn in enumerate(k.superpage_mfns(0, N))]
        assert both_modes(m, lambda c: mmu_update(c, g, reqs), expect_accelerated=True)[0] == (0, N)
        mmu_update(m, g, reqs)
        clears = [((l2 << 12) | (i * 8), 0) for i in range(N)]
        assert both_modes(m, lambda c: mmu_update(c, g, clears), expect_accelerated=True)[0] == (0, N)


TABLE = 0x10
#: one ordinary write: an index and a value (an entry, zero, or any 64-bit word)
WRITE = st.tuples(st.integers(0, 511), st.one_of(
    st.just(0), st.integers(0x100, 0x1ff).map(lambda f: (f << 12) | 0x67),
    st.integers(0, (1 << 64) - 1)))


@SETTINGS
@given(st.lists(WRITE, min_size=8, max_size=40),
       st.sampled_from(["fresh", "writable", "former-l1", "foreign", "live-l1", "free"]),
       st.sampled_from([0, 2]))
def test_plain_write_batch(writes, frame, cmd):
    """Ordinary writes into one frame: PlainWriteBatch (the first request by the scalar
    path, then the others at once) against one request at a time (_mmu_update_one: a
    temporary get_page, get_page_type(writable), the write, the puts)."""
    m, g = guest_machine([])
    table = TABLE
    if frame == "writable":
        assert m.refs.get_page_and_type(TABLE, g, PGT_writable_page)
    elif frame in ("former-l1", "live-l1"):
        assert mmu_update(m, g, [(ptr(TABLE, i), ((0x100 + i) << 12) | 0x67) for i in range(8)]) == (0, 8)
        assert m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L1_TABLE, TABLE)], [0]) == 0
        if frame == "former-l1":
            assert m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNPIN_TABLE, TABLE)], [0]) == 0
    elif frame == "foreign":
        o = m.create_domain("other2", 16)
        table = populate(m, o, [0], 0)[0]
    elif frame == "free":
        table = 0x1000
    reqs = [(ptr(table, i, cmd), v) for i, v in writes]
    both_modes(m, lambda c: mmu_update(c, g, reqs),
               expect_accelerated=True if frame in ("fresh", "writable", "former-l1") else None)


# -- decrease_reservation ------------------------------------------------------------------
#: what a frame of the extent may be before it is given back
REMOVED = st.sampled_from(["simple"] * 6 + ["ref", "pinned", "given-up", "foreign", "top",
                                             "unmapped", "remapped"])


@SETTINGS
@given(st.dictionaries(st.integers(0, 511), REMOVED, max_size=6), st.sampled_from([4, 9]),
       st.integers(1, 3))
def test_remove_run(changes, order, extents):
    """decrease_reservation of order-4 or order-9 extents: RemoveRun (the leading frames in
    guest_remove_page's simple state at once) against guest_remove_page frame by frame
    (Xen's decrease_reservation, common/memory.c): the same frames removed, the same
    extents done."""
    from xensim.mem._page_info import PGC_allocated, PGC_count_mask, PGC_state_inuse
    m = small_machine()
    g = m.create_domain("guest", 4096)
    o = m.create_domain("other", 16)
    populate(m, g, [0, 512], 9)
    for i, what in changes.items():
        if what == "ref":
            m.refs.get_page(i, g)
        elif what == "pinned":
            assert m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L1_TABLE, i)], [0]) == 0
        elif what == "given-up":
            m.refs.get_page(i, g)
            m.domain(g).allocated.remove(i, i + 1)
            m.refs.clear_allocated(i)
        elif what == "foreign":
            m.frame_table.set_owner(i, o)
        elif what == "top":
            m.frame_table.set_count_info(i, PGC_state_inuse | PGC_allocated | (PGC_count_mask - 2))
        elif what == "unmapped":
            m.m2p.clear(i)
        elif what == "remapped":
            m.domain(g).p2m.set(m.m2p.get(i), 0x300)
    step = 1 << order
    mfns = [j * step for j in range(extents)]
    both_modes(m, lambda c: c.hypercall(g, HYPERVISOR_memory_op, XENMEM_decrease_reservation,
                                        XenMemoryReservation(list(mfns), len(mfns), order)))


def test_remove_run_applies():
    m = small_machine()
    g = m.create_domain("guest", 2048)
    populate(m, g, [0], 9)
    assert both_modes(m, lambda c: c.hypercall(g, HYPERVISOR_memory_op, XENMEM_decrease_reservation,
                                               XenMemoryReservation([0], 1, 9)),
                      expect_accelerated=True)[0] == 1


# -- L1 tables -------------------------------------------------------------------------------
def l1_guest(entries: list[int]) -> tuple[Machine, int]:
    """The guest of guest_machine with ``entries`` written into frame TABLE (not a table)."""
    m, g = guest_machine([])
    m.mem.write_many(TABLE, np.arange(len(entries), dtype=np.int64),
                     np.array(entries, dtype=np.uint64))
    return m, g


def pin_then_unpin(m: Machine, g: int) -> None:
    """Pin TABLE as an L1 table (alloc_l1_table's loop), then unpin it (free_l1_table's)."""
    pin = lambda c: c.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L1_TABLE, TABLE)], [0])
    rc, _, v = both_modes(m, pin)
    if rc == 0:                              # (no range_put subscriber: it turns L1RunPut off)
        both_modes(v, lambda c: c.hypercall(g, HYPERVISOR_mmuext_op,
                                            [MmuextOp(MMUEXT_UNPIN_TABLE, TABLE)], [0]),
                   range_put=False)


@SETTINGS
@given(st.integers(64, 300), st.integers(0x100, 0x180), st.booleans(),
       st.sampled_from([None, "foreign", "gap", "flags", "free", "l1-typed"]), st.integers(0, 63))
def test_l1_run(n, first, rw, flaw, at):
    """An L1 table mapping a run of consecutive frames (the 2 MiB fallback's): L1RunGet /
    L1RunPut (get_pages_and_type / put_pages_and_type on the run) against the entry loops
    of alloc_l1_table and free_l1_table; a flaw at entry ``at`` leaves it to the loop."""
    flags = 0x67 if rw else 0x65
    frames_ = [first + i for i in range(n)]
    entries = [(f << 12) | flags for f in frames_]
    m, g = l1_guest(entries)
    if flaw == "foreign":
        o = m.create_domain("o3", 16)
        entries[at] = (populate(m, o, [0], 0)[0] << 12) | flags
    elif flaw == "gap":
        entries[at] = ((first + n + 5) << 12) | flags
    elif flaw == "flags":
        entries[at] ^= _PAGE_RW
    elif flaw == "free":
        entries[at] = (0x2000 << 12) | flags
    elif flaw == "l1-typed":
        m.refs.get_page_and_type(frames_[at], g, PGT_l1_page_table)
    m.mem.write_many(TABLE, np.arange(n, dtype=np.int64), np.array(entries, dtype=np.uint64))
    pin_then_unpin(m, g)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0x100, 0x1ff), st.booleans()), min_size=16, max_size=200),
       st.sampled_from([None, "l1-typed", "lost-count"]))
def test_l1_scattered(entries, flaw):
    """An L1 table of frames in any order, with repeats: L1ScatteredPut (the puts of the
    entries at once) against free_l1_table's entry loop (put_page_from_l1e)."""
    m, g = l1_guest([(f << 12) | (0x67 if rw else 0x65) for f, rw in entries])
    pin = lambda c: c.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L1_TABLE, TABLE)], [0])
    if pin(m) != 0:
        return
    if flaw == "l1-typed":                   # a mapped frame becomes an L1 table meanwhile
        f = next((f for f, rw in entries if not rw), None)
        if f is not None:
            m.refs.get_page_and_type(f, g, PGT_l1_page_table)
    elif flaw == "lost-count":               # a refcount bug planted: the loop raises
        from xensim.mem._page_info import PGC_state_inuse
        m.frame_table.set_count_info(entries[0][0], PGC_state_inuse)
    both_modes(m, lambda c: c.hypercall(g, HYPERVISOR_mmuext_op,
                                        [MmuextOp(MMUEXT_UNPIN_TABLE, TABLE)], [0]),
               expect_accelerated=True if flaw is None and len(entries) >= 16 else None)


# -- the harness catches a wrong accelerator -------------------------------------------------
class MiscountingTakeRun(accel.TakeRun):
    """A planted bug: the right words, but one get_page too many counted."""
    def apply(self, refs, first, n, d, type):
        r = super().apply(refs, first, n, d, type)
        if r is not None:
            refs.stats.add(get_page=1)
        return r


class UnreportedDropRun(accel.DropRun):
    """A planted bug: the words written through the group arrays, with no event."""
    def apply(self, refs, first, n, typed=True):
        if typed:
            return None
        ci = refs.ft.group(0)[0]
        ci[first:first + n] -= np.uint64(1)
        refs.stats.add(put_page=n)
        return n


@pytest.mark.parametrize("planted, target", [(MiscountingTakeRun, accel.TakeRun),
                                             (UnreportedDropRun, accel.DropRun)])
def test_a_wrong_accelerator_is_caught(planted, target):
    """A miscounting accelerator, and one that writes words no event reports, fail the
    harness (the correct one passes on the same state)."""
    m, g = guest_machine(["ref"] * 16)
    op = ((lambda c: c.refs.get_pages_and_type(0, 16, g, None)) if target is accel.TakeRun
          else (lambda c: c.refs.put_pages_and_type(0, 16, False)))
    quiet = target is accel.DropRun          # range_put would report the run for it
    both_modes(m, op, expect_accelerated=True, range_put=not quiet)
    i = next(i for i, a in enumerate(accel.ACCELERATORS) if type(a) is target)
    real = accel.ACCELERATORS[i]
    accel.ACCELERATORS[i] = planted()
    try:
        accel.bind(m)                        # the slot now tries the planted accelerator
        with pytest.raises(AssertionError):
            both_modes(m, op, range_put=not quiet)
    finally:
        accel.ACCELERATORS[i] = real


def test_a_wrong_same_words_check_is_caught(monkeypatch):
    """A planted bug in the run accelerators' same-words form: a run whose frames differ
    taken as if all held the first frame's words fails the harness."""
    from xensim.mem import _frametable
    m, g = guest_machine(["plain"] * 8 + ["writable"] * 8)
    op = lambda c: c.refs.get_pages_and_type(0, 16, g, PGT_writable_page)
    both_modes(m, op, expect_accelerated=True)
    monkeypatch.setattr(_frametable, "_same", lambda a, lo, hi: a.item(lo))
    with pytest.raises(AssertionError):
        both_modes(m, op)


# -- designs written from the docs (examples/designs): their hooks and batch forms ------------
@pytest.fixture(scope="module")
def example_designs():
    """examples/designs/*.py loaded; the registry as it was afterwards."""
    from pathlib import Path
    from xensim import load_design_file
    from xensim.designs import _loading
    root = Path(__file__).resolve().parents[2] / "examples" / "designs"
    saved = dict(REGISTRY), dict(_loading._FILES), dict(_loading._ORIGIN)
    names = [n for path in sorted(root.glob("*.py")) for n in load_design_file(path)]
    yield [n for n in names if REGISTRY[n].supports_pse]
    for state, old in zip((REGISTRY, _loading._FILES, _loading._ORIGIN), saved):
        state.clear()
        state.update(old)


def test_example_designs(example_designs):
    """A batch of PSE maps, the same superpages unmapped, a type change on a frame of one
    of them (a design caching references drops them in its type_conflict hook) and their
    extents given back (its frames_leaving hook), each through the harness."""
    assert example_designs
    for design in example_designs:
        m, g, k, foreign, l2 = pse_guest(design)
        sps = k.superpage_mfns(0, N)
        maps = [((l2 << 12) | (i * 8), pse(mfn, True)) for i, mfn in enumerate(sps)]
        _, _, m = both_modes(m, lambda c: mmu_update(c, g, maps))
        clears = [((l2 << 12) | (i * 8), 0) for i in range(N)]
        _, _, m = both_modes(m, lambda c: mmu_update(c, g, clears))
        _, _, m = both_modes(m, lambda c: c.refs.get_pages_and_type(
            c.mfn_to_page(sps[1]), 512, g, PGT_l1_page_table and None))
        _, _, m = both_modes(m, lambda c: c.hypercall(g, HYPERVISOR_mmuext_op,
                                                      [MmuextOp(MMUEXT_PIN_L1_TABLE, sps[2] + 5)], [0]))
        both_modes(m, lambda c: c.hypercall(g, HYPERVISOR_memory_op, XENMEM_decrease_reservation,
                                            XenMemoryReservation(sps[:4], 4, 9)))
