"""The sparse superpage table: one entry per 2 MiB superpage that holds RAM.

Xen 4.1's ``spage_table`` was one 64-bit ``spage_info`` per 2 MiB over the whole
PDX space ``[0, max_pdx / 512)``, holes included. **This table is xensim's own,
not Xen's**: it is allocated in chunks of 512 entries (one 4 KiB page of 8-byte
entries, covering 1 GiB of PDX space) and only for chunks that contain a
superpage with RAM, so a host whose RAM is spread over terabytes of addresses
pays for its RAM, not for its holes.

An entry is one or two 64-bit words (``words_per_entry``):

* 1 word: Xen 4.1's ``spage_info.type_info`` (SGT_ state in bits 62-63, count
  in bits 0-60), used by the ``xen-4.1`` and ``sketch`` designs;
* 2 words: the 2010 proposal's two counts, word 0 for read-only mappings and
  word 1 for read-write mappings (``superpage-info``).

Entries are indexed like Xen's: by ``spdx = pdx >> 9``.

Observers see the table through the machine's event bus, which the machine
attaches the table to (see xensim.xen's _events): ``atomic_step`` before each
load, store or cmpxchg of a word (``sp_load`` / ``sp_store`` / ``sp_cas``),
``sp_wait`` while a CPU spins on a word (:meth:`wait_change`),
``spage_cmpxchg`` for every cmpxchg, ``spage_write`` / ``spage_write_many`` for
plain stores. Unattached (a table of its own), nobody listens.
"""

from __future__ import annotations

import numpy as np

from .._errors import RefcountBug
from ._units import SUPERPAGE_ORDER

SPAGE_CHUNK_SHIFT = 9
SPAGE_CHUNK_ENTRIES = 1 << SPAGE_CHUNK_SHIFT      # 512 entries: 4 KiB of 8-byte words
SPAGE_CHUNK_MASK = SPAGE_CHUNK_ENTRIES - 1
WORD_BYTES = 8


