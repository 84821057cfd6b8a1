"""A fuzzer's reproducer is an ordinary config (xensim/fuzz/_reproducer.py,
xensim/config/_hypercall_ops.py, docs/fuzzing.md): written with the YAML library,
loaded with ``load_config`` (a bad op is a one-line ``FILE:LINE: KEYPATH: ...`` error,
exit 2), replayed by ``xensim run`` with every check."""

from __future__ import annotations

import pytest

from xensim import ConfigError, load_config
from xensim.cli._main import main
from xensim.fuzz import Setup, campaign, finding_yaml, replay, script_ops, to_script_yaml
from xensim.guest import DIRECTMAP_BASE

#: one of each op kind (and their odd forms: a null extent list, an MMUEXT number)
OPS = [{"op": "create_domain", "name": "g1", "max_pages": 1024},
       {"op": "memory_op", "domain": "g1", "cmd": "populate_physmap", "order": 9,
        "extents": [0]},
       {"op": "memory_op", "domain": "g1", "cmd": "increase_reservation", "order": 0,
        "extents": None, "nr": 2},
       {"op": "memory_op", "domain": "g1", "cmd": "decrease_reservation", "order": 0,
        "extents": [0x1234], "target": "g1"},
       {"op": "mmu_update", "domain": "g1", "reqs": [[0x1000, 0x2067]], "foreign": "g1"},
       {"op": "mmuext_op", "domain": "g1", "ops": [["pin_l4_table", 0x10], [99, 0]]},
       {"op": "update_va_mapping", "domain": "g1", "va": DIRECTMAP_BASE, "val": 1 << 63,
        "flags": 2},
       {"op": "destroy_domain", "domain": "g1"}]
RCS = [1, 1, 2, 0, -22, -22, -22, 0]


def test_written_reproducer_loads_and_writes_again_the_same(tmp_path):
    setup = Setup(version="4.5", faithful=True, pdx="mask")
    text = to_script_yaml(setup, OPS, rcs=RCS, comment="found by a test\nsecond line")
    assert text.startswith("# found by a test\n# second line\n# replay: xensim run FILE\n")
    assert "reqs: [[0x1000, 0x2067]]" in text and "ops: [[pin_l4_table, 0x10], [0x63, 0x0]]" in text
    assert f"va: {DIRECTMAP_BASE:#x}, val: 0x8000000000000000, flags: 2" in text
    assert "extents: [0x1234]" in text and "extents: null, nr: 2" in text
    assert "- [0x0, 0x3000000]" in text and "version: '4.5'" in text
    assert "   # rc -22 (EINVAL)" in text and text.count("   # rc ") == len(OPS)
    p = tmp_path / "r.yaml"
    p.write_text(text)
    cfg = load_config(p)
    assert cfg.workload.kind == "script" and cfg.workload.script is None
    ops = script_ops(cfg)
    assert ops == OPS
    again = Setup.from_config(cfg)
    assert (again.ram, again.version, again.faithful, again.pdx, again.design) == \
        (setup.ram, "4.5", True, "mask", "xen-4.1")
    assert to_script_yaml(again, ops, rcs=RCS, comment="found by a test\nsecond line") == text


def test_no_rcs_no_ops(tmp_path):
    text = to_script_yaml(Setup(), [])
    assert "ops: []" in text and "# rc" not in text
    p = tmp_path / "empty.yaml"
    p.write_text(text)
    assert script_ops(load_config(p)) == []
    assert str(replay(p)) == "replayed 0 calls: no violation"


def test_cli_run_replays_a_found_violation(tmp_path, capsys):
    """The fuzzer's faithful-4.1 finding (seed 1: tests/fuzz/test_fuzz.py), written, then run."""
    setup = Setup(version="4.1", faithful=True, domains=2)
    c = campaign(setup, 600, seed=1, episode_calls=200, minimise_seconds=60, max_findings=1)
    f = next(iter(c.findings.values()))
    p = tmp_path / "found.yaml"
    p.write_text(finding_yaml(c, f))
    r = replay(p)
    assert r.violation is not None and r.violation.signature == f.violation.signature
    capsys.readouterr()
    assert main(["run", str(p)]) == 1
    assert capsys.readouterr().out == f"{r}\n"


def _bad(tmp_path, ops_lines: str) -> str:
    p = tmp_path / "bad.yaml"
    p.write_text("machine:\n  pdx: none\nworkload:\n  kind: script\n  ops:\n"
                 "    - {op: create_domain, name: g1, max_pages: 100}\n"
                 "    - {op: destroy_domain, domain: g2}\n"
                 "    - {op: mmuext_op, domain: g1, ops: [[unpin_table, 0x10]]}\n" + ops_lines)
    return str(p)


