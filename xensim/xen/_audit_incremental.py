"""The incremental auditor: after each call, recount only what the call changed.

:func:`~xensim.xen.audit` recounts every frame of the machine; checking after every
call that way costs the machine, not the call. :class:`IncrementalAuditor` learns from
the machine's event bus what was written since its last check (``frames_written``,
``range_get`` / ``range_put``, ``pages_freed``: frames, not ``word_changed``, which only
repeats a ``frames_written`` and would turn the vectorised forms off;
``spage_cmpxchg`` / ``spage_write`` / ``spage_write_many``: superpage words;
``guest_write``: page-table contents) and compares the domains' records and the live
tables with its own copies of them. Then it recounts, from first principles, the
frames concerned: those written, those whose expectation moved (targets of entries
written, frames of a superpage whose PSE entries or mark changed, frames allocated,
freed, pinned or unpinned, base pointers).

It stays independent: it never reads a counter to compute an expectation. A frame's
expectation is its domain's allocation and pins, the live entries that point at it
(its own reverse map, kept from the page tables' contents it observes, never from the
refcount code's bookkeeping), the base pointers, and the design's expectation of its
superpage (:meth:`~xensim.designs.SuperpageDesign.expect_superpages`). The comparison
is the full auditor's own (``recount``, ``check_spage_entries``, ``check_holders``,
``check_partition`` of ``_audit``), so a difference reads the same in both.

What it cannot see is a write that bypasses every emitter (a raw numpy store); the
full audit every N calls and at the end of a campaign catches those.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np

from ._audit import (AuditReport, Difference, Expected, check_holders, check_linear,
                     check_partition,
                     check_spage_entries, owner_lookup, recount)
from ._baseptr import PGT_root_page_table, root_mfns
from ._bus_watcher import FRAME_EVENTS, BusWatcher
from ._validate import partial_pse
from ._pagetable import (CHILD_TYPES, LEVEL_TYPES, PADDR_MASK, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW,
                         is_xen_slot)
from ..mem import (DOMID_INVALID, PAGE_SHIFT, PGC_state_free, PGT_l4_page_table, PGT_writable_page,
                   SUPERPAGE_ORDER, SUPERPAGE_PAGES, merge_ranges)

_U = np.uint64
#: at most this many frames: converted one by one (more: as arrays)
_SMALL = 64
#: the events the auditor listens to (what was written since the last check)
WATCHED = FRAME_EVENTS + ("spage_cmpxchg", "spage_write", "spage_write_many", "guest_write")


class IncrementalAuditor(BusWatcher):
    """Subscribed to machine ``m``'s events: :meth:`check` recounts what changed since the
    previous check (or since it was made: the machine may be in any state then).

    ``checks`` counts the checks, ``frames_checked`` the frames they recounted.
    """

    WATCHED = WATCHED

    def __init__(self, m):
        super().__init__(m)
        self.checks = 0
        self.frames_checked = 0
        #: the frames (MFNs) and superpages (first MFNs) the last check recounted
        self.last_frames: set[int] = set()
        self.last_superpages: set[int] = set()
        self.resync()
        self.attach()

    # -- the event bus (BusWatcher: attach, detach, the frame events) ------------------
    def _on_spage_cmpxchg(self, where, spdx, word, expected, found, new, won):
        if won:
            self._spdx.add(spdx)

    def _on_spage_write(self, where, spdx, word, old, new):
        self._spdx.add(spdx)

    def _on_spage_write_many(self, where, spdx, word, old, new):
        self._spdx.update(np.asarray(spdx).tolist())

    def _on_guest_write(self, mfn, index, old, new):
        self._contents.add(mfn)

    # -- the auditor's own copies -----------------------------------------------------------
    def resync(self) -> None:
        """Forget what was written and copy the machine's records and live tables afresh."""
        m = self.m
        self._pages: set[int] = set()
        self._ranges: list[tuple[int, int]] = []
        self._spdx: set[int] = set()
        self._contents: set[int] = set()
        #: live tables: page -> (level, domid, its 512 entries as last seen)
        self._tables: dict[int, tuple[int, int, np.ndarray]] = {}
        self._table_mfns: dict[int, int] = {}             # their MFNs -> pages
        self._table_sorted: list[int] | None = None       # those MFNs, sorted (None: to sort)
        self._live: dict[int, tuple[int, int]] = dict(m.pt.live)   # page -> (level, domid)
        #: reverse map: target mfn -> {(table page, index): entry}; PSE entries by superpage
        self._rev: dict[int, dict[tuple[int, int], int]] = {}
        self._pse: dict[int, dict[tuple[int, int], int]] = {}
        self._doms: dict[int, tuple] = {}
        #: from the records (None: to be rebuilt): every domain's owned runs
        #: (start, end, domain) by start, and its pins (mfn, domid, type), in domain order
        self._owned_all: tuple | None = None
        self._pins: tuple | None = None
        self._extra_frames: set[int] = set()              # what other contributors spoke of
        #: what they said at the last check (None: to be recounted), and whether that
        #: check found the machine as expected
        self._extra: Expected | None = None
        self._clean = False
        dirty = _Dirty()
        for page, (level, domid) in m.pt.live.items():
            self._refresh_table(page, (level, domid), dirty)
        for domid, d in m.domains.items():
            self._doms[domid] = _record(d)

    def _refresh_table(self, page: int, now, dirty: "_Dirty") -> None:
        """Bring table ``page``'s copy (and the reverse map) up to date; ``now`` is its
        (level, domid) if live, else None. The targets of every entry that changed are dirty."""
        m = self.m
        old = self._tables.get(page)
        mfn = int(m.pdx_to_mfn(page))
        new_entries = m.mem.table(mfn).copy() if now is not None else None
        if old is not None and now is not None and (old[0], old[1]) == tuple(now):
            changed = np.flatnonzero(old[2] != new_entries)
        else:
            changed = None                              # everything the table held changes
        if old is not None:
            self._relink(old[0], page, old[2], changed, dirty, False)
        if now is None:
            self._tables.pop(page, None)
            if self._table_mfns.pop(mfn, None) is not None:
                self._table_sorted = None
            return
        level, domid = now
        self._relink(level, page, new_entries, changed, dirty, True)
        self._tables[page] = (level, domid, new_entries)
        if mfn not in self._table_mfns:
            self._table_sorted = None
        self._table_mfns[mfn] = page

    def _relink(self, level, page, ents, changed, dirty: "_Dirty", link: bool) -> None:
        """Enter (``link``) or remove the present entries of table ``page`` (``ents``; only
        those at ``changed`` if not None) in the reverse map; their targets are dirty."""
        idx = np.flatnonzero(ents & _U(_PAGE_PRESENT)) if changed is None else \
            changed[(ents[changed] & _U(_PAGE_PRESENT)) != 0]
        if level == 4:                                   # Xen's own slots are not the guest's
            idx = idx[[not is_xen_slot(4, i) for i in idx.tolist()]] if idx.size else idx
        if not idx.size:
            return
        vals = ents[idx]
        targets = ((vals & _U(PADDR_MASK)) >> _U(PAGE_SHIFT)).tolist()
        pse = ((vals & _U(_PAGE_PSE)) != 0).tolist() if level == 2 else None
        keys = [(page, i) for i in idx.tolist()]
        if pse is None or not any(pse):                  # frames only (the usual)
            dirty.frames.update(targets)
            self._enter(self._rev, zip(targets, keys, vals.tolist()), link)
            return
        rev = [k for k, p in enumerate(pse) if not p]
        sup = [k for k, p in enumerate(pse) if p]
        vl = vals.tolist()
        dirty.frames.update(targets[k] for k in rev)
        dirty.superpages.update(targets[k] for k in sup)
        self._enter(self._rev, ((targets[k], keys[k], vl[k]) for k in rev), link)
        self._enter(self._pse, ((targets[k], keys[k], vl[k]) for k in sup), link)

    @staticmethod
    def _enter(where: dict, items, link: bool) -> None:
        """Enter (``link``) or remove the (target, (page, index), entry) ``items`` in the
        reverse map ``where``."""
        if link:
            for target, key, e in items:
                got = where.get(target)
                if got is None:
                    where[target] = {key: e}
                else:
                    got[key] = e
        else:
            for target, key, _ in items:
                got = where.get(target)
                if got is not None:
                    got.pop(key, None)
                    if not got:
                        del where[target]

    # -- one check ----------------------------------------------------------------------
    def check(self) -> AuditReport:
        """Recount what changed since the previous check; the report lists what differs."""
        m = self.m
        self.checks += 1
        dirty = _Dirty()
        # frames written (PDX -> MFN): a run of PDXs whose MFNs are a run too (PDX
        # compression is increasing: its ends say) as that run, the rest a few one by
        # one, more as arrays
        to_mfn = m.pdx_to_mfn
        split = []
        for first, n in self._ranges:
            if n <= 0:
                continue
            lo = int(to_mfn(first))
            if int(to_mfn(first + n - 1)) - lo == n - 1:
                dirty.ranges.append((lo, lo + n))
            else:
                split.append((first, n))
        if len(self._pages) + sum(n for _, n in split) > _SMALL:
            pdx = np.concatenate([np.fromiter(self._pages, np.uint64, len(self._pages))]
                                 + [np.arange(p, p + n, dtype=np.uint64) for p, n in split])
            dirty.frames.update(np.asarray(m.pdx_to_mfn(pdx), dtype=np.int64).tolist())
        else:
            dirty.frames.update(int(to_mfn(p)) for p in self._pages)
            for first, n in split:
                dirty.frames.update(int(to_mfn(p)) for p in range(first, first + n))
        for spdx in self._spdx:                          # words only: the frames' runs
            dirty.words.add(int(m.pdx_to_mfn(spdx << SUPERPAGE_ORDER)))   # follow entries, marks
        # the live tables and their contents
        live, tables = m.pt.live, self._tables
        touched = {m.mfn_to_page(mfn) for mfn in self._contents if m.mfn_valid(mfn)}
        if live != self._live:                           # tables made live, dead, re-owned
            touched.update(p for p in live.keys() | tables.keys()
                           if live.get(p) != (tables[p][:2] if p in tables else None))
            self._live = dict(live)
        table_mfns = self._table_mfns                    # e.g. a table frame scrubbed
        touched.update(table_mfns[mfn] for mfn in dirty.frames & table_mfns.keys())
        if dirty.ranges:                                 # the tables among the runs
            if self._table_sorted is None:
                self._table_sorted = sorted(table_mfns)
            ts = self._table_sorted
            for lo, hi in merge_ranges(sorted(dirty.ranges)):
                touched.update(table_mfns[mfn] for mfn in ts[bisect_left(ts, lo):bisect_left(ts, hi)])
        for page in touched:
            if page in live or page in tables:
                self._refresh_table(page, live.get(page), dirty)
        # the domains' records
        doms = m.domains
        for domid in doms if doms.keys() == self._doms.keys() else doms.keys() | self._doms:
            d = m.domains.get(domid)
            was = self._doms.get(domid)
            now = _record(d, was) if d is not None else None
            if now is not was and now != was:
                self._record_changed(was, now, dirty)
                self._owned_all = self._pins = None
                if now is None:
                    del self._doms[domid]
                else:
                    self._doms[domid] = now
        self._pages, self._ranges, self._spdx, self._contents = set(), [], set(), set()
        return self._recount(dirty)

    def _record_changed(self, was, now, dirty: "_Dirty") -> None:
        empty = ([], [], {}, frozenset(), None, None)
        was, now = was or empty, now or empty
        for k in (0, 1):                                 # owned, allocated
            if was[k] != now[k]:
                dirty.ranges.extend(_sym_diff(was[k], now[k]))
        m = self.m
        for page in set(was[2]) | set(now[2]):           # pins
            if was[2].get(page) != now[2].get(page):
                dirty.frame(int(m.pdx_to_mfn(page)))
        for mfn in was[3] ^ now[3]:                      # marks
            dirty.superpage(mfn)
        if was[4] != now[4]:                             # the vCPUs' root tables
            for mfn in set(was[4] or ()) | set(now[4] or ()):
                dirty.frame(mfn)

    def _recount(self, dirty: "_Dirty") -> AuditReport:
        m = self.m
        rep = AuditReport()
        # their frames' expectations moved
        dirty.ranges.extend((s, s + SUPERPAGE_PAGES) for s in dirty.superpages)
        # contributors other than the page tables (e.g. a test's external holder): asked
        # every time; the frames they speak of now or spoke of last time are recounted
        # (unless they say what they said at the last check, which found the machine as
        # expected: then their frames are recounted only if dirty for another reason)
        extra = Expected()
        for contribute in m.audit_contributors:
            if contribute != m.pt.expect:
                contribute(m, extra)
        if not (self._clean and _same_expected(extra, self._extra)):
            now = extra.frames()
            if now or self._extra_frames:
                dirty.frames |= now | self._extra_frames
            self._extra_frames = now
        self._extra = extra
        fset = dirty.frames
        runs, n_frames = _ram_runs(fset, dirty.ranges, m.memmap.frame_ranges)
        for s, e in merge_ranges(sorted(dirty.ranges)):  # (a superpage's run often twice)
            fset.update(range(s, e))
        sps = dirty.superpages | dirty.words
        sps.update(_superpages_of(m, runs))
        exp = self._expected(fset, sps, extra) if fset or sps else _EMPTY_EXPECTED
        for c in exp.conflicts:
            rep.add(c)
        owned_all, starts, whose = self._owned_runs(rep)
        owned = _clip(owned_all, starts, runs)
        if not self._partition_ok(n_frames, runs, owned):
            check_partition(m, owned_all, m.heap.free_ranges(), rep)
        recount(m, owned, exp, rep, self._pinned_mfns(),
                {domid: rec[1] for domid, rec in self._doms.items()})
        table = m.spage_table
        entries = {table.entry_index(m.mfn_to_page(sp) >> SUPERPAGE_ORDER) for sp in sps}
        entries.discard(-1)
        check_spage_entries(m, exp, rep, entries)
        check_holders(exp, whose, rep)
        if m.pt.linear_pt_count or fset:
            check_linear(m, rep)              # 4.10 on: every live table's linear entries
        self.frames_checked += n_frames
        rep.frames_checked = n_frames
        self.last_frames, self.last_superpages = fset, sps
        self._clean = rep.ok
        return rep

    def _pinned(self) -> list[tuple[int, int, int]]:
        """(mfn, domid, type) of every pin, from the records, in the full audit's order."""
        if self._pins is None:
            m = self.m
            pins = [(int(m.pdx_to_mfn(page)), domid, type) for domid in m.domains
                    for page, type in self._doms[domid][2].items()]
            sets: dict[int, set[int]] = {domid: set() for domid in m.domains}
            by_mfn: dict[int, list[int]] = {}
            for k, (mfn, domid, _) in enumerate(pins):
                sets[domid].add(mfn)
                by_mfn.setdefault(mfn, []).append(k)
            self._pins = (pins, sets, by_mfn)
        return self._pins[0]

    def _pinned_in(self, frames: set) -> list[tuple[int, int, int]]:
        """Those of :meth:`_pinned` whose frame is in ``frames``, in its order."""
        pins = self._pinned()
        by_mfn = self._pins[2]
        if len(frames) >= len(by_mfn):
            return [p for p in pins if p[0] in frames]
        at = [k for mfn in frames if mfn in by_mfn for k in by_mfn[mfn]]
        return [pins[k] for k in sorted(at)]

    def _pinned_mfns(self) -> dict[int, set[int]]:
        """Each domain's pinned MFNs (:func:`~._audit.recount`'s ``pins``)."""
        self._pinned()
        return self._pins[1]

    def _owned_runs(self, rep: AuditReport) -> list:
        """:func:`~._audit.owned_runs_of` from the records the auditor keeps (the runs
        sorted again only when a domain's records changed), the runs' starts and
        :func:`~._audit.owner_lookup` of them."""
        m = self.m
        for d in m.domains.values():
            if d.tot_pages != len(d.owned):
                rep.add(Difference(-1, f"dom{d.domid}.tot_pages", len(d.owned), d.tot_pages))
        if self._owned_all is None:
            runs = [(s, e, d) for d in m.domains.values() for s, e in self._doms[d.domid][0]]
            runs.sort(key=_start)
            self._owned_all = (runs, [r[0] for r in runs], owner_lookup(runs))
        return self._owned_all

    # -- what the last check looked at (the fuzzer's incremental isolation check) -----------
    def table_mfns(self) -> set[int]:
        """The MFNs of the live tables, as of the last check."""
        return set(self._table_mfns)

    def tables_in(self, mfns: set) -> list[int]:
        """Those of ``mfns`` that are live tables, as of the last check, sorted."""
        tables = self._table_mfns
        if len(mfns) > len(tables):
            return sorted(mfns.intersection(tables))
        return sorted(mfn for mfn in mfns if mfn in tables)

    def entries_to(self, mfn: int, pse: bool = False) -> list[tuple[int, int, int, int, int]]:
        """(table mfn, level, domid, index, entry) of every live entry that maps ``mfn``
        (``pse``: the PSE entries of the superpage whose first frame it is), as of the
        last check, by table and index."""
        out = []
        for (page, i), e in (self._pse if pse else self._rev).get(mfn, {}).items():
            level, domid, _ = self._tables[page]
            out.append((int(self.m.pdx_to_mfn(page)), level, domid, i, e))
        return sorted(out)

    def sole_domain(self, mfn: int, pse: bool = False) -> int | None:
        """The domid of the live tables whose entries map ``mfn`` (``pse``: PSE entries of
        the superpage whose first frame it is) if they are one domain's, else None (none
        or several), as of the last check."""
        ents = (self._pse if pse else self._rev).get(mfn)
        if not ents:
            return None
        tables = self._tables
        it = iter(ents)
        domid = tables[next(it)[0]][1]
        for page, _ in it:
            if tables[page][1] != domid:
                return None
        return domid

    def mapped(self, mfns: set, pse: bool = False) -> list[int]:
        """Those of ``mfns`` some live entry maps (``pse``: superpages some PSE entry maps),
        as of the last check, sorted."""
        return sorted(mfns & (self._pse if pse else self._rev).keys())

    def _partition_ok(self, n_frames: int, runs: list, owned) -> bool:
        """Each of the ``n_frames`` frames of ``runs`` (RAM) is owned once or free, and a
        free one is as at boot; else the full partition check reports what is wrong, as
        the full audit does."""
        m = self.m
        if sum(len(d.owned) for d in m.domains.values()) + m.heap.free_frames != m.memmap.ram_frames:
            return False
        free = [r for s, e in runs for r in m.heap.free_in(s, e)]
        # owned (clipped to the runs) and free parts, disjoint, cover the frames exactly
        parts = sorted([(s, e) for s, e, _ in owned] + free)
        end = -1
        for s, e in parts:
            if s < end:
                return False
            end = e
        if sum(e - s for s, e in parts) != n_frames:
            return False
        for lo, hi in free:
            for pdx, k in m.pdx_runs(lo, hi - lo):
                ci, ti, owner = m.frame_table.read_slices(pdx, k)
                if ((ci != _U(PGC_state_free)) | (ti != 0) | (owner != DOMID_INVALID)).any():
                    return False
        return True

    def _expected(self, frames: set, sps: set, extra: Expected) -> Expected:
        """What contributors say ``frames`` and superpages ``sps`` hold, in the full audit's
        order of contributions (pins, live entries, base pointers, the design)."""
        m = self.m
        exp = Expected()
        for mfn, domid, type in self._pinned_in(frames):
            exp.typed(mfn, domid, type)
        # the live entries, in the full audit's order only where it matters: a frame two
        # entries give different types (which conflicts first), a superpage mapped by two
        # domains (whose its expectation is)
        order = _LiveOrder(m.pt.live)
        tables, live = self._tables, m.pt.live
        rev = self._rev
        targets = sorted(frames & rev.keys())
        if len(targets) > _SMALL:
            targets = self._single_l1_entries(exp, targets)
        for target in targets:
            ents = rev[target]
            if len(ents) == 1:                           # the usual: one L1 entry, no order
                ((page, _), e), = ents.items()
                level, domid, _ = tables[page]
                if level == 1:
                    if e & _PAGE_RW:
                        exp.typed(target, domid, PGT_writable_page)
                    else:
                        exp.ref(target, domid)
                    continue
            got = []
            for item in ents.items():
                (page, i), e = item
                level, domid, _ = tables[page]
                if level == 1:
                    type = PGT_writable_page if e & _PAGE_RW else None
                elif target == int(m.pdx_to_mfn(page)):
                    continue
                elif m.mfn_valid(target) and live.get(m.mfn_to_page(target), (0,))[0] == level:
                    type = LEVEL_TYPES[level]
                else:
                    type = CHILD_TYPES[level]
                got.append((item, domid, type))
            if len({type for _, _, type in got if type is not None}) > 1:
                got.sort(key=lambda g: order.of(g[0]))
            for _, domid, type in got:
                if type is None:
                    exp.ref(target, domid)
                else:
                    exp.typed(target, domid, type)
        pse: dict[int, list[int]] = {}
        for sp in sorted(sps & self._pse.keys()):
            ents = self._pse[sp]
            doms = {tables[page][1] for page, _ in ents}
            first = next(iter(doms)) if len(doms) == 1 else \
                tables[min(ents.items(), key=order.of)[0][0]][1]
            c = pse[sp] = [0, 0, first]
            for e in ents.values():
                c[1 if e & _PAGE_RW else 0] += 1
            for domid in doms:
                exp.holds(sp, SUPERPAGE_PAGES, domid)
        for sp, rw, domid in partial_pse(m):             # PGT_partial L2s' PSE entries
            if sp in sps:
                c = pse.setdefault(sp, [0, 0, domid])
                c[1 if rw else 0] += 1
                exp.holds(sp, SUPERPAGE_PAGES, domid)
        doms = self._doms
        for domid in m.domains:                        # each vCPU's root tables (records')
            for root in doms[domid][4]:
                if root in frames:
                    exp.typed(root, domid, PGT_root_page_table)
        exp.privileged.add(0)
        design = Expected()
        m.superpage.expect_superpages(design, pse, sorted(sps))
        # keep what concerns these superpages (a design may say more, see expect_superpages)
        spdx = {m.mfn_to_page(sp) >> SUPERPAGE_ORDER for sp in sps}
        if design.refs or design.types or design.runs or design.holder or design.spage \
                or design.conflicts:
            exp.merge(design, _Either(frames, sps),
                      lambda r: m.mfn_to_page(r[0]) >> SUPERPAGE_ORDER in spdx, spdx)
        if extra.refs or extra.types or extra.runs or extra.holder or extra.conflicts \
                or extra.granted:
            exp.merge(extra, frames)                     # the machine's other contributors
        exp.privileged |= design.privileged | extra.privileged
        return exp


    def _single_l1_entries(self, exp: Expected, targets: list[int]) -> list[int]:
        """Of ``targets`` (sorted), those one L1 entry maps, added to ``exp`` at once (per
        domain, writable and read-only) unless one of them has a type expected already
        (then, as the rest, one by one in order: a conflict is listed where the loop
        lists it); the rest, in order."""
        rev, tables = self._rev, self._tables
        rw: dict[int, list[int]] = {}
        ro: dict[int, list[int]] = {}
        rest = []
        for target in targets:
            ents = rev[target]
            if len(ents) == 1:
                ((page, _), e), = ents.items()
                level, domid, _ = tables[page]
                if level == 1:
                    (rw if e & _PAGE_RW else ro).setdefault(domid, []).append(target)
                    continue
            rest.append(target)
        types = exp.types
        if any(t in types for ts in rw.values() for t in ts):
            return targets
        for domid, ts in rw.items():
            exp.typed_many(np.array(ts, dtype=np.int64), domid, PGT_writable_page)
        for domid, ts in ro.items():
            exp.refs_many(np.array(ts, dtype=np.int64), domid)
        return rest


