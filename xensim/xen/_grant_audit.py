"""The auditor's view of grant tables (a contributor, ``Machine.audit_contributors``):
what the grant records imply, recounted from the tables' data alone.

* A device mapping's references are the grant's: each ``devw`` pin is a general and a
  ``PGT_writable_page`` type reference on the granted frame, each ``devr`` pin a general
  one (held for the granter, whose frame it is).
* A host mapping's references are its PTE's, which the page-table recount already
  counts as an ordinary L1 entry; what the grant adds is the permission: the grantee's
  L1 entries may map the granted frame while a host pin is held (else a foreign frame
  in a domU's tables is an isolation breach).
* The pins themselves are recounted from the grantees' maptrack records (each record's
  host / device, read-only / writable kinds), and the shared entry's ``GTF_reading`` /
  ``GTF_writing`` marks must say whether any pin / any writable pin is held.
"""

from __future__ import annotations

from collections import Counter

from ..mem import PGT_writable_page

__all__ = ["grant_expect"]

# (public/grant_table.h, xen/grant_table.h)
_DEVICE, _HOST, _READONLY = 1, 2, 4
_READING, _WRITING = 1 << 3, 1 << 4


def grant_expect(m, exp) -> None:
    """Add what every live domain's grants imply to ``exp`` (see the module docstring)."""
    tables = m.gnttab.tables
    live = [domid for domid in tables if domid in m.domains]
    recounted: Counter = Counter()                  # (granter, ref, kind) -> mappings
    for ld in live:
        for flags, rd, ref in tables[ld].maptrack.values():
            ro = 1 if flags & _READONLY else 0
            if flags & _HOST:
                recounted[rd, ref, ro] += 1
            if flags & _DEVICE:
                recounted[rd, ref, 2 + ro] += 1
    for rd in live:
        gt = tables[rd]
        for ref, (pin, grantee, frame) in gt.active.items():
            hstw, hstr, devw, devr = pin & 0xFF, pin >> 8 & 0xFF, pin >> 16 & 0xFF, pin >> 24 & 0xFF
            if devw:
                exp.typed(frame, rd, PGT_writable_page, devw)
            if devr:
                exp.ref(frame, rd, devr)
            if hstw or hstr:
                exp.granted.add((frame, grantee))
            want = tuple(recounted.pop((rd, ref, k), 0) for k in range(4))
            if want != (hstw, hstr, devw, devr):
                exp.conflict(frame, f"dom{rd} grant {ref} pins (hstw, hstr, devw, devr)",
                             str(want), str((hstw, hstr, devw, devr)))
            flags = gt.shared.get(ref, (0, 0, 0))[0]
            marks = (bool(flags & _READING), bool(flags & _WRITING))
            if marks != (bool(pin), bool(hstw or devw)):
                exp.conflict(frame, f"dom{rd} grant {ref} GTF_reading, GTF_writing",
                             str((bool(pin), bool(hstw or devw))), str(marks))
        for ref, (flags, _, frame) in gt.shared.items():
            if ref not in gt.active and flags & (_READING | _WRITING):
                exp.conflict(frame, f"dom{rd} grant {ref} GTF_reading, GTF_writing",
                             "(False, False)", str((bool(flags & _READING), bool(flags & _WRITING))))
    for (rd, ref, kind), n in sorted(recounted.items()):
        if n and rd in m.domains:
            exp.conflict(0, f"dom{rd} grant {ref} pins", f"{n} mapping(s) of kind {kind}",
                         "no active entry")
