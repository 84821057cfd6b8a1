"""The superpage designs side by side.

1. Hypercalls per second of each design on `shared` (many mappings of the same
   superpages: the fast path) and `churn` (build and destroy the only mapping: the
   slow path), through the whole simulation (guest kernel, hypercall layer, design).
2. The whole-host run: intel-gnr-4s (2 TiB) with all its RAM given to guests, every
   superpage mapped RW then unmapped (one mmu_update batch of 512 PSE entries per L2
   table), in a fresh process: seconds and peak RSS. Goal: 60 s and 12 GiB.

Run: python benchmarks/bench_designs.py [--whole-host DESIGN ...] [--skip-whole-host]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

DESIGNS = ("per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch")

CONFIG = """
machine: {{preset: teaching}}
workload: {workload}
domains: [{{name: guest, memory: 256MiB}}]
seed: 3
"""


def throughput(design: str, workload: str) -> tuple[float, int, float]:
    """(hypercalls/s during the workload, hypercalls, seconds): set-up time excluded."""
    from xensim import build_memory_map, parse_config, run_design
    cfg = parse_config(CONFIG.format(workload=workload), "<bench>")
    mm = build_memory_map(cfg)
    empty = parse_config(CONFIG.format(workload=workload.replace("iterations: 400", "iterations: 1")
                                       .replace("rounds: 20", "rounds: 1")), "<bench>")
    t = time.perf_counter()
    run_design(empty, mm, design)
    base = time.perf_counter() - t
    t = time.perf_counter()
    run = run_design(cfg, mm, design)
    dt = time.perf_counter() - t - base
    assert run.ok, run.reason
    calls = run.hypercall_calls
    return calls / dt, calls, dt


def whole_host(design: str) -> dict:
    """In a child: every superpage of a 2 TiB host mapped RW then unmapped."""
    from xensim import (DIRECTMAP_BASE, HYPERVISOR_mmu_update, GuestKernel, Machine, MmuUpdate,
                        load_preset)
    t0 = time.perf_counter()
    mm = load_preset("intel-gnr-4s")
    m = Machine(mm, "offset", superpage=design)
    guests = 16
    per_guest = (mm.n_superpages_full // guests) - 1           # leave room for page tables
    pool = 2 + (per_guest + 511) // 512 + 8
    kernels = []
    for i in range(guests):
        d = m.create_domain(f"g{i}", per_guest * 512 + pool)
        k = GuestKernel(m, d, pt_pool_pages=pool)
        assert k.populate(0, per_guest * 512) == per_guest
        assert k.build() == 0
        kernels.append(k)
    t1 = time.perf_counter()
    tables = []
    for k in kernels:
        mfns = k.superpage_mfns(0, per_guest)
        for first in range(0, per_guest, 512):
            va = DIRECTMAP_BASE + (first << 21)
            l2, rc = k.ensure_table(va, 2)
            assert rc == 0
            chunk = mfns[first:first + 512]
            tables.append((k.domid, l2, chunk))
    t2 = time.perf_counter()
    flags = 0x1 | 0x2 | 0x4 | 0x20 | 0x40 | 0x80
    mapped = 0
    for domid, l2, chunk in tables:
        reqs = [MmuUpdate((l2 << 12) | (i * 8), (mfn << 12) | flags) for i, mfn in enumerate(chunk)]
        assert m.hypercall(domid, HYPERVISOR_mmu_update, reqs) == 0
        mapped += len(chunk)
    t3 = time.perf_counter()
    for domid, l2, chunk in tables:
        reqs = [MmuUpdate((l2 << 12) | (i * 8), 0) for i in range(len(chunk))]
        assert m.hypercall(domid, HYPERVISOR_mmu_update, reqs) == 0
    t4 = time.perf_counter()
    return {"design": design, "superpages": mapped, "ram_gib": mm.ram_bytes / 2**30,
            "given_gib": mapped * 2 / 1024, "populate_s": t1 - t0, "tables_s": t2 - t1,
            "map_s": t3 - t2, "unmap_s": t4 - t3, "total_s": t4 - t0,
            "slow_get": m.superpage.stats["slow_get"],
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--whole-host", nargs="*", default=["xen-4.1"], metavar="DESIGN")
    ap.add_argument("--skip-whole-host", action="store_true")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(whole_host(a.child)))
        return
    print("== hypercalls per second through the simulation (teaching, one 256 MiB guest) ==")
    print(f"  {'design':15} {'shared (fast path)':>22} {'churn (slow path)':>22}")
    for design in DESIGNS:
        fast = throughput(design, "{kind: shared, superpages: 8, mappings: 16, rounds: 20}")
        slow = throughput(design, "{kind: churn, superpages: 4, iterations: 400}")
        print(f"  {design:15} {fast[0]:14,.0f} calls/s {slow[0]:14,.0f} calls/s")
    if a.skip_whole_host:
        return
    print()
    print("== whole host: intel-gnr-4s, all RAM to 16 guests, every superpage mapped RW then unmapped ==")
    for design in a.whole_host:
        out = subprocess.run([sys.executable, __file__, "--child", design], capture_output=True,
                             text=True)
        if out.returncode:
            print(f"  {design}: failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {design}: {r['superpages']:,} superpages ({r['given_gib']:,.0f} of {r['ram_gib']:,.0f} GiB): "
              f"populate+build {r['populate_s']:.1f} s, tables {r['tables_s']:.1f} s, "
              f"map {r['map_s']:.1f} s, unmap {r['unmap_s']:.1f} s; total {r['total_s']:.1f} s "
              f"(goal 60 s), peak RSS {r['peak_rss_gib']:.2f} GiB (goal 12)")


if __name__ == "__main__":
    main()
