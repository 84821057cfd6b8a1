"""xensim trace of preempted page-table (de)validation (xensim/teach/_preempt.py): where Xen
stopped (which check, which entry of which table), the partial state it left (PGT_partial,
nr_validated_ptes, partial_pte, get_page_light's reference), the continuation
(MMU_UPDATE_PREEMPTED, the done count, old_guest_table) and the call that goes on.

The tree (as tests/xen/test_preempt.py's, PDX none: page == mfn): F[0] an L4 whose slot 0
links F[1] (an L3), whose slot 0 links F[2] (an L2), whose entries 0-3 link the L1s
F[3]..F[6]. Xen 4.8 as released (faithful: partial_pte; RELEASE-4.8.0 mm.c: alloc_l2_table asks before entry i >
nr_validated_ptes, free_l2_table after entry i's put, alloc/free_l3/l4_table record the
entry whose table was preempted; do_mmuext_op's MMU_UPDATE_PREEMPTED continuation;
put_old_guest_table). Lines are asserted exactly.
"""

from __future__ import annotations

from conftest import MiB, two_domains
from xensim import Machine, MemoryMap, audit
from xensim.teach import Tracer
from xensim.xen import (Continuation, HYPERVISOR_mmuext_op, MMUEXT_PIN_L4_TABLE,
                        MMUEXT_UNPIN_TABLE, MmuextOp, make_pte)

F = list(range(0x200, 0x210))


def _tree(version: str = "4.8", faithful: bool = True):
    """Xen ``version`` as released (``faithful``: 4.1-4.8's partial_pte) or with XSA-299's
    fix (partial_flags: 4.22, and 4.1-4.8 outside faithful mode)."""
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", version=version,
                faithful=faithful)
    t = two_domains(m, (0x000, 0x400), 0x600)
    m.mem.write(F[0], 0, make_pte(F[1], 3))
    m.mem.write(F[1], 0, make_pte(F[2], 3))
    for k in range(4):
        m.mem.write(F[2], k, make_pte(F[3 + k], 3))
    return m, t.g


def _run(m, g, ops) -> int:
    """One mmuext_op, re-entered while it returns a continuation (as the guest kernel does)."""
    rc = m.hypercall(g, HYPERVISOR_mmuext_op, ops, [0])
    while isinstance(rc, Continuation):
        rc = m.hypercall(g, rc.number, *rc.args)
    return rc


def _traced(level: str = "superpage"):
    m, g = _tree()
    m.set_preempt("every 200")
    tr = Tracer(m, level).install()
    assert _run(m, g, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])]) == 0
    pin = ["  " * ln.depth + ln.text for ln in tr.lines]
    tr.lines.clear()
    m.set_preempt("every 2")
    assert _run(m, g, [MmuextOp(MMUEXT_UNPIN_TABLE, F[0])]) == 0
    unpin = ["  " * ln.depth + ln.text for ln in tr.lines]
    assert tr.untraced == 0 and tr.errors == 0 and tr.preempted == 3 and audit(m).ok
    return pin, unpin


LEFT_L3 = ("        left: l3/1 partial, nr_validated_ptes 0 (no entry done yet), partial_pte 1 "
           "(entry 0 holds only a partial type reference of the L2 below), get_page_light's "
           "extra general reference")
LEFT_L4 = ("      left: l4/1 partial, nr_validated_ptes 0 (no entry done yet), partial_pte 1 "
           "(entry 0 holds only a partial type reference of the L3 below), get_page_light's "
           "extra general reference")
RESUMED_L4 = ("    resumed: the validation of L4 mfn 0x200 (PGT_partial) goes on from entry 0 "
              "(nr_validated_ptes), partial_pte 1 (entry 0 holds only a partial type reference "
              "of the L3 below); this get takes over its type count")
RESUMED_L3 = ("      resumed: the validation of L3 mfn 0x201 (PGT_partial) goes on from entry 0 "
              "(nr_validated_ptes), partial_pte 1 (entry 0 holds only a partial type reference "
              "of the L2 below); this get takes over its type count")
PREEMPTED_UPPER = [
    "      preempted: alloc_l3_table of mfn 0x201: entry 0's L2 was preempted; the validation "
    "stops (-ERESTART)",
    LEFT_L3,
    "      -> ERESTART: preempted, the entry's table is left PGT_partial",
    "    preempted: alloc_l4_table of mfn 0x200: entry 0's L3 was preempted; the validation "
    "stops (-ERESTART)",
    LEFT_L4,
    "    request preempted (ERESTART): nothing is undone; what it did stays for the "
    "continuation to go on from",
    "  -> ERESTART (preempted: a hypercall continuation re-enters mmuext_op with the 1 op "
    "left, MMU_UPDATE_PREEMPTED, 0 done so far)",
]


