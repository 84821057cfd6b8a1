"""Tests for xensim.mem._pdx: PDX compression (none / mask / offset).

Frame numbers are PFNs (4 KiB frames); "2^18" is one MAX_ORDER block (1 GiB).
Expected values are worked out by hand in the comments; the accept/reject
verdicts of the synthetic maps are those of Xen's tools/tests/pdx/test-pdx.c.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xensim.mem._pdx import (
    MODES,
    OFFSET_TABLE_SLOTS,
    Pdx,
    PdxMask,
    PdxNone,
    PdxNotApplicable,
    PdxOffset,
    make_pdx,
    normalize_frame_ranges,
)
from xensim.mem._units import MAX_MFN, MAX_ORDER, PAGE_SIZE, SUPERPAGE_PAGES

G = 1 << MAX_ORDER          # frames in a MAX_ORDER block (0x40000)

# The real machines' maps ship as presets in this repository's configs/machines/
# (beside them, teaching.yaml, the small default machine, is not a real one).
MEMMAPS = Path(__file__).resolve().parents[2] / "configs" / "machines"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def frames_from_bytes(ram):
    """Byte ranges [start, end) -> whole-frame ranges [ceil(start/4K), floor(end/4K)),
    adjacent/overlapping ones merged, empty ones dropped."""
    out = []
    for start, end in sorted(ram):
        s, e = -(-start // PAGE_SIZE), end // PAGE_SIZE
        if s >= e:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def load_map(name):
    data = yaml.safe_load((MEMMAPS / f"{name}.yaml").read_text())
    return frames_from_bytes(data["ram"])


MAP_NAMES = sorted(p.stem for p in MEMMAPS.glob("*.yaml") if p.stem != "teaching")

QEMU_2NODE = [(0, 0x80000), (0x100000, 0x180000)]


def test_real_machine_maps_present_and_converted():
    assert MAP_NAMES == ["firecracker-1g", "intel-clx-2s", "intel-gnr-4s",
                         "qemu-2node", "qemu-pc-4g"]
    # 0x9fc00 bytes = 0x9f full frames + 0xc00 bytes: the partial frame is dropped.
    assert load_map("firecracker-1g") == [(0, 0x9f), (0x100, 0x40000)]
    # Two touching byte ranges become one frame range.
    assert load_map("intel-clx-2s") == [(0, 0x3040000)]
    assert load_map("qemu-2node") == QEMU_2NODE


# --------------------------------------------------------------------------
# make_pdx: arguments and input normalisation
# --------------------------------------------------------------------------

class TestMakePdx:
    def test_unknown_mode_names_the_choices(self):
        with pytest.raises(ValueError) as exc:
            make_pdx(QEMU_2NODE, "zip")
        for choice in ("none", "mask", "offset"):
            assert choice in str(exc.value)
        assert MODES == ("none", "mask", "offset", "offset-4.21.0")

    def test_default_mode_is_mask(self):
        p = make_pdx(QEMU_2NODE)
        assert isinstance(p, PdxMask) and p.mode == p.requested == "mask"
        assert p.fallback_reason is None

    @pytest.mark.parametrize("name", MAP_NAMES)
    def test_none_never_falls_back(self, name):
        p = make_pdx(load_map(name), "none")
        assert isinstance(p, PdxNone)
        assert p.mode == p.requested == "none" and p.fallback_reason is None
        assert p.max_pdx == p.max_pfn

    def test_ranges_are_sorted_and_touching_ones_merged(self):
        # [0x100000,0x140000) + [0x140000,0x180000) touch -> one range.
        given_ranges = [(0x140000, 0x180000), (0, 0x80000), (0x100000, 0x140000)]
        assert normalize_frame_ranges(given_ranges) == tuple(QEMU_2NODE)
        assert make_pdx(given_ranges, "mask").max_pdx == 0x100000

    @pytest.mark.parametrize("bad", [[], [(5, 5)], [(6, 5)], [(-1, 5)],
                                     [(0, MAX_MFN + 1)], [(0, 1.5)], [(1,)]])
    def test_bad_ranges_rejected(self, bad):
        with pytest.raises(ValueError):
            make_pdx(bad, "none")

    def test_subclasses_raise_when_not_applicable(self):
        # Built directly, a compressing class refuses a map it cannot compress.
        with pytest.raises(PdxNotApplicable, match="nothing to compress"):
            PdxMask(load_map("intel-gnr-4s"))
        with pytest.raises(PdxNotApplicable, match="gains nothing"):
            PdxOffset(load_map("intel-clx-2s"))
        assert issubclass(PdxNotApplicable, ValueError)


# --------------------------------------------------------------------------
# the five real-machine maps: exact results
# --------------------------------------------------------------------------

# (map, requested mode) -> (mode in effect, max_pdx)
#
# firecracker-1g: frames [0,0x9f) [0x100,0x40000) all lie in the first 2^18
#   block.  mask = 0x3ffff | 0x9e-fill | 0x100 | 0x3ffff = 0x3ffff: no bit >= 18
#   is set, so no hole.  offset: both bases align down to 0 and merge into one
#   region at PFN 0, so pdx == pfn: nothing gained.  max_pfn = 0x40000.
# intel-clx-2s: one contiguous range [0,0x3040000): mask = 0x3ffffff, no zero
#   bit below a set bit; offset: single region at 0, nothing gained.
# intel-gnr-4s: see TestGnr.  mask: no hole; offset: max_pdx 0x38000000.
# qemu-2node: frames [0,0x80000) [0x100000,0x180000).
#   mask: 0x3ffff | 0x7ffff | 0x100000 | fill(0x100000^0x17ffff)=0x7ffff = 0x17ffff
#   -> bits 0-18 and 20 set, bit 19 is the hole.  pdx(0x17ffff) = 0x7ffff |
#   (0x100000 >> 1) = 0xfffff -> max_pdx 0x100000.
#   offset: moving mask 0x7ffff, bases differ in bit 20 -> pfn_index_shift 20,
#   slots 0 and 1; region size 2^19; second region at PDX 0x80000 (offset
#   0x80000) -> max_pdx 0x80000 + 0x80000 = 0x100000.
# qemu-pc-4g: frames [0,0xc0000) [0x100000,0x140000).
#   mask: 0x3ffff | fill(0xbffff)=0xfffff | 0x100000 | 0x3ffff = 0x1fffff: no hole.
#   offset: moving mask 0xfffff, bases differ in bit 20 -> slots 0, 1; largest
#   region 0xc0000 -> size 0x100000, so region 1 goes to PDX 0x100000 = its PFN:
#   offset 0, nothing gained.
KNOWN = {
    ("firecracker-1g", "mask"): ("none", 0x40000),
    ("firecracker-1g", "offset"): ("none", 0x40000),
    ("intel-clx-2s", "mask"): ("none", 0x3040000),
    ("intel-clx-2s", "offset"): ("none", 0x3040000),
    ("intel-gnr-4s", "mask"): ("none", 0x133e80000),
    ("intel-gnr-4s", "offset"): ("offset", 0x38000000),
    ("qemu-2node", "mask"): ("mask", 0x100000),
    ("qemu-2node", "offset"): ("offset", 0x100000),
    ("qemu-pc-4g", "mask"): ("none", 0x140000),
    ("qemu-pc-4g", "offset"): ("none", 0x140000),
}
MAX_PFN = {"firecracker-1g": 0x40000, "intel-clx-2s": 0x3040000,
           "intel-gnr-4s": 0x133e80000, "qemu-2node": 0x180000, "qemu-pc-4g": 0x140000}


class TestKnownMaps:
    @pytest.mark.parametrize("name,mode", sorted(KNOWN))
    def test_mode_and_max_pdx(self, name, mode):
        p = make_pdx(load_map(name), mode)
        want_mode, want_max_pdx = KNOWN[name, mode]
        assert p.requested == mode
        assert p.mode == want_mode
        assert p.max_pdx == want_max_pdx
        assert p.max_pfn == MAX_PFN[name]
        if want_mode == "none":
            assert isinstance(p, PdxNone)
            assert p.fallback_reason and p.fallback_reason.startswith(mode + ":")
            assert p.max_pdx == p.max_pfn
        else:
            assert p.fallback_reason is None
            assert p.max_pdx < p.max_pfn

    def test_qemu_2node_mask_squeezes_exactly_bit_19(self):
        p = make_pdx(QEMU_2NODE, "mask")
        assert (p.bottom_shift, p.hole_shift) == (19, 1)
        assert p.bottom_mask == 0x7ffff            # bits 0-18 kept as they are
        assert p.hole_mask == 0x80000              # bit 19 only
        assert p.top_mask == (2**64 - 1) & ~0xfffff
        assert p.ram_mask == 0x17ffff
        assert p.max_pdx == 0x100000
        # Node 1 (PFN 0x100000..) slides down to PDX 0x80000..: bit 20 -> bit 19.
        assert p.mfn_to_pdx(0x100000) == 0x80000
        assert p.pdx_to_mfn(0x80000) == 0x100000
        assert p.pdx_ranges() == [(0, 0x80000), (0x80000, 0x100000)]

    def test_intel_clx_gains_nothing_in_every_mode(self):
        for mode in MODES:
            p = make_pdx(load_map("intel-clx-2s"), mode)
            assert p.mode == "none"
            assert p.max_pdx == p.max_pfn == 0x3040000
            if mode == "none":
                assert p.fallback_reason is None
            else:
                assert "nothing" in p.fallback_reason

    def test_fallback_reasons_say_why(self):
        mask = make_pdx(load_map("qemu-pc-4g"), "mask")
        assert "no bit of the PFN is zero" in mask.fallback_reason
        off = make_pdx(load_map("qemu-pc-4g"), "offset")
        assert "gains nothing" in off.fallback_reason
        assert "0x140000" in off.fallback_reason


class TestGnr:
    """4-socket Intel Granite Rapids: 2 TiB of RAM over ~19 TiB of addresses.

    Frame ranges: R0 [0,0x80000)  R1 [0x100000,0x8080000)
    R2 [0x63e80000,0x6be80000)  R3 [0xc7e80000,0xcfe80000)
    R4 [0x12be80000,0x133e80000); all bases already 2^18-aligned.
    """

    def test_mask_finds_no_hole(self):
        # OR of bases and moving bits: R1 moves bits 0-27, R4 moves bits 0-28
        # (0x12be80000 ^ 0x133e7ffff = 0x180fffff), bases add bits 29,30 (R2),
        # 30,31 (R3), 29,32 (R4) -> bits 0-32 all set: no zero run below a 1.
        p = make_pdx(load_map("intel-gnr-4s"), "mask")
        assert p.mode == "none" and p.requested == "mask"
        assert "no bit of the PFN is zero in every RAM range above bit 17" in p.fallback_reason

    def test_offset_compresses(self):
        # Moving mask 0x1fffffff (m = 29).  Bases above it: 0, 0, 0x60000000,
        # 0xc0000000, 0x120000000 differ in bits 29-32 (4 bits <= 6) so
        # pfn_index_shift = 29 and the slot is PFN >> 29: R0,R1 -> 0 (merged
        # into [0,0x8080000)), R2 -> 3, R3 -> 6, R4 -> 9.  Largest region is
        # 0x8080000 frames -> rounded up to 2^28 = region size (pdx_index_shift
        # 28).  R4 is region 3, 0x8000000 frames long: max_pdx = 3 * 2^28 +
        # 0x8000000 = 0x38000000, i.e. 3.5 Ti-frames-worth of PDX space instead
        # of 0x133e80000 (frame table 28 GiB instead of ~154 GiB at 32 B/frame).
        p = make_pdx(load_map("intel-gnr-4s"), "offset")
        assert isinstance(p, PdxOffset) and p.fallback_reason is None
        assert p.max_pdx == 0x38000000
        assert p.max_pfn == 0x133e80000
        assert p.max_pdx * 5 < p.max_pfn
        assert p.pfn_index_shift == 29
        assert p.pdx_index_shift == 28 and p.region_size == 0x10000000
        assert p.index_truncated is False
        assert p.slots == [0, 3, 6, 9]
        assert p.regions == [(0, 0x8080000), (0x63e80000, 0x6be80000),
                             (0xc7e80000, 0xcfe80000), (0x12be80000, 0x133e80000)]
        # offset = pfn base - i * 2^28
        assert [r["offset"] for r in p.to_dict()["regions"]] == [
            0, 0x53e80000, 0xa7e80000, 0xfbe80000]
        assert p.mfn_to_pdx(0x12be80000) == 0x30000000
        assert p.mfn_to_pdx(0x133e7ffff) == 0x37ffffff
        assert p.pdx_to_mfn(0x10000000) == 0x63e80000

    def test_offset_covers(self):
        p = make_pdx(load_map("intel-gnr-4s"), "offset")
        assert p.covers(0) and p.covers(0x8080000 - 1)
        # Past R1's RAM but inside slot 0's 2^28 block: has a PDX (Xen's
        # pfn_bases check looks at the block, not the RAM).
        assert p.covers(0x8080000)
        assert not p.covers(0x10000000)          # slot 0 but beyond its block
        assert not p.covers(0x40000000)          # slot 2: unused
        assert not p.covers(0x63e80000 - 1)      # slot 3, just below its base
        assert p.covers(0x63e80000)


# --------------------------------------------------------------------------
# round trips over every range of every real-machine map
# --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MAP_NAMES)
def test_range_ends_round_trip(name, mode):
    ranges = load_map(name)
    p = make_pdx(ranges, mode)
    ends = [f for s, e in ranges for f in (s, e - 1)]
    pdxs = []
    for mfn in ends:
        pdx = p.mfn_to_pdx(mfn)
        assert p.pdx_to_mfn(pdx) == mfn
        assert p.covers(mfn)
        assert 0 <= pdx < p.max_pdx
        pdxs.append(pdx)
    assert pdxs == sorted(set(pdxs))            # increasing along the map
    assert p.max_pdx == p.mfn_to_pdx(ranges[-1][1] - 1) + 1
    assert p.max_pdx <= p.max_pfn
    # Vectorised over the same frames.
    arr = np.array(ends, dtype=np.uint64)
    assert p.mfn_to_pdx(arr).tolist() == pdxs
    assert p.pdx_to_mfn(p.mfn_to_pdx(arr)).tolist() == ends


# --------------------------------------------------------------------------
# covers()
# --------------------------------------------------------------------------

class TestCovers:
    def test_mask_hole_is_not_covered(self):
        p = make_pdx(QEMU_2NODE, "mask")
        assert not p.covers(0x80000)             # bit 19 set: in the squeezed hole
        assert not p.covers(0xfffff)
        assert not p.covers(0x180000 | 0x80000)
        assert p.covers(0x17ffff)
        assert p.covers(0x200000)                # above RAM, no bit 19: has a PDX

    def test_every_ram_frame_covered_and_monotonic(self):
        # All 0x100000 RAM frames of qemu-2node, vectorised.
        for mode in ("mask", "offset"):
            p = make_pdx(QEMU_2NODE, mode)
            mfns = np.concatenate([np.arange(s, e, dtype=np.uint64) for s, e in QEMU_2NODE])
            assert p.covers(mfns).all()
            pdx = p.mfn_to_pdx(mfns)
            # Here the PDXs are exactly 0..0xfffff, in order.
            assert np.array_equal(pdx, np.arange(0x100000, dtype=np.uint64))
            assert np.array_equal(p.pdx_to_mfn(pdx), mfns)

    def test_vectorised_covers_matches_scalar(self):
        for mode in MODES:
            p = make_pdx(load_map("intel-gnr-4s"), mode)
            mfns = [0, 0x8080000, 0x10000000, 0x40000000, 0x63e80000 - 1,
                    0x63e80000, 0x133e80000, MAX_MFN - 1, MAX_MFN]
            got = p.covers(np.array(mfns, dtype=np.int64))
            assert got.dtype == bool
            assert got.tolist() == [p.covers(m) for m in mfns]
            assert p.covers(MAX_MFN) is False and p.covers(-1) is False

    def test_none_covers_everything_in_the_address_space(self):
        p = make_pdx(QEMU_2NODE, "none")
        assert p.covers(0x80000) and p.covers(MAX_MFN - 1)
        assert not p.covers(MAX_MFN)


# --------------------------------------------------------------------------
# mfn_to_pdx / pdx_to_mfn: vectorised forms, dtypes, errors
# --------------------------------------------------------------------------

class TestTranslate:
    @pytest.mark.parametrize("dtype", [np.uint64, np.int64])
    @pytest.mark.parametrize("mode", ["none", "mask", "offset"])
    def test_vector_equals_scalar(self, mode, dtype):
        ranges = load_map("intel-gnr-4s") if mode == "offset" else QEMU_2NODE
        p = make_pdx(ranges, mode)
        rng = np.random.default_rng(1)
        mfns = np.concatenate([rng.integers(s, e, 200) for s, e in ranges]).astype(dtype)
        pdx = p.mfn_to_pdx(mfns)
        assert pdx.dtype == dtype and pdx.shape == mfns.shape
        assert pdx.tolist() == [p.mfn_to_pdx(int(m)) for m in mfns]
        back = p.pdx_to_mfn(pdx)
        assert back.dtype == dtype
        assert back.tolist() == [p.pdx_to_mfn(int(x)) for x in pdx] == mfns.tolist()

    def test_shapes_scalars_and_lists(self):
        p = make_pdx(QEMU_2NODE, "mask")
        grid = np.array([[0x100000, 0x17ffff], [0, 0x7ffff]], dtype=np.uint64)
        assert p.mfn_to_pdx(grid).tolist() == [[0x80000, 0xfffff], [0, 0x7ffff]]
        x = p.mfn_to_pdx(np.uint64(0x100000))
        assert type(x) is int and x == 0x80000
        assert p.mfn_to_pdx([0x100000]).tolist() == [0x80000]
        assert p.mfn_to_pdx(np.array([], dtype=np.uint64)).size == 0

    def test_bad_values(self):
        p = make_pdx(QEMU_2NODE, "offset")
        with pytest.raises(ValueError):
            p.mfn_to_pdx(-1)
        with pytest.raises(ValueError):
            p.pdx_to_mfn(np.array([3, -3]))
        with pytest.raises(TypeError):
            p.mfn_to_pdx(np.array([1.0]))
        with pytest.raises(TypeError):
            p.mfn_to_pdx(True)


# --------------------------------------------------------------------------
# mask compression details
# --------------------------------------------------------------------------

class TestMask:
    def test_longest_zero_run_wins(self):
        # Ranges [0,2^18) and [0x880000,0x8c0000): mask = 0x3ffff | bit 19 |
        # bit 23 -> zero runs: bit 18 (length 1) and bits 20-22 (length 3).
        # The longer run is squeezed: bottom_shift 20, hole_shift 3.
        # pdx(0x880000) = 0x80000 | (0x800000 >> 3) = 0x180000; max_pdx =
        # 0x180000 + 0x40000 = 0x1c0000.
        p = make_pdx([(0, G), (0x880000, 0x8c0000)], "mask")
        assert (p.bottom_shift, p.hole_shift) == (20, 3)
        assert p.hole_mask == 0x700000
        assert p.mfn_to_pdx(0x880000) == 0x180000
        assert p.max_pdx == 0x1c0000
        assert p.describe().startswith("mask: bits 20-22 of the PFN squeezed out (hole_shift 3")

    def test_tie_keeps_the_lowest_run(self):
        # Single range [10*2^18, 11*2^18) = [0x280000, 0x2c0000): base bits 19
        # and 21 -> zero bits 18 and 20, both length 1: bit 18 is taken (Xen's
        # strict '>').  pdx(0x280000) = 0 | (0x280000 >> 1) = 0x140000;
        # max_pdx = 0x140000 + 0x40000 = 0x180000.
        p = make_pdx([(10 * G, 11 * G)], "mask")
        assert (p.bottom_shift, p.hole_shift) == (18, 1)
        assert p.max_pdx == 0x180000

    def test_bit_18_can_go_but_bits_below_never(self):
        # [0,2^18) and [2^19, 2^19+2^18): bit 18 is zero in both and bit 19 is
        # set -> bit 18 squeezed.
        p = make_pdx([(0, G), (2 * G, 3 * G)], "mask")
        assert (p.bottom_shift, p.hole_shift) == (18, 1)
        # [0,0x20000) and [0x80000,0xa0000): bit 17 is zero in all RAM too, but
        # the low 18 bits always count as set: only bit 18 goes, and the
        # non-RAM frames with bit 17 set keep a PDX.  pdx(0x9ffff) = 0x1ffff |
        # (0x80000 >> 1) = 0x5ffff -> max_pdx 0x60000.
        q = make_pdx([(0, G // 2), (2 * G, 2 * G + G // 2)], "mask")
        assert (q.bottom_shift, q.hole_shift) == (18, 1)
        assert q.max_pdx == 0x60000
        assert q.covers(0x30000) and not q.covers(0x40000)
        # [0,1) and [0x100,0x101): the only gap is below bit 18 -> no hole.
        r = make_pdx([(0, 1), (0x100, 0x101)], "mask")
        assert r.mode == "none"

    def test_top_zeros_are_not_a_hole(self):
        # One range [0, 2^18): all bits >= 18 are zero, none set above them.
        p = make_pdx([(0, G)], "mask")
        assert p.mode == "none" and "nothing to compress" in p.fallback_reason


# --------------------------------------------------------------------------
# offset compression details
# --------------------------------------------------------------------------

class TestOffset:
    def test_unaligned_bases_align_down_and_merge(self):
        # [0x100, 0x40000) aligns down to base 0 and overlaps [0, 0x9f): one
        # region at 0 -> pdx == pfn, nothing gained.
        p = make_pdx(load_map("firecracker-1g"), "offset")
        assert p.mode == "none" and "gains nothing" in p.fallback_reason

    def test_single_region_not_at_zero(self):
        # [10*2^18, 11*2^18): single region, offset = its base 0x280000, so
        # pdx = pfn - 0x280000 and max_pdx = 2^18.
        p = make_pdx([(10 * G, 11 * G)], "offset")
        assert p.mode == "offset"
        assert p.max_pdx == G
        assert p.mfn_to_pdx(10 * G) == 0
        assert not p.covers(10 * G - 1) and not p.covers(11 * G)

    def test_region_size_rounds_up_to_power_of_two(self):
        # [0,1) and [0x100000,0x100001): each region one frame, size rounds up
        # to 2^18 (the minimum); bases differ in bit 20 -> shift 20.  Region 1
        # at PDX 0x40000: max_pdx = 0x40001.
        p = make_pdx([(0, 1), (0x100000, 0x100001)], "offset")
        assert p.region_size == G and p.pfn_index_shift == 20
        assert p.max_pdx == 0x40001

    def test_close_bases_share_a_slot(self):
        # [0,2^18) [2*2^18, 2*2^18+1) [32*2^18, 35*2^18): the 3-block region
        # [0x800000,0x8c0000) moves bits 0-19 (0x800000 ^ 0x8bffff = 0xbffff),
        # so the moving mask is 0xfffff and base 0x80000 (bit 19) is hidden in
        # it; bases differ above it only in bit 23 -> pfn_index_shift 23.
        # Slots 0, 0, 1: the first two merge into [0,0x80001).  Largest region
        # 0xc0000 -> size 2^20; region 1 at PDX 0x100000, offset 0x800000 -
        # 0x100000 = 0x700000; max_pdx = 0x100000 + 0xc0000 = 0x1c0000.
        p = make_pdx([(0, G), (2 * G, 2 * G + 1), (32 * G, 35 * G)], "offset")
        assert p.pfn_index_shift == 23 and p.slots == [0, 1]
        assert p.regions == [(0, 0x80001), (0x800000, 0x8c0000)]
        assert p.region_size == 0x100000 and p.max_pdx == 0x1c0000
        assert p.pfn_pdx_lookup[1] == 0x700000
        assert p.covers(0x40000)                 # the gap inside slot 0's block

    def test_region_size_can_eat_the_gain(self):
        # Xen's "resulting PDX region size leads to no compression" case:
        # [0,1G) [2G,3G) [4G,7G) [8G,12G) (G = 2^18 frames).  Moving mask
        # 0xfffff, bases differ in bits 20-21 -> shift 20, slots 0,0,1,2 ->
        # regions [0,3G) [4G,7G) [8G,12G); size 4G = 2^20, so region 2 lands at
        # PDX 2^21 = its own PFN 8G: offset 0, nothing gained.
        p = make_pdx([(0, G), (2 * G, 3 * G), (4 * G, 7 * G), (8 * G, 12 * G)], "offset")
        assert p.mode == "none" and "gains nothing" in p.fallback_reason
        assert p.max_pdx == p.max_pfn == 12 * G

    def test_truncated_index_merges_across_a_gap(self):
        # A=[0,2^25) moves bits 0-24; C=[2^26, 2^26+2^18), B=[2^38, 2^38+2^18)
        # differ above it in bits 26 and 38: 13 bits wide > 6, so the index is
        # the top 6: shift = 39 - 6 = 33.  A and C both have PFN>>33 == 0 and
        # are merged into [0, 2^26+2^18) (gap included); B is slot 2^38>>33 =
        # 32.  Size = 2^27 (2^26+2^18 rounded up): max_pdx = 2^27 + 2^18.
        a, c, b = (0, 1 << 25), (1 << 26, (1 << 26) + G), (1 << 38, (1 << 38) + G)
        p = make_pdx([a, c, b], "offset")
        assert p.mode == "offset" and p.index_truncated
        assert p.pfn_index_shift == 33
        assert p.regions == [(0, (1 << 26) + G), b]
        assert p.slots == [0, 32]
        assert p.max_pdx == (1 << 27) + G
        assert p.covers((1 << 25) + 5)           # in the merged gap: has a PDX

    def test_unused_pdx_slot_is_identity_like_xen(self):
        # Xen's zero-initialised table: an unused slot has offset 0.
        p = make_pdx(QEMU_2NODE, "offset")
        assert p.pdx_to_mfn(5 * 0x80000 + 7) == 5 * 0x80000 + 7
        assert len(p.pfn_pdx_lookup) == OFFSET_TABLE_SLOTS == 64


# --------------------------------------------------------------------------
# Xen's own test table (tools/tests/pdx/test-pdx.c): compressible or not
# --------------------------------------------------------------------------

XEN_CASES = [
    # (name, ranges, compressible in both mask and offset mode)
    ("simple hole", [(0, G), (1 << 36, (1 << 36) | G)], True),
    ("three ranges", [(0, G), (2 * G, 3 * G), (20 * G, 22 * G)], True),
    ("single range not at 0", [(10 * G, 11 * G)], True),
    ("region size gains nothing", [(0, G), (2 * G, 3 * G), (4 * G, 7 * G), (8 * G, 12 * G)], False),
    ("AMD Versal Gen 2", [(0, 0x80000), (0x800000, 0x880000), (0x50000000, 0x50080000),
                          (0x60000000, 0x60080000), (0x70000000, 0x70080000)], True),
    ("lower one not at 0", [((1 << 23) + 2 * G, (1 << 23) + 3 * G), (2 * G, 3 * G)], True),
    ("same high bit", [((1 << 39), (1 << 39) + G), ((1 << 39) + 3 * G, (1 << 39) + 4 * G)], True),
    ("AMD Naples 2s", [(0, 0xa0), (0x100, 0xb0000), (0x100000, 0x430000),
                       (0x430000, 0x830000), (0x830000, 0xc30000), (0xc30000, 0x1030000),
                       (0x1030000, 0x1430000), (0x1430000, 0x1830000),
                       (0x1830000, 0x1c30000), (0x1c30000, 0x2030000)], False),
    ("qemu 2 node", QEMU_2NODE, True),
    ("smaller than MAX_ORDER", [(0, 1), (0x100, 0x101)], False),
    ("size adjusted to MAX_ORDER", [(0, 1), (0x100000, 0x100001)], True),
    ("Intel CLX 2s", [(0, 0x180000), (0x180000, 0x3040000)], False),
    # added to the harness with the fix edf942201d (4.22.0, 4.21.2)
    ("Dell R740 2s", [(0x0, 0x80000), (0x100000, 0x3070000), (0x3070000, 0x3870000),
                      (0x3870000, 0x6870000), (0x6870000, 0x7070000)], False),
]


@pytest.mark.parametrize("mode", ["mask", "offset", "offset-4.21.0"])
@pytest.mark.parametrize("name,ranges,compressible", XEN_CASES, ids=[c[0] for c in XEN_CASES])
def test_xen_test_pdx_table(name, ranges, compressible, mode):
    """tools/tests/pdx/test-pdx.c's cases (RELEASE-4.21.0 and RELEASE-4.22.0): the verdict
    of pfn_pdx_compression_setup in each mode, and the harness's round trip."""
    p = make_pdx(ranges, mode, ranges)
    assert (p.mode == mode) is compressible
    assert (p.fallback_reason is None) is compressible
    for s, e in ranges:
        for mfn in (s, e - 1):
            assert p.covers(mfn)
            assert p.pdx_to_mfn(p.mfn_to_pdx(mfn)) == mfn


