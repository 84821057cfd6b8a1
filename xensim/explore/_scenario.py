"""Running explorer scenarios: a scenario (loaded by xensim.config's load_scenario;
its file format is described there) booted as a World, its CPUs' operations run
concurrently under the explorer (see explore/_explore.py), each schedule's end state checked.
"""

from __future__ import annotations

import copy
import errno
import time

from ..xen import audit
from .._errors import ConfigError
from ..config import BAD_ENTRY, MAX_STEPS, TABLE_OPS, Scenario, ScenarioOp, op_vcpu
from ._explore import (Execution, ExploreResult, Preempted, Violation, Pruned, explore_dfs,
                       pct_chooser, random_chooser, replay_chooser, round_robin, run_sampling)
from ..guest import DIRECTMAP_BASE, GuestError, GuestKernel
from ..xen import errno_name
from ..xen import (MMU_NORMAL_PT_UPDATE, MMUEXT_PIN_L1_TABLE, MMUEXT_UNPIN_TABLE, Machine, MmuextOp,
                   Preemption, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, make_pte)
from ..mem import MemoryMap
from ..mem import PGC_count_mask, PGC_state, PGC_state_free, PGC_state_inuse, PGT_count_mask
from ..mem import GiB, SUPERPAGE_PAGES

_SANE = 1 << 40                 # a count past this went below zero


