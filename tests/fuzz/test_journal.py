"""The fuzzer's undo journal (xensim.fuzz.CallJournal), per API: changed, commit,
capture / differs_from, rollback, settle, verify; small_state / same_small."""

from __future__ import annotations

import pytest

from xensim.fuzz import Fuzzer, FuzzViolation, Setup, execute, same_small, small_state
from xensim.mem import PGC_allocated
from xensim.xen import audit


def started(design: str = "xen-4.1", seed: str = "journal") -> Fuzzer:
    f = Fuzzer(Setup(design=design), seed)
    f.start()
    return f


@pytest.fixture
def f() -> Fuzzer:
    return started()


def frame_of(f: Fuzzer, g, i: int = 0) -> int:
    """An MFN of guest ``g``'s 4 KiB region (a data frame it owns, mapped nowhere)."""
    d = f.m.domains[g.domid]
    return d.p2m.get(f.setup.small_gfn + i)


# -- changed / forget --------------------------------------------------------------------
def test_a_refused_call_leaves_nothing_changed(f):
    j, g = f.journal, f.live_guests()[0]
    res = execute(f.m, f.doms, {"op": "mmuext_op", "domain": g.name, "ops": [["unpin_table", 0x7fff]]})
    assert res.rc < 0
    assert j.changed() is None


def test_changed_names_a_frame_word_written_through_the_frame_table(f):
    j, m = f.journal, f.m
    mfn = frame_of(f, f.live_guests()[0])
    page = m.mfn_to_page(mfn)
    ci = m.frame_table.count_info(page)
    m.frame_table.set_count_info(page, ci + 1)
    assert j.changed() == f"mfn {mfn:#x} count_info {ci + 1:#x} vs {ci:#x}"
    m.frame_table.set_count_info(page, ci)           # written back: the same again
    assert j.changed() is None


def test_changed_names_page_table_contents(f):
    j, m = f.journal, f.m
    g = f.live_guests()[0]
    root = m.domains[g.domid].baseptr
    old = m.mem.read(root, 300)
    m.mem.write(root, 300, 0x1234000)
    assert j.changed() == f"contents of frame {root:#x}[300]: 0x1234000 vs {old:#x}"


def test_changed_names_the_small_records(f):
    j, m = f.journal, f.m
    g = f.live_guests()[0]
    d = m.domains[g.domid]
    d.tot_pages += 1
    assert j.changed() == f"dom{g.domid}.tot_pages: {d.tot_pages} vs {d.tot_pages - 1}"
    d.tot_pages -= 1
    got = m.heap.alloc(0)
    assert j.changed() == "the heap's free blocks"
    m.heap.free(got, 0)
    assert j.changed() is None


def test_small_state_compares_dicts_and_sets_without_their_order(f):
    m = f.m
    d = m.domains[f.live_guests()[0].domid]
    d.pinned = {**d.pinned, 0x12345: 1, 0x12346: 2}
    before = small_state(m)
    d.pinned = dict(reversed(list(d.pinned.items())))
    after = small_state(m)
    assert after != before and same_small(after, before)
    d.pinned.popitem()
    assert not same_small(small_state(m), before)


# -- commit ------------------------------------------------------------------------------
def test_commit_takes_what_was_written_into_the_shadow(f):
    j, m = f.journal, f.m
    mfn = frame_of(f, f.live_guests()[0])
    page = m.mfn_to_page(mfn)
    m.frame_table.set_count_info(page, m.frame_table.count_info(page) + 1)
    assert j.changed() is not None
    j.commit()
    assert j.changed() is None and j.dirty_pages().size == 0 and j.verify() is None


# -- capture, rollback, differs_from, settle ---------------------------------------------------
def test_rollback_puts_a_successful_batch_back_bit_for_bit(f):
    j, m = f.journal, f.m
    g = f.live_guests()[0]
    d = m.domains[g.domid]
    mfns = [frame_of(f, g, i) for i in range(3)]
    snap = m.snapshot()
    live, orders = dict(m.pt.live), tuple(d.pinned)
    res = execute(m, f.doms, {"op": "memory_op", "domain": g.name, "cmd": "decrease_reservation",
                              "order": 0, "extents": mfns})
    assert (res.rc, res.done) == (3, 3)
    assert not any(m.frame_table.count_info(m.mfn_to_page(x)) & PGC_allocated for x in mfns)
    after = j.capture()
    assert set(after.pages.tolist()) >= {m.mfn_to_page(x) for x in mfns}
    j.rollback(after.small)
    assert m.same_as(snap) and m.pt.live == live and tuple(d.pinned) == orders
    assert j.verify() is None and audit(m).ok
    assert j.differs_from(after).startswith(f"mfn {mfns[0]:#x} count_info")


