#!/usr/bin/env python3
"""Boot cost of every machine preset, and xensim's memory per touched RAM frame.

Run from the repository root:

    python benchmarks/bench_boot.py [--reps N]

1. Boot: for each preset, ``Machine(load_preset(name), "mask")`` (and "offset"
   for intel-gnr-4s) in a fresh Python process, so that the process's peak RSS
   (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, read in that process) is the
   boot's alone. A process that only imports xensim gives the baseline; the
   table shows both and the difference. Times are the median of ``--reps``
   fresh processes; RSS is the largest peak seen.

2. Bytes per frame: boot teaching, write ``count_info`` of every frame of the
   1 GiB guest-sized region [1 GiB, 2 GiB) (mfn 0x40000 .. 0x7ffff) through
   ``frame_table.slices()`` (which materialises their PDX groups), and divide
   ``frame_table.allocated_bytes() + spage_table.allocated_bytes`` by the
   frames touched. Goal: at most 18 B per frame (Xen's page_info is 32).

This is a script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# ru_maxrss is KiB on Linux, bytes on macOS.
_CHILD_PRELUDE = r"""
import json, resource, sys, time
sys.path.insert(0, REPO_DIR)
import numpy as np
import xensim
from xensim import Machine, load_preset
RSS_UNIT = 1 if sys.platform == "darwin" else 1024
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT
def rss_now():
    # resident bytes now (Linux /proc/self/statm); None elsewhere
    try:
        import os
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None
"""

CHILD_BASELINE = _CHILD_PRELUDE + r"""
print(json.dumps({"peak_rss": peak()}))
"""

CHILD_BOOT = _CHILD_PRELUDE + r"""
name, mode = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
mm = load_preset(name)
t1 = time.perf_counter()
m = Machine(mm, mode)
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "boot_s": t2 - t1, "peak_rss": peak(),
                  "pdx": m.pdx.mode, "ram_bytes": mm.ram_bytes,
                  "ft_bytes": m.frame_table.allocated_bytes(),
                  "sp_bytes": m.spage_table.allocated_bytes}))
"""

CHILD_TOUCH = _CHILD_PRELUDE + r"""
from xensim.mem import PGC_allocated, PGC_state_inuse
GROUP = xensim.PDX_GROUP_FRAMES
first_mfn, end_mfn = (1 << 30) >> 12, (2 << 30) >> 12   # a guest-sized 1 GiB, aligned
m = Machine(load_preset("teaching"), "mask")
rss_boot = rss_now()
boot_ft, boot_sp = m.frame_table.allocated_bytes(), m.spage_table.allocated_bytes
value = np.uint64(PGC_allocated | PGC_state_inuse | 1)
t0 = time.perf_counter()
touched = 0
pdx = m.mfn_to_pdx(first_mfn)
end_pdx = m.mfn_to_pdx(end_mfn - 1) + 1      # one RAM range: contiguous in PDX space
while pdx < end_pdx:
    n = min(end_pdx - pdx, GROUP - (pdx % GROUP))
    ci, ti, owner = m.frame_table.slices(pdx, n)
    ci[:] = value
    ti[:] = 0x7 << 60 | 1 << 58 | 1
    owner[:] = 1
    touched += n
    pdx += n
t1 = time.perf_counter()
ft = m.frame_table
# check the writes went through, at both ends
assert ft.count_info(m.mfn_to_pdx(first_mfn)) == int(value)
assert ft.count_info(m.mfn_to_pdx(end_mfn - 1)) == int(value)
print(json.dumps({"frames": touched, "groups": ft.materialized_groups,
                  "ft_bytes": ft.allocated_bytes(), "sp_bytes": m.spage_table.allocated_bytes,
                  "boot_ft": boot_ft, "boot_sp": boot_sp, "touch_s": t1 - t0,
                  "rss_boot": rss_boot, "rss_after": rss_now()}))
