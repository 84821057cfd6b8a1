"""xensim.overhead(): the memory cost of each superpage refcount design, per preset.

Every expected number is worked out by hand from the preset's memory map
(configs/machines/*.yaml) and written as a literal, with the arithmetic in a
comment. Sizes: a frame is 4 KiB, a superpage 512 frames (2 MiB), a PDX group
65,536 frames (256 MiB), a sparse chunk 512 entries (4096 B at 8 B/entry).

Rows, with G = PDX groups with RAM, F = 65,536 * G frames:
    xen-frame-table 32 F, xensim-frame-table 18 F, per-mapping 0, pageinfo-count 8 F,
    xen-4.1-dense 8 * max_pfn / 512, xen-4.1-dense-pdx 8 * max_pdx / 512,
    sparse-8B 4096 * chunks (entry_bytes 8 * superpages), sparse-16B twice that.
percent_of_ram = 100 * bytes / ram_bytes.
"""

from __future__ import annotations

import json

import pytest

import xensim
from xensim import Machine, load_preset, overhead
from xensim.sim._overhead import overhead as private_overhead

# the frame tables, the designs' own rows in registration order (none: Xen 4.10+, 0 B), then
# the sparse tables several designs share, smallest first
DESIGN_NAMES = ["xen-frame-table", "xensim-frame-table", "per-mapping", "pageinfo-count",
                "xen-4.1-dense", "xen-4.1-dense-pdx", "none", "sparse-8B", "sparse-16B"]

MASK_NOTHING = ("mask: no bit of the PFN is zero in every RAM range above bit 17; "
                "nothing to compress")

