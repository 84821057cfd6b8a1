"""The tracer: the hooks on one machine that turn each hypercall into an event tree.

How it sees the machine (no behaviour changes; everything is removed afterwards):

* ``HypercallLayer.trace`` (entry and return of every hypercall),
  ``RefCounts.trace`` (every scalar cmpxchg of a frame word) and
  ``SuperpageTable.trace`` (every change of a superpage word) are hooks;
* the range operations of :class:`~xensim.xen.RefCounts`
  (``get_pages_and_type`` ... ``put_runs_and_type``), its ``free_page`` callback,
  ``Machine.request`` (one request of a batch), ``PageTables.get_page_from_entry``
  / ``put_page_from_entry`` and the pageinfo-count design's ``_cas`` are wrapped on
  the traced machine's *instances* only, to read each range's frames before and
  after and to mark where a request or an entry's validation starts and ends;
* after every hypercall the frame table and the superpage table are compared with
  what the narrated events say they hold (:mod:`._predict`): a change no event
  explains would be printed as ``untraced`` (it never is: ``tests/test_trace.py``
  checks it), so the trace cannot silently leave something out.

Each finished call is rendered into :attr:`Tracer.lines` by a :class:`~._narrate.Narrator`.
"""

from __future__ import annotations

import numpy as np

from ..mem import SUPERPAGE_ORDER, SUPERPAGE_PAGES
from ..xen import (HYPERVISOR_memory_op, HYPERVISOR_mmuext_op, MMUEXT_MARK_SUPER,
                   MMUEXT_UNMARK_SUPER, XENMEM_increase_reservation, XENMEM_populate_physmap,
                   _PAGE_PSE, Machine, errno_name, pte_mfn)
from ._calls import decode_call
from ._decode import entry_get_text, entry_put_text, spage_word_text, spage_words, type_text
from ._events import Call, Line, Node, path_nodes
from ._narrate import Narrator
from ._predict import Prediction


