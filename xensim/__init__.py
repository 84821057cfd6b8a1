"""xensim: a full-system simulator of Xen's x86 memory manager.

The public front. Everything a user or a test needs is re-exported here;
modules whose names start with an underscore are private.
"""

from ._audit import AuditReport, Difference, audit
from ._config import Config, build_memory_map, default_config, load_config, parse_config
from ._domain import DOMID_SELF, Domain
from ._errors import ConfigError
from ._frametable import FRAME_BYTES, PDX_GROUP_FRAMES, FrameTable
from ._heap import DomainHeap, HeapError
from ._hypercall import (HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                         HYPERVISOR_update_va_mapping, errno_name)
from ._machine import Machine
from ._memmap import E820Type, MemoryMap, MemoryMapError, MemRange
from ._memory_op import (XENMEM_decrease_reservation, XENMEM_increase_reservation,
                         XENMEM_populate_physmap, XenMemoryReservation)
from ._overhead import OverheadReport, overhead
from ._p2m import INVALID, FrameMap
from ._pdx import Pdx, make_pdx
from ._presets import list_presets, load_preset
from ._rangeset import RangeSet
from ._refcount import RangeResult, RefCounts, RefcountBug, RefStats
from ._spage import SuperpageTable
from ._render import render

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
