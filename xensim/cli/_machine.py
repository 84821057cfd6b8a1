"""``xensim machine``: the booted machine: its memory map, holes, PDX and tables."""

from __future__ import annotations

import sys

from ._common import machine_args, resolve_machine


def add_parser(subparsers) -> None:
    """Register ``xensim machine``."""
    mc = subparsers.add_parser("machine", help="the machine: memory map, holes, PDX, tables")
    machine_args(mc)
    mc.set_defaults(func=cmd_machine)


def cmd_machine(args) -> int:
    from ..output import render
    from ..sim import MachineReport
    from ..xen import Machine
    cfg, memmap = resolve_machine(args)
    sys.stdout.write(render(MachineReport(Machine(memmap, cfg.machine.pdx)), args.format))
    return 0
