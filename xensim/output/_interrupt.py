"""Ctrl-C: commands stop with one line on stderr and exit status 130 (128 + SIGINT).

A long command catches KeyboardInterrupt where it knows what it has done so far
(``xensim run``: the designs completed; ``fuzz`` and ``explore``: a partial
summary), and :func:`sigint_deferred` holds a Ctrl-C back while results are
written, so that a set of files is written whole or not at all.
"""

from __future__ import annotations

import contextlib
import signal
import threading

#: the exit status of a command stopped by Ctrl-C (the shell's 128 + SIGINT)
EXIT_INTERRUPTED = 128 + signal.SIGINT


@contextlib.contextmanager
def sigint_deferred():
    """Run the block with SIGINT held back; a Ctrl-C during it raises KeyboardInterrupt
    when it ends (the block itself runs to the end)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got:
        raise KeyboardInterrupt
