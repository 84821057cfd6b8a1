"""The undo journal of the fuzzer's ``unchanged`` and ``batch`` checks: :class:`CallJournal`.

It keeps a *shadow* of the machine as it was after the last call that changed it (every
frame's count_info, type_info and owner, every page-table frame's contents, the superpage
table, and the small records: the heap's free blocks, the M2P, every domain's records and
P2M, the live tables, the design's own state), and learns from the machine's event bus
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
from ..xen import ENTRIES, FRAME_EVENTS, BusWatcher, Machine

__all__ = ["CallJournal", "Capture", "same_small", "small_state"]

#: the events that name frames written (as the incremental auditor's) and page-table
#: frames written
_WATCHED = FRAME_EVENTS + ("guest_write",)
_WORDS = ("count_info", "type_info", "owner")
_ALL_ENTRIES = np.arange(ENTRIES)
_DOMAIN_FIELDS = ("tot_pages", "max_pages", "pinned", "marked", "is_dying", "baseptr")


def small_state(m: Machine) -> tuple:
    """The records a call may change besides frames and page-table contents, as plain
    values: (heap, M2P, domains, live tables, design state, superpage-table bytes).
    Each domain: (domid, tot_pages, max_pages, pinned, marked, is_dying, baseptr, owned
    runs, allocated runs, P2M). Dicts and sets are kept in their iteration order, which
    :meth:`CallJournal.rollback` restores too (the generator's choices follow it);
    :func:`same_small` compares them as dicts and sets."""
    doms = tuple([
        (d.domid, d.tot_pages, d.max_pages, tuple(d.pinned.items()) if d.pinned else (),
         tuple(d.marked) if d.marked else (), d.is_dying, d.baseptr, d.owned.snapshot(),
         d.allocated.snapshot(), (d.p2m.snapshot(), d.p2m.count))
        for d in m.domains.values()])
    return (m.heap.snapshot(), (m.m2p.snapshot(), m.m2p.count), doms,
            tuple(m.pt.live.items()), m.superpage.snapshot(), m.spage_table.store.tobytes())


def _normal(st: tuple) -> tuple:
    """:func:`small_state` with its orders taken out (domains by domid, pins, marks and
    live tables sorted)."""
    heap, m2p, doms, live, design, spage = st
    doms = tuple(sorted((d[:3] + (tuple(sorted(d[3])), tuple(sorted(d[4]))) + d[5:]) for d in doms))
    return (heap, m2p, doms, tuple(sorted(live)), design, spage)


def same_small(a: tuple, b: tuple) -> bool:
    """Are two :func:`small_state` values the same records (orders aside)?"""
    return a == b or _normal(a) == _normal(b)


def _small_difference(m: Machine, a: tuple, b: tuple) -> str | None:
    """What differs between two :func:`small_state` values (``a`` the machine's side)."""
    a, b = _normal(a), _normal(b)
    if a[0] != b[0]:
        return "the heap's free blocks"
    if a[1] != b[1]:
        return "the M2P"
    da, db = {d[0]: d for d in a[2]}, {d[0]: d for d in b[2]}
    if set(da) != set(db):
        return f"domains {sorted(da)} vs {sorted(db)}"
    for domid, x in da.items():
        y = db[domid]
        for k, f in enumerate(_DOMAIN_FIELDS, start=1):
            if x[k] != y[k]:
                return f"dom{domid}.{f}: {x[k]} vs {y[k]}"
        for k, f in ((7, "owned"), (8, "allocated")):
            if x[k] != y[k]:
                return f"dom{domid}.{f}"
        if x[9] != y[9]:
            return f"dom{domid}'s P2M"
    if a[3] != b[3]:
        return "the live page tables"
    if a[4] != b[4]:
        return f"the {m.superpage.name} design's own state"
    if a[5] != b[5]:
        sa = np.frombuffer(a[5], dtype=np.uint64).reshape(m.spage_table.store.shape)
        sb = np.frombuffer(b[5], dtype=np.uint64).reshape(sa.shape)
        w, e = (int(v[0]) for v in np.nonzero(sa != sb))
        return f"superpage table entry {e} word {w}: {int(sa[w, e]):#x} vs {int(sb[w, e]):#x}"
    return None


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
    small: tuple


class CallJournal(BusWatcher):
    """The shadow of machine ``m`` and what was written since it was last brought up to
    date. Subscribed to ``m``'s events while attached."""

    WATCHED = _WATCHED

    def __init__(self, m: Machine):
        super().__init__(m)
        #: the machine's small_state as the last differs_from saw it
        self.last_small: tuple | None = None
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
        #: the domain objects of now: rollback puts back one a call removed (a dying
        #: domain goes when its last frame is freed)
        self._gone = dict(self.m.domains)

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
            return _small_difference(m, small, want_small) or "the machine's records"
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
        for mfn in sorted(tables):
            old = self._shadow_table(mfn)
            if m.mem.table(mfn).tobytes() != old.tobytes():     # written back where it differs
                m.mem.write_many(mfn, _ALL_ENTRIES, old.copy())
        self._restore_small(self._small, small)
        self._clear()

    def _restore_small(self, st: tuple, now: tuple | None = None) -> None:
        """The small records as ``st`` (a :func:`small_state`) has them, orders included;
        only what differs from ``now`` (the machine's small_state) is rebuilt."""
        m = self.m
        if now is None:
            now = small_state(m)
        heap, m2p, doms, live, design, spage = st
        if now[0] != heap:
            m.heap.restore(heap)
        if now[1] != m2p:
            m.m2p.restore(*m2p)
        if now[2] != doms:
            if not set(m.domains) <= {d[0] for d in doms}:
                raise AssertionError("a domain appeared in a batch: the journal cannot undo that")
            was = {rec[0]: rec for rec in now[2]}
            objs = {rec[0]: self._domain(rec[0]) for rec in doms}
            if tuple(m.domains) != tuple(objs):
                m.domains.clear()
                m.domains.update(objs)
            for rec in doms:
                cur = was.get(rec[0])
                if cur == rec:
                    continue
                d = objs[rec[0]]
                d.tot_pages, d.max_pages = rec[1], rec[2]
                if cur is None or cur[3] != rec[3]:
                    d.pinned = dict(rec[3])
                if cur is None or cur[4] != rec[4]:
                    d.marked = set(rec[4])
                d.is_dying, d.baseptr = rec[5], rec[6]
                if cur is None or cur[7] != rec[7]:
                    d.owned.restore(rec[7])
                if cur is None or cur[8] != rec[8]:
                    d.allocated.restore(rec[8])
                if cur is None or cur[9] != rec[9]:
                    d.p2m.restore(*rec[9])
        if now[3] != live:
            m.pt.live.clear()
            m.pt.live.update(live)
        if now[4] != design:
            m.superpage.restore(design)
        if now[5] != spage:
            m.spage_table.store[...] = np.frombuffer(spage, dtype=np.uint64).reshape(
                m.spage_table.store.shape)

    def settle(self, cap: Capture) -> None:
        """After :meth:`differs_from` found the machine equal to ``cap`` (a batch and its
        requests one by one ended alike): the records take ``cap``'s orders (the call's
        own run left them so), and the shadow is brought up to date."""
        if self.last_small != cap.small:
            self._restore_small(cap.small, self.last_small)
        self.commit(cap.small)

    def _domain(self, domid: int):
        d = self.m.domains.get(domid)
        return d if d is not None else self._gone[domid]    # freed with its last frame

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
            return _small_difference(m, small, self._small) or "the machine's records"
        return None
