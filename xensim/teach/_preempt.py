"""Preemption as the trace and inspect tell it: where Xen stopped a long validation, the
partial state it left, the hypercall continuation, and the resumption.

Xen validates a page table (``alloc_l2_table`` .. ``alloc_l4_table``) or devalidates it
(``free_l2_table`` ..) entry by entry, and asks ``hypercall_preempt_check()`` where the
release has a check point (docs/xen-facts.md, section 3b). When it answers yes the loop
stops with -ERESTART and leaves, in the table's page_info, ``PGT_partial`` (the type count
kept at 1), ``nr_validated_ptes`` (how far it got) and the partial entry (``partial_pte``,
4.1-4.8 as released: 1, entry ``nr_validated_ptes`` holds only the partial type reference
of the table below; -1, it still holds its general reference; ``partial_flags``, XSA-299's
fix: PTF_partial_set, the entry holds a general reference of the table below, which this
table's operation left PGT_partial), and one more general reference
(``get_page_light``) that keeps the frame from being freed meanwhile. The hypercall
becomes a continuation (``MMU_UPDATE_PREEMPTED`` in its count) that the guest re-enters;
a preempted put of a whole tree (an unpin, the old root of NEW_BASEPTR) is left to the
vCPU's ``old_guest_table``, finished by its next call.

The tracer sees all of it through the event bus: the frame words the primitives change
(``validation preempted``, ``devalidation preempted``, ``get_page_light``, the type word
leaving PGT_partial when a call resumes), read with the frame's progress at that
moment, and each hypercall's result (a :class:`~xensim.xen.Continuation`). These
functions turn them into the trace's lines; :func:`progress_fields` is what inspect
shows of a frame.
"""

from __future__ import annotations

from ..mem import PGT_partial, PGT_type_mask, decode_type_info
from ..xen import (Continuation, HYPERCALL_NAMES, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                   LEVEL_TYPES, Machine, Release)

#: a table type -> its level
_LEVELS = {t: lv for lv, t in LEVEL_TYPES.items()}

#: why-strings of RefCounts when a (de)validation was preempted
PREEMPTED = {"validation preempted": "alloc", "devalidation preempted": "free"}


def restart_name(m: Machine) -> str:
    """What the release's mm.c calls the code of a call preempted to be continued (the guest
    never sees it: it becomes a hypercall continuation): ``EAGAIN`` up to 4.4,
    ``ERESTART`` from 4.5 (f5118cae0a switched the internal indication)."""
    return "EAGAIN" if m.release < Release.R4_5 else "ERESTART"


def partial_key(m: Machine) -> str:
    """The name of the partial entry's field on this machine: ``partial_pte`` (4.1-4.8 as
    released: faithful mode), ``partial_flags`` (XSA-299's fix: 4.13 on, and xensim's 4.1-4.8
    outside faithful mode, ``Machine.partial_flags``)."""
    return "partial_flags" if m.partial_flags else "partial_pte"


def progress_of(m: Machine, page: int) -> tuple[int, int]:
    """(nr_validated_ptes, the partial entry's field) of a frame."""
    return m.frame_table.progress.get(page)


def progress_fields(m: Machine, page: int) -> dict:
    """A frame's validation progress as page_info keeps it: ``nr_validated_ptes`` and the
    partial entry (``partial_pte`` or ``partial_flags``, as the machine has it)."""
    nr, partial = progress_of(m, page)
    return {"nr_validated_ptes": nr, partial_key(m): partial}


def partial_entry_text(level: int, nr: int, partial: int, below: str, flags: bool = False) -> str:
    """What the partial entry's field says of entry ``nr`` of a level-``level`` table:
    ``partial_pte`` (``flags`` False) or ``partial_flags`` (its PTF_partial_set)."""
    if flags:
        if partial:
            return (f"partial_flags 1 (PTF_partial_set: entry {nr} holds a general reference "
                    f"of the {below} below, which this table's operation left PGT_partial)")
        return "partial_flags 0"
    if partial > 0:
        return (f"partial_pte 1 (entry {nr} holds only a partial type reference of the "
                f"{below} below)")
    if partial < 0:
        return (f"partial_pte -1 (entry {nr} still holds its general reference to the "
                f"{below} below)")
    return "partial_pte 0"