#: the expectation of nothing (no frame, no superpage dirty), read only
_EMPTY_EXPECTED = Expected()


class _LiveOrder:
    """The full audit's order of live entries (tables in ``live``'s order, then index),
    built only when two entries must be ordered."""
    __slots__ = ("live", "rank")

    def __init__(self, live):
        self.live, self.rank = live, None

    def of(self, item) -> tuple[int, int]:
        """The sort key of an item ((table page, index), entry) of the reverse map."""
        if self.rank is None:
            self.rank = {page: k for k, page in enumerate(self.live)}
        (page, i), _ = item
        return self.rank[page], i


class _Dirty:
    """Frames (MFNs) and superpages (first MFNs) one check must recount."""
    __slots__ = ("frames", "ranges", "superpages", "words")

    def __init__(self):
        self.frames: set[int] = set()
        #: half-open runs of MFNs, dirty too (kept as runs until the recount)
        self.ranges: list[tuple[int, int]] = []
        #: superpages whose 512 frames' expectation moved (PSE entries, marks)
        self.superpages: set[int] = set()
        #: superpages whose words were written (only the words to check)
        self.words: set[int] = set()

    def frame(self, mfn: int) -> None:
        self.frames.add(mfn)

    def superpage(self, mfn: int) -> None:
        self.superpages.add(mfn)


