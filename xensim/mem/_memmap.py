"""The physical memory map (e820) of a simulated x86_64 machine.

Addresses are bytes and every range is half-open, ``[start, end)``.  The map
keeps every range the firmware reported (RAM, reserved, ACPI ...), but the rest
of the simulator only cares about *frames*: 4 KiB machine frames (MFNs) that
lie wholly inside RAM.  Xen does the same when it hands e820 RAM to its heap: a
partial frame at either edge of a RAM range is never used.

Everything here is computed per range, never per frame, so a 2 TiB machine
costs as little as a 1 GiB one.  Only the explicit superpage listings return
arrays (one int64 per 2 MiB superpage, about a million on a 2 TiB machine).

Text parsers turn what a user can copy from their own machine (a Linux boot log
or ``/proc/iomem``) into ranges for :class:`MemoryMap`.
"""

from __future__ import annotations

import bisect
import enum
import operator
import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from sortedcontainers import SortedKeyList

from ._units import MAX_MFN, MAX_PADDR, PADDR_BITS, PAGE_SHIFT, PAGE_SIZE, \
    SUPERPAGE_ORDER, SUPERPAGE_PAGES, format_size, parse_size

__all__ = [
    "E820Type",
    "MemRange",
    "MemoryMapError",
    "MemoryMap",
    "parse_boot_log",
    "parse_iomem",
    "parse_memmap_text",
]


# --------------------------------------------------------------------------
# Range types and the error
# --------------------------------------------------------------------------

class E820Type(enum.Enum):
    """The kind of an e820 entry. Values are the lower-case names used in YAML."""

    RAM = "ram"
    RESERVED = "reserved"
    ACPI = "acpi"
    NVS = "nvs"
    UNUSABLE = "unusable"

    @classmethod
    def parse(cls, name: str) -> "E820Type":
        """Parse ``ram``/``usable``, ``reserved``, ``acpi``, ``nvs`` or ``unusable``.

        Case-insensitive, surrounding blanks ignored.  Anything else raises a
        ValueError that lists the accepted names.
        """
        if isinstance(name, cls):
            return name
        if isinstance(name, str):
            key = name.strip().lower()
            if key == "usable":
                return cls.RAM
            for member in cls:
                if member.value == key:
                    return member
        accepted = ", ".join(repr(n) for n in _TYPE_NAMES)
        raise ValueError(f"unknown memory range type {name!r}: expected one of {accepted}")


_TYPE_NAMES = ("ram", "usable", "reserved", "acpi", "nvs", "unusable")


@dataclass(frozen=True)
class MemRange:
    """One e820 entry: bytes ``[start, end)`` of the given type.

    A string type is accepted and parsed with :meth:`E820Type.parse`.  The
    bounds are not checked here: :class:`MemoryMap` checks them, so that it can
    say which entry of its input is wrong.
    """

    start: int
    end: int
    type: E820Type = E820Type.RAM

    def __post_init__(self) -> None:
        if not isinstance(self.type, E820Type):
            object.__setattr__(self, "type", E820Type.parse(self.type))

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self.end - self.start

    def __str__(self) -> str:
        return f"[{self.start:#x}, {self.end:#x}) {self.type.value}"


