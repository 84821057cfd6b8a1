"""Physical memory: units, e820 memory maps, PDX compression, the page_info layout,
the frame table, the sparse superpage table, the domain heap, range sets and the P2M.
"""

from ._frametable import (
    PDX_GROUP_SHIFT, PDX_GROUP_FRAMES, PDX_GROUP_MASK, FRAME_BYTES, XEN_PAGE_INFO_BYTES,
    FrameTable, mapped_zeros,
)
from ._progress import (
    ValidationProgress,
)
from ._heap import (
    HeapError, DomainHeap, blocks_of,
)
from ._memmap import (
    E820Type, MemRange, MemoryMapError, MemoryMap, merge_ranges, parse_boot_log, parse_iomem,
    parse_memmap_text,
)
from ._p2m import (
    INVALID, FrameMap,
)
from ._page_info import (
    PGC_allocated, PGC_xen_heap, PGC_page_table, PGC_cacheattr_shift, PGC_cacheattr_mask,
    PGC_broken, PGC_state_shift, PGC_state, PGC_state_inuse, PGC_state_offlining,
    PGC_state_offlined, PGC_state_free, PGC_count_width, PGC_count_mask, PGC_STATE_NAMES,
    PGT_type_shift, PGT_type_mask, PGT_none, PGT_l1_page_table, PGT_l2_page_table,
    PGT_l3_page_table, PGT_l4_page_table, PGT_seg_desc_page, PGT_writable_page, PGT_shared_page,
    PGT_pinned, PGT_validated, PGT_pae_xen_l2, PGT_partial, PGT_locked, PGT_count_width,
    PGT_count_mask, PGT_TYPE_NAMES, PGT_PAGE_TABLE_TYPES, SGT_type_shift, SGT_type_mask,
    SGT_none, SGT_mark, SGT_dynamic, SGT_count_width, SGT_count_mask, SGT_TYPE_NAMES,
    DOMID_INVALID, DOMID_SELF, pgc_count, pgc_state, pgc_allocated, pgt_type, pgt_count,
    pgt_pinned, pgt_validated, sgt_type, sgt_count, type_name, decode_count_info,
    decode_type_info, decode_spage, format_count_info, format_type_info,
)
from ._pdx import (
    MODES, OFFSET_TABLE_ORDER, OFFSET_TABLE_SLOTS, Pdx, PdxMask, PdxNone, PdxNotApplicable,
    PdxOffset, make_pdx, listed_regions, normalize_frame_ranges,
)
from ._rangeset import (
    RangeSet,
)
from ._spage import (
    SPAGE_CHUNK_SHIFT, SPAGE_CHUNK_ENTRIES, SPAGE_CHUNK_MASK, WORD_BYTES, SuperpageTable,
    spdx_of,
)
from ._units import (
    PAGE_SHIFT, PAGE_SIZE, SUPERPAGE_ORDER, SUPERPAGE_PAGES, SUPERPAGE_SHIFT, SUPERPAGE_SIZE,
    MAX_ORDER, PADDR_BITS, MAX_PADDR, MAX_MFN, KiB, MiB, GiB, TiB, parse_size, format_size,
)

__all__ = [
    "ValidationProgress",
    "DOMID_INVALID", "DOMID_SELF", "DomainHeap", "E820Type", "FRAME_BYTES", "FrameMap",
    "FrameTable", "mapped_zeros", "GiB", "HeapError", "INVALID", "KiB", "MAX_MFN", "MAX_ORDER", "MAX_PADDR",
    "MODES", "MemRange", "MemoryMap", "MemoryMapError", "MiB", "OFFSET_TABLE_ORDER",
    "OFFSET_TABLE_SLOTS", "PADDR_BITS", "PAGE_SHIFT", "PAGE_SIZE", "PDX_GROUP_FRAMES",
    "PDX_GROUP_MASK", "PDX_GROUP_SHIFT", "PGC_STATE_NAMES", "PGC_allocated", "PGC_broken",
    "PGC_cacheattr_mask", "PGC_cacheattr_shift", "PGC_count_mask", "PGC_count_width",
    "PGC_page_table", "PGC_state", "PGC_state_free", "PGC_state_inuse", "PGC_state_offlined",
    "PGC_state_offlining", "PGC_state_shift", "PGC_xen_heap", "PGT_PAGE_TABLE_TYPES",
    "PGT_TYPE_NAMES", "PGT_count_mask", "PGT_count_width", "PGT_l1_page_table",
    "PGT_l2_page_table", "PGT_l3_page_table", "PGT_l4_page_table", "PGT_locked", "PGT_none",
    "PGT_pae_xen_l2", "PGT_partial", "PGT_pinned", "PGT_seg_desc_page", "PGT_shared_page",
    "PGT_type_mask", "PGT_type_shift", "PGT_validated", "PGT_writable_page", "Pdx", "PdxMask",
    "PdxNone", "PdxNotApplicable", "PdxOffset", "RangeSet", "SGT_TYPE_NAMES", "SGT_count_mask",
    "SGT_count_width", "SGT_dynamic", "SGT_mark", "SGT_none", "SGT_type_mask", "SGT_type_shift",
    "SPAGE_CHUNK_ENTRIES", "SPAGE_CHUNK_MASK", "SPAGE_CHUNK_SHIFT", "SUPERPAGE_ORDER",
    "SUPERPAGE_PAGES", "SUPERPAGE_SHIFT", "SUPERPAGE_SIZE", "SuperpageTable", "TiB",
    "WORD_BYTES", "XEN_PAGE_INFO_BYTES", "blocks_of", "decode_count_info", "decode_spage",
    "decode_type_info", "format_count_info", "format_size", "format_type_info",
    "listed_regions", "make_pdx", "merge_ranges", "normalize_frame_ranges", "parse_boot_log",
    "parse_iomem", "parse_memmap_text", "parse_size", "pgc_allocated", "pgc_count", "pgc_state",
    "pgt_count", "pgt_pinned", "pgt_type", "pgt_validated", "sgt_count", "sgt_type", "spdx_of", "type_name",
]
