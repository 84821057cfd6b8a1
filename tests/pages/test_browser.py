"""The pages in a real browser: headless Chromium loads them from file://, steps forward and
back (the URL fragment's #step=N&keys=..., the pages' own key handling), and what it shows at
a step is the text trace's (the explorer's) at that step; at 1280 px nothing is wider than
the window. Skipped, saying why, without Chromium (CI installs Debian's, .ci/run)."""

from __future__ import annotations

import html
import re
import struct
from pathlib import Path

import pytest

from conftest import run_chromium
from xensim.explore import load_scenario, parse_schedule
from xensim.pages import (STEP_FIELDS, designs_at, record_race, record_trace, write_race_page,
                          write_trace_page)
from xensim.teach import load

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "default.yaml")
F = {k: i for i, k in enumerate(STEP_FIELDS)}
LIMIT = 60


@pytest.fixture(scope="module")
def tracepage(tmp_path_factory):
    cfg, mm = load(CONFIG)
    run = record_trace(cfg, mm, limit=LIMIT)
    run.designs = designs_at(cfg, mm, run, 4)
    path = tmp_path_factory.mktemp("pages") / "trace.html"
    write_trace_page(path, run)
    return path, run


@pytest.fixture(scope="module")
def racepage(tmp_path_factory):
    sc = load_scenario(str(ROOT / "scenarios" / "map-map.yaml"))
    run = record_race(sc, parse_schedule("0*1027,1*1029,0*4"), "sketch")
    path = tmp_path_factory.mktemp("pages") / "race.html"
    write_race_page(path, run)
    return path, run


def dom(tmp_path, path: Path, fragment: str = "", width: int = 1280) -> str:
    p = run_chromium(tmp_path, f"--window-size={width},1000", "--dump-dom",
                     path.as_uri() + (f"#{fragment}" if fragment else ""))
    text = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0 and "</html>" in text, p.stderr.decode(errors="replace")[-2000:]
    return text


def body(text: str) -> dict[str, str]:
    tag = re.search(r"<body([^>]*)>", text).group(1)
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', tag))


def element(text: str, id: str) -> str:
    """The inner HTML of the element with this id (its own tag nested inside counted)."""
    m = re.search(rf'<(\w+)[^>]* id="{id}"[^>]*>', text)
    tag, depth, pos = m.group(1), 1, m.end()
    for t in re.finditer(rf"<(/?){tag}\b[^>]*>", text[pos:]):
        depth += -1 if t.group(1) else 1
        if depth == 0:
            return text[pos:pos + t.start()]
    raise AssertionError(f"no end of #{id}")


def test_trace_page_loads_at_step_1(tracepage, tmp_path):
    path, run = tracepage
    d = dom(tmp_path, path)
    b = body(d)
    assert b["ready"] == "1" and b["step"] == "1" and b["steps"] == str(run.steps)


@pytest.mark.parametrize("fragment, step", [("step=3&keys=nn", 5), ("step=3&keys=nnp", 4),
                                            ("step=10&keys=pppp", 6), ("keys=p", 1)])
def test_trace_page_steps_forward_and_back(tracepage, tmp_path, fragment, step):
    path, _ = tracepage
    assert body(dom(tmp_path, path, fragment))["step"] == str(step)


@pytest.mark.parametrize("step", [1, 4, 17, 45])
def test_trace_page_shows_the_text_trace_at_a_step(tracepage, tmp_path, step):
    """What the browser shows at step N: its lines are the text trace's, and the count
    fields of its frames old -> new are the ones those lines give."""
    path, run = tracepage
    rec = run.recorder
    st = rec.steps[step - 1]
    d = dom(tmp_path, path, f"step={step}")
    assert body(d)["step"] == str(step)
    shown = html.unescape(element(d, "text"))
    assert shown == "\n".join(rec.lines[i] for i in st[F["L"]])
    assert html.unescape(element(d, "head")) == st[F["h"]]
    frames = html.unescape(element(d, "frames"))
    for run_ in st[F["F"]][:40]:
        c0, c1 = (rec.ci[i][1][-1] for i in run_[2:4])
        if c0 != c1:
            assert f"<s>{c0}</s> → <b>{c1}</b>" in frames
            line = next(ln for ln in shown.splitlines() if f"count={c0} -> {c1}" in ln)
            assert f"{run_[0]:#x}" in line


