"""The undo journal of the fuzzer's ``unchanged`` and ``batch`` checks: :class:`CallJournal`.

It keeps a *shadow* of the machine as it was after the last call that changed it: the
machine's inventory of state (xen/_state.py), every frame's count_info, type_info, owner
and TLB stamp and every page-table frame's contents frame by frame, and the records
(``Machine.capture_records``: the heap's free blocks, the M2P, every domain's records and
P2M, the live tables, the design's own state, the superpage table, the TLB clock) whole;
it puts them back through their owners' ``restore``. It learns from the machine's event bus
which frames and page-table frames each call writes (``frames_written``, ``range_get`` /
``range_put``, ``pages_freed``; ``guest_write``). It does not listen to ``word_changed``
(every scalar word change is a ``frames_written`` too): the vectorised forms, which step
observers such as the tracer turn off, stay on.
After a call it can tell, looking only at what the call wrote, whether the machine still
equals the shadow (:meth:`~CallJournal.changed`: a refused call must leave no trace),
bring the shadow up to date (:meth:`~CallJournal.commit`), or put the machine back as
the shadow has it (:meth:`~CallJournal.rollback`), so that a batch's requests can be
issued again one by one on the same machine and the two results compared
(:meth:`~CallJournal.capture`, :meth:`~CallJournal.differs_from`).

A write that no event reports (a raw numpy store) escapes it; :meth:`~CallJournal.verify`
compares the whole machine with the shadow, and the runner calls it with every full audit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..mem import PDX_GROUP_MASK, PDX_GROUP_SHIFT
from ..xen import ENTRIES, FRAME_EVENTS, BusWatcher, Machine, Records, records_difference, same_records

__all__ = ["CallJournal", "Capture", "same_small", "small_state"]

#: the events that name frames written (as the incremental auditor's) and page-table
#: frames written
_WATCHED = FRAME_EVENTS + ("guest_write",)
_WORDS = ("count_info", "type_info", "owner")
_ALL_ENTRIES = np.arange(ENTRIES)


def small_state(m: Machine) -> Records:
    """The records a call may change besides frames and page-table contents: the
    machine's :meth:`~xensim.xen.Machine.capture_records` (the inventory, xen/_state.py).
    Dicts and sets are kept in their iteration order, which :meth:`CallJournal.rollback`
    restores too (the generator's choices follow it); :func:`same_small` compares them
    as dicts and sets."""
    return m.capture_records()


#: are two small_state values the same records (orders aside, the TLB left out)?
same_small = same_records


def _runs(pages: np.ndarray) -> list[tuple[int, int]]:
    """The runs of consecutive PDXs inside one PDX group of sorted ``pages``, as (lo, hi)
    positions in it."""
    if pages.size <= 16:
        pl = pages.tolist()
        out, lo = [], 0
        for i in range(1, len(pl)):
            if pl[i] != pl[i - 1] + 1 or not pl[i] & PDX_GROUP_MASK:
                out.append((lo, i))
                lo = i
        out.append((lo, len(pl)))
        return out
    cuts = np.flatnonzero((np.diff(pages) != 1) | ((pages[1:] & PDX_GROUP_MASK) == 0)) + 1
    bounds = [0, *cuts.tolist(), int(pages.size)]
    return list(zip(bounds, bounds[1:]))


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """``a``'s values, sorted, each once (np.unique without its fixed cost on small arrays)."""
    if a.size > 1:
        a = np.sort(a)
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


def _first_word_difference(m: Machine, pages: np.ndarray, now: np.ndarray,
                           want: np.ndarray) -> str | None:
    """The first word where ``now`` and ``want`` ((3, len(pages)) words) differ."""
    bad = now != want
    if not bad.any():
        return None
    k, j = (int(v[0]) for v in np.nonzero(bad))
    return _word_difference(m, int(pages[j]), k, now[k, j], want[k, j])


def _word_difference(m: Machine, pdx: int, k: int, now, want) -> str:
    return f"mfn {int(m.pdx_to_mfn(pdx)):#x} {_WORDS[k]} {int(now):#x} vs {int(want):#x}"


def _table_difference(mfn: int, x: np.ndarray, y: np.ndarray) -> str | None:
    """The first entry where page-table frame ``mfn``'s contents ``x`` and ``y`` differ."""
    if x.tobytes() == y.tobytes():                  # 4 KiB each: bytes compare fastest
        return None
    i = int(np.argmax(x != y))
    return f"contents of frame {mfn:#x}[{i}]: {int(x[i]):#x} vs {int(y[i]):#x}"


@dataclass
class Capture:
    """The machine's values at the journal's dirty locations at one moment, and its small
    records: what a batch left, to compare the same requests issued one by one with."""
    pages: np.ndarray                 # PDXs, sorted
    words: np.ndarray                 # (3, len(pages)): count_info, type_info, owner
    tables: dict[int, np.ndarray]     # MFN -> its 512 entries
    small: Records


class CallJournal(BusWatcher):
    """The shadow of machine ``m`` and what was written since it was last brought up to
    date. Subscribed to ``m``'s events while attached."""

    WATCHED = _WATCHED

    def __init__(self, m: Machine):
        super().__init__(m)
        #: the machine's small_state as the last differs_from saw it
        self.last_small: Records | None = None
        self.resync()
        self.attach()

    # -- the event bus (BusWatcher: attach, detach, the frame events) ------------------
    def _on_pages_freed(self, pages, owners):
        self._freed.append(np.asarray(pages, dtype=np.int64))    # kept as the array it is

    def _on_guest_write(self, mfn, index, old, new):
        self._mfns.add(mfn)
        if isinstance(index, np.ndarray) and not self.m.pt.live_level(self.m.mfn_to_page(mfn)):
            self.plain_at_once = True             # many entries of an ordinary frame at once

    # -- the shadow ---------------------------------------------------------------------
    def resync(self) -> None:
        """The shadow becomes the machine as it is now; nothing is dirty."""
        m, ft = self.m, self.m.frame_table
        self._groups: dict[int, tuple[np.ndarray, ...]] = {}
        for g in range(ft.n_groups):
            arrays = ft.written_group(g)
            if arrays is not None:
                self._groups[g] = tuple(a.copy() for a in arrays)
        self._tables = {mfn: m.mem.table(mfn).copy() for mfn in m.mem.frames()}
        #: the TLB stamps (restored, not compared: see xen/_state.py), per PDX group
        self._stamps = {g: a.copy() for g, a in m.refs.tlb.groups.items()}
        self._stamps_seen = m.refs.tlb.version
        self._small = small_state(m)
        self._clear()

    def forget(self) -> None:
        """Nothing is dirty any more (:meth:`changed` found the machine as the shadow)."""
        self._clear()

    def _clear(self) -> None:
        self._pages: set[int] = set()
        self._ranges: list[tuple[int, int]] = []
        self._freed: list[np.ndarray] = []
        #: dirty_pages() and the sizes of the three it was made from (they only grow)
        self._dirty_key: tuple = (0, 0, 0)
        self._dirty = np.zeros(0, dtype=np.int64)
        #: the shadow's tables among the freed frames, and len(_freed) when they were found
        self._scrubbed: set[int] = set()
        self._scrubbed_key = 0
        self._mfns: set[int] = set()
        #: since: many entries of a frame that is not a live page table were written at
        #: once (mmu_update's plain-write batch accelerator; the scalar loop writes one
        #: entry a request)
        self.plain_at_once = False

    def _shadow_group(self, g: int) -> tuple[np.ndarray, ...]:
        a = self._groups.get(g)
        if a is None:                               # never written: as the table starts
            a = self._groups[g] = tuple(x.copy() for x in self.m.frame_table.initial_group(g))
        return a

    def dirty_pages(self) -> np.ndarray:
        """The PDXs written since the shadow was last brought up to date, sorted (made
        again only when something more was written)."""
        key = (len(self._pages), len(self._ranges), len(self._freed))
        if key == self._dirty_key:
            return self._dirty
        if not self._ranges and not self._freed:
            pages = np.array(sorted(self._pages), dtype=np.int64)
        else:
            ranges = sorted(set(self._ranges))
            parts = [np.arange(p, p + n, dtype=np.int64) for p, n in ranges] + self._freed
            if self._pages:
                parts.append(np.fromiter(self._pages, dtype=np.int64, count=len(self._pages)))
            pages = np.concatenate(parts) if len(parts) > 1 else parts[0]
            if len(parts) > len(ranges) or any(p + n > q for (p, n), (q, _) in
                                               zip(ranges, ranges[1:])):
                pages = _sorted_unique(pages)   # (disjoint ranges in order need no sort)
        self._dirty_key, self._dirty = key, pages
        return pages

    def dirty_tables(self) -> set[int]:
        """The MFNs whose contents were written (or first written) since, and those the
        shadow holds that were freed since (a freed frame is scrubbed: no event says so,
        ``pages_freed`` names its page)."""
        if not self._freed:
            return self._mfns
        if self._scrubbed_key != len(self._freed):
            pages = np.concatenate(self._freed) if len(self._freed) > 1 else self._freed[0]
            tables = self._tables
            self._scrubbed = {x for x in np.asarray(self.m.pdx_to_mfn(pages)).tolist()
                              if x in tables}
            self._scrubbed_key = len(self._freed)
        return self._mfns | self._scrubbed if self._scrubbed else self._mfns

    def _by_group(self, pages: np.ndarray):
        """(group, positions in ``pages``, offsets in the group) for sorted ``pages``."""
        if not pages.size:
            return
        g0, g1 = int(pages[0]) >> PDX_GROUP_SHIFT, int(pages[-1]) >> PDX_GROUP_SHIFT
        if g0 == g1:                                # the usual case: one PDX group
            yield g0, slice(None), pages & PDX_GROUP_MASK
            return
        groups = pages >> PDX_GROUP_SHIFT
        for g in np.unique(groups).tolist():
            sel = np.flatnonzero(groups == g)
            yield g, sel, pages[sel] & PDX_GROUP_MASK

    def _words(self, pages: np.ndarray, shadow: bool) -> np.ndarray:
        """(3, n) words of ``pages`` (sorted), from the shadow or the machine."""
        out = np.empty((3, pages.size), dtype=np.uint64)
        for g, sel, off in self._by_group(pages):
            arrays = self._shadow_group(g) if shadow else self._machine_group(g)
            for k in range(3):
                out[k, sel] = arrays[k][off]
        return out

    def _shadow_stamps(self, pages: np.ndarray) -> np.ndarray:
        """The shadow's TLB stamps of ``pages`` (sorted)."""
        out = np.zeros(pages.size, dtype=np.uint32)
        for g, sel, off in self._by_group(pages):
            a = self._stamps.get(g)
            if a is not None:
                out[sel] = a[off]
        return out

    def _shadow_table(self, mfn: int) -> np.ndarray:
        a = self._tables.get(mfn)
        return a if a is not None else np.zeros(ENTRIES, dtype=np.uint64)

    def _machine_group(self, g: int) -> tuple[np.ndarray, ...]:
        """The frame table's arrays of group ``g`` (as the table starts, if never written)."""
        ft = self.m.frame_table
        return ft.written_group(g) or ft.initial_group(g)

    # -- after a call ---------------------------------------------------------------------
    def capture(self, small: tuple | None = None) -> Capture:
        """The machine's values at every dirty location, and its small records, now
        (``small``: the machine's :func:`small_state`, when the caller has it)."""
        pages = self.dirty_pages()
        return Capture(pages, self._words(pages, shadow=False),
                       {mfn: self.m.mem.table(mfn).copy() for mfn in self.dirty_tables()},
                       small if small is not None else small_state(self.m))

    def changed(self) -> str | None:
        """The first difference between the machine and the shadow (None: the calls since
        the shadow was brought up to date left no trace), looking at what they wrote."""
        return self.differs_from(None)

    def differs_from(self, cap: Capture | None) -> str | None:
        """The first difference between the machine and ``cap`` (where ``cap`` has no value,
        the shadow's), over every location dirty now or in ``cap``; None: equal."""
        m = self.m
        pages = self.dirty_pages()
        tables = self.dirty_tables()
        if cap is not None:
            tables = tables | set(cap.tables)
            if cap.pages.size:
                # the capture's locations against its values, the others against the shadow
                diff = _first_word_difference(m, cap.pages, self._words(cap.pages, shadow=False),
                                              cap.words)
                if diff:
                    return diff
                if pages.size == cap.pages.size and (pages == cap.pages).all():
                    pages = pages[:0]                   # (the usual end of a batch check)
                elif pages.size:
                    n = cap.pages.size
                    pos = np.minimum(np.searchsorted(cap.pages, pages), n - 1)
                    pages = pages[cap.pages[pos] != pages]
        if pages.size:
            diff = _first_word_difference(m, pages, self._words(pages, shadow=False),
                                          self._words(pages, shadow=True))
            if diff:
                return diff
        for mfn in sorted(tables):
            y = cap.tables[mfn] if cap is not None and mfn in cap.tables else self._shadow_table(mfn)
            diff = _table_difference(mfn, m.mem.table(mfn), y)
            if diff:
                return diff
        small = self.last_small = small_state(m)
        want_small = cap.small if cap is not None else self._small
        if not same_small(small, want_small):
            return records_difference(m, small, want_small) or "the machine's records"
        return None

    def commit(self, small: tuple | None = None) -> None:
        """Bring the shadow up to date with the machine over what was written (``small``:
        the machine's :func:`small_state`, when the caller has it)."""
        m = self.m
        pages = self.dirty_pages()
        if pages.size:
            for g, _, off in self._by_group(pages):
                for x, y in zip(self._shadow_group(g), self._machine_group(g)):
                    x[off] = y[off]
            tlb = m.refs.tlb
            if tlb.version != self._stamps_seen:        # stamps written: at dirty frames
                self._stamps_seen = tlb.version
                for g, _, off in self._by_group(pages):
                    y = tlb.groups.get(g)
                    x = self._stamps.get(g)
                    if x is None and y is not None:
                        x = self._stamps[g] = np.zeros_like(y)
                    if x is not None:
                        x[off] = 0 if y is None else y[off]
        mem = m.mem
        for mfn in self.dirty_tables():
            if mem.holds(mfn):
                self._tables[mfn] = mem.table(mfn).copy()
            else:
                self._tables.pop(mfn, None)
        self._small = small if small is not None else small_state(m)
        self._clear()

    def rollback(self, small: tuple | None = None) -> None:
        """Put the machine back as the shadow has it, over what was written since (frames,
        page-table contents, the small records; ``small``: the machine's small_state, when
        the caller has it); nothing is dirty after it. Words go back
        through the frame table's and guest memory's writers, so that every subscriber
        (the incremental auditor) learns of them."""
        m, ft = self.m, self.m.frame_table
        pages = self.dirty_pages()
        tables = self.dirty_tables()
        if pages.size:
            want = self._words(pages, shadow=True)
            for lo, hi in _runs(pages):             # one writable slice each
                views = ft.slices(pages.item(lo), hi - lo)
                for k in range(3):
                    views[k][:] = want[k, lo:hi]
            tlb = m.refs.tlb
            if tlb.version != self._stamps_seen:
                tlb.set_stamps(pages, self._shadow_stamps(pages))
                self._stamps_seen = tlb.version
        for mfn in sorted(tables):
            old = self._shadow_table(mfn)
            if m.mem.table(mfn).tobytes() != old.tobytes():     # written back where it differs
                m.mem.write_many(mfn, _ALL_ENTRIES, old.copy())
        self.m.restore_records(self._small, small)
        self._clear()

    def settle(self, cap: Capture) -> None:
        """After :meth:`differs_from` found the machine equal to ``cap`` (a batch and its
        requests one by one ended alike): the records take ``cap``'s orders (the call's
        own run left them so), and the shadow is brought up to date."""
        if self.last_small != cap.small:
            self.m.restore_records(cap.small, self.last_small)
        self.commit(cap.small)

    def verify(self) -> str | None:
        """The first difference between the whole machine and the shadow (None: equal);
        with nothing dirty, a difference is a write no event reported."""
        m, ft = self.m, self.m.frame_table
        for g in range(ft.n_groups):
            if ft.written_group(g) is None and g not in self._groups:
                continue
            for k, (x, y) in enumerate(zip(self._machine_group(g), self._shadow_group(g))):
                if not np.array_equal(x, y):
                    j = int(np.argmax(x != y))
                    return _word_difference(m, (g << PDX_GROUP_SHIFT) + j, k, x[j], y[j])
        for mfn in sorted(set(m.mem.frames()) | set(self._tables)):
            diff = _table_difference(mfn, m.mem.table(mfn), self._shadow_table(mfn))
            if diff:
                return diff
        small = small_state(m)
        if not same_small(small, self._small):
            return records_difference(m, small, self._small) or "the machine's records"
        return None
