"""A fuzz campaign split into seeded episodes over workers (xensim.fuzz.split_campaign,
``xensim fuzz --workers K``): the same campaign gives the same merged result on one
process and on two workers, whatever order the episodes come back in; violations are
deduplicated by signature; ``--out DIR/`` writes one reproducer per distinct violation,
each of which ``xensim run`` replays to its violation.

The campaigns are faithful-mode Xen 4.1 with one guest and no grant calls, where the
fuzzer meets Xen's known bugs within a few dozen calls (docs/fuzzing.md, "Faithful mode")."""

from __future__ import annotations

import pickle
import random
import re
from collections import Counter

import pytest

from conftest import fuzz_cli
from xensim.cli._fuzz import out_is_dir, reproducer_path
from xensim.cli._main import main
from xensim.engines import PAUSE, LocalEngine, TaskFailed
from xensim.fuzz._checks import generic_key
from xensim.fuzz import (Campaign, Episode, EpisodeTask, FuzzViolation, Setup, Trial, campaign,
                         episode_budget, episode_seed, keep_going, merge_episode, replay,
                         report, run_campaign_task, run_episode, split_campaign)
from xensim.fuzz import TrialTask

SETUP = Setup(version="4.1", faithful=True, domains=1, grants=False)
#: seed 4 finds three distinct violations in 120 calls (episodes of 40, each ended by a
#: violation or its budget)
CAMPAIGN = dict(calls=120, seed=4, episode_calls=40)


def merged(c: Campaign) -> tuple:
    """Everything a campaign's merge determines (not its time)."""
    return (c.calls, c.episodes, c.by_call, c.refused, c.interrupted,
            [(sig, f.seed, f.count, f.minimal, f.minimal_rcs, f.minimised, str(f.violation))
             for sig, f in c.findings.items()])


class Shuffled:
    """An engine in this process that gives results back in a random order, up to
    ``window`` tasks in flight (as workers finishing in any order would)."""

    def __init__(self, seed: int, window: int = 4, interrupt_after: int | None = None):
        self.r = random.Random(seed)
        self.window, self.interrupt_after = window, interrupt_after
        self.yielded = 0
        self.tasks: list = []                   # every task, in the order it was read
        self.done: list = []                    # (task, result) as given back

    def map_unordered(self, fn, tasks, max_in_flight=None):
        it = iter(tasks)
        buf = []
        while True:
            while len(buf) < self.window:
                task = next(it, None)
                if task is None or task is PAUSE:     # PAUSE: read on after a result
                    break
                self.tasks.append(task)
                buf.append((task, fn(task)))
            if not buf:
                return
            if self.interrupt_after is not None and self.yielded == self.interrupt_after:
                raise KeyboardInterrupt
            self.yielded += 1
            self.done.append(buf.pop(self.r.randrange(len(buf))))
            yield self.done[-1]


@pytest.fixture(scope="module")
def one_process():
    return campaign(SETUP, CAMPAIGN["calls"], CAMPAIGN["seed"],
                    episode_calls=CAMPAIGN["episode_calls"])


# ---------------------------------------------------------------------------------------
# the split: episodes and their budgets
# ---------------------------------------------------------------------------------------

def test_episode_seeds_and_budgets():
    assert [episode_seed(7, i) for i in (0, 1, 12)] == ["7/0", "7/1", "7/12"]
    assert episode_budget(0, 1000, 300) == 300
    assert episode_budget(905, 1000, 300) == 95            # the last episode is cut short
    assert episode_budget(1000, 1000, 300) == 1            # never below one call
    assert episode_budget(1007, 1000, 300) == 1


def test_episode_task_is_the_episode_of_its_seed():
    task = EpisodeTask(SETUP, 4, 1, 40)
    ep = run_campaign_task(pickle.loads(pickle.dumps(task)))
    here = run_episode(SETUP, "4/1", 40)
    assert (ep.seed, ep.calls, ep.by_call, ep.refused, str(ep.violation)) == \
        ("4/1", here.calls, here.by_call, here.refused, str(here.violation))
    assert ep.calls == 25 and len(here.log) == 25            # the violation ended it early
    # only the calls up to its violation travel back
    assert ep.violation is not None and len(ep.log) == ep.violation.index + 1
    assert ep.log[-1] == ep.violation.op


