"""The tracer: a subscriber of the machine's event bus that turns each hypercall into
an event tree.

It only listens (``Machine.events``; see xensim.xen's Events for when each event is
emitted and its arguments) and reads the machine through public accessors: no
method of the machine is wrapped or replaced, and :meth:`Tracer.uninstall` leaves
nothing behind.

* ``hypercall_enter`` / ``hypercall_leave`` open and close a :class:`~._tree.Call`;
  ``request_enter`` / ``request_leave`` (one request of a batch) and
  ``entry_get_begin`` / ``_end``, ``entry_put_begin`` / ``_end`` (one entry validated
  or dropped) open and close a node, so that what happens in between nests under it;
* ``word_changed`` (every scalar cmpxchg of a frame word), ``tlb_flush``,
  ``range_get`` / ``range_got`` / ``range_put`` (a 512-frame range operation: its
  frames are read before and after), ``pages_freed``, and ``spage_cmpxchg`` /
  ``spage_write`` / ``spage_write_many`` (a superpage word, in the superpage table or
  in pageinfo-count's page_info field) become the tree's leaves;
* a preempted (de)validation is read from the type words the primitives change
  (``validation preempted``, ``devalidation preempted``, a word leaving ``PGT_partial``)
  and the frame's progress at that moment (``nr_validated_ptes``, the partial entry),
  a continuation from the call's result (:class:`~xensim.xen.Continuation`) and the
  calling vCPU's ``old_guest_table`` before and after (:mod:`._preempt`);
* after every hypercall the frame table and the superpage words are compared with
  what the narrated events say they hold (:mod:`._predict`): a change no event
  explains would be printed as ``untraced`` (it never is: ``tests/teach/test_trace.py``
  checks it), so the trace cannot silently leave something out.

The tracer never listens to ``atomic_step``: with it the machine would run its
512-frame operations frame by frame (the explorer's mode), and the trace would not
show the run ``xensim run`` makes.

Each finished call is rendered into :attr:`Tracer.lines` by a :class:`~._narrate.Narrator`.
"""

from __future__ import annotations

import numpy as np

from ..mem import SUPERPAGE_ORDER, SUPERPAGE_PAGES
from ..xen import (ERESTART, HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                   MMUEXT_MARK_SUPER,
                   MMUEXT_UNMARK_SUPER, XENMEM_increase_reservation, XENMEM_populate_physmap,
                   _PAGE_PSE, Machine, errno_name, pte_mfn)
from ._calls import decode_call, grants_named
from ._decode import entry_get_text, entry_put_text, spage_word_text, spage_words, type_text
from ._tree import Call, Line, Node, path_nodes
from ._narrate import Narrator
from ._predict import Prediction
from ._preempt import (PREEMPTED, continued_suffix, done_before, is_continuation,
                       loop_preempted_lines, old_guest_table_lines,
                       preempted_lines, restart_name, resumed_line)


