"""Decoding words and entries into the texts trace and inspect print.

One place for both commands: a frame's ``count_info`` / ``type_info`` (a change of
one, or the word field by field), a PGT type's name, a page-table entry and its
flags, the primitive a present entry's validation calls (docs/xen-facts.md,
section 4), runs of frames, and a superpage's words as each design reads them.
"""

from __future__ import annotations

import numpy as np

from ..designs import REGISTRY
from ..mem import (PGC_count_mask, PGT_TYPE_NAMES, PGT_type_shift, decode_count_info,
                   decode_type_info, format_count_info, format_type_info)
from ..xen import (_PAGE_ACCESSED, _PAGE_AVAIL_HIGH, _PAGE_DIRTY, _PAGE_GLOBAL, _PAGE_NX,
                   _PAGE_PCD, _PAGE_PRESENT, _PAGE_PSE, _PAGE_PWT, _PAGE_RW, _PAGE_USER,
                   CHILD_TYPES, UVMF_ALL, UVMF_FLUSHTYPE_MASK, UVMF_INVLPG, UVMF_LOCAL,
                   UVMF_TLB_FLUSH, Machine, pte_mfn)

# ==========================================================================
# Frame words
# ==========================================================================

def count_info_text(ci: int) -> str:
    """``allocated, state inuse, count 2``: the flags set, the state, the count."""
    d = decode_count_info(ci)
    flags = [k for k in ("allocated", "xen_heap", "page_table", "broken") if d[k]]
    if d["cacheattr"]:
        flags.append(f"cacheattr {d['cacheattr']}")
    return ", ".join(flags + [f"state {d['state']}", f"count {d['count']}"])


def type_info_text(ti: int) -> str:
    """``type writable, validated, count 1``: the type, its flags set, the type count."""
    d = decode_type_info(ti)
    flags = [k for k in ("pinned", "validated", "pae_xen_l2", "partial", "locked") if d[k]]
    return ", ".join([f"type {d['type']}"] + flags + [f"count {d['count']}"])


def type_text(t: int | None) -> str:
    """A PGT type (its full-word value) by name: ``writable``; ``-`` for None."""
    return "-" if t is None else PGT_TYPE_NAMES.get(t >> PGT_type_shift, str(t))


def ci_change(old: int, new: int) -> str:
    """``count_info +1 (allocated inuse count=1 -> 2)``, or both words in full."""
    old, new = int(old), int(new)
    if old & ~PGC_count_mask == new & ~PGC_count_mask:
        a, b = old & PGC_count_mask, new & PGC_count_mask
        flags = format_count_info(old).rsplit(" count=", 1)[0]
        return f"count_info {b - a:+d} ({flags} count={a} -> {b})"
    return f"count_info {format_count_info(old)} -> {format_count_info(new)}"


def ti_change(old: int, new: int) -> str:
    """``type_info none/0 -> writable/1 validated``."""
    return f"type_info {format_type_info(int(old))} -> {format_type_info(int(new))}"