def test_a_preempted_pin_is_narrated_where_what_was_left_and_how_it_goes_on():
    """A pin of the L4 on 4.8, preempted every 200 checks: alloc_l2_table stops before
    entries 200 and 400; the L3 and L4 record partial_pte 1; two continuations."""
    pin, _ = _traced()
    # four entries alike, one after the other: one line (the narrator's run of entries)
    validate_l1 = ["        validate new L2 entries (x4): get_page_and_type(4 frames mfn "
                   "0x203..0x206, dom1, l1)"]
    def l2_stops(n: int) -> list[str]:
        return [f"        preempted: alloc_l2_table of mfn 0x202: hypercall_preempt_check() "
                f"before entry {n} said yes; the validation stops (-ERESTART)",
                f"          left: l2/1 partial, nr_validated_ptes {n} (entries 0..{n - 1} "
                "validated, holding their references), get_page_light's extra general reference",
                "        -> ERESTART: preempted, the entry's table is left PGT_partial",
                *PREEMPTED_UPPER]

    def continued(n: int) -> list[str]:
        return ["  mmuext_op dom1: pin_l4_table mfn 0x200 (a continuation: MMU_UPDATE_PREEMPTED, "
                "0 done before)",
                RESUMED_L4,
                "    validate new L4 entry: get_page_and_type(mfn 0x201, dom1, l3)",
                RESUMED_L3,
                "      validate new L3 entry: get_page_and_type(mfn 0x202, dom1, l2)",
                f"        resumed: the validation of L2 mfn 0x202 (PGT_partial) goes on from "
                f"entry {n} (nr_validated_ptes); this get takes over its type count"]

    assert pin == [
        "  mmuext_op dom1: pin_l4_table mfn 0x200",
        "    validate new L4 entry: get_page_and_type(mfn 0x201, dom1, l3)",
        "      validate new L3 entry: get_page_and_type(mfn 0x202, dom1, l2)",
        *validate_l1, *l2_stops(200), *continued(200), *l2_stops(400), *continued(400),
        "  -> 0",
    ]


def test_a_preempted_unpin_is_narrated_with_old_guest_table():
    """An unpin on 4.8, preempted every 2 checks: free_l2_table stops after entry 2's put,
    the L3 and L4 keep partial_pte -1, the vCPU's old_guest_table keeps the put, and the
    continuation with no op finishes it (put_old_guest_table)."""
    _, unpin = _traced()
    assert unpin == [
        "  mmuext_op dom1: unpin_table mfn 0x200",
        "    drop old L4 entry: put_page_and_type(mfn 0x201)",
        "      drop old L3 entry: put_page_and_type(mfn 0x202)",
        "        drop old L2 entry: put_page_and_type(mfn 0x206)",
        "        drop old L2 entry: put_page_and_type(mfn 0x205)",
        "        preempted: free_l2_table of mfn 0x202: hypercall_preempt_check() after entry "
        "2's put said yes; the devalidation stops (-ERESTART)",
        "          left: l2/1 partial, nr_validated_ptes 2 (entries 0..1 still hold their "
        "references), get_page_light's extra general reference",
        "      preempted: free_l3_table of mfn 0x201: entry 0's L2 was preempted while "
        "devalidated; the devalidation stops (-ERESTART)",
        "        left: l3/1 partial, nr_validated_ptes 0 (no entry left to drop below it), "
        "partial_pte -1 (entry 0 still holds its general reference to the L2 below), "
        "get_page_light's extra general reference",
        "    preempted: free_l4_table of mfn 0x200: entry 0's L3 was preempted while "
        "devalidated; the devalidation stops (-ERESTART)",
        "      left: l4/1 partial, nr_validated_ptes 0 (no entry left to drop below it), "
        "partial_pte -1 (entry 0 still holds its general reference to the L3 below), "
        "get_page_light's extra general reference",
        "    old_guest_table: the put of mfn 0x200 was preempted; dom1.v0 keeps its references "
        "in old_guest_table (XSA-45), and its next mmuext_op, mmu_update or NEW_BASEPTR "
        "finishes it first",
        "  -> ERESTART (preempted; the ops are done, result 0: a hypercall continuation "
        "re-enters mmuext_op with no op, to finish old_guest_table first)",
        "  mmuext_op dom1: no op (a continuation, MMU_UPDATE_PREEMPTED: finish "
        "old_guest_table, then return the ops' result 0)",
        "    first, put_old_guest_table: dom1.v0's old_guest_table holds the unfinished put of "
        "mfn 0x200, which goes on",
        "    resumed: the devalidation of L4 mfn 0x200 (PGT_partial) goes on below entry 0 "
        "(nr_validated_ptes), partial_pte -1 (entry 0 still holds its general reference to "
        "the L3 below)",
        "    drop old L4 entry: put_page_and_type(mfn 0x201)",
        "      resumed: the devalidation of L3 mfn 0x201 (PGT_partial) goes on below entry 0 "
        "(nr_validated_ptes), partial_pte -1 (entry 0 still holds its general reference to "
        "the L2 below)",
        "      drop old L3 entry: put_page_and_type(mfn 0x202)",
        "        resumed: the devalidation of L2 mfn 0x202 (PGT_partial) goes on below entry 2 "
        "(nr_validated_ptes)",
        "        drop old L2 entry: put_page_and_type(mfn 0x204)",
        "        drop old L2 entry: put_page_and_type(mfn 0x203)",
        "    old_guest_table: put_old_guest_table finished the put of mfn 0x200; dom1.v0's "
        "old_guest_table is empty",
        "  -> 0",
    ]


