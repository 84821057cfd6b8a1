"""``xensim designs``: the registered superpage refcount designs, one row each (what each
design's class says of itself: its words, MARK, known bugs, docs page, description)."""

from __future__ import annotations

from ..designs import catalog
from ..output import render
from ._common import design_file_option


def add_parser(subparsers) -> None:
    """Register ``xensim designs``."""
    p = subparsers.add_parser("designs", help="list the superpage refcount designs",
                              description="List the registered superpage refcount designs: "
                                          "the built-in ones and those loaded from design "
                                          "files or installed packages.")
    p.add_argument("--format", choices=("table", "json", "md"), default="table",
                   help="output format (default table)")
    design_file_option(p)
    p.set_defaults(func=cmd_designs)


def cmd_designs(args) -> int:
    print(render(catalog(), args.format), end="")
    return 0
