"""Workloads: the config schema (workload:, domains:, compare:, ...), the generators of
guest operations, performing operations through the guest kernel, and the progress bar."""

from __future__ import annotations

import io
import random

import pytest

from xensim import INVALID, ConfigError, Machine, MemoryMap, audit, parse_config
from xensim.config import (GUEST_OPS, PROCESS_OPS, CostModelConfig, DomainConfig, MixConfig,
                            WorkloadConfig, resolved_config, build_memory_map)
from xensim.guest._guest import GuestError, GuestKernel
from xensim.output._progress import Progress, duration
from xensim.guest._workload import (SMALL_BASE, DomainSpec, Layout, Op, _Pool, apply,
                              make_workload, slot_va, window_va)

MiB = 1 << 20


def wl(text: str, domains=None):
    cfg = parse_config(text)
    specs = [DomainSpec(n, m) for n, m in (domains or cfg.domain_specs())]
    return make_workload(cfg.workload, specs)


def err(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "w.yaml")
    assert "\n" not in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("workload: {kind: random, steps: 1000000000000}\n",
     "w.yaml:1: workload.steps: 1,000,000,000,000 operations per design; the limit is "
     "1,000,000 (docs/workloads.md, Limits)"),
    ("domains: [{memory: 8MiB}]\nworkload:\n  kind: churn\n  superpages: 4\n  iterations: 125001\n",
     "w.yaml:5: workload.iterations: 1,000,008 operations per design; the limit is "
     "1,000,000 (docs/workloads.md, Limits)"),
    ("workload: {kind: map-all, rounds: 500001}\n",
     "w.yaml:1: workload.rounds: 1,000,002 operations per design; the limit is 1,000,000 "
     "(docs/workloads.md, Limits)"),
    ("workload: {kind: shared, superpages: 1, mappings: 2, rounds: 250001}\n",
     "w.yaml:1: workload.rounds: 1,000,004 operations per design; the limit is 1,000,000 "
     "(docs/workloads.md, Limits)"),
])
def test_workload_past_the_limit_is_refused_up_front(text, expected):
    """Counted without generating a single operation: refused at once."""
    assert err(text) == expected


@pytest.mark.parametrize("text", [
    "workload: {kind: random, steps: 1000000}\n",
    "domains: [{memory: 8MiB}]\nworkload: {kind: churn, superpages: 4, iterations: 125000}\n",
    "domains: [{memory: 8MiB}]\nworkload: {kind: churn, superpages: 4, iterations: 124999, "
    "mark: true}\n",
])
def test_workload_at_the_limit_is_accepted(text):
    assert parse_config(text).workload is not None


