"""Designs under preemption: the port's ``preemptible_take`` declaration, the host's
``preempt_check`` (the machine's one preemption source), and
examples/designs/preemptible_take.py (``xen-4.1-preemptible``: Xen 4.1's word, its 0 -> 1
preemptible, the progress in the word), preempted, continued and raced step by step with
exact counts; both auditors after every call."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from conftest import MiB
from xensim import GuestKernel, Machine, MemoryMap, audit
from xensim.designs import design_class, load_design_file
from xensim.explore import Runner, explore, explore_dfs, format_schedule, load_scenario
from xensim.mem import PGC_allocated, PGT_l1_page_table, PGT_pinned, PGT_validated, \
    PGT_writable_page
from xensim.xen import (Continuation, ERESTART, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                        IncrementalAuditor, MMUEXT_MARK_SUPER, MMUEXT_PIN_L1_TABLE,
                        MMUEXT_UNMARK_SUPER, MmuUpdate,
                        MmuextOp, make_pte)

ROOT = Path(__file__).resolve().parents[2]
DESIGN = "xen-4.1-preemptible"
VA = 1 << 39
PSE_RW = 0x1 | 0x2 | 0x4 | 0x80                 # PRESENT | RW | USER | PSE
A = PGC_allocated
#: a frame as populate_physmap left it, and holding the design's one writable reference
FREE_TYPE, HELD = (A | 1, 0), (A | 2, PGT_writable_page | PGT_validated | 1)
#: the same after the reference went back (the type stays, at count 0)
GIVEN_BACK = (A | 1, PGT_writable_page | PGT_validated)
SGT_partial, SGT_dynamic, SGT_mark = 3 << 62, 2 << 62, 1 << 62


@pytest.fixture(scope="module", autouse=True)
def preemptible_take():
    """examples/designs/preemptible_take.py loaded; the registry as it was afterwards."""
    from xensim.designs import REGISTRY, _loading
    saved = dict(REGISTRY), dict(_loading._FILES), dict(_loading._ORIGIN)
    assert load_design_file(ROOT / "examples" / "designs" / "preemptible_take.py") == (
        DESIGN, "xen-4.1-preemptible-unclaimed")
    yield
    for state, old in zip((REGISTRY, _loading._FILES, _loading._ORIGIN), saved):
        state.clear()
        state.update(old)


class Guest:
    """64 MiB; a guest of two vCPUs with 8 superpages populated, its tree built; a second
    domain with 2. Each call audited by both auditors."""

    def __init__(self, design: str = DESIGN, version: str = "4.8", preempt: str = "every 100",
                 faithful: bool = False):
        m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version,
                    superpage=design, faithful=faithful)
        self.m = m
        self.k = GuestKernel(m, m.create_domain("guest", 8192, vcpus=2))
        assert self.k.populate(0, 8 * 512) == 8 and self.k.build([VA]) == 0
        self.o = GuestKernel(m, m.create_domain("other", 2048))
        assert self.o.populate(0, 2 * 512) == 2 and self.o.build([VA]) == 0
        self.sp = self.k.superpage_mfns(0, 8)
        self.l2, rc = self.k.ensure_table(VA, 2)
        self.ol2, rc2 = self.o.ensure_table(VA, 2)
        assert rc == rc2 == 0
        self.inc = IncrementalAuditor(m)
        m.set_preempt(preempt)
        m.preempt.checks = m.preempt.preemptions = 0

    def call(self, domid: int, number: int, *args, vcpu: int = 0):
        rc = self.m.hypercall(domid, number, *args, vcpu=vcpu)
        full, inc = audit(self.m), self.inc.check()
        assert full.ok, str(full)
        assert inc.ok, str(inc)
        return rc

    def map(self, slot: int, mfn: int, vcpu: int = 0, kernel=None, done=None):
        """mmu_update of one PSE entry (L2 index ``slot``) from ``vcpu``: its rc."""
        k = kernel or self.k
        l2 = self.ol2 if k is self.o else self.l2
        return self.call(k.domid, HYPERVISOR_mmu_update,
                         [MmuUpdate((l2 << 12) | slot * 8, make_pte(mfn, PSE_RW))],
                         done if done is not None else [0], vcpu=vcpu)

    def unmap(self, slot: int, vcpu: int = 0):
        return self.call(self.k.domid, HYPERVISOR_mmu_update,
                         [MmuUpdate((self.l2 << 12) | slot * 8, 0)], [0], vcpu=vcpu)

    def again(self, c: Continuation, vcpu: int = 0, domid: int | None = None):
        """The vCPU re-enters its continued hypercall (what GuestKernel does)."""
        assert isinstance(c, Continuation) and c == -ERESTART
        return self.call(self.k.domid if domid is None else domid, c.number, *c.args, vcpu=vcpu)

    def word(self, mfn: int | None = None) -> str:
        mfn = self.sp[0] if mfn is None else mfn
        return self.m.superpage.word_text(0, self.m.spage_table.read(self.m.mfn_to_pdx(mfn) >> 9))

    def frames(self, *which: int, mfn: int | None = None) -> list[tuple[int, int]]:
        """(count_info, type_info) of frames ``which`` of the superpage."""
        ft, base = self.m.frame_table, self.sp[0] if mfn is None else mfn
        return [(ft.count_info(self.m.mfn_to_page(base + i)), ft.type_info(self.m.mfn_to_page(base + i)))
                for i in which]

    def entry(self, slot: int) -> int:
        return self.m.mem.read(self.l2, slot)


# -- Xen 4.1's loop is not preemptible ---------------------------------------------------------
def test_get_spage_pages_is_not_preemptible_xen_4_1_design_4_8():
    """Xen 4.1-4.8's get_superpage / mark_superpage take the 512 frames with
    get_spage_pages: get_page_and_type (get_page_type: __get_page_type(..., 0), never
    preemptible) frame by frame and no hypercall_preempt_check(). The xen-4.1 design
    declares it (preemptible_take False): with every check answering true, one mmu_update
    maps the superpage whole and the design asks nothing."""
    assert design_class("xen-4.1").preemptible_take is False
    g = Guest("xen-4.1", preempt="every 1")
    assert g.map(0, g.sp[0]) == 0
    assert g.word() == "dynamic/1" and g.frames(0, 511) == [HELD, HELD]
    assert g.m.preempt.checks == 0                       # one request: do_mmu_update asks not
    assert g.m.design_host.preempt_check is None


BUILT_IN = ("xen-4.1", "superpage-info", "pageinfo-count", "per-mapping", "sketch", "none")


@pytest.mark.parametrize("design", BUILT_IN)
def test_no_built_in_design_declares_a_preemptible_take_4_8(design):
    """Every built-in design keeps the port's default (Xen's get_spage_pages, never
    preempted): with every check answering true, one mmu_update maps the superpage (or,
    without PV superpages, links its L1 table) and the call is never continued."""
    assert design_class(design).preemptible_take is False
    g = Guest(design, preempt="every 1")
    assert g.k.map_superpages(VA + (4 << 20), [g.sp[2]]) == 0
    assert g.k.continuations == 0


def test_the_progress_costs_no_metadata():
    """The progress lives in the count bits of Xen 4.1's word: the design's overhead row is
    8 B per 2 MiB with RAM, xensim's sparse-8B table, as xen-4.1's."""
    g = Guest()
    (row,) = g.m.superpage.metadata_rows()
    sparse = next(r for r in Guest("xen-4.1").m.superpage.metadata_rows() if r.name == "sparse-8B")
    assert (row.name, row.unit, row.bytes) == (DESIGN, "8 B/2 MiB with RAM", sparse.bytes)


def test_every_check_true_takes_one_frame_per_call():
    """With every check answering true each call takes the one frame it must (no check
    before a call's first frame): 512 calls, 511 preemptions, the word partial/1 .. /511."""
    g = Guest(preempt="every 1")
    assert design_class(DESIGN).preemptible_take is True
    rc, calls = g.map(0, g.sp[0]), 1
    while isinstance(rc, Continuation):
        assert g.word() == f"partial/{calls}"
        assert g.frames(calls - 1, calls) == [HELD, FREE_TYPE]
        rc, calls = g.again(rc), calls + 1
    assert (rc, calls, g.word()) == (0, 512, "dynamic/1")
    assert (g.m.preempt.checks, g.m.preempt.preemptions) == (511, 511)


# -- a preempted 0 -> 1, continued --------------------------------------------------------------
def test_preempted_map_continued_counts_at_every_step_4_8():
    """every 100: the check before frame 100 answers true; the call stores partial|100 in
    the superpage's word, writes no entry and returns -ERESTART as its continuation
    (do_mmu_update's MMU_UPDATE_PREEMPTED, done 0); each continuation takes over the
    word and goes on from there; the sixth ends with DYNAMIC|1 and the entry written."""
    g = Guest()
    done = [0]
    rc = g.map(0, g.sp[0], done=done)
    assert isinstance(rc, Continuation) and rc.number == HYPERVISOR_mmu_update and done == [0]
    assert rc.args[3] is True                            # MMU_UPDATE_PREEMPTED
    steps = []
    while isinstance(rc, Continuation):
        steps.append((g.word(), g.entry(0), done[0], g.frames(0, 99, 100, 511)))
        rc = g.again(rc)
    assert steps == [(f"partial/{n}", 0, 0,
                      [HELD, HELD, HELD if n > 100 else FREE_TYPE, FREE_TYPE])
                     for n in (100, 200, 300, 400, 500)]
    assert rc == 0 and done == [1] and g.entry(0) == make_pte(g.sp[0], PSE_RW)
    assert g.word() == "dynamic/1" and g.frames(0, 99, 100, 511) == [HELD] * 4
    assert (g.m.preempt.checks, g.m.preempt.preemptions) == (511, 5)
    assert g.m.superpage.stats == {"slow_get": 1, "slow_put": 0, "fast_get": 0, "fast_put": 0}


def test_the_guest_kernel_reissues_a_preempted_map():
    """GuestKernel re-enters each continuation (Linux's hypercall page): map_superpages
    answers 0 after 5 continuations; unmapping gives the 512 references back."""
    g = Guest()
    assert g.k.map_superpages(VA + (2 << 20), [g.sp[1]]) == 0
    assert g.k.continuations == 5 and g.word(g.sp[1]) == "dynamic/1"
    assert g.k.unmap(VA + (2 << 20), 1) == 0
    assert g.word(g.sp[1]) == "none/0" and g.frames(0, 511, mfn=g.sp[1]) == [GIVEN_BACK] * 2
    assert audit(g.m).ok and g.inc.check().ok


# -- another vCPU or domain between the preempted call and its continuation -----------------------
def test_second_vcpu_finishes_the_take_and_the_continuation_takes_the_fast_path():
    """vCPU 1 maps the same superpage (another L2 slot) while vCPU 0's map is preempted at
    partial/100: it takes the word over (as the next get_page_type of a PGT_partial table
    does) and, not preempted, takes frames 100..511: DYNAMIC|1, its entry written. vCPU 0's
    continuation then finds DYNAMIC|1: the fast path, DYNAMIC|2. Each frame holds the
    design's one reference."""
    g = Guest()
    c0 = g.map(0, g.sp[0], vcpu=0)
    assert g.word() == "partial/100"
    g.m.set_preempt("never")
    assert g.map(1, g.sp[0], vcpu=1) == 0
    assert g.word() == "dynamic/1" and g.entry(1) and not g.entry(0)
    assert g.frames(0, 100, 511) == [HELD] * 3
    g.m.set_preempt("every 100")
    assert g.again(c0, vcpu=0) == 0
    assert g.word() == "dynamic/2" and g.entry(0) and g.frames(0, 100, 511) == [HELD] * 3
    assert g.m.superpage.stats == {"slow_get": 1, "slow_put": 0, "fast_get": 1, "fast_put": 0}


def test_second_vcpu_preempted_too_each_continues_the_other():
    """Both vCPUs' maps preempted in turn: the word's progress moves on whoever takes it
    (100, 200, 300 ...); whichever continuation reaches frame 511 installs DYNAMIC|1, the
    other takes the fast path."""
    g = Guest()
    c = [g.map(0, g.sp[0], vcpu=0), g.map(1, g.sp[0], vcpu=1)]
    assert g.word() == "partial/200"
    seen, v = [], 0
    while any(isinstance(x, Continuation) for x in c):
        if isinstance(c[v], Continuation):
            c[v] = g.again(c[v], vcpu=v)
            seen.append((v, g.word()))
        v ^= 1
    assert seen == [(0, "partial/300"), (1, "partial/400"), (0, "partial/500"),
                    (1, "dynamic/1"), (0, "dynamic/2")]
    assert c == [0, 0] and g.frames(0, 511) == [HELD, HELD]


def test_second_domain_cannot_take_over_eperm_nothing_changes():
    """The other domain maps the guest's partial superpage: frames 0..99 hold references
    for their owner, so the owner is known: -EPERM, the machine unchanged; the guest's
    continuation then completes."""
    g = Guest()
    c0 = g.map(0, g.sp[0])
    snap = g.m.snapshot()
    assert g.map(0, g.sp[0], kernel=g.o) == -errno.EPERM
    assert g.m.same_as(snap) and g.word() == "partial/100"
    while isinstance(c0, Continuation):
        c0 = g.again(c0)
    assert c0 == 0 and g.word() == "dynamic/1"


def test_faithful_second_domain_takes_over_and_is_refused_at_its_first_get_page():
    """In faithful mode (no owner check past NONE, as Xen 4.1) the other domain takes the
    word over and get_page refuses frame 100 at once: -EINVAL, the machine unchanged."""
    g = Guest(faithful=True)
    g.map(0, g.sp[0])
    snap = g.m.snapshot()
    assert g.map(0, g.sp[0], kernel=g.o) == -errno.EINVAL
    assert g.m.same_as(snap) and g.word() == "partial/100"


def test_second_vcpu_maps_and_unmaps_then_the_continuation_starts_again():
    """vCPU 1 finishes the take and unmaps (DYNAMIC|1 -> NONE, the 512 given back) before
    vCPU 0's continuation: it finds NONE and starts a new 0 -> 1 from frame 0."""
    g = Guest()
    c0 = g.map(0, g.sp[0], vcpu=0)
    g.m.set_preempt("never")
    assert g.map(1, g.sp[0], vcpu=1) == 0 and g.unmap(1, vcpu=1) == 0
    assert g.word() == "none/0" and g.frames(0, 511) == [GIVEN_BACK] * 2
    g.m.set_preempt("every 100")
    rc = g.again(c0)
    assert isinstance(rc, Continuation) and g.word() == "partial/100"
    assert g.frames(99, 100) == [HELD, GIVEN_BACK]
    while isinstance(rc, Continuation):
        rc = g.again(rc)
    assert rc == 0 and g.word() == "dynamic/1" and g.frames(0, 511) == [HELD, HELD]
    assert g.m.superpage.stats == {"slow_get": 2, "slow_put": 1, "fast_get": 0, "fast_put": 0}


def test_failed_continuation_gives_back_its_own_and_destruction_the_rest():
    """vCPU 1 pins frame 250 as an L1 table between two continuations: the next one takes
    200..249 and is refused at 250 (-EINVAL, the request rolled back: the machine as before
    it, partial/200). The 200 references of the earlier calls stay with the word, held by
    no mapping; the auditors count them; destroying the guest (relinquish) gives them back
    and every frame is free."""
    g = Guest()
    rc = g.again(g.map(0, g.sp[0]))
    assert g.word() == "partial/200"
    pin = g.call(g.k.domid, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L1_TABLE, g.sp[0] + 250)],
                 [0], vcpu=1)
    assert pin == 0
    assert g.frames(250) == [(A | 2, PGT_l1_page_table | PGT_validated | PGT_pinned | 1)]
    snap = g.m.snapshot()
    assert g.again(rc) == -errno.EINVAL
    assert g.m.same_as(snap) and g.word() == "partial/200" and not g.entry(0)
    assert g.frames(199, 200, 249) == [HELD, FREE_TYPE, FREE_TYPE]
    for k in (g.k, g.o):
        assert g.m.destroy_domain(k.domid) == 0
    assert g.m.heap.free_frames == g.m.memmap.ram_frames and audit(g.m).ok


