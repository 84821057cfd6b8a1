"""``xensim trace``: narrate every hypercall of a (small) run of a config's workload.

The run is the one ``xensim run`` makes for one design (the first of the config's
``compare`` list, or ``--design``): a fresh machine, the same set-up (not traced:
domains created, populated, page-table trees built), then the workload's
operations, each through the guest kernel's hypercalls. For every hypercall the
trace prints the call with its arguments decoded, what Xen did, and the result:

``--level hypercall``
    one line per call (each request of a batch on a line of its own) and its
    result (``-> 0``, ``-> EINVAL``, ``-> 1`` extent done, ...);
``--level superpage`` (the default)
    + each page-table entry validated or dropped (``get_superpage``,
    ``get_page_and_type`` ...), each superpage word before -> after, decoded per
    design (``none/0 -> dynamic/1``), and whether the design took the slow path
    (the 512 frames' references taken or dropped) or the fast path (a count);
``--level frame``
    + every change of a frame's ``count_info`` / ``type_info``, with the
    primitive that made it (``get_page``, ``put_page_type``, ...). A 512-frame
    range operation is one line (``512 frames mfn 0x200..0x3ff count_info +1
    (...)``), as are frames that each went through the same steps (a balloon
    giving 512 frames back one by one); ``--all-frames`` lists every frame.

How it sees the machine (no behaviour changes; everything is removed afterwards):

* ``HypercallLayer.trace`` (entry and return of every hypercall),
  ``RefCounts.trace`` (every scalar cmpxchg of a frame word) and
  ``SuperpageTable.trace`` (every change of a superpage word) are hooks;
* the range operations of :class:`~xensim._refcount.RefCounts`
  (``get_pages_and_type`` ... ``put_runs_and_type``), its ``free_page`` callback,
  ``Machine.request`` (one request of a batch), ``PageTables.get_page_from_entry``
  / ``put_page_from_entry`` and the pageinfo-count design's ``_cas`` are wrapped on
  the traced machine's *instances* only, to read each range's frames before and
  after and to mark where a request or an entry's validation starts and ends;
* after every hypercall the frame table and the superpage table are compared with
  what the narrated events say they hold: a change no event explains would be
  printed as ``untraced`` (it never is: ``tests/test_trace.py`` checks it), so the
  trace cannot silently leave something out.

:func:`boot` and :func:`run_ops` (the run without the narration) are shared with
``xensim inspect``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config, build_memory_map, load_config
from .._errors import ConfigError
from ..mem import PDX_GROUP_MASK, PDX_GROUP_SHIFT
from ..guest import GuestError, GuestKernel
from ..xen import (HYPERCALL_NAMES, HYPERVISOR_memory_op, HYPERVISOR_mmu_update,
                         HYPERVISOR_mmuext_op, HYPERVISOR_update_va_mapping, errno_name)
from ..xen import Machine
from ..mem import MemoryMap
from ..xen import (XENMEM_decrease_reservation, XENMEM_increase_reservation,
                         XENMEM_populate_physmap)
from ..xen import (MMU_MACHPHYS_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_MARK_SUPER,
                   MMUEXT_NAMES, MMUEXT_UNMARK_SUPER)
from ..mem import (DOMID_INVALID, PGC_count_mask, PGT_TYPE_NAMES, PGT_type_shift,
                         decode_spage, format_count_info, format_type_info)
from ..xen import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GLOBAL, _PAGE_NX, _PAGE_PCD,
                         _PAGE_PRESENT, _PAGE_PSE, _PAGE_PWT, _PAGE_RW, _PAGE_USER,
                         CHILD_TYPES, _PAGE_AVAIL_HIGH, pte_mfn)
from ..mem import PAGE_SHIFT, SUPERPAGE_ORDER, SUPERPAGE_PAGES, format_size
from ..guest import Workload, apply

LEVELS = ("hypercall", "superpage", "frame")
TRACE_FORMATS = ("text", "md")
_DOMID_SELF = 0x7FF0


# ==========================================================================
# The run (shared with xensim inspect)
# ==========================================================================

def load(config: str | None) -> tuple[Config, MemoryMap]:
    """A config file (or the built-in default) and its machine."""
    from ..config import default_config
    cfg = load_config(config) if config else default_config()
    return cfg, build_memory_map(cfg)


def pick_design(cfg: Config, design: str | None) -> str:
    """``design``, else the first design of the config's ``compare`` list (else its own)."""
    from ..designs import REGISTRY
    name = design or cfg.designs()[0]
    if name not in REGISTRY:
        raise ConfigError(None, "--design", f"unknown design {name!r}; choose from {', '.join(sorted(REGISTRY))}")
    return name


def boot(cfg: Config, memmap: MemoryMap, design: str
         ) -> tuple[Machine, dict[str, GuestKernel], Workload]:
    """A fresh machine on ``design``, set up exactly as ``xensim run`` sets it up
    (domains created, populated, page-table trees built and every table the
    workload uses created): (machine, kernels by domain name, workload)."""
    from ..sim._simulate import _setup
    from ..guest import DomainSpec, make_workload
    wl = make_workload(cfg.effective_workload(),
                       [DomainSpec(n, mem) for n, mem in cfg.domain_specs()])
    c = dataclasses.replace(cfg, hypervisor=dataclasses.replace(cfg.hypervisor, superpage=design))
    m = Machine.from_config(c, memmap)
    kernels = _setup(m, cfg, wl)
    return m, kernels, wl


