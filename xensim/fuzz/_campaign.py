"""Episodes and campaigns: :func:`run_episode` (one fresh machine: the guests set up,
about N random calls, teardown), :func:`campaign` (episodes until the calls are made;
each distinct violation minimised once), :func:`finding_yaml` (a finding's reproducer)
and :func:`report` (the campaign's summary, docs/fuzzing.md)."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

from ._checks import FuzzViolation
from ._generator import Fuzzer
from ._minimise import Trial, minimise, trial_result
from ._reproducer import to_script_yaml
from ._setup import Setup

__all__ = ["Episode", "run_episode", "Finding", "Campaign", "keep_going", "episode_seed",
           "episode_budget", "campaign_done", "merge_episode", "minimise_finding", "recording", "campaign",
           "finding_yaml", "report"]


@dataclass
class Episode:
    """One fresh machine: setup, about ``calls`` random calls, teardown.

    ``violation`` ended it (None: it ran to the end); ``seen`` are the tolerated
    ones, first of each signature."""
    seed: str
    calls: int
    log: list[dict]
    rcs: list
    violation: FuzzViolation | None
    seen: list
    tolerated: Counter
    by_call: Counter
    refused: Counter
    #: Ctrl-C stopped it (no teardown check; the counts are the calls made)
    interrupted: bool = False
    #: the calls it was to make (None: ``calls``); it makes a few more (its last action,
    #: the teardown), or fewer when a violation or Ctrl-C ends it
    budget: int | None = None

    @property
    def violations(self) -> list[FuzzViolation]:
        return list(self.seen) + ([self.violation] if self.violation is not None else [])


def run_episode(setup: Setup, seed, calls: int, *, batch_check: bool = True, tolerate=None,
                tick=None) -> Episode:
    """Set the guests up, make about ``calls`` calls (setup and teardown included), tear down.
    ``tick(calls)`` after each call (a progress bar); Ctrl-C ends it ``interrupted``."""
    f = Fuzzer(setup, random.Random(str(seed)), batch_check=batch_check, tolerate=tolerate)
    viol = None
    interrupted = False
    try:
        f.start()
        while f.calls < calls:
            f.random_call()
            if tick is not None:
                tick(f.calls)
        f.finish()
    except FuzzViolation as v:
        viol = v
    except KeyboardInterrupt:
        interrupted = True
    return Episode(str(seed), f.calls, f.log, f.rcs, viol, list(f.seen.values()), f.tolerated,
                   f.by_call, f.refused, interrupted, calls)


@dataclass
class Finding:
    violation: FuzzViolation
    seed: str
    count: int = 1
    minimal: list[dict] | None = None
    minimal_rcs: list | None = None
    #: ``minimal`` was minimised (not: --no-minimise, or Ctrl-C came first)
    minimised: bool = False


@dataclass
class Campaign:
    setup: Setup
    seed: int
    calls: int = 0
    episodes: int = 0
    seconds: float = 0.0
    by_call: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    findings: dict = field(default_factory=dict)          # signature -> Finding
    #: the calls that count towards the campaign's: each episode's up to its budget (the
    #: few an episode makes past it do not: the next episodes' budgets are then known
    #: before the earlier ones are back, unless a violation ends one early)
    budgeted: int = 0
    #: Ctrl-C stopped it: what is counted is what was done so far
    interrupted: bool = False

    @property
    def violations(self) -> int:
        return sum(f.count for f in self.findings.values())

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


#: what ``keep_going`` tolerates: violations after which the machine may still be sound
#: (the run goes on only if the auditor and the isolation check then pass)
def keep_going(v: FuzzViolation) -> bool:
    return v.kind in ("crash", "unchanged", "batch", "xen-bug", "zombie")


def episode_seed(seed: int, i: int) -> str:
    """Episode ``i`` of a campaign of seed ``seed``: its generator's seed."""
    return f"{seed}/{i}"


def episode_budget(made: int, calls: int, episode_calls: int) -> int:
    """The budget of the next episode once ``made`` of the campaign's ``calls`` are made
    (:attr:`Campaign.budgeted`)."""
    return min(episode_calls, max(calls - made, 1))


