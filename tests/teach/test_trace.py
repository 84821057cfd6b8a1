"""xensim trace (xensim/teach/; the command: xensim/cli/_trace.py): the narration of every
hypercall of a small run.

The run is tests/data/trace-small.yaml: one 16 MiB guest on a flat 64 MiB machine
without PDX compression (superpage i at mfn 0x200 * i; page tables at 0x1000..0x1004,
the L2 of the superpage slots is mfn 0x1002, the L1 of window 0 mfn 0x1004).
Lines are asserted exactly (leading spaces included: they show the nesting).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from xensim.xen import accel

from xensim.designs import design_names

from xensim import MemoryMap, Machine, audit
from xensim._errors import ConfigError
from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
from xensim.xen._hypercall import errno_name
from xensim.cli._trace import add_parser, cmd_trace
from xensim.sim import start
from xensim.teach import (Tracer, ci_change, format_pte, frames_text, load, spage_word_text,
                          ti_change, trace)
from xensim.mem import PDX_GROUP_FRAMES, PDX_GROUP_MASK, PDX_GROUP_SHIFT, SUPERPAGE_PAGES
from xensim.xen import EVENTS

DATA = Path(__file__).resolve().parents[1] / "data"
SMALL = str(DATA / "trace-small.yaml")
DESIGNS = design_names()

RANGE_GET_0 = ("get_pages_and_type(writable): 512 frames mfn 0x0..0x1ff count_info +1 "
               "(allocated inuse count=1 -> 2), type_info none/0 -> writable/1 validated")


@pytest.fixture(scope="module")
def small():
    return load(SMALL)


@pytest.fixture(scope="module")
def runs(small):
    """The default design's trace at each level (run once per module)."""
    cfg, mm = small
    return {level: trace(cfg, mm, level=level) for level in ("hypercall", "superpage", "frame")}


def lines(res) -> list[str]:
    return res.text().splitlines()


def op_block(text_lines: list[str], n: int) -> list[str]:
    """The lines of operation n (its header to the blank line after it)."""
    start = next(i for i, ln in enumerate(text_lines) if ln.startswith(f"op {n}: "))
    end = text_lines.index("", start)
    return text_lines[start:end]


# -- the three levels ---------------------------------------------------------------------------
def test_hypercall_level_is_one_line_per_call_and_its_result(runs):
    t = lines(runs["hypercall"])
    assert op_block(t, 1) == [
        "op 1: web: map superpage 0 x2 at slot 0 rw",
        "  mmu_update dom1: 2 requests",
        "    [0] L2[0x0] of mfn 0x1002 := mfn 0x0 PSE|D|A|U|RW|P",
        "    [1] L2[0x1] of mfn 0x1002 := mfn 0x200 PSE|D|A|U|RW|P",
        "  -> 0 (2 of 2 done)",
    ]
    assert op_block(t, 2) == [
        "op 2: web: map superpage 2 at slot 2 ro",
        "  mmu_update dom1: L2[0x2] of mfn 0x1002 := mfn 0x400 PSE|A|U|P",
        "  -> 0",
    ]
    assert op_block(t, 6) == [
        "op 6: web: mark superpage 1",
        "  mmuext_op dom1: mark_super mfn 0x200",
        "  -> EINVAL",
    ]
    assert op_block(t, 7)[1] == \
        "  mmu_update dom1: L2[0x1] of mfn 0x1002 := 0 (was mfn 0x200 PSE|D|A|U|RW|P)"
    assert op_block(t, 10) == [
        "op 10: web: balloon-out superpage 4",
        "  memory_op dom1: decrease_reservation 512 extents of order 0: 512 frames mfn 0x800..0x9ff",
        "  -> 512 (512 of 512 extents done, dom1 tot_pages 4101 -> 3589)",
    ]
    assert op_block(t, 11) == [
        "op 11: web: balloon-in superpage 4",
        "  memory_op dom1: populate_physmap 1 extent of order 9 at gpfn 0x800",
        "  -> 1 (1 of 1 extents done, dom1 tot_pages 3589 -> 4101)",
    ]
    assert t[-2:] == ["11 operations (1 failed), 11 hypercalls (1 returned an error), 0 TLB flushes",
                      "audit: clean"]
    assert not any("superpage mfn" in ln or "get_page" in ln for ln in t)


