"""do_mmu_update's batches of PSE updates (Xen 4.1's mmu_update, get_superpage per
request): the return code and done count of each case, its requests processed in order
(a batch stops at its first failing request), and the PSE batch accelerator
(xensim.xen.accel.PseBatch) against that loop through the harness (conftest.both_modes):
same answer, same machine bit for bit, same statistics.
"""

from __future__ import annotations

import errno

import pytest

from xensim.designs import REGISTRY, design_names

import xensim.xen._mmu as mmu
from xensim import HYPERVISOR_mmu_update, audit
from xensim.xen import PSE_BATCH_MIN, VECTORISED
from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
from xensim.xen._mmu import MmuUpdate
from xensim.mem._page_info import PGT_l1_page_table
from xensim.xen._pagetable import _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER, make_pte

from conftest import both_modes, pse_machine

N = 24                                    # superpages the guest owns


#: the designs with PSE entries (a batch of them is what is vectorised)
DESIGNS = [n for n in design_names() if REGISTRY[n].supports_pse]


def setup(design="xen-4.1"):
    return pse_machine(design, N)


def pse(mfn, rw=True):
    return make_pte(mfn, _PAGE_PRESENT | _PAGE_USER | _PAGE_PSE | (_PAGE_RW if rw else 0))


def maps(k, l2, mfns, first_index=0, rw=True):
    return [((l2 << 12) | ((first_index + i) * 8), pse(mfn, rw)) for i, mfn in enumerate(mfns)]


def unmaps(l2, n, first_index=0):
    return [((l2 << 12) | ((first_index + i) * 8), 0) for i in range(n)]


CASES = {
    # name: (batch builder, expected rc, expected done)
    "all map": (lambda m, g, k, o, l2: maps(k, l2, k.superpage_mfns(0, N)), 0, N),
    "read-only maps": (lambda m, g, k, o, l2: maps(k, l2, k.superpage_mfns(0, N), rw=False), 0, N),
    "foreign superpage at 9": (lambda m, g, k, o, l2: maps(
        k, l2, k.superpage_mfns(0, 9) + [GuestKernel(m, o).mfn(0)] + k.superpage_mfns(9 * 512, 5)),
        -errno.EINVAL, 9),                  # unmapped: get_spage_pages fails (Xen 4.1)
    "unaligned at 4": (lambda m, g, k, o, l2: maps(
        k, l2, k.superpage_mfns(0, 4) + [k.mfn(4 * 512) + 1] + k.superpage_mfns(5 * 512, 6)),
        -errno.EINVAL, 4),
    "duplicate superpage": (lambda m, g, k, o, l2: maps(
        k, l2, k.superpage_mfns(0, 10) + k.superpage_mfns(0, 1)), 0, 11),
    "hole MFN at 3": (lambda m, g, k, o, l2: maps(
        k, l2, k.superpage_mfns(0, 3) + [0x100000] + k.superpage_mfns(3 * 512, 8)), -errno.EINVAL, 3),
}


def _type_conflict(m, g, k, o, l2):
    mfns = k.superpage_mfns(0, 12)
    victim = mfns[7] + 100                    # frame 100 of superpage 7 becomes a pinned L1
    assert k.mmuext([mmu.MmuextOp(mmu.MMUEXT_PIN_L1_TABLE, victim)]) == 0
    return maps(k, l2, mfns)


def _some_already_mapped(m, g, k, o, l2):
    mfns = k.superpage_mfns(0, 16)
    # superpages 0..7 are mapped from a second L2 first: the batch finds them DYNAMIC (fast path)
    l2b, rc = k.ensure_table(DIRECTMAP_BASE + (1 << 30), 2)
    assert rc == 0 and k.mmu_update(maps(k, l2b, mfns[:8])) == 0
    return maps(k, l2, mfns)


def _unmap_all(m, g, k, o, l2):
    mfns = k.superpage_mfns(0, N)
    assert k.mmu_update(maps(k, l2, mfns)) == 0
    # half of them stay mapped from a second table: their unmapping is a fast put
    l2b, rc = k.ensure_table(DIRECTMAP_BASE + (1 << 30), 2)
    assert rc == 0 and k.mmu_update(maps(k, l2b, mfns[::2])) == 0
    return unmaps(l2, N)


def _map_over_mapped_index(m, g, k, o, l2):
    mfns = k.superpage_mfns(0, 12)
    assert k.mmu_update(maps(k, l2, mfns[5:6], first_index=5)) == 0
    return maps(k, l2, mfns)


CASES.update({
    "type conflict at 7": (_type_conflict, -errno.EINVAL, 7),
    "some already dynamic": (_some_already_mapped, 0, 16),
    "unmap all, half shared": (_unmap_all, 0, N),
    "index already mapped": (_map_over_mapped_index, 0, 12),
})


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_in_order_and_at_once(name, design):
    batch, rc, done = CASES[name]
    m, g, k, other, l2 = setup(design)
    reqs = [MmuUpdate(p, v) for p, v in batch(m, g, k, other, l2)]

    def call(c):
        d = [0]
        return c.hypercall(g, HYPERVISOR_mmu_update, reqs, d), d[0]
    out, _, v = both_modes(m, call)
    assert out == (rc, done)
    assert audit(v).ok


@pytest.mark.parametrize("design", DESIGNS)
def test_the_batch_accelerator_is_taken(monkeypatch, design):
    m, g, k, other, l2 = setup(design)
    calls = []
    real = m.superpage.get_superpages
    monkeypatch.setattr(m.superpage, "get_superpages",
                        lambda *a: calls.append(len(a[0])) or real(*a))
    done = [0]
    reqs = maps(k, l2, k.superpage_mfns(0, N))
    assert len(reqs) >= PSE_BATCH_MIN and m.mode == VECTORISED
    assert m.hypercall(g, HYPERVISOR_mmu_update, [MmuUpdate(p, v) for p, v in reqs], done) == 0
    assert calls == [N] and done == [N]
    assert m.superpage.stats["slow_get"] == N
