"""A campaign split across workers: :func:`split_campaign` runs the episodes of
:func:`~xensim.fuzz.campaign` as tasks of an engine (xensim.engines: local worker
processes or a Dask cluster) and merges them with the same function, in the same
order, so that the merged result (calls, refusal tables, findings and their counts,
each finding's minimal reproducer) is the one of a campaign in one process.

Episode *i* is seeded ``f"{seed}/{i}"`` whatever worker runs it. Its budget depends on
the calls the episodes before it made (the campaign's calls left, for the last ones),
each counted up to its own budget (:attr:`~xensim.fuzz.Campaign.budgeted`): an episode
makes its budget's calls, or fewer when a violation ends it. Every episode is run ahead
with the budget it has if the ones before it made theirs, which it has unless one of
them ended early; one whose budget turns out different when its turn to be merged
comes is run again with the right one.

Each distinct violation is minimised once its episode is merged (only then is it known
to be the first of its signature): its :func:`~xensim.fuzz.minimise_steps` runs here,
and the trials of each round (replays from scratch) are tasks on whichever worker is
free. A round's answer is its lowest failing trial once every trial before it is back
(what trying them one by one finds first), so the reproducer is the one of one
process. What is sent next: an episode to run again; the next trial of a minimisation
with none in flight; a new episode; then further trials of a round (needed only if
those before them pass). When nothing can be sent yet (every episode still needed may
be in flight, a round waits for its results), the task stream pauses
(``engines.PAUSE``) instead of ending. At most one task per worker is in flight, so
that no task waits in a queue behind another.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from ..engines import PAUSE, TaskFailed
from ._campaign import (Campaign, Episode, Finding, campaign_done, episode_budget,
                        episode_seed, merge_episode, recording, run_episode)
from ._minimise import Trial, minimise_steps, trial_result
from ._setup import Setup

__all__ = ["EpisodeTask", "TrialTask", "run_campaign_task", "split_campaign"]


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
class TrialTask:
    """One replay of a minimisation (:class:`~xensim.fuzz.Trial`): its result is
    (it shows a violation of ``signature``, the rc of each call made). ``key``: the
    finding's signature, the round and the trial's index in it."""
    setup: Setup
    trial: Trial
    signature: tuple
    tolerate: object = None
    key: tuple = ()

    def run(self) -> tuple[bool, list]:
        return trial_result(self.setup, self.trial, self.signature, self.tolerate)


class _Minimising:
    """A finding's minimisation driven from here: its :func:`minimise_steps` generator,
    the round being tried (its trials sent in order, the results back so far), then the
    replay that records the reproducer's rcs."""

    def __init__(self, fnd: Finding, seconds: float):
        self.finding = fnd
        self.steps = None                      # its minimise_steps (None: not minimised)
        self.deadline = time.monotonic() + seconds
        self.round_no = 0
        self.trials: list = []
        self.sent = 0                          # trials of the round sent so far
        self.results: dict[int, bool] = {}     # index -> failed, for those back
        self.minimal: list | None = None       # set once the steps are done

    def budget(self) -> bool:
        return time.monotonic() < self.deadline

    def start(self, batch_check: bool) -> None:
        if self.steps is None:                 # not minimised: only the recording
            self.finish(self.finding.minimal or [], batch_check)
            return
        try:
            self.new_round(next(self.steps))
        except StopIteration as stop:
            self.finish(stop.value, batch_check)

    def new_round(self, trials: list) -> None:
        self.round_no += 1
        self.trials, self.sent, self.results = trials, 0, {}

    def finish(self, minimal: list, batch_check: bool) -> None:
        self.minimal = minimal
        self.new_round([recording(minimal, batch_check)])

    def in_flight(self) -> bool:
        return self.sent > len(self.results)

    def next_trial(self) -> int | None:
        """The index of the next trial to send (None: the round is all sent, or the
        time ran out after one was sent)."""
        if self.sent >= len(self.trials) or (self.sent and not self.budget()):
            return None
        self.sent += 1
        return self.sent - 1

    def answer(self) -> tuple[bool, int | None]:
        """(the round is decided, the index of its first failing trial): the lowest
        index that failed, every trial before it back and passed; None when every
        trial passed, or every trial sent did and no more will be (the time ran out)."""
        for i in range(len(self.trials)):
            failed = self.results.get(i)
            if failed is None:
                if i < self.sent or i == 0 or self.budget():
                    return False, None          # in flight, or to be sent
                return True, None
            if failed:
                return True, i
        return True, None


def run_campaign_task(task):
    """What a worker runs: one :class:`EpisodeTask` or :class:`TrialTask`."""
    return task.run()


