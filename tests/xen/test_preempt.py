"""The preemption source (hypercall_preempt_check's answer) and the hypervisor.preempt key."""

import pytest

from xensim.xen import Preemption, parse_preemption


def test_never_is_the_default_and_never_asked():
    p = parse_preemption("never")
    assert p == Preemption() and p.pending is None and str(p) == "never"


def test_pending_follows_the_mode_and_the_answer_set_later():
    """``pending`` (read by every hypercall) is kept when the explorer sets an ``answer`` or
    a mode changes: None exactly while every check would answer false; a copy keeps it."""
    import copy
    p = Preemption()
    p.answer = lambda: True
    assert p.pending is not None and p.pending() is True and p.checks == 1
    p.answer = None
    assert p.pending is None
    p.mode, p.every = "every", 2
    assert p.pending is not None and [p.pending(), p.pending()] == [True, False]   # checks 2, 3
    q = copy.deepcopy(p)
    assert q.pending.__self__ is q
    p.mode = "never"
    assert p.pending is None and q.pending is not None


def test_every_n_answers_true_at_each_nth_check():
    p = parse_preemption("every 3")
    check = p.pending
    assert [check() for _ in range(7)] == [False, False, True, False, False, True, False]
    assert (p.checks, p.preemptions, str(p)) == (7, 2, "every 3")


def test_at_answers_true_at_the_checks_it_names():
    p = parse_preemption("at 5 2 0x3")
    assert [p.pending() for _ in range(6)] == [False, True, True, False, True, False]
    assert (p.checks, p.preemptions, str(p)) == (6, 3, "at 2 3 5")


def test_random_is_repeatable_from_its_seed():
    a, b = parse_preemption("random 0.5 seed 7"), parse_preemption("random 0.5 seed 7")
    assert [a.pending() for _ in range(50)] == [b.pending() for _ in range(50)]
    assert 0 < a.preemptions < 50
    state = a.capture()
    first = [a.pending() for _ in range(10)]
    a.restore(state)
    assert [a.pending() for _ in range(10)] == first


@pytest.mark.parametrize("text, problem", [
    ("sometimes", "write never, every N, random P [seed S], or at N [N ...]"),
    ("at", "write never"),
    ("at 0 3", "at N [N ...] needs check numbers >= 1, got [0, 3]"),
    ("at two", "write never"),
    ("every", "write never"),
    ("every 0", "every N needs N >= 1, got 0"),
    ("random 2", "random P needs 0 <= P <= 1, got 2.0"),
    ("random 0.1 seed", "write never"),
])
def test_bad_values_are_refused_with_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_preemption(text)


def _config_and_bad_run(tmp_path, good: str, bad: str):
    """The machine ``good`` (a config's text) makes, and the stderr lines and exit status
    of ``xensim run`` on ``bad`` (written to bad.yaml)."""
    import subprocess
    import sys
    from xensim.config import build_memory_map, parse_config
    from xensim.xen import Machine
    cfg = parse_config(good, "c.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    r = subprocess.run([sys.executable, "-m", "xensim", "run", str(path)], capture_output=True,
                       text=True)
    return Machine.from_config(cfg, build_memory_map(cfg)), path, r.returncode, \
        r.stderr.strip().splitlines()


def test_config_key_reaches_the_machine_and_a_bad_value_is_one_line(tmp_path):
    m, bad, rc, err = _config_and_bad_run(tmp_path, 'hypervisor:\n  preempt: "every 16"\n',
                                          'hypervisor:\n  preempt: "every zero"\n')
    assert str(m.preempt) == "every 16"
    assert rc == 2
    assert err == [f"xensim: error: {bad}:2: hypervisor.preempt: 'every zero': "
                   "write never, every N, random P [seed S], or at N [N ...]"]


# -- preempted validation and devalidation (xen/_validate.py, RefCounts) ---------------------
# The layout (conftest.two_domains, PDX none: page == mfn): F[0] an L4 whose slot 0 links
# F[1] (an L3), whose slot 0 links F[2] (an L2), whose entries 0-3 link the L1s F[3]..F[6]
# (never written). Both auditors run after every call.

