"""``xensim sweep``: one comparison over a grid of configs, on local worker processes
or a Dask cluster; results.csv, each point's files, resumable."""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import compare_names, compare_option, engine_options


def add_parser(subparsers) -> None:
    """Register ``xensim sweep``."""
    p = subparsers.add_parser(
        "sweep", help="run a sweep: a base config over a grid of keys and values, every "
                      "point on each design (configs/sweeps/)")
    p.add_argument("sweep", metavar="SWEEP.yaml", help="the sweep file (base:, grid:, compare:)")
    p.add_argument("--out", metavar="DIR",
                   help="where the points and results.csv go (default: ./NAME-sweep for "
                        "NAME.yaml); points already complete there are not run again")
    engine_options(p, "worker processes (default: the number of cores; 1: in this process); "
                      "with --scheduler local-dask, the LocalCluster's workers",
                   "run on Dask: local-dask (a LocalCluster) or tcp://HOST:8786 (a running "
                   "cluster)")
    compare_option(p, "the sweep's (and its base config's)")
    p.add_argument("--force", action="store_true", help="run every point again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    """Run the sweep; exit 1 if a point failed or a design crashed, 2 if a point's
    config proved bad when run (a domain that does not fit), 130 on Ctrl-C."""
    from ..engines import make_engine
    from ..output import EXIT_INTERRUPTED, Progress, out_dir, render
    from ..sweep import SweepInterrupted, describe_values, load_sweep, run_sweep
    sweep = load_sweep(args.sweep)
    if args.compare is not None:                 # after the sweep's design files are loaded
        sweep = load_sweep(args.sweep, compare=compare_names(args.compare))
    out = out_dir(args.out or f"{Path(args.sweep).stem}-sweep", "--out")
    progress = Progress.off() if args.quiet else Progress()
    with make_engine(args.workers, args.scheduler) as engine:
        try:
            result = run_sweep(sweep, out, engine, args.force, progress)
        except SweepInterrupted as e:
            done = e.result
            sys.stdout.write(render(done, "table"))
            complete = done.count("ran") + done.count("resumed")
            print(f"xensim: interrupted after {complete} of {len(done.points)} points (kept in "
                  f"{out / 'points'}; run the sweep again to resume)", file=sys.stderr)
            return EXIT_INTERRUPTED
    sys.stdout.write(render(result, "table"))
    for p in result.failed:
        kind = "error" if p.state == "config-error" else "point failed"
        print(f"xensim: {kind}: {args.sweep}: point {p.id} ({describe_values(p.values)}): "
              f"{p.error}", file=sys.stderr)
    for p, design in result.crashed:
        print(f"xensim: point {p.id} ({describe_values(p.values)}): design {design} crashed",
              file=sys.stderr)
    if any(p.state == "config-error" for p in result.failed):
        return 2
    return 1 if result.failed or result.crashed else 0
