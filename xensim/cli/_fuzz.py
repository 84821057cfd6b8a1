"""``xensim fuzz``: the hostile-guest fuzzer's command (docs/fuzzing.md): its arguments,
their checks, and the run: a campaign (in this process, or split over ``--workers`` /
``--scheduler``), its reproducers written with ``--out`` (numbered files or a
directory), the summary. The fuzzer itself (xensim.fuzz) is imported when the command runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import get_args, get_type_hints

from .._errors import ConfigError
from ..config import HypervisorConfig
from ..designs import default_design, design_file_of, design_names
from ..output import write_atomic
from ._common import design_file_option, engine_options

__all__ = ["add_parser", "MIN_DOMAINS", "MAX_DOMAINS", "MAX_EPISODE", "bad_arguments",
           "out_is_dir", "reproducer_path", "run_campaign", "cmd_fuzz", "write_reproducers"]

#: --audit's choices (xensim.fuzz's Setup.audit; the fuzzer is imported only when it runs)
AUDIT_MODES = ("incremental", "full", "both")

#: the Xen releases (the config's hypervisor.version choices)
XEN_VERSIONS = get_args(get_type_hints(HypervisorConfig)["version"])


def add_parser(subparsers) -> None:
    """Register ``xensim fuzz`` on an argparse subparsers object."""
    from ..engines import CONNECT_TIMEOUT
    p = subparsers.add_parser("fuzz", help="hostile-guest fuzzer: random hypercalls, checked after every call",
                              description="Run random valid and invalid hypercalls from several PV "
                                          "guests and check the machine after every call "
                                          "(see docs/fuzzing.md). Exit 0: no violation, 1: "
                                          "violations, 2: bad arguments, 130: interrupted "
                                          "(after the summary of the calls made).")
    p.add_argument("--design", default=default_design(),
                   help=f"superpage design (default {default_design()})")
    design_file_option(p)
    p.add_argument("--calls", type=int, default=10_000, help="calls to make (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--domains", type=int, default=3,
                   help=f"guests at a time, {MIN_DOMAINS}-{MAX_DOMAINS} (default 3)")
    p.add_argument("--vcpus", type=int, default=1,
                   help="vCPUs of each guest, 1-64 (default 1); with several, calls come from "
                        "any of them and the guests load user base pointers "
                        "(MMUEXT_NEW_USER_BASEPTR), valid and hostile")
    p.add_argument("--preempt", type=float, default=0.0, metavar="P",
                   help="the probability that each hypercall_preempt_check() answers true "
                        "(default 0: never): preempted calls are continued at "
                        "once, after other vCPUs' and domains' calls, or never; the points "
                        "are drawn from --seed and written into the reproducers")
    p.add_argument("--version", default="4.8", choices=XEN_VERSIONS,
                   help="Xen release (default 4.8)")
    p.add_argument("--faithful", action="store_true",
                   help="reproduce Xen's known bugs (violations are then expected)")
    p.add_argument("--pdx", default="none", choices=("none", "mask", "offset", "offset-4.21.0"),
                   help="PDX compression (default none)")
    p.add_argument("--grants", action=argparse.BooleanOptionalAction, default=True,
                   help="the guests also grant each other frames and map, unmap and revoke "
                        "grants, from both sides, valid and hostile (default: on)")
    p.add_argument("--audit", default="incremental", choices=AUDIT_MODES,
                   help="the auditor after every call: incremental (what the call changed; "
                        "default), full (every frame) or both (both, and they must agree)")
    p.add_argument("--full-audit-every", type=int, default=1000, metavar="N",
                   help="with --audit incremental, also a full audit every N checks "
                        "(default 1000; 0: at the end of each episode only)")
    p.add_argument("--episode", type=int, default=1000, metavar="N",
                   help=f"calls per fresh machine (default 1000, at most {MAX_EPISODE:,}: an "
                        f"episode's calls are kept for its reproducer)")
    p.add_argument("--no-minimise", action="store_true", help="report violations unminimised")
    p.add_argument("--keep-going", action="store_true",
                   help="go on past a crash, an unchanged/batch failure, a recorded Xen bug or a "
                        "zombie when the machine still audits clean (finds more than the first bug)")
    p.add_argument("--max-findings", type=int, metavar="N",
                   help="stop once N distinct violations were found (and minimised)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (drawn on a terminal only, after ~2 s)")
    engine_options(p, "split the campaign into its seeded episodes over N worker processes "
                      "(default 1: in this process; at most the cores and the episodes, at most "
                      "1,024); the merged result is the same for any N",
                   f"run the episodes on Dask: local-dask (a LocalCluster of --workers workers) "
                   f"or tcp://HOST:8786 (a running cluster: a refused connection fails at once, "
                   f"a host that does not answer after {CONNECT_TIMEOUT:g} s)")
    p.add_argument("--out", metavar="FILE|DIR",
                   help="write the minimal reproducer of each distinct violation: --out "
                        "repro.yaml writes repro-1.yaml, repro-2.yaml, ...; --out DIR/ (a "
                        "directory, or a path ending in /) writes DIR/repro-1.yaml, ... (script "
                        "workloads that `xensim run` replays)")
    p.set_defaults(func=cmd_fuzz)


#: --domains: guests alive at a time (eight of the default set-up fill the machine)
MIN_DOMAINS, MAX_DOMAINS = 1, 8
#: --episode: at most this many calls per machine (a run's workload limit)
MAX_EPISODE = 1_000_000


def bad_arguments(args, names: list[str]) -> list[str]:
    """One message per bad argument of ``xensim fuzz``."""
    from ..engines import check_workers
    bad = []
    if args.design not in names:
        bad.append(f"--design: unknown design {args.design!r}; choose from {', '.join(names)}")
    if not MIN_DOMAINS <= args.domains <= MAX_DOMAINS:
        bad.append(f"--domains: must be {MIN_DOMAINS}-{MAX_DOMAINS}, got {args.domains}")
    if not 1 <= args.vcpus <= 64:
        bad.append(f"--vcpus: must be 1-64, got {args.vcpus}")
    if not 0.0 <= args.preempt <= 1.0:
        bad.append(f"--preempt: must be a probability, 0-1, got {args.preempt:g}")
    if args.calls < 1:
        bad.append(f"--calls: must be at least 1, got {args.calls}")
    if args.episode < 1:
        bad.append(f"--episode: must be at least 1, got {args.episode}")
    elif args.episode > MAX_EPISODE:
        bad.append(f"--episode: must be at most {MAX_EPISODE:,}, got {args.episode:,}")
    if args.full_audit_every < 0:
        bad.append(f"--full-audit-every: must be at least 0, got {args.full_audit_every}")
    if args.max_findings is not None and args.max_findings < 1:
        bad.append(f"--max-findings: must be at least 1, got {args.max_findings}")
    try:
        check_workers(args.workers)
    except ConfigError as e:
        bad.append(str(e))
    return bad


def out_is_dir(out) -> bool:
    """``--out`` names a directory (one that exists, or a path ending in a slash),
    not a file name to number."""
    text = str(out)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def reproducer_path(out, k: int) -> Path:
    """The k-th reproducer's file (1-based): for ``--out FILE``, ``repro.yaml`` ->
    ``repro-1.yaml``, ``repro-2.yaml``, ...; for ``--out DIR``, ``DIR/repro-1.yaml``, ..."""
    if out_is_dir(out):
        return Path(out) / f"repro-{k}.yaml"
    p = Path(out)
    return p.with_name(f"{p.stem}-{k}{p.suffix or '.yaml'}")


def run_campaign(args, setup, tick, status=None):
    """The campaign of ``args``: in this process (``--workers 1``, no ``--scheduler``),
    else its episodes on an engine's workers (xensim.engines; local processes: at most
    the cores and the episodes, a one-line note when that lowers ``--workers``) ->
    (Campaign, the engine's description or None). ``tick(calls)`` and ``status(text)``
    (what is being minimised, None: nothing) for the progress bar."""
    from ..engines import make_engine, pool_size
    from ..fuzz import campaign, keep_going, split_campaign
    kwargs = dict(episode_calls=args.episode, minimise_findings=not args.no_minimise,
                  tolerate=keep_going if args.keep_going else None,
                  max_findings=args.max_findings, tick=tick, status=status)
    episodes = -(-args.calls // args.episode)

    def note(line: str) -> None:
        print(f"xensim: {line}", file=sys.stderr)

    workers = args.workers
    if args.scheduler is None and workers not in (None, 1):
        workers, lowered = pool_size(workers, episodes, "episodes")
        if lowered:
            note(lowered)
    if args.scheduler is None and workers in (None, 1):
        return campaign(setup, args.calls, args.seed, **kwargs), None
    with make_engine(workers, args.scheduler, tasks=episodes, what="episodes",
                     note=note) as engine:
        return split_campaign(engine, setup, args.calls, args.seed, **kwargs), engine.describe()


def cmd_fuzz(args) -> int:
    """``xensim fuzz``: 0 when no violation was found, 1 otherwise (2: bad arguments,
    130: interrupted, after the summary of what was done)."""
    from ..fuzz import Setup, finding_yaml, report
    from ..output import EXIT_INTERRUPTED, Progress, check_file, out_dir
    bad = bad_arguments(args, sorted(design_names()))
    if bad:
        for line in bad:
            print(f"xensim: error: {line}", file=sys.stderr)
        return 2
    own = design_file_of(args.design)             # a design file's: the reproducers carry it
    setup = Setup(design=args.design, version=args.version, faithful=args.faithful,
                  domains=args.domains, vcpus=args.vcpus, pdx=args.pdx,
                  design_files=(own,) if own else (),
                  audit=args.audit, full_audit_every=args.full_audit_every,
                  grants=args.grants, preempt=args.preempt)
    if args.out and out_is_dir(args.out):
        out_dir(args.out, "--out")                 # before the campaign: fail early
    elif args.out:
        check_file(args.out, "--out")
        check_file(reproducer_path(args.out, 1), "--out")
    bar = Progress.off() if args.quiet else Progress()
    bar.start("fuzz", args.calls, unit="calls")

    def status(text: str | None) -> None:         # the bar says what is being minimised
        bar.label = f"fuzz, {text}" if text else "fuzz"
        bar.update(bar.done)

    try:
        c, engine = run_campaign(args, setup, lambda n: bar.update(min(n, args.calls)), status)
    finally:
        bar.close()
    files, failed = write_reproducers(args.out, c) if args.out and c.findings else (None, None)
    sys.stdout.write(report(c, files, engine))
    if failed is not None:                        # the summary and the reproducers first
        for k, (path, f) in enumerate(zip(files, c.findings.values()), 1):
            if not isinstance(path, Path):
                sys.stdout.write(f"\n# reproducer {k} ({path})\n{finding_yaml(c, f)}")
        sys.stdout.flush()
        raise failed
    if args.out and not c.findings:
        sys.stdout.write(f"no violation: nothing written to {args.out}\n")
    if c.interrupted:
        sys.stdout.flush()
        print(f"xensim: interrupted after {c.calls:,} calls", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if c.findings else 0


def write_reproducers(out, c) -> tuple[list, ConfigError | None]:
    """Write each finding's reproducer (``--out``), each file whole or not at all ->
    (for each finding its Path, or "not written" when the writes stopped before it, the
    error that stopped them as a ConfigError or None)."""
    from ..fuzz import finding_yaml
    from ..output import sigint_deferred, writing
    files: list = ["not written"] * len(c.findings)
    try:
        with sigint_deferred():                   # each reproducer whole, or not at all
            for k, f in enumerate(c.findings.values()):
                path = reproducer_path(out, k + 1)
                with writing(path, "--out"):
                    write_atomic(path, finding_yaml(c, f))
                files[k] = path
    except ConfigError as e:
        return files, e
    return files, None
