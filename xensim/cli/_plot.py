"""``xensim plot``: draw the pictures of a config's machine and run, or of a sweep's
results (``--sweep DIR --x KEY``, with ``--html FILE`` its HTML report) (docs/pictures.md).

The pictures' code (xensim.plot, and matplotlib) is imported when the command
runs, not when the parser is built."""

from __future__ import annotations

import sys

from .._errors import ConfigError
from ._common import design_file_option, resolve_machine

#: the pictures ``--which`` names: xensim.plot.FIGURES (a test checks they agree)
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
    p.add_argument("--pdx", choices=("none", "mask", "offset", "offset-4.21.0"), help="PDX compression mode")
    design_file_option(p)
    p.add_argument("--out", metavar="DIR", default="plots",
                   help="directory for the pictures (default: plots, in the current "
                        "directory; created if need be)")
    p.add_argument("--which", choices=FIGURE_NAMES + ("all",), default="all",
                   help="which picture (default: all)")
    p.add_argument("--at-op", metavar="N|end|peak", default="peak",
                   help="superpages picture: the point of the run to show (default: peak, the "
                        "busiest point; end: after the last operation; N: after N operations)")
    sw = p.add_argument_group("a sweep's pictures (the DIR of `xensim sweep ... --out DIR`)")
    sw.add_argument("--sweep", metavar="DIR",
                    help="draw DIR/results.csv: a figure against a grid key, one line per "
                         "design, the band of the seeds' spread (instead of CONFIG's pictures)")
    sw.add_argument("--x", metavar="KEY", help="with --sweep: the grid key along the x axis")
    sw.add_argument("--facet", metavar="KEY",
                    help="with --sweep: one panel per value of this grid key")
    sw.add_argument("--metric", metavar="NAME", action="append",
                    help="with --sweep: the figure drawn, a column of results.csv (repeat for "
                         "several; default slow_per_op)")
    sw.add_argument("--html", metavar="FILE",
                    help="with --sweep: also write the sweep's report as one HTML page (its "
                         "table, the figures' tables and the figures)")
    p.set_defaults(func=cmd_plot)


#: the options of a sweep's pictures, and those of a config's
SWEEP_OPTIONS = ("x", "facet", "metric", "html")
CONFIG_OPTIONS = ("config", "machine", "memmap", "pdx")


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
    """Draw the pictures asked for and print the path of each file written. Every
    output is checked before anything is drawn or written."""
    from ..output import check_dir, out_dir, writing
    from ..plot import load_matplotlib, make_pictures
    if args.sweep is not None:
        return cmd_plot_sweep(args)
    for name in SWEEP_OPTIONS:
        if getattr(args, name):
            raise ConfigError(None, f"--{name}", "draws a sweep's results: give --sweep DIR")
    load_matplotlib()                          # fail first, before any work, without matplotlib
    check_dir(args.out, "--out")
    cfg, memmap = resolve_machine(args)
    at = _parse_at(args.at_op)
    out = out_dir(args.out, "--out")
    with writing(out, "--out"):
        for path in make_pictures(cfg, memmap, out, args.which, at):
            sys.stdout.write(f"{path}\n")
    return 0


def cmd_plot_sweep(args) -> int:
    """``xensim plot --sweep DIR --x KEY``: one figure per ``--metric`` (PNG and SVG,
    ``sweep-METRIC``), and with ``--html`` the sweep's report; prints each file written.
    Every output is checked before anything is drawn or written."""
    from ..output import check_dir, check_file, out_dir, writing
    from ..plot import (DEFAULT_METRIC, figure_bytes, fig_sweep, load_matplotlib,
                        results_table, save_figure, sweep_data, sweep_table)
    from ._html import write_sweep_html
    for name in CONFIG_OPTIONS:
        if getattr(args, name):
            raise ConfigError(None, "--sweep", f"draws a sweep's results; "
                                               f"{'CONFIG' if name == 'config' else '--' + name} "
                                               f"is for a config's pictures")
    if args.x is None:
        raise ConfigError(None, "--sweep", "needs --x KEY, the grid key along the x axis")
    load_matplotlib()
    check_dir(args.out, "--out")
    if args.html:
        check_file(args.html, "--html")
    metrics = list(dict.fromkeys(args.metric or [DEFAULT_METRIC]))
    data = [sweep_data(args.sweep, args.x, args.facet, m) for m in metrics]
    out = out_dir(args.out, "--out")
    figures = []
    with writing(out, "--out"):
        for d in data:
            fig = fig_sweep(d)
            for path in save_figure(fig, out, f"sweep-{d.metric}"):
                sys.stdout.write(f"{path}\n")
            figures.append(figure_bytes(fig, "png"))
    if args.html:
        with writing(args.html, "--html"):
            write_sweep_html(args.html, args.sweep, results_table(args.sweep, metrics),
                             [(sweep_table(d), png) for d, png in zip(data, figures)])
        sys.stdout.write(f"{args.html}\n")
    return 0
