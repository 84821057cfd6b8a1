"""The ``xensim`` command line."""

from __future__ import annotations

import argparse
import sys

from ..config import Config, dump_resolved
from .._errors import ConfigError
from ..xen import Machine
from ..mem import MemoryMap
from ..sim import overhead
from ..config import list_presets, load_preset
from ._fuzz import add_parser as add_fuzz_parser
from ._html import add_html_argument, write_html
from ..teach._inspect import add_parser as add_inspect_parser
from ..output.plot._plot import add_parser as add_plot_parser
from ..explore._scenario import add_parser as add_explore_parser
from ..teach._trace import add_parser as add_trace_parser
from ..output import Progress
from ..output import render, to_json
from ..sim import MachineReport, RunResult
from ..output import check_file, out_dir, write_atomic, writing
from ..output import EXIT_INTERRUPTED, sigint_deferred
from ..sim import Interrupted, run_comparison
from ..mem import format_size
from ._common import machine_args, resolve_machine


def _boot(cfg: Config, memmap: MemoryMap) -> Machine:
    return Machine(memmap, cfg.machine.pdx)


def cmd_run(args) -> int:
    """The machine's overhead and summary; with a workload (or a compare), first the
    simulation of every design. Exit status 1 if a design crashed (a bug).
    A reproducer written by ``xensim fuzz`` is replayed with every check (1: it still fails)."""
    cfg, memmap = resolve_machine(args)
    if cfg.workload is not None and cfg.workload.ops is not None:    # a fuzzer's reproducer
        from ..fuzz import replay_config
        result = replay_config(cfg, memmap)
        print(result)
        return 1 if result.violation else 0
    machine = _boot(cfg, memmap)
    out = out_dir(args.out, "--out") if args.out else None     # before the run: fail early
    if args.html:
        check_file(args.html, "--html")
    comparison = None
    if cfg.simulates:
        try:
            comparison = run_comparison(cfg, memmap, Progress.off() if args.quiet else Progress())
        except Interrupted as e:
            done = ", ".join(e.completed) or "none"
            written = "; nothing written" if args.out or args.html else ""
            print(f"xensim: interrupted after {e.ops:,} operations (designs completed: "
                  f"{done}{written})", file=sys.stderr)
            return EXIT_INTERRUPTED
    result = RunResult.of(machine, comparison)
    with sigint_deferred():                   # every file written, or (Ctrl-C before) none
        if out:
            with writing(out, "--out"):
                dump_resolved(cfg, memmap, out / "config.yaml")
                write_atomic(out / "results.json", to_json(result))
                write_atomic(out / "results.csv", render(result, "csv"))
        if args.html:
            with writing(args.html, "--html"):
                write_html(result, args.html, cfg, memmap)
    sys.stdout.write(render(result, args.format))
    if out and args.format == "table":
        sys.stdout.write(f"\nwrote {out / 'config.yaml'}, {out / 'results.json'} and "
                         f"{out / 'results.csv'}\n")
    if args.html and args.format == "table":
        sys.stdout.write(f"\nwrote {args.html}\n")
    if comparison is not None and comparison.crashed:
        for r in comparison.crashed:
            print(f"xensim: design {r.design} crashed: {r.reason}", file=sys.stderr)
        return 1
    return 0


def cmd_overhead(args) -> int:
    cfg, memmap = resolve_machine(args)
    sys.stdout.write(render(overhead(_boot(cfg, memmap)), args.format))
    return 0


def cmd_machine(args) -> int:
    cfg, memmap = resolve_machine(args)
    sys.stdout.write(render(MachineReport(_boot(cfg, memmap)), args.format))
    return 0


def cmd_presets(args) -> int:
    for name in list_presets():
        mm = load_preset(name)
        print(f"{name:16} {format_size(mm.ram_bytes):>10} RAM  max_pfn {mm.max_pfn:#x}  {mm.source or ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xensim",
        description="Simulate Xen's x86 memory manager: page_info reference counting, "
                    "sparse memory maps and the superpage refcount designs.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a config: its workload on each design, the "
                                     "overhead and the machine (default: configs/default.yaml)")
    machine_args(run, "a YAML config (default: configs/default.yaml, a comparison of the "
                       "five designs on the teaching machine)")
    run.add_argument("--out", metavar="DIR",
                     help="write the resolved config, results.json and results.csv here")
    run.add_argument("--quiet", action="store_true",
                     help="no progress bar (it shows only on a terminal, for runs over ~2 s)")
    add_html_argument(run)
    run.set_defaults(func=cmd_run)
    ov = sub.add_parser("overhead", help="memory cost of each superpage refcount design")
    machine_args(ov)
    ov.set_defaults(func=cmd_overhead)
    mc = sub.add_parser("machine", help="the machine: memory map, holes, PDX, tables")
    machine_args(mc)
    mc.set_defaults(func=cmd_machine)
    pr = sub.add_parser("presets", help="list the machine presets")
    pr.set_defaults(func=cmd_presets)
    add_explore_parser(sub)
    add_fuzz_parser(sub)
    add_trace_parser(sub)
    add_inspect_parser(sub)
    add_plot_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"xensim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:                 # Ctrl-C where no partial summary is due
        print("xensim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:                   # output piped into head and the like
        return 0
    except OSError as e:                      # e.g. --out onto a file, an unwritable directory
        where = f"{e.filename}: " if e.filename else ""
        print(f"xensim: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
