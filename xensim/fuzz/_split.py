"""A campaign split across workers: :func:`split_campaign` runs the episodes of
:func:`~xensim.fuzz.campaign` as tasks of an engine (xensim.engines: local worker
processes or a Dask cluster) and merges them with the same function, in the same
order, so that the merged result (calls, refusal tables, findings and their counts,
each finding's minimal reproducer) is the one of a campaign in one process.

Episode *i* is seeded ``f"{seed}/{i}"`` whatever worker runs it. Its budget depends on
the calls the episodes before it made (the last one is cut short), which a worker
cannot know: every episode is run ahead with the budget it would have if the ones
before it made exactly theirs, and one whose budget turns out different when its turn
to be merged comes (the campaign's last, as episodes make a few calls more) is run
again with the right one. Each distinct violation is minimised as a task of its
own, on whichever worker is free, once its episode is merged (only then is it known
to be the first of its signature), while the other workers run the episodes: when
every episode in flight may be the last (the run-ahead estimate is reached), the task
stream pauses (``engines.PAUSE``) instead of ending, so that the episodes a result
calls for (those cut short by a violation leave calls to make) start as soon as it is
back, not after the minimisations in flight.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from ..engines import PAUSE, TaskFailed
from ._campaign import (Campaign, Episode, Finding, campaign_done, episode_budget,
                        episode_seed, merge_episode, minimise_finding, run_episode)
from ._setup import Setup

__all__ = ["EpisodeTask", "MinimiseTask", "run_campaign_task", "split_campaign"]


@dataclass(frozen=True)
class EpisodeTask:
    """Run episode ``index`` of a campaign of seed ``seed`` with ``budget`` calls.
    ``tolerate`` must be picklable (a module-level function such as ``keep_going``)."""
    setup: Setup
    seed: int
    index: int
    budget: int
    batch_check: bool = True
    tolerate: object = None

    def run(self) -> Episode:
        ep = run_episode(self.setup, episode_seed(self.seed, self.index), self.budget,
                         batch_check=self.batch_check, tolerate=self.tolerate)
        # only the calls up to the last violation travel back (what findings keep)
        keep = max((v.index + 1 for v in ep.violations), default=0)
        ep.log, ep.rcs = ep.log[:keep], ep.rcs[:keep]
        return ep


@dataclass(frozen=True)
class MinimiseTask:
    """Minimise a finding (:func:`~xensim.fuzz.minimise_finding`)."""
    setup: Setup
    finding: Finding
    minimise_findings: bool = True
    minimise_seconds: float = 120.0
    batch_check: bool = True
    tolerate: object = None

    def run(self) -> tuple[list[dict], list, bool]:
        return minimise_finding(self.setup, self.finding,
                                minimise_findings=self.minimise_findings,
                                minimise_seconds=self.minimise_seconds, batch_check=self.batch_check,
                                tolerate=self.tolerate)


def run_campaign_task(task):
    """What a worker runs: one :class:`EpisodeTask` or :class:`MinimiseTask`."""
    return task.run()


def split_campaign(engine, setup: Setup, calls: int, seed: int = 0, *,
                   episode_calls: int = 1000, minimise_findings: bool = True,
                   minimise_seconds: float = 120.0, batch_check: bool = True, tolerate=None,
                   max_findings: int | None = None, tick=None, status=None,
                   max_in_flight: int | None = None) -> Campaign:
    """:func:`~xensim.fuzz.campaign` with its episodes and minimisations run by
    ``engine`` (``map_unordered(fn, tasks, max_in_flight)``, xensim.engines); the same
    arguments give the same merged result whatever the engine's workers.

    ``tick(calls)`` whenever an episode comes back: the calls of the episodes merged
    and of those back but not merged yet (they wait for an earlier one); ``status(text)``
    while violations are being minimised (``minimising 2 violations``), ``status(None)``
    when none is. Ctrl-C ends
    it ``interrupted``: the episodes merged so far, in order; findings whose
    minimisation had not come back stay whole."""
    c = Campaign(setup, seed)
    t0 = time.perf_counter()
    back: dict[int, tuple[int, Episode]] = {}     # index -> (budget, episode) not merged yet
    budgets: dict[int, int] = {}                  # index -> the budget it was last sent with
    urgent: deque = deque()                       # tasks sent before any episode run ahead
    where = {"merge": 0, "ahead": 0}              # next index to merge, to run ahead
    minimising: set = set()                       # signatures sent to be minimised, not back
    sent = {"n": 0}                               # tasks sent whose results are not back

    def episode(index: int, budget: int) -> EpisodeTask:
        budgets[index] = budget
        return EpisodeTask(setup, seed, index, budget, batch_check, tolerate)

    def tasks():
        while True:
            if urgent:
                sent["n"] += 1
                yield urgent.popleft()
                continue
            # the episodes not merged yet make at least their budgets (unless a violation
            # ends one): the next starts after those calls at the earliest
            start = c.calls + sum(budgets[j] for j in range(where["merge"], where["ahead"]))
            if not (c.interrupted or campaign_done(c, calls, max_findings) or start >= calls):
                where["ahead"] += 1
                sent["n"] += 1
                yield episode(where["ahead"] - 1, episode_budget(start, calls, episode_calls))
                continue
            if not sent["n"]:
                return                           # nothing in flight, nothing to send
            # enough is in flight; what comes back may call for more (episodes cut short
            # by a violation, a rerun, a minimisation): the workers go on meanwhile
            yield PAUSE

    def merge_back() -> None:
        while where["merge"] in back and not c.interrupted and \
                not campaign_done(c, calls, max_findings):
            i = where["merge"]
            budget, ep = back.pop(i)
            need = episode_budget(c.calls, calls, episode_calls)
            if budget != need:                   # run ahead with a budget it cannot have
                urgent.appendleft(episode(i, need))
                return
            where["merge"] += 1
            for fnd in merge_episode(c, ep, max_findings):
                urgent.append(MinimiseTask(setup, fnd, minimise_findings, minimise_seconds,
                                           batch_check, tolerate))
                minimising.add(fnd.violation.signature)
                say()

    def say() -> None:
        if status is not None and minimise_findings:
            n = len(minimising)
            status(f"minimising {n} violation{'s' * (n != 1)}" if n else None)

    try:
        while True:
            for task, result in engine.map_unordered(run_campaign_task, tasks(), max_in_flight):
                sent["n"] -= 1
                if isinstance(result, TaskFailed):
                    raise RuntimeError(f"a campaign task failed on its worker: {result}\n"
                                       f"{result.traceback}")
                if isinstance(task, MinimiseTask):
                    f = c.findings[task.finding.violation.signature]
                    f.minimal, f.minimal_rcs, f.minimised = result
                    minimising.discard(task.finding.violation.signature)
                    say()
                    continue
                if budgets.get(task.index) != task.budget or task.index < where["merge"]:
                    continue                     # superseded by a rerun with its budget
                back[task.index] = (task.budget, result)
                merge_back()
                if tick is not None:
                    tick(c.calls + sum(ep.calls for _, ep in back.values()))
            if not urgent and (c.interrupted or campaign_done(c, calls, max_findings)):
                break
    except KeyboardInterrupt:
        c.interrupted = True
    c.seconds = time.perf_counter() - t0
    return c

