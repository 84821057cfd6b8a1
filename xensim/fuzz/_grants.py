"""The fuzzer's grant calls, from both sides (docs/fuzzing.md, "What the guests do"): a
granter writes, rewrites and revokes its grant entries (its own frames mostly; else a
table, another's or a free frame, a ref past its table), grows or asks the size of
grant tables (its own, another's); a grantee maps the grants offered to it (host and
device, read-only or writable, by linear address or by the PTE's machine address; else
a ref not offered, a mapping kind the entry refuses, an address in its superpage region,
a misaligned PTE address) and unmaps what it mapped (each kind alone or both, at the
address it used or another, with the bus address or without, or by unmap_and_replace),
and sometimes a handle it never got. Each action is one call: :func:`grant_call`.

What a guest knows: the entries it wrote, the refs other guests offered it (a driver
learns them from xenstore), the handles its maps returned. Nothing is read from Xen.
"""

from __future__ import annotations

import random

from ..guest import DIRECTMAP_BASE
from ..mem import PAGE_SHIFT
from ..xen import (GNTMAP_contains_pte, GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly,
                   guest_map_l1e)

__all__ = ["GRANT_ACTIONS", "grant_call"]

#: the grant actions and their weights among the fuzzer's ACTIONS
GRANT_ACTIONS = {"grant": 3, "grant_map": 4, "grant_unmap": 3}

#: the guests' 4 KiB region: one L1 table, entries 0-7 mapped at set-up
_L1_VA = DIRECTMAP_BASE + (1 << 30)


def _slot_va(r: random.Random) -> int:
    return _L1_VA + (r.randrange(8, 64) << PAGE_SHIFT)


def grant_call(fz, action: str, g, r: random.Random) -> None:
    """One grant call of guest ``g`` (an action of :data:`GRANT_ACTIONS`)."""
    if action == "grant":
        _granter(fz, g, r)
    elif action == "grant_map":
        _map(fz, g, r)
    else:
        _unmap(fz, g, r)


def _granter(fz, g, r: random.Random) -> None:
    x = r.random()
    others = [o.name for o in fz.live_guests() if o is not g]
    if x < 0.6 or not g.granted:
        grantee = (r.choice(others) if others and r.random() < 0.85 else
                   g.name if r.random() < 0.7 else "nobody")
        _offer(fz, g, grantee, r)
    elif x < 0.85:
        _end(fz, g, r.choice(sorted(g.granted)))
    else:
        target = r.choice(others + [g.name, "nobody"])
        if r.random() < 0.5:
            fz.step({"op": "grant_table_op", "domain": g.name, "cmd": "setup_table",
                     "grants": [[r.choice([1, 4, 8, 33])]], "target": target})
        else:
            fz.step({"op": "grant_table_op", "domain": g.name, "cmd": "query_size",
                     "grants": [[]], "target": target})


def _offer(fz, g, grantee: str, r: random.Random) -> None:
    """``g`` writes a grant entry for ``grantee``: mostly a frame of its own, a ref of its
    table (now and then one past it)."""
    ref = r.randrange(8, 40) if r.random() < 0.95 else r.choice([2048, 4096, 1 << 20])
    frame = fz.frame(g, r, own=0.85)
    ro = r.random() < 0.3
    res = fz.step({"op": "grant_access", "domain": g.name, "ref": ref, "grantee": grantee,
                   "frame": frame, "readonly": ro})
    if res.rc == 0:
        g.granted[ref] = (grantee, frame, ro)


def _end(fz, g, ref: int) -> None:
    """Revoke ``ref`` (the guest's gnttab_end_foreign_access: refused while mapped)."""
    res = fz.step({"op": "end_access", "domain": g.name, "ref": ref})
    if res.rc == 0:
        g.granted.pop(ref, None)


