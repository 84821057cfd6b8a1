"""xensim.mem._spage.SuperpageTable: xensim's sparse, chunked superpage table.

A chunk is 512 entries (1 GiB of PDX space); an entry is 8 B (1 word) or
16 B (2 words); a chunk is allocated only if one of its superpages has RAM.
So allocated_bytes == n_chunks * 512 * 8 * words_per_entry, worked out by
hand for each preset below (superpage numbers are mfn >> 9, spdx = pdx >> 9).
"""

from __future__ import annotations

import numpy as np
import pytest

from xensim import Machine, SuperpageTable, load_preset
from xensim.mem._spage import spdx_of

CHUNK = 512 * 8          # one chunk of 1-word entries: 4096 B

def table(spdx, words=1):
    return SuperpageTable(np.array(spdx, dtype=np.int64), words)


# ---------------------------------------------------------------------------
# a small hand-made table: superpages 0, 1, 5 (chunk 0) and 1024, 1030 (chunk 2)
# ---------------------------------------------------------------------------

@pytest.fixture
def small():
    return table([0, 1, 5, 1024, 1030])


def test_small_table_sizes(small):
    # chunks {0, 2}: 2 chunks * 512 entries * 8 B = 8192 B
    assert small.n_chunks == 2
    assert small.n_superpages == 5
    assert small.entry_bytes == 8
    assert small.allocated_bytes == 8192
    assert small.store.shape == (1, 1024)
    # chunk directory: chunks 0..2 -> 3 int32 slots
    assert small.directory_bytes == 12


@pytest.mark.parametrize("spdx, index", [
    (0, 0),
    (1, 1),
    (5, 5),
    (1024, 512),   # chunk 2 is the store's slot 1: 1 * 512 + 0
    (1030, 518),   # 512 + 6
    # chunk 2's last superpage holds no RAM (the bug marks exactly this store position)
    (1535, -1),
    (2, -1),            # chunk 0 is allocated, but superpage 2 holds no RAM
    (511, -1),
    (512, -1),          # chunk 1: not allocated
    (1023, -1),
    (1025, -1),
    (1536, -1),         # chunk 3: beyond the directory
    (10 ** 9, -1),
    (-1, -1),
])
def test_entry_index(small, spdx, index):
    assert small.entry_index(spdx) == index
    assert small.has_entry(spdx) is (index >= 0)


def test_entry_indexes_vectorised_agrees(small):
    spdx = np.array([0, 1, 5, 1024, 1030, 2, 511, 512, 1023, 1025, 1536, 10 ** 9, -1])
    assert small.entry_indexes(spdx).tolist() == [0, 1, 5, 512, 518, -1, -1, -1, -1, -1,
                                                  -1, -1, -1]


def test_read_write(small):
    assert small.read(5) == 0
    small.write(5, (2 << 62) | 3)
    small.write(1030, 7)
    assert small.read(5) == (2 << 62) | 3
    assert small.read(1030) == 7
    assert small.read(0) == 0 and small.read(1024) == 0
    assert small.nonzero_entries().tolist() == [5, 518]


@pytest.mark.parametrize("spdx", [2, 512, 1536, -1])
def test_no_entry_raises(small, spdx):
    with pytest.raises(IndexError, match="no superpage entry"):
        small.read(spdx)
    with pytest.raises(IndexError):
        small.write(spdx, 1)
    assert small.nonzero_entries().tolist() == []


def test_two_words_per_entry():
    t = table([0, 1, 5, 1024, 1030], words=2)
    # same 2 chunks, 16 B entries: 2 * 512 * 16 = 16384 B
    assert t.entry_bytes == 16
    assert t.allocated_bytes == 16384
    assert t.store.shape == (2, 1024)
    t.write(1030, 11, word=0)          # read-only count
    t.write(1030, 22, word=1)          # read-write count
    assert t.read(1030, word=0) == 11
    assert t.read(1030, word=1) == 22
    assert t.read(1024, word=1) == 0
    assert t.nonzero_entries().tolist() == [518]


def test_words_per_entry_must_be_1_or_2():
    with pytest.raises(ValueError):
        table([0], words=3)
    with pytest.raises(ValueError):
        table([0], words=0)


def test_duplicates_and_order_do_not_matter():
    t = table([1030, 5, 0, 5, 1024, 1, 0])
    assert t.n_superpages == 5
    assert t.allocated_bytes == 8192
    assert t.entry_index(1030) == 518


