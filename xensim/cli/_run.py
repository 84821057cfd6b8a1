"""``xensim run``: a config's workload on each design, then the overhead and the machine;
``--out`` writes the resolved config and the results, ``--html`` one HTML report."""

from __future__ import annotations

import sys

from ._common import (compare_names, compare_option, design_file_option, machine_args,
                      resolve_machine)
from ._html import add_html_argument


def add_parser(subparsers) -> None:
    """Register ``xensim run``."""
    run = subparsers.add_parser("run", help="run a config: its workload on each design, the "
                                            "overhead and the machine (default: configs/default.yaml)")
    machine_args(run, "a YAML config (default: configs/default.yaml, a comparison of the "
                      "five designs on the teaching machine)")
    run.add_argument("--out", metavar="DIR",
                     help="write the resolved config, results.json and results.csv here")
    run.add_argument("--quiet", action="store_true",
                     help="no progress bar (it shows only on a terminal, for runs over ~2 s)")
    compare_option(run, "the config")
    add_html_argument(run)
    design_file_option(run)
    run.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    """The machine's overhead and summary; with a workload (or a compare), first the
    simulation of every design. Exit status 1 if a design crashed (a bug).
    A reproducer written by ``xensim fuzz`` is replayed with every check (1: it still fails)."""
    from ..config import dump_resolved
    from ..output import (EXIT_INTERRUPTED, Progress, check_file, out_dir, render, sigint_deferred,
                          to_json, write_atomic, writing)
    from ..sim import Interrupted, RunResult, run_comparison
    from ..xen import Machine
    from ._html import write_html
    cfg, memmap = resolve_machine(args)
    if args.compare is not None:                 # after the config's design files are loaded
        cfg.compare = compare_names(args.compare)
    if cfg.workload is not None and cfg.workload.ops is not None:    # a fuzzer's reproducer
        from ..fuzz import replay_config
        result = replay_config(cfg, memmap)
        print(result)
        return 1 if result.violation else 0
    machine = Machine(memmap, cfg.machine.pdx)
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