def test_mark_super_preempted_and_continued_the_mark_recorded_at_the_end_4_8():
    """MMUEXT_MARK_SUPER's 0 -> 1 is the same loop: do_mmuext_op's continuation re-issues
    the op; the host records the mark only when it answers 0 (MARK|1)."""
    g = Guest()
    done = [0]
    rc = g.call(g.k.domid, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_MARK_SUPER, g.sp[2])], done)
    assert isinstance(rc, Continuation) and rc.number == HYPERVISOR_mmuext_op
    assert g.word(g.sp[2]) == "partial/100" and g.m.design_host.marks() == {}
    while isinstance(rc, Continuation):
        rc = g.again(rc)
    assert rc == 0 and done == [1] and g.word(g.sp[2]) == "mark/1"
    assert g.m.design_host.marks() == {g.sp[2]: g.k.domid}


def test_preempted_mark_raced_by_a_map_and_an_unmark_4_8():
    """vCPU 0's MARK_SUPER preempted at partial/100; vCPU 1's UNMARK_SUPER finds no MARK
    (-EINVAL, nothing changed); vCPU 1's map takes the word over and finishes (DYNAMIC|1);
    vCPU 0's continued MARK then marks a mapped superpage as Xen 4.1 does (MARK|2, no new
    references), the mark recorded."""
    g = Guest()
    c0 = g.call(g.k.domid, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_MARK_SUPER, g.sp[0])], [0])
    snap = g.m.snapshot()
    assert g.call(g.k.domid, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNMARK_SUPER, g.sp[0])],
                  [0], vcpu=1) == -errno.EINVAL
    assert g.m.same_as(snap) and g.word() == "partial/100"
    g.m.set_preempt("never")
    assert g.map(1, g.sp[0], vcpu=1) == 0 and g.word() == "dynamic/1"
    assert g.again(c0) == 0
    assert g.word() == "mark/2" and g.frames(0, 511) == [HELD, HELD]
    assert g.m.design_host.marks() == {g.sp[0]: g.k.domid}


