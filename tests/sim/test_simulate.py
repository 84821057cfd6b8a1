"""Running workloads on the designs: exact figures, determinism, the same operations on
every design, the auditor's verdict, crashed designs, the cost model, the step form.

Every mmu_update request also takes (and drops) one general reference on the page
table it writes to (Xen's do_mmu_update does the same), so a map or unmap of one
superpage entry is 512 + 1 get_page when it is a slow path, 1 when it is fast.
"""

from __future__ import annotations

import errno

import pytest

from xensim import ConfigError, parse_config
from xensim.config._config import build_memory_map
from xensim.sim._costmodel import CostModel
from xensim.xen._hypercall import errno_name
from xensim.sim._simulate import run_comparison, run_design

ALL = ["per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch"]
EOPNOTSUPP = errno_name(-errno.EOPNOTSUPP)       # how the hypercall statistics name it


def compare(text: str, designs=None):
    cfg = parse_config(text + (f"compare: [{', '.join(designs)}]\n" if designs else ""))
    return run_comparison(cfg, build_memory_map(cfg))


def one(text: str, design: str = "xen-4.1"):
    return compare(text, [design]).run(design)


def test_churn_without_mark_is_the_slow_path_every_time():
    n = 25
    r = one(f"workload: {{kind: churn, iterations: {n}}}\ndomains: [{{memory: 4MiB}}]\n")
    assert r.status == "ok" and r.ops == 2 * n and r.ops_failed == 0
    assert r.hypercalls == {"mmu_update": {"calls": 2 * n, "errors": {}}}
    assert r.errors == {}
    assert r.refcount == {"get_page": 514 * n, "put_page": 514 * n,
                          "get_page_type": 512 * n, "put_page_type": 512 * n}
    assert r.superpage == {"slow_get": n, "slow_put": n, "fast_get": 0, "fast_put": 0}
    assert r.mappings == n and r.type_refs_per_mapping == 512
    assert r.slow_transitions == 2 * n and r.slow_per_op == 1.0
    assert r.estimate.frame_ops == 2052 * n and r.estimate.cmpxchg == 2 * n
    assert r.estimate.ns == pytest.approx(2052 * n * 4.8 + 2 * n * 5.6)
    assert r.audit.ok and r.audit.audits == 1
    assert r.leaked_frames == 0 and r.zombie_domains == 0


def test_churn_with_mark_takes_the_fast_path():
    n = 25
    r = one(f"workload: {{kind: churn, iterations: {n}, mark: true}}\n"
            "domains: [{memory: 4MiB}]\n")
    assert r.ops == 2 * n + 2 and r.ops_failed == 0
    assert r.hypercalls == {"mmu_update": {"calls": 2 * n, "errors": {}},
                            "mmuext_op": {"calls": 2, "errors": {}}}
    # the mark takes the 512 references once; the unmark drops them
    assert r.refcount == {"get_page": 512 + 2 * n, "put_page": 512 + 2 * n,
                          "get_page_type": 512, "put_page_type": 512}
    # xen-4.1 counts get/put_superpage only: the mark's 512-frame take is not a slow_get
    assert r.superpage == {"slow_get": 0, "slow_put": 0, "fast_get": n, "fast_put": n}
    assert r.slow_per_op == 0 and r.by_op == {"mark": {"ops": 1, "failed": 0},
                                               "map": {"ops": n, "failed": 0},
                                               "unmap": {"ops": n, "failed": 0},
                                               "unmark": {"ops": 1, "failed": 0}}
    assert r.audit.ok and r.leaked_frames == 0


def test_churn_with_mark_on_designs_without_mark():
    c = compare("workload: {kind: churn, iterations: 10, mark: true}\n"
                "domains: [{memory: 4MiB}]\n", ["per-mapping", "xen-4.1"])
    pm = c.run("per-mapping")
    assert pm.errors == {EOPNOTSUPP: 2} and pm.ops_failed == 2
    assert pm.hypercalls["mmuext_op"] == {"calls": 2, "errors": {EOPNOTSUPP: 2}}
    assert pm.failures == [f"op 1: guest: mark superpage 0: {EOPNOTSUPP}",
                           f"op 22: guest: unmark superpage 0: {EOPNOTSUPP}"]
    assert pm.superpage["slow_get"] == 10 and pm.refcount["get_page_type"] == 5120
    assert c.run("xen-4.1").superpage["slow_get"] == 0


