"""``xensim trace``: the subcommand's arguments and its command (the tracer is
:mod:`xensim.teach`, imported when the command runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._errors import ConfigError
from ._common import design_file_option

#: xensim.teach's LEVELS and TRACE_FORMATS (repeated here: the parser is built without
#: importing xensim.teach; tests/teach/test_trace.py checks that they agree)
LEVELS = ("hypercall", "superpage", "frame")
TRACE_FORMATS = ("text", "md")


def add_parser(subparsers) -> None:
    """``xensim trace``: add the subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "trace", help="narrate every hypercall of a config's workload: the call decoded, "
                      "entries validated, references taken and dropped, the result",
        description="Run a config's workload on one design (the first of its compare list, "
                    "or --design) and narrate each hypercall. Levels: hypercall (the call and "
                    "its result), superpage (+ entries validated, superpage words, slow or fast "
                    "path), frame (+ every count_info / type_info change).")
    p.add_argument("config", help="a YAML config with a workload (a small one: every hypercall "
                                  "is printed)")
    p.add_argument("--level", choices=LEVELS, default=None, help="how much to show "
                   "(default: superpage)")
    p.add_argument("--all-frames", action="store_true",
                   help="list every frame of a range operation instead of one summary line")
    p.add_argument("--format", choices=TRACE_FORMATS, default=None,
                   help="text or Markdown (default: text)")
    p.add_argument("--design", help="the superpage design (default: the config's first)")
    design_file_option(p)
    p.add_argument("--limit", type=whole_number(1), metavar="N",
                   help="trace only the first N operations of the workload")
    p.add_argument("--html", metavar="FILE",
                   help="write the trace as one self-contained page to step through (no "
                        "network; open it in a browser) instead of printing it; at most "
                        "10,000 steps (hypercalls) and about 9 MB")
    p.add_argument("--frame", type=whole_number(0), metavar="MFN",
                   help="with --html: only the steps that touch this frame")
    p.add_argument("--superpage", metavar="X",
                   help="with --html: only the steps that touch one superpage: an MFN in it "
                        "(0x4200 or 16896), or DOMAIN:INDEX (superpage INDEX of DOMAIN, as "
                        "populated by the set-up)")
    p.add_argument("--designs-at", type=whole_number(1), metavar="N",
                   help="with --html: the designs side by side after step N's operation "
                        "(its superpage's words and 512 frames' counts on each design)")
    p.set_defaults(func=cmd_trace)


def whole_number(minimum: int):
    """An argument type: a whole number (``12``, ``0x10``) of at least ``minimum`` (0 or 1)."""
    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError("must be at least 1" if minimum else "must be 0 or more")
        return v
    return parse


#: a trace on a terminal longer than this many lines says once, on stderr, how to narrow it
LONG_TRACE_LINES = 5000


def cmd_trace(args) -> int:
    """Write the trace as the operations run. Exit status 0; 1 if the run crashed
    (one line on stderr, as every command reports a crash) or a change went untraced."""
    from ..sim import DesignCrashed
    from ..teach import TraceWriter, load, trace
    if not Path(args.config).exists():
        raise ConfigError(args.config, None, "no such file")
    if args.html is None:
        for opt in ("frame", "superpage", "designs_at"):
            if getattr(args, opt) is not None:
                raise ConfigError(None, f"--{opt.replace('_', '-')}", "needs --html FILE")
    else:
        # the page records every step at frame level, its lines kept whole
        for opt in ("level", "format", "all_frames"):
            if getattr(args, opt) not in (None, False):
                raise ConfigError(None, f"--{opt.replace('_', '-')}",
                                  "is for the printed trace; the --html page holds every level")
        from ..output import check_file
        check_file(args.html, "--html")
    if args.frame is not None and args.superpage is not None:
        raise ConfigError(None, "--frame", "--frame and --superpage cannot be given together")
    cfg, memmap = load(args.config)
    if args.superpage is not None:
        args.superpage = _superpage_option(args.superpage, cfg)
    if args.html is not None:
        from ._trace_html import cmd_trace_html
        return cmd_trace_html(args, cfg, memmap)
    args.level = args.level or "superpage"
    writer = TraceWriter(args.format or "text", _stdout_writer(args))
    try:
        res = trace(cfg, memmap, args.design, args.level, args.all_frames, args.limit, writer)
    except DesignCrashed as e:                # in the set-up: nothing traced yet
        print(f"xensim: {e}", file=sys.stderr)
        return 1
    if res.crash is not None:
        sys.stdout.flush()
        print(f"xensim: {res.crash}", file=sys.stderr)
        return 1
    return 1 if res.untraced else 0


def _superpage_option(text: str, cfg) -> int | str:
    """``--superpage``: an MFN (a number), or ``DOMAIN:INDEX`` (kept as text: resolved once
    the set-up has populated the domain) naming one of the config's domains."""
    name, colon, index = text.rpartition(":")
    if not colon:
        try:
            return whole_number(0)(text)
        except argparse.ArgumentTypeError as e:
            raise ConfigError(None, "--superpage", str(e)) from None
    names = [n for n, _ in cfg.domain_specs()]
    if name not in names:
        raise ConfigError(None, "--superpage", f"no domain named {name!r}; the domains are: "
                                               f"{', '.join(names)}")
    try:
        if int(index, 0) < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(None, "--superpage", f"not a superpage index: {index!r}") from None
    return text


def _stdout_writer(args):
    """Write to stdout; on a terminal, past :data:`LONG_TRACE_LINES` lines, say once
    on stderr how to narrow the trace."""
    told = not sys.stdout.isatty()
    lines = 0

    def write(text: str) -> None:
        nonlocal told, lines
        sys.stdout.write(text)
        lines += text.count("\n")
        if not told and lines > LONG_TRACE_LINES:
            told = True
            sys.stdout.flush()
            level = "" if args.level == "hypercall" else ", --level hypercall (one line a call)"
            print(f"xensim: trace: over {LONG_TRACE_LINES:,} lines; --limit N traces the first N "
                  f"operations only{level}", file=sys.stderr)
    return write
