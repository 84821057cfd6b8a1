"""Ctrl-C (SIGINT) and SIGTERM on the long commands: `xensim run`, `xensim fuzz`,
`xensim explore`, `xensim sweep`; Ctrl-C while the command line loads its modules.

Each test starts a real ``python -m xensim`` process with its stderr on a pseudo
terminal, waits until the progress bar is drawn (the bar shows only after ~2 s of
work, so the command is surely in its main loop, whatever the machine's load),
sends SIGINT (or SIGTERM) and checks: exit status 130 (143), one line on stderr (after the bar's
line is cleared), no traceback, the partial summary on stdout (fuzz, explore), and
``--out`` files complete (the old ones untouched) or absent, no temporary left.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo terminal")


def _interrupt(argv: list[str], tmp_path: Path, ready: bytes,
               sig: int = signal.SIGINT) -> tuple[int, str, str]:
    """Run ``xensim ARGV``; send ``sig`` once ``ready`` shows on its stderr. -> (rc, stdout, stderr
    with the progress bar's redraws removed: the lines as a terminal would show them)."""
    master, slave = os.openpty()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    out_path = tmp_path / "stdout.txt"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xensim", *argv], cwd=tmp_path, stdout=out, stderr=slave,
            stdin=subprocess.DEVNULL, env=env,
            # a test runner started in the background may ignore SIGINT: the child must not
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(slave)
    raw = b""
    try:
        deadline = time.monotonic() + 300
        while ready not in raw:
            assert proc.poll() is None, f"ended before it was interrupted: {raw!r}"
            assert time.monotonic() < deadline, f"no progress in 300 s: {raw!r}"
            if select.select([master], [], [], 1.0)[0]:
                raw += os.read(master, 65536)
        proc.send_signal(sig)
        rc = proc.wait(timeout=300)
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:                       # EIO: the other end is closed
                break
            if not chunk:
                break
            raw += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = raw.decode()
    shown = [line.split("\r")[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return rc, out_path.read_text(), "\n".join(line for line in shown if line) + "\n"


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


@pytest.mark.parametrize("steps, ready, completed, sig, status", [
    (400_000, b" ops ", "none", signal.SIGINT, 130),     # in the first design's run
    (20_000, b"sketch [", "xen-4.1", signal.SIGINT, 130),  # the bar moved on to the second
    (400_000, b" ops ", "none", signal.SIGTERM, 143),    # SIGTERM: as Ctrl-C, exit 143
])
def test_ctrl_c_on_run_names_the_designs_completed_and_writes_nothing(tmp_path, steps, ready,
                                                                        completed, sig, status):
    cfg = tmp_path / "long.yaml"
    cfg.write_text(f"workload: {{kind: random, steps: {steps}}}\n"
                   "domains: [{name: a, memory: 32MiB}]\n"
                   "compare: [xen-4.1, sketch, per-mapping]\n")
    out = tmp_path / "out"
    out.mkdir()
    old = {"config.yaml": "old config\n", "results.json": "{\"old\": true}\n",
           "results.csv": "old,csv\n"}
    for name, text in old.items():
        (out / name).write_text(text)
    rc, stdout, err = _interrupt(["run", str(cfg), "--out", str(out)], tmp_path, ready, sig)
    _no_traceback(err)
    assert rc == status
    assert re.fullmatch(rf"xensim: interrupted after [\d,]+ operations \(designs completed: "
                        rf"{completed}; nothing written\)\n", err), err
    assert int(err.split()[3].replace(",", "")) > 0
    assert stdout == ""
    # --out: the old files whole, nothing new, no temporary file left behind
    assert sorted(p.name for p in out.iterdir()) == sorted(old)
    assert {p.name: p.read_text() for p in out.iterdir()} == old


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_on_fuzz_prints_the_partial_summary(tmp_path, sig, status):
    rc, stdout, err = _interrupt(["fuzz", "--calls", "1000000", "--episode", "500",
                                  "--out", "repro.yaml"], tmp_path, b" calls ", sig)
    _no_traceback(err)
    assert rc == status
    m = re.fullmatch(r"xensim: interrupted after ([\d,]+) calls\n", err)
    assert m, err
    calls = m.group(1)
    assert int(calls.replace(",", "")) > 0
    assert re.search(rf"^calls made: {calls} in \d+ episode\(s\), .* calls/s\), interrupted: "
                     r"a partial summary$", stdout, re.M), stdout
    assert "violations: 0 (0 expected)" in stdout
    assert "no violation: nothing written to repro.yaml" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdout.txt"]


def test_ctrl_c_on_fuzz_on_two_workers_prints_the_merged_summary(tmp_path):
    """The workers ignore SIGINT; the command stops them and prints the episodes merged."""
    rc, stdout, err = _interrupt(["fuzz", "--calls", "1000000", "--episode", "100",
                                  "--workers", "2", "--out", "repro.yaml"], tmp_path, b" calls ")
    _no_traceback(err)
    assert rc == 130
    m = re.fullmatch(r"xensim: interrupted after ([\d,]+) calls\n", err)
    assert m, err
    calls = m.group(1)                 # the episodes merged: 0 if the first was not back
    assert re.search(rf"^calls made: {calls} in \d+ episode\(s\), .* calls/s\), on local, 2 "
                     r"worker processes, interrupted: a partial summary$", stdout, re.M), stdout
    assert "violations: 0 (0 expected)" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdout.txt"]


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_on_explore_prints_the_schedules_finished(tmp_path, sig, status):
    rc, stdout, err = _interrupt(["explore", str(REPO / "scenarios" / "three-cpus.yaml"),
                                  "--design", "xen-4.1", "--scheduler", "random",
                                  "--max-schedules", "1000000"], tmp_path, b" schedules ", sig)
    _no_traceback(err)
    assert rc == status
    m = re.fullmatch(r"xensim: interrupted after ([\d,]+) schedules\n", err)
    assert m, err
    lines = stdout.splitlines()
    assert lines[0].startswith("scenario three-cpus ")
    assert lines[1].startswith(f"schedules explored: {m.group(1)}, steps: ")
    by = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    assert lines[1].endswith(f", search interrupted ({by}): the schedules finished so far")
    assert int(m.group(1).replace(",", "")) > 0
    assert lines[2] == "violations: 0"


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_on_sweep_keeps_the_points_done(tmp_path, sig, status):
    """Two worker processes: the caller terminates them; the points done stay complete,
    results.csv is not written, and running the sweep again resumes. (Points of 4,000
    iterations: with 400, an idle machine finished all 12 before the first redraw of the
    progress bar was read, and the test had nothing to interrupt.)"""
    (tmp_path / "sweep.yaml").write_text(
        "base:\n  workload: {kind: churn, superpages: 1, iterations: 4000}\n"
        "  domains: [{name: g, memory: 4MiB}]\n  compare: [per-mapping, sketch, xen-4.1]\n"
        "grid:\n  seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n")
    rc, stdout, err = _interrupt(["sweep", "sweep.yaml", "--out", "o", "--workers", "2"],
                                 tmp_path, b" points ", sig)
    _no_traceback(err)
    assert rc == status
    m = re.fullmatch(r"xensim: interrupted after (\d+) of 12 points \(kept in o/points; run "
                     r"the sweep again to resume\)\n", err)
    assert m, err
    done = int(m.group(1))
    assert 1 <= done < 12
    complete = sorted(p.parent.name for p in (tmp_path / "o" / "points").glob("*/results.json"))
    assert len(complete) == done
    assert f"  12 points: {done} ran, 0 already complete, {12 - done} not run" in stdout
    assert not (tmp_path / "o" / "results.csv").exists()
    assert not list((tmp_path / "o").rglob(".*.tmp"))


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_modules_load_is_one_line(tmp_path, sig, status):
    """Ctrl-C (or SIGTERM) while ``python -m xensim`` imports its modules (numpy and the
    rest: the first fraction of a second): one line, 130 (143), no traceback. The signal
    is sent when the process has begun loading numpy (its shared libraries in its maps)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.Popen([sys.executable, "-m", "xensim", "presets"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while "_multiarray_umath" not in maps.read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out, err) == (status, b"", b"xensim: interrupted\n")


@pytest.mark.parametrize("argv, cli", [
    (["python3", "-m", "xensim", "run"], True),
    (["python3", "-X", "importtime", "-mxensim"], True),
    (["python3", "venv/bin/xensim", "fuzz"], True),
    (["python3", "-m", "pytest", "tests"], False),
    (["python3", "-c", "import xensim"], False),
    (["python3", "examples/a_frame_life.py"], False),
    (["python3"], False),
])
def test_the_import_time_handlers_only_for_the_command_line(argv, cli):
    from xensim._entry import is_command_line
    assert is_command_line(argv) is cli


def test_the_bar_shows_minimisation_and_ctrl_c_keeps_the_finding(tmp_path):
    """Faithful mode finds Xen's bug in its first episode and minimises it: the bar says
    so; a Ctrl-C then prints the summary with the reproducer as found (not minimised),
    written whole."""
    rc, stdout, err = _interrupt(["fuzz", "--faithful", "--calls", "300", "--episode", "300",
                                  "--no-grants", "--out", "repro.yaml"], tmp_path,
                                 b"fuzz, minimising violation 1 (")
    _no_traceback(err)
    assert rc == 130
    assert re.fullmatch(r"xensim: interrupted after [\d,]+ calls\n", err), err
    assert re.search(r"^  1\. audit in mmu_update \(referenced by\), 1x: (\d+) calls -> "
                     r"repro-1\.yaml$", stdout, re.M), stdout
    text = (tmp_path / "repro-1.yaml").read_text()
    assert text.startswith("# xensim fuzz: reproducer (not minimised) (")
    import yaml
    assert yaml.safe_load(text)["workload"]["kind"] == "script"
