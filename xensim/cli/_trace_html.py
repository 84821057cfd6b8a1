"""``xensim trace CONFIG --html FILE``: the trace as a page to step through (the page is
:mod:`xensim.pages`, imported when the command runs). The output path was checked
before the run (``cmd_trace``); a Ctrl-C writes the steps recorded so far."""

from __future__ import annotations

import sys

from ..mem import format_size
from ..output import exit_status_interrupted


def cmd_trace_html(args, cfg, memmap) -> int:
    """Record the run, write the page; exit 0, 1 if the design crashed, 130 / 143 if
    interrupted (the page is written all the same)."""
    from ..pages import designs_at, record_trace, write_trace_page
    from ..sim import DesignCrashed
    try:
        run = record_trace(cfg, memmap, args.design, args.limit, args.frame, args.superpage)
    except DesignCrashed as e:                # in the set-up: nothing traced yet
        print(f"xensim: {e}", file=sys.stderr)
        return 1
    if args.designs_at is not None and not run.interrupted:
        try:
            run.designs = designs_at(cfg, memmap, run, args.designs_at)
        except KeyboardInterrupt:
            run.interrupted = True
    size = write_trace_page(args.html, run)
    rec = run.recorder
    print(f"wrote {args.html}: {run.steps:,} steps ({rec.calls:,} hypercalls of "
          f"{rec.ops:,} operations), {format_size(size)}")
    if rec.cut is not None:
        print(f"xensim: trace: the page was cut at {run.steps:,} steps; --limit N, --frame MFN "
              "or --superpage MFN narrow it", file=sys.stderr)
    if run.interrupted:
        print(f"xensim: interrupted after {rec.ops:,} operations (the page has the steps "
              "until then)", file=sys.stderr)
        return exit_status_interrupted()
    if run.crash is not None:
        print(f"xensim: {run.crash}", file=sys.stderr)
        return 1
    return 0
