"""``xensim explore SCENARIO --html FILE``: one schedule of a scenario as swimlanes.

:func:`record_race` replays a schedule (the explorer's :class:`~xensim.explore.Runner`
and replay chooser: the run ``xensim explore --replay`` makes) and records each atomic
step after it ran: the CPU that took it, its line in the explorer's trace (a cmpxchg
rewritten as ``expected X found Y -> Z won`` / ``-> lost`` by the explorer itself), the
word it touched and that word's value after it, decoded (``format_count_info`` /
``format_type_info`` for a frame's words, the design's ``word_text`` for a superpage
word), and for a cmpxchg its expected / found / new values and whether it won (the
machine's ``spage_cmpxchg`` event). The scenario's superpages start with their words
and their 512 frames' words as they were before the first step; the page (``race.js``)
replays the steps forward and back to show every shared word at any step.

A violation is marked where it happened (the step whose check failed, or after the
schedule for the end-of-schedule checks) with the explorer's message and, when the
auditor disagrees, what it expected against what the frames hold.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..config import Scenario
from ..explore import Preempted, Runner, Violation, format_schedule, replay_chooser
from ..mem import SUPERPAGE_ORDER, SUPERPAGE_PAGES, format_count_info, format_type_info
from ..xen import audit
from ._shell import esc, page, write_page


@dataclass
class RaceRun:
    """A replayed schedule's steps (see the module docstring) and its violation."""
    scenario: Scenario
    design: str
    schedule: list[int]
    data: dict
    violation: Violation | None


class _Recorder:
    def __init__(self, ex, world):
        self.ex = ex
        self.m = m = ex.m
        self.texts: list[str] = []
        self._ids: dict[str, int] = {}
        self.keys: list[dict] = []
        self._key_ids: dict[tuple, int] = {}
        self.steps: list[list] = []
        self._seen = 0
        self._cas = None
        #: the scenario's superpages (by first MFN): label, the frames' words at the start
        self.spages = []
        self._sp_index: dict[int, int] = {}
        for name, mfns in world.mfns.items():
            for i, mfn in enumerate(mfns):
                page0 = m.mfn_to_page(mfn)
                ci, ti, _ = m.frame_table.read_slices(page0, SUPERPAGE_PAGES)
                self._sp_index[mfn] = len(self.spages)
                self.spages.append({
                    "label": f"{name}:{i} (mfn {mfn:#x})", "base": mfn,
                    "ci": [self.text(format_count_info(int(v))) for v in ci.tolist()],
                    "ti": [self.text(format_type_info(int(v))) for v in ti.tolist()]})
        self.init: dict[int, int] = {}
        for mfn in self._sp_index:
            for w, (name, v) in enumerate(_peek_words(m, mfn)):
                k = self.key(("sw", mfn, w), f"superpage mfn {mfn:#x} {name}")
                self.init[k] = self.text(m.superpage.word_text(w, v))

    def text(self, s: str) -> int:
        i = self._ids.get(s)
        if i is None:
            i = self._ids[s] = len(self.texts)
            self.texts.append(s)
        return i

    def key(self, k: tuple, label: str, **extra) -> int:
        i = self._key_ids.get(k)
        if i is None:
            i = self._key_ids[k] = len(self.keys)
            self.keys.append({"label": label, **extra})
        return i

    def on_cas(self, where, spdx, word, expected, found, new, won) -> None:
        t = self.m.superpage.word_text
        self._cas = [t(word, expected), t(word, found), t(word, new), 1 if won else 0,
                     f"{expected:#x}", f"{found:#x}", f"{new:#x}"]

    def _changes(self, step) -> list[list[int]]:
        """[key, value] of the words the step touched, as they are after it."""
        m, w = self.m, step.word
        if w[0] in ("ci", "ti"):
            mfn = int(m.pdx_to_mfn(w[1]))
            base = mfn - mfn % SUPERPAGE_PAGES
            if w[0] == "ci":
                v = format_count_info(m.frame_table.count_info(w[1]))
            else:
                v = format_type_info(m.frame_table.type_info(w[1]))
            sp = self._sp_index.get(base)
            extra = {} if sp is None else {"sp": sp, "off": mfn - base, "w": w[0]}
            k = self.key((w[0], mfn), f"mfn {mfn:#x} {'count_info' if w[0] == 'ci' else 'type_info'}",
                         **extra)
            return [[k, self.text(v)]]
        if w[0] in ("sp", "pi"):
            mfn = int(m.pdx_to_mfn(w[1] << SUPERPAGE_ORDER if w[0] == "sp" else w[1]))
            mfn -= mfn % SUPERPAGE_PAGES
            out = []
            for i, (name, v) in enumerate(_peek_words(m, mfn)):
                k = self.key(("sw", mfn, i), f"superpage mfn {mfn:#x} {name}")
                out.append([k, self.text(m.superpage.word_text(i, v))])
            return out
        return []

    def after(self, step) -> None:
        lines = self.ex.trace[self._seen:]
        self._seen = len(self.ex.trace)
        cas, self._cas = self._cas, None
        self.steps.append([step.cpu, [self.text(t) for t in lines], self._changes(step),
                           cas if step.kind in ("sp_cas", "pi_cas") else None])

    def leftover(self) -> None:
        """Lines the CPUs wrote after the last step (a refusal at the end); a last step
        whose CPU raised (its check is not run)."""
        if len(self.steps) < len(self.ex.schedule):
            self.steps.append([self.ex.schedule[-1], [], [], None])
        if self.steps and len(self.ex.trace) > self._seen:
            self.steps[-1][1] += [self.text(t) for t in self.ex.trace[self._seen:]]
            self._seen = len(self.ex.trace)


