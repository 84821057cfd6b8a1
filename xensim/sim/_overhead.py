"""What each superpage refcount design costs in memory on a given machine.

The 2010 xen-devel thread weighed 8 bytes per 4 KiB frame (an extra count in
every page_info, ~0.2% of RAM) against 8 bytes per 2 MiB superpage (~0.0004%).
This module measures both, and the tables around them, on a real memory map:

==========================  =====================================================
``xen-frame-table``         Xen's page_info: 32 B per frame, mapped for every PDX
                            group (65,536 frames) that holds RAM
``xensim-frame-table``      xensim's own page_info arrays: 18 B per frame, same groups
``per-mapping``             Xen 2008: no metadata (512 references per mapping instead)
``pageinfo-count``          an extra 8 B count in every page_info, same groups
``xen-4.1-dense``           Xen 4.1's spage_info: 8 B per 2 MiB over [0, max_pfn/512),
                            holes included (no PDX compression)
``xen-4.1-dense-pdx``       the same over [0, max_pdx/512) with the machine's PDX mode
``sparse-8B``               xensim's sparse table, 8 B entries, 512-entry chunks
``sparse-16B``              the same with 16 B entries (two counts, the 2010 proposal)
==========================  =====================================================

Percentages are of ``ram_bytes`` (the bytes of the RAM ranges as listed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..mem import (FRAME_BYTES, PDX_GROUP_FRAMES, SUPERPAGE_PAGES, XEN_PAGE_INFO_BYTES,
                   SuperpageTable, format_size)
from ..output import Column, Table, fmt_hex, fmt_int, fmt_pct
from ..xen import Machine

SPAGE_INFO_BYTES = 8
PAGEINFO_COUNT_BYTES = 8


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

    def to_dict(self) -> dict:
        return asdict(self)

    def tables(self) -> list[Table]:
        designs = Table(
            f"Refcount metadata on {self.machine}: {format_size(self.ram_bytes)} of RAM",
            [Column("name", "design", align="<"), Column("unit", "cost", align="<"),
             Column("bytes", "bytes", fmt_int), Column("human", "size", align=">"),
             Column("percent_of_ram", "% of RAM", fmt_pct)],
            [dict(asdict(d), human=format_size(d.bytes)) for d in self.designs],
            notes=[f"pageinfo-count / sparse-8B = "
                   f"{self.design('pageinfo-count').bytes / self.design('sparse-8B').bytes:,.0f}x"]
            if self.design("sparse-8B").bytes else [])
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
    spdx = machine.spdx_with_ram()

    def cost(name, nbytes, unit, description, entry_bytes=None):
        return DesignCost(name, int(nbytes), 100.0 * nbytes / ram, unit, description, entry_bytes)

    def dense(n_frames):
        return SPAGE_INFO_BYTES * -(-n_frames // SUPERPAGE_PAGES)

    designs = [
        cost("xen-frame-table", XEN_PAGE_INFO_BYTES * group_frames, "32 B/frame",
             "Xen's struct page_info, mapped per PDX group with RAM"),
        cost("xensim-frame-table", FRAME_BYTES * group_frames, "18 B/frame",
             "xensim's count_info + type_info + owner arrays, every group touched"),
        cost("per-mapping", 0, "none", "Xen 2008: 512 typed references per mapping instead"),
        cost("pageinfo-count", PAGEINFO_COUNT_BYTES * group_frames, "8 B/frame",
             "an extra superpage count in every page_info"),
        cost("xen-4.1-dense", dense(mm.max_pfn), "8 B/2 MiB to max_pfn",
             "Xen 4.1 spage_info over [0, max_pfn/512), holes included"),
        cost("xen-4.1-dense-pdx", dense(machine.pdx.max_pdx),
             f"8 B/2 MiB to max_pdx ({machine.pdx.mode})",
             f"Xen 4.1 spage_info over [0, max_pdx/512), PDX {machine.pdx.mode}"),
        cost("sparse-8B", SuperpageTable.bytes_for(spdx, 1), "8 B/2 MiB with RAM",
             "xensim's sparse table, 512-entry chunks where RAM is",
             SPAGE_INFO_BYTES * len(spdx)),
        cost("sparse-16B", SuperpageTable.bytes_for(spdx, 2), "16 B/2 MiB with RAM",
             "the same with two counts (read-only, read-write)",
             2 * SPAGE_INFO_BYTES * len(spdx)),
    ]
    return OverheadReport(
        machine=mm.name, ram_bytes=ram, ram_frames=mm.ram_frames, max_pfn=mm.max_pfn,
        max_pdx=machine.pdx.max_pdx, pdx=machine.pdx.to_dict(), pdx_groups_with_ram=groups,
        superpages_with_ram=mm.n_superpages_with_ram, superpages_full=mm.n_superpages_full,
        designs=designs)