def test_auditors_check_a_partial_word_against_the_frames():
    """A partial word says how many leading frames hold the design's references: a word
    planted with another progress (60 where 100 are held) is a difference to the auditor."""
    g = Guest()
    g.map(0, g.sp[0])
    spdx = g.m.mfn_to_pdx(g.sp[0]) >> 9
    g.m.spage_table.write(spdx, SGT_partial | 60)
    rep = audit(g.m)
    assert not rep.ok and "mfn 0x3c count_info.count: expected 1, actual 2" in str(rep)


def test_a_partial_word_is_no_mapping_to_put():
    """put_superpage of a partial word (no mapping counted): RefcountBug, faithful or not
    a bug of the caller; the batch forms stop before a partial superpage."""
    from xensim import RefcountBug
    g = Guest()
    g.map(0, g.sp[0])
    with pytest.raises(RefcountBug, match="partial, held by no mapping"):
        g.m.superpage.put_superpage(g.sp[0], True)
    import numpy as np
    mfns = np.array([g.sp[1], g.sp[0], g.sp[2]], dtype=np.int64)
    assert g.m.superpage.get_superpages(mfns, g.k.domid, np.ones(3, bool)) == 1
    assert g.word(g.sp[1]) == "dynamic/1" and g.word(g.sp[2]) == "none/0"


