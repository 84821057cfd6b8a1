"""Shared fixtures and helpers: small machines, hypercalls that audit after every step,
the two-domain layout of the page-table tests and the check that a refusal changes nothing."""

from __future__ import annotations

import argparse
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


def hc(m: Machine, caller: int, number: int, *args) -> int:
    """Issue a hypercall, then run the auditor: every step of a test is audited."""
    rc = m.hypercall(caller, number, *args)
    assert_clean(m)
    return rc


def mmu(m: Machine, caller: int, *reqs, foreigndom: int = DOMID_SELF) -> tuple[int, int]:
    """One audited mmu_update batch of (ptr, val) requests: (rc, done)."""
    done = [-1]
    rc = hc(m, caller, HYPERVISOR_mmu_update, [MmuUpdate(p, v) for p, v in reqs], done, foreigndom)
    return rc, done[0]


def ext(m: Machine, caller: int, *ops, foreigndom: int = DOMID_SELF) -> tuple[int, int]:
    """One audited mmuext_op batch: (rc, done)."""
    done = [-1]
    rc = hc(m, caller, HYPERVISOR_mmuext_op, list(ops), done, foreigndom)
    return rc, done[0]


def populate(m: Machine, domid: int, gpfns: list[int], order: int) -> list[int]:
    """populate_physmap; returns the first MFN of each extent (asserts all were done)."""
    res = XenMemoryReservation(list(gpfns), len(gpfns), order)
    assert hc(m, domid, HYPERVISOR_memory_op, XENMEM_populate_physmap, res) == len(gpfns)
    return res.extent_start


def ptr(table: int, index: int, cmd: int = MMU_NORMAL_PT_UPDATE) -> int:
    """An mmu_update request's ptr: entry ``index`` of the table at MFN ``table``, and the command."""
    return (table << 12) | (index * 8) | cmd


def two_domains(m: Machine, guest_superpages: tuple[int, ...], other_superpage: int) -> SimpleNamespace:
    """The page-table tests' layout on a fresh machine: the guest (its first domain) gets a
    superpage at gpfn 0, 16 frames at gpfns 512.. (MFNs 0x200..0x20f) and a superpage at gpfn
    1024, 2048 ... for each further entry of ``guest_superpages`` (the MFNs each must land at);
    the other domain a superpage (at ``other_superpage``) and 8 frames (MFNs 0x210..0x217).
    Nothing is pinned. ``d`` is the guest's Domain."""
    g = m.create_domain("guest", 2048)
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


def refused_ext(m: Machine, caller: int, ops, err: int, foreigndom: int = DOMID_SELF) -> None:
    """An mmuext_op batch refused at its first op with -err, nothing changed."""
    refused(m, lambda: ext(m, caller, *ops, foreigndom=foreigndom), (-err, 0))


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