# --------------------------------------------------------------------------
# Xen 4.21's offset set-up (xen/common/pdx.c, pfn_pdx_compression_setup under
# PDX_OFFSET_COMPRESSION), table by table.  The regions are given *as listed*
# (one per pfn_pdx_add_region call, not merged): only regions that overlap once
# their bases are aligned down to 2^18 are merged before the lookup index is
# chosen; touching ones keep their own moving bits and merge later, when they
# fall in the same table slot.  Each expected table (pfn_index_shift,
# pdx_index_shift, {slot: (pfn_bases[slot], pfn_pdx_lookup[slot])}, or None
# when Xen declines to compress) is what RELEASE-4.21.0's pdx.c computes for
# these inputs, built with its tools/tests/pdx harness; the first fourteen
# inputs are that harness's own cases (its expected answer is "compress or not",
# checked here by the expected table being None or not).
# --------------------------------------------------------------------------

XEN_421_OFFSET_TABLES = [
    # -- tools/tests/pdx/test-pdx.c at RELEASE-4.21.0 --
    ("harness: 4s Intel GNR", [(0x0, 0x80000), (0x100000, 0x8080000),
                               (0x63e80000, 0x6be80000), (0xc7e80000, 0xcfe80000),
                               (0x12be80000, 0x133e80000)],
     (29, 28, {0: (0x0, 0x0), 3: (0x63e80000, 0x53e80000), 6: (0xc7e80000, 0xa7e80000),
               9: (0x12be80000, 0xfbe80000)})),
    ("harness: simple hole", [(0x0, 0x40000), (0x1000000000, 0x1000040000)],
     (36, 18, {0: (0x0, 0x0), 1: (0x1000000000, 0xffffc0000)})),
    ("harness: simple hole, unsorted", [(0x1000000000, 0x1000040000), (0x0, 0x40000)],
     (36, 18, {0: (0x0, 0x0), 1: (0x1000000000, 0xffffc0000)})),
    ("harness: 2 ranges under the low mask", [(0x0, 0x40000), (0x80000, 0xc0000),
                                              (0x500000, 0x580000)],
     (19, 19, {0: (0x0, 0x0), 1: (0x80000, 0x0), 10: (0x500000, 0x400000)})),
    ("harness: single range not at 0", [(0x280000, 0x2c0000)],
     (18, 18, {10: (0x280000, 0x280000)})),
    ("harness: region size gains nothing", [(0x0, 0x40000), (0x80000, 0xc0000),
                                            (0x100000, 0x1c0000), (0x200000, 0x300000)],
     None),
    ("harness: AMD Versal Gen 2", [(0x0, 0x80000), (0x800000, 0x880000),
                                   (0x50000000, 0x50080000), (0x60000000, 0x60080000),
                                   (0x70000000, 0x70080000)],
     (25, 24, {0: (0x0, 0x0), 40: (0x50000000, 0x4f000000), 48: (0x60000000, 0x5e000000),
               56: (0x70000000, 0x6d000000)})),
    ("harness: unsorted, lower not at 0", [(0x880000, 0x8c0000), (0x80000, 0xc0000)],
     (23, 18, {0: (0x80000, 0x80000), 1: (0x880000, 0x840000)})),
    ("harness: same high bit", [(0x8000000000, 0x8000040000),
                                (0x80000c0000, 0x8000100000)],
     (18, 18, {0: (0x8000000000, 0x8000000000), 3: (0x80000c0000, 0x8000080000)})),
    ("harness: AMD Naples 2s", [(0x0, 0xa0), (0x100, 0xb0000), (0x100000, 0x430000),
                                (0x430000, 0x830000), (0x830000, 0xc30000),
                                (0xc30000, 0x1030000), (0x1030000, 0x1430000),
                                (0x1430000, 0x1830000), (0x1830000, 0x1c30000),
                                (0x1c30000, 0x2030000)],
     None),
    ("harness: qemu 2 node", [(0x0, 0x80000), (0x100000, 0x180000)],
     (20, 19, {0: (0x0, 0x0), 1: (0x100000, 0x80000)})),
    ("harness: smaller than MAX_ORDER", [(0x0, 0x1), (0x100, 0x101)], None),
    ("harness: size adjusted to MAX_ORDER", [(0x0, 0x1), (0x100000, 0x100001)],
     (20, 18, {0: (0x0, 0x0), 1: (0x100000, 0xc0000)})),
    ("harness: 2s Intel CLX, touching", [(0x0, 0x180000), (0x180000, 0x3040000)], None),
    # -- ours: the presets' regions as MemoryMap.pdx_regions lists them --
    ("preset firecracker-1g", [(0x0, 0xa0), (0x100, 0x40000)], None),
    ("preset qemu-pc-4g", [(0x0, 0xc0000), (0x100000, 0x140000)], None),
    ("preset teaching", [(0x0, 0xa0), (0x100, 0x80000), (0x100000, 0x140000)],
     (20, 19, {0: (0x0, 0x0), 1: (0x100000, 0x80000)})),
    # -- ours: touching and overlapping regions --
    ("touching: index truncated to bits 19-24", [(0x0, 0x40000), (0x40000, 0x80000),
                                                 (0x1000000, 0x1040000)],
     (19, 19, {0: (0x0, 0x0), 32: (0x1000000, 0xf80000)})),
    ("touching: a small region then a large one", [(0x0, 0x80000), (0x80000, 0x400000),
                                                   (0x10000000, 0x10040000)],
     (28, 22, {0: (0x0, 0x0), 1: (0x10000000, 0xfc00000)})),
    ("touching: two pairs", [(0x100000, 0x140000), (0x140000, 0x180000),
                             (0x4000000, 0x4040000), (0x4040000, 0x4080000)],
     (21, 19, {0: (0x100000, 0x100000), 32: (0x4000000, 0x3f80000)})),
    ("touching: GNR with its first node split", [(0x0, 0x80000), (0x100000, 0x4080000),
                                                 (0x4080000, 0x8080000),
                                                 (0x63e80000, 0x6be80000),
                                                 (0xc7e80000, 0xcfe80000),
                                                 (0x12be80000, 0x133e80000)],
     (29, 28, {0: (0x0, 0x0), 3: (0x63e80000, 0x53e80000), 6: (0xc7e80000, 0xa7e80000),
               9: (0x12be80000, 0xfbe80000)})),
    ("touching once aligned: 0x40100 aligns to 0x40000", [(0x0, 0x10), (0x20, 0x40000),
                                                    (0x40100, 0x3000000),
                                                    (0x40000000, 0x40040000)],
     (30, 26, {0: (0x0, 0x0), 1: (0x40000000, 0x3c000000)})),
    ("touching once aligned, all in one slot", [(0x0, 0x10), (0x100000, 0x140000),
                                                (0x140100, 0x3000000)],
     None),
    ("overlapping once aligned, the last one", [(0x0, 0x10), (0x100000, 0x130000),
                                                (0x130100, 0x3000000)],
     None),
    ("overlapping once aligned, in the middle", [(0x0, 0x10), (0x100000, 0x130000),
                                                 (0x130100, 0x3000000),
                                                 (0x40000000, 0x40040000)],
     None),
]


