"""Running a workload: on one superpage design, or the same one on several (``compare:``).

Each design gets a fresh :class:`~xensim.xen.Machine` set up by a
:class:`~xensim.sim.Session` (``Machine.from_config`` with the design swapped in,
the same domains created by dom0 in the same order, the same set-up: populate
every domain's memory in 2 MiB extents, build and pin its page-table tree, create
every L2/L1 table the workload will use), then the same operations from the same
seed. What is reported is what the *workload* did: every counter is the
difference between its value after the set-up and after the last operation. The
auditor runs after the last operation (and every ``audit_every`` operations);
then every domain is destroyed, and the heap must hold again every frame it held
at boot (``leaked_frames``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass, field

from .._errors import ConfigError
from ..config import Config, drop_none, to_data
from ..guest import Workload
from ..mem import MemoryMap
from ..output import Progress, keep_interrupt, stop_mark
from ..xen import audit
from ._crash import crash_reason
from ._costmodel import COUNT_UPDATES, FRAME_OPS, CostModel, Estimate
from ._session import Counters, Session, config_workload

#: failures listed per design (the rest are counted)
MAX_FAILURES_LISTED = 5


@dataclass
class AuditVerdict:
    """The auditor's findings over a run: clean, or the first differences."""
    ok: bool = True
    audits: int = 0
    differences: int = 0
    first: list[str] = field(default_factory=list)
    #: operations done when the first unclean audit ran
    at_op: int | None = None

    def add(self, rep, at_op: int) -> None:
        self.audits += 1
        if not rep.ok:
            if self.ok:
                self.at_op = at_op
                self.first = [str(d) for d in rep.differences[:MAX_FAILURES_LISTED]]
            self.ok = False
            self.differences = max(self.differences, rep.total_differences)

    def __str__(self) -> str:
        if self.ok:
            return "clean"
        return f"{self.differences:,} diff"


