"""What each superpage refcount design costs in memory on a given machine.

The 2010 xen-devel thread weighed 8 bytes per 4 KiB frame (an extra count in
every page_info, ~0.2% of RAM) against 8 bytes per 2 MiB superpage (~0.0004%).
This module measures both, and the tables around them, on a real memory map:
first the frame tables every design shares,

==========================  =====================================================
``xen-frame-table``         Xen's page_info: 32 B per frame, mapped for every PDX
                            group (65,536 frames) that holds RAM
``xensim-frame-table``      xensim's own page_info arrays: 18 B per frame, same groups
==========================  =====================================================

then the rows of every registered design, in registration order (each design's
``metadata_rows``: its own layouts, e.g. Xen 4.1's dense spage_info without and with
PDX compression beside xensim's sparse table; a layout two designs share is one row).

Percentages are of ``ram_bytes`` (the bytes of the RAM ranges as listed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..designs import metadata_rows
from ..mem import FRAME_BYTES, PDX_GROUP_FRAMES, XEN_PAGE_INFO_BYTES, format_size
from ..output import Column, Table, fmt_hex, fmt_int, fmt_pct
from ..xen import Machine


#: the rows every design shares (the rest are the designs' own)
FRAME_TABLE_ROWS = ("xen-frame-table", "xensim-frame-table")


@dataclass
class DesignCost:
    name: str
    bytes: int
    percent_of_ram: float
    unit: str
    description: str
    #: for sparse tables: bytes of the entries themselves, before chunk rounding
    entry_bytes: int | None = None


@dataclass
class OverheadReport:
    machine: str
    ram_bytes: int
    ram_frames: int
    max_pfn: int
    max_pdx: int
    pdx: dict
    pdx_groups_with_ram: int
    superpages_with_ram: int
    superpages_full: int
    designs: list[DesignCost] = field(default_factory=list)

    def design(self, name: str) -> DesignCost:
        for d in self.designs:
            if d.name == name:
                return d
        raise KeyError(name)

    def notes(self) -> list[str]:
        """The widest spread of the designs' rows: the largest over the smallest non-zero
        (of equal ones, the first largest and the last smallest listed)."""
        rows = [d for d in self.designs if d.name not in FRAME_TABLE_ROWS and d.bytes]
        if len(rows) < 2:
            return []
        hi = max(rows, key=lambda d: d.bytes)
        lo = min(reversed(rows), key=lambda d: d.bytes)
        return [f"{hi.name} / {lo.name} = {hi.bytes / lo.bytes:,.0f}x"]

    def to_dict(self) -> dict:
        return asdict(self)

    def tables(self) -> list[Table]:
        designs = Table(
            f"Refcount metadata on {self.machine}: {format_size(self.ram_bytes)} of RAM",
            [Column("name", "design", align="<"), Column("unit", "cost", align="<"),
             Column("bytes", "bytes", fmt_int), Column("human", "size", align=">"),
             Column("percent_of_ram", "% of RAM", fmt_pct)],
            [dict(asdict(d), human=format_size(d.bytes)) for d in self.designs],
            notes=self.notes())
        machine = Table(
            "Machine", [Column("key", "", align="<"), Column("value", "", align="<")],
            [{"key": k, "value": v} for k, v in (
                ("machine", self.machine),
                ("RAM", f"{self.ram_bytes:,} B ({format_size(self.ram_bytes)}), "
                        f"{self.ram_frames:,} whole frames"),
                ("max_pfn", fmt_hex(self.max_pfn)),
                ("PDX", f"{self.pdx['mode']}: max_pdx {fmt_hex(self.max_pdx)}"
                        + (f" ({self.pdx['fallback_reason']})" if self.pdx.get("fallback_reason") else "")),
                ("PDX groups with RAM", fmt_int(self.pdx_groups_with_ram)),
                ("superpages", f"{self.superpages_with_ram:,} with RAM, "
                               f"{self.superpages_full:,} RAM in full"))])
        return [designs, machine]


def overhead(machine: Machine) -> OverheadReport:
    mm = machine.memmap
    ram = mm.ram_bytes
    groups = machine.frame_table.valid_groups
    group_frames = groups * PDX_GROUP_FRAMES

    def cost(name, nbytes, unit, description, entry_bytes=None):
        return DesignCost(name, int(nbytes), 100.0 * nbytes / ram, unit, description, entry_bytes)

    designs = [
        cost("xen-frame-table", XEN_PAGE_INFO_BYTES * group_frames, "32 B/frame",
             "Xen's struct page_info, mapped per PDX group with RAM"),
        cost("xensim-frame-table", FRAME_BYTES * group_frames, "18 B/frame",
             "xensim's count_info + type_info + owner arrays, every group touched"),
    ]
    designs += [cost(r.name, r.bytes, r.unit, r.description, r.entry_bytes)
                for r in metadata_rows(machine.design_host)]
    return OverheadReport(
        machine=mm.name, ram_bytes=ram, ram_frames=mm.ram_frames, max_pfn=mm.max_pfn,
        max_pdx=machine.pdx.max_pdx, pdx=machine.pdx.to_dict(), pdx_groups_with_ram=groups,
        superpages_with_ram=mm.n_superpages_with_ram, superpages_full=mm.n_superpages_full,
        designs=designs)