def run_ops(kernels: dict[str, GuestKernel], wl: Workload, seed: int, limit: int | None = None,
            before=None, after=None) -> int:
    """Apply the workload's operations in order (the first ``limit``), as ``xensim run``
    does; ``before(i, op)`` / ``after(i, op, ok, error)`` are called around each.
    Returns the number of operations applied."""
    n = 0
    for op in wl.ops(seed):
        if limit is not None and n >= limit:
            break
        if before is not None:
            before(n, op)
        try:
            ok, err = apply(op, kernels[op.domain]), None
        except GuestError as e:
            ok, err = False, str(e)
        n += 1
        if after is not None:
            after(n - 1, op, ok, err)
    return n


# ==========================================================================
# Decoding words and entries
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


def _type_of(t: int) -> str:
    return PGT_TYPE_NAMES.get(t >> PGT_type_shift, str(t))


def spage_word_text(design: str, word: int, value: int) -> str:
    """A superpage word as the design reads it: ``dynamic/1`` (xen-4.1), ``mark|2``
    (a marked count: superpage-info's RW word, pageinfo-count), ``3`` (a plain count)."""
    value = int(value)
    if design == "xen-4.1":
        d = decode_spage(value)
        return f"{d['state']}/{d['count']}"
    if value >> 63:
        return f"mark|{value & ((1 << 63) - 1)}"
    return str(value)


def spage_word_name(design: str, word: int) -> str:
    """What a word of the design is called in the trace."""
    if design == "superpage-info":
        return "rw count" if word else "ro count"
    if design == "pageinfo-count":
        return "page_info count"
    if design == "sketch":
        return "count"
    return "word"


def spage_words(m: Machine, mfn: int) -> list[tuple[str, int]] | None:
    """The superpage's current words as (name, value), or None when the design keeps none."""
    design = m.superpage
    if design.name == "per-mapping":
        return None
    if design.name == "pageinfo-count":
        return [(spage_word_name(design.name, 0), design.field(mfn))]
    spdx = m.mfn_to_pdx(mfn) >> SUPERPAGE_ORDER
    if not m.spage_table.has_entry(spdx):
        return None
    words = range(getattr(design, "n_words", 1) if design.name == "superpage-info" else 1)
    return [(spage_word_name(design.name, w), m.spage_table.read(spdx, w)) for w in words]


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
    return f"get_page_and_type(mfn {mfn:#x}, dom{d}, {_type_of(t) if t else '?'})"


def entry_put_text(level: int, e: int) -> str:
    mfn = pte_mfn(e)
    if level == 2 and e & _PAGE_PSE:
        return f"put_superpage(mfn {mfn:#x}, {'rw' if e & _PAGE_RW else 'ro'})"
    if level == 1 and not e & _PAGE_RW:
        return f"put_page(mfn {mfn:#x})"
    return f"put_page_and_type(mfn {mfn:#x})"


_REASONS = {"free": "a free frame", "overflow": "count overflow", "owner": "another owner",
            "type": "type conflict", "type-overflow": "type count overflow"}


# ==========================================================================
# The narration: a tree of events per hypercall
# ==========================================================================

@dataclass
class Node:
    """One event. ``kind``: request, batch, entry, spage, frame, range, free, alloc,
    path, note, untraced (see :meth:`Tracer._lines`)."""
    kind: str
    data: dict = field(default_factory=dict)
    children: list["Node"] = field(default_factory=list)


@dataclass
class Call:
    caller: int
    number: int
    args: tuple
    head: str                               # "mmu_update dom1: ..." (one request) / "mmu_update dom1: 2 requests"
    requests: list[str]                     # each request decoded (before the call)
    node: Node = field(default_factory=lambda: Node("call"))
    tot_pages: dict = field(default_factory=dict)
    gpfns: list | None = None               # populate_physmap's GPFNs (the list is overwritten)
    stats0: dict = field(default_factory=dict)          # the design's stats at the call's start
    stats_first_request: dict | None = None             # ... when its first ordinary request began


@dataclass
class Line:
    depth: int
    text: str
    kind: str = "detail"                    # op, call, request, detail, result, note


