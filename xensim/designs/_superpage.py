"""The superpage path: one small interface, and the designs behind it.

An L2 entry with PSE maps 512 frames at once. How the references of those 512
frames are counted is the design question of the 2010 xen-devel thread. Every
design implements :class:`SuperpageDesign`:

* ``get_superpage(mfn, d, rw)`` when a PSE entry is validated (0 or -errno),
* ``put_superpage(mfn, rw)`` when it goes away,
* ``mark_superpage`` / ``unmark_superpage`` for MMUEXT_MARK_SUPER / UNMARK_SUPER,
* ``expect(exp, pse)`` for the auditor: what the design must hold, given the
  live PSE entries (counted from the page tables) and the marks (the host's);
  ``expect_superpages(exp, pse, mfns)`` the same for some superpages only (the
  incremental auditor's; a default built on ``expect`` serves any design),
* hooks inside the request, each a no-op by default: ``relinquish(domid)`` at domain
  destruction (after the host has unmarked the domain's marks), ``frames_leaving``
  (decrease_reservation), ``type_conflict`` (a type change refused by typed
  references), for a design that holds references no mapping accounts for.

A design is built with its host (``designs._host.SuperpageHost``, ``self.host``): the
one way it reads and changes the machine.

The interface also holds everything the rest of xensim knows of a design, so that no
module outside a design's own file names one: its name, description, docs page and
colour; its words per superpage, their names and how they decode (trace, inspect);
its per-superpage states (the superpage picture); its metadata rows (the overhead
report); whether it supports PSE and MARK, and whether it is known to be buggy.

``mfn`` is the superpage's first frame: 512-aligned and valid (the caller checks).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import numpy as np

from ..mem import SuperpageTable
from ._host import Expectation, SuperpageHost

#: the live PSE entries of the page tables, as ``expect`` is given them: the superpage's
#: first mfn -> [read-only entries, read-write entries, the domid whose tables hold them
#: (of several, the first table's)]
PseEntries = dict[int, list[int]]

#: a superpage's state as the superpage picture draws it: no mapping, mapped, MARK_SUPER'd
SPAGE_NONE, SPAGE_DYNAMIC, SPAGE_MARK = 0, 1, 2
SPAGE_STATE_NAMES = {SPAGE_NONE: "none", SPAGE_DYNAMIC: "dynamic", SPAGE_MARK: "mark"}


@dataclass
class MetadataRow:
    """One row of the overhead report: a layout of a design's refcount metadata on a machine.

    ``color`` / ``dashed``: how the overhead picture draws it (``None``: the design's
    colour). ``shared``: a layout several designs use (xensim's sparse superpage table of
    one or two words): such rows come after every design's own rows, smallest first, and
    rows of the same ``name`` from several designs are one row (the first).
    """
    name: str
    bytes: int
    unit: str
    description: str
    #: for sparse tables: bytes of the entries themselves, before chunk rounding
    entry_bytes: int | None = None
    color: str | None = None
    dashed: bool = False
    shared: bool = False


@dataclass
class SuperpageStates:
    """What a design's words say of a set of superpages, for the superpage picture."""
    #: where the words were read, in words
    source: str
    #: SPAGE_NONE / SPAGE_DYNAMIC / SPAGE_MARK per superpage (int8)
    state: np.ndarray
    #: the design's count per superpage (every word's count added, a mark's one count included)
    count: np.ndarray


