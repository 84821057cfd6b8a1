"""PDX ("page index") compression: how Xen turns an MFN into a frame-table index.

Xen indexes ``frame_table`` (one ``struct page_info`` per frame) by a
*compressed* frame number, the PDX, so that large holes in the physical
address space cost no frame-table entries.  Three modes are modelled:

``none``
    ``pdx == mfn``.

``mask`` (Xen's classic ``pfn_pdx_hole_setup`` / ``pfn_pdx_compression_setup``)
    OR together, for every RAM range, its base PFN and the mask of the bits
    that vary inside it.  Starting the search at bit ``MAX_ORDER`` (bits
    0..MAX_ORDER-1 are never compressed, so every 2^MAX_ORDER-aligned block of
    frames stays contiguous in PDX space), find the longest run of zero bits
    that is followed by a set bit and squeeze it out::

        pdx = (pfn & bottom_mask) | ((pfn & top_mask) >> hole_shift)
        pfn = (pdx & bottom_mask) | ((pdx << hole_shift) & top_mask)

``offset`` (Xen 4.21.2 and 4.22; ``offset-4.21.0``: 4.21.0 and 4.21.1)
    RAM regions as the firmware lists them (bases aligned down to
    2^MAX_ORDER; only regions that then *overlap* are merged, touching ones
    stay apart) are given a slot of a 64-entry lookup table by some bits of
    their PFN, ``slot = (pfn >> pfn_index_shift) & 63``; consecutive regions
    that share a slot are merged; the regions are then laid out one after another in PDX space,
    each in a block of ``region_size = 2^pdx_index_shift`` PDXs (the largest
    region rounded up to a power of two, at least 2^MAX_ORDER)::

        pdx = pfn - pfn_pdx_lookup[(pfn >> pfn_index_shift) & 63]
        pfn = pdx + pdx_pfn_lookup[(pdx >> pdx_index_shift) & 63]

The two offset forms differ only in the moving bits of merged regions:
``offset`` takes each region's moving bits after the merge, over its whole
merged span (Xen's fix edf942201d, in 4.22.0, backported to 4.21.2 as
98b54de20a); ``offset-4.21.0`` takes them when a region is first kept, at its
own size, and of a region merged into the previous one only for the last one
listed, at that region's own size (the off-by-one the fix removed).

A mode that cannot compress a map, or whose compression would gain nothing
(``max_pdx`` not below ``max_pfn``), falls back to ``none`` and says why in
``fallback_reason``, as Xen does at boot.

Conventions:

* Input everywhere is ``frame_ranges``: RAM as half-open MFN ranges
  ``[(start, end), ...]``.  They are sorted and adjacent/overlapping ranges are
  merged here, so a firmware map's touching entries are accepted as given.
  The offset mode's set-up also takes ``regions``: the RAM ranges *as listed*
  (Xen's ``pfn_pdx_add_region``: one per firmware entry, start rounded down
  and end rounded up to whole frames, not merged); without them it uses
  ``frame_ranges``.  Touching regions change the chosen shifts: their moving
  bits are computed separately (docs/xen-facts.md, section 7).
* The mask search uses an initial "never compress" mask of the low MAX_ORDER
  bits, i.e. ``pdx_init_mask(0)`` as in Xen's ``tools/tests/pdx/test-pdx.c``.
  (Xen's x86 boot path passes the first RAM address at or above 4 GiB
  instead, which additionally protects the PFN bits below 4 GiB.)
* ``mfn_to_pdx``/``pdx_to_mfn`` take a Python int (or numpy integer scalar),
  returning a Python int, or an integer numpy array (or sequence), returning an
  array (``uint64`` for unsigned input, ``int64`` for signed input), computed
  without a Python loop.  Like Xen they do not check validity: for an MFN that
  ``covers()`` rejects the result is whatever Xen's formula yields (arithmetic
  modulo 2^64), which is what a model of a missing ``mfn_valid()`` check needs.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ._units import MAX_MFN, MAX_ORDER

__all__ = [
    "MODES",
    "OFFSET_TABLE_ORDER",
    "OFFSET_TABLE_SLOTS",
    "Pdx",
    "PdxMask",
    "PdxNone",
    "PdxNotApplicable",
    "PdxOffset",
    "PdxOffset4210",
    "make_pdx",
    "listed_regions",
    "normalize_frame_ranges",
]

MODES = ("none", "mask", "offset", "offset-4.21.0")

OFFSET_TABLE_ORDER = 6                          # CONFIG_PDX_OFFSET_TBL_ORDER default
OFFSET_TABLE_SLOTS = 1 << OFFSET_TABLE_ORDER    # 64 lookup-table entries
_SLOT_MASK = OFFSET_TABLE_SLOTS - 1

_BITS_PER_LONG = 64
_U64 = (1 << _BITS_PER_LONG) - 1
_ORDER_MASK = (1 << MAX_ORDER) - 1              # the PFN bits never compressed


class PdxNotApplicable(ValueError):
    """A compression mode cannot (usefully) compress this memory map.

    The message is the human reason; ``make_pdx`` stores it as the fallback
    reason of the ``PdxNone`` it returns instead.
    """


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _fill_mask(value: int) -> int:
    """All bits from the most significant set bit of ``value`` down to bit 0."""
    return (1 << value.bit_length()) - 1


def _region_mask(first: int, last: int) -> int:
    """Mask of the bits that vary among the frames ``first..last`` (inclusive)."""
    return _fill_mask(first ^ last)


def _bit_span(lo: int, hi: int) -> str:
    return f"bit {lo}" if lo == hi else f"bits {lo}-{hi}"


def normalize_frame_ranges(frame_ranges: Iterable[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Validate RAM frame ranges and return them sorted with touching ranges merged.

    Each range is a half-open ``(start, end)`` pair of MFNs with
    ``0 <= start < end <= MAX_MFN``.  Raises ValueError naming the bad range.
    """
    ranges: list[tuple[int, int]] = []
    for item in frame_ranges:
        try:
            start, end = item
        except (TypeError, ValueError):
            raise ValueError(f"a frame range must be a (start, end) pair, got {item!r}") from None
        for v in (start, end):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"frame range bounds must be integers, got {item!r}")
        start, end = int(start), int(end)
        if not 0 <= start < end:
            raise ValueError(f"frame range [{start:#x}, {end:#x}) is empty or negative")
        if end > MAX_MFN:
            raise ValueError(f"frame range [{start:#x}, {end:#x}) goes beyond the last "
                             f"MFN of a 52-bit physical address space ({MAX_MFN:#x})")
        ranges.append((start, end))
    if not ranges:
        raise ValueError("no RAM frame ranges given")
    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        prev_start, prev_end = merged[-1]
        if start <= prev_end:
            merged[-1] = (prev_start, max(prev_end, end))
        else:
            merged.append((start, end))
    return tuple(merged)


