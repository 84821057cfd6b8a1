"""xensim inspect (xensim/teach/_inspect.py; the command: xensim/cli/_inspect.py): a frame,
a superpage, a domain after a run.

The run is tests/data/trace-small.yaml (see tests/teach/test_trace.py): after its 11
operations on xen-4.1, superpage 0 (mfn 0x0) is mapped twice (slots 0 and 3), superpage
2 (0x400) once RW, superpage 1 (0x200) not at all (unmapped, unmarked), frames 0x605 and
0x606 by 4 KiB RW entries in the L1 table at 0x1004; the tree is L4 0x1000 (pinned, the
base pointer), L3 0x1001, L2 0x1002 (slots) and 0x1003 (-> the L1 0x1004).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from xensim.designs import design_names

from xensim import audit
from xensim._errors import ConfigError
from xensim.cli._inspect import add_parser, cmd_inspect
from xensim.sim import start
from xensim.teach import (count_info_text, inspect, inspect_mfn, load, render_inspection,
                          type_info_text)

SMALL = str(Path(__file__).resolve().parents[1] / "data" / "trace-small.yaml")
DESIGNS = design_names()


@pytest.fixture(scope="module")
def small():
    return load(SMALL)


def text(report) -> list[str]:
    return render_inspection(report, "text").splitlines()


def test_mfn_of_a_superpage_mapped_twice(small):
    cfg, mm = small
    t = text(inspect(cfg, mm, mfn="0x5"))
    assert t == [
        f"after 11 of 11 operations of {SMALL} on xen-4.1, Xen 4.8",
        "mfn 0x5",
        "  pdx 0x5, RAM",
        "  owner: dom1 (web), gpfn 0x5",
        "  count_info: allocated, state inuse, count 2",
        "  type_info: type writable, validated, count 1",
        "  raw: count_info 0x8000000000000002, type_info 0x7400000000000001",
        "  superpage: mfn 0x0..0x1ff, frame 5 of 512; xen-4.1 word dynamic/2",
        "mapped by:",
        "  L2 table mfn 0x1002 [0x0] (dom1): mfn 0x0 PSE|D|A|U|RW|P (2 MiB superpage)",
        "  L2 table mfn 0x1002 [0x3] (dom1): mfn 0x0 PSE|D|A|U|RW|P (2 MiB superpage)",
        "references held (recounted as the auditor does):",
        "  PGC_allocated (the owner's own reference): 1 general",
        "  superpage mfn 0x0: the xen-4.1 design's 512 frame references: 1 general + 1 writable",
        "  expected: count 2, type writable/1 (matches the frame table)",
    ]


def test_mfn_of_a_4k_mapped_frame(small):
    cfg, mm = small
    t = text(inspect(cfg, mm, mfn="0x605"))
    assert t[4:6] == ["  count_info: allocated, state inuse, count 2",
                      "  type_info: type writable, validated, count 1"]
    assert t[7] == "  superpage: mfn 0x600..0x7ff, frame 5 of 512; xen-4.1 word none/0"
    assert t[8:] == [
        "mapped by:",
        "  L1 table mfn 0x1004 [0x5] (dom1): mfn 0x605 D|A|U|RW|P (4 KiB page)",
        "references held (recounted as the auditor does):",
        "  PGC_allocated (the owner's own reference): 1 general",
        "  L1 entry of table mfn 0x1004 [0x5] RW: 1 general + 1 writable",
        "  expected: count 2, type writable/1 (matches the frame table)",
    ]


def test_mfn_of_page_tables(small):
    cfg, mm = small
    t = text(inspect(cfg, mm, mfn="0x1000"))
    assert t[4:6] == ["  count_info: allocated, state inuse, count 3",
                      "  type_info: type l4, pinned, validated, count 2"]
    assert t[-4:] == ["  PGC_allocated (the owner's own reference): 1 general",
                      "  pin by dom1: 1 general + 1 l4",
                      "  base pointer of d1.v0: 1 general + 1 l4",
                      "  expected: count 3, type l4/2 (matches the frame table)"]
    t = text(inspect(cfg, mm, mfn="4100"))                    # 0x1004: the L1 table
    assert "  type_info: type l1, validated, count 1" in t
    assert "  L2 table mfn 0x1003 [0x0] (dom1): mfn 0x1004 U|RW|P (an l1 table)" in t
    assert "  L2 entry of table mfn 0x1003 [0x0]: 1 general + 1 l1" in t


def test_mfn_free_and_invalid(small):
    cfg, mm = small
    t = text(inspect(cfg, mm, mfn="0x2000"))
    assert t[3:6] == ["  owner: none", "  count_info: state free, count 0",
                      "  type_info: type none, count 0"]
    assert t[-2:] == ["references held (recounted as the auditor does):",
                      "  expected: count 0, type none/0 (matches the frame table)"]
    with pytest.raises(ConfigError) as e:                   # before the run: no such frame
        inspect(cfg, mm, mfn="0x999999")
    assert str(e.value) == "--mfn: 0x999999 is past the machine's last frame 0x3fff (max_pfn 0x4000)"
    with pytest.raises(ConfigError) as e:
        inspect(cfg, mm, mfn="-1")
    assert str(e.value) == "--mfn: must be 0 or more, got -1"
    with pytest.raises(ConfigError) as e:
        inspect(cfg, mm, superpage="0x4000")
    assert str(e.value) == "--superpage: 0x4000 is past the machine's last frame 0x3fff (max_pfn 0x4000)"


def test_a_frame_in_a_hole_is_not_ram():
    """A hole's frame in a PDX group with RAM has a page_info that is all zero (state
    inuse, count 0): it says it is not RAM first; a hole's frame without one says so."""
    from xensim import Machine, MemoryMap
    mm = MemoryMap([(0x0, 0x9fc00), (0x100000, 64 << 20), (1 << 30, (1 << 30) + (64 << 20))],
                               name="holes")
    m = Machine(mm, "none")
    r = inspect_mfn(m, 0xa0)
    assert r["hole"] == [0x9f, 0x100] and r["count_info"]["text"] == "state inuse, count 0"
    assert render_inspection(dict(r, ops_run=0, ops_total=0, config="c", design="d"),
                             "text").splitlines()[2] == (
        "  pdx 0xa0, not RAM: in the hole mfn 0x9f..0x100 of the memory map; its page_info "
        "(its PDX group has RAM) is never used: all zero, which decodes as below")
    r = inspect_mfn(m, 0x18000)
    assert not r["valid"] and r["note"] == ("not RAM: in the hole mfn 0x4000..0x40000 of the "
                                            "memory map, with no page_info (its PDX group has no RAM)")


