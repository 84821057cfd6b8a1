"""Refcount core figures.

1. get_page_and_type(PGT_writable_page) + put_page_and_type on a superpage's 512 frames:
   the vectorised run form (the TakeRun / DropRun accelerators) against Xen's frame loop
   (the machine stepwise), same run.
2. Populating a 64 GiB guest with order-9 extents (populate_physmap through the
   hypercall layer), then destroying it: seconds and peak RSS (in a fresh process).

Run: python benchmarks/bench_refcount.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

GOAL_RATIO = 20


def bench_512(reps: int = 2000, loop_reps: int = 50) -> dict:
    from xensim import (HYPERVISOR_memory_op, Machine, MemoryMap, XENMEM_populate_physmap,
                        XenMemoryReservation)
    from xensim.mem import PGT_writable_page

    m = Machine(MemoryMap([(0, 64 << 20)]), "none")
    g = m.create_domain("g", 1024)
    r = XenMemoryReservation([0], 1, 9)
    assert m.hypercall(g, HYPERVISOR_memory_op, XENMEM_populate_physmap, r) == 1
    page = m.mfn_to_page(r.extent_start[0])
    refs = m.refs

    def timeit(get, put, n):
        t = time.perf_counter()
        for _ in range(n):
            assert get(page, 512, g, PGT_writable_page)
            put(page, 512)
        return (time.perf_counter() - t) / n

    timeit(refs.get_pages_and_type, refs.put_pages_and_type, 50)            # warm up
    vec = timeit(refs.get_pages_and_type, refs.put_pages_and_type, reps)
    with m.events.stepwise():
        loop = timeit(refs.get_pages_and_type, refs.put_pages_and_type, loop_reps)
    return {"vectorised_us": vec * 1e6, "loop_us": loop * 1e6, "ratio": loop / vec}


def populate_64g() -> dict:
    """Run in a child: boot intel-clx-2s (193 GiB), populate a 64 GiB guest, destroy it."""
    from xensim import (HYPERVISOR_memory_op, Machine, XENMEM_populate_physmap,
                        XenMemoryReservation, audit, load_preset)
    t0 = time.perf_counter()
    m = Machine(load_preset("intel-clx-2s"), "mask")
    g = m.create_domain("big", 64 << 18)
    n = (64 << 30) >> 21                                                      # 32768 extents
    r = XenMemoryReservation(list(range(0, n * 512, 512)), n, 9)
    t1 = time.perf_counter()
    done = m.hypercall(g, HYPERVISOR_memory_op, XENMEM_populate_physmap, r)
    t2 = time.perf_counter()
    assert done == n, done
    rss_populated = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rep = audit(m)
    t3 = time.perf_counter()
    assert m.destroy_domain(g) == 0 and m.heap.free_frames == m.memmap.ram_frames
    t4 = time.perf_counter()
    return {"boot_s": t1 - t0, "populate_s": t2 - t1, "audit_s": t3 - t2, "audit_ok": rep.ok,
            "destroy_s": t4 - t3, "extents": n,
            "frame_table_bytes": m.frame_table.allocated_bytes(),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_after_populate_mib": rss_populated / 1024}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-populate":
        print(json.dumps(populate_64g()))
        return
    print("== 512-frame get_page_and_type(writable) + put_page_and_type ==")
    b = bench_512()
    print(f"  vectorised (numpy)   {b['vectorised_us']:9.1f} us per 512-frame get+put pair")
    print(f"  per-frame loop       {b['loop_us']:9.1f} us per 512-frame get+put pair")
    print(f"  ratio                {b['ratio']:9.1f}x   (goal >= {GOAL_RATIO}x: "
          f"{'met' if b['ratio'] >= GOAL_RATIO else 'NOT met'})")
    print()
    print("== populate a 64 GiB guest with order-9 extents on intel-clx-2s (fresh process) ==")
    out = subprocess.run([sys.executable, __file__, "--child-populate"], capture_output=True,
                         text=True, check=True)
    p = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  boot                 {p['boot_s']:9.3f} s")
    print(f"  populate {p['extents']} extents {p['populate_s']:9.3f} s "
          f"({p['populate_s'] / p['extents'] * 1e6:.1f} us per 2 MiB extent)")
    print(f"  audit (all frames)   {p['audit_s']:9.3f} s  clean={p['audit_ok']}")
    print(f"  destroy              {p['destroy_s']:9.3f} s")
    print(f"  frame table          {p['frame_table_bytes'] / 2**20:9.1f} MiB allocated")
    print(f"  peak RSS             {p['peak_rss_mib']:9.1f} MiB "
          f"(after populate: {p['rss_after_populate_mib']:.1f} MiB)")


if __name__ == "__main__":
    main()