def test_superpage_level_shows_entries_words_and_the_path(runs):
    t = lines(runs["superpage"])
    assert op_block(t, 2) == [
        "op 2: web: map superpage 2 at slot 2 ro",
        "  mmu_update dom1: L2[0x2] of mfn 0x1002 := mfn 0x400 PSE|A|U|P",
        "    validate new L2 entry: get_superpage(mfn 0x400, dom1, ro)",
        "      superpage mfn 0x400 word: none/0 -> dynamic/1",
        "      slow path: 0 -> 1, took the 512 frames' references",
        "  -> 0",
    ]
    assert op_block(t, 3)[2:5] == [
        "    validate new L2 entry: get_superpage(mfn 0x0, dom1, rw)",
        "      superpage mfn 0x0 word: dynamic/1 -> dynamic/2",
        "      fast path: count + 1, no frame reference taken",
    ]
    # a remap: the new entry's reference first, then the old one's dropped (Xen's order)
    assert op_block(t, 4)[2:8] == [
        "    validate new L2 entry: get_superpage(mfn 0x400, dom1, rw)",
        "      superpage mfn 0x400 word: dynamic/1 -> dynamic/2",
        "      fast path: count + 1, no frame reference taken",
        "    drop old L2 entry: put_superpage(mfn 0x400, ro)",
        "      superpage mfn 0x400 word: dynamic/2 -> dynamic/1",
        "      fast path: count - 1, no frame reference dropped",
    ]
    assert op_block(t, 5)[2:] == [
        "    superpage mfn 0x200 word: dynamic/1 -> mark/2",
        "    mark: the mark holds a count, no frame reference taken",
        "  -> 0",
    ]
    assert op_block(t, 6)[2:] == [
        "    superpage mfn 0x200 word: mark/2 (unchanged)",
        "    request failed (EINVAL): anything it took was given back, the machine is as it was",
        "  -> EINVAL",
    ]
    assert op_block(t, 9)[2:] == [
        "    superpage mfn 0x200 word: mark/1 -> none/0",
        "    unpin: the last count went, the 512 frames' references dropped (not a slow "
        "transition: 0->1 and 1->0 count mappings)",
        "  -> 0",
    ]
    assert op_block(t, 8)[3] == \
        "      validate new L1 entry: get_page_and_type(mfn 0x605, dom1, writable)"
    assert not any("count_info" in ln for ln in t)


def test_frame_level_shows_every_word_change_and_summarises_ranges(runs):
    t = lines(runs["frame"])
    assert op_block(t, 1)[:10] == [
        "op 1: web: map superpage 0 x2 at slot 0 rw",
        "  mmu_update dom1: 2 requests",
        "    [0] L2[0x0] of mfn 0x1002 := mfn 0x0 PSE|D|A|U|RW|P",
        "      get_page: mfn 0x1002 count_info +1 (allocated inuse count=2 -> 3)",
        "      validate new L2 entry: get_superpage(mfn 0x0, dom1, rw)",
        "        " + RANGE_GET_0,
        "        superpage mfn 0x0 word: none/0 -> dynamic/1",
        "        slow path: 0 -> 1, took the 512 frames' references",
        "      put_page: mfn 0x1002 count_info -1 (allocated inuse count=3 -> 2)",
        "    [1] L2[0x1] of mfn 0x1002 := mfn 0x200 PSE|D|A|U|RW|P",
    ]
    assert op_block(t, 8)[3:7] == [
        "      get_page: mfn 0x1004 count_info +1 (allocated inuse count=2 -> 3)",
        "      validate new L1 entry: get_page_and_type(mfn 0x605, dom1, writable)",
        "        get_page: mfn 0x605 count_info +1 (allocated inuse count=1 -> 2)",
        "        get_page_type(writable): mfn 0x605 type_info none/0 -> writable/1 validated",
    ]
    assert op_block(t, 9)[3] == (
        "    put_pages_and_type: 512 frames mfn 0x200..0x3ff count_info -1 (allocated inuse "
        "count=2 -> 1), type_info writable/1 validated -> writable/0 validated")
    # 512 frames given back one by one: one run, the steps each frame went through
    assert op_block(t, 10)[2:9] == [
        "    512 frames mfn 0x800..0x9ff, each in turn:",
        "      get_page: count_info +1 (allocated inuse count=1 -> 2)",
        "      clear PGC_allocated: count_info allocated inuse count=2 -> inuse count=2",
        "      put_page: count_info -1 (inuse count=2 -> 1)",
        "      put_page: count_info -1 (inuse count=1 -> 0)",
        "      freed: back to the heap (state free, owner dom1 -> none)",
        "  -> 512 (512 of 512 extents done, dom1 tot_pages 4101 -> 3589)",
    ]
    assert op_block(t, 11)[2] == (
        "    alloc_domheap_pages(order 9): 512 frames mfn 0x800..0x9ff count_info free count=0 "
        "-> allocated inuse count=1, owner none -> dom1")
    assert runs["frame"].untraced == 0
    assert not any("untraced" in ln for ln in t)