def test_violations_pickle_by_their_fields():
    v = FuzzViolation("audit", "mfn 0x10 count", 3, {"op": "mmu_update", "domain": "g1",
                                                     "reqs": [[1, 2], [3, 4]]},
                      "count_info.count")
    w = pickle.loads(pickle.dumps(v))
    assert (w.kind, w.detail, w.index, w.op, w.key, str(w)) == \
        (v.kind, v.detail, v.index, v.op, v.key, str(v))
    assert w.signature == ("audit", "mmu_update", "count_info.count")


# ---------------------------------------------------------------------------------------
# the merge: the same result on any number of workers
# ---------------------------------------------------------------------------------------

def test_two_workers_give_the_merged_result_of_one_process(one_process):
    c = one_process
    assert c.calls == 122 and c.budgeted == 120 and c.episodes == 5 and not c.interrupted
    assert len(c.findings) == 3 and all(f.minimised for f in c.findings.values())
    with LocalEngine(2) as engine:
        d = split_campaign(engine, SETUP, CAMPAIGN["calls"], CAMPAIGN["seed"],
                           episode_calls=CAMPAIGN["episode_calls"])
    assert merged(d) == merged(c)
    # the summary is the same but for the time and where it ran
    timing = re.compile(r"\d+\.\d s \([\d,]+ calls/s\)")
    assert timing.sub("T", report(d, workers="local, 2 worker processes")) == \
        timing.sub("T", report(c)).replace(", T", ", T, on local, 2 worker processes", 1)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_the_merge_does_not_depend_on_the_order_results_come_back(order):
    kwargs = dict(episode_calls=40, minimise_findings=False, tolerate=keep_going)
    c = campaign(SETUP, 90, 4, **kwargs)
    engine = Shuffled(order)
    d = split_campaign(engine, SETUP, 90, 4, **kwargs)
    assert merged(d) == merged(c)
    # every episode merged was run with the budget it has in one process: the first two
    # ahead with the full 40 (the first ends at 19 calls on a teardown violation, the
    # second makes 41: one past its budget, which does not count), the last run ahead
    # with the 10 calls left if the first two made 40 each, then again with the 31 left
    # after the 19 + 40 that count
    made = {(t.index, t.budget): ep.calls for t, ep in engine.done if isinstance(t, EpisodeTask)}
    counted, calls, budgets = 0, 0, []
    for i in range(c.episodes):
        budgets.append(episode_budget(counted, 90, 40))
        counted += min(made[(i, budgets[-1])], budgets[-1])
        calls += made[(i, budgets[-1])]
    assert budgets == [40, 40, 31] and (counted, calls) == (c.budgeted, c.calls) == (90, 92)
    assert {k: n for k, n in made.items() if k[0] < c.episodes} == {
        (0, 40): 19, (1, 40): 41, (2, 10): 13, (2, 31): 32}
    # the stream pauses rather than ends while episodes are in flight: one cut short
    # leaves calls to make, and an episode past the last may be run ahead, unmerged
    assert all(i == c.episodes for i, _ in made if i >= c.episodes)


def test_episodes_without_violations_are_never_run_again():
    """An episode makes a few calls past its budget, which do not count towards the
    campaign's: with no violation every budget is known before the episodes before it
    are back, and no episode is run twice (the last one included)."""
    engine = Shuffled(2, window=2)
    setup = Setup(domains=1, grants=False)
    d = split_campaign(engine, setup, 100, 1, episode_calls=30)
    assert not d.findings and d.episodes == 4 and d.budgeted == 100 and d.calls > 100
    assert [(t.index, t.budget) for t in engine.tasks] == [(0, 30), (1, 30), (2, 30), (3, 10)]
    assert merged(d) == merged(campaign(setup, 100, 1, episode_calls=30))


def test_a_campaign_shorter_than_an_episode_runs_it_once():
    engine = Shuffled(0)
    d = split_campaign(engine, Setup(domains=1, grants=False), 30, 2, episode_calls=1000)
    assert [(t.index, t.budget) for t in engine.tasks] == [(0, 30)]
    assert merged(d) == merged(campaign(Setup(domains=1, grants=False), 30, 2, episode_calls=1000))


def test_a_failed_task_is_an_error_naming_it():
    class Failing:
        def map_unordered(self, fn, tasks, max_in_flight=None):
            for task in tasks:
                yield task, TaskFailed("BrokenProcessPool", "a worker died")
    with pytest.raises(RuntimeError, match="a campaign task failed on its worker: "
                                           "BrokenProcessPool: a worker died"):
        split_campaign(Failing(), SETUP, 100, 0, episode_calls=50)


