"""Pictures of a machine and of a run: ``xensim plot`` (docs/pictures.md).

Four figures, each drawn from a *data function* that needs no matplotlib (the
tests check those with exact values) and a *figure function* that draws it:

==============  ======================  ==============================================
``memmap``      :func:`memmap_data`     the sparse memory map: e820 ranges by type,
                                        RAM frames and holes, PDX groups with RAM, and
                                        the PDX-compressed view when compression applies
``superpages``  :func:`states_for_run`  the superpage metadata's state (none / dynamic
                                        / mark, and counts) per design, along the
                                        address axis, at one point of a config's run
``overhead``    :func:`overhead_data`   bytes of each refcount design against RAM size
                                        (log-log), presets and synthetic machines
``churn``       :func:`churn_data`      slow-path transitions per operation against
                                        churn, per design, with and without MARK_SUPER
==============  ======================  ==============================================

matplotlib is an optional extra (``pip install -e '.[plot]'``): it is imported
inside the functions that draw, never at module import, and drawing without it
raises :class:`PlotUnavailable` (a :class:`~xensim._errors.ConfigError`, so the
CLI prints ``xensim: error: plotting needs matplotlib: ...`` and exits 2).
Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas: no
pyplot, no global backend state, nothing to close.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...config import Config, parse_config
from ..._errors import ConfigError
from ...mem import PDX_GROUP_FRAMES, PDX_GROUP_SHIFT
from ...guest import GuestError
from ...xen import Machine
from ...mem import MemoryMap
from ...sim import overhead
from ...mem import SGT_count_mask, SGT_type_shift
from ...mem import PAGE_SHIFT, SUPERPAGE_ORDER, format_size
from ...guest import DomainSpec, Op, Workload, apply, make_workload

PLOT_HINT = "plotting needs matplotlib: pip install -e '.[plot]'"

#: the figures ``xensim plot --which`` can draw, in drawing order
FIGURES = ("memmap", "superpages", "overhead", "churn")

#: every design, in the order of configs/default.yaml
ALL_DESIGNS = ("per-mapping", "pageinfo-count", "superpage-info", "xen-4.1", "sketch")

#: one colour per superpage design, in every figure
DESIGN_COLORS = {
    "per-mapping": "#d62728", "pageinfo-count": "#ff7f0e", "superpage-info": "#2ca02c",
    "xen-4.1": "#1f77b4", "sketch": "#9467bd",
}


class PlotUnavailable(ConfigError):
    """matplotlib is not installed: one line for the CLI (``xensim: error: ...``, exit 2)."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(None, None, PLOT_HINT)
        self.detail = detail


def have_matplotlib() -> bool:
    """True when matplotlib can be imported (without importing the rest of it)."""
    try:
        _mpl()
    except PlotUnavailable:
        return False
    return True


def _mpl():
    """matplotlib's Figure and Agg canvas, imported on first use."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotUnavailable(str(e)) from None
    return matplotlib, Figure, FigureCanvasAgg


def _new_figure(w: float, h: float):
    _, Figure, FigureCanvasAgg = _mpl()
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def human(nbytes: float) -> str:
    """A byte count for an axis: 0, 4 KiB, 512 MiB, 1.5 GiB, 16 TiB."""
    if nbytes <= 0:
        return "0"
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{int(nbytes)} B"


def _addr_formatter(span: int):
    """Tick labels for a byte axis: 0, 512 MiB, 1 GiB, 1.5 GiB ..."""
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda x, _pos: human(x))


def _addr_locator(span: int):
    """Ticks at multiples of a power-of-two byte size, 4 to 10 of them."""
    from matplotlib.ticker import MultipleLocator
    step = 1 << max(12, (max(span, 1) // 8).bit_length() - 1)
    while span / step > 10:
        step <<= 1
    return MultipleLocator(step)


def _runs(values: np.ndarray, keys: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of consecutive ``keys`` (sorted ints) with equal ``values``: (first, last+1, value)."""
    if keys.size == 0:
        return []
    brk = np.flatnonzero((np.diff(keys) != 1) | (np.diff(values) != 0)) + 1
    starts = np.concatenate(([0], brk))
    ends = np.concatenate((brk, [keys.size]))
    return [(int(keys[s]), int(keys[e - 1]) + 1, int(values[s])) for s, e in zip(starts, ends)]


# ==========================================================================
# 1. The memory map
# ==========================================================================

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


def _bar(ax, y, spans, h=0.6, **kw):
    """Horizontal bars at row ``y`` for (start, end) spans."""
    if spans:
        ax.broken_barh([(s, e - s) for s, e in spans], (y - h / 2, h), **kw)