import errno as _errno

from conftest import MiB, two_domains, words
from xensim import Machine, MemoryMap
from xensim.mem import (PGC_allocated, PGT_l1_page_table, PGT_l2_page_table, PGT_l3_page_table,
                        PGT_l4_page_table, PGT_partial, PGT_pinned, PGT_validated)
from xensim.xen import (Continuation, ERESTART, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                        IncrementalAuditor, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L4_TABLE,
                        MMUEXT_UNPIN_TABLE, MmuUpdate, MmuextOp, audit, make_pte)

F = list(range(0x200, 0x210))
A = PGC_allocated
L1V, L2V = PGT_l1_page_table | PGT_validated, PGT_l2_page_table | PGT_validated
L3V, L4V = PGT_l3_page_table | PGT_validated, PGT_l4_page_table | PGT_validated
L2P, L3P, L4P = (PGT_l2_page_table | PGT_partial, PGT_l3_page_table | PGT_partial,
                 PGT_l4_page_table | PGT_partial)


class Tree:
    def __init__(self, version: str, l1s: int = 4, faithful: bool = False, vcpus: int = 1):
        m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version,
                    faithful=faithful)
        t = two_domains(m, (0x000, 0x400), 0x600, vcpus=vcpus)
        self.m, self.g, self.d = m, t.g, t.d
        m.mem.write(F[0], 0, make_pte(F[1], 3))
        m.mem.write(F[1], 0, make_pte(F[2], 3))
        for k in range(l1s):
            m.mem.write(F[2], k, make_pte(F[3 + k], 3))
        self.inc = IncrementalAuditor(m)

    def call(self, number, *args, vcpu=0, bug=None):
        """The call, then both auditors: clean, or (``bug``) reporting that difference."""
        rc = self.m.hypercall(self.g, number, *args, vcpu=vcpu)
        full, inc = audit(self.m), self.inc.check()
        if bug is not None:
            assert bug in str(full) and bug in str(inc), (str(full), str(inc))
            return rc
        assert full.ok, str(full)
        assert inc.ok, str(inc)
        return rc

    def state(self, mfns=F[:4]):
        """(count_info, type_info, nr_validated_ptes, partial_pte) of each frame."""
        ft = self.m.frame_table
        return [words(self.m, f) + ft.progress.get(self.m.mfn_to_page(f)) for f in mfns]


@pytest.mark.parametrize("faithful", [True, False])
def test_preempted_pin_l4_continued_to_completion_4_8(faithful):
    """Xen 4.8 (RELEASE-4.8.0 mm.c): alloc_l2_table asks hypercall_preempt_check() before
    entry i > nr_validated_ptes; at -ERESTART alloc_page_type leaves the L2 PGT_partial with
    its type count 1 and get_page_light's reference; alloc_l3_table / alloc_l4_table record
    nr_validated_ptes = i, partial_pte = 1 and are left the same; get_page_and_type_from_pagenr
    and the pin path put_page the general reference they took; do_mmuext_op's continuation
    re-issues the pin (MMU_UPDATE_PREEMPTED), which resumes at nr_validated_ptes. Outside
    faithful mode XSA-299's fix (18b0ab6978): the partial entry keeps its general reference
    (PTF_retain_ref_on_restart; partial_flags PTF_partial_set, 1)."""
    t = Tree("4.8", faithful=faithful)
    t.m.set_preempt("every 200")
    done = [0]
    rc = t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], done)
    assert isinstance(rc, Continuation) and rc == -ERESTART and done == [0]
    assert rc.number == HYPERVISOR_mmuext_op and rc.args[2:] == (0x7FF0, True)
    kept = 0 if faithful else 1
    assert t.state() == [(A | 2, L4P | 1, 0, 1), (A | 2 + kept, L3P | 1, 0, 1),
                         (A | 2 + kept, L2P | 1, 200, 0), (A | 2, L1V | 1, 0, 0)]
    assert t.m.pt.partial == {F[0]: (4, t.g), F[1]: (3, t.g), F[2]: (2, t.g)}
    rc = t.call(HYPERVISOR_mmuext_op, *rc.args)          # checks 201-400: entries 201..400
    assert isinstance(rc, Continuation) and done == [0]
    assert t.state()[2] == (A | 2 + kept, L2P | 1, 400, 0)
    assert t.call(HYPERVISOR_mmuext_op, *rc.args) == 0
    assert done == [1]
    assert t.state() == [(A | 2, L4V | PGT_pinned | 1, 0, 1), (A | 2, L3V | 1, 0, 1),
                         (A | 2, L2V | 1, 400, 0), (A | 2, L1V | 1, 0, 0)]
    assert t.m.pt.partial == {} and t.d.pinned == {F[0]: PGT_l4_page_table}
    assert (t.m.preempt.checks, t.m.preempt.preemptions) == (511, 2)   # entries 1..511