def test_fuzzer_with_preemption_and_two_vcpus_finds_nothing(capsys):
    """xensim fuzz --preempt 0.01 --vcpus 2: preempted maps and marks continued at once,
    after other vCPUs' and domains' calls, or never; every call checked by the incremental
    auditor: no violation."""
    from conftest import fuzz_cli
    rc, out, _ = fuzz_cli(["--design", DESIGN, "--calls", "1500", "--vcpus", "2",
                           "--preempt", "0.01", "--seed", "1"], capsys)
    assert rc == 0 and "violations: 0 (0 expected)" in out
    line = next(x for x in out.splitlines() if x.startswith("mmuext_op/mark_super"))
    assert "preempted" in line


# -- the explorer ---------------------------------------------------------------------------------
def test_explorer_branching_on_the_checks_finds_the_unclaimed_take():
    """The explorer answering each hypercall_preempt_check() as a choice of its own (at most
    one pending per schedule: --hypercall-preemptions 1) finds it from the scenario alone:
    vCPU 0 preempted before frame 511 (the schedule's ``0p``), vCPU 1 continues the take
    while vCPU 0's continuation does too."""
    sc = load_scenario(ROOT / "scenarios" / "preempted-cold-map.yaml")
    res = explore(sc, "xen-4.1-preemptible-unclaimed", "dfs", preemption_bound=1,
                  hypercall_preemptions=1)
    assert (res.violations, res.schedules) == (1, 6)
    assert res.first.message.startswith("after the schedule: 3 audit difference(s): "
                                        "mfn 0x1ff count_info.count: expected 2, actual 3")
    assert format_schedule(res.first.schedule) == "0*1538,0p,0*7,1*12,0*2"
    ok = explore(sc, DESIGN, "dfs", preemption_bound=1, max_schedules=30,
                 hypercall_preemptions=1)
    assert (ok.violations, ok.schedules) == (0, 30)


