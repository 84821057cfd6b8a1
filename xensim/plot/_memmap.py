"""The memory-map picture (``xensim plot --which memmap``): e820 ranges by type, RAM
frames and holes, PDX groups with RAM, the PDX-compressed view when compression
applies, and a zoom on the first superpage that is only partly RAM
(docs/pictures.md section 1). :func:`memmap_data` needs no matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..mem import PAGE_SHIFT, PDX_GROUP_FRAMES, PDX_GROUP_SHIFT, SUPERPAGE_ORDER, format_size
from ..xen import Machine
from ._common import addr_formatter, addr_locator, bar, human, new_figure, runs_of


@dataclass
class MemmapData:
    """What the memory-map picture shows. Frames are MFNs, ranges half-open."""
    name: str
    ram_bytes: int
    max_pfn: int
    max_pdx: int
    pdx_mode: str
    pdx_describe: str
    #: every e820 range: (start byte, end byte, type name)
    ranges: list[tuple[int, int, str]]
    #: whole RAM frames: (first mfn, end mfn)
    frames: list[tuple[int, int]]
    #: frames below max_pfn that are not RAM: (first mfn, end mfn)
    holes: list[tuple[int, int]]
    #: PDX groups with RAM: (group, first mfn, end mfn); each is contiguous in MFNs
    groups: list[tuple[int, int, int]]
    #: each RAM frame range and where PDX puts it: (first mfn, end mfn, first pdx, end pdx)
    pdx_ranges: list[tuple[int, int, int, int]]
    #: superpages with some RAM that are not RAM in full (never mappable as 2 MiB)
    partial_superpages: list[int]

    @property
    def compressed(self) -> bool:
        """Does PDX compression shrink the index space (max_pdx < max_pfn)?"""
        return self.max_pdx < self.max_pfn

    @property
    def top(self) -> int:
        """The highest byte the picture shows: the end of RAM, or of a range that ends
        not far above it (up to a quarter more). A range far above RAM (a PCI hole's
        reserved window at 1 TiB, say) would squeeze RAM into a sliver: it is cut at
        ``top`` and listed in :attr:`beyond` instead."""
        ram_top = self.max_pfn << PAGE_SHIFT
        near = [e for _, e, _ in self.ranges if e <= ram_top + ram_top // 4]
        return max(near + [ram_top])

    @property
    def beyond(self) -> list[tuple[int, int, str]]:
        """The e820 ranges that end above :attr:`top` (drawn cut at the axis' end)."""
        top = self.top
        return [(s, e, t) for s, e, t in self.ranges if e > top]


#: which Xen computes each PDX mode as drawn (the figure says which release produced it)
_PDX_RELEASE = {"none": "any Xen release", "mask": "Xen 4.1 to 4.22 alike",
                "offset": "as Xen 4.22 computes it", "offset-4.21.0": "as Xen 4.21.0 computes it"}


def memmap_data(machine: Machine) -> MemmapData:
    """The sparse memory map of ``machine``, its holes, PDX groups and PDX view."""
    mm, pdx = machine.memmap, machine.pdx
    pdx_ranges = [(s, e, int(machine.mfn_to_pdx(s)), int(machine.mfn_to_pdx(e - 1)) + 1)
                  for s, e in mm.frame_ranges]
    gset: set[int] = set()
    for _, _, ps, pe in pdx_ranges:
        gset.update(range(ps >> PDX_GROUP_SHIFT, ((pe - 1) >> PDX_GROUP_SHIFT) + 1))
    groups = []
    for g in sorted(gset):
        first = int(machine.pdx_to_mfn(g << PDX_GROUP_SHIFT))
        last = int(machine.pdx_to_mfn((g << PDX_GROUP_SHIFT) + PDX_GROUP_FRAMES - 1))
        if last - first != PDX_GROUP_FRAMES - 1:       # PDX never splits below 2^MAX_ORDER
            raise AssertionError(f"PDX group {g} is not contiguous in MFNs")
        groups.append((g, first, last + 1))
    with_ram = mm.superpages_with_ram()
    full = mm.superpages_full()
    partial = with_ram[~np.isin(with_ram, full)]
    return MemmapData(
        name=mm.name, ram_bytes=mm.ram_bytes, max_pfn=mm.max_pfn, max_pdx=pdx.max_pdx,
        pdx_mode=pdx.mode, pdx_describe=pdx.describe(),
        ranges=[(r.start, r.end, r.type.value) for r in mm.ranges],
        frames=list(mm.frame_ranges), holes=list(mm.holes), groups=groups,
        pdx_ranges=pdx_ranges, partial_superpages=[int(x) for x in partial])


TYPE_COLORS = {"ram": "#4caf50", "reserved": "#9e9e9e", "acpi": "#ffb74d",
               "nvs": "#ba68c8", "unusable": "#5d4037"}
HOLE_COLOR = "#e53935"
GROUP_COLORS = ("#1e88e5", "#90caf9")


def fig_memmap(d: MemmapData):
    """The memory map: e820 ranges, RAM frames and holes, PDX groups, PDX space;
    below, a zoom on the first superpage that is only partly RAM."""
    from matplotlib.patches import Patch, Polygon
    zoom = d.partial_superpages[0] if d.partial_superpages else None
    fig = new_figure(11, 6.2 if zoom is not None else 4.4)
    if zoom is not None:
        ax, axz = fig.subplots(2, 1, height_ratios=[3, 1.25])
    else:
        ax, axz = fig.subplots(1, 1), None
    top = d.top
    rows = {"e820 map": 4.0, "RAM frames, holes": 3.0, "PDX groups with RAM": 2.0}
    if d.compressed:
        rows["PDX space (compressed)"] = 0.4
    # e820 ranges by type (unlisted addresses stay blank)
    types_seen = []
    for t in TYPE_COLORS:
        spans = [(s, min(e, top)) for s, e, ty in d.ranges if ty == t and s < top]
        if spans:
            bar(ax, rows["e820 map"], spans, color=TYPE_COLORS[t])
            types_seen.append(t)
    # whole RAM frames and holes
    bar(ax, rows["RAM frames, holes"], [(s << PAGE_SHIFT, e << PAGE_SHIFT) for s, e in d.frames],
         color=TYPE_COLORS["ram"])
    bar(ax, rows["RAM frames, holes"], [(s << PAGE_SHIFT, e << PAGE_SHIFT) for s, e in d.holes],
         color=HOLE_COLOR, hatch="//", edgecolor="white", linewidth=0)
    for s, e in d.holes:
        if (e - s) << PAGE_SHIFT > top / 25:
            ax.text(((s + e) << PAGE_SHIFT) / 2, rows["RAM frames, holes"],
                    f"hole {format_size((e - s) << PAGE_SHIFT)}", ha="center", va="center",
                    color="white", fontsize=8, fontweight="bold")
    # PDX groups: each drawn when there are few, else runs of consecutive groups
    y = rows["PDX groups with RAM"]
    if len(d.groups) <= 96:
        for i, (g, s, e) in enumerate(d.groups):
            bar(ax, y, [(s << PAGE_SHIFT, e << PAGE_SHIFT)], color=GROUP_COLORS[i % 2],
                 edgecolor="white", linewidth=0.5)
    else:
        grun = runs_of(np.zeros(len(d.groups), dtype=np.int64),
                     np.array([s >> PDX_GROUP_SHIFT for _, s, _ in d.groups], dtype=np.int64))
        for s, e, _ in grun:
            bar(ax, y, [(s << (PDX_GROUP_SHIFT + PAGE_SHIFT), e << (PDX_GROUP_SHIFT + PAGE_SHIFT))],
                 color=GROUP_COLORS[0])
            if (e - s) << (PDX_GROUP_SHIFT + PAGE_SHIFT) > top / 12:
                ax.text(((s + e) << (PDX_GROUP_SHIFT + PAGE_SHIFT)) / 2, y, f"{e - s:,} groups",
                        ha="center", va="center", color="white", fontsize=8)
    # the PDX view: RAM ranges where PDX puts them, linked to their frames
    if d.compressed:
        yp = rows["PDX space (compressed)"]
        bar(ax, yp, [(0, d.max_pdx << PAGE_SHIFT)], color="#eeeeee")
        gb = PDX_GROUP_SHIFT + PAGE_SHIFT
        if len(d.groups) <= 96:                # the same groups, where PDX puts them
            for i, (g, _, _) in enumerate(d.groups):
                bar(ax, yp, [(g << gb, (g + 1) << gb)], color=GROUP_COLORS[i % 2],
                     edgecolor="white", linewidth=0.5)
        else:
            keys = np.array([g for g, _, _ in d.groups], dtype=np.int64)
            bar(ax, yp, [(a << gb, b << gb) for a, b, _ in runs_of(np.zeros_like(keys), keys)],
                 color=GROUP_COLORS[0])
        for s, e, ps, pe in d.pdx_ranges:
            poly = [(s << PAGE_SHIFT, y - 0.3), (e << PAGE_SHIFT, y - 0.3),
                    (pe << PAGE_SHIFT, yp + 0.3), (ps << PAGE_SHIFT, yp + 0.3)]
            ax.add_patch(Polygon(poly, closed=True, color=GROUP_COLORS[1], alpha=0.35, lw=0))
        ax.axvline(d.max_pdx << PAGE_SHIFT, ymin=0, ymax=0.22, color="black", lw=0.8, ls=":")
        ax.text(d.max_pdx << PAGE_SHIFT, yp, f"  max_pdx {d.max_pdx:#x}", va="center", fontsize=8)
    ax.set_yticks(list(rows.values()), list(rows.keys()))
    ax.set_ylim(min(rows.values()) - 0.6, 4.6)
    ax.set_xlim(0, top)
    ax.xaxis.set_major_locator(addr_locator(top))
    ax.xaxis.set_major_formatter(addr_formatter(top))
    ax.set_xlabel("physical address (frames: MFN << 12; PDX space: PDX << 12)")
    ax.grid(axis="x", alpha=0.3)
    n_holes = len(d.holes)
    import textwrap
    ax.set_title(f"{d.name}: {format_size(d.ram_bytes)} of RAM in {format_size(d.max_pfn << PAGE_SHIFT)} "
                 f"of addresses, {n_holes} hole{'s' * (n_holes != 1)}, "
                 f"{len(d.groups):,} PDX groups with RAM\n"
                 + "\n".join(textwrap.wrap(f"PDX {d.pdx_describe} ({_PDX_RELEASE.get(d.pdx_mode, '')})", 110))
                 + _beyond_text(d), fontsize=10)
    handles = [Patch(color=TYPE_COLORS[t], label=t if t != "ram" else "RAM") for t in types_seen]
    handles += [Patch(facecolor="white", edgecolor="#9e9e9e", label="not listed in the e820 map"),
                Patch(facecolor=HOLE_COLOR, hatch="//", edgecolor="white", label="hole (no RAM frame)"),
                Patch(color=GROUP_COLORS[0], label="PDX group (65,536 frames)")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    if axz is not None:
        _zoom_superpage(axz, d, zoom)
    return fig


def _beyond_text(d: MemmapData) -> str:
    """A title line for the ranges far above RAM that the axis leaves out."""
    far = d.beyond
    if not far:
        return ""
    listed = ", ".join(f"{t} [{s:#x}, {e:#x}) {format_size(e - s)}" for s, e, t in far[:3])
    more = f" and {len(far) - 3} more" if len(far) > 3 else ""
    return f"\naxis zoomed on RAM; not drawn, above {human(d.top)}: {listed}{more}"


def _zoom_superpage(ax, d: MemmapData, sp: int) -> None:
    """Superpage ``sp`` frame by frame: e820 ranges and which of its 512 frames are RAM."""
    lo, hi = (sp << SUPERPAGE_ORDER) << PAGE_SHIFT, ((sp + 1) << SUPERPAGE_ORDER) << PAGE_SHIFT
    for t, color in TYPE_COLORS.items():
        spans = [(max(s, lo), min(e, hi)) for s, e, ty in d.ranges if ty == t and s < hi and e > lo]
        bar(ax, 1.0, spans, color=color)
    first, end = sp << SUPERPAGE_ORDER, (sp + 1) << SUPERPAGE_ORDER
    ram = [(max(s, first) << PAGE_SHIFT, min(e, end) << PAGE_SHIFT)
           for s, e in d.frames if s < end and e > first]
    bar(ax, 0.0, ram, color=TYPE_COLORS["ram"])
    holes = [(max(s, first) << PAGE_SHIFT, min(e, end) << PAGE_SHIFT)
             for s, e in d.holes if s < end and e > first]
    bar(ax, 0.0, holes, color=HOLE_COLOR, hatch="//", edgecolor="white", linewidth=0)
    n_ram = sum((e - s) >> PAGE_SHIFT for s, e in ram)
    ax.set_yticks([1.0, 0.0], ["e820 map", "RAM frames"])
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlim(lo, hi)
    from matplotlib.ticker import FuncFormatter, MultipleLocator
    ax.xaxis.set_major_locator(MultipleLocator(256 << 10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{int(x):#x}"))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"zoom: superpage {sp} (frames {first:#x}-{end - 1:#x}): {n_ram} of 512 frames "
                 f"are RAM, so it can never be mapped as one 2 MiB page", fontsize=9)