def campaign_done(c: Campaign, calls: int, max_findings: int | None) -> bool:
    """No episode is to follow: the calls are made, or ``max_findings`` were found."""
    return c.budgeted >= calls or (max_findings is not None and len(c.findings) >= max_findings)


def merge_episode(c: Campaign, ep: Episode, max_findings: int | None = None) -> list[Finding]:
    """Add episode ``ep``'s counts to ``c``, the next in order; the findings it adds
    (each the first of its signature, its episode's calls up to it, not minimised).

    Every campaign goes through it, in episode order, whatever the number of workers:
    the same episodes give the same merged result."""
    c.interrupted = ep.interrupted
    c.episodes += 1
    c.calls += ep.calls
    c.budgeted += ep.calls if ep.budget is None else min(ep.calls, ep.budget)
    c.by_call.update(ep.by_call)
    c.refused.update(ep.refused)
    counts = Counter(ep.tolerated)
    if ep.violation is not None:
        counts[ep.violation.signature] += 1
    new = []
    for v in ep.violations:
        sig = v.signature
        if sig in c.findings:
            c.findings[sig].count += counts[sig]
            continue
        if max_findings is not None and len(c.findings) >= max_findings:
            break
        fnd = c.findings[sig] = Finding(v, ep.seed, counts[sig])
        fnd.minimal = ep.log[:v.index + 1]
        fnd.minimal_rcs = ep.rcs[:len(fnd.minimal)]
        new.append(fnd)
    return new


def minimise_finding(setup: Setup, f: Finding, *, minimise_findings: bool = True,
                     minimise_seconds: float = 120.0, batch_check: bool = True,
                     tolerate=None, tick=None) -> tuple[list[dict], list, bool]:
    """(minimal calls, their rcs, minimised) of a finding not yet minimised: its calls
    minimised (unless ``minimise_findings`` is off), then replayed with the same
    ``tolerate`` for the other violations to record each call's rc. ``tick()`` after each
    of minimisation's replays."""
    sig = f.violation.signature
    ops, rcs = f.minimal or [], f.minimal_rcs
    minimal = ops
    if minimise_findings:
        minimal = minimise(setup, ops, sig, rcs=rcs, max_seconds=minimise_seconds,
                           batch_check=batch_check, tolerate=tolerate, tick=tick)
    _, rcs = trial_result(setup, recording(minimal, batch_check), sig, tolerate)
    return minimal, rcs, minimise_findings


def recording(ops: list[dict], batch_check: bool = True) -> Trial:
    """The replay that records the rc of each call of a finding's reproducer: every
    check, the teardown included."""
    return Trial(ops, False, batch_check, True)


def campaign(setup: Setup, calls: int, seed: int = 0, *, episode_calls: int = 1000,
             minimise_findings: bool = True, minimise_seconds: float = 120.0,
             batch_check: bool = True, tolerate=None, progress=None,
             max_findings: int | None = None, tick=None, status=None) -> Campaign:
    """Episodes of about ``episode_calls`` calls until ``calls`` calls were made (or
    ``max_findings`` distinct violations were found), in this process, one after the
    other (:func:`~xensim.fuzz.split_campaign` spreads them over workers, with the same
    result). ``tick(calls)`` after every call; ``status(text)`` while a violation is
    minimised (``minimising violation 1 (233 calls)``, after each replay) and
    ``status(None)`` when it is done.

    Each distinct violation (by signature) is minimised once, replaying with the
    same ``tolerate`` for the others; later ones only count. Ctrl-C ends the campaign
    ``interrupted`` with what was done so far (a violation being minimised is kept whole)."""
    c = Campaign(setup, seed)
    t0 = time.perf_counter()
    i = 0
    try:
        while not campaign_done(c, calls, max_findings):
            base = c.calls
            ep = run_episode(setup, episode_seed(seed, i),
                             episode_budget(c.budgeted, calls, episode_calls),
                             batch_check=batch_check, tolerate=tolerate,
                             tick=None if tick is None else (lambda n: tick(base + n)))
            i += 1
            for fnd in merge_episode(c, ep, max_findings):
                if c.interrupted:
                    continue                             # no minimising after a Ctrl-C
                k = list(c.findings).index(fnd.violation.signature) + 1
                said = f"minimising violation {k} ({len(fnd.minimal or []):,} calls)"
                shown = None if status is None or not minimise_findings else (lambda: status(said))
                try:
                    if shown is not None:
                        shown()
                    fnd.minimal, fnd.minimal_rcs, fnd.minimised = minimise_finding(
                        setup, fnd, minimise_findings=minimise_findings,
                        minimise_seconds=minimise_seconds, batch_check=batch_check,
                        tolerate=tolerate, tick=shown)
                except KeyboardInterrupt:                # the finding stays whole
                    c.interrupted = True
                if shown is not None:
                    status(None)
            c.seconds = time.perf_counter() - t0
            if c.interrupted:
                break
            if progress is not None:
                progress(c, calls)
    except KeyboardInterrupt:                # between episodes
        c.interrupted = True
    c.seconds = time.perf_counter() - t0
    return c


