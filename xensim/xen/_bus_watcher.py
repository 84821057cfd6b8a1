"""What the machine wrote, as its event bus tells it: :class:`BusWatcher`, the base of
the observers that check after each call what the call wrote (the incremental auditor,
the fuzzer's undo journal).

A frame's words are written by the frame table's setters and slices
(``frames_written(pdx, n)``), by the range forms of the reference primitives
(``range_get`` / ``range_put``: frames [first, first+n)) and by the heap's taking back of
freed frames (``pages_freed``). ``word_changed`` is not listened to: every scalar word
change is a ``frames_written`` too, and a ``word_changed`` subscriber turns off the
accelerators that hide it (xensim.xen.accel).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BusWatcher", "FRAME_EVENTS"]

#: the events that name frames whose words were written
FRAME_EVENTS = ("frames_written", "range_get", "range_put", "pages_freed")


class BusWatcher:
    """Subscribes ``_on_<event>`` for each event of ``WATCHED`` (a subclass's) to machine
    ``m``'s bus; the frame events' handlers collect the PDXs written into ``_pages``
    (single frames) and ``_ranges`` ((first, n) runs), which the subclass clears."""

    WATCHED: tuple[str, ...] = FRAME_EVENTS

    def __init__(self, m):
        self.m = m
        self._subs: list = []
        self._pages: set[int] = set()
        self._ranges: list[tuple[int, int]] = []

    def attach(self) -> None:
        """Subscribe to the machine's events (again after :meth:`detach`)."""
        if not self._subs:
            ev = self.m.events
            self._subs = [ev.subscribe(name, getattr(self, "_on_" + name)) for name in self.WATCHED]

    def detach(self) -> None:
        """Unsubscribe (e.g. around a deep copy of the machine)."""
        for sub in self._subs:
            self.m.events.unsubscribe(sub)
        self._subs = []

    def _on_frames_written(self, pdx, n):
        if n == 1:
            self._pages.add(pdx)
        else:
            self._ranges.append((pdx, n))

    def _on_range_get(self, first, n, d, type):
        self._ranges.append((first, n))

    def _on_range_put(self, first, n, typed):
        self._ranges.append((first, n))

    def _on_pages_freed(self, pages, owners):
        self._pages.update(np.asarray(pages).tolist())