class SuperpageTable:
    """Sparse, chunked table of per-superpage words, indexed by ``pdx >> 9``."""

    #: the events the table emits: the bus's attributes once attached (None: nobody listens)
    atomic_step = spage_cmpxchg = spage_write = spage_write_many = None

    def __init__(self, spdx_with_ram: np.ndarray, words_per_entry: int = 1):
        if words_per_entry not in (1, 2):
            raise ValueError("a superpage entry is 1 or 2 64-bit words")
        self.words_per_entry = words_per_entry
        spdx = _sorted_unique(np.asarray(spdx_with_ram, dtype=np.int64))
        self.n_superpages = int(spdx.size)
        chunks = _sorted_unique(spdx >> SPAGE_CHUNK_SHIFT)
        self.n_chunks = int(chunks.size)
        n_dir = int(chunks[-1]) + 1 if chunks.size else 0
        #: chunk directory: chunk number -> slot in the store, -1 where no RAM.
        self._slot = np.full(n_dir, -1, dtype=np.int32)
        self._slot[chunks] = np.arange(chunks.size, dtype=np.int32)
        self._has_ram = np.zeros(self.n_chunks * SPAGE_CHUNK_ENTRIES, dtype=bool)
        self.store = np.zeros((words_per_entry, self.n_chunks * SPAGE_CHUNK_ENTRIES),
                              dtype=np.uint64)
        #: while a request runs: (word, entry, old value) per write
        self._journal: list | None = None
        if spdx.size:
            slot = self._slot[spdx >> SPAGE_CHUNK_SHIFT].astype(np.int64)
            self._has_ram[(slot << SPAGE_CHUNK_SHIFT) | (spdx & SPAGE_CHUNK_MASK)] = True
        #: the directory and the RAM flags as Python objects, for the scalar lookup
        #: (:meth:`entry_index`, several per hypercall): no numpy call
        self._slot_list: list[int] = self._slot.tolist()
        self._has_ram_bytes = self._has_ram.tobytes()
        #: the last lookup, (spdx, its store position): a hypercall looks one superpage's
        #: word up several times in a row (the directory never changes)
        self._last_entry = (-1, -1)
        #: a memoryview of the store, for the scalar reads and writes (remade after a copy)
        self._store_v = memoryview(self.store)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_store_v"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._store_v = memoryview(self.store)

    # -- sizes ------------------------------------------------------------------
    @property
    def entry_bytes(self) -> int:
        return WORD_BYTES * self.words_per_entry

    @property
    def allocated_bytes(self) -> int:
        """Bytes of entries allocated: whole chunks, so rounding is included."""
        return int(self.store.nbytes)

    @property
    def directory_bytes(self) -> int:
        return int(self._slot.nbytes)

    @staticmethod
    def bytes_for(spdx_with_ram: np.ndarray, words_per_entry: int) -> int:
        """What a table over these superpages allocates, without building it."""
        chunks = _sorted_unique(np.asarray(spdx_with_ram, dtype=np.int64) >> SPAGE_CHUNK_SHIFT)
        return int(chunks.size) * SPAGE_CHUNK_ENTRIES * WORD_BYTES * words_per_entry

    # -- lookup -----------------------------------------------------------------
    def entry_index(self, spdx: int) -> int:
        """Position of ``spdx`` in the store, or -1 when no entry exists for it."""
        last = self._last_entry
        if spdx == last[0]:
            return last[1]
        chunk = spdx >> SPAGE_CHUNK_SHIFT
        if spdx < 0 or chunk >= len(self._slot_list):
            return -1
        slot = self._slot_list[chunk]
        if slot < 0:
            return -1
        e = (slot << SPAGE_CHUNK_SHIFT) | (spdx & SPAGE_CHUNK_MASK)
        if not self._has_ram_bytes[e]:
            return -1
        self._last_entry = (spdx, e)
        return e

    def entry_indexes(self, spdx: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`entry_index` (-1 where there is no entry)."""
        spdx = np.asarray(spdx, dtype=np.int64)
        chunk = spdx >> SPAGE_CHUNK_SHIFT
        inside = (spdx >= 0) & (chunk < self._slot.size)
        slot = np.full(spdx.shape, -1, dtype=np.int64)
        slot[inside] = self._slot[chunk[inside]]
        e = (slot << SPAGE_CHUNK_SHIFT) | (spdx & SPAGE_CHUNK_MASK)
        ok = slot >= 0
        if self._has_ram.size:
            ok[ok] = self._has_ram[e[ok]]
        return np.where(ok, e, -1)

    def has_entry(self, spdx: int) -> bool:
        return self.entry_index(spdx) >= 0

    def spdx_of_entries(self, entries: np.ndarray) -> np.ndarray:
        """The spdx of each store position (the inverse of :meth:`entry_indexes`)."""
        e = np.asarray(entries, dtype=np.int64)
        chunk_of_slot = np.empty(self.n_chunks, dtype=np.int64)
        chunk_of_slot[self._slot[self._slot >= 0]] = np.flatnonzero(self._slot >= 0)
        return (chunk_of_slot[e >> SPAGE_CHUNK_SHIFT] << SPAGE_CHUNK_SHIFT) | (e & SPAGE_CHUNK_MASK)

    def read(self, spdx: int, word: int = 0) -> int:
        if self.atomic_step is not None:
            self.atomic_step("sp_load", spdx, word)
        e = self.entry_index(spdx)
        if e < 0:
            raise IndexError(f"no superpage entry for spdx {spdx:#x} (no RAM there)")
        return self._store_v[word, e]

    def write(self, spdx: int, value: int, word: int = 0) -> None:
        if self.atomic_step is not None:
            self.atomic_step("sp_store", spdx, word)
        e = self.entry_index(spdx)
        if e < 0:
            raise IndexError(f"no superpage entry for spdx {spdx:#x} (no RAM there)")
        if self._journal is not None:
            self._journal.append((word, e, self._store_v[word, e]))
        if self.spage_write is not None:
            self.spage_write("spage_table", spdx, word, self._store_v[word, e], int(value))
        self._store_v[word, e] = value

    def cmpxchg(self, spdx: int, old: int, new: int, word: int = 0) -> bool:
        """The one read-modify-write of a superpage word (one atomic step)."""
        if self.atomic_step is not None:
            self.atomic_step("sp_cas", spdx, word)
        e = self.entry_index(spdx)
        if e < 0:
            raise IndexError(f"no superpage entry for spdx {spdx:#x} (no RAM there)")
        found = self._store_v[word, e]
        if self.spage_cmpxchg is not None:
            self.spage_cmpxchg("spage_table", spdx, word, old, found, new, found == old)
        if found != old:
            return False
        if self._journal is not None:
            self._journal.append((word, e, old))
        self._store_v[word, e] = new
        return True

    def wait_change(self, spdx: int, seen: int, word: int = 0) -> None:
        """Spin until the word differs from ``seen`` (a CPU waiting for another to finish:
        a lock bit). One ``sp_wait`` step, which the explorer runs only once the word
        differs (each spin in between would change nothing); with nobody listening no
        other CPU can ever change it, so a word still ``seen`` is a RefcountBug."""
        if self.atomic_step is not None:
            self.atomic_step("sp_wait", spdx, word)
        e = self.entry_index(spdx)
        if e < 0:
            raise IndexError(f"no superpage entry for spdx {spdx:#x} (no RAM there)")
        if self.atomic_step is None and int(self.store[word, e]) == seen:
            raise RefcountBug(f"superpage spdx {spdx:#x} word {word}: waiting for {seen:#x} "
                              f"to change, and no other CPU runs")

    def peek(self, spdx: int, word: int = 0) -> int:
        """The word, read without an atomic step (an observer's look; -1: no entry)."""
        e = self.entry_index(spdx)
        return -1 if e < 0 else int(self.store[word, e])

    def write_many(self, entries: np.ndarray, values: np.ndarray, word: int = 0) -> None:
        """Write many entries at once (store positions from :meth:`entry_indexes`)."""
        if self._journal is not None:
            self._journal.extend((word, int(e), int(self.store[word, e])) for e in entries)
        if self.spage_write_many is not None:
            self.spage_write_many("spage_table", self.spdx_of_entries(entries), word,
                                  self.store[word, entries].copy(), np.array(values, dtype=np.uint64))
        self.store[word, entries] = values

    def journal_oldest(self) -> dict[tuple[int, int], int]:
        """(word, entry) -> the value it had at :meth:`begin`, for each entry written since."""
        oldest: dict[tuple[int, int], int] = {}
        for word, e, old in self._journal or ():
            oldest.setdefault((word, e), old)
        return oldest

    def begin(self) -> None:
        self._journal = []

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> list[tuple[int, int, int, int]]:
        """Restore the words written since :meth:`begin`; returns (word, entry, old, new) rows."""
        journal, self._journal = self._journal or [], None
        changed = []
        for word, e, old in reversed(journal):
            changed.append((word, e, old, int(self.store[word, e])))
            self.store[word, e] = old
        return changed

    def nonzero_entries(self) -> np.ndarray:
        """Store positions whose entry has any non-zero word."""
        return np.flatnonzero(self.store.any(axis=0))

    def snapshot(self) -> bytes:
        return self.store.tobytes()

    def restore(self, snap: bytes) -> None:
        """Hold exactly the entries of ``snap`` (a :meth:`snapshot` of this table)."""
        self.store[...] = np.frombuffer(snap, dtype=np.uint64).reshape(self.store.shape)


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique for input that is usually sorted already (much faster on 1M entries)."""
    if a.size and (a[1:] < a[:-1]).any():
        a = np.sort(a)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if a.size else a


def spdx_of(pdx: int) -> int:
    return pdx >> SUPERPAGE_ORDER