def test_all_frames_lists_each_frame(small):
    cfg, mm = small
    t = lines(trace(cfg, mm, level="frame", all_frames=True, limit=1))
    i = t.index("        get_pages_and_type(writable): 512 frames mfn 0x0..0x1ff:")
    assert t[i + 1] == ("          mfn 0x0 count_info +1 (allocated inuse count=1 -> 2), "
                        "type_info none/0 -> writable/1 validated")
    assert t[i + 512] == ("          mfn 0x1ff count_info +1 (allocated inuse count=1 -> 2), "
                          "type_info none/0 -> writable/1 validated")
    assert t[i + 513] == "        superpage mfn 0x0 word: none/0 -> dynamic/1"


def test_limit_traces_a_prefix(small):
    cfg, mm = small
    res = trace(cfg, mm, level="hypercall", limit=2)
    t = lines(res)
    assert "workload script: 11 operations, tracing the first 2; level hypercall" in t
    assert [ln for ln in t if ln.startswith("op ")] == [
        "op 1: web: map superpage 0 x2 at slot 0 rw", "op 2: web: map superpage 2 at slot 2 ro"]
    assert t[-2] == "2 operations (0 failed), 2 hypercalls (0 returned an error), 0 TLB flushes"


def test_header_and_setup(runs):
    t = lines(runs["superpage"])
    assert t[1] == "design xen-4.1: Xen 4.1's spage_info: one count, NONE/DYNAMIC/MARK, writable references"
    assert t[2] == "Xen 4.8, machine custom (64.00 MiB of RAM), pdx none"
    assert t[4:7] == [
        "set-up (not traced):",
        "  dom1 web: 16.00 MiB = superpages 0..7 at mfn 0x0..0xe00 (step 0x200); tot_pages 4101",
        "  dom1 page tables: L4 mfn 0x1000 (pinned, base pointer), L3 mfn 0x1001, L2 mfn 0x1002, "
        "L2 mfn 0x1003, L1 mfn 0x1004",
    ]


# -- every design --------------------------------------------------------------------------------
@pytest.mark.parametrize("design,first,second", [
    ("xen-4.1", "superpage mfn 0x0 word: none/0 -> dynamic/1",
     "superpage mfn 0x0 word: dynamic/1 -> dynamic/2"),
    ("superpage-info", "superpage mfn 0x0 rw count: 0 -> 1", "superpage mfn 0x0 rw count: 1 -> 2"),
    ("pageinfo-count", "superpage mfn 0x0 page_info count: 0 -> 1",
     "superpage mfn 0x0 page_info count: 1 -> 2"),
    ("sketch", "superpage mfn 0x0 count: 0 -> 1", "superpage mfn 0x0 count: 1 -> 2"),
    ("per-mapping", None, None),
])
def test_each_design_narrates_its_own_word(small, design, first, second):
    cfg, mm = small
    res = trace(cfg, mm, design=design, level="frame")
    t = lines(res)
    assert res.untraced == 0
    assert t[-1] == "audit: clean"
    op1, op3 = op_block(t, 1), op_block(t, 3)
    if first is None:
        assert "        slow path: no count, every mapping takes the 512 frames' references" in op1
        # the second mapping of superpage 0 takes its 512 references again
        assert "      " + RANGE_GET_0.replace("count=1 -> 2", "count=2 -> 3").replace(
            "none/0 -> writable/1", "writable/1 validated -> writable/2") in op3
        assert op_block(t, 5)[-3:] == [
            "    per-mapping has no MARK_SUPER / UNMARK_SUPER: the answer of Xen 4.8 with superpages off",
            "    request failed (EOPNOTSUPP): anything it took was given back, the machine is as it was",
            "  -> EOPNOTSUPP",
        ]
    else:
        assert "        " + first in op1
        assert "      " + second in op3
        assert "      fast path: count + 1, no frame reference taken" in op3


