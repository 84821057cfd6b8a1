"""Shared fixtures and helpers: small machines, hypercalls that audit after every step,
the two-domain layout of the page-table tests and the check that a refusal changes nothing."""

from __future__ import annotations

import argparse
import contextlib
import copy
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from xensim import (DOMID_SELF, HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                    MMU_NORMAL_PT_UPDATE, XENMEM_populate_physmap, Machine, MemoryMap, MmuUpdate,
                    XenMemoryReservation, audit)

MiB = 1 << 20


def small_machine(pdx: str = "none") -> Machine:
    """64 MiB of RAM at [0, 64 MiB): frames 0..0x3fff, 32 superpages, one PDX group."""
    return Machine(MemoryMap([(0, 64 * MiB)], name="small"), pdx)


def holey_machine() -> Machine:
    """RAM [0, 8 MiB) and [16 MiB, 24 MiB): frames 0..0x7ff and 0x1000..0x17ff, a hole between."""
    return Machine(MemoryMap([(0, 8 * MiB), (16 * MiB, 24 * MiB)], name="holey"), "none")


def assert_clean(m: Machine) -> None:
    rep = audit(m)
    assert rep.ok, str(rep)


def machine_state(m: Machine) -> tuple:
    """Everything a call may change, statistics, TLB clock and stamps included: two runs
    that must agree bit for bit (a vectorised path and its loop) compare this."""
    return (m.snapshot(), m.refs.stats.as_dict(), m.hypercall.as_dict(), sorted(m.domains),
            m.refs.tlbflush_clock, sorted(m.refs.tlbflush_time.items()),
            m.refs.tlb.capture_stamps(),
            [(d.domid, d.p2m.count) for d in m.domains.values()], m.m2p.count,
            sorted(m.mem.frames()), dict(m.pt_stats))


def hc(m: Machine, caller: int, number: int, *args, vcpu: int = 0) -> int:
    """Issue a hypercall (from vCPU ``vcpu``), then run the auditor: every step of a test
    is audited."""
    rc = m.hypercall(caller, number, *args, vcpu=vcpu)
    assert_clean(m)
    return rc


def mmu(m: Machine, caller: int, *reqs, foreigndom: int = DOMID_SELF) -> tuple[int, int]:
    """One audited mmu_update batch of (ptr, val) requests: (rc, done)."""
    done = [-1]
    rc = hc(m, caller, HYPERVISOR_mmu_update, [MmuUpdate(p, v) for p, v in reqs], done, foreigndom)
    return rc, done[0]


def ext(m: Machine, caller: int, *ops, foreigndom: int = DOMID_SELF,
        vcpu: int = 0) -> tuple[int, int]:
    """One audited mmuext_op batch (from vCPU ``vcpu``): (rc, done)."""
    done = [-1]
    rc = hc(m, caller, HYPERVISOR_mmuext_op, list(ops), done, foreigndom, vcpu=vcpu)
    return rc, done[0]


def populate(m: Machine, domid: int, gpfns: list[int], order: int) -> list[int]:
    """populate_physmap; returns the first MFN of each extent (asserts all were done)."""
    res = XenMemoryReservation(list(gpfns), len(gpfns), order)
    assert hc(m, domid, HYPERVISOR_memory_op, XENMEM_populate_physmap, res) == len(gpfns)
    return res.extent_start


def ptr(table: int, index: int, cmd: int = MMU_NORMAL_PT_UPDATE) -> int:
    """An mmu_update request's ptr: entry ``index`` of the table at MFN ``table``, and the command."""
    return (table << 12) | (index * 8) | cmd


def two_domains(m: Machine, guest_superpages: tuple[int, ...], other_superpage: int,
                vcpus: int = 1) -> SimpleNamespace:
    """The page-table tests' layout on a fresh machine: the guest (its first domain) gets a
    superpage at gpfn 0, 16 frames at gpfns 512.. (MFNs 0x200..0x20f) and a superpage at gpfn
    1024, 2048 ... for each further entry of ``guest_superpages`` (the MFNs each must land at);
    the other domain a superpage (at ``other_superpage``) and 8 frames (MFNs 0x210..0x217).
    Nothing is pinned. ``d`` is the guest's Domain."""
    g = m.create_domain("guest", 2048, vcpus=vcpus)
    o = m.create_domain("other", 2048)
    assert populate(m, g, [0], 9) == [guest_superpages[0]]
    assert populate(m, g, range(512, 528), 0) == list(range(0x200, 0x210))
    for i, sp in enumerate(guest_superpages[1:], 1):
        assert populate(m, g, [1024 * i], 9) == [sp]
    assert populate(m, o, [0], 9) == [other_superpage]
    assert populate(m, o, range(512, 520), 0) == list(range(0x210, 0x218))
    return SimpleNamespace(m=m, g=g, o=o, d=m.domain(g))


