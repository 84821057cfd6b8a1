"""Sweeps (xensim.sweep, ``xensim sweep``): the grid's expansion into points, the
sweep file's one-line errors, results.csv's columns and rows, resumption, ``--force``,
Ctrl-C, and the same table on every engine."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xensim.cli import main
from xensim.engines import LocalEngine, dask_available, make_engine
from xensim.sweep import (FIGURES, SweepInterrupted, load_sweep, parse_sweep, point_id,
                          run_point, run_sweep)

#: a tiny base: one 2 MiB superpage churned (2 operations per iteration), teaching machine
BASE = """\
machine:
  preset: teaching
workload:
  kind: churn
  superpages: 1
  iterations: 3
domains:
  - {name: guest, memory: 4MiB}
compare: [sketch, xen-4.1]
"""

SWEEP = """\
base: base.yaml
grid:
  workload.iterations: [2, 5]
  workload.mark: [false, true]
"""


def write(tmp_path: Path, sweep: str = SWEEP, base: str = BASE) -> Path:
    (tmp_path / "base.yaml").write_text(base)
    path = tmp_path / "sweep.yaml"
    path.write_text(sweep)
    return path


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["sweep", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


# --------------------------------------------------------------------------
# The grid


def test_grid_expands_every_combination_last_key_fastest(tmp_path):
    sw = load_sweep(write(tmp_path, SWEEP + "  seed: [0, 1, 2]\n"))
    assert sw.keys == ["workload.iterations", "workload.mark", "seed"]
    assert len(sw.points) == 12
    assert [p.index for p in sw.points] == list(range(12))
    assert sw.points[0].values == {"workload.iterations": 2, "workload.mark": False, "seed": 0}
    assert sw.points[1].values == {"workload.iterations": 2, "workload.mark": False, "seed": 1}
    assert sw.points[11].values == {"workload.iterations": 5, "workload.mark": True, "seed": 2}
    cfg = sw.points[7].config                      # 7 = 1*6 + 0*3 + 1: 5, false, 1
    assert (cfg.workload.iterations, cfg.workload.mark, cfg.seed) == (5, False, 1)
    assert cfg.compare == ["sketch", "xen-4.1"] and cfg.domains[0].memory == 4 << 20
    assert sw.points[7].describe() == "workload.iterations=5, workload.mark=false, seed=1"
    assert sw.points[7].memmap.name == "teaching"
    assert len({point_id(p) for p in sw.points}) == 12


def test_inline_base_compare_replaced_and_sections_made_by_the_grid(tmp_path):
    sw = parse_sweep("""\
base:
  workload: {kind: churn, superpages: 1, iterations: 2}
  domains: [{name: g, memory: 4MiB}]
compare: [per-mapping]
grid:
  hypervisor.version: ["4.1", 4.8]
  cost_model.hypercall_ns: [0, 100]