def test_superpage_info_read_only_mappings_take_general_references_only(small):
    cfg, mm = small
    t = lines(trace(cfg, mm, design="superpage-info", level="frame"))
    assert op_block(t, 2)[4:6] == [
        "      get_pages: 512 frames mfn 0x400..0x5ff count_info +1 (allocated inuse count=1 -> 2)",
        "      superpage mfn 0x400 ro count: 0 -> 1",
    ]
    # remap RO -> RW: the RW word goes 0 -> 1 (slow), then the RO word 1 -> 0 (slow)
    assert [ln.strip() for ln in op_block(t, 4) if "path" in ln] == [
        "slow path: 0 -> 1, took the 512 frames' references",
        "slow path: 1 -> 0, dropped the 512 frames' references",
    ]


@pytest.fixture(scope="module")
def map_all(tmp_path_factory):
    cfg_file = tmp_path_factory.mktemp("trace") / "mapall.yaml"
    cfg_file.write_text("machine: {memory_map: [[0x0, 64MiB]], pdx: none}\n"
                        "domains: [{name: web, memory: 16MiB}]\n"
                        "workload: {kind: map-all}\n")
    return load(str(cfg_file))


@pytest.mark.parametrize("design,word", [
    ("xen-4.1", "word: none/0 -> dynamic/1"), ("superpage-info", "rw count: 0 -> 1"),
    ("pageinfo-count", "page_info count: 0 -> 1"), ("sketch", "count: 0 -> 1"),
    ("per-mapping", None)])
def test_the_vectorised_batch_is_narrated(map_all, design, word):
    """8 PSE maps (then unmaps) of distinct superpages in one L2 table: the batch path."""
    cfg, mm = map_all
    res = trace(cfg, mm, design=design, level="frame")
    t = lines(res)
    assert res.untraced == 0
    block = op_block(t, 1)
    assert block[:4] == [
        "op 1: web: map superpage 0 x8 at slot 0 rw",
        "  mmu_update dom1: 8 requests",
        "    [0..7] vectorised batch: 8 independent PSE requests done at once",
        "      [0] L2[0x0] of mfn 0x1002 := mfn 0x0 PSE|D|A|U|RW|P",
    ]
    assert "      " + RANGE_GET_0 in block
    assert block[-1] == "  -> 0 (8 of 8 done)"
    if word is None:
        assert block[-2] == ("      slow path (x8): no count, every mapping takes the 512 "
                             "frames' references")
        return
    assert f"      superpage mfn 0xe00 {word}" in block
    assert block[-2] == "      slow path (x8): 0 -> 1, took the 512 frames' references"
    assert op_block(t, 2)[-2] == "      slow path (x8): 1 -> 0, dropped the 512 frames' references"


# -- errors, failures ------------------------------------------------------------------------------
def _two_guests(design: str = "xen-4.1"):
    m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none", superpage=design)
    ks = []
    for name in ("a", "b"):
        k = GuestKernel(m, m.create_domain(name, 2 * SUPERPAGE_PAGES + 16), pt_pool_pages=16)
        assert k.populate(0, 2 * SUPERPAGE_PAGES) == 2 and k.build() == 0
        k.ensure_table(DIRECTMAP_BASE, 2)
        ks.append(k)
    return m, ks


