"""Explorer scenarios: a small machine, some guests, and a short list of guest
operations per CPU, run concurrently under the explorer (see _explore.py).

A scenario (YAML, ``scenarios/*.yaml``)::

    description: two CPUs map the same unmapped superpage
    design: xen-4.1              # --design overrides it
    hypervisor: {version: "4.8", faithful: false}
    memory: 64MiB                # a flat RAM machine [0, memory)
    domains:
      - {name: a, superpages: 2}
    setup:                       # run sequentially before the CPUs start
      - {op: map, domain: a, superpage: 1, table: 0}
    cpus:
      - [{op: map, domain: a, superpage: 0}]
      - [{op: map, domain: a, superpage: 0}]
    end: destroy                 # after each schedule: destroy every guest; all RAM free again

Operations: ``map`` / ``unmap`` / ``remap`` (a PSE entry; ``rw``, default true),
``map4k`` / ``unmap4k`` (``frame`` within the superpage), ``mark`` / ``unmark``,
``destroy``. ``domain`` names whose superpage it is; ``by`` names the domain
issuing the hypercall (default: the same: ``by`` differing is how a scenario
makes a second domain touch another's superpage). Each CPU maps into page
tables of its own (``table``, default its CPU number + 1: table t covers
1 GiB of virtual addresses at the direct map + t GiB), so entries never collide
and only the superpage's word and frames are shared.
"""

from __future__ import annotations

import copy
import errno
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ._audit import audit
from ._errors import ConfigError
from ._explore import (Execution, ExploreResult, Violation, explore_dfs, pct_chooser,
                       random_chooser, replay_chooser, round_robin, run_sampling)
from ._guest import DIRECTMAP_BASE, GuestKernel
from ._machine import Machine
from ._memmap import MemoryMap
from ._page_info import PGC_count_mask, PGC_state, PGC_state_free, PGC_state_inuse, PGT_count_mask
from ._units import GiB, SUPERPAGE_PAGES, parse_size

OPS = ("map", "unmap", "remap", "map4k", "unmap4k", "mark", "unmark", "destroy")
_SANE = 1 << 40                 # a count past this went below zero


@dataclass
class Op:
    op: str
    domain: str
    superpage: int = 0
    rw: bool = True
    table: int | None = None
    frame: int = 0
    by: str | None = None


@dataclass
class Scenario:
    name: str
    description: str = ""
    design: str = "xen-4.1"
    version: str = "4.8"
    faithful: bool = False
    memory: int = 64 << 20
    domains: list[tuple[str, int]] = field(default_factory=list)
    setup: list[Op] = field(default_factory=list)
    cpus: list[list[Op]] = field(default_factory=list)
    end: str = "destroy"


def _fail(path, key, msg):
    raise ConfigError(str(path), key, msg)


def load_scenario(path) -> Scenario:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(str(path), None, f"cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise ConfigError(str(path), None, f"YAML syntax error: {getattr(e, 'problem', e)}",
                          None if line is None else line + 1) from None
    if not isinstance(data, dict):
        _fail(path, None, "a scenario is a mapping")
    allowed = {"description", "design", "hypervisor", "memory", "domains", "setup", "cpus", "end"}
    for k in data:
        if k not in allowed:
            _fail(path, k, f"unknown key; allowed: {', '.join(sorted(allowed))}")
    sc = Scenario(name=path.stem, description=str(data.get("description", "")))
    sc.design = str(data.get("design", sc.design))
    hv = data.get("hypervisor") or {}
    sc.version = str(hv.get("version", sc.version))
    sc.faithful = bool(hv.get("faithful", False))
    try:
        sc.memory = parse_size(data.get("memory", sc.memory))
    except ValueError as e:
        _fail(path, "memory", str(e))
    for i, d in enumerate(data.get("domains") or []):
        if not isinstance(d, dict) or "name" not in d:
            _fail(path, f"domains[{i}]", "each domain needs a name")
        sc.domains.append((str(d["name"]), int(d.get("superpages", 1))))
    names = {n for n, _ in sc.domains}

    def ops(items, key):
        out = []
        for i, o in enumerate(items or []):
            if not isinstance(o, dict) or o.get("op") not in OPS:
                _fail(path, f"{key}[{i}].op", f"unknown operation; choose from {', '.join(OPS)}")
            unknown = set(o) - {"op", "domain", "superpage", "rw", "table", "frame", "by"}
            if unknown:
                _fail(path, f"{key}[{i}]", f"unknown keys {sorted(unknown)}")
            for who in ("domain", "by"):
                if who in o and o[who] not in names:
                    _fail(path, f"{key}[{i}].{who}", f"no domain named {o[who]!r}")
            if "domain" not in o:
                _fail(path, f"{key}[{i}].domain", "missing")
            out.append(Op(**{k: v for k, v in o.items()}))
        return out
    sc.setup = ops(data.get("setup"), "setup")
    for c, items in enumerate(data.get("cpus") or []):
        sc.cpus.append(ops(items, f"cpus[{c}]"))
    if not sc.cpus:
        _fail(path, "cpus", "a scenario needs at least one CPU")
    sc.end = str(data.get("end", "destroy"))
    if sc.end not in ("destroy", "none"):
        _fail(path, "end", "destroy or none")
    return sc


