"""The hostile-guest fuzzer (xensim/fuzz/, xensim/cli/_fuzz.py, docs/fuzzing.md).

* the seeded driver on every registered design (``sketch`` included: it must hold up
  sequentially; its race needs the concurrency explorer) and on every release;
* a Hypothesis RuleBasedStateMachine over the same actions on every design but sketch;
* the checks themselves: bugs injected with monkeypatch are caught, by the right check;
* minimisation, the YAML script and its replay; faithful mode's bugs are found and
  minimised to a short script;
* ``xensim fuzz`` (cmd_fuzz) through a tiny parser.

The seeded driver makes CALLS (9,000) calls per design in test_seeded_driver; with the
Hypothesis machine and the other runs, about 10,000 calls per design in all, every one
checked (docs/fuzzing.md gives the rates). Long campaigns are for ``xensim fuzz``.
"""

from __future__ import annotations

import argparse
import errno

import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

import xensim.designs._xen41 as xen41
import xensim.xen._mmu as mmu
import xensim.xen._refcount as refcount
from xensim import HYPERVISOR_mmu_update
from xensim.xen import PSE_BATCH_MIN
from xensim.xen.accel import PlainWriteBatch
from xensim import ConfigError
from conftest import fuzz_cli
from xensim.cli._fuzz import add_parser, reproducer_path
from xensim.designs import design_names
from xensim.fuzz import (ACTIONS, FuzzRunner, FuzzViolation, Fuzzer, Setup, campaign,
                         keep_going, load_script, minimise, replay, replay_ops, report,
                         run_episode, singles, to_script_yaml)
from xensim.guest._guest import DIRECTMAP_BASE
from xensim.xen._mmu import MmuUpdate
from xensim.xen._pagetable import _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER

DESIGNS = sorted(design_names())
VERSIONS = ("4.1", "4.5", "4.7", "4.8")
#: calls per design of the seeded driver, in episodes of EPISODE calls: with the state
#: machine's ~900 that is about 10k hostile calls per design in every CI run
CALLS, EPISODE = 9000, 500

#: known bugs the fuzzer may meet on its way in default mode (predicates on a violation;
#: each with its own strict-xfail test stating the right behaviour): tolerated, so that
#: the runs go on past them and can find others. Empty: every bug found so far is fixed
#: (the regression tests are below).
KNOWN: list = []


def known(v: FuzzViolation) -> bool:
    return any(k(v) for k in KNOWN)


def assert_clean(c) -> None:
    found = [f"{f.count}x {f.violation}" for f in c.findings.values() if not known(f.violation)]
    assert not found, "\n".join(found)


# ---------------------------------------------------------------------------------------
# the seeded driver
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("design", DESIGNS)
def test_seeded_driver(design):
    """Every design survives ~9,000 hostile calls with every check after every call.
    (sketch too: its bug is a race, invisible sequentially.)"""
    c = campaign(Setup(design=design), CALLS, seed=11, episode_calls=EPISODE,
                 minimise_findings=False, tolerate=known)
    assert c.calls >= CALLS
    assert_clean(c)
    # the guests mostly succeed: the hostile calls meet a machine full of state
    refused = sum(n for (_, e), n in c.refused.items() if e != "short")
    assert refused < 0.6 * c.calls
    assert c.by_call["mmu_update"] > c.calls // 3
    assert all(c.by_call[k] for k in ("mmuext_op/mark_super", "mmuext_op/unmark_super",
                                      "memory_op/decrease_reservation", "update_va_mapping",
                                      "mmu_update/machphys", "destroy_domain"))


@pytest.mark.parametrize("version", ["4.1", "4.5", "4.7"])
@pytest.mark.parametrize("design", ["xen-4.1", "superpage-info"])
def test_seeded_driver_releases(design, version):
    """The releases' MARK/UNMARK check orders, default mode (4.8 is covered above)."""
    c = campaign(Setup(design=design, version=version, domains=2), 500, seed=5,
                 episode_calls=EPISODE, minimise_findings=False, tolerate=known)
    assert_clean(c)