@pytest.mark.parametrize("name,regions,table", XEN_421_OFFSET_TABLES,
                         ids=[c[0] for c in XEN_421_OFFSET_TABLES])
def test_pfn_pdx_compression_setup_offset_tables_4_21(name, regions, table):
    """pfn_pdx_compression_setup (offset), Xen 4.21.0 (``offset-4.21.0``): the same
    verdict, shifts and lookup table as Xen for the regions as listed; the harness's own
    checks (the first and last frame of every region have a PDX and translate back) on
    every region."""
    frames = sorted(regions)
    p = make_pdx(frames, "offset-4.21.0", regions)
    if table is None:
        assert p.mode == "none" and p.requested == "offset-4.21.0"
        assert p.fallback_reason.startswith("offset:")
        return
    pfn_shift, pdx_shift, slots = table
    assert p.mode == "offset-4.21.0" and p.fallback_reason is None
    assert (p.pfn_index_shift, p.pdx_index_shift) == (pfn_shift, pdx_shift)
    assert p.region_size == 1 << pdx_shift
    used = {i: (b, o) for i, (b, o) in enumerate(zip(p.pfn_bases, p.pfn_pdx_lookup))
            if b != 2**64 - 1}
    assert used == slots
    for s, e in regions:
        for mfn in (s, e - 1):
            assert p.covers(mfn)
            assert p.pdx_to_mfn(p.mfn_to_pdx(mfn)) == mfn