class World:
    """A booted scenario: the machine, each domain's kernel and superpage MFNs."""

    def __init__(self, sc: Scenario, design: str | None = None):
        self.sc = sc
        m = Machine(MemoryMap([(0, sc.memory)], name=f"scenario-{sc.name}"), "none",
                    version=sc.version, superpage=design or sc.design, faithful=sc.faithful)
        self.m = m
        self.kernels: dict[str, GuestKernel] = {}
        self.mfns: dict[str, list[int]] = {}
        for name, n in sc.domains:
            domid = m.create_domain(name, n * SUPERPAGE_PAGES + 64)
            k = GuestKernel(m, domid)
            if k.populate(0, n * SUPERPAGE_PAGES) != n or k.build() != 0:
                raise RuntimeError(f"scenario {sc.name}: cannot set up domain {name}")
            self.kernels[name] = k
            self.mfns[name] = k.superpage_mfns(0, n)
        # every page table an operation will use exists before the CPUs start
        for c, ops in enumerate([sc.setup] + sc.cpus):
            for op in ops:
                k = self.kernels[op.by or op.domain]
                if op.op in ("map", "unmap", "remap"):
                    k._ensure_table(self._va(op, c - 1), 2)
                elif op.op in ("map4k", "unmap4k"):
                    k._ensure_table(self._va4k(op, c - 1), 1)
        for op in sc.setup:
            rc = self.do(op, -1)
            if rc < 0:
                raise RuntimeError(f"scenario {sc.name}: setup {op} failed: {rc}")

    @staticmethod
    def _table(op: Op, cpu: int) -> int:
        return op.table if op.table is not None else cpu + 1

    def _va(self, op: Op, cpu: int) -> int:
        return DIRECTMAP_BASE + self._table(op, cpu) * GiB + op.superpage * (2 << 20)

    def _va4k(self, op: Op, cpu: int) -> int:
        return DIRECTMAP_BASE + (16 + self._table(op, cpu)) * GiB + op.superpage * (2 << 20) + op.frame * 4096

    def do(self, op: Op, cpu: int) -> int:
        """Perform one operation as the issuing domain's kernel (hypercalls only)."""
        k = self.kernels[op.by or op.domain]
        m = self.m
        if op.op == "destroy":
            return m.destroy_domain(self.kernels[op.domain].domid)
        mfn = self.mfns[op.domain][op.superpage]
        if op.op == "map":
            return k.map_superpages(self._va(op, cpu), [mfn], op.rw)
        if op.op == "unmap":
            return k.unmap(self._va(op, cpu), 1)
        if op.op == "remap":
            return k.remap(self._va(op, cpu), op.rw, 1)
        if op.op == "map4k":
            return k.map_pages(self._va4k(op, cpu), [mfn + op.frame], op.rw)
        if op.op == "unmap4k":
            return k.unmap(self._va4k(op, cpu), 1, superpages=False)
        if op.op == "mark":
            return k.mark_superpage(mfn)
        if op.op == "unmark":
            return k.unmark_superpage(mfn)
        return -errno.ENOSYS


def check_step(m, step) -> str | None:
    """Invariants after every step: no count below zero, no corrupted state bits."""
    w = step.word
    if w[0] == "ci":
        ci = m.frame_table.count_info(w[1])
        if ci & PGC_count_mask > _SANE:
            return f"{step}: count_info went below zero ({ci:#x})"
        if ci & PGC_state not in (PGC_state_inuse, PGC_state_free):
            return f"{step}: count_info state bits corrupted ({ci:#x})"
        if ci & PGC_state == PGC_state_free and ci & PGC_count_mask:
            return f"{step}: a free frame holds references ({ci:#x})"
    elif w[0] == "ti":
        ti = m.frame_table.type_info(w[1])
        if ti & PGT_count_mask > _SANE:
            return f"{step}: type_info went below zero ({ti:#x})"
    elif w[0] == "sp":
        e = m.spage_table.entry_index(w[1])
        if e >= 0:
            v = int(m.spage_table.store[w[2], e])
            if m.superpage.name == "xen-4.1" and v >> 62 == 3:
                return f"{step}: superpage state bits corrupted ({v:#x})"
            if (v & ((1 << 61) - 1)) > _SANE:
                return f"{step}: superpage count went below zero ({v:#x})"
    return None


