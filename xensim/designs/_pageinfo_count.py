"""An extra superpage count in every page_info (``pageinfo-count``).

docs/xen-facts.md section 5b. See docs/designs/pageinfo-count.md.
"""

from __future__ import annotations

import numpy as np

from ._counted import COUNT_MASK, MARK, CountedDesign
from ._host import Expectation, SuperpageHost
from ..mem import PDX_GROUP_FRAMES, PDX_GROUP_MASK, PDX_GROUP_SHIFT, SUPERPAGE_ORDER
from ._registry import register
from ._superpage import MetadataRow

#: the extra field: one 64-bit word in every frame's page_info
PAGEINFO_COUNT_BYTES = 8


@register
class PageinfoCount(CountedDesign):
    """The superpage's mapping count in an extra 8-byte field of page_info.

    Every frame of the machine pays for the field (8 B per 4 KiB, ~0.2% of RAM);
    a superpage's count lives in its first frame's field. One count for all
    mappings, read-only included, whose 512 references are writable-type ones
    (as Xen 4.1). MARK_SUPER pins it: bit 63 of the field, one count.

    Like the frame table, the fields are numpy uint64 arrays per PDX group
    (65,536 frames), materialised on first write; an untouched group reads 0.
    They are not part of the machine's request journal: no failure path of
    this design writes them (a failed acquisition returns before its cmpxchg).
    Its :meth:`snapshot` (the fields that are not 0, as positions and values) is
    kept until the fields next change: the fuzzer's journal takes one after every
    call. Every method that writes the fields (``cas_count``, ``write_many``,
    ``restore``) drops it.
    """
    name = "pageinfo-count"
    mark_word = 0
    description = ("an extra 8-byte superpage count in every page_info: one count, "
                   "writable references")
    doc = "docs/designs/pageinfo-count.md"
    color = "#ff7f0e"
    words_in = "page_info"
    word_names = ("page_info count",)
    words_source = "an extra page_info field of each superpage's first frame, MARK in bit 63"

    def __init__(self, host: SuperpageHost) -> None:
        super().__init__(host)
        #: PDX group -> the group's 65,536 fields
        self._groups: dict[int, np.ndarray] = {}
        #: snapshot() as the fields are now (None: to be made again)
        self._snap: tuple | None = None

    def metadata_bytes(self) -> int:
        """8 B for every frame of every PDX group with RAM (the frame table's extent)."""
        return PAGEINFO_COUNT_BYTES * PDX_GROUP_FRAMES * self.host.machine_extent()[3]

    def metadata_rows(self) -> list[MetadataRow]:
        return [MetadataRow(self.name, self.metadata_bytes(), "8 B/frame",
                            "an extra superpage count in every page_info")]

    def words(self, mfn: int) -> list[tuple[str, int]]:
        return [(self.word_names[0], self.field(mfn))]

    def words_of(self, spdx: np.ndarray) -> np.ndarray:
        pages = np.asarray(spdx, dtype=np.int64) << SUPERPAGE_ORDER
        words = np.zeros((1, pages.size), dtype=np.uint64)
        for g, a in self._groups.items():
            sel = (pages >> PDX_GROUP_SHIFT) == g
            words[0, sel] = a[pages[sel] & PDX_GROUP_MASK]
        return words

    def activity(self) -> tuple[int, int]:
        arrays = list(self._groups.values())
        return (sum(int(np.count_nonzero(a)) for a in arrays),
                sum(int((a & np.uint64(COUNT_MASK)).sum()) for a in arrays))

    def allocated_bytes(self) -> int:
        """What xensim has materialised so far (groups written to)."""
        return sum(a.nbytes for a in self._groups.values())

    def field(self, mfn: int) -> int:
        """The extra page_info field of frame ``mfn`` (a superpage's first frame: its count)."""
        page = self.host.pdx(mfn)
        a = self._groups.get(page >> PDX_GROUP_SHIFT)
        return 0 if a is None else a.item(page & PDX_GROUP_MASK)

    def fields(self) -> dict[int, np.ndarray]:
        """Copies of the materialised fields: PDX group -> its 65,536 fields (absent: all 0)."""
        return {g: a.copy() for g, a in self._groups.items()}

    def field_views(self) -> dict[int, np.ndarray]:
        """The materialised fields without copying them, as read-only views: PDX group ->
        its 65,536 fields (absent: all 0). For readers that look after every operation."""
        views = {}
        for g, a in self._groups.items():
            v = a.view()
            v.flags.writeable = False
            views[g] = v
        return views

    def snapshot(self) -> tuple:
        """The fields that are not 0: per PDX group with any, (group, their positions,
        their values) as bytes; kept until a field is written."""
        if self._snap is None:
            out = []
            for g, a in sorted(self._groups.items()):
                nz = np.flatnonzero(a)
                if nz.size:
                    out.append((g, nz.tobytes(), a[nz].tobytes()))
            self._snap = tuple(out)
        return self._snap

    def restore(self, snapshot: tuple) -> None:
        self._groups = {}
        for g, pos, values in snapshot:
            a = self._groups[g] = np.zeros(PDX_GROUP_FRAMES, dtype=np.uint64)
            a[np.frombuffer(pos, dtype=np.int64)] = np.frombuffer(values, dtype=np.uint64)
        self._snap = snapshot

    def read_count(self, mfn: int, word: int) -> int:
        host = self.host
        page = host.pdx(mfn)
        host.field_step("pi_load", page)                        # a load is an atomic step
        a = self._groups.get(page >> PDX_GROUP_SHIFT)
        return 0 if a is None else a.item(page & PDX_GROUP_MASK)

    def cas_count(self, mfn: int, word: int, old: int, new: int) -> bool:
        host = self.host
        page = host.pdx(mfn)
        host.field_step("pi_cas", page)                         # a cmpxchg is an atomic step
        g = page >> PDX_GROUP_SHIFT
        a = self._groups.get(g)
        found = 0 if a is None else a.item(page & PDX_GROUP_MASK)
        host.field_cmpxchged(page, old, found, new)
        if found != old:
            return False
        if a is None:
            if not host.group_has_ram(page):
                raise IndexError(f"PDX group {g} holds no RAM: no page_info there")
            a = self._groups[g] = np.zeros(PDX_GROUP_FRAMES, dtype=np.uint64)
        a[page & PDX_GROUP_MASK] = new
        self._snap = None
        return True

    def read_many(self, mfns: np.ndarray, word: int) -> np.ndarray:
        pages = self.pages_of(mfns)
        out = np.zeros(pages.size, dtype=np.uint64)
        groups = pages >> PDX_GROUP_SHIFT
        for g in np.unique(groups):
            a = self._groups.get(int(g))
            if a is not None:
                sel = groups == g
                out[sel] = a[pages[sel] & PDX_GROUP_MASK]
        return out

    def write_many(self, mfns: np.ndarray, word: int, values: np.ndarray) -> None:
        pages = self.pages_of(mfns)
        self.host.fields_written(pages, lambda: self.read_many(mfns, word), values)
        self._snap = None
        groups = pages >> PDX_GROUP_SHIFT
        for g in np.unique(groups):
            a = self._groups.get(int(g))
            if a is None:
                a = self._groups[int(g)] = np.zeros(PDX_GROUP_FRAMES, dtype=np.uint64)
            sel = groups == g
            a[pages[sel] & PDX_GROUP_MASK] = values[sel]

    def store_expected(self, exp: Expectation, expected: dict[int, tuple[int, ...]],
                        only: bool = False) -> None:
        """The auditor has no place for a per-frame superpage field, so the design
        compares its fields with the expectation itself and reports each difference
        through ``exp.conflict`` (which the auditor adds to its report); ``only``: the
        fields of the superpages expected alone."""
        want = {self.host.pdx(mfn): words[0] for mfn, words in expected.items()}
        have = {}
        if only:
            for page in want:
                a = self._groups.get(page >> PDX_GROUP_SHIFT)
                if a is not None and a[page & PDX_GROUP_MASK]:
                    have[page] = int(a[page & PDX_GROUP_MASK])
        else:
            for g, a in self._groups.items():
                for j in np.flatnonzero(a):
                    have[(g << PDX_GROUP_SHIFT) | int(j)] = int(a[j])
        for page in sorted(set(want) | set(have)):
            w, h = want.get(page, 0), have.get(page, 0)
            if w != h:
                exp.conflict(int(self.host.mfn(page)), "page_info superpage count",
                             _fmt(w), _fmt(h))


def _fmt(x: int) -> str:
    return f"{'MARK|' if x & MARK else ''}{x & ~MARK}"