"""

BOOTS = [("teaching", "mask"), ("firecracker-1g", "mask"), ("qemu-pc-4g", "mask"),
         ("qemu-2node", "mask"), ("intel-clx-2s", "mask"), ("intel-gnr-4s", "mask"),
         ("intel-gnr-4s", "offset")]


def child(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", f"REPO_DIR = {str(REPO)!r}\n" + code, *args],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({args}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(n: float) -> str:
    return f"{n / 2**20:8.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="fresh processes per measurement")
    args = ap.parse_args()
    started = time.perf_counter()

    base = [child(CHILD_BASELINE)["peak_rss"] for _ in range(args.reps)]
    baseline = max(base)

    print(f"xensim {REPO}  python {sys.version.split()[0]}  reps {args.reps}")
    print()
    print("1. Boot: Machine(load_preset(name), pdx) in a fresh process "
          "(time: median; RSS: max peak)")
    hdr = (f"{'preset':16} {'pdx asked':9} {'pdx used':8} {'RAM':>11} {'load ms':>8} "
           f"{'boot ms':>8} {'peak RSS MiB':>12} {'- baseline':>10} {'tables at boot':>15}")
    print(hdr)
    print("-" * len(hdr))
    print(f"{'(imports only)':16} {'':9} {'':8} {'':>11} {'':>8} {'':>8} {mib(baseline):>12} "
          f"{mib(0):>10} {'':>15}")
    for name, mode in BOOTS:
        runs = [child(CHILD_BOOT, name, mode) for _ in range(args.reps)]
        r0 = runs[0]
        load_ms = statistics.median(r["load_s"] for r in runs) * 1e3
        boot_ms = statistics.median(r["boot_s"] for r in runs) * 1e3
        peak = max(r["peak_rss"] for r in runs)
        tables = r0["ft_bytes"] + r0["sp_bytes"]
        ram = f"{r0['ram_bytes'] / 2**30:.2f} GiB"
        print(f"{name:16} {mode:9} {r0['pdx']:8} {ram:>11} {load_ms:8.1f} {boot_ms:8.1f} "
              f"{mib(peak):>12} {mib(peak - baseline):>10} {tables:>13,} B")
    print()
    print("   baseline = a fresh process that imports numpy and xensim and boots nothing;")
    print("   'tables at boot' = frame_table.allocated_bytes() + spage_table.allocated_bytes")

    t = child(CHILD_TOUCH)
    frames = t["frames"]
    ft_bytes, sp_bytes = t["ft_bytes"], t["sp_bytes"]
    group_frames = len(t["groups"]) * 65536
    total = ft_bytes + sp_bytes
    per_frame = total / frames
    print()
    print("2. Memory per RAM frame: teaching, count_info, type_info and owner written for "
          "every frame of [1 GiB, 2 GiB) through frame_table.slices()")
    rows = [
        ("frames touched (mfn 0x40000 .. 0x7ffff)", f"{frames:,}"),
        ("PDX groups materialised", f"{len(t['groups'])} {t['groups']} = {group_frames:,} frames"),
        ("frame_table.allocated_bytes()", f"{ft_bytes:,} B (at boot {t['boot_ft']:,} B)"),
        ("spage_table.allocated_bytes", f"{sp_bytes:,} B (at boot {t['boot_sp']:,} B)"),
        ("total", f"{total:,} B"),
        ("total / frames touched", f"{per_frame:.3f} B/frame"),
        ("frame arrays / frames in materialised groups",
         f"{(ft_bytes - t['boot_ft']) / group_frames:.3f} B/frame"),
        ("goal", "<= 18 B/frame"),
        ("Xen's struct page_info", "32 B/frame"),
        ("resident memory growth while touching",
         "n/a (no /proc/self/statm)" if t["rss_boot"] is None else
         f"{(t['rss_after'] - t['rss_boot']) / 2**20:.1f} MiB = "
         f"{(t['rss_after'] - t['rss_boot']) / frames:.2f} B/frame"
        ),
        ("time to touch", f"{t['touch_s'] * 1e3:.1f} ms"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"   {k:{width}}  {v}")
    ft_per_frame = (ft_bytes - t["boot_ft"]) / frames
    sp_share = 8 * frames / 512 / frames          # the region's own 8-byte superpage entries
    verdict = "met" if ft_per_frame <= 18 else "missed"
    print()
    print(f"   goal {verdict}: the frame table costs {ft_per_frame:.3f} B per touched frame "
          f"(goal <= 18, Xen: 32);")
    print(f"   the region's own superpage entries add {sp_share:.4f} B/frame; the whole "
          f"machine's tables over the region: {per_frame:.3f} B/frame.")
    print()
    print(f"(total {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