def test_ctrl_c_keeps_the_episodes_merged_in_order():
    """Interrupted after three results: what is merged is the first episodes, as in one
    process; findings whose minimisation did not come back are kept whole."""
    engine = Shuffled(1, window=3, interrupt_after=3)
    d = split_campaign(engine, SETUP, 200, 4, episode_calls=40, minimise_findings=False)
    assert d.interrupted and d.episodes <= 3
    c = Campaign(SETUP, 4)
    for i in range(d.episodes):
        merge_episode(c, run_campaign_task(EpisodeTask(SETUP, 4, i, 40)))
    assert (d.calls, d.by_call, d.refused, list(d.findings)) == \
        (c.calls, c.by_call, c.refused, list(c.findings))
    for f in d.findings.values():
        if not f.minimised:
            assert f.minimal[-1] == f.violation.op and len(f.minimal) == f.violation.index + 1


# ---------------------------------------------------------------------------------------
# dedup by signature
# ---------------------------------------------------------------------------------------

def episode(seed: str, violations: list[FuzzViolation], tolerated: Counter | None = None):
    """An episode that ended on the last violation, the others tolerated before it."""
    *seen, last = violations
    log = [{"op": "mmu_update", "domain": "g1", "reqs": [[i, i]]} for i in range(last.index + 1)]
    return Episode(seed, last.index + 1, log, list(range(last.index + 1)), last, seen,
                   tolerated or Counter({v.signature: 1 for v in seen}),
                   Counter({"mmu_update": last.index + 1}), Counter())


def viol(kind: str, index: int, key: str, call: str = "mmu_update") -> FuzzViolation:
    op = {"op": call, "domain": "g1", "reqs" if call == "mmu_update" else "ops": [[0, 0]] * 2}
    return FuzzViolation(kind, f"{key} at call {index}", index, op, key)


def test_dedup_by_signature_counts_every_occurrence():
    c = Campaign(SETUP, 0)
    new = merge_episode(c, episode("0/0", [viol("audit", 4, "type")]))
    assert [f.violation.signature for f in new] == [("audit", "mmu_update", "type")]
    # the same kind, call and key in another episode (another frame, another call #): the same
    new = merge_episode(c, episode("0/1", [viol("xen-bug", 2, "XSA-167"),
                                           viol("audit", 7, "type")],
                                   Counter({("xen-bug", "mmu_update", "XSA-167"): 3})))
    assert [f.violation.signature for f in new] == [("xen-bug", "mmu_update", "XSA-167")]
    new = merge_episode(c, episode("0/2", [viol("xen-bug", 1, "XSA-182"),
                                           viol("audit", 3, "type", call="mmuext_op")]))
    assert [f.violation.signature for f in new] == [("xen-bug", "mmu_update", "XSA-182"),
                                                    ("audit", "mmuext_op", "type")]
    assert {sig: (f.seed, f.count) for sig, f in c.findings.items()} == {
        ("audit", "mmu_update", "type"): ("0/0", 2),
        ("xen-bug", "mmu_update", "XSA-167"): ("0/1", 3),
        ("xen-bug", "mmu_update", "XSA-182"): ("0/2", 1),
        ("audit", "mmuext_op", "type"): ("0/2", 1)}
    assert c.violations == 7 and c.episodes == 3 and c.calls == 5 + 8 + 4
    # a finding keeps its episode's calls up to it, not minimised yet
    f = c.findings[("xen-bug", "mmu_update", "XSA-167")]
    assert len(f.minimal) == 3 and f.minimal_rcs == [0, 1, 2] and not f.minimised


def test_dedup_stops_at_max_findings():
    c = Campaign(SETUP, 0)
    new = merge_episode(c, episode("0/0", [viol("xen-bug", 1, "XSA-167"),
                                           viol("audit", 2, "type")]), max_findings=1)
    assert len(new) == 1 and list(c.findings) == [("xen-bug", "mmu_update", "XSA-167")]


def test_signatures_keep_advisories_apart_and_frames_together():
    """A recorded bug's key is its text with frame numbers generalised; an advisory's
    number is kept (XSA-167 and XSA-182 are two bugs)."""
    assert generic_key("XSA-167") == "XSA-167" != generic_key("XSA-182")
    assert generic_key("L2 entry to mfn 0x3f drops 12") == \
        generic_key("L2 entry to mfn 0x41 drops 3") == "LN entry to mfn N drops N"