@pytest.mark.parametrize("faithful", [True, False])
def test_preempted_pin_4_1_checks_before_the_first_op_and_at_every_entry(faithful):
    """Xen 4.1 (RELEASE-4.1.0 mm.c): do_mmuext_op asks before every op (the first too) and
    alloc_l2_table before every entry i > 0 (-EAGAIN, 4.1's name for -ERESTART); the
    continuation's L2 asks again at its first entry. (Not faithful: the partial entries keep
    their general reference, XSA-299's fix.)"""
    t = Tree("4.1", faithful=faithful)
    t.m.set_preempt("every 200")
    done = [0]
    rc = t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], done)
    assert isinstance(rc, Continuation)
    kept = 0 if faithful else 1
    assert t.state()[:3] == [(A | 2, L4P | 1, 0, 1), (A | 2 + kept, L3P | 1, 0, 1),
                             (A | 2 + kept, L2P | 1, 199, 0)]
    rc = t.call(HYPERVISOR_mmuext_op, *rc.args)
    assert t.state()[2] == (A | 2 + kept, L2P | 1, 397, 0)
    assert t.call(HYPERVISOR_mmuext_op, *rc.args) == 0 and done == [1]
    assert t.state()[0] == (A | 2, L4V | PGT_pinned | 1, 0, 1)


def _pinned(version, faithful=False):
    t = Tree(version, faithful=faithful)
    assert t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], [0]) == 0
    return t


@pytest.mark.parametrize("faithful", [True, False])
def test_preempted_unpin_leaves_old_guest_table_4_8(faithful):
    """Xen 4.8: MMUEXT_UNPIN_TABLE puts with put_page_and_type_preemptible; free_l2_table asks
    after each entry i > 0 it put; at -ERESTART __put_final_page_type leaves the L2 PGT_partial
    (type count 1, get_page_light), free_l3/l4_table record partial_pte -1 (the entry keeps its
    general reference; not faithful: partial_flags PTF_partial_set, 1, the same reference),
    the vCPU's old_guest_table keeps the pin's references, unpin answers 0
    and the call continues with no ops (MMU_UPDATE_PREEMPTED, the result in foreigndom):
    put_old_guest_table finishes the put."""
    t = _pinned("4.8", faithful)
    t.m.set_preempt("every 2")
    done = [0]
    rc = t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNPIN_TABLE, F[0])], done)
    assert isinstance(rc, Continuation) and rc.args == (None, None, 0, True) and done == [1]
    assert t.d.vcpus[0].old_guest_table == F[0] and t.d.pinned == {}
    assert t.d.vcpus[0].old_guest_table_partial is True
    p = -1 if faithful else 1
    assert t.state() == [(A | 3, L4P | 1, 0, p), (A | 3, L3P | 1, 0, p), (A | 3, L2P | 1, 2, 0),
                         (A | 2, L1V | 1, 0, 0), ]
    assert t.state([F[5], F[6]]) == [(A | 1, PGT_l1_page_table, 0, 0)] * 2
    assert t.call(HYPERVISOR_mmuext_op, *rc.args) == 0
    assert t.d.vcpus[0].old_guest_table is None and t.m.pt.partial == {}
    assert [s[:2] for s in t.state()] == [(A | 1, PGT_l4_page_table), (A | 1, PGT_l3_page_table),
                                          (A | 1, PGT_l2_page_table), (A | 1, PGT_l1_page_table)]


