"""A guest kernel on several vCPUs: each vCPU's process has a user L4 of its own, pinned
at build; an operation on a vCPU starts with the process switch Linux's xen_write_cr3
makes (MMUEXT_NEW_BASEPTR + MMUEXT_NEW_USER_BASEPTR from that vCPU). Exact words, both
auditors after every step (conftest's ``hc`` runs the full one)."""

from __future__ import annotations

import pytest

from xensim import parse_config
from xensim.config._config import build_memory_map
from xensim.guest import GuestKernel
from xensim.mem import PGC_allocated, PGT_l4_page_table, PGT_pinned, PGT_validated
from xensim.sim._simulate import run_comparison

from conftest import assert_clean, small_machine, words

L4V = PGT_l4_page_table | PGT_validated
ALLOC1 = PGC_allocated | 1


@pytest.mark.parametrize("version", ["4.1", "4.5", "4.7", "4.8"])
def test_each_vcpu_switches_to_its_process(version):
    """build pins the kernel L4 and one user L4 per vCPU and loads vCPU 0's; switch_to(v)
    loads the kernel L4 and v's user L4 on v (do_mmuext_op NEW_BASEPTR, NEW_USER_BASEPTR);
    switching again changes no word (4.5 on: the same-MFN exits; 4.1: take, then put)."""
    m = small_machine()
    m = type(m)(m.memmap, "none", version=version)
    g = m.create_domain("g", 2048, vcpus=3)
    k = GuestKernel(m, g)
    assert k.populate(0, 1024) == 2 and k.build() == 0
    d = m.domain(g)
    root, users = k.root, k.user_roots
    assert len(users) == 3 and len({root, *users}) == 4
    assert [(v.guest_table, v.guest_table_user) for v in d.vcpus] == [
        (root, users[0]), (None, None), (None, None)]
    assert words(m, users[0]) == (ALLOC1 + 2, L4V | PGT_pinned | 2)
    assert words(m, users[1]) == (ALLOC1 + 1, L4V | PGT_pinned | 1)
    assert k.switch_to(2) == 0 and k.vcpu == 2
    assert_clean(m)
    assert (d.vcpus[2].guest_table, d.vcpus[2].guest_table_user) == (root, users[2])
    assert words(m, root) == (ALLOC1 + 3, L4V | PGT_pinned | 3)
    before = [words(m, f) for f in (root, *users)]
    assert k.switch_to(2) == 0
    assert [words(m, f) for f in (root, *users)] == before
    assert m.destroy_domain(g) == 0 and m.domain(g) is None
    assert m.heap.free_frames == m.memmap.ram_frames
    assert_clean(m)


@pytest.mark.parametrize("version", ["4.1", "4.8"])
def test_a_random_workload_on_three_vcpus_audits_clean(version):
    """A run whose guest has ``vcpus: 3``: the operations take the vCPUs in turn, each
    after a process switch; every audit clean, nothing leaked, the same operations on
    every design."""
    cfg = parse_config("workload: {kind: random, steps: 120, small_slots: 3}\n"
                       "domains: [{name: a, memory: 16MiB, vcpus: 3}, {name: b, memory: 8MiB}]\n"
                       f"audit_every: 20\nseed: 3\nhypervisor: {{version: \"{version}\"}}\n"
                       "compare: [xen-4.1, none]\n")
    c = run_comparison(cfg, build_memory_map(cfg))
    assert len({r.ops_digest for r in c.runs}) == 1
    for r in c.runs:
        assert r.status == "ok" and r.audit.ok and r.leaked_frames == 0, r.design
        assert r.guest_errors == 0, r.design


def test_vcpus_is_validated():
    cfg = parse_config("domains: [{name: a, memory: 16MiB, vcpus: 4}]\n")
    assert cfg.domain_vcpus() == [4]
