"""``xen-4.1-preemptible``: Xen 4.1's superpage word, its 0 -> 1 preemptible.

    xensim run CONFIG --design-file examples/designs/preemptible_take.py

Xen 4.1's get_superpage / mark_superpage take the 512 frames' references in one
loop (get_spage_pages) that no hypercall_preempt_check() interrupts. This design is
the same word (``xen-4.1``: state in bits 62-63, a count in bits 0-60) with the loop
made preemptible, as alloc_l2_table's loop over its entries is:

* before frame ``i`` (but the first this call takes) it asks the machine's one
  preemption check (``self.host.preempt_check``: the same ``hypervisor.preempt``
  answers every check point of the machine). True: it stores its progress in the
  superpage's own word, ``SGT_partial | i`` (the fourth value of the two state bits,
  unused by Xen 4.1; the count bits hold how many frames are taken, as a
  PGT_partial table's ``nr_validated_ptes`` does), and answers -ERESTART: the
  mmu_update (or mmuext_op) becomes a continuation the guest kernel re-issues;
* a 0 -> 1 first claims the word (``SGT_partial | TAKING | n``, a cmpxchg), then
  takes frames, then stores the result (``DYNAMIC|1``, ``MARK|1``, or the progress).
  A CPU that finds the word claimed waits (``host.wait_word``), as Xen's
  __get_page_type spins on a table another CPU validates; one that finds it
  ``partial`` and unclaimed takes it over and continues from ``n``, as the next
  get_page_type of a PGT_partial table does, whoever issues it: a second vCPU's map
  may finish a preempted map of the first vCPU, whose continuation then takes the
  fast path;
* a frame refused (free, another owner, another type) gives back what this call took
  and leaves the word as it found it (``partial | n0`` from an earlier call, or
  none): xensim's exact undo, as a failed continuation of a preempted validation;
* references of a partial superpage belong to no mapping: ``relinquish`` gives them
  back when the domain dies with the guest never having continued.

``xen-4.1-preemptible-unclaimed`` (``buggy``) continues a partial superpage without
claiming it and stores its progress with a plain store: two vCPUs continuing the same
preempted take both take the frames after ``n`` (scenarios/preempted-cold-map.yaml,
docs/designs/xen-4.1-preemptible.md).
"""

from __future__ import annotations

import errno

import numpy as np

import xensim
from xensim.mem import (PGT_writable_page, SGT_count_mask, SGT_dynamic, SGT_mark, SGT_none,
                        SGT_type_mask, SGT_type_shift)
from xensim.xen import ERESTART

#: the fourth state: ``n`` frames (bits 0-9) taken by a preempted or running 0 -> 1
SGT_partial = 3 << SGT_type_shift
#: bit 12 of a partial word: a CPU is taking frames now (claimed)
TAKING = 1 << 12
TAKEN = (1 << 10) - 1
SUPERPAGE = 512
_STATES = {0: "none", 1: "mark", 2: "dynamic", 3: "partial"}
_U = np.uint64


