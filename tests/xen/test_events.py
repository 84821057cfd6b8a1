"""The machine's event bus (xensim.xen._events): each event, emitted at its one place.

Per event: a small machine, one operation, the exact sequence of events and their
arguments. Then the API: subscribe / unsubscribe / listening, unknown names, the
per-event attribute (None while nobody listens), deep copies.
"""

from __future__ import annotations

import copy
import errno

import numpy as np
import pytest

from xensim import Machine, MemoryMap
from xensim.guest._guest import DIRECTMAP_BASE, GuestKernel
from xensim.mem._page_info import (PGC_allocated, PGC_state_inuse, PGT_l1_page_table,
                                   PGT_validated, PGT_writable_page, SGT_dynamic)
from xensim.xen import EVENTS, Events, RangeResult
from xensim.xen._pagetable import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW,
                                   _PAGE_USER, make_pte)

from conftest import populate

GiB = 1 << 30
#: events of atomic steps and of the storage level (below the primitives' word_changed)
STORAGE_LEVEL = ("atomic_step", "frames_written", "guest_write")
#: the guest kernel's PSE entries: present, user, writable, accessed and dirty
PSE_RW = _PAGE_PRESENT | _PAGE_USER | _PAGE_PSE | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY
WRITABLE = PGT_writable_page | PGT_validated


def record(m: Machine, names=None) -> list[tuple]:
    """Subscribe to ``names`` (default: every event but atomic_step, which makes the
    machine run step by step, and the storage-level frames_written and guest_write,
    tested on their own): the list the events are appended to, as (name, *args)."""
    log: list[tuple] = []
    for name in names or [n for n in EVENTS if n not in STORAGE_LEVEL]:
        m.events.subscribe(name, lambda *a, _n=name: log.append((_n,) + a))
    return log


class Guest:
    """A guest of the 64 MiB machine (PDX none: page == mfn) owning superpages at MFNs
    0, 0x200, 0x400, 0x600, with its L2 table for VA slot 1 GiB already built (by
    mapping superpage 3 at VA slot 511 of it)."""

    def __init__(self, design: str = "xen-4.1"):
        self.m = m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none", superpage=design)
        self.d = m.create_domain("guest", 4 * 512 + 64)
        self.k = k = GuestKernel(m, self.d)
        assert k.populate(0, 4 * 512) == 4 and k.build() == 0
        assert k.superpage_mfns(0, 4) == [0, 0x200, 0x400, 0x600]
        assert self.map(511, [0x600]) == 0
        self.l2 = next(mfn for (level, _), mfn in k.tables.items() if level == 2)

    def va(self, slot: int) -> int:
        return DIRECTMAP_BASE + GiB + slot * (2 << 20)

    def map(self, slot: int, mfns: list[int]) -> int:
        return self.k.map_superpages(self.va(slot), mfns, True)

    def unmap(self, slot: int, n: int = 1) -> int:
        return self.k.unmap(self.va(slot), n)


def table_ref(l2: int, inuse: int) -> list[tuple]:
    """mmu_update's get_page / put_page on the L2 table it writes (general count ``inuse``)."""
    ci = PGC_state_inuse | PGC_allocated
    return [("word_changed", l2, "count_info", ci | inuse, ci | inuse + 1, "get_page")], \
           [("word_changed", l2, "count_info", ci | inuse + 1, ci | inuse, "put_page")]


def test_mapping_an_unmapped_superpage_on_xen_4_1():
    """One spage_cmpxchg none/0 -> dynamic/1 won, the 512 frames' references taken as one
    range (get_pages_and_type), inside the entry's validation, the request, the hypercall."""
    g = Guest()
    log = record(g.m)
    assert g.map(0, [0]) == 0
    e = make_pte(0, PSE_RW)
    get, put = table_ref(g.l2, 2)
    assert [x[0] for x in log] == ["hypercall_enter", "request_enter", "word_changed",
                                   "entry_get_begin", "range_get", "range_got", "spage_cmpxchg",
                                   "entry_get_end", "word_changed", "request_leave",
                                   "hypercall_leave"]
    assert log[0][1:3] == (g.d, 1) and log[-1][1:3] == (g.d, 1) and log[-1][4] == 0
    assert log[1:-1] == [("request_enter",), *get,
                         ("entry_get_begin", 2, e, g.d, g.l2),
                         ("range_get", 0, 512, g.d, PGT_writable_page),
                         ("range_got", 0, 512, g.d, PGT_writable_page, RangeResult(True, 512)),
                         ("spage_cmpxchg", "spage_table", 0, 0, 0, 0, SGT_dynamic | 1, True),
                         ("entry_get_end", 2, e, g.d, g.l2, 0),
                         *put, ("request_leave", 0)]


