"""Results of the machine-level commands: the machine summary and a run's result
(with, when the config simulates, the comparison of the designs)."""

from __future__ import annotations

from dataclasses import dataclass

from ..designs import design_class, design_names
from ..mem import FRAME_BYTES, PAGE_SHIFT, PDX_GROUP_FRAMES, format_size
from ..output import Column, Table, fmt_hex, fmt_int, fmt_pct, plural
from ..xen import Machine
from ._overhead import OverheadReport, overhead
from ._simulate import Comparison, DesignRun


@dataclass
class MachineReport:
    """A booted machine: its map, holes, PDX and tables (as booted: no domain yet)."""
    machine: Machine
    #: the summary table's title
    title: str = "Machine"

    def frame_table_bytes_all_groups(self) -> int:
        """xensim's frame-table arrays once every PDX group with RAM has been written
        (the overhead table's xensim-frame-table row)."""
        return self.machine.frame_table.valid_groups * PDX_GROUP_FRAMES * FRAME_BYTES

    def to_dict(self) -> dict:
        d = self.machine.summary()
        d["frame_table_all_groups_bytes"] = self.frame_table_bytes_all_groups()
        d["memory_map"] = self.machine.memmap.to_dict()["ranges"]
        d["holes"] = [[hex(s << PAGE_SHIFT), hex(e << PAGE_SHIFT)] for s, e in self.machine.memmap.holes]
        return d

    def tables(self) -> list[Table]:
        m = self.machine
        mm = m.memmap
        ranges = Table(
            f"Memory map of {mm.name}" + (f" ({mm.source})" if mm.source else ""),
            [Column("start", "start", fmt_hex), Column("end", "end", fmt_hex),
             Column("type", "type", align="<"), Column("size", "size")],
            [{"start": r.start, "end": r.end, "type": r.type.value, "size": format_size(r.end - r.start)}
             for r in mm.ranges])
        holes = Table(
            "Holes below max_pfn (frames that are not RAM)",
            [Column("start", "first mfn", fmt_hex), Column("end", "end mfn", fmt_hex),
             Column("size", "size")],
            [{"start": s, "end": e, "size": format_size((e - s) << PAGE_SHIFT)} for s, e in mm.holes])
        s = m.summary()
        alloc = s["frame_table_allocated_bytes"]
        summary = Table(
            self.title, [Column("key", "item", align="<"), Column("value", "value", align="<")],
            [{"key": k, "value": v} for k, v in (
                ("RAM", f"{s['ram_bytes']:,} B ({format_size(s['ram_bytes'])}), {s['ram_frames']:,} whole frames"),
                ("max_pfn", fmt_hex(s["max_pfn"])),
                ("superpages", f"{s['superpages_with_ram']:,} with RAM, {s['superpages_full']:,} RAM in full"),
                ("PDX", m.pdx.describe()),
                ("max_pdx", fmt_hex(s["max_pdx"])),
                ("PDX groups with RAM", f"{fmt_int(s['pdx_groups_with_ram'])} of "
                                        f"{fmt_int(s['pdx_group_frames'])} frames each"),
                ("frame table allocated", f"{alloc:,} B at boot (a group's arrays are created "
                                          f"on its first write; all {fmt_int(s['pdx_groups_with_ram'])}: "
                                          f"{format_size(self.frame_table_bytes_all_groups())})"),
                ("superpage table allocated", f"{s['spage_table_allocated_bytes']:,} B"))])
        if not mm.holes:                      # no empty table: a note under the map says so
            ranges.notes.append("no holes below max_pfn: every frame below it is RAM")
            return [summary, ranges]
        return [summary, ranges, holes]

    def csv_tables(self) -> list[Table]:
        """The three tables with plain values (bytes, frame numbers), for CSV."""
        mm = self.machine.memmap
        flat = {}
        for k, v in self.to_dict().items():
            if isinstance(v, dict):
                flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
            elif not isinstance(v, list):
                flat[k] = v
        summary = Table("machine", [Column("table", "table"), Column("key", "key"),
                                    Column("value", "value")],
                        [{"table": "machine", "key": k, "value": v} for k, v in flat.items()])
        ranges = Table("memory_map", [Column(k, k) for k in ("table", "start", "end", "type", "bytes")],
                       [{"table": "memory_map", "start": r.start, "end": r.end,
                         "type": r.type.value, "bytes": r.end - r.start} for r in mm.ranges])
        holes = Table("holes", [Column(k, k) for k in ("table", "first_mfn", "end_mfn", "frames")],
                      [{"table": "holes", "first_mfn": a, "end_mfn": b, "frames": b - a}
                       for a, b in mm.holes])
        return [summary, ranges, holes]


