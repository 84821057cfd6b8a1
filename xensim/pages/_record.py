"""The steps of a trace page: one per hypercall, recorded from the tracer's event trees.

A :class:`StepRecorder` is handed to :func:`xensim.teach.trace` (its ``recorder``):
the run is the text trace's run, on the same event bus, and each step is built from
the same :class:`~xensim.teach.Tracer` event tree and decoded with the same decoders
(``decode_count_info`` / ``decode_type_info``, the design's ``word_text``,
``format_pte``) as the text, whose lines the step keeps too. So the page and
``xensim trace --level frame`` never disagree.

A step (a list in the page's JSON, its fields in the order of :data:`STEP_FIELDS`) holds:

``o``
    the workload operation (0-based) it belongs to;
``h`` / ``r`` / ``c``
    the call decoded, the result line, the return code (None: refused by the guest);
``L``
    its lines in the text trace (indices into :attr:`StepRecorder.lines`);
``F``
    the frames it touched, as runs ``[first mfn, frames, ci before, ci after,
    ti before, ti after]`` (the words are indices into :attr:`StepRecorder.ci` /
    :attr:`StepRecorder.ti`, each word decoded field by field once);
``S``
    superpage words written: ``[superpage mfn, word name, before, after]`` (as the
    design reads them);
``P``
    page-table entries written: ``[table mfn, index, before, after]``;
``g``
    flags: :data:`SLOW`, :data:`REFUSED`, :data:`TYPE`, :data:`FAST`, :data:`PREEMPTED` (the
    call was preempted, or went on from a preempted one: its lines say where and what
    was left partial).

A page has at most :data:`MAX_STEPS` steps and about :data:`MAX_BYTES` of them; past
either the recorder is :attr:`~StepRecorder.full` and the run stops (the page says
what was cut and how to narrow it). ``frame`` / ``superpage`` keep only the steps that
touch one frame or one superpage.
"""

from __future__ import annotations

import json

import numpy as np

from ..mem import (PGT_type_shift, SUPERPAGE_PAGES, decode_count_info, decode_type_info)
from ..teach import format_pte, resolve_superpage, spage_word_name, spage_word_text
from ..xen import ERESTART

#: a page's steps at most (the rest of the run is cut, and the page says so)
MAX_STEPS = 10_000
#: about this many bytes of steps at most (the page stays under 10 MB)
MAX_BYTES = 9_000_000

SLOW, REFUSED, TYPE, FAST, PREEMPTED = 1, 2, 4, 8, 16

#: the fields of count_info and type_info, in the order the decoders give them
CI_FIELDS = tuple(decode_count_info(0))
TI_FIELDS = tuple(decode_type_info(0))


#: a step's fields, in the order the page's JSON lists them (each step is a list)
STEP_FIELDS = ("o", "h", "r", "c", "L", "F", "S", "P", "g")


def _fields(d: dict) -> list:
    return [("yes" if v else "no") if isinstance(v, bool) else v for v in d.values()]