@pytest.mark.parametrize("text", [
    "workload: {kind: map-all, rounds: 3}\ndomains: [{name: a, memory: 1026MiB}, {memory: 2MiB}]\n",
    "workload: {kind: churn, iterations: 3, mark: true, superpages: 2}\n"
    "domains: [{name: a, memory: 8MiB}, {memory: 4MiB}]\n",
    "workload: {kind: shared, superpages: 2, mappings: 5, rounds: 2}\n"
    "domains: [{name: a, memory: 8MiB}, {memory: 4MiB}]\n",
    "workload: {kind: random, steps: 77}\n",
    "workload: {kind: script, script: [{domain: guest, op: map, superpage: 0}, "
    "{domain: guest, op: unmap, slot: 0}]}\n",
])
def test_workload_ops_counts_what_the_generator_makes(text):
    from xensim.config import workload_ops
    cfg = parse_config(text)
    w = wl(text)
    assert workload_ops(cfg.workload, [m // (2 * MiB) for _, m in cfg.domain_specs()])[0] \
        == w.total == sum(1 for _ in w.ops(0))


def test_no_workload_no_simulation():
    cfg = parse_config("")
    assert cfg.workload is None and cfg.compare is None and not cfg.simulates
    assert cfg.domains == [DomainConfig("guest", 64 * MiB, 1)]
    assert cfg.seed == 0 and cfg.audit_every == 0
    assert cfg.cost_model == CostModelConfig(4.8, 5.6, 0.0)
    assert cfg.designs() == ["xen-4.1"]


def test_kind_defaults_filled():
    w = parse_config("workload: {kind: churn}\n").workload
    assert (w.superpages, w.writable, w.iterations, w.mark) == (1, True, 100, False)
    assert (w.rounds, w.mappings, w.steps, w.mix, w.script) == (None,) * 5
    w = parse_config("workload: {kind: shared}\n").workload
    assert (w.superpages, w.writable, w.rounds, w.mappings) == (4, True, 1, 8)
    w = parse_config("workload: {kind: map-all}\n").workload
    assert (w.superpages, w.writable, w.rounds) == (None, True, 1)
    w = parse_config("workload: {kind: random, mix: {map: 1}}\n").workload
    assert (w.superpages, w.steps, w.slots, w.small_slots) == (None, 1000, None, 4)
    assert w.mix == MixConfig(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    w = parse_config("workload: {kind: random}\n").workload
    assert w.mix == MixConfig.default() == MixConfig(4, 3, 2, 1, 1, 0.5, 0.5, 0.5, 0.1, 0.1)
    assert parse_config("workload: {kind: random, mix: {}}\n").workload.mix == MixConfig.default()


def test_domains_count_expands_with_names():
    cfg = parse_config("domains:\n  - {name: web, memory: 1GiB}\n"
                       "  - {name: vm, memory: 32MiB, count: 3}\n  - {memory: 0x200000}\n")
    assert cfg.domain_specs() == [("web", 1 << 30), ("vm-1", 32 * MiB), ("vm-2", 32 * MiB),
                                  ("vm-3", 32 * MiB), ("guest", 2 * MiB)]


def test_compare_and_designs():
    cfg = parse_config("compare: [sketch, xen-4.1]\n")
    assert cfg.simulates and cfg.designs() == ["sketch", "xen-4.1"]
    assert cfg.effective_workload() == WorkloadConfig(kind="map-all", writable=True, rounds=1)


@pytest.mark.parametrize("text, expected", [
    ("workload: {kind: walk}\n",
     "w.yaml:1: workload.kind: bad choice 'walk'; choose from: map-all, churn, shared, random, "
     "script, split-driver"),
    ("workload: {steps: 3}\n", "w.yaml:1: workload: missing required key 'kind'"),
    ("workload:\n  kind: churn\n  steps: 10\n",
     "w.yaml:3: workload.steps: 'steps' does not apply to a churn workload (it takes "
     "superpages, writable, iterations, mark)"),
    ("workload:\n  kind: churn\n  iteration: 10\n",
     "w.yaml:3: workload.iteration: unknown key 'iteration' (did you mean 'iterations'?); "
     "allowed keys: kind, superpages, writable, rounds, iterations, mark, mappings, steps, "
     "slots, small_slots, mix, grants, script, ops"),
    ("workload: {kind: churn, iterations: 0}\n",
     "w.yaml:1: workload.iterations: must be at least 1, got 0"),
    ("workload: {kind: churn, mark: yes please}\n",
     "w.yaml:1: workload.mark: expected a boolean, got 'yes please'"),
    ("workload: {kind: script}\n",
     "w.yaml:1: workload: a script workload needs a non-empty 'script' list of operations"),
    ("workload: {kind: random, mix: {map: 0}}\n",
     "w.yaml:1: workload.mix: every weight is 0: give at least one operation a weight"),
    ("workload: {kind: random, mix: {jump: 1}}\n",
     "w.yaml:1: workload.mix.jump: unknown key 'jump' (did you mean 'unmap'?); allowed keys: map, unmap, remap, "
     "map_4k, unmap_4k, remap_4k, mark, unmark, balloon_out, balloon_in"),
    ("workload: {kind: random, mix: {map: -1}}\n",
     "w.yaml:1: workload.mix.map: must not be negative, got -1.0"),
    ("compare: [xen-4.1, xen-4.2]\n",
     "w.yaml:1: compare[1]: unknown design 'xen-4.2'; choose from: per-mapping, pageinfo-count, "
     "superpage-info, xen-4.1, sketch, none"),
    ("compare:\n  - xen-4.1\n  - sketch\n  - xen-4.1\n",
     "w.yaml:4: compare[2]: design 'xen-4.1' is listed twice"),
    ("compare: []\n", "w.yaml:1: compare: an empty list: name at least one design"),
    ("domains:\n  - {name: a, memory: 3MiB}\n",
     "w.yaml:2: domains[0].memory: a domain's memory must be a positive multiple of 2 MiB "
     "(superpage-backed), got 0x300000"),
    ("domains:\n  - {name: a}\n  - {name: a}\n",
     "w.yaml:3: domains[1].name: domain name 'a' is used twice"),
    ("domains:\n  - {name: a, count: 2}\n  - {name: a-2}\n",
     "w.yaml:3: domains[1].name: domain name 'a-2' is used twice"),
    ("domains: []\n", "w.yaml:1: domains: an empty list: a simulation needs at least one domain"),
    ("domains: [{count: 0}]\n", "w.yaml:1: domains[0].count: must be at least 1, got 0"),
    ("audit_every: -1\n", "w.yaml:1: audit_every: must not be negative, got -1"),
    ("cost_model: {frame_atomic_ns: fast}\n",
     "w.yaml:1: cost_model.frame_atomic_ns: expected a number, got 'fast'"),
    ("seed: 1.5\n", "w.yaml:1: seed: expected an integer, got a number (1.5)"),
    ("workload: {kind: map-all, superpages: 40}\ndomains: [{memory: 64MiB}]\n",
     "w.yaml:1: workload.superpages: 40 superpages, but the smallest domain has 32 (2 MiB each)"),
])
def test_schema_errors_are_one_line_with_key_paths(text, expected):
    assert err(text) == expected


SCRIPT = """\
domains: [{name: web, memory: 8MiB}, {name: db, memory: 4MiB}]
workload:
  kind: script
  script:
    - {domain: web, op: map, superpage: 1}
    - {domain: db, op: map-4k, superpage: 0, frame: 10, count: 3, writable: false}
    - {domain: web, op: remap, slot: 1, writable: false}
    - {domain: web, op: mark, superpage: 2, count: 2}
"""


def test_script_ops_and_their_defaults():
    w = wl(SCRIPT)
    assert list(w.ops(0)) == [
        Op("web", "map", 1, 1, 0, 1, True),
        Op("db", "map-4k", 0, 0, 10, 3, False),
        Op("web", "remap", 0, 1, 0, 1, False),
        Op("web", "mark", 2, 0, 0, 2, True),
    ]
    assert w.total == 4
    assert w.layout["web"].slots == {1} and w.layout["db"].windows == {0}


@pytest.mark.parametrize("entry, expected", [
    ("{domain: nobody, op: map, superpage: 0}",
     "w.yaml:5: workload.script[0].domain: no domain named 'nobody'; the domains are: web, db"),
    ("{domain: db, op: map, superpage: 2}",
     "w.yaml:5: workload.script[0].superpage: domain 'db' has superpages 0..1, not 2"),
    ("{domain: db, op: mark, superpage: 1, count: 2}",
     "w.yaml:5: workload.script[0].superpage: domain 'db' has superpages 0..1, not 2"),
    ("{domain: db, op: unmap}", "w.yaml:5: workload.script[0]: op unmap needs 'slot'"),
    ("{domain: db, op: unmap, slot: 0, superpage: 1}",
     "w.yaml:5: workload.script[0].superpage: op unmap takes no 'superpage' (it takes slot, "
     "count)"),
    ("{domain: db, op: map-4k, superpage: 0, frame: 510, count: 3}",
     "w.yaml:5: workload.script[0].count: frames 510..512 go past the superpage's 512"),
    ("{domain: db, op: fly, superpage: 0}",
     "w.yaml:5: workload.script[0].op: bad choice 'fly'; choose from: " + ", ".join(GUEST_OPS)),
    ("{domain: db, op: map, superpage: 0, slot: 131071, count: 2}",
     "w.yaml:5: workload.script[0].slot: slots stop at 131071 (256 GiB of 2 MiB slots)"),
    ("{domain: db, op: map, superpage: -1}",
     "w.yaml:5: workload.script[0].superpage: must not be negative, got -1"),
    ("{domain: db, op: exit, superpage: 1}",
     "w.yaml:5: workload.script[0].superpage: op exit takes no 'superpage' (it takes no "
     "argument)"),
    ("{domain: db, op: exec}", "w.yaml:5: workload.script[0]: op exec needs 'superpage'"),
    ("{domain: db, op: exec, superpage: 1, count: 2}",
     "w.yaml:5: workload.script[0].superpage: domain 'db' has superpages 0..1, not 2"),
])
def test_script_errors(entry, expected):
    text = ("domains: [{name: web, memory: 8MiB}, {name: db, memory: 4MiB}]\n"
            f"workload:\n  kind: script\n  script:\n    - {entry}\n")
    assert err(text) == expected


def test_resolved_config_holds_the_simulation():
    cfg = parse_config("workload: {kind: churn, iterations: 5}\n"
                       "domains: [{name: a, memory: 4MiB, count: 2}]\ncompare: [xen-4.1]\n")
    data = resolved_config(cfg, build_memory_map(cfg))
    assert list(data) == ["machine", "hypervisor", "workload", "compare", "domains", "seed",
                          "cost_model", "audit_every"]
    assert data["workload"] == {"kind": "churn", "superpages": 1, "writable": True,
                                "iterations": 5, "mark": False}
    assert data["domains"] == [{"name": "a-1", "memory": 4 * MiB},
                               {"name": "a-2", "memory": 4 * MiB}]
    assert data["cost_model"] == {"frame_atomic_ns": 4.8, "cmpxchg_ns": 5.6, "hypercall_ns": 0.0}
    # a compare alone runs map-all: the resolved config says so
    data = resolved_config(parse_config("compare: [xen-4.1]\n"), build_memory_map(cfg))
    assert data["workload"] == {"kind": "map-all", "writable": True, "rounds": 1}
    # no simulation: nothing of it is written
    assert list(resolved_config(parse_config("seed: 3\n"), build_memory_map(cfg))) == [
        "machine", "hypervisor"]


# ---------------------------------------------------------------------------
# The generators
# ---------------------------------------------------------------------------

TWO = [("a", 4 * MiB), ("b", 6 * MiB)]


def test_map_all_maps_then_unmaps_every_superpage_per_l2_table():
    w = wl("workload: {kind: map-all, rounds: 2, writable: false}\n", TWO)
    ops = list(w.ops(0))
    assert ops == 2 * [Op("a", "map", 0, 0, count=2, writable=False),
                       Op("b", "map", 0, 0, count=3, writable=False),
                       Op("a", "unmap", 0, 0, count=2, writable=False),
                       Op("b", "unmap", 0, 0, count=3, writable=False)]
    w = wl("workload: {kind: map-all}\n", [("big", 1100 * 2 * MiB)])
    assert [(o.op, o.superpage, o.slot, o.count) for o in w.ops(0)] == [
        ("map", 0, 0, 512), ("map", 512, 512, 512), ("map", 1024, 1024, 76),
        ("unmap", 0, 0, 512), ("unmap", 512, 512, 512), ("unmap", 1024, 1024, 76)]
    assert w.layout["big"].pool_pages() == 2 + 3 + 2


def test_churn_and_churn_with_mark():
    w = wl("workload: {kind: churn, superpages: 2, iterations: 3}\n", TWO)
    ops = list(w.ops(0))
    assert len(ops) == w.total == 3 * 2 * 2 * 2
    assert ops[:4] == [Op("a", "map", 0, 0), Op("a", "unmap", 0, 0), Op("a", "map", 1, 1),
                       Op("a", "unmap", 0, 1)]
    w = wl("workload: {kind: churn, iterations: 3, mark: true}\n", TWO)
    ops = list(w.ops(0))
    assert ops[:2] == [Op("a", "mark", 0), Op("b", "mark", 0)]
    assert ops[-2:] == [Op("a", "unmark", 0), Op("b", "unmark", 0)]
    assert len(ops) == w.total == 2 + 3 * 2 * 2 + 2


def test_shared_maps_each_copy_in_other_entries():
    w = wl("workload: {kind: shared, superpages: 3, mappings: 200}\n", [("a", 8 * MiB)])
    ops = list(w.ops(0))
    assert len(ops) == w.total == 400
    assert ops[0] == Op("a", "map", 0, 0, count=3) and ops[199] == Op("a", "map", 0, 597, count=3)
    assert ops[200] == Op("a", "unmap", 0, 0, count=3)
    assert w.layout["a"].slots == set(range(600))
    assert len(w.layout["a"].table_vas()) == 2               # slots 0..599: two L2 tables


def _random_cfg(steps=2000, extra=""):
    return f"workload: {{kind: random, steps: {steps}, small_slots: 3{extra}}}\n"


def test_random_is_seeded_and_reproducible():
    w = wl(_random_cfg(), TWO)
    a, b, c = list(w.ops(7)), list(w.ops(7)), list(w.ops(8))
    assert a == b and a != c
    assert len(a) == w.total == 2000
    assert {o.op for o in a} == set(GUEST_OPS) - set(PROCESS_OPS)   # every one but exec, exit
    assert {o.domain for o in a} == {"a", "b"}
    assert w.layout["a"].slots == set(range(4)) and w.layout["b"].slots == set(range(6))
    assert w.layout["a"].windows == {0, 1, 2}


def test_random_weights_select_operations():
    w = wl(_random_cfg(500, ", mix: {map: 1, unmap: 1}"), TWO)
    assert {o.op for o in w.ops(1)} == {"map", "unmap"}
    # only balloon-out has a weight: once everything is out, balloon-in is all that applies
    w = wl(_random_cfg(20, ", mix: {balloon_out: 1}"), [("a", 6 * MiB)])
    assert [o.op for o in w.ops(1)][:4] == ["balloon-out"] * 3 + ["balloon-in"]


@pytest.mark.parametrize("seed", range(5))
def test_random_operations_always_make_sense(seed):
    """Replay the sequence against an independent model: never unmap an empty slot,
    map a ballooned superpage, mark a marked one, balloon out a used one, ..."""
    w = wl(_random_cfg(3000, ", slots: 3"), [("a", 6 * MiB)])
    slots, windows, marked, out = {}, {}, set(), set()

    def used(sp):
        return sp in marked or sp in slots.values() or any(v[0] == sp for v in windows.values())

    for o in w.ops(seed):
        if o.op == "map":
            assert o.slot not in slots and o.superpage not in out and o.slot < 3
            slots[o.slot] = o.superpage
        elif o.op in ("unmap", "remap"):
            assert o.slot in slots
            if o.op == "unmap":
                del slots[o.slot]
        elif o.op == "map-4k":
            assert o.slot not in windows and o.superpage not in out
            assert 0 <= o.frame and o.frame + o.count <= 512 and 1 <= o.count <= 16
            windows[o.slot] = (o.superpage, o.frame, o.count)
        elif o.op in ("unmap-4k", "remap-4k"):
            assert windows[o.slot][1:] == (o.frame, o.count)
            if o.op == "unmap-4k":
                del windows[o.slot]
        elif o.op == "mark":
            assert o.superpage not in marked and o.superpage not in out
            marked.add(o.superpage)
        elif o.op == "unmark":
            marked.remove(o.superpage)
        elif o.op == "balloon-out":
            assert o.superpage not in out and not used(o.superpage)
            out.add(o.superpage)
        elif o.op == "balloon-in":
            out.remove(o.superpage)


def test_pool_is_a_reproducible_set():
    p = _Pool(range(5))
    p.remove(1)
    p.remove(9)
    p.add(3)
    p.add(7)
    assert sorted(p.items) == [0, 2, 3, 4, 7] and len(p) == 5 and 7 in p and 1 not in p
    rng1, rng2 = random.Random(3), random.Random(3)
    assert [p.pick(rng1) for _ in range(10)] == [p.pick(rng2) for _ in range(10)]


def test_op_str_and_layout():
    assert str(Op("web", "map", 3, 5, writable=False)) == "web: map superpage 3 at slot 5 ro"
    assert str(Op("web", "unmap", 0, 5, count=2)) == "web: unmap slot 5 x2"
    assert str(Op("db", "map-4k", 1, 2, 10, 3)) == "db: map-4k superpage 1 frames 10..12 window 2 rw"
    assert str(Op("db", "balloon-out", 4)) == "db: balloon-out superpage 4"
    lay = Layout({0, 511, 512}, {0, 600})
    assert lay.pool_pages() == 2 + 2 + 2 + 2 + 2
    assert slot_va(1) - slot_va(0) == 2 * MiB
    assert window_va(1, 3) == SMALL_BASE + 2 * MiB + 3 * 4096
    assert (SMALL_BASE >> 39) == (slot_va(0) >> 39)          # one L4 slot, one L3 table


# ---------------------------------------------------------------------------
# Performing operations through the guest kernel
# ---------------------------------------------------------------------------

def _guest(mem=8 * MiB, windows=(0,)):
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none")
    lay = Layout(set(range(8)), set(windows))
    d = m.create_domain("g", (mem >> 12) + lay.pool_pages())
    k = GuestKernel(m, d, pt_pool_pages=lay.pool_pages())
    assert k.populate(0, mem >> 12) == mem >> 21
    assert k.build() == 0
    for va, level in lay.table_vas():
        assert k.ensure_table(va, level)[1] == 0
    return m, k


def test_apply_every_operation():
    m, k = _guest()
    ft = m.frame_table
    sp1 = k.superpage_mfns(512, 1)[0]
    calls = m.hypercall.stats["mmu_update"].calls
    assert apply(Op("g", "map", 1, 0, count=2), k)
    assert m.hypercall.stats["mmu_update"].calls == calls + 1      # one batch, one L2 table
    assert m.superpage.stats["slow_get"] == 2
    assert apply(Op("g", "remap", 0, 0, count=2, writable=False), k)
    assert apply(Op("g", "map-4k", 1, 0, 5, 2, True), k)
    assert ft.type_info(m.mfn_to_page(sp1 + 5)) & 0xFFFF > 0
    assert apply(Op("g", "remap-4k", 0, 0, 5, 2, False), k)
    assert apply(Op("g", "mark", 3), k)
    assert not apply(Op("g", "mark", 3), k)                         # already marked: -EINVAL
    assert m.hypercall.stats["mmuext_op"].errors == {"EINVAL": 1}
    assert apply(Op("g", "unmark", 3), k)
    assert apply(Op("g", "unmap-4k", 0, 0, 5, 2), k)
    assert apply(Op("g", "unmap", 0, 0, count=2), k)
    assert apply(Op("g", "balloon-out", 2), k)
    assert m.domain(k.domid).p2m.get(1024) == INVALID
    with pytest.raises(GuestError):
        apply(Op("g", "map", 2, 4), k)                             # ballooned out
    assert apply(Op("g", "balloon-in", 2), k)
    assert apply(Op("g", "map", 2, 4), k)
    assert apply(Op("g", "unmap", 0, 4), k)
    assert audit(m).ok
    with pytest.raises(ValueError):
        apply(Op("g", "dance"), k)


# ---------------------------------------------------------------------------
# The progress bar
# ---------------------------------------------------------------------------

class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_waits_then_draws_then_clears():
    out, clock = io.StringIO(), _Clock()
    p = Progress(out, enabled=True, delay=2.0, interval=0.5, width=10, clock=clock)
    p.start("xen-4.1", 200)
    p.update(10)
    clock.t = 1.9
    p.update(50)
    assert out.getvalue() == ""                              # short runs show nothing
    clock.t = 2.0
    p.update(100)
    assert out.getvalue() == "\rxen-4.1 [#####.....] 100/200 ops  50%  2.0 s, ETA 2 s"
    clock.t = 2.2
    p.update(120)                                            # within the interval: no redraw
    assert out.getvalue().count("\r") == 1
    clock.t = 2.6
    p.update(200)
    assert out.getvalue().endswith("\rxen-4.1 [##########] 200/200 ops 100%  2.6 s, ETA 0 s")
    p.close()
    assert out.getvalue().endswith("\r" + " " * 53 + "\r")


def test_progress_eta_is_the_time_left_at_the_rate_so_far():
    out, clock = io.StringIO(), _Clock()
    p = Progress(out, enabled=True, delay=0, interval=0, width=4, clock=clock)
    p.start("fuzz", 10_000, unit="calls")
    clock.t = 30.0
    p.update(100)                                   # 100 in 30 s: 9,900 more take 2,970 s
    assert out.getvalue() == "\rfuzz [....] 100/10,000 calls   1%  30.0 s, ETA 49 min 30 s"
    clock.t = 36.0
    p.update(0)                                     # nothing done yet: no estimate
    assert out.getvalue().endswith("\rfuzz [....] 0/10,000 calls   0%  36.0 s" + " " * 19)
    assert [duration(x) for x in (0.4, 59.4, 61, 3599, 7620)] == \
        ["0 s", "59 s", "1 min 01 s", "59 min 59 s", "2 h 07 min"]


def test_progress_off_unless_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert not Progress(io.StringIO()).enabled
    assert Progress(Tty()).enabled
    assert not Progress(Tty(), enabled=False).enabled
    out, clock = io.StringIO(), _Clock()
    p = Progress(out, enabled=False, delay=0, clock=clock)
    p.start("x", 1)
    clock.t = 10
    p.update(1)
    p.close()
    assert out.getvalue() == ""


@pytest.mark.parametrize("text", [SCRIPT, "workload: {kind: random, mix: {map: 2, mark: 1}}\n",
                                  "workload: {kind: shared, rounds: 2}\nseed: 3\n",
                                  "compare: [sketch]\naudit_every: 5\n"])
def test_resolved_simulation_round_trips(text, tmp_path):
    from xensim.config import dump_resolved, load_config
    cfg = parse_config(text)
    mm = build_memory_map(cfg)
    first = dump_resolved(cfg, mm, tmp_path / "r.yaml")
    again = load_config(tmp_path / "r.yaml")
    assert resolved_config(again, build_memory_map(again)) == first
    assert again.effective_workload() == cfg.effective_workload()
    assert again.domain_specs() == cfg.domain_specs()


def test_exec_and_exit_reserve_the_process_tables():
    """A script's exec (a process's tree: L4, L3, L2 and one L1 per superpage, pinned) and
    exit: the layout counts the largest process's frames into the page-table pool, which
    the set-up reserves (no populate_physmap during the run)."""
    w = wl("domains: [{name: web, memory: 8MiB}]\nworkload:\n  kind: script\n  script:\n"
           "    - {domain: web, op: exec, superpage: 1, count: 3}\n"
           "    - {domain: web, op: exit}\n"
           "    - {domain: web, op: exec, superpage: 0, writable: false}\n")
    ops = list(w.ops(0))
    assert [str(o) for o in ops] == [
        "web: exec a process mapping superpage 1 x3 with 4 KiB pages rw",
        "web: exit the process",
        "web: exec a process mapping superpage 0 with 4 KiB pages ro"]
    lay = w.layout["web"]
    assert lay.process == 6 and lay.pool_pages() == 1 + 1 + 0 + 0 + 2 + 6
