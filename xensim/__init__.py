"""xensim: a full-system simulator of Xen's x86 memory manager.

The public front. Everything a user or a test needs is re-exported here;
modules whose names start with an underscore are private.
"""

from .xen._audit import AuditReport, Difference, audit
from .config._config import Config, build_memory_map, default_config, load_config, parse_config
from .xen._domain import DOMID_SELF, Domain
from ._errors import ConfigError
from .mem._frametable import FRAME_BYTES, PDX_GROUP_FRAMES, FrameTable
from .mem._heap import DomainHeap, HeapError
from .xen._hypercall import (HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                         HYPERVISOR_update_va_mapping, errno_name)
from .xen._machine import Machine
from .mem._memmap import E820Type, MemoryMap, MemoryMapError, MemRange
from .xen._memory_op import (XENMEM_decrease_reservation, XENMEM_increase_reservation,
                         XENMEM_populate_physmap, XenMemoryReservation)
from .sim._overhead import OverheadReport, overhead
from .mem._p2m import INVALID, FrameMap
from .mem._pdx import Pdx, make_pdx
from .config._presets import list_presets, load_preset
from .mem._rangeset import RangeSet
from .xen._refcount import RangeResult, RefCounts, RefcountBug, RefStats
from .mem._spage import SuperpageTable
from .output._render import render

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
