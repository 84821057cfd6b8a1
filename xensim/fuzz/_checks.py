"""The checks after every fuzzed call (docs/fuzzing.md): :class:`FuzzViolation`, what a
broken invariant is; :func:`isolation` (no live table maps a frame its owner does not
own); :func:`sound_state` (the auditor, full or incremental or both, then isolation);
:func:`heap_is_full` (teardown). The unchanged and batch checks are the undo
journal's (``_journal``)."""

from __future__ import annotations

import re

import numpy as np

from ..mem import DOMID_INVALID, DomainHeap, PAGE_SHIFT, PDX_GROUP_MASK, \
    PDX_GROUP_SHIFT, SUPERPAGE_PAGES
from ..xen import PADDR_MASK, IncrementalAuditor, Machine, _PAGE_PRESENT, _PAGE_PSE, audit, vcpu_roots
from ._ops import op_label

__all__ = ["FuzzViolation", "generic_key", "grant_permits", "isolation", "isolation_since", "sound_state", "disagreement",
           "heap_is_full"]

class FuzzViolation(AssertionError):
    """An invariant broken by call ``index`` (``op``) of a sequence."""

    def __init__(self, kind: str, detail: str, index: int, op: dict, key: str | None = None):
        self.kind, self.detail, self.index, self.op = kind, detail, index, op
        self.key = key if key is not None else kind
        super().__init__(f"{kind} after call #{index} ({op_label(op)}): {detail}")

    def __reduce__(self):
        # pickled by its fields (a campaign's workers send violations back)
        return (type(self), (self.kind, self.detail, self.index, self.op, self.key))

    @property
    def signature(self) -> tuple[str, str, str]:
        """(kind, call, key): what minimisation must preserve."""
        return (self.kind, self.op.get("op", "teardown"), self.key)


def generic_key(text: str) -> str:
    """``text`` with its numbers as N: a violation's key, the same for every frame.
    An advisory's number is kept (XSA-167 and XSA-182 are different bugs)."""
    return re.sub(r"XSA-\d+|0x[0-9a-f]+|\d+",
                  lambda m: m.group() if m.group().startswith("XSA") else "N", text)


def _owner_array(ft, g: int):
    """The owner array of PDX group ``g`` (None: never written, every frame unowned). Read only."""
    arrays = ft.written_group(g)
    return None if arrays is None else arrays[2]


def _owners(m: Machine, mfns: np.ndarray) -> np.ndarray:
    """Owner domid of each valid MFN, read from the frame table."""
    ft = m.frame_table
    pdx = np.asarray(m.pdx.mfn_to_pdx(np.asarray(mfns).astype(np.uint64)), dtype=np.int64)
    out = np.full(pdx.shape, DOMID_INVALID, dtype=np.int64)
    groups = pdx >> PDX_GROUP_SHIFT
    for g in np.unique(groups):
        o = _owner_array(ft, int(g))
        if o is not None:
            sel = groups == g
            out[sel] = o[pdx[sel] & PDX_GROUP_MASK]
    return out


def grant_permits(m: Machine, mfn: int, domid: int, writable: bool) -> bool:
    """Does a grant let ``domid``'s L1 entries map ``mfn`` (another domain's frame)? An
    active entry of the owner's grant table with ``domid`` as grantee, for that frame,
    with a host pin (a writable one for a writable entry)."""
    gt = m.gnttab.table(m.frame_table.owner(m.mfn_to_page(mfn)))
    if gt is None:
        return False
    for pin, grantee, frame in gt.active.values():
        if frame == mfn and grantee == domid and pin & (0xFF if writable else 0xFFFF):
            return True
    return False


