"""The overhead picture (``xensim plot --which overhead``): bytes of each refcount
design against RAM size, log-log, for synthetic PC machines and the presets
(docs/pictures.md section 3). :func:`overhead_data` needs no matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..mem import MemoryMap
from ..sim import FRAME_TABLE_ROWS, overhead
from ..xen import Machine
from ..designs import metadata_rows
from ._common import human, new_figure

GiB, TiB = 1 << 30, 1 << 40
#: synthetic machines' RAM sizes: 1 GiB .. 4 TiB
SYNTHETIC_SIZES = tuple(GiB << (2 * k) for k in range(7))
#: the frame-table rows drawn, and how; the designs' rows follow, in their own colours
FRAME_TABLE_STYLE = dict(zip(FRAME_TABLE_ROWS, (("#000000", "-"), ("#757575", "-"))))


def overhead_styles(machine: Machine) -> dict[str, tuple[str, str]]:
    """row name -> (colour, line style) of every overhead row, frame tables first, then the
    registered designs' rows (``metadata_rows``) in registration order."""
    styles = dict(FRAME_TABLE_STYLE)
    for row in metadata_rows(machine.design_host):
        styles[row.name] = (row.color, "--" if row.dashed else "-")
    return styles


def synthetic_memmap(size: int) -> MemoryMap:
    """A PC-like machine with ``size`` bytes of address-space RAM: conventional memory
    below 0x9fc00, RAM from 1 MiB up to 2 GiB, the rest above 4 GiB (the MMIO hole)."""
    ranges = [(0, 0x9fc00), (1 << 20, min(size, 2 * GiB))]
    if size > 2 * GiB:
        ranges.append((4 * GiB, 4 * GiB + size - 2 * GiB))
    return MemoryMap(ranges, name=f"pc-{human(size).replace(' ', '')}",
                     source="xensim synthetic PC layout")


@dataclass
class OverheadData:
    """Bytes of each overhead row per machine: ``points[name] = [(machine, ram_bytes, bytes)]``."""
    pdx: str
    synthetic: dict[str, list[tuple[str, int, int]]]
    presets: dict[str, list[tuple[str, int, int]]]
    #: the machine of the config being plotted, if given: (name, ram_bytes, {row: bytes})
    this: tuple[str, int, dict[str, int]] | None = None
    #: row name -> (colour, line style), in drawing order (:func:`overhead_styles`)
    styles: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def drawn(self) -> list[str]:
        """The rows drawn: those with bytes on some machine (a 0 B row has no point on a
        log axis)."""
        return [n for n in self.styles
                if any(b > 0 for rows in (self.synthetic, self.presets) for _, _, b in rows[n])]

    @property
    def zero(self) -> list[str]:
        """The rows that cost 0 B everywhere (not drawn)."""
        return [n for n in self.styles if n not in self.drawn]


def overhead_data(pdx: str = "mask", sizes=SYNTHETIC_SIZES, presets=None,
                  machine: MemoryMap | None = None) -> OverheadData:
    """overhead() of every preset (``presets``: names, default all) and of synthetic PC
    machines of ``sizes`` bytes of RAM, with PDX mode ``pdx``; and of ``machine``."""
    from ..config import list_presets, load_preset

    styles: dict[str, tuple[str, str]] = {}
    syn: dict[str, list] = {}
    pre: dict[str, list] = {}

    def add(target, mm):
        m = Machine(mm, pdx)
        rep = overhead(m)
        if not styles:
            styles.update(overhead_styles(m))
        for name in styles:
            target.setdefault(name, []).append((mm.name, rep.ram_bytes, rep.design(name).bytes))
        return rep

    for size in sizes:
        add(syn, synthetic_memmap(size))
    for name in (list_presets() if presets is None else presets):
        add(pre, load_preset(name))
    for v in pre.values():
        v.sort(key=lambda t: t[1])
    data = OverheadData(pdx, syn, pre, None, styles)
    if machine is not None:
        rep = overhead(Machine(machine, pdx))
        data.this = (machine.name, rep.ram_bytes, {n: rep.design(n).bytes for n in data.drawn})
    return data


