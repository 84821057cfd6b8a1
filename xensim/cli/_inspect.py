"""``xensim inspect``: the subcommand's arguments and its command (the views are
:mod:`xensim.teach`, imported when the command runs)."""

from __future__ import annotations

import sys
from pathlib import Path

from .._errors import ConfigError
from ._common import design_file_option
from ._trace import whole_number

#: xensim.teach's INSPECT_FORMATS (repeated here: the parser is built without importing
#: xensim.teach; tests/teach/test_inspect.py checks that they agree)
INSPECT_FORMATS = ("text", "md", "json")


def add_parser(subparsers) -> None:
    """``xensim inspect``: add the subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "inspect", help="after a config's workload: decode a frame, a superpage or a domain",
        description="Run a config's workload on one design (as xensim run does, or its first "
                    "--steps operations) and decode one frame (--mfn), superpage (--superpage) "
                    "or domain's page tables (--domain).")
    p.add_argument("config", help="a YAML config with a workload")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--mfn", metavar="X", help="a machine frame number (0x200 or 512)")
    what.add_argument("--superpage", metavar="X",
                      help="a superpage: an MFN in it, or DOMAIN:INDEX (superpage INDEX of DOMAIN)")
    what.add_argument("--domain", metavar="D", help="a domain: its name or domid")
    p.add_argument("--design", help="the superpage design (default: the config's first)")
    design_file_option(p)
    p.add_argument("--steps", type=whole_number(0), metavar="N",
                   help="stop after the first N operations of the workload (default: all)")
    p.add_argument("--calls", type=whole_number(1), metavar="N",
                   help="stop right after the workload's N-th hypercall, even inside an "
                        "operation (a preempted call and its continuations count one each: "
                        "the machine as Xen leaves it in between)")
    p.add_argument("--format", choices=INSPECT_FORMATS, default="text", help="output format")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:
    """Exit status 0; 1 if the run crashed (one line on stderr, as every command
    reports a crash); 2 for a bad option value (``--mfn -1``)."""
    from ..sim import DesignCrashed
    from ..teach import inspect, load, render_inspection
    if not Path(args.config).exists():
        raise ConfigError(args.config, None, "no such file")
    if args.steps is not None and args.calls is not None:
        raise ConfigError(None, "--calls", "--steps and --calls cannot be given together")
    cfg, memmap = load(args.config)
    try:
        report = inspect(cfg, memmap, mfn=args.mfn, superpage=args.superpage,
                         domain=args.domain, design=args.design, steps=args.steps,
                         calls=args.calls)
    except DesignCrashed as e:
        print(f"xensim: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(render_inspection(report, args.format))
    return 0