""", str(tmp_path / "s.yaml"))
    assert [(p.config.hypervisor.version, p.config.cost_model.hypercall_ns)
            for p in sw.points] == [("4.1", 0.0), ("4.1", 100.0), ("4.8", 0.0), ("4.8", 100.0)]
    assert all(p.config.compare == ["per-mapping"] for p in sw.points)


def test_no_grid_is_one_point_and_the_id_is_stable(tmp_path):
    a = load_sweep(write(tmp_path, "base: base.yaml\n"))
    b = parse_sweep("base: base.yaml\ngrid: {}\n", str(tmp_path / "other.yaml"))
    assert len(a.points) == len(b.points) == 1 and a.points[0].values == {}
    assert point_id(a.points[0]) == point_id(b.points[0])
    # the same point in another sweep (iterations 3 written in the grid, not the base)
    c = parse_sweep("base: base.yaml\ngrid: {workload.iterations: [3, 4]}\n",
                    str(tmp_path / "c.yaml"))
    assert point_id(c.points[0]) == point_id(a.points[0]) != point_id(c.points[1])


# --------------------------------------------------------------------------
# Errors: one line naming the sweep file and the key, exit 2

@pytest.mark.parametrize("sweep, message", [
    (SWEEP.replace("iterations", "iteratons"),
     "sweep.yaml:3: grid.workload.iteratons: unknown key 'iteratons' (did you mean "
     "'iterations'?); allowed keys: kind, superpages, writable, rounds, iterations, mark, "
     "mappings, steps, slots, small_slots, mix, grants, script, ops"),
    (SWEEP.replace("[2, 5]", "[2, 0]"),
     "sweep.yaml:3: grid.workload.iterations[1]: must be at least 1, got 0"),
    (SWEEP.replace("[false, true]", "[false, 3]"),
     "sweep.yaml:4: grid.workload.mark[1]: expected a boolean, got an integer (3)"),
    (SWEEP.replace("[false, true]", "true"),
     "sweep.yaml:4: grid.workload.mark: expected a non-empty list of values, got a boolean "
     "(true)"),
    (SWEEP.replace("[2, 5]", "[]"),
     "sweep.yaml:3: grid.workload.iterations: expected a non-empty list of values, got an "
     "empty list"),
    (SWEEP.replace("[2, 5]", "[2, 5, 2]"),
     "sweep.yaml:3: grid.workload.iterations[2]: value 2 is listed twice"),
    (SWEEP + "  machine.preset.name: [a]\n",
     "sweep.yaml:5: grid.machine.preset.name[0]: machine.preset is not a section (a mapping) "
     "of the base config"),
    (SWEEP.replace("grid:", "grids:"),
     "sweep.yaml:2: grids: unknown key 'grids' (did you mean 'grid'?); allowed keys: base, "
     "grid, compare, design_files"),
    (SWEEP.replace("base.yaml", "nope.yaml"),
     "sweep.yaml:1: base: no such config file: {dir}/nope.yaml"),
    (SWEEP + "compare: [sketch, sketch]\n",
     "sweep.yaml:5: compare[1]: design 'sketch' is listed twice"),
    (SWEEP + "  workload.superpages: [1, 3]\n",
     "sweep.yaml:5: grid.workload.superpages[1]: 3 superpages, but the smallest domain has 2 "
     "(2 MiB each)"),
    (SWEEP + "  domains: [[{name: a, memory: 3MiB}]]\n",
     "sweep.yaml:5: grid.domains[0][0].memory: a domain's memory must be a positive multiple "
     "of 2 MiB (superpage-backed), got 0x300000"),
    ("", "sweep.yaml: the sweep is empty (no keys): give a base: config and a grid: of keys "
         "and values"),
])
def test_sweep_file_errors(tmp_path, capsys, sweep, message):
    path = write(tmp_path, sweep)
    rc, out, err = cli(capsys, path, "--out", tmp_path / "o")
    expected = message.replace("sweep.yaml", str(path)).replace("{dir}", str(tmp_path))
    assert (rc, out, err) == (2, "", f"xensim: error: {expected}\n")
    assert not (tmp_path / "o" / "points").exists()


def test_an_error_of_the_base_names_the_base_and_the_point(tmp_path, capsys):
    path = write(tmp_path, SWEEP.replace("workload.mark", "seed").replace("[false, true]",
                                                                          "[0]"),
                 BASE.replace("superpages: 1", "superpages: 9"))
    rc, _, err = cli(capsys, path)
    assert rc == 2
    assert err == (f"xensim: error: {tmp_path}/base.yaml:5: workload.superpages: 9 superpages, "
                   f"but the smallest domain has 2 (2 MiB each) (sweep point "
                   f"workload.iterations=2, seed=0)\n")


def test_a_base_that_runs_nothing(tmp_path, capsys):
    path = write(tmp_path, "base: base.yaml\n", "machine: {preset: teaching}\n")
    rc, _, err = cli(capsys, path)
    assert (rc, err) == (2, f"xensim: error: {tmp_path}/base.yaml: the base config runs no "
                            f"simulation: give it a workload: or a compare:\n")


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers: must be at least 1, got 0"),
    (["--scheduler", "local"], "--scheduler: expected local-dask or a scheduler address "
                               "tcp://HOST:PORT, got 'local'"),
])
def test_bad_options(tmp_path, capsys, argv, message):
    rc, out, err = cli(capsys, write(tmp_path), "--out", tmp_path / "o", *argv)
    assert (rc, out, err) == (2, "", f"xensim: error: {message}\n")


def test_scheduler_without_dask_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    rc, out, err = cli(capsys, write(tmp_path), "--out", tmp_path / "o", "--scheduler",
                       "local-dask")
    assert (rc, out) == (2, "")
    assert err == ("xensim: error: --scheduler: needs dask.distributed, which is not "
                   "installed: pip install 'xensim[cluster]' (or: pip install "
                   "'dask[distributed]')\n")


# --------------------------------------------------------------------------
# Results


def test_results_csv_columns_and_rows(tmp_path, capsys):
    path = write(tmp_path)
    rc, out, err = cli(capsys, path, "--out", tmp_path / "o", "--workers", "1")
    assert (rc, err) == (0, "")
    rows = read_csv(tmp_path / "o" / "results.csv")
    assert list(rows[0]) == ["point", "workload.iterations", "workload.mark", "design",
                             *FIGURES]
    ids = [point_id(p) for p in load_sweep(path).points]
    assert [(r["point"], r["workload.iterations"], r["workload.mark"], r["design"])
            for r in rows] == [
        (ids[0], "2", "false", "sketch"), (ids[0], "2", "false", "xen-4.1"),
        (ids[1], "2", "true", "sketch"), (ids[1], "2", "true", "xen-4.1"),
        (ids[2], "5", "false", "sketch"), (ids[2], "5", "false", "xen-4.1"),
        (ids[3], "5", "true", "sketch"), (ids[3], "5", "true", "xen-4.1")]
    for r in rows:
        n, mark = int(r["workload.iterations"]), r["workload.mark"] == "true"
        pinned = mark and r["design"] == "xen-4.1"       # the sketch has no MARK
        # churn: map + unmap per iteration, plus mark and unmark
        assert int(r["ops"]) == 2 * n + 2 * mark
        assert int(r["ops_failed"]) == (2 if mark and r["design"] == "sketch" else 0)
        assert (int(r["slow_get"]), int(r["slow_put"])) == ((0, 0) if pinned else (n, n))
        assert int(r["fast_updates"]) == (2 * n if pinned else 0)
        assert int(r["get_page_type"]) == (512 if pinned else 512 * n)
        assert (r["status"], r["audit"], r["leaked_frames"]) == ("ok", "clean", "0")
    assert float(rows[4]["slow_per_op"]) == 1.0                  # sketch, 5, no mark: 10 / 10
    assert float(rows[6]["slow_per_op"]) == pytest.approx(10 / 12)
    # each point's files; the table on the terminal
    pdir = tmp_path / "o" / "points" / ids[3]
    res = json.loads((pdir / "results.json").read_text())
    assert res["point"]["id"] == ids[3] and res["point"]["grid"] == {
        "workload.iterations": 5, "workload.mark": True}
    assert res["point"]["peak_rss_bytes"] > 10 << 20
    assert [d["design"] for d in res["comparison"]["designs"]] == ["sketch", "xen-4.1"]
    assert load_sweep_point_config(pdir) == (5, True)
    assert f"Sweep {path}: 4 points on each design" in out
    assert "  4 points: 4 ran, 0 already complete (local, 1 worker (in this process))" in out
    assert "peak RSS" in out


def load_sweep_point_config(pdir: Path) -> tuple:
    from xensim import load_config
    cfg = load_config(pdir / "config.yaml")
    return cfg.workload.iterations, cfg.workload.mark


# --------------------------------------------------------------------------
# Resumption, --force, Ctrl-C


def states(result) -> list[str]:
    return [p.state for p in result.points]


def test_resume_runs_only_the_missing_point_and_force_runs_all(tmp_path):
    sw = load_sweep(write(tmp_path))
    out = tmp_path / "o"
    engine = LocalEngine(1)
    first = run_sweep(sw, out, engine)
    assert states(first) == ["ran"] * 4
    table = (out / "results.csv").read_bytes()
    victim = first.points[2].id
    kept = (out / "points" / first.points[0].id / "results.json").read_bytes()
    for f in (out / "points" / victim).iterdir():
        f.unlink()
    (out / "points" / victim).rmdir()
    again = run_sweep(sw, out, engine)
    assert states(again) == ["resumed", "resumed", "ran", "resumed"]
    assert (out / "results.csv").read_bytes() == table
    assert (out / "points" / first.points[0].id / "results.json").read_bytes() == kept
    assert run_sweep(sw, out, engine).notes[0] == \
        "4 points: 0 ran, 4 already complete (local, 1 worker (in this process))"
    forced = run_sweep(sw, out, engine, force=True)
    assert states(forced) == ["ran"] * 4
    assert (out / "results.csv").read_bytes() == table


def test_force_on_the_command_line(tmp_path, capsys):
    path = write(tmp_path)
    argv = (path, "--out", tmp_path / "o", "--workers", 1)
    assert cli(capsys, *argv)[0] == 0
    rc, out, _ = cli(capsys, *argv)
    assert rc == 0 and "  4 points: 0 ran, 4 already complete (local" in out
    assert out.count("  resumed  ") == 4
    rc, out, _ = cli(capsys, *argv, "--force")
    assert rc == 0 and "  4 points: 4 ran, 0 already complete (local" in out


def interrupt_third(task):
    """Ctrl-C at the third point run: the points go the longest first (3, 2, 1, 0)."""
    if task["index"] == 1:
        raise KeyboardInterrupt
    return run_point(task)


def test_an_interrupted_sweep_keeps_the_points_done_and_resumes(tmp_path, capsys, monkeypatch):
    path = write(tmp_path)
    out = tmp_path / "o"
    monkeypatch.setattr("xensim.sweep._run.run_point", interrupt_third)
    rc, stdout, err = cli(capsys, path, "--out", out, "--workers", "1")
    assert rc == 130
    assert err == (f"xensim: interrupted after 2 of 4 points (kept in {out}/points; run the "
                   f"sweep again to resume)\n")
    assert "  4 points: 2 ran, 0 already complete, 2 not run" in stdout
    assert not (out / "results.csv").exists()
    monkeypatch.undo()
    again = run_sweep(load_sweep(path), out, LocalEngine(1))
    assert states(again) == ["ran", "ran", "resumed", "resumed"]


def test_an_interrupt_in_a_worker_process_stops_the_sweep(tmp_path):
    sw = load_sweep(write(tmp_path))
    with make_engine(2) as engine, pytest.raises(SweepInterrupted) as e:
        run_sweep(sw, tmp_path / "o", _Interrupting(engine))
    assert e.value.result.count("ran") <= 3 and not (tmp_path / "o" / "results.csv").exists()


class _Interrupting:
    """An engine whose function interrupts at the third point (in the worker)."""

    def __init__(self, engine):
        self.engine = engine

    def describe(self):
        return self.engine.describe()

    def map_unordered(self, fn, tasks, max_in_flight=None):
        return self.engine.map_unordered(interrupt_third, tasks, max_in_flight)


# --------------------------------------------------------------------------
# Engines: the same table


def test_the_same_table_on_one_and_two_local_workers(tmp_path, capsys):
    path = write(tmp_path, SWEEP + "  seed: [0, 1]\n")
    for workers in (1, 2):
        rc, _, err = cli(capsys, path, "--out", tmp_path / f"w{workers}", "--workers", workers,
                         "--quiet")
        assert (rc, err) == (0, "")
    one = (tmp_path / "w1" / "results.csv").read_text()
    assert one == (tmp_path / "w2" / "results.csv").read_text()
    assert len(one.splitlines()) == 1 + 8 * 2


@pytest.mark.skipif(not dask_available(), reason="dask.distributed is not installed")
def test_the_same_table_on_a_two_worker_local_cluster(tmp_path, capsys):
    path = write(tmp_path)
    rc, _, err = cli(capsys, path, "--out", tmp_path / "local", "--workers", 1)
    assert (rc, err) == (0, "")
    rc, out, err = cli(capsys, path, "--out", tmp_path / "dask", "--scheduler", "local-dask",
                       "--workers", 2)
    assert (rc, err) == (0, "")
    assert "(local-dask (LocalCluster), 2 worker threads)" in out
    assert (tmp_path / "local" / "results.csv").read_text() == \
        (tmp_path / "dask" / "results.csv").read_text()


def test_readme_sample_sweep_and_its_error(tmp_path, capsys, monkeypatch):
    """The README's sweep is configs/sweeps/churn-mark.yaml's keys, and its error line is
    the real one."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text()
    at = text.index("## Sweeps")
    block = text[at:].split("```yaml\n", 1)[1].split("```", 1)[0]
    example = root / "configs" / "sweeps" / "churn-mark.yaml"
    strip = [line.split("#")[0].rstrip() for line in block.splitlines()]
    assert strip == [line for line in example.read_text().splitlines()
                     if line and not line.startswith("#")]
    line = " ".join(text[at:].split()).split("gives `xensim: error: ", 1)[1].split("`", 1)[0]
    (tmp_path / "churn.yaml").write_text(block.replace("[20, 60]", "[20, 0]"))
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(capsys, "churn.yaml")
    assert (rc, out, err) == (2, "", f"xensim: error: {line}\n")
    assert not (tmp_path / "churn-sweep").exists()


