"""The explorer branching on hypercall preemption: each hypercall_preempt_check() a CPU
reaches is a choice (no / pending, ``0p`` in a schedule), answered through the machine's
one preemption source (``Machine.preempt``'s answer port); the preempted hypercall is
re-entered by the CPU's guest kernel as a step of its own; -EINTR from a preemptible
``__get_page_type`` waiting on another CPU's validation (Xen 4.1.0, 4.5.0, 4.7.0, 4.8.0
``xen/arch/x86/mm.c``).
"""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import pytest

from xensim._errors import ConfigError
from xensim.config import load_scenario
from xensim.explore import (Preempted, Runner, explore, explore_dfs, format_schedule,
                            parse_schedule, replay, run_sampling, random_chooser,
                            summarise_trace)
from xensim.xen import Release, audit

ROOT = Path(__file__).resolve().parents[2]
FAITHFUL_RELEASES = ["4.1", "4.5", "4.7", "4.8"]
PENDING = "hypercall_preempt_check(): pending: the hypercall stops (-ERESTART / -EINTR)"
CONTINUED = "hcall dom1: mmuext_op re-entered, the continuation of the preempted hypercall"


def scenario(name, version=None, **changes):
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    if version is not None:
        changes["version"] = Release.parse(version)
    return dataclasses.replace(sc, **changes) if changes else sc


def every_execution(sc, design=None, bound=2):
    """Every schedule of the DFS (bound ``bound``) run to its end, with its execution."""
    runner = Runner(sc, design)
    seen = []

    def make():
        seen.append(runner.make())
        return seen[-1]
    res = explore_dfs(make, bound, 10_000, stop_at_first=False)
    return res, [ex for ex in seen if ex.outcome in ("ok", "violation")]


def clean_runs(name, version, table):
    """Every schedule of scenario ``name`` on ``version``, checked clean and complete, and
    the MFN of its page table ``table``."""
    sc = scenario(name, version)
    res, runs = every_execution(sc)
    assert res.violations == 0 and res.complete, res.first and res.first.message
    return runs, Runner(sc).make().world.pts[table][0]


class TestScheduleText:
    def test_a_check_answered_pending_is_written_p(self):
        s = [0, 0, 0, Preempted(0), 1, 1, Preempted(1), Preempted(1), 0]
        assert format_schedule(s) == "0*3,0p,1*2,1p*2,0"
        back = parse_schedule("0*3,0p,1*2,1p*2,0")
        assert back == s and [type(c) for c in back] == [type(c) for c in s]

    def test_preempted_is_its_cpu(self):
        assert Preempted(1) == 1 and int(Preempted(1)) == 1 and repr(Preempted(1)) == "Preempted(1)"