class MemoryMapError(ValueError):
    """A bad memory map.

    Carries where the problem is so callers can name the key path or line:
    ``index`` is the position of the offending range in the input order,
    ``field`` is ``"start"``, ``"end"``, ``"type"`` or None, ``line`` is the
    1-based line of a text file (or None).  ``str(err)`` is ``err.message``.
    """

    def __init__(self, message: str, *, index: int | None = None,
                 field: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index
        self.field = field
        self.line = line


# --------------------------------------------------------------------------
# Normalising the input
# --------------------------------------------------------------------------

def _coerce_addr(value: Any, index: int, field: str) -> int:
    """An address given as an int (or numpy int) or a string such as ``0x9fc00``."""
    if isinstance(value, bool):
        raise MemoryMapError(f"range #{index}: {field} must be an address, got {value!r}",
                             index=index, field=field)
    if isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError as exc:
            raise MemoryMapError(f"range #{index}: bad {field} {value!r} ({exc})",
                                 index=index, field=field) from None
    try:
        return operator.index(value)
    except TypeError:
        raise MemoryMapError(
            f"range #{index}: {field} must be an integer address, got "
            f"{type(value).__name__} {value!r}", index=index, field=field) from None


def _coerce_range(item: Any, index: int) -> MemRange:
    if isinstance(item, MemRange):
        start, end, typ = item.start, item.end, item.type
    else:
        try:
            parts = tuple(item)
        except TypeError:
            raise MemoryMapError(
                f"range #{index}: expected a MemRange or (start, end[, type]), got {item!r}",
                index=index) from None
        if len(parts) == 2:
            (start, end), typ = parts, E820Type.RAM
        elif len(parts) == 3:
            start, end, typ = parts
        else:
            raise MemoryMapError(
                f"range #{index}: expected (start, end) or (start, end, type), "
                f"got {len(parts)} items", index=index)
    start = _coerce_addr(start, index, "start")
    end = _coerce_addr(end, index, "end")
    try:
        typ = E820Type.parse(typ)
    except ValueError as exc:
        raise MemoryMapError(f"range #{index}: {exc}", index=index, field="type") from None

    if start < 0:
        raise MemoryMapError(f"range #{index}: start {start:#x} is negative",
                             index=index, field="start")
    if start > MAX_PADDR:
        raise MemoryMapError(
            f"range #{index}: start {start:#x} is past the {PADDR_BITS}-bit physical "
            f"address space (max {MAX_PADDR:#x})", index=index, field="start")
    if end > MAX_PADDR:
        raise MemoryMapError(
            f"range #{index}: end {end:#x} is past the {PADDR_BITS}-bit physical "
            f"address space (max {MAX_PADDR:#x})", index=index, field="end")
    if end <= start:
        raise MemoryMapError(
            f"range #{index}: end {end:#x} must be greater than start {start:#x}",
            index=index, field="end")
    return MemRange(start, end, typ)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open ``ranges`` in order of their starts, overlapping and touching ones merged."""
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


# --------------------------------------------------------------------------
# The memory map
# --------------------------------------------------------------------------

class MemoryMap:
    """An e820-style map: sorted, non-overlapping byte ranges of several types.

    ``ranges`` is an iterable of :class:`MemRange` or tuples ``(start, end)``
    (RAM) / ``(start, end, type)``; any order.  Addresses may be ints or
    strings (``"0x9fc00"``, ``"1GiB"``).  Raises :class:`MemoryMapError` on a
    bad entry, an overlap, an empty map or a map without one whole RAM frame.

    The map is immutable once built.  A frame (MFN) is RAM only if its whole
    4 KiB lies in RAM, after touching RAM ranges are merged.
    """

    def __init__(self, ranges: Iterable[Any], name: str = "custom",
                 source: str | None = None) -> None:
        self.name = name
        self.source = source

        if isinstance(ranges, (str, bytes)):
            raise MemoryMapError("ranges must be a list of (start, end[, type]), not a string")
        entries = [_coerce_range(item, i) for i, item in enumerate(ranges)]
        if not entries:
            raise MemoryMapError(f"memory map {name!r} is empty: it lists no ranges")

        # Sorted by start; each element remembers its input position.
        by_start: SortedKeyList = SortedKeyList(
            ((r, i) for i, r in enumerate(entries)), key=lambda ri: (ri[0].start, ri[1]))
        self._check_overlaps(by_start)
        self._ranges: SortedKeyList = SortedKeyList((r for r, _ in by_start),
                                                    key=operator.attrgetter("start"))

        ram = [(r.start, r.end) for r in self._ranges if r.type is E820Type.RAM]
        merged = merge_ranges(ram)
        self._ram_bytes = sum(e - s for s, e in merged)

        frames = []
        for start, end in merged:
            first = -(-start // PAGE_SIZE)       # ceil: a partial frame is not RAM
            last = end >> PAGE_SHIFT             # floor
            if last > first:
                frames.append((first, last))
        frames = merge_ranges(frames)
        if not frames:
            if not ram:
                why = "it has no RAM range"
            else:
                why = "its RAM ranges hold no whole 4 KiB frame"
            raise MemoryMapError(f"memory map {name!r} has no RAM: {why}")

        # SortedKeyList of MFN ranges, plus plain lists for bisect / numpy.
        self._frames: SortedKeyList = SortedKeyList(frames, key=operator.itemgetter(0))
        self._fstarts = [s for s, _ in frames]
        self._fends = [e for _, e in frames]
        self._np_starts = np.asarray(self._fstarts, dtype=np.int64)
        self._np_ends = np.asarray(self._fends, dtype=np.int64)
        self._ram_frames = sum(e - s for s, e in frames)
        self._max_pfn = frames[-1][1]

        holes = []
        prev = 0
        for start, end in frames:
            if start > prev:
                holes.append((prev, start))
            prev = end
        self._holes = holes

    @staticmethod
    def _check_overlaps(by_start: SortedKeyList) -> None:
        """Refuse any two overlapping ranges, whatever their types."""
        reach: tuple[MemRange, int] | None = None   # the range reaching furthest so far
        for cur, idx in by_start:
            if reach is not None and cur.start < reach[0].end:
                other, oidx = reach
                later = max(idx, oidx)
                raise MemoryMapError(
                    f"ranges #{oidx} {other} and #{idx} {cur} overlap",
                    index=later, field="start")
            if reach is None or cur.end > reach[0].end:
                reach = (cur, idx)

    # -- construction helpers ------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict) -> "MemoryMap":
        """Rebuild a map from :meth:`to_dict` output (``ranges``, or ``ram`` for RAM only)."""
        if "ranges" in data:
            ranges = data["ranges"]
        elif "ram" in data:
            ranges = data["ram"]
        else:
            raise MemoryMapError("memory map has neither 'ranges' nor 'ram'")
        return cls(ranges or [], name=data.get("name", "custom"), source=data.get("source"))

    # -- ranges ----------------------------------------------------------------

    @property
    def ranges(self) -> list[MemRange]:
        """All ranges, every type, sorted by start."""
        return list(self._ranges)

    @property
    def ram_ranges(self) -> list[MemRange]:
        """RAM ranges as given (not merged), sorted by start."""
        return [r for r in self._ranges if r.type is E820Type.RAM]

    @property
    def pdx_regions(self) -> list[tuple[int, int]]:
        """RAM ranges as given, in frames as Xen's ``pfn_pdx_add_region`` records them:
        one per range, not merged, start rounded down and end rounded up to a frame
        (the input of the offset PDX set-up)."""
        return [(r.start >> PAGE_SHIFT, -(-r.end // PAGE_SIZE)) for r in self.ram_ranges]

    @property
    def frame_ranges(self) -> list[tuple[int, int]]:
        """Whole RAM frames as half-open MFN ranges, sorted, touching ones merged."""
        return list(self._frames)

    @property
    def holes(self) -> list[tuple[int, int]]:
        """Half-open MFN ranges below ``max_pfn`` that are not RAM frames."""
        return list(self._holes)

    # -- frames ------------------------------------------------------------------

    def is_ram(self, mfn: int) -> bool:
        """True if frame ``mfn`` lies wholly in RAM."""
        i = bisect.bisect_right(self._fstarts, mfn) - 1
        return i >= 0 and mfn < self._fends[i]

    def is_ram_array(self, mfns: Any) -> np.ndarray:
        """Vectorised :meth:`is_ram`: a bool array of the same shape as ``mfns``."""
        arr = np.asarray(mfns)
        if arr.dtype.kind == "u":
            # Anything at or above MAX_MFN is not RAM; clip so int64 is exact.
            arr = np.minimum(arr, MAX_MFN).astype(np.int64)
        elif arr.dtype.kind == "i" or arr.size == 0:
            arr = arr.astype(np.int64, copy=False)
        else:
            raise TypeError(f"is_ram_array needs integer MFNs, got dtype {arr.dtype}")
        idx = np.searchsorted(self._np_starts, arr, side="right") - 1
        inside = idx >= 0
        safe = np.where(inside, idx, 0)
        return inside & (arr < self._np_ends[safe])

    @property
    def ram_bytes(self) -> int:
        """Bytes of RAM as listed (partial frames included)."""
        return self._ram_bytes

    @property
    def ram_frames(self) -> int:
        """Number of whole 4 KiB RAM frames."""
        return self._ram_frames

    @property
    def max_pfn(self) -> int:
        """One past the highest RAM frame (Xen's ``max_page``)."""
        return self._max_pfn

    # -- superpages ----------------------------------------------------------------

    def superpages_with_ram(self) -> np.ndarray:
        """Superpage numbers (``mfn >> 9``) holding at least one RAM frame; sorted, unique."""
        parts = []
        prev_last = -1
        for start, end in self._frames:
            # Neighbouring frame ranges can share a boundary superpage: count it once.
            first = max(start >> SUPERPAGE_ORDER, prev_last + 1)
            last = (end - 1) >> SUPERPAGE_ORDER
            if last >= first:
                parts.append(np.arange(first, last + 1, dtype=np.int64))
            prev_last = last
        return np.concatenate(parts)

    def superpages_full(self) -> np.ndarray:
        """Superpage numbers whose 512 frames are all RAM; sorted."""
        parts = [np.arange(-(-s // SUPERPAGE_PAGES), e >> SUPERPAGE_ORDER, dtype=np.int64)
                 for s, e in self._frames]
        return np.concatenate(parts)

    @property
    def n_superpages_with_ram(self) -> int:
        """``len(superpages_with_ram())``, computed per range."""
        count = 0
        prev_last = -1
        for start, end in self._frames:
            first = start >> SUPERPAGE_ORDER
            last = (end - 1) >> SUPERPAGE_ORDER
            count += last - first + 1
            if first == prev_last:
                count -= 1
            prev_last = last
        return count

    @property
    def n_superpages_full(self) -> int:
        """``len(superpages_full())``, computed per range."""
        # Frame ranges are merged, so a full superpage lies inside one of them.
        return sum(max(0, (e >> SUPERPAGE_ORDER) - -(-s // SUPERPAGE_PAGES))
                   for s, e in self._frames)

    # -- reporting -----------------------------------------------------------------

    def summary(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "ram_bytes": self.ram_bytes,
            "ram_frames": self.ram_frames,
            "max_pfn": self.max_pfn,
            "n_ranges": len(self._ranges),
            "n_holes": len(self._holes),
            "superpages_with_ram": self.n_superpages_with_ram,
            "superpages_full": self.n_superpages_full,
        }

    def to_dict(self) -> dict:
        """``{"name", "source", "ranges": [["0x0", "0x9fc00", "ram"], ...]}``."""
        return {
            "name": self.name,
            "source": self.source,
            "ranges": [[hex(r.start), hex(r.end), r.type.value] for r in self._ranges],
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryMap):
            return NotImplemented
        return list(self._ranges) == list(other._ranges)

    def __hash__(self) -> int:
        return hash(tuple(self._ranges))

    def __repr__(self) -> str:
        return (f"MemoryMap({self.name!r}, {len(self._ranges)} ranges, "
                f"{format_size(self.ram_bytes)} RAM, max_pfn={self.max_pfn:#x})")


# --------------------------------------------------------------------------
# Text parsers
# --------------------------------------------------------------------------

# "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable"  (inclusive end)
_BOOT_NEW_RE = re.compile(r"BIOS-e820:\s*\[mem\s+([^\]\s-]*)-([^\]\s]*)\s*\]\s*(.*?)\s*$")
# "BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)"  (exclusive end)
_BOOT_OLD_RE = re.compile(r"BIOS-e820:\s*(\S+)\s*-\s*(\S+)\s*\((.*)\)\s*$")
_HEX0X_RE = re.compile(r"0[xX][0-9a-fA-F]+")
_HEX_RE = re.compile(r"(?:0[xX])?[0-9a-fA-F]+")

# "00001000-0009fbff : System RAM" (inclusive end); loose so bad hex is reported
_IOMEM_LOOSE_RE = re.compile(r"^(\s*)([0-9A-Za-z]+)-([0-9A-Za-z]+)\s+:\s+(.*?)\s*$")
_IOMEM_STRICT_RE = re.compile(r"^\s*[0-9a-fA-F]+-[0-9a-fA-F]+\s+:\s+\S")

_BOOT_TYPES = {
    "usable": E820Type.RAM,
    "reserved": E820Type.RESERVED,
    "acpi data": E820Type.ACPI,
    "acpi nvs": E820Type.NVS,
    "unusable": E820Type.UNUSABLE,
}

_IOMEM_TYPES = {
    "system ram": E820Type.RAM,
    "reserved": E820Type.RESERVED,
    "acpi tables": E820Type.ACPI,
    "acpi non-volatile storage": E820Type.NVS,
    "unusable memory": E820Type.UNUSABLE,
}


def _hex(text: str, pattern: re.Pattern, what: str, filename: str, lineno: int,
         field: str) -> int:
    if not pattern.fullmatch(text):
        raise MemoryMapError(f"{filename}:{lineno}: bad {what} address {text!r}",
                             line=lineno, field=field)
    return int(text, 16)


def parse_boot_log(text: str, filename: str = "<text>") -> list[MemRange]:
    """Ranges from the ``BIOS-e820`` lines of a Linux boot log (dmesg).

    Accepts ``BIOS-e820: [mem 0xSTART-0xLAST] type`` (inclusive end) and the
    older ``BIOS-e820: START - END (type)`` (exclusive end).  Other lines,
    including the kernel's later ``e820: update`` / ``modified`` tables, are
    ignored; an entry repeated identically is kept once.  Unknown types
    (``persistent (type 12)``, ``soft reserved`` ...) become RESERVED.
    Returns ranges in log order; may be empty.
    """
    out: list[MemRange] = []
    seen: set[MemRange] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if "BIOS-e820" not in line:
            continue
        m = _BOOT_NEW_RE.search(line)
        if m:
            start = _hex(m.group(1), _HEX0X_RE, "start", filename, lineno, "start")
            last = _hex(m.group(2), _HEX0X_RE, "end", filename, lineno, "end")
            if last < start:
                raise MemoryMapError(
                    f"{filename}:{lineno}: range end {last:#x} is below its start {start:#x}",
                    line=lineno, field="end")
            end = last + 1
        else:
            m = _BOOT_OLD_RE.search(line)
            if not m:
                raise MemoryMapError(
                    f"{filename}:{lineno}: cannot read this BIOS-e820 line: {line.strip()!r}",
                    line=lineno)
            start = _hex(m.group(1), _HEX_RE, "start", filename, lineno, "start")
            end = _hex(m.group(2), _HEX_RE, "end", filename, lineno, "end")
            if end < start:
                raise MemoryMapError(
                    f"{filename}:{lineno}: range end {end:#x} is below its start {start:#x}",
                    line=lineno, field="end")
            if end == start:
                continue          # an empty entry in the old exclusive form
        typ = _BOOT_TYPES.get(" ".join(m.group(3).lower().split()), E820Type.RESERVED)
        rng = MemRange(start, end, typ)
        if rng not in seen:
            seen.add(rng)
            out.append(rng)
    return out


def parse_iomem(text: str, filename: str = "<text>") -> list[MemRange]:
    """Ranges from the top-level lines of ``/proc/iomem`` (inclusive ends).

    ``System RAM`` -> RAM, ``Reserved`` -> RESERVED, ``ACPI Tables`` -> ACPI,
    ``ACPI Non-volatile Storage`` -> NVS, ``Unusable memory`` -> UNUSABLE.
    Indented (nested) lines and other top-level entries (PCI buses, device
    MMIO) are ignored.  A file read as non-root (all addresses zero) is refused.
    """
    out: list[MemRange] = []
    n_top = 0
    n_zero = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _IOMEM_LOOSE_RE.match(line)
        if not m or m.group(1):
            continue                    # not an iomem line, or nested under another
        start = _hex(m.group(2), _HEX_RE, "start", filename, lineno, "start")
        last = _hex(m.group(3), _HEX_RE, "end", filename, lineno, "end")
        n_top += 1
        if start == 0 and last == 0:
            n_zero += 1
        typ = _IOMEM_TYPES.get(" ".join(m.group(4).lower().split()))
        if typ is None:
            continue
        if last < start:
            raise MemoryMapError(
                f"{filename}:{lineno}: range end {last:#x} is below its start {start:#x}",
                line=lineno, field="end")
        out.append(MemRange(start, last + 1, typ))
    if n_top and n_zero == n_top:
        raise MemoryMapError(
            f"{filename}: every address in this /proc/iomem is zero: the kernel hides "
            f"addresses from non-root readers; read it as root (sudo cat /proc/iomem)")
    return out


def parse_memmap_text(text: str, filename: str = "<text>") -> list[MemRange]:
    """Ranges from a Linux boot log or a ``/proc/iomem`` dump, whichever ``text`` is.

    A boot log if any line contains ``BIOS-e820``, else ``/proc/iomem`` if any
    line looks like ``START-END : name``.  Raises :class:`MemoryMapError`
    (with ``line`` for a malformed line) if it is neither or yields no RAM.
    """
    lines = text.splitlines()
    if any("BIOS-e820" in line for line in lines):
        ranges, kind = parse_boot_log(text, filename), "boot log"
    elif any(_IOMEM_STRICT_RE.match(line) for line in lines):
        ranges, kind = parse_iomem(text, filename), "/proc/iomem"
    else:
        raise MemoryMapError(
            f"{filename}: not a memory map: no 'BIOS-e820' or 'System RAM' lines found "
            f"(give a Linux boot log (dmesg) or /proc/iomem read as root)")
    if not any(r.type is E820Type.RAM for r in ranges):
        raise MemoryMapError(f"{filename}: this {kind} lists no RAM")
    return ranges