def holds_general(m: Machine, partial: int) -> bool:
    """Does the partial entry hold a general reference of the table below? (partial_pte -1;
    partial_flags: PTF_partial_set)"""
    return partial < 0 or (m.partial_flags and partial > 0)


def _held(level: int, nr: int, op: str) -> str:
    if nr == 0:
        return "no entry done yet" if op == "alloc" else "no entry left to drop below it"
    if nr == 1:
        return ("entry 0 validated, holding its references" if op == "alloc" else
                "entry 0 still holds its references")
    if op == "alloc":
        return f"entries 0..{nr - 1} validated, holding their references"
    return f"entries 0..{nr - 1} still hold their references"


def preempted_lines(m: Machine, page: int, ti: int, why: str) -> list[str]:
    """The lines of a (de)validation preempted: where (which check, which entry of which
    table) and what it left; read just as the table became PGT_partial."""
    op = PREEMPTED[why]
    level = _LEVELS.get(ti & PGT_type_mask)
    mfn = int(m.pdx_to_mfn(page))
    nr, partial = progress_of(m, page)
    new = m.release > Release.R4_8               # XSA-299's rework: promote / demote
    fn = f"{('promote' if op == 'alloc' else 'demote') if new else op}_l{level}_table"
    below = f"L{level - 1}" if level else "table"
    own_check = level == 2 or (level == 3 and new)
    if own_check and not partial:
        where = (f"hypercall_preempt_check() before entry {nr} said yes" if op == "alloc" else
                 f"hypercall_preempt_check() after entry {nr}{'' if new else chr(39) + 's put'} "
                 "said yes")
    elif partial:
        where = (f"entry {nr}'s {below} was preempted" + (" while devalidated" if op == "free"
                                                          else ""))
    else:
        where = (f"entry {nr}'s {below} is being validated by another CPU and this one "
                 "stopped waiting (-EINTR)")
    what = "validation" if op == "alloc" else "devalidation"
    left = [f"l{level}/{decode_type_info(ti)['count']} partial", f"nr_validated_ptes {nr} "
            f"({_held(level, nr, op)})"]
    if partial or not own_check:
        left.append(partial_entry_text(level, nr, partial, below, m.partial_flags))
    left.append("get_page_light's extra general reference")
    return [f"preempted: {fn} of mfn {mfn:#x}: {where}; the {what} stops (-{restart_name(m)})",
            "left: " + ", ".join(left)]


def resumed_line(m: Machine, page: int, old: int, new: int, why: str) -> str | None:
    """The line of a PGT_partial table taken up again (its type word leaves PGT_partial),
    or None for any other change of a type word."""
    if not old & PGT_partial or new & PGT_partial:
        return None
    level = _LEVELS.get(old & PGT_type_mask)
    mfn = int(m.pdx_to_mfn(page))
    nr, partial = progress_of(m, page)
    below = f"L{level - 1}" if level else "table"
    entry = f", {partial_entry_text(level, nr, partial, below, m.partial_flags)}" if partial else ""
    if why.startswith("get_page_type"):
        return (f"resumed: the validation of L{level} mfn {mfn:#x} (PGT_partial) goes on from "
                f"entry {nr} (nr_validated_ptes){entry}; this get takes over its type count")
    return (f"resumed: the devalidation of L{level} mfn {mfn:#x} (PGT_partial) goes on "
            f"below entry {nr} (nr_validated_ptes){entry}")


def is_continuation(rc) -> bool:
    return isinstance(rc, Continuation)


def done_before(number: int, args: tuple) -> int:
    """What a continued mmu_update / mmuext_op had done before (its count, marked
    MMU_UPDATE_PREEMPTED); 0 for a call that is not a continuation."""
    if (number in (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op) and len(args) >= 4
            and args[3] is True and isinstance(args[1], list)):
        return args[1][0]
    return 0


def continued_suffix(number: int, args: tuple) -> str:
    """The head's note for a call entered again as a continuation (MMU_UPDATE_PREEMPTED in
    its count): how many of its requests were done before."""
    if number not in (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op) or len(args) < 4:
        return ""
    if args[3] is not True or args[0] is None:
        return ""
    done = args[1][0] if isinstance(args[1], list) else None
    return (" (a continuation: MMU_UPDATE_PREEMPTED" + (f", {done} done before" if done is not None
                                                        else "") + ")")