class TestVcpusColdMap:
    """vcpus-cold-map: the checks each lane reaches are do_mmuext_op's (4.5 on: before
    NEW_USER_BASEPTR, the process switch's second op) and, on 4.1, do_mmu_update's."""

    def test_bound_0_asks_no_check(self):
        ex, v = replay(scenario("vcpus-cold-map"), parse_schedule("0*1028,1*1034,0*4"), "sketch")
        assert v is not None and not any("preempt" in t for t in ex.trace)
        assert ex.m.preempt.pending is None

    def test_sketch_leak_found_with_the_checks_as_steps(self):
        res = explore(scenario("vcpus-cold-map"), "sketch", "dfs", preemption_bound=1,
                      hypercall_preemptions=1)
        assert res.violations == 1 and res.schedules == 3
        assert format_schedule(res.first.schedule) == "0*1029,1*1035,0*4"
        assert res.first.trace[1] == "d1.v0 hypercall_preempt_check(): no"

    def test_preempted_between_the_process_switch_ops_and_continued(self):
        sc = scenario("vcpus-cold-map")
        ex, v = replay(sc, parse_schedule("0*1029,1*3,1p,0*2,1*8"), "sketch",
                       hypercall_preemptions=1)
        assert v is None and ex.world.results == {0: [0], 1: [0]}
        assert format_schedule(ex.schedule) == "0*1029,1*3,1p,0*2,1*8"
        lines = summarise_trace(ex.trace)
        at = lines.index(f"d1.v1 {PENDING}")
        # v1 took its user root's references (NEW_BASEPTR done), then was preempted before
        # NEW_USER_BASEPTR; v0 ran; the guest kernel re-entered mmuext_op with the rest
        assert lines[at - 2:at] == ["d1.v1 get_page page 0x400 ci", "d1.v1 get_page_type page 0x400 ti"]
        assert lines[at + 1:at + 4] == [
            "d1.v0 cmpxchg superpage 0x0 word 0: expected 0x0 found 0x0 -> 0x1 won",
            "d1.v0 put_page page 0x404 ci", f"d1.v1 {CONTINUED}"]
        assert ex.world.kernels["a"].continuations == 1 and ex.preemptions == 1
        # the answer port is the run's only: the machine's source is as it was after it
        assert ex.m.preempt.answer is None and ex.m.preempt.pending is None
        assert audit(ex.m).ok and ex.m.heap.free_frames == ex.m.memmap.ram_frames

    def test_a_found_schedule_replays_exactly(self):
        sc = scenario("vcpus-pin-wait")
        res, runs = every_execution(sc)
        run = next(ex for ex in runs if any(isinstance(c, Preempted) for c in ex.schedule))
        ex, v = replay(sc, parse_schedule(format_schedule(run.schedule)))
        assert v is None and ex.trace == run.trace and ex.schedule == run.schedule

    def test_random_scheduler_answers_some_checks_pending(self):
        runner = Runner(scenario("vcpus-cold-map"), "xen-4.1", hypercall_preemptions=1)
        runs = []

        def make():
            runs.append(runner.make())
            return runs[-1]
        res = run_sampling(make, lambda i: random_chooser(i), 12, stop_at_first=False)
        assert res.violations == 0 and res.schedules == 12
        assert any(any(isinstance(c, Preempted) for c in ex.schedule) for ex in runs)
        assert all(sum(isinstance(c, Preempted) for c in ex.schedule) <= 1 for ex in runs)


class TestVcpusColdMapPreempted:
    """vcpus-cold-map-preempted (Xen 4.1: do_mmu_update asks before its first request,
    do_mmuext_op between the process switch's two ops; get_superpage's 512-frame loop has
    no check): one hypercall preempted and continued changes no design's outcome."""

    EXPECTED = {"xen-4.1": None, "superpage-info": None, "pageinfo-count": None,
                "per-mapping": None, "none": None,
                "sketch": ("0*1039,1*1037,0*4", "after the schedule: 1024 audit difference(s): "
                                                "mfn 0x0 count_info.count: expected 2, actual 3")}

    @pytest.mark.parametrize("design", sorted(EXPECTED))
    def test_expected_outcome_per_design(self, design):
        sc = scenario("vcpus-cold-map-preempted")
        assert (sc.version, sc.hypercall_preemptions) == (Release.R4_1, 1)
        res = explore(sc, design, "dfs", preemption_bound=1)
        assert res.complete
        want = self.EXPECTED[design]
        if want is None:
            assert res.violations == 0, res.first and res.first.message
        else:
            assert res.violations == 1 and res.first.message.startswith(want[1])
            assert format_schedule(res.first.schedule) == want[0]

    def test_a_map_preempted_before_its_entry_is_continued(self):
        sc = scenario("vcpus-cold-map-preempted")
        res, runs = every_execution(sc, "xen-4.1", bound=1)
        hits = [ex for ex in runs if any(t.startswith("d1.v0 hcall dom1: mmu_update re-entered")
                                         for t in ex.trace)]
        assert hits and all(ex.world.results == {0: [0], 1: [0]} for ex in hits)


