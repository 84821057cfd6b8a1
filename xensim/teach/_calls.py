"""A hypercall as the trace prints it: its head and requests decoded before it runs,
and its result line after.

``mmu_update`` requests are read against the machine as it is before the call
(the entry they overwrite, the level of the table they write), ``mmuext_op``
operations by name, ``memory_op``'s sub-op with its extents (GPFNs for
populate_physmap, the frames given back for decrease_reservation), ``grant_table_op``'s
ops with the grant each names (granter, ref, the frame, how it is mapped); its result
line gives each op's status and each grant's pins after the call (granter, grantee,
hstw / hstr / devw / devr).
"""

from __future__ import annotations

from ..mem import PAGE_SHIFT
from ..xen import (GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTST_NAMES,
                   GNTTABOP_NAMES, GNTTABOP_map_grant_ref, HYPERVISOR_grant_table_op, pins)
from ..xen import (HYPERCALL_NAMES, HYPERVISOR_memory_op, HYPERVISOR_mmu_update,
                   HYPERVISOR_mmuext_op, HYPERVISOR_update_va_mapping, MMU_MACHPHYS_UPDATE,
                   MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_NAMES, XENMEM_decrease_reservation,
                   XENMEM_increase_reservation, XENMEM_populate_physmap, _PAGE_PRESENT, Machine,
                   errno_name)
from ..xen import Continuation
from ._decode import format_pte, frames_text, uvmf_text
from ._preempt import continuation_text
from ._tree import Call

_DOMID_SELF = 0x7FF0


def decode_call(m: Machine, caller: int, number: int, args: tuple, vcpu: int = 0
                ) -> tuple[str, list[str], list | None]:
    """(call head, decoded requests, populate_physmap's GPFNs) before the call runs; the
    calling vCPU is named for a domain of several (``mmuext_op dom1 v1``)."""
    name = HYPERCALL_NAMES.get(number, f"hypercall{number}")
    d = m.domains.get(caller)
    who = f"{name} dom{caller}" + (f" v{vcpu}" if d is not None and len(d.vcpus) > 1 else "")
    if number == HYPERVISOR_mmu_update and args:
        reqs = list(args[0])
        fd = args[2] if len(args) > 2 else _DOMID_SELF
        foreign = "" if fd in (_DOMID_SELF, caller) else f" (pages of dom{fd})"
        texts = [mmu_request_text(m, r) for r in reqs]
        if len(texts) == 1:
            return f"{who}{foreign}: {texts[0]}", texts, None
        return f"{who}{foreign}: {len(texts)} requests", texts, None
    if number == HYPERVISOR_mmuext_op and args and args[0] is None:
        return (f"{who}: no op (a continuation, MMU_UPDATE_PREEMPTED: finish old_guest_table, "
                f"then return the ops' result {args[2] if len(args) > 2 else 0})"), [], None
    if number == HYPERVISOR_mmuext_op and args:
        ops = list(args[0])
        fd = args[2] if len(args) > 2 else _DOMID_SELF
        foreign = "" if fd in (_DOMID_SELF, caller) else f" (for dom{fd})"
        texts = [f"{MMUEXT_NAMES.get(o.cmd, f'cmd{o.cmd}')} mfn {o.arg1:#x}" for o in ops]
        if len(texts) == 1:
            return f"{who}{foreign}: {texts[0]}", texts, None
        return f"{who}{foreign}: {len(texts)} operations", texts, None
    if number == HYPERVISOR_memory_op and len(args) >= 2:
        cmd, res = args[0], args[1]
        names = {XENMEM_populate_physmap: "populate_physmap",
                 XENMEM_decrease_reservation: "decrease_reservation",
                 XENMEM_increase_reservation: "increase_reservation"}
        sub = names.get(cmd, f"cmd{cmd}")
        nr = getattr(res, "nr_extents", 0)
        order = getattr(res, "extent_order", 0)
        what = f"{nr} extent{'s' if nr != 1 else ''} of order {order}"
        lst = list(getattr(res, "extent_start", None) or [])[:nr]
        if cmd == XENMEM_populate_physmap and lst:
            if order == 0:                          # 4 KiB frames: runs of GPFNs
                where = frames_text(sorted(set(lst))).replace("mfn", "gpfn")
            else:                                   # extents: their first GPFNs
                where = "gpfn " + ", ".join(f"{g:#x}" for g in lst[:8]) + (
                    f" +{len(lst) - 8}" if len(lst) > 8 else "")
            return f"{who}: {sub} {what} at {where}", [], list(lst)
        if cmd == XENMEM_decrease_reservation and lst:
            n = 1 << order
            mfns = sorted({x + k for x in lst for k in range(n)}) if n <= 512 else lst
            return f"{who}: {sub} {what}: {frames_text(mfns)}", [], None
        return f"{who}: {sub} {what}", [], None
    if number == HYPERVISOR_update_va_mapping and len(args) >= 2:
        flush = f", {uvmf_text(args[2])}" if len(args) >= 3 and args[2] else ""
        return f"{who}: va {args[0]:#x} := {format_pte(args[1])}{flush}", [], None
    if number == HYPERVISOR_grant_table_op and len(args) >= 2:
        sub = GNTTABOP_NAMES.get(args[0], f"cmd{args[0]}")
        texts = [grant_op_text(m, caller, args[0], op) for op in args[1]]
        if len(texts) == 1:
            return f"{who}: {sub} {texts[0]}", texts, None
        return f"{who}: {sub}, {len(texts)} ops", texts, None
    return f"{who}", [], None


