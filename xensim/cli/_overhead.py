"""``xensim overhead``: the memory cost of each superpage refcount design on a machine."""

from __future__ import annotations

from ._common import design_file_option, machine_args, print_report


def add_parser(subparsers) -> None:
    """Register ``xensim overhead``."""
    ov = subparsers.add_parser("overhead", help="memory cost of each superpage refcount design")
    machine_args(ov)
    design_file_option(ov)
    ov.set_defaults(func=cmd_overhead)


def cmd_overhead(args) -> int:
    from ..sim import overhead
    return print_report(args, overhead)