class TestGetPageTypeEintr:
    """__get_page_type (4.1.0, 4.5.0, 4.7.0, 4.8.0): a preemptible get finding the type
    counted but not validated spins, asking hypercall_preempt_check(), and returns -EINTR
    when it answers true; alloc_l3_table makes -EINTR at entry i > 0 -ERESTART with
    nr_validated_ptes i (partial_pte 0); do_mmuext_op's pin makes -EINTR -ERESTART."""

    @pytest.mark.parametrize("version", FAITHFUL_RELEASES)
    def test_the_waiting_pin_gives_up_and_is_continued(self, version):
        runs, a = clean_runs("vcpus-pin-wait", version, "A")
        # v1's get_page_type on B2 (the page after A's first entry's) waits, is answered
        # pending: A is left PGT_partial at entry 1, the pin continued
        partial = f"[page {a:#x} (L3) PGT_partial, nr_validated_ptes 1]"
        hits = [ex for ex in runs if any(t.endswith(partial) for t in ex.trace)]
        assert hits
        for ex in hits:
            assert ex.world.results == {0: [0], 1: [0]}
            at = next(i for i, t in enumerate(ex.trace) if t == f"d1.v1 {PENDING}"
                      and "page" in ex.trace[i - 1] and "get_page_type" in ex.trace[i - 1])
            b2 = int(ex.trace[at - 1].split(" page ")[1].split()[0], 16)
            # the get took nothing: A's entry 1 holds nothing, the pin's general reference
            # on A goes back; A keeps get_page_light's
            assert ex.trace[at + 1:at + 3] == [f"d1.v1 put_page page {b2:#x} ci",
                                               f"d1.v1 put_page page {a:#x} ci"]

    @pytest.mark.parametrize("version", ["4.1", "4.8"])
    def test_a_wait_on_the_pinned_table_itself(self, version):
        # both vCPUs pin T: the second waits on T's own validation; -EINTR gives back the
        # pin's general reference and the pin is continued (then refused: pinned already)
        sc = scenario("xsa-58-pin-error", version, page_tables=scenario("vcpus-pin-wait")
                      .page_tables[2:], cpus=[[dataclasses.replace(op, pt="B2")]
                                              for op in scenario("xsa-58-pin-error").cpus[0] * 2])
        res, runs = every_execution(sc)
        assert res.violations == 0
        b2 = Runner(sc).make().world.pts["B2"][0]
        hits = [ex for ex in runs if any(
            t == f"d1.v1 {PENDING}" and ex.trace[i - 1] == f"d1.v1 get_page_type page {b2:#x} ti"
            and ex.trace[i + 1] == f"d1.v1 put_page page {b2:#x} ci" for i, t in enumerate(ex.trace))]
        assert hits and all(sorted(ex.world.results.values()) == [[-22], [0]] for ex in hits)

    def test_4_22_the_waiting_pin_is_clean(self):
        # __get_page_type (4.22.0): the preemptible wait answers -EINTR as before; with
        # partial_flags every schedule of the waiting pin ends clean and complete
        runs, _ = clean_runs("vcpus-pin-wait", "4.22", "A")
        assert runs


class TestXsa58:
    """XSA-58's path (the pin error path after a preempted validation): no modelled
    release has the bug (docs/xen-facts.md, section 8); every schedule ends clean."""

    @pytest.mark.parametrize("version", FAITHFUL_RELEASES)
    def test_clean_on_every_release(self, version):
        runs, t = clean_runs("xsa-58-pin-error", version, "T")
        # the path is reached: T's validation preempted, continued, refused at entry 2
        hits = [ex for ex in runs if any(f"[page {t:#x} (L2) PGT_partial, nr_validated_ptes"
                                         in line for line in ex.trace)]
        assert hits and all(ex.world.results == {0: [-22], 1: [-22]} for ex in hits)


