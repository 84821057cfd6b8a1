"""MARK_SUPER and churn: slow-path transitions per operation, with and without marking.

Run it:  python examples/e_mark_super_churn.py

With a count per superpage, only its 0 -> 1 and 1 -> 0 transitions take or drop
the 512 frames' references (the slow path). A guest that keeps building and
destroying the only mapping of a superpage ("churn") makes every map and every
unmap such a transition. Xen 4.1 added MMUEXT_MARK_SUPER: a mark holds one count
(state MARK), so the count never falls to 0 and every map and unmap is one
cmpxchg of the count (the fast path). Here: the churn workload of
configs/when-pinning-pays.yaml (map and unmap one superpage 200 times), on
xen-4.1 without and with the mark, and on the sketch, which has no MARK_SUPER
(docs/xen-facts.md sections 5d and 6d; docs/workloads.md; docs/cost-model.md).
"""

from xensim import build_memory_map, parse_config, run_design
from xensim.teach import trace

CONFIG = """
machine: {{memory_map: [[0x0, 64MiB]], pdx: none}}
domains: [{{name: guest, memory: 4MiB}}]
workload: {{kind: churn, superpages: 1, iterations: {iterations}, mark: {mark}}}
"""

intro = __doc__.split("\n\n")
print(intro[0])
print()
print(intro[2])
print()

# 1. what one map + unmap does, narrated (xensim trace --level superpage)
for mark in (False, True):
    cfg = parse_config(CONFIG.format(iterations=1, mark=str(mark).lower()), "<churn>")
    res = trace(cfg, build_memory_map(cfg), "xen-4.1", "superpage")
    print(f"--- xen-4.1, churn of 1 iteration, mark: {str(mark).lower()} (xensim trace):")
    for line in res.lines:
        if line.kind == "op":
            print("  " + line.text)
        elif line.kind == "note" or "superpage mfn" in line.text:
            print("      " + line.text)
    print()

# 2. the whole churn, as xensim run reports it
print(f"{'run':34} {'ops':>5} {'slow':>6} {'fast':>6} {'slow/op':>8} {'get_page_type':>14} "
      f"{'errors':>12} {'modelled/op':>12}")
rows = {}
for design, mark in (("xen-4.1", False), ("xen-4.1", True), ("sketch", True)):
    cfg = parse_config(CONFIG.format(iterations=200, mark=str(mark).lower()), "<churn>")
    r = run_design(cfg, build_memory_map(cfg), design)
    assert r.ok and r.audit.ok and r.leaked_frames == 0, r.reason
    name = f"{design}, mark: {str(mark).lower()}"
    rows[name] = r
    errors = ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "-"
    print(f"{name:34} {r.ops:>5} {r.slow_transitions:>6} {r.fast_updates:>6} "
          f"{r.slow_per_op:>8.3f} {r.refcount['get_page_type']:>14,} {errors:>12} "
          f"{r.ns_per_op:>9,.0f} ns")
print()
off, on = rows["xen-4.1, mark: false"], rows["xen-4.1, mark: true"]
print(f"without MARK_SUPER: {off.slow_per_op:.2f} slow-path transitions per operation "
      f"(every map 0 -> 1, every unmap 1 -> 0: 1,024 frame atomics each)")
print(f"with MARK_SUPER: {on.slow_per_op:.2f} slow-path transitions per operation "
      f"({on.fast_updates} fast count updates; the mark's own 512-frame take is the "
      f"{on.refcount['get_page_type']} get_page_type)")
print(f"modelled time per operation: {off.ns_per_op:,.0f} ns against {on.ns_per_op:,.0f} ns")
print("The sketch (the 2010 proposal as written) has no MARK_SUPER: its mark and unmark "
      "fail (EOPNOTSUPP) and it churns on the slow path like unmarked xen-4.1.")