def fig_memmap(d: MemmapData):
    """The memory map: e820 ranges, RAM frames and holes, PDX groups, PDX space;
    below, a zoom on the first superpage that is only partly RAM."""
    from matplotlib.patches import Patch, Polygon
    zoom = d.partial_superpages[0] if d.partial_superpages else None
    fig = _new_figure(11, 6.2 if zoom is not None else 4.4)
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
            _bar(ax, rows["e820 map"], spans, color=TYPE_COLORS[t])
            types_seen.append(t)
    # whole RAM frames and holes
    _bar(ax, rows["RAM frames, holes"], [(s << PAGE_SHIFT, e << PAGE_SHIFT) for s, e in d.frames],
         color=TYPE_COLORS["ram"])
    _bar(ax, rows["RAM frames, holes"], [(s << PAGE_SHIFT, e << PAGE_SHIFT) for s, e in d.holes],
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
            _bar(ax, y, [(s << PAGE_SHIFT, e << PAGE_SHIFT)], color=GROUP_COLORS[i % 2],
                 edgecolor="white", linewidth=0.5)
    else:
        grun = _runs(np.zeros(len(d.groups), dtype=np.int64),
                     np.array([s >> PDX_GROUP_SHIFT for _, s, _ in d.groups], dtype=np.int64))
        for s, e, _ in grun:
            _bar(ax, y, [(s << (PDX_GROUP_SHIFT + PAGE_SHIFT), e << (PDX_GROUP_SHIFT + PAGE_SHIFT))],
                 color=GROUP_COLORS[0])
            if (e - s) << (PDX_GROUP_SHIFT + PAGE_SHIFT) > top / 12:
                ax.text(((s + e) << (PDX_GROUP_SHIFT + PAGE_SHIFT)) / 2, y, f"{e - s:,} groups",
                        ha="center", va="center", color="white", fontsize=8)
    # the PDX view: RAM ranges where PDX puts them, linked to their frames
    if d.compressed:
        yp = rows["PDX space (compressed)"]
        _bar(ax, yp, [(0, d.max_pdx << PAGE_SHIFT)], color="#eeeeee")
        gb = PDX_GROUP_SHIFT + PAGE_SHIFT
        if len(d.groups) <= 96:                # the same groups, where PDX puts them
            for i, (g, _, _) in enumerate(d.groups):
                _bar(ax, yp, [(g << gb, (g + 1) << gb)], color=GROUP_COLORS[i % 2],
                     edgecolor="white", linewidth=0.5)
        else:
            keys = np.array([g for g, _, _ in d.groups], dtype=np.int64)
            _bar(ax, yp, [(a << gb, b << gb) for a, b, _ in _runs(np.zeros_like(keys), keys)],
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
    ax.xaxis.set_major_locator(_addr_locator(top))
    ax.xaxis.set_major_formatter(_addr_formatter(top))
    ax.set_xlabel("physical address (frames: MFN << 12; PDX space: PDX << 12)")
    ax.grid(axis="x", alpha=0.3)
    n_holes = len(d.holes)
    import textwrap
    ax.set_title(f"{d.name}: {format_size(d.ram_bytes)} of RAM in {format_size(d.max_pfn << PAGE_SHIFT)} "
                 f"of addresses, {n_holes} hole{'s' * (n_holes != 1)}, "
                 f"{len(d.groups):,} PDX groups with RAM\n"
                 + "\n".join(textwrap.wrap(f"PDX {d.pdx_describe}", 110))
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
        _bar(ax, 1.0, spans, color=color)
    first, end = sp << SUPERPAGE_ORDER, (sp + 1) << SUPERPAGE_ORDER
    ram = [(max(s, first) << PAGE_SHIFT, min(e, end) << PAGE_SHIFT)
           for s, e in d.frames if s < end and e > first]
    _bar(ax, 0.0, ram, color=TYPE_COLORS["ram"])
    holes = [(max(s, first) << PAGE_SHIFT, min(e, end) << PAGE_SHIFT)
             for s, e in d.holes if s < end and e > first]
    _bar(ax, 0.0, holes, color=HOLE_COLOR, hatch="//", edgecolor="white", linewidth=0)
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


# ==========================================================================
# 2. The superpage table's states after (part of) a run
# ==========================================================================

NONE, DYNAMIC, MARK = 0, 1, 2
STATE_NAMES = {NONE: "none", DYNAMIC: "dynamic", MARK: "mark"}
#: drawn categories: a superpage that is not RAM in full can never be mapped
PARTIAL = 3
STATE_COLORS = {NONE: "#c8e6c9", DYNAMIC: "#1f77b4", MARK: "#ff7f0e", PARTIAL: "#bdbdbd"}


@dataclass
class SuperpageStates:
    """One design's per-superpage metadata on a machine, for every superpage with RAM.

    ``state``: NONE (count 0), DYNAMIC (mapped: count > 0, no mark) or MARK
    (MARK_SUPER'd); ``count``: the design's count (every word's count added, the
    mark's one count included); ``mappings``: live 2 MiB (PSE) entries in the
    guests' page tables. ``source`` says where the words were read.
    """
    design: str
    source: str
    superpages: np.ndarray          # superpage numbers (mfn >> 9) with RAM, sorted
    full: np.ndarray                # bool: RAM in full (mappable)
    state: np.ndarray               # int8: NONE / DYNAMIC / MARK
    count: np.ndarray               # int64
    mappings: np.ndarray            # int64

    def state_counts(self) -> dict[str, int]:
        """How many superpages with RAM are in each state."""
        return {STATE_NAMES[k]: int((self.state == k).sum()) for k in (NONE, DYNAMIC, MARK)}

    def nonzero(self) -> dict[int, tuple[str, int]]:
        """superpage number -> (state, count) of every superpage not in state none."""
        idx = np.flatnonzero(self.state != NONE)
        return {int(self.superpages[i]): (STATE_NAMES[int(self.state[i])], int(self.count[i]))
                for i in idx}

    @property
    def busy(self) -> int:
        """Superpages in a state other than none."""
        return int(np.count_nonzero(self.state))


def _pse_mappings(m: Machine) -> dict[int, int]:
    """mfn -> live PSE entries mapping it, from every live L2 table (as the auditor reads them)."""
    from ...xen import _PAGE_PRESENT, _PAGE_PSE, pte_mfn
    out: dict[int, int] = {}
    bits = np.uint64(_PAGE_PRESENT | _PAGE_PSE)
    for page, (level, _domid) in m.pt.live.items():
        if level != 2:
            continue
        entries = m.mem.table(int(m.pdx_to_mfn(page)))
        for e in entries[(entries & bits) == bits]:
            mfn = pte_mfn(int(e))
            out[mfn] = out.get(mfn, 0) + 1
    return out


def superpage_states(m: Machine) -> SuperpageStates:
    """Read ``m``'s superpage design's words for every superpage with RAM."""
    from ...designs import PageinfoCount
    from ...designs import MARK as MARK_BIT, COUNT_MASK, TableCounted
    from ...designs import Xen41
    mm = m.memmap
    sp = mm.superpages_with_ram()
    full = np.isin(sp, mm.superpages_full())
    pse = _pse_mappings(m)
    mappings = np.zeros(sp.size, dtype=np.int64)
    if pse:
        keys = np.array(sorted(pse), dtype=np.int64)
        pos = np.searchsorted(sp, keys >> SUPERPAGE_ORDER)
        np.add.at(mappings, pos, [pse[int(k)] for k in keys])
    state = np.zeros(sp.size, dtype=np.int8)
    count = np.zeros(sp.size, dtype=np.int64)
    design = m.superpage
    spdx = (m.mfn_to_pdx((sp << SUPERPAGE_ORDER).astype(np.uint64)).astype(np.int64)
            >> SUPERPAGE_ORDER)
    if isinstance(design, Xen41):
        source = "spage_table: one word, SGT_ state in bits 62-63 and a count"
        e = m.spage_table.entry_indexes(spdx)
        w = m.spage_table.store[0, e]
        t = (w >> np.uint64(SGT_type_shift)).astype(np.int64)
        state[t == 2] = DYNAMIC
        state[t == 1] = MARK
        count = (w & np.uint64(SGT_count_mask)).astype(np.int64)
    elif isinstance(design, (TableCounted, PageinfoCount)):
        if isinstance(design, TableCounted):
            e = m.spage_table.entry_indexes(spdx)
            words = m.spage_table.store[:, e]
            source = (f"spage_table: {words.shape[0]} count word{'s' * (words.shape[0] > 1)}"
                      + (", MARK in bit 63" if design.mark_word is not None else ""))
        else:
            source = "an extra page_info field of each superpage's first frame, MARK in bit 63"
            words = np.zeros((1, sp.size), dtype=np.uint64)
            pages = m.mfn_to_pdx((sp << SUPERPAGE_ORDER).astype(np.uint64)).astype(np.int64)
            for g, arr in design._groups.items():
                sel = (pages >> PDX_GROUP_SHIFT) == g
                words[0, sel] = arr[pages[sel] & (PDX_GROUP_FRAMES - 1)]
        marked = ((words & np.uint64(MARK_BIT)) != 0).any(axis=0)
        count = (words & np.uint64(COUNT_MASK)).astype(np.int64).sum(axis=0)
        state[count > 0] = DYNAMIC
        state[marked] = MARK
    else:
        source = "no per-superpage metadata: live 2 MiB entries in the page tables"
        count = mappings.copy()
        state[count > 0] = DYNAMIC
    return SuperpageStates(design.name, source, sp, full, state, count, mappings)


def superpage_activity(m: Machine) -> tuple[int, int]:
    """(superpages whose metadata is not in state none, their counts added up), as
    :func:`superpage_states` would say, without reading every superpage: for the table
    designs the non-zero entries, for pageinfo-count the non-zero fields, otherwise the
    live 2 MiB entries. Cheap enough to call after every operation."""
    from ...designs import PageinfoCount
    from ...designs import COUNT_MASK, TableCounted
    from ...designs import Xen41
    design = m.superpage
    if isinstance(design, (Xen41, TableCounted)):
        st = m.spage_table
        e = st.nonzero_entries()
        mask = np.uint64(SGT_count_mask if isinstance(design, Xen41) else COUNT_MASK)
        return int(e.size), int((st.store[:, e] & mask).sum())
    if isinstance(design, PageinfoCount):
        arrays = list(design._groups.values())
        return (sum(int(np.count_nonzero(a)) for a in arrays),
                sum(int((a & np.uint64(COUNT_MASK)).sum()) for a in arrays))
    pse = _pse_mappings(m)
    return len(pse), sum(pse.values())


def busy_superpages(m: Machine) -> int:
    """Superpages whose metadata is not in state none (see :func:`superpage_activity`)."""
    return superpage_activity(m)[0]


@dataclass
class RunStates:
    """Every design's superpage states at the same point of the same run."""
    machine: str
    workload: str
    ops: int
    #: operations done when the states were read
    at_op: int
    #: how ``at_op`` was chosen, in words (the end, the busiest point, an operation count)
    why: str
    states: list[SuperpageStates]
    #: designs that were skipped or crashed: design -> reason
    missing: dict[str, str] = field(default_factory=dict)
    #: the guests' frames at that point: (first mfn, end mfn) runs
    guest_frames: list[tuple[int, int]] = field(default_factory=list)


def _run_ops(cfg: Config, memmap: MemoryMap, design: str, wl: Workload,
             stop_at: int | None = None, each=None):
    """Set up ``cfg``'s domains on a fresh machine with ``design`` and apply ``wl``'s ops
    (all, or the first ``stop_at``), as ``_simulate.run_design`` does, without teardown
    or audits. ``each(n, m)`` is called after the set-up (n = 0) and after each op.
    -> (machine, kernels, ops done)."""
    from ...sim._simulate import _setup
    c = dataclasses.replace(cfg, hypervisor=dataclasses.replace(cfg.hypervisor, superpage=design))
    m = Machine.from_config(c, memmap)
    kernels = _setup(m, cfg, wl)
    n = 0
    if each:
        each(0, m)
    for op in wl.ops(cfg.seed):
        if stop_at is not None and n >= stop_at:
            break
        try:
            apply(op, kernels[op.domain])
        except GuestError:
            pass
        n += 1
        if each:
            each(n, m)
    return m, kernels, n


def _config_workload(cfg: Config) -> Workload:
    return make_workload(cfg.effective_workload(),
                         [DomainSpec(n, mem) for n, mem in cfg.domain_specs()])


def states_for_run(cfg: Config, memmap: MemoryMap, at: str | int = "peak",
                   designs: list[str] | None = None) -> RunStates:
    """The superpage states of every design of ``cfg`` at one point of its run.

    ``at``: ``"end"`` (after the last operation, before teardown), an operation count,
    or ``"peak"`` (default): the first point of the run where the most superpages are in
    a state other than none, all designs added up, and among those the one with the
    highest counts (many workloads end by unmapping everything; finding the peak runs
    the workload once more on each design). Every design is
    read at the same point of the same operations, replayed on a fresh machine as
    ``xensim run`` runs them (without the audits and the teardown).
    """
    from ...designs import REGISTRY as registered
    names = list(designs or cfg.designs())
    wl = _config_workload(cfg)
    missing: dict[str, str] = {}
    runnable = [d for d in names if d in registered]
    for d in names:
        if d not in registered:
            missing[d] = "not available in this build"
    stop: int | None
    if at == "end":
        stop, why = None, "at the end of the run (before teardown)"
    elif at == "peak":
        stop, why = None, "at the end of the run (before teardown)"
        total: np.ndarray | None = None
        for d in runnable:
            busy: list[tuple[int, int]] = []
            try:
                _run_ops(cfg, memmap, d, wl, each=lambda n, m: busy.append(superpage_activity(m)))
            except ConfigError:
                raise
            except Exception as e:                      # noqa: BLE001 a bug: shown, not hidden
                missing[d] = f"crashed: {type(e).__name__}: {e}"
                continue
            b = np.array(busy, dtype=np.int64).reshape(-1, 2)
            total = b if total is None else total[:len(b)] + b[:len(total)]
        if total is not None and len(total) and total[:, 0].max() > 0:
            key = total[:, 0].astype(object) * (1 << 62) + total[:, 1].astype(object)
            p = int(np.argmax(key))
            if p != len(total) - 1:
                stop = p
                why = (f"after operation {p:,} of {len(total) - 1:,}, the busiest point "
                       f"(the most superpages in use, then the highest counts, all designs "
                       f"together)")
    else:
        stop = int(at)
        why = f"after operation {stop:,}"
    states, frames, done = [], [], None
    for d in runnable:
        if d in missing:
            continue
        try:
            m, kernels, done = _run_ops(cfg, memmap, d, wl, stop_at=stop)
        except ConfigError:
            raise
        except Exception as e:                          # noqa: BLE001
            missing[d] = f"crashed: {type(e).__name__}: {e}"
            continue
        states.append(superpage_states(m))
        if not frames:
            for k in kernels.values():
                frames += m.domains[k.domid].owned.runs()
    if done is None:
        done = wl.total if stop is None else min(stop, wl.total)
    if at not in ("end", "peak"):
        why = f"after operation {done:,} of {wl.total:,}"
    return RunStates(machine=memmap.name, workload=wl.cfg.kind, ops=wl.total, at_op=done,
                     why=why, states=states, missing=missing, guest_frames=sorted(frames))


def _zoom_window(r: RunStates) -> tuple[int, int] | None:
    """Superpage numbers [lo, hi) around the guests' memory and every superpage in use."""
    used = set()
    for s in r.states:
        used.update(int(x) for x in s.superpages[s.state != NONE])
    for a, b in r.guest_frames:
        used.update((a >> SUPERPAGE_ORDER, (b - 1) >> SUPERPAGE_ORDER))
    if not used:
        return None
    return min(used), max(used) + 1


def fig_superpages(r: RunStates):
    """Per design, a strip along the address axis coloured by state; below, the counts of
    the superpages around the guests' memory, as a heat map (marks shown)."""
    import textwrap
    from matplotlib.colors import BoundaryNorm, LogNorm
    from matplotlib.patches import Patch
    n = max(len(r.states), 1)
    # the overview strip is thin (one short row per design, legend at its right): the
    # heat map of the superpages in use below gets most of the height
    fig = _new_figure(11, 2.9 + 0.75 * n)
    ax, axh = fig.subplots(2, 1, height_ratios=[0.5 + 0.22 * n, 1.0 + 0.45 * n])
    names = [s.design for s in r.states]
    sp_bytes = SUPERPAGE_ORDER + PAGE_SHIFT
    top = max([int(s.superpages[-1] + 1) << sp_bytes for s in r.states if s.superpages.size] + [0])
    least = top / 500                          # narrower runs in use are widened to show
    for i, s in enumerate(r.states):
        y = n - 1 - i
        cat = np.where(s.full, s.state, PARTIAL).astype(np.int64)
        runs = _runs(cat, s.superpages)
        for a, b, c in sorted(runs, key=lambda t: t[2] in (DYNAMIC, MARK)):
            a, b = a << sp_bytes, b << sp_bytes
            if c in (DYNAMIC, MARK) and b - a < least:
                a = max(0.0, (a + b - least) / 2)
                b = a + least
            _bar(ax, y, [(a, b)], h=0.8, color=STATE_COLORS[c])
    window = _zoom_window(r)
    if window and top:
        lo, hi = window
        a, b = lo << sp_bytes, hi << sp_bytes
        if b - a < least:
            a = max(0.0, (a + b - least) / 2)
            b = a + least
        ax.axvspan(a, b, color="#fff59d", alpha=0.6, zorder=0, lw=0)
    ax.set_yticks(range(n - 1, n - 1 - len(names), -1), names, fontsize=8)
    ax.set_ylim(-0.5, n - 0.5)
    if top:
        ax.set_xlim(0, top)
        ax.xaxis.set_major_locator(_addr_locator(top))
        ax.xaxis.set_major_formatter(_addr_formatter(top))
    ax.set_xlabel("physical address of the superpage (blank: no RAM; yellow: the window below)",
                  fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    title = (f"Superpage metadata per design on {r.machine}, {r.workload} workload "
             f"({r.ops:,} operations): {r.why}")
    title = "\n".join(textwrap.wrap(title, 120))
    if r.missing:
        title += "\n" + "; ".join(f"{d}: {why}" for d, why in r.missing.items())
    ax.set_title(title, fontsize=10)
    handles = [Patch(color=STATE_COLORS[k], label=lbl) for k, lbl in (
        (NONE, "none (count 0)"), (DYNAMIC, "dynamic (mapped)"), (MARK, "mark (MARK_SUPER)"),
        (PARTIAL, "partly RAM (never 2 MiB)"))]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)

    if window is None or not r.states:
        axh.text(0.5, 0.5, "no guest memory, nothing mapped or marked", ha="center", va="center",
                 transform=axh.transAxes)
        axh.set_axis_off()
        return fig
    lo, hi = window
    hi = max(hi, lo + 32)                      # at least 32 columns: readable ticks
    grid = np.zeros((len(r.states), hi - lo), dtype=float)
    marks = []
    for i, s in enumerate(r.states):
        sel = (s.superpages >= lo) & (s.superpages < hi)
        cols = s.superpages[sel] - lo
        grid[i, cols] = s.count[sel]
        marks += [(i, int(c)) for c in cols[s.state[sel] == MARK]]
    top_count = int(grid.max())
    cmap = _cmap("viridis")
    if top_count <= 12:                        # a few counts: one colour each
        cmap = cmap.resampled(max(top_count, 1))
        norm = BoundaryNorm(np.arange(0.5, max(top_count, 1) + 1.5), cmap.N)
    else:
        norm = LogNorm(vmin=1, vmax=top_count)
    cmap = cmap.with_extremes(bad="#f0f0f0")
    im = axh.imshow(np.ma.masked_equal(grid, 0), aspect="auto", interpolation="nearest",
                    cmap=cmap, norm=norm, extent=(lo - 0.5, hi - 0.5, len(r.states) - 0.5, -0.5))
    if marks:
        axh.scatter([lo + c for _, c in marks], [i for i, _ in marks], marker="v", s=40,
                    color="#ff7f0e", edgecolors="black", linewidths=0.6, zorder=3)
    axh.set_yticks(range(len(r.states)), names)
    from matplotlib.ticker import MaxNLocator
    axh.xaxis.set_major_locator(MaxNLocator(integer=True))
    axh.set_xlabel(f"superpage number (mfn >> 9): {hi - lo:,} superpages around the guests' memory")
    axh.set_title("count per superpage (grey: 0)" + (", orange \u25bc: marked (MARK_SUPER)" if marks else ""),
                  fontsize=9)
    cb = fig.colorbar(im, ax=axh, label="count", pad=0.01)
    if top_count <= 12:
        cb.set_ticks(range(1, max(top_count, 1) + 1))
    return fig


def _cmap(name: str):
    import matplotlib
    return matplotlib.colormaps[name].copy()


# ==========================================================================
# 3. Overhead against RAM size
# ==========================================================================

GiB, TiB = 1 << 30, 1 << 40
#: synthetic machines' RAM sizes: 1 GiB .. 4 TiB
SYNTHETIC_SIZES = tuple(GiB << (2 * k) for k in range(7))
#: the overhead rows drawn (per-mapping costs 0 B: no point on a log axis)
OVERHEAD_DESIGNS = ("xen-frame-table", "xensim-frame-table", "pageinfo-count", "xen-4.1-dense",
                    "xen-4.1-dense-pdx", "sparse-16B", "sparse-8B")
OVERHEAD_STYLE = {
    "xen-frame-table": ("#000000", "-"), "xensim-frame-table": ("#757575", "-"),
    "pageinfo-count": (DESIGN_COLORS["pageinfo-count"], "-"),
    "xen-4.1-dense": ("#64b5f6", "--"), "xen-4.1-dense-pdx": (DESIGN_COLORS["xen-4.1"], "-"),
    "sparse-16B": (DESIGN_COLORS["superpage-info"], "-"), "sparse-8B": ("#1b5e20", "--"),
}


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


def overhead_data(pdx: str = "mask", sizes=SYNTHETIC_SIZES, presets=None,
                  machine: MemoryMap | None = None) -> OverheadData:
    """overhead() of every preset (``presets``: names, default all) and of synthetic PC
    machines of ``sizes`` bytes of RAM, with PDX mode ``pdx``; and of ``machine``."""
    from ...config import list_presets, load_preset

    def add(target, mm):
        rep = overhead(Machine(mm, pdx))
        for name in OVERHEAD_DESIGNS:
            target[name].append((mm.name, rep.ram_bytes, rep.design(name).bytes))
        return rep

    syn = {name: [] for name in OVERHEAD_DESIGNS}
    for size in sizes:
        add(syn, synthetic_memmap(size))
    pre = {name: [] for name in OVERHEAD_DESIGNS}
    for name in (list_presets() if presets is None else presets):
        add(pre, load_preset(name))
    for v in pre.values():
        v.sort(key=lambda t: t[1])
    this = None
    if machine is not None:
        rep = overhead(Machine(machine, pdx))
        this = (machine.name, rep.ram_bytes, {n: rep.design(n).bytes for n in OVERHEAD_DESIGNS})
    return OverheadData(pdx, syn, pre, this)


def fig_overhead(d: OverheadData):
    """Log-log: bytes of each design against RAM, lines through synthetic machines,
    markers at the presets, and the 0.2% and 0.0004% of RAM lines."""
    fig = _new_figure(10, 6.4)
    ax = fig.subplots(1, 1)
    xs = [r for rows in (d.synthetic, d.presets) for v in rows.values() for _, r, _ in v]
    x0, x1 = min(xs) / 1.6, max(xs) * 1.6
    for pct, lbl in ((0.2, "0.2% of RAM (8 B per 4 KiB)"), (0.0004, "0.0004% of RAM (8 B per 2 MiB)")):
        ax.plot([x0, x1], [x0 * pct / 100, x1 * pct / 100], color="#9e9e9e", ls=":", lw=1.5, zorder=1)
        xl = x0 * 3
        ax.text(xl, xl * pct / 100 / 1.5, lbl, ha="left", va="top", fontsize=8, color="#616161")
    for name in OVERHEAD_DESIGNS:
        color, ls = OVERHEAD_STYLE[name]
        pts = [(r, b) for _, r, b in d.synthetic[name] if b > 0]
        if pts:
            ax.plot(*zip(*pts), color=color, ls=ls, lw=1.6, label=name, zorder=2)
        pre = [(r, b) for _, r, b in d.presets[name] if b > 0]
        if pre:
            ax.scatter(*zip(*pre), color=color, s=22, zorder=3, edgecolors="white", linewidths=0.5)
    # the presets, named along the top
    seen = {}
    for mname, r, _ in d.presets[OVERHEAD_DESIGNS[0]]:
        seen.setdefault(r, []).append(mname)
    for r, names in seen.items():
        ax.axvline(r, color="#dddddd", lw=0.8, zorder=0)
        ax.text(r, 1.0, " " + ", ".join(names), rotation=90, va="top", ha="center", fontsize=7,
                color="#555555", transform=ax.get_xaxis_transform(),
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=0.5))
    if d.this is not None:
        name, r, b = d.this
        ax.scatter([r] * len(OVERHEAD_DESIGNS), [b[n] for n in OVERHEAD_DESIGNS], marker="*", s=110,
                   color=[OVERHEAD_STYLE[n][0] for n in OVERHEAD_DESIGNS], edgecolors="black",
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
                 f"per-mapping costs 0 B (not drawn)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


# ==========================================================================
# 4. Slow-path rate against churn
# ==========================================================================

#: the churn workload's iterations (panel a)
CHURN_ITERATIONS = (1, 2, 4, 8, 16, 32, 64)
#: fractions of map/unmap pairs that churn (panel b): k/8
CHURN_FRACTIONS = tuple(k / 8 for k in range(9))
#: map/unmap pairs per point of panel b
CHURN_PAIRS = 16


class ChurnMix(Workload):
    """One guest maps and unmaps a superpage ``pairs`` times; a ``fraction`` of the pairs
    churn a superpage that has no other mapping (superpages ``held ..``), the rest map a
    superpage that a long-lived mapping holds (superpages ``0 .. held-1``, mapped at
    slots 64.. before, unmapped after). With ``mark``, every superpage is MARK_SUPER'd
    first (and unmarked at the end). Only the ``pairs`` are measured: ops
    ``[prelude, prelude + 2 * pairs)``."""

    HELD = 2
    LONELY = 2

    def __init__(self, cfg, domains, fraction: float, mark: bool, pairs: int = CHURN_PAIRS):
        self.fraction, self.mark, self.pairs = fraction, mark, pairs
        n = self.HELD + self.LONELY
        self.prelude = (n if mark else 0) + self.HELD
        super().__init__(cfg, domains)

    def churns(self, i: int) -> bool:
        """Does pair ``i`` churn? Spread evenly: floor(fraction * pairs) of them."""
        f = self.fraction
        return int((i + 1) * f + 1e-9) > int(i * f + 1e-9)

    def _generate(self, rng):
        d = self.domains[0].name
        n = self.HELD + self.LONELY
        if self.mark:
            for i in range(n):
                yield Op(d, "mark", i)
        for i in range(self.HELD):
            yield Op(d, "map", i, 64 + i)
        for i in range(self.pairs):
            sp = self.HELD + i % self.LONELY if self.churns(i) else i % self.HELD
            yield Op(d, "map", sp, 0)
            yield Op(d, "unmap", 0, 0)
        for i in range(self.HELD):
            yield Op(d, "unmap", 0, 64 + i)
        if self.mark:
            for i in range(n):
                yield Op(d, "unmark", i)


@dataclass
class ChurnData:
    """Slow-path transitions per operation: ``iterations[(design, mark)]`` over
    ``iteration_values`` (the churn workload), ``fractions[(design, mark)]`` over
    ``fraction_values`` (:class:`ChurnMix`); None where a design did not run.
    A design without MARK_SUPER (``mark_unsupported``) has no ``(design, True)`` series:
    its marks would fail and count as operations, a rate that says nothing about MARK."""
    machine: str
    designs: list[str]
    iteration_values: list[int]
    iterations: dict[tuple[str, bool], list[float | None]]
    fraction_values: list[float]
    fractions: dict[tuple[str, bool], list[float | None]]
    missing: dict[str, str] = field(default_factory=dict)
    #: why the runs used another machine than the one asked for ("" if they did not)
    note: str = ""
    #: the designs that have no MARK_SUPER / UNMARK_SUPER (no "with MARK" series)
    mark_unsupported: list[str] = field(default_factory=list)


def _churn_config(cfg: Config | None, workload: str, memory: str) -> Config:
    base = parse_config(f"workload: {workload}\ndomains: [{{name: guest, memory: {memory}}}]\n",
                        "<churn>")
    if cfg is not None:
        base = dataclasses.replace(base, machine=cfg.machine, hypervisor=cfg.hypervisor,
                                   cost_model=cfg.cost_model)
    return base


def churn_data(cfg: Config | None = None, memmap: MemoryMap | None = None,
               iterations=CHURN_ITERATIONS, fractions=CHURN_FRACTIONS,
               designs=ALL_DESIGNS) -> ChurnData:
    """Run the churn workload (one guest, one superpage) for each of ``iterations``, and
    :class:`ChurnMix` for each of ``fractions``, with and without MARK_SUPER, on each
    design, each on a fresh machine (``memmap``, default the teaching machine)."""
    from ...config import load_preset
    from ...designs import REGISTRY as registered
    from ...sim import run_design
    from ...sim._simulate import _counters
    memmap = memmap or load_preset("teaching")
    missing = {d: "not available in this build" for d in designs if d not in registered}
    run = [d for d in designs if d in registered]
    no_mark = [d for d in run if not registered[d].supports_mark]
    it_out: dict[tuple[str, bool], list[float | None]] = {}
    fr_out: dict[tuple[str, bool], list[float | None]] = {}
    for mark in (False, True):
        for d in run:
            if mark and d in no_mark:
                continue
            vals = []
            for it in iterations:
                c = _churn_config(cfg, f"{{kind: churn, superpages: 1, iterations: {it}, "
                                       f"mark: {str(mark).lower()}}}", "2MiB")
                r = run_design(c, memmap, d)
                if r.status != "ok":
                    missing.setdefault(d, f"{r.status}: {r.reason}")
                vals.append(r.slow_per_op if r.ok else None)
            it_out[(d, mark)] = vals
        n = ChurnMix.HELD + ChurnMix.LONELY
        c = _churn_config(cfg, "{kind: churn}", f"{2 * n}MiB")
        for d in run:
            if mark and d in no_mark:
                continue
            vals = []
            for f in fractions:
                wl = ChurnMix(c.workload, [DomainSpec("guest", 2 * n << 20)], f, mark)
                seen = {}

                def each(k, m, wl=wl, seen=seen):
                    if k in (wl.prelude, wl.prelude + 2 * wl.pairs):
                        seen[k] = dict(_counters(m)[1])
                try:
                    _run_ops(c, memmap, d, wl, each=each)
                except ConfigError:
                    raise
                except Exception as e:                  # noqa: BLE001
                    missing.setdefault(d, f"crashed: {type(e).__name__}: {e}")
                    vals.append(None)
                    continue
                a, b = seen[wl.prelude], seen[wl.prelude + 2 * wl.pairs]
                slow = sum(b.get(k, 0) - a.get(k, 0) for k in ("slow_get", "slow_put"))
                vals.append(slow / (2 * wl.pairs))
            fr_out[(d, mark)] = vals
    return ChurnData(memmap.name, run, list(iterations), it_out, list(fractions), fr_out, missing,
                     mark_unsupported=no_mark)


#: churn_data boots ~160 machines: above this many superpages with RAM it uses the
#: teaching machine instead (the rates depend on the designs, not on the machine)
CHURN_MAX_SUPERPAGES = 1 << 17


def churn_machine(memmap: MemoryMap) -> MemoryMap:
    """The machine the churn picture runs on: ``memmap``, or the teaching machine when
    ``memmap`` is too big to boot ~160 times in a few seconds."""
    from ...config import load_preset
    if memmap.n_superpages_with_ram <= CHURN_MAX_SUPERPAGES:
        return memmap
    return load_preset("teaching")


def _stacked(ax, xs, series) -> None:
    """Draw ``series`` [(ys, color, ls, marker)]: lines with exactly the same values are
    stacked, the first widest, each next one thinner on top of it, so that every line
    shows as a band of its colour at its true value (no nudging)."""
    groups: dict[tuple, list] = {}
    for ys, color, ls, mk in series:
        groups.setdefault((ls, tuple(ys)), []).append((ys, color, ls, mk))
    z = 2
    for members in groups.values():
        g = len(members)
        for j, (ys, color, ls, mk) in enumerate(members):
            wide = g - 1 - j
            ax.plot(xs, ys, ls=ls, marker=mk, color=color, lw=1.5 + 2 * wide,
                    ms=4 + 2.2 * wide, zorder=z)
            z += 1


def fig_churn(d: ChurnData):
    """(a) the churn workload: slow/op against iterations; (b) slow/op against the fraction
    of map/unmap pairs that churn. Solid: without MARK_SUPER; dashed: with it. A design
    without MARK_SUPER has no dashed line (its legend entry says "MARK unsupported")."""
    from matplotlib.lines import Line2D
    fig = _new_figure(12, 5.0)
    axa, axb = fig.subplots(1, 2)
    sa, sb, handles = [], [], []
    for name in d.designs:
        color = DESIGN_COLORS.get(name, None)
        for mark, ls, mk in ((False, "-", "o"), (True, "--", "s")):
            if mark and name in d.mark_unsupported:
                handles.append(Line2D([], [], ls="none", marker="x", color=color, ms=6,
                                      label=f"{name}: MARK unsupported"))
                continue
            ys = d.iterations.get((name, mark))
            if ys:
                sa.append(([None if y is None else y for y in ys], color, ls, mk))
            ys = d.fractions.get((name, mark))
            if ys:
                sb.append(([None if y is None else y for y in ys], color, ls, mk))
            handles.append(Line2D([], [], ls=ls, marker=mk, ms=4, color=color,
                                  label=f"{name}, {'with' if mark else 'without'} MARK"))
    _stacked(axa, d.iteration_values, sa)
    _stacked(axb, d.fraction_values, sb)
    axa.set_xscale("log", base=2)
    axa.set_xticks(d.iteration_values, [str(v) for v in d.iteration_values])
    axa.set_xlabel("churn iterations N (map + unmap of a superpage's only mapping)",
                   fontsize=9)
    axa.set_title("(a) the churn workload: mark, churn N times, unmark", fontsize=10)
    axb.set_xlabel("fraction of map/unmap pairs whose superpage has no other mapping",
                   fontsize=9)
    axb.set_title(f"(b) churn mixed with mappings of held superpages ({CHURN_PAIRS} pairs)",
                  fontsize=10)
    for ax in (axa, axb):
        ax.set_ylabel("slow-path transitions (0->1, 1->0) per operation")
        ax.set_ylim(-0.06, 1.1)
        ax.grid(alpha=0.3)
    axb.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
               frameon=False)
    nomark = ", ".join(d.mark_unsupported)
    title = (f"Slow-path rate against churn on {d.machine}: solid without MARK_SUPER, dashed "
             f"with it" + (f" ({nomark}: MARK unsupported, no dashed line)" if nomark else "")
             + "\nlines with equal values are stacked, wider under narrower: every colour shows")
    if d.note:
        title += f"\n({d.note})"
    if d.missing:
        title += "\n" + "; ".join(f"{k}: {v}" for k, v in d.missing.items())
    fig.suptitle(title, fontsize=10)
    return fig


# ==========================================================================
# Saving, the command
# ==========================================================================

def figure_bytes(fig, fmt: str = "png") -> bytes:
    """The figure encoded as ``png`` or ``svg``."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    return buf.getvalue()


def save_figure(fig, out: Path, stem: str, formats=("png", "svg")) -> list[Path]:
    """Write ``out/stem.png`` (and ``.svg``) atomically; -> the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        data = figure_bytes(fig, fmt)
        tmp = out / f".{stem}.{fmt}.tmp"
        tmp.write_bytes(data)
        tmp.replace(path)
        paths.append(path)
    return paths


def build_figure(which: str, cfg: Config, memmap: MemoryMap, at: str | int = "peak"):
    """The figure ``which`` (one of FIGURES) for the config ``cfg`` on ``memmap``."""
    _mpl()
    if which == "memmap":
        return fig_memmap(memmap_data(Machine(memmap, cfg.machine.pdx)))
    if which == "superpages":
        return fig_superpages(states_for_run(cfg, memmap, at))
    if which == "overhead":
        return fig_overhead(overhead_data(cfg.machine.pdx, machine=memmap))
    if which == "churn":
        data = churn_data(cfg, churn_machine(memmap))
        if data.machine != memmap.name:
            data.note = (f"not on {memmap.name}: its {memmap.n_superpages_with_ram:,} superpages are "
                         f"too many to boot it for every point; the rates depend on the designs only")
        return fig_churn(data)
    raise ValueError(f"unknown figure {which!r}; choose from {', '.join(FIGURES)}")


def make_pictures(cfg: Config, memmap: MemoryMap, out: str | Path, which: str = "all",
                  at: str | int = "peak", formats=("png", "svg")) -> list[Path]:
    """Draw ``which`` (a name of FIGURES or ``all``) into ``out``; -> the files written."""
    _mpl()
    names = FIGURES if which == "all" else (which,)
    paths = []
    for name in names:
        paths += save_figure(build_figure(name, cfg, memmap, at), Path(out), name, formats)
    return paths


def add_parser(sub) -> None:
    """``xensim plot``: add it to the CLI's subparsers."""
    p = sub.add_parser("plot", help="draw pictures: the memory map, superpage states, overhead "
                                    "against RAM, slow path against churn (needs the plot extra)",
                       description="Draw PNG and SVG pictures of a config's machine and run "
                                   "(docs/pictures.md). Needs matplotlib: pip install -e '.[plot]'.")
    p.add_argument("config", nargs="?", help="a YAML config (default: configs/default.yaml)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--machine", metavar="PRESET", help="a machine preset (see `xensim presets`)")
    src.add_argument("--memmap", metavar="FILE",
                     help="your machine: a YAML memmap, a Linux boot log or /proc/iomem")
    p.add_argument("--pdx", choices=("none", "mask", "offset"), help="PDX compression mode")
    p.add_argument("--out", metavar="DIR", default="plots",
                   help="directory for the pictures (default: plots)")
    p.add_argument("--which", choices=FIGURES + ("all",), default="all",
                   help="which picture (default: all)")
    p.add_argument("--at-op", metavar="N|end|peak", default="peak",
                   help="superpages picture: the point of the run to show (default: peak, the "
                        "busiest point; end: after the last operation; N: after N operations)")
    p.set_defaults(func=cmd_plot)


def _parse_at(value: str) -> str | int:
    if value in ("end", "peak"):
        return value
    try:
        n = int(value, 0)
    except ValueError:
        n = -1
    if n < 0:
        raise ConfigError(None, "--at-op", f"expected end, peak or a number of operations, got {value!r}")
    return n


def cmd_plot(args) -> int:
    """Draw the pictures asked for and print the path of each file written."""
    _mpl()                                     # fail first, before any work, without matplotlib
    from ...cli._common import resolve_machine as _resolve
    cfg, memmap = _resolve(args)
    at = _parse_at(args.at_op)
    from .. import out_dir, writing
    out = out_dir(args.out, "--out")
    with writing(out, "--out"):
        for path in make_pictures(cfg, memmap, out, args.which, at):
            sys.stdout.write(f"{path}\n")
    return 0


__all__ = ["PLOT_HINT", "FIGURES", "PlotUnavailable", "have_matplotlib", "memmap_data",
           "superpage_states", "states_for_run", "overhead_data", "churn_data", "fig_memmap",
           "fig_superpages", "fig_overhead", "fig_churn", "make_pictures", "add_parser", "cmd_plot"]