def test_frame_level_shows_get_page_light_and_the_partial_bit():
    """At the frame level the words themselves: get_page_light's +1, PGT_partial set, the
    general reference get_page_and_type_from_pagenr took given back; on resuming, the get
    takes over the type count (PGT_partial cleared) and the validated table gives back
    get_page_light's reference."""
    pin, _ = _traced("frame")
    i = pin.index("        get_page_light: mfn 0x202 count_info +1 (allocated inuse count=2 -> 3)")
    assert pin[i + 1:i + 4] == [
        "        validation preempted: mfn 0x202 type_info l2/1 -> l2/1 partial",
        "        preempted: alloc_l2_table of mfn 0x202: hypercall_preempt_check() before "
        "entry 200 said yes; the validation stops (-ERESTART)",
        "          left: l2/1 partial, nr_validated_ptes 200 (entries 0..199 validated, "
        "holding their references), get_page_light's extra general reference",
    ]
    assert pin[i + 4] == "        put_page: mfn 0x202 count_info -1 (allocated inuse count=3 -> 2)"
    last = pin[pin.index("        get_page_type(l2): mfn 0x202 type_info l2/1 partial -> l2/1",
                         len(pin) - 20):]
    assert last[1:4] == [
        "        resumed: the validation of L2 mfn 0x202 (PGT_partial) goes on from entry 400 "
        "(nr_validated_ptes); this get takes over its type count",
        "        validated: mfn 0x202 type_info l2/1 -> l2/1 validated",
        "        put_page: mfn 0x202 count_info -1 (allocated inuse count=3 -> 2)",
    ]


# -- configs/preempt-pin.yaml and docs/tour.md, section 12 ---------------------------------

import re
from pathlib import Path

import pytest

from xensim.teach import inspect, load, render_inspection, trace

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/preempt-pin.yaml"


@pytest.fixture(scope="module")
def pin_config():
    return load(str(ROOT / CONFIG))


def _tour_blocks() -> list[list[str]]:
    """The output blocks of the tour's section 12 (the commands' blocks left out)."""
    tour = (ROOT / "docs" / "tour.md").read_text()
    sec = tour.split("### 12. Long validations", 1)[1].split("\n## ", 1)[0]
    return [b.splitlines() for lang, b in re.findall(r"^```(\w*)\n(.*?)^```$", sec, re.S | re.M)
            if not lang]


def _contains(lines: list[str], block: list[str]) -> bool:
    n = len(block)
    return any(lines[i:i + n] == block for i in range(len(lines) - n + 1))


