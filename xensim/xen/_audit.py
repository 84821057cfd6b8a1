"""The auditor: an independent recount of every reference.

From the domains' own records (the frames they own and still hold allocated,
the tables they pinned) and from what each subsystem says it holds (page-table
entries, superpage designs: *contributors*), it computes what every frame's
``count_info`` and ``type_info`` must be, and compares with the frame table.
It never reads a counter in order to compute an expectation.

Checked for every RAM frame:

* it is free in the heap (``PGC_state_free``, count 0, no owner, no type) or
  owned by exactly one domain, never both, never neither (a leak);
* an owned frame's owner, PGC_allocated, general count, type and type count,
  PGT_pinned, as recounted;
* every domain's ``tot_pages`` equals the frames it owns.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from ..mem import PDX_GROUP_MASK, PDX_GROUP_SHIFT, RangeSet
from ._linear import linear_differences
from ..mem import (DOMID_INVALID, PGC_allocated, PGC_count_mask, PGC_state,
                         PGC_state_free, PGC_state_inuse, PGT_count_mask, PGT_pinned,
                         PGT_type_mask, PGT_TYPE_NAMES, PGT_type_shift)

_U = np.uint64
MAX_LISTED = 200


@dataclass
class Difference:
    mfn: int
    field: str
    expected: object
    actual: object

    def __str__(self) -> str:
        return f"mfn {self.mfn:#x} {self.field}: expected {self.expected}, actual {self.actual}"


class Expected:
    """What contributors say frames must hold. Keyed by MFN."""

    def __init__(self):
        self.refs: dict[int, int] = defaultdict(int)
        self.types: dict[int, list] = {}              # mfn -> [type, count]
        self.runs: list[tuple[int, int, int, int | None]] = []   # (mfn, n, refs, type) +1 type ref each
        self.conflicts: list[Difference] = []
        self.holder: set[tuple[int, int]] = set()     # (mfn, domid whose structures reference it)
        self.spage: dict[int, tuple] = {}             # spdx -> expected superpage-table words
        self.privileged: set[int] = set()             # domains whose tables may hold foreign frames
        self.granted: set[tuple[int, int]] = set()    # (mfn, domid) a grant lets domid map

    def conflict(self, mfn: int, field: str, expected: str, found: str) -> None:
        """A contributor found ``field`` of ``mfn`` holding ``found`` where it expected
        ``expected`` (a word the auditor cannot recount itself, e.g. a design's own field)."""
        self.conflicts.append(Difference(mfn, field, expected, found))

    def ref(self, mfn: int, domid: int, n: int = 1) -> None:
        """``n`` general references on ``mfn`` held on behalf of ``domid``."""
        self.refs[mfn] += n
        self.holder.add((mfn, domid))

    def typed(self, mfn: int, domid: int, type: int, n: int = 1) -> None:
        """``n`` general + ``n`` typed references of ``type`` on ``mfn``."""
        self.ref(mfn, domid, n)
        self._type(mfn, type, n)

    def _type(self, mfn: int, type: int, n: int) -> None:
        """``n`` typed references of ``type`` on ``mfn`` (another type there: a conflict)."""
        cur = self.types.get(mfn)
        if cur is None:
            self.types[mfn] = [type, n]
        elif cur[0] != type:
            self.conflicts.append(Difference(mfn, "type", _tname(cur[0]), _tname(type)))
        else:
            cur[1] += n

    def refs_many(self, mfns: np.ndarray, domid: int) -> None:
        """:meth:`ref` on each of ``mfns`` (an L1 table's read-only entries)."""
        u, c = np.unique(mfns, return_counts=True)
        ul = u.tolist()
        refs = self.refs
        for mfn, n in zip(ul, c.tolist()):
            refs[mfn] += n
        self.holder.update(zip(ul, repeat(domid)))

    def typed_many(self, mfns: np.ndarray, domid: int, type: int) -> bool:
        """:meth:`typed` on each of ``mfns`` (an L1 table's writable entries), if none of
        them conflicts with a type already expected; else nothing, and False (the caller
        then goes entry by entry, so that the conflicts are listed in its order)."""
        u, c = np.unique(mfns, return_counts=True)
        ul = u.tolist()
        types = self.types
        for mfn in ul:
            cur = types.get(mfn)
            if cur is not None and cur[0] != type:
                return False
        refs = self.refs
        for mfn, n in zip(ul, c.tolist()):
            refs[mfn] += n
            cur = types.get(mfn)
            if cur is None:
                types[mfn] = [type, n]
            else:
                cur[1] += n
        self.holder.update(zip(ul, repeat(domid)))
        return True

    def holds(self, mfn: int, n: int, domid: int) -> None:
        """``domid``'s structures reference frames [mfn, mfn+n) (checked: it must own them)."""
        self.holder.add((mfn, domid))
        self.holder.add((mfn + n - 1, domid))

    def run(self, mfn: int, n: int, domid: int, type: int | None) -> None:
        """One reference (typed if ``type``) on each of frames [mfn, mfn+n), e.g. a superpage's 512."""
        self.runs.append((mfn, n, domid, type))

    def merge(self, other: "Expected", frames: set, runs=None, spdxs: set = frozenset()) -> None:
        """Add what ``other`` says of ``frames`` (MFNs; a type clash is a conflict, as in
        :meth:`typed`), its runs ``runs(run)`` keeps (None: those starting in ``frames``),
        its words of superpages ``spdxs``, its conflicts on ``frames``: the incremental
        auditor's view of a contributor that may say more than it asks."""
        for mfn, n in other.refs.items():
            if mfn in frames:
                self.refs[mfn] += n
        for mfn, (type, n) in other.types.items():
            if mfn in frames:
                self._type(mfn, type, n)
        self.runs.extend(r for r in other.runs if (runs(r) if runs else r[0] in frames))
        self.holder.update(h for h in other.holder if h[0] in frames)
        self.spage.update((k, v) for k, v in other.spage.items() if k in spdxs)
        self.conflicts.extend(c for c in other.conflicts if c.mfn in frames)
        self.privileged |= other.privileged
        self.granted |= other.granted

    def frames(self) -> set:
        """Every frame this expectation speaks of (references, types, runs, holders)."""
        out = set(self.refs) | set(self.types) | {h[0] for h in self.holder} | \
            {g[0] for g in self.granted} | {c.mfn for c in self.conflicts if c.mfn >= 0}
        for mfn, n, _, _ in self.runs:
            out.update(range(mfn, mfn + n))
        return out


def _tname(t: int) -> str:
    return PGT_TYPE_NAMES.get(t >> PGT_type_shift, str(t))


@dataclass
class AuditReport:
    frames_checked: int = 0
    total_differences: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.total_differences == 0

    def add(self, diff: Difference) -> None:
        self.total_differences += 1
        if len(self.differences) < MAX_LISTED:
            self.differences.append(diff)

    def __str__(self) -> str:
        if self.ok:
            return f"audit clean: {self.frames_checked:,} frames checked"
        head = f"audit: {self.total_differences} difference(s) in {self.frames_checked:,} frames"
        return "\n".join([head] + [f"  {d}" for d in self.differences])


def _pinned_contributor(m, exp: Expected) -> None:
    for d in m.domains.values():
        for page, type in d.pinned.items():
            exp.typed(int(m.pdx_to_mfn(page)), d.domid, type)


def audit(m) -> AuditReport:
    """Recount every frame of machine ``m``; see the module docstring."""
    rep = AuditReport()
    exp = Expected()
    for contribute in [_pinned_contributor] + list(getattr(m, "audit_contributors", [])):
        contribute(m, exp)
    for c in exp.conflicts:
        rep.add(c)

    # who should own each frame, from the heap and the domains' records alone
    owned_runs = owned_runs_of(m, rep)
    check_partition(m, owned_runs, m.heap.free_ranges(), rep)
    recount(m, owned_runs, exp, rep)
    _check_spage(m, exp, rep)
    check_holders(exp, owner_lookup(owned_runs), rep)
    check_linear(m, rep)
    return rep


def check_linear(m, rep: AuditReport) -> None:
    """Each frame's linear_pt_count (4.10 on) recounted from the live tables."""
    for mfn, want, have in linear_differences(m):
        rep.add(Difference(mfn, "linear_pt_count", want, have))


def owned_runs_of(m, rep: AuditReport) -> list:
    """(start, end, domain) of every domain's owned runs, by start; a domain whose
    ``tot_pages`` is not the frames it owns is a difference."""
    owned_runs = []
    for d in m.domains.values():
        if d.tot_pages != len(d.owned):
            rep.add(Difference(-1, f"dom{d.domid}.tot_pages", len(d.owned), d.tot_pages))
        for s, e in d.owned.runs():
            owned_runs.append((s, e, d))
    owned_runs.sort(key=lambda r: r[0])
    return owned_runs


def recount(m, owned_runs, exp: Expected, rep: AuditReport, pins: dict | None = None,
            allocated: dict | None = None) -> None:
    """Compare the frames of ``owned_runs`` ((start, end, domain), each run owned by its
    domain) with what ``exp``, the domain's allocations and its pins say they hold
    (``pins``: domid -> the MFNs it pinned, ``allocated``: domid -> its allocated runs,
    sorted, if the caller has them; else read here)."""
    allocs, pins = _DomainRuns(allocated), {} if pins is None else pins
    # a run of a few frames (the incremental auditor's usual recount): frame by frame; one
    # where anything differs is recounted again below, so that it reads the same
    owned_runs = [r for r in owned_runs if r[1] - r[0] > SMALL_RUN
                  or not _small_run_same(m, r, exp, allocs, pins, rep)]
    if not owned_runs:
        return
    # the contributors' single-frame expectations as arrays (each MFN once, sorted), sliced
    # per chunk
    ref_mfn = np.fromiter(exp.refs.keys(), dtype=np.int64, count=len(exp.refs))
    ref_n = np.fromiter(exp.refs.values(), dtype=np.int64, count=len(exp.refs))
    order = np.argsort(ref_mfn, kind="stable")
    ref_mfn, ref_n = ref_mfn[order], ref_n[order]
    typ_mfn = np.fromiter(exp.types.keys(), dtype=np.int64, count=len(exp.types))
    typ_type = np.fromiter((t for t, _ in exp.types.values()), dtype=np.int64, count=len(exp.types))
    typ_cnt = np.fromiter((c for _, c in exp.types.values()), dtype=np.int64, count=len(exp.types))
    order = np.argsort(typ_mfn, kind="stable")
    typ_mfn, typ_type, typ_cnt = typ_mfn[order], typ_type[order], typ_cnt[order]
    runs = _Runs(exp.runs)
    pinned: dict[int, np.ndarray] = {}
    for s, e, d in owned_runs:
        if d.domid not in pinned:
            pinned[d.domid] = np.array(sorted(_pinned_mfns(m, d, pins)), dtype=np.int64)
        # chunk by chunk (CHUNK frames, aligned): what a recount holds at once is bounded
        lo = s
        while lo < e:
            hi = min(e, (lo | (CHUNK - 1)) + 1)
            (r_lo, r_hi), (t_lo, t_hi), (p_lo, p_hi) = (
                np.searchsorted(a, (lo, hi)).tolist() for a in (ref_mfn, typ_mfn, pinned[d.domid]))
            alloc = allocs.overlapping(d, lo, hi)
            covering = runs.overlapping(lo, hi)
            rep.frames_checked += hi - lo
            if not (r_hi > r_lo or t_hi > t_lo or p_hi > p_lo or covering or len(alloc) > 1
                    or alloc and (alloc[0][0] > lo or alloc[0][1] < hi)) \
                    and _all_read(m, d.domid, lo, hi - lo, PGC_state_inuse | (
                        PGC_allocated | 1 if alloc else 0)):
                lo = hi
                continue
            # count, type bits (0 = unconstrained), type count, allocated, pinned
            n = hi - lo
            e_count, e_type, e_tcount, e_alloc, e_pinned = np.zeros((5, n), dtype=np.int64)
            for a_s, a_e in alloc:
                e_alloc[max(a_s, lo) - lo:min(a_e, hi) - lo] = 1
            e_count += e_alloc
            e_pinned[pinned[d.domid][p_lo:p_hi] - lo] = 1
            if r_hi > r_lo:
                e_count[ref_mfn[r_lo:r_hi] - lo] += ref_n[r_lo:r_hi]
            if t_hi > t_lo:
                at = typ_mfn[t_lo:t_hi] - lo
                e_type[at] = typ_type[t_lo:t_hi]
                e_tcount[at] = typ_cnt[t_lo:t_hi]
            for r_mfn, r_n, _, r_type in covering:
                r_s, r_e = max(r_mfn, lo), min(r_mfn + r_n, hi)
                e_count[r_s - lo:r_e - lo] += 1
                if r_type is not None:
                    sl = slice(r_s - lo, r_e - lo)
                    clash = (e_tcount[sl] > 0) & (e_type[sl] != r_type)
                    for j in np.flatnonzero(clash):
                        rep.add(Difference(r_s + int(j), "type", _tname(int(e_type[sl][j])),
                                           _tname(r_type)))
                    e_type[sl] = r_type
                    e_tcount[sl] += 1
            _compare_run(m, d, lo, e_count, e_alloc, e_type, e_tcount, e_pinned, rep)
            lo = hi


#: frames recounted at once (a PDX group's worth): a full audit holds a few arrays of
#: this many frames, whatever the size of the guests
CHUNK = 1 << 16


class _Runs:
    """The contributors' runs (``Expected.runs``), found by the frames they cover: those
    overlapping a chunk, in the order they were said."""

    def __init__(self, runs: list):
        self.runs = runs
        starts = np.fromiter((r[0] for r in runs), dtype=np.int64, count=len(runs))
        self.order = np.argsort(starts, kind="stable")
        self.starts = starts[self.order]
        self.longest = max((r[1] for r in runs), default=0)

    def overlapping(self, lo: int, hi: int) -> list:
        if not self.runs:
            return []
        i, j = np.searchsorted(self.starts, (lo - self.longest + 1, hi)).tolist()
        runs = self.runs
        return [runs[k] for k in np.sort(self.order[i:j]).tolist() if runs[k][0] + runs[k][1] > lo]


def _all_read(m, domid: int, mfn: int, n: int, want_ci: int) -> bool:
    """Do frames [mfn, mfn+n) all hold ``want_ci`` in their checked count_info bits, no
    typed reference nor pin, and owner ``domid``? Decided from each word's minimum and
    maximum (no array made); False also when they merely differ from one another (the
    caller then compares them frame by frame)."""
    ft = m.frame_table
    for pdx, k in m.pdx_runs(mfn, n):
        arrays = ft.written_group(pdx >> PDX_GROUP_SHIFT)
        if arrays is None:
            return False                                # frames as at boot: free
        off = pdx & PDX_GROUP_MASK
        ci, ti, owner = (a[off:off + k] for a in arrays)
        c0, t0 = int(ci.min()), int(ti.min())
        if (c0 != int(ci.max()) or c0 & CI_CHECKED != want_ci or t0 != int(ti.max())
                or t0 & TI_CHECKED or int(owner.min()) != domid or int(owner.max()) != domid):
            return False
    return True


#: a run of at most this many frames is compared frame by frame first (faster than arrays)
SMALL_RUN = 32


class _DomainRuns:
    """The domains' allocated runs, read once per recount (by domid; ``given``: those the
    caller has already)."""

    def __init__(self, given: dict | None = None):
        self.given = given or {}
        self.runs: dict[int, tuple[list, list]] = {}

    def overlapping(self, d, s: int, e: int) -> list[tuple[int, int]]:
        """The allocated runs of ``d`` that overlap [s, e)."""
        got = self.runs.get(d.domid)
        if got is None:
            runs = self.given.get(d.domid)
            if runs is None:
                runs = d.allocated.runs()
            got = self.runs[d.domid] = (runs, [r[0] for r in runs])
        runs, starts = got
        i = max(bisect_right(starts, s) - 1, 0)
        out = []
        while i < len(runs) and runs[i][0] < e:
            if runs[i][1] > s:
                out.append(runs[i])
            i += 1
        return out


def _pinned_mfns(m, d, pins: dict) -> set:
    """The MFNs of the tables ``d`` pinned (read once per recount, in ``pins``)."""
    got = pins.get(d.domid)
    if got is None:
        got = pins[d.domid] = {int(m.pdx_to_mfn(page)) for page in d.pinned}
    return got


def _small_run_same(m, run, exp: Expected, allocs: _DomainRuns, pins: dict,
                    rep: AuditReport) -> bool:
    """Frames [s, e) of ``run`` (s, e, domain) hold what :func:`recount` expects, compared
    frame by frame (counted in ``rep.frames_checked``); False if anything differs or
    clashes (nothing counted: the run is then recounted the vector way, which reports)."""
    s, e, d = run
    alloc = allocs.overlapping(d, s, e)
    pinned = _pinned_mfns(m, d, pins)
    refs, types = exp.refs, exp.types
    covering = [r for r in exp.runs if r[0] < e and r[0] + r[1] > s]
    want = []
    for mfn in range(s, e):
        a = any(a_s <= mfn < a_e for a_s, a_e in alloc)
        count = a + refs.get(mfn, 0)
        t = types.get(mfn)
        typ, tcount = (t[0], t[1]) if t is not None else (0, 0)
        for r_mfn, r_n, _, r_type in covering:
            if r_mfn <= mfn < r_mfn + r_n:
                count += 1
                if r_type is not None:
                    if tcount > 0 and typ != r_type:
                        return False                 # a clash: reported the vector way
                    typ, tcount = r_type, tcount + 1
        want.append(((count | PGC_state_inuse | (PGC_allocated if a else 0)),
                     tcount | (PGT_pinned if mfn in pinned else 0), typ if tcount else -1))
    off, domid, ft = 0, d.domid, m.frame_table
    for pdx, k in m.pdx_runs(s, e - s):
        if k <= 4:                                       # a word at a time: no copies
            ci, ti, owner = ([read(pdx + j) for j in range(k)]
                             for read in (ft.count_info, ft.type_info, ft.owner))
        else:
            ci, ti, owner = (x.tolist() for x in ft.read_slices(pdx, k))
        for j in range(k):
            w_ci, w_ti, w_type = want[off + j]
            t = ti[j]
            if (ci[j] & CI_CHECKED != w_ci or t & TI_CHECKED != w_ti or owner[j] != domid
                    or (w_type >= 0 and t & PGT_type_mask != w_type)):
                return False
        off += k
    rep.frames_checked += e - s
    return True


def check_holders(exp: Expected, whose, rep: AuditReport) -> None:
    """References held on frames their holder does not own (an isolation breach);
    ``whose(mfn)``: the domid that owns ``mfn`` by the domains' records, or None."""
    for mfn, domid in sorted(exp.holder):
        owner = whose(mfn)
        if owner != domid and not (domid in exp.privileged and owner is not None) \
                and (mfn, domid) not in exp.granted:
            rep.add(Difference(mfn, "referenced by", f"dom{domid}'s own frame", f"owner dom{owner}"))
    for r_mfn, r_n, domid, _ in exp.runs:
        for mfn in (r_mfn, r_mfn + r_n - 1):
            owner = whose(mfn)
            if owner != domid:
                rep.add(Difference(mfn, "referenced by", f"dom{domid}'s own frame", f"owner dom{owner}"))


def _check_spage(m, exp: Expected, rep: AuditReport) -> None:
    """Every superpage-table word is what the design says it must be; the rest are 0."""
    check_spage_entries(m, exp, rep, set(int(x) for x in m.spage_table.nonzero_entries()))


def check_spage_entries(m, exp: Expected, rep: AuditReport, entries: set) -> None:
    """The superpage-table words of store ``entries`` and of every superpage ``exp``
    expects words of: as expected, else 0."""
    table = m.spage_table
    expected_at = {}
    for spdx, words in exp.spage.items():
        e = table.entry_index(spdx)
        if e < 0:
            rep.add(Difference(int(m.pdx_to_mfn(spdx << 9)), "superpage entry", "exists", "no entry"))
            continue
        expected_at[e] = (spdx, words)
    for e in sorted(entries | set(expected_at)):
        spdx, words = expected_at.get(e, (None, (0,) * table.words_per_entry))
        actual = tuple(int(table.store[w, e]) for w in range(table.words_per_entry))
        words = tuple(words) + (0,) * (table.words_per_entry - len(words))
        if actual != words:
            where = int(m.pdx_to_mfn(spdx << 9)) if spdx is not None else -1
            rep.add(Difference(where, f"superpage word (store entry {e})",
                               tuple(hex(w) for w in words), tuple(hex(w) for w in actual)))


def owner_lookup(owned_runs):
    """:func:`owner_of` over ``owned_runs`` (sorted by start) as a function of the mfn: a
    binary search when the runs do not overlap (a fallback L1 table's 512 holders each
    ask), else the linear first match."""
    starts = [s for s, _, _ in owned_runs]
    ends = [e for _, e, _ in owned_runs]
    if any(e > s for e, s in zip(ends, starts[1:])):
        return lambda mfn: owner_of(owned_runs, mfn)

    def whose(mfn: int):
        i = bisect_right(starts, mfn) - 1
        return owned_runs[i][2].domid if i >= 0 and mfn < ends[i] else None
    return whose


def owner_of(owned_runs, mfn: int):
    """The domid owning ``mfn`` by ``owned_runs`` ((start, end, domain)), or None."""
    for s, e, d in owned_runs:
        if s <= mfn < e:
            return d.domid
    return None


def check_partition(m, owned_runs, free_runs, rep: AuditReport) -> None:
    """Every RAM frame is free or owned, exactly once."""
    runs = sorted([(s, e, f"dom{d.domid}") for s, e, d in owned_runs] + [(s, e, "free") for s, e in free_runs])
    prev_end, prev_who = 0, None
    for s, e, who in runs:
        if s < prev_end:
            rep.add(Difference(s, "ownership", "one of free/owned", f"{prev_who} and {who}"))
        prev_end, prev_who = max(prev_end, e), who
    accounted = RangeSet()
    for s, e, _ in runs:
        for lo, hi in _uncovered(accounted, s, e):
            accounted.add(lo, hi)
    for fs, fe in m.memmap.frame_ranges:
        for lo, hi in _uncovered(accounted, fs, fe):
            rep.add(Difference(lo, "leaked", "free or owned", f"neither ({hi - lo} frames to {hi:#x})"))
    for s, e, who in runs:
        if not any(fs <= s and e <= fe for fs, fe in m.memmap.frame_ranges):
            rep.add(Difference(s, "not RAM", "RAM frames only", f"{who} holds [{s:#x}, {e:#x})"))
    ft = m.frame_table
    for s, e in free_runs:
        rep.frames_checked += e - s
        for pdx, k in m.pdx_runs(s, e - s):
            arrays = ft.written_group(pdx >> PDX_GROUP_SHIFT)
            if arrays is None:
                continue                                # frames as at boot: free
            off = pdx & PDX_GROUP_MASK
            ci, ti, owner = (a[off:off + k] for a in arrays)
            if (int(ci.min()) == int(ci.max()) == PGC_state_free and int(ti.max()) == 0
                    and int(owner.min()) == int(owner.max()) == DOMID_INVALID):
                continue
            bad = (ci != _U(PGC_state_free)) | (ti != 0) | (owner != DOMID_INVALID)
            for j in np.flatnonzero(bad)[:5]:
                mfn = int(m.pdx_to_mfn(pdx + int(j)))
                rep.add(Difference(mfn, "free frame", "count_info=free ti=0 owner=none",
                                   f"count_info={int(ci[j]):#x} ti={int(ti[j]):#x} owner={int(owner[j])}"))


def _uncovered(rs: RangeSet, s: int, e: int) -> list[tuple[int, int]]:
    """The parts of [s, e) not in ``rs``."""
    out, cur = [], s
    for rs_s, rs_e in rs.runs():
        if rs_e <= cur:
            continue
        if rs_s >= e:
            break
        if rs_s > cur:
            out.append((cur, rs_s))
        cur = max(cur, rs_e)
    if cur < e:
        out.append((cur, e))
    return out


#: the count_info and type_info bits the recount checks
CI_CHECKED = PGC_state | PGC_allocated | PGC_count_mask
TI_CHECKED = PGT_count_mask | PGT_pinned
_CI_CHECKED, _TI_CHECKED = _U(CI_CHECKED), _U(TI_CHECKED)


def _compare_run(m, d, s, e_count, e_alloc, e_type, e_tcount, e_pinned, rep) -> None:
    """Frames [s, s + len(e_count)) of ``d`` against the expected counts (int64 arrays;
    ``e_alloc``, ``e_pinned``: 0 or 1); what differs, field by field, in ``rep``."""
    off, n = 0, len(e_count)
    # the words as they must read (the checked bits), for the whole run at once
    want_ci_all = (e_count.astype(np.uint64) | np.where(e_alloc != 0, _U(PGC_allocated), _U(0))
                   | _U(PGC_state_inuse))
    want_ti_all = e_tcount.astype(np.uint64) | np.where(e_pinned != 0, _U(PGT_pinned), _U(0))
    untyped = e_tcount == 0
    for pdx, k in m.pdx_runs(s, n):
        ci, ti, owner = m.frame_table.read_slices(pdx, k)
        sl = slice(off, off + k)
        # every checked field at once; only a frame that differs is looked at field by field
        want_ci, want_ti = want_ci_all[sl], want_ti_all[sl]
        same = ((ci & _CI_CHECKED) == want_ci) & ((ti & _TI_CHECKED) == want_ti) & (owner == d.domid)
        same &= untyped[sl] | ((ti & _U(PGT_type_mask)).astype(np.int64) == e_type[sl])
        if same.all():
            off += k
            continue
        mfns = np.arange(s + off, s + off + k, dtype=np.int64)
        checks = [
            ("owner", owner.astype(np.int64), np.full(k, d.domid)),
            ("count_info.state", ((ci & _U(PGC_state)) >> _U(55)).astype(np.int64),
             np.full(k, PGC_state_inuse >> 55)),
            ("count_info.allocated", ((ci & _U(PGC_allocated)) != 0).astype(np.int64),
             e_alloc[sl].astype(np.int64)),
            ("count_info.count", (ci & _U(PGC_count_mask)).astype(np.int64), e_count[sl]),
            ("type_info.count", (ti & _U(PGT_count_mask)).astype(np.int64), e_tcount[sl]),
            ("type_info.pinned", ((ti & _U(PGT_pinned)) != 0).astype(np.int64),
             e_pinned[sl].astype(np.int64)),
        ]
        for name, actual, expected in checks:
            bad = np.flatnonzero(actual != expected)
            for j in bad[:MAX_LISTED]:
                rep.add(Difference(int(mfns[j]), name, int(expected[j]), int(actual[j])))
            rep.total_differences += max(0, bad.size - MAX_LISTED)
        # the type matters only while someone holds a typed reference
        held = e_tcount[sl] > 0
        atype = (ti & _U(PGT_type_mask)).astype(np.int64)
        for j in np.flatnonzero(held & (atype != e_type[sl])):
            rep.add(Difference(int(mfns[j]), "type_info.type", _tname(int(e_type[sl][j])),
                               _tname(int(atype[j]))))
        off += k
