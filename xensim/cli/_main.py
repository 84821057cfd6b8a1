"""The ``xensim`` command line: the parser and the dispatcher.

Each subcommand is one module of this package, ``xensim.cli._<name>``, with
``add_parser(subparsers)`` that registers it (help, options, defaults) and sets
``func`` to the function that runs it. The modules import anything heavy inside
that function, so that ``xensim presets`` loads neither greenlet nor matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .._errors import ConfigError
from ..output import EXIT_INTERRUPTED, exit_status_interrupted, stop_signals
from ._common import load_design_file_options

#: the subcommands, in the order ``xensim --help`` lists them
SUBCOMMANDS = ("run", "sweep", "overhead", "machine", "presets", "designs", "explore", "fuzz",
               "trace", "inspect", "plot")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xensim",
        description="Simulate Xen's x86 memory manager: page_info reference counting, "
                    "sparse memory maps and the superpage refcount designs.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__package__}._{name}").add_parser(sub)
    p.set_defaults(subparsers=sub.choices)      # an unknown option: the subcommand's usage
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names -> its exit status. SIGTERM stops a command as
    Ctrl-C does (the summary of what was done, one line), with 143 instead of 130."""
    with stop_signals():
        status = _main(argv)
    return status


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:                             # the subcommand's usage, not the top level's
            args.subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        load_design_file_options(args)        # before any config: it names their designs
        status = args.func(args)
    except ConfigError as e:
        print(f"xensim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:                 # Ctrl-C where no partial summary is due
        print("xensim: interrupted", file=sys.stderr)
        return exit_status_interrupted()
    except BrokenPipeError:                   # output piped into head and the like
        return 0
    except OSError as e:                      # e.g. --out onto a file, an unwritable directory
        where = f"{e.filename}: " if e.filename else ""
        print(f"xensim: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    # a command stopped by a signal returns EXIT_INTERRUPTED: 143 if it was SIGTERM
    return exit_status_interrupted() if status == EXIT_INTERRUPTED else status


if __name__ == "__main__":
    sys.exit(main())
