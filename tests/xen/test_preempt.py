"""The preemption source (hypercall_preempt_check's answer) and the hypervisor.preempt key."""

import pytest

from xensim.xen import Preemption, parse_preemption


def test_never_is_the_default_and_never_asked():
    p = parse_preemption("never")
    assert p == Preemption() and p.pending is None and str(p) == "never"


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


def test_config_key_reaches_the_machine_and_a_bad_value_is_one_line(tmp_path):
    import subprocess
    import sys
    from xensim.config import parse_config
    from xensim.xen import Machine
    from xensim.config import build_memory_map
    cfg = parse_config('hypervisor:\n  preempt: "every 16"\n', "c.yaml")
    m = Machine.from_config(cfg, build_memory_map(cfg))
    assert str(m.preempt) == "every 16"
    bad = tmp_path / "bad.yaml"
    bad.write_text('hypervisor:\n  preempt: "every zero"\n')
    r = subprocess.run([sys.executable, "-m", "xensim", "run", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"xensim: error: {bad}:2: hypervisor.preempt: 'every zero': "
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

    def call(self, number, *args, vcpu=0):
        rc = self.m.hypercall(self.g, number, *args, vcpu=vcpu)
        full, inc = audit(self.m), self.inc.check()
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


