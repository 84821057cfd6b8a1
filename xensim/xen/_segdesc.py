"""Segment descriptor pages (PGT_seg_desc_page): a GDT or LDT frame, validated like a table.

A frame becomes a segment descriptor page (type ``PGT_seg_desc_page``) when a guest
installs it as part of its GDT or LDT. ``__get_page_type`` does not validate such a
page at once (only writable and shared pages are): at its first typed reference it
goes to ``alloc_page_type``, which runs Xen's ``alloc_segdesc_page`` over the frame's
512 eight-byte descriptors: one that ``check_descriptor`` refuses fails the type with
-EINVAL. The page is never devalidated (``__put_page_type`` devalidates page tables
only), so its type stays valid at type count 0 until the type changes.

:func:`check_descriptor` is the 64-bit PV guest's rule (xen/arch/x86/x86_64/mm.c,
4.1 to 4.8), in our words: a descriptor that is not present, a code or data segment
(no base or limit check for a 64-bit guest), or a zero system type (the second half
of a call gate) is accepted; of the other system descriptors only a call gate is,
if its target code selector is a guest selector (below Xen's reserved GDT entries,
Xen's flat kernel code selector, or an LDT selector) and its reserved bits are zero.
Xen also rewrites the DPL of what it accepts; xensim models the verdict only (a
descriptor's contents mean nothing else to it).
"""

from __future__ import annotations

import errno

import numpy as np

_SEGMENT_TYPE = 15 << 8
_SEGMENT_S = 1 << 12
_SEGMENT_P = 1 << 15
_CALL_GATE = 0xC << 8
#: the first GDT entry Xen reserves (FIRST_RESERVED_GDT_PAGE 14 * 512 entries)
FIRST_RESERVED_GDT_ENTRY = 14 * 4096 // 8
#: Xen's flat kernel code selector for a 64-bit PV guest (FLAT_RING3_CS64)
FLAT_KERNEL_CS = 0xE033


def check_descriptor(desc: int) -> bool:
    """May a 64-bit PV guest have this 8-byte descriptor in its GDT or LDT?"""
    a, b = desc & 0xFFFFFFFF, (desc >> 32) & 0xFFFFFFFF
    if not b & _SEGMENT_P or b & _SEGMENT_S or b & _SEGMENT_TYPE == 0:
        return True
    if b & _SEGMENT_TYPE != _CALL_GATE:
        return False
    cs = a >> 16
    if not (cs >> 3 < FIRST_RESERVED_GDT_ENTRY or cs == FLAT_KERNEL_CS or cs & 4):
        return False
    return b & 0xFF == 0


def alloc_segdesc_page(descs: np.ndarray) -> int:
    """Validate a frame's 512 descriptors: 0, or -EINVAL at the first bad one."""
    for i in np.flatnonzero(descs):
        if not check_descriptor(int(descs[int(i)])):
            return -errno.EINVAL
    return 0
