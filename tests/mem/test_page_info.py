"""xensim.mem._page_info: the bit layout of page_info / spage_info and its decoders.

Every constant is checked against the tables of docs/xen-facts.md
(section 2 for count_info / type_info,
section 5d for spage_info), written here as literal bit positions so that a
wrong shift in the module cannot hide behind the module's own names.
"""

from __future__ import annotations

import numpy as np
import pytest

from xensim.mem import _page_info as pi
from xensim.mem._page_info import (
    DOMID_INVALID, DOMID_SELF,
    PGC_allocated, PGC_broken, PGC_cacheattr_mask, PGC_cacheattr_shift, PGC_count_mask,
    PGC_page_table, PGC_state, PGC_state_free, PGC_state_inuse, PGC_state_offlined,
    PGC_state_offlining, PGC_xen_heap,
    PGT_count_mask, PGT_l1_page_table, PGT_l2_page_table, PGT_l3_page_table,
    PGT_l4_page_table, PGT_locked, PGT_none, PGT_pae_xen_l2, PGT_partial, PGT_pinned,
    PGT_seg_desc_page, PGT_shared_page, PGT_type_mask, PGT_validated, PGT_writable_page,
    SGT_count_mask, SGT_dynamic, SGT_mark, SGT_none, SGT_type_mask,
    decode_count_info, decode_spage, decode_type_info, format_count_info, format_type_info,
    pgc_allocated, pgc_count, pgc_state, pgt_count, pgt_pinned, pgt_type, pgt_validated,
    sgt_count, sgt_type, type_name,
)

U64 = (1 << 64) - 1


# ---------------------------------------------------------------------------
# count_info (docs/xen-facts.md section 2)
# ---------------------------------------------------------------------------

def test_pgc_single_bit_flags():
    assert PGC_allocated == 1 << 63 == 0x8000_0000_0000_0000
    assert PGC_xen_heap == 1 << 62 == 0x4000_0000_0000_0000
    assert PGC_page_table == 1 << 61 == 0x2000_0000_0000_0000
    assert PGC_broken == 1 << 57 == 0x0200_0000_0000_0000


def test_pgc_cacheattr_is_bits_58_to_60():
    assert PGC_cacheattr_shift == 58
    # bits 58, 59, 60: 0b111 << 58
    assert PGC_cacheattr_mask == (1 << 58) | (1 << 59) | (1 << 60) == 0x1C00_0000_0000_0000


def test_pgc_state_is_bits_55_56():
    assert PGC_state == (1 << 55) | (1 << 56) == 0x0180_0000_0000_0000
    assert PGC_state_inuse == 0
    assert PGC_state_offlining == 1 << 55
    assert PGC_state_offlined == 2 << 55 == 1 << 56
    assert PGC_state_free == 3 << 55 == 0x0180_0000_0000_0000


def test_pgc_count_mask_is_bits_0_to_54():
    assert PGC_count_mask == (1 << 55) - 1 == 0x007F_FFFF_FFFF_FFFF


def test_count_info_fields_tile_the_word_exactly():
    # 63 | 62 | 61 | 58-60 | 57 | 55-56 | 0-54: disjoint and covering all 64 bits.
    fields = [PGC_allocated, PGC_xen_heap, PGC_page_table, PGC_cacheattr_mask, PGC_broken,
              PGC_state, PGC_count_mask]
    total = 0
    for f in fields:
        assert total & f == 0, hex(f)
        total |= f
    assert total == U64


# ---------------------------------------------------------------------------
# type_info (docs/xen-facts.md section 2)
# ---------------------------------------------------------------------------

def test_pgt_type_mask_is_bits_60_to_63():
    assert PGT_type_mask == 0xF << 60 == 0xF000_0000_0000_0000


@pytest.mark.parametrize("const, number", [
    (PGT_none, 0), (PGT_l1_page_table, 1), (PGT_l2_page_table, 2), (PGT_l3_page_table, 3),
    (PGT_l4_page_table, 4), (PGT_seg_desc_page, 5), (PGT_writable_page, 7),
    (PGT_shared_page, 8),
])
def test_pgt_type_numbers(const, number):
    assert const == number << 60


def test_pgt_writable_page_literal():
    assert PGT_writable_page == 0x7000_0000_0000_0000


def test_pgt_flags():
    assert PGT_pinned == 1 << 59
    assert PGT_validated == 1 << 58
    assert PGT_pae_xen_l2 == 1 << 57
    assert PGT_partial == 1 << 56
    assert PGT_locked == 1 << 55


def test_pgt_count_mask_is_bits_0_to_54():
    assert PGT_count_mask == (1 << 55) - 1


