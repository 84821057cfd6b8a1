"""The hypervisor: refcount primitives (get_page, get_page_type ...), domains, the
machine, the hypercall layer, memory_op, page-table validation, the MMU ops and the
auditor; its accelerators (the vectorised forms some operations may run while the
machine is ``vectorised``) in the subpackage ``accel``.
"""

from ._audit import (
    MAX_LISTED, Difference, Expected, AuditReport, audit,
)
from ._audit_incremental import (
    IncrementalAuditor,
)
from ._baseptr import (
    PGT_root_page_table, BaseptrRules, RULES as BASEPTR_RULES, Vcpu, rules_for, root_mfns,
    vcpu_roots, new_guest_cr3, new_user_baseptr, put_old_guest_table, vcpu_destroy_pagetables,
)
from ._bus_watcher import (
    BusWatcher, FRAME_EVENTS,
)
from ._domain import (
    DOMID_SELF, Domain,
)
from ._events import (
    EVENTS, Events, Subscription,
)
from ._hypercall import (
    HYPERVISOR_mmu_update, HYPERVISOR_memory_op, HYPERVISOR_update_va_mapping,
    HYPERVISOR_mmuext_op, HYPERCALL_NAMES, errno_name, CallStats, HypercallLayer,
)
from ._grant_host import (
    GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTMAP_application_map,
    GNTMAP_contains_pte, grant_pte_flags, guest_map_l1e,
)
from ._grant_table import (
    HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref,
    GNTTABOP_setup_table, GNTTABOP_query_size, GNTTABOP_unmap_and_replace, GNTTABOP_NAMES,
    GNTST_okay, GNTST_general_error, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle,
    GNTST_bad_dev_addr, GNTST_no_device_space, GNTST_permission_denied, GNTST_bad_page,
    GNTST_NAMES, GTF_permit_access, GTF_readonly, GTF_reading, GTF_writing,
    GNTPIN_hstw_inc, GNTPIN_hstr_inc, GNTPIN_devw_inc, GNTPIN_devr_inc,
    INITIAL_NR_GRANT_FRAMES, DEFAULT_MAX_NR_GRANT_FRAMES, GRANT_ENTRIES_PER_FRAME,
    MAPTRACK_PER_PAGE, max_maptrack_frames, pins, GnttabMapGrantRef, GnttabUnmapGrantRef,
    GnttabUnmapAndReplace, GnttabSetupTable, GnttabQuerySize, GrantTable, GrantTables,
    do_grant_table_op,
)
from ._machine import (
    Machine,
)
from ._state import (
    INVENTORY, KINDS, DomainObjects, MachineState, Records, inventory_problems, records_difference,
    same_records, same_state,
)
from ._tlbflush import (
    TlbFlushFilter,
)
from ._memory_op import (
    XENMEM_increase_reservation, XENMEM_decrease_reservation, XENMEM_populate_physmap,
    DOMU_MAX_ORDER, CTLDOM_MAX_ORDER, HWDOM_MAX_ORDER, MULTIPAGE_MAX_ORDER, MEMOP_EXTENT_SHIFT,
    XenMemoryReservation, max_order, do_memory_op, increase_reservation, populate_physmap,
    guest_remove_page, decrease_reservation, remove_extent,
)
from ._mmuext_other import (
    MMUEXT_NEW_USER_BASEPTR,
)
from ._mmu import (
    MMU_NORMAL_PT_UPDATE, MMU_MACHPHYS_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, MMU_CMD_MASK,
    MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE,
    MMUEXT_UNPIN_TABLE, MMUEXT_NEW_BASEPTR, MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER,
    MMUEXT_NAMES, MmuUpdate, MmuextOp, get_pg_owner, do_mmu_update, mmu_update_requests,
    mmu_update_one, do_update_va_mapping, do_mmuext_op, uvmf_flush, UVMF_NONE, UVMF_TLB_FLUSH,
    UVMF_INVLPG, UVMF_FLUSHTYPE_MASK, UVMF_LOCAL, UVMF_ALL,
)
from .accel import (
    STEPWISE, VECTORISED, PSE_BATCH_MIN, VECTOR_MIN_FRAMES,
)
from ._pagetable import (
    _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_PWT, _PAGE_PCD, _PAGE_ACCESSED, _PAGE_DIRTY,
    _PAGE_PSE, _PAGE_PAT, _PAGE_GLOBAL, _PAGE_AVAIL, _PAGE_AVAIL_HIGH, _PAGE_GNTTAB, _PAGE_NX,
    PAGE_CACHE_ATTRS, PADDR_MASK, INVALID_MFN, get_pte_flags, put_pte_flags, BASE_DISALLOW_MASK,
    L1_DISALLOW_MASK, L3_DISALLOW_MASK, L4_DISALLOW_MASK, FASTPATH_FLAG_WHITELIST, ENTRIES,
    ROOT_PAGETABLE_FIRST_XEN_SLOT, ROOT_PAGETABLE_LAST_XEN_SLOT, LEVEL_TYPES, CHILD_TYPES,
    pte_mfn, make_pte, has_changed, is_xen_slot, GuestMemory, PageTables,
)
from ._refcount import (
    VALID_AT_ONCE, PageTypeValidator, NoPageTables, RefStats, get_page_allowed,
    GET_PAGE_COUNT_MAX, REASONS, RangeResult, RefCounts,
)
from ._preempt import (
    Preemption, parse_preemption, PREEMPT_MODES, ERESTART, Continuation,
)
from ._release import (
    Release, RELEASES, RELEASE_NAMES, LATEST_RELEASE, NEWEST_RELEASE, release_label,
)
from ._segdesc import (
    FIRST_RESERVED_GDT_ENTRY, FLAT_KERNEL_CS, check_descriptor, alloc_segdesc_page,
)