def test_unpin_is_not_preemptible_in_4_1():
    """Xen 4.1: MMUEXT_UNPIN_TABLE uses put_page_and_type (not preemptible): it runs to the end."""
    t = _pinned("4.1")
    t.m.set_preempt("every 2")
    done = [0]
    assert t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNPIN_TABLE, F[0])], done) == 0
    assert done == [1] and t.m.preempt.checks == 1       # do_mmuext_op's own, before the op
    assert [s[:2] for s in t.state()] == [(A | 1, PGT_l4_page_table), (A | 1, PGT_l3_page_table),
                                          (A | 1, PGT_l2_page_table), (A | 1, PGT_l1_page_table)]


def test_preempted_new_baseptr_is_continued_4_8():
    """Xen 4.8: new_guest_cr3 takes the root with get_page_and_type_from_pagenr(..., 1):
    -ERESTART is the op's, the op continued; the continuation installs the root."""
    t = Tree("4.8")
    t.m.set_preempt("every 300")
    done = [0]
    rc = t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_NEW_BASEPTR, F[0])], done)
    assert isinstance(rc, Continuation) and t.d.vcpus[0].guest_table is None
    assert t.state()[0] == (A | 2, L4P | 1, 0, 1)
    assert t.call(HYPERVISOR_mmuext_op, *rc.args) == 0 and done == [1]
    assert t.d.vcpus[0].guest_table == F[0]
    assert t.state()[0][:2] == (A | 2, L4V | 1)


def test_mmu_update_of_an_l3_entry_is_preempted_and_continued_4_8():
    """Xen 4.8: mod_l3_entry validates the new entry's L2 preemptibly; -ERESTART stops
    do_mmu_update at that request (nothing written), and the continuation re-issues it
    and the requests after it, adding to ``done``."""
    t = _pinned("4.8")
    t.m.mem.write(F[7], 0, make_pte(F[3], 3))             # a second L2 to link at L3 slot 1
    t.m.set_preempt("every 256")
    done = [0]
    reqs = [MmuUpdate((F[1] << 12) | 8, make_pte(F[7], 3)), MmuUpdate((F[9] << 12), 5)]
    rc = t.call(HYPERVISOR_mmu_update, reqs, done)
    assert isinstance(rc, Continuation) and done == [0] and rc.args[0] == reqs
    assert t.m.mem.read(F[1], 1) == 0
    assert t.state([F[7]]) == [(A | 2, L2P | 1, 256, 0)]
    # entries 257..511 (checks 257-511), then the loop's check before request 1 (512th)
    rc = t.call(HYPERVISOR_mmu_update, *rc.args)
    assert isinstance(rc, Continuation) and done == [1] and rc.args[0] == reqs[1:]
    assert t.m.mem.read(F[1], 1) == make_pte(F[7], 3)
    assert t.state([F[7]]) == [(A | 2, L2V | 1, 256, 0)]
    assert t.call(HYPERVISOR_mmu_update, *rc.args) == 0 and done == [2]
    assert t.m.mem.read(F[9], 0) == 5


def test_never_leaves_every_result_as_without_a_source():
    """Preemption never (the default): no check asked, nothing partial, the same state."""
    a, b = _pinned("4.8"), _pinned("4.8")
    b.m.set_preempt("never")
    assert a.m.same_as(b.m.snapshot()) and b.m.preempt.checks == 0