class Tracer:
    """Installs the hooks on one machine and narrates each hypercall into :attr:`lines`."""

    def __init__(self, m: Machine, level: str = "superpage", all_frames: bool = False):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        self.m = m
        self.level = LEVELS.index(level)
        self.all_frames = all_frames
        self.design = m.superpage.name
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

    # -- what the tables should hold: the narrated events applied to a copy -----------------
    def _snapshot(self) -> None:
        ft = self.m.frame_table
        self._pred = {g: tuple(a.copy() for a in ft.group(g)) for g in ft.materialized_groups}
        self._pred_sp = self.m.spage_table.store.copy()
        groups = getattr(self.m.superpage, "_groups", None) if self.design == "pageinfo-count" else None
        self._pred_pi = None if groups is None else {g: a.copy() for g, a in groups.items()}

    def _predict_pi(self, mfn: int, value: int) -> None:
        """pageinfo-count: the superpage's first frame's extra field now holds ``value``."""
        if self._pred_pi is None:
            return
        page = self.m.mfn_to_page(mfn)
        a = self._pred_pi.setdefault(page >> PDX_GROUP_SHIFT,
                                     np.zeros(PDX_GROUP_MASK + 1, dtype=np.uint64))
        a[page & PDX_GROUP_MASK] = value

    def _pred_group(self, g: int):
        p = self._pred.get(g)
        if p is None:                           # untouched at the call's start: the boot state
            p = self._pred[g] = self.m.frame_table._initial_group(g)
        return p

    def _predict(self, page: int, ci=None, ti=None, owner=None) -> None:
        """Frames [page, page+n) now hold these words (arrays or ints), per the events."""
        g, off = page >> PDX_GROUP_SHIFT, page & PDX_GROUP_MASK
        p = self._pred_group(g)
        for arr, v in zip(p, (ci, ti, owner)):
            if v is not None:
                if isinstance(v, np.ndarray):
                    arr[off:off + v.size] = v
                else:
                    arr[off] = v

    def _sync(self, label: str) -> list[Node]:
        """Frames and superpage words that differ from what the events say: one node each,
        and the prediction set to what the tables hold."""
        if self.cur is None:
            return []
        m, ft = self.m, self.m.frame_table
        out = []
        for g in sorted(set(ft.materialized_groups) | set(self._pred)):
            p = self._pred_group(g)
            now = ft.group(g) if g in ft.materialized_groups else ft._initial_group(g)
            diff = np.flatnonzero((p[0] != now[0]) | (p[1] != now[1]) | (p[2] != now[2]))
            for j in diff:
                j = int(j)
                page = (g << PDX_GROUP_SHIFT) | j
                words = [(p[f][j], now[f][j]) for f in range(3)]
                out.append(Node(label, {"mfn": int(m.pdx_to_mfn(page)), "words": words}))
                for f in range(3):
                    p[f][j] = now[f][j]
        store = m.spage_table.store
        for w, e in zip(*np.nonzero(self._pred_sp != store)):
            out.append(Node(label, {"spage_entry": int(e), "word": int(w),
                                    "old": int(self._pred_sp[w, e]), "new": int(store[w, e])}))
            self._pred_sp[w, e] = store[w, e]
        if self._pred_pi is not None:
            groups = self.m.superpage._groups
            for g in sorted(set(groups) | set(self._pred_pi)):
                now = groups.get(g)
                now = np.zeros(PDX_GROUP_MASK + 1, dtype=np.uint64) if now is None else now
                pred = self._pred_pi.setdefault(g, np.zeros(PDX_GROUP_MASK + 1, dtype=np.uint64))
                for j in np.flatnonzero(pred != now):
                    mfn = int(m.pdx_to_mfn((g << PDX_GROUP_SHIFT) | int(j)))
                    out.append(Node(label, {"pageinfo_mfn": mfn, "old": int(pred[j]),
                                            "new": int(now[j])}))
                    pred[j] = now[j]
        return out

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
            self._predict(page, ci=int(new))
        else:
            self._predict(page, ti=int(new))

    def _on_spage(self, where, word: int, old, new) -> None:
        if self.cur is None:
            return
        st = self.m.spage_table
        if isinstance(where, np.ndarray):        # write_many: store positions
            for e, o, n in zip(where, old, new):
                self._spage_event(self._spdx_of_entry(int(e)), word, int(o), int(n))
                self._pred_sp[word, int(e)] = n
            return
        self._spage_event(where, word, int(old), int(new))
        self._pred_sp[word, st.entry_index(where)] = new

    def _spdx_of_entry(self, e: int) -> int:
        slot = e >> SUPERPAGE_ORDER
        chunk = int(np.flatnonzero(self.m.spage_table._slot == slot)[0])
        return (chunk << SUPERPAGE_ORDER) | (e & (SUPERPAGE_PAGES - 1))

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
                                   else f"get_pages_and_type({_type_of(type)})"))
            r = orig(first, n, d, type)
            if r.ok:
                node.data["after"] = self._read(first, n)
                self._predict(first, *node.data["after"])
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
            self._predict(first, *after)          # before the frees it may cause
            return orig(first, n, typed)
        return put_pages_and_type

    def _wrap_get_runs_and_type(self, orig):
        def get_runs_and_type(firsts, n, d, type):
            if self.cur is None:
                return orig(firsts, n, d, type)
            firsts = [int(x) for x in np.asarray(firsts).ravel()]
            nodes = [(f, self._emit("range", page=f, n=n, before=self._read(f, n),
                                    why=("get_pages" if type is None else
                                         f"get_pages_and_type({_type_of(type)})")))
                     for f in firsts]
            r = orig(np.asarray(firsts, dtype=np.int64), n, d, type)
            for f, node in nodes:
                node.data["after"] = self._read(f, n)
                self._predict(f, *node.data["after"])
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
                self._predict(f, *after)
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
                self._predict(p, ft.count_info(p), ft.type_info(p), ft.owner(p))
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

    def _design_path(self, node: Node, stats0: dict, st: dict | None = None) -> None:
        st = self.m.superpage.stats if st is None else st
        delta = {k: st.get(k, 0) - stats0.get(k, 0) for k in st}
        counted = self.design != "per-mapping"
        texts = {
            "slow_get": ("slow path: 0 -> 1, took the 512 frames' references" if counted else
                         "slow path: no count, every mapping takes the 512 frames' references"),
            "slow_put": ("slow path: 1 -> 0, dropped the 512 frames' references" if counted else
                         "slow path: no count, every unmapping drops the 512 frames' references"),
            "fast_get": "fast path: count + 1, no frame reference taken",
            "fast_put": "fast path: count - 1, no frame reference dropped",
        }
        for k, text in texts.items():
            if delta.get(k):
                times = f" (x{delta[k]})" if delta[k] > 1 else ""
                head, _, rest = text.partition(":")
                node.children.append(Node("path", {"text": f"{head}{times}:{rest}"}))

    def _wrap_pi_cas(self, orig):
        def _cas(mfn, word, old, new):
            ok = orig(mfn, word, old, new)
            if ok and self.cur is not None:
                self._emit("spage", mfn=mfn, word=word, old=int(old), new=int(new))
                self._predict_pi(mfn, int(new))
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
                self._predict_pi(x, int(n))
            return r
        return _write_many

    # -- entering and leaving a hypercall --------------------------------------------------------
    def _enter(self, caller: int, number: int, args: tuple) -> None:
        head, requests, gpfns = self._decode(caller, number, args)
        call = Call(caller, number, args, head, requests, gpfns=gpfns)
        call.tot_pages = {d.domid: d.tot_pages for d in self.m.domains.values()}
        call.stats0 = dict(self.m.superpage.stats)
        self.cur = call
        self.stack = [call.node]
        self._snapshot()

    def _exit(self, rc: int) -> None:
        call = self.cur
        if call.number == HYPERVISOR_memory_op and rc > 0 and len(call.args) >= 2:
            self._allocations(call, rc)
        call.node.children.extend(self._sync("untraced"))
        self.untraced += sum(1 for c in call.node.children if c.kind == "untraced")
        self.calls += 1
        if rc < 0:
            self.errors += 1
        self.lines.extend(self._render_call(call, rc))
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
                g, off = page >> PDX_GROUP_SHIFT, page & PDX_GROUP_MASK
                p = self._pred_group(g)
                before = (p[0][off:off + count].copy(), p[1][off:off + count].copy())
                ci, ti, owner = self.m.frame_table.read_slices(page, count)
                call.node.children.append(Node("alloc", {
                    "page": page, "n": count, "before": before, "after": (ci, ti),
                    "owner": int(owner[0]), "order": res.extent_order}))
                self._predict(page, ci, ti, owner)

    def _decode(self, caller: int, number: int, args: tuple):
        """(call head, decoded requests, populate_physmap's GPFNs) before the call runs."""
        name = HYPERCALL_NAMES.get(number, f"hypercall{number}")
        who = f"{name} dom{caller}"
        if number == HYPERVISOR_mmu_update and args:
            reqs = list(args[0])
            fd = args[2] if len(args) > 2 else _DOMID_SELF
            foreign = "" if fd in (_DOMID_SELF, caller) else f" (pages of dom{fd})"
            texts = [self._mmu_request(r) for r in reqs]
            if len(texts) == 1:
                return f"{who}{foreign}: {texts[0]}", texts, None
            return f"{who}{foreign}: {len(texts)} requests", texts, None
        if number == HYPERVISOR_mmuext_op and args:
            ops = list(args[0])
            fd = args[2] if len(args) > 2 else _DOMID_SELF
            foreign = "" if fd in (_DOMID_SELF, caller) else f" (for dom{fd})"
            texts = [f"{MMUEXT_NAMES.get(o.cmd, f'cmd{o.cmd}')} mfn {o.arg1:#x}" for o in ops]
            if len(texts) == 1:
                return f"{who}{foreign}: {texts[0]}", texts, None
            return f"{who}{foreign}: {len(texts)} operations", texts, None
        if number == HYPERVISOR_memory_op and len(args) >= 2:
            cmd, res = args[0], args[1]
            names = {XENMEM_populate_physmap: "populate_physmap",
                     XENMEM_decrease_reservation: "decrease_reservation",
                     XENMEM_increase_reservation: "increase_reservation"}
            sub = names.get(cmd, f"cmd{cmd}")
            nr = getattr(res, "nr_extents", 0)
            order = getattr(res, "extent_order", 0)
            what = f"{nr} extent{'s' if nr != 1 else ''} of order {order}"
            lst = list(getattr(res, "extent_start", None) or [])[:nr]
            if cmd == XENMEM_populate_physmap and lst:
                if order == 0:                          # 4 KiB frames: runs of GPFNs
                    where = frames_text(sorted(set(lst))).replace("mfn", "gpfn")
                else:                                   # extents: their first GPFNs
                    where = "gpfn " + ", ".join(f"{g:#x}" for g in lst[:8]) + (
                        f" +{len(lst) - 8}" if len(lst) > 8 else "")
                return f"{who}: {sub} {what} at {where}", [], list(lst)
            if cmd == XENMEM_decrease_reservation and lst:
                n = 1 << order
                mfns = sorted({x + k for x in lst for k in range(n)}) if n <= 512 else lst
                return f"{who}: {sub} {what}: {frames_text(mfns)}", [], None
            return f"{who}: {sub} {what}", [], None
        if number == HYPERVISOR_update_va_mapping and len(args) >= 2:
            return f"{who}: va {args[0]:#x} := {format_pte(args[1])}", [], None
        return f"{who}", [], None

    def _mmu_request(self, r) -> str:
        m = self.m
        cmd, ptr = r.ptr & 3, r.ptr & ~3
        mfn, index = ptr >> PAGE_SHIFT, (ptr & ((1 << PAGE_SHIFT) - 1)) >> 3
        if cmd == MMU_MACHPHYS_UPDATE:
            return f"M2P[mfn {mfn:#x}] := gpfn {r.val:#x}"
        level = m.pt.live_level(m.mfn_to_page(mfn)) if m.mfn_valid(mfn) else 0
        where = f"L{level}[{index:#x}] of mfn {mfn:#x}" if level else \
            f"word[{index:#x}] of mfn {mfn:#x} (not a live page table)"
        old = m.mem.read(mfn, index) if m.mfn_valid(mfn) else 0
        was = f" (was {format_pte(old)})" if old & _PAGE_PRESENT else ""
        ad = " preserving A/D" if cmd == MMU_PT_UPDATE_PRESERVE_AD else ""
        return f"{where} := {format_pte(r.val)}{was}{ad}"

    # -- rendering -------------------------------------------------------------------------------
    def _result(self, call: Call, rc: int) -> str:
        text = errno_name(rc) if rc < 0 else str(rc)
        extra = []
        if call.number in (HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op) and len(call.requests) > 1:
            done = call.args[1][0] if len(call.args) > 1 and isinstance(call.args[1], list) else None
            if done is not None:
                extra.append(f"{done} of {len(call.requests)} done")
        if call.number == HYPERVISOR_memory_op and len(call.args) >= 2 and rc >= 0:
            extra.append(f"{rc} of {call.args[1].nr_extents} extents done")
        for d in self.m.domains.values():
            before = call.tot_pages.get(d.domid)
            if before is not None and before != d.tot_pages:
                extra.append(f"dom{d.domid} tot_pages {before} -> {d.tot_pages}")
        return f"-> {text}" + (f" ({', '.join(extra)})" if extra else "")

    def _render_call(self, call: Call, rc: int) -> list[Line]:
        out = [Line(1, call.head, "call")]
        children = call.node.children
        reqs = [c for c in children if c.kind == "request"]
        single = len(call.requests) <= 1
        if single:
            body = []
            for c in children:
                body.extend(c.children if c.kind == "request" else [c])
            out += self._lines(body, 2)
        else:
            ok_ordinary = sum(1 for r in reqs if r.data.get("rc", 0) >= 0)
            done = (call.args[1][0] if len(call.args) > 1 and isinstance(call.args[1], list)
                    else ok_ordinary)
            prefix = max(0, done - ok_ordinary) if call.number == HYPERVISOR_mmu_update else 0
            first = next((i for i, c in enumerate(children) if c.kind == "request"), len(children))
            before_reqs = children[:first]                 # the vectorised batch's events
            after = [c for c in children[first:] if c.kind != "request"]
            if prefix:
                out.append(Line(2, f"[0..{prefix - 1}] vectorised batch: {prefix} independent PSE "
                                   "requests done at once", "request"))
                for i in range(prefix):
                    out.append(Line(3, f"[{i}] {call.requests[i]}", "request"))
                batch = Node("batch", children=list(before_reqs))
                self._design_path(batch, call.stats0, call.stats_first_request
                                  or dict(self.m.superpage.stats))
                out += self._lines(batch.children, 3)
            else:
                out += self._lines(before_reqs, 2)
            seen = set()
            for r in reqs:
                i = prefix + r.data["index"]
                seen.add(i)
                text = call.requests[i] if i < len(call.requests) else "?"
                out.append(Line(2, f"[{i}] {text}", "request"))
                out += self._lines(r.children, 3)
            if not reqs and not prefix:              # an argument error: nothing ran
                for i, text in enumerate(call.requests):
                    out.append(Line(2, f"[{i}] {text}", "request"))
            else:
                for i, text in enumerate(call.requests):  # not reached (stopped at a failure)
                    if i >= prefix and i not in seen:
                        out.append(Line(2, f"[{i}] {text} (not done)", "request"))
            out += self._lines(after, 2)
        out.append(Line(1, self._result(call, rc), "result"))
        return out

    def _visible(self, node: Node) -> bool:
        k = node.kind
        if k in ("entry", "spage", "path", "note", "batch"):
            return self.level >= 1
        if k == "range":
            return self.level >= 2 or (self.level >= 1 and "failed" in node.data)
        if k in ("frame", "free", "alloc", "rollback", "untraced"):
            return self.level >= 2 or k == "untraced"
        return True

    def _lines(self, nodes: list[Node], depth: int) -> list[Line]:
        out: list[Line] = []
        nodes = [n for n in nodes if self._visible(n)]
        i = 0
        while i < len(nodes):
            n = nodes[i]
            if n.kind in ("frame", "free") and not self.all_frames:
                j = i
                while j < len(nodes) and nodes[j].kind in ("frame", "free"):
                    j += 1
                out += self._frame_group(nodes[i:j], depth)
                i = j
                continue
            out += self._node_lines(n, depth)
            i += 1
        return out

    def _node_lines(self, n: Node, depth: int) -> list[Line]:
        d, k = n.data, n.kind
        if k == "entry":
            out = [Line(depth, d["text"])]
            out += self._lines(n.children, depth + 1)
            if d.get("rc"):
                out.append(Line(depth + 1, f"refused: {errno_name(d['rc'])}"))
            return out
        if k == "spage":
            return [Line(depth, f"superpage mfn {d['mfn']:#x} {spage_word_name(self.design, d['word'])}: "
                                f"{spage_word_text(self.design, d['word'], d['old'])} -> "
                                f"{spage_word_text(self.design, d['word'], d['new'])}")]
        if k in ("path", "note"):
            return [Line(depth, d["text"], "note")]
        if k == "frame":
            return [Line(depth, f"{d['why']}: {self._frame_change(d)}")]
        if k == "free":
            return [Line(depth, self._free_text(d))]
        if k == "range":
            return self._range_lines(d, depth)
        if k == "alloc":
            return self._alloc_lines(d, depth)
        if k in ("rollback", "untraced"):
            return [Line(depth, f"{k}: {self._sync_text(d)}")]
        if k == "request":                       # (only inside single-request calls' bodies)
            return self._lines(n.children, depth)
        return [Line(depth, f"{k} {d}")]

    @staticmethod
    def _frame_change(d: dict, with_mfn: bool = True) -> str:
        change = ci_change(d["old"], d["new"]) if d["word"] == "count_info" else \
            ti_change(d["old"], d["new"])
        return f"mfn {d['mfn']:#x} {change}" if with_mfn else change

    @staticmethod
    def _free_text(d: dict, with_mfns: bool = True) -> str:
        owners = ", ".join(f"dom{o}" for o in d["owners"] if o != DOMID_INVALID) or "none"
        what = f"{frames_text(d['mfns'])} " if with_mfns else ""
        return f"freed: {what}back to the heap (state free, owner {owners} -> none)"

    def _sync_text(self, d: dict) -> str:
        if "pageinfo_mfn" in d:
            return (f"superpage mfn {d['pageinfo_mfn']:#x} page_info count: "
                    f"{spage_word_text(self.design, 0, d['old'])} -> "
                    f"{spage_word_text(self.design, 0, d['new'])}")
        if "spage_entry" in d:
            mfn = int(self.m.pdx_to_mfn(self._spdx_of_entry(d["spage_entry"]) << SUPERPAGE_ORDER))
            return (f"superpage mfn {mfn:#x} {spage_word_name(self.design, d['word'])}: "
                    f"{spage_word_text(self.design, d['word'], d['old'])} -> "
                    f"{spage_word_text(self.design, d['word'], d['new'])}")
        (c0, c1), (t0, t1), (o0, o1) = d["words"]
        parts = []
        if c0 != c1:
            parts.append(ci_change(c0, c1))
        if t0 != t1:
            parts.append(ti_change(t0, t1))
        if o0 != o1:
            parts.append(f"owner {int(o0)} -> {int(o1)}")
        return f"mfn {d['mfn']:#x} " + ", ".join(parts)

    def _frame_group(self, nodes: list[Node], depth: int) -> list[Line]:
        """Consecutive frame events: frames that each went through the same steps in turn
        (a balloon returning 512 frames one by one) are summarised as one run."""
        def key(n: Node):
            if n.kind == "frame":
                return n.data["mfn"]
            return n.data["mfns"][0] if len(n.data["mfns"]) == 1 else None

        blocks: list[list[Node]] = []
        for n in nodes:
            k = key(n)
            if blocks and k is not None and key(blocks[-1][0]) == k:
                blocks[-1].append(n)
            else:
                blocks.append([n])

        def sig(block):
            if key(block[0]) is None:
                return None
            return tuple((n.kind, n.data.get("word"), n.data.get("old"), n.data.get("new"),
                          n.data.get("why"), tuple(n.data.get("owners", ()))) for n in block)

        out: list[Line] = []
        i = 0
        while i < len(blocks):
            j = i + 1
            s = sig(blocks[i])
            while (s is not None and j < len(blocks) and sig(blocks[j]) == s
                   and key(blocks[j][0]) == key(blocks[j - 1][0]) + 1):
                j += 1
            if j - i == 1:
                for n in blocks[i]:
                    out += self._node_lines(n, depth)
            else:
                mfns = [key(b[0]) for b in blocks[i:j]]
                out.append(Line(depth, f"{frames_text(mfns)}, each in turn:"))
                for n in blocks[i]:
                    if n.kind == "frame":
                        out.append(Line(depth + 1, f"{n.data['why']}: "
                                                   f"{self._frame_change(n.data, False)}"))
                    else:
                        out.append(Line(depth + 1, self._free_text(n.data, False)))
            i = j
        return out

    def _pages_mfns(self, page: int, n: int) -> list[int]:
        return [int(x) for x in np.asarray(self.m.pdx_to_mfn(
            np.arange(page, page + n, dtype=np.uint64)), dtype=np.int64)]

    def _range_lines(self, d: dict, depth: int) -> list[Line]:
        mfns = self._pages_mfns(d["page"], d["n"])
        if "failed" in d:
            i, reason = d["failed"]
            ci, ti = d["before"]
            return [Line(depth, f"{d['why']}: {frames_text(mfns)} refused at frame {i} "
                                f"(mfn {mfns[i]:#x}: {_REASONS.get(reason, reason)}; "
                                f"{format_count_info(int(ci[i]))}, {format_type_info(int(ti[i]))}): "
                                "nothing taken")]
        return self._word_changes(d["why"], mfns, d["before"], d["after"], depth)

    def _word_changes(self, why: str, mfns: list[int], before, after, depth: int,
                      owner: str = "") -> list[Line]:
        (c0, t0), (c1, t1) = before, after
        rows = np.stack([c0, t0, c1, t1], axis=1)

        def change(r) -> str:
            parts = []
            if r[0] != r[2]:
                parts.append(ci_change(r[0], r[2]))
            if r[1] != r[3]:
                parts.append(ti_change(r[1], r[3]))
            return ", ".join(parts + ([owner] if owner else [])) or "unchanged"

        if self.all_frames:
            out = [Line(depth, f"{why}: {frames_text(mfns)}:")]
            out += [Line(depth + 1, f"mfn {mfn:#x} {change(r)}") for mfn, r in zip(mfns, rows)]
            return out
        uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        if len(uniq) == 1:
            return [Line(depth, f"{why}: {frames_text(mfns)} {change(uniq[0])}")]
        out = [Line(depth, f"{why}: {frames_text(mfns)}:")]
        order = sorted(range(len(uniq)), key=lambda k: int(np.flatnonzero(inverse == k)[0]))
        for k in order:
            sel = [mfns[j] for j in np.flatnonzero(inverse == k)]
            out.append(Line(depth + 1, f"{frames_text(sel)} {change(uniq[k])}"))
        return out

    def _alloc_lines(self, d: dict, depth: int) -> list[Line]:
        mfns = self._pages_mfns(d["page"], d["n"])
        return self._word_changes(f"alloc_domheap_pages(order {d['order']})", mfns,
                                  d["before"], d["after"], depth,
                                  owner=f"owner none -> dom{d['owner']}")


