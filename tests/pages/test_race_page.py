"""The explore page (xensim/pages/_race.py): a replayed schedule's steps are the explorer's
trace, each cmpxchg with expected / found / new and won or lost, the violation where it
happened with what the auditor expected. The browser checks are in test_browser.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xensim.explore import load_scenario, parse_schedule, replay
from xensim.pages import race_html, record_race

ROOT = Path(__file__).resolve().parents[2]
MAP_MAP = str(ROOT / "scenarios" / "map-map.yaml")
#: the sketch's leak (scenarios/map-map.yaml): cpu1's cmpxchg 0 -> 1 wins while cpu0 holds
#: the 512 references it took; cpu0's loses, and it retries 1 -> 2 keeping them
LEAK = "0*1027,1*1029,0*4"


@pytest.fixture(scope="module")
def leak():
    sc = load_scenario(MAP_MAP)
    return sc, record_race(sc, parse_schedule(LEAK), "sketch")


def texts(run, ids):
    return [run.data["texts"][i] for i in ids]


def test_steps_are_the_explorers_trace(leak):
    sc, run = leak
    ex, v = replay(sc, parse_schedule(LEAK), "sketch")
    steps = run.data["steps"]
    assert len(steps) == len(ex.schedule) == 2060
    assert [s[0] for s in steps] == ex.schedule
    assert [t for s in steps for t in texts(run, s[1])] == ex.trace
    assert run.violation.message == v.message


def test_cmpxchg_expected_found_new(leak):
    """The sketch on map-map (the 2010 proposal's pseudocode, the leak of docs/designs/sketch.md):
    three cmpxchgs of superpage 0x0's count: cpu1 0 -> 1 won, cpu0 expected 0 found 1 lost,
    cpu0 1 -> 2 won."""
    _, run = leak
    cas = [(i, s[0], s[3]) for i, s in enumerate(run.data["steps"]) if s[3] is not None]
    assert [(c, x[:4]) for _, c, x in cas] == [(1, ["0", "0", "1", 1]), (0, ["0", "1", "1", 0]),
                                               (0, ["1", "1", "2", 1])]
    assert [i + 1 for i, _, _ in cas] == [2055, 2057, 2059]
    steps, keys = run.data["steps"], run.data["keys"]
    changes = {keys[k]["label"]: texts(run, [v])[0] for k, v in steps[2054][2]}
    assert changes == {"superpage mfn 0x0 count": "1"}


def test_violation_at_the_end_with_the_auditors_expectation(leak):
    _, run = leak
    v = run.data["violation"]
    assert v["step"] is None                          # after the schedule
    assert v["message"].startswith("after the schedule: 1024 audit difference(s): "
                                   "mfn 0x0 count_info.count: expected 2, actual 3")
    assert v["auditTotal"] == 1024
    assert v["audit"] == [["200 frames mfn 0x0..0xc7", "count_info.count", "2", "3"]]


def test_start_state(leak):
    """Before the first step: superpage a:0's 512 frames allocated, count 1, type none."""
    _, run = leak
    sp = run.data["spages"][0]
    assert sp["label"] == "a:0 (mfn 0x0)" and sp["base"] == 0
    assert set(texts(run, sp["ci"])) == {"allocated inuse count=1"}
    assert set(texts(run, sp["ti"])) == {"none/0"}


def test_no_violation_on_a_correct_design():
    sc = load_scenario(MAP_MAP)
    run = record_race(sc, parse_schedule(LEAK), "superpage-info")
    assert run.violation is None and run.data["violation"] is None
    assert "No violation in this schedule." in race_html(run)


def xensim(*args):
    return subprocess.run([sys.executable, "-m", "xensim", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_cli_explore_html(tmp_path):
    out = tmp_path / "race.html"
    p = xensim("explore", MAP_MAP, "--design", "sketch", "--quiet", "--html", str(out))
    assert p.returncode == 1
    assert f"wrote {out}: 2,060 steps, " in p.stdout
    text = out.read_text()
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert len(json.loads(m.group(1).replace("<\\/", "</"))["steps"]) == 2060


def test_cli_explore_replay_html(tmp_path):
    out = tmp_path / "race.html"
    p = xensim("explore", MAP_MAP, "--design", "superpage-info", "--replay", LEAK,
               "--html", str(out))
    assert p.returncode == 0 and "no violation" in p.stdout and out.exists()


def test_cli_explore_no_violation_no_page(tmp_path):
    out = tmp_path / "race.html"
    p = xensim("explore", MAP_MAP, "--design", "superpage-info", "--quiet", "--html", str(out))
    assert p.returncode == 0 and not out.exists()
    assert p.stderr == (f"xensim: explore: no violation, so no page written to {out} "
                        "(--replay SCHEDULE draws any schedule)\n")


def test_cli_explore_html_bad_path(tmp_path):
    p = xensim("explore", MAP_MAP, "--html", str(tmp_path / "nope" / "r.html"))
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == (f"xensim: error: --html: cannot write {tmp_path}/nope/r.html: the "
                        f"directory {tmp_path}/nope does not exist\n")
