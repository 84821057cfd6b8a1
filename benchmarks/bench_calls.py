"""The calls alone: the accelerated forms of a hypercall (xensim.xen.accel) against the
scalar loops they stand for, measured in the same run on the same states.

Each row runs one kind of call twice on fresh, identical machines: vectorised (the
machine's default: accelerators allowed), and stepwise (``events.stepwise()``: every
operation by its scalar path, the reference). The figures are calls per CPU second;
the ratio is vectorised / loop. The two machines must end equal (the script checks
their snapshots).

1. decrease_reservation of order-9 extents (``RemoveRun``);
2. mmu_update filling an L1 table with 512 entries before it is pinned
   (``PlainWriteBatch``), on the ``none`` design;
3. unpinning an L1 table of 512 scattered entries (``L1ScatteredPut``), ``none`` design.

(A single-page decrease_reservation has no vectorised form: it is as fast observed
or not, and benchmarks/bench_fuzz.py's "calls alone" shows it with the rest.)

Then the single requests as the fuzzer's batch check replays them (one request per
hypercall, or a page-wise decrease_reservation as one call of order-0 extents), on a
fuzzing machine (``xensim.fuzz.FuzzRunner``: its undo journal and incremental auditor
watch the bus) against the same requests on a bare machine, requests per CPU second:

4. 512 single mmu_update requests filling an L1 table (none);
5. decrease_reservation of 1,024 order-0 extents, two superpages' frames in order;
6. 256 single pins of L1 tables, then their 256 unpins.

Run: python benchmarks/bench_calls.py
"""

from __future__ import annotations

import contextlib

import time

import xensim
from xensim import (HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                    MMUEXT_PIN_L1_TABLE, MMUEXT_UNPIN_TABLE, XENMEM_decrease_reservation,
                    XENMEM_populate_physmap, Machine, MemoryMap, MmuextOp, MmuUpdate,
                    XenMemoryReservation)
from xensim.fuzz import FuzzRunner, Setup, execute

MiB = 1 << 20
EXTENTS = 64                       # 128 MiB of guest memory in 2 MiB extents


def booted(design: str | None = None) -> tuple[Machine, int, list[int]]:
    """A 256 MiB machine with a guest holding EXTENTS superpages: (machine, domid, MFNs)."""
    m = Machine(MemoryMap([(0, 256 * MiB)], name="bench"), "none", superpage=design)
    g = m.create_domain("guest", EXTENTS * 512)
    r = XenMemoryReservation([i * 512 for i in range(EXTENTS)], EXTENTS, 9)
    assert m.hypercall(g, HYPERVISOR_memory_op, XENMEM_populate_physmap, r) == EXTENTS
    return m, g, r.extent_start


def extents(m: Machine, g: int, mfns: list[int]) -> int:
    for mfn in mfns:
        assert m.hypercall(g, HYPERVISOR_memory_op, XENMEM_decrease_reservation,
                           XenMemoryReservation([mfn], 1, 9)) == 1
    return len(mfns)


def entries(mfn: int, i: int, data: list[int]) -> list[MmuUpdate]:
    """512 entries of table ``mfn`` mapping frames of ``data`` read-write."""
    return [MmuUpdate((mfn << 12) | (k * 8), (data[(k * 37 + i) % len(data)] << 12) | 0x67)
            for k in range(512)]


def tables(mfns: list[int]) -> tuple[list[int], list[int]]:
    """The first frame of each extent as a page table, the frames of the others as data."""
    data = [mfn + j for mfn in mfns for j in range(1, 512)]
    return mfns, data


def fills(m, g, mfns):
    tbl, data = tables(mfns)
    for i, t in enumerate(tbl):
        assert m.hypercall(g, HYPERVISOR_mmu_update, entries(t, i, data), [0]) == 0
    return len(tbl)


def unpins(m, g, mfns):
    tbl, data = tables(mfns)
    for i, t in enumerate(tbl):                              # set up, not timed
        assert m.hypercall(g, HYPERVISOR_mmu_update, entries(t, i, data), [0]) == 0
        assert m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_PIN_L1_TABLE, t)], [0]) == 0
    c0 = time.process_time()
    for t in tbl:
        assert m.hypercall(g, HYPERVISOR_mmuext_op, [MmuextOp(MMUEXT_UNPIN_TABLE, t)], [0]) == 0
    return len(tbl), time.process_time() - c0