def refused(m: Machine, call, expected) -> None:
    """``call()`` answers ``expected`` (a refusal) and leaves the machine as it was."""
    snap = m.snapshot()
    assert call() == expected
    assert m.same_as(snap)


def refused_mmu(m: Machine, caller: int, reqs, err: int) -> None:
    """An mmu_update batch of (ptr, val) requests refused at its first request with -err,
    nothing changed."""
    refused(m, lambda: mmu(m, caller, *reqs), (-err, 0))


def refused_ext(m: Machine, caller: int, ops, err: int, foreigndom: int = DOMID_SELF,
                vcpu: int = 0) -> None:
    """An mmuext_op batch refused at its first op with -err, nothing changed."""
    refused(m, lambda: ext(m, caller, *ops, foreigndom=foreigndom, vcpu=vcpu), (-err, 0))


def words(m, mfn: int) -> tuple[int, int]:
    """A frame's (count_info, type_info)."""
    page = m.mfn_to_page(mfn)
    return m.frame_table.count_info(page), m.frame_table.type_info(page)


def sp_words(m, mfn: int) -> tuple[set, set]:
    """The distinct count_info and type_info words of the superpage's 512 frames."""
    ci, ti, _ = m.frame_table.read_slices(m.mfn_to_page(mfn), 512)
    return {int(x) for x in ci}, {int(x) for x in ti}


def spage(m, mfn: int) -> int:
    """The superpage-table word 0 of the superpage at ``mfn``."""
    return m.spage_table.read(m.mfn_to_pdx(mfn) >> 9)


@pytest.fixture
def m() -> Machine:
    return small_machine()


@pytest.fixture
def guest(m) -> int:
    """A domain with 8 MiB (2048 pages) of max memory, nothing populated yet."""
    return m.create_domain("guest", 2048)


def fuzz_cli(argv, capsys):
    """``xensim fuzz ARGV`` through the command's own parser: (exit status, stdout, stderr)."""
    from xensim.cli._fuzz import add_parser
    p = argparse.ArgumentParser(prog="xensim")
    add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["fuzz"] + argv)
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


def pse_machine(design: str, n: int):
    """64 MiB, design ``design``: a guest owning ``n`` superpages (populated, its tables
    built), another domain owning one, and the guest's L2 table for DIRECTMAP_BASE:
    (m, guest, its GuestKernel, other, l2)."""
    from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
    m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none", superpage=design)
    g = m.create_domain("g", n * 512 + 64)
    k = GuestKernel(m, g)
    assert k.populate(0, n * 512) == n
    assert k.build() == 0
    other = m.create_domain("other", 1024)
    assert GuestKernel(m, other, pt_pool_pages=0).populate(0, 512) == 1
    l2, rc = k.ensure_table(DIRECTMAP_BASE, 2)
    assert rc == 0
    return m, g, k, other, l2


# -- the accelerator harness: the same call stepwise and vectorised ---------------------------
class Reported:
    """What a machine's observers of written things hear (the incremental auditor's and the
    fuzz journal's events, none of which turns an accelerator off): the frames reported
    written (``frames_written``, ``range_get``, ``range_put``: the last one only when
    ``range_put``, since a subscriber of it turns L1RunPut off), the frames freed
    (``pages_freed``), the guest frames written (``guest_write``), and the runs taken
    (``range_get`` / ``range_got``, in order)."""

    def __init__(self, m: Machine, range_put: bool = True):
        self.frames: set[int] = set()
        self.freed: list[int] = []
        self.guest: set[int] = set()
        self.runs: list[tuple] = []
        self.subs = [m.events.subscribe(name, fn) for name, fn in (
            ("frames_written", lambda p, n: self.frames.update(range(p, p + n))),
            ("range_get", self._range_get), ("range_got", self._range_got),
            ("pages_freed", lambda pages, owners: self.freed.extend(int(p) for p in pages)),
            ("guest_write", lambda mfn, index, old, new: self.guest.add(mfn)))]
        if range_put:
            self.subs.append(m.events.subscribe(
                "range_put", lambda p, n, typed: self.frames.update(range(p, p + n))))

    def _range_get(self, first, n, d, type):
        self.frames.update(range(first, first + n))
        self.runs.append(("get", first, n, d, type))

    def _range_got(self, first, n, d, type, r):
        self.runs.append(("got", first, n, d, type, r.ok, r.failed_index, r.reason))


def _changed_frames(m: Machine, before: dict) -> set[int]:
    """The PDXs whose (count_info, type_info, owner) differ from the frame table's snapshot
    ``before`` (a group not in a snapshot holds its initial words)."""
    import numpy as np
    ft, now, out = m.frame_table, m.frame_table.snapshot(), set()
    for g in set(before) | set(now):
        words = []
        for snap in (before, now):
            if g in snap:
                ci, ti, ow = snap[g]
                words.append((np.frombuffer(ci, np.uint64), np.frombuffer(ti, np.uint64),
                              np.frombuffer(ow, ft.initial_group(g)[2].dtype)))
            else:
                words.append(ft.initial_group(g))
        (c0, t0, o0), (c1, t1, o1) = words
        diff = np.flatnonzero((c0 != c1) | (t0 != t1) | (o0 != o1))
        out.update(int(g * c0.size + i) for i in diff)
    return out


