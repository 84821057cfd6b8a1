"""The narration: a hypercall's event tree rendered as the trace's lines.

What each level shows (``hypercall``: the call and its result; ``superpage``:
+ entries, superpage words, paths, notes and refused ranges; ``frame``: + every
frame word, range, free and allocation), and how frame events are summarised: a
512-frame range operation is one line per group of frames that changed alike,
frames that each went through the same steps in turn one run (``--all-frames``
lists every frame instead).
"""

from __future__ import annotations

import re

import numpy as np

from ..mem import DOMID_INVALID, format_count_info, format_type_info
from ..xen import Continuation, ERESTART, HYPERVISOR_mmu_update, Machine, errno_name
from ._calls import result_text
from ._decode import ci_change, frames_text, row_groups, spage_word_name, spage_word_text, ti_change
from ._preempt import restart_name
from ._tree import Call, Line, Node, path_nodes

LEVELS = ("hypercall", "superpage", "frame")

#: the first MFN an entry's line names
_MFN = re.compile(r"mfn 0x([0-9a-f]+)")

_REASONS = {"free": "a free frame", "overflow": "count overflow", "owner": "another owner",
            "type": "type conflict", "type-overflow": "type count overflow"}


class Narrator:
    """Renders the event trees of one machine's hypercalls at one level."""

    def __init__(self, m: Machine, level: str = "superpage", all_frames: bool = False):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        self.m = m
        self.level = LEVELS.index(level)
        self.all_frames = all_frames
        self.design = m.superpage.name

    def call_lines(self, call: Call, rc: int) -> list[Line]:
        """The lines of one hypercall: its head, its events, its result."""
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
            prefix = (max(0, done - call.done_before - ok_ordinary)
                      if call.number == HYPERVISOR_mmu_update else 0)
            first = next((i for i, c in enumerate(children) if c.kind == "request"), len(children))
            before_reqs = children[:first]                 # the vectorised batch's events
            after = [c for c in children[first:] if c.kind != "request"]
            if prefix:
                out.append(Line(2, f"[0..{prefix - 1}] vectorised batch: {prefix} independent PSE "
                                   "requests done at once", "request"))
                for i in range(prefix):
                    out.append(Line(3, f"[{i}] {call.requests[i]}", "request"))
                batch = Node("batch", children=list(before_reqs))
                batch.children += path_nodes(self.m.superpage.keeps_count, call.stats0, call.stats_first_request
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
                why = ("not done: left to the continuation" if isinstance(rc, Continuation)
                       else "not done")
                for i, text in enumerate(call.requests):  # not reached (stopped at a failure)
                    if i >= prefix and i not in seen:
                        out.append(Line(2, f"[{i}] {text} ({why})", "request"))
            out += self._lines(after, 2)
        out.append(Line(1, result_text(self.m, call, rc), "result"))
        return out

    def _visible(self, node: Node) -> bool:
        k = node.kind
        if k in ("entry", "spage", "path", "note", "batch", "preempt"):
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
            if n.kind == "entry" and not self.all_frames:
                j, run = self._entry_run(nodes, i)
                if run is not None:
                    out += [Line(depth + ln.depth, ln.text, ln.kind) for ln in run]
                    i = j
                    continue
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

    def _entry_run(self, nodes: list[Node], i: int) -> tuple[int, list[Line] | None]:
        """Entries i, i+1, ... that say the same of consecutive frames, and whose lines under
        them at this level say the same of each frame (a table's entries validated or
        dropped one after the other: an L1 table's 512) -> (the end of the run, its lines:
        one line, and the steps each frame went through once), or (i, None)."""
        def key(n: Node):
            if n.kind != "entry" or n.data.get("rc"):
                return None, None, None
            m = _MFN.search(n.data["text"])
            if m is None:
                return None, None, None
            own = re.compile(re.escape(m.group(0)) + r"\b ?")
            under = tuple((ln.depth, own.sub("", ln.text), ln.kind)
                          for ln in self._lines(n.children, 0))
            return (n.data["text"][:m.start()] + "{}" + n.data["text"][m.end():], under), \
                int(m.group(1), 16), under

        k, first, under = key(nodes[i])
        if k is None:
            return i, None
        mfns = [first]
        j = i + 1
        while j < len(nodes):
            k2, mfn2, _ = key(nodes[j])
            if k2 != k or mfn2 != mfns[-1] + 1:
                break
            mfns.append(mfn2)
            j += 1
        if len(mfns) < 3:
            return i, None
        head, rest = k[0].split(": ", 1)
        text = f"{head.replace(' entry', ' entries')} (x{len(mfns)}): " + rest.replace(
            "{}", frames_text(mfns))
        if not under:
            return j, [Line(0, text)]
        return j, [Line(0, text + ", each:")] + [Line(d + 1, t, kind) for d, t, kind in under]

    def _node_lines(self, n: Node, depth: int) -> list[Line]:
        d, k = n.data, n.kind
        if k == "entry":
            out = [Line(depth, d["text"])]
            out += self._lines(n.children, depth + 1)
            if d.get("rc") == -ERESTART and d.get("pse"):
                # a design whose 0 -> 1 may be preempted (preemptible_take): no table below
                out.append(Line(depth + 1, f"-> {restart_name(self.m)}: preempted inside the "
                                           "design's take of the superpage's frames; its "
                                           "progress stays in the design's superpage word, "
                                           "the entry is not written"))
            elif d.get("rc") == -ERESTART:
                out.append(Line(depth + 1, f"-> {restart_name(self.m)}: preempted, the entry's "
                                           "table is left PGT_partial"))
            elif d.get("rc"):
                out.append(Line(depth + 1, f"refused: {errno_name(d['rc'])}"))
            return out
        if k == "preempt":
            return [Line(depth + (i > 0), t, "note") for i, t in enumerate(d["lines"])]
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
        if "spage_mfn" in d:
            return (f"superpage mfn {d['spage_mfn']:#x} {spage_word_name(self.design, d['word'])}: "
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
        groups = row_groups(rows)
        if len(groups) == 1:
            return [Line(depth, f"{why}: {frames_text(mfns)} {change(groups[0][0])}")]
        out = [Line(depth, f"{why}: {frames_text(mfns)}:")]
        for row, at in groups:
            sel = [mfns[j] for j in at.tolist()]
            out.append(Line(depth + 1, f"{frames_text(sel)} {change(row)}"))
        return out

    def _alloc_lines(self, d: dict, depth: int) -> list[Line]:
        mfns = self._pages_mfns(d["page"], d["n"])
        return self._word_changes(f"alloc_domheap_pages(order {d['order']})", mfns,
                                  d["before"], d["after"], depth,
                                  owner=f"owner none -> dom{d['owner']}")