class World:
    """A booted scenario: the machine, each domain's kernel and superpage MFNs."""

    def __init__(self, sc: Scenario, design: str | None = None):
        self.sc = sc
        m = Machine(MemoryMap([(0, sc.memory)], name=f"scenario-{sc.name}"), "none",
                    version=sc.version, superpage=design or sc.design, faithful=sc.faithful)
        self.m = m
        self.kernels: dict[str, GuestKernel] = {}
        self.mfns: dict[str, list[int]] = {}
        #: the CPU operations refused in this schedule, as text (see :meth:`refusal`)
        self.refused: list[str] = []
        #: where a refusal's line goes too (the execution's trace; set per execution)
        self.trace: list[str] | None = None
        #: (granter, grantee, va) -> the grant ref a map-grant wrote and mapped there
        self.grant_refs: dict[tuple[str, str, int], int] = {}
        #: CPU -> (the kernel its current operation uses, the vCPU it runs as)
        self.lanes: dict[int, tuple[GuestKernel, int]] = {}
        #: each CPU's name in the trace (set per execution)
        self.names: list[str] = []
        for name, n in sc.domains:
            domid = m.create_domain(name, n * SUPERPAGE_PAGES + 64, vcpus=sc.vcpus.get(name, 1))
            k = GuestKernel(m, domid)
            if k.populate(0, n * SUPERPAGE_PAGES) != n or k.build() != 0:
                i = [d for d, _ in sc.domains].index(name)
                raise ConfigError(sc.source or sc.name, f"domains[{i}]",
                                  f"domain {name} ({n} superpages) cannot be set up in "
                                  f"memory {sc.memory >> 20} MiB")
            self.kernels[name] = k
            self.mfns[name] = k.superpage_mfns(0, n)
        #: each page table of ``page_tables``: name -> (MFN, level)
        self.pts: dict[str, tuple[int, int]] = {}
        self._tables(sc)
        # every page table an operation will use exists before the CPUs start
        for c, ops in enumerate([sc.setup] + sc.cpus):
            for op in ops:
                k = self.kernels[op.by or op.domain]
                if op.op in ("map", "unmap", "remap"):
                    k.ensure_table(self._va(op, c - 1), 2)
                elif op.op in ("map-4k", "unmap-4k", "map-grant", "unmap-grant"):
                    k.ensure_table(self._va4k(op, c - 1), 1)
        if not m.pv_superpages:          # the 2 MiB fallback's L1 tables: one frame per map
            for name, k in self.kernels.items():
                k.reserve_l1_tables(sum(op.op == "map" and (op.by or op.domain) == name
                                        for ops in [sc.setup] + sc.cpus for op in ops))
        for i, op in enumerate(sc.setup):
            try:
                rc = self.do(op, -1)
            except GuestError as e:
                raise ConfigError(sc.source or sc.name, f"setup[{i}]",
                                  f"{op.op} of {op.domain}'s superpage {op.superpage} refused "
                                  f"by the guest kernel on {m.superpage.name}: {e}") from None
            if rc < 0:
                raise ConfigError(sc.source or sc.name, f"setup[{i}]",
                                  f"{op.op} of {op.domain}'s superpage {op.superpage} failed on "
                                  f"{m.superpage.name}: {errno_name(rc)} ({rc})")

    def _tables(self, sc: Scenario) -> None:
        """The scenario's page tables: a frame of each one's domain, its entries written
        as the guest writes its own frames (mmu_update of a frame that is no live table:
        a plain write); nothing validated."""
        for t in sc.page_tables:
            self.pts[t.name] = (self.kernels[t.domain].table_frame(), t.level)
        for i, t in enumerate(sc.page_tables):
            k, mfn = self.kernels[t.domain], self.pts[t.name][0]
            for j, e in enumerate(t.entries):
                rc = k.mmu_update([(_entry_ptr(mfn, e.index), self._pte(e.to, e.rw))])
                if rc < 0:
                    raise ConfigError(sc.source or sc.name, f"page_tables[{i}].entries[{j}]",
                                      f"the entry cannot be written: {errno_name(rc)} ({rc})")

    def _pte(self, to: str, rw: bool) -> int:
        """An entry mapping page table ``to`` (or ``bad``: a frame past the end of RAM)."""
        mfn = self.m.max_page + 1 if to == BAD_ENTRY else self.pts[to][0]
        return make_pte(mfn, _PAGE_PRESENT | _PAGE_USER | (_PAGE_RW if rw else 0))

    def _table_op(self, op: ScenarioOp, k: GuestKernel) -> int:
        """pin / unpin / set-entry of page table ``op.pt`` (mmuext_op, mmu_update), or
        decrease-reservation of its frame (memory_op: the guest gives it back; -EBUSY
        when Xen removes nothing)."""
        mfn, level = self.pts[op.pt]
        if op.op == "pin":
            return k.mmuext([MmuextOp(MMUEXT_PIN_L1_TABLE + level - 1, mfn)])
        if op.op == "unpin":
            return k.mmuext([MmuextOp(MMUEXT_UNPIN_TABLE, mfn)])
        if op.op == "decrease-reservation":
            done = k.balloon_out([self.m.m2p.get(mfn)])
            return -errno.EBUSY if done == 0 else min(done, 0)
        return k.mmu_update([(_entry_ptr(mfn, op.index),
                              0 if op.to is None else self._pte(op.to, op.rw))])

    @staticmethod
    def _table(op: ScenarioOp, cpu: int) -> int:
        return op.table if op.table is not None else cpu + 1

    def _va(self, op: ScenarioOp, cpu: int) -> int:
        return DIRECTMAP_BASE + self._table(op, cpu) * GiB + op.superpage * (2 << 20)

    def _va4k(self, op: ScenarioOp, cpu: int) -> int:
        return DIRECTMAP_BASE + (16 + self._table(op, cpu)) * GiB + op.superpage * (2 << 20) + op.frame * 4096

    def lane_names(self) -> list[str]:
        """Each CPU's name: ``dN.vM`` for a CPU running one vCPU throughout in a scenario
        with a domain of several vCPUs, else ``cpuN``."""
        sc = self.sc
        if all(n == 1 for n in sc.vcpus.values()):
            return [f"cpu{c}" for c in range(len(sc.cpus))]
        names = []
        for c, ops in enumerate(sc.cpus):
            runs = {op_vcpu(op, c, sc.vcpus) for op in ops}
            if len(runs) == 1:
                who, v = runs.pop()
                names.append(f"d{self.kernels[who].domid}.v{v}")
            else:
                names.append(f"cpu{c}")
        return names

    def on_switch(self, cpu: int) -> None:
        """CPU ``cpu`` runs next: the kernel it uses issues its hypercalls from its vCPU."""
        lane = self.lanes.get(cpu)
        if lane is not None:
            lane[0].vcpu = lane[1]

    def do(self, op: ScenarioOp, cpu: int) -> int:
        """Perform one operation as the issuing domain's kernel (hypercalls only), from
        the vCPU that runs it (with several vCPUs, after the process switch to it)."""
        k = self.kernels[op.by or op.domain]
        m = self.m
        v = op_vcpu(op, cpu, self.sc.vcpus)[1]
        self.lanes[cpu] = (k, v)
        k.vcpu = v
        if op.op != "destroy" and k.nr_vcpus > 1 and not k.d.is_dying:
            rc = k.switch_to(v)
            if rc < 0:
                return rc
        if op.op == "destroy":
            return m.destroy_domain(self.kernels[op.domain].domid)
        if op.op in TABLE_OPS:
            return self._table_op(op, k)
        mfn = self.mfns[op.domain][op.superpage]
        if op.op == "map":
            return k.map_superpages(self._va(op, cpu), [mfn], op.rw)
        if op.op == "unmap":
            return k.unmap(self._va(op, cpu), 1)
        if op.op == "remap":
            return k.remap(self._va(op, cpu), op.rw, 1)
        if op.op == "map-4k":
            return k.map_pages(self._va4k(op, cpu), [mfn + op.frame], op.rw)
        if op.op == "unmap-4k":
            return k.unmap(self._va4k(op, cpu), 1, superpages=False)
        if op.op == "mark":
            return k.mark_superpage(mfn)
        if op.op == "unmark":
            return k.unmark_superpage(mfn)
        if op.op in ("map-grant", "unmap-grant"):
            return self._grant(op, cpu, k, mfn + op.frame)
        return -errno.ENOSYS

    def _grant(self, op: ScenarioOp, cpu: int, k: GuestKernel, frame: int) -> int:
        """map-grant: the granter writes a grant entry of this CPU's for the frame (a guest
        write, no step), the grantee maps it; unmap-grant: the grantee unmaps what a
        map-grant mapped at the same address. A status is returned as it is (GNTST_*)."""
        granter = self.kernels[op.domain]
        key = (op.domain, op.by or op.domain, self._va4k(op, cpu))
        if op.op == "map-grant":
            ref = 8 + 64 * (cpu + 1) + len(self.grant_refs) % 64
            granter.grant_access(ref, k.domid, frame, not op.rw)
            rc = k.map_grant(granter.domid, ref, key[2], not op.rw)
            if rc == 0:
                self.grant_refs[key] = ref
            return rc
        ref = self.grant_refs.pop(key, None)
        if ref is None:
            raise GuestError(f"nothing granted is mapped at {key[2]:#x}")
        return k.unmap_grant(granter.domid, ref, key[2])

    def refusal(self, op: ScenarioOp, cpu: int, rc: int) -> None:
        """CPU ``cpu``'s ``op`` answered ``rc`` < 0: recorded, and a line in the trace."""
        name = self.names[cpu] if 0 <= cpu < len(self.names) else f"cpu{cpu}"
        what = (f"{op.pt}" + (f"[{op.index}]" if op.op == "set-entry" else "")
                if op.op in TABLE_OPS else f"{op.domain}:{op.superpage}")
        text = (f"{name} {op.op} {what}"
                + (f" by {op.by}" if op.by else "") + f" -> {errno_name(rc)}")
        self.refused.append(text)
        if self.trace is not None:
            self.trace.append(f"{text} ({rc}): refused")