def test_offset_touching_regions_stay_apart_until_the_slot_merge_4_21():
    """pfn_pdx_compression_setup (offset), Xen 4.21: [0, 0x40000) and [0x40000, 0x80000)
    touch.  Kept apart, each moves only bits 0-17, so bit 18 of the second base is a
    differing bit: with bit 24 of the third base the differing bits 18-24 are 7 wide,
    wider than the 6-bit index, which is truncated to bits 19-24 (pfn_index_shift 19);
    the two touching regions then share slot 0 and merge, and the third is slot 32.
    Merged first (what xensim did before), [0, 0x80000) moves bits 0-18 and the only
    differing bit is 24: pfn_index_shift 24, slot 1.  The PDXs are the same either way
    (each region in a block of 2^19 PDXs), only the table's index differs."""
    regions = [(0x0, 0x40000), (0x40000, 0x80000), (0x1000000, 0x1040000)]
    as_listed = make_pdx(regions, "offset", regions)
    merged = make_pdx(regions, "offset")              # frame_ranges merge touching ones
    assert (as_listed.pfn_index_shift, as_listed.slots, as_listed.index_truncated) == (
        19, [0, 32], True)
    assert (merged.pfn_index_shift, merged.slots, merged.index_truncated) == (24, [0, 1], False)
    assert as_listed.moving_mask == 0x3ffff and merged.moving_mask == 0x7ffff
    assert as_listed.regions == merged.regions == [(0, 0x80000), (0x1000000, 0x1040000)]
    assert as_listed.pdx_ranges() == merged.pdx_ranges() == [(0, 0x80000), (0x80000, 0xc0000)]