# ==========================================================================
# One traced run
# ==========================================================================

@dataclass
class TraceResult:
    config: str
    design: str
    level: str
    header: list[str]
    setup: list[str]
    lines: list[Line]
    footer: list[str]
    untraced: int = 0
    calls: int = 0

    def text(self) -> str:
        out = list(self.header) + ["set-up (not traced):"] + [f"  {s}" for s in self.setup] + [""]
        for ln in self.lines:
            if ln.kind == "op" and out and out[-1] != "":
                out.append("")
            out.append("  " * ln.depth + ln.text)
        out += [""] + list(self.footer)
        return "\n".join(out) + "\n"

    def markdown(self) -> str:
        out = [f"# xensim trace: `{self.config}`", ""]
        out += [f"- {_md(h)}" for h in self.header[1:]] + [""]
        out += ["## Set-up (not traced)", ""] + [f"- {_md(s)}" for s in self.setup] + [""]
        out += ["## Operations", ""]
        for ln in self.lines:
            if ln.kind == "op":
                out += ([""] if out[-1] != "" else []) + [f"### {_md_plain(ln.text)}", ""]
                continue
            depth = ln.depth + 1 if ln.kind == "result" else ln.depth     # under its call
            bullet = "  " * max(depth - 1, 0) + "- "
            out.append(bullet + _md(ln.text))
        out += ["", "## Summary", ""] + [f"- {_md(f)}" for f in self.footer]
        return "\n".join(out) + "\n"

    def render(self, fmt: str = "text") -> str:
        return self.markdown() if fmt == "md" else self.text()