class StepRecorder:
    """Records a traced run's hypercalls as page steps (see the module docstring)."""

    def __init__(self, frame: int | None = None, superpage: int | str | None = None,
                 max_steps: int = MAX_STEPS, max_bytes: int = MAX_BYTES):
        self.frame = frame
        #: ``DOMAIN:INDEX`` until :meth:`start` finds that superpage's first MFN
        self._superpage_name = superpage if isinstance(superpage, str) else None
        self.superpage = (None if superpage is None or self._superpage_name is not None
                          else superpage - superpage % SUPERPAGE_PAGES)
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self.steps: list[dict] = []
        #: interned texts: the trace's lines and the frame words, decoded
        self.lines: list[str] = []
        self.ci: list[list] = []
        self.ti: list[list] = []
        self._line_ids: dict[str, int] = {}
        self._ci_ids: dict[int, int] = {}
        self._ti_ids: dict[int, int] = {}
        self.bytes = 0
        #: the operations run (whether or not a step of theirs was kept)
        self.ops = 0
        #: hypercalls seen, and those left out by the frame / superpage filter
        self.calls = 0
        self.filtered = 0
        #: why the run stopped early ("steps", "bytes"), None while it has room
        self.cut: str | None = None
        #: steps not kept because the page was full (the rest of a full operation's calls)
        self.dropped = 0
        self.m = None
        self.design = ""
        self._op = -1
        self._ptes: list[list] = []
        self._sub = None

    # -- the trace's protocol --------------------------------------------------------------
    def start(self, m, kernels) -> None:
        """The run's machine and guest kernels (by name), set up, before its first operation."""
        self.m = m
        if self._superpage_name is not None:
            self.superpage = resolve_superpage(m, kernels, self._superpage_name)
        self.design = m.superpage.name
        self._sub = m.events.subscribe("guest_write", self._on_guest_write)

    def stop(self) -> None:
        if self._sub is not None:
            self.m.events.unsubscribe(self._sub)
            self._sub = None

    @property
    def full(self) -> bool:
        return self.cut is not None

    def op(self, index: int, text: str) -> None:
        self._op = index
        self.ops = index + 1
        self._ptes = []

    def refused(self, text: str) -> None:
        self._add({"o": self._op, "h": text, "r": "(no hypercall)", "c": None,
                   "L": [self._line("  " + text)], "F": [], "S": [], "P": [], "g": REFUSED})

    def call(self, call, rc: int, lines) -> None:
        self.calls += 1
        flags = PREEMPTED if rc == -ERESTART else REFUSED if rc < 0 else 0
        seen = _Seen()
        spage: list[list] = []
        for node in _walk(call.node.children):
            flags |= self._node(node, seen, spage)
        frames = self._frames(seen)
        if any(self.ti[r[4]][1][0] != self.ti[r[5]][1][0] for r in frames):
            flags |= TYPE
        ptes, self._ptes = self._ptes, []
        text = [self._line("  " * ln.depth + ln.text) for ln in lines]
        self._add({"o": self._op, "h": call.head, "r": lines[-1].text if lines else "",
                   "c": rc, "L": text, "F": frames, "S": spage, "P": ptes, "g": flags})

    # -- building a step ---------------------------------------------------------------------
    def _on_guest_write(self, mfn: int, index, old, new) -> None:
        if np.ndim(index):                 # a write of many entries (a whole table)
            for i, o, n in zip(np.asarray(index).tolist(), np.asarray(old).tolist(),
                               np.asarray(new).tolist()):
                if o != n:
                    self._ptes.append([int(mfn), int(i), format_pte(o), format_pte(n)])
            return
        self._ptes.append([int(mfn), int(index), format_pte(old), format_pte(new)])

    def _line(self, text: str) -> int:
        i = self._line_ids.get(text)
        if i is None:
            i = self._line_ids[text] = len(self.lines)
            self.lines.append(text)
            self.bytes += len(text) + 4
        return i

    def _word(self, value: int, ci: bool) -> int:
        ids, table = (self._ci_ids, self.ci) if ci else (self._ti_ids, self.ti)
        i = ids.get(value)
        if i is None:
            i = ids[value] = len(table)
            d = decode_count_info(value) if ci else decode_type_info(value)
            table.append([f"{value:#x}", _fields(d)])
            self.bytes += 80
        return i

    def _mfns(self, page: int, n: int) -> np.ndarray:
        return np.asarray(self.m.pdx_to_mfn(np.arange(page, page + n, dtype=np.uint64)),
                          dtype=np.int64)

    def _node(self, node, seen: _Seen, spage: list) -> int:
        """One event of the call: the frames' words it saw into ``seen``; -> its flags."""
        k, d = node.kind, node.data
        if k == "frame":
            seen.word(np.array([d["mfn"]], dtype=np.int64), d["word"] == "count_info",
                      np.array([d["old"]], dtype=np.uint64))
        elif k in ("range", "alloc") and "after" in d:
            mfns = self._mfns(d["page"], d["n"])
            seen.word(mfns, True, d["before"][0])
            seen.word(mfns, False, d["before"][1])
        elif k == "free":
            seen.all.append(np.asarray(d["mfns"], dtype=np.int64))
        elif k == "spage":
            spage.append([d["mfn"], spage_word_name(self.design, d["word"]),
                          spage_word_text(self.design, d["word"], d["old"]),
                          spage_word_text(self.design, d["word"], d["new"])])
        elif k == "path":
            text = d["text"]
            return SLOW if text.startswith("slow path") else FAST if text.startswith("fast path") else 0
        elif k == "preempt":
            return PREEMPTED
        elif (k in ("entry", "request") and (d.get("rc") or 0) < 0 and d["rc"] != -ERESTART
              or k == "range" and "failed" in d):
            return REFUSED
        return 0

    def _frames(self, seen: _Seen) -> list[list]:
        """The frames touched, their words before the call (the first each event saw)
        and now, as runs of frames alike."""
        if not seen.all:
            return []
        mfns = np.unique(np.concatenate(seen.all))
        pages = np.asarray(self.m.mfn_to_page(mfns.astype(np.uint64)), dtype=np.int64)
        ci1, ti1, _ = self.m.frame_table.gather(pages)
        ci0, ti0 = ci1.copy(), ti1.copy()
        for segs, before in ((seen.ci, ci0), (seen.ti, ti0)):
            if segs:
                at = np.concatenate([s[0] for s in segs])
                vals = np.concatenate([np.asarray(s[1], dtype=np.uint64) for s in segs])
                u, first = np.unique(at, return_index=True)
                before[np.searchsorted(mfns, u)] = vals[first]
        words = np.stack([ci0, ci1, ti0, ti1], axis=1)
        brk = np.ones(mfns.size, dtype=bool)
        brk[1:] = (np.diff(mfns) != 1) | np.any(words[1:] != words[:-1], axis=1)
        starts = np.flatnonzero(brk)
        sizes = np.diff(np.append(starts, mfns.size))
        return [[int(mfns[i]), int(n), self._word(int(ci0[i]), True), self._word(int(ci1[i]), True),
                 self._word(int(ti0[i]), False), self._word(int(ti1[i]), False)]
                for i, n in zip(starts.tolist(), sizes.tolist())]

    # -- keeping it --------------------------------------------------------------------------
    def _touches(self, step: dict) -> bool:
        if self.frame is None and self.superpage is None:
            return True
        lo, hi = ((self.frame, self.frame + 1) if self.frame is not None else
                  (self.superpage, self.superpage + SUPERPAGE_PAGES))
        if any(r[0] < hi and r[0] + r[1] > lo for r in step["F"]):
            return True
        if any(lo <= s[0] < hi or s[0] <= lo < s[0] + SUPERPAGE_PAGES for s in step["S"]):
            return True
        return any(lo <= p[0] < hi for p in step["P"])

    def _add(self, step: dict) -> None:
        if self.full:
            self.dropped += 1
            return
        if not self._touches(step):
            self.filtered += 1
            return
        row = [step[k] for k in STEP_FIELDS]
        self.bytes += len(json.dumps(row, separators=(",", ":"))) + 1
        self.steps.append(row)
        if len(self.steps) >= self.max_steps:
            self.cut = "steps"
        elif self.bytes >= self.max_bytes:
            self.cut = "bytes"

    def data(self) -> dict:
        """What the page's script reads: the steps and the interned tables."""
        return {"design": self.design, "fields": list(STEP_FIELDS), "steps": self.steps, "lines": self.lines,
                "ci": self.ci, "ti": self.ti, "ciFields": list(CI_FIELDS),
                "tiFields": list(TI_FIELDS), "slow": SLOW, "refused": REFUSED, "type": TYPE,
                "fast": FAST, "preempted": PREEMPTED}


class _Seen:
    """A call's frames: every MFN touched, and the words events saw before changing them."""

    def __init__(self):
        self.all: list[np.ndarray] = []
        self.ci: list[tuple] = []
        self.ti: list[tuple] = []

    def word(self, mfns: np.ndarray, ci: bool, before) -> None:
        self.all.append(mfns)
        (self.ci if ci else self.ti).append((mfns, before))


def _walk(nodes):
    for n in nodes:
        yield n
        yield from _walk(n.children)
