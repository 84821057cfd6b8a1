"""``xensim explore``: explore the interleavings of a scenario's CPUs (xensim.explore),
or replay one schedule. The explorer (and greenlet) is imported only when it runs.
"""

from __future__ import annotations

import sys

from .._errors import ConfigError
from ..config import MAX_STEPS, load_scenario
from ..designs import design_class, design_names
from ..output import EXIT_INTERRUPTED, EXIT_TERMINATED, Progress, exit_status_interrupted
from ._common import design_file_option

__all__ = ["add_parser", "cmd_explore"]


def add_parser(sub) -> None:
    """Register ``xensim explore`` on the subparsers ``sub``."""
    p = sub.add_parser("explore", help="explore interleavings of a concurrent scenario",
                       description="Run a scenario's CPUs interleaved one atomic step at a time "
                                   "and look for races; exit 0: no violation, 1: a violation, "
                                   "2: bad input, 130: interrupted (the schedules finished so "
                                   "far are summarised).")
    p.add_argument("scenario", help="a scenario YAML (see scenarios/)")
    p.add_argument("--design", help="superpage design (default: the scenario's design:)")
    design_file_option(p)
    p.add_argument("--scheduler", choices=("dfs", "random", "pct", "round-robin"), default="dfs",
                   help="dfs (default): every schedule within the preemption bound, depth "
                        "first; random, pct: --max-schedules sampled schedules from --seed; "
                        "round-robin: one schedule")
    p.add_argument("--preemption-bound", type=int, default=None, metavar="N",
                   help="dfs: at most N preemptions per schedule (a switch away from a CPU "
                        "that could go on; default the scenario's preemption_bound:, else 2; "
                        "at least 0)")
    p.add_argument("--hypercall-preemptions", type=int, default=None, metavar="N",
                   help="at most N hypercall_preempt_check() answered pending per schedule: "
                        "each check a CPU reaches is then a choice (no / pending, 0p in a "
                        "schedule), the preempted hypercall continued by its guest kernel "
                        "(default: the scenario's hypercall_preemptions:, 0; Xen 4.1-4.8)")
    p.add_argument("--max-schedules", type=int, default=10_000, metavar="M",
                   help="stop after M schedules (default 10000, at least 1); random and pct "
                        "run M")
    p.add_argument("--seed", type=int, default=0, help="random and pct: the seed (default 0)")
    p.add_argument("--all", action="store_true",
                   help="keep going after the first violation (default: stop there)")
    p.add_argument("--replay", metavar="SCHEDULE",
                   help=f"rerun one schedule exactly: CPU ids, *n repeats (0,1*1030,0; "
                        f"at most {MAX_STEPS:,} steps, the step bound)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (it shows only on a terminal, for searches over ~2 s)")
    p.add_argument("--full-trace", action="store_true",
                   help="print every step of the trace (default: runs of one CPU's frame "
                        "steps summarised)")
    p.add_argument("--html", metavar="FILE",
                   help="write the first violation's schedule (or the --replay schedule) as "
                        "one self-contained page: a lane per CPU, each atomic step a box, "
                        "the shared words beneath, step by step")
    p.set_defaults(func=cmd_explore)


def _bad_options(args) -> list[str]:
    bad = []
    if args.preemption_bound is not None and args.preemption_bound < 0:
        bad.append(f"--preemption-bound: must be 0 or more, got {args.preemption_bound}")
    if args.hypercall_preemptions is not None and args.hypercall_preemptions < 0:
        bad.append(f"--hypercall-preemptions: must be 0 or more, got {args.hypercall_preemptions}")
    if args.max_schedules < 1:
        bad.append(f"--max-schedules: must be at least 1, got {args.max_schedules}")
    return bad


def _search_note(res, args, interrupted: bool) -> str:
    if interrupted:
        by = "SIGTERM" if exit_status_interrupted() == EXIT_TERMINATED else "Ctrl-C"
        return f"search interrupted ({by}): the schedules finished so far"
    if res.first is not None and not args.all:
        return "search stopped at the first violation (--all goes on)"
    if args.scheduler == "round-robin":
        return "one round-robin schedule (not a search)"
    if args.scheduler != "dfs":
        return f"{res.schedules} sampled schedules (not a complete search)"
    if not res.complete:
        return "search incomplete (--max-schedules reached)"
    return f"search complete within preemption bound {args.preemption_bound}"


def _html_page(args, sc, design: str, schedule: list[int]) -> None:
    """--html: the schedule replayed and written as a page (xensim.pages)."""
    if args.html is None:
        return
    from ..mem import format_size
    from ..pages import record_race, write_race_page
    size = write_race_page(args.html, record_race(sc, schedule, design,
                                                  args.hypercall_preemptions))
    sys.stdout.write(f"wrote {args.html}: {len(schedule):,} steps, {format_size(size)}\n")


