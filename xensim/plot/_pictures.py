"""The pictures, by name (:data:`FIGURES`): each one's data and figure
(:func:`build_figure`), and drawing them into a directory (:func:`make_pictures`).
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..mem import MemoryMap
from ..xen import Machine
from ._churn import churn_data, churn_machine, fig_churn
from ._common import FIGURES, load_matplotlib, save_figure
from ._memmap import fig_memmap, memmap_data
from ._overhead import fig_overhead, overhead_data
from ._superpages import fig_superpages, states_for_run


def build_figure(which: str, cfg: Config, memmap: MemoryMap, at: str | int = "peak"):
    """The figure ``which`` (one of FIGURES) for the config ``cfg`` on ``memmap``."""
    load_matplotlib()
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
    load_matplotlib()
    names = FIGURES if which == "all" else (which,)
    paths = []
    for name in names:
        paths += save_figure(build_figure(name, cfg, memmap, at), Path(out), name, formats)
    return paths