def test_seeded_driver_4_22_linear_page_tables(monkeypatch):
    """Xen 4.22 (none: Xen itself; xen-4.1: hypothetical): a campaign ends clean, and
    the fuzzer's linear entries meet XSA-240's one-level rule both ways
    (get_lN_linear_pagetable's inc_linear_entries / inc_linear_uses refusing, 6987fc7558)
    while others are taken and counted (the auditor recounting linear_pt_count after
    every call)."""
    from xensim.xen import _linear
    seen = {"entries": [0, 0], "uses": [0, 0]}
    for name, f in (("entries", _linear._inc_linear_entries), ("uses", _linear._inc_linear_uses)):
        def counted(counts, page, f=f, name=name):
            ok = f(counts, page)
            seen[name][ok] += 1
            return ok
        monkeypatch.setattr(_linear, f"_inc_linear_{name}", counted)
    for design in ("none", "xen-4.1"):
        before = seen["entries"][True]
        c = campaign(Setup(design=design, version="4.22", domains=2), 3000, seed=7,
                     episode_calls=EPISODE, minimise_findings=False, tolerate=known)
        assert_clean(c)
        assert seen["entries"][True] > before                     # linear entries taken
    assert seen["uses"][True]
    assert seen["entries"][False] and seen["uses"][False]         # and refused, both ways


MiB = 1 << 20


@pytest.mark.parametrize("setup", [
    Setup(domains=4, pdx="mask"),
    Setup(design="superpage-info", allow_superpage=False),
    Setup(design="per-mapping", ram=((0, 24 * MiB),)),                  # memory runs out
    Setup(ram=((0, 8 * MiB), (16 * MiB, 40 * MiB + 3 * 4096)), pdx="mask"),
], ids=["4-guests-mask-pdx", "superpages-off", "24MiB", "ragged-holey"])
def test_seeded_driver_machines(setup):
    c = campaign(setup, 500, seed=3, episode_calls=EPISODE, minimise_findings=False,
                 tolerate=known)
    assert_clean(c)
    if not setup.allow_superpage:
        assert c.refused[("mmuext_op/mark_super", "EOPNOTSUPP")]
    if setup.ram == ((0, 24 * MiB),):
        assert c.refused[("memory_op/populate_physmap", "short")]


def test_episode_is_deterministic():
    a = run_episode(Setup(), "same", 300)
    b = run_episode(Setup(), "same", 300)
    c = run_episode(Setup(), "other", 300)
    assert a.log == b.log and a.rcs == b.rcs
    assert a.log != c.log


def test_episode_replays_from_its_log():
    """An episode's log replayed on a fresh machine gives the same rcs and no violation."""
    ep = run_episode(Setup(design="superpage-info"), "replay", 400)
    assert ep.violation is None
    v, run = replay_ops(Setup(design="superpage-info"), ep.log, finish=False)
    assert v is None
    assert run.rcs == ep.rcs[:len(run.rcs)]


def test_teardown_gives_every_frame_back():
    f = Fuzzer(Setup(), "teardown")
    f.start()
    for _ in range(200):
        f.random_call()
    assert f.m.heap.free_frames < f.m.memmap.ram_frames
    f.finish()
    assert set(f.m.domains) == {0}
    assert f.m.heap.free_frames == f.m.memmap.ram_frames


def test_singles_split():
    op = {"op": "mmu_update", "domain": "g1", "reqs": [[1, 2], [3, 4]]}
    assert singles(op) == [{**op, "reqs": [[1, 2]]}, {**op, "reqs": [[3, 4]]}]
    dec = {"op": "memory_op", "domain": "g1", "cmd": "decrease_reservation", "order": 9,
           "extents": [0x400]}
    parts = singles(dec)
    assert len(parts) == 512 and parts[3] == {**dec, "order": 0, "extents": [0x403], "nr": 1}
    bad = {"op": "memory_op", "domain": "g1", "cmd": "populate_physmap", "order": 0,
           "extents": [1], "nr": 3}
    assert singles(bad) == [bad]                      # 0 done before anything: one request