def test_empty_table():
    t = table([])
    assert t.n_chunks == 0
    assert t.allocated_bytes == 0
    assert t.entry_index(0) == -1
    assert t.entry_indexes(np.array([0, 5])).tolist() == [-1, -1]
    with pytest.raises(IndexError):
        t.read(0)


def test_snapshot_tracks_writes(small):
    before = small.snapshot()
    assert len(before) == 8192
    small.write(1, 1)
    assert small.snapshot() != before
    small.write(1, 0)
    assert small.snapshot() == before


def test_spdx_of():
    assert spdx_of(0) == 0
    assert spdx_of(511) == 0
    assert spdx_of(512) == 1
    assert spdx_of(0x80000) == 0x400


def test_bytes_for_matches_small_table(small):
    assert SuperpageTable.bytes_for(np.array([0, 1, 5, 1024, 1030]), 1) == 8192
    assert SuperpageTable.bytes_for(np.array([0, 1, 5, 1024, 1030]), 2) == 16384
    assert SuperpageTable.bytes_for(np.array([], dtype=np.int64), 1) == 0


# ---------------------------------------------------------------------------
# the presets, through Machine
# ---------------------------------------------------------------------------

# (preset, pdx mode, superpages with RAM, chunks) -- worked out by hand:
PRESET_CASES = [
    # teaching, mask: spdx 0..1023 (mfn [0, 2 GiB)) and 1024..1535 (mfn 0x100000 ->
    # pdx 0x80000 -> spdx 0x400): chunks 0, 1, 2
    ("teaching", "mask", 1536, 3),
    # teaching, none: superpages 0..1023 and 2048..2559: chunks 0, 1, 4
    ("teaching", "none", 1536, 3),
    # firecracker-1g: superpages 0..511 (superpage 0 partly RAM): chunk 0
    ("firecracker-1g", "mask", 512, 1),
    # qemu-pc-4g (mask -> none): 0..1535 ([0, 3 GiB)) and 2048..2559: chunks 0, 1, 2, 4
    ("qemu-pc-4g", "mask", 2048, 4),
    # qemu-2node, mask: 0..1023 and 1024..2047 after squeezing bit 19: chunks 0..3
    ("qemu-2node", "mask", 2048, 4),
    # qemu-2node, none: 0..1023 and 2048..3071: chunks 0, 1, 4, 5
    ("qemu-2node", "none", 2048, 4),
    # intel-clx-2s: 0..98815 = 193 * 512 - 1: chunks 0..192
    ("intel-clx-2s", "mask", 98816, 193),
]


@pytest.mark.parametrize("name, mode, n_sp, n_chunks", PRESET_CASES)
def test_preset_table_bytes(name, mode, n_sp, n_chunks):
    m = Machine(load_preset(name), mode)
    t = m.spage_table
    assert t.n_superpages == n_sp
    assert t.n_chunks == n_chunks
    assert t.allocated_bytes == n_chunks * 512 * 8
    assert SuperpageTable.bytes_for(m.spdx_with_ram(), 1) == t.allocated_bytes
    two = Machine(load_preset(name), mode, spage_words=2).spage_table
    assert two.allocated_bytes == 2 * t.allocated_bytes
    assert SuperpageTable.bytes_for(m.spdx_with_ram(), 2) == two.allocated_bytes


def test_teaching_byte_values():
    m = Machine(load_preset("teaching"), "mask")
    assert m.spage_table.allocated_bytes == 3 * 4096 == 12288
    assert Machine(load_preset("teaching"), "mask", spage_words=2).spage_table.allocated_bytes \
        == 24576


def test_teaching_entries_only_where_ram_is():
    m = Machine(load_preset("teaching"), "mask")
    t = m.spage_table
    # every spdx 0..1535 has RAM (superpage 0 only partly); spdx 1536 on has none
    assert t.entry_index(0) == 0
    assert t.entry_index(1023) == 1023
    assert t.entry_index(1024) == 1024        # mfn 0x100000, pdx 0x80000
    assert t.entry_index(1535) == 1535
    assert t.entry_index(1536) == -1
    assert t.entry_index(m.mfn_to_pdx(0x100000) >> 9) == 1024


