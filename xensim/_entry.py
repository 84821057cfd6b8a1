"""The first moments of the command line: while ``python -m xensim`` or the ``xensim``
script loads its modules (numpy and the rest, a fraction of a second), a Ctrl-C or
SIGTERM ends it with one line (``xensim: interrupted``) and 130 or 143, no traceback.

``xensim/__init__.py`` imports this module first. It changes nothing when xensim is
imported as a library (the interpreter's program is not xensim's command line); the
command line's ``main`` then runs under ``xensim.output.stop_signals``, which replaces
these handlers for the command's run.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["is_command_line"]

#: interpreter options that take the next argument as their value
_WITH_VALUE = ("-X", "-W", "--check-hash-based-pycs")


def is_command_line(argv: list[str] | None = None) -> bool:
    """Is the interpreter's program xensim's command line (``python [opts] -m xensim``,
    or the ``xensim`` script)? ``argv``: the interpreter's own (``sys.orig_argv``)."""
    argv = list(getattr(sys, "orig_argv", []) if argv is None else argv)
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "-m":
            return argv[i + 1:i + 2] == ["xensim"]
        if a.startswith("-m"):
            return a[2:] == "xensim"
        if a in _WITH_VALUE:
            i += 2
            continue
        if a == "-c" or a == "-":
            return False
        if not a.startswith("-"):
            return os.path.basename(a) == "xensim"
        i += 1
    return False


def _quiet_exit(signum, frame) -> None:
    print("xensim: interrupted", file=sys.stderr)
    raise SystemExit(128 + signum)


if is_command_line():
    for _s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_s, _quiet_exit)