def sweep_in_a_subprocess(*argv) -> subprocess.CompletedProcess:
    """``xensim sweep`` in a fresh interpreter (a user design registered there stays there)."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "xensim", "sweep", *map(str, argv)],
                          env=env, capture_output=True, text=True, timeout=300)


def test_design_files_of_the_sweep_are_loaded_by_every_worker(tmp_path):
    """A user design (examples/designs/lock_bit.py) named by the sweep, relative to the
    sweep file: checked up front, loaded again by each worker process; its contents are
    part of the point's id."""
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "designs").mkdir()
    design = tmp_path / "designs" / "lock_bit.py"
    design.write_text((root / "examples" / "designs" / "lock_bit.py").read_text())
    path = write(tmp_path, SWEEP + "compare: [lock-bit, xen-4.1]\ndesign_files: "
                                   "[designs/lock_bit.py]\n")
    run = sweep_in_a_subprocess(path, "--out", tmp_path / "o", "--workers", 2)
    assert (run.returncode, run.stderr) == (0, "")
    rows = read_csv(tmp_path / "o" / "results.csv")
    assert [r["design"] for r in rows[:2]] == ["lock-bit", "xen-4.1"]
    assert all(r["status"] == "ok" and r["audit"] == "clean" for r in rows)
    assert [r["slow_get"] for r in rows[:2]] == ["2", "2"]
    config = (tmp_path / "o" / "points" / rows[0]["point"] / "config.yaml").read_text()
    assert f"design_files: [{design}]\n" in config
    design.write_text(design.read_text() + "\n# edited\n")
    again = sweep_in_a_subprocess(path, "--out", tmp_path / "o", "--workers", 1)
    assert again.returncode == 0 and "4 points: 4 ran, 0 already complete" in again.stdout
    assert {r["point"] for r in rows}.isdisjoint(
        r["point"] for r in read_csv(tmp_path / "o" / "results.csv"))


