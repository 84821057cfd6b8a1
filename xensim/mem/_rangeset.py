"""A set of integers kept as sorted, disjoint, half-open runs (no object per member).

A domain's frames are held this way: a 64 GiB guest populated with 2 MiB
extents is a handful of runs, not sixteen million Python ints. The runs are two
plain sorted lists (starts, ends) searched with ``bisect``: a domain has at most
thousands of runs, where a list insertion is a short memmove and a look-up costs
no Python call beyond the bisection.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Iterator

import numpy as np


class RangeSet:
    def __init__(self, runs: list[tuple[int, int]] | None = None):
        self._starts: list[int] = []     # sorted; run i is [_starts[i], _ends[i])
        self._ends: list[int] = []       # disjoint, non-adjacent
        self._total = 0
        #: how many times :meth:`add`, :meth:`remove` or :meth:`restore` changed the set
        #: (an observer that copied :meth:`runs` reads them again only when this moved)
        self.version = 0
        self._snap: tuple = ()                # snapshot() as of version _snap_version
        self._snap_version = 0
        for s, e in runs or ():
            self.add(s, e)

    def __len__(self) -> int:
        return self._total

    def __bool__(self) -> bool:
        return self._total > 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.runs())

    def __eq__(self, other) -> bool:
        return (isinstance(other, RangeSet) and self._starts == other._starts
                and self._ends == other._ends)

    def __repr__(self) -> str:
        return "RangeSet(" + ", ".join(f"[{s:#x}, {e:#x})" for s, e in self.runs()) + ")"

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends))

    def snapshot(self) -> tuple:
        """Its runs as a tuple of (start, end), in order: equal for equal sets; the same
        tuple until the set next changes (:attr:`version`)."""
        if self._snap_version != self.version:
            self._snap = tuple(zip(self._starts, self._ends))
            self._snap_version = self.version
        return self._snap

    def restore(self, runs) -> None:
        """Hold exactly ``runs`` (a :meth:`runs` or :meth:`snapshot` of this set: sorted,
        disjoint, non-adjacent)."""
        self._starts = [s for s, _ in runs]
        self._ends = [e for _, e in runs]
        self._total = sum(e - s for s, e in runs)
        self.version += 1

    def _index_at(self, x: int) -> int:
        """The index of the run holding ``x``, or -1."""
        i = bisect_right(self._starts, x) - 1
        return i if i >= 0 and x < self._ends[i] else -1

    def __contains__(self, x: int) -> bool:
        return self._index_at(x) >= 0

    def members(self, start: int, end: int) -> np.ndarray:
        """Membership of start, start+1, ... end-1, as a bool array."""
        out = np.zeros(max(end - start, 0), dtype=bool)
        starts, ends = self._starts, self._ends
        i = max(bisect_right(starts, start) - 1, 0)
        while i < len(starts) and starts[i] < end:
            lo, hi = max(starts[i], start), min(ends[i], end)
            if lo < hi:
                out[lo - start:hi - start] = True
            i += 1
        return out

    def covers(self, start: int, end: int) -> bool:
        """True when every member of [start, end) is in the set."""
        i = self._index_at(start)
        return i >= 0 and end <= self._ends[i]

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect_left(self._starts, end) - 1
        return i >= 0 and self._ends[i] > start

    def add(self, start: int, end: int) -> None:
        """Add [start, end); it must not overlap what is there (a double add is a bug)."""
        if start >= end:
            return
        if self.overlaps(start, end):
            raise ValueError(f"[{start:#x}, {end:#x}) overlaps {self!r}")
        self._total += end - start
        starts, ends = self._starts, self._ends
        i = bisect_left(starts, start)
        before = i > 0 and ends[i - 1] == start          # merge with the run before
        after = i < len(starts) and starts[i] == end     # merge with the run after
        if before and after:
            ends[i - 1] = ends[i]
            del starts[i], ends[i]
        elif before:
            ends[i - 1] = end
        elif after:
            starts[i] = start
        else:
            starts.insert(i, start)
            ends.insert(i, end)
        self.version += 1

    def remove(self, start: int, end: int) -> None:
        """Remove [start, end); every member must be present."""
        if start >= end:
            return
        i = self._index_at(start)
        if i < 0 or end > self._ends[i]:
            raise ValueError(f"[{start:#x}, {end:#x}) is not inside {self!r}")
        starts, ends = self._starts, self._ends
        s, e = starts[i], ends[i]
        if s < start and end < e:                        # split in two
            ends[i] = start
            starts.insert(i + 1, end)
            ends.insert(i + 1, e)
        elif s < start:
            ends[i] = start
        elif end < e:
            starts[i] = end
        else:
            del starts[i], ends[i]
        self._total -= end - start
        self.version += 1
