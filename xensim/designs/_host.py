"""The port a design is given: :class:`SuperpageHost`, everything a design may read and do.

A design never holds the machine. It is built with a host (``SuperpageDesign(host)``,
kept as ``self.host``) and reaches frames, references, its words, owners, marks and the
request's context through it alone. The machine implements the host (xensim.xen); a
test may give a design a host of its own.

Numbers: an ``mfn`` is a machine frame number; a *page* is a frame's page_info index
(its PDX, ``host.pdx(mfn)``); a superpage's ``spdx`` is ``pdx >> 9``, the index of its
superpage-table entry. A *run* is the 512 frames of one superpage, named by its first
frame. ``d`` / ``domid`` is a domain id. A reference ``type`` is a ``PGT_*`` type
(``xensim.mem.PGT_writable_page``) or None (a general reference only, Xen's get_page).

Marks (MMUEXT_MARK_SUPER) are the host's records, not the design's: the hypercall layer
records a mark when ``mark_superpage`` returns 0 and forgets it when
``unmark_superpage`` returns 0; a design reads them (:meth:`SuperpageHost.is_marked`,
:meth:`SuperpageHost.marks`) and the auditors read the same records.

:class:`Expectation` is the shape of the ``exp`` argument of ``expect`` /
``expect_superpages``: what the auditor is told a design holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Protocol

import numpy as np


class Expectation(Protocol):
    """What a design tells the auditor it holds (``expect(exp, pse)``'s ``exp``)."""

    #: spdx -> the superpage's words the design must hold (a tuple of ``words_per_entry``
    #: ints), for a design whose words are in the superpage table
    spage: dict[int, tuple[int, ...]]

    def run(self, mfn: int, n: int, domid: int | None, type: int | None) -> None:
        """The design holds one reference on each of frames [mfn, mfn+n) for ``domid``: a
        general one, and a typed one of ``type`` unless it is None."""

    def conflict(self, mfn: int, what: str, want: str, have: str) -> None:
        """A difference the design found itself (words kept outside the superpage table):
        reported by the auditor as ``what`` at ``mfn``, expected ``want``, found ``have``."""


class SuperpageHost(ABC):
    """What a superpage design may read and do on the machine that runs it.

    Attributes read by a design: ``faithful`` (the hypervisor reproduces Xen's known
    bugs instead of refusing them), ``words_per_entry`` (the width of the superpage
    table's entries), ``undoing`` (True while the running request is failing part-way
    and gives back what it took: a ``put_superpage`` then undoes a ``get_superpage`` of
    the same request, it is no unmapping), ``cpu`` (the simulated CPU running the
    request: 0 but under the explorer).
    """

    faithful: bool = False
    words_per_entry: int = 1
    undoing: bool = False
    cpu: int = 0
    #: Xen's ``hypercall_preempt_check()`` for the running call, or None. Set only while a
    #: design that declares ``preemptible_take`` runs where its -ERESTART is continued (a
    #: PSE entry written by mmu_update, MMUEXT_MARK_SUPER) and the machine's preemption
    #: source (``hypervisor.preempt``) can answer true: the one check every preemption
    #: point of the machine asks. None: the loop is never preempted (take the rest at once)
    preempt_check: Callable[[], bool] | None = None

    # -- frame numbers ---------------------------------------------------------------
    @abstractmethod
    def pdx(self, mfn: int) -> int:
        """The page (page_info index) of frame ``mfn``."""

    @abstractmethod
    def pdx_many(self, mfns: np.ndarray) -> np.ndarray:
        """:meth:`pdx` of many frames (int64)."""

    @abstractmethod
    def mfn(self, pdx: int) -> int:
        """The frame of page ``pdx``."""

    def spdx(self, mfn: int) -> int:
        """The superpage-table index of the superpage whose first frame is ``mfn``."""
        return self.pdx(mfn) >> 9

    # -- the 512 frames' references, by run ------------------------------------------------
    @abstractmethod
    def take(self, mfn: int, d: int, type: int | None, start: int = 0,
             stop: int = 512) -> bool:
        """get_page (and get_page_type(``type``) unless None) on each of the 512 frames
        from ``mfn`` (frames ``start`` .. ``stop`` - 1 of them: a preemptible loop's
        part), for domain ``d``, all or nothing: False, nothing taken, if any frame
        refuses (free, another owner, another type, a count at its limit)."""

    @abstractmethod
    def drop(self, mfn: int, typed: bool, start: int = 0, stop: int = 512) -> None:
        """put_page (after put_page_type if ``typed``) on each of the 512 frames from
        ``mfn`` (frames ``start`` .. ``stop`` - 1 of them): what :meth:`take` took. A frame
        whose count reaches 0 is freed."""

    @abstractmethod
    def can_take_runs(self, pages: np.ndarray, d: int, type: int | None) -> np.ndarray:
        """Batch forms (``get_superpages``): would :meth:`take` succeed on the runs whose
        first pages are ``pages`` (int64, distinct runs)? One bool each; nothing taken."""

    @abstractmethod
    def take_runs(self, pages: np.ndarray, d: int, type: int | None) -> None:
        """:meth:`take` on each run, in order (every one checked by :meth:`can_take_runs`)."""

    @abstractmethod
    def can_drop_runs(self, pages: np.ndarray, typed: bool) -> np.ndarray:
        """Could :meth:`drop` be done on each run without a count going below 0?"""

    @abstractmethod
    def drop_runs(self, pages: np.ndarray, typed: bool) -> None:
        """:meth:`drop` on each run, in order."""

    # -- the design's words in the superpage table ---------------------------------------
    @abstractmethod
    def has_words(self, spdx: int) -> bool:
        """Does superpage ``spdx`` have an entry (it holds RAM)?"""

    @abstractmethod
    def read_word(self, spdx: int, word: int = 0) -> int:
        """Load word ``word`` of superpage ``spdx``'s entry (an atomic step)."""

    @abstractmethod
    def write_word(self, spdx: int, value: int, word: int = 0) -> None:
        """Store ``value`` (an atomic step; traced as a plain store)."""

    @abstractmethod
    def cmpxchg_word(self, spdx: int, old: int, new: int, word: int = 0) -> bool:
        """Compare-and-exchange: store ``new`` if the word holds ``old``; did it? (an
        atomic step; the tracer and the explorer's scenarios see each one)."""

    @abstractmethod
    def wait_word(self, spdx: int, seen: int, word: int = 0) -> None:
        """Spin until the word differs from ``seen`` (another CPU holds a lock): one
        step the explorer runs only once it differs; run alone, a RefcountBug."""

    @abstractmethod
    def word_slots(self, spdx: np.ndarray) -> np.ndarray:
        """Batch forms: the table's slot of each superpage (int64, -1: no entry)."""

    @abstractmethod
    def read_slots(self, slots: np.ndarray, word: int = 0) -> np.ndarray:
        """Word ``word`` of each slot (uint64); no atomic step (a batch runs alone)."""

    @abstractmethod
    def write_slots(self, slots: np.ndarray, values: np.ndarray, word: int = 0) -> None:
        """Store each slot's word at once (traced as one ``spage_write_many``)."""

    @abstractmethod
    def words_of(self, spdx: np.ndarray) -> np.ndarray:
        """The words of superpages ``spdx`` (each with RAM): (words_per_entry, n) uint64."""

    @abstractmethod
    def busy_words(self) -> np.ndarray:
        """The words of every superpage whose words are not all zero, in spdx order:
        (words_per_entry, n) uint64."""

    @abstractmethod
    def busy_superpages(self) -> np.ndarray:
        """The spdx of every superpage whose words are not all zero, ascending (int64)."""

    # -- words kept elsewhere (an extra page_info field): the events they owe ------------
    @abstractmethod
    def field_step(self, kind: str, page: int) -> None:
        """An atomic step on the field of ``page`` (``kind``: ``"pi_load"`` before a
        load, ``"pi_cas"`` before a cmpxchg): where the explorer may switch CPUs."""

    @abstractmethod
    def field_cmpxchged(self, page: int, old: int, found: int, new: int) -> None:
        """Report a cmpxchg of the field of ``page`` (expected ``old``, ``found``,
        ``new`` stored if they were equal) to the tracer and the explorer's scenarios."""

    @abstractmethod
    def fields_written(self, pages: np.ndarray, old: Callable[[], np.ndarray],
                       new: np.ndarray) -> None:
        """Report plain stores of ``new`` into the fields of ``pages`` (a batch) to the
        tracer, before they are made; ``old()`` gives the values they replace (called
        only when someone listens)."""

    @abstractmethod
    def group_has_ram(self, page: int) -> bool:
        """Does the PDX group of ``page`` hold RAM (does it have page_info at all)?"""

    # -- owners -------------------------------------------------------------------------
    @abstractmethod
    def owner(self, mfn: int) -> int:
        """The owner (domid) of frame ``mfn`` now."""

    @abstractmethod
    def owners(self, pages: np.ndarray) -> np.ndarray:
        """The owners of ``pages`` (int64)."""

    @abstractmethod
    def owns(self, mfn: int, d: int) -> bool:
        """Does ``d`` own all 512 frames from ``mfn``?"""

    # -- marks (the host's records) -------------------------------------------------------
    @abstractmethod
    def is_marked(self, mfn: int, d: int) -> bool:
        """Has domain ``d`` MARK_SUPER'd superpage ``mfn`` (and not unmarked it)?"""

    @abstractmethod
    def marks(self) -> dict[int, int]:
        """Every mark: superpage mfn -> the domid that marked it."""

    @abstractmethod
    def marks_of(self, domid: int) -> list[int]:
        """The superpages domain ``domid`` has marked, in mfn order."""

    # -- reports -------------------------------------------------------------------------
    @abstractmethod
    def report_violation(self, text: str) -> None:
        """Record what faithful mode let through that real Xen gets wrong (a count
        wrapping, references dropped that were never taken): the run reports it."""

    # -- the machine, for the overhead report ---------------------------------------------
    @abstractmethod
    def ram_superpages(self) -> np.ndarray:
        """The spdx of every 2 MiB superpage holding RAM (int64)."""

    @abstractmethod
    def machine_extent(self) -> tuple[int, int, str, int]:
        """(max_pfn, max_pdx, the PDX mode's name, PDX groups with RAM): what a dense
        layout of metadata would cost."""