def _n(k: int, what: str) -> str:
    return f"{k} {what}{'s' if k != 1 else ''}"


def _md(text: str) -> str:
    """A trace line as Markdown: in a code span (its ``|``, ``*`` and ``_`` stay literal)."""
    return f"`{text}`" if "`" not in text else text


def _md_plain(text: str) -> str:
    return text.replace("*", "\\*").replace("_", "\\_")


def _setup_lines(m: Machine, kernels: dict[str, GuestKernel]) -> list[str]:
    out = []
    for name, k in kernels.items():
        d = m.domain(k.domid)
        n = k.pt_base // SUPERPAGE_PAGES
        mfns = []
        for i in range(n):
            try:
                mfns.append(k.mfn(i * SUPERPAGE_PAGES))
            except GuestError:
                break
        if mfns and all(b - a == SUPERPAGE_PAGES for a, b in zip(mfns, mfns[1:])):
            where = f"mfn {mfns[0]:#x}" + (f"..{mfns[-1]:#x} (step 0x200)" if len(mfns) > 1 else "")
        else:
            where = "mfn " + ", ".join(f"{x:#x}" for x in mfns[:8]) + (" ..." if len(mfns) > 8 else "")
        which = "superpage 0" if len(mfns) == 1 else f"superpages 0..{len(mfns) - 1}"
        out.append(f"dom{k.domid} {name}: {format_size(len(mfns) * SUPERPAGE_PAGES << PAGE_SHIFT)}"
                   f" = {which} at {where}; tot_pages {d.tot_pages}")
        tables = [f"L4 mfn {k.root:#x} (pinned, base pointer)"]
        for (level, _), mfn in sorted(k.tables.items(), key=lambda t: (-t[0][0], t[0][1])):
            tables.append(f"L{level} mfn {mfn:#x}")
        out.append(f"dom{k.domid} page tables: " + ", ".join(tables))
    return out


