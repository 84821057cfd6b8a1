"""``xensim machine``: the booted machine: its memory map, holes, PDX and tables."""

from __future__ import annotations

from ._common import machine_args, print_report


def add_parser(subparsers) -> None:
    """Register ``xensim machine``."""
    mc = subparsers.add_parser("machine", help="the machine: memory map, holes, PDX, tables")
    machine_args(mc)
    mc.set_defaults(func=cmd_machine)


def cmd_machine(args) -> int:
    from ..sim import MachineReport
    return print_report(args, MachineReport)