def test_unmapping_the_last_mapping_on_xen_4_1():
    g = Guest()
    assert g.map(0, [0]) == 0
    log = record(g.m)
    assert g.unmap(0) == 0
    e = make_pte(0, PSE_RW)
    get, put = table_ref(g.l2, 2)
    assert log[1:-1] == [("request_enter",), *get,
                         ("entry_put_begin", 2, e, g.l2),
                         ("spage_cmpxchg", "spage_table", 0, 0, SGT_dynamic | 1, SGT_dynamic | 1,
                          0, True),
                         ("range_put", 0, 512, True),
                         ("entry_put_end", 2, e, g.l2),
                         *put, ("request_leave", 0)]


def test_a_second_mapping_is_one_cmpxchg():
    g = Guest()
    assert g.map(0, [0]) == 0
    log = record(g.m, ["spage_cmpxchg", "range_get", "range_put"])
    assert g.map(1, [0]) == 0
    assert log == [("spage_cmpxchg", "spage_table", 0, 0, SGT_dynamic | 1, SGT_dynamic | 1,
                    SGT_dynamic | 2, True)]


def test_pageinfo_count_cmpxchg_is_on_the_page_info_field():
    g = Guest("pageinfo-count")
    log = record(g.m, ["spage_cmpxchg"])
    assert g.map(0, [0x200]) == 0
    assert log == [("spage_cmpxchg", "page_info", 1, 0, 0, 0, 1, True)]
    assert g.m.superpage.fields()[0][0x200] == 1


@pytest.mark.parametrize("design, where, new", [("xen-4.1", "spage_table", SGT_dynamic | 1),
                                                 ("pageinfo-count", "page_info", 1)])
def test_a_batch_writes_many_words_at_once(design, where, new):
    """One mmu_update of 8 PSE entries (PSE_BATCH_MIN): every run's range_get before any is
    taken, then their range_got, then one spage_write_many of the superpages' words."""
    m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none", superpage=design)
    d = m.create_domain("guest", 9 * 512 + 64)
    k = GuestKernel(m, d)
    assert k.populate(0, 9 * 512) == 9 and k.build() == 0
    *mfns, last = k.superpage_mfns(0, 9)
    assert k.map_superpages(DIRECTMAP_BASE + GiB, [last], True) == 0     # builds the L2 table
    log = record(m, ["range_get", "range_got", "spage_write_many", "spage_cmpxchg"])
    assert k.map_superpages(DIRECTMAP_BASE + GiB + (2 << 20), mfns, True) == 0
    runs = [(f, 512, d, PGT_writable_page) for f in mfns]
    assert log[:8] == [("range_get",) + r for r in runs]
    assert log[8:16] == [("range_got",) + r + (RangeResult(True, 512),) for r in runs]
    (name, w, spdx, word, old, now), = log[16:]
    assert (name, w, word) == ("spage_write_many", where, 0)
    assert spdx.tolist() == [f >> 9 for f in mfns]
    assert old.tolist() == [0] * 8 and now.tolist() == [new] * 8


def test_failed_range_get_reports_the_frame_and_reason():
    g = Guest()
    m = g.m
    assert m.refs.get_page_type(5, PGT_l1_page_table)            # frame 5: a type conflict
    log = record(m, ["range_get", "range_got", "spage_cmpxchg"])
    assert g.map(0, [0]) == -errno.EINVAL
    assert log == [("range_get", 0, 512, g.d, PGT_writable_page),
                   ("range_got", 0, 512, g.d, PGT_writable_page,
                    RangeResult(False, 512, 5, "type"))]


