"""Tests of xensim.mem._memmap: the e820 memory map, its frame arithmetic and the text parsers.

Every expected number is worked out by hand in a comment next to it.
Frames are 4 KiB (0x1000 bytes), superpages 512 frames (2 MiB, 0x200000 bytes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xensim.mem._memmap import (
    E820Type,
    MemoryMap,
    MemoryMapError,
    MemRange,
    parse_boot_log,
    parse_iomem,
    parse_memmap_text,
)
from xensim.mem._units import GiB, MAX_PADDR, MiB, PAGE_SIZE, SUPERPAGE_PAGES, TiB

DATA = Path(__file__).resolve().parents[1] / "data"
# The real machines' maps ship as presets in this repository's configs/machines/.
MEMMAPS = Path(__file__).resolve().parents[2] / "configs" / "machines"
REAL_MACHINES = ["firecracker-1g", "intel-clx-2s", "intel-gnr-4s", "qemu-2node", "qemu-pc-4g"]

RAM, RES, ACPI, NVS, UNUS = (E820Type.RAM, E820Type.RESERVED, E820Type.ACPI,
                             E820Type.NVS, E820Type.UNUSABLE)


def load_machine(name: str) -> MemoryMap:
    data = yaml.safe_load((MEMMAPS / f"{name}.yaml").read_text())
    return MemoryMap(data["ram"], name=data["name"], source=data["source"])


# ==========================================================================
# E820Type and MemRange
# ==========================================================================

class TestE820Type:
    @pytest.mark.parametrize("text, expected", [
        ("ram", RAM), ("RAM", RAM), ("usable", RAM), ("Usable", RAM), (" ram ", RAM),
        ("reserved", RES), ("RESERVED", RES),
        ("acpi", ACPI), ("ACPI", ACPI),
        ("nvs", NVS), ("NVS", NVS),
        ("unusable", UNUS), ("Unusable", UNUS),
    ])
    def test_parse_accepted(self, text, expected):
        assert E820Type.parse(text) is expected

    @pytest.mark.parametrize("text", ["", "system ram", "acpi data", "rom", "mmio"])
    def test_parse_refused_names_accepted_names(self, text):
        with pytest.raises(ValueError) as info:
            E820Type.parse(text)
        msg = str(info.value)
        for name in ("ram", "usable", "reserved", "acpi", "nvs", "unusable"):
            assert repr(name) in msg

    def test_values_are_yaml_names(self):
        assert [t.value for t in E820Type] == ["ram", "reserved", "acpi", "nvs", "unusable"]


class TestMemRange:
    def test_defaults_and_size(self):
        r = MemRange(0x1000, 0x3000)
        assert r.type is RAM
        assert r.size == 0x2000

    def test_string_type_is_parsed(self):
        assert MemRange(0, 0x1000, "usable") == MemRange(0, 0x1000, RAM)
        assert MemRange(0, 0x1000, "NVS").type is NVS

    def test_frozen(self):
        r = MemRange(0, 0x1000)
        with pytest.raises(AttributeError):
            r.start = 5  # type: ignore[misc]

    def test_str(self):
        assert str(MemRange(0, 0x9fc00)) == "[0x0, 0x9fc00) ram"


# ==========================================================================
# Construction and validation errors
# ==========================================================================

class TestValidation:
    def test_input_forms(self):
        # MemRange, 2-tuple (RAM), 3-tuple with enum, 3-tuple with string, hex strings
        m = MemoryMap([
            (0x100000, 0x200000, "reserved"),
            MemRange(0, 0x1000),
            (0x1000, 0x2000),
            ["0x2000", "0x3000", ACPI],
        ])
        assert m.ranges == [
            MemRange(0, 0x1000, RAM),
            MemRange(0x1000, 0x2000, RAM),
            MemRange(0x2000, 0x3000, ACPI),
            MemRange(0x100000, 0x200000, RES),
        ]
        assert m.name == "custom" and m.source is None

    def test_adjacent_ranges_are_fine(self):
        m = MemoryMap([(0x2000, 0x3000), (0x1000, 0x2000, "reserved"), (0, 0x1000)])
        assert len(m.ranges) == 3

    def test_end_not_above_start(self):
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x1000), (0x5000, 0x5000)])
        assert (info.value.index, info.value.field, info.value.line) == (1, "end", None)
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0x5000, 0x4000), (0, 0x1000)])
        assert (info.value.index, info.value.field) == (0, "end")

    def test_past_52_bits(self):
        # end == 1 << 52 is the last allowed (half-open)
        m = MemoryMap([(MAX_PADDR - 0x1000, MAX_PADDR)])
        assert m.max_pfn == 1 << 40
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x1000), (MAX_PADDR - 0x1000, MAX_PADDR + 1)])
        assert (info.value.index, info.value.field) == (1, "end")
        assert "52" in info.value.message
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x1000), (0x2000, 0x3000), (MAX_PADDR + 0x1000, MAX_PADDR + 0x2000)])
        assert (info.value.index, info.value.field) == (2, "start")

    def test_negative(self):
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(-0x1000, 0x1000)])
        assert (info.value.index, info.value.field) == (0, "start")

    def test_bad_type(self):
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x1000), (0x1000, 0x2000, "rom")])
        assert (info.value.index, info.value.field) == (1, "type")
        assert "'usable'" in info.value.message

    def test_bad_address_values(self):
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x1000), (0x2000, 1.5e6)])
        assert (info.value.index, info.value.field) == (1, "end")
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(True, 0x1000)])
        assert (info.value.index, info.value.field) == (0, "start")
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([("0xzz", 0x1000)])
        assert (info.value.index, info.value.field) == (0, "start")
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x1000), (0x2000,)])
        assert (info.value.index, info.value.field) == (1, None)

    def test_first_bad_range_in_input_order_is_reported(self):
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x1000), (0x3000, 0x2000), (-1, 5)])
        assert info.value.index == 1

    def test_overlap_ram_ram(self):
        # #0 [0x200000, 0x400000) and #2 [0x300000, 0x500000) overlap; #2 is later in input
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0x200000, 0x400000), (0, 0x1000), (0x300000, 0x500000)])
        err = info.value
        assert (err.index, err.field, err.line) == (2, "start", None)
        for text in ("0x200000", "0x400000", "0x300000", "0x500000", "#0", "#2"):
            assert text in err.message

    def test_overlap_later_input_has_lower_start(self):
        # sorted order puts #1 first, but #1 is the later one in the input
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0x300000, 0x500000, "reserved"), (0x200000, 0x400000)])
        assert (info.value.index, info.value.field) == (1, "start")

    def test_overlap_of_non_ram_ranges(self):
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x100000), (0xa0000, 0xc0000, "reserved"), (0xb0000, 0xb1000, "nvs")])
        assert (info.value.index, info.value.field) == (1, "start")  # #0 and #1 overlap first
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x100000), (0x200000, 0x300000, "acpi"), (0x2ff000, 0x301000, "nvs")])
        assert (info.value.index, info.value.field) == (2, "start")

    def test_overlap_hidden_behind_a_contained_range(self):
        # #0 [0, 0x10000) contains #1; #2 [0x8000, 0x9000) overlaps #0 (not #1)
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x10000), (0x1000, 0x2000, "reserved")])
        assert info.value.index == 1
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0x1000, 0x2000, "reserved"), (0x8000, 0x9000), (0, 0x10000)])
        assert info.value.index == 2

    def test_identical_duplicate_is_an_overlap(self):
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x100000), (0, 0x100000)])
        assert (info.value.index, info.value.field) == (1, "start")

    def test_empty(self):
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([])
        assert info.value.index is None and info.value.field is None
        assert "empty" in info.value.message

    def test_no_ram_range(self):
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0, 0x100000, "reserved"), (0x100000, 0x200000, "acpi")])
        assert info.value.index is None
        assert "no RAM" in info.value.message

    def test_ram_without_a_whole_frame(self):
        # [0x800, 0x1800) touches frames 0 and 1 but holds neither whole;
        # [0x2100, 0x2f00) is smaller than a frame
        with pytest.raises(MemoryMapError) as info:
            MemoryMap([(0x800, 0x1800), (0x2100, 0x2f00), (0x3000, 0x200000, "reserved")])
        assert info.value.index is None
        assert "whole" in info.value.message

    def test_error_is_a_value_error_with_message(self):
        err = MemoryMapError("boom", index=3, field="end", line=7)
        assert isinstance(err, ValueError)
        assert str(err) == err.message == "boom"
        assert (err.index, err.field, err.line) == (3, "end", 7)


# ==========================================================================
# Ranges, frames and holes
# ==========================================================================

class TestFrames:
    def test_legacy_edge_0x9fc00(self):
        # [0, 0x9fc00): 0x9fc00 / 0x1000 = 0x9f.c -> frames [0, 0x9f), 0x9f frames
        m = MemoryMap([(0, 0x9fc00)])
        assert m.frame_ranges == [(0, 0x9f)]
        assert m.ram_frames == 0x9f == 159
        assert m.ram_bytes == 0x9fc00
        assert m.max_pfn == 0x9f
        assert m.is_ram(0x9e) and not m.is_ram(0x9f)
        assert m.holes == []

    def test_range_starting_mid_frame(self):
        # [0x1800, 0x5000): ceil(0x1800/0x1000) = 2, floor(0x5000/0x1000) = 5 -> [2, 5)
        m = MemoryMap([(0x1800, 0x5000)])
        assert m.frame_ranges == [(2, 5)]
        assert m.ram_frames == 3
        assert m.ram_bytes == 0x3800
        assert m.holes == [(0, 2)]
        assert not m.is_ram(1) and m.is_ram(2) and m.is_ram(4) and not m.is_ram(5)

    def test_range_smaller_than_a_frame_gives_no_frame(self):
        # [0x10100, 0x10f00) is inside frame 0x10 but does not cover it
        m = MemoryMap([(0, 0x2000), (0x10100, 0x10f00)])
        assert m.frame_ranges == [(0, 2)]
        assert m.ram_bytes == 0x2000 + 0xe00
        assert m.ram_frames == 2
        assert m.max_pfn == 2          # the partial range does not raise max_pfn
        assert not m.is_ram(0x10)

    def test_touching_ram_ranges_merge_into_whole_frames(self):
        # [0, 0x1800) + [0x1800, 0x3000) merge to [0, 0x3000): frames [0, 3);
        # alone, each would give only frame 0 resp. frame 2.
        m = MemoryMap([(0x1800, 0x3000), (0, 0x1800)])
        assert m.frame_ranges == [(0, 3)]
        assert m.ram_frames == 3
        assert m.is_ram(1)
        assert m.ram_ranges == [MemRange(0, 0x1800), MemRange(0x1800, 0x3000)]  # unmerged

    def test_ram_touching_through_a_reserved_range_does_not_merge(self):
        # [0, 0x1800) RAM, [0x1800, 0x1900) reserved, [0x1900, 0x3000) RAM:
        # frame 1 holds reserved bytes -> frames [0, 1) and [2, 3)
        m = MemoryMap([(0, 0x1800), (0x1800, 0x1900, "reserved"), (0x1900, 0x3000)])
        assert m.frame_ranges == [(0, 1), (2, 3)]
        assert m.holes == [(1, 2)]
        assert m.ram_bytes == 0x1800 + 0x1700
        assert m.ram_frames == 2

    def test_ranges_and_ram_ranges_sorted(self):
        m = MemoryMap([(0x100000, 0x200000), (0xf0000, 0x100000, "reserved"), (0, 0x9fc00),
                       (0x9fc00, 0xa0000, "reserved")])
        assert [r.start for r in m.ranges] == [0, 0x9fc00, 0xf0000, 0x100000]
        assert m.ram_ranges == [MemRange(0, 0x9fc00), MemRange(0x100000, 0x200000)]

    def test_holes_exact(self):
        # RAM [0x3000, 0x9fc00) -> frames [3, 0x9f); [0x100000, 0x800000) -> [0x100, 0x800);
        # [0x1000000, 0x1000800) -> nothing; [0x2000000, 0x2400000) -> [0x2000, 0x2400)
        m = MemoryMap([(0x3000, 0x9fc00), (0x100000, 0x800000), (0x1000000, 0x1000800),
                       (0x2000000, 0x2400000)])
        assert m.frame_ranges == [(3, 0x9f), (0x100, 0x800), (0x2000, 0x2400)]
        assert m.holes == [(0, 3), (0x9f, 0x100), (0x800, 0x2000)]
        assert m.max_pfn == 0x2400
        # frames: (0x9f-3) + (0x800-0x100) + 0x400 = 156 + 1792 + 1024 = 2972
        assert m.ram_frames == 2972
        # bytes: 0x9cc00 + 0x700000 + 0x800 + 0x400000 = 642048 + 7340032 + 2048 + 4194304
        assert m.ram_bytes == 12178432

    def test_is_ram_edges(self):
        m = MemoryMap([(0, 0x9fc00), (0x100000, 0x40000000)])
        # first/last frame of each range, and the frame just past
        expected = {0: True, 0x9e: True, 0x9f: False, 0xff: False, 0x100: True,
                    0x3ffff: True, 0x40000: False, -1: False, 1 << 40: False}
        for mfn, want in expected.items():
            assert m.is_ram(mfn) is want, hex(mfn)
        arr = np.array(list(expected), dtype=np.int64)
        assert m.is_ram_array(arr).tolist() == list(expected.values())

    def test_is_ram_array_matches_is_ram_everywhere_small(self):
        m = MemoryMap([(0x1800, 0x9fc00), (0x9fc00, 0xa0000, "reserved"), (0x100000, 0x280000),
                       (0x281000, 0x400000)])
        mfns = np.arange(-2, 0x420)
        got = m.is_ram_array(mfns)
        assert got.dtype == np.bool_
        assert got.tolist() == [m.is_ram(int(x)) for x in mfns]

    def test_is_ram_array_shapes_and_dtypes(self):
        m = MemoryMap([(0x100000, 0x200000)])     # frames [0x100, 0x200)
        grid = np.array([[0xff, 0x100], [0x1ff, 0x200]])
        assert m.is_ram_array(grid).tolist() == [[False, True], [True, False]]
        assert m.is_ram_array([0x100, 5]).tolist() == [True, False]
        assert m.is_ram_array(np.array([], dtype=np.int64)).shape == (0,)
        big = np.array([0x150, 2**64 - 1], dtype=np.uint64)
        assert m.is_ram_array(big).tolist() == [True, False]
        with pytest.raises(TypeError):
            m.is_ram_array(np.array([1.0]))


# ==========================================================================
# Superpages
# ==========================================================================

class TestSuperpages:
    def test_firecracker_first_superpage_partial(self):
        # [0, 0x9fc00) + [0x100000, 0x40000000): frames [0, 0x9f) + [0x100, 0x40000)
        # superpage 0 = frames [0, 0x200): holes at [0x9f, 0x100) -> has RAM, not full.
        # superpages with RAM: 0 .. 0x3ffff >> 9 = 511 -> 512; full: 1 .. 511 -> 511
        m = load_machine("firecracker-1g")
        with_ram = m.superpages_with_ram()
        full = m.superpages_full()
        assert with_ram.dtype == np.int64 and full.dtype == np.int64
        assert with_ram.tolist() == list(range(512))
        assert full.tolist() == list(range(1, 512))
        assert m.n_superpages_with_ram == 512
        assert m.n_superpages_full == 511

    def test_superpage_straddling_merged_ranges_is_full(self):
        # [0, 0x100800) + [0x100800, 0x400000): merged [0, 0x400000) = 2 full superpages
        m = MemoryMap([(0x100800, 0x400000), (0, 0x100800)])
        assert m.superpages_full().tolist() == [0, 1]
        assert m.n_superpages_full == 2
        assert m.n_superpages_with_ram == 2

    def test_superpage_shared_by_several_ranges(self):
        # frames [0,1), [2,3), [4,5) (gaps are reserved bytes): all in superpage 0, none full;
        # [0x200000, 0x601000) -> frames [0x200, 0x601) -> superpages 1, 2 full, 3 partial
        m = MemoryMap([(0, 0x1000), (0x1800, 0x1900, "reserved"), (0x2000, 0x3000),
                       (0x4000, 0x5000), (0x200000, 0x601000)])
        assert m.superpages_with_ram().tolist() == [0, 1, 2, 3]
        assert m.n_superpages_with_ram == 4
        assert m.superpages_full().tolist() == [1, 2]
        assert m.n_superpages_full == 2

    def test_single_frame_range(self):
        # frame 0x3ff (last of superpage 1) and frame 0x400 (first of superpage 2)
        m = MemoryMap([(0x3ff000, 0x400000), (0x400800, 0x402000)])
        # second range: frames [0x401, 0x402)
        assert m.frame_ranges == [(0x3ff, 0x400), (0x401, 0x402)]
        assert m.superpages_with_ram().tolist() == [1, 2]
        assert m.n_superpages_with_ram == 2
        assert m.superpages_full().tolist() == [] and m.n_superpages_full == 0


# ==========================================================================
# Summary, dict, equality, repr
# ==========================================================================

class TestReporting:
    def test_summary(self):
        m = MemoryMap([(0, 0x9fc00), (0x9fc00, 0xa0000, "reserved"), (0x100000, 0x40000000)],
                      name="fc", source="hand")
        assert m.summary() == {
            "name": "fc", "source": "hand",
            "ram_bytes": 0x9fc00 + 0x3ff00000,          # 654336 + 1072693248
            "ram_frames": 0x9f + 0x3ff00,               # 159 + 261888 = 262047
            "max_pfn": 0x40000,
            "n_ranges": 3,
            "n_holes": 1,                               # [0x9f, 0x100)
            "superpages_with_ram": 512,
            "superpages_full": 511,
        }

    def test_to_dict_round_trip(self):
        m = MemoryMap([(0x100000, 0x40000000), (0, 0x9fc00), (0x9fc00, 0xa0000, NVS)],
                      name="fc", source=None)
        d = m.to_dict()
        assert d == {"name": "fc", "source": None, "ranges": [
            ["0x0", "0x9fc00", "ram"], ["0x9fc00", "0xa0000", "nvs"],
            ["0x100000", "0x40000000", "ram"]]}
        again = MemoryMap.from_dict(d)
        assert again == m and again.name == "fc"
        assert MemoryMap(d["ranges"]) == m
        assert yaml.safe_load(yaml.safe_dump(d)) == d

    def test_from_dict_ram_key(self):
        m = MemoryMap.from_dict({"name": "x", "ram": [[0, 0x200000]]})
        assert m.ram_frames == 512 and m.source is None

    def test_equality_is_on_ranges(self):
        a = MemoryMap([(0, 0x1000), (0x1000, 0x2000)], name="a")
        b = MemoryMap([(0x1000, 0x2000, "ram"), (0, 0x1000, "usable")], name="b")
        c = MemoryMap([(0, 0x2000)])                       # same frames, different ranges
        assert a == b and hash(a) == hash(b)
        assert a != c
        assert a != "a"

    def test_repr_is_short(self):
        m = load_machine("intel-gnr-4s")
        text = repr(m)
        assert text == "MemoryMap('intel-gnr-4s', 5 ranges, 2.00 TiB RAM, max_pfn=0x133e80000)"


# ==========================================================================
# The real-machine maps (presets in configs/machines/)
# ==========================================================================

class TestRealMachineMaps:
    def test_firecracker_1g(self):
        m = load_machine("firecracker-1g")
        # 0x9fc00 + (0x40000000 - 0x100000) = 654336 + 1072693248
        assert m.ram_bytes == 1073347584
        # 0x9f + (0x40000 - 0x100) = 159 + 261888
        assert m.ram_frames == 262047
        assert m.max_pfn == 0x40000
        assert m.holes == [(0x9f, 0x100)]
        assert (m.n_superpages_with_ram, m.n_superpages_full) == (512, 511)

    def test_intel_clx_2s(self):
        m = load_machine("intel-clx-2s")
        # [0, 0x180000000) + [0x180000000, 0x3040000000) merge: 0x3040000000 = 193 GiB
        assert m.ram_bytes == 0x3040000000 == 193 * GiB
        assert m.ram_frames == 0x3040000 == 50593792
        assert m.max_pfn == 0x3040000
        assert m.frame_ranges == [(0, 0x3040000)] and m.holes == []
        # 0x3040000 >> 9 = 0x18200 = 98816 superpages, all full
        assert (m.n_superpages_with_ram, m.n_superpages_full) == (98816, 98816)

    def test_intel_gnr_4s(self):
        m = load_machine("intel-gnr-4s")
        # 2 GiB + (0x8080000000 - 0x100000000 = 510 GiB) + 3 * 0x8000000000 (512 GiB) = 2 TiB
        assert m.ram_bytes == 2 * GiB + 510 * GiB + 3 * 512 * GiB == 2 * TiB
        assert m.ram_frames == 2 * TiB // PAGE_SIZE == 1 << 29 == 536870912
        assert m.max_pfn == 0x133e80000            # 0x133e80000000 >> 12
        # every boundary is 2 MiB aligned: (1 << 29) / 512 = 1 << 20 superpages, all full
        assert (m.n_superpages_with_ram, m.n_superpages_full) == (1 << 20, 1 << 20)
        assert m.holes == [(0x80000, 0x100000), (0x8080000, 0x63e80000),
                           (0x6be80000, 0xc7e80000), (0xcfe80000, 0x12be80000)]
        sp = m.superpages_with_ram()
        assert len(sp) == 1 << 20
        assert np.array_equal(sp, m.superpages_full())
        # first superpages: 0 .. 0x3ff (2 GiB), then 0x800 (4 GiB >> 21)
        assert sp[0x3ff] == 0x3ff and sp[0x400] == 0x800
        assert sp[-1] == (0x133e80000 >> 9) - 1

    def test_intel_gnr_4s_is_ram_edges(self):
        m = load_machine("intel-gnr-4s")
        edges = []
        for s, e in m.frame_ranges:
            edges += [s - 1, s, e - 1, e]
        arr = np.array(edges, dtype=np.int64)
        want = [False, True, True, False] * 5
        want[0] = False                               # mfn -1
        assert m.is_ram_array(arr).tolist() == want
        assert [m.is_ram(x) for x in edges] == want

    def test_qemu_2node(self):
        m = load_machine("qemu-2node")
        # 2 GiB + 2 GiB = 4 GiB = 0x100000 frames; top at 0x180000000 >> 12 = 0x180000
        assert m.ram_bytes == 4 * GiB
        assert m.ram_frames == 0x100000
        assert m.max_pfn == 0x180000
        assert m.holes == [(0x80000, 0x100000)]
        # 0x100000 / 512 = 2048 superpages, all full
        assert (m.n_superpages_with_ram, m.n_superpages_full) == (2048, 2048)

    def test_qemu_pc_4g(self):
        m = load_machine("qemu-pc-4g")
        # 3 GiB below 4 GiB + 1 GiB above: 4 GiB = 0x100000 frames; top 0x140000000 >> 12
        assert m.ram_bytes == 4 * GiB
        assert m.ram_frames == 0x100000
        assert m.max_pfn == 0x140000
        assert m.holes == [(0xc0000, 0x100000)]
        assert (m.n_superpages_with_ram, m.n_superpages_full) == (2048, 2048)

    def test_all_five_present(self):
        names = sorted(p.stem for p in MEMMAPS.glob("*.yaml"))
        # the five real machines, and the small teaching machine
        assert names == sorted(REAL_MACHINES + ["teaching"])


# ==========================================================================
# Boot log parser
# ==========================================================================

class TestBootLog:
    def test_sample_file(self):
        text = (DATA / "qemu-pc-4g-dmesg.txt").read_text()
        ranges = parse_boot_log(text)
        # inclusive ends + 1; "e820: update" / "reserve setup_data" lines ignored
        assert ranges == [
            MemRange(0x0, 0x9fc00, RAM),
            MemRange(0x9fc00, 0xa0000, RES),
            MemRange(0xf0000, 0x100000, RES),
            MemRange(0x100000, 0xbffda000, RAM),
            MemRange(0xbffda000, 0xbffe0000, ACPI),
            MemRange(0xbffe0000, 0xbfff0000, NVS),
            MemRange(0xbfff0000, 0xc0000000, RES),
            MemRange(0xfeffc000, 0xff000000, RES),
            MemRange(0xfffc0000, 0x100000000, RES),
            MemRange(0x100000000, 0x140000000, RAM),
            MemRange(0x140000000, 0x180000000, RES),     # persistent (type 12)
        ]
        assert parse_memmap_text(text) == ranges
        m = MemoryMap(ranges, name="dmesg")
        # bytes: 0x9fc00 + (0xbffda000 - 0x100000) + 0x40000000
        #      = 654336 + 3220021248 + 1073741824
        assert m.ram_bytes == 4294417408
        # frames: 0x9f + (0xbffda - 0x100) + 0x40000 = 159 + 786138 + 262144
        assert m.ram_frames == 1048441
        assert m.max_pfn == 0x140000
        assert m.holes == [(0x9f, 0x100), (0xbffda, 0x100000)]
        # with RAM: superpages 0..0x5ff (0xbffd9 >> 9 = 0x5ff) and 0x800..0x9ff: 1536 + 512
        assert m.n_superpages_with_ram == 2048
        # full: ceil(0x100 / 512) = 1 .. floor(0xbffda / 512) = 0x5ff (exclusive; superpage
        # 0x5ff = frames [0xbfe00, 0xc0000) is partial) -> 0x5fe = 1534; plus 512 above 4 GiB
        assert m.n_superpages_full == 1534 + 512

    def test_old_format_exclusive_end(self):
        text = """\
