"""The frame table: one ``page_info`` per frame, as a numpy structure of arrays.

Like Xen's ``frame_table``, it is indexed by PDX and exists only for *PDX groups*
that contain RAM. A group is the run of frames whose 32-byte page_info fill
2 MiB in Xen: 65,536 frames (256 MiB of RAM). xensim keeps three arrays per
group instead of an array of structs:

==============  ========  =========================================
array           dtype     meaning
==============  ========  =========================================
``count_info``  uint64    general references + PGC_ flags
``type_info``   uint64    typed references + PGT_ type and flags
``owner``       uint16    domid of the owner (DOMID_INVALID: none)
==============  ========  =========================================

18 bytes per frame, against Xen's 32 (xensim has no list links or TLB stamps).

**Groups are allocated on first write, not at boot.** At boot every RAM frame is
free (``PGC_state_free``, no references, no owner) and every non-RAM frame in a
group is zero, so a group's initial contents follow from the memory map alone:
reads of an untouched group synthesise them without allocating anything. This
lets a 2 TiB host (intel-gnr-4s: 32,768 groups, 9 GiB of arrays if allocated)
boot in milliseconds with no per-frame memory, and a simulation pays only for
the groups its guests actually use. Allocating at boot would also work with
``calloc``-backed zero pages were free frames all-zero, but PGC_state_free is
not zero, and faking it with an XOR would hide Xen's layout from learners.
"""

from __future__ import annotations

import mmap
import sys
from bisect import bisect_right

import numpy as np

from ._page_info import DOMID_INVALID, PGC_state_free
from ._progress import ValidationProgress

PDX_GROUP_SHIFT = 16
PDX_GROUP_FRAMES = 1 << PDX_GROUP_SHIFT
PDX_GROUP_MASK = PDX_GROUP_FRAMES - 1

#: xensim's own page_info: count_info + type_info + owner.
FRAME_BYTES = 8 + 8 + 2
#: Xen's struct page_info on x86_64 (without BIGMEM).
XEN_PAGE_INFO_BYTES = 32

_FREE = np.uint64(PGC_state_free)


#: the address space a slab of :func:`mapped_zeros` reserves (touched pages only are memory)
SLAB_BYTES = 64 << 20


class _Slab:
    """The anonymous mapping :func:`mapped_zeros` carves arrays from, and how much of it is
    taken. A slab lives while an array carved from it does. (Transparent huge pages were
    measured: 20 times fewer page faults, twice the system time.)"""
    buf: mmap.mmap | None = None
    used = 0

    @classmethod
    def take(cls, nbytes: int) -> tuple[mmap.mmap, int]:
        nbytes = (nbytes + 63) & ~63                    # each array on its own cache line
        if cls.buf is None or cls.used + nbytes > len(cls.buf):
            cls.buf = mmap.mmap(-1, max(SLAB_BYTES, nbytes), flags=mmap.MAP_PRIVATE)
            cls.used = 0
        at, cls.used = cls.used, cls.used + nbytes
        return cls.buf, at


def mapped_zeros(n: int, dtype) -> np.ndarray:
    """A zeroed array of ``n`` items in an anonymous mapping (a slab shared with other such
    arrays), outside the C heap: for arrays that live as long as the machine (a frame-table
    group's words, a group's TLB stamps). In the heap, the short-lived arrays freed between
    them would leave holes that stay resident (about 5% more memory on a whole host). A
    deep copy or a pickle of one is an ordinary array."""
    dtype = np.dtype(dtype)
    buf, at = _Slab.take(n * dtype.itemsize)
    return np.frombuffer(buf, dtype, n, at)


#: the dtypes of count_info, type_info, owner
_DTYPES = (np.uint64, np.uint64, np.uint16)
#: FrameTable's memoryviews of its arrays (derived: remade, not copied or pickled)
_VIEWS = ("_ci_v", "_ti_v", "_owner_v")
#: a request's journal spanning at most this many frames of one group is read at once
_SPAN_MAX = 4096
#: a journal of at most this many single-word writes is read without arrays
_SHORT = 32


def _same(v: memoryview, lo: int, hi: int) -> int | None:
    """The one value every word of ``v[lo:hi]`` holds, or None: compared as bytes (one
    copy and a memcmp against the first word repeated: cheaper than any ufunc call on a
    superpage's 512 words)."""
    b = v[lo:hi].tobytes()
    first = b[:v.itemsize]
    return int.from_bytes(first, sys.byteorder) if b == first * (hi - lo) else None


