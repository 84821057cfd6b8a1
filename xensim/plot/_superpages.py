"""The superpage-states picture (``xensim plot --which superpages``): each design's
per-superpage metadata (none / dynamic / mark, and counts) along the address axis,
at one point of a config's run replayed on every design (docs/pictures.md section 2).
:func:`superpage_states` and :func:`states_for_run` need no matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._errors import ConfigError
from ..config import Config
from ..designs import SPAGE_DYNAMIC, SPAGE_MARK, SPAGE_NONE, SPAGE_STATE_NAMES
from ..mem import PAGE_SHIFT, SUPERPAGE_ORDER, MemoryMap
from ..sim import config_workload, start
from ..xen import Machine
from ._common import (addr_formatter, addr_locator, bar, colormap, new_figure, release_text,
                      runs_of)

NONE, DYNAMIC, MARK = SPAGE_NONE, SPAGE_DYNAMIC, SPAGE_MARK
STATE_NAMES = SPAGE_STATE_NAMES
#: drawn categories: a superpage that is not RAM in full can never be mapped
PARTIAL = 3
STATE_COLORS = {NONE: "#c8e6c9", DYNAMIC: "#1f77b4", MARK: "#ff7f0e", PARTIAL: "#bdbdbd"}
#: a design that keeps no per-superpage word: what its row says instead of states
NO_METADATA = "no per-superpage metadata: each 2 MiB mapping holds its own references"


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
    #: False for a design that keeps no per-superpage word (per-mapping, none): no state,
    #: no count (every 2 MiB mapping holds its own references); drawn blank
    metadata: bool = True

    def state_counts(self) -> dict[str, int]:
        """How many superpages with RAM are in each state (none for a design that keeps
        no metadata)."""
        if not self.metadata:
            return {}
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
    from ..xen import _PAGE_PRESENT, _PAGE_PSE, pte_mfn
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
    """Read ``m``'s superpage design's words for every superpage with RAM (its
    ``superpage_states``)."""
    mm = m.memmap
    sp = mm.superpages_with_ram()
    full = np.isin(sp, mm.superpages_full())
    pse = _pse_mappings(m)
    mappings = np.zeros(sp.size, dtype=np.int64)
    if pse:
        keys = np.array(sorted(pse), dtype=np.int64)
        pos = np.searchsorted(sp, keys >> SUPERPAGE_ORDER)
        np.add.at(mappings, pos, [pse[int(k)] for k in keys])
    spdx = (m.mfn_to_pdx((sp << SUPERPAGE_ORDER).astype(np.uint64)).astype(np.int64)
            >> SUPERPAGE_ORDER)
    if m.superpage.words_in is None:            # no word: no state, no count, nothing to draw
        return SuperpageStates(m.superpage.name, NO_METADATA, sp, full,
                               np.full(sp.size, NONE, dtype=np.int8),
                               np.zeros(sp.size, dtype=np.int64), mappings, metadata=False)
    st = m.superpage.superpage_states(spdx, mappings)
    return SuperpageStates(m.superpage.name, st.source, sp, full, st.state, st.count, mappings)


def superpage_activity(m: Machine) -> tuple[int, int]:
    """(superpages whose metadata is not in state none, their counts added up), as
    :func:`superpage_states` would say, without reading every superpage: the design's
    ``activity()`` (its non-zero words), or for a design that keeps none the live 2 MiB
    entries. Cheap enough to call after every operation."""
    act = m.superpage.activity()
    if act is not None:
        return act
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
    #: designs that crashed: design -> reason
    missing: dict[str, str] = field(default_factory=dict)
    #: the guests' frames at that point: (first mfn, end mfn) runs
    guest_frames: list[tuple[int, int]] = field(default_factory=list)
    #: which Xen produced it ("Xen 4.8"; release_text)
    release: str = ""


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
    names = list(designs or cfg.designs())
    wl = config_workload(cfg)
    # designs that crashed: design -> why
    missing: dict[str, str] = {}
    stop: int | None
    if at == "end":
        stop, why = None, "at the end of the run (before teardown)"
    elif at == "peak":
        stop, why = None, "at the end of the run (before teardown)"
        total: np.ndarray | None = None
        for d in names:
            try:
                s = start(cfg, memmap, d, wl)
                busy = [superpage_activity(s.machine)]
                busy += [superpage_activity(s.machine) for _ in s.steps()]
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
    for d in names:
        if d in missing:
            continue
        try:
            s = start(cfg, memmap, d, wl)
            done = s.run(stop)
        except ConfigError:
            raise
        except Exception as e:                          # noqa: BLE001
            missing[d] = f"crashed: {type(e).__name__}: {e}"
            continue
        m = s.machine
        states.append(superpage_states(m))
        if not frames:
            for k in s.kernels.values():
                frames += m.domains[k.domid].owned.runs()
    if done is None:
        done = wl.total if stop is None else min(stop, wl.total)
    if at not in ("end", "peak"):
        why = f"after operation {done:,} of {wl.total:,}"
    return RunStates(machine=memmap.name, workload=wl.cfg.kind, ops=wl.total, at_op=done,
                     why=why, states=states, missing=missing, guest_frames=sorted(frames),
                     release=release_text(cfg.hypervisor.version, names))


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
    fig = new_figure(11, 2.9 + 0.75 * n)
    ax, axh = fig.subplots(2, 1, height_ratios=[0.5 + 0.22 * n, 1.0 + 0.45 * n])
    names = [s.design for s in r.states]
    sp_bytes = SUPERPAGE_ORDER + PAGE_SHIFT
    top = max([int(s.superpages[-1] + 1) << sp_bytes for s in r.states if s.superpages.size] + [0])
    least = top / 500                          # narrower runs in use are widened to show
    for i, s in enumerate(r.states):
        y = n - 1 - i
        if not s.metadata:                     # nothing kept: a blank row that says so
            ax.text(0.5, y, NO_METADATA, transform=ax.get_yaxis_transform(), ha="center",
                    va="center", fontsize=8, color="#555555")
            continue
        cat = np.where(s.full, s.state, PARTIAL).astype(np.int64)
        runs = runs_of(cat, s.superpages)
        for a, b, c in sorted(runs, key=lambda t: t[2] in (DYNAMIC, MARK)):
            a, b = a << sp_bytes, b << sp_bytes
            if c in (DYNAMIC, MARK) and b - a < least:
                a = max(0.0, (a + b - least) / 2)
                b = a + least
            bar(ax, y, [(a, b)], h=0.8, color=STATE_COLORS[c])
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
        ax.xaxis.set_major_locator(addr_locator(top))
        ax.xaxis.set_major_formatter(addr_formatter(top))
    ax.set_xlabel("physical address of the superpage (blank: no RAM; yellow: the window below)",
                  fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    title = (f"Superpage metadata per design on {r.machine}, {r.release}, {r.workload} "
             f"workload ({r.ops:,} operations): {r.why}")
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
    cmap = colormap("viridis")
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
    for i, s in enumerate(r.states):
        if not s.metadata:
            axh.text(0.5, i, "no count kept", transform=axh.get_yaxis_transform(),
                     ha="center", va="center", fontsize=8, color="#555555")
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