def _peek_words(m, mfn: int) -> list[tuple[str, int]]:
    """A superpage's words as (name, value), read as an observer: no atomic step (a read
    through the design's host would be a step of the schedule being replayed)."""
    d = m.superpage
    if d.words_in == "spage_table":
        spdx = int(m.mfn_to_page(mfn)) >> SUPERPAGE_ORDER
        vals = [m.spage_table.peek(spdx, w) for w in range(len(d.word_names))]
        return [] if any(v < 0 for v in vals) else list(zip(d.word_names, vals))
    return d.words(mfn) or [] if d.words_in == "page_info" else []


def _audit_rows(m) -> tuple[list[list[str]], int]:
    """The auditor's differences, frames alike grouped: [frames, field, expected, actual]
    (of those it lists), and how many there are in all."""
    rep = audit(m)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for d in rep.differences:
        groups[(d.field, str(d.expected), str(d.actual))].append(d.mfn)
    out = []
    for (fld, exp, act), mfns in groups.items():
        where = (f"mfn {mfns[0]:#x}" if len(mfns) == 1 else
                 f"{len(mfns)} frames mfn {min(mfns):#x}..{max(mfns):#x}")
        out.append([where, fld, exp, act])
    return out, rep.total_differences


def record_race(sc: Scenario, schedule: list[int], design: str | None = None,
                hypercall_preemptions: int | None = None) -> RaceRun:
    """Replay ``schedule`` of ``sc`` on ``design`` (default: the scenario's) and record it
    (``hypercall_preemptions``: the bound it was found with, as :func:`replay` takes it)."""
    bound = sc.hypercall_preemptions if hypercall_preemptions is None else hypercall_preemptions
    bound = max(bound, sum(isinstance(c, Preempted) for c in schedule))
    runner = Runner(sc, design, hypercall_preemptions=bound)
    ex = runner.make()
    rec = _Recorder(ex, ex.world)
    check = ex.check_step

    def after_step(m, step):
        problem = check(m, step)            # the explorer's own (it rewrites a cmpxchg's line)
        rec.after(step)
        return problem

    ex.check_step = after_step
    violation = None
    with ex.m.events.listening(spage_cmpxchg=rec.on_cas):
        try:
            ex.run(replay_chooser(schedule))
        except Violation as v:
            violation = v
    rec.leftover()
    viol = None
    if violation is not None:
        at_end = violation.message.startswith("after")
        rows, total = _audit_rows(ex.m) if at_end else ([], 0)
        viol = {"message": violation.message, "step": None if at_end else len(rec.steps) - 1,
                "audit": rows, "auditTotal": total}
    data = {"cpus": len(sc.cpus), "steps": rec.steps, "texts": rec.texts, "keys": rec.keys,
            "init": {str(k): v for k, v in rec.init.items()}, "spages": rec.spages,
            "violation": viol, "results": {str(c): r for c, r in
                                           getattr(ex.world, "results", {}).items()}}
    return RaceRun(sc, runner.design, list(ex.schedule), data, violation)


BODY = """
<div id="notes">{notes}</div>
<nav class="bar" id="bar">
 <button id="prev" title="previous step (left arrow or k)">&#9664; prev</button>
 <button id="next" title="next step (right arrow or j)">next &#9654;</button>
 <button class="jump" data-what="cas" title="next cmpxchg (c; C: previous)">cmpxchg (c)</button>
 <button class="jump" data-what="switch" title="next step of another CPU (w; W: previous)">CPU switch (w)</button>
 <button class="jump" data-what="sp" title="next step on a superpage word (s; S: previous)">superpage word (s)</button>
 <button class="jump" data-what="viol" title="the violation (v)">violation (v)</button>
 <label>step <input id="stepno" type="number" min="1" value="1"> of <span id="nsteps"></span></label>
</nav>
<canvas class="minimap" id="minimap" height="{mapheight}" title="the schedule: a row per CPU; green a cmpxchg won, red one lost, black the violation; click to go there"></canvas>
<h2 id="head"></h2>
<div id="lanes" class="lanes"></div>
<div id="cas"></div>
<div id="viol"></div>
<h3>Shared words at this step <span class="hint">(changed by this step: highlighted)</span></h3>
<div class="scroll"><table class="w words" id="words"></table></div>
<details id="about"><summary>The schedule</summary><pre>{about}</pre></details>
"""


def race_html(run: RaceRun) -> str:
    """The page's HTML text."""
    sc, v = run.scenario, run.violation
    notes = []
    if v is not None:
        notes.append(f'<p class="bad">Violation: {esc(v.message)}</p>')
    else:
        notes.append('<p class="note">No violation in this schedule.</p>')
    about = (f"scenario {sc.name}: {sc.description}\ndesign {run.design}\n"
             f"schedule ({len(run.schedule)} steps): {format_schedule(run.schedule)}\n"
             f"replay: xensim explore {sc.source or sc.name} --design {run.design} "
             f"--replay {format_schedule(run.schedule)}")
    body = BODY.format(notes="".join(notes), about=esc(about), mapheight=12 * len(sc.cpus) + 8)
    meta = (f"scenario {esc(sc.name)} ({esc(sc.description)}) on {esc(run.design)}, "
            f"{len(run.schedule):,} steps of {len(sc.cpus)} CPUs")
    return page(f"xensim explore: {sc.name} on {run.design}", meta, body, run.data, ("common.js", "race.js"))


def write_race_page(path, run: RaceRun) -> int:
    """Write the page at ``path``, atomically; -> its size in bytes."""
    text = race_html(run)
    write_page(path, text)
    return len(text.encode("utf-8"))