class PreemptibleTake(xensim.Xen41):
    """Xen 4.1's word; the 512-frame loop of its 0 -> 1 preemptible, its progress in the word."""
    name = "xen-4.1-preemptible"
    description = ("Xen 4.1's spage_info with a preemptible 0 -> 1: progress in the word "
                   "(partial|n), continued by the re-issued call")
    doc = "docs/designs/xen-4.1-preemptible.md"
    color = "#6a3d9a"
    default = False
    preemptible_take = True
    #: claim a partial word before continuing it (the unclaimed variant does not)
    claims = True

    # -- what the word says ---------------------------------------------------------------
    @classmethod
    def word_text(cls, word: int, value: int) -> str:
        """``partial/200`` (200 frames taken, no CPU at it), ``taking/200``, else Xen 4.1's."""
        value = int(value)
        if value & SGT_type_mask == SGT_partial:
            return f"{'taking' if value & TAKING else 'partial'}/{value & TAKEN}"
        return super().word_text(word, value)

    @classmethod
    def word_fields(cls, word: int, value: int) -> dict:
        value = int(value)
        if value & SGT_type_mask == SGT_partial:
            return {"state": "partial", "taken": value & TAKEN, "taking": bool(value & TAKING)}
        return super().word_fields(word, value)

    @classmethod
    def word_problem(cls, word: int, value: int) -> str | None:
        value = int(value)
        if value & SGT_type_mask != SGT_partial:
            return None
        if value & SGT_count_mask & ~(TAKING | TAKEN) or value & TAKEN > SUPERPAGE:
            return "partial word corrupted"
        return None

    def superpage_states(self, spdx: np.ndarray, mappings: np.ndarray) -> xensim.designs.SuperpageStates:
        st = super().superpage_states(spdx, mappings)
        partial = (self.host.words_of(spdx)[0] >> _U(SGT_type_shift)) == _U(3)
        st.count[partial] = 0
        return st

    def activity(self) -> tuple[int, int]:
        w = self.host.busy_words()[0]
        counted = (w >> _U(SGT_type_shift)) != _U(3)
        return int(w.size), int((w[counted] & _U(SGT_count_mask)).sum())

    def metadata_rows(self) -> list:
        """Its own row: xen-4.1's word in the sparse table (8 B per 2 MiB with RAM), the
        progress kept in its count bits (no byte more)."""
        return xensim.SuperpageDesign.metadata_rows(self)

    # -- the 0 -> 1, preemptible ----------------------------------------------------------
    def _enter(self, mfn: int, d: int, mark: bool) -> int:
        """count + 1 (a map, or a mark when ``mark``): 0, -errno or -ERESTART."""
        host, spdx = self.host, self.spdx(mfn)
        while True:
            x = host.read_word(spdx)
            state, count = x & SGT_type_mask, x & SGT_count_mask
            if state == SGT_partial:
                if x & TAKING:
                    host.wait_word(spdx, x)                  # another CPU is taking the frames
                    continue
                if not self.check_owner(mfn, d, state):      # frames 0..n-1 are held for
                    return -errno.EPERM                      # their owner
                if not self.claims:
                    return self._take(mfn, d, spdx, x & TAKEN, mark)
                if host.cmpxchg_word(spdx, x, x | TAKING):
                    return self._take(mfn, d, spdx, x & TAKEN, mark)
                continue
            if mark and state == SGT_mark:
                return -errno.EINVAL
            if not self.check_owner(mfn, d, state):
                return -errno.EPERM
            if state == SGT_none:
                if host.cmpxchg_word(spdx, x, SGT_partial | TAKING):
                    return self._take(mfn, d, spdx, 0, mark)
                continue
            if count == SGT_count_mask:
                return -errno.EINVAL
            nx = SGT_mark | (count + 1) if mark else x + 1
            if host.cmpxchg_word(spdx, x, nx):
                if not mark:
                    self.stats["fast_get"] += 1
                return 0

    def _take(self, mfn: int, d: int, spdx: int, n0: int, mark: bool) -> int:
        """Frames ``n0`` .. 511 (the word claimed, ``partial | TAKING | n0``): asking the
        preemption check before each frame but the first; the word then holds the result."""
        host = self.host
        check = host.preempt_check
        i = n0
        if check is None:                                    # never preempted: the rest at once
            if host.take(mfn, d, PGT_writable_page, n0, SUPERPAGE):
                i = SUPERPAGE
        else:
            while i < SUPERPAGE:
                if i > n0 and check():                       # every call makes progress
                    self._store(spdx, SGT_partial | i)
                    return -ERESTART
                if not host.take(mfn, d, PGT_writable_page, i, i + 1):
                    break
                i += 1
        if i < SUPERPAGE:                                    # frame i refused: give back this
            if i > n0:                                       # call's, leave the word as found
                host.drop(mfn, True, n0, i)
            self._store(spdx, SGT_partial | n0 if n0 else SGT_none)
            return -errno.EINVAL
        self._store(spdx, (SGT_mark if mark else SGT_dynamic) | 1)
        if not mark:
            self.stats["slow_get"] += 1
        return 0

    def _store(self, spdx: int, value: int) -> None:
        """The claimed word's result: a plain store (nobody else writes a claimed word)."""
        self.host.write_word(spdx, value)

    def get_superpage(self, mfn: int, d: int, rw: bool) -> int:
        return self._enter(mfn, d, False)

    def mark_superpage(self, mfn: int, d: int) -> int:
        return self._enter(mfn, d, True)

    def put_superpage(self, mfn: int, rw: bool) -> None:
        x = self.host.read_word(self.spdx(mfn))
        if x & SGT_type_mask == SGT_partial:
            if not self.host.faithful:                       # a partial word counts no mapping
                raise xensim.RefcountBug(f"put_superpage on mfn {mfn:#x}: partial, held by no "
                                         f"mapping (word {x:#x})")
            self.host.report_violation(f"{self.name}: put_superpage of partial mfn {mfn:#x}")
            return
        super().put_superpage(mfn, rw)

    # -- batches: Xen 4.1's, up to the first partial superpage ------------------------------
    def _before_partial(self, mfns: np.ndarray) -> np.ndarray:
        pages = self.host.pdx_many(mfns)
        slots = self.host.word_slots(pages >> 9)
        ok = slots >= 0
        words = self.host.read_slots(np.where(ok, slots, 0))
        ok &= (words >> _U(SGT_type_shift)) != _U(3)
        return mfns[:ok.size if ok.all() else int(np.argmin(ok))]

    def get_superpages(self, mfns: np.ndarray, d: int, rw: np.ndarray) -> int:
        mfns = self._before_partial(np.asarray(mfns, dtype=np.int64))
        return super().get_superpages(mfns, d, rw[:mfns.size]) if mfns.size else 0

    def put_superpages(self, mfns: np.ndarray, rw: np.ndarray) -> int:
        mfns = self._before_partial(np.asarray(mfns, dtype=np.int64))
        return super().put_superpages(mfns, rw[:mfns.size]) if mfns.size else 0

    # -- a partial superpage's references: the auditors, the domain's death ----------------
    def _partial(self, mfns: list[int] | None) -> dict[int, int]:
        """The partial superpages among ``mfns`` (None: all): first mfn -> their word."""
        if mfns is None:
            spdx, words = self.host.busy_superpages(), self.host.busy_words()[0]
        else:
            spdx = np.array([self.spdx(mfn) for mfn in mfns], dtype=np.int64)
            words = self.host.words_of(spdx)[0] if spdx.size else np.zeros(0, _U)
        hit = (words >> _U(SGT_type_shift)) == _U(3)
        return {int(self.host.mfn(int(s) << 9)): int(w) for s, w in zip(spdx[hit], words[hit])}

    def expect_superpages(self, exp, pse, mfns: list[int] | None) -> None:
        """Xen 4.1's expectation of the mapped and marked superpages; a partial one (no
        mapping, no mark) holds its word and one reference on each of its first ``n``
        frames, for their owner."""
        super().expect_superpages(exp, pse, mfns)
        marks = self.host.marks()
        for mfn, x in self._partial(mfns).items():
            if mfn in pse or mfn in marks:
                continue                                     # Xen 4.1's words: a difference
            exp.spage[self.spdx(mfn)] = (x,)
            if x & TAKEN:
                exp.run(mfn, x & TAKEN, self.host.owner(mfn), PGT_writable_page)

    def relinquish(self, domid: int) -> None:
        """The domain dies: its partial superpages (calls it never continued) give back
        their frames' references."""
        for mfn, x in self._partial(None).items():
            if x & TAKING or self.host.owner(mfn) != domid:
                continue
            spdx = self.spdx(mfn)
            if self.host.cmpxchg_word(spdx, x, SGT_none) and x & TAKEN:
                self.host.drop(mfn, True, 0, x & TAKEN)


class UnclaimedTake(PreemptibleTake):
    """The same, but a partial superpage is continued without claiming it: broken."""
    name = "xen-4.1-preemptible-unclaimed"
    description = ("xen-4.1-preemptible continuing a partial take without claiming it "
                   "(broken: two continuations take the same frames)")
    color = "#cab2d6"
    buggy = True
    claims = False