def test_offset_merged_middle_region_adds_no_moving_bits_4_21_0():
    """pfn_pdx_compression_setup (offset), Xen 4.21: [0x130100, 0x3000000) aligns down
    to 0x100000 and overlaps [0x100000, 0x130000): they merge into [0x100000, 0x3000000),
    but a region merged into the previous one adds no moving bits (only the last region
    listed does), so the moving mask stays 0x3ffff.  The bases differ in bits 20 and 30:
    11 bits, more than the 6-bit index, so pfn_index_shift = 31 - 6 = 25, and the merged
    region then spans slots 0 and 1.  Xen finds that ("PFN compression is invalid",
    ASSERT_UNREACHABLE in a debug build) and disables the compression; so does xensim."""
    regions = [(0x0, 0x10), (0x100000, 0x130000), (0x130100, 0x3000000),
               (0x40000000, 0x40040000)]
    p = make_pdx(sorted(regions), "offset-4.21.0", regions)
    assert p.mode == "none"
    assert p.fallback_reason == (
        "offset: RAM region [0x100000, 0x3000000) spans more than one lookup-table slot "
        "(0..1 with pfn_index_shift 25)")
    # The same region as the last one listed adds its moving bits (0-25): no index
    # bits are left, one slot holds everything, and nothing is gained.
    last = regions[:3]
    q = make_pdx(sorted(last), "offset-4.21.0", last)
    assert q.mode == "none"
    assert "0 region(s) of 0x4000000 frames reach the last region's base 0x0" in q.fallback_reason