def trace(cfg: Config, memmap: MemoryMap, design: str | None = None, level: str = "superpage",
          all_frames: bool = False, limit: int | None = None) -> TraceResult:
    """Run the config's workload on ``design`` and narrate its hypercalls."""
    from ..xen import audit
    name = pick_design(cfg, design)
    m, kernels, wl = boot(cfg, memmap, name)
    tracer = Tracer(m, level, all_frames)
    header = [f"xensim trace of {cfg.source or '<config>'}",
              f"design {name}: {m.superpage.description}",
              f"Xen {m.version}{' (faithful)' if m.faithful else ''}, machine {memmap.name} "
              f"({format_size(memmap.ram_bytes)} of RAM), pdx {m.pdx.mode}",
              f"workload {wl.cfg.kind}: {wl.total} operations"
              + (f", tracing the first {limit}" if limit is not None and limit < wl.total else "")
              + f"; level {level}" + (", every frame" if all_frames else "")]
    setup = _setup_lines(m, kernels)
    failed = 0
    crash = None

    def before(i, op):
        tracer.lines.append(Line(0, f"op {i + 1}: {op}", "op"))

    def after(i, op, ok, err):
        nonlocal failed
        if err is not None:
            tracer.lines.append(Line(1, f"refused by the guest kernel (no hypercall): {err}", "note"))
        if not ok:
            failed += 1

    tracer.install()
    try:
        n = run_ops(kernels, wl, cfg.seed, limit, before, after)
    except Exception as e:                  # noqa: BLE001  a simulator bug: shown, not hidden
        crash = f"{type(e).__name__}: {e}"
        n = sum(1 for ln in tracer.lines if ln.kind == "op")
    finally:
        tracer.uninstall()
    footer = [f"{_n(n, 'operation')} ({failed} failed), {_n(tracer.calls, 'hypercall')} "
              f"({tracer.errors} returned an error), {tracer.flushes} TLB "
              f"flush{'es' if tracer.flushes != 1 else ''}"]
    if crash:
        footer.append(f"crashed: {crash}")
    else:
        rep = audit(m)
        footer.append("audit: clean" if rep.ok else
                      f"audit: {rep.total_differences} difference(s), first: {rep.differences[0]}")
    if tracer.untraced:
        footer.append(f"untraced changes: {tracer.untraced} (a change no event explains: a bug)")
    return TraceResult(str(cfg.source or "<config>"), name, level, header, setup, tracer.lines,
                       footer, tracer.untraced, tracer.calls)


