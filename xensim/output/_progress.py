"""A plain-text progress bar on stderr, for runs longer than a couple of seconds.

It stays silent when the stream is not a terminal (pipes, files, CI logs, the
tests) or with ``--quiet``, and for runs that end within ``delay`` seconds.
It redraws at most ``1 / interval`` times a second and clears its line when
done, so nothing of it is left between the results. The line shows the work
done of the total, the time so far and an estimate of the time left (ETA, at
the average rate so far), e.g.
``xen-4.1 [#####.........................] 2,100/12,000 ops  18%  9.8 s, ETA 46 s``.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class Progress:
    """``start(label, total)``, then ``update(done)`` as often as you like, then ``close()``."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None,
                 delay: float = 2.0, interval: float = 0.1, width: int = 30,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            enabled = _isatty(self.stream)
        self.enabled = enabled
        self.delay, self.interval, self.width, self.clock = delay, interval, width, clock
        self.t0 = clock()
        self.label = ""
        self.total = 0
        self.unit = "ops"
        #: the last ``done`` given to update (kept when the bar is off)
        self.done = 0
        self._next = self.t0 + delay
        self._shown = 0                              # width of the line on screen

    @classmethod
    def off(cls) -> "Progress":
        return cls(enabled=False)

    def start(self, label: str, total: int, unit: str = "ops") -> None:
        self.label, self.total, self.unit = label, total, unit

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.interval
        self._draw(done, now)

    def _draw(self, done: int, now: float) -> None:
        total = max(self.total, 1)
        frac = min(done / total, 1.0)
        fill = int(frac * self.width)
        spent = now - self.t0
        eta = spent * (total - done) / done if 0 < done < total else 0.0
        line = (f"{self.label} [{'#' * fill}{'.' * (self.width - fill)}] "
                f"{done:,}/{self.total:,} {self.unit} {frac * 100:3.0f}%  {spent:.1f} s"
                + (f", ETA {duration(eta)}" if done else ""))
        pad = " " * max(self._shown - len(line), 0)
        self._shown = max(self._shown, len(line))    # a Ctrl-C during the write: still cleared
        self.stream.write("\r" + line + pad)
        self.stream.flush()
        self._shown = len(line)

    def close(self) -> None:
        """Clear the bar's line (if one was drawn)."""
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0


def duration(seconds: float) -> str:
    """``7 s``, ``3 min 05 s``, ``2 h 07 min``."""
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
