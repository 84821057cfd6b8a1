"""xensim: a full-system simulator of Xen's x86 memory manager.

The public face: what a user of the library needs, re-exported from the packages
(``xensim.mem``, ``xensim.designs``, ``xensim.xen``, ``xensim.config``,
``xensim.guest``, ``xensim.sim``, ``xensim.output``). The race explorer, the fuzzer,
the teaching tools and the pictures are imported from their own packages
(``xensim.explore``, ``xensim.fuzz``, ``xensim.teach``, ``xensim.plot``), so
that ``import xensim`` loads neither greenlet nor matplotlib. Modules whose names
start with an underscore are private.
"""

from . import _entry  # noqa: F401  first: Ctrl-C while the command line loads
from ._errors import ConfigError, RefcountBug
from .mem import (FRAME_BYTES, INVALID, PDX_GROUP_FRAMES, DomainHeap, E820Type, FrameMap,
                  FrameTable, HeapError, MemoryMap, MemoryMapError, MemRange, Pdx, RangeSet,
                  SuperpageTable, format_size, make_pdx, parse_size)
from .designs import (COUNT_MASK, MARK, REGISTRY, CountedDesign, NoSuperpages, PageinfoCount,
                      PerMapping, Sketch, SuperpageDesign, SuperpageHost, SuperpageInfo,
                      TableCounted, Xen41,
                      check_design, design_class, design_names, load_design_file,
                      load_design_files, make_design, register)
from .xen import (
    DOMID_SELF, HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
    HYPERVISOR_update_va_mapping, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE,
    MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_MARK_SUPER, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L1_TABLE,
    MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_UNMARK_SUPER,
    MMUEXT_UNPIN_TABLE, XENMEM_decrease_reservation, XENMEM_increase_reservation,
    XENMEM_populate_physmap, _PAGE_ACCESSED, _PAGE_AVAIL, _PAGE_AVAIL_HIGH, _PAGE_DIRTY,
    _PAGE_GLOBAL, _PAGE_GNTTAB, _PAGE_NX, _PAGE_PAT, _PAGE_PCD, _PAGE_PRESENT, _PAGE_PSE,
    _PAGE_PWT, _PAGE_RW, _PAGE_USER, AuditReport, Difference, Domain, Machine, MmuextOp,
    MmuUpdate, RangeResult, RefCounts, RefStats, XenMemoryReservation, audit, errno_name,
    EVENTS, Events, Release, RELEASE_NAMES)
from .xen import (
    HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref,
    GNTTABOP_unmap_and_replace, GNTMAP_host_map, GNTMAP_device_map, GNTMAP_readonly,
    GnttabMapGrantRef, GnttabUnmapGrantRef, GnttabUnmapAndReplace)
from .config import (Config, build_memory_map, default_config, list_presets, load_config,
                     load_preset, parse_config)
from .guest import DIRECTMAP_BASE, GuestError, GuestKernel
from .sim import (Comparison, DesignRun, MachineReport, OverheadReport, RunResult, Session,
                  overhead, run_comparison, run_design, start)
from .output import FORMATS, render, to_json

__all__ = [
    "HYPERVISOR_grant_table_op", "GNTTABOP_map_grant_ref", "GNTTABOP_unmap_grant_ref",
    "GNTTABOP_unmap_and_replace", "GNTMAP_host_map", "GNTMAP_device_map", "GNTMAP_readonly",
    "GnttabMapGrantRef", "GnttabUnmapGrantRef", "GnttabUnmapAndReplace",
    "COUNT_MASK", "CountedDesign", "MARK", "TableCounted", "check_design", "design_class",
    "load_design_file", "load_design_files",
    "AuditReport", "Comparison", "Config", "ConfigError", "DIRECTMAP_BASE", "DOMID_SELF",
    "DesignRun", "Difference", "Domain", "DomainHeap", "E820Type", "EVENTS", "Events", "FORMATS",
    "FRAME_BYTES",
    "FrameMap", "FrameTable", "GuestError", "GuestKernel", "HYPERVISOR_memory_op",
    "HYPERVISOR_mmu_update", "HYPERVISOR_mmuext_op", "HYPERVISOR_update_va_mapping",
    "HeapError", "INVALID", "MMUEXT_MARK_SUPER", "MMUEXT_NEW_BASEPTR", "MMUEXT_PIN_L1_TABLE",
    "MMUEXT_PIN_L2_TABLE", "MMUEXT_PIN_L3_TABLE", "MMUEXT_PIN_L4_TABLE", "MMUEXT_UNMARK_SUPER",
    "MMUEXT_UNPIN_TABLE", "MMU_MACHPHYS_UPDATE", "MMU_NORMAL_PT_UPDATE",
    "MMU_PT_UPDATE_PRESERVE_AD", "Machine", "MachineReport", "MemRange", "MemoryMap",
    "MemoryMapError", "MmuUpdate", "MmuextOp", "NoSuperpages", "OverheadReport", "PDX_GROUP_FRAMES",
    "PageinfoCount", "Pdx", "PerMapping", "REGISTRY", "RELEASE_NAMES", "RangeResult", "Release", "RangeSet", "RefCounts",
    "RefStats", "RefcountBug", "RunResult", "Session", "Sketch", "SuperpageDesign", "SuperpageHost", "SuperpageInfo",
    "SuperpageTable", "XENMEM_decrease_reservation", "XENMEM_increase_reservation",
    "XENMEM_populate_physmap", "Xen41", "XenMemoryReservation", "_PAGE_ACCESSED",
    "_PAGE_AVAIL", "_PAGE_AVAIL_HIGH", "_PAGE_DIRTY", "_PAGE_GLOBAL", "_PAGE_GNTTAB",
    "_PAGE_NX", "_PAGE_PAT", "_PAGE_PCD", "_PAGE_PRESENT", "_PAGE_PSE", "_PAGE_PWT",
    "_PAGE_RW", "_PAGE_USER", "audit", "build_memory_map", "default_config", "design_names",
    "errno_name", "format_size", "list_presets", "load_config", "load_preset", "make_design",
    "make_pdx", "overhead", "parse_config", "parse_size", "register", "render",
    "run_comparison", "run_design", "start", "to_json",
]

__version__ = "0.1.0"
