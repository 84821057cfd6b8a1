"""`xensim run` with a simulation: the comparison first, then the overhead and the machine;
JSON, CSV, Markdown; --out (config.yaml, results.json, results.csv); --quiet; exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from xensim import load_config
from xensim.cli._main import main

CHURN = ("workload: {kind: churn, iterations: 5}\n"
         "domains: [{name: g, memory: 2MiB}]\n")


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def write(tmp_path, text: str, name: str = "c.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_default_run_compares_every_design_first(capsys):
    rc, out, err = run(capsys, "run")
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == ("Comparison on teaching: random workload, 300 operations on 2 domains, "
                        "seed 1; Xen 4.8")
    assert lines[1].split() == ["design", "hypercalls", "errors", "get_page", "put_page",
                                "get_type", "put_type", "0->1", "1->0", "fast", "TLB", "flush", "metadata",
                                "%", "of", "RAM", "modelled", "audit"]
    designs = [line.split()[0] for line in lines[3:9]]
    assert designs == ["per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch",
                       "none"]
    for line in lines[3:9]:
        assert line.split()[-1] == "clean"
    # then the per-operation table, the overhead and the machine, as before
    assert "\nPer operation\n" in out
    assert out.index("Per operation") < out.index("Refcount metadata on teaching: 3.00 GiB of RAM")
    assert out.index("Refcount metadata on teaching") < out.index("\nMachine as booted, before any domain")


def test_default_run_json(capsys):
    rc, out, _ = run(capsys, "run", "--format", "json")
    assert rc == 0
    d = json.loads(out)
    assert list(d) == ["machine", "overhead", "comparison"]
    c = d["comparison"]
    assert c["seed"] == 1 and c["ops"] == 300 and c["audit_every"] == 100
    assert c["workload"]["kind"] == "random" and c["workload"]["steps"] == 300
    assert [x["name"] for x in c["domains"]] == ["web", "db"]
    assert [r["design"] for r in c["designs"]] == ["per-mapping", "pageinfo-count",
                                                    "superpage-info", "xen-4.1", "sketch", "none"]
    assert d["overhead"]["machine"] == "teaching"         # the old keys are unchanged


def test_csv_is_the_comparison_table(capsys, tmp_path):
    rc, out, _ = run(capsys, "run", write(tmp_path, CHURN + "compare: [xen-4.1]\n"),
                     "--format", "csv")
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["design", "hypercalls", "errors", "get_page", "put_page",
                             "get_page_type", "put_page_type", "slow_get", "slow_put", "fast",
                             "tlb_flushes", "metadata_bytes", "metadata_percent", "modelled_ns", "audit"]
    assert rows == [{"design": "xen-4.1", "hypercalls": "10", "errors": "-",
                     "get_page": str(514 * 5), "put_page": str(514 * 5),
                     "get_page_type": str(512 * 5), "put_page_type": str(512 * 5),
                     "slow_get": "5", "slow_put": "5", "fast": "0", "tlb_flushes": "0",
                     "metadata_bytes": "12288",
                     "metadata_percent": rows[0]["metadata_percent"],
                     "modelled_ns": rows[0]["modelled_ns"], "audit": "clean"}]
    assert float(rows[0]["modelled_ns"]) == pytest.approx(2052 * 5 * 4.8 + 10 * 5.6)


def test_markdown(capsys, tmp_path):
    rc, out, _ = run(capsys, "run", write(tmp_path, CHURN + "compare: [xen-4.1]\n"),
                     "--format", "md")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == ("### Comparison on teaching: churn workload, 10 operations on "
                        "1 domain, seed 0; Xen 4.8")
    assert any(line.startswith("| xen-4.1 | 10 | - | 2,570 | 2,570 | 2,560 | 2,560 | 5 | 5 | 0 |")
               for line in lines)
    assert "### Per operation" in lines and "### Machine as booted, before any domain (each design above ran on a fresh copy of it)" in lines


def test_out_writes_config_results_json_and_csv_and_reruns_identically(capsys, tmp_path):
    cfg = write(tmp_path, "workload: {kind: random, steps: 60, small_slots: 2}\n"
                          "domains: [{name: a, memory: 8MiB, count: 2}]\nseed: 9\n"
                          "compare: [xen-4.1]\naudit_every: 20\n")
    first, again = tmp_path / "first", tmp_path / "again"
    rc, out, _ = run(capsys, "run", cfg, "--out", str(first))
    assert rc == 0
    assert sorted(p.name for p in first.iterdir()) == ["config.yaml", "results.csv",
                                                       "results.json"]
    assert out.rstrip().endswith(f"wrote {first / 'config.yaml'}, {first / 'results.json'} "
                                 f"and {first / 'results.csv'}")
    resolved = load_config(first / "config.yaml")
    assert resolved.workload.kind == "random" and resolved.workload.steps == 60
    assert resolved.workload.mix.map == 4.0 and resolved.compare == ["xen-4.1"]
    assert resolved.domain_specs() == [("a-1", 8 << 20), ("a-2", 8 << 20)]
    assert resolved.seed == 9 and resolved.audit_every == 20
    # the resolved config runs the same operations to the same results
    rc, _, _ = run(capsys, "run", str(first / "config.yaml"), "--out", str(again), "--quiet")
    assert rc == 0
    a = json.loads((first / "results.json").read_text())
    b = json.loads((again / "results.json").read_text())
    assert a["comparison"] == b["comparison"]
    assert (first / "results.csv").read_text() == (again / "results.csv").read_text()
    assert (first / "results.csv").read_text().startswith("design,hypercalls,errors,")


def test_without_a_workload_run_is_as_before(capsys, tmp_path):
    rc, out, _ = run(capsys, "run", write(tmp_path, "machine: {preset: teaching}\n"),
                     "--format", "json", "--out", str(tmp_path / "o"))
    assert rc == 0
    assert list(json.loads(out)) == ["machine", "overhead"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "config.yaml", "results.csv", "results.json"]
    assert (tmp_path / "o" / "results.csv").read_text().startswith(
        "name,unit,bytes,human,percent_of_ram\n")
    assert "workload" not in (tmp_path / "o" / "config.yaml").read_text()


def test_no_progress_bar_off_a_terminal(capsys, tmp_path):
    rc, _, err = run(capsys, "run", write(tmp_path, CHURN))
    assert rc == 0 and err == ""


@pytest.mark.parametrize("text, expected", [
    ("workload:\n  kind: script\n  script:\n    - {domain: ghost, op: map, superpage: 0}\n",
     "{f}:4: workload.script[0].domain: no domain named 'ghost'; the domains are: guest"),
    ("workload: {kind: churn, steps: 3}\n",
     "{f}:1: workload.steps: 'steps' does not apply to a churn workload (it takes superpages, "
     "writable, iterations, mark)"),
    ("compare: [xen-4.1, xen-5]\n",
     "{f}:1: compare[1]: unknown design 'xen-5'; choose from: per-mapping, pageinfo-count, "
     "superpage-info, xen-4.1, sketch, none"),
    ("compare: [xen-4.1]\ndomains: [{memory: 4GiB}]\n", None),
])
def test_config_errors_are_one_line_exit_2(capsys, tmp_path, text, expected):
    f = write(tmp_path, text)
    rc, out, err = run(capsys, "run", f)
    assert rc == 2 and out == "" and err.count("\n") == 1
    if expected is None:
        assert err.startswith(f"xensim: error: {f}:2: domains[0].memory: domain 'guest' "
                              f"(4.00 GiB) does not fit on teaching")
    else:
        assert err == "xensim: error: " + expected.format(f=f) + "\n"


def test_a_crashed_design_exits_1(capsys, tmp_path, monkeypatch):
    from xensim.designs._xen41 import Xen41

    def boom(self, *a):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(Xen41, "get_superpage", boom)
    monkeypatch.setattr(Xen41, "get_superpages", lambda self, mfns, d, rw: 0)
    rc, out, err = run(capsys, "run", write(tmp_path, CHURN + "compare: [xen-4.1]\n"))
    assert rc == 1
    assert "crashed" in out
    assert err == ("xensim: design xen-4.1 crashed: RuntimeError at op 1 (g: map superpage 0 "
                   "at slot 0 rw): simulated bug\n")


def test_quiet_is_accepted(capsys, tmp_path):
    rc, out, err = run(capsys, "run", write(tmp_path, CHURN), "--quiet")
    assert rc == 0 and err == "" and out.startswith("Comparison on teaching: churn workload")


def test_default_run_says_mark_unsupported_and_splits_type_refs_per_mapping(capsys):
    """The default run: per-mapping and sketch refuse the workload's marks (EOPNOTSUPP, the
    answer of Xen 4.8's do_mmuext_op with superpages off), and say so; per-mapping's
    get_page_type per 2 MiB mapping is exactly 512."""
    rc, out, _ = run(capsys, "run")
    lines = out.splitlines()
    for design in ("per-mapping", "sketch"):
        assert (f"  {design}: MARK unsupported (no MARK_SUPER / UNMARK_SUPER in this design): "
                "the workload's 18 mark/unmark operations failed with EOPNOTSUPP, as with "
                "superpages off") in lines
    assert not any(ln.startswith("  xen-4.1: MARK") for ln in lines)
    at = lines.index("Per operation")
    assert lines[at + 1].split() == ["design", "ops", "failed", "2M", "mappings",
                                     "get_type/2M", "map", "4K", "mappings", "get_type/4K",
                                     "map", "slow/op", "modelled/op"]
    pm = lines[at + 3].split()
    assert pm[:6] == ["per-mapping", "300", "18", "106", "512", "156"]
    d = json.loads(run(capsys, "run", "--format", "json")[1])["comparison"]["designs"]
    by = {r["design"]: r for r in d}
    assert by["per-mapping"]["type_refs_per_2m_mapping"] == 512
    assert by["per-mapping"]["mark_unsupported"] == 18
    assert by["per-mapping"]["mark_errno"] == "EOPNOTSUPP"
    assert by["xen-4.1"]["supports_mark"] is True and by["xen-4.1"]["mark_unsupported"] == 0


# --compare


def test_compare_option_replaces_the_configs_compare(tmp_path, capsys):
    cfg = write(tmp_path, CHURN + "compare: [xen-4.1, sketch]\n")
    rc, out, err = run(capsys, "run", cfg, "--compare", "per-mapping", "--format", "json",
                       "--out", str(tmp_path / "o"))
    assert (rc, err) == (0, "")
    assert [r["design"] for r in json.loads(out)["comparison"]["designs"]] == ["per-mapping"]
    assert load_config(tmp_path / "o" / "config.yaml").compare == ["per-mapping"]


def test_compare_option_names_a_design_of_the_configs_design_files(tmp_path, capsys):
    from xensim.designs import REGISTRY, _loading
    saved = dict(REGISTRY), dict(_loading._FILES), dict(_loading._ORIGIN)
    design = Path(__file__).resolve().parents[2] / "examples" / "designs" / "lock_bit.py"
    cfg = write(tmp_path, CHURN + f"design_files: ['{design}']\n")
    try:
        rc, out, err = run(capsys, "run", cfg, "--compare", "lock-bit,xen-4.1",
                           "--format", "json")
    finally:                                       # the registry as it was
        for state, old in zip((REGISTRY, _loading._FILES, _loading._ORIGIN), saved):
            state.clear()
            state.update(old)
    assert (rc, err) == (0, "")
    assert [r["design"] for r in json.loads(out)["comparison"]["designs"]] == ["lock-bit",
                                                                              "xen-4.1"]


@pytest.mark.parametrize("value, message", [
    ("nope", "--compare: unknown design 'nope'; choose from per-mapping, pageinfo-count, "
             "superpage-info, xen-4.1, sketch, none"),
    ("xen-4.1,xen-4.1", "--compare: design 'xen-4.1' is listed twice"),
    (",", "--compare: an empty design name at position 1 of ','"),
])
def test_compare_option_errors(tmp_path, capsys, value, message):
    rc, out, err = run(capsys, "run", write(tmp_path, CHURN), "--compare", value,
                       "--out", str(tmp_path / "o"))
    assert (rc, out) == (2, "") and err.count("\n") == 1     # (designs loaded since: listed too)
    assert err.startswith(f"xensim: error: {message}")
    assert not (tmp_path / "o").exists()


def test_the_count_columns_say_what_they_mean_for_a_design_without_a_count(capsys):
    """per-mapping keeps no count: its 0->1 is every mapping, and the table says so; none
    has no PV superpages at all."""
    from xensim.cli._main import main
    assert main(["run", "--quiet"]) == 0
    notes = [ln.strip() for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")]
    assert ("per-mapping: no count kept: 0->1 and 1->0 are every 2 MiB mapping and unmapping "
            "(each takes or drops the 512 frames' references), fast is 0") in notes
    assert ("none: no PV superpages: no superpage count, 0->1, 1->0 and fast stay 0 (a 2 MiB "
            "mapping is an L1 table's 512 entries)") in notes