def test_a_refused_entry_names_the_errno_and_leaves_nothing():
    m, (a, b) = _two_guests()
    foreign = a.superpage_mfns(0, 1)[0]
    t = Tracer(m, "frame").install()
    try:
        rc = b.map_superpages(DIRECTMAP_BASE, [foreign])
    finally:
        t.uninstall()
    assert errno_name(rc) == "EINVAL"         # Xen 4.1's get_superpage: get_spage_pages fails
    text = [ln.text for ln in t.lines]
    assert text[0] == f"mmu_update dom2: L2[0x0] of mfn {b.tables[(2, DIRECTMAP_BASE >> 30)]:#x} " \
                      f":= mfn {foreign:#x} PSE|D|A|U|RW|P"
    assert f"get_pages_and_type(writable): 512 frames mfn {foreign:#x}..{foreign + 511:#x} " \
           "refused at frame 0 (mfn 0x0: another owner; allocated inuse count=1, none/0): " \
           "nothing taken" in text
    assert "refused: EINVAL" in text
    assert "superpage mfn 0x0 word: none/0 (unchanged)" in text
    assert text[-2:] == ["request failed (EINVAL): anything it took was given back, the machine "
                         "is as it was", "-> EINVAL"]
    assert t.untraced == 0 and audit(m).ok


@pytest.mark.parametrize("design,expected", [
    ("xen-4.1", "untraced: superpage mfn 0x0 word: none/0 -> dynamic/7"),
    ("pageinfo-count", "untraced: superpage mfn 0x0 page_info count: 0 -> 7"),
])
def test_an_untraced_superpage_word_is_reported(design, expected):
    m, (a, _) = _two_guests(design)
    mfn = a.superpage_mfns(0, 1)[0]

    def rogue(machine, caller):                  # behind the event bus's back
        if design == "pageinfo-count":           # the field itself, in its PDX group's array
            page = machine.mfn_to_page(mfn)
            fields = machine.superpage._groups.setdefault(
                page >> PDX_GROUP_SHIFT, np.zeros(PDX_GROUP_FRAMES, dtype=np.uint64))
            fields[page & PDX_GROUP_MASK] = 7
        else:
            machine.spage_table.store[0, machine.spage_table.entry_index(0)] = (2 << 62) | 7
        return 0
    m.hypercall.register(99, rogue)
    t = Tracer(m, "superpage").install()
    try:
        assert m.hypercall(1, 99) == 0
    finally:
        t.uninstall()
    assert [ln.text for ln in t.lines] == ["hypercall99 dom1", expected, "-> 0"]
    assert t.untraced == 1


def test_an_untraced_change_is_reported():
    """The safety net: a frame word changed behind the hooks' back is printed, not lost."""
    m, (a, _) = _two_guests()
    page = m.mfn_to_page(a.superpage_mfns(0, 1)[0])

    def rogue(machine, caller):
        machine.frame_table.set_count_info(page, machine.frame_table.count_info(page) + 1)
        return 0
    m.hypercall.register(99, rogue)
    t = Tracer(m, "hypercall").install()
    try:
        assert m.hypercall(1, 99) == 0
    finally:
        t.uninstall()
    assert t.untraced == 1
    assert [ln.text for ln in t.lines] == [
        "hypercall99 dom1",
        "untraced: mfn 0x0 count_info +1 (allocated inuse count=1 -> 2)",
        "-> 0",
    ]


def test_tracing_changes_nothing(small):
    """The same run with and without the tracer: the same machine, bit for bit, same counters."""
    cfg, mm = small
    for design in DESIGNS:
        states = []
        for traced in (False, True):
            session = start(cfg, mm, design)
            m = session.machine
            t = Tracer(m, "frame").install() if traced else None
            session.run()
            if t:
                t.uninstall()
            states.append((m.snapshot(), m.refs.stats.as_dict(), dict(m.superpage.stats),
                           m.hypercall.as_dict()))
        assert states[0] == states[1], design


