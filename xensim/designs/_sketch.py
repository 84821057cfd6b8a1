"""BUGGY on purpose: the 2010 proposal's pseudocode exactly as written (``sketch``).

docs/xen-facts.md section 5c (the sketch's race). See
docs/designs/sketch.md. Sequentially correct; under concurrency a CPU that
loses the cmpxchg keeps the 512 references it took and never gives them back.
"""

from __future__ import annotations

import errno

from ._counted import TableCounted
from ._host import SuperpageHost
from ._registry import register
from ._superpage import MetadataRow, sparse_table_row

_WORD = (1 << 64) - 1


@register
class Sketch(TableCounted):
    """BUGGY (a race leaks 512 references): the proposal's acquire loop, verbatim.

    One count per superpage (word 0 of the table, no state bits), writable-type
    references for every mapping (like superpage-info's RW path). Acquire::

        loop { x = count
               if x == 0: take a reference on each of the 512 frames (undo and fail if any fails)
               cmpxchg(count, x, x + 1) }

    With no give-back: run alone the cmpxchg never fails and all is well; when
    another CPU moves the count between the read and the cmpxchg, the loser
    retries with x != 0 and keeps the 512 references it took (``leaked``
    counts such sets). Release is the proposal's: cmpxchg-decrement, and at
    1 -> 0 put the 512. The sketch has no MARK (``supports_mark = False``).
    Additions that are xensim's, not the sketch's: outside faithful mode the
    owner is checked on the fast path (-EPERM), as for every design.
    """
    #: run alone (one CPU, as every batch runs), its acquire is the counting core's: the
    #: batch forms hold for it (the leak needs two CPUs)
    batch_forms = True
    name = "sketch"
    buggy = True
    supports_mark = False
    description = ("BUGGY: the 2010 proposal's pseudocode as written: a CPU losing the "
                   "cmpxchg race keeps (leaks) the 512 references it took")
    doc = "docs/designs/sketch.md"
    color = "#9467bd"
    word_names = ("count",)

    def metadata_rows(self) -> list[MetadataRow]:
        """One word per superpage in xensim's sparse table: the ``sparse-8B`` row."""
        return [sparse_table_row(self.host, 1)]

    def __init__(self, host: SuperpageHost) -> None:
        super().__init__(host)
        #: sets of 512 references taken by an acquirer that then lost the race (the leak)
        self.leaked = 0

    def acquire(self, mfn: int, d: int, word: int, mark: bool = False) -> tuple[int, bool]:
        held = 0                                          # sets of 512 references this call took
        while True:
            x = self.read_count(mfn, 0)
            if x == 0:
                if not self.take_frames(mfn, d, 0):
                    self.leaked += held
                    return self.refused(mfn, d), False
                held += 1
            elif held == 0 and not self.owner_ok(mfn, d, x):
                return -errno.EPERM, False
            if self.cas_count(mfn, 0, x, (x + 1) & _WORD):
                break
            # the bug: no give-back here; the next round sees x != 0 and keeps `held`
        took = x == 0
        self.leaked += held - took
        return 0, took