def _entry_ptr(mfn: int, index: int) -> int:
    """mmu_update's ``ptr`` of entry ``index`` of table ``mfn``."""
    return (mfn << 12) | (index * 8) | MMU_NORMAL_PT_UPDATE


def describe_cas(ex: "_ScenarioExecution", m, step) -> None:
    """After a cmpxchg step: rewrite its trace line with what it did (``ex.last_cas``,
    from the machine's spage_cmpxchg event), e.g.
    ``cpu1 cmpxchg superpage 0x0 word 0: expected 0x0 found 0x1 -> lost``."""
    done = ex.last_cas
    if done is None or not ex.trace:
        return
    ex.last_cas = None
    old, found, new, won = done
    where = str(step).split(" ", 2)[2]
    ex.trace[-1] = (f"{ex.names[step.cpu]} cmpxchg {where}: expected {old:#x} found {found:#x} -> "
                    + (f"{new:#x} won" if won else "lost"))


def lost_cas(trace: list[str]) -> list[str]:
    """The trace lines of the cmpxchgs that lost."""
    return [t for t in trace if " cmpxchg " in t and t.endswith("-> lost")]


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
            if (problem := m.superpage.word_problem(w[2], v)) is not None:
                return f"{step}: {problem} ({v:#x})"
            if (v & ((1 << 61) - 1)) > _SANE:
                return f"{step}: superpage count went below zero ({v:#x})"
    return None


