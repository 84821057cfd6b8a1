"""What the commands refuse or lower before any work starts, in real ``python -m
xensim`` processes: ``--workers`` (sweep, fuzz: refused above MAX_WORKERS; lowered to
the cores and the points or episodes to run, with a one-line note; the pool started is
that size), ``--episode`` (refused above a run's workload limit), output paths (fuzz
``--out FILE``, plot ``--out`` / ``--html``: checked first, nothing written), a fuzz
campaign whose reproducer cannot be written at the end (the summary and the
reproducers on stdout first, then one line), and ``--scheduler tcp://...`` (a refused
connection at once, a silent host after the stated timeout)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xensim import ConfigError
from xensim.engines import (CONNECT_TIMEOUT, MAX_WORKERS, DaskEngine, check_workers,
                            dask_available, default_workers, pool_size)

REPO = Path(__file__).resolve().parents[2]
CORES = default_workers()
ONE_POINT = ("base:\n  workload: {kind: churn, superpages: 1, iterations: 5}\n"
             "  domains: [{name: g, memory: 4MiB}]\n  compare: [xen-4.1]\n"
             "grid:\n  seed: [0]\n")


def xensim(cwd: Path, *argv: str, timeout: float = 300) -> tuple[int, str, str, float]:
    """Run ``python -m xensim ARGV`` in ``cwd`` -> (rc, stdout, stderr, seconds)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "xensim", *argv], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t


def test_pool_size_is_at_most_the_cores_and_the_tasks(monkeypatch):
    import xensim.engines._make as make
    monkeypatch.setattr(make, "default_workers", lambda: 2)
    assert pool_size(None, 12) == (2, None)                  # the default: no note
    assert pool_size(None, 1) == (1, None)
    assert pool_size(2, 12) == (2, None)
    assert pool_size(10, 12, "points") == (
        2, "--workers 10: 2 worker processes (the cores: 2; the points to run: 12)")
    assert pool_size(10, 1, "episodes") == (
        1, "--workers 10: 1 worker (in this process) (the cores: 2; the episodes to run: 1)")
    assert pool_size(2, 0, "points")[0] == 1


def test_check_workers_refuses_absurd_values():
    check_workers(None)
    check_workers(MAX_WORKERS)
    for bad, why in ((0, "must be at least 1, got 0"),
                     (MAX_WORKERS + 1, f"must be at most {MAX_WORKERS:,}, got {MAX_WORKERS + 1:,}")):
        with pytest.raises(ConfigError) as e:
            check_workers(bad)
        assert str(e.value) == f"--workers: {why}"


def test_sweep_workers_10000_is_refused_before_anything(tmp_path):
    (tmp_path / "one.yaml").write_text(ONE_POINT)
    rc, out, err, _ = xensim(tmp_path, "sweep", "one.yaml", "--workers", "10000")
    assert (rc, out, err) == (2, "", "xensim: error: --workers: must be at most 1,024, got 10,000\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.yaml"]      # no one-sweep/


def test_sweep_workers_are_lowered_to_the_points_to_run(tmp_path):
    """A one-point sweep on --workers 64: one worker, in this process (no pool), said
    in one line; the points table names where it ran."""
    (tmp_path / "one.yaml").write_text(ONE_POINT)
    rc, out, err, _ = xensim(tmp_path, "sweep", "one.yaml", "--workers", "64", "--quiet")
    assert rc == 0, err
    assert err == (f"xensim: --workers 64: 1 worker (in this process) (the cores: {CORES}; "
                   f"the points to run: 1)\n")
    assert "  1 points: 1 ran, 0 already complete (local, 1 worker (in this process))" in out
    assert f"vm:{os.getpid()}" not in out
    (tmp_path / "two.yaml").write_text(ONE_POINT.replace("seed: [0]", "seed: [0, 1]"))
    rc, out, err, _ = xensim(tmp_path, "sweep", "two.yaml", "--workers", "64", "--quiet")
    n = min(2, CORES)
    pool = f"{n} worker processes" if n > 1 else "1 worker (in this process)"
    assert rc == 0 and err == (f"xensim: --workers 64: {pool} (the cores: {CORES}; the points "
                               f"to run: 2)\n")
    assert f"(local, {pool})" in out


def test_fuzz_workers_and_episode_limits(tmp_path):
    rc, out, err, _ = xensim(tmp_path, "fuzz", "--workers", "10000", "--episode", "2000000")
    assert (rc, out) == (2, "")
    assert err == ("xensim: error: --episode: must be at most 1,000,000, got 2,000,000\n"
                   "xensim: error: --workers: must be at most 1,024, got 10,000\n")
    rc, out, err, _ = xensim(tmp_path, "fuzz", "--workers", "64", "--calls", "50", "--quiet")
    assert rc == 0
    assert err == (f"xensim: --workers 64: 1 worker (in this process) (the cores: {CORES}; "
                   f"the episodes to run: 1)\n")
    assert "\ncalls made: " in out and ", on local" not in out        # in this process