def test_shared_per_mapping_takes_512_per_mapping_xen41_once():
    s, m = 3, 20
    c = compare(f"workload: {{kind: shared, superpages: {s}, mappings: {m}}}\n"
                "domains: [{memory: 8MiB}]\n", ["per-mapping", "xen-4.1"])
    pm, x = c.run("per-mapping"), c.run("xen-4.1")
    assert pm.mappings == x.mappings == s * m
    assert pm.refcount["get_page_type"] == 512 * s * m
    assert x.refcount["get_page_type"] == 512 * s
    # one batch of s entries per operation: s table references each
    assert pm.refcount["get_page"] == 512 * s * m + 2 * s * m
    assert x.refcount["get_page"] == 512 * s + 2 * s * m
    assert pm.superpage == {"slow_get": s * m, "slow_put": s * m, "fast_get": 0, "fast_put": 0}
    assert x.superpage == {"slow_get": s, "slow_put": s, "fast_get": s * (m - 1),
                           "fast_put": s * (m - 1)}
    assert pm.type_refs_per_mapping == 512 and x.type_refs_per_mapping == 512 / m
    assert pm.metadata_bytes == 0 and pm.estimate.cmpxchg == 0     # no count word to update
    assert x.estimate.cmpxchg == 2 * s * m
    assert pm.audit.ok and x.audit.ok


def test_map_all_on_two_domains():
    r = one("workload: {kind: map-all, rounds: 2}\n"
            "domains: [{name: a, memory: 64MiB}, {name: b, memory: 6MiB}]\n")
    sp = 32 + 3
    assert r.ops == 8 and r.mappings == 2 * sp
    assert r.superpage == {"slow_get": 2 * sp, "slow_put": 2 * sp, "fast_get": 0, "fast_put": 0}
    assert r.refcount["get_page_type"] == 512 * 2 * sp
    assert r.refcount["get_page"] == 512 * 2 * sp + 2 * 2 * sp
    assert r.hypercalls == {"mmu_update": {"calls": 8, "errors": {}}}


def test_metadata_of_the_design_on_the_machine():
    r = one("workload: {kind: map-all}\ndomains: [{memory: 2MiB}]\n")
    # teaching: 3 superpage-table chunks of 512 entries * 8 B; 3,220,831,232 B of RAM
    assert r.metadata_bytes == 12288
    assert r.metadata_percent == 100 * 12288 / 3220831232


def test_cost_model_prices_are_configurable():
    r = one("workload: {kind: churn, iterations: 4}\ndomains: [{memory: 2MiB}]\n"
            "cost_model: {frame_atomic_ns: 10, cmpxchg_ns: 100, hypercall_ns: 1000}\n")
    assert r.estimate.frame_ops == 2052 * 4 and r.estimate.hypercalls == 8
    assert r.estimate.ns == 2052 * 4 * 10 + 8 * 100 + 8 * 1000
    est = CostModel().estimate({"get_page": 2, "put_page": 1}, {"fast_get": 3}, 5,
                               has_count_word=False)
    assert (est.frame_ops, est.cmpxchg, est.hypercalls, est.ns) == (3, 0, 5, 3 * 4.8)


RANDOM = ("workload: {kind: random, steps: 250, small_slots: 3}\n"
          "domains: [{name: a, memory: 16MiB}, {name: b, memory: 8MiB}]\n"
          "audit_every: 50\n")


def test_determinism_same_seed_same_results():
    first = compare(RANDOM + "seed: 11\n").to_dict()
    again = compare(RANDOM + "seed: 11\n").to_dict()
    other = compare(RANDOM + "seed: 12\n").to_dict()
    assert first == again
    assert first["designs"][0]["ops_digest"] != other["designs"][0]["ops_digest"]
    assert first["designs"][0]["refcount"] != other["designs"][0]["refcount"]


