#!/usr/bin/env python3
"""Peak memory per guest frame of a whole ``xensim run``, from a 1 GiB guest to a whole host.

Run from the repository root (the whole host needs ~11 GiB of RAM and a minute of CPU;
run it niced, on a quiet machine):

    nice -n 10 python benchmarks/bench_scale.py [--sizes 1,8,64,512,whole] [--reps N]
                                                [--baseline-src DIR]

Each point is one guest on the intel-gnr-4s preset (2 TiB of RAM, PDX offset
compression) running the ``map-all`` workload on xen-4.1: populate the guest with
2 MiB extents, map every superpage (512 PSE entries per mmu_update), unmap them all,
then tear the guest down. ``whole`` is configs/scale/whole-host.yaml (a 2047 GiB guest).

Each point runs in fresh Python processes, so that a process's peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is that run's alone:

* **base**: the same run without the auditor (``Session``: set-up, the workload, the
  teardown);
* **run**: what ``xensim run`` does (``run_design``: the same, with the full audit at
  the end);
* **import**: a process that loads the config and stops (the interpreter, numpy and
  xensim): the per-frame figures are also given above it (``over import``), which is
  what the guest's size costs;
* with ``--baseline-src DIR``, **DIR run**: the same as *run* with the xensim of another
  checkout (e.g. a worktree of the main branch), so that a change is seen
  against its baseline in one invocation.

The processes of a point alternate (base, run, DIR run, base, run, ...) ``--reps``
times; a figure is the median of its repeats, CPU time (user + system) and wall time
beside it. Goals: at most 48 B of peak RSS per guest frame for a whole run with its
audit (Xen's own metadata per frame: a 32 B page_info, 8 B of M2P, 8 B of P2M), and the
whole host within 60 s and 12 GiB.

This is a script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHOLE = REPO / "configs" / "scale" / "whole-host.yaml"

CHILD = r"""
import json, resource, sys, time
from xensim.config import build_memory_map, load_config
from xensim.sim import Session, run_design
RSS_UNIT = 1 if sys.platform == "darwin" else 1024
path, mode = sys.argv[1], sys.argv[2]
cfg = load_config(path)
memmap = build_memory_map(cfg)
t0 = time.perf_counter()
if mode == "import":
    leaked, ok = 0, True
elif mode == "base":
    s = Session(cfg, memmap, cfg.hypervisor.superpage, None)
    s.set_up()
    s.run()
    leaked, _ = s.teardown()
    ok = True
else:
    r = run_design(cfg, memmap, cfg.hypervisor.superpage)
    assert r.status == "ok", r.reason
    leaked, ok = r.leaked_frames, r.audit.ok
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"peak_rss": ru.ru_maxrss * RSS_UNIT, "cpu": ru.ru_utime + ru.ru_stime,
                  "wall": wall, "leaked": leaked, "audit_ok": ok}))
"""

CONFIG = """\
machine: {{preset: intel-gnr-4s, pdx: offset}}
hypervisor: {{version: "4.8", superpage: xen-4.1}}
workload: {{kind: map-all}}
domains:
  - {{name: guest, memory: {gib}GiB}}
audit_every: 0
"""


def child(path: Path, mode: str, src: Path) -> dict:
    """One run in a fresh process importing xensim from ``src`` (its cwd an empty
    directory, so that nothing else is imported by accident)."""
    env = dict(os.environ, PYTHONPATH=str(src))
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], cwd=cwd, env=env,
                             capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{path.name} ({mode}, {src}): {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def guest_frames(path: Path) -> int:
    sys.path.insert(0, str(REPO))
    from xensim.config import load_config
    return sum(d.memory * d.count for d in load_config(path).domains) >> 12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,8,64,512,whole",
                    help="guest sizes in GiB, and 'whole' for configs/scale/whole-host.yaml")
    ap.add_argument("--reps", type=int, default=1, help="runs of each mode per size")
    ap.add_argument("--baseline-src", type=Path, default=None,
                    help="another checkout whose xensim runs the same points beside")
    args = ap.parse_args()
    modes = [("base", REPO), ("run", REPO)]
    if args.baseline_src is not None:
        modes.append(("run", args.baseline_src.resolve()))
    print("== peak RSS per guest frame: map-all on intel-gnr-4s, xen-4.1 ==")
    head = f"  {'guest':>9} {'frames':>13} " + " ".join(
        f"{'base' if m == 'base' else 'run' if src == REPO else 'DIR run':>30}" for m, src in modes)
    print(head + "   audit (run - base)")
    print(f"  {'':>23} " + " ".join(f"{'B/frame over import  GiB  cpu s':>30}" for _ in modes))
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            if size == "whole":
                path, label = WHOLE, "whole"
            else:
                path, label = Path(tmp) / f"g{size}.yaml", f"{size} GiB"
                path.write_text(CONFIG.format(gib=int(size)))
            frames = guest_frames(path)
            got: list[list[dict]] = [[] for _ in modes]
            for _ in range(args.reps):                       # alternated
                for i, (mode, src) in enumerate(modes):
                    got[i].append(child(path, mode, src))
            floor = child(path, "import", REPO)["peak_rss"]
            cells, peaks = [], []
            for runs in got:
                peak = max(r["peak_rss"] for r in runs)
                cpu = statistics.median(r["cpu"] for r in runs)
                assert all(r["leaked"] == 0 and r["audit_ok"] for r in runs), runs
                peaks.append(peak)
                cells.append(f"{peak / frames:6.1f} {(peak - floor) / frames:6.1f} "
                             f"{peak / 2**30:6.2f} {cpu:7.2f}")
            audit = (peaks[1] - peaks[0]) / 2**20
            print(f"  {label:>9} {frames:13,} " + " ".join(f"{c:>30}" for c in cells)
                  + f"   {audit:+8.1f} MiB")
            if size == "whole":
                w = [r["wall"] for r in got[1]]
                print(f"  whole host: {peaks[1] / 2**30:.2f} GiB peak (goal 12), "
                      f"{statistics.median(w):.1f} s wall in the run (goal 60; "
                      f"{min(w):.1f}-{max(w):.1f} s over {len(w)})")
    print("  goal: at most 48 B of peak RSS per guest frame for a whole run with its audit (a big"
          " guest's; a small one's is the interpreter's: see 'over import')")


if __name__ == "__main__":
    main()
