"""The split-driver workload (guest/_workload.py's SplitDriver): a backend mapping and
unmapping a frontend's granted frames, some inside the frontend's superpage mappings;
its figures against hand-computed values, every design, trace and inspect."""

from __future__ import annotations

from pathlib import Path

import pytest

from xensim import ConfigError, parse_config
from xensim.config import build_memory_map, load_config
from xensim.designs import design_names
from xensim.guest import DomainSpec, make_workload
from xensim.sim import run_comparison, run_design
from xensim.teach import inspect, render_inspection, trace

SMALL = Path(__file__).resolve().parents[1] / "data" / "split-driver-small.yaml"


@pytest.fixture(scope="module")
def small():
    cfg = load_config(SMALL)
    return cfg, build_memory_map(cfg)


def ops_of(cfg) -> list[str]:
    specs = [DomainSpec(n, mem) for n, mem in cfg.domain_specs()]
    wl = make_workload(cfg.workload, specs, cfg.seed)
    return [str(op) for op in wl.ops(cfg.seed)]


def test_split_driver_operations(small):
    cfg, _ = small
    assert ops_of(cfg) == [
        "front: map superpage 0 at slot 0 rw",
        "front: grant 8 to back: frame 120 of superpage 1 rw",
        "back: map-grant front's grant 8 at window 0 frame 0 rw",
        "back: unmap-grant front's grant 8 at window 0 frame 0",
        "front: end grant 8 to back",
        "front: grant 8 to back: frame 29 of superpage 1 ro",
        "back: map-grant front's grant 8 at window 0 frame 0 ro",
        "back: unmap-grant front's grant 8 at window 0 frame 0",
        "front: end grant 8 to back",
        "front: grant 8 to back: frame 104 of superpage 0 ro",
        "back: map-grant front's grant 8 at window 0 frame 0 ro",
        "front: unmap slot 0",
        "back: unmap-grant front's grant 8 at window 0 frame 0",
        "front: end grant 8 to back",
    ]


def test_split_driver_figures_by_hand_xen41_4_8(small):
    """The run's reference traffic on xen-4.1, counted by hand from the operations above
    (__gnttab_map_grant_ref / __gnttab_unmap_common_complete 4.8, create_grant_va_mapping's
    temporary reference on the backend's L1, mmu_update's on the L2):

    * map superpage 0 (0 -> 1): 512 get_page + 512 get_page_type; L2 temporary 1 + 1;
    * map-grant rw: get_page (__get_paged_frame) + get_page_type; L1 temporary 1 + 1;
    * map-grant ro (twice): get_page; L1 temporary 1 + 1;
    * unmap-grant rw: put_page_type + put_page; L1 temporary 1 + 1; ro (twice): put_page + 1 + 1;
    * unmap slot 0 (1 -> 0): 512 put_page_type + 512 put_page; L2 temporary 1 + 1.

    get_page 512 + 1 + 2 + 2 + 2 + 1 + 1 + 1 + 1 = 523; put_page 1 + 1 + 1 + 1 + 2 + 2 + 2 + 513
    = 523; get_page_type 512 + 1 = 513; put_page_type 1 + 512 = 513; 7 grant_table_op calls (the
    frontend's setup_table before its first grant, Linux's gnttab_init, then 3 maps and 3
    unmaps) and 2 mmu_update calls; slow paths 1 and 1; the grant writes and revocations
    are no hypercall."""
    cfg, mm = small
    r = run_design(cfg, mm, "xen-4.1")
    assert r.refcount == {"get_page": 523, "put_page": 523, "get_page_type": 513,
                          "put_page_type": 513}
    assert r.hypercalls == {"grant_table_op": {"calls": 7, "errors": {}},
                            "mmu_update": {"calls": 2, "errors": {}}}
    assert r.superpage == {"slow_get": 1, "slow_put": 1, "fast_get": 0, "fast_put": 0}
    assert r.audit.ok and r.leaked_frames == 0 and r.ops == 14 and r.ops_failed == 0


