"""The run accelerators of the reference primitives: get_page (+ get_page_type) and
put_page_type (+ put_page) on a run of frames in one PDX group, with numpy
(``RefCounts.take_run`` / ``drop_run``, the loops under get_pages_and_type and
put_pages_and_type).

They write the frame table through its writable slices (journal and
``frames_written``), count the primitives with ``RefStats.add`` as the loop would,
stamp and flush through RefCounts' public run forms, and free through
``RefCounts.frames_freed``. The run itself is reported by the callers' range events
(``range_get`` / ``range_got`` / ``range_put``), in both modes, so a ``word_changed``
observer (the tracer) sees such a run as a run, and these stay on while it listens.
"""

from __future__ import annotations

import numpy as np

from ._contract import Accelerator, register
from ..._errors import RefcountBug
from .._refcount import GET_PAGE_COUNT_MAX, RangeResult
from ...mem import PGC_count_mask, PGT_count_mask, PGT_type_mask, PGT_validated

_U = np.uint64
#: what a type change at type count 0 clears (the type and PGT_validated)
_KEEP = ~(PGT_type_mask | PGT_validated) & 0xFFFFFFFFFFFFFFFF


def _failure_counts(i: int, type: int | None, reason: str) -> dict:
    """What the loop counts when it fails at frame i (frames [0, i) taken and undone)."""
    c = {"get_page": i + 1, "put_page": i}     # get_page on [0, i]; [0, i) undone
    if reason in ("free", "overflow"):
        c["get_page_failed"] = 1
    elif reason == "owner":
        c["get_page_failed"] = 1
        c["put_page"] += 1                     # get_page took it, then gave it back
    else:                                      # a type failure at frame i
        c["get_page_type_failed"] = 1
        c["put_page"] += 1                     # frame i's general reference given back
    if type is not None:
        c["get_page_type"] = i + (1 if reason in ("type", "type-overflow") else 0)
        c["put_page_type"] = i
    return c


class TakeRun(Accelerator):
    """get_page (+ get_page_type of a writable or shared type) on a run, all or nothing."""
    slot = ("refs", "take_run")
    precondition = ("a run in one PDX group, type None, writable or shared: every frame is "
                    "checked first (count 1..max-2, the owner, the type free or the same, "
                    "the type count below its top); at the first that fails the loop's "
                    "counts of taking and undoing are kept and nothing is written (a type "
                    "conflict while the design has a type_conflict hook: the loop, which "
                    "asks it)")
    hides = ()

    def apply(self, refs, first: int, n: int, d: int, type: int | None):
        ci, ti, owner = refs.ft.slices(first, n)        # writable: journaled, reported
        cnt = ci & _U(PGC_count_mask)
        ok = (cnt - _U(1)) < _U(GET_PAGE_COUNT_MAX)        # 1 <= count <= max - 2 (wraps at 0)
        ok &= owner == d
        if type is not None:
            tcnt = ti & _U(PGT_count_mask)
            ok &= ((tcnt == 0) | ((ti & _U(PGT_type_mask)) == _U(type))) & (tcnt != _U(PGT_count_mask))
        if n and not ok.all():
            i = int(np.argmin(ok))                          # the first frame that fails
            c, t = int(ci[i]) & PGC_count_mask, int(ti[i])
            reason = ("free" if c == 0 else "overflow" if c > GET_PAGE_COUNT_MAX else
                      "owner" if int(owner[i]) != d else
                      "type-overflow" if t & PGT_count_mask == PGT_count_mask else "type")
            if reason == "type" and refs.type_conflict is not None:
                return None                 # the design's hook may let references go: the loop
            if type is not None and i:                  # frames [0, i) were typed first
                tp = ti[:i]
                refs.tlb.range_flush(first, ((tp & _U(PGT_count_mask)) == 0)
                                    & ((tp & _U(PGT_type_mask)) != _U(type)), d)
            refs.stats.add(**_failure_counts(i, type, reason))
            return RangeResult(False, n, i, reason)
        ci += _U(1)
        if type is None:
            refs.stats.add(get_page=n)
            return RangeResult(True, n)
        refs.stats.add(get_page=n, get_page_type=n)
        first_ref = tcnt == 0
        if first_ref.any():
            if refs.tlb.stamped_group(first):               # a type change may need a flush
                refs.tlb.range_flush(first, first_ref & ((ti & _U(PGT_type_mask)) != _U(type)), d)
            ti[first_ref] = (ti[first_ref] & _U(_KEEP)) | _U(type | PGT_validated)
        ti += _U(1)
        return RangeResult(True, n)


class DropRun(Accelerator):
    """put_page_type (+ put_page) on a run of writable or shared frames."""
    slot = ("refs", "drop_run")
    precondition = ("a run in one PDX group whose typed frames hold no page-table type (no "
                    "devalidation); a count at 0 is the loop's RefcountBug, raised before "
                    "anything is written")
    hides = ()

    def apply(self, refs, first: int, n: int, typed: bool = True):
        ci, ti, _ = refs.ft.slices(first, n)            # writable: journaled, reported
        if typed and ((ti >> _U(60)) - _U(1) < _U(4)).any():   # a PGT_l1..l4 type: devalidation
            return None                                 # (nothing written: the loop's)
        if typed:
            tcnt = ti & _U(PGT_count_mask)
            if (tcnt == 0).any():
                raise RefcountBug(f"put_page_type on a zero type count in pages {first:#x}+{n}")
        if ((ci & _U(PGC_count_mask)) == 0).any():
            raise RefcountBug(f"put_page on a zero count in pages {first:#x}+{n}")
        if typed:
            ti -= _U(1)
            zero = tcnt == 1
            if zero.any():                              # the last typed references went
                refs.tlb.stamp_run(first, zero)
            refs.stats.add(put_page_type=n, put_page=n)
        else:
            refs.stats.add(put_page=n)
        ci -= _U(1)
        freed = np.flatnonzero((ci & _U(PGC_count_mask)) == 0)
        if freed.size:
            refs.frames_freed(first + freed)
        return n


register(TakeRun())
register(DropRun())
