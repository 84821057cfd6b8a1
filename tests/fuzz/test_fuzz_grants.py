"""The fuzzer's grant calls (xensim/fuzz/_grants.py): guests grant, map, unmap and revoke,
from both sides, valid and hostile; every check after every call (the auditors with the
grants' references, isolation with the grants' permissions, the unchanged check on refused
grant calls); 0 violations on the sound designs and fixed releases; the grant ops in a
reproducer; the checks that know grants."""

from __future__ import annotations

import pytest

from xensim.fuzz import (Fuzzer, FuzzRunner, Setup, campaign, execute, isolation, load_script,
                         replay_ops, to_script_yaml)
from xensim.xen import GNTMAP_contains_pte, GNTMAP_host_map

CALLS = 1500


@pytest.mark.parametrize("design, version", [("xen-4.1", "4.8"), ("none", "4.8"),
                                             ("per-mapping", "4.1"), ("superpage-info", "4.5")])
def test_campaign_with_grants_is_clean(design, version):
    c = campaign(Setup(design=design, version=version), CALLS, seed=21, episode_calls=500,
                 minimise_findings=False)
    assert [str(f.violation) for f in c.findings.values()] == []
    # both sides call, and much of it succeeds
    for label in ("grant_access", "end_access", "grant_table_op/map_grant_ref",
                  "grant_table_op/unmap_grant_ref"):
        assert c.by_call[label] > 0, label
    maps = c.by_call["grant_table_op/map_grant_ref"]
    assert c.refused[("grant_table_op/map_grant_ref", "short")] < 0.8 * maps


def test_no_grants_leaves_them_out():
    c = campaign(Setup(grants=False), 300, seed=3, episode_calls=300, minimise_findings=False)
    assert not any(k.startswith("grant") or k == "end_access" for k in c.by_call)


def test_grant_ops_replay_from_a_reproducer():
    f = Fuzzer(Setup(), 9)
    f.start()
    for _ in range(400):
        f.random_call()
    assert any(op["op"] == "grant_table_op" for op in f.log)
    text = to_script_yaml(f.setup, f.log, rcs=f.rcs)
    setup, ops = load_script(text)
    v, run = replay_ops(setup, ops)
    assert v is None and run.rcs[:len(ops)] == f.rcs


def _granted_mapping():
    """Two guests; g2 maps g1's frame by a grant (a foreign L1 entry, permitted)."""
    f = Fuzzer(Setup(domains=2), 1)
    f.start()
    g1, g2 = f.guests["g1"], f.guests["g2"]
    frame = g1.kernel.mfn(f.setup.small_gfn + 9)
    f.step({"op": "grant_access", "domain": "g1", "ref": 8, "grantee": "g2", "frame": frame})
    l1 = f.tables(g2)[1][0]
    res = f.step({"op": "grant_table_op", "domain": "g2", "cmd": "map_grant_ref",
                  "grants": [[(l1 << 12) | 8 * 20, GNTMAP_host_map | GNTMAP_contains_pte, 8]], "target": "g1"})
    assert res.out == [0]
    return f, g1, g2, frame


def test_isolation_allows_a_granted_foreign_entry_and_no_other():
    f, g1, g2, frame = _granted_mapping()
    assert isolation(f.m) is None
    gt = f.m.gnttab.tables[g1.domid]
    pin, grantee, fr = gt.active[8]
    gt.active[8] = (pin << 8, grantee, fr)                 # a read-only pin: RW not permitted
    assert "owned by dom1" in isolation(f.m)
    gt.active[8] = (pin, grantee, fr)


def test_destroying_a_granter_leaves_a_zombie_that_is_no_violation():
    """A granter destroyed while its frame is mapped stays until the grantee unmaps (Xen's
    zombie): the fuzzer's zombie check lets it be while a grant of it is active."""
    f, g1, g2, frame = _granted_mapping()
    f.step({"op": "destroy_domain", "domain": "g1"})
    assert g1.domid in f.m.domains and f.m.domains[g1.domid].is_dying
    f.finish()
    assert set(f.m.domains) == {0}


def test_execute_grant_access_outside_the_table_is_einval():
    r = FuzzRunner(Setup(domains=1))
    r.step({"op": "create_domain", "name": "g1", "max_pages": 100})
    res = execute(r.m, r.doms, {"op": "grant_access", "domain": "g1", "ref": 4 * 512,
                                "frame": 0x10})
    assert res.rc == -22 and res.done == 0
