"""``xensim trace CONFIG --html FILE``: a run's hypercalls as a page to step through.

:func:`record_trace` runs the text trace's run (:func:`xensim.teach.trace`, level
frame) with a :class:`~._record.StepRecorder` listening, and keeps what the text
trace prints around it (its header, set-up and summary); a Ctrl-C keeps the steps
recorded so far (:attr:`TraceRun.interrupted`). :func:`trace_html` turns it into one
page (``trace.js`` draws it): a timeline of the steps, each step's call and result,
the frames it touched field by field (old -> new), the superpage words, the entries
written, its lines in the text trace, and a panel following one frame or superpage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..config import Config
from ..mem import MemoryMap, format_size
from ..teach import trace
from ._designs import designs_html
from ._record import MAX_BYTES, MAX_STEPS, StepRecorder
from ._shell import esc, page, write_page


class _Kept:
    """A trace writer that keeps the header, set-up and summary (the steps have the lines)."""

    def __init__(self):
        self.config = ""
        self.header: list[str] = []
        self.setup: list[str] = []
        self.footer: list[str] = []

    def start(self, config: str, header: list[str], setup: list[str]) -> None:
        self.config, self.header, self.setup = config, list(header), list(setup)

    def lines(self, lines) -> None:
        pass

    def end(self, footer: list[str]) -> None:
        self.footer = list(footer)


@dataclass
class TraceRun:
    """A traced run's steps and what the text trace says around them."""
    recorder: StepRecorder
    config: str
    header: list[str]
    setup: list[str]
    footer: list[str]
    #: the workload's operations (all of them; ``limit`` may have asked for fewer)
    total_ops: int
    limit: int | None = None
    crash: Exception | None = None
    interrupted: bool = False
    #: the designs side by side at one step (:func:`~._designs.designs_at`), or None
    designs: dict | None = field(default=None)

    @property
    def steps(self) -> int:
        return len(self.recorder.steps)


def record_trace(cfg: Config, memmap: MemoryMap, design: str | None = None,
                 limit: int | None = None, frame: int | None = None,
                 superpage: int | str | None = None, max_steps: int = MAX_STEPS,
                 max_bytes: int = MAX_BYTES) -> TraceRun:
    """Run the config's workload on ``design`` (as ``xensim trace`` does) and record its
    steps. A Ctrl-C (KeyboardInterrupt) ends the run: the steps so far are kept."""
    rec = StepRecorder(frame, superpage, max_steps, max_bytes)
    kept = _Kept()
    crash, interrupted = None, False
    try:
        crash = trace(cfg, memmap, design, "frame", False, limit, kept, recorder=rec).crash
    except KeyboardInterrupt:
        interrupted = True
    total = 0
    if len(kept.header) > 3:
        found = re.search(r": (\d+) operations", kept.header[3])
        total = int(found.group(1)) if found else 0
    ran = total if limit is None else min(limit, total)
    if rec.cut is not None and rec.ops >= ran and not rec.dropped:
        rec.cut = None                      # full with the run's last step: nothing was cut
    return TraceRun(rec, kept.config, kept.header, kept.setup, kept.footer, total, limit,
                    crash, interrupted)


def _notes(run: TraceRun) -> list[str]:
    """What the page says about what it holds: cut, filtered, interrupted, crashed."""
    rec = run.recorder
    out = []
    if rec.frame is not None or rec.superpage is not None:
        what = (f"frame mfn {rec.frame:#x}" if rec.frame is not None else
                f"superpage mfn {rec.superpage:#x}..{rec.superpage + 511:#x}")
        out.append(f"Only the steps that touch {what}: {run.steps:,} of the "
                   f"{rec.calls:,} hypercalls traced.")
    if rec.cut is not None:
        why = (f"a page holds {rec.max_steps:,} steps at most" if rec.cut == "steps" else
               f"a page holds about {format_size(rec.max_bytes)} of steps at most")
        ran = run.total_ops if run.limit is None else min(run.limit, run.total_ops)
        out.append(f"Cut: {why}. The run was stopped after operation {rec.ops:,} of "
                   f"{ran:,}; the rest is not shown. Narrow it with --limit N (the first N "
                   f"operations), --frame MFN or --superpage MFN (the steps touching one "
                   f"frame or superpage).")
    if run.interrupted:
        out.append(f"Interrupted: the run was stopped (Ctrl-C) after operation {rec.ops:,}; "
                   f"the page has the {run.steps:,} steps recorded until then.")
    if run.crash is not None:
        out.append(f"The design crashed: {run.crash}")
    return out


BODY = """
<div id="notes">{notes}</div>
<nav class="bar" id="bar">
 <button id="prev" title="previous step (left arrow or k)">&#9664; prev</button>
 <button id="next" title="next step (right arrow or j)">next &#9654;</button>
 <button class="jump" data-flag="slow" title="next slow path (s; S: previous)">slow path (s)</button>
 <button class="jump" data-flag="refused" title="next refusal (r; R: previous)">refusal (r)</button>
 <button class="jump" data-flag="type" title="next type change (t; T: previous)">type change (t)</button>
 <button class="jump" data-flag="preempted" title="next preempted or continued call (e: -ERESTART; E: previous)">preempted (e)</button>
 <label>step <input id="stepno" type="number" min="1" value="1"> of <span id="nsteps"></span></label>
</nav>
<canvas id="timeline" height="26" title="the steps: red a slow path, orange a refusal, blue a type change, purple a preemption; click to go there"></canvas>
<div class="cols">
<main id="step">
 <h2 id="head"></h2>
 <p id="where" class="meta"></p>
 <p id="result"></p>
 <h3>Frames touched <span class="hint">(before -> after this step, field by field)</span></h3>
 <div id="frames"></div>
 <h3>Superpage words</h3><div id="spage"></div>
 <h3>Page-table entries written</h3><div id="ptes"></div>
 <h3>In the text trace <span class="hint">(xensim trace --level frame)</span></h3>
 <pre id="text"></pre>
</main>
<aside id="follow">
 <h2>Follow</h2>
 <form id="followform"><select id="followkind"><option value="frame">frame</option>
 <option value="superpage">superpage</option></select>
 <input id="followin" placeholder="mfn, e.g. 0x4200" size="10"> <button>follow</button></form>
 <div id="followout"><p class="hint">A frame or a superpage across the whole run: each
 step that touched it, its words after it. Click a frame's mfn to follow it.</p></div>
</aside>
</div>
{designs}
<details id="about"><summary>The run</summary><pre>{about}</pre></details>
"""


def trace_html(run: TraceRun) -> str:
    """The page's HTML text."""
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in _notes(run))
    about = "\n".join(run.header + ["set-up (not traced):"] + [f"  {s}" for s in run.setup]
                      + [""] + run.footer)
    meta = " &middot; ".join(esc(h) for h in run.header[1:3])
    designs = designs_html(run.designs) if run.designs is not None else ""
    body = BODY.format(notes=notes, designs=designs, about=esc(about))
    data = run.recorder.data()
    data["designs"] = run.designs
    scripts = ("common.js",) + (("designs.js",) if run.designs is not None else ()) + ("trace.js",)
    return page(f"xensim trace of {run.config}", meta, body, data, scripts)


def write_trace_page(path, run: TraceRun) -> int:
    """Write the page at ``path``, atomically; -> its size in bytes."""
    text = trace_html(run)
    write_page(path, text)
    return len(text.encode("utf-8"))