def _hypercall_bound(args, sc) -> int:
    """The hypercall preemption bound in force: the option's, else the scenario's."""
    return sc.hypercall_preemptions if args.hypercall_preemptions is None else args.hypercall_preemptions


def cmd_explore(args) -> int:
    """Run ``xensim explore``; the exit code (0: no violation, 1: one, 2: bad input, 130)."""
    from ..explore import (Interrupted, explore, format_schedule, lost_cas, parse_schedule,
                           replay, summarise_trace)
    bad = _bad_options(args)
    if bad:
        for line in bad:
            print(f"xensim: error: {line}", file=sys.stderr)
        return 2
    if args.html is not None:
        from ..output import check_file
        check_file(args.html, "--html")
    sc = load_scenario(args.scenario)
    if args.preemption_bound is None:
        args.preemption_bound = 2 if sc.preemption_bound is None else sc.preemption_bound
    design = args.design or sc.design
    if design not in design_names():
        raise ConfigError(None, "--design", f"unknown design {design!r}; "
                                            f"choose from {', '.join(sorted(design_names()))}")
    w = sys.stdout.write
    if args.replay is not None:
        ex, v = replay(sc, parse_schedule(args.replay, cpus=len(sc.cpus)), design,
                       args.hypercall_preemptions)
        w(f"replayed {len(ex.schedule)} steps of {sc.name} on {design}\n")
        w(f"results per CPU: {getattr(ex.world, 'results', {})}\n")
        trace = ex.trace if args.full_trace else summarise_trace(ex.trace)
        w("".join(f"  {t}\n" for t in trace))
        w("".join(f"lost cmpxchg: {t}\n" for t in lost_cas(ex.trace)))
        w(f"violation: {v.message}\n" if v else "no violation\n")
        _html_page(args, sc, design, ex.schedule)
        return 1 if v else 0
    interrupted = False
    bar = Progress.off() if args.quiet else Progress()   # on a terminal, searches over ~2 s
    total = 1 if args.scheduler == "round-robin" else args.max_schedules
    bar.start(f"{sc.name} on {design}", total,
              unit="schedules" if args.scheduler in ("random", "pct") else "schedules (at most)")
    try:
        res = explore(sc, design, args.scheduler, args.preemption_bound, args.max_schedules,
                      args.seed, not args.all, bar, args.hypercall_preemptions)
    except Interrupted as e:
        res, interrupted = e.result, True
    from ..xen import release_label
    made = ("" if sc.version.pv_superpages else
            f", {release_label(sc.version, design_class(design).supports_pse, design)}")
    w(f"scenario {sc.name} ({sc.description}) on {design}{made}"
      f"{' [BUGGY design]' if design_class(design).buggy else ''}, scheduler {args.scheduler}"
      + (f", preemption bound {args.preemption_bound}" if args.scheduler == "dfs" else "")
      + (f", hypercall preemptions {hp}" if (hp := _hypercall_bound(args, sc)) else "") + "\n")
    w(f"schedules explored: {res.schedules}" + (f" (+{res.pruned} cut short as equivalent)" if res.pruned else "")
      + f", steps: {res.steps:,}, {res.seconds:.2f} s ({res.steps / max(res.seconds, 1e-9):,.0f} steps/s)"
      + f", {_search_note(res, args, interrupted)}\n")
    w(f"violations: {res.violations}\n")
    for text, n in res.refused.items():
        w(f"refused: {text}, in {n} of {res.schedules} "
          f"schedule{'s' * (res.schedules != 1)}\n")
    if res.first:
        v = res.first
        w(f"first violation: {v.message}\n")
        for t in lost_cas(v.trace):
            w(f"lost cmpxchg: {t}\n")
        w(f"schedule ({len(v.schedule)} step{'s' * (len(v.schedule) != 1)}): {format_schedule(v.schedule)}\n")
        w("trace:\n")
        trace = v.trace if args.full_trace else summarise_trace(v.trace)
        w("".join(f"  {t}\n" for t in trace))
        files = "".join(f" --design-file {f}" for f in args.design_files)
        if args.hypercall_preemptions is not None:
            files += f" --hypercall-preemptions {args.hypercall_preemptions}"
        w(f"replay: xensim explore {args.scenario}{files} --design {design} --replay "
          f"{format_schedule(v.schedule)}\n")
        _html_page(args, sc, design, v.schedule)
    elif args.html is not None:
        print(f"xensim: explore: no violation, so no page written to {args.html} (--replay "
              "SCHEDULE draws any schedule)", file=sys.stderr)
    if interrupted:
        sys.stdout.flush()
        print(f"xensim: interrupted after {res.schedules:,} schedules", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if res.first else 0
