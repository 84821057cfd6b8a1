"""--designs-at (xensim/pages/_designs.py): every design run to the operation of one step of
the trace page, the superpage that step touched: its words, its 512 frames' counts, the
metadata bytes, the atomic updates of that one operation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from xensim._errors import ConfigError
from xensim.designs import design_names
from xensim.pages import designs_at, record_trace, trace_html
from xensim.teach import load

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "default.yaml")


@pytest.fixture(scope="module")
def at4():
    cfg, mm = load(CONFIG)
    run = record_trace(cfg, mm, limit=8)
    run.designs = designs_at(cfg, mm, run, 4)
    return run


def test_remap_rw_to_ro_on_each_design(at4):
    """Step 4 of configs/default.yaml is operation 4, web's remap of superpage 32 (mfn 0x4200)
    from rw to ro: per-mapping takes and drops the 512 frames' references (get_pages_and_type
    then put_pages_and_type: 2 x 1,024 atomics, and the L2 table's get_page / put_page); a
    count (pageinfo-count, xen-4.1, sketch) moves by one cmpxchg each way; superpage-info's
    rw count 1 -> 0 drops the writable type references (its slow put), its ro count 0 -> 1 takes
    the general ones."""
    d = at4.designs
    assert d["step"] == 4 and d["op"] == 3 and d["superpage"] == 0x4200
    by = {x["name"]: x for x in d["designs"]}
    assert list(by) == list(design_names())
    assert {n: x["atomics"] for n, x in by.items()} == {
        "per-mapping": 2050, "pageinfo-count": 4, "superpage-info": 1540, "xen-4.1": 4,
        "sketch": 4, "none": 2560}
    assert by["per-mapping"]["paths"] == "slow_get +1, slow_put +1"
    assert by["xen-4.1"]["paths"] == "fast_get +1, fast_put +1"
    assert by["xen-4.1"]["words"] == [["word", "dynamic/1"]]
    assert by["superpage-info"]["words"] == [["ro count", "1"], ["rw count", "0"]]
    assert by["per-mapping"]["words"] == [] and by["none"]["words"] == []
    for x in d["designs"]:
        assert len(x["ci"]) == len(x["ti"]) == 512 and x["result"] == "ok"
        assert x["ciText"] == "512 x 2"
    assert by["per-mapping"]["tiText"] == "512 x 1" and by["superpage-info"]["tiText"] == "512 x 0"


def test_metadata_bytes(at4):
    """8 B per 4 KiB frame (pageinfo-count: 4,096 B per 2 MiB) against 8 B per 2 MiB (xen-4.1,
    sketch; superpage-info's two words 16 B), on the teaching machine's 3 GiB."""
    by = {x["name"]: x for x in at4.designs["designs"]}
    assert by["pageinfo-count"]["bytes"] == "6.00 MiB"
    assert by["xen-4.1"]["bytes"] == "12.00 KiB" and by["superpage-info"]["bytes"] == "24.00 KiB"
    assert by["per-mapping"]["bytes"] == by["none"]["bytes"] == "0 B"


def test_section_in_the_page(at4):
    text = trace_html(at4)
    assert '<section id="designs">' in text
    assert len(re.findall(r'<div class="design" data-design=', text)) == len(design_names())
    assert "<h2>The designs side by side after step 4</h2>" in text


def test_step_past_the_end():
    cfg, mm = load(CONFIG)
    run = record_trace(cfg, mm, limit=3)
    with pytest.raises(ConfigError, match=r"--designs-at: step 9 is past the page's last step \(3\)"):
        designs_at(cfg, mm, run, 9)


def test_cli(tmp_path):
    out = tmp_path / "d.html"
    p = subprocess.run([sys.executable, "-m", "xensim", "trace", CONFIG, "--limit", "5",
                        "--designs-at", "4", "--html", str(out)], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    assert '<section id="designs">' in out.read_text()
