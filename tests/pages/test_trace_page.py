"""The trace page (xensim/pages): its steps are the text trace's hypercalls, decoded by the
same decoders; cut, filtered and interrupted pages say so; the CLI checks its output path
first. The browser checks are in test_browser.py."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xensim.mem import decode_count_info, decode_type_info
from xensim._errors import ConfigError
from xensim.pages import STEP_FIELDS, record_trace, trace_html
from xensim.teach import load, trace

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "default.yaml")
F = {k: i for i, k in enumerate(STEP_FIELDS)}
LIMIT = 40


@pytest.fixture(scope="module")
def loaded():
    return load(CONFIG)


@pytest.fixture(scope="module")
def run(loaded):
    return record_trace(*loaded, limit=LIMIT)


def page_data(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def text_trace_ops(loaded, limit: int) -> list[list[str]]:
    """The text trace at level frame, as each operation's lines (without its op line)."""
    res = trace(*loaded, None, "frame", False, limit)
    ops: list[list[str]] = []
    for ln in res.lines:
        if ln.kind == "op":
            ops.append([])
        else:
            ops[-1].append("  " * ln.depth + ln.text)
    return ops


def test_steps_are_the_text_traces_lines(run, loaded):
    """Every step's lines, in order, are its operation's lines in `xensim trace --level frame`."""
    rec = run.recorder
    ops = text_trace_ops(loaded, LIMIT)
    assert len(ops) == LIMIT == rec.ops
    got: list[list[str]] = [[] for _ in ops]
    for st in rec.steps:
        got[st[F["o"]]] += [rec.lines[i] for i in st[F["L"]]]
    assert got == ops
    assert rec.calls == sum(1 for st in rec.steps if st[F["c"]] is not None)


def test_first_step_frames_decoded(run):
    """configs/default.yaml's first operation on per-mapping (Xen 2008, get_page_and_type on
    all 512 frames): web maps superpage 32 rw: mfn 0x4200..0x43ff count_info 1 -> 2, type_info
    none/0 -> writable/1 validated; the L2 table mfn 0x9d back where it was; L2[0x10] written."""
    rec = run.recorder
    st = rec.steps[0]
    assert st[F["h"]] == "mmu_update dom1: L2[0x10] of mfn 0x9d := mfn 0x4200 PSE|D|A|U|RW|P"
    assert st[F["r"]] == "-> 0" and st[F["c"]] == 0
    runs = {r[0]: r for r in st[F["F"]]}
    big = runs[0x4200]
    assert big[1] == 512
    ci = [dict(zip(rec.data()["ciFields"], rec.ci[i][1])) for i in big[2:4]]
    ti = [dict(zip(rec.data()["tiFields"], rec.ti[i][1])) for i in big[4:6]]
    assert (ci[0]["count"], ci[1]["count"]) == (1, 2)
    assert ci[1]["state"] == decode_count_info(int(rec.ci[big[3]][0], 16))["state"] == "inuse"
    assert (ti[0]["type"], ti[0]["count"], ti[1]["type"], ti[1]["count"]) == ("none", 0, "writable", 1)
    assert ti[1]["validated"] == "yes" and decode_type_info(int(rec.ti[big[5]][0], 16))["validated"]
    table = runs[0x9d]
    assert table[1] == 1 and table[2] == table[3]           # get_page then put_page
    assert st[F["P"]] == [[0x9d, 0x10, "0", "mfn 0x4200 PSE|D|A|U|RW|P"]]
    assert st[F["g"]] & rec.data()["slow"]


def test_flags(run):
    rec, d = run.recorder, run.recorder.data()
    assert any(st[F["g"]] & d["type"] for st in rec.steps)
    for st in rec.steps:
        if st[F["c"]] is not None and st[F["c"]] < 0:
            assert st[F["g"]] & d["refused"]


def test_page_self_contained(run):
    text = trace_html(run)
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<script src" not in text and "<link" not in text
    d = page_data(text)
    assert len(d["steps"]) == run.steps == LIMIT
    assert d["designs"] is None


def test_cut_at_max_steps_says_how_to_narrow(loaded):
    run = record_trace(*loaded, limit=LIMIT, max_steps=5)
    assert run.steps == 5 and run.recorder.cut == "steps" and run.recorder.ops == 5
    text = trace_html(run)
    assert "Cut: a page holds 5 steps at most" in text
    assert "--limit N" in text and "--frame MFN" in text and "--superpage MFN" in text


def test_full_at_the_last_step_is_not_cut(loaded):
    run = record_trace(*loaded, limit=5, max_steps=5)
    assert run.steps == 5 and run.recorder.cut is None
    assert "Cut:" not in trace_html(run)


def test_cut_at_max_bytes(loaded):
    run = record_trace(*loaded, limit=LIMIT, max_bytes=20_000)
    assert run.recorder.cut == "bytes" and 0 < run.steps < LIMIT
    assert "Cut: a page holds about 19.53 KiB of steps at most" in trace_html(run)


