"""The audit contributor of preempted (de)validations: what ``PGT_partial`` tables, their
entries and the vCPUs' ``old_guest_table`` hold (both auditors ask it, as they ask every
contributor other than the live tables')."""

from __future__ import annotations

import numpy as np

from ..mem import PGT_type_mask
from ._pagetable import CHILD_TYPES, LEVEL_TYPES, _PAGE_PRESENT, _PAGE_PSE, is_xen_slot, pte_mfn


def partial_expect(m, exp) -> None:
    """What preempted (de)validations hold (an audit contributor, both auditors').

    A ``PGT_partial`` table keeps its type count at 1 and one more general reference
    (get_page_light): one typed reference of its own type. Its entries below
    ``nr_validated_ptes`` hold what a live table's do; the entry at it holds a general
    reference of the table below when ``partial_pte`` is -1 (4.1-4.8: devalidation
    preempted there), nothing of its own when 1 (that table's partial count is its); with
    ``partial_flags`` (4.13 on, and 4.1-4.8 outside faithful mode) a partial entry
    (PTF_partial_set) always holds a general reference. A vCPU's ``old_guest_table``
    holds the general reference of the put it has to finish, and a typed one of the
    frame's type unless that put was preempted (``old_guest_table_partial``: the type
    count is the PGT_partial table's own, or, taken over since, another holder's; a
    faithful 4.1-4.8 put drops it all the same, and the recount shows it then). PSE
    entries of a partial L2 are the design's to count: both auditors give them to its
    expectation with the live tables' (``_validate.partial_pse``).
    """
    pt = m.pt
    ft = m.frame_table
    flags = m.partial_flags
    for d in m.domains.values():
        for v in d.vcpus:
            mfn = v.old_guest_table
            if mfn is None:
                continue
            page = m.mfn_to_page(mfn)
            if v.old_guest_table_partial:
                exp.ref(mfn, d.domid)
            else:
                exp.typed(mfn, d.domid, ft.type_info(page) & PGT_type_mask)
    progress = ft.progress
    for page, (level, domid) in pt.partial.items():
        table = int(m.pdx_to_mfn(page))
        exp.typed(table, domid, LEVEL_TYPES[level])
        nr, partial = progress.get(page)
        entries = m.mem.table(table)
        holds = partial < 0 or (flags and partial > 0)
        upto = nr + 1 if holds else nr
        for i in np.flatnonzero(entries[:upto] & np.uint64(_PAGE_PRESENT)).tolist():
            e = entries.item(i)
            mfn = pte_mfn(e)
            if is_xen_slot(level, i) or mfn == table:
                continue
            if i == nr:                               # the partial entry's general ref
                exp.ref(mfn, domid)
            elif level == 2 and e & _PAGE_PSE:        # (an L1 table is never partial)
                continue
            elif pt.live.get(m.mfn_to_page(mfn), (0,))[0] == level:
                exp.typed(mfn, domid, LEVEL_TYPES[level])
            else:
                exp.typed(mfn, domid, CHILD_TYPES[level])


