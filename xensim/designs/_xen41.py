"""Xen 4.1's superpage design (``xen-4.1``): what Xen merged on 2010-05-27.

docs/xen-facts.md section 5d. See docs/designs/xen-4.1.md.
"""

from __future__ import annotations

import errno

import numpy as np

from ..mem import (PGT_writable_page, SGT_count_mask, SGT_dynamic, SGT_mark, SGT_none,
                   SGT_type_mask, SGT_type_shift, decode_spage)
from .._errors import RefcountBug
from ._host import Expectation
from ._registry import register
from ._superpage import (SPAGE_DYNAMIC, SPAGE_MARK, SPAGE_NONE, MetadataRow, PseEntries,
                         SuperpageDesign, SuperpageStates, sparse_table_row)
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

    Xen checked the owner only when the 512 references were taken (NONE -> taken:
    ``get_spage_pages`` -> ``get_page`` fails, -EINVAL, as here in every mode). On a
    superpage already taken Xen checked nothing: with ``hypervisor.faithful`` neither
    does xensim; otherwise a map or mark of another domain's DYNAMIC or MARK
    superpage, or an unmark of another domain's mark, is refused (-EPERM).
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
        w = self.host.words_of(spdx)[0]
        t = (w >> _U(SGT_type_shift)).astype(np.int64)
        state = np.full(w.size, SPAGE_NONE, dtype=np.int8)
        state[t == SGT_dynamic >> SGT_type_shift] = SPAGE_DYNAMIC
        state[t == SGT_mark >> SGT_type_shift] = SPAGE_MARK
        return SuperpageStates("spage_table: one word, SGT_ state in bits 62-63 and a count",
                               state, (w & _U(SGT_count_mask)).astype(np.int64))

    def activity(self) -> tuple[int, int]:
        words = self.host.busy_words()
        return int(words.shape[1]), int((words & _U(SGT_count_mask)).sum())

    def metadata_rows(self) -> list[MetadataRow]:
        """Xen's own layout, dense from frame 0 (without and with PDX compression), and
        xensim's sparse table of one word (what this design uses here)."""
        max_pfn, max_pdx, mode, _ = self.host.machine_extent()

        def dense(n_frames: int) -> int:
            return 8 * -(-n_frames // SUPERPAGE_PAGES)

        return [
            MetadataRow("xen-4.1-dense", dense(max_pfn), "8 B/2 MiB to max_pfn",
                        "Xen 4.1 spage_info over [0, max_pfn/512), holes included",
                        color="#64b5f6", dashed=True),
            MetadataRow("xen-4.1-dense-pdx", dense(max_pdx),
                        f"8 B/2 MiB to max_pdx ({mode})",
                        f"Xen 4.1 spage_info over [0, max_pdx/512), PDX {mode}"),
            sparse_table_row(self.host, 1),
        ]

    def read_count(self, spdx: int) -> int:
        return self.host.read_word(spdx)

    def cas_count(self, spdx: int, old: int, new: int) -> bool:
        return self.host.cmpxchg_word(spdx, old, new)

    def take_frames(self, mfn: int, d: int) -> bool:
        return self.host.take(mfn, d, PGT_writable_page)

    def give_back(self, mfn: int) -> None:
        self.host.drop(mfn, typed=True)

    def check_owner(self, mfn: int, d: int, state: int) -> bool:
        """Does ``d`` own the superpage? (xensim's check; Xen 4.1 had none past NONE.)

        While the state is not NONE the 512 frames hold the design's references,
        so none can be freed and none can change owner: the first frame's owner
        is every frame's. In NONE the 512 references are about to be taken,
        and get_page checks each frame's owner then.
        """
        if state == SGT_none or self.host.faithful:
            return True
        return self.host.owner(mfn) == d

    def get_superpage(self, mfn: int, d: int, rw: bool) -> int:
        spdx = self.spdx(mfn)
        taken = False
        while True:
            x = self.read_count(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if not taken and not self.check_owner(mfn, d, state):
                return -errno.EPERM
            if state == SGT_none and not taken:
                if not self.take_frames(mfn, d):
                    return -errno.EINVAL                # get_spage_pages: a get_page failed
                taken = True
                continue
            if state != SGT_none and taken:            # someone else got there first
                self.give_back(mfn)
                taken = False
            if count == SGT_count_mask:
                return -errno.EINVAL
            nx = (SGT_dynamic | 1) if state == SGT_none else x + 1
            if self.cas_count(spdx, x, nx):
                break
        self.stats["slow_get" if taken else "fast_get"] += 1
        return 0

    # -- batches of distinct superpages (one mmu_update of many PSE entries) --------------
    def _batch_words(self, mfns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pages = self.host.pdx_many(mfns)
        e = self.host.word_slots(pages >> SUPERPAGE_ORDER)
        k = int(np.argmin(e >= 0)) if (e < 0).any() else e.size
        pages, e = pages[:k], e[:k]
        return pages, e, self.host.read_slots(e)

    def get_superpages(self, mfns: np.ndarray, d: int, rw: np.ndarray) -> int:
        """get_superpage on each, in order, vectorised; see SuperpageDesign.get_superpages."""
        pages, e, x = self._batch_words(mfns)
        state, count = x & _U(SGT_type_mask), x & _U(SGT_count_mask)
        none = state == _U(SGT_none)
        ok = count < _U(SGT_count_mask)
        host = self.host
        if not host.faithful:
            ok[~none] &= host.owners(pages[~none]) == d
        take = np.flatnonzero(none)
        ok[take] &= host.can_take_runs(pages[take], d, PGT_writable_page)
        f = int(np.argmin(ok)) if not ok.all() else ok.size
        take = take[take < f]
        host.take_runs(pages[take], d, PGT_writable_page)
        nx = np.where(none[:f], _U(SGT_dynamic | 1), x[:f] + _U(1))
        host.write_slots(e[:f], nx)
        self.stats["slow_get"] += int(take.size)
        self.stats["fast_get"] += f - int(take.size)
        return f

    def put_superpages(self, mfns: np.ndarray, rw: np.ndarray) -> int:
        """put_superpage on each, in order, vectorised; stops before any would underflow."""
        pages, e, x = self._batch_words(mfns)
        state, count = x & _U(SGT_type_mask), x & _U(SGT_count_mask)
        ok = (count != 0) & ~((state == _U(SGT_mark)) & (count == _U(1)))
        last = (state == _U(SGT_dynamic)) & (count == _U(1))
        drop = np.flatnonzero(last)
        ok[drop] &= self.host.can_drop_runs(pages[drop], typed=True)
        f = int(np.argmin(ok)) if not ok.all() else ok.size
        drop = drop[drop < f]
        self.host.write_slots(e[:f], np.where(last[:f], _U(SGT_none), x[:f] - _U(1)))
        self.host.drop_runs(pages[drop], typed=True)
        self.stats["slow_put"] += int(drop.size)
        self.stats["fast_put"] += f - int(drop.size)
        return f

    def put_superpage(self, mfn: int, rw: bool) -> None:
        spdx = self.spdx(mfn)
        while True:
            x = self.read_count(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if count == 0 or (state == SGT_mark and count == 1):
                if self.host.faithful:                  # Xen 4.1: underflows into the state bits
                    self.host.write_word(spdx, (x - 1) & ((1 << 64) - 1))
                    return
                # a mapping's put where no mapping holds a count (MARK|1 is the mark's own)
                raise RefcountBug(f"put_superpage on mfn {mfn:#x} held by no mapping (word {x:#x})")
            last = state == SGT_dynamic and count == 1
            nx = SGT_none if last else x - 1
            if self.cas_count(spdx, x, nx):
                break
        if last:
            self.give_back(mfn)
        self.stats["slow_put" if last else "fast_put"] += 1

    def mark_superpage(self, mfn: int, d: int) -> int:
        spdx = self.spdx(mfn)
        taken = False
        while True:
            x = self.read_count(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if state == SGT_mark:
                if taken:
                    self.give_back(mfn)
                return -errno.EINVAL
            if state == SGT_dynamic and not self.check_owner(mfn, d, state):
                if taken:
                    self.give_back(mfn)
                return -errno.EPERM                     # Xen 4.1 marked it: xensim's check
            if state == SGT_none and not taken:
                if not self.take_frames(mfn, d):
                    return -errno.EINVAL
                taken = True
                continue
            if state == SGT_dynamic and taken:
                self.give_back(mfn)
                taken = False
            if count == SGT_count_mask:
                if taken:
                    self.give_back(mfn)
                return -errno.EINVAL
            nx = SGT_mark | (count + 1)
            if self.cas_count(spdx, x, nx):
                break
        return 0

    def unmark_superpage(self, mfn: int, d: int) -> int:
        spdx = self.spdx(mfn)
        while True:
            x = self.read_count(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if state != SGT_mark:
                return -errno.EINVAL
            if not self.host.faithful and not self.host.is_marked(mfn, d):
                return -errno.EPERM                     # another domain's mark: Xen 4.1 unmarked it
            last = count == 1
            nx = SGT_none if last else SGT_dynamic | (count - 1)
            if self.cas_count(spdx, x, nx):
                break
        if last:
            self.give_back(mfn)
        return 0

    def expect(self, exp: Expectation, pse: PseEntries) -> None:
        self.expect_superpages(exp, pse, None)

    def expect_superpages(self, exp: Expectation, pse: PseEntries,
                          mfns: list[int] | None) -> None:
        """One word per mapped or marked superpage (``mfns``; None: every one) and a run
        of 512 writable references."""
        marks = self.host.marks()
        for mfn in set(pse) | set(marks) if mfns is None else mfns:
            if mfn not in pse and mfn not in marks:
                continue
            ro, rw, domid = pse.get(mfn, (0, 0, marks.get(mfn)))
            count = ro + rw + (1 if mfn in marks else 0)
            state = SGT_mark if mfn in marks else SGT_dynamic
            exp.spage[self.spdx(mfn)] = (state | count,)
            exp.run(mfn, SUPERPAGE_PAGES, marks.get(mfn, domid), PGT_writable_page)