class Runner:
    """Builds executions of a scenario on a design; checks each schedule's end state."""

    def __init__(self, sc: Scenario, design: str | None = None, max_steps: int | None = None,
                 hypercall_preemptions: int | None = None):
        self.sc = sc
        self.design = design or sc.design
        self.max_steps = MAX_STEPS if max_steps is None else max_steps
        #: at most this many hypercall_preempt_check() answered pending per schedule
        self.hypercall_preemptions = (sc.hypercall_preemptions if hypercall_preemptions is None
                                      else hypercall_preemptions)
        self._world = World(sc, self.design)             # set up once, copied per schedule
        if self.hypercall_preemptions:
            m = self._world.m
            try:                                          # the machine says where it can
                m.set_preempt(Preemption(answer=bool))
            except ValueError as e:
                raise ConfigError(sc.source or sc.name, "hypercall_preemptions", str(e)) from None
            m.set_preempt(Preemption())
        self.results: list[list[int]] = []

    def make(self) -> Execution:
        world = copy.deepcopy(self._world)
        programs = [self._program(world, c, ops) for c, ops in enumerate(self.sc.cpus)]
        def after_step(m, step):
            if step.kind in ("sp_cas", "pi_cas"):
                describe_cas(ex, m, step)
            problem = check_step(m, step)
            if problem is not None and problem.startswith(f"cpu{step.cpu} "):
                problem = ex.names[step.cpu] + problem[len(f"cpu{step.cpu}"):]
            return problem
        world.lanes = {}
        ex = _ScenarioExecution(lambda: world.m, programs, after_step, self.max_steps,
                                names=world.lane_names(), on_switch=world.on_switch,
                                hypercall_preemptions=self.hypercall_preemptions)
        ex.world = world
        world.trace = ex.trace
        world.names = ex.names
        ex.runner = self
        return ex

    @staticmethod
    def _program(world: World, cpu: int, ops: list[ScenarioOp]):
        world.results = getattr(world, "results", {})
        world.results[cpu] = []

        def run(m, _cpu):
            for op in ops:
                rc = world.do(op, cpu)
                world.results[cpu].append(rc)
                if rc < 0:
                    world.refusal(op, cpu, rc)
        return run

    def end_check(self, ex: "_ScenarioExecution") -> None:
        m = ex.m
        rep = audit(m)
        if not rep.ok:
            raise Violation("after the schedule: " + _audit_line(rep), ex.schedule, ex.trace)
        if m.violations:                 # what faithful mode let through, as it happened
            raise Violation("after the schedule: the machine recorded: " + "; ".join(m.violations),
                            ex.schedule, ex.trace)
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
    #: how the run ended: None (still running, or interrupted), "ok", "violation", "pruned"
    outcome: str | None = None
    violation: Violation | None = None
    #: (expected, found, new, won) of the last superpage cmpxchg (see describe_cas)
    last_cas: tuple | None = None

    def _on_cas(self, where, spdx, word, expected, found, new, won) -> None:
        self.last_cas = (expected, found, new, won)

    def run(self, chooser) -> None:
        try:
            with self.m.events.listening(spage_cmpxchg=self._on_cas):
                super().run(chooser)
            self.runner.end_check(self)
        except Violation as v:
            self.outcome, self.violation = "violation", v
            raise
        except Pruned:
            self.outcome = "pruned"
            raise
        self.outcome = "ok"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a search; ``result`` is what the schedules run to the end found."""

    def __init__(self, result: ExploreResult):
        super().__init__(result)
        self.result = result


def _tally(res: ExploreResult, ex: "_ScenarioExecution | None") -> None:
    """Add a finished execution to ``res`` (one Ctrl-C stopped half way adds nothing)."""
    if ex is None or ex.outcome is None:
        return
    res.steps += len(ex.schedule)
    if ex.outcome == "pruned":
        res.pruned += 1
        return
    res.schedules += 1
    for text in dict.fromkeys(ex.world.refused):
        res.refused[text] = res.refused.get(text, 0) + 1
    if ex.outcome == "violation":
        res.violations += 1
        res.first = res.first or ex.violation


def explore(sc: Scenario, design: str | None = None, scheduler: str = "dfs",
            preemption_bound: int | None = None, max_schedules: int = 10_000, seed: int = 0,
            stop_at_first: bool = True, progress=None,
            hypercall_preemptions: int | None = None) -> ExploreResult:
    """Explore ``sc``'s schedules; on Ctrl-C raises :class:`Interrupted` with what the
    schedules finished so far found. ``progress``: a Progress bar, its total the
    schedules at most (a search may end sooner). ``preemption_bound``: the DFS's (default:
    the scenario's ``preemption_bound``, else 2). ``hypercall_preemptions``: at most that
    many hypercall_preempt_check() answered pending per schedule (default: the
    scenario's ``hypercall_preemptions``)."""
    r = Runner(sc, design, hypercall_preemptions=hypercall_preemptions)
    if preemption_bound is None:
        preemption_bound = 2 if sc.preemption_bound is None else sc.preemption_bound
    n = len(sc.cpus)
    so_far = ExploreResult(complete=False)             # what a Ctrl-C reports
    last: list = [None]
    t0 = time.perf_counter()

    def make() -> Execution:
        _tally(so_far, last[0])
        if progress is not None:
            progress.update(so_far.schedules + so_far.pruned)
        last[0] = r.make()
        return last[0]
    try:
        if scheduler == "dfs":
            res = explore_dfs(make, preemption_bound, max_schedules, stop_at_first)
        else:
            choosers = {
                "round-robin": lambda i: round_robin,
                "random": lambda i: random_chooser(seed + i),
                "pct": lambda i: pct_chooser(seed + i, n),
            }
            if scheduler not in choosers:
                raise ValueError(f"unknown scheduler {scheduler!r}")
            count = 1 if scheduler == "round-robin" else max_schedules
            res = run_sampling(make, choosers[scheduler], count, stop_at_first)
        _tally(so_far, last[0])
        res.refused = so_far.refused
        return res
    except KeyboardInterrupt:
        _tally(so_far, last[0])
        so_far.seconds = time.perf_counter() - t0
        raise Interrupted(so_far) from None
    finally:
        if progress is not None:
            progress.close()


def replay(sc: Scenario, schedule: list[int], design: str | None = None,
           hypercall_preemptions: int | None = None) -> tuple[Execution, Violation | None]:
    """Re-run one schedule exactly (with the hypercall preemption bound it was found with:
    default the scenario's, at least the checks it answers pending); returns the
    execution and its violation (or None)."""
    bound = sc.hypercall_preemptions if hypercall_preemptions is None else hypercall_preemptions
    bound = max(bound, sum(isinstance(c, Preempted) for c in schedule))
    ex = Runner(sc, design, hypercall_preemptions=bound).make()
    try:
        ex.run(replay_chooser(schedule))
        return ex, None
    except Violation as v:
        return ex, v


# -- the command line ----------------------------------------------------------------------
def format_schedule(schedule: list[int]) -> str:
    """Run-length form: ``0,1*1030,0*1029`` (CPU ids; ``*n`` repeats; ``0p``: CPU 0's
    hypercall_preempt_check() answered pending, a :class:`Preempted`)."""
    out, i = [], 0
    kind = [isinstance(c, Preempted) for c in schedule]
    while i < len(schedule):
        j = i
        while j < len(schedule) and schedule[j] == schedule[i] and kind[j] == kind[i]:
            j += 1
        out.append(f"{int(schedule[i])}{'p' if kind[i] else ''}" + (f"*{j - i}" if j - i > 1 else ""))
        i = j
    return ",".join(out)


def parse_schedule(text: str, max_steps: int = MAX_STEPS, cpus: int | None = None) -> list[int]:
    """``0,1*1030,0`` -> the list of CPU ids; a schedule longer than ``max_steps``
    (the step bound), a count below 1 or a CPU the scenario does not have is a ConfigError."""
    parts = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        cpu, star, n = part.partition("*")
        pending = cpu.endswith("p")
        try:
            cpu_id, count = int(cpu[:-1] if pending else cpu), int(n) if star else 1
        except ValueError:
            raise ConfigError(None, "--replay", f"bad schedule element {part!r}; "
                              "expected CPU ids like 0,1*1030,0p,0") from None
        if count < 1 or cpu_id < 0 or (cpus is not None and cpu_id >= cpus):
            what = (f"count {count} is below 1" if count < 1 else
                    f"CPU {cpu_id} does not exist (the scenario has cpu0..cpu{cpus - 1})"
                    if cpus is not None else f"CPU {cpu_id} is negative")
            raise ConfigError(None, "--replay", f"bad schedule element {part!r}: {what}")
        parts.append((Preempted(cpu_id) if pending else cpu_id, count))
    total = sum(n for _, n in parts)
    if total > max_steps:
        raise ConfigError(None, "--replay", f"the schedule has {total:,} steps, more than "
                                            f"the step bound of {max_steps:,}")
    sched: list[int] = []
    for cpu_id, count in parts:
        sched.extend([cpu_id] * count)
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
        while (j < len(trace) and trace[j].startswith(cpu + " ") and " page " in trace[j]
               and ": " not in trace[j]):          # (a check, a continuation: lines of their own)
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