@pytest.mark.parametrize("target, why", [
    ("nodir/r.yaml", "cannot write nodir/r.yaml: the directory nodir does not exist"),
    ("afile/r.yaml", "cannot write afile/r.yaml: {tmp}/afile is a file, not a directory"),
    ("r-1.yaml", "r-1.yaml is a directory, not a file"),       # --out r.yaml writes r-1.yaml
    ("/proc/r.yaml", "cannot write /proc/r.yaml: /proc does not accept new files or "
                     "directories (No such file or directory)"),
])
def test_fuzz_out_file_is_checked_before_the_campaign(tmp_path, target, why):
    (tmp_path / "afile").write_text("")
    (tmp_path / "r-1.yaml").mkdir()
    if target == "r-1.yaml":
        target = "r.yaml"
    if target.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    rc, out, err, _ = xensim(tmp_path, "fuzz", "--calls", "100000", "--out", target)
    assert (rc, out) == (2, "")
    assert err == f"xensim: error: --out: {why.format(tmp=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "r-1.yaml"]


def test_fuzz_reproducer_that_cannot_be_written_is_printed_first(tmp_path):
    """The second reproducer's file is a directory (only the first is checked up front):
    the summary and the reproducer not written are on stdout, then one line, exit 2."""
    (tmp_path / "r-2.yaml").mkdir()
    rc, out, err, _ = xensim(tmp_path, "fuzz", "--faithful", "--calls", "3000",
                             "--no-minimise", "--quiet", "--out", "r.yaml")
    assert rc == 2
    assert err == "xensim: error: --out: r-2.yaml is a directory, not a file\n"
    assert "\nviolations: " in out
    assert "\n  1. audit in mmu_update (referenced by), " in out
    assert out.count(" calls -> r-1.yaml\n") == 1
    assert out.count(" calls -> not written\n") == 1
    head, sep, repro = out.partition("\n# reproducer 2 (not written)\n")
    assert sep and repro.startswith("# xensim fuzz: reproducer (not minimised) (")
    import yaml
    assert yaml.safe_load(repro)["workload"]["kind"] == "script"
    assert yaml.safe_load((tmp_path / "r-1.yaml").read_text())["workload"]["kind"] == "script"


def test_plot_sweep_checks_every_output_first_and_writes_nothing(tmp_path):
    """--html below a file: one line, and no plots/ directory (the default --out)."""
    pytest.importorskip("matplotlib")
    sweep = tmp_path / "s"
    sweep.mkdir()
    (sweep / "results.csv").write_text("point,seed,design,status,slow_per_op\n"
                                       "p0,0,xen-4.1,ok,0.5\np1,1,xen-4.1,ok,0.25\n")
    (tmp_path / "afile").write_text("")
    rc, out, err, _ = xensim(tmp_path, "plot", "--sweep", "s", "--x", "seed",
                             "--html", "afile/x.html")
    assert (rc, out) == (2, "")
    assert err == (f"xensim: error: --html: cannot write afile/x.html: {tmp_path}/afile is a "
                   f"file, not a directory\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "s"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dask_available(), reason="dask.distributed is not installed")
def test_a_refused_scheduler_fails_at_once():
    port = _closed_port()
    t = time.monotonic()
    with pytest.raises(ConfigError) as e:
        DaskEngine.connect(f"tcp://127.0.0.1:{port}")
    assert time.monotonic() - t < 2
    assert str(e.value) == (f"--scheduler: cannot reach the scheduler at tcp://127.0.0.1:{port}: "
                            f"connection refused (nothing listens on port {port} of 127.0.0.1)")


@pytest.mark.skipif(not dask_available(), reason="dask.distributed is not installed")
def test_a_silent_scheduler_fails_after_the_stated_timeout():
    """A host that takes the connection and never answers (a socket that listens and
    never reads): the error after the timeout, which it states."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        t = time.monotonic()
        with pytest.raises(ConfigError) as e:
            DaskEngine.connect(address, timeout=0.5)
        spent = time.monotonic() - t
    assert 0.5 <= spent < 10
    assert str(e.value) == (f"--scheduler: cannot reach the scheduler at {address}: no "
                            f"answer from a Dask scheduler within 0.5 s")


def test_the_scheduler_timeout_is_in_the_help(tmp_path):
    for command in ("sweep", "fuzz"):
        rc, out, _, _ = xensim(tmp_path, command, "--help")
        text = " ".join(out.split())
        assert rc == 0
        assert (f"a refused connection fails at once, a host that does not answer after "
                f"{CONNECT_TIMEOUT:g} s") in text


def test_sweep_results_csv_that_cannot_be_written_prints_the_summary_first(tmp_path, capsys,
                                                                           monkeypatch):
    """results.csv fails at the end (here: a directory put in its place while the points
    ran): the summary on stdout, then one line, exit 2; the points' files are kept."""
    from xensim.cli._main import main
    import xensim.sweep._run as run_mod
    (tmp_path / "one.yaml").write_text(ONE_POINT)
    real = run_mod.render

    def render(result, fmt):
        if fmt == "csv":
            (tmp_path / "o" / "results.csv").mkdir()
        return real(result, fmt)
    monkeypatch.setattr(run_mod, "render", render)
    assert main(["sweep", str(tmp_path / "one.yaml"), "--out", str(tmp_path / "o"),
                 "--workers", "1", "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert err == f"xensim: error: --out: {tmp_path / 'o' / 'results.csv'} is a directory, not a file\n"
    assert "  1 points: 1 ran, 0 already complete (local, 1 worker (in this process))" in out
    assert f"results.csv not written (the points' files are in {tmp_path / 'o' / 'points'})" in out
    assert len(list((tmp_path / "o" / "points").glob("*/results.json"))) == 1
