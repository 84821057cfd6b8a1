"""Results of the machine-level commands: the machine summary and a run's result."""

from __future__ import annotations

from dataclasses import dataclass

from ._machine import Machine
from ._overhead import OverheadReport, overhead
from ._render import Column, Table, fmt_hex, fmt_int
from ._units import PAGE_SHIFT, format_size


@dataclass
class MachineReport:
    """A booted machine: its map, holes, PDX and tables."""
    machine: Machine

    def to_dict(self) -> dict:
        d = self.machine.summary()
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
        summary = Table(
            "Machine", [Column("key", "", align="<"), Column("value", "", align="<")],
            [{"key": k, "value": v} for k, v in (
                ("RAM", f"{s['ram_bytes']:,} B ({format_size(s['ram_bytes'])}), {s['ram_frames']:,} whole frames"),
                ("max_pfn", fmt_hex(s["max_pfn"])),
                ("superpages", f"{s['superpages_with_ram']:,} with RAM, {s['superpages_full']:,} RAM in full"),
                ("PDX", m.pdx.describe()),
                ("max_pdx", fmt_hex(s["max_pdx"])),
                ("PDX groups with RAM", f"{fmt_int(s['pdx_groups_with_ram'])} of "
                                        f"{fmt_int(s['pdx_group_frames'])} frames each"),
                ("frame table allocated", f"{s['frame_table_allocated_bytes']:,} B"),
                ("superpage table allocated", f"{s['spage_table_allocated_bytes']:,} B"))])
        return [summary, ranges, holes]


@dataclass
class RunResult:
    """What ``xensim run`` produces (extended by the simulation issues)."""
    machine: MachineReport
    overhead: OverheadReport

    @classmethod
    def of(cls, machine: Machine) -> "RunResult":
        return cls(MachineReport(machine), overhead(machine))

    def to_dict(self) -> dict:
        return {"machine": self.machine.to_dict(), "overhead": self.overhead.to_dict()}

    def tables(self) -> list[Table]:
        return self.overhead.tables()[:1] + self.machine.tables()[:1]
