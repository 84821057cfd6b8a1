"""``xensim plot``: draw the pictures of a config's machine and run (docs/pictures.md).

The pictures' code (xensim.output.plot, and matplotlib) is imported when the command
runs, not when the parser is built."""

from __future__ import annotations

import sys

from .._errors import ConfigError
from ._common import design_file_option, resolve_machine

#: the pictures ``--which`` names: xensim.output.plot.FIGURES (a test checks they agree)
FIGURE_NAMES = ("memmap", "superpages", "overhead", "churn")


def add_parser(subparsers) -> None:
    """``xensim plot``: add it to the CLI's subparsers."""
    p = subparsers.add_parser(
        "plot", help="draw pictures: the memory map, superpage states, overhead "
                     "against RAM, slow path against churn (needs the plot extra)",
        description="Draw PNG and SVG pictures of a config's machine and run "
                    "(docs/pictures.md). Needs matplotlib: pip install -e '.[plot]'.")
    p.add_argument("config", nargs="?", help="a YAML config (default: configs/default.yaml)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--machine", metavar="PRESET", help="a machine preset (see `xensim presets`)")
    src.add_argument("--memmap", metavar="FILE",
                     help="your machine: a YAML memmap, a Linux boot log or /proc/iomem")
    p.add_argument("--pdx", choices=("none", "mask", "offset"), help="PDX compression mode")
    design_file_option(p)
    p.add_argument("--out", metavar="DIR", default="plots",
                   help="directory for the pictures (default: plots)")
    p.add_argument("--which", choices=FIGURE_NAMES + ("all",), default="all",
                   help="which picture (default: all)")
    p.add_argument("--at-op", metavar="N|end|peak", default="peak",
                   help="superpages picture: the point of the run to show (default: peak, the "
                        "busiest point; end: after the last operation; N: after N operations)")
    p.set_defaults(func=cmd_plot)


def _parse_at(value: str) -> str | int:
    """``--at-op``: ``end``, ``peak`` or a number of operations (decimal or 0x...)."""
    if value in ("end", "peak"):
        return value
    try:
        n = int(value, 0)
    except ValueError:
        n = -1
    if n < 0:
        raise ConfigError(None, "--at-op", f"expected end, peak or a number of operations, got {value!r}")
    return n


def cmd_plot(args) -> int:
    """Draw the pictures asked for and print the path of each file written."""
    from ..output import out_dir, writing
    from ..output.plot import load_matplotlib, make_pictures
    load_matplotlib()                          # fail first, before any work, without matplotlib
    cfg, memmap = resolve_machine(args)
    at = _parse_at(args.at_op)
    out = out_dir(args.out, "--out")
    with writing(out, "--out"):
        for path in make_pictures(cfg, memmap, out, args.which, at):
            sys.stdout.write(f"{path}\n")
    return 0
