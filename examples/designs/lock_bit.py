"""``lock-bit``: a superpage refcount design written outside xensim, loaded as a file.

    xensim run CONFIG --design-file examples/designs/lock_bit.py
    (or, in the config:  design_files: [path/to/lock_bit.py])

One 64-bit word per superpage in the superpage table: bit 63 is a lock, bits 0-62
the mapping count. Xen 4.1 takes the 512 frames' references *speculatively*: a CPU
that reads count 0 takes them, then cmpxchg's the count 0 -> 1, and gives them back
if another CPU got there first. Here the two slow transitions are serialised instead:

* 0 -> 1: cmpxchg the word 0 -> LOCK; the winner takes the 512 references, then
  publishes count 1 (which clears the bit); if it cannot take them, it stores 0 back.
* 1 -> 0: cmpxchg 1 -> LOCK; drop the 512 references; publish 0.
* any other change: cmpxchg count +- 1 on an unlocked word (the fast path).

A CPU that finds the bit set waits until the word changes, then retries
(``host.wait_word``: one atomic step the explorer runs only once the word
differs). Nobody ever takes references it must give back. There is no
MARK_SUPER (``supports_mark = False``). The algorithm is xensim's counting core
(:class:`xensim.TableCounted`) with its acquire and release replaced: the batch
path, the owner checks and the auditor's expectations are the core's.
"""

from __future__ import annotations

import errno

import xensim

#: bit 63: a CPU is taking or dropping the 512 references; the count is in bits 0-62
LOCK = 1 << 63
COUNT = LOCK - 1


class LockBit(xensim.TableCounted):
    """A per-superpage lock bit serialising 0 -> 1 and 1 -> 0 (no speculative references)."""
    name = "lock-bit"
    supports_mark = False
    description = ("a lock bit per superpage serialises 0 -> 1 and 1 -> 0: the 512 "
                   "references are never taken speculatively")

    #: what trace and inspect call the word, and where this file is (xensim designs lists it)
    word_names = ("count",)
    doc = "examples/designs/lock_bit.py"

    @classmethod
    def word_text(cls, word: int, value: int) -> str:
        """``locked|0`` while a CPU holds the lock, else the count."""
        value = int(value)
        return f"locked|{value & COUNT}" if value & LOCK else str(value)

    @classmethod
    def word_problem(cls, word: int, value: int) -> str | None:
        """The explorer's check after every step: a locked word has no count (the lock's
        holder publishes it)."""
        value = int(value)
        if value & LOCK and value & COUNT:
            return f"lock bit set over a count ({value & COUNT}): the count was not published"
        return None

    def _wait(self, mfn: int, word: int, seen: int) -> None:
        """Another CPU holds the lock: spin until the word changes."""
        self.host.wait_word(self.spdx(mfn), seen, word)

    def _publish(self, mfn: int, word: int, count: int) -> None:
        """Store the new count, clearing the lock (only the lock's holder writes it now)."""
        self.host.write_word(self.spdx(mfn), count, word)

    def acquire(self, mfn: int, d: int, word: int, mark: bool = False) -> tuple[int, bool]:
        while True:
            x = self.read_count(mfn, word)
            if x & LOCK:
                self._wait(mfn, word, x)
                continue
            if not self.owner_ok(mfn, d, x):
                return -errno.EPERM, False
            if x == COUNT:
                return -errno.EINVAL, False
            if x:                                         # the fast path: count + 1
                if self.cas_count(mfn, word, x, x + 1):
                    return 0, False
                continue
            if not self.cas_count(mfn, word, 0, LOCK):         # another CPU moved it: look again
                continue
            if not self.take_frames(mfn, d, word):
                self._publish(mfn, word, 0)
                return self.refused(mfn, d), False
            self._publish(mfn, word, 1)
            return 0, True

    def release(self, mfn: int, word: int, unmark: bool = False) -> str:
        while True:
            x = self.read_count(mfn, word)
            if x & LOCK:
                self._wait(mfn, word, x)
                continue
            if x == 0:
                self.underflow(mfn, word, x)
                return "underflow"
            if x > 1:                                     # the fast path: count - 1
                if self.cas_count(mfn, word, x, x - 1):
                    return "fast"
                continue
            if self.cas_count(mfn, word, 1, LOCK):
                break
        self.give_back(mfn, word)
        self._publish(mfn, word, 0)
        return "slow"
