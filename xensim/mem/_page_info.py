"""The bit layout of ``struct page_info`` and ``struct spage_info`` (x86_64), and decoders.

Two 64-bit words per frame carry the reference counts (docs/xen-facts.md, section 2):

``count_info`` (general references)::

    63 PGC_allocated   62 PGC_xen_heap   61 PGC_page_table   58-60 PGC_cacheattr
    57 PGC_broken      55-56 PGC_state (inuse 0, offlining 1, offlined 2, free 3)
    0-54 PGC_count_mask: the reference count

``type_info`` (typed references)::

    60-63 PGT_type_mask (none 0, l1 1, l2 2, l3 3, l4 4, seg_desc 5, writable 7, shared 8)
    59 PGT_pinned  58 PGT_validated  57 PGT_pae_xen_l2  56 PGT_partial  55 PGT_locked
    0-54 PGT_count_mask: the type count

``spage_info.type_info`` (Xen 4.1, one word per 2 MiB, section 5d)::

    62-63 SGT_type_mask (SGT_none 0, SGT_mark 1, SGT_dynamic 2)    0-60 SGT_count_mask

Every decoder accepts a Python int or a numpy uint64 array and answers in kind.
"""

from __future__ import annotations

import numpy as np

# -- count_info ---------------------------------------------------------------
PGC_allocated = 1 << 63
PGC_xen_heap = 1 << 62
PGC_page_table = 1 << 61
PGC_cacheattr_shift = 58
PGC_cacheattr_mask = 7 << PGC_cacheattr_shift
PGC_broken = 1 << 57
PGC_state_shift = 55
PGC_state = 3 << PGC_state_shift
PGC_state_inuse = 0 << PGC_state_shift
PGC_state_offlining = 1 << PGC_state_shift
PGC_state_offlined = 2 << PGC_state_shift
PGC_state_free = 3 << PGC_state_shift
PGC_count_width = 55
PGC_count_mask = (1 << PGC_count_width) - 1

PGC_STATE_NAMES = {0: "inuse", 1: "offlining", 2: "offlined", 3: "free"}

# -- type_info ----------------------------------------------------------------
PGT_type_shift = 60
PGT_type_mask = 15 << PGT_type_shift
PGT_none = 0 << PGT_type_shift
PGT_l1_page_table = 1 << PGT_type_shift
PGT_l2_page_table = 2 << PGT_type_shift
PGT_l3_page_table = 3 << PGT_type_shift
PGT_l4_page_table = 4 << PGT_type_shift
PGT_seg_desc_page = 5 << PGT_type_shift
PGT_writable_page = 7 << PGT_type_shift
PGT_shared_page = 8 << PGT_type_shift
PGT_pinned = 1 << 59
PGT_validated = 1 << 58
PGT_pae_xen_l2 = 1 << 57
PGT_partial = 1 << 56
PGT_locked = 1 << 55
PGT_count_width = 55
PGT_count_mask = (1 << PGT_count_width) - 1

PGT_TYPE_NAMES = {0: "none", 1: "l1", 2: "l2", 3: "l3", 4: "l4", 5: "seg_desc",
                  7: "writable", 8: "shared"}
PGT_PAGE_TABLE_TYPES = (PGT_l1_page_table, PGT_l2_page_table,
                        PGT_l3_page_table, PGT_l4_page_table)

# -- spage_info (Xen 4.1) -----------------------------------------------------
SGT_type_shift = 62
SGT_type_mask = 3 << SGT_type_shift
SGT_none = 0 << SGT_type_shift
SGT_mark = 1 << SGT_type_shift
SGT_dynamic = 2 << SGT_type_shift
SGT_count_width = 61
SGT_count_mask = (1 << SGT_count_width) - 1

SGT_TYPE_NAMES = {0: "none", 1: "mark", 2: "dynamic"}

DOMID_INVALID = 0x7FF4       # Xen's "no domain" (xen.h)
DOMID_SELF = 0x7FF0


def _field(word, mask: int, shift: int = 0):
    if isinstance(word, np.ndarray):
        return (word & np.uint64(mask)) >> np.uint64(shift)
    return (int(word) & mask) >> shift


def _flag(word, bit: int):
    if isinstance(word, np.ndarray):
        return (word & np.uint64(bit)) != 0
    return bool(int(word) & bit)


def pgc_count(ci):
    return _field(ci, PGC_count_mask)


def pgc_state(ci):
    return _field(ci, PGC_state, PGC_state_shift)


def pgc_allocated(ci):
    return _flag(ci, PGC_allocated)


def pgt_type(ti):
    """The PGT_ type number (0 none, 1..4 l1..l4, 7 writable, ...)."""
    return _field(ti, PGT_type_mask, PGT_type_shift)


def pgt_count(ti):
    return _field(ti, PGT_count_mask)


def pgt_pinned(ti):
    return _flag(ti, PGT_pinned)


def pgt_validated(ti):
    return _flag(ti, PGT_validated)


def sgt_type(word):
    return _field(word, SGT_type_mask, SGT_type_shift)


def sgt_count(word):
    return _field(word, SGT_count_mask)


def type_name(pgt_type_bits: int) -> str:
    """Name of a PGT_ type given as its full-word value (e.g. PGT_writable_page)."""
    return PGT_TYPE_NAMES.get(pgt_type_bits >> PGT_type_shift, f"type{pgt_type_bits >> PGT_type_shift}")


def decode_count_info(ci: int) -> dict:
    """count_info field by field, as a Xen developer reads it."""
    ci = int(ci)
    return {
        "allocated": bool(ci & PGC_allocated),
        "xen_heap": bool(ci & PGC_xen_heap),
        "page_table": bool(ci & PGC_page_table),
        "cacheattr": (ci & PGC_cacheattr_mask) >> PGC_cacheattr_shift,
        "broken": bool(ci & PGC_broken),
        "state": PGC_STATE_NAMES[(ci & PGC_state) >> PGC_state_shift],
        "count": ci & PGC_count_mask,
    }


def decode_type_info(ti: int) -> dict:
    ti = int(ti)
    return {
        "type": PGT_TYPE_NAMES.get(ti >> PGT_type_shift, f"type{ti >> PGT_type_shift}"),
        "pinned": bool(ti & PGT_pinned),
        "validated": bool(ti & PGT_validated),
        "pae_xen_l2": bool(ti & PGT_pae_xen_l2),
        "partial": bool(ti & PGT_partial),
        "locked": bool(ti & PGT_locked),
        "count": ti & PGT_count_mask,
    }


def decode_spage(word: int) -> dict:
    word = int(word)
    return {"state": SGT_TYPE_NAMES.get(word >> SGT_type_shift, "invalid"),
            "count": word & SGT_count_mask}


def format_count_info(ci: int) -> str:
    """Short text, e.g. ``allocated inuse count=2``."""
    d = decode_count_info(ci)
    flags = [k for k in ("allocated", "xen_heap", "page_table", "broken") if d[k]]
    return " ".join(flags + [d["state"], f"count={d['count']}"])


def format_type_info(ti: int) -> str:
    """Short text, e.g. ``writable/1 validated``."""
    d = decode_type_info(ti)
    flags = [k for k in ("pinned", "validated", "partial", "locked") if d[k]]
    return " ".join([f"{d['type']}/{d['count']}"] + flags)
