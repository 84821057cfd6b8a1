"""xensim.mem._frametable.FrameTable and Machine.mfn_valid.

Layouts used (frames are 4 KiB, a PDX group is 65,536 = 0x10000 frames):

teaching, PDX mask (bit 19 squeezed out, so mfn 0x100000 -> pdx 0x80000):
    RAM mfn [0x0, 0x9f)        -> pdx [0x0, 0x9f)          group 0
    RAM mfn [0x100, 0x80000)   -> pdx [0x100, 0x80000)     groups 0..7
    RAM mfn [0x100000,0x140000)-> pdx [0x80000, 0xc0000)   groups 8..11
    max_pdx 0xc0000 -> 0xc0000 / 0x10000 = 12 groups, all 12 valid.

qemu-2node, PDX mask (bit 19 squeezed out):
    RAM mfn [0x0, 0x80000) -> groups 0..7; [0x100000, 0x180000) -> pdx
    [0x80000, 0x100000) -> groups 8..15: 16 groups, all valid.

intel-gnr-4s: 2 TiB of RAM, every range 256 MiB aligned, so 2 TiB / 256 MiB
    = 2^41 / 2^28 = 8192 valid groups whatever the PDX mode.
"""

from __future__ import annotations

import numpy as np
import pytest

from xensim import FRAME_BYTES, PDX_GROUP_FRAMES, FrameTable, Machine, load_preset
from xensim.mem._page_info import DOMID_INVALID, PGC_allocated, PGC_state_free

GROUP_BYTES = 65536 * 18          # one materialised group: 8 + 8 + 2 bytes per frame


@pytest.fixture(scope="module")
def presets():
    return {name: load_preset(name) for name in ("teaching", "qemu-2node", "qemu-pc-4g",
                                                  "firecracker-1g", "intel-gnr-4s")}


@pytest.fixture(scope="module")
def gnr_offset(presets):
    """Read-only: nothing below writes to it (booting it takes most of a second)."""
    return Machine(presets["intel-gnr-4s"], "offset")


@pytest.fixture
def teaching(presets):
    return Machine(presets["teaching"], "mask")


def valid_group_list(ft: FrameTable) -> list[int]:
    return [g for g in range(ft.n_groups) if ft.group_valid(g << 16)]


# ---------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------

def test_group_and_frame_sizes():
    assert PDX_GROUP_FRAMES == 65536
    assert FRAME_BYTES == 18


# ---------------------------------------------------------------------------
# valid groups
# ---------------------------------------------------------------------------

def test_teaching_mask_groups(teaching):
    ft = teaching.frame_table
    assert ft.max_pdx == 0xc0000
    assert ft.n_groups == 12
    assert ft.valid_groups == 12
    assert valid_group_list(ft) == list(range(12))


def test_teaching_none_groups(presets):
    # No compression: RAM groups 0..7 (below 2 GiB) and 16..19 ([4 GiB, 5 GiB)),
    # 0x140000 / 0x10000 = 20 groups in all, 8 + 4 = 12 valid.
    ft = Machine(presets["teaching"], "none").frame_table
    assert ft.n_groups == 20
    assert ft.valid_groups == 12
    assert valid_group_list(ft) == [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19]


def test_qemu_2node_mask_groups(presets):
    m = Machine(presets["qemu-2node"], "mask")
    assert m.pdx.mode == "mask"
    assert m.frame_table.n_groups == 16
    assert m.frame_table.valid_groups == 16


def test_qemu_pc_4g_groups(presets):
    # mask falls back to none: RAM mfn [0, 0xc0000) -> groups 0..11,
    # [0x100000, 0x140000) -> groups 16..19; 20 groups, 16 valid.
    ft = Machine(presets["qemu-pc-4g"], "mask").frame_table
    assert ft.n_groups == 20
    assert valid_group_list(ft) == list(range(12)) + [16, 17, 18, 19]