def _map(fz, g, r: random.Random) -> None:
    offered = [(o.name, ref, frame, ro) for o in fz.guests.values()
               for ref, (grantee, frame, ro) in sorted(o.granted.items()) if grantee == g.name]
    others = [o for o in fz.live_guests() if o is not g]
    if not offered and others and r.random() < 0.6:
        _offer(fz, r.choice(others), g.name, r)         # a frontend offers it one first
        return
    if offered and r.random() < 0.85:
        granter, ref, frame, ro = r.choice(offered)
    else:
        granter = r.choice([o.name for o in fz.guests.values()] + ["nobody"])
        ref, frame, ro = r.randrange(0, 64), 0, r.random() < 0.5
    flags = GNTMAP_host_map if r.random() < 0.9 else 0
    if r.random() < 0.25 or not flags:
        flags |= GNTMAP_device_map
    if ro != (r.random() < 0.1):                        # mostly as the entry allows
        flags |= GNTMAP_readonly
    x = r.random()
    l1s = fz.tables(g)[1]                              # its own tables: it may read them
    if x < 0.9 and l1s and (x >= 0.45 or not _linear_ok(fz, g)):
        addr = (r.choice(l1s) << PAGE_SHIFT) | (r.randrange(8, 64) * 8)
        flags |= GNTMAP_contains_pte
        if r.random() < 0.1:
            addr += 3                                    # misaligned
    elif x < 0.9:
        addr = _slot_va(r)
    else:
        addr = DIRECTMAP_BASE + (r.randrange(4) << 21)   # its superpage region (PSE or nothing)
    res = fz.step({"op": "grant_table_op", "domain": g.name, "cmd": "map_grant_ref",
                   "grants": [[addr, flags, ref]], "target": granter})
    if res.rc == 0 and res.done and res.out:
        g.handles[res.out[0]] = (addr, flags, frame)


def _linear_ok(fz, g) -> bool:
    """Does its 4 KiB region still have its L1 table (a kernel knows its own tables)?"""
    return guest_map_l1e(fz.m, fz.m.domains.get(g.domid), _L1_VA) is not None


def _unmap(fz, g, r: random.Random) -> None:
    if not g.handles and r.random() < 0.7:
        _map(fz, g, r)
        return
    if not g.handles or r.random() < 0.05:
        fz.step({"op": "grant_table_op", "domain": g.name, "cmd": "unmap_grant_ref",
                 "grants": [[_slot_va(r), 0, r.randrange(0, 600)]]})
        return
    handle = r.choice(sorted(g.handles))
    addr, flags, frame = g.handles[handle]
    host = bool(flags & GNTMAP_host_map) and r.random() < 0.9
    dev = bool(flags & GNTMAP_device_map) and (r.random() < 0.9 or not host)
    host_addr = (addr if r.random() < 0.92 else _slot_va(r)) if host else 0
    bus = (frame << PAGE_SHIFT if r.random() < 0.92 else 0x1000) if dev else 0
    if host and not dev and not flags & GNTMAP_contains_pte and r.random() < 0.15:
        res = fz.step({"op": "grant_table_op", "domain": g.name, "cmd": "unmap_and_replace",
                       "grants": [[host_addr, _slot_va(r), handle]]})
        dev_left = bool(flags & GNTMAP_device_map)
    else:
        res = fz.step({"op": "grant_table_op", "domain": g.name, "cmd": "unmap_grant_ref",
                       "grants": [[host_addr, bus, handle]]})
        dev_left = bool(flags & GNTMAP_device_map) and not dev
    if res.rc == 0 and res.out and res.out[0] == 0:
        left = (flags & ~(GNTMAP_host_map | GNTMAP_device_map)) \
            | (GNTMAP_host_map if flags & GNTMAP_host_map and not host else 0) \
            | (GNTMAP_device_map if dev_left else 0)
        if left & (GNTMAP_host_map | GNTMAP_device_map):
            g.handles[handle] = (addr, left, frame)
        else:
            del g.handles[handle]
