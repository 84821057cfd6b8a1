"""The churn picture (``xensim plot --which churn``): slow-path transitions per
operation against churn, per design, with and without MARK_SUPER (docs/pictures.md
section 4). :func:`churn_data` needs no matplotlib.
"""

from __future__ import annotations

import textwrap

import dataclasses
from dataclasses import dataclass, field

from .._errors import ConfigError
from ..config import Config, load_preset, parse_config
from ..designs import REGISTRY as registered, design_color, design_names
from ..guest import DomainSpec, Op, Workload
from ..mem import MemoryMap
from ..sim import run_design, start
from ._common import new_figure, release_text

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
    ``fraction_values`` (:class:`ChurnMix`); None where a design crashed.
    A design without MARK_SUPER (``mark_unsupported``) has no ``(design, True)`` series:
    its marks would fail and count as operations, a rate that says nothing about MARK. A
    design without PV superpages (``no_superpages``: its ``supports_pse`` is False) has no
    series at all: it has no superpage path (every 2 MiB mapping is an L1 table's 512
    references: the comparison's get_type/2M map says what it costs)."""
    machine: str
    designs: list[str]
    iteration_values: list[int]
    iterations: dict[tuple[str, bool], list[float | None]]
    fraction_values: list[float]
    fractions: dict[tuple[str, bool], list[float | None]]
    #: designs that crashed: design -> why
    missing: dict[str, str] = field(default_factory=dict)
    #: why the runs used another machine than the one asked for ("" if they did not)
    note: str = ""
    #: the designs that have no MARK_SUPER / UNMARK_SUPER (no "with MARK" series)
    mark_unsupported: list[str] = field(default_factory=list)
    #: which Xen produced it ("Xen 4.8"; release_text)
    release: str = ""
    #: the designs with no PV superpages (no series: no superpage path to take)
    no_superpages: list[str] = field(default_factory=list)


def _churn_config(cfg: Config | None, workload: str, memory: str) -> Config:
    base = parse_config(f"workload: {workload}\ndomains: [{{name: guest, memory: {memory}}}]\n",
                        "<churn>")
    if cfg is not None:
        base = dataclasses.replace(base, machine=cfg.machine, hypervisor=cfg.hypervisor,
                                   cost_model=cfg.cost_model)
    return base


def churn_data(cfg: Config | None = None, memmap: MemoryMap | None = None,
               iterations=CHURN_ITERATIONS, fractions=CHURN_FRACTIONS,
               designs=None) -> ChurnData:
    """Run the churn workload (one guest, one superpage) for each of ``iterations``, and
    :class:`ChurnMix` for each of ``fractions``, with and without MARK_SUPER, on each
    design (default every registered one), each on a fresh machine (``memmap``, default the
    teaching machine)."""
    memmap = memmap or load_preset("teaching")
    # designs that crashed: design -> why
    missing: dict[str, str] = {}
    asked = list(design_names() if designs is None else designs)
    no_pse = [d for d in asked if not registered[d].supports_pse]
    run = [d for d in asked if d not in no_pse]
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
                measured = (wl.prelude, wl.prelude + 2 * wl.pairs)
                seen = {}
                try:
                    s = start(c, memmap, d, wl)
                    for step in s.steps():              # the prelude has ops: none at 0
                        if step.index + 1 in measured:
                            seen[step.index + 1] = s.counters().superpage
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
    version = _churn_config(cfg, "{kind: churn}", "2MiB").hypervisor.version
    return ChurnData(memmap.name, run, list(iterations), it_out, list(fractions), fr_out, missing,
                     mark_unsupported=no_mark, no_superpages=no_pse,
                     release=release_text(version, run))


#: churn_data boots ~160 machines: above this many superpages with RAM it uses the
#: teaching machine instead (the rates depend on the designs, not on the machine)
CHURN_MAX_SUPERPAGES = 1 << 17


def churn_machine(memmap: MemoryMap) -> MemoryMap:
    """The machine the churn picture runs on: ``memmap``, or the teaching machine when
    ``memmap`` is too big to boot ~160 times in a few seconds."""
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
    fig = new_figure(12, 5.0)
    axa, axb = fig.subplots(1, 2)
    sa, sb, handles = [], [], []
    for name in d.designs:
        color = design_color(name) if name in registered else None
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
    nopse = ", ".join(d.no_superpages)
    title = (f"Slow-path rate against churn on {d.machine}, {d.release}: solid without MARK_SUPER, dashed "
             f"with it" + (f" ({nomark}: MARK unsupported, no dashed line)" if nomark else "")
             + (f"; {nopse}: no PV superpages, not drawn (every 2 MiB map is an L1 table's "
                f"512 references)" if nopse else "")
             + "\nlines with equal values are stacked, wider under narrower: every colour shows")
    if d.note:
        title += f"\n({d.note})"
    if d.missing:
        title += "\n" + "; ".join(f"{k}: {v}" for k, v in d.missing.items())
    # each line wrapped to the figure's width (12 in at 10 pt: ~110 characters)
    title = "\n".join(textwrap.fill(line, 105) for line in title.split("\n"))
    fig.suptitle(title, fontsize=10)
    return fig