@pytest.mark.parametrize("key, flag", [("s", "slow"), ("r", "refused"), ("t", "type")])
def test_trace_page_jumps(tracepage, tmp_path, key, flag):
    path, run = tracepage
    rec = run.recorder
    bit = rec.data()[flag]
    want = next(i for i, st in enumerate(rec.steps) if i > 4 and st[F["g"]] & bit)
    assert body(dom(tmp_path, path, f"step=5&keys={key}"))["step"] == str(want + 1)


def test_trace_page_follows_a_frame(tracepage, tmp_path):
    path, run = tracepage
    hits = sum(1 for st in run.recorder.steps
               if any(r[0] <= 0x4200 < r[0] + r[1] for r in st[F["F"]]))
    d = dom(tmp_path, path, "step=4&follow=0x4200")
    assert f'id="followout" data-hits="{hits}"' in d and hits > 1
    assert "frame mfn 0x4200</b>: touched by" in d


@pytest.mark.parametrize("fragment", ["", "step=4", "step=45"])
def test_trace_page_fits_1280(tracepage, tmp_path, fragment):
    path, _ = tracepage
    assert int(body(dom(tmp_path, path, fragment))["scroll-width"]) <= 1280


def test_trace_page_screenshot_1280(tracepage, tmp_path):
    path, _ = tracepage
    shot = tmp_path / "shot.png"
    p = run_chromium(tmp_path, "--hide-scrollbars", "--window-size=1280,1400",
                     f"--screenshot={shot}", path.as_uri() + "#step=4")
    assert p.returncode == 0 and shot.exists(), p.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 1400)
    assert len(data) > 20_000                    # not a blank page


def test_race_page_cmpxchg_and_back(racepage, tmp_path):
    path, _ = racepage
    b = body(dom(tmp_path, path, "keys=cc"))
    assert (b["step"], b["cas"], b["cpu"]) == ("2057", "lost", "0")
    b = body(dom(tmp_path, path, "step=2057&keys=pp"))
    assert (b["step"], b["cas"], b["cpu"]) == ("2055", "won", "1")


def test_race_page_violation(racepage, tmp_path):
    path, run = racepage
    d = dom(tmp_path, path, "keys=v")
    b = body(d)
    assert b["step"] == b["violation-step"] == "2060"
    viol = html.unescape(element(d, "viol"))
    assert "the auditor expected" in viol and "200 frames mfn 0x0..0xc7" in viol
    assert "found 1024 differences, the first 200 of them" in viol
    words = html.unescape(element(d, "words"))
    assert "<td>superpage mfn 0x0 count</td><td>2</td>" in words
    assert "512 x allocated inuse count=3" in words


@pytest.mark.parametrize("fragment", ["", "keys=cc", "keys=v"])
def test_race_page_fits_1280(racepage, tmp_path, fragment):
    path, _ = racepage
    assert int(body(dom(tmp_path, path, fragment))["scroll-width"]) <= 1280


def test_trace_page_jumps_to_preempted_steps(tmp_path):
    """configs/preempt-pin.yaml: its four hypercalls are each a preempted call or its
    continuation; ``e`` jumps to the next one, ``E`` back; the step shows the badge."""
    cfg, mm = load(str(ROOT / "configs" / "preempt-pin.yaml"))
    run = record_trace(cfg, mm)
    path = tmp_path / "preempt.html"
    write_trace_page(path, run)
    d = dom(tmp_path, path, "keys=ee")
    assert body(d)["step"] == "3"
    assert "b-preempted" in element(d, "step")
    assert body(dom(tmp_path, path, "step=4&keys=E"))["step"] == "3"