def test_steps_past_the_workload_are_said_clamped(small):
    cfg, mm = small
    r = inspect(cfg, mm, mfn="0x200", steps=999)
    assert r["ops_run"] == 11 and r["steps_clamped"] == 999
    assert text(r)[0] == (f"after 11 of 11 operations of {SMALL} on xen-4.1, Xen 4.8 (--steps 999 is "
                          "more than the workload's 11: clamped)")
    assert "steps_clamped" not in inspect(cfg, mm, mfn="0x200", steps=11)


def test_a_bad_option_value_is_exit_2_in_one_line():
    import subprocess
    p = subprocess.run([sys.executable, "-m", "xensim", "inspect", SMALL, "--mfn", "-1"],
                       capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (2, "", "xensim: error: --mfn: must be 0 or more, got -1\n")


def test_every_command_reports_a_crash_in_the_same_line(monkeypatch, capsys):
    """run, trace and inspect: a design that raises is one line on stderr, exit 1."""
    from xensim import Xen41
    from xensim.cli import main

    def boom(self, mfn, d, rw):
        raise RuntimeError("boom")
    monkeypatch.setattr(Xen41, "get_superpage", boom)
    line = ("xensim: design xen-4.1 crashed: RuntimeError at op 1 (web: map superpage 0 x2 at "
            "slot 0 rw): boom\n")
    assert main(["inspect", SMALL, "--mfn", "0x200"]) == 1
    assert capsys.readouterr() == ("", line)
    assert main(["trace", SMALL, "--level", "hypercall"]) == 1
    out, err = capsys.readouterr()
    assert err == line and out.splitlines()[-1] == "crashed: " + line.split(" crashed: ")[1].strip()
    assert main(["run", SMALL, "--quiet", "--format", "json"]) == 1
    assert capsys.readouterr().err == line


def test_steps_stops_after_a_prefix(small):
    cfg, mm = small
    r = inspect(cfg, mm, mfn="0x200", steps=5)              # mapped at slot 1 and marked
    assert r["ops_run"] == 5 and r["ops_total"] == 11
    t = text(r)
    assert t[0] == f"after 5 of 11 operations of {SMALL} on xen-4.1, Xen 4.8"
    assert t[7] == "  superpage: mfn 0x200..0x3ff, frame 0 of 512; xen-4.1 word mark/2, marked by dom1"
    r = inspect(cfg, mm, mfn="0x200")                       # after the run: neither
    assert text(r)[4:8] == ["  count_info: allocated, state inuse, count 1",
                            "  type_info: type writable, validated, count 0",
                            "  raw: count_info 0x8000000000000001, type_info 0x7400000000000000",
                            "  superpage: mfn 0x200..0x3ff, frame 0 of 512; xen-4.1 word none/0"]
    assert text(inspect(cfg, mm, mfn="0x5", steps=0))[4] == "  count_info: allocated, state inuse, count 1"


@pytest.mark.parametrize("design,entry", [
    ("xen-4.1", "xen-4.1: word mark/2"),
    ("superpage-info", "superpage-info: ro count 0, rw count mark|2"),
    ("pageinfo-count", "pageinfo-count: page_info count mark|2"),
    ("sketch", "sketch: count 1"),
    ("per-mapping", "per-mapping: no per-superpage word (per-mapping: every PSE mapping holds "
                    "its own 512 references)"),
])
def test_superpage_entry_per_design(small, design, entry):
    cfg, mm = small
    t = text(inspect(cfg, mm, superpage="web:1", design=design, steps=5))
    assert t[1] == "superpage mfn 0x200..0x3ff"
    assert t[2] == "  spdx 0x1, owner dom1 (web), gpfn 0x200..0x3ff"
    assert t[3] == "  " + entry


def test_superpage_view(small):
    cfg, mm = small
    t = text(inspect(cfg, mm, superpage="0x7ff"))           # any frame of it
    assert t[1:] == [
        "superpage mfn 0x600..0x7ff",
        "  spdx 0x3, owner dom1 (web), gpfn 0x600..0x7ff",
        "  xen-4.1: word none/0",
        "  marked by nobody",
        "frames:",
        "  510 frames (frames 0, 1, 2, 3, 4, 7, 8, 9, ...): count_info allocated, state inuse, "
        "count 1; type_info type none, count 0",
        "  2 frames (frames 5, 6): count_info allocated, state inuse, count 2; type_info type "
        "writable, validated, count 1",
        "PSE entries (2 MiB mappings):",
        "  none",
        "4 KiB entries over its frames:",
        "  L1 table mfn 0x1004 [0x5] (dom1): mfn 0x605 D|A|U|RW|P (4 KiB page)",
        "  L1 table mfn 0x1004 [0x6] (dom1): mfn 0x606 D|A|U|RW|P (4 KiB page)",
    ]
    t = text(inspect(cfg, mm, superpage="web:0"))
    assert t[5:7] == ["frames:", "  all 512 frames: count_info allocated, state inuse, count 2; "
                                 "type_info type writable, validated, count 1"]
    assert len([ln for ln in t if "PSE|D|A|U|RW|P (2 MiB superpage)" in ln]) == 2


def test_domain_view(small):
    cfg, mm = small
    t = text(inspect(cfg, mm, domain="web"))
    assert t[1:] == [
        "dom1 web",
        "  max_pages 4103, tot_pages 4101, allocated 4101",
        "  base pointer: L4 mfn 0x1000",
        "  pins: l4 mfn 0x1000",
        "  marks: none",
        "page tables per level:",
        "  L4: 1 table, 1 present entry",
        "  L3: 1 table, 2 present entries",
        "  L2: 2 tables, 4 present entries, 3 PSE (3 RW, 0 RO), 1 to L1 table",
        "  L1: 1 table, 2 present entries, 2 4 KiB (2 RW, 0 RO)",
        "tree from the base pointer:",
        "  L4 mfn 0x1000: 1 present",
        "    [0x110] L3 mfn 0x1001: 2 present",
        "      [0x0] L2 mfn 0x1002: 3 present, 3 PSE (3 RW)",
        "      [0x100] L2 mfn 0x1003: 1 present, 0 PSE (0 RW)",
        "        [0x0] L1 mfn 0x1004: 2 present 4 KiB (2 RW)",
    ]
    assert text(inspect(cfg, mm, domain="dom1", steps=5))[5] == "  marks: mfn 0x200"
    assert text(inspect(cfg, mm, domain="1"))[1] == "dom1 web"


def test_json_and_markdown(small):
    cfg, mm = small
    r = inspect(cfg, mm, mfn="0x5")
    data = json.loads(render_inspection(r, "json"))
    assert data["view"] == "mfn" and data["mfn"] == 5 and data["owner"] == 1
    assert data["count_info"]["text"] == "allocated, state inuse, count 2"
    assert data["count_info"]["allocated"] is True and data["count_info"]["count"] == 2
    assert data["type_info"]["type"] == "writable" and data["type_info"]["count"] == 1
    assert data["superpage"]["words"][0]["state"] == "dynamic"
    assert [(x["table_mfn"], x["index"], x["level"], x["kind"]) for x in data["mapped_by"]] == \
        [(0x1002, 0, 2, "superpage"), (0x1002, 3, 2, "superpage")]
    assert data["held_by"]["matches"] is True
    for view in ({"superpage": "web:3"}, {"domain": "web"}):
        data = json.loads(render_inspection(inspect(cfg, mm, **view), "json"))
        assert data["view"] == next(iter(view))
    md = render_inspection(r, "md").splitlines()
    assert md[0] == "# xensim inspect: mfn 0x5"
    assert "- `count_info: allocated, state inuse, count 2`" in md
    assert "## mapped by" in md


def test_decoders():
    assert count_info_text((1 << 63) | 2) == "allocated, state inuse, count 2"
    assert count_info_text(3 << 55) == "state free, count 0"
    assert type_info_text((4 << 60) | (1 << 59) | (1 << 58) | 2) == "type l4, pinned, validated, count 2"


@pytest.mark.parametrize("design", DESIGNS)
def test_held_by_agrees_with_the_frame_table_everywhere(small, design):
    """The recount inspect prints matches every frame of the guest (the auditor agrees)."""
    cfg, mm = small
    session = start(cfg, mm, design)
    session.run()
    m, kernels = session.machine, session.kernels
    assert audit(m).ok
    d = m.domain(kernels["web"].domid)
    mfns = [mfn for s, e in d.owned.runs() for mfn in range(s, e)]
    for mfn in mfns[::7] + [0x605, 0x1000, 0x1004]:
        assert inspect_mfn(m, mfn)["held_by"]["matches"], (design, hex(mfn))


def _cli(argv):
    p = argparse.ArgumentParser(prog="xensim")
    add_parser(p.add_subparsers(dest="command", required=True))
    return p.parse_args(argv)


def test_cmd_inspect(capsys):
    assert cmd_inspect(_cli(["inspect", SMALL, "--mfn", "0x605", "--format", "json"])) == 0
    assert json.loads(capsys.readouterr().out)["mfn"] == 0x605
    assert cmd_inspect(_cli(["inspect", SMALL, "--domain", "web", "--steps", "1"])) == 0
    assert capsys.readouterr().out.startswith(f"after 1 of 11 operations of {SMALL} on xen-4.1, Xen 4.8\n")
    with pytest.raises(SystemExit):
        _cli(["inspect", SMALL])                              # one of --mfn/--superpage/--domain
    with pytest.raises(SystemExit):
        _cli(["inspect", SMALL, "--mfn", "1", "--domain", "web"])


def test_the_parsers_formats_are_inspects():
    """cli/_inspect.py repeats INSPECT_FORMATS (the parser does not import xensim.teach)."""
    from xensim import teach
    from xensim.cli import _inspect
    assert _inspect.INSPECT_FORMATS == teach.INSPECT_FORMATS


def test_cmd_inspect_errors():
    with pytest.raises(ConfigError, match="--domain: no domain 'db'; the domains are: web \\(dom1\\)"):
        cmd_inspect(_cli(["inspect", SMALL, "--domain", "db"]))
    with pytest.raises(ConfigError, match="--mfn: not a number"):
        cmd_inspect(_cli(["inspect", SMALL, "--mfn", "zz"]))
    with pytest.raises(ConfigError, match="--superpage: superpage 9 of web is not populated"):
        cmd_inspect(_cli(["inspect", SMALL, "--superpage", "web:9"]))
    with pytest.raises(ConfigError, match="--design"):
        cmd_inspect(_cli(["inspect", SMALL, "--mfn", "0", "--design", "xen-9"]))


def test_the_tours_sample_is_what_inspect_prints(small):
    tour = (Path(__file__).resolve().parents[2] / "docs" / "tour.md").read_text()
    blocks = [b.split("```", 1)[0] for b in tour.split("```\n")[1:]]
    sample = next(b for b in blocks if b.startswith("after 2 of 11 operations")).splitlines()
    cfg, mm = small
    got = text(inspect(cfg, mm, mfn="0x405", steps=2))
    assert sample[1:] == got[1:]
    assert sample[0] == got[0].replace(SMALL, "tests/data/trace-small.yaml")
