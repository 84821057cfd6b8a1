"""Units, sizes and the address-space constants every other module shares.

Names follow Xen: PAGE_SHIFT, a frame is 4 KiB, a superpage is order 9 (2 MiB),
MAX_ORDER is the buddy allocator's largest order on x86 (18: 1 GiB).
"""

from __future__ import annotations

import re

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

SUPERPAGE_ORDER = 9
SUPERPAGE_PAGES = 1 << SUPERPAGE_ORDER            # 512 frames
SUPERPAGE_SHIFT = PAGE_SHIFT + SUPERPAGE_ORDER    # 21
SUPERPAGE_SIZE = 1 << SUPERPAGE_SHIFT             # 2 MiB

MAX_ORDER = 18                                    # 2^18 frames = 1 GiB, never split by PDX

PADDR_BITS = 52                                   # x86_64 physical address width
MAX_PADDR = 1 << PADDR_BITS
MAX_MFN = MAX_PADDR >> PAGE_SHIFT

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

_UNITS = {
    "": 1, "b": 1,
    "k": KiB, "kib": KiB,
    "m": MiB, "mib": MiB,
    "g": GiB, "gib": GiB,
    "t": TiB, "tib": TiB,
}
#: decimal-looking spellings, refused: 2GB may mean 2 * 10^9 or 2 * 2^30 bytes
_AMBIGUOUS = {"kb": "KiB", "mb": "MiB", "gb": "GiB", "tb": "TiB"}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | str) -> int:
    """Parse a byte size: an int, ``0x1000``, ``4096``, ``2GiB``, ``512MiB``, ``4k``.

    Binary units only: KiB, MiB, GiB, TiB, or K, M, G, T as Xen's command line reads
    them. ``2GB`` is refused, naming the spellings (it may mean 2 * 10^9 or 2 * 2^30
    bytes). Raises ValueError naming what is wrong; ``"2 gigs"`` is refused.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got a boolean ({value!r})")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as 2GiB or 0x1000, got {type(value).__name__}")
    text = value.strip()
    if text.lower().startswith("0x"):
        try:
            return int(text, 16)
        except ValueError:
            raise ValueError(f"bad hexadecimal size {value!r}") from None
    m = _SIZE_RE.match(text)
    if m and m.group(2).lower() in _AMBIGUOUS:
        n, unit = m.group(1), _AMBIGUOUS[m.group(2).lower()]
        raise ValueError(f"size {value!r} is ambiguous (decimal or binary?): write {n}{unit} "
                         f"(binary, {n} x {_UNITS[unit.lower()]:,} bytes) or the bytes in full; "
                         f"units: KiB, MiB, GiB, TiB (K, M, G, T)")
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"bad size {value!r}: use a number with an optional unit "
                         f"(KiB, MiB, GiB, TiB) or hex, e.g. 2GiB, 512MiB, 0x1000")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def format_size(nbytes: int) -> str:
    """Render a byte count in the largest binary unit it reaches, always with two
    decimals (one format: ``1.00 GiB``, ``2.00 GiB`` for 2047 MiB, ``13.50 MiB``);
    below 1 KiB, whole bytes (``12 B``)."""
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if nbytes >= size:
            return f"{nbytes / size:.2f} {unit}"
    return f"{int(nbytes)} B"