def test_every_design_sees_the_same_operations_and_audits_clean():
    c = compare(RANDOM + "seed: 5\n", ALL)
    ran = [r for r in c.runs if r.status == "ok"]
    assert [r.design for r in ran] == ALL
    assert len({r.ops_digest for r in ran}) == 1
    for r in ran:
        assert r.ops == 250 and r.guest_errors == 0, r.design
        assert r.audit.ok and r.audit.audits == 250 // 50 + 1, (r.design, r.audit)
        assert r.leaked_frames == 0 and r.zombie_domains == 0, r.design
        assert sum(v["ops"] for v in r.by_op.values()) == 250
        # only MARK/UNMARK can fail, and only on designs without them
        marks = r.by_op.get("mark", {}).get("ops", 0) + r.by_op.get("unmark", {}).get("ops", 0)
        supports = r.design not in ("per-mapping", "sketch")
        assert r.ops_failed == (0 if supports else marks), r.design
        assert r.errors == ({} if supports else {EOPNOTSUPP: marks}), r.design


def test_guest_kernel_refusals_are_counted_not_fatal():
    r = one("domains: [{name: g, memory: 4MiB}]\nworkload:\n  kind: script\n  script:\n"
            "    - {domain: g, op: balloon-out, superpage: 1}\n"
            "    - {domain: g, op: map, superpage: 1}\n"
            "    - {domain: g, op: remap, slot: 1}\n"
            "    - {domain: g, op: balloon-in, superpage: 1}\n"
            "    - {domain: g, op: map, superpage: 1}\n"
            "    - {domain: g, op: mark, superpage: 1}\n"
            "    - {domain: g, op: mark, superpage: 1}\n")
    assert r.status == "ok" and r.ops == 7 and r.guest_errors == 2 and r.ops_failed == 3
    assert r.failures[0] == ("op 2: g: map superpage 1 at slot 1 rw: refused by the guest "
                             "kernel: gfn 0x200 is not populated")
    assert r.failures[1].startswith("op 3: g: remap slot 1 rw: refused by the guest kernel: "
                                    "nothing mapped at")
    assert r.failures[2] == "op 7: g: mark superpage 1: EINVAL"
    assert r.errors == {"EINVAL": 1}
    assert r.hypercalls["memory_op"] == {"calls": 2, "errors": {}}
    # the guest keeps superpage 1 mapped and marked: destroying it frees everything
    assert r.audit.ok and r.leaked_frames == 0 and r.zombie_domains == 0


def test_a_crashing_design_is_reported_and_the_others_run(monkeypatch):
    from xensim.designs._xen41 import Xen41
    calls = []

    def boom(self, mfn, d, rw):
        calls.append(mfn)
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(Xen41, "get_superpage", boom)
    monkeypatch.setattr(Xen41, "get_superpages", lambda self, mfns, d, rw: 0)
    c = compare("workload: {kind: churn, iterations: 3}\ndomains: [{memory: 2MiB}]\n",
                ["xen-4.1", "sketch"])
    x = c.run("xen-4.1")
    assert x.status == "crashed" and c.crashed == [x]
    assert x.reason == ("RuntimeError at op 1 (guest: map superpage 0 at slot 0 rw): "
                        "simulated bug")
    assert c.run("sketch").status == "ok"


def test_a_domain_that_does_not_fit_is_a_config_error():
    cfg = parse_config("compare: [xen-4.1]\ndomains:\n  - {name: a, memory: 2GiB}\n"
                       "  - {name: huge, memory: 2GiB}\n", "big.yaml")
    with pytest.raises(ConfigError) as info:
        run_comparison(cfg, build_memory_map(cfg))
    msg = str(info.value)
    assert msg.startswith("big.yaml:4: domains[1].memory: domain 'huge' (2.00 GiB) does not fit "
                          "on teaching (3.00 GiB of RAM, ")
    assert "populate_physmap gave " in msg and "\n" not in msg


def test_run_design_alone_uses_the_hypervisor_design():
    cfg = parse_config("workload: {kind: churn, iterations: 2}\ndomains: [{memory: 2MiB}]\n")
    assert cfg.designs() == ["xen-4.1"]
    r = run_design(cfg, build_memory_map(cfg), "xen-4.1")
    assert r.status == "ok" and r.superpage["slow_get"] == 2
    with pytest.raises(ValueError, match="unknown superpage design 'no-such'"):
        run_design(cfg, build_memory_map(cfg), "no-such")


