"""The machine's side of the design port: :class:`MachineHost` implements
``designs.SuperpageHost`` for a :class:`~xensim.xen.Machine`, and is all a design sees of it.

It also keeps what belongs to Xen around the design, not to a design: the marks
(MMUEXT_MARK_SUPER's records, kept in each domain's ``marked`` set, written here only),
the request's context (an undo in progress, the CPU), the design's hooks inside a
request (a frame leaving its guest, a type change refused) and ``put_spage_pages``,
Xen's put of a PSE entry with the allowsuperpage option off, where no design is asked.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from ..designs import SuperpageHost
from ..mem import PGC_count_mask, PGT_count_mask, SUPERPAGE_PAGES


class MachineHost(SuperpageHost):
    """A machine as a design's host. The word and reference operations are the
    superpage table's and the reference primitives' own (bound once: the fast path
    pays no call in between), so a design's steps emit exactly their events."""

    def __init__(self, machine):
        self._m = machine
        table, refs, ft = machine.spage_table, machine.refs, machine.frame_table
        self._table, self._refs, self._ft = table, refs, ft
        self.words_per_entry = table.words_per_entry
        self.undoing = False
        self.cpu = 0
        #: hypercall_preempt_check while a preemptible take may stop (see continuable)
        self.preempt_check = None
        #: a design hook acted in the running request (its check of the undo paths then
        #: leaves the frames the hook changed to the rollback)
        self.hooked = False
        # the superpage table's word operations themselves
        self.read_word = table.read
        self.write_word = table.write
        self.cmpxchg_word = table.cmpxchg
        self.wait_word = table.wait_change
        self.pdx = machine.mfn_to_pdx
        self.mfn = machine.pdx_to_mfn
        #: the events owed by words kept outside the table (see field_step)
        machine.events.attach(self, ("atomic_step", "spage_cmpxchg", "spage_write_many"))
        #: the design's hooks, None where it keeps the default (no call made)
        self.on_leave: Callable[[int, int, int], None] | None = None
        self.on_type_conflict: Callable[[int, int, int], bool] | None = None

    def attach_design(self, design) -> None:
        """Call the hooks ``design`` (the machine's SuperpageDesign) overrides from now on."""
        hooks = design.hooks()
        self.on_leave = design.frames_leaving if "frames_leaving" in hooks else None
        self.on_type_conflict = self._type_conflict if "type_conflict" in hooks else None
        self._m.refs.type_conflict = self.on_type_conflict

    @property
    def faithful(self) -> bool:
        return self._m.faithful

    # -- frame numbers -----------------------------------------------------------------
    def pdx(self, mfn: int) -> int:                       # bound in __init__
        return self._m.mfn_to_pdx(mfn)

    def mfn(self, pdx: int) -> int:                       # bound in __init__
        return self._m.pdx_to_mfn(pdx)

    def pdx_many(self, mfns: np.ndarray) -> np.ndarray:
        return np.asarray(self._m.mfn_to_pdx(np.asarray(mfns).astype(np.uint64)), dtype=np.int64)

    # -- references ------------------------------------------------------------------------
    def take(self, mfn: int, d: int, type: int | None, start: int = 0,
             stop: int = SUPERPAGE_PAGES) -> bool:
        return self._refs.get_pages_and_type(self._m.mfn_to_pdx(mfn) + start, stop - start, d,
                                             type).ok

    def drop(self, mfn: int, typed: bool, start: int = 0, stop: int = SUPERPAGE_PAGES) -> None:
        self._refs.put_pages_and_type(self._m.mfn_to_pdx(mfn) + start, stop - start,
                                      typed=typed)

    def can_take_runs(self, pages: np.ndarray, d: int, type: int | None) -> np.ndarray:
        return self._refs.runs_ok(pages, SUPERPAGE_PAGES, d, type)

    def take_runs(self, pages: np.ndarray, d: int, type: int | None) -> None:
        self._refs.get_runs_and_type(pages, SUPERPAGE_PAGES, d, type)

    def can_drop_runs(self, pages: np.ndarray, typed: bool) -> np.ndarray:
        return self._refs.put_runs_ok(pages, SUPERPAGE_PAGES, typed=typed)

    def drop_runs(self, pages: np.ndarray, typed: bool) -> None:
        self._refs.put_runs_and_type(pages, SUPERPAGE_PAGES, typed=typed)

    # -- words in the superpage table (read/write/cmpxchg/wait bound in __init__) ------------
    def has_words(self, spdx: int) -> bool:
        return self._table.has_entry(spdx)

    def read_word(self, spdx: int, word: int = 0) -> int:
        return self._table.read(spdx, word)

    def write_word(self, spdx: int, value: int, word: int = 0) -> None:
        self._table.write(spdx, value, word)

    def cmpxchg_word(self, spdx: int, old: int, new: int, word: int = 0) -> bool:
        return self._table.cmpxchg(spdx, old, new, word)

    def wait_word(self, spdx: int, seen: int, word: int = 0) -> None:
        self._table.wait_change(spdx, seen, word)

    def word_slots(self, spdx: np.ndarray) -> np.ndarray:
        return self._table.entry_indexes(spdx)

    def read_slots(self, slots: np.ndarray, word: int = 0) -> np.ndarray:
        return self._table.store[word, slots]

    def write_slots(self, slots: np.ndarray, values: np.ndarray, word: int = 0) -> None:
        self._table.write_many(slots, values, word)

    def words_of(self, spdx: np.ndarray) -> np.ndarray:
        return self._table.store[:, self._table.entry_indexes(spdx)]

    def busy_words(self) -> np.ndarray:
        return self._table.store[:, self._table.nonzero_entries()]

    def busy_superpages(self) -> np.ndarray:
        return self._table.spdx_of_entries(self._table.nonzero_entries())

    # -- words kept in page_info ---------------------------------------------------------
    atomic_step = spage_cmpxchg = spage_write_many = None

    def field_step(self, kind: str, page: int) -> None:
        if (step := self.atomic_step) is not None:
            step(kind, page, 0)

    def field_cmpxchged(self, page: int, old: int, found: int, new: int) -> None:
        if (cas := self.spage_cmpxchg) is not None:
            cas("page_info", page >> 9, 0, old, found, new, found == old)

    def fields_written(self, pages: np.ndarray, old: Callable[[], np.ndarray],
                       new: np.ndarray) -> None:
        if (ev := self.spage_write_many) is not None:
            ev("page_info", pages >> 9, 0, old(), np.array(new, dtype=np.uint64))

    def group_has_ram(self, page: int) -> bool:
        return self._ft.group_valid(page)

    # -- owners ----------------------------------------------------------------------------
    def owner(self, mfn: int) -> int:
        return self._ft.owner(self._m.mfn_to_pdx(mfn))

    def owners(self, pages: np.ndarray) -> np.ndarray:
        owner = self._ft.owner
        return np.array([owner(int(p)) for p in pages], dtype=np.int64)

    def owns(self, mfn: int, d: int) -> bool:
        _, _, owner = self._ft.read_slices(self._m.mfn_to_pdx(mfn), SUPERPAGE_PAGES)
        return bool((owner == d).all())

    # -- marks -------------------------------------------------------------------------------
    def is_marked(self, mfn: int, d: int) -> bool:
        return mfn in self._m.domains[d].marked

    def marks(self) -> dict[int, int]:
        return {mfn: dom.domid for dom in self._m.domains.values() for mfn in dom.marked}

    def marks_of(self, domid: int) -> list[int]:
        return sorted(self._m.domains[domid].marked)

    def continuable(self, fn, *args) -> int:
        """Run ``fn(*args)`` (the design's get_superpage or mark_superpage) at a call site
        whose -ERESTART becomes the hypercall's continuation: a design that declares
        ``preemptible_take`` is offered the machine's ``hypercall_preempt_check``
        (``preempt_check``) meanwhile, while that check can answer true."""
        m = self._m
        if not m.superpage.preemptible_take or (check := m.preempt.pending) is None:
            return fn(*args)
        was, self.preempt_check = self.preempt_check, check
        try:
            return fn(*args)
        finally:
            self.preempt_check = was

    def mark_superpage(self, mfn: int, d: int) -> int:
        """MMUEXT_MARK_SUPER: the design's mark_superpage (continuable: do_mmuext_op's loop
        passes -ERESTART on as its continuation); a mark recorded when it succeeds."""
        rc = self.continuable(self._m.superpage.mark_superpage, mfn, d)
        if rc == 0:
            self._m.domains[d].marked.add(mfn)
        return rc

    def unmark_superpage(self, mfn: int, d: int) -> int:
        """MMUEXT_UNMARK_SUPER: the design's unmark_superpage; the mark forgotten (whoever
        made it) when it succeeds."""
        rc = self._m.superpage.unmark_superpage(mfn, d)
        if rc == 0:
            for dom in self._m.domains.values():
                dom.marked.discard(mfn)
        return rc

    def relinquish(self, domid: int) -> None:
        """domain_relinquish_resources: the domain's marks undone, in mfn order, then the
        design's own ``relinquish``."""
        for mfn in self.marks_of(domid):
            self.unmark_superpage(mfn, domid)
        self._m.superpage.relinquish(domid)

    # -- the request's context and the hooks ---------------------------------------------------
    @contextmanager
    def undo(self) -> Iterator[None]:
        """A failing request gives back what it took (the puts inside are undos)."""
        was, self.undoing = self.undoing, True
        try:
            yield
        finally:
            self.undoing = was

    def frames_leaving(self, domid: int, mfn: int, n: int) -> None:
        """decrease_reservation is about to remove frames [mfn, mfn+n) from ``domid``."""
        if self.on_leave is not None:
            self.hooked = True
            self.on_leave(domid, mfn, n)

    def _type_conflict(self, page: int, have: int, want: int) -> bool:
        self.hooked = True
        return self._m.superpage.type_conflict(self._m.pdx_to_mfn(page), have, want)

    # -- reports and the machine -----------------------------------------------------------
    def report_violation(self, text: str) -> None:
        self._m.violations.append(text)

    def ram_superpages(self) -> np.ndarray:
        return self._m.spdx_with_ram()

    def machine_extent(self) -> tuple[int, int, str, int]:
        m = self._m
        return m.memmap.max_pfn, m.pdx.max_pdx, m.pdx.mode, self._ft.valid_groups


def put_spage_pages(m, mfn: int) -> None:
    """put_superpage with the allowsuperpage option off (Xen 4.1 to 4.8): no design, no
    superpage table (Xen allocates none then); put_page_and_type on each of the 512
    frames directly (Xen's put_spage_pages).

    A PSE entry cannot be made with the option off, so only a bug gets here: XSA-148's
    fast path (faithful 4.1 / 4.5) setting PSE on a live entry. The frames then hold
    none of the references this drops, except what the entry held before (an L1
    table's); in faithful mode a frame that cannot pay is recorded as a violation
    (Xen's counts would wrap) and skipped; otherwise an underflow is a RefcountBug.
    """
    refs, ft = m.refs, m.frame_table
    first = m.mfn_to_page(mfn)
    short = []
    for page in range(first, first + SUPERPAGE_PAGES):
        if m.faithful and not (ft.count_info(page) & PGC_count_mask
                               and ft.type_info(page) & PGT_count_mask):
            short.append(page)
            continue
        refs.put_page_and_type(page)
    if short:
        m.violations.append(f"put_superpage with allowsuperpage off: {len(short)} of mfn "
                            f"{mfn:#x}'s 512 frames drop references they never took")
