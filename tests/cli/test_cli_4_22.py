"""Every command on Xen 4.22 (``hypervisor.version: "4.22"``): run, trace, inspect, explore,
fuzz, sweep; each output names the release, and a superpage design there says it is
hypothetical (as if merged into today's Xen)."""

from __future__ import annotations

from pathlib import Path

from xensim.cli import main

HYPOTHETICAL = "hypothetical: xen-4.1 as if merged into today's Xen"
CONFIG = """\
machine: {preset: teaching}
hypervisor: {version: "4.22", superpage: none}
domains: [{name: a, memory: 8MiB}]
workload: {kind: churn, superpages: 1, iterations: 2}
compare: [xen-4.1, none]
"""


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_run_trace_inspect(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    rc, out, err = run(capsys, "run", str(cfg))
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].endswith("; Xen 4.22")
    assert lines[3].startswith("xen-4.1 (hypothetical)") and lines[4].startswith("none ")
    assert any("xen-4.1: hypothetical on Xen 4.22: as if merged into today's Xen" in ln
               for ln in lines)
    rc, out, _ = run(capsys, "trace", str(cfg), "--design", "xen-4.1")
    assert rc == 0 and f"Xen 4.22, {HYPOTHETICAL}" in out.splitlines()[2]
    rc, out, _ = run(capsys, "trace", str(cfg), "--design", "none")
    assert rc == 0 and out.splitlines()[2].startswith("Xen 4.22, machine teaching")
    rc, out, _ = run(capsys, "inspect", str(cfg), "--domain", "a", "--design", "xen-4.1")
    assert rc == 0 and out.splitlines()[0].endswith(f"on xen-4.1, Xen 4.22, {HYPOTHETICAL}")


def test_explore(capsys, tmp_path):
    sc = tmp_path / "s.yaml"
    sc.write_text('description: two maps\ndesign: xen-4.1\nhypervisor: {version: "4.22"}\n'
                  "memory: 64MiB\ndomains: [{name: a, superpages: 2}]\n"
                  "cpus:\n  - [{op: map, domain: a, superpage: 0}]\n"
                  "  - [{op: map, domain: a, superpage: 0}]\nend: destroy\n")
    rc, out, _ = run(capsys, "explore", str(sc), "--max-schedules", "3")
    assert rc == 0 and f"on xen-4.1, Xen 4.22, {HYPOTHETICAL}" in out.splitlines()[0]


def test_fuzz(capsys):
    rc, out, _ = run(capsys, "fuzz", "--version", "4.22", "--design", "none", "--calls", "150",
                     "--quiet")
    assert rc == 0
    assert out.splitlines()[0].startswith("xensim fuzz: design none, Xen 4.22, ")
    rc, out, _ = run(capsys, "fuzz", "--version", "4.22", "--calls", "150", "--quiet")
    assert rc == 0 and f"design xen-4.1, Xen 4.22, {HYPOTHETICAL}" in out.splitlines()[0]


def test_sweep(capsys, tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base:\n" + "".join(f"  {ln}\n" for ln in CONFIG.splitlines())
                     + "grid:\n  workload.iterations: [1, 2]\n")
    rc, out, err = run(capsys, "sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert rc == 0, err
    csv = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert csv[0].endswith(",release")
    assert any(ln.endswith(f'"Xen 4.22, {HYPOTHETICAL}"') for ln in csv[1:])
    assert any(ln.endswith(",Xen 4.22") for ln in csv[1:])
    assert Path(tmp_path / "out" / "points").is_dir()