def full_state(m: Machine) -> tuple:
    """machine_state and the rest a call may change: the live tables, the superpage
    design's statistics and the violations faithful mode recorded."""
    return (machine_state(m), sorted(m.pt.live.items()), dict(m.superpage.stats),
            list(m.violations))


def both_modes(m: Machine, op, *, expect_accelerated: bool | None = None,
               range_put: bool = True):
    """Run ``op(machine)`` on two deep copies of ``m``: one stepwise (every operation by its
    scalar path), one vectorised (accelerators allowed). Asserts that they agree exactly on

    * the result ``op`` returns (an rc, (rc, done), a RangeResult ...), or the exception
      it raised (type and message);
    * the machine (``full_state``: Machine.snapshot, the RefCounts statistics, the
      hypercall statistics, the TLB clock, times and stamps, the domains, M2P/P2M counts,
      the guest frames held, the page-table statistics, the live tables, the design's
      statistics, faithful mode's violations);
    * the events, normalised: in each run every frame whose words changed was reported
      written (``frames_written`` or a run event: no change escapes the observers), the
      frames freed (``pages_freed``, as one sorted list), the guest frames written, and
      the runs taken (``range_get`` / ``range_got``, in order, with their results).

    ``expect_accelerated``: whether some accelerator must (True) or must not (False) have
    applied in the vectorised run. Returns (result, stepwise machine, vectorised machine).
    """
    from xensim.xen import accel
    assert m.mode == accel.VECTORISED
    runs = []
    for stepwise in (True, False):
        c = copy.deepcopy(m)
        before = c.frame_table.snapshot()
        rep = Reported(c, range_put)
        applied = []
        if not stepwise:
            for a in accel.ACCELERATORS:           # count the accelerators that applied
                a.apply = _spy(a, applied)
        try:
            with (c.events.stepwise() if stepwise else contextlib.nullcontext()):
                assert c.mode == (accel.STEPWISE if stepwise else accel.VECTORISED)
                try:
                    out = ("ok", op(c))
                except Exception as e:               # RefcountBug, OverflowError ...
                    out = ("raised", type(e).__name__, str(e))
        finally:
            for a in accel.ACCELERATORS:
                a.__dict__.pop("apply", None)
        for s in rep.subs:
            c.events.unsubscribe(s)
        changed = _changed_frames(c, before)
        unreported = changed - rep.frames - set(rep.freed)
        assert not unreported, f"{'stepwise' if stepwise else 'vectorised'}: frames changed " \
                               f"but not reported: {sorted(unreported)[:8]}"
        runs.append((c, out, full_state(c), sorted(rep.freed), rep.guest, sorted(rep.runs, key=repr), applied))
    (s, out_s, state_s, freed_s, guest_s, runs_s, _), (v, out_v, state_v, freed_v, guest_v,
                                                       runs_v, applied) = runs
    _same("the results", out_s, out_v)
    _same("the machines", state_s, state_v)
    _same("the frames freed", freed_s, freed_v)
    _same("the guest frames written", guest_s, guest_v)
    if expect_accelerated is not None:
        assert bool(applied) is expect_accelerated, applied
    return out_v[1] if out_v[0] == "ok" else out_v, s, v


def _same(what: str, stepwise, vectorised) -> None:
    """Fail with the first part that differs, shortly: pytest's own explanation of two
    large unequal structures diffs them whole, which takes minutes where CI is set (no
    truncation)."""
    if stepwise == vectorised:
        return
    where, a, b = "", stepwise, vectorised
    while (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b)):
        i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        where, a, b = f"{where}[{i}]", a[i], b[i]
    raise AssertionError(f"{what} differ at {where or 'the top'}: stepwise "
                         f"{repr(a)[:300]} vs vectorised {repr(b)[:300]}")


def _spy(a, applied: list):
    """``a.apply`` that records, in ``applied``, each time it applied (did not return None)."""
    real = type(a).apply.__get__(a)

    def apply(*args):
        r = real(*args)
        if r is not None:
            applied.append(type(a).__name__)
        return r
    return apply


# --------------------------------------------------------------------------
# Headless Chromium (the HTML report's and the pages' browser tests; CI installs
# Debian's chromium, .ci/run)
# --------------------------------------------------------------------------

def chromium() -> str | None:
    """The Chromium binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with ``args`` (a fresh profile under ``tmp_path``); the test skips,
    saying why, when there is no Chromium."""
    exe = chromium()
    if exe is None:
        pytest.skip("no chromium binary found (CI installs Debian's: apt-get install chromium)")
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, timeout=90, stdin=subprocess.DEVNULL)