class Tracer:
    """Subscribes to one machine's events and narrates each hypercall into :attr:`lines`."""

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
        #: hypercalls preempted (each returned a continuation the guest re-enters)
        self.preempted = 0
        self.cur: Call | None = None
        self.stack: list[Node] = []
        #: the requests and entries begun and not yet ended: (node, what it needs at
        #: the end), or None for one the trace does not show (outside a call, nested)
        self._open: list[tuple | None] = []
        #: range nodes waiting for their range_got, in order
        self._ranges: list[Node | None] = []
        self._subs: list = []
        #: called after each hypercall with (call, rc, its lines): the call's event tree
        #: (a ``Call``, its ``node`` the events as ``Node`` children) and its narration
        self.call_listeners: list = []

    # -- subscribing -----------------------------------------------------------------------
    def install(self) -> "Tracer":
        handlers = {
            "hypercall_enter": self._on_hypercall_enter, "hypercall_leave": self._on_hypercall_leave,
            "request_enter": self._on_request_enter, "request_leave": self._on_request_leave,
            "entry_get_begin": self._on_entry_get_begin, "entry_get_end": self._on_entry_get_end,
            "entry_put_begin": self._on_entry_put_begin, "entry_put_end": self._on_entry_put_end,
            "word_changed": self._on_word_changed, "tlb_flush": self._on_tlb_flush,
            "range_get": self._on_range_get, "range_got": self._on_range_got,
            "range_put": self._on_range_put, "pages_freed": self._on_pages_freed,
            "spage_cmpxchg": self._on_spage_cmpxchg, "spage_write": self._on_spage_write,
            "spage_write_many": self._on_spage_write_many,
        }
        events = self.m.events
        self._subs = [events.subscribe(name, fn) for name, fn in handlers.items()]
        return self

    def uninstall(self) -> None:
        for sub in reversed(self._subs):
            self.m.events.unsubscribe(sub)
        self._subs = []

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

    def _begin(self, shown: bool, kind: str, keep, **data) -> None:
        """A request or an entry begins: its node (if ``shown``) takes what follows."""
        self._open.append((self._push(kind, **data), keep) if shown else None)

    def _end(self) -> tuple | None:
        """The request or entry begun last ends: (its node, what it kept), or None."""
        top = self._open.pop() if self._open else None
        if top is not None:
            self._pop(top[0])
        return top

    # -- hypercalls, requests, entries ----------------------------------------------------------
    def _on_hypercall_enter(self, caller: int, number: int, args: tuple) -> None:
        self._enter(caller, number, args)

    def _on_hypercall_leave(self, caller: int, number: int, args: tuple, rc: int) -> None:
        if self.cur is not None:
            self._exit(rc)

    def _on_request_enter(self) -> None:
        if self.cur is None or len(self.stack) != 1:      # outside a call, or nested
            self._begin(False, "request", None)
            return
        if self.cur.stats_first_request is None:
            self.cur.stats_first_request = dict(self.m.superpage.stats)
        self._begin(True, "request", self.m.pt_stats["fast_path"],
                    index=sum(1 for c in self.cur.node.children if c.kind == "request"))

    def _on_request_leave(self, rc: int | None) -> None:
        top = self._end()
        if top is None or rc is None:                      # not shown, or it raised
            return
        node, fast0 = top
        node.data["rc"] = rc
        if rc == -ERESTART:
            node.children.append(Node("note", {"text": (
                f"request preempted ({restart_name(self.m)}): nothing is undone; what it did "
                "stays for the continuation to go on from")}))
            return
        if self.m.pt_stats["fast_path"] > fast0:
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

    def _on_entry_get_begin(self, level: int, e: int, d: int, table: int | None) -> None:
        if self.cur is None:
            self._begin(False, "entry", None)
            return
        self._begin(True, "entry", dict(self.m.superpage.stats),
                    text=f"validate new L{level} entry: {entry_get_text(level, e, d)}")

    def _on_entry_get_end(self, level: int, e: int, d: int, table: int | None,
                          rc: int | None) -> None:
        top = self._end()
        if top is None or rc is None:                      # not shown, or it raised
            return
        node, stats0 = top
        node.data["rc"] = rc
        node.data["pse"] = level == 2 and bool(e & _PAGE_PSE)
        self._design_path(node, stats0)
        if rc == 0 and self.m.pt.is_linear(level, e, table):
            node.children.append(Node("note", {"text": (
                "a linear entry: read-only, to a validated table of its own level "
                "(get_page and one more type reference; none if it is the table itself)")}))
        if rc != 0 and level == 2 and e & _PAGE_PSE:
            self._unchanged(node, pte_mfn(e))

    def _on_entry_put_begin(self, level: int, e: int, table: int | None) -> None:
        if self.cur is None:
            self._begin(False, "entry", None)
            return
        self._begin(True, "entry", dict(self.m.superpage.stats),
                    text=f"drop old L{level} entry: {entry_put_text(level, e)}")

    def _on_entry_put_end(self, level: int, e: int, table: int | None) -> None:
        top = self._end()
        if top is not None:
            self._design_path(*top)

    def _design_path(self, node: Node, stats0: dict) -> None:
        node.children += path_nodes(self.m.superpage.keeps_count, stats0, self.m.superpage.stats)

    # -- frame words ----------------------------------------------------------------------------
    def _on_word_changed(self, page: int, word: str, old: int, new: int, why: str) -> None:
        if self.cur is None:
            return
        mfn = int(self.m.pdx_to_mfn(page))
        self._emit("frame", mfn=mfn, page=page, word=word, old=int(old), new=int(new), why=why)
        if word == "count_info":
            self.pred.set_frames(page, ci=int(new))
            return
        self.pred.set_frames(page, ti=int(new))
        if why in PREEMPTED:
            self._emit("preempt", lines=preempted_lines(self.m, page, int(new), why))
        elif (text := resumed_line(self.m, page, int(old), int(new), why)) is not None:
            self._emit("preempt", lines=[text])

    def _on_tlb_flush(self, page: int, d: int, stamp: int, clock: int) -> None:
        self.flushes += 1                        # no frame word changed: a flush was asked for
        if self.cur is not None and page < 0:    # the guest's own (mmuext_op's TLB_FLUSH_*)
            self._emit("path", text=f"TLB flush of dom{d}'s CPU (clock -> {clock})")
        elif self.cur is not None:
            self._emit("path", text=(
                f"TLB flush: mfn {int(self.m.pdx_to_mfn(page)):#x} changes type, and its "
                f"last typed reference went at TLB clock {stamp}, not before the CPU's last "
                f"flush: TLB flush of dom{d}'s CPU (clock -> {clock})"))

    def _read(self, page: int, n: int):
        ci, ti, _ = self.m.frame_table.read_slices(page, n)
        return ci, ti

    def _on_range_get(self, first: int, n: int, d: int, type: int | None) -> None:
        if self.cur is None or n == 0:
            return
        self._ranges.append(self._emit(
            "range", page=first, n=n, before=self._read(first, n),
            why="get_pages" if type is None else f"get_pages_and_type({type_text(type)})"))

    def _on_range_got(self, first: int, n: int, d: int, type: int | None, result) -> None:
        if self.cur is None or n == 0 or not self._ranges:
            return
        node = self._ranges.pop(0)
        if node is None:
            return
        if result.ok:
            node.data["after"] = self._read(first, n)
            self.pred.set_frames(first, *node.data["after"])
        else:
            node.data["failed"] = (result.failed_index, result.reason)

    def _on_range_put(self, first: int, n: int, typed: bool) -> None:
        if self.cur is None or n == 0:
            return
        ci, ti = self._read(first, n)
        after = (ci - np.uint64(1), ti - np.uint64(1) if typed else ti)
        self._emit("range", page=first, n=n, before=(ci, ti), after=after,
                   why="put_pages_and_type" if typed else "put_pages")
        self.pred.set_frames(first, *after)          # before the frees it may cause

    def _on_pages_freed(self, pages: np.ndarray, owners: np.ndarray) -> None:
        if self.cur is None:
            return
        ft = self.m.frame_table
        mfns = np.asarray(self.m.pdx_to_mfn(pages.astype(np.uint64)), dtype=np.int64)
        self._emit("free", mfns=[int(x) for x in mfns], pages=[int(p) for p in pages],
                   owners=sorted({int(o) for o in owners}))
        for p in pages.tolist():
            self.pred.set_frames(p, ft.count_info(p), ft.type_info(p), ft.owner(p))

    # -- superpage words ------------------------------------------------------------------------
    def _on_spage_cmpxchg(self, where: str, spdx: int, word: int, expected: int, found: int,
                          new: int, won: bool) -> None:
        if won:
            self._on_spage_write(where, spdx, word, found, new)

    def _on_spage_write(self, where: str, spdx: int, word: int, old: int, new: int) -> None:
        if self.cur is None:
            return
        mfn = int(self.m.pdx_to_mfn(int(spdx) << SUPERPAGE_ORDER))
        self._emit("spage", mfn=mfn, word=word, old=int(old), new=int(new))
        if where == "page_info":                 # pageinfo-count: in the first frame's page_info
            self.pred.set_field(mfn, int(new))
        else:
            self.pred.set_spage(word, self.m.spage_table.entry_index(int(spdx)), new)

    def _on_spage_write_many(self, where: str, spdx: np.ndarray, word: int, old: np.ndarray,
                             new: np.ndarray) -> None:
        for s, o, n in zip(spdx.tolist(), old.tolist(), new.tolist()):
            self._on_spage_write(where, s, word, o, n)

    # -- what a request or a refused entry did to a superpage --------------------------------------
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

    # -- entering and leaving a hypercall --------------------------------------------------------
    def _enter(self, caller: int, number: int, args: tuple) -> None:
        vcpu = self.m.hypercall.vcpu
        head, requests, gpfns = decode_call(self.m, caller, number, args, vcpu)
        head += continued_suffix(number, args)
        call = Call(caller, number, args, head, requests, gpfns=gpfns,
                    grants=grants_named(self.m, caller, number, args))
        call.tot_pages = {d.domid: d.tot_pages for d in self.m.domains.values()}
        call.stats0 = dict(self.m.superpage.stats)
        d = self.m.domains.get(caller)
        call.vcpu = vcpu
        call.done_before = done_before(number, args)
        call.old_guest_table = (d.vcpus[vcpu].old_guest_table
                                if d is not None and 0 <= vcpu < len(d.vcpus) else None)
        call.finishes_old = number in (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op)
        if call.old_guest_table is not None and call.finishes_old:
            call.node.children.append(Node("note", {"text": (
                f"first, put_old_guest_table: dom{caller}.v{vcpu}'s old_guest_table holds the "
                f"unfinished put of mfn {call.old_guest_table:#x}, which goes on")}))
        self.cur = call
        self.stack = [call.node]
        self.pred.snapshot()

    def _exit(self, rc: int) -> None:
        call = self.cur
        if call.number == HYPERVISOR_memory_op and rc > 0 and len(call.args) >= 2:
            self._allocations(call, rc)
        call.node.children.extend(self._sync("untraced"))
        self.untraced += sum(1 for c in call.node.children if c.kind == "untraced")
        d = self.m.domains.get(call.caller)
        if d is not None:
            v = d.vcpus[call.vcpu] if call.vcpu < len(d.vcpus) else None
            inside = any(c.kind == "request" and c.data.get("rc") == -ERESTART
                         for c in call.node.children)
            if is_continuation(rc) and not inside:
                lines = loop_preempted_lines(self.m, call.number, call.args, rc,
                                             v is not None and v.old_guest_table is not None)
                if lines:
                    call.node.children.append(Node("preempt", {"lines": lines}))
            if call.finishes_old or (v is not None and v.old_guest_table != call.old_guest_table):
                call.node.children += [Node("note", {"text": t}) for t in
                                       old_guest_table_lines(self.m, d, call.vcpu,
                                                             call.old_guest_table)]
        self.calls += 1
        if is_continuation(rc):
            self.preempted += 1
        elif rc < 0:
            self.errors += 1
        lines = self.narrator.call_lines(call, rc)
        self.lines.extend(lines)
        for fn in self.call_listeners:
            fn(call, rc, lines)
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