def fmt_ns(ns) -> str:
    """A modelled time: 950 ns, 12.3 us, 4.56 ms, 1.23 s."""
    ns = float(ns)
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def _fmt_errors(errors: dict) -> str:
    return " ".join(f"{k}:{v}" for k, v in errors.items()) if errors else "-"


def _fmt_ratio(v) -> str:
    return f"{v:.4g}"


def _audit_cell(r: DesignRun) -> str:
    if r.status != "ok":
        return r.status
    a = r.audit
    if not a.ok:
        return f"{a.differences} diff"
    return "leak" if r.leaked_frames or r.zombie_domains else "clean"


def comparison_tables(c: Comparison, machine_name: str) -> list[Table]:
    """The per-design table (the CSV one), then the per-operation figures."""
    wl = c.workload
    xens = sorted({r.xen for r in c.runs if r.xen})
    title = (f"Comparison on {machine_name}: {wl['kind']} workload, {c.ops:,} operations "
             f"on {len(c.domains)} domain{'s' * (len(c.domains) != 1)}, seed {c.seed}"
             + (f"; Xen {', '.join(xens)}" if xens else ""))
    rows, per_op, notes = [], [], []
    hypothetical = [r.design for r in c.runs if r.hypothetical]
    if hypothetical:
        notes.append(f"{', '.join(hypothetical)}: hypothetical on Xen {', '.join(xens)}: as if "
                     f"merged into today's Xen (PV superpages were removed in 4.10; 'none' "
                     f"is that Xen itself)")
    for r in c.runs:
        shown = f"{r.design} (hypothetical)" if r.hypothetical else r.design
        row = {"design": shown, "audit": _audit_cell(r)}
        if r.ok:
            row.update(
                hypercalls=r.hypercall_calls, errors=_fmt_errors(r.errors),
                **r.refcount, slow_get=r.superpage.get("slow_get", 0),
                slow_put=r.superpage.get("slow_put", 0), fast=r.fast_updates,
                tlb_flushes=r.tlb_flushes, metadata_bytes=r.metadata_bytes, metadata_percent=r.metadata_percent,
                modelled_ns=r.estimate.ns)
            per_op.append({"design": shown, "ops": r.ops, "ops_failed": r.ops_failed,
                           "mappings": r.mappings, "slow_per_op": r.slow_per_op,
                           "type_refs_per_mapping": r.type_refs_per_mapping,
                           "type_refs_per_2m_mapping": r.type_refs_per_2m_mapping,
                           "mappings_4k": r.mappings_4k,
                           "type_refs_per_4k_mapping": r.type_refs_per_4k_mapping,
                           "ns_per_op": r.ns_per_op})
        rows.append(row)
        if r.status != "ok":
            notes.append(f"{r.design}: {r.status}: {r.reason}")
        elif not r.audit.ok:
            notes.append(f"{r.design}: audit after {r.audit.at_op:,} operations: "
                         f"{'; '.join(r.audit.first[:2])}")
        elif r.leaked_frames or r.zombie_domains:
            notes.append(f"{r.design}: after destroying every domain, {r.leaked_frames:,} "
                         f"frames never returned to the heap ({r.zombie_domains} zombie domains)")
        if r.ok and r.mark_unsupported:
            notes.append(f"{r.design}: MARK unsupported (no MARK_SUPER / UNMARK_SUPER in this "
                         f"design): the workload's {plural(r.mark_unsupported, 'mark/unmark operation')} "
                         f"failed with {r.mark_errno}, as with superpages off")
    notes += _count_column_notes(c)
    cm = c.cost_model
    notes.append(f"modelled time = {cm['frame_atomic_ns']:g} ns per frame refcount op "
                 f"(get/put_page, get/put_page_type) + {cm['cmpxchg_ns']:g} ns per superpage "
                 f"count cmpxchg + {cm['hypercall_ns']:g} ns per hypercall (docs/cost-model.md)")
    digests = {r.ops_digest for r in c.runs if r.ok}
    if len(digests) > 1:
        notes.append("WARNING: the designs did not see the same operations "
                     f"(digests {', '.join(sorted(digests))})")
    main = Table(title, [
        Column("design", "design", align="<"),
        Column("hypercalls", "hypercalls", fmt_int),
        Column("errors", "errors", align="<"),
        Column("get_page", "get_page", fmt_int),
        Column("put_page", "put_page", fmt_int),
        Column("get_page_type", "get_type", fmt_int),
        Column("put_page_type", "put_type", fmt_int),
        Column("slow_get", "0->1", fmt_int),
        Column("slow_put", "1->0", fmt_int),
        Column("fast", "fast", fmt_int),
        Column("tlb_flushes", "TLB flush", fmt_int),
        Column("metadata_bytes", "metadata", format_size),
        Column("metadata_percent", "% of RAM", fmt_pct),
        Column("modelled_ns", "modelled", fmt_ns),
        Column("audit", "audit", align="<"),
    ], rows, notes)
    per = Table("Per operation", [
        Column("design", "design", align="<"),
        Column("ops", "ops", fmt_int),
        Column("ops_failed", "failed", fmt_int),
        Column("mappings", "2M mappings", fmt_int),
        Column("type_refs_per_2m_mapping", "get_type/2M map", _fmt_ratio),
        Column("mappings_4k", "4K mappings", fmt_int),
        Column("type_refs_per_4k_mapping", "get_type/4K map", _fmt_ratio),
        Column("slow_per_op", "slow/op", _fmt_ratio),
        Column("ns_per_op", "modelled/op", fmt_ns),
    ], per_op, ["get_type/2M map: get_page_type calls of the map operations per superpage "
                "mapping (512 with no count); get_type/4K map: of the map-4k operations per "
                "4 KiB mapping (1 if writable, 0 if read-only); remaps and marks in neither"]
       if any(p["mappings"] or p["mappings_4k"] for p in per_op) else [])
    return [main, per]