# ==========================================================================
# The command
# ==========================================================================

def add_parser(subparsers) -> argparse.ArgumentParser:
    """``xensim trace``: add the subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "trace", help="narrate every hypercall of a config's workload: the call decoded, "
                      "entries validated, references taken and dropped, the result",
        description="Run a config's workload on one design (the first of its compare list, "
                    "or --design) and narrate each hypercall. Levels: hypercall (the call and "
                    "its result), superpage (+ entries validated, superpage words, slow or fast "
                    "path), frame (+ every count_info / type_info change).")
    p.add_argument("config", help="a YAML config with a workload (a small one: every hypercall "
                                  "is printed)")
    p.add_argument("--level", choices=LEVELS, default="superpage", help="how much to show "
                   "(default: superpage)")
    p.add_argument("--all-frames", action="store_true",
                   help="list every frame of a range operation instead of one summary line")
    p.add_argument("--format", choices=TRACE_FORMATS, default="text", help="text or Markdown")
    p.add_argument("--design", help="the superpage design (default: the config's first)")
    p.add_argument("--limit", type=_positive, metavar="N",
                   help="trace only the first N operations of the workload")
    p.set_defaults(func=cmd_trace)
    return p


def _positive(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return v


def cmd_trace(args) -> int:
    """Exit status 0; 1 if the run crashed or a change went untraced."""
    if not Path(args.config).exists():
        raise ConfigError(args.config, None, "no such file")
    cfg, memmap = load(args.config)
    res = trace(cfg, memmap, args.design, args.level, args.all_frames, args.limit)
    sys.stdout.write(res.render(args.format))
    return 1 if res.untraced or any(f.startswith("crashed") for f in res.footer) else 0