def test_offset_merged_region_moves_over_its_whole_span_4_22():
    """pfn_pdx_compression_setup (offset), Xen 4.22.0 (edf942201d, also 4.21.2): the
    moving bits are taken after the merge, from each region's whole span. The case above,
    [0x100000, 0x3000000) merged, moves bits 0-25: the bases 0, 0x100000 and 0x40000000
    differ outside them only in bit 30, so pfn_index_shift 30; the merged region is slot
    0 with [0, 0x10) and the compression holds (4.21.0 disabled it)."""
    regions = [(0x0, 0x10), (0x100000, 0x130000), (0x130100, 0x3000000),
               (0x40000000, 0x40040000)]
    p = make_pdx(sorted(regions), "offset", regions)
    assert (p.mode, p.pfn_index_shift, p.pdx_index_shift) == ("offset", 30, 26)
    assert p.moving_mask == 0x3ffffff
    assert p.regions == [(0x0, 0x3000000), (0x40000000, 0x40040000)]
    assert p.max_pdx == (1 << 26) + 0x40000
    for s, e in regions:
        assert p.pdx_to_mfn(p.mfn_to_pdx(s)) == s and p.pdx_to_mfn(p.mfn_to_pdx(e - 1)) == e - 1


def test_offset_dell_r740_4_21_0_and_4_22():
    """tools/tests/pdx's Dell R740 case, added with the fix edf942201d: neither release
    compresses it, for different reasons. 4.21.0 takes the merged last range's moving bits
    at its own size, picks pfn_index_shift 25 and then finds a region spanning two slots
    ("PFN compression is invalid"); 4.22.0 takes the merged spans, no index bits remain
    and one slot holds everything ("no space gain")."""
    regions = [(0x0, 0x80000), (0x100000, 0x3070000), (0x3070000, 0x3870000),
               (0x3870000, 0x6870000), (0x6870000, 0x7070000)]
    old = make_pdx(sorted(regions), "offset-4.21.0", regions)
    new = make_pdx(sorted(regions), "offset", regions)
    assert old.mode == new.mode == "none"
    assert "spans more than one lookup-table slot" in old.fallback_reason
    assert "gains nothing" in new.fallback_reason


