"""A set of integers kept as sorted, disjoint, half-open runs (no object per member).

A domain's frames are held this way: a 64 GiB guest populated with 2 MiB
extents is a handful of runs, not sixteen million Python ints.
"""

from __future__ import annotations

from typing import Iterator

from sortedcontainers import SortedDict


class RangeSet:
    def __init__(self, runs: list[tuple[int, int]] | None = None):
        self._runs = SortedDict()        # start -> end, disjoint, non-adjacent
        self._total = 0
        #: how many times :meth:`add` or :meth:`remove` changed the set (an observer
        #: that copied :meth:`runs` reads them again only when this moved)
        self.version = 0
        for s, e in runs or ():
            self.add(s, e)

    def __len__(self) -> int:
        return self._total

    def __bool__(self) -> bool:
        return self._total > 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(self._runs.items()))

    def __eq__(self, other) -> bool:
        return isinstance(other, RangeSet) and list(self._runs.items()) == list(other._runs.items())

    def __repr__(self) -> str:
        return "RangeSet(" + ", ".join(f"[{s:#x}, {e:#x})" for s, e in self._runs.items()) + ")"

    def runs(self) -> list[tuple[int, int]]:
        # the plain dict's items, sorted: several times faster than the SortedDict's view
        return sorted(dict.items(self._runs))

    def _run_at(self, x: int) -> tuple[int, int] | None:
        i = self._runs.bisect_right(x) - 1
        if i < 0:
            return None
        s = self._runs.keys()[i]
        e = self._runs[s]
        return (s, e) if x < e else None

    def __contains__(self, x: int) -> bool:
        return self._run_at(x) is not None

    def covers(self, start: int, end: int) -> bool:
        """True when every member of [start, end) is in the set."""
        r = self._run_at(start)
        return r is not None and end <= r[1]

    def overlaps(self, start: int, end: int) -> bool:
        i = self._runs.bisect_left(end) - 1
        if i < 0:
            return False
        s = self._runs.keys()[i]
        return self._runs[s] > start

    def add(self, start: int, end: int) -> None:
        """Add [start, end); it must not overlap what is there (a double add is a bug)."""
        if start >= end:
            return
        if self.overlaps(start, end):
            raise ValueError(f"[{start:#x}, {end:#x}) overlaps {self!r}")
        self._total += end - start
        i = self._runs.bisect_left(start)
        if i > 0:
            ps = self._runs.keys()[i - 1]
            if self._runs[ps] == start:                # merge with the run before
                start = ps
                del self._runs[ps]
        if end in self._runs:                          # merge with the run after
            end = self._runs.pop(end)
        self._runs[start] = end
        self.version += 1

    def remove(self, start: int, end: int) -> None:
        """Remove [start, end); every member must be present."""
        if start >= end:
            return
        r = self._run_at(start)
        if r is None or end > r[1]:
            raise ValueError(f"[{start:#x}, {end:#x}) is not inside {self!r}")
        s, e = r
        del self._runs[s]
        if s < start:
            self._runs[s] = start
        if end < e:
            self._runs[end] = e
        self._total -= end - start
        self.version += 1
