"""The run accelerators of the reference primitives: get_page (+ get_page_type) and
put_page_type (+ put_page) on a run of frames in one PDX group, with numpy
(``RefCounts.take_run`` / ``drop_run``, the loops under get_pages_and_type and
put_pages_and_type).

They write the frame table through its writable slices, or a run whose frames hold the
same words through ``run_words`` and ``fill_run`` (journal and ``frames_written`` either
way), count the primitives in ``RefStats`` as the loop would,
stamp and flush through RefCounts' public run forms, and free through
``RefCounts.frames_freed``. The run itself is reported by the callers' range events
(``range_get`` / ``range_got`` / ``range_put``), in both modes, so a ``word_changed``
observer (the tracer) sees such a run as a run, and these stay on while it listens.
"""

from __future__ import annotations

import numpy as np

from ._contract import Accelerator, register
from .._refcount import GET_PAGE_COUNT_MAX, RangeResult
from ...mem import (PGC_count_mask, PGT_count_mask, PGT_type_mask, PGT_type_shift,
                    PGT_validated)

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
        if n and (w := refs.ft.run_words(first, n)) is not None and _take_uniform(
                refs, w, first, n, d, type):
            return RangeResult(True, n)
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


def _take_uniform(refs, w: tuple[int, int], first: int, n: int, d: int,
                  type: int | None) -> bool:
    """TakeRun on a run whose frames hold the same words ``w`` and owner (a superpage's 512
    frames as populate_physmap left them, or as its last mapping left them): every check
    of the frame loop is a check of one frame's words, and the run is written with one
    ``fill_run``. False, nothing written, when its frames would fail (the general form
    finds the first, and why)."""
    c, t = w
    if not 1 <= c & PGC_count_mask <= GET_PAGE_COUNT_MAX or refs.ft.run_owner(first, n) != d:
        return False
    stats = refs.stats
    if type is None:
        refs.ft.fill_run(first, n, w, c + 1)
        stats.get_page += n
        return True
    if t & PGT_count_mask == 0:                         # each frame's first typed reference
        if t & PGT_type_mask != type and refs.tlb.stamped_group(first):
            refs.tlb.range_flush(first, np.ones(n, dtype=bool), d)     # each changes type
        t = (t & _KEEP) | type | PGT_validated          # (its count, 0, kept)
    elif t & PGT_type_mask != type or t & PGT_count_mask == PGT_count_mask:
        return False
    refs.ft.fill_run(first, n, w, c + 1, t + 1)
    stats.get_page += n
    stats.get_page_type += n
    return True


class DropRun(Accelerator):
    """put_page_type (+ put_page) on a run of writable or shared frames."""
    slot = ("refs", "drop_run")
    precondition = ("a run in one PDX group whose typed frames hold no page-table type (no "
                    "devalidation) and no count at 0 (the loop's RefcountBug, at the frame "
                    "it names)")
    hides = ()

    def apply(self, refs, first: int, n: int, typed: bool = True):
        if n and (w := refs.ft.run_words(first, n)) is not None and _drop_uniform(
                refs, w, first, n, typed):
            return n
        ci, ti, _ = refs.ft.slices(first, n)            # writable: journaled, reported
        if typed and ((ti >> _U(60)) - _U(1) < _U(4)).any():   # a PGT_l1..l4 type: devalidation
            return None                                 # (nothing written: the loop's)
        if typed:
            tcnt = ti & _U(PGT_count_mask)
            if (tcnt == 0).any():
                return None                 # the loop's RefcountBug, at the frame it names
        if ((ci & _U(PGC_count_mask)) == 0).any():
            return None
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


def _drop_uniform(refs, w: tuple[int, int], first: int, n: int, typed: bool) -> bool:
    """DropRun on a run whose frames hold the same words ``w`` (as :func:`_take_uniform`).
    False, nothing written, when they hold a page-table type or a count at 0 (the
    general form: the loop, or the loop's RefcountBug)."""
    c, t = w
    if c & PGC_count_mask == 0:
        return False
    stats = refs.stats
    if typed:
        if t & PGT_count_mask == 0 or 1 <= t >> PGT_type_shift <= 4:
            return False                                # (PGT_l1..l4: devalidation)
        refs.ft.fill_run(first, n, w, c - 1, t - 1)
        if t & PGT_count_mask == 1:                     # every frame's last typed reference
            refs.tlb.stamp_run(first, None, n)
        stats.put_page_type += n
    else:
        refs.ft.fill_run(first, n, w, c - 1)
    stats.put_page += n
    if c & PGC_count_mask == 1:                         # every frame's last reference
        refs.frames_freed(np.arange(first, first + n))
    return True


register(TakeRun())
register(DropRun())