@dataclass
class DesignRun:
    """One design's run of the workload. ``status``: ok, or crashed (an exception: a
    bug, in ``reason``)."""
    design: str
    status: str = "ok"
    reason: str | None = None
    description: str = ""
    ops: int = 0
    ops_failed: int = 0
    #: operations the guest kernel refused itself (no hypercall: e.g. a ballooned superpage)
    guest_errors: int = 0
    #: per operation name: {"ops": n, "failed": n}
    by_op: dict = field(default_factory=dict)
    #: superpage (L2 PSE) entries installed by successful map operations
    mappings: int = 0
    #: get_page_type calls made by the successful map operations
    map_type_refs: int = 0
    #: 4 KiB (L1) entries installed by successful map-4k operations, their get_page_type calls
    mappings_4k: int = 0
    map_4k_type_refs: int = 0
    #: the design has MARK_SUPER / UNMARK_SUPER (else they fail with the release's errno)
    supports_mark: bool = True
    #: mark / unmark operations refused because the design has no MARK
    mark_unsupported: int = 0
    #: the errno those refusals returned (the release's answer with superpages off)
    mark_errno: str | None = None
    #: per hypercall: {"calls": n, "errors": {errno: n}}
    hypercalls: dict = field(default_factory=dict)
    #: errors of every hypercall, by errno name
    errors: dict = field(default_factory=dict)
    refcount: dict = field(default_factory=dict)
    #: TLB flushes type changes asked for (RefStats.tlb_flushes: docs/cost-model.md)
    tlb_flushes: int = 0
    superpage: dict = field(default_factory=dict)
    #: page-table entry changes by mod_lN_entry: {"fast_path": n, "slow_path": n}
    entry_updates: dict = field(default_factory=dict)
    metadata_bytes: int = 0
    metadata_percent: float = 0.0
    estimate: Estimate | None = None
    audit: AuditVerdict = field(default_factory=AuditVerdict)
    leaked_frames: int = 0
    zombie_domains: int = 0
    ops_digest: str = ""
    failures: list[str] = field(default_factory=list)
    #: the Xen release simulated ("4.22") and which Xen produced the run: "Xen 4.8", or
    #: "Xen 4.22, hypothetical: xen-4.1 as if merged into today's Xen" (release_label)
    xen: str = ""
    release: str = ""
    #: a superpage design run on a release without PV superpages
    hypothetical: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def hypercall_calls(self) -> int:
        return sum(v["calls"] for v in self.hypercalls.values())

    @property
    def slow_transitions(self) -> int:
        return self.superpage.get("slow_get", 0) + self.superpage.get("slow_put", 0)

    @property
    def fast_updates(self) -> int:
        return self.superpage.get("fast_get", 0) + self.superpage.get("fast_put", 0)

    @property
    def slow_per_op(self) -> float | None:
        return self.slow_transitions / self.ops if self.ops else None

    @property
    def type_refs_per_mapping(self) -> float | None:
        """get_page_type calls per superpage mapping made (512 per mapping without a count)."""
        return self.refcount.get("get_page_type", 0) / self.mappings if self.mappings else None

    @property
    def type_refs_per_2m_mapping(self) -> float | None:
        """get_page_type calls per superpage mapping of the map operations alone
        (512 without a count; 4 KiB mappings, remaps and marks not included)."""
        return self.map_type_refs / self.mappings if self.mappings else None

    @property
    def type_refs_per_4k_mapping(self) -> float | None:
        """get_page_type calls per 4 KiB mapping of the map-4k operations (1 each)."""
        return self.map_4k_type_refs / self.mappings_4k if self.mappings_4k else None

    @property
    def ns_per_op(self) -> float | None:
        return self.estimate.ns / self.ops if self.estimate and self.ops else None

    def to_dict(self) -> dict:
        d = {"design": self.design, "status": self.status, "reason": self.reason}
        d.update({
            "description": self.description,
            "ops": self.ops, "ops_failed": self.ops_failed, "guest_errors": self.guest_errors,
            "by_op": self.by_op,
            "mappings": self.mappings,
            "hypercalls": {"calls": self.hypercall_calls, "errors": self.errors,
                           "by_call": self.hypercalls},
            "refcount": self.refcount,
            "tlb_flushes": self.tlb_flushes,
            "superpage": self.superpage,
            "slow_transitions": self.slow_transitions,
            "slow_per_op": self.slow_per_op,
            "fast_updates": self.fast_updates,
            "entry_updates": self.entry_updates,
            "type_refs_per_mapping": self.type_refs_per_mapping,
            "metadata": {"bytes": self.metadata_bytes, "percent_of_ram": self.metadata_percent},
            "model": (dict(self.estimate.to_dict(), ns_per_op=self.ns_per_op)
                      if self.estimate else None),
            "audit": dataclasses.asdict(self.audit),
            "teardown": {"leaked_frames": self.leaked_frames,
                         "zombie_domains": self.zombie_domains},
            "ops_digest": self.ops_digest,
            "failures": self.failures,
            # added later (appended: the keys above keep their order)
            "type_refs_per_2m_mapping": self.type_refs_per_2m_mapping,
            "mappings_4k": self.mappings_4k,
            "type_refs_per_4k_mapping": self.type_refs_per_4k_mapping,
            "supports_mark": self.supports_mark,
            "mark_unsupported": self.mark_unsupported,
            "mark_errno": self.mark_errno,
            "xen": self.xen,
            "release": self.release,
            "hypothetical": self.hypothetical,
        })
        return d


@dataclass
class Comparison:
    """The same workload, from the same seed, on each design."""
    seed: int
    workload: dict
    domains: list[dict]
    cost_model: dict
    audit_every: int
    ops: int
    runs: list[DesignRun]

    def run(self, design: str) -> DesignRun:
        for r in self.runs:
            if r.design == design:
                return r
        raise KeyError(design)

    @property
    def crashed(self) -> list[DesignRun]:
        return [r for r in self.runs if r.status == "crashed"]

    def to_dict(self) -> dict:
        return {"seed": self.seed, "workload": self.workload, "domains": self.domains,
                "cost_model": self.cost_model, "audit_every": self.audit_every,
                "ops": self.ops, "designs": [r.to_dict() for r in self.runs]}


# --------------------------------------------------------------------------
# One design
# --------------------------------------------------------------------------

