"""Xen 4.1's superpage design (``xen-4.1``): what Xen merged on 2010-05-27.

docs/xen-facts.md section 5d. See docs/designs/xen-4.1.md.
"""

from __future__ import annotations

import errno

import numpy as np

from ..mem import (PGT_writable_page, SGT_count_mask, SGT_dynamic, SGT_mark, SGT_none,
                   SGT_type_mask, SGT_type_shift, decode_spage)
from .._errors import RefcountBug
from ._superpage import (SPAGE_DYNAMIC, SPAGE_MARK, SPAGE_NONE, MetadataRow, SuperpageDesign,
                         SuperpageStates, register, sparse_table_row)
from ..mem import SUPERPAGE_ORDER, SUPERPAGE_PAGES

_U = np.uint64


@register
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
    doc = "docs/designs/xen-4.1.md"
    color = "#1f77b4"
    default = True

    # -- what the word says ---------------------------------------------------------------
    @classmethod
    def word_text(cls, word: int, value: int) -> str:
        """``dynamic/1``: the SGT_ state and the count."""
        d = decode_spage(value)
        return f"{d['state']}/{d['count']}"

    @classmethod
    def word_fields(cls, word: int, value: int) -> dict:
        return decode_spage(value)

    @classmethod
    def word_problem(cls, word: int, value: int) -> str | None:
        return "superpage state bits corrupted" if int(value) >> 62 == 3 else None

    def superpage_states(self, spdx: np.ndarray, mappings: np.ndarray) -> SuperpageStates:
        w = self.m.spage_table.store[0, self.m.spage_table.entry_indexes(spdx)]
        t = (w >> _U(SGT_type_shift)).astype(np.int64)
        state = np.full(w.size, SPAGE_NONE, dtype=np.int8)
        state[t == SGT_dynamic >> SGT_type_shift] = SPAGE_DYNAMIC
        state[t == SGT_mark >> SGT_type_shift] = SPAGE_MARK
        return SuperpageStates("spage_table: one word, SGT_ state in bits 62-63 and a count",
                               state, (w & _U(SGT_count_mask)).astype(np.int64))

    def activity(self) -> tuple[int, int]:
        st = self.m.spage_table
        e = st.nonzero_entries()
        return int(e.size), int((st.store[:, e] & _U(SGT_count_mask)).sum())

    def metadata_rows(self) -> list[MetadataRow]:
        """Xen's own layout, dense from frame 0 (without and with PDX compression), and
        xensim's sparse table of one word (what this design uses here)."""
        m = self.m

        def dense(n_frames):
            return 8 * -(-n_frames // SUPERPAGE_PAGES)

        return [
            MetadataRow("xen-4.1-dense", dense(m.memmap.max_pfn), "8 B/2 MiB to max_pfn",
                        "Xen 4.1 spage_info over [0, max_pfn/512), holes included",
                        color="#64b5f6", dashed=True),
            MetadataRow("xen-4.1-dense-pdx", dense(m.pdx.max_pdx),
                        f"8 B/2 MiB to max_pdx ({m.pdx.mode})",
                        f"Xen 4.1 spage_info over [0, max_pdx/512), PDX {m.pdx.mode}"),
            sparse_table_row(m, 1),
        ]

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

    def check_owner(self, mfn: int, d: int, state: int) -> bool:
        """Does ``d`` own the superpage? (xensim's check; Xen 4.1 had none past NONE.)

        While the state is not NONE the 512 frames hold the design's references,
        so none can be freed and none can change owner: the first frame's owner
        is every frame's. In NONE the 512 references are about to be taken,
        and get_page checks each frame's owner then.
        """
        if self.m.faithful or state == SGT_none:
            return True
        return self.m.frame_table.owner(self.m.mfn_to_page(mfn)) == d

    def get_superpage(self, mfn: int, d: int, rw: bool) -> int:
        spdx = self.spdx(mfn)
        taken = False
        while True:
            x = self._read(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if not taken and not self.check_owner(mfn, d, state):
                return -errno.EPERM
            if state == SGT_none and not taken:
                if not self._take(mfn, d):
                    return -errno.EINVAL if self.m.faithful or self.owned_by(mfn, d) else -errno.EPERM
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

    # -- batches of distinct superpages (one mmu_update of many PSE entries) --------------
    def _batch_words(self, mfns):
        pages = np.asarray(self.m.mfn_to_pdx(np.asarray(mfns, dtype=np.uint64)), dtype=np.int64)
        e = self.m.spage_table.entry_indexes(pages >> SUPERPAGE_ORDER)
        k = int(np.argmin(e >= 0)) if (e < 0).any() else e.size
        pages, e = pages[:k], e[:k]
        return pages, e, self.m.spage_table.store[0, e]

    def get_superpages(self, mfns, d: int, rw) -> int:
        """get_superpage on each, in order, vectorised; see SuperpageDesign.get_superpages."""
        pages, e, x = self._batch_words(mfns)
        state, count = x & _U(SGT_type_mask), x & _U(SGT_count_mask)
        none = state == _U(SGT_none)
        ok = count < _U(SGT_count_mask)
        if not self.m.faithful:
            owners = np.array([self.m.frame_table.owner(int(p)) for p in pages[~none]], dtype=np.int64)
            ok[~none] &= owners == d
        take = np.flatnonzero(none)
        ok[take] &= self.m.refs.runs_ok(pages[take], SUPERPAGE_PAGES, d, PGT_writable_page)
        f = int(np.argmin(ok)) if not ok.all() else ok.size
        take = take[take < f]
        self.m.refs.get_runs_and_type(pages[take], SUPERPAGE_PAGES, d, PGT_writable_page)
        nx = np.where(none[:f], _U(SGT_dynamic | 1), x[:f] + _U(1))
        self.m.spage_table.write_many(e[:f], nx)
        self.stats["slow_get"] += int(take.size)
        self.stats["fast_get"] += f - int(take.size)
        return f

    def put_superpages(self, mfns, rw) -> int:
        """put_superpage on each, in order, vectorised; stops before any would underflow."""
        pages, e, x = self._batch_words(mfns)
        state, count = x & _U(SGT_type_mask), x & _U(SGT_count_mask)
        ok = (count != 0) & ~((state == _U(SGT_mark)) & (count == _U(1)))
        last = (state == _U(SGT_dynamic)) & (count == _U(1))
        drop = np.flatnonzero(last)
        ok[drop] &= self.m.refs.put_runs_ok(pages[drop], SUPERPAGE_PAGES)
        f = int(np.argmin(ok)) if not ok.all() else ok.size
        drop = drop[drop < f]
        self.m.spage_table.write_many(e[:f], np.where(last[:f], _U(SGT_none), x[:f] - _U(1)))
        self.m.refs.put_runs_and_type(pages[drop], SUPERPAGE_PAGES)
        self.stats["slow_put"] += int(drop.size)
        self.stats["fast_put"] += f - int(drop.size)
        return f

    def put_superpage(self, mfn: int, rw: bool) -> None:
        spdx = self.spdx(mfn)
        while True:
            x = self._read(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if count == 0 or (state == SGT_mark and count == 1):
                if self.m.faithful:                     # Xen 4.1: underflows into the state bits
                    self.m.spage_table.write(spdx, (x - 1) & ((1 << 64) - 1))
                    return
                # a mapping's put where no mapping holds a count (MARK|1 is the mark's own)
                raise RefcountBug(f"put_superpage on mfn {mfn:#x} held by no mapping (word {x:#x})")
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
            if count == SGT_count_mask:
                if taken:
                    self._give_back(mfn)
                return -errno.EINVAL
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
        self.expect_superpages(exp, pse, None)

    def expect_superpages(self, exp, pse: dict[int, list[int]], mfns) -> None:
        """One word per mapped or marked superpage (``mfns``; None: every one) and a run
        of 512 writable references."""
        marks = {mfn: dom.domid for dom in self.m.domains.values() for mfn in dom.marked}
        for mfn in set(pse) | set(marks) if mfns is None else mfns:
            if mfn not in pse and mfn not in marks:
                continue
            ro, rw, domid = pse.get(mfn, (0, 0, marks.get(mfn)))
            count = ro + rw + (1 if mfn in marks else 0)
            state = SGT_mark if mfn in marks else SGT_dynamic
            exp.spage[self.spdx(mfn)] = (state | count,)
            exp.run(mfn, SUPERPAGE_PAGES, marks.get(mfn, domid), PGT_writable_page)