def test_word_changed_per_scalar_cmpxchg(m, guest):
    populate(m, guest, [0], 9)
    log = record(m)
    ci = PGC_state_inuse | PGC_allocated
    assert m.refs.get_page_and_type(3, guest, PGT_writable_page)
    m.refs.put_page_and_type(3)
    assert log == [("word_changed", 3, "count_info", ci | 1, ci | 2, "get_page"),
                   ("word_changed", 3, "type_info", 0, WRITABLE | 1,
                    "get_page_type(writable)"),
                   ("word_changed", 3, "type_info", WRITABLE | 1, WRITABLE, "put_page_type"),
                   ("word_changed", 3, "count_info", ci | 2, ci | 1, "put_page")]


def test_tlb_flush_of_a_type_change(m, guest):
    populate(m, guest, [0], 9)
    r = m.refs
    assert r.get_page_type(3, PGT_writable_page)
    r.put_page_type(3)                                   # stamped at clock 1
    log = record(m, ["tlb_flush"])
    assert r.get_page_type(3, PGT_l1_page_table)
    assert log == [("tlb_flush", 3, guest, 1, 2)]


def test_pages_freed_with_their_owners(m, guest):
    """Destroying a domain: its frames' PGC_allocated references go as one range per run,
    and the run's 512 frames go back to the heap, leaving owner ``guest``."""
    populate(m, guest, [0], 9)
    log = record(m, ["range_put", "pages_freed"])
    assert m.destroy_domain(guest) == 0
    (n1, *put), (n2, pages, owners) = log
    assert (n1, put) == ("range_put", [0, 512, False])
    assert n2 == "pages_freed" and pages.tolist() == list(range(512))
    assert owners.tolist() == [guest] * 512


def test_hypercall_leave_of_an_unknown_number(m):
    log = record(m, ["hypercall_enter", "hypercall_leave"])
    assert m.hypercall(0, 99, "x") == -errno.ENOSYS
    assert log == [("hypercall_enter", 0, 99, ("x",)),
                   ("hypercall_leave", 0, 99, ("x",), -errno.ENOSYS)]


def test_atomic_steps_of_a_first_mapping():
    """With a step listener the machine runs step by step: the superpage word's loads and
    cmpxchg, and each of the 512 frames' get_page and get_page_type (the per-frame loop)."""
    g = Guest()
    steps: list[tuple] = []
    with g.m.events.listening(atomic_step=lambda *a: steps.append(a)):
        assert g.map(0, [0]) == 0
    kinds = [s[0] for s in steps]
    assert kinds[0] == "hcall" and steps[0][1:] == (g.d, 1)
    sp = [s for s in steps if s[0].startswith("sp_")]
    assert sp == [("sp_load", 0, 0), ("sp_load", 0, 0), ("sp_cas", 0, 0)]
    frames = [s for s in steps if s[1] < 512 and s[0] in ("get_page", "get_page_type")]
    assert frames == [x for p in range(512) for x in (("get_page", p, g.d),
                                                      ("get_page_type", p, PGT_writable_page))]
    assert g.m.events.atomic_step is None


# -- the API ----------------------------------------------------------------------------------
def test_unknown_event_raises():
    ev = Events()
    with pytest.raises(ValueError, match="unknown event 'no_such'"):
        ev.subscribe("no_such", print)
    with pytest.raises(ValueError):
        ev.subscribers("no_such")
    with pytest.raises(ValueError):
        with ev.listening(no_such=print):
            pass


def test_subscribe_and_unsubscribe():
    ev = Events()
    calls = []
    f = lambda *a: calls.append(("f",) + a)                          # noqa: E731
    g = lambda *a: calls.append(("g",) + a)                          # noqa: E731
    assert ev.tlb_flush is None
    a = ev.subscribe("tlb_flush", f)
    assert ev.tlb_flush is f                          # one subscriber: called directly
    b = ev.subscribe("tlb_flush", g)
    ev.tlb_flush(1, 2, 3, 4)
    assert calls == [("f", 1, 2, 3, 4), ("g", 1, 2, 3, 4)]      # in subscription order
    assert ev.subscribers("tlb_flush") == [f, g]
    ev.unsubscribe(a)
    assert ev.tlb_flush is g
    ev.unsubscribe(b)
    assert ev.tlb_flush is None
    with pytest.raises(ValueError):
        ev.unsubscribe(b)


