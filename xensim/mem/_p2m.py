"""Frame-number translation tables: a domain's P2M (gfn -> mfn) and the machine's M2P.

Both are two-level: a leaf per 512 indexes (one 2 MiB superpage of the index
space). A leaf is *empty*, *linear* (entry i holds base + i: a 2 MiB extent
populated in one go, 8 bytes for 512 entries) or an *array* of 512 int64
entries (after 4 KiB changes). A 2 TiB host full of superpage-backed guests
then costs megabytes, not gigabytes. ``INVALID`` (-1) marks an absent entry,
like Xen's INVALID_MFN / INVALID_M2P_ENTRY.
"""

from __future__ import annotations

import numpy as np

from ._units import SUPERPAGE_ORDER, SUPERPAGE_PAGES

INVALID = -1
_LEAF_MASK = SUPERPAGE_PAGES - 1
# The directory holds, per leaf: 0 (empty), base + 1 (linear), or -1 (array). Empty is
# 0 so that the directory comes from np.zeros, whose pages the OS maps lazily: a
# machine-wide M2P over terabytes of address space costs nothing until touched.
_EMPTY = 0
_ARRAY = -1


class FrameMap:
    """index -> frame number, for indexes in [0, size)."""

    def __init__(self, size: int):
        self.size = size
        n_leaves = (size + _LEAF_MASK) >> SUPERPAGE_ORDER
        self._base = np.zeros(n_leaves, dtype=np.int64)
        self._arrays: dict[int, np.ndarray] = {}
        #: per array leaf, how many of its entries are present (settling needs no scan)
        self._live: dict[int, int] = {}
        self.count = 0
        self._snap: tuple | None = None     # snapshot(), until the next change

    def _check(self, i: int) -> None:
        if not 0 <= i < self.size:
            raise IndexError(f"index {i:#x} outside [0, {self.size:#x})")

    def get(self, i: int) -> int:
        if not 0 <= i < self.size:
            return INVALID
        leaf = i >> SUPERPAGE_ORDER
        b = self._base.item(leaf)
        if b > 0:
            return b - 1 + (i & _LEAF_MASK)
        if b == _ARRAY:
            return self._arrays[leaf].item(i & _LEAF_MASK)
        return INVALID

    __getitem__ = get

    def get_run(self, i: int, n: int) -> np.ndarray:
        """Entries [i, i+n) as an int64 array (INVALID where absent or outside)."""
        out = np.full(n, INVALID, dtype=np.int64)
        lo, hi = max(i, 0), min(i + n, self.size)
        while lo < hi:
            leaf, off = lo >> SUPERPAGE_ORDER, lo & _LEAF_MASK
            k = min(hi - lo, SUPERPAGE_PAGES - off)
            b = self._base.item(leaf)
            if b > 0:
                out[lo - i:lo - i + k] = np.arange(b - 1 + off, b - 1 + off + k)
            elif b == _ARRAY:
                out[lo - i:lo - i + k] = self._arrays[leaf][off:off + k]
            lo += k
        return out

    def get_many(self, idx: np.ndarray) -> np.ndarray:
        """Entries at the indexes ``idx`` (an int64 array; INVALID where absent or outside)."""
        out = np.full(idx.size, INVALID, dtype=np.int64)
        inside = np.flatnonzero((idx >= 0) & (idx < self.size))
        if not inside.size:
            return out
        i = idx[inside]
        leaf, off = i >> SUPERPAGE_ORDER, i & _LEAF_MASK
        b = self._base[leaf]
        linear = b > 0
        out[inside[linear]] = b[linear] - 1 + off[linear]
        for lf in np.unique(leaf[b == _ARRAY]).tolist():
            sel = leaf == lf
            out[inside[sel]] = self._arrays[lf][off[sel]]
        return out

    def clear_many(self, idx: np.ndarray) -> None:
        """Clear the entries at the indexes ``idx`` (an int64 array inside the map), as
        :meth:`clear` of each in any order would: one :meth:`clear_run` per run of them."""
        self._snap = None
        idx = np.unique(idx)
        cuts = (np.flatnonzero(np.diff(idx) != 1) + 1).tolist()
        for lo, hi in zip([0, *cuts], [*cuts, idx.size]):
            self.clear_run(int(idx[lo]), hi - lo)

    def _as_array(self, leaf: int) -> np.ndarray:
        b = self._base.item(leaf)
        if b == _ARRAY:
            return self._arrays[leaf]
        arr = (np.full(SUPERPAGE_PAGES, INVALID, dtype=np.int64) if b == _EMPTY
               else np.arange(b - 1, b - 1 + SUPERPAGE_PAGES, dtype=np.int64))
        self._base[leaf] = _ARRAY
        self._arrays[leaf] = arr
        self._live[leaf] = 0 if b == _EMPTY else SUPERPAGE_PAGES
        return arr

    def _settle(self, leaf: int) -> None:
        """Fold an array leaf back to empty or linear when it has become one."""
        live = self._live[leaf]
        if live == 0:
            del self._arrays[leaf], self._live[leaf]
            self._base[leaf] = _EMPTY
        elif live == SUPERPAGE_PAGES:
            arr = self._arrays[leaf]
            if arr.item(0) >= 0 and (np.diff(arr) == 1).all():
                del self._arrays[leaf], self._live[leaf]
                self._base[leaf] = arr.item(0) + 1

    def set(self, i: int, value: int) -> None:
        self._snap = None
        self._check(i)
        leaf = i >> SUPERPAGE_ORDER
        arr = self._as_array(leaf)
        old = arr.item(i & _LEAF_MASK)
        change = (1 if value != INVALID else 0) - (1 if old != INVALID else 0)
        self.count += change
        self._live[leaf] += change
        arr[i & _LEAF_MASK] = value
        self._settle(leaf)

    def clear(self, i: int) -> None:
        self.set(i, INVALID)

    def set_run(self, i: int, first_value: int, n: int) -> None:
        """Entries [i, i+n) := first_value, first_value+1, ... (or INVALID if first_value is)."""
        self._snap = None
        self._check(i)
        self._check(i + n - 1)
        while n:
            leaf, off = i >> SUPERPAGE_ORDER, i & _LEAF_MASK
            k = min(n, SUPERPAGE_PAGES - off)
            if k == SUPERPAGE_PAGES:                    # whole leaves, all at once
                k = (n >> SUPERPAGE_ORDER) << SUPERPAGE_ORDER
                base = self._base[leaf:leaf + (k >> SUPERPAGE_ORDER)]
                old = int(np.count_nonzero(base > 0)) << SUPERPAGE_ORDER
                for a in np.flatnonzero(base == _ARRAY).tolist():
                    old += self._live.pop(leaf + a)
                    del self._arrays[leaf + a]
                if first_value == INVALID:
                    base[:] = _EMPTY
                else:
                    base[:] = np.arange(first_value + 1, first_value + 1 + k, SUPERPAGE_PAGES)
                self.count += (0 if first_value == INVALID else k) - old
            else:
                arr = self._as_array(leaf)
                seg = arr[off:off + k]
                gone = int((seg != INVALID).sum())
                if first_value == INVALID:
                    seg[:] = INVALID
                    change = -gone
                else:
                    seg[:] = np.arange(first_value, first_value + k, dtype=np.int64)
                    change = k - gone
                self.count += change
                self._live[leaf] += change
                self._settle(leaf)
            i += k
            n -= k
            if first_value != INVALID:
                first_value += k

    def any_in_run(self, i: int, n: int) -> bool:
        """True when any entry of [i, i+n) is present."""
        while n > 0:
            leaf, off = i >> SUPERPAGE_ORDER, i & _LEAF_MASK
            k = min(n, SUPERPAGE_PAGES - off)
            b = self._base.item(leaf)
            if b > 0 or (b == _ARRAY and (self._arrays[leaf][off:off + k] != INVALID).any()):
                return True
            i += k
            n -= k
        return False

    def clear_run(self, i: int, n: int) -> None:
        self.set_run(i, INVALID, n)

    def _leaf_count(self, leaf: int) -> int:
        b = self._base.item(leaf)
        if b > 0:
            return SUPERPAGE_PAGES
        if b == _ARRAY:
            return self._live[leaf]
        return 0

    def items(self):
        """Yield (indexes, values) numpy arrays, one pair per non-empty leaf, in index order."""
        for leaf in np.flatnonzero(self._base != _EMPTY):
            leaf = int(leaf)
            idx = np.arange(leaf << SUPERPAGE_ORDER, (leaf + 1) << SUPERPAGE_ORDER, dtype=np.int64)
            b = int(self._base[leaf])
            vals = self._arrays[leaf] if b == _ARRAY else np.arange(b - 1, b - 1 + SUPERPAGE_PAGES, dtype=np.int64)
            keep = vals != INVALID
            yield idx[keep], vals[keep]

    def nbytes(self) -> int:
        return int(self._base.nbytes) + sum(a.nbytes for a in self._arrays.values())

    def snapshot(self) -> tuple:
        """Hashable contents, equal for equal maps; kept until the map next changes."""
        if self._snap is None:
            self._snap = (self._base.tobytes(),
                          tuple(sorted((k, v.tobytes()) for k, v in self._arrays.items())))
        return self._snap

    def capture(self) -> tuple:
        """(:meth:`snapshot`, count): what :meth:`restore` takes."""
        return (self.snapshot(), self.count)

    def restore(self, state: tuple) -> None:
        """Hold exactly what it held at ``state`` (a :meth:`capture`): only the leaves
        that differ are copied."""
        snapshot, count = state
        base, arrays = snapshot
        if self._snap is snapshot:
            return
        if self._base.tobytes() != base:
            self._base = np.frombuffer(base, dtype=np.int64).copy()
        want = dict(arrays)
        for k in [k for k in self._arrays if k not in want]:
            del self._arrays[k], self._live[k]
        for k, v in arrays:                   # only the leaves that differ are copied
            a = self._arrays.get(k)
            if a is None or a.tobytes() != v:
                a = self._arrays[k] = np.frombuffer(v, dtype=np.int64).copy()
                self._live[k] = int((a != INVALID).sum())
        self.count = count
        self._snap = snapshot