def run_design(cfg: Config, memmap: MemoryMap, design: str, wl: Workload | None = None,
               progress: Progress | None = None, progress_base: int = 0) -> DesignRun:
    """Run the config's workload on ``design`` (a fresh machine: a :class:`Session`)."""
    progress = progress or Progress.off()
    s = Session(cfg, memmap, design, wl)
    m = s.machine
    run = DesignRun(design, description=m.superpage.description,
                    supports_mark=m.superpage.supports_mark, xen=m.version,
                    release=m.release_label, hypothetical=m.hypothetical)
    digest = hashlib.sha256()
    by_op: dict[str, list[int]] = {}
    every = cfg.audit_every
    stage = "in the set-up"
    mark = stop_mark()

    def before(i, op):
        nonlocal stage
        stage = f"at op {i + 1} ({op})"
        digest.update(repr(op.key()).encode())

    try:
        s.set_up()
        c0 = s.counters()
        for step in s.steps(before=before):
            op, n = step.op, step.index + 1
            if step.refused is not None:
                run.guest_errors += 1
            counts = by_op.setdefault(op.op, [0, 0])
            counts[0] += 1
            if step.ok:
                if op.op == "map":
                    run.mappings += op.count
                    run.map_type_refs += step.type_refs
                elif op.op == "map-4k":
                    run.mappings_4k += op.count
                    run.map_4k_type_refs += step.type_refs
            else:
                if op.op in ("mark", "unmark") and not run.supports_mark:
                    run.mark_unsupported += 1
                    run.mark_errno = step.why
                counts[1] += 1
                run.ops_failed += 1
                if len(run.failures) < MAX_FAILURES_LISTED:
                    run.failures.append(f"op {n}: {op}: {step.why}")
            if every and n % every == 0:
                stage = f"in the audit after op {n}"
                run.audit.add(audit(m), n)
            progress.update(progress_base + n)
        n = run.ops = s.ops_done
        c1 = s.counters()
        stage = "in the final audit"
        run.audit.add(audit(m), n)
        _counter_deltas(run, c0, c1)
        run.by_op = {name: {"ops": a, "failed": b} for name, (a, b) in by_op.items()}
        run.ops_digest = digest.hexdigest()[:16]
        run.metadata_bytes = int(m.superpage.metadata_bytes())
        run.metadata_percent = 100.0 * run.metadata_bytes / m.memmap.ram_bytes
        run.estimate = CostModel.from_config(cfg.cost_model).estimate(
            run.refcount, run.superpage, run.hypercall_calls,
            has_count_word=run.metadata_bytes > 0)
        # teardown: the toolstack destroys every guest; the heap must be whole again
        stage = "at teardown"
        run.leaked_frames, run.zombie_domains = s.teardown()
    except ConfigError:
        raise
    except Exception as e:                          # noqa: BLE001  a bug: reported, not hidden
        keep_interrupt(mark)
        run.status = "crashed"
        run.reason = crash_reason(e, stage)
        run.ops = s.ops_done
    return run


def _counter_deltas(run: DesignRun, c0: Counters, c1: Counters) -> None:
    """What the workload did: the counters after its last operation less those after the set-up."""
    refs0, refs1 = c0.refcount, c1.refcount
    run.refcount = {k: refs1[k] - refs0.get(k, 0) for k in FRAME_OPS}
    run.tlb_flushes = refs1["tlb_flushes"] - refs0.get("tlb_flushes", 0)
    pt0, pt1 = c0.entry_updates, c1.entry_updates
    run.entry_updates = {k: pt1.get(k, 0) - pt0.get(k, 0) for k in ("fast_path", "slow_path")}
    sp0, sp1 = c0.superpage, c1.superpage
    run.superpage = {k: sp1.get(k, 0) - sp0.get(k, 0) for k in
                     list(COUNT_UPDATES) + [k for k in sp1 if k not in COUNT_UPDATES]}
    errors: Counter = Counter()
    for name, (calls, errs) in sorted(c1.hypercalls.items()):
        calls0, errs0 = c0.hypercalls.get(name, (0, Counter()))
        delta = errs - errs0
        if calls - calls0:
            run.hypercalls[name] = {"calls": calls - calls0, "errors": dict(sorted(delta.items()))}
        errors += delta
    run.errors = dict(sorted(errors.items()))


# --------------------------------------------------------------------------
# A comparison
# --------------------------------------------------------------------------

class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a comparison: ``ops`` done in all (every design's), and the
    designs whose run had completed."""

    def __init__(self, ops: int, completed: list[str]):
        super().__init__(ops, completed)
        self.ops = ops
        self.completed = completed


def run_comparison(cfg: Config, memmap: MemoryMap,
                   progress: Progress | None = None) -> Comparison:
    """Run the config's workload on every design of ``compare`` (else the hypervisor's)."""
    wl = config_workload(cfg)
    names = cfg.designs()
    progress = progress or Progress.off()
    progress.start("", wl.total * len(names))
    runs = []
    base = 0
    try:
        for name in names:
            progress.label = name
            r = run_design(cfg, memmap, name, wl, progress, base)
            runs.append(r)
            base += wl.total
    except KeyboardInterrupt:
        progress.close()
        raise Interrupted(progress.done, [r.design for r in runs]) from None
    progress.close()
    return Comparison(seed=cfg.seed, workload=drop_none(to_data(wl.cfg)),
                      domains=[{"name": s.name, "memory": s.memory} for s in wl.domains],
                      cost_model=to_data(cfg.cost_model), audit_every=cfg.audit_every,
                      ops=wl.total, runs=runs)