def test_a_batch_and_its_requests_one_by_one_end_alike(f):
    j, m = f.journal, f.m
    g = f.live_guests()[0]
    mfns = [frame_of(f, g, i) for i in range(3)]
    op = {"op": "memory_op", "domain": g.name, "cmd": "decrease_reservation", "order": 0,
          "extents": mfns}
    assert execute(m, f.doms, op).rc == 3
    after = j.capture()
    j.rollback(after.small)
    for x in mfns:
        assert execute(m, f.doms, {**op, "extents": [x]}).rc == 1
    assert j.differs_from(after) is None
    j.settle(after)
    assert j.changed() is None and j.verify() is None and audit(m).ok


def test_differs_from_a_capture_taken_before_a_request(f):
    """The batch check's 'the failing request alone leaves no trace': a capture of the
    machine before it, the request, then differs_from."""
    j, m = f.journal, f.m
    g = f.live_guests()[0]
    mfn = frame_of(f, g)
    assert execute(m, f.doms, {"op": "memory_op", "domain": g.name, "cmd": "decrease_reservation",
                               "order": 0, "extents": [mfn]}).rc == 1
    before = j.capture()
    res = execute(m, f.doms, {"op": "memory_op", "domain": g.name,
                              "cmd": "decrease_reservation", "order": 0, "extents": [0x7ffffff]})
    assert res.rc == 0                                     # no such frame: nothing done
    assert j.differs_from(before) is None
    assert j.changed() is not None                         # the first removal, against the shadow


def test_rollback_brings_back_a_domain_freed_with_its_last_frame(f):
    m, j = f.m, f.journal
    assert execute(m, f.doms, {"op": "create_domain", "name": "x", "max_pages": 64}).rc == 4
    assert execute(m, f.doms, {"op": "memory_op", "domain": "dom0", "cmd": "populate_physmap",
                               "order": 0, "extents": [0, 1], "target": "x"}).rc == 2
    x = m.domains[4]
    x.is_dying = True                      # as if destroyed while its frames were held
    j.commit()
    runs = x.owned.runs()
    exts = [mfn for s, e in runs for mfn in range(s, e)]
    assert execute(m, f.doms, {"op": "memory_op", "domain": "dom0", "cmd": "decrease_reservation",
                               "order": 0, "extents": exts, "target": "x"}).rc == 2
    assert 4 not in m.domains                                # gone with its last frame
    order = list(m.domains)
    j.rollback()
    assert m.domains[4] is x and x.owned.runs() == runs and x.tot_pages == 2
    assert list(m.domains) == order + [4] and j.verify() is None


def test_rollback_puts_the_tlb_stamps_and_clock_back(f):
    """The TLB (each frame's stamp, the clock, each CPU's last flush) is part of the
    machine's inventory: restored by a rollback, though never compared."""
    j, m = f.journal, f.m
    t = m.refs.tlb
    page = m.mfn_to_page(frame_of(f, f.live_guests()[0]))
    before = (t.timestamp(page), t.capture_clock())
    m.frame_table.set_count_info(page, m.frame_table.count_info(page))   # written, same word
    t.flush(page, f.live_guests()[0].domid, 0)
    t.stamp(page)
    assert t.timestamp(page) == t.clock != before[0]
    assert j.changed() is None                        # not compared
    j.rollback()
    assert (t.timestamp(page), t.capture_clock()) == before


# -- verify -----------------------------------------------------------------------------
def test_verify_finds_a_write_no_event_reported(f):
    j, m = f.journal, f.m
    mfn = frame_of(f, f.live_guests()[0])
    page = m.mfn_to_page(mfn)
    ti = m.frame_table.type_info(page)
    arrays = m.frame_table.written_group(page >> 16)
    arrays[1][page & 0xFFFF] = ti + 1                      # a raw numpy store
    assert j.changed() is None                             # nothing said it was written
    assert j.verify() == f"mfn {mfn:#x} type_info {ti + 1:#x} vs {ti:#x}"


def unreported_write(f: Fuzzer) -> int:
    """Contents of a frame no live table is (the auditor does not look at it), changed by
    a raw numpy store after an evented write made it a frame with contents: its MFN."""
    m = f.m
    mfn = frame_of(f, f.live_guests()[0], 7)
    m.mem.write(mfn, 3, 0x5000)
    f.journal.commit()
    m.mem.table(mfn)[3] = 0x6000                           # no event
    return mfn