def _grant_of(m: Machine, caller: int, cmd: int, op) -> tuple[int, int] | None:
    """(granter, ref) an op names: a map's, or the grant behind an unmap's handle."""
    if cmd == GNTTABOP_map_grant_ref:
        return op.dom, op.ref
    gt = m.gnttab.table(caller)
    rec = gt.maptrack.get(getattr(op, "handle", -1)) if gt is not None else None
    return (rec[1], rec[2]) if rec is not None else None


def grants_named(m: Machine, caller: int, number: int, args: tuple) -> list:
    """(granter, ref) of each op of a grant_table_op, read before it runs."""
    if number != HYPERVISOR_grant_table_op or len(args) < 2:
        return []
    return [g for op in args[1] if hasattr(op, "handle")
            and (g := _grant_of(m, caller, args[0], op)) is not None]


def grant_op_text(m: Machine, caller: int, cmd: int, op) -> str:
    """One grant op before it runs: the grant it names and how it maps or unmaps it."""
    if not hasattr(op, "handle"):                      # setup_table, query_size
        dom = getattr(op, "dom", caller)
        who = "its own" if dom in (_DOMID_SELF, caller) else f"dom{dom}'s"
        frames = f", {op.nr_frames} frames" if hasattr(op, "frame_list") else ""
        return f"{who} table{frames}"
    g = _grant_of(m, caller, cmd, op)
    if cmd == GNTTABOP_map_grant_ref:
        gt = m.gnttab.table(op.dom)
        frame = gt.shared.get(op.ref, (0, 0, 0))[2] if gt is not None else 0
        kinds = "+".join(k for f, k in ((GNTMAP_host_map, "host"), (GNTMAP_device_map, "device"))
                         if op.flags & f) or "nothing"
        rw = "ro" if op.flags & GNTMAP_readonly else "rw"
        at = f" at {op.host_addr:#x}" if op.flags & GNTMAP_host_map else ""
        return f"dom{op.dom}'s grant {op.ref} (mfn {frame:#x}) {kinds} {rw}{at}"
    what = f"dom{g[0]}'s grant {g[1]}" if g else "no grant"
    return f"handle {op.handle} ({what}) at {op.host_addr:#x}"


def grant_result_text(m: Machine, call: Call) -> list[str]:
    """After a grant_table_op: each op's status, and the pins of each grant it named."""
    cmd, ops = call.args[0], call.args[1]
    out, seen = [], []
    for op in ops:
        st = GNTST_NAMES.get(op.status, str(op.status))
        out.append(st + (f", handle {op.handle}" if cmd == GNTTABOP_map_grant_ref and
                         op.status == 0 else ""))
    for g in call.grants:
        if g in seen:
            continue
        seen.append(g)
        gt = m.gnttab.table(g[0])
        act = gt.active.get(g[1]) if gt is not None else None
        if act is None:
            out.append(f"dom{g[0]} grant {g[1]}: no pins")
        else:
            hw, hr, dw, dr = pins(act[0])
            out.append(f"dom{g[0]} grant {g[1]} to dom{act[1]}: pins hstw {hw} hstr {hr} "
                       f"devw {dw} devr {dr}")
    return out


def mmu_request_text(m: Machine, r) -> str:
    """One ``mmu_update`` request: the word it writes, the new entry, the one it replaces."""
    cmd, ptr = r.ptr & 3, r.ptr & ~3
    mfn, index = ptr >> PAGE_SHIFT, (ptr & ((1 << PAGE_SHIFT) - 1)) >> 3
    if cmd == MMU_MACHPHYS_UPDATE:
        return f"M2P[mfn {mfn:#x}] := gpfn {r.val:#x}"
    level = m.pt.live_level(m.mfn_to_page(mfn)) if m.mfn_valid(mfn) else 0
    where = f"L{level}[{index:#x}] of mfn {mfn:#x}" if level else \
        f"word[{index:#x}] of mfn {mfn:#x} (not a live page table)"
    old = m.mem.read(mfn, index) if m.mfn_valid(mfn) else 0
    was = f" (was {format_pte(old)})" if old & _PAGE_PRESENT else ""
    ad = " preserving A/D" if cmd == MMU_PT_UPDATE_PRESERVE_AD else ""
    return f"{where} := {format_pte(r.val)}{was}{ad}"


def result_text(m: Machine, call: Call, rc: int) -> str:
    """``-> 0``, ``-> EINVAL (1 of 2 done)``, ``-> 1 (1 of 1 extents done, dom1 tot_pages ...)``."""
    if isinstance(rc, Continuation):
        return continuation_text(m, call.number, call.args, rc)
    text = errno_name(rc) if rc < 0 else str(rc)
    extra = []
    if call.number in (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op) and len(call.requests) > 1:
        done = call.args[1][0] if len(call.args) > 1 and isinstance(call.args[1], list) else None
        if done is not None and call.done_before:
            extra.append(f"{done - call.done_before} of {len(call.requests)} done, "
                         f"{done} in all")
        elif done is not None:
            extra.append(f"{done} of {len(call.requests)} done")
    if call.number == HYPERVISOR_memory_op and len(call.args) >= 2 and rc >= 0:
        extra.append(f"{rc} of {call.args[1].nr_extents} extents done")
    if call.number == HYPERVISOR_grant_table_op and len(call.args) >= 2 and rc >= 0:
        extra.extend(grant_result_text(m, call))
    for d in m.domains.values():
        before = call.tot_pages.get(d.domid)
        if before is not None and before != d.tot_pages:
            extra.append(f"dom{d.domid} tot_pages {before} -> {d.tot_pages}")
    return f"-> {text}" + (f" ({', '.join(extra)})" if extra else "")
