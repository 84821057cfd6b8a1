"""``xensim overhead``: the memory cost of each superpage refcount design on a machine."""

from __future__ import annotations

import sys

from ._common import machine_args, resolve_machine


def add_parser(subparsers) -> None:
    """Register ``xensim overhead``."""
    ov = subparsers.add_parser("overhead", help="memory cost of each superpage refcount design")
    machine_args(ov)
    ov.set_defaults(func=cmd_overhead)


def cmd_overhead(args) -> int:
    from ..output import render
    from ..sim import overhead
    from ..xen import Machine
    cfg, memmap = resolve_machine(args)
    sys.stdout.write(render(overhead(Machine(memmap, cfg.machine.pdx)), args.format))
    return 0