class Runner:
    """Builds executions of a scenario on a design; checks each schedule's end state."""

    def __init__(self, sc: Scenario, design: str | None = None, max_steps: int = 200_000):
        self.sc = sc
        self.design = design or sc.design
        self.max_steps = max_steps
        self._world = World(sc, self.design)             # set up once, copied per schedule
        self.results: list[list[int]] = []

    def make(self) -> Execution:
        world = copy.deepcopy(self._world)
        programs = [self._program(world, c, ops) for c, ops in enumerate(self.sc.cpus)]
        ex = _ScenarioExecution(lambda: world.m, programs, check_step, self.max_steps)
        ex.world = world
        ex.runner = self
        return ex

    @staticmethod
    def _program(world: World, cpu: int, ops: list[Op]):
        world.results = getattr(world, "results", {})
        world.results[cpu] = []

        def run(m, _cpu):
            for op in ops:
                world.results[cpu].append(world.do(op, cpu))
        return run

    def end_check(self, ex: "_ScenarioExecution") -> None:
        m = ex.m
        rep = audit(m)
        if not rep.ok:
            raise Violation("after the schedule: " + _audit_line(rep), ex.schedule, ex.trace)
        if self.sc.end == "destroy":
            for name, k in ex.world.kernels.items():
                if m.domain(k.domid) is not None:
                    m.destroy_domain(k.domid)
            leaked = [f"dom{d.domid} ({d.name}) keeps {d.tot_pages} frames"
                      for d in m.domains.values() if d.domid != 0]
            if leaked or m.heap.free_frames != m.memmap.ram_frames:
                lost = m.memmap.ram_frames - m.heap.free_frames
                raise Violation(f"after destroying every guest {lost} frames are not free: "
                                + "; ".join(leaked), ex.schedule, ex.trace)
            rep = audit(m)
            if not rep.ok:
                raise Violation("after destroy: " + _audit_line(rep), ex.schedule, ex.trace)


class _ScenarioExecution(Execution):
    def run(self, chooser) -> None:
        super().run(chooser)
        self.runner.end_check(self)


def explore(sc: Scenario, design: str | None = None, scheduler: str = "dfs",
            preemption_bound: int = 2, max_schedules: int = 10_000, seed: int = 0,
            stop_at_first: bool = True) -> ExploreResult:
    r = Runner(sc, design)
    n = len(sc.cpus)
    if scheduler == "dfs":
        return explore_dfs(r.make, preemption_bound, max_schedules, stop_at_first)
    choosers = {
        "round-robin": lambda i: round_robin,
        "random": lambda i: random_chooser(seed + i),
        "pct": lambda i: pct_chooser(seed + i, n),
    }
    if scheduler not in choosers:
        raise ValueError(f"unknown scheduler {scheduler!r}")
    count = 1 if scheduler == "round-robin" else max_schedules
    return run_sampling(r.make, choosers[scheduler], count, stop_at_first)


def replay(sc: Scenario, schedule: list[int], design: str | None = None) -> tuple[Execution, Violation | None]:
    """Re-run one schedule exactly; returns the execution and its violation (or None)."""
    ex = Runner(sc, design).make()
    try:
        ex.run(replay_chooser(schedule))
        return ex, None
    except Violation as v:
        return ex, v


# -- the command line ----------------------------------------------------------------------
def format_schedule(schedule: list[int]) -> str:
    """Run-length form: ``0,1*1030,0*1029`` (CPU ids; ``*n`` repeats)."""
    out, i = [], 0
    while i < len(schedule):
        j = i
        while j < len(schedule) and schedule[j] == schedule[i]:
            j += 1
        out.append(f"{schedule[i]}" + (f"*{j - i}" if j - i > 1 else ""))
        i = j
    return ",".join(out)


def parse_schedule(text: str) -> list[int]:
    sched = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        cpu, _, n = part.partition("*")
        try:
            sched.extend([int(cpu)] * (int(n) if n else 1))
        except ValueError:
            raise ConfigError(None, "--replay", f"bad schedule element {part!r}; "
                              "expected CPU ids like 0,1*1030,0") from None
    return sched


