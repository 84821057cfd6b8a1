"""The design's port (``SuperpageHost``): a design sees the machine only through it; the
host keeps the marks; the request's context (an undo, the CPU); the hooks inside the
request (frames leaving the guest, a type change refused, relinquish), shown by
examples/designs/lazy_drop.py, a design that caches references: clean under both
auditors after every call, and a failed request leaves it exactly as it was."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import MiB, assert_clean
from xensim import GuestKernel, Machine, MemoryMap
from xensim.designs import SuperpageHost, load_design_file
from xensim.mem import DOMID_INVALID, PGC_count_mask, PGT_count_mask
from xensim.xen import (MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_UNPIN_TABLE,
                        IncrementalAuditor, MmuextOp)

ROOT = Path(__file__).resolve().parents[2]
VA = 1 << 39
CACHED = 1 << 62


def machine(design: str) -> tuple[Machine, GuestKernel, list[int]]:
    """64 MiB, one guest with 8 superpages populated and its tree built."""
    m = Machine(MemoryMap([(0, 64 * MiB)], name="small"), "none", superpage=design)
    k = GuestKernel(m, m.create_domain("guest", 8192))
    assert k.populate(0, 8 * 512) == 8
    assert k.build([VA]) == 0
    return m, k, k.superpage_mfns(0, 8)


def counts(m: Machine, mfn: int) -> tuple[int, int]:
    """(general count, type count) of frame ``mfn``."""
    page = m.mfn_to_page(mfn)
    return (m.frame_table.count_info(page) & PGC_count_mask,
            m.frame_table.type_info(page) & PGT_count_mask)


# -- the port ----------------------------------------------------------------------------------
def test_a_design_holds_its_host_and_no_machine():
    m, _, _ = machine("xen-4.1")
    d = m.superpage
    assert isinstance(d.host, SuperpageHost) and d.host is m.design_host
    assert not hasattr(d, "m")


def test_the_host_keeps_the_marks_and_relinquish_unmarks_them():
    """MMUEXT_MARK_SUPER recorded by the host (the design records nothing); UNMARK forgets
    it; destroying the domain unmarks what it marked (Xen's relinquish), the frames freed."""
    m, k, sp = machine("xen-4.1")
    host = m.design_host
    assert k.mark_superpage(sp[2]) == 0 and k.mark_superpage(sp[3]) == 0
    assert host.marks() == {sp[2]: k.domid, sp[3]: k.domid}
    assert host.marks_of(k.domid) == [sp[2], sp[3]] and host.is_marked(sp[2], k.domid)
    assert k.unmark_superpage(sp[2]) == 0
    assert host.marks() == {sp[3]: k.domid} and not host.is_marked(sp[2], k.domid)
    assert k.unmark_superpage(sp[2]) == -errno.EINVAL and host.marks() == {sp[3]: k.domid}
    assert_clean(m)
    assert m.destroy_domain(k.domid) == 0
    assert k.domid not in m.domains and m.spage_table.read(sp[3] >> 9) == 0
    assert m.frame_table.owner(m.mfn_to_page(sp[3])) == DOMID_INVALID


# -- the request's context ------------------------------------------------------------------------
def test_undo_puts_are_told_from_unmappings():
    """alloc_l2_table failing at its third entry puts back the two PSE entries it took
    (Xen's alloc_l2_table undo loop): the design's put_superpage sees ``undoing``; an
    ordinary unmapping does not. (On main a design has no way to tell them apart.)"""
    m, k, sp = machine("xen-4.1")
    seen: list[tuple[int, bool]] = []
    design, put = m.superpage, m.superpage.put_superpage

    def recording_put(mfn: int, rw: bool) -> None:
        seen.append((mfn, m.design_host.undoing))
        put(mfn, rw)
    design.put_superpage = recording_put
    table = sp[7] + 5                                     # a frame of the guest's, not a table
    for i, v in enumerate([(sp[0] << 12) | 0x83, (sp[1] << 12) | 0x83, (1 << 40) | 0x1]):
        m.mem.write(table, i, v)
    snap = m.snapshot()
    assert k.mmuext([MmuextOp(MMUEXT_PIN_L2_TABLE, table)]) == -errno.EINVAL
    assert seen == [(sp[1], True), (sp[0], True)] and not m.design_host.undoing
    assert m.same_as(snap)
    seen.clear()
    assert k.map_superpages(VA, [sp[0]]) == 0 and k.unmap(VA) == 0
    assert seen == [(sp[0], False)]
    assert m.design_host.cpu == 0


# -- the hooks, with a design that caches references ----------------------------------------------
@pytest.fixture(scope="module")
def lazy():
    """examples/designs/lazy_drop.py loaded; the registry as it was afterwards."""
    from xensim.designs import REGISTRY, _loading
    saved = dict(REGISTRY), dict(_loading._FILES), dict(_loading._ORIGIN)
    assert load_design_file(ROOT / "examples" / "designs" / "lazy_drop.py") == ("lazy-drop",)
    yield "lazy-drop"
    for state, old in zip((REGISTRY, _loading._FILES, _loading._ORIGIN), saved):
        state.clear()
        state.update(old)


def checked(m: Machine, inc: IncrementalAuditor) -> None:
    assert_clean(m)
    assert inc.check().ok


def test_lazy_drop_keeps_the_references_after_the_last_unmapping(lazy):
    m, k, sp = machine(lazy)
    inc = IncrementalAuditor(m)
    assert m.superpage.hooks() == (
        "relinquish", "frames_leaving", "type_conflict")
    assert k.map_superpages(VA, [sp[0]]) == 0 and k.unmap(VA) == 0
    assert m.spage_table.read(sp[0] >> 9) == CACHED and counts(m, sp[0] + 9) == (2, 1)
    checked(m, inc)
    assert k.map_superpages(VA, [sp[0]]) == 0                  # no slow path the second time
    assert m.superpage.stats == {"slow_get": 1, "slow_put": 0, "fast_get": 1, "fast_put": 1}
    assert m.spage_table.read(sp[0] >> 9) == 1
    checked(m, inc)


def test_ballooning_a_cached_frame_drops_the_references_first(lazy):
    """decrease_reservation of a frame of a cached superpage: ``frames_leaving`` drops the
    512 references inside the call, so the frame is freed; the rest keep PGC_allocated."""
    m, k, sp = machine(lazy)
    inc = IncrementalAuditor(m)
    assert k.map_superpages(VA, [sp[1]]) == 0 and k.unmap(VA) == 0
    checked(m, inc)
    assert k.balloon_out([512 + 3]) == 1
    assert m.spage_table.read(sp[1] >> 9) == 0
    assert m.frame_table.owner(m.mfn_to_page(sp[1] + 3)) == DOMID_INVALID
    assert counts(m, sp[1] + 4) == (1, 0)
    checked(m, inc)


def test_without_the_hook_a_cached_frame_cannot_be_freed(lazy):
    """The same balloon with the hook taken away: the frame stays, held by the cache (what
    a design that cannot see frames leave gets)."""
    m, k, sp = machine(lazy)
    m.design_host.on_leave = None
    assert k.map_superpages(VA, [sp[1]]) == 0 and k.unmap(VA) == 0
    assert k.balloon_out([512 + 3]) == 1
    assert counts(m, sp[1] + 3) == (1, 1) and m.spage_table.read(sp[1] >> 9) == CACHED


def test_a_type_change_drops_the_cache_and_succeeds(lazy):
    """MMUEXT_PIN_L1_TABLE on a frame of a cached superpage: ``type_conflict`` drops the
    writable references, __get_page_type looks again and the frame becomes an L1 table."""
    m, k, sp = machine(lazy)
    inc = IncrementalAuditor(m)
    assert k.map_superpages(VA, [sp[2]]) == 0 and k.unmap(VA) == 0
    assert k.mmuext([MmuextOp(MMUEXT_PIN_L1_TABLE, sp[2] + 7)]) == 0
    assert m.spage_table.read(sp[2] >> 9) == 0 and counts(m, sp[2] + 7) == (2, 1)
    assert counts(m, sp[2] + 8) == (1, 0)
    checked(m, inc)
    assert k.mmuext([MmuextOp(MMUEXT_UNPIN_TABLE, sp[2] + 7)]) == 0
    checked(m, inc)


def test_a_failed_request_leaves_the_cache_as_it_was(lazy):
    """The pin fails in validation (an L1 entry to a frame that is not RAM) after the hook
    dropped the cache: the request is undone whole, the cache and the 512 references
    back, bit for bit, and both auditors clean."""
    m, k, sp = machine(lazy)
    inc = IncrementalAuditor(m)
    assert k.map_superpages(VA, [sp[2]]) == 0 and k.unmap(VA) == 0
    m.mem.write(sp[2] + 7, 0, (1 << 40) | 0x1)
    checked(m, inc)
    snap, stats = m.snapshot(), dict(m.superpage.stats)
    rc = k.mmuext([MmuextOp(MMUEXT_PIN_L1_TABLE, sp[2] + 7)])
    assert rc == -errno.EPERM
    assert m.same_as(snap) and m.superpage.stats == stats
    assert m.spage_table.read(sp[2] >> 9) == CACHED and counts(m, sp[2] + 7) == (2, 1)
    checked(m, inc)


def test_relinquish_drops_the_domains_cached_superpages(lazy):
    m, k, sp = machine(lazy)
    for i in (3, 4):
        assert k.map_superpages(VA, [sp[i]]) == 0 and k.unmap(VA) == 0
    assert_clean(m)
    assert m.destroy_domain(k.domid) == 0
    assert k.domid not in m.domains
    assert [m.spage_table.read(s >> 9) for s in sp] == [0] * 8
    assert np.all([m.frame_table.owner(m.mfn_to_page(s)) == DOMID_INVALID for s in sp])


def test_the_cpu_is_the_explorers_cpu_running_the_request(monkeypatch):
    """scenarios/map-map.yaml (two CPUs map one superpage): each get_superpage sees the
    CPU that runs it; sequentially it is CPU 0, and the explorer leaves it at 0."""
    from xensim.designs import SuperpageInfo
    from xensim.explore import explore, load_scenario
    seen: list[int] = []
    real = SuperpageInfo.get_superpage

    def recording(self, mfn: int, d: int, rw: bool) -> int:
        seen.append(self.host.cpu)
        return real(self, mfn, d, rw)
    monkeypatch.setattr(SuperpageInfo, "get_superpage", recording)
    res = explore(load_scenario(ROOT / "scenarios" / "map-map.yaml"), preemption_bound=0)
    assert res.schedules == 1 and res.violations == 0
    assert sorted(seen) == [0, 1]


def test_the_docs_whole_design_runs_clean(tmp_path, capsys):
    """docs/designs/writing-a-design.md's design in one file, written with the public
    interface and the host alone: `xensim run --design-file F --compare it,xen-4.1`
    compares it, every audit clean, the same references as per-mapping."""
    from xensim.cli._main import main
    from xensim.designs import REGISTRY, _loading
    doc = (ROOT / "docs" / "designs" / "writing-a-design.md").read_text()
    (tmp_path / "every_mapping.py").write_text(doc.split("```python\n")[1].split("```")[0])
    saved = dict(REGISTRY), dict(_loading._FILES), dict(_loading._ORIGIN)
    try:
        rc = main(["run", "--design-file", str(tmp_path / "every_mapping.py"), "--compare",
                   "every-mapping,per-mapping", "--format", "json", "--quiet"])
    finally:
        for state, old in zip((REGISTRY, _loading._FILES, _loading._ORIGIN), saved):
            state.clear()
            state.update(old)
    out, err = capsys.readouterr()
    assert (rc, err) == (0, "")
    mine, ref = json.loads(out)["comparison"]["designs"]
    assert mine["design"] == "every-mapping" and mine["audit"]["ok"] and ref["audit"]["ok"]
    assert (mine["refcount"], mine["superpage"]) == (ref["refcount"], ref["superpage"])
