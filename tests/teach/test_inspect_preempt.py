"""xensim inspect of a preempted (de)validation (xensim/teach/_inspect.py): a frame's
PGT_partial, nr_validated_ptes and partial entry, the references a partial table and its
entries hold (recounted as the auditor's partial_expect does), a domain's partial tables
and each vCPU's old_guest_table; and ``--calls N``, which stops between a preempted call
and its continuation.

The tree of tests/teach/test_trace_preempt.py, Xen 4.8 (RELEASE-4.8.0 mm.c: alloc_l2_table,
free_l2_table, alloc/free_l3/l4_table, put_old_guest_table). Values asserted exactly.
"""

from __future__ import annotations

import json

from test_trace_preempt import F, _tree
from xensim.teach import inspect_domain, inspect_mfn, render_inspection
from xensim.xen import HYPERVISOR_mmuext_op, MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE, MmuextOp


def _text(report: dict) -> list[str]:
    report.update({"config": "tree", "design": "none", "ops_run": 0, "ops_total": 0})
    return render_inspection(report).splitlines()[1:]


def _preempted_pin():
    m, g = _tree()
    m.set_preempt("every 200")
    m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], [0])
    return m, g


def test_a_partial_l2_shows_its_progress_and_who_holds_it():
    """After alloc_l2_table stopped before entry 200: l2/1 PGT_partial, nr_validated_ptes 200,
    partial_pte 0; count 2 = PGC_allocated + get_page_light's (the L3's entry 0 holds only
    the partial type count, the L2's own)."""
    m, _ = _preempted_pin()
    r = inspect_mfn(m, F[2])
    assert r["validation"] == {"partial": True, "nr_validated_ptes": 200, "partial_pte": 0}
    assert (r["count_info"]["count"], r["type_info"]["type"], r["type_info"]["count"],
            r["type_info"]["partial"]) == (2, "l2", 1, True)
    assert r["mapped_by"] == []
    assert r["held_by"]["holders"] == [
        {"what": "PGC_allocated (the owner's own reference)", "general": 1, "type": None},
        {"what": "PGT_partial: its type count kept at 1, and get_page_light's general reference",
         "general": 1, "type": "l2"}]
    assert r["held_by"]["matches"]
    t = _text(r)
    assert t[4:6] == ["  type_info: type l2, partial, count 1",
                      "  validation: PGT_partial (a preempted validation or devalidation): "
                      "nr_validated_ptes 200 (entries 0..199 hold their references), partial_pte 0"]
    assert json.loads(render_inspection(r, "json"))["validation"]["nr_validated_ptes"] == 200


def test_an_l1_below_nr_validated_ptes_is_held_by_the_partial_l2():
    m, _ = _preempted_pin()
    r = inspect_mfn(m, F[3])
    assert r["validation"] == {"partial": False, "nr_validated_ptes": 0, "partial_pte": 0}
    assert [(x["table_mfn"], x["index"], x.get("partial_table")) for x in r["mapped_by"]] == [
        (F[2], 0, True)]
    assert _text(r)[8:12] == [
        "  L2 table mfn 0x202 [0x0] (dom1): mfn 0x203 RW|P (an l1 table, below "
        "nr_validated_ptes of a PGT_partial table)",
        "references held (recounted as the auditor does):",
        "  PGC_allocated (the owner's own reference): 1 general",
        "  L2 entry of table mfn 0x202 [0x0] (PGT_partial table): 1 general + 1 l1"]
    assert r["held_by"]["count"] == 2 and r["held_by"]["matches"]


def test_the_domain_lists_its_partial_tables():
    m, g = _preempted_pin()
    r = inspect_domain(m, g)
    assert r["partial"] == [
        {"mfn": F[0], "level": 4, "nr_validated_ptes": 0, "partial_pte": 1},
        {"mfn": F[1], "level": 3, "nr_validated_ptes": 0, "partial_pte": 1},
        {"mfn": F[2], "level": 2, "nr_validated_ptes": 200, "partial_pte": 0}]
    assert _text(r)[3] == (
        "  PGT_partial tables: L4 mfn 0x200 (nr_validated_ptes 0, partial_pte 1), L3 mfn 0x201 "
        "(nr_validated_ptes 0, partial_pte 1), L2 mfn 0x202 (nr_validated_ptes 200, "
        "partial_pte 0)")