def test_teaching_none_hole_superpage_raises():
    m = Machine(load_preset("teaching"), "none")
    t = m.spage_table
    # superpage 1024 is mfn 0x80000: the 2-4 GiB MMIO hole, inside no allocated chunk
    assert t.entry_index(1024) == -1
    with pytest.raises(IndexError):
        t.read(1024)
    with pytest.raises(IndexError):
        t.write(1024, 1)


def test_teaching_none_high_memory_entry():
    t = Machine(load_preset("teaching"), "none").spage_table
    # superpage 2048 (mfn 0x100000) is the 5th chunk's first entry, stored in slot 2
    assert t.entry_index(2048) == 2 * 512
    t.write(2048, 1)
    assert t.read(2048) == 1


def test_gnr_4s_table():
    # 2 TiB of RAM = 2^41 / 2^21 = 2^20 superpages. Superpage ranges (mfn >> 9):
    #   [0, 0x400)              -> chunks 0, 1                    2
    #   [0x800, 0x40400)        -> chunks 4 .. 0x201              510
    #   [0x31f400, 0x35f400)    -> chunks 0x18fa .. 0x1af9        512  (and twice more)
    # 2 + 510 + 3 * 512 = 2048 chunks * 4096 B = 8 MiB
    m = Machine(load_preset("intel-gnr-4s"), "mask")
    t = m.spage_table
    assert t.n_superpages == 1 << 20
    assert t.n_chunks == 2048
    assert t.allocated_bytes == 8 * 2 ** 20 == 8388608
    assert t.entry_index(0x400) == -1                  # [2 GiB, 4 GiB): no RAM
    assert t.entry_index(0x99f400) == -1               # max_pfn onwards


def test_gnr_like_entries():
    # sockets 0 and 1 of intel-gnr-4s, in superpage numbers (no compression)
    t = SuperpageTable(np.concatenate([np.arange(0, 0x400), np.arange(0x800, 0x40400),
                                       np.arange(0x31f400, 0x35f400)]))
    # chunks: 2 + 510 + 512 = 1024
    assert t.n_chunks == 1024
    assert t.entry_index(0x31f400) == (2 + 510) * 512
    assert t.entry_index(0x35f3ff) == 1024 * 512 - 1
    assert t.entry_index(0x3ff) == 0x3ff
    assert t.entry_index(0x800) == 2 * 512


# -- wait_change: a design spinning on a word (a lock bit) -----------------------------------
def test_wait_change_returns_at_once_when_the_word_moved_and_steps_once():
    t = table([0, 1])
    t.write(1, 5)
    t.wait_change(1, 4)                          # it already differs: nothing to wait for
    seen = []
    t.atomic_step = lambda kind, key, arg: seen.append((kind, key, arg))
    t.wait_change(1, 5, 0)                       # someone listens: one step, then back
    assert seen == [("sp_wait", 1, 0)] and t.read(1) == 5


def test_wait_change_with_nobody_listening_is_a_refcount_bug():
    from xensim import RefcountBug
    t = table([0, 1])
    t.write(1, 1 << 63)
    with pytest.raises(RefcountBug, match=r"^superpage spdx 0x1 word 0: waiting for "
                                          r"0x8000000000000000 to change, and no other CPU runs$"):
        t.wait_change(1, 1 << 63)
    with pytest.raises(IndexError):
        t.wait_change(7, 0)
    assert (t.peek(1), t.peek(7)) == (1 << 63, -1)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_reads_and_writes_its_own_words(small, how):
    """The store's scalar memoryview is remade on the copy's own store."""
    import copy
    import pickle
    small.write(5, 0x41)
    dup = copy.deepcopy(small) if how == "deepcopy" else pickle.loads(pickle.dumps(small))
    assert dup.read(5) == 0x41
    assert dup.cmpxchg(5, 0x41, 0x42) and dup.read(5) == 0x42
    assert small.read(5) == 0x41 and int(small.store[0, 5]) == 0x41
    assert int(dup.store[0, 5]) == 0x42


def test_last_lookup_answers_again(small):
    """entry_index keeps its last answer: the same spdx twice, then another, then back."""
    assert small.entry_index(1030) == 512 + 6
    assert small.entry_index(1030) == 512 + 6
    assert small.entry_index(5) == 5
    assert small.entry_index(2) == -1          # no RAM: not kept
    assert small.entry_index(5) == 5
    assert small.entry_index(1030) == 512 + 6
