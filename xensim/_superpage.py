"""The superpage path: one small interface, and the designs behind it.

An L2 entry with PSE maps 512 frames at once. How the references of those 512
frames are counted is the design question of the 2010 xen-devel thread. Every
design implements :class:`SuperpageDesign`:

* ``get_superpage(mfn, d, rw)`` when a PSE entry is validated (0 or -errno),
* ``put_superpage(mfn, rw)`` when it goes away,
* ``mark_superpage`` / ``unmark_superpage`` for MMUEXT_MARK_SUPER / UNMARK_SUPER,
* ``relinquish(domain)`` at domain destruction (clear the domain's marks),
* ``expect(exp, pse)`` for the auditor: what the design must hold, given the
  live PSE entries (counted from the page tables) and the domains' marks.

``mfn`` is the superpage's first frame: 512-aligned and valid (the caller checks).
"""

from __future__ import annotations

import errno

from ._page_info import (SGT_count_mask, SGT_dynamic, SGT_mark, SGT_none, SGT_type_mask,
                         PGT_writable_page)
from ._refcount import RefcountBug
from ._units import SUPERPAGE_ORDER, SUPERPAGE_PAGES


class SuperpageDesign:
    """The interface. ``words_per_entry`` sizes the machine's superpage table."""
    name = "abstract"
    words_per_entry = 1
    supports_mark = True
    buggy = False
    description = ""

    def __init__(self, machine):
        self.m = machine
        self.stats = {"slow_get": 0, "slow_put": 0, "fast_get": 0, "fast_put": 0}

    def spdx(self, mfn: int) -> int:
        return self.m.mfn_to_pdx(mfn) >> SUPERPAGE_ORDER

    def owned_by(self, mfn: int, d: int) -> bool:
        """All 512 frames are owned by ``d`` (read-only check, vectorised)."""
        _, _, owner = self.m.frame_table.read_slices(self.m.mfn_to_page(mfn), SUPERPAGE_PAGES)
        return bool((owner == d).all())

    def get_superpage(self, mfn: int, d: int, rw: bool) -> int:
        raise NotImplementedError

    def put_superpage(self, mfn: int, rw: bool) -> None:
        raise NotImplementedError

    def mark_superpage(self, mfn: int, d: int) -> int:
        return -errno.EOPNOTSUPP

    def unmark_superpage(self, mfn: int, d: int) -> int:
        return -errno.EOPNOTSUPP

    def relinquish(self, dom) -> None:
        for mfn in sorted(dom.marked):
            self.unmark_superpage(mfn, dom.domid)

    def expect(self, exp, pse: dict[int, list[int]]) -> None:
        raise NotImplementedError


