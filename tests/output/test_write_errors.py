"""Output paths the CLI cannot write (`run --out`, `run --html`, `plot --out`): one line
naming the option, the user's path and why, exit 2, nothing half-written."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from xensim.cli._main import main
from xensim.output._results import write_atomic

NO_SIM = "machine: {preset: teaching}\n"      # no workload: run is quick
proc = pytest.mark.skipif(not sys.platform.startswith("linux") or not Path("/proc/self").is_dir(),
                          reason="needs Linux's /proc")


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def cfg(tmp_path) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(NO_SIM)
    return str(p)


@proc
def test_out_under_proc_cannot_create_the_directory(capsys, cfg):
    rc, out, err = run(capsys, "run", cfg, "--out", "/proc/xensim-x")
    assert rc == 2 and out == ""
    assert err == ("xensim: error: --out: cannot create the directory /proc/xensim-x: /proc "
                   "does not accept new files or directories (No such file or directory)\n")


def test_out_onto_a_file_says_it_is_a_file(capsys, cfg, tmp_path):
    f = tmp_path / "afile"
    f.write_text("mine\n")
    rc, out, err = run(capsys, "run", cfg, "--out", str(f))
    assert rc == 2 and out == ""
    assert err == f"xensim: error: --out: {f} is a file, not a directory\n"
    assert f.read_text() == "mine\n"


def test_out_below_a_file_names_the_file(capsys, cfg, tmp_path):
    f = tmp_path / "afile"
    f.write_text("")
    rc, _, err = run(capsys, "run", cfg, "--out", str(f / "sub"))
    assert rc == 2
    assert err == (f"xensim: error: --out: cannot create the directory {f / 'sub'}: "
                   f"{f} is a file, not a directory\n")


@proc
def test_html_under_proc_names_the_users_file(capsys, cfg):
    rc, out, err = run(capsys, "run", cfg, "--html", "/proc/xensim-x.html")
    assert rc == 2
    assert err == ("xensim: error: --html: cannot write /proc/xensim-x.html: /proc does not "
                   "accept new files or directories (No such file or directory)\n")
    assert ".tmp" not in err and err.count("\n") == 1


def test_html_onto_a_directory(capsys, cfg, tmp_path):
    rc, _, err = run(capsys, "run", cfg, "--html", str(tmp_path))
    assert rc == 2
    assert err == f"xensim: error: --html: {tmp_path} is a directory, not a file\n"


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root writes anywhere")
def test_out_in_a_read_only_directory(capsys, cfg, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = run(capsys, "run", cfg, "--out", str(ro / "x"))
    finally:
        ro.chmod(0o755)
    assert rc == 2
    assert err == (f"xensim: error: --out: cannot create the directory {ro / 'x'}: "
                   f"no permission to write in {ro}\n")


def test_write_atomic_errors_name_the_target_not_the_temporary(tmp_path):
    target = tmp_path / "missing-dir" / "r.json"
    with pytest.raises(OSError) as e:
        write_atomic(target, "{}")
    assert e.value.filename == str(target)
    assert not list(tmp_path.rglob("*.tmp"))


@proc
def test_plot_out_under_proc(capsys):
    pytest.importorskip("matplotlib")
    rc, out, err = run(capsys, "plot", "--which", "memmap", "--out", "/proc/xensim-x")
    assert rc == 2 and out == ""
    assert err.startswith("xensim: error: --out: cannot create the directory /proc/xensim-x: ")


def test_plot_out_onto_a_file(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    f = tmp_path / "afile"
    f.write_text("")
    rc, _, err = run(capsys, "plot", "--which", "memmap", "--out", str(f))
    assert rc == 2
    assert err == f"xensim: error: --out: {f} is a file, not a directory\n"


def test_unwritable_targets_fail_before_the_run(capsys, tmp_path, monkeypatch):
    """--out onto a file and --html onto a directory are refused before any simulation."""
    import xensim.sim
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("workload: {kind: churn, iterations: 2}\n")

    def never(*a, **k):
        raise AssertionError("the comparison ran")
    monkeypatch.setattr(xensim.sim, "run_comparison", never)
    f = tmp_path / "afile"
    f.write_text("")
    rc, _, err = run(capsys, "run", str(cfg), "--out", str(f))
    assert rc == 2 and err == f"xensim: error: --out: {f} is a file, not a directory\n"
    rc, _, err = run(capsys, "run", str(cfg), "--html", str(tmp_path))
    assert rc == 2 and err == f"xensim: error: --html: {tmp_path} is a directory, not a file\n"
    rc, _, err = run(capsys, "run", str(cfg), "--html", str(f / "r.html"))
    assert rc == 2 and err == (f"xensim: error: --html: cannot write {f / 'r.html'}: "
                               f"{f} is a file, not a directory\n")