def test_comparison_to_dict_shape():
    c = compare("workload: {kind: churn, iterations: 2}\ndomains: [{name: g, memory: 2MiB}]\n"
                "seed: 4\naudit_every: 1\n", ["xen-4.1"])
    d = c.to_dict()
    assert list(d) == ["seed", "workload", "domains", "cost_model", "audit_every", "ops",
                       "designs"]
    assert d["workload"] == {"kind": "churn", "superpages": 1, "writable": True,
                             "iterations": 2, "mark": False}
    assert d["domains"] == [{"name": "g", "memory": 2 << 20}] and d["ops"] == 4
    r = d["designs"][0]
    assert list(r) == ["design", "status", "reason", "description", "ops", "ops_failed",
                       "guest_errors", "by_op", "mappings", "hypercalls", "refcount",
                       "tlb_flushes", "superpage", "slow_transitions", "slow_per_op", "fast_updates",
                       "entry_updates", "type_refs_per_mapping", "metadata", "model", "audit", "teardown",
                       "ops_digest", "failures", "type_refs_per_2m_mapping", "mappings_4k",
                       "type_refs_per_4k_mapping", "supports_mark", "mark_unsupported",
                       "mark_errno", "xen", "release", "hypothetical"]
    assert (r["xen"], r["release"], r["hypothetical"]) == ("4.8", "Xen 4.8", False)
    assert r["hypercalls"] == {"calls": 4, "errors": {},
                               "by_call": {"mmu_update": {"calls": 4, "errors": {}}}}
    assert r["audit"] == {"ok": True, "audits": 5, "differences": 0, "first": [],
                          "at_op": None}
    assert r["model"]["ns_per_op"] == r["model"]["ns"] / 4
    assert r["entry_updates"] == {"fast_path": 0, "slow_path": 2}     # two maps, two unmaps


# --------------------------------------------------------------------------
# get_page_type per 2 MiB and per 4 KiB mapping; MARK unsupported
# --------------------------------------------------------------------------

DEFAULT_RANDOM = ("workload: {kind: random, steps: 300}\nseed: 1\n"
                  "domains: [{name: a, memory: 128MiB}, {name: b, memory: 128MiB}]\n")


def test_per_mapping_takes_exactly_512_type_refs_per_2m_mapping_in_a_mixed_workload():
    """per-mapping (Xen 2008's get_superpage: get_page_and_type on each of the 512 frames):
    in the random workload (4 KiB maps, remaps and marks too) the whole workload's
    get_page_type per mapping is not 512, the map operations' own is exactly 512."""
    r = one(DEFAULT_RANDOM, "per-mapping")
    assert r.mappings > 0 and r.mappings_4k > 0
    assert r.map_type_refs == 512 * r.mappings
    assert r.type_refs_per_2m_mapping == 512
    assert r.type_refs_per_mapping != 512                      # the mixed figure
    # a 4 KiB mapping takes one get_page_type if writable, none if read-only
    assert 0 < r.type_refs_per_4k_mapping < 1
    d = r.to_dict()
    assert d["type_refs_per_2m_mapping"] == 512 and d["mappings_4k"] == r.mappings_4k


def test_get_page_from_l1e_writable_takes_one_type_ref_read_only_none_4_8():
    """get_page_from_l1e (4.8): a writable L1 entry takes get_page_and_type(PGT_writable_page),
    a read-only one get_page only."""
    base = "domains: [{name: g, memory: 2MiB}]\nworkload: {kind: script, script: [{domain: g, %s}]}\n"
    rw = one(base % "op: map-4k, superpage: 0, slot: 0, frame: 0, count: 8, writable: true")
    ro = one(base % "op: map-4k, superpage: 0, slot: 0, frame: 0, count: 8, writable: false")
    assert (rw.mappings_4k, rw.map_4k_type_refs, rw.type_refs_per_4k_mapping) == (8, 8, 1)
    assert (ro.mappings_4k, ro.map_4k_type_refs, ro.type_refs_per_4k_mapping) == (8, 0, 0)
    assert rw.mappings == 0 and rw.type_refs_per_2m_mapping is None


