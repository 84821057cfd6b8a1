"""The PV guest: its kernel (page tables, superpage mappings through hypercalls)
and the workloads that drive it.
"""

from ._guest import (
    DIRECTMAP_BASE, GuestError, GuestKernel,
)
from ._workload import (
    SMALL_BASE, Op, DomainSpec, Layout, slot_va, window_va, apply, Workload, MapAll, Churn, SplitDriver, GRANT_OPS,
    Shared, Script, Random, KINDS, make_workload,
)

__all__ = [
    "Churn", "DIRECTMAP_BASE", "DomainSpec", "GuestError", "GuestKernel", "KINDS", "Layout",
    "MapAll", "Op", "Random", "SMALL_BASE", "Script", "Shared", "Workload", "apply",
    "make_workload", "slot_va", "window_va", "SplitDriver", "GRANT_OPS",
]
