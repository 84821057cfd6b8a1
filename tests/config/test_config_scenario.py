"""Explorer scenario files (xensim.config._scenario): loaded by the config's typed
loader, so every mistake is one ``FILE:LINE: key.path: message`` error; the 4 KiB
operations are spelled ``map-4k`` / ``unmap-4k`` as in configs, the old ``map4k`` /
``unmap4k`` accepted with one deprecation line."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from xensim._errors import ConfigError
from xensim.config import SCENARIO_OPS, Scenario, ScenarioOp, load_scenario
from xensim.xen import Release

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml"))

BASE = """description: one CPU maps a 4 KiB page of a superpage, another unmaps it
design: xen-4.1
memory: 64MiB
domains:
  - {name: a, superpages: 2}
cpus:
  - [{op: map-4k, domain: a, superpage: 1, frame: 3, table: 5}]
  - [{op: map, domain: a, superpage: 0}, {op: unmap-4k, domain: a, superpage: 1, frame: 3, table: 5}]
"""


def _write(tmp_path, text: str, name: str = "s.yaml") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def _error(tmp_path, text: str) -> str:
    f = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_scenario(f)
    return str(e.value).replace(str(f), "s.yaml")


def _cli(*argv):
    from xensim.cli._main import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["explore", *argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_loads(path, capsys):
    sc = load_scenario(path)
    assert isinstance(sc, Scenario) and sc.name == path.stem and sc.source == str(path)
    assert sc.cpus and all(isinstance(op, ScenarioOp) for ops in [sc.setup] + sc.cpus
                           for op in ops)
    assert all(op.op in SCENARIO_OPS for ops in [sc.setup] + sc.cpus for op in ops)
    assert capsys.readouterr().err == ""            # no deprecated spelling shipped


def test_loaded_values_and_defaults(tmp_path):
    sc = load_scenario(_write(tmp_path, BASE))
    assert (sc.name, sc.design, sc.version, sc.faithful, sc.memory, sc.end) == \
        ("s", "xen-4.1", Release.R4_8, False, 64 << 20, "destroy")
    assert sc.domains == [("a", 2)] and sc.setup == []
    assert sc.cpus[0] == [ScenarioOp(op="map-4k", domain="a", superpage=1, frame=3, table=5)]
    assert sc.cpus[1][0] == ScenarioOp(op="map", domain="a", superpage=0, rw=True, table=None,
                                       frame=0, by=None)
    sc = load_scenario(_write(tmp_path, BASE + 'hypervisor: {version: "4.1", faithful: true}\n'
                                               "end: none\n"))
    assert (sc.version, sc.faithful, sc.end) == (Release.R4_1, True, "none")


def test_4k_operations_run_under_the_explorer(tmp_path):
    rc, out, err = _cli(str(_write(tmp_path, BASE)), "--scheduler", "round-robin")
    assert (rc, err) == (0, "")
    assert "violations: 0" in out


@pytest.mark.parametrize("old, new", [("map4k", "map-4k"), ("unmap4k", "unmap-4k")])
def test_old_spelling_is_accepted_with_one_warning(tmp_path, capsys, old, new):
    f = _write(tmp_path, BASE.replace(f"op: {new}", f"op: {old}"))
    sc = load_scenario(f)
    assert new in [op.op for ops in sc.cpus for op in ops]
    line, where = (7, "cpus[0][0]") if new == "map-4k" else (8, "cpus[1][1]")
    assert capsys.readouterr().err == (f"xensim: warning: {f}:{line}: {where}.op: "
                                       f"'{old}' is deprecated; write '{new}'\n")


def test_old_spelling_on_the_command_line_warns_once_and_runs(tmp_path):
    f = _write(tmp_path, BASE.replace("op: map-4k", "op: map4k"))
    rc, out, err = _cli(str(f), "--scheduler", "round-robin")
    assert rc == 0 and "violations: 0" in out
    assert err == f"xensim: warning: {f}:7: cpus[0][0].op: 'map4k' is deprecated; write 'map-4k'\n"


@pytest.mark.parametrize("change, expected", [
    (("op: map-4k,", "op: jump,"),
     "s.yaml:7: cpus[0][0].op: bad choice 'jump'; choose from: map, unmap, remap, map-4k, "
     "unmap-4k, mark, unmark, destroy, map-grant, unmap-grant, pin, unpin, set-entry, "
     "decrease-reservation"),
    (("op: map-4k, domain: a,", "op: map-4k,"),
     "s.yaml:7: cpus[0][0]: missing required key 'domain'"),
    (("{op: map-4k,", "{opp: map-4k,"),
     "s.yaml:7: cpus[0][0].opp: unknown key 'opp' (did you mean 'op'?); allowed keys: op, "
     "domain, superpage, rw, table, frame, by, vcpu, pt, index, to"),
    (("domain: a, superpage: 1, frame: 3, table: 5}]\n  - [",
      "domain: b, superpage: 1, frame: 3, table: 5}]\n  - ["),
     "s.yaml:7: cpus[0][0].domain: no domain named 'b'"),
    (("{op: map, domain: a, superpage: 0}", "{op: map, domain: a, superpage: 0, by: z}"),
     "s.yaml:8: cpus[1][0].by: no domain named 'z'"),
    (("superpage: 1, frame: 3, table: 5}]\n  - [", "superpage: -1, frame: 3, table: 5}]\n  - ["),
     "s.yaml:7: cpus[0][0].superpage: domain 'a' has superpages 0..1, not -1"),
    (("frame: 3, table: 5}]\n  - [", "frame: 512, table: 5}]\n  - ["),
     "s.yaml:7: cpus[0][0].frame: a frame within the superpage: 0..511, got 512"),
    (("superpages: 2}", "superpages: 0}"),
     "s.yaml:5: domains[0].superpages: must be at least 1, got 0"),
    (("  - {name: a, superpages: 2}\n", "  - {name: a, superpages: 2}\n  - {name: a}\n"),
     "s.yaml:6: domains[1].name: domain name 'a' is used twice"),
    (("design: xen-4.1", "design: xen-9"),
     "s.yaml:2: design: unknown design 'xen-9'; choose from: per-mapping, pageinfo-count, "
     "superpage-info, xen-4.1, sketch, none"),
    (("memory: 64MiB", "memory: 64MiB\nhypervisor: {version: 4.10}"),
     "s.yaml:4: hypervisor.version: bad choice 4.10; choose from: 4.1, 4.5, 4.7, 4.8, 4.22 (quote "
     "the version, e.g. \"4.8\": YAML reads 4.10 as the number 4.1)"),
    (("superpages: 2}", "superpages: 2, vcpus: 0}"),
     "s.yaml:5: domains[0].vcpus: a domain has 1 to 64 vCPUs, got 0"),
    (("superpages: 2}", "superpages: 2, vcpus: 65}"),
     "s.yaml:5: domains[0].vcpus: a domain has 1 to 64 vCPUs, got 65"),
    (("{op: map, domain: a, superpage: 0}", "{op: map, domain: a, superpage: 0, vcpu: 1}"),
     "s.yaml:8: cpus[1][0].vcpu: domain 'a' has vCPUs 0..0, not 1"),
    (("{op: map, domain: a, superpage: 0}", "{op: map, domain: a, superpage: 0, vcpu: -1}"),
     "s.yaml:8: cpus[1][0].vcpu: must not be negative, got -1"),
    (("memory: 64MiB", "memory: 64MiB\nend: later"),
     "s.yaml:4: end: bad choice 'later'; choose from: destroy, none"),
    (("memory: 64MiB", "memory: 64MiB\ncpu: []"),
     "s.yaml:4: cpu: unknown key 'cpu' (did you mean 'cpus'?); allowed keys: description, "
     "design, hypervisor, memory, domains, page_tables, setup, cpus, end, design_files, "
     "hypercall_preemptions, preemption_bound"),
])
def test_each_mistake_is_one_error_with_file_line_and_key_path(tmp_path, change, expected):
    assert _error(tmp_path, BASE.replace(*change)) == expected


def test_bad_size_names_the_key(tmp_path):
    message = _error(tmp_path, BASE.replace("memory: 64MiB", "memory: lots"))
    assert message.startswith("s.yaml:3: memory: ")


def test_a_scenario_needs_a_cpu_and_a_mapping(tmp_path):
    text = BASE.split("cpus:")[0]
    assert _error(tmp_path, text) == "s.yaml:1: cpus: a scenario needs at least one CPU"
    assert _error(tmp_path, "- just a list\n") == (
        "s.yaml:1: the top level must be a mapping (of keys such as domains: and cpus:), "
        "got a list")
    assert _error(tmp_path, "cpus: [\n") .startswith("s.yaml:2: invalid YAML: ")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_scenario(tmp_path / "nope.yaml")


# -- docs/scenarios.md ------------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"


def test_the_scenario_format_doc_names_every_key_and_operation():
    """Each field of the scenario schema (top level, hypervisor, domain, operation) and
    each operation has a row of docs/scenarios.md."""
    from dataclasses import fields
    from typing import get_args, get_type_hints
    from xensim.config import ScenarioFile
    hints = get_type_hints(ScenarioFile)
    ScenarioHypervisor, ScenarioDomain = hints["hypervisor"], get_args(hints["domains"])[0]
    text = DOC.read_text()
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| `")}
    want = ({f"`{f.name}`" for f in fields(ScenarioFile) if f.name != "hypervisor"}
            | {f"`hypervisor.{f.name}`" for f in fields(ScenarioHypervisor)}
            | {f"`{f.name}`" for f in fields(ScenarioOp)}
            | {f"`{op}`" for op in SCENARIO_OPS if op not in ("mark", "unmark", "map-4k",
                                                             "unmap-4k", "map-grant",
                                                             "unmap-grant")}
            | {"`mark` / `unmark`", "`map-4k` / `unmap-4k`", "`map-grant` / `unmap-grant`"})
    assert want - rows == set()
    assert all(f"`{f.name}`" in text for f in fields(ScenarioDomain))


def test_the_scenario_format_docs_example_loads(tmp_path):
    example = DOC.read_text().split("```yaml\n")[1].split("```")[0]
    sc = load_scenario(_write(tmp_path, example))
    assert (sc.design, sc.domains, sc.end) == ("superpage-info", [("a", 2)], "destroy")
    assert [op.superpage for ops in sc.cpus for op in ops] == [0, 0]
    assert sc.setup == [ScenarioOp(op="map", domain="a", superpage=1, table=0)]


def test_two_cpus_may_not_run_one_vcpu(tmp_path):
    """A domain of several vCPUs: each of its vCPUs runs on one CPU (a vCPU is one
    thread of execution); by default CPU c runs vCPU c modulo the domain's vCPUs."""
    text = BASE.replace("superpages: 2}", "superpages: 2, vcpus: 2}")
    sc = load_scenario(_write(tmp_path, text))
    assert sc.vcpus == {"a": 2}
    bad = text.replace("{op: map, domain: a, superpage: 0}",
                       "{op: map, domain: a, superpage: 0, vcpu: 0}")
    assert _error(tmp_path, bad) == ("s.yaml:8: cpus[1][0]: vCPU 0 of domain 'a' is run by "
                                     "CPU 0 already: one vCPU runs on one CPU")
