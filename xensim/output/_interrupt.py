"""Ctrl-C and SIGTERM: commands stop with one line on stderr and exit status 130
(128 + SIGINT) or 143 (128 + SIGTERM).

The command line runs under :func:`stop_signals`: SIGTERM, like SIGINT, raises
KeyboardInterrupt in the main thread, and the signal that came is remembered, so a
command stopped either way prints what it has done so far and the CLI's exit status
is :func:`exit_status_interrupted`. A long command catches KeyboardInterrupt where it
knows what it has done so far (``xensim run``: the designs completed; ``fuzz`` and
``explore``: a partial summary), and :func:`sigint_deferred` holds both signals
back while results are written, so that a set of files is written whole or not at all.

Code that reports any other exception as a finding (a design's crash, a fuzz or explore
violation) first calls :func:`keep_interrupt` with a :func:`stop_mark` taken before the
work: a library may turn the KeyboardInterrupt raised inside it into an exception of its
own (numpy does, while comparing structured arrays), and a Ctrl-C must not become a crash.
"""

from __future__ import annotations

import contextlib
import signal
import threading

#: the exit status of a command stopped by Ctrl-C (the shell's 128 + SIGINT)
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: the exit status of a command stopped by SIGTERM (128 + SIGTERM)
EXIT_TERMINATED = 128 + signal.SIGTERM

#: the signals that stop a command the way Ctrl-C does
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: the last stop signal received under stop_signals or sigint_deferred (None: none yet)
_last: list[int | None] = [None]
#: how many stop signals came so far, handled or held (for stop_mark and keep_interrupt)
_received = [0]


def _stop(signum, frame) -> None:
    _last[0] = signum
    _received[0] += 1
    raise KeyboardInterrupt


def stop_mark() -> int:
    """A mark to pass to :func:`keep_interrupt`: the stop signals received until now."""
    return _received[0]


def keep_interrupt(mark: int) -> None:
    """Raise KeyboardInterrupt if SIGINT or SIGTERM came since ``mark``: called where an
    exception is about to be reported as a finding, which is then what the interrupt
    became on its way out (it stays the KeyboardInterrupt's context)."""
    if _received[0] != mark:
        raise KeyboardInterrupt


def exit_status_interrupted() -> int:
    """130 after Ctrl-C (or no signal at all: a KeyboardInterrupt raised otherwise),
    143 after SIGTERM: 128 + the signal that stopped the command."""
    return 128 + (_last[0] or signal.SIGINT)


@contextlib.contextmanager
def stop_signals():
    """Run the block with SIGINT and SIGTERM raising KeyboardInterrupt (and remembered
    for :func:`exit_status_interrupted`); the handlers before it are put back at its end.
    Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _last[0] = None
    old = {s: signal.signal(s, _stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_held():
    """Run the block with SIGINT and SIGTERM recorded, not handled: it gets the list they
    are appended to, in the order they came; the handlers before it are back at its end.
    Outside the main thread (where signals are not delivered) it holds nothing."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    def hold(signum, frame) -> None:
        _received[0] += 1
        got.append(signum)

    old = {s: signal.signal(s, hold) for s in STOP_SIGNALS}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def sigint_deferred():
    """Run the block with SIGINT and SIGTERM held back; either during it raises
    KeyboardInterrupt when it ends (the block itself runs to the end)."""
    with signals_held() as got:
        yield
    if got:
        _last[0] = got[-1]
        raise KeyboardInterrupt

