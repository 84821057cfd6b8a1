"""The auditor finds each kind of corruption, naming mfn, field, expected and actual."""

from __future__ import annotations

from xensim import audit
from xensim.mem._page_info import PGC_allocated, PGC_state_free, PGT_writable_page

from conftest import populate


def diffs(m):
    return [(d.mfn, d.field, d.expected, d.actual) for d in audit(m).differences]


def test_clean_machine(m, guest):
    populate(m, guest, [0], 9)
    rep = audit(m)
    assert rep.ok and rep.frames_checked == 0x4000 and str(rep).startswith("audit clean")


def test_extra_general_reference(m, guest):
    populate(m, guest, [0], 9)
    m.frame_table.set_count_info(3, PGC_allocated | 2)
    assert diffs(m) == [(3, "count_info.count", 1, 2)]


def test_unaccounted_typed_reference(m, guest):
    populate(m, guest, [0], 9)
    m.refs.get_page_and_type(4, guest, PGT_writable_page)
    assert diffs(m) == [(4, "count_info.count", 1, 2), (4, "type_info.count", 0, 1)]


def test_wrong_owner_and_lost_allocated_bit(m, guest):
    populate(m, guest, [0], 9)
    m.frame_table.set_owner(6, 0)
    m.frame_table.set_count_info(7, 1)
    assert diffs(m) == [(6, "owner", guest, 0), (7, "count_info.allocated", 1, 0)]


def test_leaked_frame(m, guest):
    populate(m, guest, [0], 9)
    d = m.domain(guest)
    d.owned.remove(8, 9)                 # the domain forgot a frame that is not free either
    d.tot_pages -= 1
    d.allocated.remove(8, 9)
    assert (8, "leaked", "free or owned", "neither (1 frames to 0x9)") in diffs(m)


def test_free_frame_with_state(m, guest):
    m.frame_table.set_count_info(0x3000, 1)
    assert diffs(m) == [(0x3000, "free frame", "count_info=free ti=0 owner=none",
                         "count_info=0x1 ti=0x0 owner=32756")]


def test_tot_pages_mismatch(m, guest):
    populate(m, guest, [0], 0)
    m.domain(guest).tot_pages = 2
    assert diffs(m) == [(-1, f"dom{guest}.tot_pages", 1, 2)]


def test_reference_to_a_foreign_frame(m, guest):
    populate(m, guest, [0], 9)
    other = m.create_domain("other", 8)
    populate(m, other, [0], 0)                           # MFN 0x200 belongs to other
    m.audit_contributors.append(lambda mm, exp: exp.ref(0x200, guest))
    m.frame_table.set_count_info(0x200, PGC_allocated | 2)
    assert diffs(m) == [(0x200, "referenced by", f"dom{guest}'s own frame", f"owner dom{other}")]


def test_free_state_value():
    assert PGC_state_free == 3 << 55


def _report(m):
    rep = audit(m)
    return rep.frames_checked, rep.total_differences, sorted(
        (d.mfn, d.field, str(d.expected), str(d.actual)) for d in rep.differences)


def test_chunks_read_as_one_recount(monkeypatch):
    """The recount goes chunk by chunk (``CHUNK`` frames at a time, so that a whole-host
    audit holds a few chunk-sized arrays): chunks smaller than a superpage, a PDX group's
    and one chunk over everything give the same report, clean and with differences planted
    inside and across chunks (a count, an owner, a type clash of a contributor's run)."""
    from conftest import pse_machine
    from xensim import HYPERVISOR_mmu_update, MmuUpdate
    from xensim.mem._page_info import PGT_l1_page_table
    from xensim.xen import _audit
    m, g, k, other, l2 = pse_machine("xen-4.1", 12)
    sps = k.superpage_mfns(0, 12)
    flags = 0x1 | 0x2 | 0x4 | 0x80                       # present, rw, user, PSE
    reqs = [MmuUpdate((l2 << 12) | (i * 8), (mfn << 12) | flags) for i, mfn in enumerate(sps[:5])]
    assert m.hypercall(g, HYPERVISOR_mmu_update, reqs, [0]) == 0
    reports = []
    for chunk in (256, 1 << 16, 1 << 40):
        monkeypatch.setattr(_audit, "CHUNK", chunk)
        reports.append(_report(m))
    assert reports[0] == reports[1] == reports[2] and reports[0][1] == 0
    m.frame_table.set_count_info(sps[1] + 300, PGC_allocated | 5)
    m.frame_table.set_owner(sps[7] + 255, other)
    m.audit_contributors.append(lambda mm, exp: exp.run(sps[2] + 250, 20, g, PGT_l1_page_table))
    reports = []
    for chunk in (256, 1 << 16, 1 << 40):
        monkeypatch.setattr(_audit, "CHUNK", chunk)
        reports.append(_report(m))
    assert reports[0] == reports[1] == reports[2]
    fields = {f for _, f, _, _ in reports[0][2]}
    assert {"count_info.count", "owner", "type"} <= fields


def test_a_chunk_wrong_the_same_way_everywhere():
    """Every frame of a superpage holding one more reference (the words still all alike,
    the case the recount decides from each word's least and greatest value): each is a
    difference."""
    from xensim.mem._page_info import PGC_state_inuse
    m = __import__("conftest").small_machine()
    guest = m.create_domain("guest", 2048)
    populate(m, guest, [0], 9)
    for mfn in range(512):
        m.frame_table.set_count_info(mfn, PGC_state_inuse | PGC_allocated | 2)
    assert diffs(m) == [(mfn, "count_info.count", 1, 2) for mfn in range(200)]
    assert audit(m).total_differences == 512