def test_accelerators_with_a_preemption_point_are_not_used_while_preempting():
    """The mmu_update batch accelerators (do_mmu_update's loop asks hypercall_preempt_check)
    declare ``preempt_point``: bound while preemption is off, not while it can happen."""
    from xensim.xen.accel import Accelerated
    t = Tree("4.8")
    assert isinstance(t.m.__dict__.get("mmu_update_requests"), Accelerated)
    t.m.set_preempt("every 5")
    assert "mmu_update_requests" not in t.m.__dict__
    t.m.set_preempt("never")
    assert isinstance(t.m.__dict__.get("mmu_update_requests"), Accelerated)


def test_guest_kernel_reissues_continuations():
    """GuestKernel enters a preempted hypercall again with the arguments Xen wrote back,
    as a vCPU rewound to its hypercall instruction does, until it ends."""
    from xensim.guest import GuestKernel
    t = Tree("4.8")
    t.m.set_preempt("every 1")                # 4.8: before the NEW_BASEPTR after the pin
    k = GuestKernel(t.m, t.g)
    assert k.build() == 0 and k.continuations == 1 and k.done == 2
    assert t.d.vcpus[0].guest_table == k.root and k.root in [t.m.pdx_to_mfn(p) for p in t.d.pinned]
    assert audit(t.m).ok and t.m.pt.partial == {}
    assert _errno.ERESTART == ERESTART


def test_destruction_finishes_a_pin_the_guest_abandoned_4_8():
    """Xen 4.8 relinquish_memory (``x86/domain.c``): a table left PGT_partial is devalidated
    from its nr_validated_ptes (PGT_validated and PGT_partial cleared), its count of 1 and
    get_page_light's reference given back: every frame returns to the heap."""
    t = Tree("4.8")
    free0 = t.m.heap.free_frames
    t.m.set_preempt("every 100")
    rc = t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], [0])
    assert isinstance(rc, Continuation)                  # never re-entered
    owned = t.d.tot_pages
    assert t.m.destroy_domain(t.g) == 0
    assert t.m.heap.free_frames == free0 + owned and t.m.pt.partial == {}
    assert audit(t.m).ok




# -- 4.22 (RELEASE-4.22.0 arch/x86/mm.c): partial_flags, promote_l3's and demote_l2/l3's checks --

def test_preempted_pin_l4_4_22_promote_l3_table_asks_too():
    """Xen 4.22: promote_l2_table and promote_l3_table ask hypercall_preempt_check() before
    entry i > nr_validated_ptes (-EINTR, made -ERESTART with partial_flags kept: 0 past the
    first entry); promote_l4_table does not. Preempted in the L3 at entry 89 (checks 1-511 are
    the L2's entries 1..511, 512 the L3's entry 1): the L3 PGT_partial at 89, its L2 finished;
    the L4's entry 0 PTF_partial_set, keeping the L3's general reference
    (PTF_retain_ref_on_restart). The continuation resumes the L3 at 89."""
    t = Tree("4.22")
    t.m.set_preempt("at 600")
    done = [0]
    rc = t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], done)
    assert isinstance(rc, Continuation) and done == [0]
    assert t.state() == [(A | 2, L4P | 1, 0, 1), (A | 3, L3P | 1, 89, 0), (A | 2, L2V | 1, 0, 0),
                         (A | 2, L1V | 1, 0, 0)]
    assert t.call(HYPERVISOR_mmuext_op, *rc.args) == 0 and done == [1]
    assert t.state()[:2] == [(A | 2, L4V | PGT_pinned | 1, 0, 1), (A | 2, L3V | 1, 89, 0)]
    assert t.m.preempt.checks == 511 + 511      # entries 1..511 each asked once (89 not again)


