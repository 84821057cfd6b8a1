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

from ..mem import PGC_count_mask, PGT_count_mask
from ..mem import SuperpageTable
from ..mem import SUPERPAGE_ORDER, SUPERPAGE_PAGES


class SuperpageDesign:
    """The interface. ``words_per_entry``: the 64-bit words of one superpage's entry (the
    width of the machine's superpage table; a counting design's count words).

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

    def snapshot(self) -> tuple:
        """State the design keeps outside the superpage table (compared after failed calls)."""
        return ()

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

    def relinquish(self, dom) -> None:
        for mfn in sorted(dom.marked):
            self.unmark_superpage(mfn, dom.domid)

    def expect(self, exp, pse: dict[int, list[int]]) -> None:
        raise NotImplementedError


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
    superpage table's entry), boolean ``supports_mark`` and ``buggy``, a string
    ``description``, and the interface's methods (:data:`REQUIRED_METHODS`) of its own."""
    if not (isinstance(cls, type) and issubclass(cls, SuperpageDesign)):
        return f"not a subclass of SuperpageDesign: {_shown(cls)}"
    name = cls.name
    if not isinstance(name, str) or not name or name.split() != [name]:
        return f"name must be a non-empty string without spaces, got {_shown(name)}"
    w = cls.words_per_entry
    if isinstance(w, bool) or not isinstance(w, int) or w not in (1, 2):
        return (f"words_per_entry must be 1 or 2 (64-bit words of its superpage-table "
                f"entry), got {_shown(w)}")
    for flag in ("supports_mark", "buggy"):
        if not isinstance(getattr(cls, flag), bool):
            return f"{flag} must be True or False, got {_shown(getattr(cls, flag))}"
    if not isinstance(cls.description, str):
        return f"description must be a string, got {_shown(cls.description)}"
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