def isolation(m: Machine) -> str | None:
    """Every present entry of every live table targets frames the table's owner owns
    (PSE: all 512); base pointers, pins and marks are the domain's own frames.
    None, or what is wrong."""
    ft = m.frame_table
    live = list(m.pt.live.items())
    if live:
        pages = np.array([p for p, _ in live], dtype=np.int64)
        levels = np.array([lv for _, (lv, _) in live], dtype=np.int64)
        owners = np.array([o for _, (_, o) in live], dtype=np.int64)
        tables = np.asarray(m.pdx.pdx_to_mfn(pages.astype(np.uint64)), dtype=np.int64)
        town = _owners(m, tables)
        if (town != owners).any():
            j = int(np.argmax(town != owners))
            return (f"live L{levels[j]} table {tables[j]:#x} of dom{owners[j]} is owned by "
                    f"dom{town[j]}")
        ent = np.stack([m.mem.table(int(t)) for t in tables])
        rows, cols = np.nonzero(ent & np.uint64(_PAGE_PRESENT))
        vals = ent[rows, cols]
        lv, ow = levels[rows], owners[rows]
        mfns = ((vals & np.uint64(PADDR_MASK)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        pse = (lv == 2) & ((vals & np.uint64(_PAGE_PSE)) != 0)
        last = mfns + np.where(pse, SUPERPAGE_PAGES - 1, 0)
        valid = m.mfn_valid_array(mfns) & m.mfn_valid_array(last)
        bad = ~valid
        ok = np.flatnonzero(valid)
        bad[ok] |= _owners(m, mfns[ok]) != ow[ok]
        for j in np.flatnonzero(bad & valid & (lv == 1)):      # a grant's host mapping
            bad[j] = not grant_permits(m, int(mfns[j]), int(ow[j]), bool(int(vals[j]) & 2))
        for j in ok[pse[ok]]:
            page = m.mfn_to_page(int(mfns[j]))
            o = _owner_array(ft, page >> PDX_GROUP_SHIFT)
            off = page & PDX_GROUP_MASK
            bad[j] |= o is None or not (o[off:off + SUPERPAGE_PAGES] == ow[j]).all()
        if bad.any():
            j = int(np.argmax(bad))
            e, mfn, n = int(vals[j]), int(mfns[j]), SUPERPAGE_PAGES if pse[j] else 1
            where = f"dom{ow[j]}'s L{lv[j]} table {tables[rows[j]]:#x}[{cols[j]}] = {e:#x}"
            if not valid[j]:
                return f"{where} targets invalid mfn {mfn:#x}"
            o = _owners(m, np.arange(mfn, mfn + n, dtype=np.int64))
            who = int(o[np.argmax(o != ow[j])])
            return f"{where} maps mfn {mfn:#x}{'+511' if n > 1 else ''} owned by dom{who}"
    return _domain_isolation(m)


def isolation_since(m: Machine, auditor: IncrementalAuditor) -> str | None:
    """:func:`isolation` of what changed since the incremental ``auditor``'s check before
    its last one: the tables, entries, frames and superpages that check recounted (every
    frame written, every entry target that moved), the same messages; then the domains'
    base pointers and pins among those frames, and their marks among those superpages (a
    frame changes hands by a write, a pin, base pointer or mark by a record the auditor
    compares: either makes it recounted). None, or what is wrong."""
    ft = m.frame_table
    live = m.pt.live
    for mfn in auditor.tables_in(auditor.last_frames):
        level, domid = live[m.mfn_to_page(mfn)]
        town = ft.owner(m.mfn_to_page(mfn))
        if town != domid:
            return f"live L{level} table {mfn:#x} of dom{domid} is owned by dom{town}"
    for mfn, valid, owner in _validity_owners(m, auditor.mapped(auditor.last_frames)):
        if valid and auditor.sole_domain(mfn) == owner:
            continue                                     # every entry its owner's
        for table, level, domid, i, e in auditor.entries_to(mfn):
            where = f"dom{domid}'s L{level} table {table:#x}[{i}] = {e:#x}"
            if not valid:
                return f"{where} targets invalid mfn {mfn:#x}"
            who = ft.owner(m.mfn_to_page(mfn))
            if who != domid and not (level == 1 and grant_permits(m, mfn, domid, bool(e & 2))):
                return f"{where} maps mfn {mfn:#x} owned by dom{who}"
    for sp in auditor.mapped(auditor.last_superpages, pse=True):
        valid = m.mfn_valid(sp) and m.mfn_valid(sp + SUPERPAGE_PAGES - 1)
        o = ft.read_slices(m.mfn_to_page(sp), SUPERPAGE_PAGES)[2] if valid else None
        # all 512 one domain's (its owners: that one), or not (None)
        owners = {int(o[0])} if valid and (o == o[0]).all() else None
        if owners is not None and {auditor.sole_domain(sp, pse=True)} == owners:
            continue
        for table, level, domid, i, e in auditor.entries_to(sp, pse=True):
            where = f"dom{domid}'s L{level} table {table:#x}[{i}] = {e:#x}"
            if not valid:
                return f"{where} targets invalid mfn {sp:#x}"
            if owners != {domid}:
                return f"{where} maps mfn {sp:#x}+511 owned by dom{int(o[np.argmax(o != domid)])}"
    return _domain_isolation(m, auditor.last_frames, auditor.last_superpages)


def _validity_owners(m: Machine, mfns: list[int]):
    """(mfn, valid, owner) of each of ``mfns`` (owner: None if invalid); many at once as
    arrays."""
    if len(mfns) <= 16:
        ft = m.frame_table
        for mfn in mfns:
            valid = m.mfn_valid(mfn)
            yield mfn, valid, ft.owner(m.mfn_to_page(mfn)) if valid else None
        return
    a = np.array(mfns, dtype=np.int64)
    valid = m.mfn_valid_array(a)
    owners = np.full(a.size, DOMID_INVALID, dtype=np.int64)
    owners[valid] = _owners(m, a[valid])
    for mfn, v, o in zip(mfns, valid.tolist(), owners.tolist()):
        yield mfn, v, o if v else None


def _domain_isolation(m: Machine, frames: set | None = None,
                      superpages: set | None = None) -> str | None:
    """Each vCPU's root tables, pins and marks are the domain's own frames (a privileged
    domain's old_guest_table excepted) (None, or what is wrong);
    only those in ``frames`` (MFNs) and ``superpages`` (first MFNs), if given."""
    ft = m.frame_table
    among = None if frames is None else {m.mfn_to_page(f) for f in frames} if len(
        frames) <= 64 else {p for d in m.domains.values() for p in d.pinned
                            if int(m.pdx_to_mfn(p)) in frames}
    for d in m.domains.values():
        # a privileged domain's foreign unpin, preempted, leaves the other domain's table
        # in its vCPU's old_guest_table (a put to finish, not a mapping)
        foreign_put = {v.old_guest_table for v in d.vcpus} if d.is_privileged else ()
        pages = [(m.mfn_to_page(mfn), what.split(" of ")[0]) for mfn, what in vcpu_roots(d)
                 if (frames is None or mfn in frames) and mfn not in foreign_put]
        pages += [(p, "pinned table") for p in d.pinned if among is None or p in among]
        for p, what in pages:
            if ft.owner(p) != d.domid:
                return (f"dom{d.domid}'s {what} {int(m.pdx_to_mfn(p)):#x} is owned by "
                        f"dom{ft.owner(p)}")
        for mfn in d.marked if superpages is None else d.marked & superpages:
            if not (m.mfn_valid(mfn) and m.mfn_valid(mfn + SUPERPAGE_PAGES - 1)):
                return f"dom{d.domid} marked invalid superpage {mfn:#x}"
            _, _, o = ft.read_slices(m.mfn_to_page(mfn), SUPERPAGE_PAGES)
            if not (o == d.domid).all():
                return f"dom{d.domid} marked superpage {mfn:#x}, not all its own"
    return None


def sound_state(m: Machine, auditor: IncrementalAuditor | None = None,
                full: bool = True) -> tuple[str, str, str] | None:
    """(kind, detail, key) of the first thing wrong with the machine after a call: the
    auditor's first difference (``audit``), else :func:`isolation`'s (with the full
    audit; else :func:`isolation_since`'s); None: sound.

    With ``auditor`` (an :class:`~xensim.xen.IncrementalAuditor` of ``m``) it recounts
    what changed since its last check; with ``full`` too, both run and must agree, and
    so must :func:`isolation` and :func:`isolation_since` (a disagreement is itself a
    violation, ``audit-disagreement``); the full audit's differences are the ones reported."""
    rep = audit(m) if full else None
    inc = auditor.check() if auditor is not None else None
    if rep is not None and inc is not None:
        msg = disagreement(rep, inc)
        if msg:
            return "audit-disagreement", msg, "incremental"
    rep = rep if rep is not None else inc
    if not rep.ok:
        first = rep.differences[0]
        more = f" (+{rep.total_differences - 1} more)" if rep.total_differences > 1 else ""
        return "audit", f"{first}{more}", generic_key(first.field)
    msg = isolation(m) if full else isolation_since(m, auditor)
    if full and auditor is not None and (msg is None) != (isolation_since(m, auditor) is None):
        return ("audit-disagreement", f"isolation: {msg or 'none'}, but isolation_since: "
                f"{isolation_since(m, auditor) or 'none'}", "isolation")
    if msg:
        return "isolation", msg, "isolation"
    return None


def disagreement(full, inc) -> str | None:
    """How the incremental auditor's report ``inc`` differs from the full one's (the same
    differences, as a multiset, and the same total), or None."""
    a, b = sorted(map(str, full.differences)), sorted(map(str, inc.differences))
    if a == b and full.total_differences == inc.total_differences:
        return None
    only_full = [x for x in a if x not in b]
    only_inc = [x for x in b if x not in a]
    return (f"the full audit found {full.total_differences} difference(s), the incremental "
            f"{inc.total_differences}; only in the full: {only_full[:1] or '-'}; only in the "
            f"incremental: {only_inc[:1] or '-'}")


def heap_is_full(m: Machine) -> str | None:
    """Does the heap hold all RAM again, as a fresh heap (None), or what differs?"""
    fresh = DomainHeap(m.memmap.frame_ranges)
    if m.heap.free_frames != m.memmap.ram_frames:
        return (f"heap holds {m.heap.free_frames} free frames, the machine has "
                f"{m.memmap.ram_frames} RAM frames")
    if m.heap.snapshot() != fresh.snapshot():
        return "heap's free blocks differ from a fresh heap's"
    return None