class TestXsa299:
    """XSA-299's appendices as scenarios (scenarios/xsa-299-*.yaml), found by the explorer
    from the file alone (hypercall preemption bound 2 in the file, CPU preemption bound 1)
    on faithful 4.5-4.8 (RELEASE-4.x.0 mm.c: put_old_guest_table, free_l3_table,
    put_page_from_l3e with partial_pte), and nothing with partial_flags (outside faithful
    mode; 4.22, RELEASE-4.22.0 arch/x86/mm.c)."""

    #: the bug the search meets first in both: vCPU 0's unpin of A preempted, vCPU 1 takes
    #: A over and validates it whole, vCPU 0's continuation (put_old_guest_table) then
    #: drops the type reference E[0] holds (c40b33d726: old_guest_table_partial)
    FIRST = "after the schedule: 1 audit difference(s): mfn {a:#x} type_info.count: expected 1, actual 0"

    @pytest.mark.parametrize("version", ["4.5", "4.7", "4.8"])
    def test_c40b33d726_found_on_faithful(self, version):
        sc = scenario("xsa-299-c40b33d726", version)
        assert sc.faithful and (sc.hypercall_preemptions, sc.preemption_bound) == (2, 1)
        res = explore(sc, None, "dfs")
        a = Runner(sc).make().world.pts["A"][0]
        assert res.violations == 1 and res.first.message == self.FIRST.format(a=a)
        assert format_schedule(res.first.schedule) == "0*13,0p,0*2,1*27,0*13,2*16"

    @pytest.mark.parametrize("version, faithful", [("4.8", False), ("4.22", False)])
    def test_c40b33d726_clean_with_partial_flags(self, version, faithful):
        sc = scenario("xsa-299-c40b33d726", version, faithful=faithful)
        res = explore(sc, None, "dfs")
        assert res.complete and res.violations == 0, res.first and res.first.message

    def test_18b0ab6978_found_on_faithful_and_its_appendix_replayed(self):
        sc = scenario("xsa-299-18b0ab6978", "4.8")
        res = explore(sc, None, "dfs")
        w = Runner(sc).make().world
        a, b = w.pts["A"][0], w.pts["B"][0]
        assert res.violations == 1 and res.first.message == self.FIRST.format(a=a)
        # the appendix's order: V1's unpin preempted; V2 resumes A and is preempted in B
        # (A at x = 1, partial_pte 1: no general reference of B); V3 maps B from D, unmaps
        # it and gives B back; V1's continuation puts B's type through A[x]
        ex, v = replay(sc, parse_schedule("0*13,0p,0*2,1*22,1p,1*8,2*27,1*4,0*9"))
        assert v is not None and v.message == ("after the schedule: the machine recorded: "
                                               f"XSA-299: L3 partial entry's put_page_type on "
                                               f"mfn {b:#x}, which nothing holds")
        lines = summarise_trace(ex.trace, 200)
        assert (f"d1.v1 hcall dom1: mmu_update re-entered, the continuation of the preempted "
                f"hypercall [page {a:#x} (L3) PGT_partial, nr_validated_ptes 1; page {b:#x} (L2) "
                f"PGT_partial, nr_validated_ptes 1]") in lines
        # V2's continuation finds B given back: its entry to A is refused
        assert ex.world.results == {0: [0], 1: [-errno.EINVAL], 2: [0, 0, 0]}

    def test_18b0ab6978_clean_with_partial_flags_4_8(self):
        sc = scenario("xsa-299-18b0ab6978", "4.8", faithful=False)
        res = explore(sc, None, "dfs")
        assert res.complete and res.violations == 0, res.first and res.first.message


def test_a_preemptible_take_raced_and_preempted_is_found_from_the_scenario():
    """examples/designs/preemptible_take.py's unclaimed variant (its 0 -> 1 asks
    hypercall_preempt_check() after each frame, through the machine's one source): with
    the explorer answering (``--hypercall-preemptions 1``) the first map is preempted in
    its take and the other vCPU's map continues the partial word without claiming it."""
    import subprocess
    import sys
    out = subprocess.run(
        [sys.executable, "-m", "xensim", "explore", str(ROOT / "scenarios" / "preempted-cold-map.yaml"),
         "--design-file", str(ROOT / "examples" / "designs" / "preemptible_take.py"),
         "--design", "xen-4.1-preemptible-unclaimed", "--hypercall-preemptions", "1",
         "--preemption-bound", "1", "--quiet"],
        capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1, out.stderr
    assert "schedule (1560 steps): 0*1538,0p,0*7,1*12,0*2\n" in out.stdout
    assert ("first violation: after the schedule: 3 audit difference(s): mfn 0x1ff "
            "count_info.count: expected 2, actual 3;") in out.stdout
    assert "--hypercall-preemptions 1 --design xen-4.1-preemptible-unclaimed --replay " in out.stdout