def test_the_tracer_is_a_pure_subscriber(small):
    """Installing swaps no method and sets no hook (every object's attributes stay as they
    were, but for the slots the machine itself binds as the subscriptions change: its
    accelerated slots, ``request`` and the page tables' entry calls), it subscribes to the machine's events but never to
    atomic_step nor with ``steps`` (the machine stays vectorised), and uninstalling leaves
    no subscriber and every attribute as before."""
    cfg, mm = small
    m = start(cfg, mm, "pageinfo-count").machine
    objs = (m, m.refs, m.pt, m.spage_table, m.hypercall, m.superpage)
    bound = {name for _, name in accel.slots()} | {"request", "get_page_from_entry",
                                                     "put_page_from_entry"}

    def attrs(skip=()):   # the event attributes the bus mirrors into its emitters are the bus's
        return {id(o): {k: v for k, v in vars(o).items() if k not in EVENTS and k not in skip}
                for o in objs}
    before = attrs()
    t = Tracer(m, "frame").install()
    assert attrs(bound) == {k: {a: v for a, v in o.items() if a not in bound}
                            for k, o in before.items()}
    assert m.mode == accel.VECTORISED and not m.events.steps
    assert m.events.hypercall_enter is not None and m.events.word_changed is not None
    assert m.refs.word_changed is m.events.word_changed          # mirrored by the bus
    assert m.events.atomic_step is None
    t.uninstall()
    assert attrs() == before
    assert m.refs.word_changed is None and m.hypercall.hypercall_enter is None
    assert all(m.events.subscribers(name) == [] for name in EVENTS)


# -- Markdown, formatting helpers ------------------------------------------------------------------
def test_markdown(runs):
    md = runs["superpage"].render("md").splitlines()
    assert md[0] == f"# xensim trace: `{SMALL}`"
    assert "### op 2: web: map superpage 2 at slot 2 ro" in md
    i = md.index("### op 2: web: map superpage 2 at slot 2 ro")
    assert md[i + 2:i + 7] == [
        "- `mmu_update dom1: L2[0x2] of mfn 0x1002 := mfn 0x400 PSE|A|U|P`",
        "  - `validate new L2 entry: get_superpage(mfn 0x400, dom1, ro)`",
        "    - `superpage mfn 0x400 word: none/0 -> dynamic/1`",
        "    - `slow path: 0 -> 1, took the 512 frames' references`",
        "  - `-> 0`",
    ]
    assert md[-2:] == ["- `11 operations (1 failed), 11 hypercalls (1 returned an error), 0 TLB flushes`",
                       "- `audit: clean`"]


def test_formatting_helpers():
    assert format_pte(0) == "0"
    assert format_pte((0x200 << 12) | 0x83) == "mfn 0x200 PSE|RW|P"
    assert ci_change(0x8000000000000001, 0x8000000000000002) == \
        "count_info +1 (allocated inuse count=1 -> 2)"
    assert ti_change(0, (7 << 60) | (1 << 58) | 1) == "type_info none/0 -> writable/1 validated"
    assert frames_text([5]) == "mfn 0x5"
    assert frames_text(range(0x200, 0x400)) == "512 frames mfn 0x200..0x3ff"
    assert frames_text([1, 2, 7]) == "3 frames mfn 0x1..0x2, 0x7"
    assert spage_word_text("xen-4.1", 0, (2 << 62) | 3) == "dynamic/3"
    assert spage_word_text("superpage-info", 1, (1 << 63) | 2) == "mark|2"


# -- the command ----------------------------------------------------------------------------------
def _cli(argv):
    p = argparse.ArgumentParser(prog="xensim")
    add_parser(p.add_subparsers(dest="command", required=True))
    return p.parse_args(argv)


