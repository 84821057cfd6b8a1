"""The 2008 design (``per-mapping``): every PSE mapping references all 512 frames.

docs/xen-facts.md section 5a. See docs/designs/per-mapping.md.
"""

from __future__ import annotations

import errno

import numpy as np

from ..mem import PGT_writable_page
from ._host import Expectation
from ._registry import register
from ._superpage import MetadataRow, PseEntries, SuperpageDesign
from ..mem import SUPERPAGE_PAGES


@register
class PerMapping(SuperpageDesign):
    """Xen 2008 (boot option ``allowhugepage``): no metadata, 512 references per mapping.

    Every PSE mapping, read-only or not, takes get_page_and_type(PGT_writable_page)
    on each of the 512 frames; every unmapping puts all 512. Nothing is stored per
    superpage, so every map is a ``slow_get`` and every unmap a ``slow_put``.
    There is no MARK_SUPER (``supports_mark = False``: the hypercall answers as
    with the option off). The owner is checked on every frame by get_page, at
    every mapping: a foreign superpage is refused (-EINVAL, get_page's failure,
    as in Xen).
    """
    name = "per-mapping"
    supports_mark = False
    description = "Xen 2008: get_page_and_type(writable) on all 512 frames per mapping, no metadata"
    doc = "docs/designs/per-mapping.md"
    color = "#d62728"
    words_in = None
    word_names = ()
    keeps_count = False
    no_words_text = ("no per-superpage word (per-mapping: every PSE mapping holds its own "
                     "512 references)")

    def metadata_rows(self) -> list[MetadataRow]:
        return [MetadataRow(self.name, 0, "none", "Xen 2008: 512 typed references per mapping instead")]

    def metadata_bytes(self) -> int:
        return 0

    def get_superpage(self, mfn: int, d: int, rw: bool) -> int:
        if not self.host.take(mfn, d, PGT_writable_page):
            return -errno.EINVAL                            # a get_page failed (any owner)
        self.stats["slow_get"] += 1
        return 0

    def put_superpage(self, mfn: int, rw: bool) -> None:
        host = self.host
        if host.faithful and not host.can_drop_runs(np.array([host.pdx(mfn)]), typed=True)[0]:
            # only after a bug faithful mode lets through (XSA-148's PSE flip): the 512
            # references were never taken; record the underflow Xen would have caused
            host.report_violation(f"per-mapping: superpage count underflow at mfn {mfn:#x} "
                                  f"(512 references put that were never taken)")
            return
        host.drop(mfn, typed=True)
        self.stats["slow_put"] += 1

    def get_superpages(self, mfns: np.ndarray, d: int, rw: np.ndarray) -> int:
        """get_superpage on each, in order, vectorised: 512 writable references each."""
        pages = self.host.pdx_many(mfns)
        ok = self.host.can_take_runs(pages, d, PGT_writable_page)
        f = ok.size if ok.all() else int(np.argmin(ok))
        self.host.take_runs(pages[:f], d, PGT_writable_page)
        self.stats["slow_get"] += f
        return f

    def put_superpages(self, mfns: np.ndarray, rw: np.ndarray) -> int:
        pages = self.host.pdx_many(mfns)
        ok = self.host.can_drop_runs(pages, typed=True)
        f = ok.size if ok.all() else int(np.argmin(ok))
        self.host.drop_runs(pages[:f], typed=True)
        self.stats["slow_put"] += f
        return f

    def expect(self, exp: Expectation, pse: PseEntries) -> None:
        for mfn, (ro, rw, domid) in pse.items():
            for _ in range(ro + rw):
                exp.run(mfn, SUPERPAGE_PAGES, domid, PGT_writable_page)

    def expect_superpages(self, exp: Expectation, pse: PseEntries, mfns: list[int]) -> None:
        self.expect(exp, {mfn: pse[mfn] for mfn in mfns if mfn in pse})