__all__ = [
    "PGT_root_page_table", "BaseptrRules", "BASEPTR_RULES", "Vcpu", "rules_for", "root_mfns",
    "vcpu_roots", "new_guest_cr3", "new_user_baseptr", "put_old_guest_table",
    "vcpu_destroy_pagetables", "MMUEXT_NEW_USER_BASEPTR",
    "GNTMAP_device_map", "GNTMAP_host_map", "GNTMAP_readonly", "GNTMAP_application_map",
    "GNTMAP_contains_pte", "grant_pte_flags", "guest_map_l1e",
    "HYPERVISOR_grant_table_op", "GNTTABOP_map_grant_ref", "GNTTABOP_unmap_grant_ref",
    "GNTTABOP_setup_table", "GNTTABOP_query_size", "GNTTABOP_unmap_and_replace", "GNTTABOP_NAMES",
    "GNTST_okay", "GNTST_general_error", "GNTST_bad_domain", "GNTST_bad_gntref", "GNTST_bad_handle",
    "GNTST_bad_dev_addr", "GNTST_no_device_space", "GNTST_permission_denied", "GNTST_bad_page",
    "GNTST_NAMES", "GTF_permit_access", "GTF_readonly", "GTF_reading", "GTF_writing",
    "GNTPIN_hstw_inc", "GNTPIN_hstr_inc", "GNTPIN_devw_inc", "GNTPIN_devr_inc",
    "INITIAL_NR_GRANT_FRAMES", "DEFAULT_MAX_NR_GRANT_FRAMES", "GRANT_ENTRIES_PER_FRAME",
    "MAPTRACK_PER_PAGE", "max_maptrack_frames", "pins", "GnttabMapGrantRef", "GnttabUnmapGrantRef",
    "GnttabUnmapAndReplace", "GnttabSetupTable", "GnttabQuerySize", "GrantTable", "GrantTables",
    "do_grant_table_op",
    "INVENTORY", "KINDS", "DomainObjects", "MachineState", "Records", "inventory_problems", "records_difference",
    "same_records", "same_state", "TlbFlushFilter",
    "AuditReport", "BASE_DISALLOW_MASK", "CHILD_TYPES", "CTLDOM_MAX_ORDER", "CallStats",
    "DOMID_SELF", "DOMU_MAX_ORDER", "Difference", "Domain", "ENTRIES", "EVENTS", "Events",
    "Expected",
    "FASTPATH_FLAG_WHITELIST", "FIRST_RESERVED_GDT_ENTRY", "FLAT_KERNEL_CS",
    "GET_PAGE_COUNT_MAX", "GuestMemory", "HWDOM_MAX_ORDER", "HYPERCALL_NAMES",
    "HYPERVISOR_memory_op", "HYPERVISOR_mmu_update", "HYPERVISOR_mmuext_op",
    "HYPERVISOR_update_va_mapping", "HypercallLayer", "BusWatcher", "FRAME_EVENTS", "INVALID_MFN", "IncrementalAuditor", "L1_DISALLOW_MASK",
    "L3_DISALLOW_MASK", "L4_DISALLOW_MASK", "LEVEL_TYPES", "MAX_LISTED", "MEMOP_EXTENT_SHIFT",
    "MMUEXT_MARK_SUPER", "MMUEXT_NAMES", "MMUEXT_NEW_BASEPTR", "MMUEXT_PIN_L1_TABLE",
    "MMUEXT_PIN_L2_TABLE", "MMUEXT_PIN_L3_TABLE", "MMUEXT_PIN_L4_TABLE", "MMUEXT_UNMARK_SUPER",
    "MMUEXT_UNPIN_TABLE", "MMU_CMD_MASK", "MMU_MACHPHYS_UPDATE", "MMU_NORMAL_PT_UPDATE",
    "MMU_PT_UPDATE_PRESERVE_AD", "MULTIPAGE_MAX_ORDER", "Machine", "MmuUpdate", "MmuextOp",
    "NoPageTables", "PADDR_MASK", "PAGE_CACHE_ATTRS", "PSE_BATCH_MIN", "PageTables",
    "PageTypeValidator", "REASONS", "ROOT_PAGETABLE_FIRST_XEN_SLOT",
    "ROOT_PAGETABLE_LAST_XEN_SLOT", "RangeResult", "RefCounts", "RefStats", "Subscription", "VALID_AT_ONCE",
    "XENMEM_decrease_reservation", "XENMEM_increase_reservation", "XENMEM_populate_physmap",
    "XenMemoryReservation", "_PAGE_ACCESSED", "_PAGE_AVAIL", "_PAGE_AVAIL_HIGH", "_PAGE_DIRTY",
    "_PAGE_GLOBAL", "_PAGE_GNTTAB", "_PAGE_NX", "_PAGE_PAT", "_PAGE_PCD", "_PAGE_PRESENT",
    "_PAGE_PSE", "_PAGE_PWT", "_PAGE_RW", "_PAGE_USER", "alloc_segdesc_page", "audit",
    "check_descriptor", "decrease_reservation", "do_memory_op", "do_mmu_update", "do_mmuext_op",
    "do_update_va_mapping", "uvmf_flush", "UVMF_NONE", "UVMF_TLB_FLUSH", "UVMF_INVLPG",
    "UVMF_FLUSHTYPE_MASK", "UVMF_LOCAL", "UVMF_ALL", "errno_name", "get_page_allowed", "get_pg_owner", "get_pte_flags",
    "guest_remove_page", "has_changed", "increase_reservation", "is_xen_slot", "make_pte",
    "max_order", "populate_physmap", "pte_mfn", "put_pte_flags", "remove_extent",
    "VECTOR_MIN_FRAMES", "mmu_update_requests", "mmu_update_one", "STEPWISE", "VECTORISED",
    "LATEST_RELEASE", "NEWEST_RELEASE", "RELEASES", "RELEASE_NAMES", "Release", "release_label",
    "Preemption", "parse_preemption", "PREEMPT_MODES", "ERESTART", "Continuation",
]