def test_a_bad_design_file_of_the_sweep(tmp_path, capsys):
    path = write(tmp_path, SWEEP + "design_files: [nope.py]\n")
    rc, out, err = cli(capsys, path, "--out", tmp_path / "o")
    assert (rc, out) == (2, "")
    assert err == (f"xensim: error: {path}:5: design_files[0]: {tmp_path}/nope.py: "
                   f"no such file\n")


PARQUET_SWEEP = ("base: base.yaml\ngrid:\n  workload.iterations: [2, 5]\n  seed: [0, 2]\n"
                 "  hypervisor.faithful: [true]\n")


def test_no_results_parquet_without_pyarrow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    result = run_sweep(load_sweep(write(tmp_path, PARQUET_SWEEP)), tmp_path / "o", LocalEngine(1))
    assert not (tmp_path / "o" / "results.parquet").exists()
    assert (tmp_path / "o" / "results.csv").exists()
    assert result.notes[-1] == (f"wrote {tmp_path / 'o' / 'results.csv'} (no results.parquet: "
                                f"pyarrow is not installed)")


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed")
def test_results_parquet_with_pyarrow(tmp_path):
    import pyarrow.parquet as pq
    result = run_sweep(load_sweep(write(tmp_path, PARQUET_SWEEP)), tmp_path / "o", LocalEngine(1))
    parquet = tmp_path / "o" / "results.parquet"
    table = pq.read_table(parquet)
    assert table.column_names == ["point", "workload.iterations", "seed", "hypervisor.faithful",
                                  "design", *FIGURES]
    assert table.to_pylist() == result.rows()
    assert [r["seed"] for r in result.rows()] == [0, 0, 2, 2, 0, 0, 2, 2]
    assert {r["hypervisor.faithful"] for r in result.rows()} == {"true"}
    assert result.notes[-1] == f"wrote {tmp_path / 'o' / 'results.csv'} and {parquet}"