def summarise_trace(trace: list[str], limit: int = 60) -> list[str]:
    """Collapse each run of one CPU's per-frame steps into one line, e.g.
    ``cpu1: 1024 frame steps (get_page, get_page_type) on pages 0x0 .. 0x1ff``."""
    out: list[str] = []
    i = 0
    while i < len(trace):
        cpu = trace[i].split(" ", 1)[0]
        j = i
        kinds, pages = [], []
        while j < len(trace) and trace[j].startswith(cpu + " ") and " page " in trace[j]:
            kinds.append(trace[j].split(" ")[1])
            pages.append(trace[j].split(" page ")[1].split()[0])
            j += 1
        if j - i > 3:
            names = ", ".join(dict.fromkeys(kinds))
            out.append(f"{cpu}: {j - i} frame steps ({names}) on pages {pages[0]} .. {pages[-1]}")
        else:
            j = max(j, i + 1)
            out.extend(trace[i:j])
        i = j
    if len(out) > limit:
        out = out[:limit // 2] + [f"... {len(out) - limit} more ..."] + out[-limit // 2:]
    return out


def _audit_line(rep) -> str:
    d = rep.differences
    head = "; ".join(str(x) for x in d[:3])
    more = f" (and {rep.total_differences - 3} more)" if rep.total_differences > 3 else ""
    return f"{rep.total_differences} audit difference(s): {head}{more}"


def add_parser(sub) -> None:
    p = sub.add_parser("explore", help="explore interleavings of a concurrent scenario")
    p.add_argument("scenario", help="a scenario YAML (see scenarios/)")
    p.add_argument("--design", help="superpage design (default: the scenario's)")
    p.add_argument("--scheduler", choices=("dfs", "random", "pct", "round-robin"), default="dfs")
    p.add_argument("--preemption-bound", type=int, default=2)
    p.add_argument("--max-schedules", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--all", action="store_true", help="keep going after the first violation")
    p.add_argument("--replay", metavar="SCHEDULE", help="rerun one schedule exactly (0,1*1030,...)")
    p.add_argument("--full-trace", action="store_true", help="print every step of the trace")
    p.set_defaults(func=cmd_explore)


def cmd_explore(args) -> int:
    import sys
    sc = load_scenario(args.scenario)
    design = args.design or sc.design
    from ._superpage import DESIGNS, _load_designs
    _load_designs()
    if design not in DESIGNS:
        raise ConfigError(None, "--design", f"unknown design {design!r}; choose from {', '.join(sorted(DESIGNS))}")
    w = sys.stdout.write
    if args.replay is not None:
        ex, v = replay(sc, parse_schedule(args.replay), design)
        w(f"replayed {len(ex.schedule)} steps of {sc.name} on {design}\n")
        w(f"results per CPU: {getattr(ex.world, 'results', {})}\n")
        trace = ex.trace if args.full_trace else summarise_trace(ex.trace)
        w("".join(f"  {t}\n" for t in trace))
        w(f"violation: {v.message}\n" if v else "no violation\n")
        return 1 if v else 0
    res = explore(sc, design, args.scheduler, args.preemption_bound, args.max_schedules,
                  args.seed, not args.all)
    w(f"scenario {sc.name} ({sc.description}) on {design}"
      f"{' [BUGGY design]' if DESIGNS[design].buggy else ''}, scheduler {args.scheduler}"
      + (f", preemption bound {args.preemption_bound}" if args.scheduler == "dfs" else "") + "\n")
    w(f"schedules explored: {res.schedules}" + (f" (+{res.pruned} cut short as equivalent)" if res.pruned else "")
      + f", steps: {res.steps:,}, {res.seconds:.2f} s ({res.steps / max(res.seconds, 1e-9):,.0f} steps/s)"
      + ("" if res.complete else ", search incomplete (--max-schedules reached)") + "\n")
    w(f"violations: {res.violations}\n")
    if res.first:
        v = res.first
        w(f"first violation: {v.message}\n")
        w(f"schedule ({len(v.schedule)} step{'s' * (len(v.schedule) != 1)}): {format_schedule(v.schedule)}\n")
        w("trace:\n")
        trace = v.trace if args.full_trace else summarise_trace(v.trace)
        w("".join(f"  {t}\n" for t in trace))
        w(f"replay: xensim explore {args.scenario} --design {design} --replay {format_schedule(v.schedule)}\n")
        return 1
    return 0