def test_cmd_trace(capsys):
    assert cmd_trace(_cli(["trace", SMALL, "--level", "hypercall", "--limit", "1"])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"xensim trace of {SMALL}"
    assert "  -> 0 (2 of 2 done)" in out
    assert cmd_trace(_cli(["trace", SMALL, "--format", "md", "--design", "sketch",
                           "--limit", "1"])) == 0
    assert capsys.readouterr().out.startswith(f"# xensim trace: `{SMALL}`")


def test_the_parsers_choices_are_the_tracers():
    """cli/_trace.py repeats LEVELS and TRACE_FORMATS (the parser does not import xensim.teach)."""
    from xensim import teach
    from xensim.cli import _trace
    assert _trace.LEVELS == teach.LEVELS and _trace.TRACE_FORMATS == teach.TRACE_FORMATS


def test_cmd_trace_errors(tmp_path):
    with pytest.raises(ConfigError, match="--design: unknown design 'nope'"):
        cmd_trace(_cli(["trace", SMALL, "--design", "nope"]))
    with pytest.raises(ConfigError, match="no such file"):
        cmd_trace(_cli(["trace", str(tmp_path / "missing.yaml")]))
    with pytest.raises(SystemExit):
        _cli(["trace", SMALL, "--level", "bytes"])
    with pytest.raises(SystemExit):
        _cli(["trace", SMALL, "--limit", "0"])


def test_the_tours_sample_is_what_trace_prints(small):
    """docs/tour.md follows op 2 line by line: its sample must stay true."""
    tour = (Path(__file__).resolve().parents[2] / "docs" / "tour.md").read_text()
    blocks = [b.split("```", 1)[0] for b in tour.split("```\n")[1:]]
    sample = next(b for b in blocks if b.startswith("op 2: web: map")).splitlines()
    cfg, mm = small
    assert sample == op_block(lines(trace(cfg, mm, level="frame", limit=2)), 2)


def test_mark_and_unmark_are_a_pin_not_slow_path_when_pinning_pays():
    """configs/when-pinning-pays.yaml on xen-4.1 (Xen 4.1's mark_superpage / unmark_superpage
    take and drop the 512 references): the trace calls them pin / unpin, never slow path,
    as the comparison counts 0 slow transitions."""
    from xensim.cli._main import main
    import io, contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["trace", str(Path(__file__).resolve().parents[2] / "configs" /
                                "when-pinning-pays.yaml"), "--design", "xen-4.1"])
    assert rc == 0
    t = buf.getvalue().splitlines()
    assert not any("slow path" in ln for ln in t)
    assert t.count("    pin: the mark took the 512 frames' references, once (not a slow "
                   "transition: 0->1 and 1->0 count mappings; mappings of a marked superpage "
                   "take the fast path)") == 1
    assert sum(ln.startswith("    unpin: the last count went") for ln in t) == 1
    assert sum("fast path: count + 1" in ln for ln in t) == 200


def test_a_type_change_flush_is_narrated():
    """__get_page_type's TLB flush (4.1, 4.8): a frame of a superpage mapped writable and
    unmapped is pinned as an L1 table; the trace says why the flush was due."""
    from xensim.xen._mmu import MMUEXT_PIN_L1_TABLE, MmuextOp
    m, (a, _) = _two_guests()
    sp = a.superpage_mfns(0, 1)[0]
    assert a.map_superpages(DIRECTMAP_BASE, [sp]) == 0 and a.unmap(DIRECTMAP_BASE) == 0
    clock = m.refs.tlbflush_clock
    t = Tracer(m, "superpage").install()
    try:
        assert a.mmuext([MmuextOp(MMUEXT_PIN_L1_TABLE, sp + 5)]) == 0
        assert a.mmuext([MmuextOp(MMUEXT_PIN_L1_TABLE, sp + 6)]) == 0     # covered: no flush
    finally:
        t.uninstall()
    flushes = [ln.text for ln in t.lines if ln.text.startswith("TLB flush")]
    assert flushes == [f"TLB flush: mfn {sp + 5:#x} changes type, and its last typed reference "
                       f"went at TLB clock {clock}, not before the CPU's last flush: TLB flush "
                       f"of dom{a.domid}'s CPU (clock -> {clock + 1})"]
    assert t.flushes == 1 and m.refs.stats.tlb_flushes == 1 and t.untraced == 0


# -- streaming --------------------------------------------------------------------------------