# ---------------------------------------------------------------------------------------
# the command: --workers, --scheduler, --out DIR
# ---------------------------------------------------------------------------------------

ARGS = ["--calls", "120", "--seed", "4", "--version", "4.1", "--faithful", "--domains", "1", "--no-grants",
        "--episode", "40"]


def test_out_dir_or_file(tmp_path):
    assert out_is_dir(tmp_path) and out_is_dir("new/") and not out_is_dir("repro.yaml")
    assert not out_is_dir(tmp_path / "repro")
    assert reproducer_path(tmp_path, 2) == tmp_path / "repro-2.yaml"
    assert reproducer_path("out/", 1).as_posix() == "out/repro-1.yaml"
    assert reproducer_path("out/r.yaml", 1).as_posix() == "out/r-1.yaml"     # as before


def test_cli_workers_write_one_reproducer_per_violation_each_replays(capsys, tmp_path,
                                                                       one_process):
    out = tmp_path / "found"
    rc, text, err = fuzz_cli(ARGS + ["--workers", "2", "--out", f"{out}/"], capsys)
    assert rc == 1 and err == ""
    assert ", on local, 2 worker processes" in text.splitlines()[1]
    listed = re.findall(r"^  (\d+)\. (\S+) in (\S+) \((.*)\), (\d+)x: (\d+) calls -> (.*)$",
                        text, re.M)
    want = [(sig, f.count, len(f.minimal)) for sig, f in one_process.findings.items()]
    assert [((k, c, key), int(n), int(calls)) for _, k, c, key, n, calls, _ in listed] == want
    files = [p for *_, p in listed]
    assert files == [str(out / f"repro-{k}.yaml") for k in (1, 2, 3)]
    assert sorted(p.name for p in out.iterdir()) == [f"repro-{k}.yaml" for k in (1, 2, 3)]
    for (sig, _, calls), path in zip(want, files):
        r = replay(path)                           # replays to its own violation
        assert r.violation is not None and r.violation.signature == sig and r.calls == calls
        assert main(["run", path]) == 1
        assert capsys.readouterr().out.strip() == str(r)


def test_cli_one_worker_and_two_print_the_same_tables(capsys):
    rc1, one, _ = fuzz_cli(ARGS + ["--no-minimise", "--keep-going"], capsys)
    rc2, two, _ = fuzz_cli(ARGS + ["--no-minimise", "--keep-going", "--workers", "2"], capsys)
    assert rc1 == rc2 == 1
    a, b = one.splitlines(), two.splitlines()
    assert a[0] == b[0] and a[2:] == b[2:]
    assert b[1].endswith(", on local, 2 worker processes") and "on local" not in a[1]
    assert re.sub(r", [\d.]+ s .*", "", a[1]) == re.sub(r", [\d.]+ s .*", "", b[1]) == \
        "calls made: 131 in 5 episode(s)"