# ---------------------------------------------------------------------------------------
# bugs the fuzzer found (regression tests: each was a strict xfail until fixed)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("val", [1 << 63, (1 << 64) - 1])
def test_machphys_update_of_a_64_bit_value(val):
    """MMU_MACHPHYS_UPDATE stores any 64-bit value (Xen's M2P holds unsigned longs; ~0UL is
    INVALID_M2P_ENTRY). Found by the fuzzer: the int64 M2P raised OverflowError for values
    >= 2^63 (xen/_mmu.py, mmu_update_one); fixed (stored in two's complement)."""
    run = FuzzRunner(Setup(domains=1))
    run.step({"op": "create_domain", "name": "g1", "max_pages": 1024})
    run.step({"op": "memory_op", "domain": "g1", "cmd": "populate_physmap", "order": 0,
              "extents": [0]})
    mfn = run.m.domains[run.doms["g1"]].p2m.get(0)
    res = run.step({"op": "mmu_update", "domain": "g1", "reqs": [[(mfn << 12) | 1, val]]})
    assert res.rc == 0
    assert run.m.m2p.get(mfn) == (-1 if val == (1 << 64) - 1 else val - (1 << 64))


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("first", ["unaligned", "ragged", "beyond"])
def test_pse_batch_whose_first_request_is_bad(design, first):
    """A batch of 8 PSE maps into one live L2 table (the vectorised path's shape) whose
    first request is bad: -EINVAL at request 0, nothing done, nothing changed. Found by the
    fuzzer: the PSE batch accelerator (accel.PseBatch) called get_superpages with an empty prefix and the
    counted designs (superpage-info, pageinfo-count, sketch) raised IndexError; fixed."""
    f = Fuzzer(Setup(design=design), "prefix", batch_check=False)
    f.start()
    g = f.live_guests()[0]
    l2 = f.tables(g)[2][0]
    m = f.m
    bad = {"unaligned": g.kernel.superpage_mfns(0, 1)[0] + 1,
           "ragged": (m.max_page - 1) // 512 * 512,          # valid MFN, mfn + 511 is not
           "beyond": m.max_page // 512 * 512 + 512}[first]
    sps = [bad] + g.kernel.superpage_mfns(0, 6) + [g.kernel.superpage_mfns(0, 1)[0]]
    flags = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_PSE
    reqs = [MmuUpdate((l2 << 12) | (300 + i) * 8, (sp << 12) | flags) for i, sp in enumerate(sps)]
    snap = m.snapshot()
    done = [0]
    assert m.hypercall(g.domid, HYPERVISOR_mmu_update, reqs, done) == -errno.EINVAL
    assert done == [0]
    assert m.same_as(snap)


# ---------------------------------------------------------------------------------------
# the checks catch injected bugs
# ---------------------------------------------------------------------------------------

def started(design="xen-4.1", seed="inject"):
    f = Fuzzer(Setup(design=design), seed)
    f.start()
    return f


def test_check_unchanged_catches_a_trace_left_by_a_refused_call(monkeypatch):
    real = mmu._unpin

    def leaky(m, mfn, d, *vcpu):
        rc = real(m, mfn, d, *vcpu)
        if rc < 0:
            m.mem.write(d.baseptr, 300, 0x1234000)     # a trace outside the request journal
        return rc
    monkeypatch.setattr(mmu, "_unpin", leaky)
    f = started()
    g = f.live_guests()[0]
    with pytest.raises(FuzzViolation) as e:
        f.step({"op": "mmuext_op", "domain": g.name, "ops": [["unpin_table", 0x7fff]]})
    assert e.value.kind == "unchanged" and "contents of frame" in e.value.detail


def test_check_batch_catches_a_vectorised_path_that_differs(monkeypatch):
    """The vectorised PSE batch forgets the owner check: a batch maps another guest's
    DYNAMIC superpage that the same request alone is refused."""
    real = xen41.Xen41.get_superpages
    f = started()

    def no_owner_check(self, mfns, d, rw):
        faithful, f.m.faithful = f.m.faithful, True
        try:
            return real(self, mfns, d, rw)
        finally:
            f.m.faithful = faithful
    monkeypatch.setattr(xen41.Xen41, "get_superpages", no_owner_check)
    g, h = f.live_guests()[:2]
    l2 = f.tables(g)[2][0]
    theirs = h.kernel.superpage_mfns(0, 2)                 # mapped by h at setup: DYNAMIC
    flags = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_PSE
    sps = theirs[:1] + g.kernel.superpage_mfns(0, 6) + theirs[1:]
    reqs = [[(l2 << 12) | (200 + i) * 8, (sp << 12) | flags] for i, sp in enumerate(sps)]
    assert len(reqs) >= PSE_BATCH_MIN
    with pytest.raises(FuzzViolation) as e:
        f.step({"op": "mmu_update", "domain": g.name, "reqs": reqs})
    assert e.value.kind == "batch" and e.value.key == "count"
    assert "rc 0 done 8/8" in e.value.detail and "0 done, then EPERM" in e.value.detail


def test_check_batch_catches_a_vectorised_extent_removal_that_differs(monkeypatch):
    """The accelerated removal of a 2 MiB extent (RemoveRun's remove_run) miscounts
    tot_pages: the extent's frames removed again one by one (guest_remove_page) end
    elsewhere."""
    import xensim.xen.accel._removal as removal
    real = removal.remove_run

    def miscounts(m, d, mfn, n):
        k = real(m, d, mfn, n)
        if k:
            d.tot_pages += 1
        return k
    monkeypatch.setattr(removal, "remove_run", miscounts)
    f = started()
    g = f.live_guests()[0]
    d = f.m.domains[g.domid]
    sp = g.kernel.superpage_mfns(0, 6)[5]
    tot = d.tot_pages
    with pytest.raises(FuzzViolation) as e:
        f.step({"op": "memory_op", "domain": g.name, "cmd": "decrease_reservation", "order": 9,
                "extents": [sp]})
    assert e.value.kind == "batch" and e.value.key == "state"
    # the frames stay mapped, so nothing is freed: one by one, tot_pages stays; the call +1
    assert e.value.detail.endswith(f"dom{g.domid}.tot_pages: {tot} vs {tot + 1}")


def _plain_writes(f, n):
    """(guest, frame, op): ``n`` ordinary writes into a frame of the first guest's own
    that is not a page table (the shape of a fallback L1 table being filled)."""
    g = f.live_guests()[0]
    mfn = g.kernel.superpage_mfns(0, 6)[5] + 3
    assert not f.m.pt.live_level(f.m.mfn_to_page(mfn))
    reqs = [[(mfn << 12) | i * 8, (0x1000 * i) | 1] for i in range(n)]
    return g, mfn, {"op": "mmu_update", "domain": g.name, "reqs": reqs}


@pytest.mark.parametrize("n, calls", [(16, 3), (PSE_BATCH_MIN - 1, PSE_BATCH_MIN)])
def test_check_batch_replays_a_plain_write_batch_by_its_loop(n, calls):
    """A batch of ordinary writes done at once (PlainWriteBatch) is checked by its
    per-request loop, stepwise: its first two requests a call each, the second leaving the
    machine as the first did, the other 14 written (xensim.fuzz._plain_writes): 3
    hypercalls; a shorter one, which the loop runs, by its n requests one call each: n + 1."""
    f = started("none")
    g, mfn, op = _plain_writes(f, n)
    seen = []
    with f.m.events.listening(hypercall_enter=lambda caller, number, args: seen.append(number)):
        assert f.step(op).rc == 0
    assert seen == [HYPERVISOR_mmu_update] * calls
    assert f.m.mem.read(mfn, n - 1) == (0x1000 * (n - 1)) | 1


def test_check_batch_catches_a_plain_write_batch_that_miscounts(monkeypatch):
    """The batch of ordinary writes done at once (PlainWriteBatch) keeps a general reference
    on the frame it writes: the same call by its per-request loop (stepwise) ends one
    count lower."""
    real = PlainWriteBatch.apply

    def keeps_a_reference(self, m, reqs, done, pt_owner, pg_owner, normal_ok, machphys_ok):
        rc = real(self, m, reqs, done, pt_owner, pg_owner, normal_ok, machphys_ok)
        if rc == 0:
            m.refs.get_page(m.mfn_to_page(reqs[0].ptr >> 12), pt_owner.domid)
        return rc
    f = started("none")                  # (its guests' fallback L1 tables: such batches)
    monkeypatch.setattr(PlainWriteBatch, "apply", keeps_a_reference)
    g, mfn, op = _plain_writes(f, 16)
    ci = f.m.frame_table.count_info(f.m.mfn_to_page(mfn))
    with pytest.raises(FuzzViolation) as e:
        f.step(op)
    assert e.value.kind == "batch" and e.value.key == "state"
    assert "per-request loop" in e.value.detail
    assert e.value.detail.endswith(f"mfn {mfn:#x} count_info {ci:#x} vs {ci + 1:#x}")


def test_check_isolation_catches_a_missing_owner_check(monkeypatch):
    real = refcount.RefCounts.get_page

    def no_owner(self, page, d):
        owner = self.ft.owner(page)
        return real(self, page, owner if owner != 0xFFFF else d)
    monkeypatch.setattr(refcount.RefCounts, "get_page", no_owner)
    f = started()
    g, h = f.live_guests()[:2]
    l1 = f.tables(g)[1][0]
    theirs = h.kernel.superpage_mfns(0, 1)[0] + 7
    with pytest.raises(FuzzViolation) as e:
        f.step({"op": "mmu_update", "domain": g.name,
                "reqs": [[(l1 << 12) | 40 * 8, (theirs << 12) | _PAGE_PRESENT]]})
    assert e.value.kind in ("audit", "isolation")
    assert f"owner dom{h.domid}" in e.value.detail or f"owned by dom{h.domid}" in e.value.detail


def test_check_zombie_catches_marks_left_at_destruction(monkeypatch):
    f = started()
    monkeypatch.setattr(f.m.design_host, "relinquish", lambda domid: None)   # marks kept
    g = f.live_guests()[0]
    assert f.m.domains[g.domid].marked                      # the setup marked one
    with pytest.raises(FuzzViolation) as e:
        f.step({"op": "destroy_domain", "domain": g.name})
    assert e.value.kind == "zombie"


def test_check_crash_catches_an_exception(monkeypatch):
    def boom(self, mfn, d):
        raise refcount.RefcountBug("injected")
    f = started()
    monkeypatch.setattr(xen41.Xen41, "mark_superpage", boom)
    g = f.live_guests()[0]
    mfn = g.kernel.superpage_mfns(0, 2)[1]
    with pytest.raises(FuzzViolation) as e:
        f.step({"op": "mmuext_op", "domain": g.name, "ops": [["mark_super", mfn]]})
    assert e.value.signature == ("crash", "mmuext_op", "RefcountBug")


def test_tolerated_violations_are_counted_and_the_run_goes_on(monkeypatch):
    def boom(self, mfn, d):
        raise refcount.RefcountBug("injected")
    monkeypatch.setattr(xen41.Xen41, "mark_superpage", boom)
    with pytest.raises(FuzzViolation):
        started()                                            # the setup marks a superpage
    ep = run_episode(Setup(), "tolerate", 400, tolerate=keep_going)
    assert ep.violation is None
    assert ep.tolerated[("crash", "mmuext_op", "RefcountBug")] >= 3
    assert ep.seen[0].signature == ("crash", "mmuext_op", "RefcountBug")
    assert ep.calls >= 400


# ---------------------------------------------------------------------------------------
# minimisation, the YAML script, replay
# ---------------------------------------------------------------------------------------

def _leaky_get_page(monkeypatch):
    real = refcount.RefCounts.get_page

    def no_owner(self, page, d):
        owner = self.ft.owner(page)
        return real(self, page, owner if owner != 0xFFFF else d)
    monkeypatch.setattr(refcount.RefCounts, "get_page", no_owner)


def test_minimise_and_replay_an_injected_bug(monkeypatch, tmp_path):
    _leaky_get_page(monkeypatch)
    setup = Setup(domains=2)
    ep = run_episode(setup, "minimise", 400)
    v = ep.violation
    assert v is not None
    ops = ep.log[:v.index + 1]
    small = minimise(setup, ops, v.signature, rcs=ep.rcs, max_seconds=60)
    assert len(small) <= 12 < len(ops)
    text = to_script_yaml(setup, small, comment=str(v))
    data = yaml.safe_load(text)
    assert data["workload"]["kind"] == "script"
    assert data["hypervisor"]["superpage"] == "xen-4.1"
    path = tmp_path / "repro.yaml"
    path.write_text(text)
    setup2, ops2 = load_script(path)
    assert ops2 == small and setup2.design == setup.design and setup2.ram == setup.ram
    r = replay(path)
    assert r.violation is not None and r.violation.signature == v.signature
    monkeypatch.undo()
    assert replay(path).violation is None                  # without the bug: clean


def test_script_yaml_round_trips_every_op_kind(tmp_path):
    ops = [{"op": "create_domain", "name": "g1", "max_pages": 1024},
           {"op": "memory_op", "domain": "g1", "cmd": "populate_physmap", "order": 9,
            "extents": [0]},
           {"op": "memory_op", "domain": "g1", "cmd": "increase_reservation", "order": 0,
            "extents": None, "nr": 2},
           {"op": "mmu_update", "domain": "g1", "reqs": [[0x1000, 0x2067]], "foreign": "g1"},
           {"op": "mmuext_op", "domain": "g1", "ops": [["pin_l4_table", 0x10], [99, 0]]},
           {"op": "update_va_mapping", "domain": "g1", "va": DIRECTMAP_BASE, "val": 1 << 63},
           {"op": "destroy_domain", "domain": "g1"}]
    text = to_script_yaml(Setup(faithful=True, version="4.1"), ops, rcs=[1, 1, 2, -22, -22, -22, 0])
    assert "# rc -22 (EINVAL)" in text
    p = tmp_path / "s.yaml"
    p.write_text(text)
    setup, back = load_script(p)
    assert back == ops
    assert setup.faithful and setup.version == "4.1"
    r = replay(p)
    assert r.violation is None and r.calls == len(ops) and r.rcs[0] == 1


def test_load_script_rejects_unknown_ops(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("workload:\n  kind: script\n  ops:\n    - {op: reboot, domain: g1}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:4: workload\.ops\[0\]\.op: bad choice "
                                          r"'reboot'; choose from: create_domain, "):
        load_script(p)
    p.write_text("workload:\n  kind: random\n")
    with pytest.raises(ValueError, match="not a script workload"):
        load_script(p)


def test_unknown_domain_names_are_esrch():
    run = FuzzRunner(Setup())
    assert run.step({"op": "mmu_update", "domain": "nobody", "reqs": [[0, 0]]}).rc == -errno.ESRCH
    assert run.step({"op": "destroy_domain", "domain": "nobody"}).rc == -errno.ESRCH


@pytest.mark.parametrize("version", ["4.1", "4.5"])
def test_faithful_mode_bugs_are_found_and_minimised(version):
    """Faithful 4.1/4.5 lets Xen's own bugs through: the fuzzer finds one within a few
    thousand calls and minimises it to a short script that reproduces it."""
    setup = Setup(version=version, faithful=True, domains=2)
    c = campaign(setup, 600, seed=1, episode_calls=200, minimise_seconds=60, max_findings=1)
    assert c.findings
    kinds = {sig[0] for sig in c.findings}
    assert kinds & {"audit", "isolation", "xen-bug", "zombie", "teardown"}
    f = next(iter(c.findings.values()))
    assert len(f.minimal) <= 15
    v, _ = replay_ops(setup, f.minimal)
    assert v is not None and v.signature == f.violation.signature
    assert "violations: " in report(c)


# ---------------------------------------------------------------------------------------
# xensim fuzz
# ---------------------------------------------------------------------------------------

def test_cli_clean_run(capsys):
    rc, out, err = fuzz_cli(["--calls", "300", "--seed", "2", "--design", "per-mapping",
                            "--episode", "300"], capsys)
    assert rc == 0
    assert "design per-mapping, Xen 4.8, 3 domains, seed 2" in out
    assert "calls made: 3" in out and "calls/s" in out
    assert "refused by errno" in out and "EINVAL" in out
    assert "violations: 0 (0 expected)" in out
    assert err == ""                                  # not a TTY: no progress line


def test_cli_progress_on_a_tty(capsys, monkeypatch):
    from xensim.output import _progress
    init = _progress.Progress.__init__
    monkeypatch.setattr(_progress.Progress, "__init__",
                        lambda self, *a, **k: init(self, *a, **dict(k, delay=0, interval=0)))
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    rc, out, err = fuzz_cli(["--calls", "200", "--episode", "100", "--domains", "2"], capsys)
    assert rc == 0 and "\rfuzz [" in err and "/200 calls " in err and ", ETA " in err
    assert err.endswith("\r")                          # the bar's line is cleared
    rc, out, err = fuzz_cli(["--calls", "100", "--quiet"], capsys)
    assert err == ""


def test_cli_finds_writes_and_replays_a_violation(capsys, tmp_path):
    out_file = tmp_path / "found.yaml"
    rc, out, err = fuzz_cli(["--calls", "600", "--seed", "1", "--version", "4.1", "--faithful",
                            "--domains", "2", "--episode", "200", "--max-findings", "1",
                            "--out", str(out_file)], capsys)
    assert rc == 1
    assert "(faithful mode reproduces Xen's bugs)" in out
    assert "kind: script" not in out                           # summarised, not dumped
    written = tmp_path / "found-1.yaml"
    lines = out.splitlines()
    i = lines.index("reproducers (`xensim run FILE` replays one with every check):")
    assert len(lines) == i + 2 and lines[i + 1].startswith("  1. ")
    assert lines[i + 1].endswith(f" calls -> {written}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["found-1.yaml"]
    out_file = written
    r = replay(out_file)
    assert r.violation is not None
    assert "# replay: xensim run FILE" in out_file.read_text()
    # `xensim run` replays the reproducer with every check and fails the same way
    from xensim.cli._main import main
    assert main(["run", str(out_file)]) == 1
    printed = capsys.readouterr().out
    assert printed.strip() == str(r)
    assert printed.startswith(f"replayed {r.calls} calls: ")


def test_cli_errors(capsys):
    rc, out, err = fuzz_cli(["--design", "nope"], capsys)
    assert rc == 2 and "unknown design 'nope'" in err
    rc, out, err = fuzz_cli(["--domains", "0"], capsys)
    assert rc == 2 and err == "xensim: error: --domains: must be 1-8, got 0\n"


def test_cli_each_bad_argument_has_its_own_line(capsys):
    rc, out, err = fuzz_cli(["--design", "nope", "--domains", "9", "--calls", "0",
                            "--episode", "-1", "--max-findings", "0"], capsys)
    assert rc == 2 and out == ""
    assert err.splitlines() == [
        "xensim: error: --design: unknown design 'nope'; choose from " + ", ".join(DESIGNS),
        "xensim: error: --domains: must be 1-8, got 9",
        "xensim: error: --calls: must be at least 1, got 0",
        "xensim: error: --episode: must be at least 1, got -1",
        "xensim: error: --max-findings: must be at least 1, got 0"]


@pytest.mark.parametrize("domains", [1, 8])
def test_cli_domains_help_check_and_behaviour_agree(capsys, domains):
    """--help says 1-8; both ends are accepted and run that many guests."""
    p = argparse.ArgumentParser(prog="xensim")
    add_parser(p.add_subparsers(dest="command"))
    helps = {a.dest: a.help for a in p._subparsers._group_actions[0].choices["fuzz"]._actions}
    assert helps["domains"] == "guests at a time, 1-8 (default 3)"
    rc, out, err = fuzz_cli(["--calls", "60", "--episode", "60", "--domains", str(domains)], capsys)
    assert rc == 0 and f", {domains} domains, seed 0" in out


def test_reproducer_files_are_numbered():
    assert [reproducer_path("repro.yaml", k).name for k in (1, 2, 10)] == \
        ["repro-1.yaml", "repro-2.yaml", "repro-10.yaml"]
    assert reproducer_path("out/repro", 3).as_posix() == "out/repro-3.yaml"


def test_cli_out_without_violation(capsys, tmp_path):
    out_file = tmp_path / "none.yaml"
    rc, out, err = fuzz_cli(["--calls", "100", "--out", str(out_file)], capsys)
    assert rc == 0 and not out_file.exists() and "nothing written" in out


# ---------------------------------------------------------------------------------------
# the Hypothesis state machine, on every design but sketch
# ---------------------------------------------------------------------------------------

#: the actions, repeated by weight (Hypothesis draws uniformly from the list)
ACTION_LIST = [a for a, w in sorted(ACTIONS.items()) for _ in range(max(1, round(w / 3)))]


class FuzzMachine(RuleBasedStateMachine):
    """Hypothesis drives which action each guest takes and every random choice in it
    (st.randoms: shrinkable); every call is checked by the fuzzer's Runner."""
    design = "xen-4.1"

    @initialize(version=st.sampled_from(VERSIONS), domains=st.integers(2, 3))
    def boot(self, version, domains):
        self.broken = False
        self.f = Fuzzer(Setup(design=self.design, version=version, domains=domains), 0,
                        tolerate=known)
        self.f.start()

    @rule(action=st.sampled_from(ACTION_LIST), r=st.randoms(use_true_random=False))
    def call(self, action, r):
        try:
            self.f.act(action, r)
        except BaseException:
            self.broken = True
            raise

    def teardown(self):
        if hasattr(self, "f") and not self.broken:
            self.f.finish()


for _design in DESIGNS:
    if _design == "sketch":               # buggy under concurrency: the race explorer
        continue
    _name = "TestFuzzMachine_" + _design.replace("-", "_").replace(".", "")
    _cls = type(_name[4:], (FuzzMachine,), {"design": _design})
    _cls.TestCase.settings = settings(max_examples=15, stateful_step_count=60, deadline=None,
                                      derandomize=True, print_blob=True,
                                      suppress_health_check=list(HealthCheck))
    globals()[_name] = _cls.TestCase


# ---------------------------------------------------------------------------------------
# Ctrl-C (the real signal: tests/cli/test_interrupt.py)
# ---------------------------------------------------------------------------------------

def test_campaign_ctrl_c_mid_episode_counts_the_calls_made():
    def tick(n):
        if n >= 150:
            raise KeyboardInterrupt
    c = campaign(Setup(domains=2), 10_000, seed=3, episode_calls=100, tick=tick)
    assert c.interrupted and c.calls == 150 and c.episodes == 2
    assert sum(c.by_call.values()) == 150
    assert "calls made: 150 in 2 episode(s)" in report(c)
    assert ", interrupted: a partial summary" in report(c)


def test_campaign_ctrl_c_while_minimising_keeps_the_finding_whole(monkeypatch):
    from xensim.fuzz import _campaign

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(_campaign, "minimise", interrupted)
    c = campaign(Setup(version="4.1", faithful=True, domains=2), 600, seed=1, episode_calls=200)
    assert c.interrupted and len(c.findings) == 1
    f = next(iter(c.findings.values()))
    assert not f.minimised and f.minimal and f.minimal[-1] == f.violation.op
    assert len(f.minimal) == f.violation.index + 1
    assert "# xensim fuzz: reproducer (not minimised) (" in _campaign.finding_yaml(c, f)


@pytest.mark.parametrize("version", ["4.1", "4.8"])
@pytest.mark.parametrize("design", ["xen-4.1", "none"])
def test_seeded_driver_several_vcpus(design, version):
    """Guests of three vCPUs: calls from any of them (and from one they do not have),
    NEW_BASEPTR and NEW_USER_BASEPTR valid and hostile (do_mmuext_op, Xen 4.1 and 4.8);
    both auditors after every call, and they agree; nothing found."""
    c = campaign(Setup(design=design, version=version, vcpus=3, audit="both", grants=False),
                 600, seed=7,
                 episode_calls=300, minimise_findings=False, tolerate=known)
    assert_clean(c)


def test_several_vcpus_generate_user_base_pointers_from_every_vcpu():
    """The generator with three vCPUs per guest: guests created with them, user L4s
    pinned and loaded at set-up, NEW_USER_BASEPTR (an L4, 0, a hostile frame) among the
    base-pointer requests, calls from vCPUs 1 and 2 and from one the guests lack (-ESRCH)."""
    f = Fuzzer(Setup(vcpus=3), 5)
    f.start()
    for _ in range(1500):
        f.random_call()
    log = f.log
    assert all(op.get("vcpus") == 3 for op in log if op["op"] == "create_domain")
    users = [o for op in log if op["op"] == "mmuext_op" for o in op["ops"]
             if o[0] == "new_user_baseptr"]
    assert len(users) > 10 and any(o[1] == 0 for o in users)
    assert {op.get("vcpu", 0) for op in log if op["op"] in ("mmuext_op", "update_va_mapping")} \
        == {0, 1, 2, 3}
    f.finish()