def test_the_trace_is_written_as_the_operations_run(small):
    """With a writer, each operation's lines are written before the next operation runs
    (not the whole narrative first), and the text is the one trace() renders."""
    from xensim.teach import TraceWriter
    cfg, mm = small
    for fmt in ("text", "md"):
        chunks: list[str] = []
        res = trace(cfg, mm, level="frame", writer=TraceWriter(fmt, chunks.append))
        assert res.lines == []
        ops = [c for c in chunks if "op " in c and ": web:" in c]
        firsts = [c.split("op ", 1)[1].split(":", 1)[0] for c in ops]
        assert firsts == [str(i) for i in range(1, 12)]           # one chunk per operation
        assert all(c.count(": web:") == 1 for c in ops)
        assert "".join(chunks) == trace(cfg, mm, level="frame").render(fmt)


def test_a_long_trace_on_a_terminal_says_how_to_narrow_it(small, monkeypatch, capsys):
    from xensim.cli import _trace
    monkeypatch.setattr(_trace, "LONG_TRACE_LINES", 20)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert cmd_trace(_cli(["trace", SMALL])) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) > 40
    assert err == ("xensim: trace: over 20 lines; --limit N traces the first N operations only, "
                   "--level hypercall (one line a call)\n")
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)       # piped: not said
    assert cmd_trace(_cli(["trace", SMALL])) == 0
    assert capsys.readouterr().err == ""


def test_a_guest_of_several_vcpus_names_the_calling_vcpu(tmp_path):
    """A domain of two vCPUs: each operation starts with the process switch on its vCPU
    (do_mmuext_op NEW_BASEPTR + NEW_USER_BASEPTR), and each call names the vCPU."""
    f = tmp_path / "v.yaml"
    f.write_text("workload: {kind: map-all, superpages: 2}\nseed: 1\n"
                 "domains: [{name: a, memory: 4MiB, vcpus: 2}]\n")
    cfg, mm = load(str(f))
    text = lines(trace(cfg, mm, level="hypercall"))
    calls = [t.strip() for t in text if t.strip().startswith(("mmuext_op", "mmu_update"))]
    assert calls[0].startswith("mmuext_op dom1 v0: 2 operations")
    assert any(c.startswith("mmuext_op dom1 v1: 2 operations") for c in calls)
    assert any(c.startswith("mmu_update dom1 v1") for c in calls)


def test_update_va_mapping_flags_are_named_and_the_flush_narrated():
    """__do_update_va_mapping's flags in the call's line (public/xen.h's UVMF_* names), and
    the whole flush that UVMF_TLB_FLUSH|UVMF_LOCAL makes (Xen 4.8)."""
    from xensim import HYPERVISOR_update_va_mapping
    from xensim.teach._decode import uvmf_text
    from xensim.xen import make_pte
    assert [uvmf_text(f) for f in (0, 1, 2, 5, 6, 0x7001, 3)] == [
        "UVMF_NONE", "UVMF_TLB_FLUSH|UVMF_LOCAL", "UVMF_INVLPG|UVMF_LOCAL",
        "UVMF_TLB_FLUSH|UVMF_ALL", "UVMF_INVLPG|UVMF_ALL",
        "UVMF_TLB_FLUSH|UVMF_MULTI (bitmap at 0x7000)", "flags 0x3 (no flush)"]
    m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none", version="4.8")
    k = GuestKernel(m, m.create_domain("guest", 2048))
    assert k.populate(0, 16, superpages=False) == 16 and k.build() == 0
    assert k.map_pages(DIRECTMAP_BASE, [k.mfn(8)]) == 0
    tr = Tracer(m, "superpage").install()
    new = make_pte(k.mfn(9), 0x3)
    assert m.hypercall(k.domid, HYPERVISOR_update_va_mapping, DIRECTMAP_BASE, new, 1) == 0
    text = [ln.text for ln in tr.lines]
    assert text[0] == (f"update_va_mapping dom{k.domid}: va {DIRECTMAP_BASE:#x} := "
                       f"{format_pte(new)}, UVMF_TLB_FLUSH|UVMF_LOCAL")
    assert any(t.startswith(f"TLB flush of dom{k.domid}'s CPU (clock -> ") for t in text), text