def test_frame_and_superpage_filters(loaded, run):
    one = record_trace(*loaded, limit=LIMIT, frame=0x4200)
    assert 0 < one.steps < run.steps
    for st in one.recorder.steps:
        assert any(r[0] <= 0x4200 < r[0] + r[1] for r in st[F["F"]]) or \
            any(s[0] == 0x4200 for s in st[F["S"]])
    sp = record_trace(*loaded, limit=LIMIT, superpage=0x4321)
    assert sp.recorder.superpage == 0x4200
    assert sp.steps >= one.steps
    assert "Only the steps that touch superpage mfn 0x4200..0x43ff" in trace_html(sp)


def test_superpage_filter_by_domain_and_index(loaded):
    """--superpage DOMAIN:INDEX: the superpage the set-up populated at the domain's GPFN
    INDEX * 512 (resolved once the run is set up), the same steps as its MFN; an index the
    domain has not populated: one line naming the option."""
    by_name = record_trace(*loaded, limit=LIMIT, superpage="web:32")
    by_mfn = record_trace(*loaded, limit=LIMIT, superpage=0x4200)
    assert by_name.recorder.superpage == 0x4200
    assert by_name.recorder.steps == by_mfn.recorder.steps
    with pytest.raises(ConfigError, match="--superpage: superpage 9999 of web is not populated"):
        record_trace(*loaded, limit=LIMIT, superpage="web:9999")


def test_interrupted_keeps_the_steps(loaded, monkeypatch):
    from xensim.pages import StepRecorder
    real = StepRecorder.call

    def call(self, *a):
        real(self, *a)
        if len(self.steps) == 7:
            raise KeyboardInterrupt
    monkeypatch.setattr(StepRecorder, "call", call)
    run = record_trace(*loaded, limit=LIMIT)
    assert run.interrupted and run.steps == 7
    assert "Interrupted: the run was stopped (Ctrl-C) after operation 7" in trace_html(run)


def xensim(*args, **kw):
    return subprocess.run([sys.executable, "-m", "xensim", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, **kw)


def test_cli_trace_html(tmp_path):
    out = tmp_path / "t.html"
    p = xensim("trace", CONFIG, "--limit", "12", "--html", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"wrote {out}: 12 steps (12 hypercalls of 12 operations), ")
    assert len(page_data(out.read_text())["steps"]) == 12


@pytest.mark.parametrize("args, message", [
    (["--html", "{tmp}/no/such/dir/t.html"], "--html: cannot write {tmp}/no/such/dir/t.html: "
                                             "the directory {tmp}/no/such/dir does not exist"),
    (["--html", "{tmp}"], "--html: {tmp} is a directory, not a file"),
    (["--frame", "0x200"], "--frame: needs --html FILE"),
    (["--designs-at", "3"], "--designs-at: needs --html FILE"),
    (["--html", "{tmp}/t.html", "--superpage", "mail:0"],
     "--superpage: no domain named 'mail'; the domains are: web, db"),
    (["--html", "{tmp}/t.html", "--superpage", "web:x"], "--superpage: not a superpage index: 'x'"),
    (["--html", "{tmp}/t.html", "--superpage", "0x12g"], "--superpage: not a number: '0x12g'"),
    (["--html", "{tmp}/t.html", "--level", "frame"],
     "--level: is for the printed trace; the --html page holds every level"),
    (["--html", "{tmp}/t.html", "--format", "md"],
     "--format: is for the printed trace; the --html page holds every level"),
    (["--html", "{tmp}/t.html", "--all-frames"],
     "--all-frames: is for the printed trace; the --html page holds every level"),
])
def test_cli_bad_output_one_line_exit_2(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    p = xensim("trace", CONFIG, "--limit", "3", *args)
    assert p.returncode == 2
    assert p.stderr == f"xensim: error: {message.format(tmp=tmp_path)}\n"
    assert p.stdout == ""


def test_cli_sigint_writes_the_partial_page(tmp_path):
    """Ctrl-C (here SIGINT to the process) during a long run: the page of the steps so far
    is written, one line says so, exit 130."""
    out = tmp_path / "t.html"
    cfg = tmp_path / "long.yaml"
    cfg.write_text(Path(CONFIG).read_text().replace("steps: 300", "steps: 20000"))
    proc = subprocess.Popen([sys.executable, "-m", "xensim", "trace", str(cfg), "--html", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(10)                             # booted, some operations traced (not 10,000)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert re.fullmatch(r"xensim: interrupted after [\d,]+ operations \(the page has the steps "
                        r"until then\)\n", stderr), stderr
    d = page_data(out.read_text())
    assert 0 < len(d["steps"]) < 10_000
    assert "Interrupted: the run was stopped" in out.read_text()