class Tracer:
    """Installs the hooks on one machine and narrates each hypercall into :attr:`lines`."""

    def __init__(self, m: Machine, level: str = "superpage", all_frames: bool = False):
        self.narrator = Narrator(m, level, all_frames)
        self.m = m
        self.design = m.superpage.name
        self.pred = Prediction(m)
        self.lines: list[Line] = []
        self.calls = 0
        self.errors = 0
        #: changes no event explained (never expected; checked by the tests)
        self.untraced = 0
        #: TLB flushes type changes asked for (RefStats.tlb_flushes) while tracing
        self.flushes = 0
        self.cur: Call | None = None
        self.stack: list[Node] = []
        self._saved: list[tuple[object, str, object, bool]] = []

    # -- installing -------------------------------------------------------------------
    def _set(self, obj, name: str, value) -> None:
        had = name in vars(obj)
        self._saved.append((obj, name, vars(obj).get(name), had))
        setattr(obj, name, value)

    def install(self) -> "Tracer":
        m = self.m
        refs = m.refs
        self._set(m.hypercall, "trace", self._on_hypercall)
        self._set(refs, "trace", self._on_frame)
        self._set(m.spage_table, "trace", self._on_spage)
        for name in ("get_pages_and_type", "put_pages_and_type", "get_runs_and_type",
                     "put_runs_and_type"):
            self._set(refs, name, getattr(self, "_wrap_" + name)(getattr(refs, name)))
        self._set(refs, "free_page", self._wrap_free(refs.free_page))
        self._set(m, "request", self._wrap_request(m.request))
        self._set(m.pt, "get_page_from_entry", self._wrap_get_entry(m.pt.get_page_from_entry))
        self._set(m.pt, "put_page_from_entry", self._wrap_put_entry(m.pt.put_page_from_entry))
        if self.design == "pageinfo-count":           # its counts live in page_info, not the table
            self._set(m.superpage, "_cas", self._wrap_pi_cas(m.superpage._cas))
            if hasattr(m.superpage, "_write_many"):
                self._set(m.superpage, "_write_many", self._wrap_pi_write_many(m.superpage._write_many))
        return self

    def uninstall(self) -> None:
        for obj, name, value, had in reversed(self._saved):
            if had:
                setattr(obj, name, value)
            else:
                delattr(obj, name)
        self._saved.clear()

    # -- the event tree ------------------------------------------------------------------
    def _emit(self, kind: str, **data) -> Node | None:
        if not self.stack:
            return None
        node = Node(kind, data)
        self.stack[-1].children.append(node)
        return node

    def _push(self, kind: str, **data) -> Node | None:
        node = self._emit(kind, **data)
        if node is not None:
            self.stack.append(node)
        return node

    def _pop(self, node: Node | None) -> None:
        if node is not None and self.stack and self.stack[-1] is node:
            self.stack.pop()

    def _sync(self, label: str) -> list[Node]:
        return [] if self.cur is None else self.pred.sync(label)

    # -- hooks ---------------------------------------------------------------------------------
    def _on_hypercall(self, caller: int, number: int, args: tuple, rc) -> None:
        if rc is None:
            self._enter(caller, number, args)
        elif self.cur is not None:
            self._exit(rc)

    def _on_frame(self, page: int, word: str, old: int, new: int, why: str) -> None:
        if "[" in word:                          # a range op: reported by its wrapper
            return
        if word == "tlb_flush":                  # no frame word changed: a flush was asked for
            self.flushes += 1
            if self.cur is not None:
                self._emit("path", text=(
                    f"TLB flush: mfn {int(self.m.pdx_to_mfn(page)):#x} changes type, and its "
                    f"last typed reference went at TLB clock {old}, not before the CPU's last "
                    f"flush: {why} (clock -> {new})"))
            return
        if self.cur is None:
            return
        mfn = int(self.m.pdx_to_mfn(page))
        self._emit("frame", mfn=mfn, page=page, word=word, old=int(old), new=int(new), why=why)
        if word == "count_info":
            self.pred.set_frames(page, ci=int(new))
        else:
            self.pred.set_frames(page, ti=int(new))

    def _on_spage(self, where, word: int, old, new) -> None:
        if self.cur is None:
            return
        st = self.m.spage_table
        if isinstance(where, np.ndarray):        # write_many: store positions
            for e, o, n in zip(where, old, new):
                self._spage_event(self.pred.spdx_of_entry(int(e)), word, int(o), int(n))
                self.pred.set_spage(word, int(e), n)
            return
        self._spage_event(where, word, int(old), int(new))
        self.pred.set_spage(word, st.entry_index(where), new)

    def _spage_event(self, spdx: int, word: int, old: int, new: int) -> None:
        mfn = int(self.m.pdx_to_mfn(spdx << SUPERPAGE_ORDER))
        self._emit("spage", mfn=mfn, word=word, old=old, new=new)

    # -- wrappers -----------------------------------------------------------------------------
    def _read(self, page: int, n: int):
        ci, ti, _ = self.m.frame_table.read_slices(page, n)
        return ci, ti

    def _wrap_get_pages_and_type(self, orig):
        def get_pages_and_type(first, n, d, type):
            if self.cur is None or n == 0:
                return orig(first, n, d, type)
            before = self._read(first, n)
            node = self._emit("range", page=first, n=n, before=before,
                              why=("get_pages" if type is None
                                   else f"get_pages_and_type({type_text(type)})"))
            r = orig(first, n, d, type)
            if r.ok:
                node.data["after"] = self._read(first, n)
                self.pred.set_frames(first, *node.data["after"])
            else:
                node.data["failed"] = (r.failed_index, r.reason)
            return r
        return get_pages_and_type

    def _wrap_put_pages_and_type(self, orig):
        def put_pages_and_type(first, n, typed=True):
            if self.cur is None or n == 0:
                return orig(first, n, typed)
            ci, ti = self._read(first, n)
            after = (ci - np.uint64(1), ti - np.uint64(1) if typed else ti)
            self._emit("range", page=first, n=n, before=(ci, ti), after=after,
                       why="put_pages_and_type" if typed else "put_pages")
            self.pred.set_frames(first, *after)          # before the frees it may cause
            return orig(first, n, typed)
        return put_pages_and_type

    def _wrap_get_runs_and_type(self, orig):
        def get_runs_and_type(firsts, n, d, type):
            if self.cur is None:
                return orig(firsts, n, d, type)
            firsts = [int(x) for x in np.asarray(firsts).ravel()]
            nodes = [(f, self._emit("range", page=f, n=n, before=self._read(f, n),
                                    why=("get_pages" if type is None else
                                         f"get_pages_and_type({type_text(type)})")))
                     for f in firsts]
            r = orig(np.asarray(firsts, dtype=np.int64), n, d, type)
            for f, node in nodes:
                node.data["after"] = self._read(f, n)
                self.pred.set_frames(f, *node.data["after"])
            return r
        return get_runs_and_type

    def _wrap_put_runs_and_type(self, orig):
        def put_runs_and_type(firsts, n, typed=True):
            if self.cur is None:
                return orig(firsts, n, typed)
            firsts = [int(x) for x in np.asarray(firsts).ravel()]
            for f in firsts:
                ci, ti = self._read(f, n)
                after = (ci - np.uint64(1), ti - np.uint64(1) if typed else ti)
                self._emit("range", page=f, n=n, before=(ci, ti), after=after,
                           why="put_pages_and_type" if typed else "put_pages")
                self.pred.set_frames(f, *after)
            return orig(np.asarray(firsts, dtype=np.int64), n, typed)
        return put_runs_and_type

    def _wrap_free(self, orig):
        def free_page(pages):
            if self.cur is None:
                return orig(pages)
            arr = np.atleast_1d(np.asarray(pages, dtype=np.int64))
            ft = self.m.frame_table
            owners = {int(ft.owner(int(p))) for p in arr}
            r = orig(pages)
            mfns = np.asarray(self.m.pdx_to_mfn(arr.astype(np.uint64)), dtype=np.int64)
            self._emit("free", mfns=[int(x) for x in mfns], pages=[int(p) for p in arr],
                       owners=sorted(owners))
            for p in arr:
                p = int(p)
                self.pred.set_frames(p, ft.count_info(p), ft.type_info(p), ft.owner(p))
            return r
        return free_page

    def _wrap_request(self, orig):
        def request(fn):
            if self.cur is None or len(self.stack) != 1:
                return orig(fn)
            m = self.m
            fast0 = m.pt_stats["fast_path"]
            if self.cur.stats_first_request is None:
                self.cur.stats_first_request = dict(m.superpage.stats)
            node = self._push("request", index=sum(1 for c in self.cur.node.children
                                                    if c.kind == "request"))
            try:
                rc = orig(fn)
            finally:
                self._pop(node)
            node.data["rc"] = rc
            if m.pt_stats["fast_path"] > fast0:
                node.children.append(Node("path", {"text": (
                    "entry fast path: the same frame, only flags that need no revalidation "
                    "changed: rewritten, no reference taken or dropped")}))
            if self.cur.number == HYPERVISOR_mmuext_op:
                self._mark_path(node)
            if rc < 0:
                node.children.extend(self._sync("rollback"))
                node.children.append(Node("note", {"text": (
                    f"request failed ({errno_name(rc)}): anything it took was given back, "
                    "the machine is as it was")}))
            return rc
        return request

    def _mark_path(self, node: Node) -> None:
        """Slow or fast path of a MARK_SUPER / UNMARK_SUPER request."""
        ops = self.cur.args[0] if self.cur.args else []
        i = node.data["index"]
        if i >= len(ops) or ops[i].cmd not in (MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER):
            return
        mark = ops[i].cmd == MMUEXT_MARK_SUPER
        if node.data["rc"] < 0:
            if not self.m.superpage.supports_mark:
                node.children.append(Node("note", {"text": (
                    f"{self.design} has no MARK_SUPER / UNMARK_SUPER: the answer of Xen "
                    f"{self.m.version} with superpages off")}))
            elif not self.m.allow_superpage:
                node.children.append(Node("note", {"text": "superpages are off (allow_superpage)"}))
            self._unchanged(node, ops[i].arg1)
            return
        ranges = [c for c in node.children if c.kind == "range" and "failed" not in c.data]
        # A MARK / UNMARK that takes or drops the 512 references is a pin, not a slow
        # transition (SuperpageDesign.stats counts mappings only): named apart here
        # so the trace and the comparison's 0->1 / 1->0 columns agree.
        if mark:
            text = ("pin: the mark took the 512 frames' references, once (not a slow "
                    "transition: 0->1 and 1->0 count mappings; mappings of a marked superpage "
                    "take the fast path)" if ranges else
                    "mark: the mark holds a count, no frame reference taken")
        else:
            text = ("unpin: the last count went, the 512 frames' references dropped (not a "
                    "slow transition: 0->1 and 1->0 count mappings)"
                    if ranges else "unmark: count - 1, no frame reference dropped")
        node.children.append(Node("path", {"text": text}))

    def _unchanged(self, node: Node, mfn: int) -> None:
        """After a refused superpage operation: the word it found, unchanged."""
        if any(c.kind == "spage" for c in node.children):
            return
        if not (self.m.mfn_valid(mfn) and mfn % SUPERPAGE_PAGES == 0):
            return
        try:
            words = spage_words(self.m, mfn)
        except (IndexError, ValueError):
            return
        for name, v in words or ():
            node.children.append(Node("note", {"text": (
                f"superpage mfn {mfn:#x} {name}: {spage_word_text(self.design, 0, v)} "
                "(unchanged)")}))

    def _wrap_get_entry(self, orig):
        def get_page_from_entry(level, e, d, table=None):
            if self.cur is None:
                return orig(level, e, d, table)
            stats0 = dict(self.m.superpage.stats)
            node = self._push("entry", text=f"validate new L{level} entry: "
                                            f"{entry_get_text(level, e, d)}")
            try:
                rc = orig(level, e, d, table)
            finally:
                self._pop(node)
            node.data["rc"] = rc
            self._design_path(node, stats0)
            if rc == 0 and self.m.pt.is_linear(level, e, table):
                node.children.append(Node("note", {"text": (
                    "a linear entry: read-only, to a validated table of its own level "
                    "(get_page and one more type reference; none if it is the table itself)")}))
            if rc != 0 and level == 2 and e & _PAGE_PSE:
                self._unchanged(node, pte_mfn(e))
            return rc
        return get_page_from_entry

    def _wrap_put_entry(self, orig):
        def put_page_from_entry(level, e, table=None):
            if self.cur is None:
                return orig(level, e, table)
            stats0 = dict(self.m.superpage.stats)
            node = self._push("entry", text=f"drop old L{level} entry: {entry_put_text(level, e)}")
            try:
                return orig(level, e, table)
            finally:
                self._pop(node)
                self._design_path(node, stats0)
        return put_page_from_entry

    def _design_path(self, node: Node, stats0: dict) -> None:
        node.children += path_nodes(self.design, stats0, self.m.superpage.stats)

    def _wrap_pi_cas(self, orig):
        def _cas(mfn, word, old, new):
            ok = orig(mfn, word, old, new)
            if ok and self.cur is not None:
                self._emit("spage", mfn=mfn, word=word, old=int(old), new=int(new))
                self.pred.set_field(mfn, int(new))
            return ok
        return _cas

    def _wrap_pi_write_many(self, orig):
        def _write_many(mfns, word, values):
            if self.cur is None:
                return orig(mfns, word, values)
            mfns = [int(x) for x in np.asarray(mfns).ravel()]
            old = [self.m.superpage.field(x) for x in mfns]
            r = orig(np.asarray(mfns, dtype=np.int64), word, values)
            for x, o, n in zip(mfns, old, np.asarray(values).ravel()):
                self._emit("spage", mfn=x, word=word, old=o, new=int(n))
                self.pred.set_field(x, int(n))
            return r
        return _write_many

    # -- entering and leaving a hypercall --------------------------------------------------------
    def _enter(self, caller: int, number: int, args: tuple) -> None:
        head, requests, gpfns = decode_call(self.m, caller, number, args)
        call = Call(caller, number, args, head, requests, gpfns=gpfns)
        call.tot_pages = {d.domid: d.tot_pages for d in self.m.domains.values()}
        call.stats0 = dict(self.m.superpage.stats)
        self.cur = call
        self.stack = [call.node]
        self.pred.snapshot()

    def _exit(self, rc: int) -> None:
        call = self.cur
        if call.number == HYPERVISOR_memory_op and rc > 0 and len(call.args) >= 2:
            self._allocations(call, rc)
        call.node.children.extend(self._sync("untraced"))
        self.untraced += sum(1 for c in call.node.children if c.kind == "untraced")
        self.calls += 1
        if rc < 0:
            self.errors += 1
        self.lines.extend(self.narrator.call_lines(call, rc))
        self.cur = None
        self.stack = []

    def _allocations(self, call: Call, rc: int) -> None:
        """populate_physmap / increase_reservation: the extents handed out, as events."""
        cmd, res = call.args[0], call.args[1]
        if cmd not in (XENMEM_populate_physmap, XENMEM_increase_reservation):
            return
        if res.extent_start is None:
            return
        n = 1 << res.extent_order
        for mfn in res.extent_start[:rc]:
            mfn = int(mfn)
            for k in range(0, n, SUPERPAGE_PAGES):         # per superpage (one PDX group each)
                count = min(SUPERPAGE_PAGES, n - k)
                page = self.m.mfn_to_page(mfn + k)
                before = self.pred.words(page, count)
                ci, ti, owner = self.m.frame_table.read_slices(page, count)
                call.node.children.append(Node("alloc", {
                    "page": page, "n": count, "before": before, "after": (ci, ti),
                    "owner": int(owner[0]), "order": res.extent_order}))
                self.pred.set_frames(page, ci, ti, owner)
