"""The counting core shared by ``superpage-info``, ``pageinfo-count`` and ``sketch``.

docs/xen-facts.md section 5c.

:class:`CountedDesign` is the algorithm of every design that keeps a mapping
count per superpage: a count going 0 -> 1 takes a reference on each of the 512
frames, a count going 1 -> 0 drops them, every other change touches only the
count (the fast path). Subclasses say where the count words live, which word a
read-only or read-write mapping counts in, what references a word stands for,
and which word MMUEXT_MARK_SUPER pins. :class:`TableCounted` keeps the words in
the sparse superpage table.

**MARK.** A mark is a pin that holds one count of the pinned word (the RW word
here) and sets bit 63 of that word (``MARK``): marking a marked superpage, or
unmarking an unmarked one, is -EINVAL; the last unmark of a superpage with no
mapping drops the 512 references. Which domain marked it is the host's record
(``host.is_marked``, ``host.marks``), kept by the hypercall layer.
"""

from __future__ import annotations

import errno

import numpy as np

from ..mem import PGT_writable_page
from .._errors import RefcountBug
from ._host import Expectation
from ._superpage import (SPAGE_DYNAMIC, SPAGE_MARK, SPAGE_NONE, PseEntries, SuperpageDesign,
                         SuperpageStates)
from ..mem import SUPERPAGE_ORDER, SUPERPAGE_PAGES

#: bit 63 of the marked word: the superpage is MARK_SUPER'd (the mark holds one count)
MARK = 1 << 63
COUNT_MASK = MARK - 1
_WORD = (1 << 64) - 1
_U = np.uint64