def test_gnr_4s_groups(presets):
    # mask falls back to none: max_pdx = max_pfn = 0x133e80000,
    # 0x133e80000 / 0x10000 = 0x133e8 = 78,824 groups; 2 TiB / 256 MiB = 8192 valid:
    # 8 (mfn [0, 0x80000)) + 2040 ([0x100000, 0x8080000): groups 0x10..0x807)
    # + 3 * 2048 (three 512 GiB ranges).
    m = Machine(presets["intel-gnr-4s"], "mask")
    ft = m.frame_table
    assert ft.n_groups == 78824
    assert ft.valid_groups == 8192 == 8 + 2040 + 3 * 2048
    # nothing but the bitmap (one bool per group) is allocated at boot
    assert ft.allocated_bytes() == 78824
    assert ft.materialized_groups == []


def test_gnr_4s_offset_groups(gnr_offset):
    # offset: max_pdx 0x38000000 -> 0x3800 = 14,336 groups, still 8192 valid.
    ft = gnr_offset.frame_table
    assert ft.max_pdx == 0x38000000
    assert ft.n_groups == 14336
    assert ft.valid_groups == 8192
    assert ft.allocated_bytes() == 14336


def test_direct_table_with_partial_last_group():
    # RAM pdx [0x10, 0x20) and [0x30000, 0x30005); max_pdx 0x30005:
    # ceil(0x30005 / 0x10000) = 4 groups, valid: 0 and 3.
    ft = FrameTable([(0x10, 0x20), (0x30000, 0x30005)], 0x30005)
    assert ft.n_groups == 4
    assert ft.valid_groups == 2
    assert valid_group_list(ft) == [0, 3]
    assert ft.group_valid(0x30004)
    assert not ft.group_valid(0x30005)          # at max_pdx
    assert not ft.group_valid(0x10000)          # group 1: no RAM
    assert not ft.group_valid(-1)


def test_is_ram_pdx(teaching):
    ft = teaching.frame_table
    assert ft.is_ram_pdx(0x0)
    assert ft.is_ram_pdx(0x9e)
    assert not ft.is_ram_pdx(0x9f)
    assert not ft.is_ram_pdx(0xff)
    assert ft.is_ram_pdx(0x100)
    assert ft.is_ram_pdx(0x80000)             # mfn 0x100000
    assert ft.is_ram_pdx(0xbffff)
    assert not ft.is_ram_pdx(0xc0000)


# ---------------------------------------------------------------------------
# boot state: nothing allocated, reads synthesised
# ---------------------------------------------------------------------------

def test_nothing_allocated_at_boot(teaching):
    ft = teaching.frame_table
    assert ft.materialized_groups == []
    assert ft.allocated_bytes() == 12          # the 12-entry bool bitmap only


def test_untouched_ram_frame_reads_free(teaching):
    ft = teaching.frame_table
    for pdx in (0x0, 0x9e, 0x100, 0x7ffff, 0x80000, 0xbffff):
        assert ft.count_info(pdx) == PGC_state_free == 3 << 55
        assert ft.type_info(pdx) == 0
        assert ft.owner(pdx) == DOMID_INVALID == 0x7FF4
    assert ft.allocated_bytes() == 12


def test_untouched_non_ram_frame_in_valid_group_reads_zero(teaching):
    ft = teaching.frame_table
    # pdx 0x9f..0xff: EBDA, VGA, ROMs -- not RAM, but in group 0, which has RAM
    for pdx in (0x9f, 0xa0, 0xff):
        assert ft.group_valid(pdx)
        assert ft.count_info(pdx) == 0
        assert ft.type_info(pdx) == 0
        assert ft.owner(pdx) == DOMID_INVALID
    assert ft.materialized_groups == []


def test_untouched_frame_in_invalid_group_reads_zero(presets):
    ft = Machine(presets["qemu-pc-4g"], "mask").frame_table
    # pdx 0xc0000 (= mfn, no compression) is group 12: the MMIO hole
    assert not ft.group_valid(0xc0000)
    assert ft.count_info(0xc0000) == 0
    assert ft.type_info(0xc0000) == 0
    assert ft.owner(0xc0000) == DOMID_INVALID