def fig_overhead(d: OverheadData):
    """Log-log: bytes of each design against RAM, lines through synthetic machines,
    markers at the presets, and the 0.2% and 0.0004% of RAM lines."""
    fig = new_figure(10, 6.4)
    ax = fig.subplots(1, 1)
    xs = [r for rows in (d.synthetic, d.presets) for v in rows.values() for _, r, _ in v]
    x0, x1 = min(xs) / 1.6, max(xs) * 1.6
    for pct, lbl in ((0.2, "0.2% of RAM (8 B per 4 KiB)"), (0.0004, "0.0004% of RAM (8 B per 2 MiB)")):
        ax.plot([x0, x1], [x0 * pct / 100, x1 * pct / 100], color="#9e9e9e", ls=":", lw=1.5, zorder=1)
        xl = x0 * 3
        ax.text(xl, xl * pct / 100 / 1.5, lbl, ha="left", va="top", fontsize=8, color="#616161")
    drawn = d.drawn
    for name in drawn:
        color, ls = d.styles[name]
        pts = [(r, b) for _, r, b in d.synthetic[name] if b > 0]
        if pts:
            ax.plot(*zip(*pts), color=color, ls=ls, lw=1.6, label=name, zorder=2)
        pre = [(r, b) for _, r, b in d.presets[name] if b > 0]
        if pre:
            ax.scatter(*zip(*pre), color=color, s=22, zorder=3, edgecolors="white", linewidths=0.5)
    # the presets, named along the top
    seen = {}
    for mname, r, _ in d.presets[drawn[0]]:
        seen.setdefault(r, []).append(mname)
    for r, names in seen.items():
        ax.axvline(r, color="#dddddd", lw=0.8, zorder=0)
        ax.text(r, 1.0, " " + ", ".join(names), rotation=90, va="top", ha="center", fontsize=7,
                color="#555555", transform=ax.get_xaxis_transform(),
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=0.5))
    if d.this is not None:
        name, r, b = d.this
        ax.scatter([r] * len(drawn), [b[n] for n in drawn], marker="*", s=110,
                   color=[d.styles[n][0] for n in drawn], edgecolors="black",
                   linewidths=0.5, zorder=4, label=f"this machine ({name})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlim(x0, x1)
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    ys = [b for rows in (d.synthetic, d.presets) for v in rows.values() for _, _, b in v if b > 0]
    y0, y1 = min(ys) / 4, max(ys) * 64          # room for the presets' names at the top
    ax.set_ylim(y0, y1)
    for axis, lo, hi, step in ((ax.xaxis, x0, x1, 2), (ax.yaxis, y0, y1, 4)):
        e0, e1 = int(np.floor(np.log2(lo))), int(np.ceil(np.log2(hi)))
        axis.set_major_locator(FixedLocator([2.0 ** e for e in range(e0, e1 + 1) if e % step == 0]))
        axis.set_minor_locator(FixedLocator([2.0 ** e for e in range(e0, e1 + 1)]))
        axis.set_major_formatter(FuncFormatter(lambda v, _p: human(v)))
        axis.set_minor_formatter(NullFormatter())
    ax.grid(which="major", alpha=0.35)
    ax.grid(which="minor", alpha=0.1)
    ax.set_xlabel("RAM (bytes in the RAM ranges)")
    ax.set_ylabel("refcount metadata (bytes)")
    ax.set_title(f"Refcount metadata against RAM, PDX {d.pdx}: lines = synthetic PC machines "
                 f"(RAM below 2 GiB and above 4 GiB), dots = presets\n"
                 f"sizes of each design's layout, the same on every Xen release\n"
                 + (f"{', '.join(d.zero)} cost{'s' * (len(d.zero) == 1)} 0 B (not drawn)"
                    if d.zero else ""), fontsize=10)
    ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig
