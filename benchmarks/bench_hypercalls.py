"""Hypercall throughput of the PV superpage path, against a C reference.

Measured through the full hypercall layer (dispatch, request transaction,
entry validation, the xen-4.1 design, refcounts), on the teaching machine:

1. slow path: mmu_update of one PSE entry on an unmapped superpage, then its unmapping
   (each a 512-frame get/put), per map+unmap pair;
2. fast path: the same on a superpage that another entry keeps mapped (count only);
3. batch: one mmu_update of 512 PSE entries on distinct superpages, then one of 512
   unmappings, per superpage;
4. grant: GNTTABOP_map_grant_ref of another domain's writable host grant (get_page, a
   writable type reference, the PTE), then GNTTABOP_unmap_grant_ref, per pair; printed
   against the slow and fast pairs of the same run.

Then the slow and fast pairs (1, 2) on every design. Beside them, in the same run,
benchmarks/c/superpage_ref.c (the same algorithm with real
atomic cmpxchg on frame words, compiled here with the system cc; skipped with a message
when there is none), and the ratios. Then the layered fast and slow pairs per layer
(cProfile's own time grouped by the module's layer, beside C): what the fast path costs,
and why it is not chased (docs/cost-model.md).

``--baseline-src DIR --reps N``: the slow and fast pairs of this checkout and of the
xensim at DIR (another checkout), each in fresh processes, alternated N times; the
ratios per repeat, their median and spread.

Run: python benchmarks/bench_hypercalls.py [--baseline-src DIR [--reps N]]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def c_reference() -> dict | None:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        print("  (no C compiler found: the C reference is skipped)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "superpage_ref")
        subprocess.run([cc, "-O2", "-o", exe, str(HERE / "c" / "superpage_ref.c")], check=True)
        out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split()
    slow, fast, batch = map(float, out)
    return {"slow_pair_us": slow / 1e3, "fast_pair_us": fast / 1e3, "batch_per_sp_us": batch / 1e3}


def python_side(design: str = "xen-4.1", batch: bool = True, slow_n: int = 2000,
                fast_n: int = 20000) -> dict:
    from xensim import DIRECTMAP_BASE, GuestKernel, Machine, load_preset

    m = Machine(load_preset("teaching"), "mask", superpage=design)
    g = m.create_domain("bench", (1 << 18) + 4096)
    k = GuestKernel(m, g)
    assert k.populate(0, 1 << 18) == 512                        # 1 GiB of 2 MiB extents
    assert k.build() == 0
    mfns = k.superpage_mfns(0, 512)
    l2, rc = k.ensure_table(DIRECTMAP_BASE, 2)
    assert rc == 0
    flags = k._flags(True) | 0x80

    def ptr(i):
        return (l2 << 12) | (i * 8)

    from xensim import HYPERVISOR_mmu_update, MmuUpdate
    hc = m.hypercall

    def pair(i, mfn, n):
        mapit = [MmuUpdate(ptr(i), (mfn << 12) | flags)]
        unmap = [MmuUpdate(ptr(i), 0)]
        t = time.perf_counter()
        for _ in range(n):
            hc(g, HYPERVISOR_mmu_update, mapit)
            hc(g, HYPERVISOR_mmu_update, unmap)
        return (time.perf_counter() - t) / n

    def grant_pair(n):
        from xensim import (GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref,
                            HYPERVISOR_grant_table_op, GnttabMapGrantRef, GnttabUnmapGrantRef)
        front = m.create_domain("front", 1024)
        fk = GuestKernel(m, front)
        assert fk.populate(0, 512) == 1
        assert fk.grant_access(8, g, fk.mfn(5))
        va = DIRECTMAP_BASE + (1 << 30)
        assert k.ensure_table(va, 1)[1] == 0
        t = time.perf_counter()
        for _ in range(n):
            op = GnttabMapGrantRef(va, 2, 8, front)
            hc(g, HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, [op], None)
            hc(g, HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref,
               [GnttabUnmapGrantRef(va, 0, op.handle)], None)
        assert op.status == 0
        return (time.perf_counter() - t) / n

    pair(0, mfns[0], 50)                                          # warm up
    slow = pair(0, mfns[0], slow_n)
    # fast path: entry 1 keeps superpage 1 mapped; entry 2 maps and unmaps it again
    assert hc(g, HYPERVISOR_mmu_update, [MmuUpdate(ptr(1), (mfns[1] << 12) | flags)]) == 0
    fast = pair(2, mfns[1], fast_n)
    assert hc(g, HYPERVISOR_mmu_update, [MmuUpdate(ptr(1), 0)]) == 0
    grant = grant_pair(fast_n // 2) if batch else None
    if not batch:
        return {"slow_pair_us": slow * 1e6, "fast_pair_us": fast * 1e6}
    # batch: 512 distinct superpages in one call, then 512 unmappings in one call
    maps = [MmuUpdate(ptr(i), (mfn << 12) | flags) for i, mfn in enumerate(mfns)]
    unmaps = [MmuUpdate(ptr(i), 0) for i in range(512)]
    reps = 10
    t = time.perf_counter()
    for _ in range(reps):
        assert hc(g, HYPERVISOR_mmu_update, maps) == 0
        assert hc(g, HYPERVISOR_mmu_update, unmaps) == 0
    batch = (time.perf_counter() - t) / (reps * 512)
    from xensim import audit
    assert audit(m).ok
    return {"slow_pair_us": slow * 1e6, "fast_pair_us": fast * 1e6, "batch_per_sp_us": batch * 1e6,
            "grant_pair_us": grant * 1e6, "design_stats": dict(m.superpage.stats)}


#: layers of the request path, by the module a function is defined in (first match)
LAYERS = [("xen/_hypercall.py", "hypercall dispatch"), ("xen/_mmu.py", "mmu_update"),
          ("xen/_machine.py", "request (journal, rollback)"),
          ("xen/_pagetable.py", "page tables (mod_entry, entries)"),
          ("xen/_host.py", "design host"), ("designs/", "design"),
          ("xen/_refcount.py", "refcounts"), ("xen/_tlbflush.py", "refcounts"),
          ("xen/accel/", "accelerators"), ("xen/_events.py", "events"),
          ("mem/", "frame / superpage tables"), ("xensim/", "other xensim")]


def layer_of(filename: str) -> str | None:
    """The layer of a function defined in ``filename``; None for code outside xensim (a
    builtin, numpy: charged to its callers)."""
    package = str(Path(__import__("xensim").__file__).resolve().parent)
    if not filename.startswith(package + os.sep):
        return None
    rel = filename[len(package) + 1:].replace(os.sep, "/")
    return next((name for prefix, name in LAYERS if rel.startswith(prefix) or prefix == "xensim/"),
                "other xensim")


def by_layer(stats) -> tuple[dict[str, float], float, tuple[str, float]]:
    """Own time per layer of a profile (``pstats.Stats``), code outside xensim charged to
    its callers in proportion to the calls' time; the total; the function with the most
    own time and that time."""
    raw = stats.stats
    own: dict[str, float] = {}
    top = ("", 0.0)
    for func, (_, _, tt, _, callers) in raw.items():
        layer = layer_of(func[0])
        if layer is None:
            charged = {c: v[2] for c, v in callers.items()}   # the calls' own time, per caller
            total = sum(charged.values()) or 1.0
            for c, t in charged.items():
                name = layer_of(c[0]) or "outside xensim"
                own[name] = own.get(name, 0.0) + tt * t / total
            continue
        own[layer] = own.get(layer, 0.0) + tt
        if tt > top[1]:
            top = (f"{func[2]} ({Path(func[0]).name}:{func[1]})", tt)
    return own, sum(own.values()), top


def layered(design: str = "xen-4.1", n: int = 3000) -> dict:
    """The fast and slow pairs of :func:`python_side`, each under cProfile: the time of
    each layer per pair (its share of the profile applied to the pair's unprofiled time)."""
    import cProfile
    import pstats
    from xensim import DIRECTMAP_BASE, GuestKernel, HYPERVISOR_mmu_update, Machine, MmuUpdate, load_preset
    m = Machine(load_preset("teaching"), "mask", superpage=design)
    g = m.create_domain("bench", (1 << 16) + 4096)
    k = GuestKernel(m, g)
    assert k.populate(0, 1 << 16) == 128 and k.build() == 0
    mfns = k.superpage_mfns(0, 2)
    l2, rc = k.ensure_table(DIRECTMAP_BASE, 2)
    flags = k._flags(True) | 0x80
    hc = m.hypercall
    out = {}
    assert hc(g, HYPERVISOR_mmu_update, [MmuUpdate(l2 << 12 | 8, (mfns[1] << 12) | flags)]) == 0
    for path, mfn, reps in (("fast", mfns[1], n), ("slow", mfns[0], n // 5)):
        mapit, unmap = [MmuUpdate(l2 << 12 | 16, (mfn << 12) | flags)], [MmuUpdate(l2 << 12 | 16, 0)]

        def pairs(reps=reps, mapit=mapit, unmap=unmap):
            for _ in range(reps):
                hc(g, HYPERVISOR_mmu_update, mapit)
                hc(g, HYPERVISOR_mmu_update, unmap)
        pairs()                                                  # warm up
        t = time.perf_counter()
        pairs()
        pair_us = (time.perf_counter() - t) / reps * 1e6
        prof = cProfile.Profile()
        prof.runcall(pairs)
        own, total, (top, top_t) = by_layer(pstats.Stats(prof))
        out[path] = {"pair_us": pair_us,
                     "layers": {k: pair_us * v / total for k, v in sorted(own.items(), key=lambda kv: -kv[1])},
                     "top": (top, top_t / total)}
    return out


def print_layers(c: dict | None) -> None:
    print("\n== the layered path per layer (xen-4.1, cProfile's own time per layer, code outside"
          " xensim charged to its callers, scaled to the unprofiled pair) ==")
    lay = layered()
    for path in ("fast", "slow"):
        r = lay[path]
        cref = c[f"{path}_pair_us"] if c else None
        ctext = f", C reference {cref * 1e3:.1f} ns ({r['pair_us'] / cref:,.0f}x)" if c else ""
        print(f"  {path} pair: {r['pair_us']:.2f} us{ctext}")
        for name, us in r["layers"].items():
            print(f"    {name:36} {us:8.2f} us {100 * us / r['pair_us']:5.1f}%")
        print(f"    largest single function: {r['top'][0]}, {100 * r['top'][1]:.1f}%")
    print("  why the fast path is not chased: no layer dominates it (a flattened Python copy of"
          " it measured ~4 us, the floor of Python\n  doing the same work; C does it in ~10 ns):"
          " docs/cost-model.md, \"What the simulator's own time costs\"")


CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import bench_hypercalls as b
print(json.dumps(b.python_side("xen-4.1", batch=False, slow_n=1500, fast_n=15000)))
"""


def against(src: Path, reps: int) -> None:
    """The slow and fast pairs here and with the xensim at ``src``, alternated."""
    import json
    import statistics
    print(f"== this checkout against {src} (xen-4.1, fresh processes, alternated {reps} times) ==")
    ratios: dict[str, list[float]] = {"slow_pair_us": [], "fast_pair_us": []}
    here = HERE.parent
    for rep in range(reps):
        got = []
        for root in (here, src):
            with tempfile.TemporaryDirectory() as cwd:
                out = subprocess.run([sys.executable, "-c", CHILD, str(HERE)], cwd=cwd, check=True,
                                     env=dict(os.environ, PYTHONPATH=str(root)),
                                     capture_output=True, text=True).stdout
            got.append(json.loads(out.strip().splitlines()[-1]))
        line = []
        for key in ratios:
            ratios[key].append(got[1][key] / got[0][key])
            line.append(f"{key[:4]} {got[0][key]:8.2f} us vs {got[1][key]:8.2f} us: "
                        f"{ratios[key][-1]:.2f}x")
        print(f"  repeat {rep + 1}: " + "; ".join(line))
    for key, rs in ratios.items():
        print(f"  {key[:4]} pair: {statistics.median(rs):.2f}x faster here (median; "
              f"{min(rs):.2f}-{max(rs):.2f} over {len(rs)})")


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-src", type=Path, default=None,
                    help="another checkout: its slow and fast pairs against this one's")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if args.baseline_src is not None:
        against(args.baseline_src.resolve(), args.reps)
        return
    print("== PV superpage mmu_update throughput (xen-4.1 design, teaching machine) ==")
    py = python_side()
    c = c_reference()
    rows = [("slow path: map+unmap of the only mapping", "slow_pair_us", "unbatched, within 5x of C"),
            ("fast path: map+unmap of a mapped superpage", "fast_pair_us", "not chased (below)"),
            ("batch of 512 distinct superpages, per superpage", "batch_per_sp_us", "no slower than C")]
    print(f"  {'':50} {'xensim':>12} {'C reference':>12} {'ratio':>8}  goal")
    for label, key, goal in rows:
        cval = f"{c[key]:10.3f}us" if c else "       -    "
        ratio = f"{py[key] / c[key]:7.1f}x" if c else "     - "
        print(f"  {label:50} {py[key]:10.3f}us {cval} {ratio}  {goal}")
    print(f"\n  hypercalls/s: slow path {2e6 / py['slow_pair_us']:,.0f}, "
          f"fast path {2e6 / py['fast_pair_us']:,.0f}, "
          f"batched PSE entries {1e6 / py['batch_per_sp_us']:,.0f}")
    print(f"  xen-4.1 design counters: {py['design_stats']}")
    print(f"\n  grant: map+unmap of a writable host grant  {py['grant_pair_us']:10.3f}us per pair: "
          f"{py['grant_pair_us'] / py['fast_pair_us']:.2f}x the fast pair, "
          f"{py['grant_pair_us'] / py['slow_pair_us']:.3f}x the slow pair (same run)")
    from xensim import design_class, design_names
    print("\n  per design, map+unmap pair (per-mapping has no fast path: 512 frames each time;"
          " a design without PV superpages has no PSE entry to map)")
    print(f"  {'design':16} {'slow pair':>12} {'fast pair':>12}")
    for name in design_names():
        if not design_class(name).supports_pse:
            print(f"  {name:16} {'-':>12} {'-':>12}   (no PV superpages)")
            continue
        r = python_side(name, batch=False, slow_n=300, fast_n=3000)
        print(f"  {name:16} {r['slow_pair_us']:10.3f}us {r['fast_pair_us']:10.3f}us")
    print_layers(c)


if __name__ == "__main__":
    main()