def test_the_tours_preemption_trace_is_what_trace_prints(pin_config):
    """Every trace excerpt of the tour's section 12 is a run of lines of the real trace;
    the pin is preempted once, before L2 entry 256, the unpin once, after entry 1's put."""
    cfg, mm = pin_config
    got = trace(cfg, mm).text().splitlines()
    blocks = [b for b in _tour_blocks() if not b[0].startswith("after hypercall")]
    assert len(blocks) == 3
    for b in blocks:
        assert _contains(got, b), b[0]
    assert got[-2:] == ["2 operations (0 failed), 4 hypercalls (0 returned an error, 2 preempted "
                        "and continued), 0 TLB flushes", "audit: clean"]
    assert ("        preempted: alloc_l2_table of mfn 0x804: hypercall_preempt_check() before "
            "entry 256 said yes; the validation stops (-ERESTART)") in got
    assert ("          left: l2/1 partial, nr_validated_ptes 1 (entry 0 still holds its "
            "references), get_page_light's extra general reference") in got


def test_the_tours_inspections_are_what_inspect_prints(pin_config):
    """inspect --calls 1: the L2 between the pin and its continuation (PGT_partial,
    nr_validated_ptes 256); --calls 3: the domain between the unpin and the continuation
    that finishes old_guest_table."""
    cfg, mm = pin_config
    r = inspect(cfg, mm, mfn="0x804", calls=1)
    assert (r["calls_run"], r["in_op"], r["validation"]) == (
        1, 0, {"partial": True, "nr_validated_ptes": 256, "partial_pte": 0})
    assert (r["count_info"]["count"], r["type_info"]["count"]) == (2, 1)
    d = inspect(cfg, mm, domain="web", calls=3)
    assert d["vcpus"][0]["old_guest_table"] == 0x802 and d["in_op"] == 1
    assert [(t["mfn"], t["nr_validated_ptes"], t["partial_pte"]) for t in d["partial"]] == [
        (0x802, 0, -1), (0x803, 0, -1), (0x804, 1, 0)]
    one, three = [b for b in _tour_blocks() if b[0].startswith("after hypercall")]
    for block, report in ((one, r), (three, d)):
        text = render_inspection(report).splitlines()
        text[0] = text[0].replace(str(ROOT / CONFIG), CONFIG)
        assert text[:len(block)] == block


def test_calls_past_the_workload_runs_it_all(pin_config):
    cfg, mm = pin_config
    r = inspect(cfg, mm, mfn="0x804", calls=99)
    assert (r["calls_run"], r["in_op"], r["ops_run"]) == (4, None, 2)
    assert render_inspection(r).splitlines()[0].startswith(
        "after all 2 operations (4 hypercalls, fewer than --calls 99) of ")


def test_the_trace_page_flags_the_preempted_steps(pin_config):
    """The page's steps (one per hypercall) carry the PREEMPTED flag where a call was
    preempted or went on from a preempted one, never REFUSED for -ERESTART."""
    from xensim.pages._record import PREEMPTED, REFUSED, STEP_FIELDS, StepRecorder
    cfg, mm = pin_config
    rec = StepRecorder()
    trace(cfg, mm, recorder=rec)
    g = STEP_FIELDS.index("g")
    flags = [s[g] for s in rec.steps]
    assert [bool(f & PREEMPTED) for f in flags] == [True, True, True, True]
    assert not any(f & REFUSED for f in flags)


def test_an_l1_tables_entries_are_one_run_at_the_frame_level(pin_config):
    """alloc_l1_table's 512 entries, each the same two steps on the next frame: one line
    and the steps once (--all-frames lists every entry)."""
    cfg, mm = pin_config
    got = trace(cfg, mm, level="frame", limit=1).text().splitlines()
    i = got.index("          validate new L1 entries (x512): get_page_and_type(512 frames mfn "
                  "0x200..0x3ff, dom1, writable), each:")
    assert got[i + 1:i + 4] == [
        "            get_page: count_info +1 (allocated inuse count=1 -> 2)",
        "            get_page_type(writable): type_info none/0 -> writable/1 validated",
        "          validated: mfn 0x805 type_info l1/1 -> l1/1 validated"]
    every = trace(cfg, mm, level="frame", limit=1, all_frames=True).text().splitlines()
    assert sum(ln.startswith("          validate new L1 entry: ") for ln in every) == 1536


