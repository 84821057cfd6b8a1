"""``lazy-drop``: a design that keeps the 512 references after the last unmapping.

    xensim run CONFIG --design-file examples/designs/lazy_drop.py

One 64-bit word per superpage in the superpage table: the mapping count in bits 0-61,
``CACHED`` (bit 62) while no mapping is left but the 512 references are kept. Churn
(map, unmap, map again) then costs the slow path once: a count going 0 -> 1 on a cached
superpage takes nothing, and 1 -> 0 drops nothing.

References nobody maps must go when the frames need them gone, inside the request that
needs it (so that a failed request undoes it with the rest). The design's hooks:

* ``frames_leaving``: decrease_reservation (ballooning) removes frames of a cached
  superpage: drop the 512 references first, else the frames could not be freed;
* ``type_conflict``: a frame of a cached superpage is asked for another type (made a
  page table): drop them, and Xen's code looks at the frame again;
* ``relinquish``: the domain is destroyed: drop every cached superpage it owns.

Built on xensim's counting core (:class:`xensim.TableCounted`) with its acquire and
release replaced; no MARK_SUPER. Every call goes through the design's host
(``self.host``); docs/designs/writing-a-design.md is the reference.
"""

from __future__ import annotations

import errno

import numpy as np

import xensim
from xensim.mem import PGT_writable_page

#: bit 62: no mapping, the 512 references kept; the count is in bits 0-61
CACHED = 1 << 62
COUNT = CACHED - 1
SUPERPAGE = 512


class LazyDrop(xensim.TableCounted):
    """The 512 references kept after the last unmapping, dropped when the frames need it."""
    name = "lazy-drop"
    supports_mark = False
    description = ("keeps the 512 references after the last unmapping; drops them when "
                   "a frame leaves the guest, changes type, or the domain dies")
    word_names = ("count",)
    doc = "examples/designs/lazy_drop.py"

    @classmethod
    def word_text(cls, word: int, value: int) -> str:
        """``cached`` for a superpage whose references are kept with no mapping."""
        value = int(value)
        return "cached" if value == CACHED else str(value & COUNT)

    @classmethod
    def word_problem(cls, word: int, value: int) -> str | None:
        value = int(value)
        return "cached with a count" if value & CACHED and value & COUNT else None

    def acquire(self, mfn: int, d: int, word: int, mark: bool = False) -> tuple[int, bool]:
        while True:
            x = self.read_count(mfn, 0)
            if not self.owner_ok(mfn, d, x):           # cached: the references are d's
                return -errno.EPERM, False
            if x & COUNT == COUNT:
                return -errno.EINVAL, False
            if x == CACHED:                              # the references are there already
                if self.cas_count(mfn, 0, x, 1):
                    return 0, False
                continue
            if x == 0:
                if not self.take_frames(mfn, d, 0):
                    return self.refused(mfn, d), False
                if self.cas_count(mfn, 0, 0, 1):
                    return 0, True
                self.give_back(mfn, 0)                  # another CPU got there first
                continue
            if self.cas_count(mfn, 0, x, x + 1):
                return 0, False

    def release(self, mfn: int, word: int, unmark: bool = False) -> str:
        while True:
            x = self.read_count(mfn, 0)
            if x & COUNT == 0:
                self.underflow(mfn, 0, x)
                return "underflow"
            if self.cas_count(mfn, 0, x, CACHED if x == 1 else x - 1):
                return "fast"                            # the references stay

    # -- the hooks: cached references go when the frames need it ----------------------------
    def _drop_cached(self, mfn: int) -> bool:
        """Drop superpage ``mfn``'s 512 references if it is cached; did it?"""
        spdx = self.spdx(mfn)
        if not self.host.has_words(spdx) or not self.cas_count(mfn, 0, CACHED, 0):
            return False
        self.give_back(mfn, 0)
        return True

    def frames_leaving(self, domid: int, mfn: int, n: int) -> None:
        for first in range(mfn - mfn % SUPERPAGE, mfn + n, SUPERPAGE):
            if self.host.owner(first) == domid:
                self._drop_cached(first)

    def type_conflict(self, mfn: int, have: int, want: int) -> bool:
        return have == PGT_writable_page and self._drop_cached(mfn - mfn % SUPERPAGE)

    def relinquish(self, domid: int) -> None:
        for spdx in self.host.busy_superpages():
            first = self.host.mfn(int(spdx) << 9)
            if self.host.owner(first) == domid:
                self._drop_cached(first)

    # -- what it holds -----------------------------------------------------------------------
    def _cached(self, mfns: list[int] | None) -> set[int]:
        """The cached superpages among ``mfns`` (None: all)."""
        if mfns is None:
            spdx = self.host.busy_superpages()
            words = self.host.busy_words()[0]
        else:
            spdx = np.array([self.spdx(mfn) for mfn in mfns], dtype=np.int64)
            words = self.host.words_of(spdx)[0]
        return {self.host.mfn(int(s) << 9) for s in spdx[words == np.uint64(CACHED)]}

    def expect_superpages(self, exp: xensim.designs.Expectation,
                          pse: dict[int, list[int]], mfns: list[int] | None) -> None:
        """A mapped superpage: its count and one run of 512 writable references; a cached
        one: CACHED and the same run, held for the frames' owner."""
        cached = self._cached(mfns)
        for mfn in set(pse) | cached if mfns is None else mfns:
            ro, rw, domid = pse.get(mfn, (0, 0, None))
            if ro + rw:
                exp.spage[self.spdx(mfn)] = (ro + rw,)
                exp.run(mfn, SUPERPAGE, domid, PGT_writable_page)
            elif mfn in cached:
                exp.spage[self.spdx(mfn)] = (CACHED,)
                exp.run(mfn, SUPERPAGE, self.host.owner(mfn), PGT_writable_page)
            elif mfns is None:
                exp.spage[self.spdx(mfn)] = (0,)