class SuperpageDesign:
    """The interface. ``words_per_entry``: the 64-bit words of one superpage's entry (the
    width of the machine's superpage table; a counting design's count words).

    ``supports_pse = False`` is a hypervisor with no PV superpages at all (Xen 4.10
    on: the ``none`` design): the page-table code refuses every present L2 entry
    with _PAGE_PSE through the L2 disallow mask (-EINVAL, before the fast path and
    any reference), in mod_l2_entry and in an L2 table's validation, whatever the
    allowsuperpage option or faithful mode say; MMUEXT_MARK_SUPER / UNMARK_SUPER
    are -EOPNOTSUPP before any other check, whatever the release; the guest kernel
    reads it (``Machine.pv_superpages``) and maps 2 MiB through an L1 table.
    get_superpage / put_superpage are then never called.

    ``supports_mark = False`` makes MMUEXT_MARK_SUPER / UNMARK_SUPER behave as
    with the allowsuperpage option off (the release's error code). ``buggy``
    flags a design that is known to be wrong (under concurrency). ``stats``
    has exactly four keys, counting get_superpage / put_superpage (mappings)
    only: ``slow_get`` (0 -> 1 transitions that took the 512 frame
    references), ``slow_put`` (1 -> 0 transitions that dropped them),
    ``fast_get`` and ``fast_put`` (count changes with no frame reference). A
    MARK_SUPER / UNMARK_SUPER that takes or drops the 512 references is not
    counted here: pinning is the cure the comparison measures, not a cost.
    """
    name = "abstract"
    words_per_entry = 1
    supports_pse = True
    supports_mark = True
    buggy = False
    description = ""
    #: the design's page in the documentation (a path in the source tree, or a URL)
    doc = ""
    #: the design's colour in every picture (None: one of PALETTE, by registration order)
    color: str | None = None
    #: the design ``xensim`` simulates when a config names none (exactly one built-in)
    default = False
    #: where the per-superpage words live: "spage_table" (the machine's sparse superpage
    #: table, words 0 .. len(word_names)-1 of the entry), "page_info" (an extra field of the
    #: superpage's first frame: the design provides ``field(mfn)``, ``fields()``,
    #: ``field_views()``), or None (the design keeps no word per superpage)
    words_in: str | None = "spage_table"
    #: the names of the words, as trace and inspect print them
    word_names: tuple[str, ...] = ("word",)
    #: does the design keep a mapping count (its slow path is the count's 0 -> 1 and 1 -> 0)?
    #: False: every mapping takes, every unmapping drops, the 512 references
    keeps_count = True
    #: inspect's text for a superpage when the design keeps no word (``words_in`` None)
    no_words_text = "no per-superpage word"
    #: may the design's 0 -> 1 (the loop taking the 512 frames' references, in
    #: ``get_superpage`` and ``mark_superpage``) be preempted? False, Xen's: 4.1 to 4.8's
    #: get_spage_pages takes each frame with get_page_and_type, whose get_page_type is
    #: never preemptible, and asks no hypercall_preempt_check() (docs/xen-facts.md,
    #: section 5d). True: where the call can be continued (a PSE entry written by
    #: mmu_update, MMUEXT_MARK_SUPER) the host offers ``preempt_check``, and the design
    #: may stop with -ERESTART, its progress kept in its own words, to be continued when
    #: the guest re-issues the call (docs/designs/writing-a-design.md)
    preemptible_take = False

    def __init__(self, host: SuperpageHost) -> None:
        #: the machine as the design sees it: every read and change goes through it
        self.host = host
        self.stats = {"slow_get": 0, "slow_put": 0, "fast_get": 0, "fast_put": 0}

    def spdx(self, mfn: int) -> int:
        return self.host.pdx(mfn) >> 9

    def owned_by(self, mfn: int, d: int) -> bool:
        """All 512 frames are owned by ``d`` (read-only check, vectorised)."""
        return self.host.owns(mfn, d)

    def get_superpage(self, mfn: int, d: int, rw: bool) -> int:
        raise NotImplementedError

    def put_superpage(self, mfn: int, rw: bool) -> None:
        raise NotImplementedError

    def mark_superpage(self, mfn: int, d: int) -> int:
        return -errno.EOPNOTSUPP

    def unmark_superpage(self, mfn: int, d: int) -> int:
        return -errno.EOPNOTSUPP

    def snapshot(self) -> tuple:
        """State the design keeps outside the superpage table (compared after failed calls).
        A design that keeps any also implements :meth:`restore`."""
        return ()

    def restore(self, snapshot: tuple) -> None:
        """Hold exactly the state of ``snapshot`` (one of :meth:`snapshot`'s): the fuzzer
        puts a machine back before it issues a batch's requests one by one."""
        if snapshot != ():
            raise NotImplementedError(
                f"the {self.name} design keeps state of its own (snapshot) but has no restore")

    def get_superpages(self, mfns: np.ndarray, d: int, rw: np.ndarray) -> int:
        """Batched get_superpage over distinct superpages, in order (optional).

        Applies the longest prefix of ``mfns`` whose get_superpage would all
        succeed and returns its length; the first one that would not is left
        untouched, for the caller to run the ordinary way (and learn its errno).
        The result must equal calling get_superpage on each in order. The
        default vectorises nothing (returns 0). This is the design's accelerator:
        mmu_update's PSE batch accelerator (xensim.xen.accel.PseBatch) is its only
        caller, while the machine is vectorised; tests/xen/test_accel.py runs every
        registered design's against get_superpage one by one.
        """
        return 0

    def put_superpages(self, mfns: np.ndarray, rw: np.ndarray) -> int:
        """Batched put_superpage over distinct superpages, in order (optional); see above."""
        return 0

    def metadata_bytes(self) -> int:
        """Bytes of refcount metadata this design needs on the machine.

        The default is the superpage table it uses: ``words_per_entry`` 8-byte
        words per 2 MiB superpage with RAM, in xensim's sparse 512-entry chunks
        (the ``sparse-8B`` / ``sparse-16B`` rows of the overhead report).
        """
        return SuperpageTable.bytes_for(self.host.ram_superpages(), self.words_per_entry)

    def metadata_rows(self) -> list[MetadataRow]:
        """The design's rows of the overhead report (default: one row, its name and
        :meth:`metadata_bytes`)."""
        nbytes = self.metadata_bytes()
        unit = f"{8 * self.words_per_entry} B/2 MiB with RAM" if nbytes else "none"
        return [MetadataRow(self.name, nbytes, unit, self.description)]

    # -- what the words say (trace, inspect, the superpage picture) ----------------------
    def words(self, mfn: int) -> list[tuple[str, int]] | None:
        """The superpage's words now, as (name, value); None when it has none (the design
        keeps no word, or the superpage has no entry: not RAM)."""
        if self.words_in != "spage_table":
            return None
        host, spdx = self.host, self.spdx(mfn)
        if not host.has_words(spdx):
            return None
        return [(n, host.read_word(spdx, w)) for w, n in enumerate(self.word_names)]

    @classmethod
    def word_text(cls, word: int, value: int) -> str:
        """Word ``word`` holding ``value``, as the design reads it (default: the number).
        A classmethod, as are word_fields and word_problem: a trace file is read back
        with no machine."""
        return str(int(value))

    @classmethod
    def word_fields(cls, word: int, value: int) -> dict:
        """The decoded fields of a word, for inspect's JSON (default: none)."""
        return {}

    @classmethod
    def word_problem(cls, word: int, value: int) -> str | None:
        """What is wrong with a word no correct run can hold (the explorer's check after
        each step), or None. The count's underflow is checked by the explorer itself."""
        return None

    def superpage_states(self, spdx: np.ndarray, mappings: np.ndarray) -> SuperpageStates:
        """The state and count of superpages ``spdx`` (pdx >> 9, each with RAM) from the
        design's words. ``mappings``: the live 2 MiB entries mapping each (from the page
        tables); the default, for a design that keeps no word, draws those."""
        state = np.where(mappings > 0, SPAGE_DYNAMIC, SPAGE_NONE).astype(np.int8)
        return SuperpageStates("no per-superpage metadata: live 2 MiB entries in the page tables",
                               state, np.asarray(mappings, dtype=np.int64).copy())

    def activity(self) -> tuple[int, int] | None:
        """(superpages whose words are not all zero, their counts added up), cheaply enough
        to ask after every operation; None: the design keeps no word (the caller counts
        the live 2 MiB entries instead)."""
        return None

    # -- hooks inside the request (defaults: nothing) ---------------------------------------
    #: the hooks a design may override; the host calls only those it does
    HOOKS = ("relinquish", "frames_leaving", "type_conflict")

    def hooks(self) -> tuple[str, ...]:
        """The hooks of :data:`HOOKS` this design overrides."""
        return tuple(h for h in self.HOOKS
                     if getattr(type(self), h) is not getattr(SuperpageDesign, h))

    def relinquish(self, domid: int) -> None:
        """Domain ``domid`` is being destroyed (domain_relinquish_resources), before its
        tables are devalidated and its frames freed. The host has already unmarked each of
        its marks through :meth:`unmark_superpage`. Drop whatever else the design holds
        for the domain (references it keeps with no mapping). Default: nothing."""

    def frames_leaving(self, domid: int, mfn: int, n: int) -> None:
        """decrease_reservation (a guest giving memory back: ballooning) is about to remove
        frames [mfn, mfn+n) from domain ``domid`` (one extent; frames that are not the
        domain's or not RAM make the removal stop there). Inside the request: drop the
        references the design keeps on them, else the frames cannot be freed. Default:
        nothing."""

    def type_conflict(self, mfn: int, have: int, want: int) -> bool:
        """get_page_type asks for type ``want`` on frame ``mfn``, which holds typed
        references of type ``have`` (``PGT_*``): the type change is refused unless they
        go. Inside the request: return True after dropping references the design keeps on
        the frame (Xen's code then looks at the frame again), False to let the refusal
        stand. Default: False."""
        return False

    def expect(self, exp: Expectation, pse: PseEntries) -> None:
        raise NotImplementedError

    def expect_superpages(self, exp: Expectation, pse: PseEntries, mfns: list[int]) -> None:
        """What :meth:`expect` says of the superpages whose first frames are ``mfns``
        (the incremental auditor's question; ``pse`` holds their live PSE entries).

        It may say more: the auditor keeps only what concerns ``mfns`` (runs on their
        frames, their words, conflicts on them). The default asks :meth:`expect` with
        ``pse`` restricted to ``mfns``, which suffices for a design whose expectation
        of a superpage depends on that superpage's entries and marks alone; the
        built-in designs answer for ``mfns`` only."""
        self.expect(exp, {mfn: pse[mfn] for mfn in mfns if mfn in pse})


#: xensim's sparse superpage table of one or two words per entry, as an overhead row:
#: (description, colour, dashed) by entry width
_SPARSE_ROWS = {
    1: ("xensim's sparse table, 512-entry chunks where RAM is", "#1b5e20", True),
    2: ("the same with two counts (read-only, read-write)", None, False),
}


def sparse_table_row(host: SuperpageHost, words: int) -> MetadataRow:
    """The shared overhead row ``sparse-8B`` / ``sparse-16B``: xensim's sparse superpage
    table with ``words`` 8-byte words per entry on ``host``'s machine (the designs that
    keep their words there return it from ``metadata_rows``)."""
    spdx = host.ram_superpages()
    description, color, dashed = _SPARSE_ROWS[words]
    return MetadataRow(f"sparse-{8 * words}B", SuperpageTable.bytes_for(spdx, words),
                       f"{8 * words} B/2 MiB with RAM", description, 8 * words * len(spdx),
                       color=color, dashed=dashed, shared=True)