class _Either:
    """The union of two sets, for ``in`` only (no union built)."""
    __slots__ = ("a", "b")

    def __init__(self, a: set, b: set):
        self.a, self.b = a, b

    def __contains__(self, x) -> bool:
        return x in self.a or x in self.b


def _same_expected(a: Expected, b: Expected | None) -> bool:
    """Do two expectations say the same (every field, in order where it is a list)?"""
    return b is not None and a.refs == b.refs and a.types == b.types and a.runs == b.runs \
        and a.conflicts == b.conflicts and a.holder == b.holder and a.spage == b.spage \
        and a.privileged == b.privileged and a.granted == b.granted


def _start(run) -> int:
    return run[0]


def _record(d, was: tuple | None = None) -> tuple:
    """A domain's records as the auditor compares them between checks: its owned and
    allocated runs (those of ``was``, its previous record, if the sets have not changed
    since), pins, marks, the vCPUs' root tables, and which objects they are."""
    owned, allocated = d.owned, d.allocated
    sets = (id(d), id(owned), owned.version, id(allocated), allocated.version)
    roots = root_mfns(d)
    if was is not None and was[5] == sets:
        if roots == was[4] and d.pinned == was[2] and d.marked == was[3]:
            return was                                   # nothing changed: the same record
        runs = was[0], was[1]
    else:
        runs = owned.runs(), allocated.runs()
    return (runs[0], runs[1], dict(d.pinned), frozenset(d.marked), roots, sets)