def fuzzing_machine(design: str, watched: bool):
    """A fuzzer's machine (journal and auditor attached, or detached: ``watched``) with a
    guest holding 8 superpages: (runner, the superpages' MFNs)."""
    fr = FuzzRunner(Setup(design=design))
    if not watched:
        fr.journal.detach()
        fr.auditor.detach()
    execute(fr.m, fr.doms, {"op": "create_domain", "name": "g", "max_pages": 8192})
    r = execute(fr.m, fr.doms, {"op": "memory_op", "domain": "dom0", "target": "g",
                                "cmd": "populate_physmap", "order": 9,
                                "extents": [i * 512 for i in range(8)]})
    assert r.rc == 8, r
    return fr, r.out


def single_fill(mfns):
    t, data = mfns[0], mfns[1]
    return [{"op": "mmu_update", "domain": "g",
             "reqs": [[(t << 12) | (k * 8), ((data + k) << 12) | 0x67]]} for k in range(512)]


def single_removal(mfns):
    pages = [mfns[2] + j for j in range(512)] + [mfns[3] + j for j in range(512)]
    return [{"op": "memory_op", "domain": "g", "cmd": "decrease_reservation", "order": 0,
             "extents": pages, "nr": len(pages)}]


def single_pins(mfns):
    ts = [mfns[4] + j for j in range(256)]
    return ([{"op": "mmuext_op", "domain": "g", "ops": [["pin_l1_table", t]]} for t in ts]
            + [{"op": "mmuext_op", "domain": "g", "ops": [["unpin_table", t]]} for t in ts])


def measure_singles(make, design: str, watched: bool, rounds: int = 5) -> tuple[float, tuple]:
    """Requests per CPU second of the ops ``make(mfns)`` over ``rounds`` fresh machines,
    and the last machine's snapshot."""
    cpu = requests = 0
    for _ in range(rounds):
        fr, mfns = fuzzing_machine(design, watched)
        ops = make(mfns)
        c0 = time.process_time()
        for op in ops:
            res = execute(fr.m, fr.doms, op)
            assert not res.failed, (op, res)
            requests += res.n
        cpu += time.process_time() - c0
    return requests / cpu, fr.m.snapshot()


def measure(fn, design: str | None, observed: bool) -> tuple[float, tuple]:
    """Calls per CPU second of ``fn`` on a fresh machine, and its final snapshot."""
    m, g, mfns = booted(design)
    with m.events.stepwise() if observed else contextlib.nullcontext():
        c0 = time.process_time()
        out = fn(m, g, mfns)
    calls, cpu = out if isinstance(out, tuple) else (out, time.process_time() - c0)
    return calls / cpu, m.snapshot()


def table(title: str, heads: tuple[str, str, str], rows, measure_row, digits: int) -> None:
    """Print ``title`` and a row per (name, what, design): ``measure_row(what, design,
    flag)`` with the flag True, then False, their figures and ratio; the two must end
    with equal machines."""
    print(title)
    print(f"{heads[0]:44} {heads[1]:>12} {heads[2]:>10} {'ratio':>7}")
    for name, what, design in rows:
        a, snap_a = measure_row(what, design, True)
        b, snap_b = measure_row(what, design, False)
        assert snap_a == snap_b, f"{name}: the two machines end differently"
        print(f"{name:44} {a:>10,.0f}/s {b:>8,.0f}/s {a / b:>6.{digits}f}x")


def main() -> None:
    table(f"the calls alone, vectorised against the per-frame loop (calls per CPU second; "
          f"xensim {xensim.__version__})\n", ("call", "vectorised", "loop"),
          [("decrease_reservation, order-9 extents", extents, None),
           ("mmu_update: 512 entries into a new L1 (none)", fills, "none"),
           ("unpin an L1 of 512 scattered entries (none)", unpins, "none")],
          lambda fn, design, fast: measure(fn, design, observed=not fast), 1)
    print("\nloop: the same calls with the machine stepwise (the scalar path); "
          "ratio: vectorised / loop")
    table("\nthe single requests as the batch check replays them (requests per CPU second)\n",
          ("requests", "fuzzing", "bare"),
          [("512 single mmu_update into a new L1 (none)", single_fill, "none"),
           ("decrease_reservation, 1,024 order-0 extents", single_removal, "xen-4.1"),
           ("256 single pins of an L1, 256 unpins", single_pins, "xen-4.1")],
          lambda make, design, watched: measure_singles(make, design, watched), 2)
    print("\nfuzzing: a fuzzer's machine (its journal and auditor watch the bus, as when the "
          "batch check replays);\nbare: the same machine with them detached; ratio: fuzzing / bare")


if __name__ == "__main__":
    main()
