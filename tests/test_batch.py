"""A batch of PSE updates processed vectorised across superpages equals processing it
in order: same return code, same done count, same machine (bit for bit), same statistics.

Each case runs on two identical machines, one with the vectorised path disabled
(PSE_BATCH_MIN raised above the batch size).
"""

from __future__ import annotations

import errno

import pytest

from xensim.designs import REGISTRY, design_names

import xensim.xen._mmu as mmu
from xensim import HYPERVISOR_mmu_update, Machine, MemoryMap, audit
from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
from xensim.xen._mmu import MmuUpdate
from xensim.mem._page_info import PGT_l1_page_table
from xensim.xen._pagetable import _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER, make_pte

N = 24                                    # superpages the guest owns


#: the designs with PSE entries (a batch of them is what is vectorised)
DESIGNS = [n for n in design_names() if REGISTRY[n].supports_pse]


def setup(design="xen-4.1"):
    m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none", superpage=design)
    g = m.create_domain("g", N * 512 + 64)
    k = GuestKernel(m, g)
    assert k.populate(0, N * 512) == N
    assert k.build() == 0
    other = m.create_domain("other", 1024)
    assert GuestKernel(m, other, pt_pool_pages=0).populate(0, 512) == 1
    l2, rc = k.ensure_table(DIRECTMAP_BASE, 2)
    assert rc == 0
    return m, g, k, other, l2


def pse(mfn, rw=True):
    return make_pte(mfn, _PAGE_PRESENT | _PAGE_USER | _PAGE_PSE | (_PAGE_RW if rw else 0))


def run_both(monkeypatch, prepare, batch, design="xen-4.1"):
    """prepare(m, g, k, other, l2) -> list of (ptr, val) requests; returns both outcomes."""
    outcomes = []
    for vectorised in (True, False):
        monkeypatch.setattr(mmu, "PSE_BATCH_MIN", 8 if vectorised else 10**9)
        m, g, k, other, l2 = setup(design)
        reqs = batch(m, g, k, other, l2)
        prepare_stats = (m.refs.stats.as_dict(), dict(m.superpage.stats))
        done = [0]
        rc = m.hypercall(g, HYPERVISOR_mmu_update, [MmuUpdate(p, v) for p, v in reqs], done)
        assert audit(m).ok
        outcomes.append((rc, done[0], m.snapshot(), m.refs.stats.as_dict(),
                         dict(m.superpage.stats), prepare_stats))
    return outcomes


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
        -errno.EPERM, 9),
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
def test_vectorised_batch_equals_in_order(monkeypatch, name, design):
    batch, rc, done = CASES[name]
    vec, seq = run_both(monkeypatch, None, batch, design)
    assert (vec[0], vec[1]) == (rc, done)
    assert vec[0:2] == seq[0:2]
    assert vec[2] == seq[2]                   # the whole machine, bit for bit
    assert vec[3] == seq[3] and vec[4] == seq[4]


@pytest.mark.parametrize("design", DESIGNS)
def test_the_vectorised_path_is_taken(monkeypatch, design):
    monkeypatch.setattr(mmu, "PSE_BATCH_MIN", 8)
    m, g, k, other, l2 = setup(design)
    calls = []
    real = m.superpage.get_superpages
    monkeypatch.setattr(m.superpage, "get_superpages",
                        lambda *a: calls.append(len(a[0])) or real(*a))
    done = [0]
    reqs = maps(k, l2, k.superpage_mfns(0, N))
    assert m.hypercall(g, HYPERVISOR_mmu_update, [MmuUpdate(p, v) for p, v in reqs], done) == 0
    assert calls == [N] and done == [N]
    assert m.superpage.stats["slow_get"] == N