def _sym_diff(a, b) -> list[tuple[int, int]]:
    """The ranges in exactly one of the run lists ``a`` and ``b`` (sorted, disjoint each)."""
    edges = sorted([(s, 1) for s, _ in a] + [(e, -1) for _, e in a]
                   + [(s, 1) for s, _ in b] + [(e, -1) for _, e in b])
    out, depth, prev = [], 0, None
    for x, step in edges:
        if prev is not None and depth == 1 and x > prev:
            if out and out[-1][1] == prev:
                out[-1] = (out[-1][0], x)
            else:
                out.append((prev, x))
        depth += step
        prev = x
    return out


def _ram_runs(frames: set, ranges: list, ram) -> tuple[list[tuple[int, int]], int]:
    """Those of ``frames`` and of the half-open ``ranges`` of MFNs in one of the half-open
    ``ram`` runs (sorted, touching ones merged) as sorted half-open runs of consecutive
    MFNs, and how many they are."""
    if len(frames) <= _SMALL:
        spans = [(f, f + 1) for f in frames]
    else:
        a = np.fromiter(frames, np.int64, len(frames))
        a.sort()
        cuts = np.flatnonzero(np.diff(a) != 1) + 1
        spans = list(zip(a[np.concatenate(([0], cuts))].tolist(),
                         (a[np.concatenate((cuts - 1, [a.size - 1]))] + 1).tolist()))
    spans += ranges
    spans.sort()
    out: list[tuple[int, int]] = []
    n = 0
    for rs, re_ in ram:                                  # each RAM run's part, merged
        for s, e in spans:
            lo, hi = max(s, rs), min(e, re_)
            if lo >= hi:
                continue
            if out and out[-1][1] >= lo:
                if hi > out[-1][1]:
                    n += hi - out[-1][1]
                    out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
                n += hi - lo
    return out, n


def _superpages_of(m, runs: list) -> set[int]:
    """The first MFNs of the superpages (by PDX) of the frames of ``runs`` (runs of
    consecutive RAM frames: consecutive PDXs too)."""
    to_pdx, to_mfn = m.mfn_to_pdx, m.pdx_to_mfn
    out = set()
    for s, e in runs:
        for spdx in range(to_pdx(s) >> SUPERPAGE_ORDER, (to_pdx(e - 1) >> SUPERPAGE_ORDER) + 1):
            out.add(int(to_mfn(spdx << SUPERPAGE_ORDER)))
    return out


def _clip(owned_runs, starts: list, runs: list) -> list:
    """The parts of ``owned_runs`` ((start, end, domain), sorted by start, disjoint unless
    the records are broken; ``starts``: theirs) inside ``runs`` (sorted, disjoint)."""
    out = []
    for s, e in runs:
        i = max(bisect_right(starts, s) - 1, 0)
        while i < len(owned_runs) and owned_runs[i][0] < e:
            os_, oe, d = owned_runs[i]
            lo, hi = max(s, os_), min(e, oe)
            if lo < hi:
                out.append((lo, hi, d))
            i += 1
    out.sort(key=lambda r: r[0])
    return out