class Xen41(SuperpageDesign):
    """What Xen merged in 4.1 (2010-05-27, "x86: Speed up PV-guest superpage mapping").

    One 64-bit word per superpage: state NONE / DYNAMIC / MARK in bits 62-63, a
    count in bits 0-60. The first mapping (NONE -> DYNAMIC) or a MARK_SUPER takes
    get_page_and_type(PGT_writable_page) on all 512 frames, also for read-only
    mappings; the last unmapping of a DYNAMIC superpage drops them. A MARK keeps
    them while the count stays above 0.

    Xen checked the owner only when the 512 references were taken; with
    ``hypervisor.faithful`` so does xensim, otherwise every map, mark and unmark
    checks that ``d`` owns the 512 frames (-EPERM).
    """
    name = "xen-4.1"
    description = "Xen 4.1's spage_info: one count, NONE/DYNAMIC/MARK, writable references"

    def _read(self, spdx: int) -> int:
        return self.m.spage_table.read(spdx)

    def _cas(self, spdx: int, old: int, new: int) -> bool:
        return self.m.spage_table.cmpxchg(spdx, old, new)

    def _take(self, mfn: int, d: int) -> bool:
        r = self.m.refs.get_pages_and_type(self.m.mfn_to_page(mfn), SUPERPAGE_PAGES, d,
                                           PGT_writable_page)
        return r.ok

    def _give_back(self, mfn: int) -> None:
        self.m.refs.put_pages_and_type(self.m.mfn_to_page(mfn), SUPERPAGE_PAGES)

    def get_superpage(self, mfn: int, d: int, rw: bool) -> int:
        if not self.m.faithful and not self.owned_by(mfn, d):
            return -errno.EPERM
        spdx = self.spdx(mfn)
        taken = False
        while True:
            x = self._read(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if state == SGT_none and not taken:
                if not self._take(mfn, d):
                    return -errno.EINVAL
                taken = True
                continue
            if state != SGT_none and taken:            # someone else got there first
                self._give_back(mfn)
                taken = False
            if count == SGT_count_mask:
                return -errno.EINVAL
            nx = (SGT_dynamic | 1) if state == SGT_none else x + 1
            if self._cas(spdx, x, nx):
                break
        self.stats["slow_get" if taken else "fast_get"] += 1
        return 0

    def put_superpage(self, mfn: int, rw: bool) -> None:
        spdx = self.spdx(mfn)
        while True:
            x = self._read(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if count == 0:
                if self.m.faithful:                     # Xen 4.1: underflows into the state bits
                    self.m.spage_table.write(spdx, (x - 1) & ((1 << 64) - 1))
                    return
                raise RefcountBug(f"put_superpage on mfn {mfn:#x} with count 0 (word {x:#x})")
            last = state == SGT_dynamic and count == 1
            nx = SGT_none if last else x - 1
            if self._cas(spdx, x, nx):
                break
        if last:
            self._give_back(mfn)
        self.stats["slow_put" if last else "fast_put"] += 1

    def mark_superpage(self, mfn: int, d: int) -> int:
        if not self.m.faithful and not self.owned_by(mfn, d):
            return -errno.EPERM
        spdx = self.spdx(mfn)
        taken = False
        while True:
            x = self._read(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if state == SGT_mark:
                if taken:
                    self._give_back(mfn)
                return -errno.EINVAL
            if state == SGT_none and not taken:
                if not self._take(mfn, d):
                    return -errno.EINVAL
                taken = True
                continue
            if state == SGT_dynamic and taken:
                self._give_back(mfn)
                taken = False
            nx = SGT_mark | (count + 1)
            if self._cas(spdx, x, nx):
                break
        self.m.domains[d].marked.add(mfn)
        return 0

    def unmark_superpage(self, mfn: int, d: int) -> int:
        if not self.m.faithful and mfn not in self.m.domains[d].marked:
            return -errno.EPERM if not self.owned_by(mfn, d) else -errno.EINVAL
        spdx = self.spdx(mfn)
        while True:
            x = self._read(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if state != SGT_mark:
                return -errno.EINVAL
            last = count == 1
            nx = SGT_none if last else SGT_dynamic | (count - 1)
            if self._cas(spdx, x, nx):
                break
        for dom in self.m.domains.values():
            dom.marked.discard(mfn)
        if last:
            self._give_back(mfn)
        return 0

    def expect(self, exp, pse: dict[int, list[int]]) -> None:
        marks = {mfn: dom.domid for dom in self.m.domains.values() for mfn in dom.marked}
        for mfn in set(pse) | set(marks):
            ro, rw, domid = pse.get(mfn, (0, 0, marks.get(mfn)))
            count = ro + rw + (1 if mfn in marks else 0)
            state = SGT_mark if mfn in marks else SGT_dynamic
            exp.spage[self.spdx(mfn)] = (state | count,)
            exp.run(mfn, SUPERPAGE_PAGES, marks.get(mfn, domid), PGT_writable_page)


DESIGNS: dict[str, type[SuperpageDesign]] = {
    Xen41.name: Xen41,
}


def make_design(name: str, machine) -> SuperpageDesign:
    try:
        return DESIGNS[name](machine)
    except KeyError:
        raise ValueError(f"unknown superpage design {name!r}; choose from "
                         f"{', '.join(sorted(DESIGNS))}") from None