def test_a_preempted_unpin_shows_old_guest_table_and_the_partial_entries():
    """After free_l2_table stopped after entry 2's put: the L4 is held by the vCPU's
    old_guest_table (its general reference only: the type count is the partial table's),
    the L3 by the L4's partial entry (partial_pte -1: a general reference)."""
    m, g = _tree()
    assert m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], [0]) == 0
    m.set_preempt("every 2")
    m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNPIN_TABLE, F[0])], [0])
    r = inspect_mfn(m, F[0])
    assert r["validation"] == {"partial": True, "nr_validated_ptes": 0, "partial_pte": -1}
    assert [h["what"] for h in r["held_by"]["holders"]][1:] == [
        "PGT_partial: its type count kept at 1, and get_page_light's general reference",
        "old root (a put to finish) of d1.v0"]
    assert (r["held_by"]["count"], r["held_by"]["type_count"], r["held_by"]["matches"]) == (
        3, 1, True)
    r = inspect_mfn(m, F[1])
    assert _text(r)[9:13] == [
        "  L4 table mfn 0x200 [0x0] (dom1): mfn 0x201 RW|P (an l3 table; the partial entry of "
        "a PGT_partial table: partial_pte -1)",
        "references held (recounted as the auditor does):",
        "  PGC_allocated (the owner's own reference): 1 general",
        "  L4 entry of table mfn 0x200 [0x0] (PGT_partial table): 1 general"]
    assert r["held_by"]["count"] == 3 and r["held_by"]["matches"]
    d = inspect_domain(m, g)
    assert d["vcpus"] == [{"vcpu": 0, "guest_table": None, "guest_table_user": None,
                           "old_guest_table": F[0]}]
    assert _text(d)[3] == "  v0: old_guest_table 0x200"


def test_cmd_inspect_calls(capsys):
    """``xensim inspect CONFIG --calls N`` (JSON: the frame's validation, calls_run, in_op);
    --calls with --steps is one line, exit 2."""
    import pytest
    from pathlib import Path
    from test_inspect import _cli
    from xensim._errors import ConfigError
    from xensim.cli._inspect import cmd_inspect
    config = str(Path(__file__).resolve().parents[2] / "configs" / "preempt-pin.yaml")
    assert cmd_inspect(_cli(["inspect", config, "--mfn", "0x803", "--calls", "1",
                             "--format", "json"])) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["calls_run"], r["in_op"], r["validation"]) == (
        1, 0, {"partial": True, "nr_validated_ptes": 0, "partial_pte": 1})
    with pytest.raises(ConfigError, match="--calls: --steps and --calls cannot be given together"):
        cmd_inspect(_cli(["inspect", config, "--mfn", "0", "--calls", "1", "--steps", "1"]))


def test_with_xsa299s_fix_the_partial_entry_holds_a_general_reference():
    """Xen 4.8 outside faithful mode (XSA-299's fix, as 4.13 on: partial_flags): the L3's
    entry 0 (PTF_partial_set) holds a general reference of the partial L2, which inspect
    counts (RELEASE-4.22.0 asm/mm.h: "the PTE at nr_validated_ptes holds a general
    reference count for the page")."""
    m, _ = _tree("4.8", faithful=False)
    m.set_preempt("every 200")
    m.hypercall(1, HYPERVISOR_mmuext_op,
                [MmuextOp(MMUEXT_PIN_L4_TABLE, F[0])], [0])
    r = inspect_mfn(m, F[2])
    assert r["validation"] == {"partial": True, "nr_validated_ptes": 200, "partial_flags": 0}
    assert [(h["what"], h["general"], h["type"]) for h in r["held_by"]["holders"]][1:] == [
        ("L3 entry of table mfn 0x201 [0x0] (PGT_partial table)", 1, None),
        ("PGT_partial: its type count kept at 1, and get_page_light's general reference", 1,
         "l2")]
    assert (r["held_by"]["count"], r["held_by"]["matches"]) == (3, True)
    r = inspect_mfn(m, F[1])
    assert _text(r)[5] == (
        "  validation: PGT_partial (a preempted validation or devalidation): nr_validated_ptes 0 "
        "(no entry below it holds a reference), partial_flags 1 (PTF_partial_set: entry 0 holds "
        "a general reference of the L2 below, which this table's operation left PGT_partial)")
    assert _text(r)[9] == ("  L4 table mfn 0x200 [0x0] (dom1): mfn 0x201 RW|P (an l3 table; the "
                           "partial entry of a PGT_partial table: partial_flags 1)")
    assert inspect_domain(m, 1)["partial"][1] == {"mfn": F[1], "level": 3,
                                                  "nr_validated_ptes": 0, "partial_flags": 1}