# ---------------------------------------------------------------------------
# first write materialises exactly one group
# ---------------------------------------------------------------------------

def test_first_write_materialises_one_group(teaching):
    ft = teaching.frame_table
    before = ft.allocated_bytes()
    ft.set_count_info(0x12345, PGC_allocated | 1)      # group 0x12345 >> 16 = 1
    assert ft.materialized_groups == [1]
    assert ft.allocated_bytes() - before == 65536 * 18 == 1179648
    assert ft.count_info(0x12345) == PGC_allocated | 1
    # the rest of the group got its initial contents
    assert ft.count_info(0x12344) == PGC_state_free
    assert ft.owner(0x12344) == DOMID_INVALID
    # a second write in the same group allocates nothing more
    ft.set_type_info(0x1ffff, 7 << 60)
    ft.set_owner(0x10000, 5)
    assert ft.allocated_bytes() - before == 1179648
    assert ft.type_info(0x1ffff) == 7 << 60
    assert ft.owner(0x10000) == 5


def test_materialised_group_keeps_non_ram_frames_zero(teaching):
    ft = teaching.frame_table
    ft.set_owner(0x0, 1)                     # materialises group 0
    ci, ti, owner = ft.group(0)
    assert ci[0x9e] == PGC_state_free        # last frame of [0, 0x9f)
    assert ci[0x9f] == 0                     # EBDA ... ROMs: not RAM
    assert ci[0xff] == 0
    assert ci[0x100] == PGC_state_free
    # count the free frames of group 0: 0x9f + (0x10000 - 0x100) = 159 + 65280
    assert int((ci == np.uint64(PGC_state_free)).sum()) == 65439
    assert int((ci == 0).sum()) == 0x100 - 0x9f == 97
    assert (ti == 0).all()
    assert int((owner == DOMID_INVALID).sum()) == 65535


def test_write_to_group_without_ram_raises(presets):
    ft = Machine(presets["qemu-pc-4g"], "mask").frame_table
    with pytest.raises(IndexError):
        ft.set_count_info(0xc0000, 1)          # group 12: no RAM
    assert ft.materialized_groups == []


def test_second_group_adds_exactly_one_group(teaching):
    ft = teaching.frame_table
    ft.set_count_info(0x80000, 1)     # group 8 (mfn 0x100000)
    ft.set_count_info(0xbffff, 1)     # group 11
    assert ft.materialized_groups == [8, 11]
    assert ft.allocated_bytes() == 12 + 2 * 1179648


# ---------------------------------------------------------------------------
# slices / read_slices
# ---------------------------------------------------------------------------

def test_slices_write_through(teaching):
    ft = teaching.frame_table
    ci, ti, owner = ft.slices(0x200, 512)    # one superpage, group 0
    assert ci.shape == ti.shape == owner.shape == (512,)
    assert ci.dtype == np.uint64 and ti.dtype == np.uint64 and owner.dtype == np.uint16
    assert (ci == np.uint64(PGC_state_free)).all()
    ci[:] = np.uint64(PGC_allocated | 1)
    ti[10] = np.uint64(7 << 60 | 1)
    owner[:] = 3
    assert ft.count_info(0x200) == PGC_allocated | 1
    assert ft.count_info(0x3ff) == PGC_allocated | 1
    assert ft.count_info(0x400) == PGC_state_free      # past the slice
    assert ft.count_info(0x1ff) == PGC_state_free      # before it
    assert ft.type_info(0x20a) == 7 << 60 | 1
    assert ft.owner(0x3ff) == 3
    # a second slices() of the same range sees the writes
    ci2, _, _ = ft.slices(0x200, 512)
    assert int(ci2[511]) == PGC_allocated | 1


def test_slice_up_to_group_end_is_fine(teaching):
    ft = teaching.frame_table
    ci, _, _ = ft.slices(0xfe00, 0x200)      # [0xfe00, 0x10000): ends at the boundary
    assert ci.shape == (0x200,)