def test_preempted_unpin_4_22_demote_asks_after_every_entry():
    """Xen 4.22: demote_l2_table and demote_l3_table ask after every entry (present or not)
    but the last; demote_l4_table does not. Check 1 follows the L3's entry 511 (the L3 left
    at 511, partial_flags 0: -EINTR, nothing partial below); old_guest_table_partial is set
    and put_old_guest_table passes PTF_partial_set."""
    t = _pinned("4.22")
    t.m.set_preempt("at 1")
    rc = t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNPIN_TABLE, F[0])], [0])
    assert isinstance(rc, Continuation)
    v = t.d.vcpus[0]
    assert (v.old_guest_table, v.old_guest_table_partial) == (F[0], True)
    assert t.state()[:3] == [(A | 3, L4P | 1, 0, 1), (A | 3, L3P | 1, 511, 0),
                             (A | 2, L2V | 1, 0, 0)]
    assert t.call(HYPERVISOR_mmuext_op, *rc.args) == 0
    assert (v.old_guest_table, v.old_guest_table_partial) == (None, False)
    assert [s[:2] for s in t.state()] == [(A | 1, PGT_l4_page_table), (A | 1, PGT_l3_page_table),
                                          (A | 1, PGT_l2_page_table), (A | 1, PGT_l1_page_table)]


# -- mod_l3_entry / mod_l4_entry: the old entry's table put through old_guest_table ---------

@pytest.mark.parametrize("version", ["4.5", "4.7", "4.8", "4.22"])
def test_changed_l3_entry_defers_the_old_tables_put(version):
    """Xen 4.5-4.8 mod_l3_entry (put_page_from_l3e(..., defer 1)), 4.22 (PTF_defer): the old
    entry's L2 goes to the calling vCPU's old_guest_table with its references
    (old_guest_table_partial false); do_mmu_update stops before the next request and, at the
    end, continues with no requests (MMU_UPDATE_PREEMPTED, the result in foreigndom): the
    continuation's put_old_guest_table drops them. (Modelled while preemption can happen:
    otherwise the put is done at once, the same counts.)"""
    t = _pinned(version)
    t.m.mem.write(F[7], 0, make_pte(F[3], 3))
    t.m.set_preempt("at 100000")
    done = [0]
    reqs = [MmuUpdate(F[1] << 12, make_pte(F[7], 3)), MmuUpdate(F[9] << 12, 5)]
    rc = t.call(HYPERVISOR_mmu_update, reqs, done)
    assert isinstance(rc, Continuation) and rc.args[0] == reqs[1:] and done == [1]
    v = t.d.vcpus[0]
    assert (v.old_guest_table, v.old_guest_table_partial) == (F[2], False)
    assert t.state([F[2], F[7]]) == [(A | 2, L2V | 1, 0, 0), (A | 2, L2V | 1, 0, 0)]
    rc = t.call(HYPERVISOR_mmu_update, *rc.args)          # the put first, then request 1
    assert rc == 0 and done == [2] and v.old_guest_table is None
    assert [s[:2] for s in t.state([F[2]])] == [(A | 1, PGT_l2_page_table)]
    assert t.m.mem.read(F[9], 0) == 5


def test_a_deferred_put_at_the_end_continues_with_no_requests_4_8():
    """Xen 4.8 do_mmu_update: old_guest_table set after the last request: the continuation
    has a null request list and the result in foreigndom; re-entered, put_old_guest_table
    runs and that result is returned."""
    t = _pinned("4.8")
    t.m.set_preempt("at 100000")
    rc = t.call(HYPERVISOR_mmu_update, [MmuUpdate(F[1] << 12, 0)], [0])
    assert isinstance(rc, Continuation) and rc.args == (None, None, 0, True)
    assert t.d.vcpus[0].old_guest_table == F[2]
    assert t.call(HYPERVISOR_mmu_update, *rc.args) == 0
    assert t.d.vcpus[0].old_guest_table is None
    assert [s[:2] for s in t.state([F[2]])] == [(A | 1, PGT_l2_page_table)]


def test_changed_l3_entry_is_put_at_once_in_4_1():
    """Xen 4.1 mod_l3_entry: put_page_from_l3e(ol3e, pfn, 0, 0): the old table is put at
    once (no old_guest_table before 4.3)."""
    t = _pinned("4.1")
    t.m.set_preempt("at 100000")
    assert t.call(HYPERVISOR_mmu_update, [MmuUpdate(F[1] << 12, 0)], [0]) == 0
    assert t.d.vcpus[0].old_guest_table is None
    assert [s[:2] for s in t.state([F[2]])] == [(A | 1, PGT_l2_page_table)]


