"""The superpage path: one small interface, and the designs behind it.

An L2 entry with PSE maps 512 frames at once. How the references of those 512
frames are counted is the design question of the 2010 xen-devel thread. Every
design implements :class:`SuperpageDesign`:

* ``get_superpage(mfn, d, rw)`` when a PSE entry is validated (0 or -errno),
* ``put_superpage(mfn, rw)`` when it goes away,
* ``mark_superpage`` / ``unmark_superpage`` for MMUEXT_MARK_SUPER / UNMARK_SUPER,
* ``relinquish(domain)`` at domain destruction (clear the domain's marks),
* ``expect(exp, pse)`` for the auditor: what the design must hold, given the
  live PSE entries (counted from the page tables) and the domains' marks;
  ``expect_superpages(exp, pse, mfns)`` the same for some superpages only (the
  incremental auditor's; a default built on ``expect`` serves any design).

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

from ..mem import PGC_count_mask, PGT_count_mask
from ..mem import SuperpageTable
from ..mem import SUPERPAGE_ORDER, SUPERPAGE_PAGES

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

    def get_superpages(self, mfns, d: int, rw) -> int:
        """Batched get_superpage over distinct superpages, in order (optional).

        Applies the longest prefix of ``mfns`` whose get_superpage would all
        succeed and returns its length; the first one that would not is left
        untouched, for the caller to run the ordinary way (and learn its errno).
        The result must equal calling get_superpage on each in order. The
        default vectorises nothing (returns 0).
        """
        return 0

    def put_superpages(self, mfns, rw) -> int:
        """Batched put_superpage over distinct superpages, in order (optional); see above."""
        return 0

    def metadata_bytes(self) -> int:
        """Bytes of refcount metadata this design needs on the machine.

        The default is the superpage table it uses: ``words_per_entry`` 8-byte
        words per 2 MiB superpage with RAM, in xensim's sparse 512-entry chunks
        (the ``sparse-8B`` / ``sparse-16B`` rows of the overhead report).
        """
        return SuperpageTable.bytes_for(self.m.spdx_with_ram(), self.words_per_entry)

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
        table, spdx = self.m.spage_table, self.spdx(mfn)
        if not table.has_entry(spdx):
            return None
        return [(n, table.read(spdx, w)) for w, n in enumerate(self.word_names)]

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

    def relinquish(self, dom) -> None:
        for mfn in sorted(dom.marked):
            self.unmark_superpage(mfn, dom.domid)

    def expect(self, exp, pse: dict[int, list[int]]) -> None:
        raise NotImplementedError

    def expect_superpages(self, exp, pse: dict[int, list[int]], mfns) -> None:
        """What :meth:`expect` says of the superpages whose first frames are ``mfns``
        (the incremental auditor's question; ``pse`` holds their live PSE entries).

        It may say more: the auditor keeps only what concerns ``mfns`` (runs on their
        frames, their words, conflicts on them). The default asks :meth:`expect` with
        ``pse`` restricted to ``mfns``, which suffices for a design whose expectation
        of a superpage depends on that superpage's entries and marks alone; the
        built-in designs answer for ``mfns`` only."""
        self.expect(exp, {mfn: pse[mfn] for mfn in mfns if mfn in pse})


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


#: every design, by name, in registration order (the order runs compare them in): the
#: built-ins, then installed packages' (entry points), then design files'. Look names up
#: with design_names() / design_class() / make_design(), which load the entry points first.
REGISTRY: dict[str, type[SuperpageDesign]] = {}

#: the interface's methods a design must define itself (the base class's raise)
REQUIRED_METHODS = ("get_superpage", "put_superpage", "expect")


def _shown(value) -> str:
    if isinstance(value, (int, float, str)) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def check_design(cls) -> str | None:
    """What is wrong with ``cls`` as a design (None: nothing): a SuperpageDesign subclass
    with a ``name`` (a non-empty string without spaces), ``words_per_entry`` 1 or 2 (the
    superpage table's entry), boolean flags, a string ``description``, ``words_in`` one
    of its three places, ``word_names`` strings (at most ``words_per_entry`` of them in the
    superpage table), and the interface's methods (:data:`REQUIRED_METHODS`) of its own."""
    if not (isinstance(cls, type) and issubclass(cls, SuperpageDesign)):
        return f"not a subclass of SuperpageDesign: {_shown(cls)}"
    name = cls.name
    if not isinstance(name, str) or not name or name.split() != [name]:
        return f"name must be a non-empty string without spaces, got {_shown(name)}"
    w = cls.words_per_entry
    if isinstance(w, bool) or not isinstance(w, int) or w not in (1, 2):
        return (f"words_per_entry must be 1 or 2 (64-bit words of its superpage-table "
                f"entry), got {_shown(w)}")
    for flag in ("supports_pse", "supports_mark", "buggy", "keeps_count", "default"):
        if not isinstance(getattr(cls, flag), bool):
            return f"{flag} must be True or False, got {_shown(getattr(cls, flag))}"
    if not isinstance(cls.description, str):
        return f"description must be a string, got {_shown(cls.description)}"
    if cls.words_in not in ("spage_table", "page_info", None):
        return (f"words_in must be 'spage_table', 'page_info' or None, got "
                f"{_shown(cls.words_in)}")
    names = cls.word_names
    if not (isinstance(names, tuple) and all(isinstance(n, str) for n in names)
            and (names or cls.words_in is None)):
        return (f"word_names must be a tuple of strings (one at least where words_in is "
                f"not None), got {_shown(names)}")
    if cls.words_in == "spage_table" and len(names) > w:
        return (f"word_names names {len(names)} words, but words_per_entry is {w} (the "
                f"words of its superpage-table entry)")
    missing = [m for m in REQUIRED_METHODS if getattr(cls, m) is getattr(SuperpageDesign, m)]
    if missing:
        return (f"does not define {', '.join(missing)} (a design defines "
                f"{', '.join(REQUIRED_METHODS)}; see docs/designs/writing-a-design.md)")
    return None


def register(cls: type[SuperpageDesign]) -> type[SuperpageDesign]:
    """Class decorator: make a design selectable by its ``name``. ValueError if the class
    is not a valid design (:func:`check_design`) or another class has the name."""
    problem = check_design(cls)
    if problem:
        raise ValueError(f"design class {getattr(cls, '__name__', cls)}: {problem}")
    taken = REGISTRY.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(f"design class {cls.__name__}: the name {cls.name!r} is taken by "
                         f"{taken.__module__}.{taken.__qualname__}")
    REGISTRY[cls.name] = cls
    return cls



#: colours for designs that name none, handed out in registration order
PALETTE = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
           "#8c6d31", "#843c39", "#7b4173")


#: xensim's sparse superpage table of one or two words per entry, as an overhead row:
#: (description, colour, dashed) by entry width
_SPARSE_ROWS = {
    1: ("xensim's sparse table, 512-entry chunks where RAM is", "#1b5e20", True),
    2: ("the same with two counts (read-only, read-write)", None, False),
}


def sparse_table_row(machine, words: int) -> MetadataRow:
    """The shared overhead row ``sparse-8B`` / ``sparse-16B``: xensim's sparse superpage
    table with ``words`` 8-byte words per entry on ``machine`` (the designs that keep
    their words there return it from ``metadata_rows``)."""
    spdx = machine.spdx_with_ram()
    description, color, dashed = _SPARSE_ROWS[words]
    return MetadataRow(f"sparse-{8 * words}B", SuperpageTable.bytes_for(spdx, words),
                       f"{8 * words} B/2 MiB with RAM", description, 8 * words * len(spdx),
                       color=color, dashed=dashed, shared=True)


def design_color(name: str) -> str:
    """The colour of design ``name`` in every picture: its own, else the next free one of
    :data:`PALETTE` in registration order."""
    cls = REGISTRY[name]
    if cls.color:
        return cls.color
    taken = {c.color for c in REGISTRY.values() if c.color}
    free = [c for c in PALETTE if c not in taken] or list(PALETTE)
    uncoloured = [n for n, c in REGISTRY.items() if not c.color]
    return free[uncoloured.index(name) % len(free)]


def default_design() -> str:
    """The name of the design simulated when a config names none."""
    for name, cls in REGISTRY.items():
        if cls.default:
            return name
    return next(iter(REGISTRY))


def metadata_rows(machine) -> list[MetadataRow]:
    """Every registered design's overhead rows on ``machine``: the designs' own rows in
    registration order, then the shared layouts, smallest first; a row named twice is
    given once (the first), and a row without a colour gets its design's."""
    rows: dict[str, MetadataRow] = {}
    for name, cls in REGISTRY.items():
        for row in cls(machine).metadata_rows():
            if row.color is None:
                row.color = design_color(name)
            rows.setdefault(row.name, row)
    own = [r for r in rows.values() if not r.shared]
    return own + sorted((r for r in rows.values() if r.shared), key=lambda r: r.bytes)

