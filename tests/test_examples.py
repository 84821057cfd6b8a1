"""The tutorials in examples/: each runs on its own (a subprocess, as a learner runs it),
in a few seconds, and prints the lines it is there to show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

#: per script, lines its output must contain (whole lines, leading spaces stripped)
EXPECTED = {
    "a_frame_life.py": [
        "the frame we follow: gpfn 5 = mfn 0x5",
        "after populate_physmap:",
        "count_info: allocated, state inuse, count 1",
        "alloc_domheap_pages(order 9): 512 frames mfn 0x0..0x1ff count_info free count=0 "
        "-> allocated inuse count=1, owner none -> dom1",
        "after the writable mapping:",
        "get_page_type(writable): mfn 0x5 type_info none/0 -> writable/1 validated",
        "count_info: allocated, state inuse, count 2",
        "type_info: type writable, validated, count 1",
        "after the read-only mapping:",
        "count_info: allocated, state inuse, count 3",
        "after unmapping:",
        "type_info: type writable, validated, count 0",
        "clear PGC_allocated: mfn 0x5 count_info allocated inuse count=2 -> inuse count=2",
        "put_page: mfn 0x5 count_info -1 (inuse count=1 -> 0)",
        "freed: mfn 0x5 back to the heap (state free, owner dom1 -> none)",
        "after decrease_reservation:",
        "count_info: state free, count 0",
        "owner: none",
        "the heap has 1 more free frame: mfn 0x5 is free (is_free: True)",
    ],
    "b_superpage_designs.py": [
        "refcount operations per mapping (get_page_type per PSE entry, 512 entries): "
        "per-mapping 512, xen-4.1 1",
        "512 mappings: per-mapping 262,144 get_page_type, xen-4.1 512 and 512 count updates",
    ],
    "c_memory_cost.py": [
        "teaching: 3.00 GiB of RAM over 5.00 GiB of addresses, 2 holes",
        "pageinfo-count     6.00 MiB     0.195% of RAM",
        "xen-4.1           12.00 KiB   0.00038% of RAM",
        "superpage-info    24.00 KiB   0.00076% of RAM",
        "per-mapping             0 B         0% of RAM",
        "intel-gnr-4s: 2.00 TiB of RAM over 19.24 TiB of addresses, 4 holes",
        "pageinfo-count     4.00 GiB     0.195% of RAM",
        "xen-4.1            8.00 MiB   0.00038% of RAM",
        "pageinfo-count / xen-4.1 = 512x",
    ],
    "d_sketch_race.py": [
        "sketch, preemption bound 0: 1 schedule explored, 0 violations",
        "sketch, preemption bound 1: 2 schedules explored, 1 violation",
        "its schedule (2060 steps, the CPU that took each step): 0*1027,1*1029,0*4",
        "cpu0: 1024 frame steps (get_page, get_page_type) on pages 0x0 .. 0x1ff",
        "cpu1 cmpxchg superpage 0x0 word 0: expected 0x0 found 0x0 -> 0x1 won",
        "cpu0 cmpxchg superpage 0x0 word 0: expected 0x0 found 0x1 -> lost",
        "superpage mfn 0x0: count 2; the sketch's own tally of sets of 512 references kept "
        "by a loser: 1",
        "mfn 0x0 count_info: allocated, state inuse, count 3 (expected 2: PGC_allocated + "
        "the count's one set of references)",
        "destroy the guest: dom1 is a zombie holding 512 frames; mfn 0x0 count_info: "
        "state inuse, count 1",
        "512 frames never return to the heap",
        "superpage-info (the proposal with the give-back), preemption bound 1: 4 schedules, "
        "0 violations (search complete)",
    ],
    "e_mark_super_churn.py": [
        "superpage mfn 0x0 word: none/0 -> dynamic/1",
        "slow path: 0 -> 1, took the 512 frames' references",
        "superpage mfn 0x0 word: mark/1 -> mark/2",
        "fast path: count + 1, no frame reference taken",
        "without MARK_SUPER: 1.00 slow-path transitions per operation (every map 0 -> 1, "
        "every unmap 1 -> 0: 1,024 frame atomics each)",
        "with MARK_SUPER: 0.00 slow-path transitions per operation (400 fast count updates; "
        "the mark's own 512-frame take is the 512 get_page_type)",
    ],
    "f_your_own_design.py": [
        "loaded lock_bit.py: designs lock-bit; every design now: per-mapping, pageinfo-count, "
        "superpage-info, xen-4.1, sketch, none, lock-bit",
        "per-mapping        320   320        163,840   clean",
        "xen-4.1             40    40         20,480   clean",
        "lock-bit            40    40         20,480   clean",
        "lock-bit and xen-4.1 take the same references one CPU at a time: True",
        "scenario two-cpus-map-unmap: two CPUs map and unmap the same superpage "
        "(design_files: lock_bit.py)",
        "lock-bit, preemption bound 0: 1 schedule (4,120 atomic steps), 0 violations "
        "(search complete)",
        "lock-bit, preemption bound 1: 7 schedules (24,744 atomic steps), 0 violations "
        "(search complete)",
        "teaching: pageinfo-count 6.00 MiB (0.19534%), xen-4.1 12.00 KiB (0.00038%), "
        "lock-bit 12.00 KiB (0.00038%)",
        "intel-gnr-4s: pageinfo-count 4.00 GiB (0.19531%), xen-4.1 8.00 MiB (0.00038%), "
        "lock-bit 8.00 MiB (0.00038%)",
    ],
}


def test_every_example_is_checked():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_and_shows_its_point(script):
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = [ln.strip() for ln in proc.stdout.splitlines()]
    missing = [want for want in EXPECTED[script] if want not in out]
    assert not missing, f"{script} did not print:\n" + "\n".join(missing)
    # the tutorial explains itself: its docstring's first line is printed first
    first = (EXAMPLES / script).read_text().split('"""')[1].splitlines()[0]
    assert out[0] == first


def test_b_superpage_designs_table():
    out = subprocess.run([sys.executable, str(EXAMPLES / "b_superpage_designs.py")], cwd=REPO,
                         capture_output=True, text=True, timeout=60).stdout.splitlines()
    rows: dict[str, list[str]] = {}
    for ln in out:                                  # the table's rows (the first line of each)
        if ln.split() and ln.split()[0] in ("per-mapping", "pageinfo-count", "superpage-info",
                                            "xen-4.1", "sketch"):
            rows.setdefault(ln.split()[0], ln.split())
    # first map, its count, second map, its count, 512 maps: frame refs, counts, 512 unmaps
    assert rows["per-mapping"][1:8] == ["512", "0", "512", "0", "262,144", "0", "262,144"]
    for design in ("pageinfo-count", "superpage-info", "xen-4.1", "sketch"):
        assert rows[design][1:8] == ["512", "1", "0", "1", "512", "512", "512"], design


def test_e_churn_table():
    out = subprocess.run([sys.executable, str(EXAMPLES / "e_mark_super_churn.py")], cwd=REPO,
                         capture_output=True, text=True, timeout=60).stdout.splitlines()
    rows = {ln[:34].strip(): ln[34:].split() for ln in out if ln.startswith(("xen-4.1,", "sketch,"))}
    assert rows["xen-4.1, mark: false"][:5] == ["400", "400", "0", "1.000", "102,400"]
    assert rows["xen-4.1, mark: true"][:5] == ["402", "0", "400", "0.000", "512"]
    assert rows["sketch, mark: true"][:7] == ["402", "400", "0", "0.995", "102,400",
                                              "EOPNOTSUPP", "2"]
