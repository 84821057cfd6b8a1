"""The 2010 xen-devel proposal (``superpage-info``), race-free: a sparse table of
read-only and read-write counts, one pair per 2 MiB superpage, on the counting
core of ``_counted``.

docs/xen-facts.md section 5c. See docs/designs/superpage-info.md.
"""

from __future__ import annotations

from ..mem import PGT_writable_page
from ._counted import TableCounted
from ._registry import register
from ._superpage import MetadataRow, sparse_table_row


@register
class SuperpageInfo(TableCounted):
    """The 2010 xen-devel proposal, race-free: two counts per 2 MiB in a sparse table.

    Word 0 counts read-only mappings, whose 512 references are general only
    (get_page); word 1 counts read-write mappings, whose 512 references are
    get_page_and_type(PGT_writable_page). Each word goes 0 -> 1 / 1 -> 0 on its
    own. A losing acquirer gives its speculative references back. MARK_SUPER
    pins the RW word (one count, bit 63 set); see the module docstring.
    """
    name = "superpage-info"
    words_per_entry = 2
    mark_word = 1
    description = ("the 2010 proposal, race-free: RO and RW counts per 2 MiB, general "
                   "references for RO, writable for RW")
    doc = "docs/designs/superpage-info.md"
    color = "#2ca02c"
    word_names = ("ro count", "rw count")

    def metadata_rows(self) -> list[MetadataRow]:
        return [sparse_table_row(self.host, 2)]

    def count_word(self, rw: bool) -> int:
        return 1 if rw else 0

    def ref_type(self, word: int) -> int | None:
        return PGT_writable_page if word == 1 else None
