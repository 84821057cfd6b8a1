"""Tests for xensim.mem._heap: the buddy allocator over free MFN extents.

Grouped per API. Each test builds a small layout and asserts exact free lists,
in the spirit of Linux's tools/testing/memblock.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant,
                                 precondition, rule)

from xensim.mem._heap import DomainHeap, HeapError, blocks_of
from xensim.mem._units import MAX_ORDER, SUPERPAGE_ORDER

# Firecracker-like machine: low RAM below 0x9f000, then 1 MiB .. 1 GiB.
FIRECRACKER = [(0, 0x9F), (0x100, 0x40000)]

FIRECRACKER_BOOT = [
    # 0x9f = 0x80 + 0x10 + 0x8 + 0x4 + 0x2 + 0x1
    (0x00, 7), (0x80, 4), (0x90, 3), (0x98, 2), (0x9C, 1), (0x9E, 0),
    # 0x100 .. 0x40000: alignment grows by one order per block
    (0x100, 8), (0x200, 9), (0x400, 10), (0x800, 11), (0x1000, 12),
    (0x2000, 13), (0x4000, 14), (0x8000, 15), (0x10000, 16), (0x20000, 17),
]


def by_order(extents, max_order=MAX_ORDER):
    counts = [0] * (max_order + 1)
    for _, order in extents:
        counts[order] += 1
    return counts


def assert_unchanged(heap, snap, free):
    assert heap.snapshot() == snap
    assert heap.free_frames == free
    heap.check()


# --------------------------------------------------------------------------- blocks_of
class TestBlocksOf:
    def test_low_memory(self):
        assert blocks_of(0, 0x9F, 18) == FIRECRACKER_BOOT[:6]

    def test_unaligned_both_ends(self):
        assert blocks_of(3, 0x13, 18) == [(3, 0), (4, 2), (8, 3), (0x10, 1), (0x12, 0)]

    def test_max_order_caps(self):
        assert blocks_of(0, 0x40, 4) == [(0, 4), (0x10, 4), (0x20, 4), (0x30, 4)]
        assert blocks_of(0, 3 << 18, 18) == [(0, 18), (1 << 18, 18), (2 << 18, 18)]

    def test_empty_and_single(self):
        assert blocks_of(5, 5, 18) == []
        assert blocks_of(7, 8, 18) == [(7, 0)]
        assert blocks_of(0, 1, 0) == [(0, 0)]

    def test_bad_ranges(self):
        with pytest.raises(HeapError):
            blocks_of(8, 4, 18)
        with pytest.raises(HeapError):
            blocks_of(-1, 4, 18)
        with pytest.raises(HeapError):
            blocks_of(0, 4, -1)


# --------------------------------------------------------------------------- boot
class TestBoot:
    def test_firecracker_extents(self):
        heap = DomainHeap(FIRECRACKER)
        assert heap.extents() == FIRECRACKER_BOOT
        assert heap.max_order == MAX_ORDER == 18
        assert heap.total_frames == heap.free_frames == 0x9F + 0x40000 - 0x100
        assert heap.count_by_order() == [1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1,
                                         1, 1, 1, 1, 1, 0]
        assert heap.free_ranges() == FIRECRACKER
        heap.check()

    def test_order_18_blocks(self):
        heap = DomainHeap([(0x100, 0x100000)])
        assert heap.extents() == [
            (0x100, 8), (0x200, 9), (0x400, 10), (0x800, 11), (0x1000, 12),
            (0x2000, 13), (0x4000, 14), (0x8000, 15), (0x10000, 16), (0x20000, 17),
            (0x40000, 18), (0x80000, 18), (0xC0000, 18),
        ]
        assert heap.count_by_order()[18] == 3

    def test_small_max_order(self):
        heap = DomainHeap([(0, 0x9F)], max_order=4)
        assert heap.extents() == [(0, 4), (0x10, 4), (0x20, 4), (0x30, 4), (0x40, 4),
                                  (0x50, 4), (0x60, 4), (0x70, 4), (0x80, 4),
                                  (0x90, 3), (0x98, 2), (0x9C, 1), (0x9E, 0)]
        assert heap.count_by_order() == [1, 1, 1, 1, 9]
        heap.check()

    def test_touching_ranges_merge_and_empty_ranges_drop(self):
        heap = DomainHeap([(0, 0x40), (0x40, 0x80), (0x90, 0x90), (0x100, 0x101)])
        assert heap.extents() == [(0, 7), (0x100, 0)]
        assert heap.ram_ranges == ((0, 0x80), (0x100, 0x101))
        assert heap.total_frames == 0x81

    def test_empty_machine(self):
        heap = DomainHeap([])
        assert heap.extents() == [] and heap.total_frames == heap.free_frames == 0
        assert heap.alloc(0) is None
        heap.check()

    def test_numpy_ints_accepted(self):
        heap = DomainHeap([(np.int64(0), np.uint64(0x10))])
        assert heap.extents() == [(0, 4)]
        assert type(heap.extents()[0][0]) is int
        assert heap.alloc(np.int64(2)) == 0
        heap.free(np.uint64(0), np.int32(2))
        assert heap.extents() == [(0, 4)]

    @pytest.mark.parametrize("ranges", [
        [(0x10, 0x8)],                 # end before start
        [(0x100, 0x200), (0, 0x10)],   # unsorted
        [(0, 0x20), (0x10, 0x30)],     # overlapping
        [(-1, 4)],
        [(0, 1, 2)],
    ])
    def test_bad_ranges(self, ranges):
        with pytest.raises(HeapError):
            DomainHeap(ranges)

    def test_bad_max_order(self):
        with pytest.raises(HeapError):
            DomainHeap([(0, 1)], max_order=-1)

    def test_large_machine_boots_as_extents(self):
        # 2 TiB of RAM at 4 TiB: 2048 order-18 blocks, not 2^29 frame objects.
        heap = DomainHeap([(1 << 30, (1 << 30) + (1 << 29))])
        assert heap.count_by_order() == [0] * 18 + [2048]
        assert heap.free_frames == 1 << 29


# --------------------------------------------------------------------------- alloc
class TestAlloc:
    def test_order0_splits_lowest_frame(self):
        heap = DomainHeap([(0, 0x100)])
        assert heap.alloc(0) == 0
        assert heap.extents() == [(1, 0), (2, 1), (4, 2), (8, 3), (0x10, 4),
                                  (0x20, 5), (0x40, 6), (0x80, 7)]
        assert heap.count_by_order() == [1, 1, 1, 1, 1, 1, 1, 1] + [0] * 11
        assert heap.free_frames == 0xFF
        # The next order-0 allocation is the order-0 block left by the split.
        assert heap.alloc(0) == 1
        assert heap.extents() == [(2, 1), (4, 2), (8, 3), (0x10, 4),
                                  (0x20, 5), (0x40, 6), (0x80, 7)]
        assert heap.alloc(0) == 2
        assert heap.extents()[0] == (3, 0)
        heap.check()

    def test_smallest_order_first(self):
        heap = DomainHeap(FIRECRACKER)
        # Order 0 already has a block (0x9e): no split, not frame 0.
        assert heap.alloc(0) == 0x9E
        assert heap.extents() == FIRECRACKER_BOOT[:5] + FIRECRACKER_BOOT[6:]
        # Then the order-1 block at 0x9c is split, keeping its lower half.
        assert heap.alloc(0) == 0x9C
        assert heap.extents() == FIRECRACKER_BOOT[:4] + [(0x9D, 0)] + FIRECRACKER_BOOT[6:]
        assert heap.free_frames == heap.total_frames - 2
        heap.check()

    def test_superpage_alignment(self):
        heap = DomainHeap(FIRECRACKER)
        assert heap.alloc(SUPERPAGE_ORDER) == 0x200
        assert heap.alloc(9) == 0x400            # order-10 block split
        assert (0x600, 9) in heap.extents()
        assert heap.alloc(9) == 0x600
        assert heap.alloc(9) == 0x800            # order-11 block split ...
        assert [(m, o) for m, o in heap.extents() if m >= 0x800 and m < 0x1000] == \
            [(0xA00, 9), (0xC00, 10)]
        for mfn in (0x200, 0x400, 0x600, 0x800):
            assert mfn % 512 == 0
        heap.check()

    def test_exhaustion_returns_none_and_changes_nothing(self):
        heap = DomainHeap([(0, 0x10)])
        snap, free = heap.snapshot(), heap.free_frames
        assert heap.alloc(5) is None
        assert_unchanged(heap, snap, free)
        assert heap.alloc(4) == 0
        assert heap.free_frames == 0 and heap.extents() == []
        assert heap.alloc(0) is None
        assert heap.extents() == [] and heap.free_frames == 0

    def test_fragmented_cannot_satisfy_larger_order(self):
        heap = DomainHeap([(0, 8)])
        assert [heap.alloc(0) for _ in range(8)] == list(range(8))
        for mfn in (0, 2, 4, 6):
            heap.free(mfn)
        snap = heap.snapshot()
        assert heap.alloc(1) is None            # 4 free frames, no free pair
        assert heap.snapshot() == snap

    @pytest.mark.parametrize("order", [-1, 19, 1.0, True, "1"])
    def test_bad_order(self, order):
        heap = DomainHeap(FIRECRACKER)
        snap = heap.snapshot()
        with pytest.raises(HeapError):
            heap.alloc(order)
        assert heap.snapshot() == snap

    def test_deterministic(self):
        a, b = DomainHeap(FIRECRACKER), DomainHeap(FIRECRACKER)
        orders = [0, 3, 9, 1, 0, 12, 2, 0, 5]
        assert [a.alloc(o) for o in orders] == [b.alloc(o) for o in orders]
        assert a.snapshot() == b.snapshot()


# --------------------------------------------------------------------------- free
class TestFree:
    def test_free_coalesces_back_to_boot(self):
        heap = DomainHeap(FIRECRACKER)
        boot = DomainHeap(FIRECRACKER).snapshot()
        got = [(heap.alloc(o), o) for o in (0, 0, 0, 9, 3, 0, 12, 1, 17)]
        assert all(m is not None for m, _ in got)
        heap.check()
        for mfn, order in reversed(got[::2]):
            heap.free(mfn, order)
            heap.check()
        for mfn, order in got[1::2]:
            heap.free(mfn, order)
            heap.check()
        assert heap.snapshot() == boot
        assert heap.extents() == FIRECRACKER_BOOT
        assert heap.free_frames == heap.total_frames

    def test_free_merges_buddies_step_by_step(self):
        heap = DomainHeap([(0, 0x10)])
        assert heap.alloc(4) == 0
        heap.free(1)
        assert heap.extents() == [(1, 0)]
        heap.free(0)                              # buddy of 1 -> (0, 1)
        assert heap.extents() == [(0, 1)]
        heap.free(8, 3)
        assert heap.extents() == [(0, 1), (8, 3)]
        heap.free(2, 1)                           # (0,1)+(2,1) -> (0,2)
        assert heap.extents() == [(0, 2), (8, 3)]
        heap.free(4, 2)                           # -> (0,3) -> (0,4)
        assert heap.extents() == [(0, 4)]
        assert heap.free_frames == 0x10

    def test_order18_is_one_block(self):
        heap = DomainHeap([(0, 1 << 20)])
        assert heap.count_by_order()[18] == 4
        assert heap.alloc(18) == 0
        assert heap.free_frames == 3 << 18
        heap.free(0, 18)
        assert heap.extents() == [(0, 18), (1 << 18, 18), (2 << 18, 18), (3 << 18, 18)]
        assert heap.free_frames == 1 << 20

    def test_no_merge_above_max_order(self):
        heap = DomainHeap([(0, 0x40)], max_order=4)
        assert heap.alloc(4) == 0
        heap.free(0, 4)
        assert heap.extents() == [(0, 4), (0x10, 4), (0x20, 4), (0x30, 4)]
        heap.check()

    def test_never_crosses_a_hole(self):
        heap = DomainHeap([(0, 0x100), (0x200, 0x300)])
        assert heap.extents() == [(0, 8), (0x200, 8)]
        a = [heap.alloc(0) for _ in range(0x200)]
        assert sorted(a) == list(range(0x100)) + list(range(0x200, 0x300))
        assert heap.alloc(0) is None
        for mfn in a:
            heap.free(mfn)
        assert heap.extents() == [(0, 8), (0x200, 8)]
        assert (0x100, 8) not in heap.extents()
        assert heap.free_ranges() == [(0, 0x100), (0x200, 0x300)]
        assert not heap.is_free(0x100) and not heap.is_free(0x1FF)
        heap.check()

    def test_unaligned_range_end(self):
        heap = DomainHeap([(0, 0x13)])
        assert heap.extents() == [(0, 4), (0x10, 1), (0x12, 0)]
        assert heap.alloc(0) == 0x12
        assert heap.alloc(0) == 0x10
        assert heap.alloc(0) == 0x11
        assert heap.alloc(0) == 0          # now the order-4 block is split
        assert heap.extents() == [(1, 0), (2, 1), (4, 2), (8, 3)]
        for mfn in (0x11, 0x12, 0, 0x10):
            heap.free(mfn)
        # 0x12 has buddy 0x13, which is not RAM: it stays order 0.
        assert heap.extents() == [(0, 4), (0x10, 1), (0x12, 0)]
        heap.check()

    def test_double_free(self):
        heap = DomainHeap(FIRECRACKER)
        mfn = heap.alloc(0)
        heap.free(mfn)
        snap, free = heap.snapshot(), heap.free_frames
        with pytest.raises(HeapError, match="double free"):
            heap.free(mfn)
        assert_unchanged(heap, snap, free)
        with pytest.raises(HeapError, match="double free"):
            heap.free(0x1000, 12)                 # a whole free block
        assert_unchanged(heap, snap, free)

    def test_partial_double_free(self):
        heap = DomainHeap([(0, 0x10)])
        assert heap.alloc(4) == 0
        heap.free(5)
        snap, free = heap.snapshot(), heap.free_frames
        with pytest.raises(HeapError, match="double free"):
            heap.free(4, 2)                       # frame 5 is free already
        assert_unchanged(heap, snap, free)
        with pytest.raises(HeapError, match="double free"):
            heap.free(0, 4)
        assert_unchanged(heap, snap, free)

    def test_free_non_ram(self):
        heap = DomainHeap(FIRECRACKER)
        heap.alloc_at(0, 7)
        snap, free = heap.snapshot(), heap.free_frames
        for mfn, order in [(0x9F, 0), (0xA0, 0), (0xFF, 0), (0x40000, 0),
                           (0x80, 5), (0, 8), (0x40000, 18)]:
            with pytest.raises(HeapError, match="not all RAM"):
                heap.free(mfn, order)
            assert_unchanged(heap, snap, free)

    def test_free_misaligned(self):
        heap = DomainHeap([(0, 0x100)])
        assert heap.alloc(8) == 0
        for mfn, order in [(1, 1), (2, 2), (0x80 + 0x40, 7), (0x100 - 512, 9)]:
            with pytest.raises(HeapError):
                heap.free(mfn, order)
            assert heap.extents() == [] and heap.free_frames == 0

    @pytest.mark.parametrize("order", [-1, 19])
    def test_free_bad_order(self, order):
        heap = DomainHeap([(0, 0x100)])
        heap.alloc(8)
        with pytest.raises(HeapError):
            heap.free(0, order)
        assert heap.free_frames == 0

    def test_free_negative_mfn(self):
        heap = DomainHeap([(0, 0x100)])
        with pytest.raises(HeapError):
            heap.free(-1)


# --------------------------------------------------------------------------- alloc_at
class TestAllocAt:
    def test_middle_of_large_block(self):
        heap = DomainHeap([(0, 0x100)])
        assert heap.alloc_at(0x50, 0) is True
        assert heap.extents() == [(0, 6), (0x40, 4), (0x51, 0), (0x52, 1),
                                  (0x54, 2), (0x58, 3), (0x60, 5), (0x80, 7)]
        assert heap.free_frames == 0xFF
        assert not heap.is_free(0x50)
        heap.check()
        heap.free(0x50)
        assert heap.extents() == [(0, 8)]

    def test_whole_block_and_superpage(self):
        heap = DomainHeap(FIRECRACKER)
        assert heap.alloc_at(0x200, 9) is True
        assert (0x200, 9) not in heap.extents()
        assert heap.alloc_at(0x20000 + 0x600, 9) is True
        assert heap.free_frames == heap.total_frames - 1024
        heap.check()

    def test_not_free_returns_false_and_changes_nothing(self):
        heap = DomainHeap([(0, 0x100), (0x200, 0x300)])
        heap.alloc_at(0x10, 0)
        snap, free = heap.snapshot(), heap.free_frames
        assert heap.alloc_at(0x10, 0) is False       # already allocated
        assert heap.alloc_at(0x10, 4) is False       # contains 0x10
        assert heap.alloc_at(0, 5) is False          # contains 0x10
        assert heap.alloc_at(0, 8) is False
        assert heap.alloc_at(0x100, 0) is False      # hole
        assert heap.alloc_at(0x100, 8) is False
        assert heap.alloc_at(0, 9) is False          # spans the hole
        assert heap.alloc_at(0x1000, 0) is False     # beyond RAM
        assert_unchanged(heap, snap, free)

    def test_bad_arguments_raise(self):
        heap = DomainHeap([(0, 0x100)])
        snap = heap.snapshot()
        for mfn, order in [(1, 1), (0, 19), (0, -1), (-2, 1)]:
            with pytest.raises(HeapError):
                heap.alloc_at(mfn, order)
        assert heap.snapshot() == snap


# --------------------------------------------------------------------------- free_range
class TestFreeRange:
    def test_middle_of_large_block(self):
        heap = DomainHeap([(0, 0x100)])
        assert heap.alloc(8) == 0
        heap.free_range(0x13, 0x47)
        assert heap.extents() == [(0x13, 0), (0x14, 2), (0x18, 3), (0x20, 5),
                                  (0x40, 2), (0x44, 1), (0x46, 0)]
        assert heap.free_frames == 0x47 - 0x13
        assert heap.free_ranges() == [(0x13, 0x47)]
        heap.check()
        heap.free_range(0x47, 0x100)
        heap.free_range(0, 0x13)
        assert heap.extents() == [(0, 8)]

    def test_coalesces_with_neighbours(self):
        heap = DomainHeap([(0, 0x40)])
        assert heap.alloc(6) == 0
        heap.free_range(0, 0x10)
        heap.free_range(0x20, 0x40)
        assert heap.extents() == [(0, 4), (0x20, 5)]
        heap.free_range(0x10, 0x20)
        assert heap.extents() == [(0, 6)]

    def test_errors_change_nothing(self):
        heap = DomainHeap([(0, 0x100), (0x200, 0x300)])
        assert heap.alloc_at(0, 8) and heap.alloc_at(0x200, 8)
        heap.free(0x80)
        snap, free = heap.snapshot(), heap.free_frames
        with pytest.raises(HeapError, match="double free"):
            heap.free_range(0x10, 0x90)               # 0x80 already free
        assert_unchanged(heap, snap, free)
        with pytest.raises(HeapError, match="not all RAM"):
            heap.free_range(0xF0, 0x210)              # crosses the hole
        assert_unchanged(heap, snap, free)
        with pytest.raises(HeapError):
            heap.free_range(0x20, 0x10)
        assert_unchanged(heap, snap, free)
        heap.free_range(0x20, 0x20)                   # empty: nothing
        assert_unchanged(heap, snap, free)

    def test_large_range_is_block_operations(self):
        # 2^29 frames freed in one call: a per-frame loop would never finish.
        n = 1 << 29
        heap = DomainHeap([(0, n)])
        for i in range(n >> 18):
            assert heap.alloc(18) == i << 18
        assert heap.free_frames == 0
        heap.free_range(0, n)
        assert heap.count_by_order() == [0] * 18 + [2048]
        assert heap.free_frames == n


# --------------------------------------------------------------------------- queries
class TestQueries:
    def test_is_free(self):
        heap = DomainHeap(FIRECRACKER)
        assert heap.is_free(0) and heap.is_free(0x9E) and heap.is_free(0x3FFFF)
        assert not heap.is_free(0x9F) and not heap.is_free(0xFF)
        assert not heap.is_free(0x40000) and not heap.is_free(-1)
        heap.alloc_at(0x9000, 0)
        assert not heap.is_free(0x9000) and heap.is_free(0x9001) and heap.is_free(0x8FFF)

    def test_free_ranges_merge_blocks(self):
        heap = DomainHeap(FIRECRACKER)
        heap.alloc_at(0x1000, 0)
        assert heap.free_ranges() == [(0, 0x9F), (0x100, 0x1000), (0x1001, 0x40000)]

    def test_snapshot_is_hashable_and_compares(self):
        a, b = DomainHeap([(0, 0x100)]), DomainHeap([(0, 0x100)])
        assert a.snapshot() == b.snapshot() and hash(a.snapshot()) == hash(b.snapshot())
        a.alloc(0)
        assert a.snapshot() != b.snapshot()
        b.alloc_at(0, 0)
        assert a.snapshot() == b.snapshot()
        assert len({a.snapshot(), b.snapshot()}) == 1

    def test_check_detects_corruption(self):
        heap = DomainHeap([(0, 0x100)])
        heap.check()
        heap._free += 1
        with pytest.raises(HeapError, match="free_frames"):
            heap.check()
        heap._free -= 1
        # Two uncoalesced buddies.
        heap._remove(0, 8)
        heap._add(0, 7)
        heap._add(0x80, 7)
        with pytest.raises(HeapError, match="coalesced"):
            heap.check()

    def test_check_detects_block_outside_ram(self):
        heap = DomainHeap([(0, 0x100)])
        heap._add(0x100, 0)
        heap._free += 1
        with pytest.raises(HeapError, match="RAM"):
            heap.check()


# --------------------------------------------------------------------------- fragmentation
def test_fragmentation_every_other_frame():
    heap = DomainHeap([(0, 0x40), (0x80, 0x93)])
    boot = heap.snapshot()
    total = heap.total_frames
    assert total == 0x40 + 0x13
    got = [heap.alloc(0) for _ in range(total)]
    assert sorted(got) == list(range(0x40)) + list(range(0x80, 0x93))
    assert heap.alloc(0) is None and heap.free_frames == 0
    for mfn in range(0, 0x40, 2):
        heap.free(mfn)
    for mfn in range(0x80, 0x93, 2):
        heap.free(mfn)
    # No two free frames are buddies: 32 + 10 order-0 blocks, nothing larger.
    assert heap.count_by_order() == [42] + [0] * 18
    assert heap.free_frames == 42
    heap.check()
    for mfn in list(range(1, 0x40, 2)) + list(range(0x81, 0x93, 2)):
        heap.free(mfn)
    assert heap.snapshot() == boot
    assert heap.extents() == [(0, 6), (0x80, 4), (0x90, 1), (0x92, 0)]
    heap.check()


# --------------------------------------------------------------------------- model
def model_blocks(free_frames: set[int], max_order: int) -> list[tuple[int, int]]:
    """Canonical buddy blocks of a set of free frames, computed the slow way."""
    out = []
    frames = sorted(free_frames)
    i = 0
    while i < len(frames):
        start = frames[i]
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        end = frames[j] + 1
        pos = start
        while pos < end:
            k = 0
            while (k < max_order and pos % (1 << (k + 1)) == 0
                   and pos + (1 << (k + 1)) <= end):
                k += 1
            out.append((pos, k))
            pos += 1 << k
        i = j + 1
    return out


LAYOUTS = [
    [(0, 0x9F), (0x100, 0x180), (0x203, 0x2C0)],
    [(0, 0x100), (0x200, 0x300)],
    [(5, 0x47), (0x60, 0x61), (0x80, 0x1F3)],
]
SPAN = 0x300


class HeapMachine(RuleBasedStateMachine):
    """Random alloc/alloc_at/free/free_range against a frame-set model."""

    @initialize(layout=st.sampled_from(LAYOUTS), max_order=st.sampled_from([2, 5, 18]))
    def boot(self, layout, max_order):
        self.layout = layout
        self.max_order = max_order
        self.heap = DomainHeap(layout, max_order=max_order)
        self.ram = {f for s, e in layout for f in range(s, e)}
        self.used: set[int] = set()
        self.held: list[tuple[int, int]] = []       # allocated runs [start, end)

    def free_set(self) -> set[int]:
        return self.ram - self.used

    def take(self, start, end):
        self.used.update(range(start, end))
        self.held.append((start, end))

    @rule(order=st.integers(0, 9))
    def alloc(self, order):
        order = min(order, self.max_order)
        blocks = model_blocks(self.free_set(), self.max_order)
        fits = [(o, m) for m, o in blocks if o >= order]
        expect = min(fits)[1] if fits else None
        got = self.heap.alloc(order)
        assert got == expect
        if got is not None:
            assert got % (1 << order) == 0
            self.take(got, got + (1 << order))

    @rule(mfn=st.integers(0, SPAN - 1), order=st.integers(0, 6))
    def alloc_at(self, mfn, order):
        order = min(order, self.max_order)
        mfn &= ~((1 << order) - 1)
        want = set(range(mfn, mfn + (1 << order)))
        expect = want <= self.free_set()
        before = self.heap.snapshot()
        assert self.heap.alloc_at(mfn, order) is expect
        if expect:
            self.take(mfn, mfn + (1 << order))
        else:
            assert self.heap.snapshot() == before

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def free_some(self, data):
        idx = data.draw(st.integers(0, len(self.held) - 1))
        start, end = self.held.pop(idx)
        a = data.draw(st.integers(start, end - 1))
        b = data.draw(st.integers(a + 1, end))
        size = b - a
        if size & (size - 1) == 0 and a % size == 0 and data.draw(st.booleans()):
            self.heap.free(a, size.bit_length() - 1)
        else:
            self.heap.free_range(a, b)
        self.used.difference_update(range(a, b))
        for lo, hi in ((start, a), (b, end)):
            if lo < hi:
                self.held.append((lo, hi))

    @rule(mfn=st.integers(0, SPAN - 1), order=st.integers(0, 3))
    def bad_free(self, mfn, order):
        order = min(order, self.max_order)
        mfn &= ~((1 << order) - 1)
        frames = set(range(mfn, mfn + (1 << order)))
        if frames <= self.used:
            return                                   # a legal free: not this rule
        before, free = self.heap.snapshot(), self.heap.free_frames
        with pytest.raises(HeapError):
            self.heap.free(mfn, order)
        assert self.heap.snapshot() == before and self.heap.free_frames == free

    @rule()
    def free_everything(self):
        for start, end in self.held:
            self.heap.free_range(start, end)
        self.held.clear()
        self.used.clear()
        assert self.heap.snapshot() == DomainHeap(self.layout, self.max_order).snapshot()

    @invariant()
    def consistent(self):
        heap = self.heap
        heap.check()
        assert heap.free_frames + len(self.used) == heap.total_frames == len(self.ram)
        assert heap.extents() == model_blocks(self.free_set(), self.max_order)
        counts = heap.count_by_order()
        assert sum(counts) == len(heap.extents()) and len(counts) == self.max_order + 1

    def teardown(self):
        if not hasattr(self, "heap"):
            return
        for start, end in self.held:
            self.heap.free_range(start, end)
        assert self.heap.snapshot() == DomainHeap(self.layout, self.max_order).snapshot()
        assert self.heap.free_frames == self.heap.total_frames


HeapMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestHeapMachine = HeapMachine.TestCase


# --------------------------------------------------------------------------- alloc_many
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.booleans()), max_size=30),
       st.integers(0, 12), st.integers(0, 600))
def test_alloc_many_is_the_loop(history, order, count):
    """alloc_many(order, count) against count x alloc(order) (Xen's alloc_heap_pages one
    extent at a time, as populate_physmap calls it): the same starts, the same free blocks
    after, on heaps left in many states by allocations and frees."""
    import copy
    heap = DomainHeap(FIRECRACKER)
    held = []
    for o, give_back in history:
        mfn = heap.alloc(o)
        if mfn is not None:
            held.append((mfn, o))
        if give_back and held:
            heap.free(*held.pop(0))
    loop = copy.deepcopy(heap)
    want = []
    for _ in range(count):
        mfn = loop.alloc(order)
        if mfn is None:
            break
        want.append(mfn)
    assert heap.alloc_many(order, count) == want
    assert heap.extents() == loop.extents() and heap.free_frames == loop.free_frames