def test_the_runner_reports_an_unreported_write_at_its_full_audit():
    f = Fuzzer(Setup(full_audit_every=1), "journal")
    f.start()
    g = f.live_guests()[0]
    mfn = unreported_write(f)
    with pytest.raises(FuzzViolation) as e:
        f.step({"op": "memory_op", "domain": g.name, "cmd": "decrease_reservation",
                "order": 0, "extents": [frame_of(f, g)]})
    assert e.value.kind == "unreported-write" and e.value.key == "journal"
    assert e.value.detail.endswith(f"contents of frame {mfn:#x}[3]: 0x6000 vs 0x5000")


def test_without_full_audits_an_unreported_write_goes_unseen():
    f = Fuzzer(Setup(full_audit_every=0), "journal")
    f.start()
    g = f.live_guests()[0]
    mfn = unreported_write(f)
    res = f.step({"op": "memory_op", "domain": g.name, "cmd": "decrease_reservation",
                  "order": 0, "extents": [frame_of(f, g)]})
    assert res.rc == 1
    assert f.journal.verify() == f"contents of frame {mfn:#x}[3]: 0x6000 vs 0x5000"


def test_a_pin_goes_back_with_rollback(f):
    j, m = f.journal, f.m
    g = f.live_guests()[1]
    d = m.domains[g.domid]
    (page, type_), = d.pinned.items()
    mfn = int(m.pdx_to_mfn(page))
    snap = m.snapshot()
    res = execute(m, f.doms, {"op": "mmuext_op", "domain": g.name, "ops": [["unpin_table", mfn]]})
    assert res.rc == 0 and page not in d.pinned
    j.rollback()
    assert m.same_as(snap) and d.pinned == {page: type_} and audit(m).ok


# -- the records' restore (what rollback puts back: only what differs) --------------------
def test_heap_restore_puts_back_the_free_blocks_and_their_counts():
    from xensim.mem import DomainHeap
    heap = DomainHeap([(0, 0x9F), (0x100, 0x4000)])
    twin = DomainHeap([(0, 0x9F), (0x100, 0x4000)])
    snap, free = heap.snapshot(), heap.free_frames
    taken = [heap.alloc(0), heap.alloc(3), heap.alloc(9)]
    heap.free(taken[1], 3)                           # (merged back with its buddies)
    assert heap.snapshot() != snap
    heap.restore(snap)
    assert heap.snapshot() == snap and heap.free_frames == free
    heap.check()
    assert [heap.alloc(o) for o in (0, 3, 9, 0)] == [twin.alloc(o) for o in (0, 3, 9, 0)]
    assert heap.free_frames == twin.free_frames


def test_frame_map_restore_copies_back_only_the_leaves_that_differ():
    from xensim.mem import FrameMap
    p2m = FrameMap(2048)
    p2m.set_run(0, 0x1000, 512)                      # leaf 0 linear
    p2m.set(600, 7)                                   # leaf 1 an array
    state = p2m.capture()
    snap, count = state
    assert count == p2m.count and snap is p2m.snapshot()
    leaf1 = p2m.snapshot()[1]
    p2m.set(601, 8)                                   # leaf 1 changes
    p2m.set(1500, 9)                                  # leaf 2 appears
    p2m.clear(3)                                      # leaf 0 becomes an array
    p2m.restore(state)
    assert p2m.snapshot() is snap and p2m.snapshot()[1] == leaf1 and p2m.count == 513
    assert (p2m.get(3), p2m.get(600), p2m.get(601), p2m.get(1500)) == (0x1003, 7, -1, -1)
    p2m.clear(600)                   # leaf 1's count of present entries held: it folds to empty
    fresh = FrameMap(2048)
    fresh.set_run(0, 0x1000, 512)
    assert p2m.snapshot() == fresh.snapshot() and p2m.count == 512


def test_range_set_keeps_its_snapshot_until_it_changes():
    from xensim.mem import RangeSet
    r = RangeSet([(0, 4), (10, 12)])
    s = r.snapshot()
    assert s == ((0, 4), (10, 12)) and r.snapshot() is s
    r.add(4, 6)
    assert r.snapshot() == ((0, 6), (10, 12))
    r.restore(s)
    assert r.snapshot() == s and len(r) == 6