def test_cli_bad_workers_and_scheduler(capsys):
    rc, out, err = fuzz_cli(["--workers", "0", "--domains", "0"], capsys)
    assert rc == 2 and out == "" and err.splitlines() == [
        "xensim: error: --domains: must be 1-8, got 0",
        "xensim: error: --workers: must be at least 1, got 0"]
    assert main(["fuzz", "--scheduler", "udp://x", "--calls", "10"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == ("xensim: error: --scheduler: expected local-dask or a "
                                 "scheduler address tcp://HOST:PORT, got 'udp://x'\n")


def test_cli_out_dir_that_is_a_file_is_refused_before_the_campaign(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    assert main(["fuzz", "--calls", "10", "--out", f"{tmp_path / 'f'}/sub/"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (f"xensim: error: --out: cannot create the directory "
                                 f"{tmp_path / 'f'}/sub/: {tmp_path / 'f'} is a file, not a "
                                 f"directory\n")


class SlowMinimising(Shuffled):
    """An engine in this process, results in the order the tasks were read (up to
    ``window`` in flight), except a minimisation's trials: held back until the task
    stream has nothing else to send (pauses or ends), as a minimisation far longer than
    the episodes would be on one worker while the others run the episodes."""

    def map_unordered(self, fn, tasks, max_in_flight=None):
        it = iter(tasks)
        buf, held = [], []
        while True:
            stalled = False
            while len(buf) < self.window:
                task = next(it, None)
                if task is None or task is PAUSE:
                    stalled = True
                    break
                self.tasks.append(task)
                (held if isinstance(task, TrialTask) else buf).append(task)
            if buf:
                task = buf.pop(0)
            elif held and stalled:
                task = held.pop(0)
            else:
                return
            self.done.append((task, fn(task)))
            yield self.done[-1]


def quick_steps(ops, signature, **kw):
    """A minimisation of one round of one trial (the whole list), ending on its last call."""
    yield [Trial(ops)]
    return ops[-1:]


def test_episodes_go_on_while_a_violation_is_minimised(monkeypatch):
    """The episode that found the first violation ends early (19 of its 40 calls): the
    episodes its calls are left to are sent while the violation is being minimised,
    not after it (a 2-core machine's second worker is not left idle). Each distinct
    violation is minimised once; the merged result is the one of one process."""
    monkeypatch.setattr("xensim.fuzz._split.minimise_steps", quick_steps)
    monkeypatch.setattr("xensim.fuzz._minimise.minimise_steps", quick_steps)
    kwargs = dict(episode_calls=40, tolerate=keep_going)
    c = campaign(SETUP, 90, 4, **kwargs)
    engine = SlowMinimising(0)
    said = []
    d = split_campaign(engine, SETUP, 90, 4, status=said.append, **kwargs)
    assert merged(d) == merged(c)
    trials = [k for k, t in enumerate(engine.tasks) if isinstance(t, TrialTask)]
    # each minimised once: its one trial, then the replay recording the reproducer's rcs
    assert Counter(engine.tasks[k].signature for k in trials) == \
        Counter({sig: 2 for sig in c.findings}) and len(c.findings) == 2
    back = [k for k, (t, _) in enumerate(engine.done) if isinstance(t, TrialTask)]
    after = [t for t in engine.tasks[trials[0] + 1:] if isinstance(t, EpisodeTask)]
    assert after, "no episode was sent while the violation was minimised"
    assert all(any(t is u for u, _ in engine.done[:back[0]]) for t in after)
    assert said[0] == "minimising 1 violation, 0 trials" and said[-1] is None
    assert all(x is None or re.fullmatch(r"minimising [12] violations?, \d+ trials", x)
               for x in said)


@pytest.mark.parametrize("order", [0, 1])
def test_trials_coming_back_in_any_order_give_the_reproducers_of_one_process(order):
    """A round's answer is its lowest failing trial once all before it are back: trials
    run at once, back in any order (speculative ones included), minimise to the same
    calls as one after the other in one process."""
    kwargs = dict(episode_calls=40, tolerate=keep_going)
    c = campaign(SETUP, 90, 4, **kwargs)
    engine = Shuffled(order, window=3)
    d = split_campaign(engine, SETUP, 90, 4, **kwargs)
    assert merged(d) == merged(c) and all(f.minimised for f in d.findings.values())
    assert sum(isinstance(t, TrialTask) for t in engine.tasks) > 2 * len(c.findings)


def test_one_task_per_worker_in_flight():
    """No task waits in a queue behind another: the engine is asked for one per worker."""
    class Recording(Shuffled):
        workers = 3

        def map_unordered(self, fn, tasks, max_in_flight=None):
            self.bound = max_in_flight
            return super().map_unordered(fn, tasks, max_in_flight)
    engine = Recording(0)
    split_campaign(engine, SETUP, 40, 4, episode_calls=40, minimise_findings=False)
    assert engine.bound == 3


def test_the_campaign_says_what_it_minimises(monkeypatch):
    """In one process: status() as the minimisation starts and after each of its
    replays, None when it is done; each distinct violation minimised once, in order."""
    minimised = []

    def three_replays(setup, f, *, tick=None, **kw):
        minimised.append((f.violation.signature, len(f.minimal)))
        for _ in range(3):
            tick()
        return f.minimal[-1:], f.minimal_rcs[-1:], True
    monkeypatch.setattr("xensim.fuzz._campaign.minimise_finding", three_replays)
    said = []
    c = campaign(SETUP, 90, 4, episode_calls=40, tolerate=keep_going, status=said.append)
    assert [sig for sig, _ in minimised] == list(c.findings) and minimised
    want = []
    for k, (_, n) in enumerate(minimised, 1):
        want += [f"minimising violation {k} ({n:,} calls)"] * 4 + [None]
    assert said == want