def continuation_text(m: Machine, call_number: int, call_args: tuple,
                      rc: Continuation) -> str:
    """``-> ERESTART (...)`` (4.1: ``-> EAGAIN``): how the preempted call goes on."""
    name = HYPERCALL_NAMES.get(rc.number, f"hypercall{rc.number}")
    args = rc.args
    code = restart_name(m)
    if rc.number == HYPERVISOR_mmuext_op and args and args[0] is None:
        return (f"-> {code} (preempted; the ops are done, result {args[2]}: a hypercall "
                f"continuation re-enters {name} with no op, to finish old_guest_table first)")
    if args and call_args and args[0] is call_args[0]:     # the same requests, not a rest
        return (f"-> {code} (preempted finishing old_guest_table: a hypercall continuation "
                f"re-enters {name} as it was)")
    left = len(args[0]) if args and args[0] is not None else 0
    done = args[1][0] if len(args) > 1 and isinstance(args[1], list) else None
    unit = "request" if rc.number == HYPERVISOR_mmu_update else "op"
    return (f"-> {code} (preempted: a hypercall continuation re-enters {name} with the "
            f"{left} {unit}{'s' if left != 1 else ''} left, MMU_UPDATE_PREEMPTED"
            + (f", {done} done so far" if done is not None else "") + ")")


def old_guest_table_lines(m: Machine, d, vcpu: int, before: int | None) -> list[str]:
    """What became of vCPU ``vcpu``'s ``old_guest_table`` during a call (``before``: its value
    when the call began): a preempted put left there (an unpin, NEW_BASEPTR's old root), a
    put deferred there (mod_l3/l4_entry's old entry, 4.5 on: PTF_defer), or finished."""
    v = d.vcpus[vcpu] if 0 <= vcpu < len(d.vcpus) else None
    if v is None:
        return []
    after = v.old_guest_table
    who = f"dom{d.domid}.{v.name}"
    if after is not None:
        page = m.mfn_to_page(after)
        preempted = v.old_guest_table_partial if m.partial_flags else page in m.pt.partial
        level = _LEVELS.get(m.frame_table.type_info(page) & PGT_type_mask)
    if before is None and after is not None and not preempted:
        return [f"old_guest_table: the put of the old entry's L{level} mfn {after:#x} is "
                f"deferred to {who}'s old_guest_table (mod_l{level + 1}_entry, PTF_defer): its "
                "next mmuext_op, mmu_update request or NEW_BASEPTR finishes it first"]
    if before is None and after is not None:
        return [f"old_guest_table: the put of mfn {after:#x} was preempted; {who} keeps its "
                "references in old_guest_table (XSA-45), and its next mmuext_op, mmu_update or "
                "NEW_BASEPTR finishes it first"]
    if before is not None and after is None:
        return [f"old_guest_table: put_old_guest_table finished the put of mfn {before:#x}; "
                f"{who}'s old_guest_table is empty"]
    if before is not None:
        return [f"old_guest_table: the put of mfn {after:#x} was preempted again; {who} "
                "still keeps it"]
    return []


def loop_preempted_lines(m: Machine, call_number: int, call_args: tuple, rc,
                         left_to_finish: bool) -> list[str]:
    """A batch stopped between two requests (do_mmu_update's and do_mmuext_op's loops): the
    check before request ``n`` said yes, or (``left_to_finish``) an op of the batch left a
    put in ``old_guest_table``, which must be finished before the next op. Empty for any
    other continuation (a request preempted inside, the put at the call's start)."""
    args = rc.args
    if (call_number not in (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op) or not args
            or args[0] is None or not call_args or args[0] is call_args[0]
            or call_args[0] is None):
        return []
    n = len(call_args[0]) - len(args[0])
    fn = "do_mmu_update" if call_number == HYPERVISOR_mmu_update else "do_mmuext_op"
    unit = "request" if call_number == HYPERVISOR_mmu_update else "op"
    if left_to_finish:
        return [f"stopped: {fn} stops before {unit} {n}: old_guest_table holds a put to "
                f"finish first (-{restart_name(m)}, a continuation)"]
    return [f"preempted: {fn}'s loop asked hypercall_preempt_check() before {unit} {n}: yes "
            f"(-{restart_name(m)}); nothing is partial, the rest is left to the continuation"]
