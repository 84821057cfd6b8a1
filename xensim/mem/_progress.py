"""Per-frame validation progress: page_info's ``nr_validated_ptes`` and ``partial_pte``.

Xen keeps, in the ``struct page_info`` of a page table whose validation or devalidation
was preempted (``PGT_partial`` in its ``type_info``), how far it got: ``nr_validated_ptes``
(entries 0 .. n-1 done) and ``partial_pte`` (the entry at n: 1, it holds a partial type
reference of the table below, taken while validating; -1, it still holds its general
reference, its table below partly devalidated; 0, nothing). XSA-299's fix (4.13)
replaced ``partial_pte`` by ``partial_flags``, whose ``PTF_partial_set`` is kept here as 1
(the entry holds a general reference, whichever way it was preempted): xensim uses it on
4.22 and, outside faithful mode, on 4.1-4.8 (``Machine.partial_flags``).

:class:`ValidationProgress` keeps both as a structure of arrays per block of 512 PDXs
(uint16 and int8), materialised on the first write:
a machine whose validations are never preempted allocates nothing.
"""

from __future__ import annotations

import numpy as np

#: frames per block of arrays: a page-table's worth (a preempted table is rare: small blocks)
_SHIFT = 9
_FRAMES = 1 << _SHIFT
_MASK = _FRAMES - 1

__all__ = ["ValidationProgress"]


class ValidationProgress:
    """``nr_validated_ptes`` and ``partial_pte`` of every frame, by PDX (0 and 0 unwritten)."""

    def __init__(self):
        #: block -> (nr_validated_ptes uint16[512], partial_pte int8[512])
        self._groups: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, pdx: int) -> tuple[int, int]:
        """(nr_validated_ptes, partial_pte) of frame ``pdx``."""
        g = self._groups.get(pdx >> _SHIFT)
        if g is None:
            return 0, 0
        i = pdx & _MASK
        return g[0].item(i), g[1].item(i)

    def set(self, pdx: int, nr_validated_ptes: int, partial_pte: int) -> None:
        key = pdx >> _SHIFT
        g = self._groups.get(key)
        if g is None:
            if nr_validated_ptes == 0 and partial_pte == 0:
                return
            g = self._groups[key] = (np.zeros(_FRAMES, np.uint16),
                                     np.zeros(_FRAMES, np.int8))
        i = pdx & _MASK
        g[0][i] = nr_validated_ptes
        g[1][i] = partial_pte

    def capture(self) -> tuple:
        """The groups holding anything, as bytes, by group (the machine's inventory)."""
        return tuple(sorted((k, a.tobytes(), b.tobytes()) for k, (a, b) in self._groups.items()
                            if a.any() or b.any()))

    def restore(self, state: tuple) -> None:
        self._groups = {k: (np.frombuffer(a, np.uint16).copy(), np.frombuffer(b, np.int8).copy())
                        for k, a, b in state}