def fail_first(task):
    if task["index"] == 0:
        raise RuntimeError("boom")
    return run_point(task)


def test_a_failed_point_is_reported_kept_out_and_run_again(tmp_path, capsys, monkeypatch):
    path = write(tmp_path)
    monkeypatch.chdir(tmp_path)                       # the default DIR: ./sweep-sweep
    monkeypatch.setattr("xensim.sweep._run.run_point", fail_first)
    rc, out, err = cli(capsys, path, "--workers", 1)
    ids = [point_id(p) for p in load_sweep(path).points]
    assert rc == 1
    assert err == (f"xensim: point failed: {path}: point {ids[0]} (workload.iterations=2, "
                   f"workload.mark=false): RuntimeError: boom\n")
    assert "  4 points: 3 ran, 0 already complete, 1 failed" in out
    rows = read_csv(tmp_path / "sweep-sweep" / "results.csv")
    assert [r["point"] for r in rows] == [ids[1], ids[1], ids[2], ids[2], ids[3], ids[3]]
    assert (tmp_path / "sweep-sweep" / "points" / ids[0] / "config.yaml").exists()
    assert not (tmp_path / "sweep-sweep" / "points" / ids[0] / "results.json").exists()
    monkeypatch.undo()
    again = run_sweep(load_sweep(path), tmp_path / "sweep-sweep", LocalEngine(1))
    assert states(again) == ["ran", "resumed", "resumed", "resumed"]


