"""The inventory of a machine's state: :class:`MachineState` and :class:`Records`, what
``Machine.capture`` returns and ``Machine.restore`` puts back, and :data:`INVENTORY`,
which says of every attribute of the machine and of its state-holding components
whether it is state or not (and why not).

Each component captures and restores its own part through public methods:

| part | owner | methods |
|---|---|---|
| ``frames``: every frame's count_info, type_info, owner | ``FrameTable`` | ``snapshot`` / ``restore`` |
| ``stamps``: each frame's TLB flush timestamp | ``TlbFlushFilter`` (``refs.tlb``) | ``capture_stamps`` / ``restore_stamps``; ``stamps_at`` / ``set_stamps`` |
| ``tables``: the contents of page-table (guest) frames | ``GuestMemory`` | ``capture`` / ``restore`` |
| ``records.heap``: the free blocks | ``DomainHeap`` | ``snapshot`` / ``restore`` |
| ``records.m2p`` | ``FrameMap`` | ``capture`` / ``restore`` |
| ``records.domains``: each domain's records, runs, P2M and vCPUs | ``Domain`` (``RangeSet``, ``FrameMap``, ``Vcpu``) | ``capture`` / ``restore`` |
| ``records.live``: the validated tables | ``PageTables`` | ``capture_live`` / ``restore_live`` |
| ``records.partial``: the PGT_partial tables, every frame's ``nr_validated_ptes`` / ``partial_pte`` | ``PageTables``, ``FrameTable.progress`` | ``capture_partial`` / ``restore_partial`` |
| ``records.design``: the design's own state | the design | ``snapshot`` / ``restore`` |
| ``records.spage``: the superpage table | ``SuperpageTable`` | ``snapshot`` / ``restore`` |
| ``records.tlb``: the TLB clock, each CPU's last flush | ``TlbFlushFilter`` | ``capture_clock`` / ``restore_clock`` |
| ``records.next_domid`` | ``Machine`` | |
| ``records.grants``: every domain's grant table | ``GrantTables`` (``gnttab``) | ``capture`` / ``restore`` |
| ``records.linear``: each frame's linear_pt_count | ``PageTables`` | ``capture_linear`` / ``restore_linear`` |

``frames``, ``stamps`` and ``tables`` are large; the fuzzer's journal keeps them frame by
frame, learning from the event bus which frames a call wrote, and takes the rest
(:class:`Records`, small) whole after every call.

Two states are *the same* (:func:`same_records`, ``Machine.same_as``) when they are
equal with the orders of dicts and sets aside, and with the TLB left out (``stamps``,
``records.tlb``): a flush that happened is not taken back, and a refused call's undo
paths stamp frames as Xen's do; both are restored all the same.

The explorer needs none of this: it deep-copies a booted world per schedule (with its
guest kernels), from which no state can escape.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["INVENTORY", "KINDS", "DomainObjects", "MachineState", "Records", "inventory_problems",
           "records_difference", "same_records", "same_state"]


class DomainObjects(tuple):
    """The Domain objects of a capture, carried for ``Machine.restore_records`` (a domain
    freed with its last frame comes back as the same object) and never compared: two
    captures with the same values are equal, of one machine or of two."""
    __slots__ = ()

    def __eq__(self, other) -> bool:
        return isinstance(other, DomainObjects)

    def __ne__(self, other) -> bool:
        return not isinstance(other, DomainObjects)

    __hash__ = tuple.__hash__


class Records(NamedTuple):
    """The machine's state besides frame words, stamps and page-table contents, as
    plain values (dicts and sets as tuples in their iteration order, which
    ``Machine.restore_records`` restores too: the fuzzer's generator follows it)."""
    heap: tuple
    m2p: tuple
    #: one ``Domain.capture()`` each, in the machine's order
    domains: tuple
    #: the Domain objects of ``domains`` (:class:`DomainObjects`: not compared)
    objects: DomainObjects
    live: tuple
    design: tuple
    spage: bytes
    tlb: tuple
    next_domid: int
    #: ``GrantTables.capture()``: each domain's grant table
    grants: tuple
    #: each frame's linear_pt_count (4.10 on; PageTables.capture_linear)
    linear: tuple = ()
    #: ``PageTables.capture_partial()``: the tables a preempted (de)validation left
    #: PGT_partial and every frame's nr_validated_ptes / partial_pte
    partial: tuple = ((), ())


class MachineState(NamedTuple):
    """Everything ``Machine.restore`` needs to put a machine back as it was."""
    frames: dict
    stamps: dict
    tables: tuple
    records: Records


def _normal(r: Records) -> tuple:
    """The compared part of ``r``, orders aside: domains by domid, pins, marks and live
    tables sorted; no objects, no TLB."""
    doms = tuple(sorted(d[:3] + (tuple(sorted(d[3])), tuple(sorted(d[4]))) + d[5:]
                        for d in r.domains))
    grants = tuple(sorted((domid, (g[0],) + tuple(tuple(sorted(x)) for x in g[1:4]) + g[4:])
                          for domid, g in r.grants))
    return (r.heap, r.m2p, doms, tuple(sorted(r.live)), r.design, r.spage, r.next_domid, grants,
            tuple(sorted(r.linear)), _partial_normal(r.partial))


def _partial_normal(partial: tuple) -> tuple:
    """The PGT_partial tables with their progress, sorted. A frame's nr_validated_ptes
    and partial_pte mean something only while it is PGT_partial: Xen zeroes them when a
    validation starts afresh and leaves them as they were when one ends (done or failed),
    so what a frame that is not partial holds there is not compared."""
    tables, groups = partial
    if not tables:
        return ()
    blocks = {k: (a, b) for k, a, b in groups}
    out = []
    for page, what in sorted(tables):
        a, b = blocks.get(page >> 9, (None, None))
        i = page & 511
        nr = int.from_bytes(a[2 * i:2 * i + 2], "little") if a is not None else 0
        pte = int.from_bytes(b[i:i + 1], "little", signed=True) if b is not None else 0
        out.append((page, what, nr, pte))
    return tuple(out)


def same_records(a: Records, b: Records) -> bool:
    """Are two :class:`Records` the same (orders aside, the TLB left out)?"""
    return a == b or _normal(a) == _normal(b)


def _tables(tables: tuple) -> tuple:
    return tuple(sorted((k, v) for k, v in tables if any(v)))


def same_state(a: MachineState, b: MachineState, frames_same: bool) -> bool:
    """Are two states the same (``frames_same``: their frame words compared already)?"""
    return frames_same and _tables(a.tables) == _tables(b.tables) and \
        same_records(a.records, b.records)


#: what a Domain.capture() holds, in order
_DOMAIN_FIELDS = ("domid", "tot_pages", "max_pages", "pinned", "marked", "is_dying", "vcpus",
                  "owned", "allocated", "p2m")
#: what a Vcpu.capture() holds, in order
_VCPU_FIELDS = ("guest_table", "guest_table_user", "old_guest_table", "old_guest_table_partial",
                "ldt_base", "ldt_ents")


def records_difference(m, a: Records, b: Records) -> str | None:
    """What differs between two :class:`Records` of machine ``m`` (``a`` the machine's
    side), in words; None: the same."""
    x, y = _normal(a), _normal(b)
    if x[0] != y[0]:
        return "the heap's free blocks"
    if x[1] != y[1]:
        return "the M2P"
    da, db = {d[0]: d for d in x[2]}, {d[0]: d for d in y[2]}
    if set(da) != set(db):
        return f"domains {sorted(da)} vs {sorted(db)}"
    for domid, p in da.items():
        q = db[domid]
        for k, f in enumerate(_DOMAIN_FIELDS[1:6], start=1):
            if p[k] != q[k]:
                return f"dom{domid}.{f}: {p[k]} vs {q[k]}"
        if p[6] != q[6]:
            if len(p[6]) != len(q[6]):
                return f"dom{domid}'s vCPUs: {len(p[6])} vs {len(q[6])}"
            for i, (u, w) in enumerate(zip(p[6], q[6])):
                for f, a, b in zip(_VCPU_FIELDS, u, w):
                    if a != b:
                        return f"d{domid}.v{i}.{f}: {a} vs {b}"
        for k, f in ((7, "owned"), (8, "allocated")):
            if p[k] != q[k]:
                return f"dom{domid}.{f}"
        if p[9] != q[9]:
            return f"dom{domid}'s P2M"
    if x[3] != y[3]:
        return "the live page tables"
    if x[4] != y[4]:
        return f"the {m.superpage.name} design's own state"
    if x[5] != y[5]:
        shape = m.spage_table.store.shape
        sa = np.frombuffer(x[5], dtype=np.uint64).reshape(shape)
        sb = np.frombuffer(y[5], dtype=np.uint64).reshape(shape)
        w, e = (int(v[0]) for v in np.nonzero(sa != sb))
        return f"superpage table entry {e} word {w}: {int(sa[w, e]):#x} vs {int(sb[w, e]):#x}"
    if x[6] != y[6]:
        return f"the next domid: {x[6]} vs {y[6]}"
    if x[7] != y[7]:
        ga, gb = dict(x[7]), dict(y[7])
        for domid in sorted(ga.keys() | gb.keys()):
            if ga.get(domid) != gb.get(domid):
                return f"dom{domid}'s grant table"
    if x[8] != y[8]:
        return "the linear page-table counts"
    if x[9] != y[9]:
        return "the partly (de)validated tables (PGT_partial) or their progress"
    return None


# -- the inventory: every attribute of the machine and its components, declared ---------

#: why an attribute is not state
KINDS = {
    "state": "captured and restored (a part above)",
    "config": "set at boot, never changed (the map, PDX, sizes, options)",
    "derived": "computed from configuration (kept for speed)",
    "link": "another component, the event bus, or an event the bus mirrors",
    "stats": "counts of what was done (not undone by a rollback)",
    "cache": "answers kept for speed, equal whatever the state",
    "transient": "set only while a request or call runs (empty between calls)",
    "mode": "the execution mode and the implementations it binds (xen/accel: scalar or "
            "accelerated), set again whenever the bus's subscriptions change",
}

#: per class (by name): its attributes by kind (``vars()`` of a live instance must be
#: exactly these; tests/xen/test_state.py checks it on a machine that has run)
INVENTORY: dict[str, dict[str, tuple[str, ...]]] = {
    "Machine": {
        "state": ("frame_table", "spage_table", "heap", "m2p", "mem", "pt", "refs",
                  "domains", "superpage", "_next_domid", "gnttab"),
        "config": ("release", "version", "allow_superpage", "faithful", "partial_flags", "pv_linear_pt",
                   "hypothetical", "release_label", "preempt", "memmap", "pdx",
                   "max_page", "relinquish_hooks", "audit_contributors"),
        "derived": ("_to_pdx", "_to_mfn", "_covers", "ram_pdx_ranges"),
        "link": ("events", "hypercall", "design_host"),
        "stats": ("pt_stats", "violations"),
        "cache": ("_mfn_valid",),
        "transient": ("_in_request", "_concurrent"),
        "mode": ("mode", "mmu_update_requests", "remove_extent", "request"),
    },
    "FrameTable": {
        "state": ("_ci", "_ti", "_owner", "progress"),     # progress: records.partial
        "config": ("ram_pdx_ranges", "max_pdx", "n_groups", "_valid"),
        "derived": ("_starts", "_ci_v", "_ti_v", "_owner_v"),
        "link": ("frames_written",),
        "transient": ("_journal",),
    },
    "SuperpageTable": {
        "state": ("store",),
        "config": ("words_per_entry", "n_superpages", "n_chunks", "_slot", "_has_ram"),
        "derived": ("_slot_list", "_has_ram_bytes", "_last_entry", "_store_v"),
        "link": ("atomic_step", "spage_cmpxchg", "spage_write", "spage_write_many"),
        "transient": ("_journal",),
    },
    "DomainHeap": {
        "state": ("_blocks", "_lists", "_sets", "_free"),
        "config": ("_max_order", "_ram", "_ram_starts", "_total"),
        "cache": ("_snap",),
    },
    "FrameMap": {
        "state": ("_base", "_arrays", "_live", "count"),
        "config": ("size",),
        "cache": ("_snap",),
    },
    "RangeSet": {
        "state": ("_starts", "_ends", "_total"),
        "stats": ("version",),
        "cache": ("_snap", "_snap_version"),
    },
    "GuestMemory": {
        "state": ("_frames",),
        "link": ("guest_write",),
    },
    "PageTables": {
        "state": ("live", "linear_pt_count", "partial"),
        "link": ("m",),
        "mode": ("get_entries", "put_entries", "get_page_from_entry", "put_page_from_entry"),
    },
    "RefCounts": {
        "state": ("tlb",),
        "config": ("validator", "preempt"),
        "link": ("ft", "free_page", "events", "atomic_step", "word_changed",
                 "type_conflict"),
        "stats": ("stats",),
        "mode": ("take_run", "drop_run"),
    },
    "TlbFlushFilter": {
        "state": ("clock", "time", "groups"),
        "link": ("stats", "events"),
        "stats": ("version",),
        "cache": ("_clock_state",),
    },
    "Domain": {
        "state": ("tot_pages", "max_pages", "owned", "allocated", "pinned", "marked",
                  "vcpus", "is_dying", "p2m"),
        "config": ("domid", "name"),
    },
    "Vcpu": {
        "state": ("guest_table", "guest_table_user", "old_guest_table", "old_guest_table_partial",
                  "ldt_base", "ldt_ents"),
        "config": ("vcpu_id",),
    },
    "GrantTables": {
        "state": ("tables",),
    },
    "GrantTable": {
        "state": ("nr_frames", "shared", "active", "maptrack", "free", "fresh", "limit",
                  "version"),
    },
    "HypercallLayer": {
        "config": ("handlers", "per_vcpu"),
        "link": ("machine", "hypercall_enter", "hypercall_leave", "atomic_step"),
        "stats": ("stats", "_stats_of"),
        "transient": ("active", "vcpu"),
    },
}


def _components(m) -> list[tuple[str, object]]:
    """The machine and every state-holding component of it, each with where it is."""
    out = [("machine", m), ("frame_table", m.frame_table), ("spage_table", m.spage_table),
           ("heap", m.heap), ("m2p", m.m2p), ("mem", m.mem), ("pt", m.pt), ("refs", m.refs),
           ("refs.tlb", m.refs.tlb), ("hypercall", m.hypercall), ("gnttab", m.gnttab)]
    out += [(f"gnttab.tables[{domid}]", gt) for domid, gt in m.gnttab.tables.items()]
    for domid, d in m.domains.items():
        out += [(f"domains[{domid}]", d), (f"domains[{domid}].owned", d.owned),
                (f"domains[{domid}].allocated", d.allocated), (f"domains[{domid}].p2m", d.p2m)]
        out += [(f"domains[{domid}].vcpus[{v.vcpu_id}]", v) for v in d.vcpus]
    return out


def inventory_problems(m, inventory: dict | None = None) -> list[str]:
    """Every attribute of ``m`` and its components that :data:`INVENTORY` (or
    ``inventory``) does not declare, and every declared one that is not there."""
    inventory = INVENTORY if inventory is None else inventory
    problems = []
    for where, obj in _components(m):
        cls = type(obj).__name__
        kinds = inventory.get(cls)
        if kinds is None:
            problems.append(f"{where}: class {cls} is not in the inventory")
            continue
        declared = [a for names in kinds.values() for a in names]
        have = set(vars(obj))
        for a in sorted(have - set(declared)):
            problems.append(f"{where}: {cls}.{a} is not in the inventory (state or not?)")
        for a in sorted(set(declared) - have):
            problems.append(f"{where}: {cls}.{a} is in the inventory but not on the object")
    return problems
