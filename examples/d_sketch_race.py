"""The race in the 2010 sketch, found by the explorer and replayed step by step.

Run it:  python examples/d_sketch_race.py

The proposal's acquire loop: x = count; if x == 0, take a reference on each of
the 512 frames; cmpxchg(count, x, x + 1); retry on failure. Two CPUs that both
read 0 both take the 512 references; one cmpxchg wins; the loser retries, reads
1, and keeps the references it took: every frame leaks one reference, and the
superpage's memory can never be freed (docs/xen-facts.md section 5c;
docs/designs/sketch.md). Run one operation at a time, the sketch is correct:
the race needs two CPUs between the read and the cmpxchg. The explorer
(xensim explore) runs scenarios/map-map.yaml, two CPUs mapping the same unmapped
superpage, one atomic step at a time, over every schedule with at most N
preemptions, and checks the auditor's recount after each schedule.
"""

from pathlib import Path

from xensim.explore import (Violation, explore, format_schedule, load_scenario, replay,
                            summarise_trace)
from xensim.teach import count_info_text, type_info_text

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "map-map.yaml"

intro = __doc__.split("\n\n")
print(intro[0])
print()
print(intro[2])
sc = load_scenario(SCENARIO)
print(f"\nscenario {sc.name}: {sc.description}; CPUs: "
      + "; ".join(f"cpu{i}: " + ", ".join(f"{op.op} superpage {op.superpage}" for op in ops)
                  for i, ops in enumerate(sc.cpus)))

# 1. search: no preemption finds nothing (each CPU's map runs whole); one is enough
for bound in (0, 1):
    res = explore(sc, "sketch", preemption_bound=bound)
    print(f"\nsketch, preemption bound {bound}: {res.schedules} schedule{'s' * (res.schedules != 1)} "
          f"explored, {res.violations} violation{'s' * (res.violations != 1)}")
v = res.first
print(f"first violation: {v.message[:160]}...")
print(f"its schedule ({len(v.schedule)} steps, the CPU that took each step): "
      f"{format_schedule(v.schedule)}")

# 2. replay that schedule exactly, and read the trace: each line is one atomic step
ex, again = replay(sc, v.schedule, "sketch")
print("\nreplayed step by step (runs of one CPU's frame steps summarised):")
for line in summarise_trace(ex.trace):
    print(f"  {line}")
print("""
  cpu0 read the count (sp_load: 0) and took the 512 frames' references; cpu1 read 0
  too, took them as well, and its cmpxchg(0, 1) won. cpu0's cmpxchg(0, 1) then
  lost (it found 1); it re-read the count (1), took nothing more, and cmpxchg(1, 2) won,
  keeping its 512 references: count 2 for the two mappings, as it should be, but two
  sets of 512 references where a count holds one: one set is leaked.""")

# 3. the leak: the frames hold one reference more than the two mappings explain
m = ex.m
mfn = ex.world.mfns["a"][0]
page = m.mfn_to_page(mfn)
print(f"\nafter the replay (violation again: {again is not None}):")
print(f"  superpage mfn {mfn:#x}: count {m.spage_table.read(page >> 9)}; the sketch's own "
      f"tally of sets of 512 references kept by a loser: {m.superpage.leaked}")
print(f"  mfn {mfn:#x} count_info: {count_info_text(m.frame_table.count_info(page))} "
      "(expected 2: PGC_allocated + the count's one set of references)")
print(f"  mfn {mfn:#x} type_info: {type_info_text(m.frame_table.type_info(page))} "
      "(expected 1: the count's one writable set)")
print(f"  the auditor: {again.message.split(';')[0]} ...")

# 4. and the memory can never be freed: destroy the guest
domid = ex.world.kernels["a"].domid
m.destroy_domain(domid)
d = m.domain(domid)
print(f"\ndestroy the guest: dom{domid} is "
      + (f"a zombie holding {d.tot_pages} frames" if d is not None else "gone")
      + f"; mfn {mfn:#x} count_info: {count_info_text(m.frame_table.count_info(page))}")
print(f"  {m.memmap.ram_frames - m.heap.free_frames} frames never return to the heap")

# 5. the fix: give the speculative references back when the cmpxchg finds the count moved
res = explore(sc, "superpage-info", preemption_bound=1)
print(f"\nsuperpage-info (the proposal with the give-back), preemption bound 1: "
      f"{res.schedules} schedules, {res.violations} violations"
      + (" (search complete)" if res.complete else ""))
res = explore(sc, "xen-4.1", preemption_bound=1)
print(f"xen-4.1 (what Xen merged), preemption bound 1: {res.schedules} schedules, "
      f"{res.violations} violations" + (" (search complete)" if res.complete else ""))
assert isinstance(again, Violation)