@pytest.mark.parametrize("version, errno_text", [("4.8", "EOPNOTSUPP"), ("4.1", "ENOSYS")])
def test_do_mmuext_op_mark_super_unsupported_enosys_4_1_eopnotsupp_4_8(version, errno_text):
    """do_mmuext_op MMUEXT_MARK_SUPER with superpages off: -ENOSYS in 4.1, -EOPNOTSUPP in
    4.8: the answer of a design without MARK."""
    text = (f'hypervisor: {{version: "{version}"}}\n'
            "workload: {kind: churn, iterations: 3, mark: true}\n")
    for design in ("per-mapping", "sketch"):
        r = one(text, design)
        assert not r.supports_mark and r.mark_unsupported == 2 and r.mark_errno == errno_text
        assert r.errors == {errno_text: 2}
    x = one(text, "xen-4.1")
    assert x.supports_mark and x.mark_unsupported == 0 and x.mark_errno is None


@pytest.mark.parametrize("version", ["4.1", "4.5", "4.7", "4.8"])
def test_entry_updates_count_mod_entry_fast_and_slow_paths(version):
    """mod_l1_entry / mod_l2_entry in a run: a map validates (slow path), a remap to the
    same rights rewrites an identical entry (fast path in every release), a remap that
    flips RW revalidates (slow path: RW is compared in L1 and, with superpages on, in L2
    from 4.1 to 4.8 outside faithful mode); unmaps take neither path."""
    script = ("workload:\n  kind: script\n  script:\n"
              "    - {domain: g, op: map, superpage: 0, slot: 0}\n"
              "    - {domain: g, op: remap, slot: 0, writable: true}\n"
              "    - {domain: g, op: remap, slot: 0, writable: false}\n"
              "    - {domain: g, op: map-4k, superpage: 1, slot: 1, frame: 0, count: 2}\n"
              "    - {domain: g, op: remap-4k, slot: 1, frame: 0, count: 2, writable: true}\n"
              "    - {domain: g, op: remap-4k, slot: 1, frame: 0, count: 2, writable: false}\n"
              "    - {domain: g, op: unmap, slot: 0}\n"
              f"domains: [{{name: g, memory: 4MiB}}]\nhypervisor: {{version: '{version}'}}\n")
    r = compare(script, ["xen-4.1"]).run("xen-4.1")
    assert r.status == "ok" and r.ops_failed == 0, r.failures
    assert r.entry_updates == {"fast_path": 1 + 2, "slow_path": 1 + 1 + 2 + 2}


# -- the step form: sim.start / Session.steps -----------------------------------------

def test_the_step_form_replays_what_run_design_runs():
    from xensim.sim import Step, start
    text = ("workload: {kind: random, steps: 60}\n"
            "domains: [{name: a, memory: 16MiB}, {name: b, memory: 8MiB}]\n")
    cfg = parse_config(text)
    mm = build_memory_map(cfg)
    r = run_design(cfg, mm, "sketch")
    s = start(cfg, mm, "sketch")
    assert set(s.kernels) == {"a", "b"} and s.ops_done == 0
    c0 = s.counters()
    seen = []
    steps = list(s.steps(before=lambda i, op: seen.append(i)))
    assert all(isinstance(st, Step) for st in steps)
    assert [st.index for st in steps] == seen == list(range(r.ops)) and s.ops_done == r.ops
    assert sum(not st.ok for st in steps) == r.ops_failed
    assert sum(st.refused is not None for st in steps) == r.guest_errors
    assert [f"op {st.index + 1}: {st.op}: {st.why}" for st in steps if not st.ok
            ][:len(r.failures)] == r.failures
    assert sum(st.type_refs for st in steps if st.ok and st.op.op == "map") == r.map_type_refs
    c1 = s.counters()
    assert {k: c1.superpage.get(k, 0) - c0.superpage.get(k, 0) for k in r.superpage} == r.superpage
    assert s.teardown() == (r.leaked_frames, r.zombie_domains) == (0, 0)


def test_the_step_form_stops_at_a_limit_and_goes_on():
    from xensim.sim import start
    cfg = parse_config("workload: {kind: churn, iterations: 5}\ndomains: [{memory: 4MiB}]\n")
    s = start(cfg, build_memory_map(cfg), "xen-4.1")
    assert [st.index for st in s.steps(limit=3)] == [0, 1, 2] and s.ops_done == 3
    rest = list(s.steps())
    assert [st.index for st in rest] == list(range(3, 10)) and s.ops_done == 10
    assert all(st.ok and st.errno is None and st.why is None for st in rest)
    assert list(s.steps()) == []
