"""Xen 4.10 and later (``none``): no PV superpages at all.

PV superpages were removed from Xen in 2017 (4.10): an L2 entry with PSE is
refused by L2_DISALLOW_MASK like any other reserved flag (-EINVAL), and
MMUEXT_MARK_SUPER / UNMARK_SUPER answer -EOPNOTSUPP. A guest kernel that learns
this (``Machine.pv_superpages``) maps 2 MiB with an L1 table of 512 entries,
as Linux's PV code does. See docs/designs/none.md.
"""

from __future__ import annotations

import errno

from ._host import Expectation
from ._registry import register
from ._superpage import PseEntries, SuperpageDesign


@register
class NoSuperpages(SuperpageDesign):
    """Xen 4.10 on: no PSE entry in a PV L2 (``supports_pse = False``), no MARK.

    The page-table code refuses a present L2 entry with _PAGE_PSE before anything
    else (the disallow mask, -EINVAL), in mod_l2_entry and in a new L2 table's
    validation, so get_superpage / put_superpage are never called. A 2 MiB
    mapping is the guest's fallback: a page-table frame typed PGT_l1_page_table
    and 512 L1 entries, each a writable type reference (RW) or a general
    reference (RO) on its frame, all recounted by the auditor from the L1 table
    itself: :meth:`expect` adds nothing. No metadata, no superpage words (the
    machine's 1-word table is built as for per-mapping and never touched).
    """
    name = "none"
    supports_pse = False
    supports_mark = False
    description = ("Xen 4.10+: no PV superpages; a 2 MiB mapping is an L1 table of "
                   "512 entries (512 typed references + a page-table frame)")
    doc = "docs/designs/none.md"
    color = "#7f7f7f"
    words_in = None
    word_names = ()
    keeps_count = False
    no_words_text = ("no per-superpage word (none: no PSE mappings; a 2 MiB range is mapped "
                     "by an L1 table of 512 entries)")

    def metadata_bytes(self) -> int:
        return 0

    def get_superpage(self, mfn: int, d: int, rw: bool) -> int:
        # unreachable: the L2 disallow mask refuses PSE first (Xen 4.10's get_page_from_l2e)
        return -errno.EINVAL

    def put_superpage(self, mfn: int, rw: bool) -> None:
        raise AssertionError(f"none: a PSE entry (mfn {mfn:#x}) was never taken")

    def mark_superpage(self, mfn: int, d: int) -> int:
        return -errno.EOPNOTSUPP

    def unmark_superpage(self, mfn: int, d: int) -> int:
        return -errno.EOPNOTSUPP

    def expect(self, exp: Expectation, pse: PseEntries) -> None:
        """Nothing: there are no PSE entries; fallback mappings are L1 tables."""