class FrameTable:
    """page_info for every frame, indexed by PDX; groups materialise on first write."""

    #: the event the setters and writable slices emit (the machine's bus attaches it;
    #: None: nobody listens): ``frames_written(pdx, n)`` before the store
    frames_written = None

    def __init__(self, pdx_ranges: list[tuple[int, int]], max_pdx: int):
        #: RAM frames as half-open PDX ranges, sorted.
        self.ram_pdx_ranges = list(pdx_ranges)
        self._starts = [s for s, _ in self.ram_pdx_ranges]
        self.max_pdx = max_pdx
        self.n_groups = (max_pdx + PDX_GROUP_MASK) >> PDX_GROUP_SHIFT
        valid = np.zeros(self.n_groups, dtype=bool)
        for start, end in self.ram_pdx_ranges:
            valid[start >> PDX_GROUP_SHIFT:((end - 1) >> PDX_GROUP_SHIFT) + 1] = True
        self._valid = valid
        self._ci: list[np.ndarray | None] = [None] * self.n_groups
        self._ti: list[np.ndarray | None] = [None] * self.n_groups
        self._owner: list[np.ndarray | None] = [None] * self.n_groups
        #: memoryviews of the same arrays, for the scalar reads and writes and the run
        #: comparisons (a memoryview's item is a Python int, without numpy's scalar
        #: machinery); made with the arrays, remade after a copy or a pickle
        self._ci_v: list[memoryview | None] = [None] * self.n_groups
        self._ti_v: list[memoryview | None] = [None] * self.n_groups
        self._owner_v: list[memoryview | None] = [None] * self.n_groups
        #: while a request runs: (pdx, n, old count_info, old type_info, old owner) per write
        self._journal: list | None = None
        #: nr_validated_ptes and partial_pte of preempted (de)validations (mem/_progress.py)
        self.progress = ValidationProgress()

    # -- groups ---------------------------------------------------------------
    @property
    def valid_groups(self) -> int:
        """PDX groups holding RAM: the ones Xen maps frame-table memory for."""
        return int(self._valid.sum())

    def group_valid(self, pdx: int) -> bool:
        g = pdx >> PDX_GROUP_SHIFT
        return 0 <= pdx < self.max_pdx and self._valid.item(g)

    def group_valid_many(self, pdx: np.ndarray) -> np.ndarray:
        """:meth:`group_valid` of each of ``pdx`` (an int array) at once."""
        ok = (pdx >= 0) & (pdx < self.max_pdx)
        ok[ok] = self._valid[pdx[ok] >> PDX_GROUP_SHIFT]
        return ok

    def is_ram_pdx(self, pdx: int) -> bool:
        i = bisect_right(self._starts, pdx) - 1
        return i >= 0 and pdx < self.ram_pdx_ranges[i][1]

    @property
    def materialized_groups(self) -> list[int]:
        return [g for g, a in enumerate(self._ci) if a is not None]

    def allocated_bytes(self) -> int:
        """Bytes of per-frame arrays allocated so far (plus the group bitmap)."""
        per_group = sum(a.nbytes for lst in (self._ci, self._ti, self._owner)
                        for a in lst if a is not None)
        return per_group + self._valid.nbytes

    def initial_group(self, g: int, mapped: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New arrays (count_info, type_info, owner) of group ``g`` as at boot: RAM free
        (``mapped``: outside the C heap, :func:`mapped_zeros`)."""
        base = g << PDX_GROUP_SHIFT
        if mapped:
            ci, ti, owner = (mapped_zeros(PDX_GROUP_FRAMES, t) for t in _DTYPES)
            owner.fill(DOMID_INVALID)
        else:
            ci = np.zeros(PDX_GROUP_FRAMES, dtype=np.uint64)
        i = max(bisect_right(self._starts, base) - 1, 0)
        for start, end in self.ram_pdx_ranges[i:]:
            if start >= base + PDX_GROUP_FRAMES:
                break
            lo, hi = max(start, base) - base, min(end, base + PDX_GROUP_FRAMES) - base
            if lo < hi:
                ci[lo:hi] = _FREE
        if not mapped:
            ti = np.zeros(PDX_GROUP_FRAMES, dtype=np.uint64)
            owner = np.full(PDX_GROUP_FRAMES, DOMID_INVALID, dtype=np.uint16)
        return ci, ti, owner

    def _materialize(self, g: int) -> None:
        if not self._valid[g]:
            raise IndexError(f"PDX group {g} holds no RAM: no frame table there")
        ci, ti, owner = self._ci[g], self._ti[g], self._owner[g] = self.initial_group(g, mapped=True)
        self._ci_v[g], self._ti_v[g], self._owner_v[g] = (memoryview(ci), memoryview(ti),
                                                          memoryview(owner))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for k in _VIEWS:
            del state[k]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for k, arrays in zip(_VIEWS, (self._ci, self._ti, self._owner)):
            setattr(self, k, [None if a is None else memoryview(a) for a in arrays])

    def group(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The writable arrays of group ``g``, allocating it on first use."""
        if self._ci[g] is None:
            self._materialize(g)
        return self._ci[g], self._ti[g], self._owner[g]

    def written_group(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The arrays of group ``g`` if it was ever written, else None (its frames hold
        :meth:`initial_group`); nothing is allocated. Read them, do not write them."""
        if not 0 <= g < self.n_groups or self._ci[g] is None:
            return None
        return self._ci[g], self._ti[g], self._owner[g]

    # -- scalar access ----------------------------------------------------------
    def count_info(self, pdx: int) -> int:
        v = self._ci_v[pdx >> PDX_GROUP_SHIFT]
        if v is None:
            return PGC_state_free if self.is_ram_pdx(pdx) else 0
        return v[pdx & PDX_GROUP_MASK]

    def type_info(self, pdx: int) -> int:
        v = self._ti_v[pdx >> PDX_GROUP_SHIFT]
        return 0 if v is None else v[pdx & PDX_GROUP_MASK]

    def owner(self, pdx: int) -> int:
        v = self._owner_v[pdx >> PDX_GROUP_SHIFT]
        return DOMID_INVALID if v is None else v[pdx & PDX_GROUP_MASK]

    def _log(self, pdx: int, n: int) -> None:
        """Journal frames [pdx, pdx+n) (all three words) before a slice write."""
        ci, ti, owner = self.read_slices(pdx, n)
        self._journal.append((pdx, n, ci, ti, owner))

    def set_count_info(self, pdx: int, value: int, old: int | None = None) -> None:
        """Write count_info (``old``: the value being replaced, if the caller knows it)."""
        if self.frames_written is not None:
            self.frames_written(pdx, 1)
        if self._journal is not None:
            self._journal.append((pdx, 0, self.count_info(pdx) if old is None else old))
        v = self._ci_v[pdx >> PDX_GROUP_SHIFT]
        if v is None:
            self._materialize(pdx >> PDX_GROUP_SHIFT)
            v = self._ci_v[pdx >> PDX_GROUP_SHIFT]
        v[pdx & PDX_GROUP_MASK] = value

    def set_type_info(self, pdx: int, value: int, old: int | None = None) -> None:
        if self.frames_written is not None:
            self.frames_written(pdx, 1)
        if self._journal is not None:
            self._journal.append((pdx, 1, self.type_info(pdx) if old is None else old))
        v = self._ti_v[pdx >> PDX_GROUP_SHIFT]
        if v is None:
            self._materialize(pdx >> PDX_GROUP_SHIFT)
            v = self._ti_v[pdx >> PDX_GROUP_SHIFT]
        v[pdx & PDX_GROUP_MASK] = value

    def set_owner(self, pdx: int, domid: int) -> None:
        if self.frames_written is not None:
            self.frames_written(pdx, 1)
        if self._journal is not None:
            self._journal.append((pdx, 2, self.owner(pdx)))
        self.group(pdx >> PDX_GROUP_SHIFT)[2][pdx & PDX_GROUP_MASK] = domid

    def set_frame(self, pdx: int, count_info: int, type_info: int, owner: int) -> None:
        """Write all three words of frame ``pdx`` (a slice of one frame's store, with its
        one ``frames_written(pdx, 1)``), without arrays made: a frame freed alone."""
        if self.frames_written is not None:
            self.frames_written(pdx, 1)
        g, i = pdx >> PDX_GROUP_SHIFT, pdx & PDX_GROUP_MASK
        ci, ti, own = self.group(g)
        if self._journal is not None:
            self._journal.extend(((pdx, 0, ci.item(i)), (pdx, 1, ti.item(i)), (pdx, 2, own.item(i))))
        ci[i], ti[i], own[i] = count_info, type_info, owner

    def set_many(self, pdx: np.ndarray, field: int, values: np.ndarray) -> None:
        """Write word ``field`` (0 count_info, 1 type_info) of the frames ``pdx`` (sorted,
        distinct) with ``values``: the setters' stores, events and journal, at once."""
        if self.frames_written is not None:
            for p in pdx.tolist():
                self.frames_written(p, 1)
        groups = pdx >> PDX_GROUP_SHIFT
        cuts = (np.flatnonzero(np.diff(groups)) + 1).tolist()
        for lo, hi in zip([0, *cuts], [*cuts, pdx.size]):
            a = self.group(int(groups[lo]))[field]
            idx = pdx[lo:hi] & PDX_GROUP_MASK
            if self._journal is not None:
                self._journal.extend(zip(pdx[lo:hi].tolist(), [field] * (hi - lo),
                                         a[idx].tolist()))
            a[idx] = values[lo:hi]

    # -- the request journal (a failed hypercall request leaves no trace) ---------------
    def begin(self) -> None:
        """Journal every write until :meth:`commit` or :meth:`rollback`. An entry is
        (pdx, field, old) for one word, (pdx, n, old ci, old ti, old owner) for a run of
        :meth:`slices` (arrays), or (pdx, n, old ci, old ti) for a :meth:`fill_run`
        (scalars: a uniform run, whose owners it does not write)."""
        self._journal = []

    def commit(self) -> None:
        self._journal = None

    def journal_frames(self) -> tuple[np.ndarray, ...] | None:
        """The frames written since :meth:`begin`, as arrays (None: nothing written):
        (pdx sorted, old ci, old ti, old owner, new ci, new ti, new owner), the old value
        of each word the oldest the journal holds (the value now if it was never written)."""
        journal = self._journal
        if not journal:
            return None
        lo = min(e[0] for e in journal)
        hi = max(e[0] + (e[1] if len(e) > 3 else 1) for e in journal)
        if hi - lo <= _SPAN_MAX and lo >> PDX_GROUP_SHIFT == (hi - 1) >> PDX_GROUP_SHIFT:
            return self._journal_span(journal, lo, hi)
        # per word: the journal's (pdx, old) in journal order, a slice's frames at once
        parts: list[list] = [[], [], []]
        pending: list[tuple[list, list]] = [([], []), ([], []), ([], [])]

        def flush(f):
            ps, vs = pending[f]
            if ps:
                parts[f].append((np.array(ps, np.int64), np.array(vs, _DTYPES[f])))
                pending[f] = ([], [])

        for entry in journal:
            if len(entry) == 3:                                 # one word: (pdx, field, old)
                ps, vs = pending[entry[1]]
                ps.append(entry[0])
                vs.append(entry[2])
            else:                           # a slice (three words) or a fill (two scalars)
                p, n = entry[0], entry[1]
                frames = np.arange(p, p + n, dtype=np.int64)
                for f in range(len(entry) - 2):
                    flush(f)
                    old = entry[2 + f]
                    parts[f].append((frames, old if isinstance(old, np.ndarray)
                                     else np.full(n, old, _DTYPES[f])))
        for f in range(3):
            flush(f)
        pdx = np.unique(np.concatenate([a for f in range(3) for a, _ in parts[f]]))
        new = self.gather(pdx)
        old = [a.copy() for a in new]
        for f in range(3):
            if parts[f]:
                ps = np.concatenate([a for a, _ in parts[f]])
                vs = np.concatenate([v for _, v in parts[f]])
                first, at = np.unique(ps, return_index=True)    # the oldest write of each
                old[f][np.searchsorted(pdx, first)] = vs[at]
        return (pdx, *old, *new)

    def _journal_span(self, journal: list, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        """:meth:`journal_frames` when every write lies in [lo, hi), a short span of one
        group: the span's words now, overwritten by the journal from its newest entry
        to its oldest (the oldest value wins), the frames written picked out."""
        new = self.read_slices(lo, hi - lo)
        old = [a.copy() for a in new]
        touched = np.zeros(hi - lo, dtype=bool)
        for entry in reversed(journal):
            if len(entry) == 3:                                 # one word: (pdx, field, old)
                i = entry[0] - lo
                old[entry[1]][i] = entry[2]
                touched[i] = True
            else:                           # a slice (three words) or a fill (two scalars)
                i, n = entry[0] - lo, entry[1]
                for f in range(len(entry) - 2):
                    old[f][i:i + n] = entry[2 + f]
                touched[i:i + n] = True
        idx = np.flatnonzero(touched)
        return (lo + idx, *(a[idx] for a in old), *(a[idx] for a in new))

    def gather(self, pdx: np.ndarray) -> list[np.ndarray]:
        """count_info, type_info, owner of the frames ``pdx`` (an int64 array, sorted or not),
        as new arrays, without allocating groups."""
        out = [np.empty(pdx.size, np.uint64), np.empty(pdx.size, np.uint64),
               np.empty(pdx.size, np.uint16)]
        groups = pdx >> PDX_GROUP_SHIFT
        cuts = np.flatnonzero(np.diff(groups)) + 1
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), pdx.size]):
            g = int(groups[lo])
            arrays = self.written_group(g) or self.initial_group(g)
            idx = pdx[lo:hi] & PDX_GROUP_MASK
            for f in range(3):
                out[f][lo:hi] = arrays[f][idx]
        return out

    def journal_short(self) -> bool:
        """Is the journal a few single-word writes (no slice)? :meth:`journal_changes`
        then reads it without arrays."""
        j = self._journal
        return j is not None and len(j) <= _SHORT and all(len(e) == 3 for e in j)

    def journal_changes(self) -> list[tuple[int, ...]]:
        """(pdx, old ci, old ti, old owner, new ci, new ti, new owner) for every frame written
        since :meth:`begin`, one row per frame, in pdx order (:meth:`journal_frames`)."""
        if self.journal_short():
            first: dict[int, list] = {}
            for pdx, f, old in self._journal:
                row = first.setdefault(pdx, [None, None, None])
                if row[f] is None:
                    row[f] = old                                # the oldest value of the word
            rows = []
            for pdx, row in sorted(first.items()):
                now = (self.count_info(pdx), self.type_info(pdx), self.owner(pdx))
                rows.append((pdx, *(now[f] if v is None else v for f, v in enumerate(row)), *now))
            return rows
        frames = self.journal_frames()
        return [] if frames is None else list(zip(*(a.tolist() for a in frames)))

    def rollback(self) -> bool:
        """Restore every word written since :meth:`begin`, then stop journaling."""
        journal, self._journal = self._journal or [], None
        for entry in reversed(journal):
            if len(entry) == 3:
                pdx, f, old = entry
                self.group(pdx >> PDX_GROUP_SHIFT)[f][pdx & PDX_GROUP_MASK] = old
            else:                           # a slice (three words) or a fill (two scalars)
                words = self.slices(entry[0], entry[1])
                for f in range(len(entry) - 2):
                    words[f][:] = entry[2 + f]
        return bool(journal)

    # -- slices (vectorised) ---------------------------------------------------
    def _check_slice(self, pdx: int, n: int) -> tuple[int, int]:
        g, off = pdx >> PDX_GROUP_SHIFT, pdx & PDX_GROUP_MASK
        if n < 0 or off + n > PDX_GROUP_FRAMES:
            raise ValueError(f"slice pdx {pdx:#x}+{n} crosses a PDX group boundary")
        return g, off

    def slices(self, pdx: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Writable views (count_info, type_info, owner) of frames [pdx, pdx+n).

        The range must lie in one PDX group (a 512-aligned superpage always does).
        """
        g, off = self._check_slice(pdx, n)
        if self.frames_written is not None:
            self.frames_written(pdx, n)
        ci, ti, owner = self.group(g)
        ci, ti, owner = ci[off:off + n], ti[off:off + n], owner[off:off + n]
        if self._journal is not None:                   # as _log, from the views at hand
            self._journal.append((pdx, n, ci.copy(), ti.copy(), owner.copy()))
        return ci, ti, owner

    def run_words(self, pdx: int, n: int) -> tuple[int, int] | None:
        """The (count_info, type_info) that every frame of [pdx, pdx+n) holds (a run in one
        PDX group), or None: the frames differ, the group was never written, or n is 0.
        Nothing is copied into arrays: each word's run is compared as bytes."""
        g, off = self._check_slice(pdx, n)
        ci = self._ci_v[g]
        if ci is None or not n:
            return None
        c = _same(ci, off, off + n)
        if c is None:
            return None
        t = _same(self._ti_v[g], off, off + n)
        return None if t is None else (c, t)

    def run_owner(self, pdx: int, n: int) -> int | None:
        """The owner every frame of [pdx, pdx+n) has (as :meth:`run_words`), or None."""
        g, off = self._check_slice(pdx, n)
        owner = self._owner_v[g]
        return None if owner is None or not n else _same(owner, off, off + n)

    def fill_run(self, pdx: int, n: int, old: tuple[int, int], count_info: int,
                 type_info: int | None = None) -> None:
        """Write ``count_info`` (and ``type_info`` unless None) into every frame of
        [pdx, pdx+n), whose words are all ``old`` (:meth:`run_words`): one
        ``frames_written(pdx, n)`` and one journal entry holding ``old`` as scalars."""
        g, off = self._check_slice(pdx, n)
        if not n:
            return
        if self.frames_written is not None:
            self.frames_written(pdx, n)
        if self._journal is not None:
            self._journal.append((pdx, n, *old))
        end = off + n
        self._ci[g][off:end].fill(count_info)
        if type_info is not None:
            self._ti[g][off:end].fill(type_info)

    def group_for_runs(self, g: int, firsts, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The writable arrays of group ``g`` for writing the runs [first, first+n) of
        ``firsts`` (in it) in place: each run journaled first, as :meth:`slices` does. No
        ``frames_written``: the writer reports the runs as range events."""
        if self._journal is not None:
            for first in firsts:
                self._log(int(first), n)
        return self.group(g)

    def read_slices(self, pdx: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read-only copies of frames [pdx, pdx+n), without allocating anything."""
        g, off = self._check_slice(pdx, n)
        if self._ci[g] is not None:
            return (self._ci[g][off:off + n].copy(), self._ti[g][off:off + n].copy(),
                    self._owner[g][off:off + n].copy())
        if not self._valid[g]:
            return (np.zeros(n, np.uint64), np.zeros(n, np.uint64),
                    np.full(n, DOMID_INVALID, np.uint16))
        ci, ti, owner = self.initial_group(g)
        return ci[off:off + n], ti[off:off + n], owner[off:off + n]

    # -- snapshots (tests compare the table before and after a failed call) -----
    def snapshot(self) -> dict[int, tuple[bytes, bytes, bytes]]:
        return {g: (self._ci[g].tobytes(), self._ti[g].tobytes(), self._owner[g].tobytes())
                for g in self.materialized_groups}

    def same_as(self, snap: dict[int, tuple[bytes, bytes, bytes]]) -> bool:
        """True when the table's contents equal ``snap`` (untouched groups count as initial)."""
        for g in set(snap) | set(self.materialized_groups):
            mine = self.snapshot_group(g)
            theirs = snap.get(g)
            if theirs is None:
                theirs = tuple(a.tobytes() for a in self.initial_group(g))
            if mine != theirs:
                return False
        return True

    def restore(self, snap: dict[int, tuple[bytes, bytes, bytes]]) -> None:
        """Hold exactly the words of ``snap`` (a :meth:`snapshot`; a group it lacks as at
        boot): a group that differs is written back through its writable slices (the
        ``frames_written`` event and the request journal see it)."""
        for g in sorted(set(snap) | set(self.materialized_groups)):
            want = snap.get(g)
            if want is None:
                want = tuple(a.tobytes() for a in self.initial_group(g))
            if self.snapshot_group(g) != want:
                views = self.slices(g << PDX_GROUP_SHIFT, PDX_GROUP_FRAMES)
                for v, b in zip(views, want):
                    v[:] = np.frombuffer(b, dtype=v.dtype)

    def snapshot_group(self, g: int) -> tuple[bytes, bytes, bytes]:
        if self._ci[g] is None:
            return tuple(a.tobytes() for a in self.initial_group(g))
        return self._ci[g].tobytes(), self._ti[g].tobytes(), self._owner[g].tobytes()
