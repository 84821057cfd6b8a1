"""The checked executor: :class:`FuzzRunner`, one machine (and its lagging twin), the
domains' names, the log of ops, and :meth:`~FuzzRunner.step`: execute one op, then run
every check of docs/fuzzing.md (crash, unchanged, batch, audit, isolation, xen-bug,
zombie; teardown at :meth:`~FuzzRunner.finish`); :func:`replay_ops` replays a call
list on a fresh machine with them."""

from __future__ import annotations

import copy
import errno
from collections import Counter

from ..xen import IncrementalAuditor, audit, errno_name
from ._checks import FuzzViolation, differ, generic_key, heap_is_full, same_state, \
    sound_state, state
from ._ops import CallResult, execute, op_label, singles
from ._setup import Setup

__all__ = ["FuzzRunner", "replay_ops"]



class FuzzRunner:
    """A machine, the domains' names, and :meth:`step`: execute one op, then check.

    ``twin`` (default on) keeps a second machine one op behind: every op is
    replayed on it, a multi-request op as its single requests in order (the
    ``batch`` check), and a refused op is checked against it (``unchanged``).
    Without a twin, single-request ops are checked against a snapshot taken
    before them and multi-request ops only when nothing of them was done.
    ``tolerate(violation) -> bool`` lets known bugs pass: such a violation is
    counted in ``tolerated`` (first of each signature in ``seen``) and the run
    goes on, as long as the auditor and the isolation check still pass.
    """

    def __init__(self, setup: Setup, *, twin: bool = True, tolerate=None, light: bool = False):
        self.setup = setup
        #: light: only crashes, recorded Xen bugs and zombies are checked (minimisation's
        #: fast replays of such violations; the result is verified with every check)
        self.light = light
        self.m = setup.machine()
        self.doms: dict[str, int] = {"dom0": 0}
        self.t = setup.machine() if twin else None
        self.tdoms: dict[str, int] = {"dom0": 0}
        self.tolerate = tolerate
        self.tolerated: Counter = Counter()          # signature -> count
        self.seen: dict = {}                          # signature -> first tolerated violation
        self.log: list[dict] = []
        self.rcs: list[int | None] = []
        self.calls = 0
        self.by_call: Counter = Counter()
        self.refused: Counter = Counter()           # (label, errno name) -> count
        #: the incremental auditor of ``m`` (None: setup.audit is "full", or ``light``)
        self.auditor = IncrementalAuditor(self.m) if setup.audit != "full" and not light else None
        self.checks = 0                               # check_state calls
        self.full_audits = 0                          # of them, with the full audit

    def name_of(self, domid: int) -> str:
        for name, d in self.doms.items():
            if d == domid:
                return name
        return f"dom{domid}"

    def _fail(self, kind: str, detail: str, op: dict, key: str | None = None):
        return FuzzViolation(kind, detail, len(self.log) - 1, op, key)

    def _resync(self) -> None:
        """After a tolerated violation the twin may differ: it becomes a copy of the machine."""
        if self.t is not None:
            m = self.m
            memo = {id(x): x for x in (m.memmap, m.pdx, m.hypercall.handlers)}
            if self.auditor is not None:
                self.auditor.detach()                 # the twin needs no auditor of its own
            self.t = copy.deepcopy(m, memo)
            if self.auditor is not None:
                self.auditor.attach()
            self.tdoms = dict(self.doms)

    def step(self, op: dict) -> CallResult:
        """Execute ``op`` and check; FuzzViolation unless the violation is tolerated."""
        try:
            return self._step(op)
        except FuzzViolation as v:
            if self.tolerate is None or not self.tolerate(v):
                raise
            self.tolerated[v.signature] += 1
            self.seen.setdefault(v.signature, v)
            self._resync()
            if not self.light:
                self.check_state(op)                  # the run goes on only from a sound state
            rc = self.rcs[-1]
            return CallResult(rc if rc is not None else -errno.EFAULT, 0, len(singles(op)))

    def _step(self, op: dict) -> CallResult:
        m, t = self.m, self.t
        self.log.append(op)
        self.rcs.append(None)
        subs = singles(op)
        snap = state(m) if t is None and len(subs) == 1 and not self.light else None
        victim = self.doms.get(op.get("domain", "")) if op["op"] == "destroy_domain" else None
        nviol = len(m.violations)
        self.calls += 1
        label = op_label(op)
        self.by_call[label] += 1
        try:
            res = execute(m, self.doms, op)
        except Exception as e:                       # RefcountBug included: never allowed out
            raise self._fail("crash", f"{type(e).__name__}: {e}", op, type(e).__name__) from e
        if not isinstance(res.rc, int):
            raise self._fail("crash", f"returned {res.rc!r}, not an int", op, "rc-type")
        self.rcs[-1] = res.rc
        if res.rc < 0:
            self.refused[(label, errno_name(res.rc))] += 1
        elif res.done < res.n:
            self.refused[(label, "short")] += 1
        unchanged = False
        if t is not None and len(subs) > 1:
            self._twin_check(op, subs, res)
        elif res.failed and (t is not None or snap is not None):
            # one request, refused: the machine must equal the one before the call
            diff = differ(m, t) if t is not None else (
                None if same_state(m, snap) else "the state")
            if diff:
                raise self._fail("unchanged", f"refused with "
                                 f"{errno_name(res.rc) if res.rc < 0 else 'nothing done'}"
                                 f" but changed: {diff}", op)
            unchanged = True                          # the twin needs no replay
        elif t is not None:
            try:
                r = execute(t, self.tdoms, op)
            except Exception as e:
                raise self._fail("batch", f"the same call on a twin machine raises "
                                 f"{type(e).__name__}: {e}", op, "twin") from e
            if r.rc != res.rc:
                raise self._fail("batch", f"rc {res.rc}, but {r.rc} on a twin machine in the "
                                 f"same state", op, "twin")
        if not unchanged and not self.light:          # an unchanged machine audits as before
            self.check_state(op)
        if len(m.violations) > nviol:
            raise self._fail("xen-bug", m.violations[-1], op, generic_key(m.violations[-1].split(":")[0]))
        if victim is not None and res.rc == 0 and victim in m.domains:
            d = m.domains[victim]
            raise self._fail("zombie", f"dom{victim} still owns {len(d.owned)} frames after "
                                       f"destroy_domain", op)
        return res

    def _twin_check(self, op: dict, subs: list[dict], res: CallResult):
        """The op equals its single requests issued in order on the twin (the machine before it)."""
        t = self.t
        page_wise = op["op"] == "memory_op" and op["cmd"] == "decrease_reservation" and \
            int(op.get("order", 0)) > 0
        ok = 0
        fail_rc = None
        for i, sub in enumerate(subs):
            failing = i == res.done and not page_wise
            if failing:
                # the requests before the failing one: as the whole call, which must
                # have left no trace of its failing request
                diff = differ(self.m, t)
                if diff:
                    raise self._fail("batch", f"rc {res.rc} with {res.done} of {res.n} done, but "
                                     f"the machine differs from its first {res.done} requests "
                                     f"issued one by one: {diff}", op, "state")
            try:
                r = execute(t, self.tdoms, sub)
            except Exception as e:
                raise self._fail("batch", f"request {i} alone raises {type(e).__name__}: {e}",
                                 op, "single-crash") from e
            if r.failed:
                if failing:
                    diff = differ(self.m, t)
                    if diff:
                        raise self._fail("unchanged", f"request {i} alone refused with "
                                         f"{errno_name(r.rc) if r.rc < 0 else 'nothing done'} "
                                         f"but changed: {diff}", op)
                fail_rc = r.rc
                break
            ok += 1
        if op["op"] == "memory_op":
            want = (res.n if ok == len(subs) else ok >> int(op["order"])) if page_wise else ok
            if res.rc != want:
                raise self._fail("batch", f"returned {res.rc}; one extent at a time, "
                                 f"{want} extents are done", op, "count")
        elif res.done != ok or (fail_rc is not None and fail_rc != res.rc) or (
                fail_rc is None and res.rc != 0):
            raise self._fail("batch", f"rc {res.rc} done {res.done}/{res.n}; one request "
                             f"at a time: {ok} done, then "
                             f"{errno_name(fail_rc) if fail_rc is not None else 'rc 0'}",
                             op, "count")
        diff = differ(self.m, t)
        if diff:
            raise self._fail("batch", f"the machine after the call ({res.done} of {res.n} done) "
                             f"differs from issuing the requests one by one: {diff}", op, "state")

    def check_state(self, op: dict) -> None:
        """The auditor and the isolation check (:func:`sound_state`) after ``op``: the
        incremental auditor (setup.audit), with the full audit every
        ``setup.full_audit_every`` checks; the full one alone ("full"); or both ("both")."""
        self.checks += 1
        every = self.setup.full_audit_every
        full = self.auditor is None or self.setup.audit == "both" or (
            every > 0 and self.checks % every == 0)
        self.full_audits += full
        bad = sound_state(self.m, self.auditor, full)
        if bad is not None:
            kind, detail, key = bad
            raise self._fail(kind, detail, op, key)

    def finish(self) -> None:
        """Destroy every domain but dom0 (checked calls), then the heap must hold all RAM."""
        for domid in sorted(self.m.domains):
            if domid != 0 and domid in self.m.domains:
                self.step({"op": "destroy_domain", "domain": self.name_of(domid)})
        m = self.m
        end = {"op": "teardown"}
        if set(m.domains) != {0}:
            left = ", ".join(f"dom{d} ({len(m.domains[d].owned)} frames)" for d in m.domains if d)
            raise FuzzViolation("teardown", f"domains left after destroying every guest: {left}",
                                len(self.log), end, "zombie")
        msg = heap_is_full(m)
        if msg:
            raise FuzzViolation("teardown", msg, len(self.log), end, "heap")
        rep = audit(m)                                # the full audit, always, at the end
        self.full_audits += 1
        if not rep.ok:
            raise FuzzViolation("teardown", str(rep.differences[0]), len(self.log), end, "audit")


def replay_ops(setup: Setup, ops: list[dict], *, twin: bool = True, finish: bool = True,
               tolerate=None, light: bool = False):
    """Replay ``ops`` on a fresh machine with every check; then (``finish``) destroy every
    guest and check the heap. Returns (violation or None, the FuzzRunner)."""
    run = FuzzRunner(setup, twin=twin, tolerate=tolerate, light=light)
    try:
        for op in ops:
            run.step(op)
        if finish:
            run.finish()
    except FuzzViolation as v:
        return v, run
    return None, run