class CountedDesign(SuperpageDesign):
    """One or more 64-bit mapping counts per superpage; 0 -> 1 takes the 512 frames' references.

    Acquire (Xen 4.1's loop, also the race-free reading of the proposal): read
    the word; if its count is 0 and nothing is taken yet, take the 512
    references speculatively and retry; if the count is not 0 and references
    were taken, give them back (another CPU made the 0 -> 1 transition first);
    cmpxchg count + 1. Release: cmpxchg count - 1; if it went 1 -> 0, drop the
    512 references after the cmpxchg.
    """
    #: the batch forms (get_superpages / put_superpages) vectorise the _acquire / _release
    #: of a class that says so here: a subclass that rewrites either loop gets the requests
    #: one by one unless it declares ``batch_forms = True`` itself (batch_forms_apply)
    batch_forms = True
    #: the word MARK_SUPER pins (None: no MARK)
    mark_word: int | None = None

    # -- what subclasses define ---------------------------------------------------
    def count_word(self, rw: bool) -> int:
        """The word that counts a read-only (``rw`` False) or read-write mapping."""
        return 0

    def ref_type(self, word: int) -> int | None:
        """The type of the 512 references a non-zero ``word`` holds (None: general only)."""
        return PGT_writable_page

    def read_count(self, mfn: int, word: int) -> int:
        raise NotImplementedError

    def cas_count(self, mfn: int, word: int, old: int, new: int) -> bool:
        """The one read-modify-write of a count word (an atomic step for the explorer)."""
        raise NotImplementedError

    def store_expected(self, exp: Expectation, expected: dict[int, tuple[int, ...]],
                        only: bool = False) -> None:
        """Hand the auditor the expected words of every superpage (mfn -> words; ``only``:
        of these superpages alone, the others unknown)."""
        raise NotImplementedError

    def words_of(self, spdx: np.ndarray) -> np.ndarray:
        """The words of superpages ``spdx`` (each with RAM): a (words, superpages) uint64 array."""
        raise NotImplementedError

    #: where superpage_states read the words, in words
    words_source = ""

    # -- what the words say ---------------------------------------------------------------
    @classmethod
    def word_text(cls, word: int, value: int) -> str:
        """``mark|2`` for a marked count, ``3`` for a plain one."""
        value = int(value)
        return f"mark|{value & COUNT_MASK}" if value & MARK else str(value)

    def superpage_states(self, spdx: np.ndarray, mappings: np.ndarray) -> SuperpageStates:
        words = self.words_of(spdx)
        marked = ((words & _U(MARK)) != 0).any(axis=0)
        count = (words & _U(COUNT_MASK)).astype(np.int64).sum(axis=0)
        state = np.full(count.size, SPAGE_NONE, dtype=np.int8)
        state[count > 0] = SPAGE_DYNAMIC
        state[marked] = SPAGE_MARK
        return SuperpageStates(self.words_source, state, count)

    # -- the 512 references ---------------------------------------------------------
    def take_frames(self, mfn: int, d: int, word: int) -> bool:
        return self.host.take(mfn, d, self.ref_type(word))

    def give_back(self, mfn: int, word: int) -> None:
        self.host.drop(mfn, typed=self.ref_type(word) is not None)

    def owner_ok(self, mfn: int, d: int, count: int) -> bool:
        """xensim's owner check on the fast path (as Xen41.check_owner; none in faithful mode).

        While a count is non-zero the 512 frames hold its references, taken by
        get_page for their owner: none can be freed or change hands, so the
        first frame's owner is every frame's. At count 0, get_page checks each.
        """
        if count == 0 or self.host.faithful:
            return True
        return self.host.owner(mfn) == d

    def refused(self, mfn: int, d: int) -> int:
        """The errno of a failed 512-frame acquisition: -EINVAL, a get_page failed (as Xen
        4.1's get_spage_pages), whoever owns the frames."""
        return -errno.EINVAL

    # -- the algorithm ------------------------------------------------------------------
    def acquire(self, mfn: int, d: int, word: int, mark: bool = False) -> tuple[int, bool]:
        """count + 1 on ``word`` (and set MARK if ``mark``): (0 or -errno, took the 512)."""
        taken = False
        while True:
            x = self.read_count(mfn, word)
            count = x & COUNT_MASK
            if mark and x & MARK:
                if taken:
                    self.give_back(mfn, word)
                return -errno.EINVAL, False
            if not taken and not self.owner_ok(mfn, d, count):
                return -errno.EPERM, False
            if count == 0 and not taken:
                if not self.take_frames(mfn, d, word):
                    return self.refused(mfn, d), False
                taken = True
                continue                                  # re-read: the cmpxchg needs a fresh x
            if count and taken:                           # someone else made the 0 -> 1 transition:
                self.give_back(mfn, word)                # give the speculative references back
                taken = False
            if count == COUNT_MASK:
                return -errno.EINVAL, False
            if self.cas_count(mfn, word, x, (x + 1) | (MARK if mark else 0)):
                return 0, taken

    def release(self, mfn: int, word: int, unmark: bool = False) -> str:
        """count - 1 on ``word`` (clearing MARK if ``unmark``): "slow" (the 512 dropped),
        "fast", "unmarked" (unmark of an unmarked word: nothing done) or "underflow"."""
        while True:
            x = self.read_count(mfn, word)
            count, marked = x & COUNT_MASK, bool(x & MARK)
            if unmark and not marked:
                return "unmarked"
            if count == 0 or (marked and count == 1 and not unmark):
                self.underflow(mfn, word, x)             # a put with no mapping to put
                return "underflow"
            last = count == 1
            nx = (x - 1) & ~MARK if unmark else x - 1
            if self.cas_count(mfn, word, x, nx):
                break
        if last:
            self.give_back(mfn, word)
        return "slow" if last else "fast"

    def underflow(self, mfn: int, word: int, x: int) -> None:
        """A put the count cannot pay for. Only faithful mode lets one through (XSA-148:
        an RW or PSE flip on a live L2 entry); there the decrement wraps, as C's would."""
        if not self.host.faithful:
            raise RefcountBug(f"put_superpage on mfn {mfn:#x}: word {word} has no mapping to put "
                              f"({x:#x})")
        self.host.report_violation(f"{self.name}: superpage count underflow at mfn {mfn:#x} "
                                 f"(word {word}: {x:#x})")
        while not self.cas_count(mfn, word, x, (x - 1) & _WORD):
            x = self.read_count(mfn, word)

    # -- batches of distinct superpages (one mmu_update of many PSE entries) -------------
    def read_many(self, mfns: np.ndarray, word: int) -> np.ndarray:
        """Vectorised _read (uint64 words)."""
        raise NotImplementedError

    def write_many(self, mfns: np.ndarray, word: int, values: np.ndarray) -> None:
        raise NotImplementedError

    def pages_of(self, mfns: np.ndarray) -> np.ndarray:
        return self.host.pdx_many(mfns)

    def batch_forms_apply(self) -> bool:
        """Do the batch forms equal this design's calls one by one? Only if the classes that
        define its ``acquire`` and ``release`` each declare ``batch_forms = True`` in
        their own body: a design that rewrites a loop (a lock bit, a cache of references)
        gets the requests one by one unless it says the batch forms still hold for it."""
        for name in ("acquire", "release"):
            owner = next(c for c in type(self).__mro__ if name in vars(c))
            if not vars(owner).get("batch_forms", False):
                return False
        return True

    def get_superpages(self, mfns: np.ndarray, d: int, rw: np.ndarray) -> int:
        """_acquire on each, in order, vectorised (one word: stops where ``rw`` changes)."""
        if not self.batch_forms_apply():
            return 0
        mfns, rw = np.asarray(mfns, dtype=np.int64), np.asarray(rw, dtype=bool)
        same = rw == rw[0]
        k = rw.size if same.all() else int(np.argmin(same))
        mfns, w = mfns[:k], self.count_word(bool(rw[0]))
        x = self.read_many(mfns, w)
        count = x & _U(COUNT_MASK)
        zero = count == 0
        ok = count < _U(COUNT_MASK)
        pages = self.pages_of(mfns)
        host = self.host
        if not host.faithful:
            ok[~zero] &= host.owners(pages[~zero]) == d
        t = self.ref_type(w)
        take = np.flatnonzero(zero)
        ok[take] &= host.can_take_runs(pages[take], d, t)
        f = ok.size if ok.all() else int(np.argmin(ok))
        take = take[take < f]
        host.take_runs(pages[take], d, t)
        self.write_many(mfns[:f], w, x[:f] + _U(1))
        self.stats["slow_get"] += int(take.size)
        self.stats["fast_get"] += f - int(take.size)
        return f

    def put_superpages(self, mfns: np.ndarray, rw: np.ndarray) -> int:
        """_release on each, in order, vectorised; stops before any would underflow."""
        if not self.batch_forms_apply():
            return 0
        mfns, rw = np.asarray(mfns, dtype=np.int64), np.asarray(rw, dtype=bool)
        same = rw == rw[0]
        k = rw.size if same.all() else int(np.argmin(same))
        mfns, w = mfns[:k], self.count_word(bool(rw[0]))
        x = self.read_many(mfns, w)
        count, marked = x & _U(COUNT_MASK), (x & _U(MARK)) != 0
        ok = (count != 0) & ~(marked & (count == 1))
        pages = self.pages_of(mfns)
        t = self.ref_type(w)
        drop = np.flatnonzero((count == 1) & ok)
        ok[drop] &= self.host.can_drop_runs(pages[drop], typed=t is not None)
        f = ok.size if ok.all() else int(np.argmin(ok))
        drop = drop[drop < f]
        self.write_many(mfns[:f], w, x[:f] - _U(1))
        self.host.drop_runs(pages[drop], typed=t is not None)
        self.stats["slow_put"] += int(drop.size)
        self.stats["fast_put"] += f - int(drop.size)
        return f

    # -- the interface -----------------------------------------------------------------
    def get_superpage(self, mfn: int, d: int, rw: bool) -> int:
        rc, took = self.acquire(mfn, d, self.count_word(rw))
        if rc == 0:
            self.stats["slow_get" if took else "fast_get"] += 1
        return rc

    def put_superpage(self, mfn: int, rw: bool) -> None:
        how = self.release(mfn, self.count_word(rw))
        if how in ("slow", "fast"):
            self.stats[how + "_put"] += 1

    def mark_superpage(self, mfn: int, d: int) -> int:
        if self.mark_word is None:
            return -errno.EOPNOTSUPP
        rc, _ = self.acquire(mfn, d, self.mark_word, mark=True)
        return rc

    def unmark_superpage(self, mfn: int, d: int) -> int:
        if self.mark_word is None:
            return -errno.EOPNOTSUPP
        if (not self.host.faithful and not self.host.is_marked(mfn, d)
                and self.read_count(mfn, self.mark_word) & MARK):
            return -errno.EPERM                           # another domain's mark
        how = self.release(mfn, self.mark_word, unmark=True)
        if how == "unmarked":
            return -errno.EINVAL
        return 0

    def expect(self, exp: Expectation, pse: PseEntries) -> None:
        """From the live PSE entries and the domains' marks alone: every word, and one
        run of 512 references (of the word's type) per non-zero word."""
        self.expect_superpages(exp, pse, None)

    def expect_superpages(self, exp: Expectation, pse: PseEntries,
                          mfns: list[int] | None) -> None:
        """:meth:`expect` of the superpages ``mfns`` only (None: every superpage)."""
        marks = self.host.marks()
        expected: dict[int, tuple[int, ...]] = {}
        for mfn in set(pse) | set(marks) if mfns is None else mfns:
            if mfn not in pse and mfn not in marks:
                expected[mfn] = (0,) * self.words_per_entry
                continue
            ro, rw, domid = pse.get(mfn, (0, 0, None))
            holder = marks.get(mfn, domid)
            counts = [0] * self.words_per_entry
            counts[self.count_word(False)] += ro
            counts[self.count_word(True)] += rw
            words = list(counts)
            if mfn in marks:
                counts[self.mark_word] += 1
                words[self.mark_word] = MARK | counts[self.mark_word]
            for w, c in enumerate(counts):
                if c:
                    exp.run(mfn, SUPERPAGE_PAGES, holder, self.ref_type(w))
            expected[mfn] = tuple(words)
        self.store_expected(exp, expected, mfns is not None)


