"""What the tables should hold: the narrated events applied to a copy of them.

At a hypercall's start the tracer takes a copy of the frame table's words
(count_info, type_info, owner per materialised PDX group; ``FrameTable.initial_group``
for the others), of the superpage table and, for a design whose words live in
page_info (``words_in == "page_info"``), of those fields (its ``fields()``). Every narrated event is
applied to the copy; :meth:`Prediction.sync` then compares the copy with the real
tables and returns a node for each word that differs, so that a change no event
explains is printed (``untraced``) instead of silently left out.
"""

from __future__ import annotations

import numpy as np

from ..mem import PDX_GROUP_MASK, PDX_GROUP_SHIFT, SUPERPAGE_ORDER
from ..xen import Machine
from ._tree import Node


class Prediction:
    """The copy of one machine's words, kept up to date by the narrated events."""

    def __init__(self, m: Machine):
        self.m = m
        #: the design keeps its words in page_info fields (``words_in``), not the table
        self.pageinfo = m.superpage.words_in == "page_info"
        self.frames: dict = {}
        self.spage = None
        self.fields: dict | None = None

    def snapshot(self) -> None:
        """Copy the tables as they are now (at a hypercall's start)."""
        ft = self.m.frame_table
        self.frames = {g: tuple(a.copy() for a in ft.group(g)) for g in ft.materialized_groups}
        self.spage = self.m.spage_table.store.copy()
        self.fields = self.m.superpage.fields() if self.pageinfo else None

    def group(self, g: int):
        """The predicted (count_info, type_info, owner) arrays of PDX group ``g``."""
        p = self.frames.get(g)
        if p is None:                           # untouched at the call's start: the boot state
            p = self.frames[g] = self.m.frame_table.initial_group(g)
        return p

    def words(self, page: int, n: int):
        """The predicted (count_info, type_info) of frames [page, page+n), copies."""
        g, off = page >> PDX_GROUP_SHIFT, page & PDX_GROUP_MASK
        p = self.group(g)
        return p[0][off:off + n].copy(), p[1][off:off + n].copy()

    def set_frames(self, page: int, ci=None, ti=None, owner=None) -> None:
        """Frames [page, page+n) now hold these words (arrays or ints), per the events."""
        g, off = page >> PDX_GROUP_SHIFT, page & PDX_GROUP_MASK
        p = self.group(g)
        for arr, v in zip(p, (ci, ti, owner)):
            if v is not None:
                if isinstance(v, np.ndarray):
                    arr[off:off + v.size] = v
                else:
                    arr[off] = v

    def set_spage(self, word: int, entry: int, value: int) -> None:
        """The superpage table's word ``word`` at store position ``entry`` now holds ``value``."""
        self.spage[word, entry] = value

    def set_field(self, mfn: int, value: int) -> None:
        """A page_info-word design: the superpage's first frame's extra field now holds ``value``."""
        if self.fields is None:
            return
        page = self.m.mfn_to_page(mfn)
        a = self.fields.setdefault(page >> PDX_GROUP_SHIFT,
                                   np.zeros(PDX_GROUP_MASK + 1, dtype=np.uint64))
        a[page & PDX_GROUP_MASK] = value

    def sync(self, label: str) -> list[Node]:
        """Frames and superpage words that differ from what the events say: one node each
        (of kind ``label``), and the prediction set to what the tables hold."""
        m, ft = self.m, self.m.frame_table
        out = []
        for g in sorted(set(ft.materialized_groups) | set(self.frames)):
            p = self.group(g)
            now = ft.group(g) if g in ft.materialized_groups else ft.initial_group(g)
            diff = np.flatnonzero((p[0] != now[0]) | (p[1] != now[1]) | (p[2] != now[2]))
            for j in diff:
                j = int(j)
                page = (g << PDX_GROUP_SHIFT) | j
                words = [(p[f][j], now[f][j]) for f in range(3)]
                out.append(Node(label, {"mfn": int(m.pdx_to_mfn(page)), "words": words}))
                for f in range(3):
                    p[f][j] = now[f][j]
        store = m.spage_table.store
        ws, es = np.nonzero(self.spage != store)
        spdxs = m.spage_table.spdx_of_entries(es).tolist() if es.size else []
        for w, e, spdx in zip(ws, es, spdxs):
            out.append(Node(label, {"spage_mfn": int(m.pdx_to_mfn(spdx << SUPERPAGE_ORDER)),
                                    "word": int(w), "old": int(self.spage[w, e]),
                                    "new": int(store[w, e])}))
            self.spage[w, e] = store[w, e]
        if self.fields is not None:
            groups = self.m.superpage.field_views()          # read only: no copies
            for g in sorted(set(groups) | set(self.fields)):
                now = groups.get(g)
                now = np.zeros(PDX_GROUP_MASK + 1, dtype=np.uint64) if now is None else now
                pred = self.fields.setdefault(g, np.zeros(PDX_GROUP_MASK + 1, dtype=np.uint64))
                for j in np.flatnonzero(pred != now):
                    mfn = int(m.pdx_to_mfn((g << PDX_GROUP_SHIFT) | int(j)))
                    out.append(Node(label, {"pageinfo_mfn": mfn, "old": int(pred[j]),
                                            "new": int(now[j])}))
                    pred[j] = now[j]
        return out
