"""Shared fixtures: small machines, and a hypercall helper that audits after every step."""

from __future__ import annotations

import pytest

from xensim import (DOMID_SELF, HYPERVISOR_memory_op, HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op,
                    XENMEM_populate_physmap, Machine, MemoryMap, XenMemoryReservation, audit)
from xensim.xen._mmu import MmuUpdate

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