def finding_yaml(c: Campaign, f: Finding) -> str:
    v = f.violation
    what = "minimal reproducer" if f.minimised else "reproducer (not minimised)"
    comment = (f"xensim fuzz: {what} ({len(f.minimal or [])} calls) of a violation\n"
               f"found by episode {f.seed} (design {c.setup.design}, {c.setup.release_label}"
               f"{', faithful' if c.setup.faithful else ''}), seen {f.count} time(s):\n{v}")
    return to_script_yaml(c.setup, f.minimal or [], rcs=f.minimal_rcs, comment=comment)


def report(c: Campaign, files: list | None = None, workers: str | None = None) -> str:
    """The campaign's summary; one line per distinct violation (its signature, the
    calls of its reproducer, the file it was written to: ``files[k]``). ``workers``:
    where the episodes ran (an engine's description; None: in this process)."""
    s = c.setup
    out = [f"xensim fuzz: design {s.design}, {s.release_label}"
           f"{' (faithful)' if s.faithful else ''}, {s.domains} domains, seed {c.seed}, "
           f"audit {s.audit}" + (f" (full every {s.full_audit_every:,} checks)"
                                 if s.audit == "incremental" and s.full_audit_every else ""),
           f"calls made: {c.calls:,} in {c.episodes} episode(s), {c.seconds:.1f} s "
           f"({c.rate:,.0f} calls/s)" + (f", on {workers}" if workers else "")
           + (", interrupted: a partial summary" if c.interrupted else ""),
           ""]
    width = max([len(k) for k in c.by_call] + [4])
    out.append(f"{'call':<{width}}  {'calls':>9}  refused by errno")
    for label in sorted(c.by_call):
        ref = sorted(((e, n) for (lab, e), n in c.refused.items() if lab == label),
                     key=lambda x: (-x[1], x[0]))
        text = ", ".join(f"{e} {n:,}" for e, n in ref) or "-"
        out.append(f"{label:<{width}}  {c.by_call[label]:>9,}  {text}")
    total_ref = sum(n for (_, e), n in c.refused.items() if e not in ("short", "preempted"))
    pre = sum(n for (_, e), n in c.refused.items() if e == "preempted")
    out += ["", f"refused calls: {total_ref:,} of {c.calls:,}"
            + (f"; preempted (-ERESTART, continued later or never): {pre:,}" if pre else ""),
            f"violations: {c.violations}" + (" (0 expected)" if not s.faithful else
                                            " (faithful mode reproduces Xen's bugs)")]
    if c.findings:
        out += ["", "reproducers (`xensim run FILE` replays one with every check):"]
    for k, f in enumerate(c.findings.values()):
        kind, call, key = f.violation.signature
        where = str(files[k]) if files else "not written (--out FILE writes them)"
        out.append(f"  {k + 1}. {kind} in {call} ({key}), {f.count}x: "
                   f"{len(f.minimal or [])} calls -> {where}")
    return "\n".join(out) + "\n"