def split_campaign(engine, setup: Setup, calls: int, seed: int = 0, *,
                   episode_calls: int = 1000, minimise_findings: bool = True,
                   minimise_seconds: float = 120.0, batch_check: bool = True, tolerate=None,
                   max_findings: int | None = None, tick=None, status=None,
                   max_in_flight: int | None = None) -> Campaign:
    """:func:`~xensim.fuzz.campaign` with its episodes and the trials of its
    minimisations run by ``engine`` (``map_unordered(fn, tasks, max_in_flight)``,
    xensim.engines; at most ``max_in_flight`` tasks at a time, by default one per
    worker: no task waits behind another); the same arguments give the same merged
    result whatever the engine's workers.

    ``tick(calls)`` whenever an episode comes back: the calls of the episodes merged
    and of those back but not merged yet (they wait for an earlier one); ``status(text)``
    while violations are being minimised (``minimising 2 violations, 14 trials``),
    ``status(None)`` when none is. Ctrl-C ends it ``interrupted``: the episodes merged
    so far, in order; findings whose minimisation had not finished stay whole."""
    c = Campaign(setup, seed)
    t0 = time.perf_counter()
    back: dict[int, tuple[int, Episode]] = {}     # index -> (budget, episode) not merged yet
    budgets: dict[int, int] = {}                  # index -> the budget it was last sent with
    urgent: deque = deque()                       # episodes to run again, before any other
    where = {"merge": 0, "ahead": 0}              # next index to merge, to run ahead
    active: dict[tuple, _Minimising] = {}         # signature -> its minimisation, in order
    sent = {"n": 0, "trials": 0}                  # tasks in flight; trials run so far
    bound = max_in_flight or getattr(engine, "workers", 1)

    def episode(index: int, budget: int) -> EpisodeTask:
        budgets[index] = budget
        return EpisodeTask(setup, seed, index, budget, batch_check, tolerate)

    def trial(mz: _Minimising, speculative: bool) -> TrialTask | None:
        """The next trial of ``mz``'s round; ``speculative``: even while one of its
        round is in flight (it is needed only if those before it pass)."""
        if mz.in_flight() and not speculative:
            return None
        i = mz.next_trial()
        if i is None:
            return None
        sig = mz.finding.violation.signature
        return TrialTask(setup, mz.trials[i], sig, tolerate, (sig, mz.round_no, i))

    def next_task():
        if urgent:
            return urgent.popleft()
        for mz in active.values():                # a trial each minimisation waits for
            if (t := trial(mz, False)) is not None:
                return t
        # the episodes not merged yet make at least their budgets (unless a violation
        # ends one): the next starts after those calls at the earliest
        start = c.budgeted + sum(budgets[j] for j in range(where["merge"], where["ahead"]))
        if not (c.interrupted or campaign_done(c, calls, max_findings) or start >= calls):
            where["ahead"] += 1
            return episode(where["ahead"] - 1, episode_budget(start, calls, episode_calls))
        for mz in active.values():                # a worker free: the round's next trials
            if (t := trial(mz, True)) is not None:
                return t
        return None

    def tasks():
        while True:
            task = next_task()
            if task is not None:
                sent["n"] += 1
                yield task
            elif not sent["n"]:
                return                           # nothing in flight, nothing to send
            else:
                # what comes back may call for more (episodes cut short by a violation,
                # a rerun, a minimisation's next round): the workers go on meanwhile
                yield PAUSE

    def merge_back() -> None:
        while where["merge"] in back and not c.interrupted and \
                not campaign_done(c, calls, max_findings):
            i = where["merge"]
            budget, ep = back.pop(i)
            need = episode_budget(c.budgeted, calls, episode_calls)
            if budget != need:                   # run ahead with a budget it cannot have
                urgent.appendleft(episode(i, need))
                return
            where["merge"] += 1
            for fnd in merge_episode(c, ep, max_findings):
                mz = active[fnd.violation.signature] = _Minimising(fnd, minimise_seconds)
                if minimise_findings:
                    mz.steps = minimise_steps(fnd.minimal or [], fnd.violation.signature,
                                              rcs=fnd.minimal_rcs, batch_check=batch_check,
                                              budget=mz.budget)
                mz.start(batch_check)
                say()

    def trial_back(task: TrialTask, result: tuple[bool, list]) -> None:
        sig, round_no, i = task.key
        mz = active.get(sig)
        if mz is None or round_no != mz.round_no:
            return                               # a round already decided
        sent["trials"] += 1
        mz.results[i] = result[0]
        decided, first = mz.answer()
        if not decided:
            return
        if mz.minimal is not None:               # the recording: the reproducer's rcs
            f = c.findings[sig]
            f.minimal, f.minimal_rcs, f.minimised = mz.minimal, result[1], minimise_findings
            del active[sig]
            say()
            return
        try:
            mz.new_round(mz.steps.send(first))
        except StopIteration as stop:
            mz.finish(stop.value, batch_check)
        say()

    def say() -> None:
        if status is not None and minimise_findings:
            n = len(active)
            status(f"minimising {n} violation{'s' * (n != 1)}, {sent['trials']:,} trials"
                   if n else None)

    try:
        for task, result in engine.map_unordered(run_campaign_task, tasks(), bound):
            sent["n"] -= 1
            if isinstance(result, TaskFailed):
                raise RuntimeError(f"a campaign task failed on its worker: {result}\n"
                                   f"{result.traceback}")
            if isinstance(task, TrialTask):
                trial_back(task, result)
                continue
            if budgets.get(task.index) != task.budget or task.index < where["merge"]:
                continue                         # superseded by a rerun with its budget
            back[task.index] = (task.budget, result)
            merge_back()
            if tick is not None:
                tick(c.calls + sum(ep.calls for _, ep in back.values()))
    except KeyboardInterrupt:
        c.interrupted = True
    c.seconds = time.perf_counter() - t0
    return c