def frames_text(mfns) -> str:
    """``mfn 0x200`` or ``512 frames mfn 0x200..0x3ff`` (runs listed if not contiguous)."""
    mfns = [int(x) for x in mfns]
    if len(mfns) == 1:
        return f"mfn {mfns[0]:#x}"
    runs, start = [], mfns[0]
    for a, b in zip(mfns, mfns[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start:#x}..{a:#x}" if a != start else f"{a:#x}")
            start = b
    more = f" +{len(runs) - 4} runs" if len(runs) > 4 else ""
    return f"{len(mfns)} frames mfn {', '.join(runs[:4])}{more}"


def row_groups(rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The distinct rows of a 2-D array of words, in the order each first appears, each
    with the indices of the rows holding it. Rows are grouped by an integer sort, not by
    ``np.unique(axis=0)``: that compares structured rows, and numpy turns a Ctrl-C that
    arrives during such a comparison into a TypeError."""
    if not len(rows):
        return []
    order = np.lexsort(rows.T[::-1])                 # stable: each group's first index leads
    ranked = rows[order]
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (ranked[1:] != ranked[:-1]).any(axis=1)
    group = np.empty(len(rows), dtype=np.intp)
    group[order] = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    return [(ranked[starts[g]], np.flatnonzero(group == g))
            for g in np.argsort(order[starts], kind="stable").tolist()]


# ==========================================================================
# Page-table entries
# ==========================================================================

_PTE_FLAGS = ((_PAGE_NX, "NX"), (_PAGE_GLOBAL, "G"), (_PAGE_PSE, "PSE"), (_PAGE_DIRTY, "D"),
              (_PAGE_ACCESSED, "A"), (_PAGE_PCD, "PCD"), (_PAGE_PWT, "PWT"), (_PAGE_USER, "U"),
              (_PAGE_RW, "RW"), (_PAGE_PRESENT, "P"))


def pte_flags(e: int) -> str:
    """``PSE|D|A|U|RW|P``: the entry's flags, highest bit first."""
    names = [n for bit, n in _PTE_FLAGS if e & bit]
    if e & _PAGE_AVAIL_HIGH:
        names.insert(0, f"avail:{(e & _PAGE_AVAIL_HIGH) >> 52:#x}")
    return "|".join(names) or "-"


def format_pte(e: int) -> str:
    """``mfn 0x200 PSE|D|A|U|RW|P``; ``0`` for an empty entry."""
    e = int(e)
    if e == 0:
        return "0"
    return f"mfn {pte_mfn(e):#x} {pte_flags(e)}"


def uvmf_text(flags: int) -> str:
    """update_va_mapping's flags: ``UVMF_TLB_FLUSH|UVMF_LOCAL``, ``UVMF_INVLPG|UVMF_MULTI
    (bitmap at 0x7000)``; ``UVMF_NONE`` for a type that flushes nothing."""
    kind, bmap = flags & UVMF_FLUSHTYPE_MASK, flags & ~UVMF_FLUSHTYPE_MASK
    if kind not in (UVMF_TLB_FLUSH, UVMF_INVLPG):
        return "UVMF_NONE" if not flags else f"flags {flags:#x} (no flush)"
    name = "UVMF_TLB_FLUSH" if kind == UVMF_TLB_FLUSH else "UVMF_INVLPG"
    where = {UVMF_LOCAL: "UVMF_LOCAL", UVMF_ALL: "UVMF_ALL"}.get(bmap)
    return f"{name}|{where}" if where else f"{name}|UVMF_MULTI (bitmap at {bmap:#x})"


def entry_get_text(level: int, e: int, d: int | None) -> str:
    """The primitive a present entry's validation calls (docs/xen-facts.md, section 4)."""
    mfn = pte_mfn(e)
    if level == 2 and e & _PAGE_PSE:
        return f"get_superpage(mfn {mfn:#x}, dom{d}, {'rw' if e & _PAGE_RW else 'ro'})"
    if level == 1:
        if e & _PAGE_RW:
            return f"get_page_and_type(mfn {mfn:#x}, dom{d}, writable)"
        return f"get_page(mfn {mfn:#x}, dom{d})"
    t = CHILD_TYPES.get(level)
    return f"get_page_and_type(mfn {mfn:#x}, dom{d}, {type_text(t) if t else '?'})"


def entry_put_text(level: int, e: int) -> str:
    """The primitive dropping a present entry calls."""
    mfn = pte_mfn(e)
    if level == 2 and e & _PAGE_PSE:
        return f"put_superpage(mfn {mfn:#x}, {'rw' if e & _PAGE_RW else 'ro'})"
    if level == 1 and not e & _PAGE_RW:
        return f"put_page(mfn {mfn:#x})"
    return f"put_page_and_type(mfn {mfn:#x})"


# ==========================================================================
# Superpage words
# ==========================================================================

def _design_class(design: str):
    """The registered design called ``design`` (None: not loaded here, e.g. a trace file
    of a user's design read without its design file)."""
    return REGISTRY.get(design)


def spage_word_text(design: str, word: int, value: int) -> str:
    """A superpage word as the design reads it (its ``word_text``): ``dynamic/1``,
    ``mark|2``, ``3``; a design that is not registered here: the number."""
    cls = _design_class(design)
    return cls.word_text(word, value) if cls is not None else str(int(value))


def spage_word_name(design: str, word: int) -> str:
    """What a word of the design is called in the trace (its ``word_names``)."""
    cls = _design_class(design)
    names = cls.word_names if cls is not None else ()
    return names[word] if word < len(names) else "word"


def spage_words(m: Machine, mfn: int) -> list[tuple[str, int]] | None:
    """The superpage's current words as (name, value), or None when the design keeps none."""
    return m.superpage.words(mfn)
