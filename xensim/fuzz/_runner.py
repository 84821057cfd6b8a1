"""The checked executor: :class:`FuzzRunner`, one machine (and its undo journal), the
domains' names, the log of ops, and :meth:`~FuzzRunner.step`: execute one op, then run
every check of docs/fuzzing.md (crash, unchanged, batch, audit, isolation, xen-bug,
zombie; teardown at :meth:`~FuzzRunner.finish`); :func:`replay_ops` replays a call
list on a fresh machine with them."""

from __future__ import annotations

import errno
from collections import Counter
from contextlib import nullcontext

from ..output import keep_interrupt, stop_mark
from ..xen import Continuation, IncrementalAuditor, audit, errno_name, put_old_guest_table
from ._checks import FuzzViolation, generic_key, heap_is_full, sound_state
from ._journal import CallJournal
from ._ops import CallResult, execute, op_label, singles
from ._plain_writes import plain_writes_stepwise
from ._preemption import FuzzPreemption, Pending
from ._setup import Setup

__all__ = ["FuzzRunner", "replay_ops"]


class FuzzRunner:
    """A machine, the domains' names, and :meth:`step`: execute one op, then check.

    The ``unchanged`` and ``batch`` checks use the machine's undo journal
    (:class:`~xensim.fuzz.CallJournal`): a refused op must leave every location it
    wrote as the journal's shadow has it; a multi-request op's result is captured, the
    machine put back, and the op's single requests issued in order on it (the ``batch``
    check, ``batch_check``, default on) must end in the same machine. Without
    ``batch_check`` a multi-request op is checked only when nothing of it was done.
    ``tolerate(violation) -> bool`` lets known bugs pass: such a violation is
    counted in ``tolerated`` (first of each signature in ``seen``) and the run
    goes on, as long as the auditor and the isolation check still pass.
    """

    def __init__(self, setup: Setup, *, batch_check: bool = True, tolerate=None,
                 light: bool = False):
        self.setup = setup
        #: light: only crashes, recorded Xen bugs and zombies are checked (minimisation's
        #: fast replays of such violations; the result is verified with every check)
        self.light = light
        self.m = setup.machine()
        self.doms: dict[str, int] = {"dom0": 0}
        self.batch_check = batch_check
        #: the undo journal of the unchanged and batch checks (None when ``light``)
        self.journal = CallJournal(self.m) if not light else None
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
        #: the machine's preemption source when the setup preempts (else None)
        self.preemption = self.m.preempt if isinstance(self.m.preempt, FuzzPreemption) else None
        #: (domid, vCPU) -> the continuation a preempted call left there (a ``continue``
        #: op re-enters it; a guest may also never do so)
        self.pending: dict[tuple[int, int], Pending] = {}
        #: the stop signals received before the episode: a violation found after another
        #: came is the interrupt, not a finding (output.keep_interrupt)
        self._stop_mark = stop_mark()

    def name_of(self, domid: int) -> str:
        for name, d in self.doms.items():
            if d == domid:
                return name
        return f"dom{domid}"

    def _fail(self, kind: str, detail: str, op: dict, key: str | None = None):
        keep_interrupt(self._stop_mark)
        return FuzzViolation(kind, detail, len(self.log) - 1, op, key)

    def step(self, op: dict) -> CallResult:
        """Execute ``op`` and check; FuzzViolation unless the violation is tolerated."""
        try:
            return self._step(op)
        except FuzzViolation as v:
            if self.tolerate is None or not self.tolerate(v):
                raise
            self.tolerated[v.signature] += 1
            self.seen.setdefault(v.signature, v)
            if self.journal is not None:
                self.journal.resync()                 # the machine as it is goes on
            if not self.light:
                self.check_state(op)                  # the run goes on only from a sound state
            rc = self.rcs[-1]
            return CallResult(rc if rc is not None else -errno.EFAULT, 0, len(singles(op)))

    def _execute(self, op: dict) -> CallResult:
        try:
            res = self._continue(op) if op["op"] == "continue" else execute(self.m, self.doms, op)
        except Exception as e:                       # RefcountBug included: never allowed out
            raise self._fail("crash", f"{type(e).__name__}: {e}", op, type(e).__name__) from e
        if not isinstance(res.rc, int):
            raise self._fail("crash", f"returned {res.rc!r}, not an int", op, "rc-type")
        return res

    def _continue(self, op: dict) -> CallResult:
        """A ``continue`` op: the vCPU re-enters the call Xen preempted there, with the
        arguments Xen wrote back (nothing pending: -EINVAL, nothing done)."""
        key = (self.doms.get(op.get("domain", "dom0"), -1), int(op.get("vcpu", 0)))
        p = self.pending.pop(key, None)
        if p is None:
            return CallResult(-errno.EINVAL, 0, 1)
        rc = self.m.hypercall(key[0], p.cont.number, *p.cont.args, vcpu=key[1])
        done = p.done
        if isinstance(rc, Continuation):
            if rc.args[1] is not None:
                done = rc.args[1]
            self.pending[key] = Pending(rc, done, p.n, p.label)
        return CallResult(rc, done[0], p.n)

    def _continuation_check(self, op: dict, res: CallResult, preempted: bool) -> None:
        """A preempted batch's continuation is its requests not done (Xen writes the rest
        and the count back, MMU_UPDATE_PREEMPTED), and a continued call that ends with rc
        0 has done all its requests: else a ``continuation`` violation."""
        rest = res.rc.args[0] if preempted else None
        if rest is not None and (res.done > res.n or len(rest) != res.n - res.done):
            raise self._fail("continuation", f"preempted with {res.done} of {res.n} requests "
                             f"done, but its continuation has {len(rest)} requests", op)
        if not preempted and res.rc == 0 and res.done != res.n:
            raise self._fail("continuation", f"continued to its end: rc {res.rc} with "
                             f"{res.done} of {res.n} requests done", op)

    def _old_put(self, op: dict):
        """(domid, vCPU) of the calling vCPU when ``op`` finishes its put left by a preempted call first
        (an mmu_update or mmuext_op of a vCPU with ``old_guest_table``, which the call
        reaches), else None."""
        if op["op"] not in ("mmu_update", "mmuext_op"):
            return None
        d = self.m.domains.get(self.doms.get(op.get("domain", "dom0"), -1))
        vcpu = int(op.get("vcpu", 0))
        if d is None or d.is_dying or not 0 <= vcpu < len(d.vcpus):
            return None
        return (d.domid, vcpu) if d.vcpus[vcpu].old_guest_table is not None else None

    def _finish_old_put(self, key) -> None:
        """Finish the put left on vCPU ``key`` (domid, vCPU) to the end, as the calls do."""
        put_old_guest_table(self.m, self.m.domains[key[0]].vcpus[key[1]])

    def _step(self, op: dict) -> CallResult:
        m, j = self.m, self.journal
        self.log.append(op)
        self.rcs.append(None)
        subs = singles(op)
        victim = self.doms.get(op.get("domain", "")) if op["op"] == "destroy_domain" else None
        nviol = len(m.violations)
        self.calls += 1
        label = op_label(op)
        self.by_call[label] += 1
        if j is not None:
            j.plain_at_once = False                   # what this call writes at once
        pre = self.preemption
        old_put = None
        resumed = op["op"] == "continue" and (
            self.doms.get(op.get("domain", "dom0"), -1), int(op.get("vcpu", 0))) in self.pending
        if pre is not None:
            old_put = self._old_put(op)
            pre.start(op.get("preempt"))
        res = self._execute(op)
        self.rcs[-1] = int(res.rc)                    # (a Continuation: -ERESTART, plain)
        preempted = isinstance(res.rc, Continuation)
        if pre is not None and pre.hits and "preempt" not in op:
            op["preempt"] = list(pre.hits)            # drawn: the call carries its points
        if preempted:
            if op["op"] != "continue":
                key = (self.doms.get(op.get("domain", "dom0")), int(op.get("vcpu", 0)))
                done = res.rc.args[1]
                self.pending[key] = Pending(res.rc, done if done is not None else [res.done],
                                            res.n, label)
            self.refused[(label, "preempted")] += 1
        elif res.rc < 0:
            self.refused[(label, errno_name(res.rc))] += 1
        elif res.done < res.n:
            self.refused[(label, "short")] += 1
        if (preempted or resumed) and op["op"] != "memory_op":
            self._continuation_check(op, res, preempted)
        if victim is not None and res.rc == 0:
            for key in [k for k in self.pending if k[0] == victim]:
                del self.pending[key]                 # destruction finished them
        unchanged = False
        if j is not None and (preempted or resumed):
            # a preempted call leaves partial state by design, and a continued one ends
            # what earlier calls began: the auditor (which counts partial tables) judges
            j.commit()
        elif j is not None and old_put is not None and res.failed and (
                len(subs) == 1 or not self.batch_check and res.done == 0):
            self._old_put_check(op, res, old_put)
        elif j is not None and len(subs) > 1 and self.batch_check:
            with self._replaying():
                self._batch_check(op, subs, res, dict(self.doms), old_put)  # the journal settled
        elif j is not None and res.failed and (len(subs) == 1 or res.done == 0 and not (
                # page by page: an extent not done may have given frames back (it counts as
                # not done); only the batch check can judge it
                op["op"] == "memory_op" and op["cmd"] == "decrease_reservation")):
            # nothing of it done: the machine must be as before the call, bit for bit
            diff = j.changed()
            if diff:
                raise self._fail("unchanged", f"refused with "
                                 f"{errno_name(res.rc) if res.rc < 0 else 'nothing done'}"
                                 f" but changed: {diff}", op)
            unchanged = True
            j.forget()                                # the shadow holds: nothing to learn
        elif j is not None:
            j.commit()
        if not unchanged and not self.light:          # an unchanged machine audits as before
            self.check_state(op)
        if len(m.violations) > nviol:
            raise self._fail("xen-bug", m.violations[-1], op, generic_key(m.violations[-1].split(":")[0]))
        if victim is not None and res.rc == 0 and victim in m.domains and \
                not _granted_away(m, victim):
            d = m.domains[victim]
            raise self._fail("zombie", f"dom{victim} still owns {len(d.owned)} frames after "
                                       f"destroy_domain", op)
        return res

    def _replaying(self):
        """The checks' replays: no preemption (every hypercall_preempt_check() false)."""
        return self.preemption.off() if self.preemption is not None else nullcontext()

    def _old_put_check(self, op: dict, res: CallResult, v) -> None:
        """A refused call of a vCPU with a put left by a preempted call (``old_guest_table``)
        (``v``: (domid, vCPU)) first finished that put, as Xen's do_mmu_update and do_mmuext_op do: the machine
        must be as the put alone leaves it (the ``unchanged`` check of such a call)."""
        j = self.journal
        after = j.capture()
        j.rollback(after.small)
        with self._replaying():
            self._finish_old_put(v)
        diff = j.differs_from(after)
        if diff:
            raise self._fail("unchanged", f"refused with "
                             f"{errno_name(res.rc) if res.rc < 0 else 'nothing done'} but "
                             f"changed more than finishing the vCPU's old_guest_table: {diff}",
                             op)
        j.settle(after)

    def _batch_check(self, op: dict, subs: list[dict], res: CallResult, doms: dict,
                     old_put=None) -> None:
        """The op equals its single requests issued in order on the machine as it was
        before the op: the journal captures what the op left, puts the machine back, and
        the requests run one by one; the machine must end as the op left it. A call of a
        vCPU with a put left by a preempted call (``old_put``: that vCPU) finishes it
        first, and so do the requests one by one."""
        j, m = self.journal, self.m
        page_wise = op["op"] == "memory_op" and op["cmd"] == "decrease_reservation" and \
            int(op.get("order", 0)) > 0
        at_once = op["op"] == "mmu_update" and j.plain_at_once
        after = j.capture()
        j.rollback(after.small)
        if at_once:
            self._stepwise_check(op, res, doms, after)
            return
        if old_put is not None:
            self._finish_old_put(old_put)
        if page_wise:
            # Xen removes an extent page by page (a partly done extent stays removed): its
            # frames one by one, in order, as one call of order-0 extents (that such a call
            # equals its extents one call each is the batch check of every such call), not
            # 2^order hypercalls
            pages = [e for sub in subs for e in sub["extents"]]
            subs = [{**op, "order": 0, "extents": pages, "nr": len(pages)}]
        ok = 0
        fail_rc = None
        for i, sub in enumerate(subs):
            failing = i == res.done and not page_wise
            if failing:
                # the requests before the failing one: as the whole call, which must
                # have left no trace of its failing request
                diff = j.differs_from(after)
                if diff:
                    raise self._fail("batch", f"rc {res.rc} with {res.done} of {res.n} done, but "
                                     f"the machine differs from its first {res.done} requests "
                                     f"issued one by one: {diff}", op, "state")
                before = j.capture(j.last_small)      # nothing ran since differs_from
            try:
                r = execute(m, doms, sub)
            except Exception as e:
                raise self._fail("batch", f"request {i} alone raises {type(e).__name__}: {e}",
                                 op, "single-crash") from e
            if page_wise:
                ok = max(r.rc, 0)                      # the frames removed one by one
                fail_rc = r.rc if r.rc < 0 else None
                break
            if r.failed:
                if failing:
                    diff = j.differs_from(before)
                    if diff:
                        raise self._fail("unchanged", f"request {i} alone refused with "
                                         f"{errno_name(r.rc) if r.rc < 0 else 'nothing done'} "
                                         f"but changed: {diff}", op)
                fail_rc = r.rc
                break
            ok += 1
        if op["op"] == "memory_op":
            want = ((res.n if ok == len(pages) else ok >> int(op["order"])) if page_wise
                    else ok)
            if res.rc != want:
                raise self._fail("batch", f"returned {res.rc}; one extent at a time, "
                                 f"{want} extents are done", op, "count")
        elif res.done != ok or (fail_rc is not None and fail_rc != res.rc) or (
                fail_rc is None and res.rc != 0):
            raise self._fail("batch", f"rc {res.rc} done {res.done}/{res.n}; one request "
                             f"at a time: {ok} done, then "
                             f"{errno_name(fail_rc) if fail_rc is not None else 'rc 0'}",
                             op, "count")
        diff = j.differs_from(after)
        if diff:
            raise self._fail("batch", f"the machine after the call ({res.done} of {res.n} done) "
                             f"differs from issuing the requests one by one: {diff}", op, "state")
        j.settle(after)

    def _stepwise_check(self, op: dict, res: CallResult, doms: dict, after) -> None:
        """The batch check of an mmu_update whose ordinary writes were done at once (the
        plain-write batch accelerator): the same call again, on the machine as it was
        before it, stepwise (every request by do_mmu_update's loop), must end alike. The
        loop runs each request as ``Machine.request`` of the function a single call runs,
        after a prologue no request changes, so it is the call's requests one by one
        (the batch check of every batch the loop runs checks that), in one hypercall
        instead of one per request (a 512-entry L1 table filled). Its ordinary writes
        after the second are written, not run, once the second left the machine as the
        first did (:func:`~._plain_writes.plain_writes_stepwise`: what the loop would do)."""
        j, m = self.journal, self.m
        with m.events.stepwise():
            try:
                rc, done = plain_writes_stepwise(m, j, doms, op)
            except Exception as e:
                raise self._fail("batch", f"the call by its per-request loop raises "
                                 f"{type(e).__name__}: {e}", op, "single-crash") from e
        if (rc, done) != (res.rc, res.done):
            raise self._fail("batch", f"rc {res.rc} done {res.done}/{res.n}; by the per-request "
                             f"loop: rc {rc} done {done}", op, "count")
        diff = j.differs_from(after)
        if diff:
            raise self._fail("batch", f"the machine after the call ({res.done} of {res.n} done) "
                             f"differs from the call by its per-request loop: {diff}", op, "state")
        j.settle(after)

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
        if full and self.journal is not None:
            # the whole machine against the journal's shadow: a write no event reported
            # would escape the unchanged and batch checks (and the incremental auditor)
            diff = self.journal.verify()
            if diff:
                raise self._fail("unreported-write", f"the machine differs from the undo "
                                 f"journal's shadow, with nothing written since: {diff}", op,
                                 "journal")

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


def _granted_away(m, domid: int) -> bool:
    """Does another domain still hold a grant of ``domid``'s (an active entry: a destroyed
    granter stays, as in Xen, until the grantee unmaps or dies)?"""
    gt = m.gnttab.table(domid)
    return gt is not None and any(grantee != domid and grantee in m.domains
                                  for _, grantee, _ in gt.active.values())


def replay_ops(setup: Setup, ops: list[dict], *, batch_check: bool = True, finish: bool = True,
               tolerate=None, light: bool = False):
    """Replay ``ops`` on a fresh machine with every check; then (``finish``) destroy every
    guest and check the heap. Returns (violation or None, the FuzzRunner)."""
    run = FuzzRunner(setup, batch_check=batch_check, tolerate=tolerate, light=light)
    try:
        for op in ops:
            run.step(op)
        if finish:
            run.finish()
    except FuzzViolation as v:
        return v, run
    return None, run