def _explore(design: str, preempt: str | None, bound: int):
    runner = Runner(load_scenario(ROOT / "scenarios" / "preempted-cold-map.yaml"), design)
    if preempt is not None:                  # the explored machine's preemption source
        runner._world.m.set_preempt(preempt)
    return explore_dfs(runner.make, bound, 20_000, True)


@pytest.mark.parametrize("preempt, bound", [(None, 2), ("every 100", 1)])
def test_explorer_finds_no_race_in_the_claimed_take(preempt, bound):
    """scenarios/preempted-cold-map.yaml on xen-4.1-preemptible: with no preemption, the
    claim and the wait; preempted every 100 checks, each vCPU continuing the other's take
    too: every schedule within the bound clean (counts, auditor, all RAM free after)."""
    res = _explore(DESIGN, preempt, bound)
    assert res.complete and res.violations == 0, res.first and res.first.message
    assert res.schedules > 1


def test_explorer_finds_two_continuations_of_one_unclaimed_take():
    """xen-4.1-preemptible-unclaimed continues a partial word without claiming it: vCPU 0
    preempted at partial/100 and continued, vCPU 1 reads partial/100 before vCPU 0 stores
    its progress, and both take frames 100..: frames with one reference too many."""
    res = _explore("xen-4.1-preemptible-unclaimed", "every 100", 1)
    assert res.violations == 1
    assert res.first.message.startswith("after the schedule: 27 audit difference(s): "
                                        "mfn 0x1f3 count_info.count: expected 2, actual 3")
    assert format_schedule(res.first.schedule) == "0*1054,1*36,0*2"
    assert _explore("xen-4.1-preemptible-unclaimed", None, 2).violations == 0


# -- what trace says of a preempted take --------------------------------------------------------
def test_trace_says_the_progress_is_in_the_superpage_word_not_a_partial_table():
    """A preempted PSE get (a design declaring preemptible_take) leaves no PGT_partial table:
    trace says the take's progress stays in the design's word (here partial/100 after the
    first call), the L2 entry not written; the continuation's call finishes it."""
    from xensim.teach import Tracer
    g = Guest()
    tr = Tracer(g.m, "superpage").install()
    c = g.map(0, g.sp[0])
    assert isinstance(c, Continuation) and g.word() == "partial/100" and g.entry(0) == 0
    lines = [ln.text for ln in tr.lines]
    assert ("-> ERESTART: preempted inside the design's take of the superpage's frames; its "
            "progress stays in the design's superpage word, the entry is not written") in lines
    assert not any("PGT_partial" in t for t in lines)
