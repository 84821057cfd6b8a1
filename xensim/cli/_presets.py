"""``xensim presets``: the machine presets, one line each (RAM, max_pfn, source)."""

from __future__ import annotations

from ..config import list_presets, load_preset
from ..mem import format_size


def add_parser(subparsers) -> None:
    """Register ``xensim presets``."""
    pr = subparsers.add_parser("presets", help="list the machine presets")
    pr.set_defaults(func=cmd_presets)


def cmd_presets(args) -> int:
    for name in list_presets():
        mm = load_preset(name)
        print(f"{name:16} {format_size(mm.ram_bytes):>10} RAM  max_pfn {mm.max_pfn:#x}  {mm.source or ''}")
    return 0
