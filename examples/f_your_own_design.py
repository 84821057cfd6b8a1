"""Your own refcount design, measured before you write it in C: a lock bit per superpage.

Run it:  python examples/f_your_own_design.py

The design lives outside xensim, in its own file, examples/designs/lock_bit.py: a
subclass of xensim.TableCounted (the counting core of superpage-info and xen-4.1's
cousins) whose acquire and release serialise the 0 -> 1 and 1 -> 0 transitions with
a lock bit instead of taking the 512 frames' references speculatively. Loading the
file registers the design under its name, "lock-bit"; from then on it is one design
among the others: the same workload runs on it beside the built-in designs, the
explorer interleaves its atomic steps with another CPU's and checks every schedule,
and its memory cost is counted on a real machine's memory map. The same file loads
from the command line (xensim run CONFIG --design-file examples/designs/lock_bit.py)
or from a config (design_files: [lock_bit.py], relative to the config's file);
docs/designs/writing-a-design.md is the tutorial.
"""

from pathlib import Path

import xensim
from xensim.explore import explore, load_scenario

HERE = Path(__file__).resolve().parent / "designs"
DESIGN = HERE / "lock_bit.py"
SCENARIO = HERE / "two-cpus-map-unmap.yaml"
BUILT_IN = ["per-mapping", "superpage-info", "xen-4.1"]

intro = __doc__.split("\n\n")
print(intro[0])
print()
print(intro[2])

# 1. load the file: its designs are registered by name
names = xensim.load_design_file(DESIGN)
print(f"\nloaded {DESIGN.name}: designs {', '.join(names)}; every design now: "
      f"{', '.join(xensim.design_names())}")
cls = xensim.design_class("lock-bit")
print(f"lock-bit: {cls.description}")

# 2. the same workload on lock-bit and the built-ins: each superpage mapped 8 times, unmapped
config = xensim.parse_config(f"""
machine: {{preset: teaching}}
compare: [{', '.join(BUILT_IN + ['lock-bit'])}]
workload: {{kind: shared, superpages: 4, mappings: 8, rounds: 5}}
domains: [{{name: web, memory: 64MiB}}, {{name: db, memory: 64MiB}}]
""", "churn.yaml")
comparison = xensim.run_comparison(config, xensim.build_memory_map(config))
print(f"\n{comparison.ops} operations (2 guests, 4 superpages each, mapped 8 times and "
      f"unmapped, 5 rounds):")
print(f"{'design':<16}{'0->1':>6}{'1->0':>6}{'get_page_type':>15}{'audit':>8}")
for run in comparison.runs:
    sp = run.superpage
    print(f"{run.design:<16}{sp.get('slow_get', 0):>6}{sp.get('slow_put', 0):>6}"
          f"{run.refcount['get_page_type']:>15,}{'clean' if run.audit.ok else 'FAILED':>8}")
lock, xen41 = comparison.run("lock-bit"), comparison.run("xen-4.1")
print(f"lock-bit and xen-4.1 take the same references one CPU at a time: "
      f"{lock.refcount == xen41.refcount}")

# 3. the explorer: two CPUs map and unmap the same superpage, every interleaving
sc = load_scenario(SCENARIO)
print(f"\nscenario {sc.name}: {sc.description} (design_files: {sc.design_files[0].split('/')[-1]})")
for bound in (0, 1):
    res = explore(sc, "lock-bit", preemption_bound=bound)
    print(f"lock-bit, preemption bound {bound}: {res.schedules} schedule"
          f"{'s' * (res.schedules != 1)} ({res.steps:,} atomic steps), {res.violations} "
          f"violations" + (" (search complete)" if res.complete else ""))
print("(preemption bound 2: 21 schedules, 0 violations; xensim explore "
      "examples/designs/two-cpus-map-unmap.yaml --preemption-bound 2)")

# 4. what it costs in memory: one 8-byte word per 2 MiB superpage with RAM
print("\nmetadata on each machine (bytes the design needs, and % of RAM):")
for preset in ("teaching", "intel-gnr-4s"):
    memmap = xensim.load_preset(preset)
    cells = []
    for design in ("pageinfo-count", "xen-4.1", "lock-bit"):
        m = xensim.Machine(memmap, "mask", superpage=design)
        b = m.superpage.metadata_bytes()
        cells.append(f"{design} {xensim.format_size(b)} ({100 * b / memmap.ram_bytes:.5f}%)")
    print(f"  {preset}: " + ", ".join(cells))