def test_changed_l2_entry_defers_the_l1s_put_from_4_22_only():
    """Xen 4.22 mod_l2_entry: put_page_from_l2e(ol2e, mfn, PTF_defer) (4.8 puts at once)."""
    for version, deferred in (("4.8", None), ("4.22", F[3])):
        t = _pinned(version)
        t.m.set_preempt("at 100000")
        rc = t.call(HYPERVISOR_mmu_update, [MmuUpdate(F[2] << 12, 0)], [0])
        assert t.d.vcpus[0].old_guest_table == deferred
        assert isinstance(rc, Continuation) is (deferred is not None)


def test_config_preempts_4_22_and_at_is_checked_as_config(tmp_path):
    """hypervisor.preempt on 4.22 reaches the machine (its preemption is modelled:
    RELEASE-4.22.0 promote_lN_table / demote_lN_table); ``at`` with a bad check number is
    one line naming the file, the key and the problem, exit 2."""
    m, bad, rc, err = _config_and_bad_run(
        tmp_path, 'hypervisor:\n  version: "4.22"\n  preempt: "at 9 3"\n',
        'hypervisor:\n  version: "4.22"\n  preempt: "at 0"\n')
    assert str(m.preempt) == "at 3 9" and m.partial_flags
    assert rc == 2
    assert err == [f"xensim: error: {bad}:3: hypervisor.preempt: 'at 0': "
                   "at N [N ...] needs check numbers >= 1, got [0]"]


@pytest.mark.parametrize("faithful", [True, False])
def test_a_partly_devalidated_tree_revalidated_by_another_vcpu_4_8(faithful):
    """Xen 4.8 get_page_and_type_from_pagenr: an entry left partial by a preempted
    devalidation (partial_pte -1, or PTF_partial_set) still holds its general reference, so
    the validation that takes the table over (vCPU 1 pins it while vCPU 0's unpin waits in
    old_guest_table) takes no second one: get_page only when partial >= 0. vCPU 0's
    continuation then finishes its put (put_old_guest_table): fixed (4.13 on, not faithful),
    PTF_partial_set on a table no longer partial drops only the general reference; faithful
    4.8's put_page_and_type_preemptible drops the type reference vCPU 1's pin holds, and
    devalidates the pinned table (XSA-299, c40b33d726)."""
    t = Tree("4.8", faithful=faithful, vcpus=2)
    assert t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], [0]) == 0
    t.m.set_preempt("at 2")
    rc = t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNPIN_TABLE, F[0])], [0])
    assert isinstance(rc, Continuation)
    p = -1 if faithful else 1
    assert t.state()[:3] == [(A | 3, L4P | 1, 0, p), (A | 3, L3P | 1, 0, p),
                             (A | 3, L2P | 1, 2, 0)]
    assert t.call(HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], [0],
                  vcpu=1) == 0
    assert t.state()[:3] == [(A | 3, L4V | PGT_pinned | 1, 0, p), (A | 2, L3V | 1, 0, p),
                             (A | 2, L2V | 1, 2, 0)]
    bug = "mfn 0x200 type_info.count: expected 1, actual 0" if faithful else None
    assert t.call(HYPERVISOR_mmuext_op, *rc.args, bug=bug) == 0   # vCPU 0's old pin's put
    assert t.d.vcpus[0].old_guest_table is None
    if faithful:
        assert [s[:2] for s in t.state()[:2]] == [(A | 2, PGT_l4_page_table | PGT_pinned),
                                                   (A | 1, PGT_l3_page_table)]
    else:
        assert t.state()[:2] == [(A | 2, L4V | PGT_pinned | 1, 0, p), (A | 2, L3V | 1, 0, p)]