def test_slice_crossing_group_boundary_raises(teaching):
    ft = teaching.frame_table
    with pytest.raises(ValueError, match="crosses a PDX group boundary"):
        ft.slices(0xffff, 2)                 # frames 0xffff and 0x10000
    with pytest.raises(ValueError):
        ft.read_slices(0xff00, 0x101)
    with pytest.raises(ValueError):
        ft.slices(0x100, -1)
    assert ft.materialized_groups == []


def test_read_slices_does_not_allocate(teaching):
    ft = teaching.frame_table
    ci, ti, owner = ft.read_slices(0x80, 0x100)      # pdx [0x80, 0x180)
    assert ft.materialized_groups == []
    assert ft.allocated_bytes() == 12
    # [0x80, 0x9f) RAM free, [0x9f, 0x100) not RAM, [0x100, 0x180) RAM free
    expect = [PGC_state_free] * 0x1f + [0] * 0x61 + [PGC_state_free] * 0x80
    assert ci.tolist() == expect
    assert (ti == 0).all()
    assert (owner == DOMID_INVALID).all()


def test_read_slices_are_copies(teaching):
    ft = teaching.frame_table
    ft.set_count_info(0x300, PGC_allocated | 1)
    ci, _, _ = ft.read_slices(0x300, 4)
    assert ci.tolist() == [PGC_allocated | 1, PGC_state_free, PGC_state_free, PGC_state_free]
    ci[0] = 0                                   # writing the copy changes nothing
    assert ft.count_info(0x300) == PGC_allocated | 1


def test_run_words_of_a_uniform_run_and_of_runs_that_differ(teaching):
    """run_words: the two words every frame of a run holds, None when one word of one
    frame differs (the last frame, in each word), None for a group never written;
    run_owner: the owner every frame has, the same way."""
    ft = teaching.frame_table
    assert ft.run_words(0x200, 512) is None             # untouched: nothing compared
    assert ft.run_owner(0x200, 512) is None
    ci, ti, owner = ft.slices(0x200, 512)
    ci[:], ti[:], owner[:] = PGC_allocated | 1, 7 << 60 | 2, 3
    assert ft.run_words(0x200, 512) == (PGC_allocated | 1, 7 << 60 | 2)
    assert ft.run_words(0x3ff, 1) == (PGC_allocated | 1, 7 << 60 | 2)
    assert ft.run_owner(0x200, 512) == 3
    for word in (ci, ti):
        word[511] += 1
        assert ft.run_words(0x200, 512) is None
        assert ft.run_words(0x200, 511) == (PGC_allocated | 1, 7 << 60 | 2)
        word[511] -= 1
    owner[511] = 4
    assert ft.run_owner(0x200, 512) is None and ft.run_owner(0x200, 511) == 3
    assert ft.run_words(0x200, 512) == (PGC_allocated | 1, 7 << 60 | 2)
    assert ft.run_words(0x100, 0x100) == (PGC_state_free, 0)
    assert ft.run_owner(0x100, 0x100) == DOMID_INVALID
    assert ft.run_words(0x80, 0x100) is None             # RAM, then a hole of zeros
    with pytest.raises(ValueError, match="crosses a PDX group boundary"):
        ft.run_words(0xffff, 2)


def test_fill_run_writes_the_run_only(teaching):
    ft = teaching.frame_table
    ft.slices(0x200, 512)
    old = ft.run_words(0x200, 512)
    ft.fill_run(0x200, 512, old, PGC_allocated | 2, 1 << 60 | 1)
    assert ft.run_words(0x200, 512) == (PGC_allocated | 2, 1 << 60 | 1)
    assert ft.run_owner(0x200, 512) == DOMID_INVALID
    ft.fill_run(0x200, 4, ft.run_words(0x200, 4), PGC_allocated | 3)    # type_info kept
    assert [ft.count_info(p) for p in (0x1ff, 0x200, 0x203, 0x204)] == [
        PGC_state_free, PGC_allocated | 3, PGC_allocated | 3, PGC_allocated | 2]
    assert ft.type_info(0x203) == 1 << 60 | 1