# Per preset: top-level keys, then the bytes of the 9 rows in DESIGN_NAMES order,
# then (entry_bytes of sparse-8B, of sparse-16B).
EXPECTED = {
    # teaching: RAM [0, 0x9fc00) + [1 MiB, 2 GiB) + [4 GiB, 5 GiB)
    #   ram_bytes 654,336 + 2,146,435,072 + 1,073,741,824 = 3,220,831,232
    #   frames 0x9f + 0x7ff00 + 0x40000 = 159 + 524,032 + 262,144 = 786,335
    #   max_pfn 0x140000; mask squeezes bit 19: max_pdx 0xc0000 = 786,432; G = 12, F = 786,432
    #   superpages with RAM 0..1023 + 2048..2559 = 1536; full: 1..1023 + 512 = 1535
    #   dense 8 * 0x140000 / 512 = 8 * 2560 = 20,480; dense-pdx 8 * 1536 = 12,288
    #   sparse spdx 0..1535 -> 3 chunks = 12,288 (entries 8 * 1536 = 12,288)
    "teaching": dict(
        top=dict(ram_bytes=3220831232, ram_frames=786335, max_pfn=1310720, max_pdx=786432,
                 pdx_groups_with_ram=12, superpages_with_ram=1536, superpages_full=1535),
        pdx=("mask", "mask", None),
        bytes=[25165824, 14155776, 0, 6291456, 20480, 12288, 0, 12288, 24576],
        entries=(12288, 24576)),
    # firecracker-1g: RAM [0, 0x9fc00) + [1 MiB, 1 GiB)
    #   ram_bytes 654,336 + 1,072,693,248 = 1,073,347,584; frames 159 + 261,888 = 262,047
    #   mask: OR = 0x3ffff, no bit above 17 -> none; max_pdx = max_pfn = 0x40000; G = 4
    #   F = 262,144: 32 F = 8,388,608, 18 F = 4,718,592, 8 F = 2,097,152
    #   superpages 0..511 = 512 (superpage 0 partly RAM: 511 full); dense 8 * 512 = 4096
    #   sparse: 1 chunk = 4096 (entries 8 * 512 = 4096)
    "firecracker-1g": dict(
        top=dict(ram_bytes=1073347584, ram_frames=262047, max_pfn=262144, max_pdx=262144,
                 pdx_groups_with_ram=4, superpages_with_ram=512, superpages_full=511),
        pdx=("none", "mask", MASK_NOTHING),
        bytes=[8388608, 4718592, 0, 2097152, 4096, 4096, 0, 4096, 8192],
        entries=(4096, 8192)),
    # qemu-pc-4g: RAM [0, 3 GiB) + [4 GiB, 5 GiB) = 4 GiB = 4,294,967,296; 1,048,576 frames
    #   mask: OR = 0x1fffff -> none; max_pdx = max_pfn = 0x140000 = 1,310,720
    #   G = 12 + 4 = 16, F = 1,048,576: 33,554,432 / 18,874,368 / 8,388,608
    #   superpages 1536 + 512 = 2048, all full; dense 8 * 2560 = 20,480 (twice)
    #   sparse chunks 0, 1, 2, 4 = 16,384 (entries 8 * 2048 = 16,384)
    "qemu-pc-4g": dict(
        top=dict(ram_bytes=4294967296, ram_frames=1048576, max_pfn=1310720, max_pdx=1310720,
                 pdx_groups_with_ram=16, superpages_with_ram=2048, superpages_full=2048),
        pdx=("none", "mask", MASK_NOTHING),
        bytes=[33554432, 18874368, 0, 8388608, 20480, 20480, 0, 16384, 32768],
        entries=(16384, 32768)),
    # qemu-2node: RAM [0, 2 GiB) + [4 GiB, 6 GiB) = 4 GiB; 1,048,576 frames
    #   max_pfn 0x180000 = 1,572,864; mask squeezes bit 19: max_pdx 0x100000 = 1,048,576
    #   G = 16; dense 8 * 0x180000 / 512 = 8 * 3072 = 24,576; dense-pdx 8 * 2048 = 16,384
    #   sparse spdx 0..2047 -> 4 chunks = 16,384
    "qemu-2node": dict(
        top=dict(ram_bytes=4294967296, ram_frames=1048576, max_pfn=1572864, max_pdx=1048576,
                 pdx_groups_with_ram=16, superpages_with_ram=2048, superpages_full=2048),
        pdx=("mask", "mask", None),
        bytes=[33554432, 18874368, 0, 8388608, 24576, 16384, 0, 16384, 32768],
        entries=(16384, 32768)),
    # intel-clx-2s: RAM [0, 0x3040000000) (two touching ranges) = 193 GiB = 207,232,172,032
    #   frames 0x3040000 = 50,593,792 = max_pfn = max_pdx (mask -> none)
    #   G = 0x304 = 772, F = 50,593,792: 32 F = 1,619,001,344, 18 F = 910,688,256,
    #   8 F = 404,750,336; superpages 193 * 512 = 98,816 (all full)
    #   dense 8 * 98,816 = 790,528 (twice); sparse 193 chunks * 4096 = 790,528
    "intel-clx-2s": dict(
        top=dict(ram_bytes=207232172032, ram_frames=50593792, max_pfn=50593792,
                 max_pdx=50593792, pdx_groups_with_ram=772, superpages_with_ram=98816,
                 superpages_full=98816),
        pdx=("none", "mask", MASK_NOTHING),
        bytes=[1619001344, 910688256, 0, 404750336, 790528, 790528, 0, 790528, 1581056],
        entries=(790528, 1581056)),
    # intel-gnr-4s: 2 + 510 + 3 * 512 GiB = 2 TiB = 2^41 = 2,199,023,255,552; 2^29 frames
    #   max_pfn 0x133e80000 = 5,165,809,664 = max_pdx (mask -> none)
    #   G = 2^41 / 2^28 = 8192, F = 2^29: 32 F = 2^34 = 17,179,869,184,
    #   18 F = 9,663,676,416, 8 F = 2^32 = 4,294,967,296
    #   superpages 2^20 = 1,048,576 (all full)
    #   dense 8 * 0x133e80000 / 512 = 8 * 0x99f400 = 8 * 10,089,472 = 80,715,776 (twice)
    #   sparse 2 + 510 + 3 * 512 = 2048 chunks * 4096 = 8,388,608 (entries 8 * 2^20)
    "intel-gnr-4s": dict(
        top=dict(ram_bytes=2199023255552, ram_frames=536870912, max_pfn=5165809664,
                 max_pdx=5165809664, pdx_groups_with_ram=8192, superpages_with_ram=1048576,
                 superpages_full=1048576),
        pdx=("none", "mask", MASK_NOTHING),
        bytes=[17179869184, 9663676416, 0, 4294967296, 80715776, 80715776, 0, 8388608, 16777216],
        entries=(8388608, 16777216)),
}