def listed_regions(regions: Iterable[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Validate RAM regions as the firmware lists them and sort them by start,
    *without* merging touching or overlapping ones (Xen keeps one entry per
    ``pfn_pdx_add_region`` call)."""
    items = [tuple(r) for r in regions]
    for item in items:
        normalize_frame_ranges([item])           # the same checks, one range at a time
    if not items:
        raise ValueError("no RAM frame ranges given")
    return tuple(sorted(((int(s), int(e)) for s, e in items), key=lambda r: r[0]))


def _is_scalar(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _scalar(x: Any, what: str) -> int:
    v = int(x)
    if not 0 <= v <= _U64:
        raise ValueError(f"{what} must be an unsigned 64-bit value, got {v}")
    return v


def _as_u64(x: Any, what: str) -> tuple[np.ndarray, np.dtype]:
    """(values as uint64, dtype to return) for an integer array-like."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integers, got an array of {arr.dtype}")
    if arr.dtype.kind == "i":
        if arr.size and arr.min() < 0:
            raise ValueError(f"{what} must not be negative")
        out = np.dtype(np.int64)
    else:
        out = np.dtype(np.uint64)
    return arr.astype(np.uint64, copy=False), out


# --------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------

class Pdx:
    """One PDX compression of one memory map.  Use :func:`make_pdx` to build one.

    Attributes: ``mode`` (what is in effect), ``requested`` (what was asked
    for), ``fallback_reason`` (why ``requested`` was not used, else None),
    ``frame_ranges`` (normalised RAM ranges), ``max_pfn`` (one past the last RAM
    frame) and ``max_pdx`` (one past the largest PDX of any RAM frame).
    """

    mode: str = "?"

    def __init__(self, frame_ranges: Iterable[Sequence[int]], *,
                 requested: str | None = None,
                 fallback_reason: str | None = None,
                 regions: Iterable[Sequence[int]] | None = None) -> None:
        self.frame_ranges: tuple[tuple[int, int], ...] = normalize_frame_ranges(frame_ranges)
        #: the RAM ranges as listed (sorted by start, not merged): the offset set-up's input
        self.listed_regions: tuple[tuple[int, int], ...] = (
            self.frame_ranges if regions is None else listed_regions(regions))
        self.requested: str = requested if requested is not None else self.mode
        self.fallback_reason: str | None = fallback_reason
        self.max_pfn: int = self.frame_ranges[-1][1]
        self._setup()
        # The translation is monotonic over RAM in every mode, so the last RAM
        # frame has the largest PDX.
        self.max_pdx: int = self._to_pdx(self.max_pfn - 1) + 1
        self._check_gain()

    # -- subclass hooks ----------------------------------------------------
    def _setup(self) -> None:
        """Compute the mode's parameters; raise PdxNotApplicable if impossible."""

    def _check_gain(self) -> None:
        if self.max_pdx >= self.max_pfn:
            raise PdxNotApplicable(
                f"{self.mode}: compression gains nothing on this map (max_pdx "
                f"{self.max_pdx:#x} would not be below max_pfn {self.max_pfn:#x})")

    def _to_pdx(self, pfn: int) -> int:
        raise NotImplementedError

    def _to_pfn(self, pdx: int) -> int:
        raise NotImplementedError

    def _to_pdx_vec(self, pfn: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _to_pfn_vec(self, pdx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _covers(self, mfn: int) -> bool:
        raise NotImplementedError

    def _covers_vec(self, mfn: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        return {}

    # -- public API --------------------------------------------------------
    def scalar_forms(self) -> tuple[Callable[[int], int], Callable[[int], int],
                                    Callable[[int], bool]]:
        """mfn -> pdx, pdx -> mfn and covers(mfn) for a Python int, with no dispatch: what
        a hot caller keeps (the machine's scalar translations)."""
        return self._to_pdx, self._to_pfn, self._covers

    def mfn_to_pdx(self, mfn):
        """PDX of ``mfn`` (int -> int, integer array -> array, vectorised)."""
        if _is_scalar(mfn):
            return self._to_pdx(_scalar(mfn, "mfn"))
        arr, out = _as_u64(mfn, "mfn")
        return self._to_pdx_vec(arr).astype(out, copy=False)

    def pdx_to_mfn(self, pdx):
        """MFN of ``pdx`` (int -> int, integer array -> array, vectorised)."""
        if _is_scalar(pdx):
            return self._to_pfn(_scalar(pdx, "pdx"))
        arr, out = _as_u64(pdx, "pdx")
        return self._to_pfn_vec(arr).astype(out, copy=False)

    def covers(self, mfn):
        """Whether ``mfn`` has a PDX under this compression.

        False for an MFN in the compressed-away hole (mask) or outside every
        lookup-table region (offset), and in every mode for an MFN outside the
        52-bit physical address space.  It does not compare against
        ``max_pfn`` or RAM (Xen's ``mfn_valid`` does that separately).  Accepts an
        int (-> bool) or an integer array (-> bool array).
        """
        if _is_scalar(mfn):
            v = int(mfn)
            return 0 <= v < MAX_MFN and self._covers(v)
        arr = np.asarray(mfn)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"mfn must be integers, got an array of {arr.dtype}")
        ok = (arr >= 0) & (arr < MAX_MFN) if arr.dtype.kind == "i" else arr < np.uint64(MAX_MFN)
        u = np.where(ok, arr, 0).astype(np.uint64, copy=False)
        return ok & self._covers_vec(u)

    def pdx_ranges(self) -> list[tuple[int, int]]:
        """The half-open PDX range of each RAM frame range (each is contiguous)."""
        return [(self._to_pdx(s), self._to_pdx(e - 1) + 1) for s, e in self.frame_ranges]

    def describe(self) -> str:
        """One human line about this compression."""
        text = self._describe()
        if self.fallback_reason:
            text += f" (fallback from {self.requested}; {self.fallback_reason})"
        return text

    def _describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Parameters for reports and JSON (plain ints, strings, lists)."""
        d: dict[str, Any] = {
            "mode": self.mode,
            "requested": self.requested,
            "fallback_reason": self.fallback_reason,
            "max_pdx": self.max_pdx,
            "max_pfn": self.max_pfn,
        }
        d.update(self._params())
        return d

    def __repr__(self) -> str:
        extra = f", fallback_reason={self.fallback_reason!r}" if self.fallback_reason else ""
        return (f"<{type(self).__name__} requested={self.requested!r} "
                f"max_pdx={self.max_pdx:#x} max_pfn={self.max_pfn:#x}{extra}>")


# --------------------------------------------------------------------------
# none
# --------------------------------------------------------------------------

class PdxNone(Pdx):
    """No compression: ``pdx == mfn``."""

    mode = "none"

    def _check_gain(self) -> None:
        pass  # never falls back: this is the fallback

    def _to_pdx(self, pfn: int) -> int:
        return pfn

    def _to_pfn(self, pdx: int) -> int:
        return pdx

    def _to_pdx_vec(self, pfn: np.ndarray) -> np.ndarray:
        return pfn.copy()

    def _to_pfn_vec(self, pdx: np.ndarray) -> np.ndarray:
        return pdx.copy()

    def _covers(self, mfn: int) -> bool:
        return True

    def _covers_vec(self, mfn: np.ndarray) -> np.ndarray:
        return np.ones(mfn.shape, dtype=bool)

    def _describe(self) -> str:
        return f"none: pdx == mfn (max_pdx {self.max_pdx:#x})"


# --------------------------------------------------------------------------
# mask
# --------------------------------------------------------------------------

class PdxMask(Pdx):
    """Xen's classic mask compression: one bit-slice of the PFN squeezed out.

    Parameters: ``bottom_shift`` (first squeezed bit), ``hole_shift`` (number
    of squeezed bits), ``bottom_mask``, ``hole_mask``, ``top_mask``, and the
    OR-ed ``ram_mask`` the hole was searched in.
    """

    mode = "mask"

    def _setup(self) -> None:
        # Bits 0..MAX_ORDER-1 start set: they are never compressed.
        mask = _ORDER_MASK
        for start, end in self.frame_ranges:
            mask |= start | _region_mask(start, end - 1)
        self.ram_mask = mask

        # Longest run of zero bits at or above MAX_ORDER that has a set bit
        # above it (a run of zeros at the top is not a hole).  Ties keep the
        # lowest run, as Xen's strict '>' does.
        best_len = best_start = 0
        bit = MAX_ORDER
        while bit < _BITS_PER_LONG:
            if mask >> bit & 1:
                bit += 1
                continue
            run_start = bit
            while bit < _BITS_PER_LONG and not mask >> bit & 1:
                bit += 1
            if bit >= _BITS_PER_LONG:
                break                       # zeros up to the top: not a hole
            if bit - run_start > best_len:
                best_len, best_start = bit - run_start, run_start
        if not best_len:
            raise PdxNotApplicable(
                f"mask: no bit of the PFN is zero in every RAM range above bit "
                f"{MAX_ORDER - 1}; nothing to compress")

        self.bottom_shift = best_start
        self.hole_shift = best_len
        self.bottom_mask = (1 << best_start) - 1
        self.hole_mask = ((1 << best_len) - 1) << best_start
        self.top_mask = _U64 & ~(self.bottom_mask | self.hole_mask)
        self._np = tuple(np.uint64(v) for v in (self.bottom_mask, self.top_mask,
                                                 self.hole_mask, self.hole_shift))

    def _to_pdx(self, pfn: int) -> int:
        return (pfn & self.bottom_mask) | ((pfn & self.top_mask) >> self.hole_shift)

    def _to_pfn(self, pdx: int) -> int:
        return (pdx & self.bottom_mask) | ((pdx << self.hole_shift) & self.top_mask)

    def _to_pdx_vec(self, pfn: np.ndarray) -> np.ndarray:
        bottom, top, _, shift = self._np
        return (pfn & bottom) | ((pfn & top) >> shift)

    def _to_pfn_vec(self, pdx: np.ndarray) -> np.ndarray:
        bottom, top, _, shift = self._np
        return (pdx & bottom) | ((pdx << shift) & top)

    def _covers(self, mfn: int) -> bool:
        return not mfn & self.hole_mask

    def _covers_vec(self, mfn: np.ndarray) -> np.ndarray:
        return (mfn & self._np[2]) == 0

    def _describe(self) -> str:
        lo, hi = self.bottom_shift, self.bottom_shift + self.hole_shift - 1
        return (f"mask: {_bit_span(lo, hi)} of the PFN squeezed out "
                f"(hole_shift {self.hole_shift}; max_pdx {self.max_pdx:#x} "
                f"for max_pfn {self.max_pfn:#x})")

    def _params(self) -> dict[str, Any]:
        return {
            "bottom_shift": self.bottom_shift,
            "hole_shift": self.hole_shift,
            "bottom_mask": self.bottom_mask,
            "hole_mask": self.hole_mask,
            "top_mask": self.top_mask,
            "ram_mask": self.ram_mask,
        }


# --------------------------------------------------------------------------
# offset
# --------------------------------------------------------------------------

class PdxOffset(Pdx):
    """Xen's offset compression as 4.21.2 and 4.22 compute it: a 64-slot table of
    per-region offsets.

    Parameters: ``pfn_index_shift``, ``pdx_index_shift``, ``region_size``
    (= 2^pdx_index_shift), ``regions`` (list of ``(pfn_base, pfn_end)``
    half-open, in PDX order; region ``i`` occupies PDXs starting at
    ``i * region_size``), ``slots`` (slot of each region) and the tables
    ``pfn_pdx_lookup`` / ``pdx_pfn_lookup`` / ``pfn_bases`` (64 entries each;
    an unused ``pfn_bases`` slot holds 2^64-1 so nothing is covered there).
    """

    mode = "offset"

    def _overlaps_merged(self) -> tuple[list[list[int]], int]:
        """Step 1: every base aligned down to 2^MAX_ORDER (so PDX and PFN agree on the
        low MAX_ORDER bits) and the regions that now *overlap* merged; regions that
        merely touch stay separate (they may merge in step 4).  Returns the regions
        and the moving bits: 4.22's pfn_pdx_compression_setup takes them after the
        merge, from each region's whole span."""
        regions: list[list[int]] = []
        for start, end in self.listed_regions:
            base = start & ~_ORDER_MASK
            if not regions or base >= regions[-1][1]:
                regions.append([base, end])
            else:
                regions[-1][1] = end                    # the later range's end, as Xen
        mask = _ORDER_MASK
        for base, end in regions:
            mask |= _region_mask(base, end - 1)
        return regions, mask

    def _setup(self) -> None:
        regions, mask = self._overlaps_merged()

        # 2. Bits in which the region bases differ, outside the moving bits.
        idx_mask = 0
        for base, _ in regions:
            idx_mask |= (base ^ regions[0][0]) & ~mask
        self.moving_mask = mask
        self.index_mask = idx_mask

        # 3. pfn_index_shift, as Xen picks it.
        lo = (idx_mask & -idx_mask).bit_length()         # ffs, 1-based
        hi = idx_mask.bit_length()                       # fls, 1-based
        if not idx_mask:
            shift = mask.bit_length()                    # single region
        elif hi - lo < OFFSET_TABLE_ORDER:
            shift = lo - 1                               # differing bits fit the index
        else:
            shift = hi - OFFSET_TABLE_ORDER              # keep the most significant ones
        self.pfn_index_shift = shift
        self.index_truncated = bool(idx_mask) and hi - lo >= OFFSET_TABLE_ORDER

        # 4. Every region must lie within one slot; consecutive regions sharing
        #    a slot are merged, gap included.  Xen guards the first refusal
        #    below with ASSERT_UNREACHABLE (a release build disables the
        #    compression); the other two are xensim's, so that a wrong table is
        #    never built (at boot, Xen's check that every e820 RAM range is
        #    covered would then disable the compression).
        merged: list[list[int]] = []
        for base, end in regions:
            first, last = (base >> shift) & _SLOT_MASK, ((end - 1) >> shift) & _SLOT_MASK
            if first != last:
                raise PdxNotApplicable(
                    f"offset: RAM region [{base:#x}, {end:#x}) spans more than one "
                    f"lookup-table slot ({first}..{last} with pfn_index_shift {shift})")
            if merged and (merged[-1][0] >> shift) & _SLOT_MASK == first:
                merged[-1][1] = end
            else:
                merged.append([base, end])
        if len(merged) > OFFSET_TABLE_SLOTS:
            raise PdxNotApplicable(
                f"offset: {len(merged)} RAM regions need more than the "
                f"{OFFSET_TABLE_SLOTS} lookup-table slots")
        owner: dict[int, tuple[int, int]] = {}
        for base, end in merged:
            slot = (base >> shift) & _SLOT_MASK
            if slot in owner:
                ob, oe = owner[slot]
                raise PdxNotApplicable(
                    f"offset: RAM regions [{ob:#x}, {oe:#x}) and [{base:#x}, {end:#x}) "
                    f"both need lookup-table slot {slot} but cannot be merged")
            owner[slot] = (base, end)

        # 5. Each region gets a PDX block of the largest region's size rounded
        #    up to a power of two (at least 2^MAX_ORDER), in PFN order.
        largest = max(end - base for base, end in merged)
        size = max(1 << (largest - 1).bit_length(), 1 << MAX_ORDER)
        self.pdx_index_shift = size.bit_length() - 1
        self.region_size = size
        self.regions = [(b, e) for b, e in merged]
        self.slots = [(b >> shift) & _SLOT_MASK for b, _ in merged]

        self.pfn_pdx_lookup = [0] * OFFSET_TABLE_SLOTS
        self.pdx_pfn_lookup = [0] * OFFSET_TABLE_SLOTS
        self.pfn_bases = [_U64] * OFFSET_TABLE_SLOTS
        for i, ((base, _), slot) in enumerate(zip(merged, self.slots)):
            # base >= i * 2^shift >= i * size, so offsets are never negative;
            # kept modulo 2^64 anyway, as Xen's unsigned long is.
            offset = (base - size * i) & _U64
            self.pfn_pdx_lookup[slot] = offset
            self.pdx_pfn_lookup[i] = offset
            self.pfn_bases[slot] = base
        self._np_pfn_pdx = np.array(self.pfn_pdx_lookup, dtype=np.uint64)
        self._np_pdx_pfn = np.array(self.pdx_pfn_lookup, dtype=np.uint64)
        self._np_bases = np.array(self.pfn_bases, dtype=np.uint64)
        self._np_shifts = (np.uint64(self.pfn_index_shift), np.uint64(self.pdx_index_shift),
                           np.uint64(_SLOT_MASK), np.uint64(size))

    def _check_gain(self) -> None:
        # Xen 4.21's test: no gain when the regions before the last one, each in a
        # block of region_size PDXs, reach the last region's base.  (For regions
        # that do not overlap, the same as max_pdx >= max_pfn.)
        n, last_base = len(self.regions), self.regions[-1][0]
        if self.region_size * (n - 1) >= last_base:
            raise PdxNotApplicable(
                f"offset: compression gains nothing on this map ({n - 1} region(s) of "
                f"{self.region_size:#x} frames reach the last region's base {last_base:#x}; "
                f"max_pdx {self.max_pdx:#x}, max_pfn {self.max_pfn:#x})")

    def _to_pdx(self, pfn: int) -> int:
        return (pfn - self.pfn_pdx_lookup[(pfn >> self.pfn_index_shift) & _SLOT_MASK]) & _U64

    def _to_pfn(self, pdx: int) -> int:
        return (pdx + self.pdx_pfn_lookup[(pdx >> self.pdx_index_shift) & _SLOT_MASK]) & _U64

    def _to_pdx_vec(self, pfn: np.ndarray) -> np.ndarray:
        pshift, _, smask, _ = self._np_shifts
        return pfn - self._np_pfn_pdx[((pfn >> pshift) & smask).astype(np.intp)]

    def _to_pfn_vec(self, pdx: np.ndarray) -> np.ndarray:
        _, dshift, smask, _ = self._np_shifts
        return pdx + self._np_pdx_pfn[((pdx >> dshift) & smask).astype(np.intp)]

    def _covers(self, mfn: int) -> bool:
        base = self.pfn_bases[(mfn >> self.pfn_index_shift) & _SLOT_MASK]
        return base <= mfn < base + self.region_size

    def _covers_vec(self, mfn: np.ndarray) -> np.ndarray:
        pshift, _, smask, size = self._np_shifts
        base = self._np_bases[((mfn >> pshift) & smask).astype(np.intp)]
        # mfn - base only when mfn >= base, so the uint64 subtraction never wraps.
        return (mfn >= base) & ((mfn - np.minimum(base, mfn)) < size)

    def _describe(self) -> str:
        shift = self.pfn_index_shift
        n = len(self.regions)
        return (f"offset: {n} region{'s' if n != 1 else ''} of up to 2^{self.pdx_index_shift} "
                f"frames, table slot = PFN bits {shift}-{shift + OFFSET_TABLE_ORDER - 1} "
                f"(pfn_index_shift {shift}, pdx_index_shift {self.pdx_index_shift}; "
                f"max_pdx {self.max_pdx:#x} for max_pfn {self.max_pfn:#x})")

    def _params(self) -> dict[str, Any]:
        return {
            "pfn_index_shift": self.pfn_index_shift,
            "pdx_index_shift": self.pdx_index_shift,
            "region_size": self.region_size,
            "index_truncated": self.index_truncated,
            "regions": [
                {"slot": slot, "pfn_base": base, "pfn_end": end,
                 "pdx_base": i * self.region_size,
                 "offset": self.pfn_pdx_lookup[slot]}
                for i, ((base, end), slot) in enumerate(zip(self.regions, self.slots))
            ],
        }


class PdxOffset4210(PdxOffset):
    """Xen 4.21.0's (and 4.21.1's) offset compression: :class:`PdxOffset` but for the
    moving bits of merged regions, taken as that release's pfn_pdx_compression_setup
    does (the off-by-one edf942201d fixed)."""

    mode = "offset-4.21.0"

    def _overlaps_merged(self) -> tuple[list[list[int]], int]:
        """Step 1 as in RELEASE-4.21.0: a region's moving bits are taken when it is first
        kept, at its own size; a region merged into the previous one adds none, except
        the last one listed, whose own (aligned) moving bits are added."""
        mask = _ORDER_MASK
        regions: list[list[int]] = []
        listed = self.listed_regions
        for n, (start, end) in enumerate(listed):
            base = start & ~_ORDER_MASK
            if not regions or base >= regions[-1][1]:
                mask |= _region_mask(base, end - 1)
                regions.append([base, end])
                continue
            regions[-1][1] = end                        # the later range's end, as Xen
            if n == len(listed) - 1:
                mask |= _region_mask(base, end - 1)
        return regions, mask


# --------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------

_CLASSES: dict[str, type[Pdx]] = {"none": PdxNone, "mask": PdxMask, "offset": PdxOffset,
                                  "offset-4.21.0": PdxOffset4210}


def make_pdx(frame_ranges: Iterable[Sequence[int]], mode: str = "mask",
             regions: Iterable[Sequence[int]] | None = None) -> Pdx:
    """Build the PDX compression ``mode`` for RAM ``frame_ranges``.

    ``regions`` are the RAM ranges as listed (see :meth:`MemoryMap.pdx_regions`),
    the offset mode's input; default ``frame_ranges``.

    ``mode`` is one of ``"none"``, ``"mask"``, ``"offset"`` (ValueError
    otherwise).  If the requested mode cannot compress the map, or would gain
    nothing, the result is a :class:`PdxNone` with ``requested`` = ``mode`` and
    ``fallback_reason`` saying why.
    """
    if mode not in _CLASSES:
        raise ValueError(f"unknown PDX mode {mode!r}: choose one of "
                         + ", ".join(repr(m) for m in MODES))
    ranges = normalize_frame_ranges(frame_ranges)
    listed = None if regions is None else listed_regions(regions)
    try:
        return _CLASSES[mode](ranges, regions=listed)
    except PdxNotApplicable as exc:
        return PdxNone(ranges, requested=mode, fallback_reason=str(exc), regions=listed)