def test_read_slices_of_group_without_ram(presets):
    ft = Machine(presets["qemu-pc-4g"], "mask").frame_table
    ci, ti, owner = ft.read_slices(0xc0000, 8)
    assert ci.tolist() == [0] * 8
    assert ti.tolist() == [0] * 8
    assert owner.tolist() == [DOMID_INVALID] * 8
    assert ft.materialized_groups == []


# ---------------------------------------------------------------------------
# snapshot / same_as
# ---------------------------------------------------------------------------

def test_snapshot_at_boot_is_empty_and_equal(teaching):
    ft = teaching.frame_table
    snap = ft.snapshot()
    assert snap == {}
    assert ft.same_as(snap)


def test_materialised_but_unchanged_group_equals_initial(teaching):
    ft = teaching.frame_table
    snap = ft.snapshot()
    ft.slices(0x400, 512)                   # materialises group 0, changes nothing
    assert ft.materialized_groups == [0]
    assert ft.same_as(snap)


def test_change_is_detected_and_restore_makes_equal(teaching):
    ft = teaching.frame_table
    snap = ft.snapshot()
    ft.set_count_info(0x500, PGC_allocated | 1)
    assert not ft.same_as(snap)
    ft.set_count_info(0x500, PGC_state_free)
    assert ft.same_as(snap)
    # the same for type_info and owner
    ft.set_type_info(0x500, 1)
    assert not ft.same_as(snap)
    ft.set_type_info(0x500, 0)
    ft.set_owner(0x500, 0)
    assert not ft.same_as(snap)
    ft.set_owner(0x500, DOMID_INVALID)
    assert ft.same_as(snap)


def test_snapshot_of_modified_table(teaching):
    ft = teaching.frame_table
    ft.set_count_info(0x90000, 2)           # group 9
    snap = ft.snapshot()
    assert list(snap) == [9]
    assert ft.same_as(snap)
    ft.set_count_info(0x90000, 3)
    assert not ft.same_as(snap)
    ft.set_count_info(0x90000, 2)
    assert ft.same_as(snap)
    # another group changed while snap's group is restored: still different
    ft.set_count_info(0xa0000, 1)
    assert not ft.same_as(snap)


def test_snapshot_is_a_copy(teaching):
    ft = teaching.frame_table
    ft.set_count_info(0x10, 1)
    snap = ft.snapshot()
    ft.set_count_info(0x10, 2)
    assert not ft.same_as(snap)
    assert np.frombuffer(snap[0][0], dtype=np.uint64)[0x10] == 1


# ---------------------------------------------------------------------------
# Machine.mfn_valid: Xen's rule
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mfn, valid", [
    (0x0, True),          # RAM
    (0x9e, True),         # last RAM frame below the EBDA
    (0x9f, True),         # EBDA: not RAM, but group 0 holds RAM (as in Xen)
    (0xff, True),         # system BIOS ROM: same group
    (0x100, True),
    (0x7ffff, True),      # last frame below 2 GiB
    (0x80000, False),     # bit 19 set: in the squeezed PDX hole
    (0xfffff, False),     # bit 19 set
    (0xfec00, False),     # IOAPIC (reserved) is in the hole too
    (0x100000, True),     # first high frame -> pdx 0x80000
    (0x13ffff, True),     # last RAM frame
    (0x140000, False),    # max_page
    (0x1000000, False),   # far beyond
    (-1, False),
])
def test_mfn_valid_teaching_mask(teaching, mfn, valid):
    assert teaching.mfn_valid(mfn) is valid


def test_mfn_valid_answers_kept_agree_with_the_array_form(teaching):
    """mfn_valid keeps its answers (and starts again past its limit): asked twice over
    more MFNs than it keeps, each answer is the vectorised form's, the same both times."""
    mfns = np.concatenate([np.arange(0x60000, 0xa0000, 3), np.arange(0x13f000, 0x141000)])
    want = teaching.mfn_valid_array(mfns).tolist()
    assert mfns.size > 1 << 16 and True in want and False in want
    for _ in range(2):
        assert [teaching.mfn_valid(int(x)) for x in mfns] == want
    assert teaching.mfn_valid(np.int64(0x13ffff)) is True and teaching.mfn_valid(0x140000) is False