def test_type_info_fields_tile_the_word_exactly():
    fields = [PGT_type_mask, PGT_pinned, PGT_validated, PGT_pae_xen_l2, PGT_partial,
              PGT_locked, PGT_count_mask]
    total = 0
    for f in fields:
        assert total & f == 0, hex(f)
        total |= f
    assert total == U64


# ---------------------------------------------------------------------------
# spage_info (docs/xen-facts.md section 5d)
# ---------------------------------------------------------------------------

def test_sgt_layout():
    assert SGT_type_mask == 3 << 62 == 0xC000_0000_0000_0000
    assert SGT_none == 0
    assert SGT_mark == 1 << 62
    assert SGT_dynamic == 2 << 62 == 0x8000_0000_0000_0000
    assert SGT_count_mask == (1 << 61) - 1 == 0x1FFF_FFFF_FFFF_FFFF


def test_sgt_bit_61_belongs_to_no_field():
    # 62-63 type, 0-60 count: bit 61 is unused in Xen 4.1's spage_info.
    assert (SGT_type_mask | SGT_count_mask) == U64 & ~(1 << 61)


def test_domids():
    # xen.h: DOMID_SELF 0x7FF0, DOMID_INVALID 0x7FF4
    assert DOMID_SELF == 0x7FF0
    assert DOMID_INVALID == 0x7FF4


# ---------------------------------------------------------------------------
# field decoders on ints
# ---------------------------------------------------------------------------

def test_pgc_decoders_on_ints():
    ci = PGC_allocated | PGC_state_inuse | 3
    assert pgc_count(ci) == 3
    assert pgc_state(ci) == 0
    assert pgc_allocated(ci) is True
    assert pgc_state(PGC_state_free) == 3
    assert pgc_allocated(PGC_state_free) is False
    # the count saturates at 2^55 - 1 without touching the state bits
    full = PGC_state_offlined | PGC_count_mask
    assert pgc_count(full) == (1 << 55) - 1
    assert pgc_state(full) == 2


def test_pgt_decoders_on_ints():
    ti = PGT_l2_page_table | PGT_pinned | PGT_validated | 5
    assert pgt_type(ti) == 2
    assert pgt_count(ti) == 5
    assert pgt_pinned(ti) is True
    assert pgt_validated(ti) is True
    ti = PGT_shared_page | 1
    assert pgt_type(ti) == 8
    assert pgt_pinned(ti) is False
    assert pgt_validated(ti) is False


def test_sgt_decoders_on_ints():
    assert sgt_type(SGT_dynamic | 7) == 2
    assert sgt_count(SGT_dynamic | 7) == 7
    assert sgt_type(SGT_mark | 1) == 1
    assert sgt_count(SGT_mark | SGT_count_mask) == (1 << 61) - 1


def test_decoders_accept_numpy_scalars_as_ints():
    v = np.uint64(PGC_allocated | 2)
    assert pgc_count(v) == 2
    assert pgc_allocated(v) is True


# ---------------------------------------------------------------------------
# field decoders on numpy arrays: same answers, elementwise
# ---------------------------------------------------------------------------

CI_WORDS = [0, PGC_state_free, PGC_allocated | 1, PGC_allocated | PGC_state_offlining | 42,
            PGC_xen_heap | PGC_state_offlined | PGC_count_mask]
TI_WORDS = [0, PGT_writable_page | 1, PGT_l1_page_table | PGT_validated | 3,
            PGT_l4_page_table | PGT_pinned | PGT_validated | 1, PGT_shared_page | PGT_count_mask]
SGT_WORDS = [0, SGT_mark | 1, SGT_dynamic | 513, SGT_dynamic | SGT_count_mask]


@pytest.mark.parametrize("fn, words", [
    (pgc_count, CI_WORDS), (pgc_state, CI_WORDS), (pgc_allocated, CI_WORDS),
    (pgt_type, TI_WORDS), (pgt_count, TI_WORDS), (pgt_pinned, TI_WORDS),
    (pgt_validated, TI_WORDS), (sgt_type, SGT_WORDS), (sgt_count, SGT_WORDS),
])
def test_array_decoders_agree_with_int_decoders(fn, words):
    arr = np.array(words, dtype=np.uint64)
    out = fn(arr)
    assert isinstance(out, np.ndarray)
    assert out.shape == (len(words),)
    assert [x.item() for x in out] == [fn(w) for w in words]


def test_array_decoders_exact_values():
    arr = np.array(CI_WORDS, dtype=np.uint64)
    # counts: 0, 0, 1, 42, 2^55-1 ; states: inuse, free, inuse, offlining, offlined
    assert pgc_count(arr).tolist() == [0, 0, 1, 42, (1 << 55) - 1]
    assert pgc_state(arr).tolist() == [0, 3, 0, 1, 2]
    assert pgc_allocated(arr).tolist() == [False, False, True, True, False]
    tarr = np.array(TI_WORDS, dtype=np.uint64)
    assert pgt_type(tarr).tolist() == [0, 7, 1, 4, 8]
    assert pgt_count(tarr).tolist() == [0, 1, 3, 1, (1 << 55) - 1]
    assert pgt_pinned(tarr).tolist() == [False, False, False, True, False]
    assert pgt_validated(tarr).tolist() == [False, False, True, True, False]