# The percentages, from the literal bytes above over the literal ram_bytes.
# (Written out once so a wrong denominator in the code cannot match by accident.)
EXPECTED_PERCENT = {
    "teaching": [100 * b / 3220831232 for b in EXPECTED["teaching"]["bytes"]],
    "firecracker-1g": [100 * b / 1073347584 for b in EXPECTED["firecracker-1g"]["bytes"]],
    "qemu-pc-4g": [100 * b / 4294967296 for b in EXPECTED["qemu-pc-4g"]["bytes"]],
    "qemu-2node": [100 * b / 4294967296 for b in EXPECTED["qemu-2node"]["bytes"]],
    "intel-clx-2s": [100 * b / 207232172032 for b in EXPECTED["intel-clx-2s"]["bytes"]],
    "intel-gnr-4s": [100 * b / 2199023255552 for b in EXPECTED["intel-gnr-4s"]["bytes"]],
}


@pytest.fixture(scope="module")
def reports():
    """One report per preset, PDX mode "mask" (booting intel-gnr-4s costs ~1 s)."""
    return {name: overhead(Machine(load_preset(name), "mask")) for name in EXPECTED}


@pytest.fixture(scope="module")
def gnr_offset():
    return overhead(Machine(load_preset("intel-gnr-4s"), "offset"))


# ---------------------------------------------------------------------------
# every preset, every row
# ---------------------------------------------------------------------------