class TableCounted(CountedDesign):
    """Counts kept in the machine's superpage table (``spage_table``), word ``w`` of the entry."""

    @property
    def words_source(self) -> str:
        n = self.host.words_per_entry
        return (f"spage_table: {n} count word{'s' * (n > 1)}"
                + (", MARK in bit 63" if self.mark_word is not None else ""))

    def words_of(self, spdx: np.ndarray) -> np.ndarray:
        return self.host.words_of(spdx)

    def activity(self) -> tuple[int, int]:
        words = self.host.busy_words()
        return int(words.shape[1]), int((words & _U(COUNT_MASK)).sum())

    def read_count(self, mfn: int, word: int) -> int:
        return self.host.read_word(self.spdx(mfn), word)

    def cas_count(self, mfn: int, word: int, old: int, new: int) -> bool:
        return self.host.cmpxchg_word(self.spdx(mfn), old, new, word)

    def entries_of(self, mfns: np.ndarray) -> np.ndarray:
        return self.host.word_slots(self.pages_of(mfns) >> SUPERPAGE_ORDER)

    def read_many(self, mfns: np.ndarray, word: int) -> np.ndarray:
        return self.host.read_slots(self.entries_of(mfns), word)

    def write_many(self, mfns: np.ndarray, word: int, values: np.ndarray) -> None:
        self.host.write_slots(self.entries_of(mfns), values, word)

    def store_expected(self, exp: Expectation, expected: dict[int, tuple[int, ...]],
                        only: bool = False) -> None:
        for mfn, words in expected.items():
            if any(words) or not only:
                exp.spage[self.spdx(mfn)] = words
