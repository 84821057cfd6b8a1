"""The designs' colours: one per design in every picture (runs, sweeps, overhead).

A design names its own (``color``); the others get the next free colour of
:data:`PALETTE`, in registration order.
"""

from __future__ import annotations

from ._registry import REGISTRY

#: colours for designs that name none, handed out in registration order
PALETTE = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
           "#8c6d31", "#843c39", "#7b4173")


def design_color(name: str) -> str:
    """The colour of design ``name`` in every picture: its own, else the next free one of
    :data:`PALETTE` in registration order."""
    cls = REGISTRY[name]
    if cls.color:
        return cls.color
    taken = {c.color for c in REGISTRY.values() if c.color}
    free = [c for c in PALETTE if c not in taken] or list(PALETTE)
    uncoloured = [n for n, c in REGISTRY.items() if not c.color]
    return free[uncoloured.index(name) % len(free)]
