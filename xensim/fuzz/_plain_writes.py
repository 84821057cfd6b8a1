"""The batch check of a batch of ordinary writes done at once, without its 512 requests:
:func:`plain_writes_stepwise`.

A guest fills an ordinary frame (a fallback L1 table before it pins it) with one
mmu_update of up to 512 requests; the plain-write batch accelerator does them at once,
and the batch check runs the same call by its per-request loop (``FuzzRunner._stepwise_check``).
That loop is the class of requests this module proves what it can skip of:

*An ordinary write* is an MMU_NORMAL_PT_UPDATE or MMU_PT_UPDATE_PRESERVE_AD request, with a
64-bit value, into a valid frame that is not a live page table. Its scalar path
(``mmu_update_one``: get_page on the frame, get_page_type writable, the write,
put_page_type, put_page) reads its index and value only to write them: what it does to
the machine besides that entry (its result, every frame word, record and stamp) depends
on the machine besides the frame's contents alone, never on the index, the value or the
contents (``tests/fuzz/test_plain_writes.py`` checks that on generated states).

So once one ordinary write into frame F succeeded and left the machine as it found it
besides its entry (a fixed point: F's words, stamp and every record as before it), every
later ordinary write into F, starting from the same machine besides F's contents, does
the same: succeeds and changes nothing but its entry. The check runs the first two
requests by their loop (stepwise, each a call of its own, as the batch check issues
requests), checks the fixed point at the second, then writes the others' entries in
order; anything else (a request not an ordinary write into F, a failure, no fixed
point) runs the remaining requests by their loop. What it returns is what the loop
returns; the machine ends as the loop would leave it.
"""

from __future__ import annotations

import numpy as np

from ..xen import MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, Machine
from ._journal import CallJournal, Capture
from ._ops import as_int, execute

__all__ = ["ordinary_writes", "plain_writes_stepwise"]

_U64 = (1 << 64) - 1
_PAGE_SHIFT = 12


def ordinary_writes(m: Machine, reqs: list) -> tuple[int, list[int], list[int]] | None:
    """(frame, indexes, values) of ``reqs`` (an op's ``[ptr, val]`` pairs) if every one is
    an ordinary write into one valid frame that is not a live page table now; else None."""
    frame = None
    idx, vals = [], []
    for p, v in reqs:
        p, v = as_int(p), as_int(v)
        ptr = p & _U64
        if ptr & 7 not in (MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD) or not 0 <= v <= _U64:
            return None
        f = ptr >> _PAGE_SHIFT
        if frame is None:
            frame = f
        elif f != frame:
            return None
        idx.append((ptr & ((1 << _PAGE_SHIFT) - 1)) >> 3)
        vals.append(v)
    if frame is None or not m.mfn_valid(frame) or m.pt.live_level(m.mfn_to_page(frame)):
        return None
    return frame, idx, vals


def plain_writes_stepwise(m: Machine, j: CallJournal, doms: dict, op: dict) -> tuple[int, int]:
    """Run mmu_update ``op`` as its per-request loop would, on ``m`` in stepwise mode
    (the caller's), with ``j`` clean: (rc, done). Its ordinary writes after a fixed point
    are written, not run (see the module's docstring)."""
    reqs = op["reqs"]
    done, before, stamp = 0, None, None
    for k in range(min(2, len(reqs))):
        if k == 1:                                # the machine after the first request
            before, stamp = j.capture(), _stamp(m, reqs[0])
        r = execute(m, doms, {**op, "reqs": reqs[k:k + 1]})
        if r.rc < 0 or r.done < 1:
            return r.rc, done
        done += 1
    rest = reqs[2:]
    if not rest:
        return 0, done
    frame = _fixed_point(m, j, reqs, before, stamp)
    writes = ordinary_writes(m, rest) if frame is not None else None
    if writes is None or writes[0] != frame:
        r = execute(m, doms, {**op, "reqs": rest})
        return r.rc, done + r.done
    _, idx, vals = writes
    now = m.mem.table(frame)
    want = now.copy()
    for i, v in zip(idx, vals):                   # in order: the last write of an index wins
        want[i] = v
    diff = np.flatnonzero(want != now)
    if diff.size:
        m.mem.write_many(frame, diff, want[diff])
    return 0, done + len(rest)


def _stamp(m: Machine, req) -> int | None:
    """The TLB stamp of the frame ``req`` writes (None: not an ordinary write)."""
    w = ordinary_writes(m, [req])
    if w is None:
        return None
    page = m.mfn_to_page(w[0])
    return int(m.refs.tlb.stamps_at(np.array([page], dtype=np.int64))[0])


def _fixed_point(m: Machine, j: CallJournal, reqs: list, before: Capture,
                 stamp: int | None) -> int | None:
    """The frame of the first two requests if both are ordinary writes into it and the
    second left the machine as ``before`` (after the first) besides its entry, the frame's
    TLB stamp included; else None."""
    w = ordinary_writes(m, reqs[:2])
    if w is None or stamp is None or _stamp(m, reqs[1]) != stamp:
        return None
    frame, idx, vals = w
    entries = before.tables.get(frame)
    if entries is None:
        return None
    tables = dict(before.tables)
    tables[frame] = entries = entries.copy()
    entries[idx[1]] = vals[1]
    if j.differs_from(Capture(before.pages, before.words, tables, before.small)) is not None:
        return None
    return frame