#: region lists with the tables Xen's own pdx.c computes for them, at RELEASE-4.21.0 and
#: RELEASE-4.22.0 (tools/pdx_xen_tables.py builds both with Xen's tools/tests/pdx harness):
#: the harness's cases, xensim's, and seeded random maps (every one the two releases
#: answer differently, and as many they answer alike)
XEN_OFFSET_TABLES = json.loads((Path(__file__).parent.parent / "data" / "pdx-offset-xen.json")
                               .read_text())


@pytest.mark.parametrize("release,mode", [("4.21.0", "offset-4.21.0"), ("4.22.0", "offset")])
@pytest.mark.parametrize("case", XEN_OFFSET_TABLES, ids=[c["name"] for c in XEN_OFFSET_TABLES])
def test_pfn_pdx_compression_setup_offset_equals_xens_pdx_c(case, release, mode):
    """pfn_pdx_compression_setup (offset) at RELEASE-4.21.0 and RELEASE-4.22.0: the same
    verdict, shifts and lookup table as Xen's own code, and every region's first and last
    frame translating back."""
    regions = [tuple(r) for r in case["regions"]]
    p = make_pdx(sorted(regions), mode, regions)
    want = case[release]
    if want is None:
        assert p.mode == "none" and p.requested == mode
        return
    pfn_shift, pdx_shift, slots = want
    assert p.mode == mode and (p.pfn_index_shift, p.pdx_index_shift) == (pfn_shift, pdx_shift)
    used = {i: [b, o] for i, (b, o) in enumerate(zip(p.pfn_bases, p.pfn_pdx_lookup))
            if b != 2**64 - 1}
    assert used == {int(k): v for k, v in slots.items()}
    for s, e in regions:
        for mfn in (s, e - 1):
            assert p.covers(mfn) and p.pdx_to_mfn(p.mfn_to_pdx(mfn)) == mfn


def test_the_two_offset_forms_differ_on_random_maps():
    """The fix changes the answer often: of the seeded random maps of the data file, some
    are answered differently by the two releases, and xensim's two forms follow each."""
    differ = [c for c in XEN_OFFSET_TABLES if c["4.21.0"] != c["4.22.0"]]
    assert len(differ) >= 10


def test_offset_no_gain_is_xens_last_base_test_4_21():
    """pfn_pdx_compression_setup (offset), Xen 4.21, "no space gain": the regions before
    the last, each in a block of region_size PDXs, reach the last region's base.  The
    harness's case [0,1G) [2G,3G) [4G,7G) [8G,12G) (G = 2^18): slots 0, 0, 1, 2 give
    three regions of blocks of 2^20, and 2 * 2^20 reaches the last base 8G = 2^21."""
    regions = [(0, G), (2 * G, 3 * G), (4 * G, 7 * G), (8 * G, 12 * G)]
    p = make_pdx(regions, "offset", regions)
    assert p.mode == "none"
    assert "2 region(s) of 0x100000 frames reach the last region's base 0x200000" in (
        p.fallback_reason)


