"""Simulated CPUs and the race explorer.

Several CPUs run guest operations (hypercalls) concurrently, interleaved one
*atomic step* at a time: one get_page / put_page / get_page_type /
put_page_type of one frame, and each load, store or cmpxchg of a superpage
word (docs/xen-facts.md sections 3 and 5). The algorithms are not rewritten for
this: each CPU runs the ordinary code in its own greenlet, and the explorer,
subscribed to the machine's ``atomic_step`` event (``Machine.events``; nobody
listens when running sequentially), hands control to the scheduler before
every atomic step. While it listens the vectorised 512-frame forms fall back to
their per-frame loops, so a superpage acquisition is 1,024 steps.

Schedulers: round-robin, seeded random, PCT (randomised priorities with d-1
change points) and exhaustive depth-first search with a preemption bound, a
step bound, and sleep sets over a state-conditional independence relation
(steps on different words commute; so do two increments of one count).

A schedule is the list of CPU ids that ran each step; replaying it re-runs
the scenario exactly. With hypercall preemption on (``hypercall_preemptions`` > 0) a
``hypercall_preempt_check()`` a CPU reaches is a step too: the explorer answers it
through the machine's preemption source (``Machine.preempt``'s ``answer`` port), no or
pending, and a schedule element :class:`Preempted` (written ``0p``) is CPU 0 taking
that step answered pending: its hypercall stops with -ERESTART (or -EINTR) and the
guest kernel re-enters it, the continuation, as a step of its own. A CPU is a lane: its trace lines are named ``cpuN`` or, where a
scenario says which vCPU of which domain runs it, ``dN.vM``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

import greenlet

from ..output import keep_interrupt, stop_mark
from ..xen import HYPERCALL_NAMES, Preemption
from ..mem import PGC_count_mask, PGT_count_mask, PGT_type_mask, PGT_PAGE_TABLE_TYPES
from .._errors import RefcountBug


class Preempted(int):
    """A schedule element: CPU ``int(self)`` takes its step, a ``hypercall_preempt_check()``
    the explorer answers pending (``0p`` in a schedule's text). It equals its CPU id, so
    a schedule still reads as the list of CPUs that ran each step."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Preempted({int(self)})"


@dataclass(frozen=True)
class Step:
    """One atomic step a CPU is about to take."""
    cpu: int
    kind: str
    word: tuple          # ("ci", page) | ("ti", page) | ("sp", spdx, word) | ("lock", key)
    arg: int = 0

    def __str__(self) -> str:
        w = self.word
        where = (f"page {w[1]:#x} {w[0]}" if w[0] in ("ci", "ti") else
                 f"superpage {w[1]:#x} word {w[2]}" if w[0] == "sp" else
                 f"dom{w[1]}" if w[0] == "dom" else f"page_info field of page {w[1]:#x}"
                 if w[0] == "pi" else f"{w}")
        return f"cpu{self.cpu} {self.kind} {where}"


_CI_KINDS = {"get_page": "ci", "put_page": "ci", "count_flags": "ci"}
_TI_KINDS = {"get_page_type": "ti", "put_page_type": "ti", "set_validated": "ti", "type_flags": "ti",
             "wait_validated": "ti"}


def step_word(kind: str, key: int, arg: int) -> tuple:
    if kind in _CI_KINDS:
        return ("ci", key)
    if kind in _TI_KINDS:
        return ("ti", key)
    if kind.startswith("sp_"):
        return ("sp", key, arg)
    if kind.startswith("pi_"):
        return ("pi", key)
    if kind in ("pause", "hcall"):
        return ("dom", key)
    if kind == "preempt_check":                  # the CPU's own: independent of every other
        return ("lane", key)
    return (kind, key)


class Pruned(Exception):
    """Every enabled CPU is asleep: this path only reorders commuting steps of one already run."""


class Violation(Exception):
    """An invariant broke: carries the schedule and the trace that led there."""

    def __init__(self, message: str, schedule: list[int], trace: list[str]):
        super().__init__(message)
        self.message = message
        self.schedule = schedule
        self.trace = trace


# -- independence -------------------------------------------------------------------
def word_value(m, word: tuple) -> int:
    """The current value of the frame word a step touches (0 for other words)."""
    if word[0] == "ci":
        return m.frame_table.count_info(word[1])
    if word[0] == "ti":
        return m.frame_table.type_info(word[1])
    return 0


def independent(a: Step, b: Step, m, value: int | None = None) -> bool:
    """Do ``a`` and ``b`` commute from a state where their word holds ``value``
    (default: its current value)? Conservative: False when unsure."""
    if a.word != b.word:
        return True
    kinds = {a.kind, b.kind}
    if a.word[0] in ("sp", "pi"):
        return a.kind[3:] == b.kind[3:] == "load"
    if a.word[0] == "dom":                       # entering hypercalls commute; a pause does not
        return a.kind == b.kind == "hcall"
    if value is None:
        value = word_value(m, a.word)
    if a.word[0] == "ci":
        c = value & PGC_count_mask
        if kinds == {"get_page"}:
            return True                          # two increments commute
        if kinds == {"get_page", "put_page"}:
            return c >= 2                        # the put cannot reach 0 either way
        if kinds == {"put_page"}:
            return c >= 3
        return False
    if a.word[0] == "ti":
        ti = value
        t = ti & PGT_type_mask
        if t in PGT_PAGE_TABLE_TYPES:
            return False                         # validation / devalidation: order matters
        if kinds == {"get_page_type"}:
            return a.arg == b.arg and (ti & PGT_count_mask == 0 or a.arg == t)
        if kinds == {"get_page_type", "put_page_type"}:
            got = a.arg if a.kind == "get_page_type" else b.arg
            return got == t and ti & PGT_count_mask >= 1
        if kinds == {"put_page_type"}:
            return ti & PGT_count_mask >= 2
        return False
    return False


# -- one execution ----------------------------------------------------------------------
class Execution:
    """Runs one schedule of a scenario: CPUs as greenlets, a chooser picks who steps next.

    ``chooser(execution, enabled) -> cpu`` is called at every decision point.
    ``names``: each CPU's name in the trace (default ``cpu0``, ``cpu1`` ...);
    ``on_switch(cpu)``: called whenever CPU ``cpu`` is about to run (what is per CPU
    outside the greenlet, e.g. which vCPU a guest kernel issues its hypercalls from).
    ``hypercall_preemptions``: at most that many ``hypercall_preempt_check()`` answered
    pending in the schedule (0, the default: the machine's preemption source is left
    as it is, no check is a step).

    A check is a step only where it can make a difference: while answers pending are
    left, and when its CPU took an atomic step since its previous check (checks in a
    row with nothing between, a loop over empty entries, are one point: preempted at
    any of them, the continuation does the same).
    """

    def __init__(self, build: Callable, programs: list[Callable], check_step=None,
                 max_steps: int = 100_000, names: list[str] | None = None,
                 on_switch: Callable[[int], None] | None = None,
                 hypercall_preemptions: int = 0):
        self.m = build()
        self.programs = programs
        self.check_step = check_step
        self.max_steps = max_steps
        self.pending: dict[int, Step] = {}
        self.finished: set[int] = set()
        self.errors: list[tuple[int, BaseException]] = []
        self.schedule: list[int] = []
        self.trace: list[str] = []
        self.current: int | None = None
        self._main = greenlet.getcurrent()
        self._cpus: list[greenlet.greenlet] = []
        self.locks: dict[tuple, int] = {}
        self.names = names or [f"cpu{i}" for i in range(len(programs))]
        self.on_switch = on_switch
        self.hypercall_preemptions = hypercall_preemptions
        #: checks answered pending so far in this schedule
        self.preemptions = 0
        self._stepped: dict[int, bool] = {}      # cpu -> an atomic step since its last check
        self._answer: set[int] = set()           # CPUs whose check the chooser answered pending
        self._continuing: set[int] = set()       # CPUs preempted, not yet re-entered
        self._stop_mark = stop_mark()            # an error after a Ctrl-C is the Ctrl-C

    def step_text(self, step: Step) -> str:
        """A step as a trace line, its CPU named by :attr:`names`."""
        text = str(step)
        return self.names[step.cpu] + text[len(f"cpu{step.cpu}"):]

    def _run_cpu(self, cpu: int) -> None:
        self.current = self.m.design_host.cpu = cpu
        if self.on_switch is not None:
            self.on_switch(cpu)
        self._cpus[cpu].switch()

    def _enabled(self, step: Step) -> bool:
        if step.kind == "pause":                 # domain_pause: no hypercall of it in flight
            return self.m.hypercall.active.get(step.word[1], 0) == 0
        if step.kind == "wait_validated":        # __get_page_type spinning on a table another
            # CPU validates: each spin re-reads type_info and changes nothing, so the spinning
            # CPU runs again only once the word differs from what it saw (``arg``)
            return self.m.frame_table.type_info(step.word[1]) != step.arg
        if step.kind == "sp_wait":               # a design spinning on a superpage word (a
            # lock bit): runs again only once the word differs from what it saw
            return self.m.spage_table.peek(step.word[1], step.word[2]) != step.arg
        return True

    # called from inside a CPU's greenlet: the machine's atomic_step event
    def _on_step(self, kind: str, key: int, arg: int) -> None:
        if kind[:3] == "sp_":                    # a superpage-table word: (spdx, word)
            # sp_wait: the value it waits to change is the word now (its CPU read it last)
            seen = self.m.spage_table.peek(key, arg) if kind == "sp_wait" else 0
            step = Step(self.current, kind, ("sp", key, arg), seen)
        else:
            step = Step(self.current, kind, step_word(kind, key, arg), arg)
        self.pending[step.cpu] = step
        self._stepped[step.cpu] = True
        self._main.switch()

    # called from inside a CPU's greenlet: the machine's hypercall_preempt_check()
    def _preempt_check(self) -> bool:
        cpu = self.current
        if self.preemptions >= self.hypercall_preemptions or not self._stepped.get(cpu, True):
            return False
        self._stepped[cpu] = False
        self.pending[cpu] = Step(cpu, "preempt_check", ("lane", cpu))
        self._main.switch()
        if cpu in self._answer:
            self._answer.discard(cpu)
            self._continuing.add(cpu)
            return True
        return False

    def _take(self, choice: int, step: Step) -> tuple[int, str]:
        """The schedule element and the trace line of ``step``, chosen as ``choice``
        (a :class:`Preempted` answers a check pending; on any other step it is its CPU)."""
        cpu = int(choice)
        name = self.names[cpu]
        if step.kind == "preempt_check":
            if isinstance(choice, Preempted) and self.preemptions < self.hypercall_preemptions:
                self._answer.add(cpu)
                self.preemptions += 1
                return Preempted(cpu), (f"{name} hypercall_preempt_check(): pending: the "
                                        "hypercall stops (-ERESTART / -EINTR)")
            return cpu, f"{name} hypercall_preempt_check(): no"
        text = self.step_text(step)
        if step.kind == "hcall" and cpu in self._continuing:
            self._continuing.discard(cpu)
            text += (f": {HYPERCALL_NAMES.get(step.arg, step.arg)} re-entered, the continuation "
                     "of the preempted hypercall" + self._partial_text())
        return cpu, text

    def _partial_text(self) -> str:
        """The tables a preempted (de)validation left PGT_partial, with their progress."""
        m = self.m
        parts = []
        for page, (level, _d) in sorted(m.pt.partial.items()):
            nr = m.frame_table.progress.get(page)[0]
            parts.append(f"page {page:#x} (L{level}) PGT_partial, nr_validated_ptes {nr}")
        return (" [" + "; ".join(parts) + "]") if parts else ""

    def _body(self, cpu: int):
        def run():
            try:
                self.programs[cpu](self.m, cpu)
            except KeyboardInterrupt:           # Ctrl-C: to the scheduler, not a violation
                raise
            except BaseException as e:          # noqa: BLE001 - reported as a violation
                keep_interrupt(self._stop_mark)
                self.errors.append((cpu, e))
            self.finished.add(cpu)
            self.pending.pop(cpu, None)
        return run

    def run(self, chooser) -> None:
        m = self.m
        sub = m.events.subscribe("atomic_step", self._on_step)
        m.concurrent = True
        source = m.preempt
        if self.hypercall_preemptions:
            m.set_preempt(Preemption(answer=self._preempt_check))
        try:
            self._cpus = [greenlet.greenlet(self._body(i)) for i in range(len(self.programs))]
            # let each CPU run up to its first atomic step
            for i in range(len(self._cpus)):
                self._run_cpu(i)
            while len(self.finished) < len(self._cpus) and not self.errors:
                enabled = sorted(c for c, st in self.pending.items() if self._enabled(st))
                if not enabled:
                    if self.pending:
                        raise Violation("deadlock: every CPU waits", self.schedule, self.trace)
                    break
                if len(self.schedule) >= self.max_steps:
                    raise Violation(f"step bound {self.max_steps} reached", self.schedule, self.trace)
                choice = chooser(self, enabled)
                cpu = int(choice)
                step = self.pending.pop(cpu)
                choice, text = self._take(choice, step)
                self.schedule.append(choice)
                self.trace.append(text)
                self._run_cpu(cpu)
                if self.check_step is not None and not self.errors:
                    problem = self.check_step(m, step)
                    if problem:
                        raise Violation(problem, self.schedule, self.trace)
        finally:
            m.events.unsubscribe(sub)
            if self.hypercall_preemptions:
                m.set_preempt(source)
            m.concurrent = False
            m.design_host.cpu = 0
            for g in self._cpus:
                if not g.dead:
                    g.throw(greenlet.GreenletExit)
        if self.errors:
            cpu, e = self.errors[0]
            kind = "refcount underflow" if isinstance(e, RefcountBug) else type(e).__name__
            raise Violation(f"{self.names[cpu]}: {kind}: {e}", self.schedule, self.trace)


# -- schedulers -----------------------------------------------------------------------------
def round_robin(ex: Execution, enabled: list[int]) -> int:
    last = ex.schedule[-1] if ex.schedule else -1
    later = [c for c in enabled if c > last]
    return later[0] if later else enabled[0]


#: random and PCT: the chance that a ``hypercall_preempt_check()`` step chosen is answered
#: pending (while the schedule has answers pending left)
RANDOM_PREEMPT = 0.25


def _maybe_preempted(ex: Execution, cpu: int, rng: random.Random) -> int:
    """``cpu``, or :class:`Preempted` when its step is a check and ``rng`` says pending."""
    if ex.pending[cpu].kind == "preempt_check" and rng.random() < RANDOM_PREEMPT:
        return Preempted(cpu)
    return cpu


def random_chooser(seed: int):
    rng = random.Random(seed)
    return lambda ex, enabled: _maybe_preempted(ex, rng.choice(enabled), rng)


def replay_chooser(schedule: list[int]):
    it = iter(schedule)

    def choose(ex, enabled):
        cpu = next(it, None)
        if cpu is None or cpu not in enabled:
            cpu = ex.schedule[-1] if ex.schedule and ex.schedule[-1] in enabled else enabled[0]
        return cpu
    return choose


def pct_chooser(seed: int, n_cpus: int, depth: int = 3, expected_steps: int = 5000):
    """PCT (Burckhardt et al., 2010): random priorities, d-1 random priority change points."""
    rng = random.Random(seed)
    prio = list(range(depth, depth + n_cpus))
    rng.shuffle(prio)
    changes = sorted(rng.sample(range(1, expected_steps), min(depth - 1, expected_steps - 1)))

    def choose(ex, enabled):
        k = len(ex.schedule)
        best = max(enabled, key=lambda c: prio[c])
        while changes and changes[0] <= k:
            changes.pop(0)
            prio[best] = depth - 1 - len(changes)           # drop below every initial priority
            best = max(enabled, key=lambda c: prio[c])
        return _maybe_preempted(ex, best, rng)
    return choose


def _cpu(key: int) -> int:
    """The CPU of a search key: ``c`` (its step), ``~c`` (its check answered pending)."""
    return key if key >= 0 else ~key


def _element(key: int) -> int:
    """The schedule element of a search key."""
    return key if key >= 0 else Preempted(~key)


@dataclass
class _Node:
    """A decision point of the depth-first search. Its choices are keys: CPU ``c``
    takes its step, ``~c``: CPU c's ``hypercall_preempt_check()`` answered pending."""
    enabled: list[int]
    pending: dict[int, Step]
    sleep: set[int]
    prev: int | None                     # the CPU that ran the step before this point
    preemptions: int                     # spent on the way here
    indep: dict[tuple[int, int], bool]   # (q, c): q's and c's pending steps commute here
    choice: int = -1
    done: set[int] = field(default_factory=set)
    backtrack: set[int] = field(default_factory=set)   # CPUs a race says must also go first here
    checks: set[int] = field(default_factory=set)      # CPUs at a check that may answer pending


@dataclass
class ExploreResult:
    schedules: int = 0                   # schedules run to the end
    pruned: int = 0                      # paths cut short by a sleep set (equivalent to one run)
    steps: int = 0
    violations: int = 0
    first: Violation | None = None
    complete: bool = True                # False when --max-schedules stopped the search
    seconds: float = 0.0
    #: CPU operations the design refused ("cpu0 mark a:0 -> EOPNOTSUPP"): in how many of
    #: the schedules run to the end
    refused: dict[str, int] = field(default_factory=dict)


def explore_dfs(make_execution: Callable[[], Execution], preemption_bound: int = 2,
                max_schedules: int = 100_000, stop_at_first: bool = True,
                reduction: bool = True) -> ExploreResult:
    """Depth-first search over schedules with at most ``preemption_bound`` preemptions.

    With ``reduction`` (the default) it is dynamic partial-order reduction
    (Flanagan & Godefroid 2005): a node gets an alternative CPU only where the
    run shows a race (two dependent steps of different CPUs not ordered by
    happens-before), plus sleep sets (Godefroid 1996) to skip reorderings of
    commuting steps. Dependence is state-conditional (see :func:`independent`).
    Combined with a preemption bound this is the usual bounded-DPOR
    approximation: every race found within the bound is reversed. Without
    ``reduction`` every enabled CPU is an alternative at every node (sleep sets
    only): complete for the bound, and far slower.
    """
    import time
    t0 = time.perf_counter()
    res = ExploreResult()
    stack: list[_Node] = []
    while True:
        depth = 0
        clocks: dict[int, dict[int, int]] = {}          # cpu -> vector clock
        step_clock: list[dict[int, int]] = []           # depth -> clock after that step
        by_word: dict[tuple, list[tuple[int, Step, int]]] = {}   # word -> [(depth, step, value before)]

        def note_races(m, d: int, step: Step) -> None:
            """Record step ``d`` (about to run): reverse each race it completes."""
            c = step.cpu
            vc = clocks.setdefault(c, {})
            seen_cpu: set[int] = set()
            new = dict(vc)
            shared = step.kind != "preempt_check"           # a check touches nothing shared
            for j, other, before in reversed(by_word.get(step.word, ()) if shared else ()):
                q = other.cpu
                if q == c or independent(other, step, m, before):
                    continue
                if q not in seen_cpu and step_clock[j].get(q, 0) > vc.get(q, 0):
                    seen_cpu.add(q)                         # the latest racing step of q
                    node = stack[j]
                    if c in node.enabled:
                        node.backtrack.add(c)
                    else:
                        node.backtrack.update(node.enabled)
                for k, v in step_clock[j].items():
                    if v > new.get(k, 0):
                        new[k] = v
            new[c] = new.get(c, 0) + 1
            clocks[c] = new
            step_clock.append(new)
            if shared:
                by_word.setdefault(step.word, []).append((d, step, word_value(m, step.word)))

        def choose(ex: Execution, enabled: list[int]) -> int:
            nonlocal depth
            m = ex.m
            if depth < len(stack):
                node = stack[depth]
            else:
                prev = int(ex.schedule[-1]) if ex.schedule else None
                if depth == 0:
                    sleep, pre = set(), 0
                else:
                    parent = stack[depth - 1]
                    chosen = _cpu(parent.choice)
                    carried = (parent.sleep | (parent.done - {parent.choice}))
                    sleep = {q for q in carried if q != parent.choice
                             and parent.indep.get((_cpu(q), chosen), False)}
                    pre = parent.preemptions + (1 if parent.prev is not None and chosen != parent.prev
                                                and parent.prev in parent.enabled else 0)
                pend = dict(ex.pending)
                indep = {(q, c): independent(pend[q], pend[c], m)
                         for q in enabled for c in enabled if q != c}
                node = _Node(list(enabled), pend, sleep, prev, pre, indep)
                awake = [c for c in enabled if c not in sleep]
                # a check answered pending is always an alternative where its CPU runs it
                # (while the schedule has answers pending left)
                checks = {c for c in awake if pend[c].kind == "preempt_check"} \
                    if ex.preemptions < ex.hypercall_preemptions else set()
                if not awake:
                    raise Pruned()
                node.choice = prev if prev in awake else awake[0]
                node.done.add(node.choice)
                node.backtrack = {node.choice} if reduction else set(enabled)
                if not reduction:
                    node.backtrack |= {~c for c in checks}
                node.checks = checks
                stack.append(node)
            if node.choice >= 0 and node.choice in node.checks:
                node.backtrack.add(~node.choice)            # (also for a CPU chosen on backtracking)
            if reduction:
                note_races(m, depth, node.pending[_cpu(node.choice)])
            depth += 1
            return _element(node.choice)

        ex = make_execution()
        try:
            ex.run(choose)
            ok = None
        except Violation as v:
            ok = v
        except Pruned:
            ok = None
            res.pruned += 1
        else:
            res.schedules += 1
        res.steps += len(ex.schedule)
        if ok is not None:
            res.schedules += 1
            res.violations += 1
            if res.first is None:
                res.first = ok
            if stop_at_first:
                break
        del stack[depth:]                          # nodes past the end of this run
        # backtrack to the deepest node with an untried, allowed alternative
        while stack:
            node = stack[-1]
            alts = [c for c in sorted(node.backtrack, key=lambda k: (_cpu(k), k < 0))
                    if c not in node.done and _cpu(c) not in node.sleep]
            cost = [c for c in alts if not (node.prev is not None and node.prev in node.enabled
                                             and _cpu(c) != node.prev) or node.preemptions < preemption_bound]
            if cost:
                node.choice = cost[0]
                node.done.add(node.choice)
                break
            stack.pop()
        if not stack or res.schedules + res.pruned >= max_schedules:
            res.complete = not stack
            break
    res.seconds = time.perf_counter() - t0
    return res


def run_sampling(make_execution, chooser_for: Callable[[int], Callable], schedules: int,
                 stop_at_first: bool = True) -> ExploreResult:
    """Run ``schedules`` executions, the i-th with chooser_for(i) (random, PCT, round-robin)."""
    import time
    t0 = time.perf_counter()
    res = ExploreResult(complete=False)
    for i in range(schedules):
        ex = make_execution()
        try:
            ex.run(chooser_for(i))
        except Violation as v:
            res.violations += 1
            res.first = res.first or v
            res.schedules += 1
            res.steps += len(ex.schedule)
            if stop_at_first:
                break
            continue
        res.schedules += 1
        res.steps += len(ex.schedule)
    res.seconds = time.perf_counter() - t0
    return res