def test_all_six_presets_covered():
    assert sorted(EXPECTED) == sorted(xensim.list_presets())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_top_level(reports, name):
    r = reports[name]
    exp = EXPECTED[name]["top"]
    assert r.machine == name
    for key, value in exp.items():
        assert getattr(r, key) == value, key


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pdx_mode(reports, name):
    mode, requested, reason = EXPECTED[name]["pdx"]
    p = reports[name].pdx
    assert (p["mode"], p["requested"], p["fallback_reason"]) == (mode, requested, reason)
    assert p["max_pdx"] == EXPECTED[name]["top"]["max_pdx"]
    assert p["max_pfn"] == EXPECTED[name]["top"]["max_pfn"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_design_bytes(reports, name):
    r = reports[name]
    assert [d.name for d in r.designs] == DESIGN_NAMES
    assert [d.bytes for d in r.designs] == EXPECTED[name]["bytes"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_design_percent_of_ram(reports, name):
    r = reports[name]
    assert [d.percent_of_ram for d in r.designs] == EXPECTED_PERCENT[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_bytes(reports, name):
    r = reports[name]
    e8, e16 = EXPECTED[name]["entries"]
    assert r.design("sparse-8B").entry_bytes == e8
    assert r.design("sparse-16B").entry_bytes == e16
    # only the sparse rows carry entry_bytes
    assert [d.entry_bytes for d in r.designs[:6]] == [None] * 6


def test_units(reports):
    assert [d.unit for d in reports["qemu-2node"].designs] == [
        "32 B/frame", "18 B/frame", "none", "8 B/frame", "8 B/2 MiB to max_pfn",
        "8 B/2 MiB to max_pdx (mask)", "none", "8 B/2 MiB with RAM", "16 B/2 MiB with RAM"]
    # a fallen-back mask is named by the mode in use
    assert reports["qemu-pc-4g"].design("xen-4.1-dense-pdx").unit == "8 B/2 MiB to max_pdx (none)"


def test_exact_percentages_of_round_machines(reports):
    # on maps whose PDX groups are all RAM the per-frame designs are exact fractions:
    # 32/4096 = 0.78125 %, 18/4096 = 0.439453125 %, 8/4096 = 0.1953125 %
    for name in ("qemu-pc-4g", "qemu-2node", "intel-clx-2s", "intel-gnr-4s"):
        r = reports[name]
        assert r.design("xen-frame-table").percent_of_ram == 0.78125
        assert r.design("xensim-frame-table").percent_of_ram == 0.439453125
        assert r.design("pageinfo-count").percent_of_ram == 0.1953125
        assert r.design("per-mapping").percent_of_ram == 0.0


# ---------------------------------------------------------------------------
# the headline: intel-gnr-4s
# ---------------------------------------------------------------------------

def test_gnr_headline(reports):
    r = reports["intel-gnr-4s"]
    pic, sparse = r.design("pageinfo-count"), r.design("sparse-8B")
    assert pic.bytes == 4 * 2 ** 30                   # 8 B * 2^29 frames = 4 GiB
    assert pic.percent_of_ram == 0.1953125            # 8 / 4096, "about 0.2 %"
    assert sparse.bytes == 8 * 2 ** 20                # 8 B * 2^20 superpages = 8 MiB
    assert sparse.percent_of_ram == 100 * 8 / 2 ** 21 == 0.0003814697265625
    assert round(sparse.percent_of_ram, 5) == 0.00038
    assert pic.bytes // sparse.bytes == 512 and pic.bytes % sparse.bytes == 0


def test_gnr_offset_changes_only_max_pdx_and_dense_pdx(reports, gnr_offset):
    r = gnr_offset
    # offset regions: [0, 0x8080000) at pdx 0, then three 512 GiB sockets at
    # pdx 0x10000000, 0x20000000, 0x30000000 (region size 2^28): max_pdx 0x38000000
    assert r.max_pdx == 0x38000000 == 939524096
    assert r.pdx["mode"] == "offset" and r.pdx["requested"] == "offset"
    assert r.pdx["fallback_reason"] is None
    # dense-pdx: 8 * 0x38000000 / 512 = 8 * 0x1c0000 = 8 * 1,835,008 = 14,680,064
    assert r.design("xen-4.1-dense-pdx").bytes == 14680064
    assert r.design("xen-4.1-dense-pdx").percent_of_ram == 100 * 14680064 / 2199023255552
    assert r.design("xen-4.1-dense-pdx").unit == "8 B/2 MiB to max_pdx (offset)"
    # everything else as with mask (fallen back to none)
    mask = reports["intel-gnr-4s"]
    for name in DESIGN_NAMES:
        if name != "xen-4.1-dense-pdx":
            assert r.design(name).bytes == mask.design(name).bytes, name
    assert [d.bytes for d in r.designs] == [17179869184, 9663676416, 0, 4294967296,
                                            80715776, 14680064, 0, 8388608, 16777216]
    assert r.pdx_groups_with_ram == 8192
    assert r.max_pfn == 5165809664


# ---------------------------------------------------------------------------
# the report object
# ---------------------------------------------------------------------------

def test_public_name_is_the_private_function():
    assert xensim.overhead is private_overhead


def test_to_dict_has_the_documented_keys(reports):
    d = reports["teaching"].to_dict()
    assert list(d) == ["machine", "ram_bytes", "ram_frames", "max_pfn", "max_pdx", "pdx",
                       "pdx_groups_with_ram", "superpages_with_ram", "superpages_full",
                       "designs"]
    for row in d["designs"]:
        assert set(row) == {"name", "bytes", "percent_of_ram", "unit", "description",
                            "entry_bytes"}
    # plain JSON, round trip
    assert json.loads(json.dumps(d)) == d


def test_design_lookup(reports):
    r = reports["teaching"]
    assert r.design("sparse-16B").bytes == 24576
    with pytest.raises(KeyError):
        r.design("no-such-design")


def test_ratio_note(reports):
    designs = reports["teaching"].tables()[0]
    # pageinfo-count / sparse-8B = 6,291,456 / 12,288 = 512
    assert designs.notes == ["pageinfo-count / sparse-8B = 512x"]


def test_overhead_allocates_nothing():
    m = Machine(load_preset("teaching"), "mask")
    before = (m.frame_table.allocated_bytes(), m.spage_table.allocated_bytes)
    overhead(m)
    assert (m.frame_table.allocated_bytes(), m.spage_table.allocated_bytes) == before == (12, 12288)
    assert m.frame_table.materialized_groups == []


def test_spage_words_do_not_change_the_report():
    # the report weighs both entry sizes whatever table the machine itself keeps
    one = overhead(Machine(load_preset("qemu-2node"), "mask", spage_words=1)).to_dict()
    two = overhead(Machine(load_preset("qemu-2node"), "mask", spage_words=2)).to_dict()
    assert one == two


def test_pdx_none_on_teaching():
    r = overhead(Machine(load_preset("teaching"), "none"))
    # no compression: max_pdx = max_pfn = 0x140000; dense-pdx = dense = 20,480; the
    # frame-table rows are unchanged (still 12 groups), sparse chunks 0, 1, 4 = 12,288
    assert r.max_pdx == 1310720
    assert [d.bytes for d in r.designs] == [25165824, 14155776, 0, 6291456, 20480, 20480, 0,
                                            12288, 24576]