def test_machine_uses_the_map_regions_as_listed():
    """The machine's PDX set-up takes MemoryMap.pdx_regions: the RAM ranges as listed,
    start rounded down and end rounded up to a frame (Xen's pfn_pdx_add_region), not
    merged.  On every preset the result is the one the merged frame ranges gave (no
    preset has touching ranges whose moving bits matter): the values below are those of
    TestKnownMaps, unchanged."""
    from xensim.mem._memmap import MemoryMap
    for name in MAP_NAMES + ["teaching"]:
        data = yaml.safe_load((MEMMAPS / f"{name}.yaml").read_text())
        mm = MemoryMap(data["ram"], name=name)
        listed = make_pdx(mm.frame_ranges, "offset", mm.pdx_regions)
        merged = make_pdx(mm.frame_ranges, "offset")
        assert listed.to_dict() == merged.to_dict(), name
    mm = MemoryMap([[0x0, 0x9fc00], [0x100000, 0x80000000], [0x100000000, 0x140000000]])
    assert mm.pdx_regions == [(0x0, 0xa0), (0x100, 0x80000), (0x100000, 0x140000)]
    mm = MemoryMap([[0x0, 0x180000000], [0x180000000, 0x3040000000]])
    assert mm.pdx_regions == [(0, 0x180000), (0x180000, 0x3040000)]
    assert mm.frame_ranges == [(0, 0x3040000)]


# --------------------------------------------------------------------------
# describe() and to_dict()
# --------------------------------------------------------------------------

class TestReport:
    def test_describe(self):
        assert make_pdx(QEMU_2NODE, "mask").describe().startswith(
            "mask: bit 19 of the PFN squeezed out (hole_shift 1")
        d = make_pdx(load_map("intel-gnr-4s"), "offset").describe()
        assert d.startswith("offset: 4 regions") and "pfn_index_shift 29" in d
        n = make_pdx(load_map("intel-gnr-4s"), "mask").describe()
        assert n.startswith("none: pdx == mfn") and "fallback from mask" in n
        assert make_pdx(QEMU_2NODE, "none").describe() == "none: pdx == mfn (max_pdx 0x180000)"

    @pytest.mark.parametrize("mode", MODES)
    def test_to_dict_is_json_ready(self, mode):
        for name in ("qemu-2node", "intel-gnr-4s"):
            p = make_pdx(load_map(name), mode)
            d = p.to_dict()
            assert {"mode", "requested", "fallback_reason", "max_pdx"} <= d.keys()
            assert d["mode"] == p.mode and d["requested"] == mode
            assert d["max_pdx"] == p.max_pdx
            json.loads(json.dumps(d))
        assert make_pdx(QEMU_2NODE, "mask").to_dict()["hole_shift"] == 1
        assert make_pdx(QEMU_2NODE, "offset").to_dict()["pfn_index_shift"] == 20


# --------------------------------------------------------------------------
# properties over random maps
# --------------------------------------------------------------------------

def check_invariants(p: Pdx, ranges, rng):
    """Everything that must hold for any accepted (or fallen-back) compression."""
    assert p.max_pdx <= p.max_pfn
    assert p.max_pdx == p.mfn_to_pdx(ranges[-1][1] - 1) + 1
    if p.mode != p.requested:
        assert isinstance(p, PdxNone) and p.fallback_reason
    if isinstance(p, PdxOffset):
        # Region i starts at PDX i * region_size, never above its PFN base.
        assert all(0 <= r["offset"] <= r["pfn_base"] for r in p.to_dict()["regions"])
    # Random RAM frames plus every range's ends, sorted.
    parts = [np.array([s, e - 1], dtype=np.uint64) for s, e in ranges]
    parts += [rng.integers(s, e, 40, dtype=np.uint64) for s, e in ranges]
    mfns = np.unique(np.concatenate(parts))
    pdx = p.mfn_to_pdx(mfns)
    assert np.array_equal(p.pdx_to_mfn(pdx), mfns)          # round trip
    assert p.covers(mfns).all()
    assert (pdx < np.uint64(p.max_pdx)).all()
    assert (np.diff(pdx.astype(np.int64)) > 0).all()        # monotonic (every mode)
    signed = mfns.astype(np.int64)
    assert np.array_equal(p.mfn_to_pdx(signed), pdx.astype(np.int64))
    for m, x in list(zip(mfns.tolist(), pdx.tolist()))[:12]:  # vectorised == scalar
        assert p.mfn_to_pdx(m) == x and p.pdx_to_mfn(x) == m
    # Superpages (512) and MAX_ORDER blocks stay aligned and contiguous.
    for s, e in ranges:
        for block in (SUPERPAGE_PAGES, G):
            first = -(-s // block) * block
            if first + block <= e:
                start = int(rng.integers(first // block, e // block)) * block
                if start + block > e:
                    start = first
                blk = p.mfn_to_pdx(np.arange(start, start + block, dtype=np.uint64))
                assert int(blk[0]) % block == 0
                assert np.array_equal(blk, blk[0] + np.arange(block, dtype=np.uint64))


@st.composite
def aligned_maps(draw):
    """1..6 non-overlapping ranges with 2^18-aligned starts; ends aligned or
    trimmed by up to 2^18-1 frames; gaps from none to ~2^37 frames."""
    n = draw(st.integers(1, 6))
    pos, ranges = 0, []
    for i in range(n):
        gap = draw(st.one_of(st.integers(0, 4), st.integers(0, 1 << 19)))
        if i == 0:
            gap = draw(st.one_of(st.just(0), st.integers(0, 1 << 19)))
        blocks = draw(st.one_of(st.integers(1, 4), st.integers(1, 1 << 10)))
        trim = draw(st.one_of(st.just(0), st.integers(0, G - 1)))
        start = (pos + gap) * G
        end = start + blocks * G - trim
        ranges.append((start, end))
        pos += gap + blocks
    return ranges


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ranges=aligned_maps(), seed=st.integers(0, 2**32 - 1))
def test_property_aligned_maps(ranges, seed):
    rng = np.random.default_rng(seed)
    norm = list(normalize_frame_ranges(ranges))
    for mode in MODES:
        check_invariants(make_pdx(ranges, mode), norm, rng)


@st.composite
def arbitrary_maps(draw):
    """1..6 disjoint ranges of any alignment: gaps and lengths of random
    magnitude (gaps up to 2^36 frames, lengths up to 2^28)."""
    n = draw(st.integers(1, 6))
    pos, ranges = 0, []
    for _ in range(n):
        pos += draw(st.integers(0 if not ranges else 1, 1 << draw(st.integers(0, 36))))
        length = draw(st.integers(1, 1 << draw(st.integers(0, 28))))
        ranges.append((pos, pos + length))
        pos += length
    return ranges


@settings(max_examples=100, deadline=None)
@given(ranges=arbitrary_maps(), seed=st.integers(0, 2**32 - 1))
def test_property_arbitrary_maps(ranges, seed):
    rng = np.random.default_rng(seed)
    norm = list(normalize_frame_ranges(ranges))
    for mode in MODES:
        check_invariants(make_pdx(ranges, mode), norm, rng)