@pytest.mark.parametrize("line, error", [
    ("    - {op: mmu_update, domain: g1, reqs: [[0x1000]]}\n",
     "workload.ops[3].reqs[0]: expected [ptr, val], got 1 item"),
    ("    - {op: mmu_update, domain: g1, reqs: [[0x1000, x]]}\n",
     "workload.ops[3].reqs[0].val: expected an integer, got 'x'"),
    ("    - {op: destroy_domain, domain: g1, reqs: []}\n",
     "workload.ops[3].reqs: op destroy_domain takes no 'reqs' (it takes domain)"),
    ("    - {op: update_va_mapping, domain: g1, va: 0x1000}\n",
     "workload.ops[3]: op update_va_mapping needs 'val'"),
    ("    - {op: mmuext_op, domain: g1, ops: [[pin_l5_table, 0]]}\n",
     "workload.ops[3].ops[0].cmd: unknown MMUEXT command 'pin_l5_table'; use a number or "
     "one of: "),
    ("    - {op: memory_op, domain: g1, cmd: populate, extents: [0]}\n",
     "workload.ops[3].cmd: bad choice 'populate'; choose from: increase_reservation, "
     "decrease_reservation, populate_physmap"),
])
def test_a_bad_op_is_a_one_line_error(tmp_path, capsys, line, error):
    path = _bad(tmp_path, line)
    assert main(["run", path]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"xensim: error: {path}:9: {error}")
    assert err.count("\n") == 1


def test_ops_only_in_a_script_workload(tmp_path):
    p = tmp_path / "w.yaml"
    p.write_text("workload:\n  kind: random\n  ops: []\n")
    with pytest.raises(ConfigError, match=r"w\.yaml:3: workload\.ops: 'ops' does not apply to "
                                          r"a random workload"):
        load_config(p)
    p.write_text("workload:\n  kind: script\n  script:\n    - {domain: guest, op: map, "
                 "superpage: 0}\n  ops: []\n")
    with pytest.raises(ConfigError, match=r"w\.yaml:5: workload\.ops: give 'script' \(guest "
                                          r"operations\) or 'ops' \(hypercalls\), not both"):
        load_config(p)


@pytest.mark.parametrize("command", [["trace"], ["inspect", "--domain", "0"]])
def test_simulating_commands_refuse_raw_hypercalls(tmp_path, capsys, command):
    p = tmp_path / "r.yaml"
    p.write_text(to_script_yaml(Setup(), OPS[:1]))
    assert main([command[0], str(p)] + command[1:]) == 2
    assert capsys.readouterr().err == (
        "xensim: error: workload.ops: raw hypercalls (a fuzzer's reproducer) are replayed by "
        "`xensim run FILE`, not simulated\n")


def test_vcpus_and_vcpu_round_trip_and_replay(tmp_path):
    """create_domain's ``vcpus`` and mmuext_op / update_va_mapping's ``vcpu``: written,
    loaded and replayed (do_mmuext_op MMUEXT_NEW_USER_BASEPTR from vCPU 1, Xen 4.8; a
    vCPU the domain does not have: -ESRCH)."""
    ops = [{"op": "create_domain", "name": "g1", "max_pages": 1024, "vcpus": 2},
           {"op": "memory_op", "domain": "g1", "cmd": "populate_physmap", "order": 0,
            "extents": [0]},
           {"op": "mmuext_op", "domain": "g1", "ops": [["new_user_baseptr", 0]], "vcpu": 1},
           {"op": "mmuext_op", "domain": "g1", "ops": [["new_user_baseptr", 0]], "vcpu": 2},
           {"op": "update_va_mapping", "domain": "g1", "va": DIRECTMAP_BASE, "val": 0,
            "vcpu": 1},
           {"op": "destroy_domain", "domain": "g1"}]
    text = to_script_yaml(Setup(), ops, rcs=[1, 1, 0, -3, -22, 0])
    assert "vcpus: 2" in text and "vcpu: 1" in text
    p = tmp_path / "v.yaml"
    p.write_text(text)
    assert script_ops(load_config(p)) == ops
    r = replay(p)
    assert str(r) == "replayed 6 calls: no violation"       # the last call succeeded: no rc said
    assert r.rcs[:6] == [1, 1, 0, -3, -22, 0]


def test_vcpumask_round_trips_and_replays(tmp_path):
    """update_va_mapping's ``vcpumask`` (the bitmap a UVMF_MULTI pointer points at): written,
    loaded and replayed. On Xen 4.8 the update fails (no kernel root: -EINVAL), and the
    bitmap's read then sets the result (__do_update_va_mapping before 6c8d502887): 0 with a
    readable bitmap, -EFAULT without one."""
    ops = [{"op": "create_domain", "name": "g1", "max_pages": 1024},
           {"op": "update_va_mapping", "domain": "g1", "va": DIRECTMAP_BASE, "val": 0,
            "flags": 0x7001, "vcpumask": 1},
           {"op": "update_va_mapping", "domain": "g1", "va": DIRECTMAP_BASE, "val": 0,
            "flags": 0x7001},
           {"op": "update_va_mapping", "domain": "g1", "va": DIRECTMAP_BASE, "val": 0,
            "flags": 1, "vcpumask": 1},
           {"op": "destroy_domain", "domain": "g1"}]
    text = to_script_yaml(Setup(version="4.8"), ops, rcs=[1, 0, -14, -22, 0])
    assert "flags: 28673, vcpumask: 1}" in text
    p = tmp_path / "m.yaml"
    p.write_text(text)
    assert script_ops(load_config(p)) == ops
    r = replay(p)
    assert r.rcs[:5] == [1, 0, -14, -22, 0]