def test_split_driver_on_every_design():
    """Grant traffic against each design's superpage references: the same operations and
    grant calls, a clean audit, nothing leaked, on all six."""
    cfg = load_config(SMALL)
    cfg.workload.steps, cfg.workload.superpages = 120, 2
    cfg.domains = parse_config("""
domains:
  - {name: back, memory: 4MiB}
  - {name: front, memory: 8MiB, count: 2}
""").domains
    cfg.compare = design_names()
    cfg.audit_every = 10
    c = run_comparison(cfg, build_memory_map(cfg)).to_dict()["designs"]
    assert len(c) == 6
    first = c[0]
    for r in c:
        assert r["status"] == "ok" and r["audit"]["ok"] and r["teardown"]["leaked_frames"] == 0
        assert r["by_op"] == first["by_op"] and r["ops_failed"] == 0
        assert r["hypercalls"]["by_call"]["grant_table_op"] == \
            first["hypercalls"]["by_call"]["grant_table_op"]


def test_split_driver_needs_a_backend_and_a_frontend():
    cfg = parse_config("workload: {kind: split-driver}\ndomains: [{name: alone, memory: 4MiB}]")
    with pytest.raises(ConfigError, match="a backend and at least one frontend"):
        make_workload(cfg.workload, [DomainSpec("alone", 4 << 20)])


def test_split_driver_grants_at_most_the_initial_tables_refs():
    with pytest.raises(ConfigError, match="at most 2040 grants"):
        parse_config("workload: {kind: split-driver, grants: 2041}")


def test_trace_narrates_each_grant_reference(small):
    cfg, mm = small
    text = trace(cfg, mm, level="frame").text().splitlines()
    start = text.index("op 3: back: map-grant front's grant 8 at window 0 frame 0 rw")
    block = text[start:text.index("", start)]
    assert block[1] == ("  grant_table_op dom1: map_grant_ref dom2's grant 8 (mfn 0x878) host rw "
                        "at 0xffff884000000000")
    assert "    get_page_type(writable): mfn 0x878 type_info none/0 -> writable/1 validated" in block
    assert block[-1] == ("  -> 0 (okay, handle 0, dom2 grant 8 to dom1: pins hstw 1 hstr 0 devw 0 "
                         "devr 0)")


def test_inspect_shows_a_frames_grant_mappings(small):
    cfg, mm = small
    rep = inspect(cfg, mm, mfn="0x668", steps=11)
    assert rep["grants"] == [{"granter": 2, "ref": 8, "grantee": 1, "readonly": True,
                              "pins": {"hstw": 0, "hstr": 1, "devw": 0, "devr": 0},
                              "handles": [{"handle": 0, "host": True, "device": False,
                                           "rw": False}]}]
    lines = render_inspection(rep, "text").splitlines()
    i = lines.index("grants:")
    assert lines[i + 1] == ("  dom2's grant 8 to dom1 (read-only): pins hstw 0 hstr 1 devw 0 devr 0; "
                            "handle 0 host ro")
    assert rep["held_by"]["matches"]


def test_split_driver_sweep_over_grants_and_writable(tmp_path):
    """configs/sweeps/split-driver.yaml: 4 points, each on the six designs, all clean, the
    same grant calls on every design of a point."""
    import csv
    from xensim.engines import LocalEngine
    from xensim.sweep import load_sweep, run_sweep
    sw = load_sweep(Path(__file__).resolve().parents[2] / "configs" / "sweeps" / "split-driver.yaml")
    res = run_sweep(sw, tmp_path / "o", LocalEngine(1))
    assert [p.state for p in res.points] == ["ran"] * 4
    rows = list(csv.DictReader(open(tmp_path / "o" / "results.csv")))
    assert len(rows) == 24
    assert {r["design"] for r in rows} == set(design_names())
    assert {(r["status"], r["audit"], r["leaked_frames"]) for r in rows} == {("ok", "clean", "0")}