BIOS-provided physical RAM map:
 BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)
 BIOS-e820: 000000000009fc00 - 00000000000a0000 (reserved)
 BIOS-e820: 00000000000e8000 - 0000000000100000 (reserved)
 BIOS-e820: 0000000000100000 - 000000003fff0000 (usable)
 BIOS-e820: 000000003fff0000 - 000000003fffec00 (ACPI data)
 BIOS-e820: 000000003fffec00 - 0000000040000000 (ACPI NVS)
 BIOS-e820: 00000000fffbc000 - 0000000100000000 (reserved)
 BIOS-e820: 0000000100000000 - 0000000100400000 (unusable)
"""
        assert parse_boot_log(text) == [
            MemRange(0, 0x9fc00, RAM),
            MemRange(0x9fc00, 0xa0000, RES),
            MemRange(0xe8000, 0x100000, RES),
            MemRange(0x100000, 0x3fff0000, RAM),
            MemRange(0x3fff0000, 0x3fffec00, ACPI),
            MemRange(0x3fffec00, 0x40000000, NVS),
            MemRange(0xfffbc000, 0x100000000, RES),
            MemRange(0x100000000, 0x100400000, UNUS),
        ]

    def test_types(self):
        lines = [
            "BIOS-e820: [mem 0x0000000000000000-0x0000000000000fff] usable",
            "BIOS-e820: [mem 0x0000000000001000-0x0000000000001fff] reserved",
            "BIOS-e820: [mem 0x0000000000002000-0x0000000000002fff] ACPI data",
            "BIOS-e820: [mem 0x0000000000003000-0x0000000000003fff] ACPI NVS",
            "BIOS-e820: [mem 0x0000000000004000-0x0000000000004fff] unusable",
            "BIOS-e820: [mem 0x0000000000005000-0x0000000000005fff] persistent (type 12)",
            "BIOS-e820: [mem 0x0000000000006000-0x0000000000006fff] soft reserved",
            "BIOS-e820: [mem 0x0000000000007000-0x0000000000007fff] type 20",
        ]
        got = [r.type for r in parse_boot_log("\n".join(lines))]
        assert got == [RAM, RES, ACPI, NVS, UNUS, RES, RES, RES]

    def test_duplicates_kept_once_and_other_tables_ignored(self):
        text = """\
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable
[    0.000000] e820: update [mem 0x00000000-0x00000fff] usable ==> reserved
[    0.000000] modified: [mem 0x0000000000000000-0x0000000000000fff] reserved
[    0.000000] modified: [mem 0x0000000000001000-0x000000000009fbff] usable
[    5.100000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    5.100000] BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable
"""
        assert parse_boot_log(text) == [MemRange(0, 0x9fc00), MemRange(0x100000, 0x80000000)]

    def test_journalctl_prefix(self):
        text = "Mar 01 10:00:00 host kernel: BIOS-e820: [mem 0x0000000000000000-0x00000000001fffff] usable"
        assert parse_boot_log(text) == [MemRange(0, 0x200000)]

    def test_malformed_address_names_the_line(self):
        text = ("[    0.000000] BIOS-provided physical RAM map:\n"
                "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\n"
                "[    0.000000] BIOS-e820: [mem 0x00000000001g0000-0x00000000bffd9fff] usable\n")
        with pytest.raises(MemoryMapError) as info:
            parse_memmap_text(text, filename="dmesg.txt")
        assert info.value.line == 3
        assert info.value.field == "start"
        assert "dmesg.txt:3" in info.value.message
        with pytest.raises(MemoryMapError) as info:
            parse_boot_log(" BIOS-e820: 0000000000000000 - 00000000000zfc00 (usable)\n")
        assert (info.value.line, info.value.field) == (1, "end")

    def test_end_below_start(self):
        with pytest.raises(MemoryMapError) as info:
            parse_boot_log("x\nBIOS-e820: [mem 0x0000000000002000-0x0000000000000fff] usable")
        assert (info.value.line, info.value.field) == (2, "end")

    def test_unreadable_bios_e820_line(self):
        with pytest.raises(MemoryMapError) as info:
            parse_boot_log("ok\nok\nBIOS-e820: garbage here\n")
        assert info.value.line == 3

    def test_boot_log_without_ram(self):
        text = "BIOS-e820: [mem 0x0000000000000000-0x0000000000000fff] reserved\n"
        with pytest.raises(MemoryMapError, match="no RAM"):
            parse_memmap_text(text)


# ==========================================================================
# /proc/iomem parser
# ==========================================================================

class TestIomem:
    def test_sample_file(self):
        text = (DATA / "qemu-pc-4g-iomem.txt").read_text()
        ranges = parse_iomem(text)
        # top-level only; PCI buses, ROMs, IOAPIC, HPET, Local APIC ignored;
        # nested "Kernel code" etc. ignored
        assert ranges == [
            MemRange(0x0, 0x1000, RES),
            MemRange(0x1000, 0x9fc00, RAM),
            MemRange(0x9fc00, 0xa0000, RES),
            MemRange(0xf0000, 0x100000, RES),
            MemRange(0x100000, 0xbffda000, RAM),
            MemRange(0xbffda000, 0xbffe0000, ACPI),
            MemRange(0xbffe0000, 0xbfff0000, NVS),
            MemRange(0xbfff0000, 0xc0000000, RES),
            MemRange(0xfeffc000, 0xff000000, RES),
            MemRange(0xfffc0000, 0x100000000, RES),
            MemRange(0x100000000, 0x140000000, RAM),
        ]
        assert parse_memmap_text(text, filename="iomem") == ranges
        m = MemoryMap(ranges)
        # bytes: (0x9fc00 - 0x1000) + (0xbffda000 - 0x100000) + 0x40000000
        #      = 650240 + 3220021248 + 1073741824
        assert m.ram_bytes == 4294413312
        # frames: (0x9f - 1) + 0xbfeda + 0x40000 = 158 + 786138 + 262144
        assert m.ram_frames == 1048440
        assert m.max_pfn == 0x140000
        assert m.holes == [(0, 1), (0x9f, 0x100), (0xbffda, 0x100000)]
        assert len(m.ranges) == 11

    def test_nested_system_ram_ignored(self):
        text = ("00000000-3fffffff : PCI Bus 0000:00\n"
                "  00100000-001fffff : System RAM\n"
                "40000000-4fffffff : System RAM\n"
                "\t50000000-5fffffff : System RAM\n")
        assert parse_iomem(text) == [MemRange(0x40000000, 0x50000000)]

    def test_unusable_memory(self):
        text = "00000000-000fffff : System RAM\n00100000-001fffff : Unusable memory\n"
        assert parse_iomem(text)[1] == MemRange(0x100000, 0x200000, UNUS)

    def test_non_root_zeros_refused(self):
        text = ("00000000-00000000 : Reserved\n"
                "00000000-00000000 : System RAM\n"
                "00000000-00000000 : Reserved\n"
                "  00000000-00000000 : Kernel code\n"
                "00000000-00000000 : PCI Bus 0000:00\n"
                "00000000-00000000 : System RAM\n")
        for parse in (parse_iomem, parse_memmap_text):
            with pytest.raises(MemoryMapError) as info:
                parse(text)
            assert "root" in info.value.message

    def test_malformed_address_names_the_line(self):
        text = ("00000000-00000fff : Reserved\n"
                "00001000-0009fbff : System RAM\n"
                "0010000g-bffd9fff : System RAM\n")
        with pytest.raises(MemoryMapError) as info:
            parse_memmap_text(text)
        assert (info.value.line, info.value.field) == (3, "start")

    def test_iomem_without_ram(self):
        with pytest.raises(MemoryMapError, match="no RAM"):
            parse_memmap_text("00000000-00000fff : Reserved\n")


# ==========================================================================
# Format detection
# ==========================================================================

class TestDetection:
    @pytest.mark.parametrize("text", [
        "", "hello\nworld\n", "name: qemu\nram:\n  - [0x0, 0x9fc00]\n",
        "[    0.000000] Linux version 6.1.0\n[    0.1] Memory: 4G\n",
        "foo-bar : baz\n",
    ])
    def test_neither_format(self, text):
        with pytest.raises(MemoryMapError) as info:
            parse_memmap_text(text, filename="mystery.txt")
        msg = info.value.message
        assert "BIOS-e820" in msg and "System RAM" in msg and "mystery.txt" in msg
        assert info.value.line is None

    def test_boot_log_wins_over_iomem_lines(self):
        text = ("00000000-00000fff : Reserved\n"
                "BIOS-e820: [mem 0x0000000000000000-0x00000000003fffff] usable\n")
        assert parse_memmap_text(text) == [MemRange(0, 0x400000)]


# ==========================================================================
# Property test against a brute-force per-frame model
# ==========================================================================

@st.composite
def small_maps(draw):
    """Random non-overlapping ranges (bytes), some touching, some not frame aligned."""
    n = draw(st.integers(1, 7))
    addr = draw(st.one_of(st.just(0), st.integers(0, 3 * MiB),
                          st.integers(0, 1500).map(lambda f: f * PAGE_SIZE)))
    out = []
    for _ in range(n):
        length = draw(st.one_of(st.integers(1, 3 * MiB),
                                st.integers(1, 1500).map(lambda f: f * PAGE_SIZE)))
        typ = draw(st.sampled_from([RAM, RAM, RAM, RES, ACPI, NVS]))
        out.append((addr, addr + length, typ))
        addr += length + draw(st.one_of(st.just(0), st.integers(1, 2 * MiB),
                                        st.integers(1, 600).map(lambda f: f * PAGE_SIZE)))
    order = draw(st.permutations(range(n)))
    return [out[i] for i in order]


def brute_force_frames(ranges, n_frames):
    """mask[f] is True if frame f's 4096 bytes are all covered by RAM ranges."""
    base = np.arange(n_frames, dtype=np.int64) * PAGE_SIZE
    covered = np.zeros(n_frames, dtype=np.int64)
    for start, end, typ in ranges:
        if typ is RAM:
            covered += np.clip(np.minimum(end, base + PAGE_SIZE) - np.maximum(start, base),
                               0, None)
    return covered == PAGE_SIZE


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_maps())
def test_property_matches_brute_force(ranges):
    top = max(e for _, e, _ in ranges)
    n_frames = -(-top // PAGE_SIZE) + SUPERPAGE_PAGES          # a margin past the top
    n_frames += (-n_frames) % SUPERPAGE_PAGES                  # whole superpages
    mask = brute_force_frames(ranges, n_frames)
    if not mask.any():
        with pytest.raises(MemoryMapError):
            MemoryMap(ranges)
        return
    m = MemoryMap(ranges)

    mfns = np.arange(-3, n_frames)
    got = m.is_ram_array(mfns)
    assert np.array_equal(got[3:], mask)
    assert not got[:3].any()
    sample = list(range(0, n_frames, 37)) + [s for s, _ in m.frame_ranges] + \
        [e for _, e in m.frame_ranges]
    assert [m.is_ram(f) for f in sample] == [bool(mask[f]) for f in sample]

    assert m.ram_frames == int(mask.sum())
    assert m.max_pfn == int(np.flatnonzero(mask)[-1]) + 1
    assert m.ram_bytes == sum(e - s for s, e, t in ranges if t is RAM)

    # holes: runs of False below max_pfn
    below = mask[:m.max_pfn]
    assert sum(e - s for s, e in m.holes) == int((~below).sum())
    for s, e in m.holes:
        assert not below[s:e].any()

    blocks = mask.reshape(-1, SUPERPAGE_PAGES)
    with_ram = np.flatnonzero(blocks.any(axis=1))
    full = np.flatnonzero(blocks.all(axis=1))
    assert np.array_equal(m.superpages_with_ram(), with_ram)
    assert np.array_equal(m.superpages_full(), full)
    assert m.n_superpages_with_ram == len(with_ram)
    assert m.n_superpages_full == len(full)