def _count_column_notes(c: Comparison) -> list[str]:
    """What 0->1, 1->0 and fast mean for a design that keeps no superpage count."""
    known = set(design_names())
    shown = [r.design for r in c.runs if r.ok and r.design in known]
    uncounted = [d for d in shown if not design_class(d).keeps_count and design_class(d).supports_pse]
    no_pse = [d for d in shown if not design_class(d).supports_pse]
    notes = []
    if uncounted:
        notes.append(f"{', '.join(uncounted)}: no count kept: 0->1 and 1->0 are every 2 MiB "
                     f"mapping and unmapping (each takes or drops the 512 frames' references), "
                     f"fast is 0")
    if no_pse:
        notes.append(f"{', '.join(no_pse)}: no PV superpages: no superpage count, 0->1, 1->0 "
                     f"and fast stay 0 (a 2 MiB mapping is an L1 table's 512 entries)")
    return notes


@dataclass
class RunResult:
    """What ``xensim run`` produces: the overhead and machine tables, and, when the
    config has a workload or a compare, the comparison (first)."""
    machine: MachineReport
    overhead: OverheadReport
    comparison: Comparison | None = None

    @classmethod
    def of(cls, machine: Machine, comparison: Comparison | None = None) -> "RunResult":
        title = ("Machine as booted, before any domain (each design above ran on a fresh "
                 "copy of it)" if comparison is not None else "Machine")
        return cls(MachineReport(machine, title), overhead(machine), comparison)

    def to_dict(self) -> dict:
        d = {"machine": self.machine.to_dict(), "overhead": self.overhead.to_dict()}
        if self.comparison is not None:
            d["comparison"] = self.comparison.to_dict()
        return d

    def tables(self) -> list[Table]:
        first = (comparison_tables(self.comparison, self.machine.machine.memmap.name)
                 if self.comparison is not None else [])
        return first + self.overhead.tables()[:1] + self.machine.tables()[:1]