def test_a_config_error_found_when_the_point_runs(tmp_path, capsys):
    """Domains that do not fit the machine are found by the worker: exit 2, one line."""
    path = write(tmp_path, "base: base.yaml\ngrid:\n  domains: [[{name: g, memory: 4MiB}], "
                           "[{name: g, memory: 4GiB}]]\n")
    rc, out, err = cli(capsys, path, "--out", tmp_path / "o", "--workers", 1)
    big = point_id(load_sweep(path).points[1])
    assert rc == 2
    assert err.startswith(f"xensim: error: {path}: point {big} (domains=[{{\"memory\":"
                          f"\"4GiB\",\"name\":\"g\"}}]): domains[0].memory: domain 'g' "
                          f"(4.00 GiB) does not fit on teaching (3.00 GiB of RAM")
    assert err.count("\n") == 1
    assert "  2 points: 1 ran, 0 already complete, 1 failed" in out


def test_two_grid_values_that_are_the_same_config(tmp_path, capsys):
    path = write(tmp_path, SWEEP.replace("workload.mark: [false, true]",
                                         "hypervisor.version: [\"4.8\", 4.8]"))
    rc, out, err = cli(capsys, path, "--out", tmp_path / "o")
    assert (rc, out) == (2, "")
    assert err == (f"xensim: error: {path}: grid: two points are the same config: "
                   f"workload.iterations=2, hypervisor.version=4.8 and "
                   f"workload.iterations=2, hypervisor.version=4.8\n")


# --------------------------------------------------------------------------
# --compare


def test_compare_option_replaces_the_sweeps_designs(tmp_path, capsys):
    """Every point runs the designs of --compare, in their order, not the file's."""
    path = write(tmp_path)
    rc, _, err = cli(capsys, path, "--out", tmp_path / "o", "--workers", "1",
                     "--compare", "per-mapping,xen-4.1")
    assert (rc, err) == (0, "")
    rows = read_csv(tmp_path / "o" / "results.csv")
    assert [r["design"] for r in rows] == ["per-mapping", "xen-4.1"] * 4
    assert [int(r["slow_get"]) for r in rows if r["design"] == "per-mapping"] == [2, 2, 5, 5]
    ids = [point_id(p) for p in load_sweep(path, compare=["per-mapping", "xen-4.1"]).points]
    assert [r["point"] for r in rows][::2] == ids


@pytest.mark.parametrize("value, message", [
    ("xen-4.1,nope", "--compare: unknown design 'nope'; choose from per-mapping, "
                     "pageinfo-count, superpage-info, xen-4.1, sketch, none"),
    ("sketch,sketch", "--compare: design 'sketch' is listed twice"),
    ("xen-4.1,,sketch", "--compare: an empty design name at position 2 of 'xen-4.1,,sketch'"),
])
def test_compare_option_errors_before_any_point_runs(tmp_path, capsys, value, message):
    path = write(tmp_path)
    rc, out, err = cli(capsys, path, "--out", tmp_path / "o", "--compare", value)
    assert (rc, out) == (2, "") and err.count("\n") == 1     # (designs loaded since: listed too)
    assert err.startswith(f"xensim: error: {message}")
    assert not (tmp_path / "o").exists()