def test_listening_unsubscribes_on_exit_and_on_error():
    ev = Events()
    with pytest.raises(KeyError):
        with ev.listening(word_changed=print, request_leave=print):
            assert ev.word_changed is print and ev.request_leave is print
            raise KeyError
    assert ev.word_changed is None and ev.request_leave is None


def test_nobody_listening_nothing_called():
    """A fresh machine's events are all None, and stay so through a map and an unmap; a
    subscriber gone gets nothing."""
    g = Guest()
    ev = g.m.events
    assert all(getattr(ev, n) is None for n in EVENTS)
    log: list = []
    subs = [ev.subscribe(n, lambda *a: log.append(a)) for n in EVENTS]
    for s in subs:
        ev.unsubscribe(s)
    assert g.map(0, [0]) == 0 and g.unmap(0) == 0
    assert log == [] and all(getattr(ev, n) is None for n in EVENTS)


def test_deep_copy_copies_subscribers():
    class Counter:
        n = 0

        def hit(self, *a):
            self.n += 1

    c = Counter()
    ev = Events()
    ev.subscribe("request_leave", c.hit)
    ev2 = copy.deepcopy(ev)
    ev2.request_leave(0)
    assert c.n == 0 and ev2.subscribers("request_leave")[0].__self__.n == 1
    ev.request_leave(0)
    assert c.n == 1


def test_every_event_is_documented():
    from xensim.xen import _events
    for name, args in EVENTS.items():
        assert f"{name}({', '.join(args)})" in _events.__doc__, name


def test_deep_copy_of_a_machine_keeps_the_attached_attributes_in_step():
    """The attached emitters (refs, superpage table, hypercall layer) of a copied machine
    follow the copy's bus, not the original's."""
    class Log(list):
        def add(self, *a):
            self.append(a)

    g = Guest()
    g.m.events.subscribe("word_changed", Log().add)
    m2 = copy.deepcopy(g.m)
    assert m2.refs.word_changed.__self__ is not g.m.refs.word_changed.__self__
    assert m2.refs.word_changed is m2.events.word_changed
    sub = m2.events.subscribe("atomic_step", lambda *a: None)
    assert m2.spage_table.atomic_step is not None and m2.hypercall.atomic_step is not None
    assert g.m.spage_table.atomic_step is None and g.m.refs.atomic_step is None
    m2.events.unsubscribe(sub)
    assert m2.refs.atomic_step is None and m2.hypercall.atomic_step is None


def test_frames_written_by_the_setters_and_slices(m, guest):
    """Every store through the frame table's setters or a writable slice, before it."""
    log = record(m, ["frames_written"])
    m.frame_table.set_count_info(5, m.frame_table.count_info(5))
    m.frame_table.set_type_info(6, 0)
    m.frame_table.set_owner(7, guest)
    m.frame_table.slices(0x200, 512)
    m.frame_table.read_slices(0x400, 512)                # a read: nothing
    assert log == [("frames_written", 5, 1), ("frames_written", 6, 1),
                   ("frames_written", 7, 1), ("frames_written", 0x200, 512)]


def test_guest_write_of_one_entry_and_of_many():
    m = Machine(MemoryMap([(0, 64 << 20)], name="small"), "none")
    log = record(m, ["guest_write"])
    m.mem.write(0x30, 4, 0x1234)
    m.mem.write(0x30, 4, 0x5678)
    m.mem.write_many(0x31, np.array([1, 2]), np.array([7, 8], dtype=np.uint64))
    assert log[:2] == [("guest_write", 0x30, 4, 0, 0x1234), ("guest_write", 0x30, 4, 0x1234, 0x5678)]
    name, mfn, index, old, new = log[2]
    assert (name, mfn, index.tolist(), old.tolist(), new.tolist()) == \
        ("guest_write", 0x31, [1, 2], [0, 0], [7, 8])
    assert len(log) == 3