def test_4_22_names_promote_and_demote_and_its_partial_flags():
    """Xen 4.22 (RELEASE-4.22.0 mm.c, XSA-299's rework): promote_l2_table asks before entry
    i > nr_validated_ptes as alloc_l2_table did; promote_l3/l4_table record the entry whose
    table was preempted in partial_flags (PTF_partial_set: it keeps a general reference)."""
    m, g = _tree("4.22", faithful=False)
    m.set_preempt("every 200")
    tr = Tracer(m).install()
    rc = m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], [0])
    assert isinstance(rc, Continuation)
    got = ["  " * ln.depth + ln.text for ln in tr.lines]
    assert got[4:9] == [
        "        preempted: promote_l2_table of mfn 0x202: hypercall_preempt_check() before "
        "entry 200 said yes; the validation stops (-ERESTART)",
        "          left: l2/1 partial, nr_validated_ptes 200 (entries 0..199 validated, holding "
        "their references), get_page_light's extra general reference",
        "        -> ERESTART: preempted, the entry's table is left PGT_partial",
        "      preempted: promote_l3_table of mfn 0x201: entry 0's L2 was preempted; the "
        "validation stops (-ERESTART)",
        "        left: l3/1 partial, nr_validated_ptes 0 (no entry done yet), partial_flags 1 "
        "(PTF_partial_set: entry 0 holds a general reference of the L2 below, which this "
        "table's operation left PGT_partial), get_page_light's extra general reference"]
    assert tr.untraced == 0 and audit(m).ok


def test_a_deferred_put_is_told_apart_from_a_preempted_one():
    """Xen 4.8 (RELEASE-4.8.0 mm.c: mod_l4_entry's put_page_from_l4e with PTF_defer, 4.5 on):
    with preemption possible, replacing an L4 entry defers the old L3's put to the vCPU's
    old_guest_table; do_mmu_update stops before the next request and its continuation
    finishes the put first."""
    from xensim.xen import HYPERVISOR_mmu_update, MmuUpdate
    m, g = _tree()
    assert _run(m, g, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])]) == 0
    m.set_preempt("every 1000")
    tr = Tracer(m).install()
    rc = m.hypercall(g, HYPERVISOR_mmu_update, [MmuUpdate(F[0] << 12, make_pte(F[7], 3)),
                                               MmuUpdate((F[0] << 12) | 8, make_pte(F[8], 3))], [0])
    assert m.hypercall(g, rc.number, *rc.args) == 0
    got = ["  " * ln.depth + ln.text for ln in tr.lines]
    assert got[4:7] == [
        "    stopped: do_mmu_update stops before request 1: old_guest_table holds a put to "
        "finish first (-ERESTART, a continuation)",
        "    old_guest_table: the put of the old entry's L3 mfn 0x201 is deferred to dom1.v0's "
        "old_guest_table (mod_l4_entry, PTF_defer): its next mmuext_op, mmu_update request or "
        "NEW_BASEPTR finishes it first",
        "  -> ERESTART (preempted: a hypercall continuation re-enters mmu_update with the 1 "
        "request left, MMU_UPDATE_PREEMPTED, 1 done so far)"]
    assert got[7:9] == [
        "  mmu_update dom1: L4[0x1] of mfn 0x200 := mfn 0x208 RW|P (a continuation: "
        "MMU_UPDATE_PREEMPTED, 1 done before)",
        "    first, put_old_guest_table: dom1.v0's old_guest_table holds the unfinished put of "
        "mfn 0x201, which goes on"]
    assert got[-2:] == ["    old_guest_table: put_old_guest_table finished the put of mfn 0x201; "
                        "dom1.v0's old_guest_table is empty", "  -> 0"]
    assert tr.untraced == 0 and audit(m).ok


def test_4_1_names_the_preempted_code_eagain():
    """Xen 4.1's mm.c calls a call preempted to be continued -EAGAIN (alloc_l2_table,
    alloc_l4_table, do_mmuext_op's hypercall_create_continuation); f5118cae0a made it
    -ERESTART in 4.5. The trace uses the release's word, for the same pin as on 4.8."""
    m, g = _tree("4.1")
    m.set_preempt("every 200")
    tr = Tracer(m, "superpage").install()
    assert _run(m, g, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])]) == 0
    lines = ["  " * ln.depth + ln.text for ln in tr.lines]
    assert not any("ERESTART" in ln for ln in lines)
    assert ("        preempted: alloc_l2_table of mfn 0x202: hypercall_preempt_check() before "
            "entry 199 said yes; the validation stops (-EAGAIN)") in lines
    assert "        -> EAGAIN: preempted, the entry's table is left PGT_partial" in lines
    assert ("    request preempted (EAGAIN): nothing is undone; what it did stays for the "
            "continuation to go on from") in lines
    assert lines.count("  -> EAGAIN (preempted: a hypercall continuation re-enters mmuext_op "
                       "with the 1 op left, MMU_UPDATE_PREEMPTED, 0 done so far)") == 2