# ---------------------------------------------------------------------------
# full decoders
# ---------------------------------------------------------------------------

def test_decode_count_info_every_field():
    ci = PGC_allocated | PGC_page_table | (5 << 58) | PGC_broken | PGC_state_offlining | 9
    assert decode_count_info(ci) == {
        "allocated": True, "xen_heap": False, "page_table": True, "cacheattr": 5,
        "broken": True, "state": "offlining", "count": 9,
    }


def test_decode_count_info_free_frame():
    assert decode_count_info(PGC_state_free) == {
        "allocated": False, "xen_heap": False, "page_table": False, "cacheattr": 0,
        "broken": False, "state": "free", "count": 0,
    }


def test_decode_type_info_every_field():
    ti = PGT_l3_page_table | PGT_pinned | PGT_pae_xen_l2 | PGT_locked | 4
    assert decode_type_info(ti) == {
        "type": "l3", "pinned": True, "validated": False, "pae_xen_l2": True,
        "partial": False, "locked": True, "count": 4,
    }


def test_decode_type_info_unknown_type_number():
    # type 6 has no PGT_ name: shown as its number
    assert decode_type_info(6 << 60)["type"] == "type6"


def test_decode_spage():
    assert decode_spage(0) == {"state": "none", "count": 0}
    assert decode_spage(SGT_mark | 1) == {"state": "mark", "count": 1}
    assert decode_spage(SGT_dynamic | 512) == {"state": "dynamic", "count": 512}
    # 3 << 62 is no SGT_ state
    assert decode_spage(3 << 62) == {"state": "invalid", "count": 0}


def test_decoders_accept_numpy_elements():
    arr = np.array([PGC_allocated | PGC_state_inuse | 2], dtype=np.uint64)
    assert decode_count_info(arr[0])["count"] == 2
    assert format_count_info(arr[0]) == "allocated inuse count=2"


def test_type_name():
    assert type_name(PGT_writable_page) == "writable"
    assert type_name(PGT_l1_page_table) == "l1"
    assert type_name(PGT_none) == "none"
    assert type_name(PGT_seg_desc_page) == "seg_desc"
    assert type_name(6 << 60) == "type6"


# ---------------------------------------------------------------------------
# format_count_info / format_type_info: exact strings
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("ci, text", [
    (PGC_state_free, "free count=0"),
    (0, "inuse count=0"),
    (PGC_allocated | 1, "allocated inuse count=1"),
    (PGC_allocated | PGC_state_inuse | 2, "allocated inuse count=2"),
    (PGC_xen_heap | PGC_state_inuse | 1, "xen_heap inuse count=1"),
    (PGC_allocated | PGC_xen_heap | PGC_page_table | PGC_broken | PGC_state_offlined | 7,
     "allocated xen_heap page_table broken offlined count=7"),
    (PGC_state_offlining | (1 << 55) - 1, f"offlining count={(1 << 55) - 1}"),
    # cacheattr is decoded but not printed
    ((3 << 58) | 1, "inuse count=1"),
])
def test_format_count_info(ci, text):
    assert format_count_info(ci) == text


@pytest.mark.parametrize("ti, text", [
    (0, "none/0"),
    (PGT_writable_page | 1, "writable/1"),
    (PGT_writable_page | PGT_validated | 1, "writable/1 validated"),
    (PGT_l1_page_table | PGT_pinned | PGT_validated | 2, "l1/2 pinned validated"),
    (PGT_l2_page_table | PGT_pinned | PGT_validated | PGT_partial | PGT_locked | 3,
     "l2/3 pinned validated partial locked"),
    (PGT_l4_page_table | PGT_partial, "l4/0 partial"),
    (PGT_shared_page | 12, "shared/12"),
    (PGT_seg_desc_page | 1, "seg_desc/1"),
    # pae_xen_l2 is decoded but not printed
    (PGT_l2_page_table | PGT_pae_xen_l2 | 1, "l2/1"),
])
def test_format_type_info(ti, text):
    assert format_type_info(ti) == text


def test_module_state_names_match_reference():
    assert pi.PGC_STATE_NAMES == {0: "inuse", 1: "offlining", 2: "offlined", 3: "free"}
    assert pi.SGT_TYPE_NAMES == {0: "none", 1: "mark", 2: "dynamic"}
    assert pi.PGT_TYPE_NAMES == {0: "none", 1: "l1", 2: "l2", 3: "l3", 4: "l4",
                                 5: "seg_desc", 7: "writable", 8: "shared"}