@pytest.mark.parametrize("mfn, valid", [
    (0x7ffff, True),
    (0x80000, False),     # bit 19 squeezed out: the hole between the nodes
    (0xc0000, False),
    (0xfffff, False),
    (0x100000, True),
    (0x17ffff, True),
    (0x180000, False),    # max_page
])
def test_mfn_valid_qemu_2node_mask(presets, mfn, valid):
    m = Machine(presets["qemu-2node"], "mask")
    assert m.pdx.mode == "mask"
    assert m.mfn_valid(mfn) is valid


def test_mfn_valid_without_compression_uses_groups(presets):
    m = Machine(presets["teaching"], "none")
    assert m.mfn_valid(0x9f) is True          # group 0
    assert m.mfn_valid(0x80000) is False      # group 8: no RAM
    assert m.mfn_valid(0xfffff) is False      # group 15: no RAM
    assert m.mfn_valid(0x100000) is True      # group 16
    assert m.mfn_valid(0x140000) is False     # max_page


def test_mfn_valid_gnr_offset(gnr_offset):
    # offset regions (pfn): [0, 0x8080000) -> pdx 0; [0x63e80000, 0x6be80000) -> pdx 0x10000000 ...
    m = gnr_offset
    assert m.mfn_valid(0x7ffff) is True
    assert m.mfn_valid(0x80000) is False      # pdx 0x80000: group 8 has no RAM
    assert m.mfn_valid(0x807ffff) is True
    assert m.mfn_valid(0x8080000) is False    # just past socket 0's RAM
    assert m.mfn_valid(0x63e7ffff) is False   # just before socket 1's RAM: not covered
    assert m.mfn_valid(0x63e80000) is True
    assert m.mfn_to_pdx(0x63e80000) == 0x10000000
    assert m.mfn_valid(0x133e7ffff) is True
    assert m.mfn_to_pdx(0x133e7ffff) == 0x37ffffff
    assert m.mfn_valid(0x133e80000) is False  # max_page


# -- copies: the scalar memoryviews are remade on the copy's own arrays -------------------
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_reads_and_writes_its_own_words(presets, how):
    import copy
    import pickle
    ft = Machine(presets["teaching"], "mask").frame_table
    ft.set_count_info(0x100, PGC_allocated | 3)
    ft.set_type_info(0x100, 7)
    dup = copy.deepcopy(ft) if how == "deepcopy" else pickle.loads(pickle.dumps(ft))
    assert (dup.count_info(0x100), dup.type_info(0x100), dup.owner(0x100)) == \
        (PGC_allocated | 3, 7, DOMID_INVALID)
    dup.set_count_info(0x100, PGC_allocated | 4)
    dup.set_type_info(0x101, 9)
    assert dup.count_info(0x100) == PGC_allocated | 4 and dup.type_info(0x101) == 9
    assert ft.count_info(0x100) == PGC_allocated | 3 and ft.type_info(0x101) == 0
    assert dup.run_words(0x100, 1) == (PGC_allocated | 4, 7)
    assert ft.run_words(0x100, 1) == (PGC_allocated | 3, 7)
    assert dup.snapshot_group(0) != ft.snapshot_group(0)
    ft.set_count_info(0x100, PGC_allocated | 4)
    ft.set_type_info(0x101, 9)
    assert dup.snapshot_group(0) == ft.snapshot_group(0)


def test_scalar_writes_reach_the_arrays():
    """set_count_info / set_type_info write the group's arrays (through their views): the
    array reads (slices, snapshots) see them."""
    ft = Machine(load_preset("teaching"), "mask").frame_table
    ft.set_count_info(0x205, PGC_allocated | 1)
    ft.set_type_info(0x205, (7 << 60) | 1)
    ci, ti, _ = ft.read_slices(0x204, 3)
    assert ci.tolist() == [PGC_state_free, PGC_allocated | 1, PGC_state_free]
    assert ti.tolist() == [0, (7 << 60) | 1, 0]
