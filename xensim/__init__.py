"""xensim: a full-system simulator of Xen's x86 memory manager.

The public front. Everything a user or a test needs is re-exported here;
modules whose names start with an underscore are private.
"""

from .xen import AuditReport, Difference, audit
from .config import Config, build_memory_map, default_config, load_config, parse_config
from .xen import DOMID_SELF, Domain
from ._errors import ConfigError
from .mem import FRAME_BYTES, PDX_GROUP_FRAMES, FrameTable
from .mem import DomainHeap, HeapError
from .xen import (HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                         HYPERVISOR_update_va_mapping, errno_name)
from .xen import Machine
from .mem import E820Type, MemoryMap, MemoryMapError, MemRange
from .xen import (XENMEM_decrease_reservation, XENMEM_increase_reservation,
                         XENMEM_populate_physmap, XenMemoryReservation)
from .sim import OverheadReport, overhead
from .mem import INVALID, FrameMap
from .mem import Pdx, make_pdx
from .config import list_presets, load_preset
from .mem import RangeSet
from .xen._refcount import RangeResult, RefCounts, RefcountBug, RefStats
from .mem import SuperpageTable
from .output import render

__all__ = [
    "AuditReport", "Config", "ConfigError", "DOMID_SELF", "Difference", "Domain", "DomainHeap",
    "E820Type", "FRAME_BYTES", "FrameMap", "FrameTable", "HYPERVISOR_memory_op",
    "HYPERVISOR_mmu_update", "HYPERVISOR_mmuext_op", "HYPERVISOR_update_va_mapping", "HeapError",
    "INVALID", "Machine", "MemRange", "MemoryMap", "MemoryMapError", "OverheadReport",
    "PDX_GROUP_FRAMES", "Pdx", "RangeResult", "RangeSet", "RefCounts", "RefStats", "RefcountBug",
    "SuperpageTable", "XENMEM_decrease_reservation", "XENMEM_increase_reservation",
    "XENMEM_populate_physmap", "XenMemoryReservation", "audit", "build_memory_map",
    "default_config", "errno_name", "list_presets", "load_config", "load_preset", "make_pdx",
    "overhead", "parse_config", "render",
]

__version__ = "0.1.0"
