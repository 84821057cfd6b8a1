"""The domain heap: Xen's buddy allocator, as bookkeeping of free MFN extents.

Xen keeps free memory in ``heap(node, zone, order)`` lists of ``page_info``
heads, one list per order: every free block is ``2^order`` frames, starts on an
MFN aligned to ``2^order``, and is merged with its *buddy* (``mfn ^ (1 <<
order)``) as soon as both are free, up to ``MAX_ORDER``. xensim models one node
and one zone.

This module is **pure bookkeeping**: it never touches the frame table (the layer
above marks ``page_info`` when it allocates or frees) and never keeps an object
per free frame. Free memory is a set of extents ``(start_mfn, order)`` held in
sortedcontainers structures:

* per order, a ``SortedList`` of block starts (``alloc`` takes the lowest) and a
  ``set`` of the same starts (O(1) buddy look-up when freeing);
* over all orders, a ``SortedDict`` ``start -> order``, to find the free block
  that contains a given MFN by bisection (``is_free``, ``alloc_at``, the
  double-free check).

Every operation costs O(log n) per block split or merge, so freeing a 1 GiB
(order-18) block is one block operation, not a loop over 262,144 frames.

RAM is sparse: the heap is built from the machine's RAM frame ranges, every
frame of which is free at boot, as the maximal naturally aligned blocks that
tile each range. A block never crosses a hole: a buddy that is not RAM is never
free, so coalescing stops at the edge of a range by itself.

The free blocks are always in *canonical* form (no two free buddies of the same
order below ``max_order``), so the free blocks are determined by the set of free
frames alone: freeing everything returns exactly to the boot extents.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from typing import Iterable, Sequence

from sortedcontainers import SortedDict, SortedList

from ._units import MAX_ORDER

__all__ = ["HeapError", "DomainHeap", "blocks_of"]


class HeapError(Exception):
    """A misuse of the heap: double free, freeing non-RAM, bad order, misalignment.

    The layers above validate guest requests first, so this is a simulator bug,
    never a guest error (an exhausted heap is ``alloc() -> None``, not this).
    """


def _int(value, what: str) -> int:
    """``value`` as a plain int (numpy integers accepted), else HeapError."""
    if isinstance(value, bool):
        raise HeapError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise HeapError(f"{what} must be an integer, got {value!r}") from None


def _ctz(x: int) -> int:
    """Number of trailing zero bits of ``x > 0``."""
    return (x & -x).bit_length() - 1


def blocks_of(start: int, end: int, max_order: int) -> list[tuple[int, int]]:
    """The maximal naturally aligned blocks that tile ``[start, end)``, in address order.

    Each block is ``(mfn, order)`` with ``order <= max_order``: at each position
    the largest block that is aligned there and fits before ``end`` is taken.
    ``blocks_of(0, 0x9f, 18)`` is ``[(0, 7), (0x80, 4), (0x90, 3), (0x98, 2),
    (0x9c, 1), (0x9e, 0)]``.
    """
    start = _int(start, "start")
    end = _int(end, "end")
    max_order = _int(max_order, "max_order")
    if start < 0 or end < start:
        raise HeapError(f"bad frame range [{start:#x}, {end:#x})")
    if max_order < 0:
        raise HeapError(f"max_order must not be negative, got {max_order}")
    out: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        order = min((end - pos).bit_length() - 1, max_order)
        if pos:
            order = min(order, _ctz(pos))
        out.append((pos, order))
        pos += 1 << order
    return out


def _normalize_ranges(frame_ranges: Iterable[Sequence[int]]) -> list[tuple[int, int]]:
    """Check sorted, disjoint half-open ranges; drop empty ones, merge touching ones."""
    out: list[tuple[int, int]] = []
    for item in frame_ranges:
        try:
            s, e = item
        except (TypeError, ValueError):
            raise HeapError(f"a frame range is a (start, end) pair, got {item!r}") from None
        s = _int(s, "range start")
        e = _int(e, "range end")
        if s < 0 or e < s:
            raise HeapError(f"bad frame range [{s:#x}, {e:#x})")
        if s == e:
            continue
        if out and s < out[-1][1]:
            raise HeapError(f"frame ranges must be sorted and disjoint: "
                            f"[{s:#x}, {e:#x}) after [{out[-1][0]:#x}, {out[-1][1]:#x})")
        if out and s == out[-1][1]:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


class DomainHeap:
    """Buddy allocator over the free frames of a sparse machine (one node, one zone)."""

    def __init__(self, frame_ranges: list[tuple[int, int]], max_order: int = MAX_ORDER):
        max_order = _int(max_order, "max_order")
        if max_order < 0:
            raise HeapError(f"max_order must not be negative, got {max_order}")
        self._max_order = max_order
        self._ram = _normalize_ranges(frame_ranges)
        self._ram_starts = [s for s, _ in self._ram]
        self._total = sum(e - s for s, e in self._ram)

        boot = [b for s, e in self._ram for b in blocks_of(s, e, max_order)]
        per_order: list[list[int]] = [[] for _ in range(max_order + 1)]
        for mfn, order in boot:
            per_order[order].append(mfn)
        #: per order: block starts, lowest first (alloc takes index 0).
        self._lists: list[SortedList] = [SortedList(starts) for starts in per_order]
        #: per order: the same starts, for O(1) buddy look-up.
        self._sets: list[set[int]] = [set(starts) for starts in per_order]
        #: all free blocks, start -> order, for "which free block holds this MFN".
        self._blocks: SortedDict = SortedDict(boot)
        self._free = self._total
        self._snap: tuple | None = None     # snapshot(), until the next change

    # -- read-only properties ----------------------------------------------------
    @property
    def max_order(self) -> int:
        return self._max_order

    @property
    def total_frames(self) -> int:
        """RAM frames of the machine (constant)."""
        return self._total

    @property
    def free_frames(self) -> int:
        """Frames free now (a running counter)."""
        return self._free

    @property
    def ram_ranges(self) -> tuple[tuple[int, int], ...]:
        """The RAM frame ranges the heap was built from (merged, half-open)."""
        return tuple(self._ram)

    def __repr__(self) -> str:
        return (f"DomainHeap(free={self._free}/{self._total} frames, "
                f"{len(self._blocks)} blocks, max_order={self._max_order})")

    # -- internals ---------------------------------------------------------------
    def _add(self, mfn: int, order: int) -> None:
        self._snap = None
        self._lists[order].add(mfn)
        self._sets[order].add(mfn)
        self._blocks[mfn] = order

    def _remove(self, mfn: int, order: int) -> None:
        self._snap = None
        self._lists[order].remove(mfn)
        self._sets[order].discard(mfn)
        del self._blocks[mfn]

    def _containing(self, mfn: int) -> tuple[int, int] | None:
        """The free block ``(start, order)`` that holds ``mfn``, or None."""
        i = self._blocks.bisect_right(mfn) - 1
        if i < 0:
            return None
        start, order = self._blocks.peekitem(i)
        return (start, order) if mfn < start + (1 << order) else None

    def _overlaps_free(self, start: int, end: int) -> int | None:
        """The lowest free MFN in ``[start, end)``, or None when none of it is free."""
        if self._containing(start) is not None:
            return start
        i = self._blocks.bisect_left(start)
        if i < len(self._blocks):
            nxt = self._blocks.peekitem(i)[0]
            if nxt < end:
                return nxt
        return None

    def _in_ram(self, start: int, end: int) -> bool:
        """Whether every frame of ``[start, end)`` (non-empty) is RAM."""
        i = bisect_right(self._ram_starts, start) - 1
        return i >= 0 and end <= self._ram[i][1]

    def _check_order(self, order) -> int:
        order = _int(order, "order")
        if not 0 <= order <= self._max_order:
            raise HeapError(f"order {order} outside 0..{self._max_order}")
        return order

    def _check_block(self, mfn, order) -> tuple[int, int]:
        order = self._check_order(order)
        mfn = _int(mfn, "mfn")
        if mfn < 0:
            raise HeapError(f"negative mfn {mfn}")
        if mfn & ((1 << order) - 1):
            raise HeapError(f"mfn {mfn:#x} is not aligned to order {order}")
        return mfn, order

    def _check_freeable(self, start: int, end: int) -> None:
        if not self._in_ram(start, end):
            raise HeapError(f"frames [{start:#x}, {end:#x}) are not all RAM")
        hit = self._overlaps_free(start, end)
        if hit is not None:
            raise HeapError(f"double free: frame {hit:#x} of [{start:#x}, {end:#x}) "
                            f"is already free")

    def _free_block(self, mfn: int, order: int) -> None:
        """Insert a validated block, merging with free buddies up to max_order."""
        self._free += 1 << order
        while order < self._max_order:
            buddy = mfn ^ (1 << order)
            if buddy not in self._sets[order]:
                break
            self._remove(buddy, order)
            mfn &= ~(1 << order)
            order += 1
        self._add(mfn, order)

    # -- allocation --------------------------------------------------------------
    def alloc(self, order: int) -> int | None:
        """Allocate ``2^order`` aligned frames; the start MFN, or None when none is free.

        Takes the lowest-addressed block of the smallest order ``>= order`` that
        has one, keeps its lower half at each split and frees the upper half.
        """
        order = self._check_order(order)
        for k in range(order, self._max_order + 1):
            if self._lists[k]:
                break
        else:
            return None
        mfn = self._lists[k][0]
        self._remove(mfn, k)
        while k > order:
            k -= 1
            self._add(mfn + (1 << k), k)
        self._free -= 1 << order
        return mfn

    def alloc_many(self, order: int, count: int) -> list[int]:
        """``count`` x :meth:`alloc` (``order``), stopping when the heap has no block: the
        same starts, in the same order, and the same free blocks after. A block of a
        larger order that the loop would split and then use up entirely (its lower half
        first, then each upper half split off in turn: consecutive extents) is taken whole,
        with no split."""
        order = self._check_order(order)
        out: list[int] = []
        lists = self._lists
        while len(out) < count:
            if not lists[order]:
                k = next((k for k in range(order + 1, self._max_order + 1) if lists[k]), None)
                if k is None:
                    break
                if count - len(out) >= 1 << (k - order):
                    mfn = lists[k][0]
                    self._remove(mfn, k)
                    self._free -= 1 << k
                    out.extend(range(mfn, mfn + (1 << k), 1 << order))
                    continue
            mfn = self.alloc(order)
            if mfn is None:
                break
            out.append(mfn)
        return out

    def alloc_at(self, mfn: int, order: int) -> bool:
        """Allocate exactly ``[mfn, mfn + 2^order)`` if all of it is free.

        Splits the free block that contains it, freeing the halves that do not.
        False, and nothing changed, when any frame of it is not free (or not RAM).
        """
        mfn, order = self._check_block(mfn, order)
        hit = self._containing(mfn)
        if hit is None:
            return False
        start, k = hit
        if k < order:
            # Canonical form: a fully free aligned block lies inside one free block.
            return False
        self._remove(start, k)
        while k > order:
            k -= 1
            half = 1 << k
            if mfn >= start + half:
                self._add(start, k)
                start += half
            else:
                self._add(start + half, k)
        self._free -= 1 << order
        return True

    # -- freeing -----------------------------------------------------------------
    def free(self, mfn: int, order: int = 0) -> None:
        """Return the aligned block ``[mfn, mfn + 2^order)``, coalescing with buddies.

        HeapError, and nothing changed, when the block is misaligned, the order
        is out of range, or any frame of it is already free or not RAM.
        """
        if (order == 0 and type(mfn) is int and mfn >= 0 and self._in_ram(mfn, mfn + 1)
                and self._containing(mfn) is None):
            self._free_block(mfn, 0)     # one frame (put_page's): the checks below, cheaper
            return
        mfn, order = self._check_block(mfn, order)
        self._check_freeable(mfn, mfn + (1 << order))
        self._free_block(mfn, order)

    def free_range(self, start: int, end: int) -> None:
        """Free the frames ``[start, end)`` (any alignment), coalescing.

        The run is cut into its maximal aligned blocks; the whole run is checked
        first, so on HeapError nothing is changed. An empty run does nothing.
        """
        start = _int(start, "start")
        end = _int(end, "end")
        if start < 0 or end < start:
            raise HeapError(f"bad frame range [{start:#x}, {end:#x})")
        if start == end:
            return
        self._check_freeable(start, end)
        for mfn, order in blocks_of(start, end, self._max_order):
            self._free_block(mfn, order)

    # -- queries -----------------------------------------------------------------
    def is_free(self, mfn: int) -> bool:
        return self._containing(_int(mfn, "mfn")) is not None

    def free_in(self, start: int, end: int) -> list[tuple[int, int]]:
        """The free frames of ``[start, end)`` as sorted, half-open ranges (blocks clipped
        to it, touching ones merged)."""
        out: list[tuple[int, int]] = []
        i = max(self._blocks.bisect_right(start) - 1, 0)
        while i < len(self._blocks):
            s, order = self._blocks.peekitem(i)
            if s >= end:
                break
            lo, hi = max(s, start), min(s + (1 << order), end)
            if lo < hi:
                if out and out[-1][1] == lo:
                    out[-1] = (out[-1][0], hi)
                else:
                    out.append((lo, hi))
            i += 1
        return out

    def extents(self) -> list[tuple[int, int]]:
        """Free blocks as ``(start_mfn, order)``, sorted by start."""
        return list(self._blocks.items())

    def free_ranges(self) -> list[tuple[int, int]]:
        """Free frames as merged, sorted, half-open MFN ranges."""
        out: list[tuple[int, int]] = []
        for start, order in self._blocks.items():
            end = start + (1 << order)
            if out and out[-1][1] == start:
                out[-1] = (out[-1][0], end)
            else:
                out.append((start, end))
        return out

    def count_by_order(self) -> list[int]:
        """Number of free blocks of each order, index 0..max_order."""
        return [len(starts) for starts in self._lists]

    def snapshot(self) -> tuple:
        """Hashable state: equal for two heaps holding the same free blocks. Kept until the
        heap next changes (the fuzzer's journal takes one after every call)."""
        if self._snap is None:
            self._snap = tuple(self._blocks.items())
        return self._snap

    def restore(self, snapshot: tuple) -> None:
        """Hold exactly the free blocks of ``snapshot`` (a :meth:`snapshot` of this heap):
        the blocks that differ are taken out and put in, the others stay."""
        now = self.snapshot()
        if now == snapshot:
            return
        have, want = set(now), set(snapshot)
        for mfn, order in have - want:
            self._remove(mfn, order)
            self._free -= 1 << order
        for mfn, order in want - have:
            self._add(mfn, order)
            self._free += 1 << order
        self._snap = snapshot

    def check(self) -> None:
        """Verify every invariant; HeapError naming the first breach."""
        n = self._max_order + 1
        if len(self._lists) != n or len(self._sets) != n:
            raise HeapError("per-order structures do not match max_order")
        count = 0
        for order in range(n):
            lst, st = self._lists[order], self._sets[order]
            if len(lst) != len(st) or set(lst) != st:
                raise HeapError(f"order {order}: sorted list and set disagree")
            for mfn in lst:
                if self._blocks.get(mfn) != order:
                    raise HeapError(f"order {order}: block {mfn:#x} missing from the index")
            count += len(lst)
        if count != len(self._blocks):
            raise HeapError(f"index holds {len(self._blocks)} blocks, "
                            f"order lists hold {count}")
        total = 0
        prev_end = None
        for mfn, order in self._blocks.items():
            if not 0 <= order <= self._max_order:
                raise HeapError(f"block {mfn:#x} has bad order {order}")
            size = 1 << order
            if mfn < 0 or mfn & (size - 1):
                raise HeapError(f"block {mfn:#x} is not aligned to order {order}")
            if prev_end is not None and mfn < prev_end:
                raise HeapError(f"block {mfn:#x} overlaps the block before it")
            if not self._in_ram(mfn, mfn + size):
                raise HeapError(f"block [{mfn:#x}, {mfn + size:#x}) is not all RAM")
            if order < self._max_order and (mfn ^ size) in self._sets[order]:
                raise HeapError(f"free buddies {mfn:#x} and {mfn ^ size:#x} "
                                f"of order {order} were not coalesced")
            total += size
            prev_end = mfn + size
        if total != self._free:
            raise HeapError(f"free_frames is {self._free}, blocks hold {total}")
        if self._free > self._total:
            raise HeapError(f"free_frames {self._free} exceeds total_frames {self._total}")
